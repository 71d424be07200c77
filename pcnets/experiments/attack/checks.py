"""The sanity checks that catch masked gradients (Carlini et al. 2019; Athalye et al. 2018): input
gradients finite and non-zero, near-total success at a large eps, t=0 equal to the feedforward
attack, success never falling with eps, the attack through the dynamics never weaker than the
transfer attack, and a gradient-free attack never beating the gradient attacks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor, nn

from pcnets.experiments.attack.attack_registry import ATTACKS
from pcnets.experiments.attack.attacks import attack_images, batch_seed
from pcnets.experiments.attack.sign import attack_loss, succeeded
from pcnets.experiments.attack.spec import AttackSpec
from pcnets.intervals import wilson_interval

NO_PATH = "no gradient path to the input"
MODEL_CHECKS = ("gradients_finite_nonzero", "large_eps_succeeds", "t0_equals_feedforward")


@dataclass(frozen=True)
class Check:
    """One sanity check's outcome: its name, whether it passed, and what was measured."""

    name: str
    passed: bool
    detail: str


def input_gradient(
    model: nn.Module, images: Tensor, labels: Tensor, targets: Tensor | None, targeted: bool
) -> Tensor | None:
    """d(attack loss)/d(images), or None when the model's output has no gradient path to them."""
    x = images.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = attack_loss(model(x), labels, targets, targeted)
        if not loss.requires_grad:
            return None
        (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    return grad


def model_checks(
    model_at: Callable[[int], nn.Module],
    feedforward: nn.Module,
    images: Tensor,
    labels: Tensor,
    spec: AttackSpec,
    targets: Tensor | None = None,
) -> list[Check]:
    """Checks on a few images that need the models: input gradients finite and non-zero at every
    attacked timestep, near-total success at a large eps, and t=0 equal to the feedforward attack.
    """
    c = spec.checks
    targeted = spec.targeted_for(spec.name)
    problems, norms, blocked = [], [], set()
    for t in spec.timesteps:
        grad = input_gradient(model_at(t), images, labels, targets, targeted)
        if grad is None:
            problems.append(f"t={t}: {NO_PATH}")
            blocked.add(t)
            continue
        per_image = grad.detach().flatten(1).abs().sum(1)
        if not torch.isfinite(grad).all():
            problems.append(f"t={t}: non-finite values")
        zero = int((per_image == 0).sum())
        if zero:
            problems.append(f"t={t}: zero for {zero}/{len(per_image)} image(s)")
        norms.append(f"t={t} {float(per_image.min()):.3g}")
    detail = "; ".join(problems) if problems else "smallest per-image L1 norm: " + ", ".join(norms)
    checks = [Check("gradients_finite_nonzero", not problems, detail)]

    t_max = max(spec.timesteps)
    if t_max in blocked:
        checks.append(Check("large_eps_succeeds", False, f"not run: t={t_max}: {NO_PATH}"))
    else:
        model = model_at(t_max)
        seed = batch_seed(spec.seed, c.large_eps, -1)
        adv = attack_images(model, images, labels, spec, c.large_eps, seed, targets)
        with torch.no_grad():
            hit = succeeded(model(adv).detach(), labels, targets, targeted)
        checks.append(
            Check(
                "large_eps_succeeds",
                float(hit.float().mean()) >= c.min_success,
                f"eps={c.large_eps:g} at t={t_max}: {int(hit.sum())}/{len(hit)} succeeded "
                f"(need >= {c.min_success:.0%})",
            )
        )

    eps = max(spec.eps)
    if 0 in blocked:
        checks.append(Check("t0_equals_feedforward", False, f"not run: t=0: {NO_PATH}"))
    elif eps == 0:
        checks.append(Check("t0_equals_feedforward", True, "eps=0: nothing to compare"))
    else:
        seed = batch_seed(spec.seed, eps, -2)
        unrolled = attack_images(model_at(0), images, labels, spec, eps, seed, targets)
        plain = attack_images(feedforward, images, labels, spec, eps, seed, targets)
        diff = (unrolled - plain).abs()
        share = float((diff > 1e-6).float().mean())
        checks.append(
            Check(
                "t0_equals_feedforward",
                share <= c.t0_mismatch,
                f"eps={eps:g}: {share:.2%} of pixels differ (allowed {c.t0_mismatch:.2%}), "
                f"max |difference| {float(diff.max()):.3g}",
            )
        )
    return checks


def result_checks(metrics: pd.DataFrame, tolerance: float = 0.0) -> list[Check]:
    """Checks on a run's rows: the success rate never decreases with eps (per attack and
    timestep), the attack through the dynamics is never weaker than the transfer attack from the
    feedforward model, and no gradient-free attack beats the gradient attacks (either would mean
    masked gradients: the robustness shown is not real)."""
    metrics = metrics if "attack" in metrics else metrics.assign(attack="bim")
    direct = metrics[metrics["kind"] == "unrolled"]
    drops = []
    for (name, t), rows in direct.groupby(["attack", "timestep"]):
        rates = rows.sort_values("eps")[["eps", "success_rate"]].to_numpy()
        for (e0, r0), (e1, r1) in zip(rates[:-1], rates[1:], strict=True):
            if r1 < r0 - tolerance:
                drops.append(f"{name} t={int(t)}: {r0:.1%} at eps={e0:g} -> {r1:.1%} at eps={e1:g}")
    n_eps = direct["eps"].nunique()
    monotone = Check(
        "monotone_in_eps",
        not drops,
        _listing(drops)
        if drops
        else (f"{n_eps} eps values per timestep" if n_eps > 1 else "one eps: nothing to compare"),
    )
    transfer = metrics[metrics["kind"] == "transfer"]
    pairs = direct.merge(transfer, on=["attack", "eps", "timestep"], suffixes=("", "_transfer"))
    weaker = [
        f"{r.attack} eps={r.eps:g} t={int(r.timestep)}: {r.success_rate:.1%} < transfer "
        f"{r.success_rate_transfer:.1%}"
        for r in pairs.itertuples()
        if r.success_rate < r.success_rate_transfer - tolerance
    ]
    stronger = Check(
        "not_weaker_than_transfer",
        not weaker,
        f"{len(weaker)} of {len(pairs)} (eps, t) cells below transfer: {_listing(weaker)}"
        if weaker
        else f"{len(pairs)} (eps, t) cells: through the dynamics >= transfer from t=0",
    )
    return [monotone, stronger, gradient_free_check(direct, tolerance)]


def gradient_free_check(direct: pd.DataFrame, tolerance: float = 0.0) -> Check:
    """Masking: a gradient-free attack (Square) that misclassifies more images than the best
    untargeted gradient attack at the same eps and timestep, by more than that attack's 95 %
    Wilson interval (plus ``tolerance``), means the gradients lead nowhere: flagged."""
    free = direct["attack"].isin([a.name for a in ATTACKS.values() if a.gradient_free])
    targetable = direct["attack"].isin([a.name for a in ATTACKS.values() if a.targetable])
    untargeted = ~direct.targeted if "targeted" in direct else False
    grads = direct[~free & (~targetable | untargeted)]
    free = direct[free]
    if free.empty or grads.empty:
        return Check(
            "gradient_free_not_stronger",
            True,
            "not run: needs a gradient-free and an untargeted gradient attack",
        )
    best = grads.groupby(["eps", "timestep"])[["fooled", "total"]].max().reset_index()
    pairs = free.merge(best, on=["eps", "timestep"], suffixes=("", "_grad"))
    beaten = []
    for r in pairs.itertuples():
        _, high = wilson_interval(r.fooled_grad, r.total_grad)
        if r.fooled / r.total > high + tolerance:
            beaten.append(
                f"{r.attack} eps={r.eps:g} t={int(r.timestep)}: {r.fooled}/{r.total} "
                f"vs gradient {r.fooled_grad}/{r.total_grad} (upper bound {high:.0%})"
            )
    return Check(
        "gradient_free_not_stronger",
        not beaten,
        f"gradient masking: {_listing(beaten)}"
        if beaten
        else f"{len(pairs)} (eps, t) cells: the gradient attacks fool at least as many images, "
        "within their interval",
    )


def _listing(items: Sequence[str], limit: int = 4) -> str:
    more = f"; and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def warning_lines(checks: Sequence[Check]) -> list[str]:
    """One 'WARNING: ...' line per failed check."""
    return [f"WARNING: sanity check {c.name} failed: {c.detail}" for c in checks if not c.passed]
