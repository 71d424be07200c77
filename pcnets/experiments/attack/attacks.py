"""One attack on one batch: pcnets' sign-gradient loop for BIM/PGD/FGSM (monotone by
construction: each image keeps its first successful iterate, else its best by the attack loss)
and torchattacks' APGD, APGD-T, Square and AutoAttack (standard), all on [0, 1] pixels."""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from pcnets.errors import PcnetsError
from pcnets.experiments.attack.spec import SIGN_ATTACKS, AttackSpec


def attack_loss(
    logits: Tensor, labels: Tensor, targets: Tensor | None, targeted: bool, reduce: bool = True
) -> Tensor:
    """What the attacks ascend: minus the CE to the target (targeted), else the CE to the label;
    summed over the batch, or per image with ``reduce=False``."""
    reduction = "sum" if reduce else "none"
    if targeted:
        return -F.cross_entropy(logits, targets, reduction=reduction)
    return F.cross_entropy(logits, labels, reduction=reduction)


def succeeded(logits: Tensor, labels: Tensor, targets: Tensor | None, targeted: bool) -> Tensor:
    """Per image: predicted the target (targeted) or anything but the label (untargeted)."""
    pred = logits.argmax(1)
    return pred == targets if targeted else pred != labels


def batch_seed(seed: int, eps: float, batch: int) -> int:
    """The random seed of one batch of the selection at one eps: the same for every timestep
    (so t=0 equals the feedforward attack) and every process count."""
    digest = hashlib.sha256(f"attack/{seed}/{eps!r}/{batch}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def sign_attack(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    targets: Tensor | None,
    eps: float,
    step: float,
    steps: int,
    random_start: bool,
    targeted: bool,
) -> Tensor:
    """L-infinity sign-gradient ascent (BIM; PGD with a random start; FGSM = one step of eps).
    Every iterate is scored: an image keeps its first successful one, else the best by the
    attack loss, so more steps or a larger eps can never return a worse image."""
    x = images.detach()
    adv = x.clone()
    if random_start:
        adv = (adv + torch.empty_like(adv).uniform_(-eps, eps)).clamp(0, 1)
    best, best_loss = adv.clone(), torch.full((len(x),), -float("inf"), device=x.device)
    done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for i in range(steps + 1):
        adv.requires_grad_(True)
        with torch.enable_grad():
            logits = model(adv)
            loss = attack_loss(logits, labels, targets, targeted, reduce=False)
        hit = succeeded(logits.detach(), labels, targets, targeted)
        better = ~done & (hit | (loss.detach() > best_loss))
        best[better], best_loss[better] = adv.detach()[better], loss.detach()[better]
        done |= hit
        if i == steps or bool(done.all()):
            break
        (grad,) = torch.autograd.grad(loss.sum(), adv)
        moved = adv.detach() + step * grad.sign()
        adv = (x + (moved - x).clamp(-eps, eps)).clamp(0, 1)
    return best


def torchattacks_attack(model: nn.Module, spec: AttackSpec, name: str, eps: float, seed: int):
    """The torchattacks attack ``name`` at this eps, seeded; AutoAttack is composed here as its
    standard version (APGD-CE, APGD-T, FAB-T, Square) with ``target_classes`` target classes,
    as the original AutoAttack, since torchattacks' own would try every class of ImageNet."""
    try:
        import torchattacks as ta
    except ImportError:
        raise PcnetsError(
            "torchattacks is not installed: pip install --no-deps torchattacks==3.5.1 "
            "(its declared requests pin is never used; see docs/dependencies.md)"
        ) from None

    steps, restarts, classes = spec.steps, spec.restarts, spec.target_classes + 1
    if name == "apgd":
        return ta.APGD(model, eps=eps, steps=steps, n_restarts=restarts, seed=seed, loss="ce")
    if name == "apgd_t":
        return ta.APGDT(
            model, eps=eps, steps=steps, n_restarts=restarts, seed=seed, n_classes=classes
        )
    square = ta.Square(
        model, eps=eps, n_queries=spec.queries, n_restarts=1, p_init=spec.p_init, seed=seed
    )
    if name == "square":
        return square
    return ta.MultiAttack(
        [
            ta.APGD(model, eps=eps, steps=steps, n_restarts=1, seed=seed, loss="ce"),
            ta.APGDT(model, eps=eps, steps=steps, n_restarts=1, seed=seed, n_classes=classes),
            ta.FAB(
                model,
                eps=eps,
                steps=steps,
                n_restarts=1,
                seed=seed,
                multi_targeted=True,
                n_classes=classes,
            ),
            square,
        ]
    )


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
    (same seed, same images). Targeted BIM/PGD/FGSM need ``targets``."""
    name = name or spec.name
    targeted = spec.targeted_for(name)
    if targeted and targets is None:
        raise ValueError("a targeted attack needs targets")
    if eps == 0:
        return images.detach().clone()
    devices = [images.device.index or 0] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        if name in SIGN_ATTACKS:
            steps = 1 if name == "fgsm" else spec.steps
            start = name == "pgd" or (spec.random_start and name != "fgsm")
            step = spec.alpha(eps, name)
            adv = sign_attack(model, images, labels, targets, eps, step, steps, start, targeted)
        else:
            adv = torchattacks_attack(model, spec, name, eps, seed)(images, labels)
    return adv.detach()
