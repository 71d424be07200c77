"""ImageNet-C's files: the val images a tree is made from, where each file of a tree lies
(<root>/<corruption>/<severity>/<wnid>/<image>), and the pixels of the release (its Resize 256 /
CenterCrop 224 preprocessing, its JPEG quality and the JPEG round trip).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from torchvision import transforms
from torchvision.datasets.folder import IMG_EXTENSIONS

from pcnets.data.corruptions import MIN_SIZE
from pcnets.data.subsets import stratified_subset
from pcnets.errors import PcnetsError

JPEG_QUALITY = 85  # the released ImageNet-C files are JPEG at this quality


def preprocess(size: int = 224) -> Callable[[Image.Image], Image.Image]:
    """ImageNet-C's preprocessing: Resize(256) then CenterCrop(224), scaled for other sizes."""
    check_size(size)
    return transforms.Compose(
        [transforms.Resize(round(size * 256 / 224)), transforms.CenterCrop(size)]
    )


def check_size(size: int) -> None:
    if size < MIN_SIZE:
        raise PcnetsError(f"image size must be at least {MIN_SIZE} pixels, got {size}")


def is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS) and not name.startswith(".")


def val_images(val_root: str | os.PathLike, limit: int | None = None, seed: int = 0) -> list[str]:
    """'<wnid>/<file>' of every image in an ImageFolder val tree, class-interleaved (the first
    image of every class, then the second, ...); a `limit` draws the seeded class-stratified
    subset that data.limit draws (pcnets.data.subsets), the same images."""
    root = Path(val_root).expanduser()
    layout = "expected <val-root>/<wnid>/<image>"
    if not root.is_dir():
        raise PcnetsError(f"ImageNet val folder not found: {root} ({layout})")
    if limit is not None and limit < 1:
        raise PcnetsError(f"limit must be a positive number of images, got {limit}")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    per_class = [sorted(e.name for e in os.scandir(root / c) if is_image(e.name)) for c in classes]
    if not any(per_class):
        raise PcnetsError(f"no images in class folders under {root} ({layout})")
    depth = max(len(files) for files in per_class)
    keys = [
        f"{wnid}/{files[rank]}"
        for rank in range(depth)
        for wnid, files in zip(classes, per_class, strict=True)
        if rank < len(files)
    ]
    if limit is None or limit >= len(keys):
        return keys
    index = {wnid: i for i, wnid in enumerate(classes)}
    labels = [index[k.split("/")[0]] for k in keys]
    return [keys[i] for i in stratified_subset(keys, labels, range(len(keys)), limit, seed)]


def file_suffix(jpeg_quality: int | None) -> str:
    return ".JPEG" if jpeg_quality else ".png"  # .JPEG keeps the released file names


def output_path(out_root: Path, name: str, severity: int, key: str, suffix: str) -> Path:
    wnid, file_name = key.split("/")
    return out_root / name / str(severity) / wnid / (Path(file_name).stem + suffix)


def jpeg_roundtrip(image: Image.Image, quality: int = JPEG_QUALITY) -> Image.Image:
    """The image as it reads back after saving as JPEG (the released files' compression)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def to_tensor(image: Image.Image):
    return transforms.functional.to_tensor(image)
