"""The explicit adjoint as an autograd Function: a decoder's prediction d and error gradient g,
differentiable with respect to its input e and its target, without autograd's graph of the
decoder and of its double backward (what recomputed attack timesteps would otherwise hold).

With A the decoder's linear part (Upsample then ConvTranspose2d, no bias) and M the ReLU's mask
(all ones without a ReLU), d = relu(A e + b) and g = (2/K) A^T M (d - target). Both are linear in
(e, target) where M is constant, so their backward is exact and needs only M:

    dL/de      = A^T M (dL/dd + (2/K) A dL/dg)
    dL/dtarget = -(2/K) M A dL/dg

Used where the decoder's own weights need no gradient (attacks, tuning of beta/lambda/alpha).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from pcnets.core import kernels
from pcnets.core.adjoint import adjoint_predict_and_gradient, error_elements
from pcnets.core.kernels import DecoderPlan


class DecoderStep(torch.autograd.Function):
    """(e, target) -> (d, g) of a decoder of the known form; keeps only the ReLU's mask."""

    @staticmethod
    def forward(ctx, e: Tensor, target: Tensor, plan: DecoderPlan, reduction: str):
        pred, _, grad = adjoint_predict_and_gradient(plan, e, target, reduction, need_error=False)
        ctx.plan, ctx.e_shape = plan, e.shape
        ctx.k = error_elements(pred, reduction)
        ctx.save_for_backward(pred > 0 if plan.relu else None)
        return pred, grad

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_pred: Tensor | None, grad_grad: Tensor | None):
        (mask,) = ctx.saved_tensors
        plan, scale = ctx.plan, 2.0 / ctx.k
        w = target_grad = None
        if grad_grad is not None:
            a = kernels.linear(plan, grad_grad)
            if mask is not None:
                a = a * mask
            if ctx.needs_input_grad[1]:
                target_grad = a * -scale
            w = a * scale
        if grad_pred is not None:
            masked = grad_pred * mask if mask is not None else grad_pred
            w = masked if w is None else w + masked
        e_grad = None
        if w is not None and ctx.needs_input_grad[0]:
            e_grad = kernels.adjoint(plan, w, ctx.e_shape)
        return e_grad, target_grad, None, None


def differentiable_step(plan: DecoderPlan, e: Tensor, target: Tensor, reduction: str):
    """(d, g) of ``plan`` for ``e`` against ``target``, differentiable in both (see the module)."""
    return DecoderStep.apply(e, target, plan, reduction)
