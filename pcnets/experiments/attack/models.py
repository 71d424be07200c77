"""The attacked models: the dynamics unrolled to T (pcnets.classifier) and the plain
feedforward network, both frozen and always in eval mode."""

from __future__ import annotations

import torch
from torch import Tensor

from pcnets.core.classifier import Classifier
from pcnets.core.pnet import PredictiveNet


class UnrolledModel(Classifier):
    """[0, 1] pixels -> logits at timestep T, differentiable through every step: the attacks'
    model (pcnets.classifier under the name the attack code and its tests use)."""


class FeedforwardModel(Classifier):
    """[0, 1] pixels -> the plain feedforward logits (no PC machinery): the t=0 reference."""

    def __init__(self, pnet: PredictiveNet):
        super().__init__(pnet, 0, checkpoint=False)

    def forward(self, x: Tensor) -> Tensor:
        with torch.enable_grad():
            return self.pnet.feedforward(x)


def unrolled(checkpoint: bool | None):
    """The default model factory of a run: (pnet, T) -> UnrolledModel with its checkpointing."""

    def factory(pnet: PredictiveNet, timesteps: int) -> UnrolledModel:
        return UnrolledModel(pnet, timesteps, checkpoint)

    return factory
