"""(image, label, index) items: an evaluation or analysis knows which image each output is for,
so it can seed per image and file every prediction under the image's key."""

from __future__ import annotations

import os
from pathlib import Path

from torch.utils.data import Dataset


def image_key(path: str | os.PathLike) -> str:
    """The seed key of an image: '<wnid>/<file name>', the same wherever the val tree lives."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}"


def image_keys(dataset: Dataset) -> list[str]:
    """Stable per-image ids: the dataset's `keys`, else '<wnid>/<file>' of its `samples`."""
    if hasattr(dataset, "keys"):
        return list(dataset.keys)
    return [image_key(path) for path, _ in dataset.samples]


class WithIndex(Dataset):
    """A dataset returning (image, label, index), with the wrapped dataset's `keys` and `targets`
    (labels are read from `targets` when it has them, so no image is loaded to list them)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.keys = image_keys(dataset)
        targets = getattr(dataset, "targets", None)
        self.targets = list(targets) if targets is not None else None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        return image, label, index
