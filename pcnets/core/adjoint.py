"""The explicit adjoint of the decoders that pcnets builds ([bilinear upsample] ->
ConvTranspose2d -> [ReLU]): the prediction, the per-sample error and the error gradient
g = Up^T(ConvT^T(relu' * 2 (d - target) / K)) without building an autograd graph, and the
prepacked oneDNN weights that make the transposed convolution cheap on a CPU.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pcnets.core import polyphase
from pcnets.core.guards import check_reduction
from pcnets.core.shapes import memory_layout


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
    check_reduction(reduction)
    with torch.no_grad():
        if polyphase.pays(plan, e.shape):
            pred = polyphase.up_conv(plan, e)
            pred = pred.relu_() if plan.relu else pred
        else:
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
        grad_pred = diff.mul_(2.0 / error_elements(diff, reduction))
        if plan.relu:
            grad_pred = torch.ops.aten.threshold_backward(grad_pred, pred, 0)
        return pred, per_sample, adjoint_apply(plan, grad_pred, e.shape)


def error_elements(pred: Tensor, reduction: str) -> int:
    """K of the mean squared error: the elements of one sample (per_sample) or of the batch."""
    return pred[0].numel() * (pred.shape[0] if reduction == "batch_mean" else 1)


def adjoint_apply(plan: DecoderPlan, w: Tensor, e_shape: torch.Size) -> Tensor:
    """Up^T(ConvT^T(w)): the transpose of the decoder's linear part (no bias, no ReLU) applied to
    ``w`` (shaped like the prediction), back in the shape of the decoder's input ``e_shape``."""
    if polyphase.pays(plan, e_shape):
        return polyphase.up_conv_adjoint(plan, w, e_shape)
    c = plan.conv
    grad_u = F.conv2d(w, c.weight, None, c.stride, c.padding, c.dilation, c.groups)
    return grad_u if plan.up is None else polyphase.up_transpose(plan, grad_u, e_shape)


def linear_apply(plan: DecoderPlan, v: Tensor) -> Tensor:
    """ConvT(Up(v)) without the bias and the ReLU: the decoder's linear part applied to ``v``."""
    if polyphase.pays(plan, v.shape):
        return polyphase.up_conv(plan, v, bias=False)
    c = plan.conv
    u = plan.up(v) if plan.up is not None else v
    return F.conv_transpose2d(
        u, c.weight, None, c.stride, c.padding, c.output_padding, c.groups, c.dilation
    )


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
    if onednn_fp32(u, w) and w.numel() > u.numel() * (1 + w.shape[1] * conv.groups / w.shape[0]):
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
        return out.contiguous(memory_format=memory_layout(u))
    out = F.conv_transpose2d(
        u, w, conv.bias, conv.stride, conv.padding, conv.output_padding, conv.groups, conv.dilation
    )
    return torch.relu(out) if relu else out


def onednn_fp32(u: Tensor, w: Tensor) -> bool:
    """Whether oneDNN's own fp32 CPU kernels (prepacked or fused ops) may run on input ``u`` with
    weight ``w``: fp32 4-d on a CPU, oneDNN on, and no autocast or torch.compile around."""
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
