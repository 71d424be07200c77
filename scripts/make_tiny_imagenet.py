"""Write a tiny ImageNet-like folder (train/ and val/, 2 classes, random JPEGs) for smoke runs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

WNIDS = ("n01440764", "n01443537")


def main(root: Path, per_class: int = 2, size: int = 72, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for wnid in WNIDS:
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG", quality=90)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
