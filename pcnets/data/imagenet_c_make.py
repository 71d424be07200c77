"""make-imagenet-c: write an ImageNet-C tree from ImageNet val, resumably, in a spawn pool,
with the CPU time each corruption took (Timing, timing_csv).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from pcnets.data.corruptions import (
    SEVERITIES,
    cell_seed,
    corrupt,
    resolve_names,
    resolve_severities,
)
from pcnets.data.imagenet_c_layout import (
    JPEG_QUALITY,
    check_size,
    file_suffix,
    output_path,
    preprocess,
    val_images,
)
from pcnets.data.images import to_rgb
from pcnets.errors import PcnetsError
from pcnets.progress import progress as bar_of


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


def _finished_files(out_root: Path, cells: Iterable[tuple[str, int]], wnids: set[str]) -> set:
    """Paths already written, listed per class folder (far fewer calls than a stat per file).
    Temporary files an interrupted run left are removed on the way (`pcnets make-imagenet-c`
    holds the tree's lock, so no other run is writing them)."""
    done = set()
    for name, severity in cells:
        for wnid in wnids:
            folder = out_root / name / str(severity) / wnid
            if not folder.is_dir():
                continue
            for entry in os.scandir(folder):
                if not entry.name.startswith("."):
                    done.add(folder / entry.name)
                elif entry.name.endswith(".tmp"):
                    Path(entry.path).unlink(missing_ok=True)
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
    check_size(size)
    keys = val_images(val_root, limit)
    out_root = Path(out_root).expanduser()
    suffix = file_suffix(jpeg_quality)
    cells = [(n, s) for n in names for s in severities]
    done = _finished_files(out_root, cells, {k.split("/")[0] for k in keys})
    tasks, skipped = [], 0
    for key in keys:
        todo = [c for c in cells if output_path(out_root, *c, key, suffix) not in done]
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


_PARENT: int | None = None  # in a pool worker: the pid of the process that started it


def _init_worker() -> None:
    """Pool workers leave Ctrl-C to the parent (which stops them, with one message, no worker
    tracebacks), end with it (even after kill -9: the kernel sends SIGTERM on Linux, and
    `orphaned` stops the next image elsewhere) and run OpenCV single-threaded, as the workers
    already fill the cores."""
    import cv2

    global _PARENT
    _PARENT = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _end_with_parent()
    cv2.setNumThreads(1)


def _end_with_parent() -> None:
    """prctl(PR_SET_PDEATHSIG, SIGTERM): this process gets SIGTERM when its parent dies."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: orphaned() still stops the work
        pass


def orphaned() -> bool:
    """True in a pool worker whose parent has died (it was re-parented)."""
    return _PARENT is not None and os.getppid() != _PARENT


def _write_image_cells(task: tuple) -> tuple[int, dict[str, list]]:
    """Load one val image once, then write each corruption x severity still missing for it;
    returns the count and, per corruption, [files, corrupt CPU s, save CPU s]."""
    source, key, cells, out_root, size, seed, jpeg_quality = task
    try:
        with Image.open(source) as img:
            pixels = np.asarray(preprocess(size)(to_rgb(img)))
    except OSError as err:
        raise PcnetsError(f"cannot read image {source}: {err}") from None
    suffix = file_suffix(jpeg_quality)
    times: dict[str, list] = {}
    for name, severity in cells:
        if orphaned():  # the parent was killed: write nothing more
            break
        start = time.process_time()
        result = corrupt(pixels, name, severity, seed=cell_seed(seed, key, name, severity))
        corrupted = time.process_time()
        target = output_path(Path(out_root), name, severity, key, suffix)
        _save_atomically(result, target, jpeg_quality)
        saved = time.process_time()
        row = times.setdefault(name, [0, 0.0, 0.0])
        row[0] += 1
        row[1] += corrupted - start
        row[2] += saved - corrupted
    return sum(row[0] for row in times.values()), times


def _save_atomically(pixels: np.ndarray, target: Path, jpeg_quality: int | None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # hidden (ImageFolder never lists it), and this process's own: runs on one --out never share it
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    image = Image.fromarray(pixels)
    try:
        if jpeg_quality:
            image.save(temporary, format="JPEG", quality=jpeg_quality, optimize=True)
        else:
            image.save(temporary, format="PNG")
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
