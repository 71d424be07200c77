"""``classifier(pnet, T)``: the PredictiveNet as a plain nn.Module from [0, 1] images to the
logits at timestep T, for torchattacks, RobustBench-style benchmarks or any other tool.

Gradients flow through every timestep and through the error-gradient term (double backward
through the decoders) when they are asked for: the input requires grad and grad mode is on.
Otherwise the graph-free path runs (nothing kept). With ``checkpoint`` each timestep's graph is
recomputed during the backward pass instead of stored (activation checkpointing), so what an
attack step keeps stays nearly flat in T: only the states e_n of each timestep are kept (the
predictions and error gradients are remade from them), at the price of one more forward pass
per timestep.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pcnets.core.kernels import decoder_plan
from pcnets.core.pnet import PredictiveNet
from pcnets.core.run_state import RunState
from pcnets.core.timestep import decoder_step, timestep

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
    plans = [_frozen_plan(d, pnet.fast_kernels) for d in pnet.decoders]
    state = pnet.new_run(x, timesteps, graph=True, plans=plans, random_init=False)
    e0 = pnet.normalize(x)
    carry: tuple = ()
    for t in range(timesteps + 1):
        out = _Timestep.apply(pnet, state, t, e0, *carry)
        logits, carry = out[0], out[1:]
    return logits


class _Timestep(torch.autograd.Function):
    """One timestep as an autograd node that keeps only its inputs and recomputes its graph
    (backbone, update, decoders, double backward) when the gradient reaches it."""

    @staticmethod
    def forward(ctx, pnet, state, t, e0, *carry):
        ctx.pnet, ctx.state, ctx.t = pnet, state, t
        ctx.save_for_backward(e0, *carry)
        out = _timestep(pnet, state, e0.detach(), t, *_detached(carry))  # no graph here
        state.prev = state.pred = state.grad = state.e = None  # drop this timestep's tensors
        return out

    @staticmethod
    def backward(ctx, *grads):
        e0, *carry = ctx.saved_tensors
        inputs = [e0.detach().requires_grad_(True), *_detached(carry, grad=True)]
        with torch.enable_grad():
            out = _timestep(ctx.pnet, ctx.state, inputs[0], ctx.t, *inputs[1:])
        pairs = [(o, g) for o, g in zip(out, grads, strict=True) if g is not None]
        found = torch.autograd.grad(
            [o for o, _ in pairs], inputs, [g for _, g in pairs], allow_unused=True
        )
        return (None, None, None, *found)


def _detached(carry, grad: bool = False) -> list:
    return [c.detach().requires_grad_(grad) for c in carry]


def _frozen_plan(decoder: nn.Module, fast: bool):
    """The decoder's explicit-adjoint plan when its weights need no gradient (then
    adjoint_grad.DecoderStep differentiates it), else None (autograd's double backward)."""
    plan = decoder_plan(decoder, fast)
    frozen = not any(p.requires_grad for p in decoder.parameters())
    return plan if plan is not None and frozen else None


def _timestep(pnet: PredictiveNet, state: RunState, e0: Tensor, t: int, *prev: Tensor) -> tuple:
    """One timestep of PredictiveNet.steps (core/timestep.py) from the previous timestep's states
    e_n(t-1) alone; returns the logits and this timestep's e_n.

    The predictions d_{n-1}(t-1) and error gradients g_n(t-1) are made here, from e(t-1), rather
    than at the end of timestep t-1 as the engine does: the same inputs and the same numbers, but
    only the states are carried (and kept) between timesteps, a third of e, d and g."""
    n = state.n
    state.begin(t, e0, feedback=False)
    if prev:
        state.prev, state.pred, state.grad = list(prev), [None] * n, [None] * n
        for i in range(n):
            state.pred[i], _, state.grad[i] = decoder_step(state, i, prev)
    logits = timestep(pnet.run_slot, pnet.backbone, state, e0)
    return (logits, *state.e)
