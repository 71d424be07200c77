"""Top-1 per timestep under each numerics (fp32 against the fast path), and how loading kept up."""

from __future__ import annotations

import time

import torch
from omegaconf import DictConfig
from torch import Tensor

from pcnets.core.pnet import PredictiveNet
from pcnets.errors import PcnetsError
from pcnets.experiments.bench.timing import _sync
from pcnets.progress import progress as bar_of
from pcnets.runtime.numerics import Numerics, Prefetcher, autocast, prepare


def accuracy_by_timestep(
    pnet: PredictiveNet,
    cfg: DictConfig,
    num: Numerics,
    timesteps: int,
    progress: bool = True,
) -> tuple[list[dict], dict]:
    """Top-1 per timestep on the config's dataset with the numerics ``num``, and how the data
    loading kept up: rows (t, top1, correct, n, predictions) and totals (seconds, images per
    second, seconds and fraction of the time spent waiting for data)."""
    from pcnets.data import build_dataset
    from pcnets.runtime.loading import build_loader

    dataset = build_dataset(cfg.data, pnet.transform, split="val")
    loader = build_loader(dataset, cfg.data, num.device)
    batches = Prefetcher(loader, num)
    correct = torch.zeros(timesteps + 1, dtype=torch.long, device=num.device)
    preds: list[Tensor] = []
    n = 0
    start = time.perf_counter()
    for x, y in bar_of(batches, desc=f"top-1 {num.label}", unit="batch", show=progress):
        with torch.no_grad(), autocast(num):
            logits = pnet.run(x, timesteps)
        top = torch.stack([z.argmax(1) for z in logits])  # [T+1, B]
        correct += (top == y.view(1, -1)).sum(1)
        preds.append(top)
        n += y.shape[0]
    _sync(num.device)
    seconds = time.perf_counter() - start
    if n == 0:
        raise PcnetsError("the dataset is empty: check data.root / data.limit")
    pred_all = torch.cat(preds, 1).cpu()
    correct = correct.cpu()
    rows = [
        {
            "numerics": num.label,
            "t": t,
            "top1": correct[t].item() / n,
            "correct": int(correct[t]),
            "n": n,
            "predictions": pred_all[t],
        }
        for t in range(timesteps + 1)
    ]
    totals = {
        "numerics": num.label,
        "seconds": seconds,
        "images_per_s": n / seconds,
        "data_wait_s": batches.wait_s,
        "data_wait_fraction": batches.wait_s / seconds,
        "n": n,
    }
    return rows, totals


def compare_accuracy(
    cfg: DictConfig, device: torch.device, timesteps: int, nums: list[Numerics], progress: bool
) -> tuple[list[dict], list[dict]]:
    """Top-1 per timestep under each of ``nums`` (the first is the baseline): per-timestep rows
    with the agreement of top-1 predictions with the baseline, and totals."""
    from pcnets.backbones import pnet_from_config

    base = pnet_from_config(cfg, "cpu")
    state = base.state_dict()
    rows, totals, first = [], [], None
    for num in nums:
        pnet = pnet_from_config(cfg, "cpu")
        pnet.load_state_dict(state)
        pnet = prepare(pnet, num)
        r, tot = accuracy_by_timestep(pnet, cfg, num, timesteps, progress)
        first = first or r
        for row, ref in zip(r, first, strict=True):
            row["agreement_with_" + nums[0].label] = (
                (row["predictions"] == ref["predictions"]).float().mean().item()
            )
        rows += r
        totals.append(tot)
        del pnet
    for row in rows:
        row.pop("predictions")
    return rows, totals
