"""Folding eval-mode BatchNorm into the convolution before it: the same function with one
operation fewer per layer (issue "Speed where users spend it"; a switch of the Session).

A BatchNorm is folded when, among its parent's children, it directly follows a Conv2d with as many
output channels (timm and torchvision register their layers in the order they run). The module
itself stays in place, so forward hooks on it (encoders such as EfficientNet's ``bn1``) still see
its output; its forward just skips the normalisation (and keeps timm's activation, if any). Every
fold is checked on a random input and undone if the output moved.
"""

from __future__ import annotations

import types

import torch
from torch import nn

_DONE = "_pcnets_folded"


def _plain_forward(self, x):
    """A folded BatchNorm: what follows the normalisation (timm's drop and act), nothing else."""
    for name in ("drop", "act"):
        layer = getattr(self, name, None)
        if layer is not None:
            x = layer(x)
    return x


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
def fold_batchnorm(model: nn.Module, size: int = 64, tolerance: float = 1e-4) -> int:
    """Fold every foldable BatchNorm of ``model`` (in eval mode) into its convolution, in place;
    the number folded. If the output on a random input moves by more than ``tolerance`` (relative
    to its scale), nothing is folded: the layer order was not the order they run in."""
    pairs = foldable_pairs(model)
    if not pairs:
        return 0
    param = next(model.parameters())
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    x = x.to(param.device, param.dtype)
    before = model(x)
    saved = [(c, c.weight.clone(), None if c.bias is None else c.bias.clone()) for c, _ in pairs]
    for conv, bn in pairs:
        _fold(conv, bn)
    after = model(x)
    if (after - before).abs().max() > tolerance * before.abs().max().clamp_min(1.0):
        for (conv, weight, bias), (_, bn) in zip(saved, pairs, strict=True):
            conv.weight.copy_(weight)
            conv.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
            del bn.forward
            delattr(bn, _DONE)
        return 0
    return len(pairs)
