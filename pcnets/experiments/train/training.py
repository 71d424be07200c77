"""`pcnets train-feedback` (METHOD.md section 5, eq. 3): the backbone is frozen, one feedforward
pass gives e_0 (the normalised image) .. e_N, only the decoders learn, by the optimizer loop
(train.solver=sgd, loop.py) or a closed-form ridge fit (train.solver=lstsq, lstsq.py).

A run is resumable: a checkpoint is written after every epoch and, on SIGINT/SIGTERM, after the
step in progress. Under torchrun each of the K processes takes 1/K of every global batch (DDP over
the decoders), so K processes and one process see the same global batches.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import DictConfig

from pcnets.core.decoders import r2_line
from pcnets.core.pnet import PredictiveNet
from pcnets.errors import PcnetsError
from pcnets.experiments.train.checkpoint import (
    StopRequest,
    TrainingInterrupted,
    broadcast,
    read_checkpoint,
)
from pcnets.experiments.train.data import Features, training_data
from pcnets.experiments.train.finish import DECODERS, finish
from pcnets.experiments.train.loop import Split, Training
from pcnets.experiments.train.recipe import check_recipe, global_batch, run_config
from pcnets.experiments.train.solve import solve_epoch
from pcnets.runtime.distributed import (
    cleanup,
    init_distributed,
    is_main,
    rank,
    world_size,
)
from pcnets.runtime.runs import cell_key
from pcnets.runtime.session import Result, Session, command_device

COMMAND = "train-feedback"
__all__ = ["COMMAND", "DECODERS", "run", "train_feedback"]


def train_feedback(
    cfg: DictConfig, pnet: PredictiveNet | None = None, stop_after: int | None = None
) -> Path:
    """Train the decoders of cfg.backbone (or of `pnet`) by cfg.train; returns the decoder file.

    Re-running with the same config resumes from the run folder's checkpoint. `stop_after` (tests)
    stops after that many optimizer steps as SIGINT would: checkpoint, then TrainingInterrupted.
    """
    return run(cfg, pnet, stop_after).extra["decoders"]


def run(
    cfg: DictConfig, pnet: PredictiveNet | None = None, stop_after: int | None = None
) -> Result:
    """One training run through the Session: its run folder, metrics and the decoder file."""
    joined = not (dist.is_available() and dist.is_initialized())
    init_distributed()
    try:
        return _run(cfg, pnet, stop_after)
    finally:
        if joined:
            cleanup()


def _start(cfg: DictConfig, pnet: PredictiveNet | None) -> tuple[Session, Training, dict | None]:
    """Check the recipe and data, open the session and run folder, build the network and state."""
    from pcnets.backbones import pnet_from_config

    tcfg = cfg.train
    check_recipe(tcfg)
    batch, world = global_batch(cfg), world_size()
    if batch % world:
        raise PcnetsError(
            f"the global batch ({batch}) must be divisible by the number of processes ({world})"
        )
    # the data first: a wrong data.root fails before a network is built (or downloaded)
    train_ds, train_idx, val_ds, val_idx = training_data(cfg, None)
    if pnet is None:  # before the run folder: a wrong decoder file leaves nothing behind
        pnet = pnet_from_config(cfg, command_device(cfg), evaluates=None)
    session = Session.start(COMMAND, run_config(cfg))
    pnet = session.prepare(pnet)
    for p in pnet.backbone.parameters():
        p.requires_grad_(False)
    for ds in (train_ds, val_ds):
        if hasattr(ds, "transform"):
            ds.transform = pnet.transform
    lstsq = str(tcfg.get("solver") or "sgd") == "lstsq"
    augment = None
    if str(tcfg.get("augment") or "none") == "flip_crop":
        augment = torch.Generator().manual_seed(int(cfg.seed) + rank())
    cache = bool(tcfg.get("cache_features", False))
    split = Split(
        train_idx,
        val_idx,
        Features(pnet, train_ds, cfg.data, session, cache and not lstsq, augment),
        Features(pnet, val_ds, cfg.data, session, cache),
    )
    training = Training(session, pnet, split, batch // world)
    if lstsq:
        training.epochs = 1
    error, ckpt = None, None
    if is_main():
        try:
            ckpt = read_checkpoint(training.ckpt_path, pnet, session.run_folder.hash)
        except PcnetsError as exc:
            error = str(exc)
    error, ckpt = broadcast((error, ckpt))
    if error:
        raise PcnetsError(error)
    return session, training, ckpt


def _run(cfg: DictConfig, pnet: PredictiveNet | None, stop_after: int | None) -> Result:
    session, tr, ckpt = _start(cfg, pnet)
    done, skip, partial = 0, 0, (tr.zeros(), 0)
    if ckpt is not None:
        done, skip, partial = tr.restore(ckpt)
    for epoch, rows in sorted(tr.history.items()):
        if not session.run_folder.is_done(cell_key(epoch=epoch)):
            session.run_folder.record(cell_key(epoch=epoch), rows)
    solver, world = str(cfg.train.get("solver") or "sgd"), world_size()
    tr.say(
        f"{COMMAND} {tr.pnet.name} ({solver}): {len(tr.split.train_idx)} training and "
        f"{len(tr.split.val_idx)} held-out images, batch {global_batch(cfg)} ({world} "
        f"process{'es' * (world > 1)}), {tr.epochs} epochs -> {session.path}"
    )
    with StopRequest(after=stop_after) as stop:
        if 0 not in tr.history:
            rows = tr.held_out(0)
            tr.finish_epoch(0, rows)
            tr.say(f"epoch 0 (before training): {r2_line([r['r2'] for r in rows])}")
        if solver == "lstsq" and 1 not in tr.history:
            solve_epoch(tr, stop)
        for epoch in range(done + 1, tr.epochs + 1) if solver == "sgd" else ():
            if tr.stopped_early():
                tr.say(
                    f"early stop: no better held-out loss for {cfg.train.patience} epochs after "
                    f"epoch {tr.best.epoch}"
                )
                break
            tr.train_epoch(epoch, skip, partial, stop)
            skip, partial = 0, (tr.zeros(), 0)
            if stop.agreed() and epoch < tr.epochs:
                raise TrainingInterrupted(
                    f"interrupted after epoch {epoch}: checkpoint {tr.ckpt_path}; "
                    "rerun the same command to resume"
                )
    return finish(session, tr)
