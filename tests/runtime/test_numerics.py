"""Which numerics a config asks for: channels_last: auto follows the device and, on a CPU, the
backbone entry's measured preference (backbone.cpu_channels_last)."""

from __future__ import annotations

import pytest
import torch

from pcnets.config import compose
from pcnets.runtime.numerics import numerics


@pytest.mark.parametrize(
    "backbone,expected",
    [("efficientnet_lite0", True), ("efficientnet_b0", True), ("resnet18", True), ("vgg16", False)],
)
def test_channels_last_auto_on_a_cpu_follows_the_backbone_entry(backbone, expected):
    num = numerics(compose([f"backbone={backbone}"], "eval-noise"), "cpu")
    assert num.channels_last is expected
    assert num.fold_bn and not num.amp
    assert num.label == "fp32+fold_bn" + ("+channels_last" if expected else "")


def test_an_explicit_channels_last_and_cuda_override_the_backbone_entry():
    assert not numerics(compose(["channels_last=false"], "eval-noise"), "cpu").channels_last
    assert numerics(
        compose(["backbone=vgg16", "channels_last=true"], "eval-noise"), "cpu"
    ).channels_last
    cuda = numerics(compose(["backbone=vgg16"], "eval-noise"), torch.device("cuda"))
    assert cuda.channels_last and cuda.amp
    custom = compose(
        ["backbone=efficientnet_lite0", "backbone.cpu_channels_last=false"], "eval-noise"
    )
    assert not numerics(custom, "cpu").channels_last
