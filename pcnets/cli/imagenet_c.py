"""`pcnets make-imagenet-c`: write an ImageNet-C tree from an ImageNet val folder."""

from __future__ import annotations

from pathlib import Path

import typer

from pcnets.cli.common import command, echo
from pcnets.errors import PcnetsError


@command("make-imagenet-c")
def make_imagenet_c(
    val_root: Path = typer.Option(
        ..., "--val-root", help="ImageNet val folder: <val-root>/<wnid>/<image>."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Tree to write: <out>/<corruption>/<severity>/<wnid>/<image>."
    ),
    names: str = typer.Option(
        "all",
        "--names",
        help="Comma-separated corruptions, or all (19), benchmark (15), extra (4).",
    ),
    severities: str = typer.Option("1,2,3,4,5", "--severities", help="Comma-separated, 1..5."),
    workers: int = typer.Option(2, "--workers", help="Processes; 0 runs in this one."),
    limit: int | None = typer.Option(
        None, "--limit", help="Only this many images, spread over the classes."
    ),
    seed: int = typer.Option(0, "--seed", help="Base seed; each image x cell gets its own."),
    size: int = typer.Option(224, "--size", help="Crop size (Resize size*256/224, CenterCrop)."),
    lossless: bool = typer.Option(
        False, "--lossless", help="Save PNG instead of JPEG quality 85 (the released format)."
    ),
) -> None:
    """Corrupt ImageNet val images into an ImageNet-C tree; rerun to resume an interrupted run.
    Prints each corruption's CPU seconds per image and images/s per core, and writes them to
    <out>/timing.csv (the files written in this run)."""
    from pcnets.data.imagenet_c_layout import JPEG_QUALITY
    from pcnets.data.imagenet_c_make import make_imagenet_c as make
    from pcnets.data.imagenet_c_make import timing_csv
    from pcnets.runtime import locks
    from pcnets.runtime.files import atomic_write

    if out.exists() and not out.is_dir():
        raise PcnetsError(f"--out {out} is a file; make-imagenet-c writes a folder")
    out.mkdir(parents=True, exist_ok=True)
    locks.acquire(out)  # one make-imagenet-c per tree: a second one is refused in one line
    try:
        counts = make(
            val_root,
            out,
            names=names,
            severities=severities,
            workers=workers,
            size=size,
            seed=seed,
            limit=limit,
            jpeg_quality=None if lossless else JPEG_QUALITY,
        )
    finally:
        locks.release(out)
    for t in counts.timing:
        echo(
            f"{t.name}: {t.images} images, {t.seconds_per_image:.4f} s per image, "
            f"{t.images_per_second:.1f} images/s per core (CPU time, corrupt + save)"
        )
    if counts.timing:
        atomic_write(out / "timing.csv", timing_csv(counts.timing), fsync=False)
    echo(f"wrote {counts.written} images, {counts.skipped} were already there: {out}")
