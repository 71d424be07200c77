"""Folding BatchNorm into convolutions gives the same function, keeps encoder hooks working, and
refuses a model whose layer order is not the order they run in."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from pcnets import build_pnet
from pcnets.core.reference import reference_run
from pcnets.runtime.fusion import fold_batchnorm
from pcnets.runtime.numerics import Numerics, prepare

pytestmark = pytest.mark.usefixtures("one_thread")


def _randomise_batchnorm(model: nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)


@torch.no_grad()
def test_folded_lite0_dynamics_equal_the_reference_loop_at_every_timestep():
    def lite0():
        torch.manual_seed(0)
        pnet = build_pnet("efficientnet_lite0", pretrained=False, probe_size=64).eval()
        _randomise_batchnorm(pnet.backbone)
        pnet.set_hyperparameters(beta=0.6, lam=0.3, alpha=5.0)
        return pnet

    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    expected = reference_run(lite0(), x, 3)
    folded = prepare(lite0(), Numerics(torch.device("cpu"), fold_bn=True))
    assert sum(getattr(m, "_pcnets_folded", False) for m in folded.modules()) == 49
    for want, got in zip(expected, folded.run(x, 3), strict=True):
        assert (want - got).abs().max().item() < 1e-4 * max(1.0, want.abs().max().item())


def test_a_batchnorm_registered_before_the_conv_it_follows_is_left_alone():
    class Swapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_a = nn.Conv2d(3, 3, 3, padding=1)
            self.bn = nn.BatchNorm2d(3)  # registered after conv_a but runs after conv_b
            self.conv_b = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return self.bn(self.conv_b(self.conv_a(x)))

    model = Swapped().eval()
    _randomise_batchnorm(model)
    before = model(torch.rand(1, 3, 16, 16))
    assert fold_batchnorm(model) == 0
    assert not getattr(model.bn, "_pcnets_folded", False)
    x = torch.rand(1, 3, 16, 16)
    assert torch.allclose(model(x), copy.deepcopy(model)(x)) and before.shape == (1, 3, 16, 16)


def test_a_session_folds_only_the_networks_its_command_built():
    from pcnets.config import compose
    from pcnets.runtime.session import Session

    def net():
        torch.manual_seed(0)
        pnet = build_pnet("efficientnet_lite0", pretrained=False, probe_size=64).eval()
        _randomise_batchnorm(pnet.backbone)
        return pnet

    cfg = compose(["device=cpu", "fold_bn=true"])
    theirs = net()
    before = copy.deepcopy(theirs.backbone.state_dict())
    session = Session.start("eval-noise", cfg, run_folder=False)
    session.prepare(theirs, own=False)
    after = theirs.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the caller's weights as given
    assert "fold_bn" not in session.numerics.label
    ours = Session.start("eval-noise", cfg, run_folder=False)
    folded = ours.prepare(net())
    assert "fold_bn" in ours.numerics.label
    changed = folded.backbone.state_dict()
    assert any(not torch.equal(before[k], changed[k]) for k in before)
