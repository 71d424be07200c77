"""What `pcnets bench` measures: the modes, one batch's size and timesteps, the rounds."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig, open_dict

from pcnets.errors import PcnetsError, suggest

MODES = {
    "reference": "straightforward loop: eager fp32 autograd, all predictions+gradients each step",
    "feedforward": "plain backbone, one pass, fp32",
    "engine": "pcnets engine, fp32 eager, NCHW, BatchNorm unfolded: the algorithm alone",
    "feedforward_fast": "plain backbone, one pass, the run's numerics",
    "engine_fast": "pcnets engine with the run's numerics: what every command runs",
    "engine_compiled": "engine_fast + torch.compile of the decoder step",
}
FAST_MODES = ("feedforward_fast", "engine_fast", "engine_compiled")


@dataclass
class BenchSpec:
    """What to measure: one batch of ``batch`` random images of ``size`` px, ``timesteps`` T."""

    batch: int = 2
    size: int = 224
    timesteps: int = 4
    repeats: int = 5
    warmup: int = 1
    modes: list[str] = field(default_factory=lambda: ["reference", "feedforward", "engine"])
    seed: int = 0


def default_modes(device: torch.device, fast: bool | None, compile_: bool) -> list[str]:
    """reference, feedforward, engine, and the run's own numerics (the fast modes) unless
    ``fast`` is False; ``device`` is kept for callers that choose by device."""
    modes = ["reference", "feedforward", "engine"]
    if fast is None or fast or compile_:
        modes += ["feedforward_fast", "engine_fast"]
    if compile_:
        modes.append("engine_compiled")
    return modes


def check_modes(modes: list[str]) -> list[str]:
    for m in modes:
        if m not in MODES:
            raise PcnetsError(f"unknown bench mode {m!r}{suggest(m, MODES)}; modes: {list(MODES)}")
    return modes


def bench_config(cfg: DictConfig, spec: BenchSpec, batch: str, pretrained: bool) -> DictConfig:
    """The composed config with the bench's own settings under ``bench`` (so they name the run
    folder) and the weights choice."""
    with open_dict(cfg):
        cfg.backbone.pretrained = pretrained
        cfg.bench = {
            "batch": batch,
            "size": spec.size,
            "timesteps": spec.timesteps,
            "repeats": spec.repeats,
            "modes": list(spec.modes),
            "device": str(cfg.device),
        }
    return cfg
