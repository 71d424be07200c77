"""Time glass_blur and zoom_blur on one 224x224 image: imagecorruptions' own versus pcnets' fast
versions (byte-identical outputs, checked here too), warm and in a fresh process.

    .venv/bin/python scripts/bench_corruptions.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pcnets.data.corruptions import corrupt

NAMES = ("glass_blur", "zoom_blur")
SAMPLE = "imagenet-sample/val/n01440764/n01440764_tench.JPEG"

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
        from PIL import Image

        from pcnets.data.imagenet_c import preprocess

        with Image.open(path) as img:
            return np.asarray(preprocess(224)(img.convert("RGB")))
    return np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)


def seconds_per_image(image: np.ndarray, name: str, severity: int, fast: bool, repeats: int):
    corrupt(image, name, severity, seed=0, fast=fast)  # compile / warm caches
    times = []
    for seed in range(repeats):
        start = time.perf_counter()
        corrupt(image, name, severity, seed=seed, fast=fast)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cold_start(fast: bool) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", COLD.format(fast=fast)], capture_output=True, text=True, check=True
    )
    return [float(line) for line in out.stdout.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per cell")
    repeats = parser.parse_args().repeats
    image = load_image()
    print(f"seconds per 224x224 image (median of {repeats}), one process")
    print(f"{'corruption':12s} {'sev':>3s} {'library':>9s} {'pcnets':>9s} {'speedup':>8s} same")
    for name in NAMES:
        for severity in range(1, 6):
            same = all(
                np.array_equal(
                    corrupt(image, name, severity, seed=s, fast=False),
                    corrupt(image, name, severity, seed=s, fast=True),
                )
                for s in range(3)
            )
            slow = seconds_per_image(image, name, severity, False, repeats)
            fast = seconds_per_image(image, name, severity, True, repeats)
            print(
                f"{name:12s} {severity:3d} {slow:9.4f} {fast:9.4f} {slow / fast:7.1f}x "
                f"{'yes' if same else 'NO'}"
            )
    library, ours = cold_start(False), cold_start(True)
    print("glass_blur, first call in a fresh process (compilation or numba cache load):")
    print(f"  severity 1: library {library[0]:.2f} s, pcnets {ours[0]:.2f} s")
    print(f"  then severity 3: library {library[1]:.2f} s, pcnets {ours[1]:.2f} s")


if __name__ == "__main__":
    main()
