"""A tiny predictive network whose predictions vary across images, and images labelled by it."""

from __future__ import annotations

import torch
from helpers import tiny_pnet

SIZE = 16


def labelled_net(n: int = 24, seed: int = 0):
    """(pnet, images, labels): the conftest's 5-class tiny net with its head standardised, so that
    every class is reachable, and flat-coloured noisy [0, 1] images; the labels are its own
    predictions at t = 0 for the first half and random classes for the second (so the accuracy
    is neither 0 nor 1 and differs between timesteps)."""
    pnet = tiny_pnet(size=SIZE)
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 1, 1, generator=gen) * 0.8 + 0.1
    x = (base + 0.1 * torch.randn(n, 3, SIZE, SIZE, generator=gen)).clamp(0, 1)
    feats = {}
    head = pnet.backbone[-1]
    hook = head.register_forward_hook(lambda m, i, o: feats.__setitem__("f", i[0]))
    with torch.no_grad():
        pnet.feedforward(x)
        hook.remove()
        mu, sd = feats["f"].mean(0), feats["f"].std(0)
        head.weight.div_(sd).mul_(3)
        head.bias.copy_(-(head.weight @ mu))
        labels = pnet.feedforward(x).argmax(1)
    labels[n // 2 :] = torch.randint(0, 5, (n - n // 2,), generator=gen)
    pnet.set_hyperparameters(alpha=0.5)
    return pnet.eval(), x, labels
