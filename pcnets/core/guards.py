"""Values checked where they enter the dynamics, so that no wrong number is ever counted:
hyperparameters must be finite and in range, timesteps bounded, and a run whose logits turn
non-finite stops with one line naming the timestep and the encoder."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import torch
from torch import Tensor

from pcnets.errors import PcnetsError

# The most timesteps a run may unroll (pc.timesteps, --timesteps): the paper uses up to 15 and
# the convergence analysis 14; beyond this a typo (1000 for 10) would silently run for hours.
MAX_TIMESTEPS = 100
# The upper end of each hyperparameter (alpha, the error-correction rate, has none).
UPPER = {"beta": 1.0, "lam": 1.0, "alpha": math.inf}
# How the decoder error is reduced over a batch (pc.error_reduction).
REDUCTIONS = ("per_sample", "batch_mean")


def hyper_tensor(key: str, value, n: int) -> Tensor:
    """``value`` (one number, or one per encoder) as a float32 tensor of shape [n], or one
    PcnetsError line: a non-number, NaN, inf, or a value outside [0, UPPER[key]]."""
    values = _as_list(value)
    top = UPPER[key]
    span = f"in [0, {top:g}]" if math.isfinite(top) else ">= 0"
    for v in values:
        if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(float(v)):
            raise PcnetsError(
                f"pc.{key} must be a finite number {span} (or one per encoder), got {value!r}; "
                f"e.g. pc.{key}={ {'beta': 0.8, 'lam': 0.1, 'alpha': 0.01}[key] }"
            )
        if not 0 <= float(v) <= top:
            raise PcnetsError(f"pc.{key} must be {span}, got {value!r}")
    t = torch.tensor([float(v) for v in values], dtype=torch.float32)
    if t.numel() == 1:
        t = t.repeat(n)
    if t.numel() != n:
        raise PcnetsError(f"{key} needs one value or {n} values (one per encoder), got {t.numel()}")
    return t


def _as_list(value) -> list:
    """A scalar, a list, a tensor or an array as a flat list of its values."""
    if isinstance(value, Tensor):
        return value.detach().flatten().cpu().tolist()
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        out = value.tolist()
        return out if isinstance(out, list) else [out]
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    return [value]


def check_reduction(reduction) -> str:
    """pc.error_reduction as one of REDUCTIONS, or one PcnetsError line."""
    if reduction not in REDUCTIONS:
        raise PcnetsError(f"error_reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
    return reduction


def check_timesteps(timesteps) -> int:
    """A whole number of timesteps in 0..MAX_TIMESTEPS, or one PcnetsError line."""
    if isinstance(timesteps, bool) or not isinstance(timesteps, int):
        raise PcnetsError(f"timesteps must be a whole number, got {timesteps!r}")
    if timesteps < 0:
        raise PcnetsError(f"timesteps must be >= 0, got {timesteps}")
    if timesteps > MAX_TIMESTEPS:
        raise PcnetsError(
            f"timesteps={timesteps} is above the maximum of {MAX_TIMESTEPS} "
            "(the paper uses up to 15); use fewer timesteps"
        )
    return timesteps


def check_finite(logits: Tensor, states: list, t: int, names: Sequence[str]) -> None:
    """Stop a run whose logits at timestep ``t`` are not all finite (one device sync per
    timestep), naming the lowest encoder whose e_n(t) is already non-finite."""
    if bool(torch.isfinite(logits).all()):
        return
    where = "the head (every encoder state is finite)"
    for i, e in enumerate(states):
        if e is not None and not bool(torch.isfinite(e).all()):
            where = f"encoder {i + 1} ({names[i]})"
            break
    raise PcnetsError(
        f"non-finite values at timestep {t} in {where}: no accuracy is counted; check "
        "pc.beta/lam/alpha (alpha too large diverges) and the decoder file"
    )
