"""``classifier(pnet, T)``: the PredictiveNet as a plain nn.Module from [0, 1] images to the
logits at timestep T, for torchattacks, RobustBench-style benchmarks or any other tool.

Gradients flow through every timestep and through the error-gradient term (double backward
through the decoders) when they are asked for: the input requires grad and grad mode is on.
Otherwise the graph-free path runs (nothing kept). With ``checkpoint`` each timestep's graph is
recomputed during the backward pass instead of stored (activation checkpointing), so the memory of
an attack step stays nearly flat in T: only the states e_n of each timestep are kept (the
predictions and error gradients are remade from them), at the price of one more forward pass
per timestep.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pcnets.core.adjoint import decoder_plan
from pcnets.core.adjoint_grad import differentiable_step
from pcnets.core.dynamics import predict_and_gradient
from pcnets.core.pnet import PredictiveNet
from pcnets.core.run_state import _RunState

# Below this many timesteps the stored graph is small enough that recomputing does not pay.
CHECKPOINT_FROM = 2


class Classifier(nn.Module):
    """[0, 1] images -> logits at timestep ``timesteps``; always in eval mode, parameters frozen.

    torchattacks puts a model back in the mode it found it in, and nn.Module starts in training
    mode: ``train()`` is ignored so the backbone's BatchNorm keeps its running statistics.
    """

    def __init__(self, pnet: PredictiveNet, timesteps: int, checkpoint: bool | None = None):
        super().__init__()
        self.pnet = pnet.requires_grad_(False)
        self.timesteps = int(timesteps)
        self.checkpoint = self.timesteps >= CHECKPOINT_FROM if checkpoint is None else checkpoint
        self.train(False)

    def train(self, mode: bool = True) -> Classifier:
        """Ignore requests for training mode (see the class docstring)."""
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad):
            with torch.no_grad():
                return self.pnet.run(x, self.timesteps)[-1]
        if not self.checkpoint or self.timesteps == 0 or self.pnet.random_init:
            return self.pnet.run(x, self.timesteps, differentiable=True)[-1]
        return unrolled_checkpointed(self.pnet, x, self.timesteps)


def classifier(pnet: PredictiveNet, timesteps: int, checkpoint: bool | None = None) -> Classifier:
    """The public API of DESIGN.md: ``pnet`` as an nn.Module giving the logits at ``timesteps``.

    ``checkpoint`` (default: on from T = 2) recomputes timesteps in the backward pass instead of
    storing them; the gradients are the same (tested to 1e-5). A random initial state
    (pnet.random_init) cannot be redrawn identically, so it always keeps the stored graph."""
    return Classifier(pnet, timesteps, checkpoint)


def unrolled_checkpointed(pnet: PredictiveNet, x: Tensor, timesteps: int) -> Tensor:
    """The logits at T of ``pnet.run(x, T, differentiable=True)``, each timestep recomputed in
    the backward pass: the same numbers and input gradients, with only the states between
    timesteps kept. (torch.utils.checkpoint cannot do this: the error gradient g_n is itself an
    autograd.grad inside the forward, which would trigger its recomputation.)"""
    if pnet._state is not None:
        raise RuntimeError("a run of this PredictiveNet is already in progress")
    state = _RunState(
        x=x,
        hyper=pnet.hyper(),
        reduction=pnet.error_reduction,
        differentiable=True,
        scaling=pnet.gradient_scaling,
        random_init=False,
    )
    if state.scaling:
        pnet.estimate_windows(tuple(x.shape[-2:]))
    e0 = pnet.normalize(x)
    plans = [_frozen_plan(d) for d in pnet.decoders]
    carry: tuple = ()
    for t in range(timesteps + 1):
        out = _Timestep.apply(pnet, state, plans, t, e0, *carry)
        logits, carry = out[0], out[1:]
    return logits


class _Timestep(torch.autograd.Function):
    """One timestep as an autograd node that keeps only its inputs and recomputes its graph
    (backbone, update, decoders, double backward) when the gradient reaches it."""

    @staticmethod
    def forward(ctx, pnet, state, plans, t, e0, *carry):
        ctx.pnet, ctx.state, ctx.plans, ctx.t = pnet, state, plans, t
        ctx.save_for_backward(e0, *carry)
        out = _timestep(pnet, state, plans, e0.detach(), t, *_detached(carry))  # no graph here
        state.prev = state.pred = state.grad = state.e = None  # drop this timestep's tensors
        return out

    @staticmethod
    def backward(ctx, *grads):
        e0, *carry = ctx.saved_tensors
        inputs = [e0.detach().requires_grad_(True), *_detached(carry, grad=True)]
        with torch.enable_grad():
            out = _timestep(ctx.pnet, ctx.state, ctx.plans, inputs[0], ctx.t, *inputs[1:])
        pairs = [(o, g) for o, g in zip(out, grads, strict=True) if g is not None]
        found = torch.autograd.grad(
            [o for o, _ in pairs], inputs, [g for _, g in pairs], allow_unused=True
        )
        return (None, None, None, None, *found)


def _detached(carry, grad: bool = False) -> list:
    return [c.detach().requires_grad_(grad) for c in carry]


def _frozen_plan(decoder: nn.Module):
    """The decoder's explicit-adjoint plan when its weights need no gradient (then
    adjoint_grad.DecoderStep differentiates it), else None (autograd's double backward)."""
    plan = decoder_plan(decoder)
    return (
        plan
        if plan is not None and not any(p.requires_grad for p in decoder.parameters())
        else None
    )


def _timestep(
    pnet: PredictiveNet, state: _RunState, plans: list, e0: Tensor, t: int, *prev: Tensor
) -> tuple:
    """One timestep of PredictiveNet.steps (METHOD.md section 2) from the previous timestep's
    states e_n(t-1) alone; returns the logits and this timestep's e_n.

    The predictions d_{n-1}(t-1) and error gradients g_n(t-1) are made here, from e(t-1), rather
    than at the end of timestep t-1 as the engine does: the same inputs and the same numbers, but
    only the states are carried (and kept) between timesteps, a third of e, d and g."""
    n = pnet.num_encoders
    state.t, state.feedback, state.x = t, False, e0
    if prev:
        state.prev, state.pred, state.grad = list(prev), [None] * n, [None] * n
        for i, (decoder, plan) in enumerate(zip(pnet.decoders, plans, strict=True)):
            target = e0 if i == 0 else prev[i - 1]
            if plan is not None:
                pred, grad = differentiable_step(plan, prev[i], target, state.reduction)
            else:
                pred, _, grad = predict_and_gradient(
                    decoder, prev[i], target, state.reduction, differentiable=True
                )
            state.pred[i], state.grad[i] = pred, grad
    state.e = [None] * n
    pnet._state = state
    try:
        logits = pnet.backbone(e0)
    finally:
        pnet._state = None
    return (logits, *state.e)
