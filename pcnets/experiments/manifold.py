"""Convergence to clean representations (METHOD.md section 7, item 4; "manifold projection").

For each image, clean and with Gaussian noise (sigma in normalised space), the correlation distance
1 - pearson(e_n^noisy(t), e_n^clean(t)) per encoder n and timestep t, each e_n flattened per image;
averaged over images with bootstrap intervals and shown relative to t = 0. If the feedback pulls
noisy representations towards the clean ones, the normalised distance falls below 1 as t grows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from pcnets.core.pnet import PredictiveNet
from pcnets.errors import PcnetsError
from pcnets.metrics import bootstrap_means, percentile_interval
from pcnets.runtime.runs import Run, cell_key


def correlation_distance(a: Tensor, b: Tensor) -> Tensor:
    """1 - Pearson correlation between a[i] and b[i], each flattened, in float64: shape [B].

    A constant map has no correlation with anything: its distance is 1 (not NaN).
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} and {tuple(b.shape)}")
    a = a.detach().flatten(1).double()
    b = b.detach().flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    denom = (a.pow(2).sum(1) * b.pow(2).sum(1)).sqrt()
    r = (a * b).sum(1) / denom.clamp(min=torch.finfo(torch.float64).tiny)
    return 1.0 - r


def noise_seed(base_seed: int, image_key: str) -> int:
    """A stable seed for one image's noise (sha256, the same on every machine and run)."""
    text = f"{int(base_seed)}|{image_key}|gaussian"
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def image_noise(keys: list[str], shape: tuple[int, ...], seed: int) -> Tensor:
    """Standard normal noise [B, *shape], one seeded draw per image key: an image gets the same
    noise in every batch and run; every sigma scales the same draw (common random numbers)."""
    return torch.stack(
        [
            torch.randn(shape, generator=torch.Generator().manual_seed(noise_seed(seed, k)))
            for k in keys
        ]
    )


def distances(
    pnet: PredictiveNet, x: Tensor, noise: Tensor, sigmas: list[float], timesteps: int
) -> np.ndarray:
    """Correlation distances, shape (sigma, image, encoder, timestep), of [0,1] images ``x`` with
    ``noise`` * sigma * channel std added, against the clean images, for t = 0..timesteps.

    The clean and noisy copies run as one batch: with per_sample errors each image's dynamics do
    not depend on the batch (under batch_mean they do, as in the reference code).
    """
    b = x.shape[0]
    std = pnet.std.to(x.device, x.dtype)
    noise = noise.to(x.device, x.dtype)
    batch = torch.cat([x] + [x + s * std * noise for s in sigmas])
    out = np.zeros((len(sigmas), b, pnet.num_encoders, timesteps + 1))
    for step in pnet.steps(batch, timesteps, states=True):
        for n, e in enumerate(step.states):
            clean = e[:b]
            for k in range(len(sigmas)):
                noisy = e[(k + 1) * b : (k + 2) * b]
                out[k, :, n, step.t] = correlation_distance(noisy, clean).cpu().numpy()
    return out


def summarize(
    dist: np.ndarray,
    names: list[str],
    sigma: float,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[dict]:
    """Rows per encoder and timestep from distances (image, encoder, timestep): the mean over
    images, and the mean relative to t = 0 (mean(t) / mean(0)), each with a bootstrap interval."""
    dist = np.asarray(dist, dtype=np.float64)
    point = dist.mean(axis=0)
    boot = bootstrap_means(dist, n_resamples, seed)
    low, high = percentile_interval(boot, level)
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = point / point[:, :1]
        nlow, nhigh = percentile_interval(boot / boot[..., :1], level)
    rows = []
    for n, name in enumerate(names):
        for t in range(dist.shape[2]):
            rows.append(
                {
                    "sigma": float(sigma),
                    "encoder": n + 1,
                    "name": name,
                    "timestep": t,
                    "distance": point[n, t],
                    "distance_low": low[n, t],
                    "distance_high": high[n, t],
                    "normalized": norm[n, t],
                    "normalized_low": nlow[n, t],
                    "normalized_high": nhigh[n, t],
                    "images": dist.shape[0],
                }
            )
    return rows


def _sigmas(value) -> list[float]:
    sigmas = list(value) if OmegaConf.is_list(value) or isinstance(value, list) else [value]
    sigmas = [float(s) for s in sigmas]
    if not sigmas or any(not s > 0 for s in sigmas):
        raise PcnetsError(f"manifold.sigmas must be values > 0, got {sigmas}")
    return sigmas


@dataclass
class ManifoldResult:
    """What `pcnets manifold` made: the rows of every sigma, and the run folder."""

    metrics: pd.DataFrame
    run: Run


def manifold(
    cfg: DictConfig,
    pnet: PredictiveNet | None = None,
    run: Run | None = None,
    progress: bool = True,
) -> ManifoldResult:
    """Run the analysis for every sigma of cfg.manifold not yet in the run folder (one pass over
    the images for all pending sigmas, one cell per sigma); writes metrics.csv, table.md and
    manifold.png. Under torchrun each process takes a contiguous shard of the images."""
    from tqdm import tqdm

    from pcnets.backbones import pnet_from_config
    from pcnets.data import WithIndex, build_dataset
    from pcnets.experiments.tune import command_device
    from pcnets.runtime.devices import switch
    from pcnets.runtime.distributed import (
        all_reduce_sum,
        init_distributed,
        rank,
        shard_indices,
        world_size,
    )
    from pcnets.runtime.loading import build_loader

    if "manifold" not in cfg:
        raise PcnetsError("the config has no manifold group; compose with +manifold=default")
    mc = cfg.manifold
    sigmas = _sigmas(mc.sigmas)
    timesteps = int(mc.timesteps)
    if timesteps < 0:
        raise PcnetsError(f"manifold.timesteps must be >= 0, got {timesteps}")
    init_distributed()
    device = command_device(cfg)
    if pnet is None:
        torch.manual_seed(int(cfg.seed))  # untrained decoders: the same random init every run
        pnet = pnet_from_config(cfg, device)
    pnet = pnet.to(device).eval()
    run = run or Run("manifold", cfg)
    names = list(pnet.encoder_names)
    # rank 0 alone reads the run folder: every process learns which sigmas are finished
    done = all_reduce_sum([int(run.writer and run.is_done(cell_key(sigma=s))) for s in sigmas])
    pending = [s for s, d in zip(sigmas, done, strict=True) if d == 0]
    if pending:
        dataset = WithIndex(build_dataset(cfg.data, pnet.transform, split=str(mc.split)))
        if len(dataset) == 0:
            raise PcnetsError("manifold: no images; check data.split / data.limit")
        loader = build_loader(dataset, cfg.data, device, distributed=True)
        amp = switch(cfg.amp, device) and device.type == "cuda"
        shard = shard_indices(len(dataset), rank(), world_size())
        dist = np.zeros((len(pending), len(dataset), pnet.num_encoders, timesteps + 1))
        desc = f"manifold sigma={','.join(f'{s:g}' for s in pending)}"
        show = progress and run.writer
        with tqdm(total=len(shard), desc=desc, unit="img", disable=not show) as bar:
            for x, _, index in loader:
                keys = [dataset.keys[int(i)] for i in index]
                noise = image_noise(keys, tuple(x.shape[1:]), int(cfg.seed))
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    part = distances(pnet, x.to(device), noise, pending, timesteps)
                dist[:, index.numpy()] = part
                bar.update(len(index))
        dist = all_reduce_sum(dist)  # every image's row comes from exactly one process
        if not run.writer:
            return ManifoldResult(pd.DataFrame(), run)
        for k, sigma in enumerate(pending):
            rows = summarize(
                dist[k], names, sigma, int(mc.n_resamples), int(cfg.seed), float(mc.level)
            )
            run.record(cell_key(sigma=sigma), rows)
    if not run.writer:
        return ManifoldResult(pd.DataFrame(), run)
    metrics = run.metrics()
    metrics = metrics[metrics["sigma"].isin(sigmas)]
    run.write_text("table.md", manifold_table(metrics, pnet.name))
    manifold_figure(metrics, run.path / "manifold.png", title=f"{pnet.name}")
    run.finish()
    return ManifoldResult(metrics, run)


# ---- table and figure ----------------------------------------------------------------------


def _ci(point: float, low: float, high: float) -> str:
    return f"{point:.3f} [{low:.3f}, {high:.3f}]"


def manifold_table(metrics: pd.DataFrame, backbone: str = "") -> str:
    """table.md: the normalised distance at the last timestep per sigma and encoder, then the full
    curves per sigma (mean over images relative to t = 0, with 95% bootstrap intervals)."""
    from pcnets.reporting.report import markdown_table

    last_t = int(metrics["timestep"].max())
    n_img = int(metrics["images"].max())
    last = metrics[metrics["timestep"] == last_t]
    summary = last.pivot_table(index="sigma", columns="encoder", values="normalized").reset_index()
    summary.columns = ["sigma"] + [f"e{c}" for c in summary.columns[1:]]
    summary = summary.map(lambda v: f"{v:.3f}" if isinstance(v, float) else v)
    names = metrics.drop_duplicates("encoder").set_index("encoder")["name"].to_dict()
    text = [
        f"Correlation distance 1 - pearson(e_n noisy, e_n clean) of {backbone}, mean over "
        f"{n_img} images, relative to t = 0 (below 1: the noisy representation moved towards the "
        f"clean one). Encoders: " + ", ".join(f"e{k} = {v}" for k, v in names.items()) + ".\n",
        f"At t = {last_t}:\n",
        markdown_table(summary),
        "",
    ]
    for sigma, part in metrics.groupby("sigma"):
        wide = part.assign(
            cell=[
                _ci(a, b, c)
                for a, b, c in zip(
                    part["normalized"],
                    part["normalized_low"],
                    part["normalized_high"],
                    strict=True,
                )
            ]
        ).pivot(index="timestep", columns="encoder", values="cell")
        wide.columns = [f"e{c}" for c in wide.columns]
        d0 = part[part["timestep"] == 0].set_index("encoder")["distance"]
        text += [
            f"sigma = {sigma:g}: relative distance [95% CI]; the distance at t = 0 is "
            + ", ".join(f"e{k} {v:.4f}" for k, v in d0.items())
            + ".\n",
            markdown_table(wide.reset_index()),
            "",
        ]
    return "\n".join(text)


def manifold_figure(metrics: pd.DataFrame, path: Path, title: str = "") -> Path:
    """manifold.png: one panel per sigma, one line per encoder (relative distance, 95% band)."""
    from pcnets.reporting.figures import Curve, Panel, save_panels

    panels = []
    for sigma, part in metrics.groupby("sigma"):
        curves = [
            Curve(
                f"e{enc}",
                line["normalized"],
                line["normalized_low"],
                line["normalized_high"],
                x=line["timestep"],
            )
            for enc, line in part.sort_values("timestep").groupby("encoder")
        ]
        panels.append(
            Panel(
                f"sigma = {sigma:g}",
                curves,
                ylabel="distance to clean / distance at t = 0",
                reference=1.0,
                legend=not panels,
            )
        )
    n_img = int(metrics["images"].max())
    return save_panels(
        path,
        panels,
        f"{title}: noisy vs clean representations, 1 - pearson r per encoder",
        ncols=min(3, len(panels)),
        sharey=True,
        note=f"mean over {n_img} images relative to t = 0; bands: 95% bootstrap intervals",
    )
