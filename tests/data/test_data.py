"""The data layer: checked folders, the fixed hash split, limits, synthetic data, loaders, and
fetching the sample from a loopback HTTP server (never the real internet)."""

from __future__ import annotations

import functools
import http.server
import io
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import free_port
from omegaconf import OmegaConf
from PIL import Image
from typer.testing import CliRunner

from pcnets import data
from pcnets.config import CONF_DIR
from pcnets.errors import PcnetsError
from pcnets.runtime import loading


def to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1) / 255.0


def data_cfg(name: str, **values):
    cfg = OmegaConf.load(CONF_DIR / "data" / f"{name}.yaml")
    cfg.merge_with(values)
    return cfg


def make_tree(root: Path, classes=("n001", "n002", "n003"), per_class=3, folder="val") -> Path:
    for c, wnid in enumerate(classes):
        (root / folder / wnid).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", (12, 10), (40 * c, 10 * i, 0)).save(root / folder / wnid / f"{i}.png")
    return root


def folder_cfg(root, **values):
    return data_cfg("imagenet", root=str(root), num_classes=3, **values)


# Checking the folders up front


def test_missing_root_or_unset_root_is_a_clear_error(tmp_path):
    with pytest.raises(PcnetsError, match="data.root is not set"):
        data.dataset_samples(data_cfg("imagenet"))
    with pytest.raises(PcnetsError, match=f"not found: {tmp_path / 'nope'}"):
        data.dataset_samples(folder_cfg(tmp_path / "nope"))


def test_missing_split_folder_names_the_path(tmp_path):
    make_tree(tmp_path, folder="val")
    with pytest.raises(PcnetsError, match=f"no train/ folder in {tmp_path}"):
        data.dataset_samples(folder_cfg(tmp_path), split="train")


def test_empty_class_folder_names_it(tmp_path):
    make_tree(tmp_path, classes=("n001", "n002"))
    (tmp_path / "val" / "n003").mkdir()
    with pytest.raises(PcnetsError, match=f"empty class folder.*{tmp_path / 'val'}: n003"):
        data.dataset_samples(folder_cfg(tmp_path))


def test_wrong_class_count_names_the_path(tmp_path):
    make_tree(tmp_path)
    with pytest.raises(PcnetsError, match=f"{tmp_path / 'val'} has 3 class folders.*1000"):
        data.dataset_samples(data_cfg("imagenet", root=str(tmp_path)))


def test_flat_val_folder_is_explained(tmp_path):
    (tmp_path / "val").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(PcnetsError, match="holds images directly"):
        data.dataset_samples(folder_cfg(tmp_path))


def test_bad_split_and_limit_values(tmp_path):
    make_tree(tmp_path)
    with pytest.raises(PcnetsError, match="did you mean: eval"):
        data.dataset_samples(folder_cfg(tmp_path, split="evals"))
    with pytest.raises(PcnetsError, match="data.limit"):
        data.dataset_samples(folder_cfg(tmp_path, limit=0))


# Order, limit and the hash split


def test_limit_takes_a_seeded_class_stratified_subset(tmp_path):
    make_tree(tmp_path)
    everything = data.dataset_samples(folder_cfg(tmp_path))
    keys = [Path(p).relative_to(tmp_path).as_posix() for p, _ in everything]
    assert keys[:4] == ["val/n001/0.png", "val/n002/0.png", "val/n003/0.png", "val/n001/1.png"]
    assert [label for _, label in everything][:4] == [0, 1, 2, 0]
    limited = data.dataset_samples(folder_cfg(tmp_path, limit=4))
    assert sorted(sum(label == c for _, label in limited) for c in range(3)) == [1, 1, 2]
    assert set(limited) <= set(everything) and limited == [s for s in everything if s in limited]
    assert data.dataset_samples(folder_cfg(tmp_path, limit=4)) == limited  # same seed: same
    seeds = {tuple(data.dataset_samples(folder_cfg(tmp_path, limit=4, seed=s))) for s in range(5)}
    assert len(seeds) > 1
    evals = data.dataset_samples(folder_cfg(tmp_path, split="eval"))
    two = data.dataset_samples(folder_cfg(tmp_path, split="eval", limit=2))
    assert len(two) == 2 and set(two) <= set(evals)


def test_hash_split_is_fixed_by_file_name():
    assert data.hash_split("n01440764_tench.JPEG") == data.hash_split("n01440764_tench.JPEG")
    halves = [data.hash_split(f"ILSVRC2012_val_{i:08d}.JPEG") for i in range(2000)]
    assert 900 < halves.count("decoders") < 1100


def test_sample_splits_are_disjoint_halves_that_cover_all(sample_root):
    cfg = data_cfg("imagenet_sample", root=str(sample_root), split="all")
    everything = data.dataset_samples(cfg)
    decoders = data.dataset_samples(
        data_cfg("imagenet_sample", root=str(sample_root), split="decoders")
    )
    evals = data.dataset_samples(data_cfg("imagenet_sample", root=str(sample_root), split="eval"))
    assert len(everything) == 1000
    assert not set(decoders) & set(evals)
    assert set(decoders) | set(evals) == set(everything)
    assert 400 <= len(decoders) <= 600 and 400 <= len(evals) <= 600
    # the sample has no train folder: training reads the decoders half of val, whatever
    # data.split says, and evaluations read the eval half unless told otherwise
    assert data.dataset_samples(cfg, split="train") == decoders
    default = data_cfg("imagenet_sample", root=str(sample_root))
    assert data.dataset_samples(default) == evals
    assert data.dataset_samples(default, split="train") == decoders


def test_sample_labels_are_imagenet_indices(sample_root):
    samples = dict(
        data.dataset_samples(data_cfg("imagenet_sample", root=str(sample_root), split="all"))
    )
    by_wnid = {Path(p).parent.name: label for p, label in samples.items()}
    assert by_wnid["n01440764"] == 0 and by_wnid["n15075141"] == 999
    assert sorted(by_wnid.values()) == list(range(1000))


def test_sample_root_follows_pcnets_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("PCNETS_DATA_DIR", str(tmp_path))
    assert data_cfg("imagenet_sample").root == f"{tmp_path}/imagenet-sample"
    with pytest.raises(PcnetsError, match="fetch-sample"):
        data.dataset_samples(data_cfg("imagenet_sample"))


# Datasets and loaders


def test_folder_dataset_applies_the_transform_and_keeps_keys(tmp_path):
    make_tree(tmp_path)
    dataset = data.build_dataset(folder_cfg(tmp_path), to_tensor)
    image, label = dataset[1]
    assert image.shape == (3, 10, 12) and label == 1
    assert image[0].max().item() == pytest.approx(40 / 255)
    assert dataset.keys[1] == "val/n002/0.png"
    assert dataset.samples[1] == (str(tmp_path / "val/n002/0.png"), 1)
    _, _, index = data.WithIndex(dataset)[3]
    assert index == 3


def test_synthetic_is_deterministic_and_sized_by_config():
    cfg = data_cfg("synthetic", num_images=10, size=8, num_classes=5, seed=3)
    a, b = data.build_dataset(cfg, None), data.build_dataset(cfg, None)
    assert len(a) == 10
    assert torch.equal(a[4][0], b[4][0]) and a.targets == b.targets
    assert a[4][0].shape == (3, 8, 8) and 0 <= a[4][0].min() and a[4][0].max() <= 1
    assert set(a.targets) <= set(range(5)) and len(set(a.targets)) > 1
    assert not torch.equal(a[4][0], a[5][0])
    assert not torch.equal(data.build_dataset(cfg, None, split="train")[4][0], a[4][0])
    limited = data.build_dataset(data_cfg("synthetic", num_images=10, size=8, limit=3), None)
    assert limited.keys == ["synthetic/0000000", "synthetic/0000001", "synthetic/0000002"]
    with pytest.raises(PcnetsError, match="no image files"):
        data.dataset_samples(cfg)


def test_loader_batches_and_seeded_shuffle():
    cfg = data_cfg("synthetic", num_images=10, size=4, num_classes=5, batch_size=4)
    dataset = data.build_dataset(cfg, None)
    loader = loading.build_loader(dataset, cfg, "cpu")
    assert [len(y) for _, y in loader] == [4, 4, 2]
    assert loader.pin_memory is False
    first = [y.tolist() for _, y in loading.build_loader(dataset, cfg, "cpu", shuffle=True, seed=1)]
    again = [y.tolist() for _, y in loading.build_loader(dataset, cfg, "cpu", shuffle=True, seed=1)]
    assert first == again and sorted(sum(first, [])) == sorted(dataset.targets)


def test_loader_with_workers_reads_images(tmp_path):
    make_tree(tmp_path)
    cfg = folder_cfg(tmp_path, batch_size=4, workers=2)
    labels = [
        y.tolist() for _, y in loading.build_loader(data.build_dataset(cfg, to_tensor), cfg, "cpu")
    ]
    assert labels == [[0, 1, 2, 0], [1, 2, 0, 1], [2]]


def test_shard_sampler_covers_every_item_once_without_padding():
    shards = [list(loading.ShardSampler(10, r, 3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(10))
    assert [len(s) for s in shards] == [4, 3, 3]


# Fetching the sample


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served_zip(tmp_path):
    """A loopback server holding a zip shaped like the imagenet-sample-images repository."""
    site = tmp_path / "site"
    site.mkdir()
    buffer = io.BytesIO()
    sizes = {
        "n01440764_tench": (400, 300),
        "n01443537_goldfish": (200, 512),
        "n15075141_toilet_tissue": (150, 100),
    }
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("imagenet-sample-images-master/README.md", "not an image")
        for name, size in sizes.items():
            img = io.BytesIO()
            Image.new("RGB", size, (200, 100, 50)).save(img, "JPEG")
            zf.writestr(f"imagenet-sample-images-master/{name}.JPEG", img.getvalue())
    (site / "master.zip").write_bytes(buffer.getvalue())
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_sample_from_a_loopback_server_builds_the_layout(served_zip, tmp_path):
    dest = tmp_path / "data" / "imagenet-sample"
    assert data.fetch_sample(dest, f"{served_zip}/master.zip", timeout=10) == 3
    files = sorted(p.relative_to(dest).as_posix() for p in dest.glob("val/*/*"))
    assert files == [
        "val/n01440764/n01440764_tench.JPEG",
        "val/n01443537/n01443537_goldfish.JPEG",
        "val/n15075141/n15075141_toilet_tissue.JPEG",
    ]
    sizes = [Image.open(dest / f).size for f in files]
    assert sizes == [(341, 256), (256, 655), (384, 256)]
    assert not list(dest.parent.glob(".*"))  # no temp file or staging folder left behind
    cfg = data_cfg("imagenet_sample", root=str(dest), num_classes=3, split="all")
    # a class subset keeps ImageNet's indices: toilet tissue is class 999, not 2
    assert [label for _, label in data.dataset_samples(cfg)] == [0, 1, 999]
    offline = tmp_path / "offline" / "imagenet-sample"
    assert data.fetch_sample(offline, "unused", archive=tmp_path / "site" / "master.zip") == 3
    assert Image.open(offline / files[0]).size == (341, 256)


def test_fetch_sample_errors_are_one_clear_line(served_zip, tmp_path):
    with pytest.raises(PcnetsError, match="could not download.*HTTP 404"):
        data.fetch_sample(tmp_path / "imagenet-sample", f"{served_zip}/missing.zip", timeout=10)
    (tmp_path / "site" / "bad.zip").write_text("not a zip")
    with pytest.raises(PcnetsError, match="not a zip"):
        data.fetch_sample(tmp_path / "imagenet-sample", f"{served_zip}/bad.zip", timeout=10)
    assert not (tmp_path / "imagenet-sample").exists()


def test_cli_fetch_sample_with_unreachable_url_exits_with_one_line(tmp_path):
    from pcnets.cli import app

    url = f"http://127.0.0.1:{free_port()}/master.zip"
    dest = tmp_path / "imagenet-sample"
    result = CliRunner().invoke(app, ["data", "fetch-sample", "--url", url, "--dest", str(dest)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "could not download" in lines[0] and str(dest) in lines[0]
