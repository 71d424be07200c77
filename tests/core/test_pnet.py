"""PredictiveNet's modes: built for inference, train() trains the decoders only, and calling the
net itself is refused rather than silently returning the feedforward logits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pcnets import build_pnet
from pcnets.errors import PcnetsError


@pytest.fixture(scope="module")
def lite0():
    """A backbone with BatchNorm (random weights), so a flipped mode would show."""
    return build_pnet("efficientnet_lite0", pretrained=False, probe_size=32)


def batch_norms(pnet) -> list[nn.Module]:
    return [m for m in pnet.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def test_build_pnet_returns_eval_mode(lite0):
    assert not lite0.training
    assert [m for m in lite0.modules() if m.training] == []


def test_train_mode_never_reaches_the_frozen_backbone(lite0):
    x = torch.rand(2, 3, 32, 32)
    before = [bn.running_mean.clone() for bn in batch_norms(lite0)]
    lite0.train()
    try:
        assert lite0.training and lite0.decoders.training
        assert all(d.training for d in lite0.decoders.modules())
        assert [m for m in lite0.backbone.modules() if m.training] == []
        lite0.run(x, timesteps=1)
        after = [bn.running_mean for bn in batch_norms(lite0)]
        assert len(before) > 10
        assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
        lite0.set_decoders(list(lite0.decoders))  # new decoders take the net's current mode
        assert lite0.decoders.training
    finally:
        lite0.eval()
    assert not lite0.decoders.training


def test_calling_the_net_is_refused_with_a_pointer_to_classifier(lite0):
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(PcnetsError, match=r"pcnets\.classifier\(pnet, timesteps=T\)") as err:
        lite0(x)
    assert "\n" not in str(err.value)
    with torch.no_grad():
        plain = lite0.backbone(lite0.normalize(x))
        assert torch.equal(lite0.feedforward(x), plain)
        assert torch.allclose(lite0.run(x, timesteps=2)[0], plain, atol=1e-6)


def test_one_run_at_a_time_and_the_slot_is_empty_after_it(tmp_path):
    from helpers import tiny_pnet

    pnet = tiny_pnet()
    x = torch.rand(1, 3, 8, 8)
    handle = pnet.backbone[-1].register_forward_hook(lambda *_: pnet.run(x, 1))
    with pytest.raises(RuntimeError, match="a run of this PredictiveNet is already in progress"):
        pnet.run(x, 1)
    handle.remove()
    assert pnet.run_slot.current is None  # cleared by the failed run too
    assert torch.equal(pnet.backbone(x), pnet.backbone(x))  # hooks pass through outside a run
    assert pnet.decoders_trained_on is None
    pnet.save_decoders(tmp_path / "d.pt", data={"split": "train"})
    assert pnet.load_decoders(tmp_path / "d.pt")["data"] == {"split": "train"}
    assert pnet.decoders_trained_on == {"split": "train"}


def test_double_holds_the_hyperparameters_and_normalisation_as_given():
    from helpers import tiny_pnet

    pnet = tiny_pnet()
    pnet.set_hyperparameters(beta=0.7, lam=[0.1, 0.2, 0.3], alpha=0.01)
    assert pnet.beta.dtype == torch.float32 and pnet.beta[0].item() != 0.7  # float32's rounding
    pnet.double()
    assert pnet.beta.tolist() == [0.7] * 3 and pnet.lam.tolist() == [0.1, 0.2, 0.3]
    assert pnet.alpha.tolist() == [0.01] * 3
    assert pnet.mean.dtype == torch.float64 and pnet.mean.flatten()[0].item() == 0.4
    pnet.float()
    assert pnet.beta[0].item() == torch.tensor(0.7, dtype=torch.float32).item()
