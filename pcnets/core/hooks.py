"""The forward hook on each encoder: one encoder at one timestep (METHOD.md section 2), with a
graph (autograd, ``differentiable``) or without one (fused update, explicit adjoint)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from pcnets.core.adjoint import decoder_plan
from pcnets.core.dynamics import error_scale, pc_update, pc_update_fused, predict_and_gradient
from pcnets.core.run_state import Hyper, _Fast, _RunState
from pcnets.errors import PcnetsError

if TYPE_CHECKING:
    from pcnets.core.pnet import PredictiveNet


class _EncoderHook:
    """The forward hook on encoder module i: outside a run the output passes through; inside, it
    becomes e_i(t). An object rather than a closure, so that copy.deepcopy of a PredictiveNet
    gives hooks that drive the copy, not the original."""

    def __init__(self, pnet: PredictiveNet, i: int):
        self.pnet, self.i = pnet, i

    def __call__(self, module: nn.Module, inputs, output: Tensor) -> Tensor:
        state = self.pnet._state
        return output if state is None else encoder_step(self.pnet, self.i, output, state)


def fast_constants(pnet: PredictiveNet, hyper: Hyper, scaling: bool) -> _Fast:
    n = pnet.num_encoders
    lam_eff = hyper.lam.detach().clone()
    lam_eff[-1] = 0.0
    memory = 1 - hyper.beta.detach() - lam_eff  # float32, as pc_update computes it
    beta, lam, memory, alpha = (
        torch.stack([hyper.beta.detach(), hyper.lam.detach(), memory, hyper.alpha.detach()])
        .cpu()
        .tolist()
    )
    return _Fast(
        beta=beta,
        lam=lam,
        memory=memory,
        alpha=alpha,
        window=pnet.window.tolist() if scaling else [1.0] * n,
        plans=[decoder_plan(d) for d in pnet.decoders],
        need_pred=[i > 0 and lam[i - 1] != 0 for i in range(n)],
        need_grad=[a != 0 for a in alpha],
        scaled=[not scaling] * n,
        dtype=hyper.alpha.dtype,
    )


def encoder_step(pnet: PredictiveNet, i: int, ff: Tensor, s: _RunState) -> Tensor:
    if s.fast is not None:
        return fast_encoder_step(pnet, i, ff, s, s.fast)
    top = i == pnet.num_encoders - 1
    if s.t == 0:
        e = torch.randn_like(ff) if s.random_init else ff
    else:
        alpha = s.hyper.alpha[i]
        if s.scaling:
            pred = s.pred[i]  # K counts the elements of decoder n's prediction
            k_scale = error_scale(
                pred[0].numel(), pred.shape[0], float(pnet.window[i]), s.reduction
            )
            alpha = alpha * k_scale
        e = pc_update(
            ff,
            s.prev[i],
            s.grad[i],
            s.hyper.beta[i],
            s.hyper.lam[i],
            alpha,
            fb=None if top else s.pred[i + 1],
        )
    s.e[i] = e
    if s.feedback:
        target = s.x if i == 0 else s.e[i - 1]
        try:
            pred, err, grad = predict_and_gradient(
                pnet.decoders[i], e, target, s.reduction, s.differentiable
            )
        except ValueError as exc:
            raise PcnetsError(f"decoder {i + 1} ({pnet.encoder_names[i]}): {exc}") from None
        s.new_pred[i], s.new_grad[i], s.errors[i] = pred, grad, err
    return e


def fast_encoder_step(pnet: PredictiveNet, i: int, ff: Tensor, s: _RunState, f: _Fast) -> Tensor:
    """``encoder_step`` without a graph: fused update, explicit adjoint, and no prediction or
    gradient that nothing uses."""
    top = i == pnet.num_encoders - 1
    if s.t == 0:
        e = torch.randn_like(ff) if s.random_init else ff
    else:
        if not f.scaled[i]:  # K counts the elements of decoder n's prediction
            if f.alpha[i] != 0:
                pred = s.pred[i]
                k = error_scale(pred[0].numel(), pred.shape[0], f.window[i], s.reduction)
                f.alpha[i] = (torch.tensor(f.alpha[i], dtype=f.dtype) * k).item()
            f.scaled[i] = True
        e = pc_update_fused(
            ff,
            s.prev[i],
            s.grad[i],
            f.beta[i],
            f.lam[i],
            f.memory[i],
            f.alpha[i],
            fb=None if top else s.pred[i + 1],
        )
    s.e[i] = e
    need_grad = f.need_grad[i]
    if s.feedback and (need_grad or f.need_pred[i] or s.want_errors):
        target = s.x if i == 0 else s.e[i - 1]
        try:
            if f.plans[i] is not None:
                pred, err, grad = pnet._adjoint(
                    f.plans[i], e, target, s.reduction, s.want_errors, need_grad
                )
            else:
                pred, err, grad = predict_and_gradient(
                    pnet.decoders[i], e, target, s.reduction, False
                )
        except ValueError as exc:
            raise PcnetsError(f"decoder {i + 1} ({pnet.encoder_names[i]}): {exc}") from None
        s.new_pred[i], s.new_grad[i], s.errors[i] = pred, grad, err
    return e
