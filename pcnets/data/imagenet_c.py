"""ImageNet-C: make it from ImageNet val, check a tree on disk, and read it as torch Datasets.

The layout is the released one, <root>/<corruption>/<severity>/<wnid>/<image>. Images are
preprocessed as ImageNet-C was (Resize 256, CenterCrop 224), corrupted with a seed per image x
corruption x severity (corruptions.cell_seed, keyed by "<wnid>/<file name>"), and saved as
JPEG quality 85 like the release (jpeg_quality=None saves lossless PNG). CorruptedDataset makes
the same pixels on the fly, so `corruptions.source=generate` and a generated folder agree.
The fork's corruptions follow the original code but are not all pixel-equal to the download
(motion_blur and frost were reimplemented): for the paper's numbers, use the download.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from pcnets.data.corruptions import (
    MIN_SIZE,
    SEVERITIES,
    cell_seed,
    check_name,
    check_severity,
    corrupt,
    resolve_names,
    resolve_severities,
)
from pcnets.data.indexed import image_key
from pcnets.errors import PcnetsError
from pcnets.progress import progress as bar_of

JPEG_QUALITY = 85  # the released ImageNet-C files are JPEG at this quality
SOURCES = ("generate", "folder")
_LIST_AT_MOST = 20  # entries per kind of problem in check_tree's message


class Timing(NamedTuple):
    """CPU time one corruption took in a make_imagenet_c run, over its severities: one core's
    seconds per image (process CPU time, so the number of workers does not change it)."""

    name: str
    images: int
    corrupt_s: float
    save_s: float

    @property
    def seconds_per_image(self) -> float:
        return (self.corrupt_s + self.save_s) / max(self.images, 1)

    @property
    def images_per_second(self) -> float:
        """Images per second per core, corrupting and saving."""
        total = self.corrupt_s + self.save_s
        return self.images / total if total > 0 else float("inf")


class Counts(NamedTuple):
    """Files make_imagenet_c wrote and files it found already finished, and per corruption the
    CPU time of the files written in this run."""

    written: int
    skipped: int
    timing: tuple[Timing, ...] = ()


def preprocess(size: int = 224) -> Callable[[Image.Image], Image.Image]:
    """ImageNet-C's preprocessing: Resize(256) then CenterCrop(224), scaled for other sizes."""
    _check_size(size)
    return transforms.Compose(
        [transforms.Resize(round(size * 256 / 224)), transforms.CenterCrop(size)]
    )


def _check_size(size: int) -> None:
    if size < MIN_SIZE:
        raise PcnetsError(f"image size must be at least {MIN_SIZE} pixels, got {size}")


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS) and not name.startswith(".")


def val_images(val_root: str | os.PathLike, limit: int | None = None) -> list[str]:
    """'<wnid>/<file>' of every image in an ImageFolder val tree, class-interleaved (the first
    image of every class, then the second, ...) so a `limit` still covers the classes evenly."""
    root = Path(val_root).expanduser()
    layout = "expected <val-root>/<wnid>/<image>"
    if not root.is_dir():
        raise PcnetsError(f"ImageNet val folder not found: {root} ({layout})")
    if limit is not None and limit < 1:
        raise PcnetsError(f"limit must be a positive number of images, got {limit}")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    per_class = [sorted(e.name for e in os.scandir(root / c) if _is_image(e.name)) for c in classes]
    if not any(per_class):
        raise PcnetsError(f"no images in class folders under {root} ({layout})")
    depth = max(len(files) for files in per_class)
    keys = [
        f"{wnid}/{files[rank]}"
        for rank in range(depth)
        for wnid, files in zip(classes, per_class, strict=True)
        if rank < len(files)
    ]
    return keys[:limit]


def _suffix(jpeg_quality: int | None) -> str:
    return ".JPEG" if jpeg_quality else ".png"  # .JPEG keeps the released file names


def _output_path(out_root: Path, name: str, severity: int, key: str, suffix: str) -> Path:
    wnid, file_name = key.split("/")
    return out_root / name / str(severity) / wnid / (Path(file_name).stem + suffix)


def _finished_files(out_root: Path, cells: Iterable[tuple[str, int]], wnids: set[str]) -> set:
    """Paths already written, listed per class folder (far fewer calls than a stat per file)."""
    done = set()
    for name, severity in cells:
        for wnid in wnids:
            folder = out_root / name / str(severity) / wnid
            if folder.is_dir():
                done.update(
                    folder / e.name for e in os.scandir(folder) if not e.name.startswith(".")
                )
    return done


def make_imagenet_c(
    val_root: str | os.PathLike,
    out_root: str | os.PathLike,
    names: str | Iterable[str] | None = None,
    severities: str | Iterable[int] = SEVERITIES,
    workers: int = 2,
    size: int = 224,
    seed: int = 0,
    limit: int | None = None,
    jpeg_quality: int | None = JPEG_QUALITY,
    progress: bool = True,
) -> Counts:
    """Write <out_root>/<corruption>/<severity>/<wnid>/<stem>.JPEG (or .png if jpeg_quality is
    None) for every val image. Resumable: finished files are skipped, and each file is written
    under a temporary name and renamed, so an interrupted run leaves no half file."""
    names, severities = resolve_names(names), resolve_severities(severities)
    if workers < 0:
        raise PcnetsError(f"workers must be 0 (in this process) or more, got {workers}")
    _check_size(size)
    keys = val_images(val_root, limit)
    out_root = Path(out_root).expanduser()
    suffix = _suffix(jpeg_quality)
    cells = [(n, s) for n in names for s in severities]
    done = _finished_files(out_root, cells, {k.split("/")[0] for k in keys})
    tasks, skipped = [], 0
    for key in keys:
        todo = [c for c in cells if _output_path(out_root, *c, key, suffix) not in done]
        skipped += len(cells) - len(todo)
        if todo:
            source = str(Path(val_root).expanduser() / key)
            tasks.append((source, key, todo, str(out_root), size, seed, jpeg_quality))
    bar = bar_of(
        total=len(keys),
        initial=len(keys) - len(tasks),
        unit="img",
        desc="ImageNet-C",
        show=progress,
    )
    written, totals = 0, {name: [0, 0.0, 0.0] for name in names}
    with bar:
        for count, times in _run(tasks, workers):
            written += count
            for name, values in times.items():
                totals[name] = [a + b for a, b in zip(totals[name], values, strict=True)]
            bar.update(1)
    timing = tuple(Timing(n, int(t[0]), t[1], t[2]) for n, t in totals.items() if t[0])
    return Counts(written, skipped, timing)


def timing_csv(timing: Iterable[Timing]) -> str:
    """The per-corruption timing of a run as CSV text (one core's seconds and images/s)."""
    lines = ["corruption,images,corrupt_s,save_s,s_per_image,images_per_s_per_core"]
    for t in timing:
        lines.append(
            f"{t.name},{t.images},{t.corrupt_s:.4f},{t.save_s:.4f},"
            f"{t.seconds_per_image:.5f},{t.images_per_second:.2f}"
        )
    return "\n".join(lines) + "\n"


def _run(tasks: list, workers: int) -> Iterable[tuple[int, dict]]:
    """Files written and their CPU times per task, in this process (workers 0 or 1) or in a
    spawn pool."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(_write_image_cells, tasks)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(tasks)), _init_worker) as pool:
        yield from pool.imap_unordered(_write_image_cells, tasks)


def _init_worker() -> None:
    """Pool workers leave Ctrl-C to the parent (which stops them, with one message, no worker
    tracebacks) and run OpenCV single-threaded, as the workers already fill the cores."""
    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)


def _write_image_cells(task: tuple) -> tuple[int, dict[str, list]]:
    """Load one val image once, then write each corruption x severity still missing for it;
    returns the count and, per corruption, [files, corrupt CPU s, save CPU s]."""
    source, key, cells, out_root, size, seed, jpeg_quality = task
    try:
        with Image.open(source) as img:
            pixels = np.asarray(preprocess(size)(img.convert("RGB")))
    except OSError as err:
        raise PcnetsError(f"cannot read image {source}: {err}") from None
    suffix = _suffix(jpeg_quality)
    times: dict[str, list] = {}
    for name, severity in cells:
        start = time.process_time()
        result = corrupt(pixels, name, severity, seed=cell_seed(seed, key, name, severity))
        corrupted = time.process_time()
        target = _output_path(Path(out_root), name, severity, key, suffix)
        _save_atomically(result, target, jpeg_quality)
        saved = time.process_time()
        row = times.setdefault(name, [0, 0.0, 0.0])
        row[0] += 1
        row[1] += corrupted - start
        row[2] += saved - corrupted
    return len(cells), times


def _save_atomically(pixels: np.ndarray, target: Path, jpeg_quality: int | None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")  # hidden: ImageFolder never lists it
    image = Image.fromarray(pixels)
    if jpeg_quality:
        image.save(temporary, format="JPEG", quality=jpeg_quality, optimize=True)
    else:
        image.save(temporary, format="PNG")
    os.replace(temporary, target)


def jpeg_roundtrip(image: Image.Image, quality: int = JPEG_QUALITY) -> Image.Image:
    """The image as it reads back after saving as JPEG (the released files' compression)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def check_tree(
    root: str | os.PathLike,
    names: str | Iterable[str] | None = None,
    severities: str | Iterable[int] = SEVERITIES,
) -> None:
    """Raise one PcnetsError naming every missing corruption or severity folder, cell without
    class folders, empty class folder and cell whose classes differ, before any work starts."""
    names, severities = resolve_names(names), resolve_severities(severities)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise PcnetsError(
            f"ImageNet-C folder not found: {root} (expected <root>/<corruption>/<severity>/"
            "<wnid>/<image>; download it or make it with `pcnets make-imagenet-c`)"
        )
    problems: dict[str, list[str]] = {
        "missing corruption folders": [],
        "missing severity folders": [],
        "no class folders in": [],
        "empty class folders": [],
        "classes differ from the first cell in": [],
    }
    reference: list[str] | None = None
    for name in names:
        if not (root / name).is_dir():
            problems["missing corruption folders"].append(name)
            continue
        for severity in severities:
            cell = root / name / str(severity)
            if not cell.is_dir():
                problems["missing severity folders"].append(f"{name}/{severity}")
                continue
            classes = _class_folders(cell)
            if not classes:
                problems["no class folders in"].append(f"{name}/{severity}")
                continue
            reference = classes if reference is None else reference
            if classes != reference:
                problems["classes differ from the first cell in"].append(f"{name}/{severity}")
            problems["empty class folders"].extend(
                f"{name}/{severity}/{wnid}" for wnid in classes if not _has_image(cell / wnid)
            )
    found = [f"{kind}: {_short_list(items)}" for kind, items in problems.items() if items]
    if found:
        raise PcnetsError(f"malformed ImageNet-C tree {root}: " + "; ".join(found))


def _class_folders(cell: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(cell) if e.is_dir() and not e.name.startswith("."))


def _has_image(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(e.is_file() and _is_image(e.name) for e in entries)


def _short_list(items: Sequence[str]) -> str:
    more = f" (+{len(items) - _LIST_AT_MOST} more)" if len(items) > _LIST_AT_MOST else ""
    return ", ".join(items[:_LIST_AT_MOST]) + more


def _to_tensor(image: Image.Image):
    return transforms.functional.to_tensor(image)


class ImageNetCFolder(ImageFolder):
    """One corruption x severity cell of an ImageNet-C tree, with ImageFolder semantics (label =
    index of the wnid in sorted order). `classes`, if given (the clean val's wnids), must match.
    The images are already 224x224: the transform should not resize again (default: to [0,1])."""

    def __init__(
        self,
        root: str | os.PathLike,
        name: str,
        severity: int,
        transform: Callable | None = None,
        classes: Sequence[str] | None = None,
    ):
        cell = Path(root).expanduser() / check_name(name) / str(check_severity(severity))
        if not cell.is_dir():
            raise PcnetsError(f"ImageNet-C cell not found: {cell}; check corruptions.root")
        try:
            super().__init__(str(cell), transform=transform or _to_tensor)
        except FileNotFoundError as err:
            raise PcnetsError(f"bad ImageNet-C cell {cell}: {err}") from None
        self.name, self.severity = name, int(severity)
        if classes is not None and list(classes) != self.classes:
            missing = sorted(set(classes) - set(self.classes))
            extra = sorted(set(self.classes) - set(classes))
            raise PcnetsError(
                f"class folders of {cell} do not match the clean val classes (missing: "
                f"{_short_list(missing) or 'none'}; extra: {_short_list(extra) or 'none'})"
            )


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
        self.transform = transform or _to_tensor
        self.pre_transform = pre_transform or preprocess(224)
        self.seed = int(seed)
        self.jpeg_quality = jpeg_quality

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        with Image.open(path) as img:
            pixels = np.asarray(self.pre_transform(img.convert("RGB")))
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
