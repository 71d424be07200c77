"""train.solver=lstsq as an epoch of a run: one pass over the training features into the normal
equations (lstsq.py), the ridge fit, then the held-out rows like any other epoch."""

from __future__ import annotations

import math
import time

from pcnets.experiments.train.checkpoint import StopRequest, TrainingInterrupted
from pcnets.experiments.train.loop import Training, speed
from pcnets.experiments.train.lstsq import LeastSquares
from pcnets.progress import progress
from pcnets.runtime.distributed import is_main, rank, shard_indices, world_size


def solve_epoch(tr: Training, stop: StopRequest) -> None:
    """train.solver=lstsq: one pass over the training features, the ridge fit, held-out rows.
    A stop request ends the pass at once (a rerun starts the pass again: it has no steps)."""
    lcfg = tr.cfg.train.get("lstsq") or {}
    max_rows = lcfg.get("max_rows")
    ridges = [float(r) for r in (lcfg.get("ridges") or [1e-6, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0])]
    ridge = lcfg.get("ridge")
    fit = LeastSquares(tr.pnet.decoders, max_rows, int(tr.cfg.seed), int(lcfg.get("fold") or 5))
    ids = tr.split.train_idx
    mine = [ids[i] for i in shard_indices(len(ids), rank(), world_size())]
    started, waited = time.perf_counter(), tr.split.train.wait_s
    batches = tr.split.train.batches(mine, tr.local_batch)
    total = math.ceil(len(mine) / tr.local_batch)
    for feats in progress(batches, total=total, desc="normal equations", show=is_main()):
        fit.add(feats)
        if stop.agreed():
            raise TrainingInterrupted(
                "interrupted during the least-squares pass; rerun the same command to redo it"
            )
    fits = fit.solve(ridges, None if ridge is None else float(ridge))
    timing = speed(len(ids), time.perf_counter() - started, tr.split.train.wait_s - waited)
    rows = tr.rows(
        1,
        "train",
        [f.train_mse for f in fits],
        len(ids),
        r2=[f.train_r2 for f in fits],
        ridge=[f.ridge for f in fits],
        fold_r2=[f.fold_r2 for f in fits],
    )
    rows += tr.held_out(1)
    tr.finish_epoch(1, rows, timing)
    tr.report(1, rows, timing)
