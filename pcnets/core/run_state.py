"""What a run carries: the Step it yields per timestep, the hyperparameters as tensors, the state
of one run, and the slot through which the encoder hooks see it (its one owner)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

# The order of the update's terms in Step.terms (METHOD.md section 2).
TERMS = ("ff", "feedback", "memory", "error")


@dataclass
class Step:
    """One timestep of a run: the logits, and (when asked for) e_n(t), the per-sample errors, and
    the term sizes: a float tensor [N, 4, B] of ||beta ff||, ||lambda d||, ||(1-beta-lambda)
    e(t-1)||, ||alpha g|| over ||e_n(t)|| per encoder and sample (TERMS; None at t = 0)."""

    t: int
    logits: Tensor
    states: list[Tensor] | None = None
    errors: list[Tensor] | None = None
    terms: Tensor | None = None


@dataclass
class Hyper:
    """Per-encoder hyperparameters as tensors of shape [N] (beta, lambda, alpha)."""

    beta: Tensor
    lam: Tensor
    alpha: Tensor


@dataclass
class RunState:
    """One run: its constants (set when it starts) and the tensors of the current and previous
    timestep. ``graph``: the autograd graph is kept (coefficients are then tensors; otherwise
    Python numbers, one device sync per run)."""

    decoders: nn.ModuleList
    names: Sequence[str]
    hyper: Hyper
    reduction: str
    graph: bool
    random_init: bool
    beta: Sequence  # per encoder, tensors (graph) or floats
    lam: Sequence
    memory: Sequence | None  # 1 - beta - lam (1 - beta at the top); floats, None with a graph
    alpha: Sequence
    dtype: torch.dtype  # of the hyperparameters: products are rounded to it, as pc_update does
    window: list[float] | None  # C of the gradient scaling per decoder; None without scaling
    plans: list  # kernels.DecoderPlan or None per decoder
    adjoint: Callable  # the graph-free decoder step (adjoint.adjoint_predict_and_gradient)
    need_pred: list[bool]  # decoder n's prediction is used (lambda_{n-1} != 0, or a graph)
    need_grad: list[bool]  # g_n is used (alpha_n != 0, or a graph)
    relative: bool = False  # pc.alpha_normalization=relative
    want_errors: bool = False
    want_terms: bool = False
    t: int = 0
    feedback: bool = True  # make d, eps, g at the end of this timestep
    x: Tensor | None = None  # e_0
    e: list = field(default_factory=list)  # e_n(t) for this timestep (index n-1)
    prev: list = field(default_factory=list)  # e_n(t-1)
    pred: list = field(default_factory=list)  # d_{n-1}(t-1): decoder n's prediction of e_{n-1}
    grad: list = field(default_factory=list)  # g_n(t-1)
    new_pred: list = field(default_factory=list)
    new_grad: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    terms: list = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.names)

    def begin(self, t: int, e0: Tensor, feedback: bool) -> None:
        """Start timestep ``t`` on the image ``e0``: this timestep's lists empty."""
        n = self.n
        self.t, self.x, self.feedback = t, e0, feedback
        self.e, self.new_pred, self.new_grad = [None] * n, [None] * n, [None] * n
        self.errors, self.terms = [None] * n, [None] * n

    def advance(self) -> None:
        """This timestep's states, predictions and gradients become the previous ones."""
        self.prev, self.pred, self.grad = self.e, self.new_pred, self.new_grad


class RunSlot:
    """The run in progress on one PredictiveNet, where its encoder hooks find it. The one owner
    of the net's run state: ``running`` sets it for one pass of the backbone and clears it."""

    def __init__(self) -> None:
        self.current: RunState | None = None

    @contextmanager
    def running(self, state: RunState) -> Iterator[None]:
        if self.current is not None:
            raise RuntimeError("a run of this PredictiveNet is already in progress")
        self.current = state
        try:
            yield
        finally:
            self.current = None
