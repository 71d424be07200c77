"""One attack on one batch: the registry's entry for the attack's name, built at this eps and
seeded (same seed, same images); all attacks are L-infinity on [0, 1] pixels."""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor, nn

from pcnets.experiments.attack.attack_registry import ATTACKS
from pcnets.experiments.attack.spec import AttackSpec


def batch_seed(seed: int, eps: float, batch: int) -> int:
    """The random seed of one batch of the selection at one eps: the same for every timestep
    (so t=0 equals the feedforward attack) and every process count."""
    digest = hashlib.sha256(f"attack/{seed}/{eps!r}/{batch}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def attack_images(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    spec: AttackSpec,
    eps: float,
    seed: int,
    targets: Tensor | None = None,
    name: str | None = None,
) -> Tensor:
    """Adversarial versions of [0, 1] images by attack ``name`` (default the spec's), seeded
    (same seed, same images). A targeted attack (spec.targeted_for) needs ``targets``."""
    name = name or spec.name
    targeted = spec.targeted_for(name)
    if targeted and targets is None:
        raise ValueError("a targeted attack needs targets")
    if eps == 0:
        return images.detach().clone()
    devices = [images.device.index or 0] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        perturb = ATTACKS[name].build(model, spec, eps, seed, targeted)
        adv = perturb(images, labels, targets)
    return adv.detach()
