"""The explicit adjoint as an autograd Function: its input and target gradients equal autograd's
double backward through the decoder, for every decoder form pcnets builds."""

from __future__ import annotations

import pytest
import torch
from test_fast_path import _cases

from pcnets.core.adjoint_grad import differentiable_step
from pcnets.core.dynamics import autograd_predict_and_gradient
from pcnets.core.kernels import decoder_plan

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("decoder,in_ch", list(_cases()))
@pytest.mark.parametrize("reduction", ["per_sample", "batch_mean"])
def test_the_function_differentiates_like_autograds_double_backward(decoder, in_ch, reduction):
    decoder = decoder.requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    e = torch.randn(2, in_ch, 6, 6, generator=gen)
    with torch.no_grad():
        shape = decoder(e).shape
    target = torch.randn(shape, generator=gen)
    w_pred = torch.randn(shape, generator=gen)
    w_grad = torch.randn(e.shape, generator=gen)
    results = []
    for ours in (True, False):
        ee, tt = e.clone().requires_grad_(True), target.clone().requires_grad_(True)
        if ours:
            pred, grad = differentiable_step(decoder_plan(decoder), ee, tt, reduction)
        else:
            pred, _, grad = autograd_predict_and_gradient(decoder, ee, tt, reduction, True)
        ((pred * w_pred).sum() + 1e3 * (grad * w_grad).sum()).backward()
        results.append((pred.detach(), grad.detach(), ee.grad, tt.grad))
    for a, b in zip(*results, strict=True):
        scale = b.abs().max().item()
        assert scale > 0
        assert (a - b).abs().max().item() <= 2e-5 * scale
