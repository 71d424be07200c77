"""Datasets: ImageNet on disk, the 1000-image sample (with its fixed split), and synthetic images.

Image datasets take the backbone's transform (PIL image -> [0, 1] tensor) and never normalise:
the PredictiveNet does that, so noise, corruptions and attacks work on pixels.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

import torch
from omegaconf import DictConfig
from torch.utils.data import Dataset

from pcnets.data.classes import class_labels
from pcnets.data.images import apply_policy, open_rgb
from pcnets.data.subsets import record, stratified_subset
from pcnets.errors import PcnetsError, suggest

KINDS = ("folder", "synthetic")
SPLITS = ("all", "decoders", "eval")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SAMPLE_FILE = re.compile(r"^(n\d{8})_.+\.jpe?g$", re.IGNORECASE)


def hash_split(name: str) -> str:
    """'decoders' or 'eval' for a file name: a fixed, machine-independent half-and-half split."""
    return "decoders" if hashlib.sha256(name.encode("utf-8")).digest()[0] % 2 == 0 else "eval"


def _cfg(data_cfg: DictConfig, key: str, default=None):
    value = data_cfg.get(key, default)
    return default if value is None else value


def _kind(data_cfg: DictConfig) -> str:
    kind = str(_cfg(data_cfg, "kind", "folder"))
    if kind not in KINDS:
        raise PcnetsError(f"unknown data.kind={kind!r}{suggest(kind, KINDS)}; use one of {KINDS}")
    return kind


def effective_split(data_cfg: DictConfig, split: str) -> str:
    """The hash half to keep: data.train_split for training ('train'), data.split for what the
    evaluations read ('val'), so sample-trained decoders are never evaluated on their images."""
    key = "train_split" if split == "train" else "split"
    chosen = str(_cfg(data_cfg, key, "all"))
    if chosen not in SPLITS:
        raise PcnetsError(f"unknown data.{key}={chosen!r}{suggest(chosen, SPLITS)}; use {SPLITS}")
    return chosen


def _limit(data_cfg: DictConfig) -> int | None:
    limit = data_cfg.get("limit")
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise PcnetsError(f"data.limit must be a positive whole number or null, got {limit!r}")
    return limit


def _folder(data_cfg: DictConfig, split: str) -> str:
    folders = _cfg(data_cfg, "folders", {})
    if split not in ("train", "val"):
        raise PcnetsError(f"unknown dataset split {split!r}; use 'train' or 'val'")
    return str(folders.get(split, split))


def _root(data_cfg: DictConfig) -> Path:
    root = data_cfg.get("root")
    if root in (None, "", "???"):
        raise PcnetsError(
            "data.root is not set: pass data.root=/path/to/imagenet "
            "(a folder with train/<wnid>/<image> and val/<wnid>/<image>)"
        )
    root = Path(str(root)).expanduser()
    if not root.is_dir():
        hint = (
            "run `pcnets data fetch-sample`, or set PCNETS_DATA_DIR to the folder holding it"
            if data_cfg.get("url")
            else "check data.root"
        )
        raise PcnetsError(f"data folder not found: {root} ({hint})")
    return root


def _scan(root: Path, folder: str, num_classes: int | None) -> list[tuple[str, int]]:
    """(path relative to root, label) for every image under root/folder/<wnid>/, checked first;
    labels are ImageNet indices for wnid folders (data.classes)."""
    split_dir = root / folder
    if not split_dir.is_dir():
        raise PcnetsError(
            f"no {folder}/ folder in {root} (expected {split_dir}/<wnid>/<image>); check data.root"
        )
    with os.scandir(split_dir) as entries:
        listed = [(e.name, e.is_dir()) for e in entries if not e.name.startswith(".")]
    classes = sorted(name for name, is_dir in listed if is_dir)
    if not classes and any(_is_image(name) for name, _ in listed):
        raise PcnetsError(
            f"{split_dir} holds images directly, not class folders <wnid>/<image>: sort them "
            "into class folders (torchvision.datasets.ImageNet(root, split=...) does it)"
        )
    labels = class_labels(split_dir, classes, num_classes)
    samples, empty = [], []
    for label, wnid in zip(labels, classes, strict=True):
        with os.scandir(split_dir / wnid) as entries:
            files = sorted(e.name for e in entries if e.is_file() and _is_image(e.name))
        if not files:
            empty.append(wnid)
        samples.extend((f"{folder}/{wnid}/{name}", label) for name in files)
    if empty:
        more = f" (+{len(empty) - 5} more)" if len(empty) > 5 else ""
        raise PcnetsError(
            f"{len(empty)} empty class folder(s) in {split_dir}: {', '.join(empty[:5])}{more}"
        )
    return samples


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def select_indices(
    keys: Sequence[str], labels: Sequence[int], subset: str, limit: int | None, seed: int = 0
) -> list[int]:
    """Indices kept by the hash split, in class-interleaved order (first image of every class,
    then the second, ...); with `limit`, a seeded class-stratified draw of that many
    (pcnets.data.subsets), never the first N."""
    kept = [i for i, key in enumerate(keys) if subset == "all" or hash_split(_name(key)) == subset]
    seen: dict[int, int] = {}
    rank = []
    for i in kept:
        rank.append(seen.get(labels[i], 0))
        seen[labels[i]] = rank[-1] + 1
    order = [i for _, _, i in sorted(zip(rank, (labels[i] for i in kept), kept, strict=True))]
    if limit is None or limit >= len(order):
        return order
    return stratified_subset(keys, labels, order, limit, seed)


def _name(key: str) -> str:
    return PurePosixPath(key).name


def _folder_items(data_cfg: DictConfig, split: str) -> tuple[Path, list[tuple[str, int]]]:
    root = _root(data_cfg)
    classes = data_cfg.get("num_classes")
    scanned = _scan(root, _folder(data_cfg, split), None if classes is None else int(classes))
    keys = [key for key, _ in scanned]
    labels = [label for _, label in scanned]
    limit, seed = _limit(data_cfg), int(_cfg(data_cfg, "seed", 0))
    order = select_indices(keys, labels, effective_split(data_cfg, split), limit, seed)
    items = [scanned[i] for i in order]
    if limit is not None:
        record(split, [key for key, _ in items])
    return root, readable(root, items, data_cfg)


def readable(root: Path, items: list[tuple[str, int]], data_cfg: DictConfig) -> list:
    """``items`` (key under ``root``, label) after data.check_images and data.on_bad_image:
    unreadable images stop the run in one line, or are left out and recorded (skip)."""
    if not _cfg(data_cfg, "check_images", True):
        return items
    policy = str(_cfg(data_cfg, "on_bad_image", "stop"))
    skip = apply_policy(root, [key for key, _ in items], policy)
    return [item for item in items if item[0] not in skip]


def dataset_samples(data_cfg: DictConfig, split: str = "val") -> list[tuple[str, int]]:
    """(image path, label) of a folder dataset after data.split and data.limit, in dataset order."""
    if _kind(data_cfg) != "folder":
        raise PcnetsError("data=synthetic has no image files; use data=imagenet or imagenet_sample")
    root, items = _folder_items(data_cfg, split)
    return [(str(root / key), label) for key, label in items]


class ImageFiles(Dataset):
    """Images from class folders: (transform(image), label); `keys` are paths relative to root."""

    def __init__(self, root: Path, items: Sequence[tuple[str, int]], transform: Callable | None):
        self.root = Path(root)
        self.keys = [key for key, _ in items]
        self.targets = [label for _, label in items]
        self.transform = transform

    @property
    def samples(self) -> list[tuple[str, int]]:
        """(absolute path, label) per item, as torchvision's ImageFolder has them."""
        return [(str(self.root / k), t) for k, t in zip(self.keys, self.targets, strict=True)]

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int):
        image = open_rgb(self.root / self.keys[index])
        return (self.transform(image) if self.transform else image), self.targets[index]


class SyntheticImages(Dataset):
    """Random [0, 1] images with random labels; item i is the same on every call and machine."""

    def __init__(self, indices: Sequence[int], size: int, num_classes: int, seed: int):
        self.indices = list(indices)
        self.size = size
        self.seed = seed
        self.keys = [f"synthetic/{i:07d}" for i in self.indices]
        self.targets = [self._label(i, num_classes) for i in self.indices]

    def _label(self, i: int, num_classes: int) -> int:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        return int(torch.randint(num_classes, (1,), generator=gen))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.indices[index] + 7919)
        return torch.rand(3, self.size, self.size, generator=gen), self.targets[index]


def build_dataset(data_cfg: DictConfig, transform: Callable | None, split: str = "val") -> Dataset:
    """The dataset that data_cfg describes: ImageNet `split` ('train' | 'val'), after split + limit.

    `transform` is the backbone's (pnet.transform); synthetic images need none and ignore it.
    """
    if _kind(data_cfg) == "synthetic":
        count = int(_cfg(data_cfg, "num_images", 64))
        keys = [f"synthetic/{i:07d}" for i in range(count)]
        subset = effective_split(data_cfg, split)
        # synthetic images are exchangeable random draws: a limit keeps the first N
        order = select_indices(keys, [0] * count, subset, None)[: _limit(data_cfg)]
        return SyntheticImages(
            sorted(order),
            size=int(_cfg(data_cfg, "size", 224)),
            num_classes=int(_cfg(data_cfg, "num_classes", 1000)),
            seed=int(_cfg(data_cfg, "seed", 0)) + (0 if split == "val" else 1),
        )
    root, items = _folder_items(data_cfg, split)
    return ImageFiles(root, items, transform)
