"""One cell of the sweep: every batch of this process attacked by one attack at (eps, T), the
counts summed over processes. Successes are kept per image (hits.json), and an image that an
attack fooled at a smaller eps counts as fooled at every larger one (the larger ball holds the
smaller one's adversarial image), so no row can fall with eps."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm import tqdm

from pcnets.core.pnet import PredictiveNet
from pcnets.experiments.attack import attacks, sign
from pcnets.experiments.attack.selection import Selection, load_images
from pcnets.experiments.attack.spec import AttackSpec
from pcnets.intervals import wilson_interval
from pcnets.reporting.terms import TermSizes
from pcnets.runtime.distributed import all_reduce_sum
from pcnets.runtime.files import atomic_write
from pcnets.runtime.peak_memory import PeakMemory
from pcnets.runtime.runs import Run

HITS = "hits.json"


def read_hits(run: Run, key: str | None, shape: tuple[int, ...]) -> np.ndarray:
    """The per-image (success, fooled) masks of a finished cell, on every process (zeros when
    there is no such cell)."""
    masks = np.zeros(shape, dtype=np.int64)
    path = run.path / HITS
    if key is not None and run.writer and path.is_file():
        entry = json.loads(path.read_text()).get(key)
        for j, row in enumerate(entry or []):
            for kind, positions in enumerate(row):
                masks[j, kind, positions] = 1
    return all_reduce_sum(masks)


def save_hits(run: Run, key: str, masks: np.ndarray) -> None:
    """Add one cell's masks to hits.json (rank 0; before the cell is recorded as finished)."""
    if not run.writer:
        return
    path = run.path / HITS
    saved = json.loads(path.read_text()) if path.is_file() else {}
    saved[key] = [[np.flatnonzero(kind).tolist() for kind in row] for row in masks]
    atomic_write(path, json.dumps(saved))


def attack_cell(
    pnet: PredictiveNet,
    model: nn.Module,
    dataset: Dataset,
    selection: Selection,
    mine: list[tuple[int, list[int]]],
    spec: AttackSpec,
    cell: tuple[str, int, float],
    device,
    targets_of: Callable[[Tensor], Tensor | None],
    earlier: np.ndarray,
    bar: tqdm,
    sizes: TermSizes | None = None,
) -> tuple[list[dict], np.ndarray]:
    """Attack this process's batches at cell (attack, t, eps); the t=0 cell also evaluates its
    images (made on the feedforward model) at every timestep: the transfer rows. ``earlier``
    holds the masks of the same attack and t at the next smaller eps. With ``sizes``, the term
    sizes of the adversarial images' dynamics are added to it (summed over the processes)."""
    name, t, eps = cell
    targeted = spec.targeted_for(name)
    evaluated = spec.timesteps if t == 0 else (t,)
    n = len(selection.indices)
    masks = np.zeros((len(evaluated), 2, n), dtype=np.int64)  # success, fooled per image
    sums = np.zeros(3)  # images, sum of L-inf, sum of L2
    peak = 0.0
    start = time.time()
    for b, positions in mine:
        images, labels = load_images(dataset, [selection.indices[p] for p in positions], device)
        targets = targets_of(labels) if targeted else None
        seed = attacks.batch_seed(spec.seed, eps, b)
        with PeakMemory(device) as peak_memory:
            adv = attacks.attack_images(model, images, labels, spec, eps, seed, targets, name)
        peak = max(peak, peak_memory.peak / len(positions))
        with torch.no_grad():
            if sizes is None:
                logits = pnet.run(adv, max(evaluated))
            else:
                steps = sizes.add_steps(pnet.steps(adv, max(evaluated), terms=True))
                logits = [step.logits for step in steps]
        for j, when in enumerate(evaluated):
            masks[j, 0, positions] = (
                sign.succeeded(logits[when], labels, targets, targeted).cpu().numpy()
            )
            masks[j, 1, positions] = (logits[when].argmax(1) != labels).cpu().numpy()
        delta = (adv - images).flatten(1).double()
        sums += [len(positions), float(delta.abs().amax(1).sum()), float(delta.norm(dim=1).sum())]
        bar.update(len(positions))
    masks = np.maximum(all_reduce_sum(masks), earlier[: len(evaluated)])
    if sizes is not None:
        sizes.reduce()
    sums = all_reduce_sum(sums)
    seconds = time.time() - start
    total = int(round(sums[0]))
    common = {
        "attack": name,
        "targeted": targeted,
        "eps": eps,
        "total": total,
        "linf_mean": sums[1] / max(total, 1),
        "l2_mean": sums[2] / max(total, 1),
    }
    rows = []
    for j, when in enumerate(evaluated):
        success, fooled = (int(v) for v in masks[j].sum(1))
        low, high = wilson_interval(success, total)
        row = {
            "kind": "unrolled" if when == t else "transfer",
            "timestep": when,
            "success": success,
            "fooled": fooled,
            "success_rate": success / max(total, 1),
            "success_low": low,
            "success_high": high,
            **common,
        }
        if when == t:
            rows.append(
                {**row, "seconds": round(seconds, 2), "peak_mb_per_image": round(peak / 2**20, 1)}
            )
        if t == 0:
            rows.append({**row, "kind": "transfer", "seconds": None, "peak_mb_per_image": None})
    return rows, masks
