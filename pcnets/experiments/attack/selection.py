"""The attacked images: chosen once per run (seeded, correct at every timestep as in the
reference code), saved in selection.json so that a resumed run and every process attack the same
images in the same order."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from pcnets.core.pnet import PredictiveNet
from pcnets.errors import PcnetsError
from pcnets.progress import progress as progress_bar
from pcnets.runtime.distributed import all_reduce_sum, world_size
from pcnets.runtime.files import atomic_write
from pcnets.runtime.runs import Run

SELECTION = "selection.json"


@dataclass
class Selection:
    """The attacked images: dataset indices, keys and labels, in the (seeded) order chosen."""

    indices: list[int]
    keys: list[str]
    labels: list[int]
    examined: int
    max_timestep: int
    seed: int

    def save(self, path: Path) -> None:
        """Write selection.json atomically."""
        atomic_write(path, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> Selection:
        """Read a selection.json written by save."""
        return cls(**json.loads(path.read_text()))


def load_images(dataset: Dataset, indices: Sequence[int], device) -> tuple[Tensor, Tensor]:
    """A batch of [0, 1] images and their labels from dataset items."""
    items = [dataset[i] for i in indices]
    images = torch.stack([torch.as_tensor(img) for img, _ in items]).to(device)
    labels = torch.tensor([int(label) for _, label in items], device=device)
    return images, labels


def select_images(
    pnet: PredictiveNet,
    dataset: Dataset,
    count: int,
    max_timestep: int,
    seed: int,
    batch_size: int,
    device,
    progress: bool = True,
    require_correct: bool = True,
) -> Selection:
    """Up to ``count`` images, taken in a seeded random order, that the network classifies
    correctly at every timestep 0..max_timestep (the reference code's rule). Without
    ``require_correct`` any image qualifies (smoke runs with random weights)."""
    if len(dataset) == 0:
        raise PcnetsError("the dataset is empty; check data.split and data.limit")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    chosen: list[int] = []
    examined = 0
    with progress_bar(total=count, desc="selecting", unit="img", show=progress) as bar:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            images, labels = load_images(dataset, batch, device)
            with torch.no_grad():
                logits = pnet.run(images, max_timestep)
            good = torch.stack([out.argmax(1) == labels for out in logits]).all(0)
            good = (good | (not require_correct)).tolist()
            examined += len(batch)
            for index, ok in zip(batch, good, strict=True):
                if ok and len(chosen) < count:
                    chosen.append(index)
                    bar.update(1)
            bar.set_postfix(examined=examined)
            if len(chosen) >= count:
                break
    if not chosen:
        raise PcnetsError(
            f"none of {examined} images is classified correctly at every timestep "
            f"0..{max_timestep}; check the backbone weights, pc.decoders and the data"
        )
    keys = _keys(dataset)
    return Selection(
        chosen, [keys[i] for i in chosen], _labels(dataset, chosen), examined, max_timestep, seed
    )


def _keys(dataset: Dataset) -> list[str]:
    return list(getattr(dataset, "keys", [str(i) for i in range(len(dataset))]))


def _labels(dataset: Dataset, indices: Sequence[int]) -> list[int]:
    """Labels from the dataset's targets list when it has one (no image decoding)."""
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return [int(targets[i]) for i in indices]
    return [int(dataset[i][1]) for i in indices]


def shared_selection(
    run: Run, pnet: PredictiveNet, dataset: Dataset, spec, device, progress: bool
) -> Selection:
    """Rank 0 loads selection.json or selects and saves it; every process gets the indices."""
    path = run.path / SELECTION
    selection = None
    if run.writer:
        if path.is_file():
            selection = Selection.load(path)
            keys = _keys(dataset)
            stale = any(
                i >= len(keys) or keys[i] != k
                for i, k in zip(selection.indices, selection.keys, strict=True)
            )
            if stale:
                raise PcnetsError(
                    f"{path} names images that the dataset no longer holds at those positions; "
                    "delete the run folder or choose another --out"
                )
        else:
            selection = select_images(
                pnet,
                dataset,
                spec.num_images,
                max(spec.timesteps),
                spec.seed,
                spec.batch_size,
                device,
                progress,
                require_correct=spec.select == "correct",
            )
            selection.save(path)
    if world_size() == 1:
        return selection
    packed = np.zeros(spec.num_images + 2, dtype=np.int64)
    if selection is not None:
        packed[0], packed[1] = len(selection.indices), selection.examined
        packed[2 : 2 + len(selection.indices)] = selection.indices
    packed = all_reduce_sum(packed)
    if selection is not None:
        return selection
    indices = [int(i) for i in packed[2 : 2 + int(packed[0])]]
    keys = _keys(dataset)
    return Selection(
        indices,
        [keys[i] for i in indices],
        _labels(dataset, indices),
        int(packed[1]),
        max(spec.timesteps),
        spec.seed,
    )
