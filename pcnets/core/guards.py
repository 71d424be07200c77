"""Values checked where they enter the dynamics, so that no wrong number is ever counted:
hyperparameters must be finite and in range, timesteps bounded, and a run whose logits turn
non-finite stops with one line naming the timestep and the encoder."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import torch
from torch import Tensor

from pcnets.bounds import MAX_TIMESTEPS
from pcnets.errors import PcnetsError

# The upper end of each hyperparameter (alpha, the error-correction rate, has none).
UPPER = {"beta": 1.0, "lam": 1.0, "alpha": math.inf}
# How the decoder error is reduced over a batch (pc.error_reduction).
REDUCTIONS = ("per_sample", "batch_mean")
# What the error term's step is measured in (pc.alpha_normalization): none = the paper's
# alpha * g_n; relative = alpha * ||e_n(t-1)|| * g_n / ||g_n|| per sample (beyond the paper).
ALPHA_NORMALIZATIONS = ("none", "relative")


def check_choice(key: str, value: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else one PcnetsError line."""
    if value not in choices:
        raise PcnetsError(f"{key} must be one of {list(choices)}, got {value!r}")
    return value


def hyper_tensor(key: str, value, n: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``value`` (one number, or one per encoder) as a ``dtype`` tensor of shape [n], or one
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
    t = torch.tensor([float(v) for v in values], dtype=dtype)
    if t.numel() == 1:
        t = t.repeat(n)
    if t.numel() != n:
        raise PcnetsError(f"{key} needs one value or {n} values (one per encoder), got {t.numel()}")
    return t


def check_shares(beta: Tensor, lam: Tensor) -> None:
    """0 <= beta + lambda <= 1 per encoder (the top encoder's lambda is ignored), or one line."""
    lam_eff = lam.clone()
    lam_eff[-1] = 0.0
    total = beta + lam_eff
    if (total > 1 + 1e-6).any():
        bad = [i + 1 for i in torch.nonzero(total > 1 + 1e-6).flatten().tolist()]
        raise PcnetsError(f"beta + lambda must be <= 1 (encoders {bad}: {total.tolist()})")


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
    return check_choice("error_reduction", reduction, REDUCTIONS)


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
    """Stop a run whose e_n(t) or logits at timestep ``t`` are not all finite, naming the lowest
    encoder whose state is non-finite: one isfinite reduction per tensor, one device sync per
    timestep. The states are checked, not only the logits: a clamping activation (ReLU6, a
    fused oneDNN kernel) can turn NaN states into finite logits."""
    found = [(i, e) for i, e in enumerate(states) if e is not None]
    flags = torch.stack(
        [torch.isfinite(x).all() for _, x in found] + [torch.isfinite(logits).all()]
    )
    flags = flags.tolist()
    if all(flags):
        return
    bad = [i for (i, _), ok in zip(found, flags, strict=False) if not ok]
    where = f"encoder {bad[0] + 1} ({names[bad[0]]})" if bad else "the head"
    where += "" if bad else " (every encoder state is finite)"
    raise PcnetsError(
        f"non-finite values at timestep {t} in {where}: no accuracy is counted; check "
        "pc.beta/lam/alpha (alpha too large diverges) and the decoder file"
    )
