"""The tuning objective on held-out images (issue 22, item 8): a tune run is trusted only when
its objective falls on images it never stepped on.

``tune.heldout_fraction`` holds out a fixed share of the training split by the hash that decoder
training uses for its own held-out images (``train.val_fraction``), so at the same fraction (0.15
in train=demo and here) the held-out images are those the decoders were not fitted on either.
They are evaluated with the initial and with the tuned values, every sigma, the same noise both
times (seeded per sigma), with the term sizes of the update recorded at each (terms/heldout-*.csv).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset

from pcnets.core.pnet import PredictiveNet
from pcnets.data.noise import add_noise
from pcnets.errors import PcnetsError
from pcnets.experiments.train.data import in_holdout
from pcnets.reporting.term_files import new_sizes, save_cell_terms
from pcnets.runtime.distributed import all_reduce_sum, rank, world_size
from pcnets.runtime.runs import Run, cell_key
from pcnets.runtime.session import Session

PHASES = ("initial", "tuned")


def split_heldout(dataset: Dataset, fraction: float) -> tuple[list[int], list[int]]:
    """(indices to tune on, held-out indices) of ``dataset`` by its items' ids (``keys``);
    nothing is held out at fraction 0, and none may fall in the share of a small dataset."""
    if fraction <= 0:
        return list(range(len(dataset))), []
    keys = getattr(dataset, "keys", None)
    if keys is None:
        raise PcnetsError(
            "tune.heldout_fraction needs a dataset with item ids (a folder dataset); "
            "set tune.heldout_fraction=0 for synthetic images"
        )
    held = [in_holdout(str(k), fraction) for k in keys]
    tuning = [i for i, h in enumerate(held) if not h]
    heldout = [i for i, h in enumerate(held) if h]
    if not tuning:
        raise PcnetsError(
            f"tune.heldout_fraction={fraction} holds out all {len(dataset)} images: lower it"
        )
    return tuning, heldout


@torch.no_grad()
def heldout_rows(
    session: Session,
    pnet: PredictiveNet,
    run: Run,
    phase: str,
    values: dict,
    images: Subset,
    sigmas: list[float],
    timesteps: int,
    kind: str,
    batch: int,
    seed: int,
) -> list[dict]:
    """The objective (``kind``: CE at T, or mean CE over t = 1..T) and the accuracy at T of the
    held-out ``images`` with hyperparameters ``values``, one row per sigma; records the cell
    (resumable) and its term sizes. This process takes every world_size-th batch."""
    key = cell_key(heldout=phase)
    if all_reduce_sum(int(run.writer and run.is_done(key))) > 0:  # rank 0 reads the folder
        return []
    pnet.set_hyperparameters(beta=values["beta"], lam=values["lam"], alpha=values["alpha"])
    names, rows = list(pnet.encoder_names), []
    for k, sigma in enumerate(sigmas):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + 7919 * (k + 1))
        sizes = new_sizes(pnet, timesteps)
        loss = correct = 0.0
        for start in range(0, len(images), batch):
            x, y = _batch(images, range(start, min(start + batch, len(images))))
            noise = torch.randn(x.shape, generator=gen)  # drawn by all: the same noise per image
            if (start // batch) % world_size() != rank():
                continue
            steps = sizes.add_steps(
                session.steps(
                    pnet, add_noise(x, sigma, std=pnet.std, noise=noise), timesteps, terms=True
                )
            )
            used = steps[-1:] if kind == "last" or timesteps == 0 else steps[1:]
            y = y.to(steps[-1].logits.device)
            loss += sum(float(F.cross_entropy(s.logits, y, reduction="sum")) for s in used) / len(
                used
            )
            correct += int((steps[-1].logits.argmax(1) == y).sum())
        loss, correct = all_reduce_sum([loss, correct])
        sizes.reduce()
        if not math.isfinite(loss):
            raise PcnetsError(f"the held-out objective is not finite at sigma {sigma} ({phase})")
        if run.writer:
            cell, where = f"heldout-{phase}-sigma={sigma:g}", {"condition": phase, "sigma": sigma}
            save_cell_terms(run.path, cell, sizes, names, where)
        total = len(images)
        rows.append(
            {
                "phase": phase,
                "sigma": sigma,
                "heldout_loss": loss / total,
                "correct": int(correct),
                "total": total,
                "accuracy": correct / total,
            }
        )
    run.record(key, rows)
    return rows


def _batch(images: Subset, positions) -> tuple[torch.Tensor, torch.Tensor]:
    items = [images[i] for i in positions]
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])


def heldout_summary(metrics) -> dict | None:
    """hyper.json's "heldout": the images, and per phase (initial, tuned) the objective and the
    accuracy at T, the mean over sigmas and per sigma; None when nothing was held out."""
    if "phase" not in metrics:
        return None
    rows = metrics.dropna(subset=["phase"])
    if set(rows["phase"]) != set(PHASES):
        return None
    out = {"images": int(rows["total"].iloc[0]), "loss": {}, "accuracy": {}, "by_sigma": {}}
    for phase, part in rows.groupby("phase"):
        out["loss"][phase] = float(part["heldout_loss"].mean())
        out["accuracy"][phase] = float(part["accuracy"].mean())
        for r in part.itertuples(index=False):
            pair = [float(r.heldout_loss), float(r.accuracy)]
            out["by_sigma"].setdefault(f"{r.sigma:g}", {})[phase] = pair
    return out
