"""pcnets' own L-infinity sign-gradient loop (BIM; PGD with a random start; FGSM = one step of
eps), monotone by construction: each image keeps its first successful iterate, else its best by
the attack loss; and the loss and success rule every attack shares."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


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
