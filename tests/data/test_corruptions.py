"""The 19 corruptions: all run on current numpy/scikit-image, are reproducible per seed, leave the
global random state alone, and the fast versions (glass_blur, zoom_blur, elastic_transform,
brightness, saturate) are byte-identical to the library's."""

from __future__ import annotations

import imagecorruptions
import numpy as np
import pytest
from PIL import Image

from pcnets.data import _fast_blur, _fast_color, _fast_elastic
from pcnets.data.corruptions import (
    BENCHMARK,
    EXTRA,
    FAST,
    NAMES,
    cell_seed,
    corrupt,
    resolve_names,
    resolve_severities,
)
from pcnets.errors import PcnetsError

RANDOM = {
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "snow",
    "frost",
    "fog",
    "elastic_transform",
    "speckle_noise",
    "spatter",
}


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Gradients plus noise: every blur, colour and noise corruption visibly changes it."""
    yy, xx = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(seed).integers(0, 40, (height, width, 3))
    image = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=-1) % 216 + noise
    return image.astype(np.uint8)


@pytest.fixture(scope="module")
def small() -> np.ndarray:
    return textured(48, 64)  # non-square, small: the 19 x 5 grid runs in about a second


def test_names_follow_method_md_then_the_extra_four():
    assert len(BENCHMARK) == 15 and len(EXTRA) == 4 and NAMES == BENCHMARK + EXTRA
    assert NAMES[0] == "gaussian_noise" and BENCHMARK[-1] == "jpeg_compression"
    assert EXTRA == ("speckle_noise", "gaussian_blur", "spatter", "saturate")
    assert list(NAMES) == imagecorruptions.get_corruption_names("all")


@pytest.mark.parametrize("name", NAMES)
def test_every_severity_runs_and_changes_the_image(small, name):
    outputs = [corrupt(small, name, severity, seed=0) for severity in range(1, 6)]
    for out in outputs:
        assert out.dtype == np.uint8 and out.shape == small.shape
        assert np.mean(out != small) > 0.02  # spatter and impulse_noise change the fewest (~3 %)
    assert not np.array_equal(outputs[0], outputs[4])  # severity matters


def test_same_seed_gives_the_same_bytes(small):
    for name in NAMES:
        first, again = corrupt(small, name, 3, seed=11), corrupt(small, name, 3, seed=11)
        assert np.array_equal(first, again), name


def test_the_seed_changes_random_corruptions_only(small):
    differs = {
        name
        for name in NAMES
        if not np.array_equal(corrupt(small, name, 3, seed=1), corrupt(small, name, 3, seed=2))
    }
    assert differs == RANDOM


def test_seed_none_draws_a_fresh_seed(small):
    assert not np.array_equal(
        corrupt(small, "gaussian_noise", 2), corrupt(small, "gaussian_noise", 2)
    )


def test_global_numpy_random_state_is_untouched(small):
    np.random.seed(123)
    expected = np.random.random(3)
    np.random.seed(123)
    for name in ("gaussian_noise", "frost", "fog", "glass_blur", "impulse_noise"):
        corrupt(small, name, 4, seed=5)
    assert np.array_equal(np.random.random(3), expected)


def test_cell_seed_is_stable_and_distinct():
    key = "n01440764/n01440764_tench.JPEG"
    assert cell_seed(0, key, "fog", 3) == 3003516829  # sha256-based: same on every machine
    assert cell_seed(1, key, "fog", 3) == 2689867101
    seeds = {
        cell_seed(0, key, "fog", 4),
        cell_seed(0, key, "snow", 3),
        cell_seed(0, "n01440764/other.JPEG", "fog", 3),
        cell_seed(0, key, "fog", 3),
    }
    assert len(seeds) == 4 and all(0 <= s < 2**32 for s in seeds)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_fast_glass_blur_is_byte_identical_to_the_library(small, severity):
    for image, seeds in ((small, (0, 1, 123456789, 2**32 - 1)), (textured(224, 224, 1), (7,))):
        for seed in seeds:
            ours = corrupt(image, "glass_blur", severity, seed=seed)
            library = imagecorruptions.corrupt(image, severity, "glass_blur", seed=seed)
            assert np.array_equal(ours, library), (image.shape, seed)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_fast_zoom_blur_is_byte_identical_to_the_library(small, severity):
    # 36 rows: at zoom 1.2 the last kept row falls a rounding error outside the crop, where scipy
    # writes 0 (mode='constant'); 224 is the ImageNet-C size.
    for image in (small, textured(36, 71, 2), textured(224, 224, 3)):
        ours = corrupt(image, "zoom_blur", severity, seed=0)
        library = imagecorruptions.corrupt(image, severity, "zoom_blur")
        assert np.array_equal(ours, library), image.shape
        floats = imagecorruptions.corruption_dict["zoom_blur"](Image.fromarray(image), severity)
        assert np.array_equal(_fast_blur.zoom_blur(image, severity), floats)


def test_the_zoom_edge_case_is_exercised():
    inside = _fast_blur._axis_weights(36, 3)[4]  # severity 3 has zoom 1.2
    assert not inside.all() and inside.sum() == inside.size - 1


def ties() -> np.ndarray:
    """All 64 colours with channels in {0, 85, 170, 255}, each as a 4x4 patch, in a 32x32 image:
    grey (no hue), two or three channels tied for the maximum, black and white."""
    levels = np.array([0, 85, 170, 255], dtype=np.uint8)
    colours = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(8, 8, 3)
    return np.ascontiguousarray(colours.repeat(4, axis=0).repeat(4, axis=1))


@pytest.mark.parametrize("name", ["brightness", "saturate"])
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_fast_hsv_corruptions_are_byte_identical_to_the_library(small, name, severity):
    for image in (small, ties(), textured(37, 90, 4), textured(224, 224, 5)):
        ours = corrupt(image, name, severity, seed=0)
        library = imagecorruptions.corrupt(image, severity, name)
        assert np.array_equal(ours, library), image.shape
        floats = imagecorruptions.corruption_dict[name](Image.fromarray(image), severity)
        assert np.array_equal(getattr(_fast_color, name)(image, severity), floats), image.shape


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_fast_elastic_transform_is_byte_identical_to_the_library(small, severity):
    # The library draws the displacement fields from numpy's global generator: seed it alike.
    for image, seeds in ((small, (0, 1, 2**32 - 1)), (textured(33, 70, 6), (5,))):
        for seed in seeds:
            ours = corrupt(image, "elastic_transform", severity, seed=seed)
            np.random.seed(seed)
            library = imagecorruptions.corrupt(image, severity, "elastic_transform")
            assert np.array_equal(ours, library), (image.shape, seed)
    image = textured(224, 224, 7)
    np.random.seed(9)
    floats = imagecorruptions.corruption_dict["elastic_transform"](Image.fromarray(image), severity)
    np.random.seed(9)
    assert np.array_equal(_fast_elastic.elastic_transform(image, severity), floats)


def test_the_elastic_borders_are_reflected_as_scipy_does():
    from scipy.ndimage import map_coordinates

    signal = np.arange(10.0) ** 2
    coords = (-12.5, -10.5, -3.0, -0.75, -0.25, 0.0, 4.3, 8.9, 9.0, 9.5, 10.25, 19.5, 31.0)
    for c in coords:
        x = _fast_elastic._reflect(c, 10)
        start = int(np.floor(x))
        w0 = 1.0 - (x - start)
        a, b = _fast_elastic._neighbour(start, 10), _fast_elastic._neighbour(start + 1, 10)
        scipy_value = map_coordinates(signal, [[c]], order=1, mode="reflect")[0]
        assert signal[a] * w0 + signal[b] * (1.0 - w0) == scipy_value, c


def test_fast_false_runs_the_library_versions(small):
    assert FAST == ("glass_blur", "zoom_blur", "elastic_transform", "brightness", "saturate")
    for name in FAST:
        assert np.array_equal(
            corrupt(small, name, 5, seed=3, fast=False), corrupt(small, name, 5, seed=3)
        )


def test_unknown_name_and_bad_severity_are_one_line_errors(small):
    with pytest.raises(
        PcnetsError, match=r"unknown corruption 'fgo' \(did you mean: fog, frost\?\)"
    ):
        corrupt(small, "fgo", 1)
    with pytest.raises(PcnetsError, match="valid: gaussian_noise, .*, saturate$"):
        corrupt(small, "blur", 1)
    for severity in (0, 6, -1):
        with pytest.raises(PcnetsError, match="one of 1, 2, 3, 4, 5"):
            corrupt(small, "fog", severity)
    for severity in ("3", 2.0, True):
        with pytest.raises(PcnetsError, match="whole number 1..5"):
            corrupt(small, "fog", severity)


def test_bad_images_are_refused(small):
    with pytest.raises(PcnetsError, match="at least 32x32"):
        corrupt(small[:31], "fog", 1)
    with pytest.raises(PcnetsError, match="uint8"):
        corrupt(small.astype(np.float32), "fog", 1)
    with pytest.raises(PcnetsError, match="HxWx3"):
        corrupt(small[..., 0], "fog", 1)
    smallest = corrupt(small[:32, :32], "zoom_blur", 5, seed=0)
    assert smallest.shape == (32, 32, 3)


def test_resolve_names_and_severities():
    assert resolve_names(None) == NAMES and resolve_names("extra") == EXTRA
    assert resolve_names("fog, snow,fog") == ("fog", "snow")
    assert resolve_names(["benchmark", "saturate"]) == BENCHMARK + ("saturate",)
    with pytest.raises(PcnetsError, match="did you mean: snow"):
        resolve_names("fog,snwo")
    assert resolve_severities(None) == (1, 2, 3, 4, 5)
    assert resolve_severities("5, 1") == (1, 5) and resolve_severities(3) == (3,)
    with pytest.raises(PcnetsError, match="numbers 1..5"):
        resolve_severities("1,x")
    with pytest.raises(PcnetsError, match="one of 1, 2, 3, 4, 5"):
        resolve_severities([0, 1])


def _real_image(sample_root) -> np.ndarray:
    from pcnets.data.imagenet_c_layout import preprocess

    path = sorted((sample_root / "val").glob("*/*"))[0]
    with Image.open(path) as img:
        return np.asarray(preprocess(224)(img.convert("RGB")))


def test_every_cell_on_a_real_imagenet_image_at_224(sample_root):
    image = _real_image(sample_root)
    assert image.shape == (224, 224, 3)
    for name in NAMES:
        for severity in range(1, 6):
            out = corrupt(image, name, severity, seed=0)
            assert out.shape == image.shape and np.mean(out != image) > 0.02, (name, severity)
