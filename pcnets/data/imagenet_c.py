"""ImageNet-C: make it from ImageNet val, check a tree on disk, and read it as torch Datasets.

The layout is the released one, <root>/<corruption>/<severity>/<wnid>/<image>. Images are
preprocessed as ImageNet-C was (Resize 256, CenterCrop 224), corrupted with a seed per image x
corruption x severity (corruptions.cell_seed, keyed by "<wnid>/<file name>"), and saved as
JPEG quality 85 like the release (jpeg_quality=None saves lossless PNG). CorruptedDataset makes
the same pixels on the fly, so `corruptions.source=generate` and a generated folder agree.
The fork's corruptions follow the original code but are not all pixel-equal to the download
(motion_blur and frost were reimplemented): for the paper's numbers, use the download.

This module holds the datasets of one cell (CorruptedDataset, cell_dataset) and the check of the
`corruptions` config group; the layout and pixels of the files are in imagenet_c_layout, making a
tree in imagenet_c_make, checking and reading one in imagenet_c_tree (all importable from here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from pcnets.data.corruptions import (
    cell_seed,
    check_name,
    check_severity,
    corrupt,
    resolve_names,
    resolve_severities,
)
from pcnets.data.imagenet_c_layout import (
    JPEG_QUALITY,
    jpeg_roundtrip,
    preprocess,
    to_tensor,
)
from pcnets.data.imagenet_c_tree import ImageNetCFolder, check_tree
from pcnets.data.images import to_rgb
from pcnets.data.indexed import image_key
from pcnets.errors import PcnetsError

SOURCES = ("generate", "folder")


class CorruptedDataset(Dataset):
    """Clean val images corrupted on the fly (corruptions.source=generate), in DataLoader workers.
    Item i: load, pre_transform (default: ImageNet-C's Resize/CenterCrop), corrupt with the
    image's cell seed, JPEG round trip as the release (unless jpeg_quality=None), transform
    (default: to a [0, 1] tensor)."""

    def __init__(
        self,
        base_samples: Sequence[tuple[str, int]],
        name: str,
        severity: int,
        transform: Callable | None = None,
        seed: int = 0,
        pre_transform: Callable | None = None,
        jpeg_quality: int | None = JPEG_QUALITY,
    ):
        self.samples = [(str(path), int(label)) for path, label in base_samples]
        self.targets = [label for _, label in self.samples]
        self.name, self.severity = check_name(name), check_severity(severity)
        self.transform = transform or to_tensor
        self.pre_transform = pre_transform or preprocess(224)
        self.seed = int(seed)
        self.jpeg_quality = jpeg_quality

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        with Image.open(path) as img:
            pixels = np.asarray(self.pre_transform(to_rgb(img)))
        seed = cell_seed(self.seed, image_key(path), self.name, self.severity)
        image = Image.fromarray(corrupt(pixels, self.name, self.severity, seed=seed))
        if self.jpeg_quality:
            image = jpeg_roundtrip(image, self.jpeg_quality)
        return self.transform(image), label


def check_config(cfg) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Validate the `corruptions` config group before any work (for source=folder: the whole
    tree) and return its (names, severities)."""
    source = str(cfg.get("source", "generate"))
    if source not in SOURCES:
        raise PcnetsError(f"corruptions.source must be one of {', '.join(SOURCES)}, got {source!r}")
    names = resolve_names(cfg.get("names"))
    severities = resolve_severities(cfg.get("severities"))
    if source == "folder":
        root = cfg.get("root")
        if not root:
            raise PcnetsError(
                "corruptions=folder needs corruptions.root=/path/to/imagenet-c "
                "(or use corruptions=generate to corrupt the val images on the fly)"
            )
        check_tree(root, names, severities)
    return names, severities


def cell_dataset(
    cfg,
    name: str,
    severity: int,
    base_samples: Sequence[tuple[str, int]],
    transform: Callable | None = None,
    classes: Sequence[str] | None = None,
) -> Dataset:
    """The dataset of one corruption x severity cell as the `corruptions` config says: read from
    corruptions.root, or generated from base_samples (the clean val's (path, label) pairs)."""
    if str(cfg.get("source", "generate")) == "folder":
        return ImageNetCFolder(cfg.get("root"), name, severity, transform, classes)
    quality = cfg.get("jpeg_quality", JPEG_QUALITY)
    return CorruptedDataset(
        base_samples,
        name,
        severity,
        transform,
        seed=int(cfg.get("seed", 0)),
        pre_transform=preprocess(int(cfg.get("size", 224))),
        jpeg_quality=int(quality) if quality else None,
    )
