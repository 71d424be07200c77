"""ImageNet-C trees: making one (resumable, parallel), checking one, reading one, generating on the
fly with the same pixels, the `corruptions` config group and the make-imagenet-c command."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from pcnets.cli import app
from pcnets.data.imagenet_c import CorruptedDataset, cell_dataset, check_config
from pcnets.data.imagenet_c_layout import preprocess, val_images
from pcnets.data.imagenet_c_make import make_imagenet_c
from pcnets.data.imagenet_c_tree import ImageNetCFolder, check_tree
from pcnets.errors import PcnetsError

CONF = Path(__file__).resolve().parents[2] / "conf" / "corruptions"
WNIDS = ("n00000001", "n00000002")
NAMES = ("gaussian_noise", "zoom_blur")
SEVERITIES = (1, 3)
SIZE = 48  # small crops keep each make_imagenet_c call well under a second


def _image(height: int, width: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 3, yy * 2, xx + yy], axis=-1) % 200 + rng.integers(
        0, 50, (height, width, 3)
    )
    return Image.fromarray(base.astype(np.uint8))


@pytest.fixture
def val_root(tmp_path) -> Path:
    """2 classes x 2 JPEGs of different sizes (one greyscale), plus a file that is no image."""
    root = tmp_path / "val"
    for c, wnid in enumerate(WNIDS):
        (root / wnid).mkdir(parents=True)
        for i, (height, width) in enumerate(((60, 80), (90, 70))):
            image = _image(height, width, seed=10 * c + i)
            image = image.convert("L") if (c, i) == (1, 1) else image
            image.save(root / wnid / f"{wnid}_{i}.JPEG", quality=95)
    (root / WNIDS[0] / "notes.txt").write_text("not an image")
    return root


def _make(val_root: Path, out: Path, **kwargs):
    options = dict(names=NAMES, severities=SEVERITIES, workers=0, size=SIZE, progress=False)
    return make_imagenet_c(val_root, out, **{**options, **kwargs})


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_make_writes_the_released_layout(val_root, tmp_path):
    out = tmp_path / "imagenet-c"
    counts = _make(val_root, out)
    assert counts[:2] == (16, 0)
    assert [(t.name, t.images) for t in counts.timing] == [(NAMES[0], 8), (NAMES[1], 8)]
    for t in counts.timing:
        assert t.corrupt_s > 0 and t.save_s > 0
        assert t.seconds_per_image == pytest.approx((t.corrupt_s + t.save_s) / 8)
        assert t.images_per_second == pytest.approx(1 / t.seconds_per_image)
    expected = {
        f"{name}/{severity}/{wnid}/{wnid}_{i}.JPEG"
        for name in NAMES
        for severity in SEVERITIES
        for wnid in WNIDS
        for i in range(2)
    }
    assert _files(out) == expected
    with Image.open(out / "zoom_blur/3" / WNIDS[1] / f"{WNIDS[1]}_1.JPEG") as img:
        assert img.size == (SIZE, SIZE) and img.mode == "RGB" and img.format == "JPEG"


def test_a_second_run_skips_finished_files_and_redoes_missing_ones(val_root, tmp_path):
    out = tmp_path / "imagenet-c"
    _make(val_root, out)
    assert _make(val_root, out) == (0, 16, ())  # nothing written, nothing timed
    lost = out / "gaussian_noise/3" / WNIDS[0] / f"{WNIDS[0]}_1.JPEG"
    lost.unlink()
    (lost.parent / f".{lost.name}.tmp").write_bytes(b"half a file from an interrupted run")
    again = _make(val_root, out)
    assert again[:2] == (1, 15) and [(t.name, t.images) for t in again.timing] == [(NAMES[0], 1)]
    assert lost.is_file() and not (lost.parent / f".{lost.name}.tmp").exists()


@pytest.mark.slow  # 40-75 s on a 2-core CPU
def test_worker_processes_write_the_same_bytes(val_root, tmp_path):
    _make(val_root, tmp_path / "serial", jpeg_quality=None)
    pool = _make(val_root, tmp_path / "pool", jpeg_quality=None, workers=2)
    assert pool[:2] == (16, 0) and sum(t.images for t in pool.timing) == 16
    for rel in _files(tmp_path / "serial"):
        serial = (tmp_path / "serial" / rel).read_bytes()
        assert serial == (tmp_path / "pool" / rel).read_bytes(), rel


def test_limit_spreads_over_classes_and_bad_val_roots_fail_clearly(val_root, tmp_path):
    two = val_images(val_root, limit=2)
    assert len({key.split("/")[0] for key in two}) == 2  # two classes, one image each
    assert val_images(val_root, limit=2) == two and set(two) <= set(val_images(val_root))
    assert len(val_images(val_root)) == 4
    with pytest.raises(PcnetsError, match="ImageNet val folder not found: .*missing"):
        _make(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty" / "n00000009").mkdir(parents=True)
    with pytest.raises(PcnetsError, match="no images in class folders"):
        _make(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(PcnetsError, match="at least 32 pixels"):
        _make(val_root, tmp_path / "out", size=16)


def test_generated_and_on_the_fly_images_are_the_same(val_root, tmp_path):
    base = [(str(val_root / key), WNIDS.index(key.split("/")[0])) for key in val_images(val_root)]
    for quality, out in ((None, tmp_path / "png"), (85, tmp_path / "jpeg")):
        _make(val_root, out, jpeg_quality=quality, seed=4)
        for name, severity in ((n, s) for n in NAMES for s in SEVERITIES):
            folder = ImageNetCFolder(out, name, severity, classes=WNIDS)
            fly = CorruptedDataset(
                base, name, severity, seed=4, pre_transform=preprocess(SIZE), jpeg_quality=quality
            )
            by_key = {Path(p).name: i for i, (p, _) in enumerate(fly.samples)}
            assert len(folder) == len(fly) == 4
            for (path, label), (image, target) in zip(folder.samples, folder, strict=True):
                generated, fly_label = fly[by_key[Path(path).stem + ".JPEG"]]
                assert label == target == fly_label == WNIDS.index(Path(path).parent.name)
                assert image.shape == (3, SIZE, SIZE) and torch.equal(image, generated), path


def test_corrupted_dataset_in_dataloader_workers_matches_in_process(val_root):
    base = [(str(val_root / key), i % 2) for i, key in enumerate(val_images(val_root))]
    data = CorruptedDataset(base, "glass_blur", 2, seed=1, pre_transform=preprocess(SIZE))
    inline = torch.stack([data[i][0] for i in range(len(data))])
    loaded = next(iter(DataLoader(data, batch_size=4, num_workers=2)))[0]
    assert loaded.shape == (4, 3, SIZE, SIZE) and torch.equal(inline, loaded)
    assert 0.0 <= float(loaded.min()) and float(loaded.max()) <= 1.0


def test_check_tree_names_every_missing_piece(tmp_path):
    def image_in(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        _image(40, 40, 0).save(folder / "a.png")

    for severity in (1, 3, 4, 5):
        (tmp_path / "fog" / str(severity)).mkdir(parents=True)
    image_in(tmp_path / "fog/1/n1")
    image_in(tmp_path / "fog/5/n2")
    (tmp_path / "fog/4/n1").mkdir()
    with pytest.raises(PcnetsError) as err:
        check_tree(tmp_path, ["fog", "snow", "frost"], (1, 2, 3, 4, 5))
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"malformed ImageNet-C tree {tmp_path}")
    assert "missing corruption folders: snow, frost" in message
    assert "missing severity folders: fog/2;" in message
    assert "no class folders in: fog/3;" in message
    assert "empty class folders: fog/4/n1;" in message
    assert "classes differ from the first cell in: fog/5" in message
    with pytest.raises(PcnetsError, match="ImageNet-C folder not found"):
        check_tree(tmp_path / "nowhere", ["fog"], (1,))


def test_check_tree_passes_a_made_tree_and_folder_checks_classes(val_root, tmp_path):
    out = tmp_path / "imagenet-c"
    _make(val_root, out)
    assert check_tree(out, NAMES, SEVERITIES) is None
    with pytest.raises(PcnetsError, match="missing severity folders: gaussian_noise/2, "):
        check_tree(out, NAMES, (1, 2))
    folder = ImageNetCFolder(out, "zoom_blur", 1)
    assert folder.classes == list(WNIDS) and sorted(folder.targets) == [0, 0, 1, 1]
    with pytest.raises(PcnetsError, match=r"missing: n00000003; extra: none"):
        ImageNetCFolder(out, "zoom_blur", 1, classes=[*WNIDS, "n00000003"])
    with pytest.raises(PcnetsError, match="cell not found"):
        ImageNetCFolder(out, "fog", 1)


def test_the_corruptions_config_group(val_root, tmp_path):
    generate, folder = (OmegaConf.load(CONF / f"{o}.yaml") for o in ("generate", "folder"))
    names, severities = check_config(generate)
    assert len(names) == 19 and severities == (1, 2, 3, 4, 5)
    base = [(str(val_root / key), 0) for key in val_images(val_root)]
    assert isinstance(cell_dataset(generate, "fog", 2, base), CorruptedDataset)
    with pytest.raises(PcnetsError, match="needs corruptions.root="):
        check_config(folder)
    out = tmp_path / "imagenet-c"
    _make(val_root, out)
    folder = OmegaConf.merge(folder, {"root": str(out), "names": list(NAMES), "severities": [1, 3]})
    assert check_config(folder) == (NAMES, SEVERITIES)
    assert len(cell_dataset(folder, "zoom_blur", 3, base, classes=WNIDS)) == 4


def test_cli_missing_val_root_is_one_line_without_traceback(tmp_path):
    result = CliRunner().invoke(
        app, ["make-imagenet-c", "--val-root", str(tmp_path / "nope"), "--out", str(tmp_path / "c")]
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ImageNet val folder not found")
    assert "Traceback" not in result.output


def test_cli_makes_a_small_tree(val_root, tmp_path):
    args = ["make-imagenet-c", "--val-root", str(val_root), "--out", str(tmp_path / "c")]
    args += ["--names", "fog,contrast", "--severities", "2", "--workers", "0", "--size", "40"]
    result = CliRunner().invoke(app, [*args, "--limit", "3", "--lossless"])
    assert result.exit_code == 0, result.output
    assert "wrote 6 images, 0 were already there" in result.output
    assert len(list((tmp_path / "c").rglob("*.png"))) == 6
    for name in ("fog", "contrast"):
        line = rf"{name}: 3 images, [\d.]+ s per image, [\d.]+ images/s per core"
        assert re.search(line, result.output), name
    rows = (tmp_path / "c" / "timing.csv").read_text().splitlines()
    assert rows[0] == "corruption,images,corrupt_s,save_s,s_per_image,images_per_s_per_core"
    assert [row.split(",")[:2] for row in rows[1:]] == [["fog", "3"], ["contrast", "3"]]
    assert all(float(row.split(",")[5]) > 0 for row in rows[1:])
    bad = CliRunner().invoke(app, [*args, "--names", "fogg"])
    assert bad.exit_code == 2 and "did you mean: fog" in bad.output
