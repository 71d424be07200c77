"""The polyphase form of [bilinear x2 -> ConvTranspose2d 3x3] equals the plain one, forward and
adjoint, border lines included, and is used only where it applies."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pcnets.core import _polyphase, kernels
from pcnets.core.adjoint import adjoint_predict_and_gradient
from pcnets.core.kernels import decoder_plan


def _decoder(ci: int, co: int, relu: bool = False, **up) -> nn.Sequential:
    torch.manual_seed(ci * 31 + co)
    layers = [
        nn.Upsample(scale_factor=2, mode="bilinear", **up),
        nn.ConvTranspose2d(ci, co, 3, 1, 1),
    ]
    return nn.Sequential(*layers, *([nn.ReLU()] if relu else [])).double()


@pytest.mark.parametrize("ci,co,h,w", [(32, 3, 8, 8), (24, 16, 9, 12), (5, 7, 16, 8)])
def test_forward_and_adjoint_equal_upsampling_then_the_transposed_convolution(ci, co, h, w):
    dec = _decoder(ci, co)
    plan = decoder_plan(dec)
    e = torch.randn(2, ci, h, w, dtype=torch.float64, requires_grad=True)
    assert _polyphase.fits(plan.up, plan.conv, e.shape)
    plain = dec(e)
    with torch.no_grad():
        fused = _polyphase.up_conv(plan.up, plan.conv, e)
        linear = _polyphase.up_conv(plan.up, plan.conv, e, bias=False)
    assert fused.shape == plain.shape == (2, co, 2 * h, 2 * w)
    assert (fused - plain).abs().max() < 1e-12  # the border lines too
    bias = dec[1].bias.view(1, -1, 1, 1)
    assert (linear - (plain - bias)).abs().max() < 1e-12
    v = torch.randn_like(plain)
    (want,) = torch.autograd.grad((plain * v).sum(), e)
    got = _polyphase.up_conv_adjoint(plan.up, plan.conv, v, e.shape)
    assert (got - want).abs().max() < 1e-12
    assert (got[..., 0, :] - want[..., 0, :]).abs().max() < 1e-12  # the clamped border row
    assert want.abs().max() > 1e-3


def test_the_engine_path_takes_it_and_gives_the_same_prediction_and_gradient():
    dec = _decoder(8, 2, relu=True).float()
    plan = decoder_plan(dec)
    e = torch.randn(2, 8, 12, 10)
    target = torch.randn(2, 2, 24, 20)
    assert kernels.polyphase(plan, e.shape)
    assert not kernels.polyphase(decoder_plan(_decoder(8, 4)), e.shape)  # 4 x 4 phases > 8 inputs
    pred, err, grad = adjoint_predict_and_gradient(plan, e, target)
    src = e.clone().requires_grad_(True)
    want_pred = dec(src)
    loss = ((want_pred - target) ** 2).flatten(1).mean(1).sum()
    (want_grad,) = torch.autograd.grad(loss, src)
    assert (pred - want_pred).abs().max() < 1e-5
    assert (grad - want_grad).abs().max() < 1e-5 * want_grad.abs().max()
    assert (want_pred == 0).any()  # the ReLU's mask matters here


@pytest.mark.parametrize(
    "up,shape",
    [({"align_corners": True}, (1, 4, 16, 16)), ({}, (1, 4, 4, 16)), ({"scale_factor": 3}, None)],
)
def test_other_upsamplings_and_small_maps_keep_the_plain_path(up, shape):
    scale = up.pop("scale_factor", 2)
    dec = nn.Sequential(
        nn.Upsample(scale_factor=scale, mode="bilinear", **up), nn.ConvTranspose2d(4, 2, 3, 1, 1)
    )
    plan = decoder_plan(dec)
    shape = shape or (1, 4, 16, 16)
    assert not _polyphase.fits(plan.up, plan.conv, torch.Size(shape))
    e = torch.randn(shape)
    w = torch.randn_like(dec(e))
    src = e.clone().requires_grad_(True)
    (want,) = torch.autograd.grad((dec(src) * w).sum(), src)
    assert (kernels.adjoint(plan, w, e.shape) - want).abs().max() < 1e-5
