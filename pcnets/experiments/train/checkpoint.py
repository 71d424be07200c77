"""Stopping cleanly and resuming exactly: SIGINT/SIGTERM only request a stop (the loop saves a
checkpoint after the step in progress), and a checkpoint holds everything a rerun needs to
continue to the same weights (decoders, optimizer, schedule, best so far, RNG states)."""

from __future__ import annotations

import random
import signal
import threading
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from pcnets.core.files import atomic_save, load_data_file
from pcnets.core.pnet import PredictiveNet
from pcnets.errors import PcnetsError
from pcnets.runtime.distributed import active, all_reduce_sum, is_main

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "pcnets-train-checkpoint-v1"


class TrainingInterrupted(KeyboardInterrupt):
    """A stop request (SIGINT/SIGTERM) ended training after its checkpoint was saved."""


class StopRequest(AbstractContextManager):
    """While active, SIGINT/SIGTERM only set a flag: the loop saves a checkpoint and stops.

    ``after`` (tests) requests a stop after that many optimizer steps, as a signal would.
    """

    def __init__(self, after: int | None = None):
        self.after = after
        self.requested = False
        self.steps = 0
        self._old: dict = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def _handle(self, signum, frame) -> None:
        if not self.requested and is_main():
            tqdm.write(f"{signal.Signals(signum).name}: saving a checkpoint after this step")
        self.requested = True

    def count_step(self) -> None:
        """Count one optimizer step (for ``after``)."""
        self.steps += 1
        if self.after is not None and self.steps >= self.after:
            self.requested = True

    def agreed(self) -> bool:
        """True when any process was asked to stop (every process stops at the same step)."""
        if active():
            return all_reduce_sum(int(self.requested)) > 0
        return self.requested


# ---- checkpoints -----------------------------------------------------------------------------


def rng_state() -> dict:
    """The RNG states (torch, numpy, Python, CUDA) a resumed run continues from."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the states of `rng_state`."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_checkpoint(path: Path, pnet: PredictiveNet, run_hash: str) -> dict | None:
    """The checkpoint at `path` (None if there is none), checked against this network and config."""
    if not path.is_file():
        return None
    ckpt = load_data_file(path, "checkpoint", "delete it to start over")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise PcnetsError(f"{path} is not a pcnets training checkpoint; delete it to start over")
    if ckpt["backbone"] != pnet.name or list(ckpt["encoders"]) != pnet.encoder_names:
        raise PcnetsError(
            f"{path} is a checkpoint of backbone {ckpt['backbone']!r} with encoders "
            f"{list(ckpt['encoders'])}, not {pnet.name!r} with {pnet.encoder_names}; "
            "choose another --out"
        )
    if ckpt["config_hash"] != run_hash:
        raise PcnetsError(
            f"{path} was made with config {ckpt['config_hash']}, not {run_hash}; "
            "choose another --out"
        )
    return ckpt


def broadcast(obj):
    """Rank 0's object on every process (the run folder need not be shared between nodes)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def write_checkpoint(path: Path, state: dict) -> None:
    """Saved atomically: an interruption never leaves half a file, a full disk no temp file."""
    atomic_save(path, state)


def training_state(tr, epoch: int, step: int, partial: tuple) -> dict:
    """What a checkpoint of the run `tr` (loop.Training) holds after `epoch` finished epochs and
    `step` batches of the next, with that epoch's running sums."""
    sched = tr.scheduler.state_dict() if tr.scheduler is not None else None
    return {
        "format": CHECKPOINT_FORMAT,
        "backbone": tr.pnet.name,
        "encoders": tr.pnet.encoder_names,
        "config_hash": tr.session.run_folder.hash,
        "epoch": epoch,
        "step": step,
        "partial": (partial[0].tolist(), int(partial[1])),
        "history": tr.history,
        "timing": tr.timing,
        "best": vars(tr.best),
        "decoders": tr.pnet.decoders.state_dict(),
        "optimizer": tr.optimizer.state_dict(),
        "scheduler": sched,
        "rng": rng_state(),
    }
