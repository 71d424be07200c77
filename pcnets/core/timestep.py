"""One timestep (METHOD.md section 2), written once: the backbone runs bottom to top, and the
hook on encoder n turns its output ff_n(t) into e_n(t) (the update), then makes decoder n's
prediction d_{n-1}(t), error and gradient g_n(t) against e_{n-1}(t) (the target). Whether a graph
is kept and which kernels compute the decoder step are the run's choices (RunState), not copies
of the step. Non-finite values stop the run where they appear.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pcnets.core.adjoint_grad import differentiable_step
from pcnets.core.dynamics import (
    error_scale,
    pc_update,
    predict_and_gradient,
    relative_gradient,
    sample_norm,
)
from pcnets.core.guards import check_finite
from pcnets.core.run_state import RunSlot, RunState
from pcnets.errors import PcnetsError


class EncoderHook:
    """The forward hook on encoder module i: outside a run the output passes through; inside, it
    becomes e_i(t). It holds the net's RunSlot, not the net, so copy.deepcopy of a PredictiveNet
    gives hooks that drive the copy."""

    def __init__(self, slot: RunSlot, i: int):
        self.slot, self.i = slot, i

    def __call__(self, module: nn.Module, inputs, output: Tensor) -> Tensor:
        state = self.slot.current
        return output if state is None else encoder_step(state, self.i, output)


def timestep(slot: RunSlot, backbone: nn.Module, s: RunState, e0: Tensor) -> Tensor:
    """The logits of timestep s.t: one pass of the backbone on ``e0`` with the run in the slot;
    a non-finite e_n(t) or logit stops the run (one device sync)."""
    with slot.running(s):
        logits = backbone(e0)
    check_finite(logits, s.e, s.t, s.names)
    return logits


def encoder_step(s: RunState, i: int, ff: Tensor) -> Tensor:
    """e_i(t) from the feedforward drive ``ff``, then decoder i's step on it (when used)."""
    if s.t == 0:
        e = torch.randn_like(ff) if s.random_init else ff
    else:
        e = update(s, i, ff)
    s.e[i] = e
    if s.feedback and (s.need_grad[i] or s.need_pred[i] or s.want_errors):
        s.new_pred[i], s.errors[i], s.new_grad[i] = decoder_step(s, i, s.e)
    return e


def update(s: RunState, i: int, ff: Tensor) -> Tensor:
    """The update rule (dynamics.pc_update) with this run's coefficients and options."""
    fb = None if i == s.n - 1 else s.pred[i + 1]
    alpha, grad = error_rate(s, i), s.grad[i]
    if s.relative and grad is not None:
        grad = relative_gradient(grad, s.prev[i])
    memory = None if s.memory is None else s.memory[i]
    e = pc_update(ff, s.prev[i], grad, s.beta[i], s.lam[i], alpha, fb, memory)
    if s.want_terms:
        s.terms[i] = term_sizes(s, i, e, (ff, fb, s.prev[i], grad), alpha)
    return e


def term_sizes(s: RunState, i: int, e: Tensor, parts: tuple, alpha) -> Tensor:
    """[4, B]: ||beta ff||, ||lambda d||, ||(1-beta-lambda) e(t-1)||, ||alpha g|| per sample,
    each over ||e_n(t)|| (run_state.TERMS); 0 for a term that is not there."""
    lam = 0.0 if i == s.n - 1 else s.lam[i]
    share = 1 - s.beta[i] - lam if s.memory is None else s.memory[i]
    norm = sample_norm(e.detach())
    sizes = [
        torch.zeros_like(norm) if x is None else sample_norm(x.detach()) * abs(float(c))
        for c, x in zip((s.beta[i], lam, share, alpha), parts, strict=True)
    ]
    return torch.stack(sizes) / norm.clamp_min(1e-30)


def error_rate(s: RunState, i: int) -> Tensor | float:
    """alpha_n, times K / sqrt(C) under gradient scaling (K counts decoder n's prediction)."""
    alpha = s.alpha[i]
    if s.window is None or (not s.graph and alpha == 0):
        return alpha
    pred = s.pred[i]
    k = error_scale(pred[0].numel(), pred.shape[0], s.window[i], s.reduction)
    return alpha * k if s.graph else (torch.tensor(alpha, dtype=s.dtype) * k).item()


def decoder_step(s: RunState, i: int, states: list) -> tuple:
    """(d_{i-1}, eps_{i-1}, g_i) of decoder i on e_i = states[i] against its target, e_0 or
    states[i-1]; one line naming the decoder when its prediction does not fit."""
    e, target = states[i], (s.x if i == 0 else states[i - 1])
    plan = s.plans[i]
    try:
        if plan is None:
            return predict_and_gradient(s.decoders[i], e, target, s.reduction, s.graph)
        if s.graph:
            pred, grad = differentiable_step(plan, e, target, s.reduction)
            return pred, None, grad
        return s.adjoint(plan, e, target, s.reduction, s.want_errors, s.need_grad[i])
    except ValueError as exc:
        raise PcnetsError(f"decoder {i + 1} ({s.names[i]}): {exc}") from None
