"""Folding eval-mode BatchNorm into the convolution before it, and the activation after it into the
convolution's oneDNN kernel: the same function with two passes over each feature map fewer
(issue "Speed where users spend it"; the Session's ``fold_bn`` switch).

A BatchNorm is folded when, among its parent's children, it directly follows a Conv2d with as many
output channels (timm and torchvision register their layers in the order they run). The module
itself stays in place, so forward hooks on it (encoders such as EfficientNet's ``bn1``) still see
its output; its forward just skips the normalisation. An activation (ReLU, ReLU6, SiLU) is fused
when it is a folded timm BatchNorm's own ``act``, or when it directly follows a Conv2d in an
nn.Sequential (VGG's features): the convolution then computes act(conv(x)), in one oneDNN call on
a CPU in fp32 without a graph (elsewhere as two calls), and the activation passes its input on.
Every fold is checked on a random input and undone if the output moved.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from timm.layers import Conv2dSame, pad_same
from torch import nn

from pcnets.core import kernels

_DONE = "_pcnets_folded"
_ACT = "_pcnets_act"  # on a convolution: (the activation's name in core.kernels, its function)
_FUSED = "_pcnets_act_fused"  # on an activation (or a folded BatchNorm) the convolution took over
_ACTS = {nn.ReLU: ("relu", F.relu), nn.ReLU6: ("relu6", F.relu6), nn.SiLU: ("silu", F.silu)}


def _plain_forward(self, x):
    """A folded BatchNorm: what follows the normalisation (timm's drop and act), nothing else;
    the act not when its convolution computes it."""
    for name in ("drop", "act"):
        layer = getattr(self, name, None)
        if layer is not None and not (name == "act" and getattr(self, _FUSED, False)):
            x = layer(x)
    return x


def _passthrough(self, x):
    return x


def _conv_act_forward(self, x):
    """act(conv(x)): one fused kernel where it may run (core.kernels.conv_act), else two calls."""
    name, act = getattr(self, _ACT)
    same = type(self) is Conv2dSame  # timm's TF "same" padding, padded at every call
    u = pad_same(x, self.kernel_size, self.stride, self.dilation) if same else x
    pad = [0, 0] if same else list(self.padding)
    out = kernels.conv_act(u, self.weight, self.bias, pad, self.stride, self.dilation,
                           self.groups, name)  # fmt: skip
    return act(type(self).forward(self, x)) if out is None else out


def fusable_activations(model: nn.Module) -> list[tuple[nn.Conv2d, nn.Module]]:
    """(conv, module) pairs whose activation the convolution can compute: a folded timm
    BatchNorm's act, or a ReLU, ReLU6 or SiLU right after a Conv2d in an nn.Sequential."""
    pairs = []
    for parent in model.modules():
        children = list(parent.children())
        for prev, child in zip(children, children[1:], strict=False):
            if type(prev) not in (nn.Conv2d, Conv2dSame) or prev.padding_mode != "zeros":
                continue  # a subclass may change forward
            if isinstance(prev.padding, str) or getattr(prev, _ACT, None) is not None:
                continue
            if prev._forward_hooks or prev._forward_pre_hooks or child._forward_pre_hooks:
                continue  # a hook must see the convolution's own output or the act's own input
            if getattr(child, _DONE, False) and type(getattr(child, "drop", None)) is nn.Identity:
                act = getattr(child, "act", None)
            elif type(parent) is nn.Sequential and children.count(child) == 1:
                act = child
            else:
                continue
            if type(act) in _ACTS and not getattr(act, "inplace", False):
                pairs.append((prev, child))
    return pairs


def _fuse(conv: nn.Conv2d, module: nn.Module) -> None:
    act = module.act if getattr(module, _DONE, False) else module
    setattr(conv, _ACT, _ACTS[type(act)])
    conv.forward = types.MethodType(_conv_act_forward, conv)
    if module is act:
        module.forward = types.MethodType(_passthrough, module)
    setattr(module, _FUSED, True)


def _unfuse(conv: nn.Conv2d, module: nn.Module) -> None:
    del conv.forward
    delattr(conv, _ACT)
    if "forward" in module.__dict__ and not getattr(module, _DONE, False):
        del module.forward
    delattr(module, _FUSED)


def foldable_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """(conv, bn) pairs where an eval-mode BatchNorm2d directly follows its Conv2d."""
    pairs = []
    for parent in model.modules():
        children = list(parent.children())
        for prev, child in zip(children, children[1:], strict=False):
            if (
                isinstance(child, nn.BatchNorm2d)
                and isinstance(prev, nn.Conv2d)
                and prev.out_channels == child.num_features
                and child.track_running_stats
                and not child.training
                and not getattr(child, _DONE, False)
            ):
                pairs.append((prev, child))
    return pairs


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else None
    if scale is None:
        scale = 1 / torch.sqrt(bn.running_var + bn.eps)
    shift = (bn.bias if bn.affine else 0) - bn.running_mean * scale
    conv.weight.mul_(scale.view(-1, 1, 1, 1).to(conv.weight.dtype))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(shift)
    conv.bias = nn.Parameter(bias * scale + shift, requires_grad=False)
    bn.forward = types.MethodType(_plain_forward, bn)
    setattr(bn, _DONE, True)


@torch.no_grad()
def fold_batchnorm(
    model: nn.Module, size: int = 64, tolerance: float = 1e-4, fuse: bool = True
) -> int:
    """Fold every foldable BatchNorm of ``model`` (in eval mode) into its convolution and fuse the
    activations that follow (unless not ``fuse``: numerics ``fast_kernels: false``), in place; the
    number of BatchNorms folded. If the output on a random input moves by more than
    ``tolerance`` (relative to its scale), nothing is folded or fused: the layer order was not
    the order they run in."""
    pairs = foldable_pairs(model)
    if not pairs and not (fuse and fusable_activations(model)):
        return 0
    param = next(model.parameters())
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    x = x.to(param.device, param.dtype)
    before = model(x)
    saved = [(c, c.weight.clone(), None if c.bias is None else c.bias.clone()) for c, _ in pairs]
    for conv, bn in pairs:
        _fold(conv, bn)
    fused = fusable_activations(model) if fuse else []
    for conv, module in fused:
        _fuse(conv, module)
    after = model(x)
    if (after - before).abs().max() > tolerance * before.abs().max().clamp_min(1.0):
        for conv, module in fused:
            _unfuse(conv, module)
        for (conv, weight, bias), (_, bn) in zip(saved, pairs, strict=True):
            conv.weight.copy_(weight)
            conv.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
            del bn.forward
            delattr(bn, _DONE)
        return 0
    return len(pairs)
