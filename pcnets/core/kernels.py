"""The one door to the fast kernels: a decoder's prediction, its linear part and that part's
transpose (the adjoint), and a convolution with its activation, each in the fastest exact form.

    predict(plan, e)          d = [ReLU](ConvT(Up(e)))      the decoder's own output
    linear(plan, v)           A v = ConvT(Up(v))           no bias, no ReLU
    adjoint(plan, w, shape)   A^T w = Up^T(ConvT^T(w))     back to the decoder's input shape
    conv_act(conv, x, act)    act(conv2d(x)), or None where no fused kernel may run

The forms behind it: the polyphase form of bilinear x2 + ConvT 3x3 (core/_polyphase.py), a
prepacked oneDNN ConvTranspose2d weight and oneDNN's fused convolution + activation
(core/_onednn.py). Every one gives the plain form's numbers up to float rounding. A plan made
with ``fast=False`` (the numerics switch ``fast_kernels: false``) takes the plain torch kernels
only, and ``conv_act`` then says None.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pcnets.core import _onednn, _polyphase


@dataclass(frozen=True)
class DecoderPlan:
    """A decoder that the explicit adjoint understands: [Upsample] -> ConvTranspose2d -> [ReLU];
    ``fast``: whether the fast kernels may compute it."""

    up: nn.Upsample | None
    conv: nn.ConvTranspose2d
    relu: bool
    fast: bool = True


def decoder_plan(decoder: nn.Module, fast: bool = True) -> DecoderPlan | None:
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
    return None if parts else DecoderPlan(up, conv, relu, bool(fast))


def polyphase(plan: DecoderPlan, e_shape: torch.Size) -> bool:
    """Whether the polyphase form computes this plan at input shape ``e_shape``."""
    return plan.fast and _polyphase.pays(plan.up, plan.conv, e_shape)


def predict(plan: DecoderPlan, e: Tensor) -> Tensor:
    """The decoder's prediction d = [ReLU](ConvT(Up(e)))."""
    if polyphase(plan, e.shape):
        pred = _polyphase.up_conv(plan.up, plan.conv, e)
        return pred.relu_() if plan.relu else pred
    c = plan.conv
    u = plan.up(e) if plan.up is not None else e
    if plan.fast and _onednn.packing_pays(c, u):
        return _onednn.packed_conv_transpose(c, u, plan.relu)
    out = F.conv_transpose2d(
        u, c.weight, c.bias, c.stride, c.padding, c.output_padding, c.groups, c.dilation
    )
    return torch.relu(out) if plan.relu else out


def linear(plan: DecoderPlan, v: Tensor) -> Tensor:
    """A v = ConvT(Up(v)) without the bias and the ReLU: the decoder's linear part."""
    if polyphase(plan, v.shape):
        return _polyphase.up_conv(plan.up, plan.conv, v, bias=False)
    c = plan.conv
    u = plan.up(v) if plan.up is not None else v
    return F.conv_transpose2d(
        u, c.weight, None, c.stride, c.padding, c.output_padding, c.groups, c.dilation
    )


def adjoint(plan: DecoderPlan, w: Tensor, e_shape: torch.Size) -> Tensor:
    """A^T w = Up^T(ConvT^T(w)): the transpose of ``linear`` applied to ``w`` (shaped like the
    prediction), in the shape of the decoder's input ``e_shape``. ConvT^T is conv2d with the same
    weight, stride, padding, dilation and groups; Up^T is the upsampling's own backward kernel."""
    if polyphase(plan, e_shape):
        return _polyphase.up_conv_adjoint(plan.up, plan.conv, w, e_shape)
    c = plan.conv
    grad_u = F.conv2d(w, c.weight, None, c.stride, c.padding, c.dilation, c.groups)
    return grad_u if plan.up is None else _polyphase.up_transpose(plan.up, grad_u, e_shape)


ACTIVATIONS = tuple(_onednn.POINTWISE)  # what conv_act can fuse: relu, relu6, silu


def conv_act(
    x: Tensor, w: Tensor, b: Tensor | None, padding, stride, dilation, groups: int, act: str
) -> Tensor | None:
    """act(conv2d(x, w, b)) in one oneDNN call where it may run (fp32 on a CPU, no graph to
    keep); None elsewhere, and the caller then runs the convolution and the activation."""
    needs_graph = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, w, b)
    )
    if needs_graph or not _onednn.usable(x, w):
        return None
    return _onednn.conv_pointwise(x, w, b, padding, stride, dilation, groups, act)
