"""Convergence to clean representations (METHOD.md section 7, item 4; "manifold projection"),
with two controls: noisy(t) vs clean(0) and clean(t) vs clean(0) (COMPARISONS).

For each image, clean and with Gaussian noise (sigma in normalised space), the correlation distance
1 - pearson(e_n^noisy(t), e_n^clean(t)) per encoder n and timestep t, each e_n flattened per image;
averaged over images with bootstrap intervals and shown relative to t = 0. If the feedback pulls
noisy representations towards the clean ones, the normalised distance falls below 1 as t grows.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from pcnets.core.pnet import PredictiveNet
from pcnets.data import WithIndex, build_dataset
from pcnets.data.noise import add_noise, image_noise
from pcnets.errors import PcnetsError
from pcnets.experiments.eval_cells import open_session
from pcnets.intervals import bootstrap_means, percentile_interval
from pcnets.progress import progress as bar_of
from pcnets.reporting.manifold import COMPARISONS, render
from pcnets.reporting.term_files import new_sizes, records_terms, save_cell_terms
from pcnets.runtime.distributed import all_reduce_sum, is_main, rank, shard_indices, world_size
from pcnets.runtime.loading import build_loader
from pcnets.runtime.runs import Run, cell_key
from pcnets.runtime.session import Result, Session


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


def distances(
    pnet: PredictiveNet,
    x: Tensor,
    noise: Tensor,
    sigmas: list[float],
    timesteps: int,
    controls: bool = False,
    sizes: list | None = None,
):
    """Correlation distances, shape (sigma, image, encoder, timestep), of [0,1] images ``x`` with
    ``noise`` * sigma * channel std added, against the clean images, for t = 0..timesteps.

    The clean and noisy copies run as one batch: with per_sample errors each image's dynamics do
    not depend on the batch (under batch_mean they do, as in the reference code).

    With ``controls``, also the two controls (COMPARISONS[1:]), shape (2, sigma, image, encoder,
    timestep): noisy(t) vs clean(0) and clean(t) vs clean(0). If noisy(t) approaches clean(t)
    only because both drift the same way (towards the decoders' prior), clean(t) moves away from
    clean(0) and noisy(t) does not approach clean(0): convergence is told apart from a common
    drift. With ``sizes`` (a TermSizes per sigma), the term sizes of each sigma's noisy copies
    are added to them.
    """
    b = x.shape[0]
    batch = torch.cat([x] + [add_noise(x, s, std=pnet.std, noise=noise) for s in sigmas])
    out = np.zeros((len(sigmas), b, pnet.num_encoders, timesteps + 1))
    ctrl = np.zeros((2, len(sigmas), b, pnet.num_encoders, timesteps + 1))
    first: list[Tensor] = []
    for step in pnet.steps(batch, timesteps, states=True, terms=sizes is not None):
        for k, part in enumerate(sizes if step.terms is not None else []):
            part.add(step.t, step.terms[:, :, (k + 1) * b : (k + 2) * b])
        for n, e in enumerate(step.states):
            clean = e[:b]
            if step.t == 0:
                first.append(clean.detach().clone())
            for k in range(len(sigmas)):
                noisy = e[(k + 1) * b : (k + 2) * b]
                out[k, :, n, step.t] = correlation_distance(noisy, clean).cpu().numpy()
                if controls:
                    ctrl[0, k, :, n, step.t] = correlation_distance(noisy, first[n]).cpu().numpy()
                    ctrl[1, k, :, n, step.t] = correlation_distance(clean, first[n]).cpu().numpy()
    return (out, ctrl) if controls else out


def summarize(
    dist: np.ndarray,
    names: list[str],
    sigma: float,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    comparison: str = COMPARISONS[0],
) -> list[dict]:
    """Rows per encoder and timestep from distances (image, encoder, timestep): the mean over
    images, and the mean relative to t = 0 (mean(t) / mean(0)), each with a bootstrap interval
    (the relative one is NaN for clean(t) vs clean(0), whose distance at t = 0 is 0)."""
    dist = np.asarray(dist, dtype=np.float64)
    point = dist.mean(axis=0)
    boot = bootstrap_means(dist, n_resamples, seed)
    low, high = percentile_interval(boot, level)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: 0 / 0 at t = 0
        norm = point / point[:, :1]
        nlow, nhigh = percentile_interval(boot / boot[..., :1], level)
    rows = []
    for n, name in enumerate(names):
        for t in range(dist.shape[2]):
            rows.append(
                {
                    "comparison": comparison,
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
    if not sigmas:  # bounds: pcnets.schema
        raise PcnetsError("manifold.sigmas must list at least one sigma, e.g. [0.5, 1.0]")
    return sigmas


@dataclass
class ManifoldResult(Result):
    """What `pcnets manifold` made: the Result (run folder, rows of every sigma, printed lines),
    and the run folder itself."""

    run: Run | None = None


def manifold(
    cfg: DictConfig,
    pnet: PredictiveNet | None = None,
    run: Run | None = None,
    progress: bool = True,
) -> ManifoldResult:
    """Run the analysis for every sigma of cfg.manifold not yet in the run folder (one pass over
    the images for all pending sigmas, one cell per sigma); writes metrics.csv, then table.md,
    manifold.png and summary.csv. Under torchrun each process takes a contiguous shard."""
    if "manifold" not in cfg:
        raise PcnetsError("the config has no manifold group; compose with +manifold=default")
    mc = cfg.manifold
    sigmas = _sigmas(mc.sigmas)
    timesteps = int(mc.timesteps)
    session, pnet = open_session("manifold", cfg, pnet, evaluates=str(mc.split))
    run = session.open_run_folder(run)
    names = list(pnet.encoder_names)
    # rank 0 alone reads the run folder: every process learns which sigmas are finished
    done = all_reduce_sum([int(run.writer and run.is_done(cell_key(sigma=s))) for s in sigmas])
    pending = [s for s, d in zip(sigmas, done, strict=True) if d == 0]
    if pending:
        sizes = (
            [new_sizes(pnet, timesteps) for _ in pending] if records_terms(cfg, "manifold") else []
        )
        dist, ctrl = _distances(session, pnet, pending, timesteps, progress, sizes)
        if run.writer:
            stats = (int(mc.n_resamples), int(cfg.seed), float(mc.level))
            for k, sigma in enumerate(pending):
                rows = summarize(dist[k], names, sigma, *stats)
                for c, comparison in enumerate(COMPARISONS[1:]):
                    rows += summarize(ctrl[c, k], names, sigma, *stats, comparison=comparison)
                if sizes:
                    fields = {"condition": "noise", "sigma": sigma}
                    save_cell_terms(run.path, f"sigma={sigma:g}", sizes[k], names, fields)
                run.record(cell_key(sigma=sigma), rows)
    metrics, summary = pd.DataFrame(), []
    if run.writer:
        metrics = run.metrics()
        metrics = metrics[metrics["sigma"].isin(sigmas)]
        summary = render(run.path)
    session.finish()
    return ManifoldResult(run.path, metrics, summary, run=run)


def _distances(session: Session, pnet, pending, timesteps: int, progress: bool, sizes: list):
    """Distances (sigma, image, encoder, timestep) of every image, gathered over the processes;
    the term sizes of each pending sigma into ``sizes`` (none when it is empty)."""
    cfg = session.cfg
    dataset = WithIndex(build_dataset(cfg.data, pnet.transform, split=str(cfg.manifold.split)))
    if len(dataset) == 0:
        raise PcnetsError("manifold: no images; check data.split / data.limit")
    loader = build_loader(dataset, cfg.data, session.device, distributed=True)
    shard = shard_indices(len(dataset), rank(), world_size())
    dist = np.zeros((len(pending), len(dataset), pnet.num_encoders, timesteps + 1))
    ctrl = np.zeros((2, *dist.shape))
    desc = f"manifold sigma={','.join(f'{s:g}' for s in pending)}"
    show = progress and is_main()
    with bar_of(total=len(shard), desc=desc, unit="img", show=show) as bar:
        for x, _, index in session.batches(loader):
            index = index.cpu().numpy()
            keys = [dataset.keys[int(i)] for i in index]
            noise = image_noise(keys, tuple(x.shape[1:]), int(cfg.seed))
            with session.autocast():
                dist[:, index], ctrl[:, :, index] = distances(
                    pnet, x, noise, pending, timesteps, controls=True, sizes=sizes or None
                )
            bar.update(len(index))
    for part in sizes:
        part.reduce()
    # every image's row comes from exactly one process
    return all_reduce_sum(dist), all_reduce_sum(ctrl)


run = manifold  # the entry point every command module has: run(cfg) -> Result
