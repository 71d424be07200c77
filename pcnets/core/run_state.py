"""What a run carries: the Step it yields per timestep, the hyperparameters as tensors, and the
state that the encoder hooks read and write while ``PredictiveNet.steps()`` is iterating."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Step:
    """One timestep of a run: the logits, and (when asked for) e_n(t) and the per-sample errors."""

    t: int
    logits: Tensor
    states: list[Tensor] | None = None
    errors: list[Tensor] | None = None


@dataclass
class Hyper:
    """Per-encoder hyperparameters as tensors of shape [N] (beta, lambda, alpha)."""

    beta: Tensor
    lam: Tensor
    alpha: Tensor


@dataclass
class _RunState:
    """What the hooks need during one run; lives only while ``steps()`` is iterating."""

    x: Tensor
    hyper: Hyper
    reduction: str
    differentiable: bool
    scaling: bool
    random_init: bool
    t: int = 0
    feedback: bool = True
    keep: bool = False
    e: list = field(default_factory=list)  # e_n(t) for this timestep (index n-1)
    prev: list = field(default_factory=list)  # e_n(t-1)
    pred: list = field(default_factory=list)  # d_{n-1}(t-1): decoder n's prediction of e_{n-1}
    grad: list = field(default_factory=list)  # g_n(t-1)
    new_pred: list = field(default_factory=list)
    new_grad: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    want_errors: bool = False
    fast: _Fast | None = None  # set when no graph is kept (differentiable=False)


@dataclass
class _Fast:
    """Per-run constants of the graph-free path: Python-number coefficients (one device sync per
    run), the decoders' explicit-adjoint plans, and which predictions/gradients anything uses."""

    beta: list[float]
    lam: list[float]
    memory: list[float]  # 1 - beta - lam (1 - beta at the top)
    alpha: list[float]  # alpha_n, times K / sqrt(C) once K is known when scaling
    window: list[float]
    plans: list
    need_pred: list[bool]  # decoder n's prediction feeds encoder n-1 (lambda_{n-1} != 0)
    need_grad: list[bool]  # g_n is used (alpha_n != 0)
    scaled: list[bool]  # alpha_n already includes K / sqrt(C) (or needs no scaling)
    dtype: torch.dtype  # of the hyperparameters: products are rounded to it, as pc_update does
