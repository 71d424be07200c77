"""Time every corruption x severity on one 224x224 image: imagecorruptions' own (fast=False)
versus pcnets' (fast=True; byte-identical outputs, checked here too), then project the CPU-hours
of a full ImageNet-C tree from the per-image medians.

The calls are interleaved (every round times every cell once, library and pcnets in turn, in
alternating order) and each cell's median over the rounds is kept, so load from other processes
on a shared machine hits both sides alike: read the ratios before the absolute times. Cells
whose pcnets call is the library's own give a ratio near 1, which shows the noise.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_corruptions.py [--rounds 7] [--cold]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pcnets.data.corruptions import BENCHMARK, FAST, NAMES, corrupt, resolve_names

SAMPLE = "imagenet-sample/val/n01440764/n01440764_tench.JPEG"
TREE_IMAGES = 50_000  # ImageNet val
FAST_ON_MAIN = ("glass_blur", "zoom_blur")  # the fast versions before this script's table

# The first call in a new process (what each DataLoader or pool worker pays), severities 1 then 3.
COLD = """
import time, numpy as np
from pcnets.data.corruptions import corrupt
x = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
for s in (1, 3):
    t = time.perf_counter(); corrupt(x, "glass_blur", s, seed=0, fast={fast})
    print(time.perf_counter() - t)
"""


def load_image() -> np.ndarray:
    """A real ImageNet image (Resize 256, CenterCrop 224) if the sample is there, else noise."""
    path = Path(os.environ.get("PCNETS_DATA_DIR", "/work/shared/data")) / SAMPLE
    if path.is_file():
        from pcnets.data.imagenet_c_layout import preprocess

        with Image.open(path) as img:
            return np.asarray(preprocess(224)(img.convert("RGB")))
    return np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)


def one_call(image: np.ndarray, name: str, severity: int, seed: int, fast: bool) -> float:
    start = time.perf_counter()
    corrupt(image, name, severity, seed=seed, fast=fast)
    return time.perf_counter() - start


def jpeg_save(image: np.ndarray) -> float:
    """Seconds to encode one image as make-imagenet-c saves it (JPEG quality 85, optimized)."""
    start = time.perf_counter()
    Image.fromarray(image).save(io.BytesIO(), format="JPEG", quality=85, optimize=True)
    return time.perf_counter() - start


def byte_identical(image: np.ndarray, name: str, severity: int) -> bool:
    return all(
        np.array_equal(
            corrupt(image, name, severity, seed=s, fast=False),
            corrupt(image, name, severity, seed=s, fast=True),
        )
        for s in range(3)
    )


def measure(image: np.ndarray, cells: list[tuple[str, int]], rounds: int) -> dict:
    """Median seconds per call of each cell, {(name, severity): (library, pcnets)}."""
    for name, severity in cells:  # compile, fill caches, import
        corrupt(image, name, severity, seed=0, fast=False)
        corrupt(image, name, severity, seed=0, fast=True)
    times = {cell: ([], []) for cell in cells}
    for r in range(rounds):
        for name, severity in cells:
            order = (False, True) if r % 2 == 0 else (True, False)
            for fast in order:
                times[(name, severity)][fast].append(one_call(image, name, severity, r, fast))
    return {cell: tuple(statistics.median(t) for t in pair) for cell, pair in times.items()}


def cold_start(fast: bool) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", COLD.format(fast=fast)], capture_output=True, text=True, check=True
    )
    return [float(line) for line in out.stdout.split()]


def print_cells(medians: dict, same: dict) -> None:
    print(f"{'corruption':18s} {'sev':>3s} {'library':>9s} {'pcnets':>9s} {'speedup':>8s} same")
    for (name, severity), (slow, fast) in medians.items():
        mark = ("yes" if same[(name, severity)] else "NO") if name in FAST else "(library)"
        print(f"{name:18s} {severity:3d} {slow:9.4f} {fast:9.4f} {slow / fast:7.2f}x {mark}")


def per_corruption(medians: dict) -> dict[str, tuple[float, float]]:
    """Mean over the severities of the per-cell medians: (library, pcnets) s per image."""
    names = dict.fromkeys(name for name, _ in medians)
    return {
        name: tuple(
            statistics.fmean(pair[k] for (n, _), pair in medians.items() if n == name)
            for k in (0, 1)
        )
        for name in names
    }


def print_summary(table: dict[str, tuple[float, float]]) -> None:
    print("\nper corruption, mean over severities (s per image, images/s per core):")
    print(
        f"{'corruption':18s} {'library s':>10s} {'pcnets s':>10s} {'lib img/s':>10s} "
        f"{'pcn img/s':>10s} {'speedup':>8s}"
    )
    for name, (slow, fast) in sorted(table.items(), key=lambda item: -item[1][0]):
        print(
            f"{name:18s} {slow:10.4f} {fast:10.4f} {1 / slow:10.1f} {1 / fast:10.1f} "
            f"{slow / fast:7.2f}x"
        )


def print_projection(table: dict[str, tuple[float, float]], save_s: float) -> None:
    """CPU-hours of a 50,000-image tree, 5 severities, from the per-image means."""
    print(
        f"\nprojected CPU-hours for {TREE_IMAGES:,} images x 5 severities (corrupt only; "
        f"+ JPEG save at {save_s * 1000:.1f} ms per file):"
    )
    for label, names in (("15 benchmark", BENCHMARK), ("19 (all)", NAMES)):
        names = [n for n in names if n in table]
        library = sum(table[n][0] for n in names)
        on_main = sum(table[n][1 if n in FAST_ON_MAIN else 0] for n in names)
        ours = sum(table[n][1] for n in names)
        hours = [TREE_IMAGES * 5 * s / 3600 for s in (library, on_main, ours)]
        save_h = TREE_IMAGES * 5 * len(names) * save_s / 3600
        print(
            f"  {label} ({len(names)} corruptions): library {hours[0]:.1f} h, fast glass/zoom "
            f"only {hours[1]:.1f} h, all fast {hours[2]:.1f} h (+{save_h:.1f} h saving)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed calls per cell (median)")
    parser.add_argument("--names", default="all", help="corruptions, e.g. all or fog,snow")
    parser.add_argument("--cold", action="store_true", help="also time glass_blur's first call")
    args = parser.parse_args()
    image = load_image()
    cells = [(name, s) for name in resolve_names(args.names) for s in range(1, 6)]
    same = {cell: byte_identical(image, *cell) for cell in cells if cell[0] in FAST}
    print(f"seconds per 224x224 image, median of {args.rounds} interleaved rounds, one process")
    medians = measure(image, cells, args.rounds)
    print_cells(medians, same)
    table = per_corruption(medians)
    print_summary(table)
    save_s = statistics.median(jpeg_save(image) for _ in range(args.rounds))
    print_projection(table, save_s)
    if args.cold:
        library, ours = cold_start(False), cold_start(True)
        print("glass_blur, first call in a fresh process (compilation or numba cache load):")
        print(f"  severity 1: library {library[0]:.2f} s, pcnets {ours[0]:.2f} s")
        print(f"  then severity 3: library {library[1]:.2f} s, pcnets {ours[1]:.2f} s")


if __name__ == "__main__":
    main()
