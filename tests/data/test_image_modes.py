"""Images of every mode PIL opens become 8-bit RGB with the right values, or one line (issue 24
item 3); an ImageNet-C tree with a symlink loop is walked once (item 7); data.on_bad_image=skip
also skips in a corruptions=folder tree (item 11)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pcnets.config import compose
from pcnets.data.imagenet_c_tree import ImageNetCFolder
from pcnets.data.images import UnreadableImage, open_rgb, skipped_images
from pcnets.errors import PcnetsError
from pcnets.experiments.eval_corruptions import _folder_cell


def saved(tmp_path, img: Image.Image, name: str):
    path = tmp_path / name
    img.save(path)
    return path


@pytest.mark.parametrize(
    ("make", "name", "expected"),
    [
        (lambda: Image.fromarray(np.full((4, 4), 20000, np.uint16)), "g16.png", 78),  # 20000/257
        (lambda: Image.fromarray(np.full((4, 4), 65535, np.uint16)), "w16.png", 255),
        (lambda: Image.fromarray(np.full((4, 4), 20000, np.int32)), "i32.tif", 78),
        (lambda: Image.fromarray(np.full((4, 4), 0.5, np.float32)), "f32.tif", 128),
        (lambda: Image.new("L", (4, 4), 90), "l.png", 90),
        (lambda: Image.new("LA", (4, 4), (100, 50)), "la.png", 100),
        (lambda: Image.new("RGBA", (4, 4), (10, 20, 30, 40)), "rgba.png", 20),
        (lambda: Image.new("RGB", (4, 4), (10, 20, 30)).quantize(4), "p.png", 20),
        (lambda: Image.new("1", (4, 4), 1), "one.png", 255),
        (lambda: Image.new("CMYK", (4, 4), (0, 0, 0, 0)), "cmyk.jpg", 255),
    ],
)
def test_every_mode_becomes_8_bit_rgb_with_its_values(tmp_path, make, name, expected):
    img = make()
    path = saved(tmp_path, img, name)
    with Image.open(path) as back:
        assert back.mode == img.mode or name.endswith(".jpg")  # the file keeps the mode
    rgb = open_rgb(path)
    pixels = np.asarray(rgb)
    assert rgb.mode == "RGB" and pixels.dtype == np.uint8 and pixels.shape == (4, 4, 3)
    assert abs(float(pixels.mean()) - expected) <= 1.0


@pytest.mark.parametrize("array", [np.full((4, 4), 7.5, np.float32), np.full((4, 4), -3, np.int32)])
def test_a_mode_of_unknown_scale_is_refused_in_one_line(tmp_path, array):
    path = saved(tmp_path, Image.fromarray(array), "odd.tif")
    with pytest.raises(UnreadableImage) as err:
        open_rgb(path)
    assert "has no known scale; convert it to 8-bit RGB" in str(err.value)
    assert "\n" not in str(err.value)


def imagenet_c_tree(tmp_path, bad: bool = False):
    """gaussian_noise/1/<2 wnids>/<2 PNGs each>, like `pcnets make-imagenet-c` writes."""
    root = tmp_path / "inc"
    for wnid in ("n01440764", "n01443537"):
        folder = root / "gaussian_noise" / "1" / wnid
        folder.mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (i * 40, 60, 90)).save(folder / f"img{i}.png")
    if bad:
        (root / "gaussian_noise" / "1" / "n01440764" / "bad.png").write_text("not an image")
    return root


def test_a_symlink_loop_in_an_imagenet_c_tree_is_not_followed(tmp_path):
    root = imagenet_c_tree(tmp_path)
    cell = root / "gaussian_noise" / "1"
    (cell / "n01440764" / "loop").symlink_to("..")  # a class folder linking to its parent
    (cell / "n01440764" / "self").symlink_to(".")
    found = ImageNetCFolder(root, "gaussian_noise", 1)
    names = sorted(f"{p.split('/')[-2]}/{p.split('/')[-1]}" for p, _ in found.samples)
    assert names == [f"{w}/img{i}.png" for w in ("n01440764", "n01443537") for i in range(2)]
    assert [label for _, label in found.samples] == [0, 0, 1, 1]


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_on_bad_image_applies_to_a_corruptions_folder_tree(tmp_path, policy):
    root = imagenet_c_tree(tmp_path, bad=True)
    cfg = compose(
        [
            "corruptions=folder",
            f"corruptions.root={root}",
            f"data.on_bad_image={policy}",
            "data.num_classes=2",
            "data.split=all",
        ],
        "eval-corruptions",
    )
    classes = {"n01440764": 0, "n01443537": 1}
    if policy == "stop":
        with pytest.raises(PcnetsError, match="1 unreadable image.*set data.on_bad_image=skip"):
            _folder_cell(cfg, root, "gaussian_noise", 1, classes)
        return
    cell = _folder_cell(cfg, root, "gaussian_noise", 1, classes)
    assert len(cell) == 4 and sorted(cell.targets) == [0, 0, 1, 1]
    assert any(p.endswith("n01440764/bad.png") for p in skipped_images())
