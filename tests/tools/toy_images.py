"""A tiny predictive network whose predictions vary across images, and images labelled by it."""

from __future__ import annotations

import torch
from helpers import standardised_tiny_net

SIZE = 16


def labelled_net(n: int = 24, seed: int = 0):
    """(pnet, images, labels): the conftest's 5-class tiny net with its head standardised, so that
    every class is reachable, and flat-coloured noisy [0, 1] images; the labels are its own
    predictions at t = 0 for the first half and random classes for the second (so the accuracy
    is neither 0 nor 1 and differs between timesteps)."""
    gen = torch.Generator().manual_seed(seed)
    pnet, x = standardised_tiny_net(n, gen, SIZE)
    with torch.no_grad():
        labels = pnet.feedforward(x).argmax(1)
    labels[n // 2 :] = torch.randint(0, 5, (n - n // 2,), generator=gen)
    return pnet.eval(), x, labels
