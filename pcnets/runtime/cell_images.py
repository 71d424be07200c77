"""Per-image results of one cell of a run folder: <run>/images/<cell>.npz holds every image's key,
label and top-1 prediction at every timestep, from which the bootstrap intervals over images are
computed (by the experiment when it runs, and by reporting when a table is rendered again)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pcnets.runtime.files import atomic_write

IMAGES = "images"  # per-image predictions: <run>/images/<cell>.npz


def save_cell_images(path: Path, keys: Sequence[str], labels, predictions: np.ndarray) -> None:
    """Per-image labels and predictions of one cell as a compressed .npz, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        keys=np.asarray(keys, dtype=str),
        labels=np.asarray(labels, dtype=np.int32),
        predictions=np.asarray(predictions, dtype=np.int32),
    )
    atomic_write(path, buffer.getvalue())


def load_cell_images(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(keys, labels, correct of shape (image, timestep)) from a cell's .npz."""
    with np.load(path) as data:
        keys, labels, predictions = list(data["keys"]), data["labels"], data["predictions"]
    return keys, labels, predictions == labels[:, None]
