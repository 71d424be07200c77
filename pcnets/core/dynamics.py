"""The predictive-coding update and its error gradient (METHOD.md sections 2-3), tensors in and out.

Two ways to the error gradient g = d eps / d e: autograd through the decoder (any decoder, and
the only way when a graph must be kept), and an explicit adjoint for the decoders that pcnets
builds ([bilinear upsample] -> ConvTranspose2d -> [ReLU]), which gives the same numbers without
building a graph: g = A^T(M * 2 (d - target) / K) (core/adjoint.py).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pcnets.core.adjoint import adjoint_predict_and_gradient
from pcnets.core.guards import check_reduction
from pcnets.core.kernels import decoder_plan


def pc_update(
    ff: Tensor,
    prev: Tensor,
    grad: Tensor | None,
    beta: Tensor | float,
    lam: Tensor | float,
    alpha: Tensor | float,
    fb: Tensor | None,
    memory: float | None = None,
) -> Tensor:
    """e_n(t) = beta*ff_n(t) + lam*d_n(t-1) + (1-beta-lam)*e_n(t-1) - alpha*g_n(t-1).

    ``fb`` is the prediction of e_n made by encoder n+1 at t-1; the top encoder has none, and its
    memory share is then 1 - beta (lam is ignored). Given ``memory`` (that share, precomputed)
    and Python-number coefficients, the same sum is built in place in one new tensor, without a
    graph, skipping the terms whose coefficient is 0 (``grad`` may then be None).
    """
    if memory is not None:
        return _in_place(ff, prev, grad, beta, lam, memory, alpha, fb)
    if fb is None:
        return beta * ff + (1 - beta) * prev - alpha * grad
    return beta * ff + lam * fb + (1 - beta - lam) * prev - alpha * grad


def _in_place(ff, prev, grad, beta, lam, memory, alpha, fb) -> Tensor:
    """``pc_update`` as one multiply, then fused multiply-adds in place."""
    out = torch.mul(ff, beta)
    if fb is not None and lam != 0:
        out.add_(fb, alpha=lam)
    if memory != 0:
        out.add_(prev, alpha=memory)
    if grad is not None and alpha != 0:
        out.add_(grad, alpha=-alpha)
    return out


def sample_norm(x: Tensor) -> Tensor:
    """The L2 norm of each sample's elements, shape [B], in float32 or wider."""
    dims = tuple(range(1, x.dim()))
    return torch.linalg.vector_norm(x, dim=dims, dtype=torch.promote_types(x.dtype, torch.float32))


def relative_gradient(grad: Tensor, prev: Tensor) -> Tensor:
    """g_n scaled per sample to the norm of e_n(t-1): ||e_n(t-1)|| * g_n / ||g_n|| (0 where g_n
    is 0), so that alpha is a fraction of the state's norm (pc.alpha_normalization=relative,
    beyond the paper)."""
    g_norm = sample_norm(grad)
    scale = sample_norm(prev) / g_norm.clamp_min(torch.finfo(g_norm.dtype).tiny)
    scale = torch.where(g_norm > 0, scale, torch.zeros_like(scale))
    return grad * scale.to(grad.dtype).view(-1, *([1] * (grad.dim() - 1)))


def prediction_error(pred: Tensor, target: Tensor) -> Tensor:
    """Per-sample mean squared error between a decoder's prediction and its target, shape [B]."""
    if pred.shape != target.shape:
        raise ValueError(
            f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}"
        )
    return (pred - target).pow(2).flatten(1).mean(1)


def predict_and_gradient(
    decoder: nn.Module,
    e: Tensor,
    target: Tensor,
    reduction: str = "per_sample",
    differentiable: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Prediction d = W^b(e), per-sample error eps, and g = d eps / d e (the target held constant).

    per_sample: eps of each image is the mean over its own elements, so g does not depend on the
    batch. batch_mean (reference code): the loss is the mean over the whole batch tensor, so g is
    the per_sample gradient divided by the batch size. With ``differentiable`` the gradient keeps
    its graph (double backward through the decoder), for attacks and tuning. Otherwise decoders
    of the known form take the explicit adjoint (no graph), others autograd.
    """
    check_reduction(reduction)
    plan = None if differentiable else decoder_plan(decoder)
    if plan is not None:
        return adjoint_predict_and_gradient(plan, e, target, reduction)
    return autograd_predict_and_gradient(decoder, e, target, reduction, differentiable)


def autograd_predict_and_gradient(
    decoder: nn.Module,
    e: Tensor,
    target: Tensor,
    reduction: str = "per_sample",
    differentiable: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """``predict_and_gradient`` by autograd: works for any decoder; the graph is kept when
    ``differentiable``."""
    check_reduction(reduction)
    with torch.enable_grad():
        src = e if (differentiable and e.requires_grad) else e.detach().requires_grad_(True)
        pred = decoder(src)
        per_sample = prediction_error(pred, target if differentiable else target.detach())
        loss = per_sample.sum() if reduction == "per_sample" else per_sample.mean()
        (grad,) = torch.autograd.grad(loss, src, create_graph=differentiable)
    if not differentiable:
        return pred.detach(), per_sample.detach(), grad
    return pred, per_sample, grad


@torch.no_grad()
def decoder_window(
    decoder: nn.Module, in_shape: tuple[int, ...], tries: int = 10, seed: int = 0
) -> float:
    """C of the gradient scaling: how many output elements one input cell of the decoder reaches.

    Perturb the centre cell (all channels) of a random input with a large random value and count
    the decoder outputs that change; average over ``tries`` and over the batch (reference code).
    """
    gen = torch.Generator().manual_seed(seed)
    param = next(decoder.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    counts = []
    for _ in range(tries):
        x = torch.randn(in_shape, generator=gen).to(device, dtype)
        base = decoder(x)
        h, w = in_shape[-2] // 2, in_shape[-1] // 2
        x[:, :, h, w] += 1e3 * torch.randn(in_shape[0], in_shape[1], generator=gen).to(
            device, dtype
        )
        changed = (decoder(x) != base).flatten(1).sum(1).to(torch.float64)
        counts.append(changed.mean().item())
    return max(float(sum(counts) / len(counts)), 1.0)


def decoder_windows(decoders, shapes: list, tries: int = 10) -> Tensor:
    """C of every decoder, decoder n on a batch of 2 maps of e_n's shape (shapes: e_0..e_N)."""
    return torch.tensor(
        [decoder_window(d, (2, *shapes[i + 1]), tries=tries) for i, d in enumerate(decoders)]
    )


def error_scale(pred_numel_per_sample: int, batch: int, window: float, reduction: str) -> float:
    """K / sqrt(C) of the gradient scaling; K counts the batch too under batch_mean (reference)."""
    k = pred_numel_per_sample * (batch if reduction == "batch_mean" else 1)
    return k / window**0.5
