"""One Session for every command: the device, the numerics switches, torchrun, seeds, the run
folder and peak memory, so that a switch means the same in every command and the benchmark
times the path the experiments take.

    session = Session.start("eval-noise", cfg)      # joins torchrun, seeds, resolves the device
    pnet = session.prepare(pnet)                    # device, eval mode, memory format, compile
    for x, y, idx in session.batches(loader): ...   # batches already on the device (prefetched)
    logits = session.run(pnet, x, T)                # pnet.run under the session's autocast
    steps = session.steps(pnet, x, T, terms=True)   # pnet.steps likewise (e.g. term sizes)
    session.finish(result)                          # provenance: finished, with the numerics
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig
from torch import Tensor

from pcnets.runtime import distributed
from pcnets.runtime.allocator import allocator_label, keep_freed_memory
from pcnets.runtime.devices import resolve_device
from pcnets.runtime.numerics import Numerics, Prefetcher, autocast, numerics, prepare, to_device
from pcnets.runtime.peak_memory import PeakMemory
from pcnets.runtime.runs import Run


@dataclass
class Result:
    """What every command returns: its run folder, its rows (metrics.csv), the lines it prints."""

    path: Path | None
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    summary: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def command_device(cfg: DictConfig) -> torch.device:
    """cfg.device resolved; plain "cuda" under torchrun is this process's own GPU."""
    device = resolve_device(cfg.get("device", "auto"))
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (every device) from one number."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Session:
    """How one command runs (see the module docstring). ``run`` is None for commands without a
    run folder (bench writes its own, import-decoders writes one file)."""

    command: str
    cfg: DictConfig
    device: torch.device
    numerics: Numerics
    run_folder: Run | None = None

    @classmethod
    def start(cls, command: str, cfg: DictConfig, run_folder: bool = True) -> Session:
        distributed.init_distributed()
        keep_freed_memory()
        device = command_device(cfg)
        seed_everything(int(cfg.get("seed", 0) or 0))
        session = cls(command, cfg, device, numerics(cfg, device))
        if run_folder:
            session.open_run_folder()
        return session

    def open_run_folder(self, run: Run | None = None) -> Run:
        """Open this command's run folder (made from its config, or ``run`` when given); a
        command that checks its inputs first opens it after them (start(run_folder=False))."""
        self.run_folder = run if run is not None else Run(self.command, self.cfg)
        return self.run_folder

    # ---- where and how -------------------------------------------------------------------

    @property
    def path(self) -> Path | None:
        return self.run_folder.path if self.run_folder is not None else None

    def prepare(self, pnet, own: bool = True):
        """The network on this session's device, in eval mode, with its memory format and
        compilation (cuDNN autotuning on CUDA). BatchNorm is folded only into a network the
        command built itself (``own``): a caller's network keeps its backbone's weights as they
        are, and the run's numerics then say so."""
        if not own and self.numerics.fold_bn:
            self.numerics = replace(self.numerics, fold_bn=False)
        return prepare(pnet, self.numerics)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when the session's numerics ask for it."""
        return autocast(self.numerics)

    def to_device(self, x: Tensor) -> Tensor:
        return to_device(x, self.numerics)

    def batches(self, loader: Iterable) -> Iterator:
        """The loader's batches, the next one already on its way to the device."""
        return iter(Prefetcher(loader, self.numerics))

    @torch.no_grad()
    def run(self, pnet, x: Tensor, timesteps: int, **kwargs) -> list[Tensor]:
        """pnet.run with this session's numerics; the logits come back in fp32."""
        with self.autocast():
            logits = pnet.run(self.to_device(x), timesteps, **kwargs)
        return [z.float() for z in logits]

    @torch.no_grad()
    def steps(self, pnet, x: Tensor, timesteps: int, **kwargs) -> list:
        """pnet.steps with this session's numerics, all of them (the run is over when this
        returns); logits and term sizes come back in fp32."""
        with self.autocast():
            steps = list(pnet.steps(self.to_device(x), timesteps, **kwargs))
        for step in steps:
            step.logits = step.logits.float()
            if step.terms is not None:
                step.terms = step.terms.float()
        return steps

    def peak_memory(self) -> PeakMemory:
        """A context that measures the peak memory of its block on this session's device."""
        return PeakMemory(self.device)

    # ---- ending --------------------------------------------------------------------------

    def finish(self, status: str = "finished", **extra) -> None:
        """Mark the run folder finished (or ``status``, e.g. "suspect"), recording the numerics
        that made it."""
        if self.run_folder is not None:
            self.run_folder.finish(
                status=status, numerics=self.numerics.label, allocator=allocator_label(), **extra
            )
        distributed.barrier()
