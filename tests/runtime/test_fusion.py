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
from pcnets.runtime.numerics import Numerics, prepare, to_device

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


def _lite0():
    """Lite0 with random weights and BatchNorm statistics, and an error term that matters."""
    torch.manual_seed(0)
    pnet = build_pnet("efficientnet_lite0", pretrained=False, probe_size=64).eval()
    _randomise_batchnorm(pnet.backbone)
    pnet.set_hyperparameters(beta=0.6, lam=0.3, alpha=5.0)
    return pnet


@torch.no_grad()
@pytest.mark.parametrize("channels_last", [False, True])
def test_folded_lite0_dynamics_equal_the_reference_loop_at_every_timestep(channels_last):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    expected = reference_run(_lite0(), x, 3)
    num = Numerics(torch.device("cpu"), fold_bn=True, channels_last=channels_last)
    folded = prepare(_lite0(), num)
    assert sum(getattr(m, "_pcnets_folded", False) for m in folded.modules()) == 49
    assert sum(hasattr(m, "_pcnets_act") for m in folded.modules()) == 33  # ReLU6 in the conv
    got_all = folded.run(to_device(x, num), 3)
    assert got_all[3].shape == (2, 1000) and (got_all[3] - got_all[0]).abs().max() > 1e-3
    for want, got in zip(expected, got_all, strict=True):
        assert (want - got).abs().max().item() < 1e-4 * max(1.0, want.abs().max().item())


def test_pvgg16_with_relus_fused_into_its_convolutions_equals_the_reference_loop():
    def pvgg16():
        torch.manual_seed(0)
        pnet = build_pnet("vgg16", pretrained=False).eval()
        pnet.set_hyperparameters(beta=0.6, lam=0.3, alpha=50.0)
        return pnet

    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    expected = reference_run(pvgg16(), x, 2)
    fused = prepare(pvgg16(), Numerics(torch.device("cpu"), fold_bn=True))
    features = fused.backbone.features
    assert sum(hasattr(m, "_pcnets_act") for m in features) == 13  # every conv takes its ReLU
    assert features[3]._forward_hooks  # encoder 1 is a fused ReLU: its hook still sees e_1
    with torch.no_grad():
        got_all = fused.run(x, 2)
    assert (got_all[2] - got_all[0]).abs().max() > 1e-3
    for want, got in zip(expected, got_all, strict=True):
        assert (want - got).abs().max().item() < 1e-4 * max(1.0, want.abs().max().item())


def test_fused_activations_keep_the_input_gradient_of_the_unrolled_dynamics():
    """Attacks differentiate through the dynamics: a fused convolution then runs as conv + act
    with autograd, and the input gradient is the unfused network's."""

    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    grads = []
    for net in (_lite0(), prepare(_lite0(), Numerics(torch.device("cpu"), fold_bn=True))):
        xi = x.clone().requires_grad_(True)
        net.run(xi, 2, differentiable=True)[-1][0, 7].backward()
        grads.append(xi.grad)
    assert grads[0].abs().max() > 1e-6
    assert (grads[0] - grads[1]).abs().max() <= 1e-4 * grads[0].abs().max()


def test_a_convolution_or_activation_with_its_own_hooks_is_not_fused():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.ReLU6())
    seen = []
    model[0].register_forward_hook(lambda m, i, out: seen.append(out.min().item()))
    model[3].register_forward_pre_hook(lambda m, inp: seen.append(inp[0].min().item()))
    x = torch.randn(2, 3, 8, 8)
    want = model(x)
    seen.clear()
    fold_batchnorm(model.eval())
    assert not hasattr(model[0], "_pcnets_act") and not hasattr(model[2], "_pcnets_act")
    assert torch.equal(model(x), want)
    assert seen[0] < 0 and seen[1] < 0  # the conv's own output and the ReLU6's own input

    plain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU6(), nn.Conv2d(4, 4, 1), nn.SiLU())
    want = plain(x)
    fold_batchnorm(plain.eval())
    assert hasattr(plain[0], "_pcnets_act") and hasattr(plain[2], "_pcnets_act")
    assert (plain(x) - want).abs().max() < 1e-5


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


def test_fast_kernels_false_turns_every_fast_kernel_off_and_keeps_the_numbers(monkeypatch):
    from pcnets.core import kernels

    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    fast_num = Numerics(torch.device("cpu"), fold_bn=True)
    plain_num = Numerics(torch.device("cpu"), fold_bn=True, fast_kernels=False)
    assert plain_num.label == "fp32+fold_bn+no_fast_kernels" and fast_num.label == "fp32+fold_bn"
    fast, plain = prepare(_lite0(), fast_num), prepare(_lite0(), plain_num)
    assert sum(hasattr(m, "_pcnets_act") for m in plain.modules()) == 0  # no conv + act
    assert sum(getattr(m, "_pcnets_folded", False) for m in plain.modules()) == 49  # folding stays
    shape = torch.Size((2, 32, 32, 32))  # decoder 1's input at 64 px: polyphase pays there
    assert kernels.polyphase(kernels.decoder_plan(fast.decoders[0], fast.fast_kernels), shape)
    assert not kernels.polyphase(kernels.decoder_plan(plain.decoders[0], False), shape)
    calls = []
    real = torch.ops.mkldnn._convolution_pointwise
    monkeypatch.setattr(
        torch.ops.mkldnn, "_convolution_pointwise", lambda *a: calls.append(1) or real(*a)
    )
    with torch.no_grad():
        want = fast.run(x, 3)
        assert len(calls) >= 33  # the fast net's fused convolutions
        calls.clear()
        got = plain.run(x, 3)
    assert calls == []
    for a, b in zip(want, got, strict=True):
        assert (a - b).abs().max().item() < 1e-4 * max(1.0, a.abs().max().item())
