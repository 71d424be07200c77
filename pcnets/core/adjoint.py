"""The error and its gradient without autograd (METHOD.md section 3), for the decoders that
pcnets builds ([bilinear upsample] -> ConvTranspose2d -> [ReLU], a kernels.DecoderPlan).

With A the decoder's linear part (Up then ConvT, no bias), M the ReLU's mask and K the elements
that the mean squared error averages over:

    d_{n-1}   = W^b_n(e_n) = relu(A e_n + b)
    eps_{n-1} = mean((d_{n-1} - e_{n-1})^2)              per sample
    g_n       = d eps_{n-1} / d e_n = A^T (M * 2 (d_{n-1} - e_{n-1}) / K)

A and A^T are computed by core/kernels.py in their fastest exact form.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pcnets.core import kernels
from pcnets.core.guards import check_reduction
from pcnets.core.kernels import DecoderPlan


def adjoint_predict_and_gradient(
    plan: DecoderPlan,
    e: Tensor,
    target: Tensor,
    reduction: str = "per_sample",
    need_error: bool = True,
    need_grad: bool = True,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The prediction d, the per-sample error eps and the gradient g (see the module), without
    building a graph; the error and the gradient are None when not needed."""
    check_reduction(reduction)
    with torch.no_grad():
        d = kernels.predict(plan, e)
        if d.shape != target.shape:
            raise ValueError(
                f"prediction shape {tuple(d.shape)} != target shape {tuple(target.shape)}"
            )
        if not (need_error or need_grad):
            return d, None, None
        residual = d - target
        eps = residual.square().mean(dim=tuple(range(1, d.dim()))) if need_error else None
        if not need_grad:
            return d, eps, None
        w = residual.mul_(2.0 / error_elements(d, reduction))
        if plan.relu:  # M: the ReLU passes the gradient where d > 0
            w = torch.ops.aten.threshold_backward(w, d, 0)
        return d, eps, kernels.adjoint(plan, w, e.shape)


def error_elements(pred: Tensor, reduction: str) -> int:
    """K of the mean squared error: the elements of one sample (per_sample) or of the batch."""
    return pred[0].numel() * (pred.shape[0] if reduction == "batch_mean" else 1)


def compiled_adjoint(decoders: int, **options):
    """``adjoint_predict_and_gradient`` under torch.compile (``options`` go to it), with room for
    one graph per decoder and per (error, gradient) need: more than dynamo's default 8."""
    import torch._dynamo

    limit = 4 * decoders
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, limit)
    return torch.compile(adjoint_predict_and_gradient, dynamic=False, **options)
