"""A non-finite number never becomes an accuracy: NaN decoder weights or an alpha that diverges
stop the run with one line on every numerics path (issue 24 item 1), checked on the states each
timestep computes anyway."""

from __future__ import annotations

import pytest
import torch

from pcnets import build_pnet
from pcnets.core import kernels
from pcnets.core.classifier import classifier
from pcnets.errors import PcnetsError
from pcnets.runtime.numerics import Numerics, prepare, run

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")
PATHS = {
    "plain": Numerics(CPU),
    "fused": Numerics(CPU, fold_bn=True),
    "channels_last": Numerics(CPU, fold_bn=True, channels_last=True),
    "bf16": Numerics(CPU, amp=True, fold_bn=True),
    "plain_kernels": Numerics(CPU, fold_bn=True, fast_kernels=False),
}


def _lite0(fault: str):
    torch.manual_seed(0)
    pnet = build_pnet("efficientnet_lite0", pretrained=False, probe_size=64).eval()
    if fault == "nan_decoders":
        with torch.no_grad():
            for p in pnet.decoders.parameters():
                p.fill_(float("nan"))
    else:
        pnet.set_hyperparameters(alpha=1e30)
    return pnet


X = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
FAULTS = ["nan_decoders", "alpha_1e30"]


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("path", list(PATHS))
def test_every_numerics_path_refuses_non_finite_states(path, fault):
    num = PATHS[path]
    pnet = prepare(_lite0(fault), num)
    plan = kernels.decoder_plan(pnet.decoders[0], pnet.fast_kernels)
    assert kernels.polyphase(plan, torch.Size((2, 32, 32, 32))) == num.fast_kernels
    assert run(pnet, X, 0, num)[0].isfinite().all()  # t = 0 is the plain CNN: still fine
    with pytest.raises(PcnetsError, match=r"non-finite values at timestep [12] in encoder \d"):
        run(pnet, X, 3, num)


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("checkpoint", [False, True])
def test_the_differentiable_and_recomputed_timesteps_refuse_them_too(fault, checkpoint):
    pnet = prepare(_lite0(fault), PATHS["fused"])
    x = X.clone().requires_grad_(True)
    with pytest.raises(PcnetsError, match=r"non-finite values at timestep [12] in encoder \d"):
        classifier(pnet, 2, checkpoint=checkpoint)(x)


@pytest.mark.slow
def test_the_compiled_decoder_step_refuses_them():
    num = Numerics(CPU, fold_bn=True, compile=True)
    pnet = prepare(_lite0("nan_decoders"), num)
    with pytest.raises(PcnetsError, match=r"non-finite values at timestep 1 in encoder \d"):
        run(pnet, X, 2, num)


def test_finite_states_but_non_finite_logits_name_the_head():
    pnet = _lite0("alpha_1e30")
    pnet.set_hyperparameters(alpha=0.0)
    with torch.no_grad():
        pnet.backbone.classifier.bias.fill_(float("inf"))
    with pytest.raises(PcnetsError, match=r"timestep 0 in the head \(every encoder state"):
        pnet.run(X, 1)
