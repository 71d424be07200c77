"""The predictive-coding update and its error gradient (METHOD.md sections 2-3), tensors in and out.

Two ways to the error gradient g = d eps / d e: autograd through the decoder (any decoder, and
the only way when a graph must be kept), and an explicit adjoint for the decoders that pcnets
builds ([bilinear upsample] -> ConvTranspose2d -> [ReLU]), which gives the same numbers without
building a graph: g = Up^T(ConvT^T(relu' * 2 (d - target) / K)).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REDUCTIONS = ("per_sample", "batch_mean")


def pc_update(
    ff: Tensor,
    prev: Tensor,
    grad: Tensor,
    beta: Tensor | float,
    lam: Tensor | float,
    alpha: Tensor | float,
    fb: Tensor | None,
) -> Tensor:
    """e_n(t) = beta*ff_n(t) + lam*d_n(t-1) + (1-beta-lam)*e_n(t-1) - alpha*g_n(t-1).

    ``fb`` is the prediction of e_n made by encoder n+1 at t-1; the top encoder has none, and its
    memory share is then 1 - beta (lam is ignored).
    """
    if fb is None:
        return beta * ff + (1 - beta) * prev - alpha * grad
    return beta * ff + lam * fb + (1 - beta - lam) * prev - alpha * grad


def pc_update_fused(
    ff: Tensor,
    prev: Tensor,
    grad: Tensor | None,
    beta: float,
    lam: float,
    memory: float,
    alpha: float,
    fb: Tensor | None,
) -> Tensor:
    """``pc_update`` with Python-number coefficients, in one new tensor: one multiply, then
    fused multiply-adds in place; terms whose coefficient is 0 are skipped (no graph is kept).

    ``memory`` is the weight of e_n(t-1): 1 - beta - lam, or 1 - beta for the top encoder.
    """
    out = torch.mul(ff, beta)
    if fb is not None and lam != 0:
        out.add_(fb, alpha=lam)
    if memory != 0:
        out.add_(prev, alpha=memory)
    if grad is not None and alpha != 0:
        out.add_(grad, alpha=-alpha)
    return out


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
    if reduction not in REDUCTIONS:
        raise ValueError(f"error_reduction must be one of {REDUCTIONS}, got {reduction!r}")
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
    if reduction not in REDUCTIONS:
        raise ValueError(f"error_reduction must be one of {REDUCTIONS}, got {reduction!r}")
    with torch.enable_grad():
        src = e if (differentiable and e.requires_grad) else e.detach().requires_grad_(True)
        pred = decoder(src)
        per_sample = prediction_error(pred, target if differentiable else target.detach())
        loss = per_sample.sum() if reduction == "per_sample" else per_sample.mean()
        (grad,) = torch.autograd.grad(loss, src, create_graph=differentiable)
    if not differentiable:
        return pred.detach(), per_sample.detach(), grad
    return pred, per_sample, grad


# ---- the explicit adjoint ----------------------------------------------------------------


@dataclass(frozen=True)
class DecoderPlan:
    """A decoder that the explicit adjoint understands: [Upsample] -> ConvTranspose2d -> [ReLU]."""

    up: nn.Upsample | None
    conv: nn.ConvTranspose2d
    relu: bool


def decoder_plan(decoder: nn.Module) -> DecoderPlan | None:
    """The plan of a decoder of the known form, or None (then autograd computes the gradient).

    Only exact module types qualify (a subclass may change forward), without hooks, with zero
    padding and a bilinear upsampling by a fixed scale factor.
    """
    parts = list(decoder) if type(decoder) is nn.Sequential else [decoder]
    if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
        return None
    if any(m._forward_hooks or m._forward_pre_hooks for m in [decoder, *parts]):
        return None
    up = None
    if parts and type(parts[0]) is nn.Upsample:
        up = parts.pop(0)
        if up.mode != "bilinear" or up.size is not None or up.scale_factor is None:
            return None
        if up.recompute_scale_factor:
            return None
    if not parts or type(parts[0]) is not nn.ConvTranspose2d:
        return None
    conv = parts.pop(0)
    if conv.padding_mode != "zeros" or not isinstance(conv.padding, tuple):
        return None
    relu = bool(parts) and type(parts[0]) is nn.ReLU
    if relu:
        parts.pop(0)
    return None if parts else DecoderPlan(up, conv, relu)


def adjoint_predict_and_gradient(
    plan: DecoderPlan,
    e: Tensor,
    target: Tensor,
    reduction: str = "per_sample",
    need_error: bool = True,
    need_grad: bool = True,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``predict_and_gradient`` without autograd: the forward pass, then its adjoint by hand.

    g = Up^T(ConvT^T(relu'(d) * 2 (d - target) / K)): ConvT^T is conv2d with the same weight,
    stride, padding, dilation and groups; Up^T is the bilinear upsampling's own backward kernel.
    K is the number of elements per sample (per_sample) or in the batch (batch_mean). The error
    and the gradient are skipped when not needed (None).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"error_reduction must be one of {REDUCTIONS}, got {reduction!r}")
    with torch.no_grad():
        u = plan.up(e) if plan.up is not None else e
        pred = _conv_transpose(plan.conv, u, plan.relu)
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}"
            )
        if not (need_error or need_grad):
            return pred, None, None
        diff = pred - target
        per_sample = diff.square().mean(dim=tuple(range(1, diff.dim()))) if need_error else None
        if not need_grad:
            return pred, per_sample, None
        k = diff[0].numel() * (diff.shape[0] if reduction == "batch_mean" else 1)
        grad_pred = diff.mul_(2.0 / k)
        if plan.relu:
            grad_pred = torch.ops.aten.threshold_backward(grad_pred, pred, 0)
        c = plan.conv
        grad_u = F.conv2d(grad_pred, c.weight, None, c.stride, c.padding, c.dilation, c.groups)
        if plan.up is None:
            return pred, per_sample, grad_u
        scale = plan.up.scale_factor
        sh, sw = (scale, scale) if not isinstance(scale, tuple) else scale
        grad = torch.ops.aten.upsample_bilinear2d_backward(
            grad_u,
            list(u.shape[-2:]),
            list(e.shape),
            bool(plan.up.align_corners),
            float(sh),
            float(sw),
        )
        return pred, per_sample, grad


# oneDNN reorders a ConvTranspose2d weight into its own layout at every call, which costs as
# much as the convolution itself for the large decoder kernels on a CPU; keep one packed copy per
# decoder (tied to the weight's storage and version, so training or loading repacks it). The
# packed kernel works in channels_last, so it pays when the weight outweighs the feature maps
# that must be brought to that layout and back.
_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _conv_transpose(conv: nn.ConvTranspose2d, u: Tensor, relu: bool) -> Tensor:
    """ConvTranspose2d (+ ReLU) of ``u``; on a CPU in fp32 with oneDNN, with a prepacked weight
    when that is cheaper than oneDNN's per-call weight reorder."""
    w = conv.weight
    if _can_pack(u, w) and w.numel() > u.numel() * (1 + w.shape[1] * conv.groups / w.shape[0]):
        key = (w.data_ptr(), w._version, w.dtype, tuple(u.shape[1:]))
        entry = _PACKED.get(conv)
        if entry is None or entry[0] != key:
            packed = torch.ops.mkldnn._reorder_convolution_transpose_weight(
                w, list(conv.padding), list(conv.output_padding), list(conv.stride),
                list(conv.dilation), conv.groups, list(u.shape),
            )  # fmt: skip
            entry = (key, packed)
            _PACKED[conv] = entry
        out = torch.ops.mkldnn._convolution_transpose_pointwise(
            u, entry[1], conv.bias, list(conv.padding), list(conv.output_padding),
            list(conv.stride), list(conv.dilation), conv.groups, "relu" if relu else "none", [], "",
        )  # fmt: skip
        # oneDNN hands back channels_last; keep the caller's layout (and with it the numerics).
        return out.contiguous(memory_format=_layout(u))
    out = F.conv_transpose2d(
        u, w, conv.bias, conv.stride, conv.padding, conv.output_padding, conv.groups, conv.dilation
    )
    return torch.relu(out) if relu else out


def _can_pack(u: Tensor, w: Tensor) -> bool:
    return (
        not torch.compiler.is_compiling()
        and u.device.type == "cpu"
        and u.dtype == torch.float32
        and w.dtype == torch.float32
        and u.dim() == 4
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and not torch.is_autocast_enabled("cpu")
        and hasattr(torch.ops.mkldnn, "_convolution_transpose_pointwise")
    )


def _layout(x: Tensor) -> torch.memory_format:
    cl = torch.channels_last
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=cl):
        return cl
    return torch.contiguous_format


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


def error_scale(pred_numel_per_sample: int, batch: int, window: float, reduction: str) -> float:
    """K / sqrt(C) of the gradient scaling; K counts the batch too under batch_mean (reference)."""
    k = pred_numel_per_sample * (batch if reduction == "batch_mean" else 1)
    return k / window**0.5
