"""The attack registry: one entry per attack (its name, family, whether it can aim at a target
class, whether it is gradient-free, how it is built and how it is described). Adding an attack is
one entry here plus its YAML in conf/attack/ (README, "Adding an attack")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor, nn

from pcnets.errors import PcnetsError
from pcnets.experiments.attack.sign import sign_attack


class Settings(Protocol):
    """The attack.* settings an entry reads (AttackSpec has every one)."""

    steps: int
    step_size: float | None
    max_step_size: float
    random_start: bool
    restarts: int
    queries: int
    p_init: float
    target_classes: int


# images, labels, targets (None when untargeted) -> adversarial images
Perturb = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]


def bim_step(s: Settings, eps: float) -> float:
    """BIM/PGD step: attack.step_size, else 2.5 * eps / steps capped at attack.max_step_size
    (larger sign steps overshoot at large eps)."""
    if s.step_size is not None:
        return s.step_size
    return min(2.5 * eps / s.steps, s.max_step_size)


@dataclass(frozen=True)
class Attack:
    """One attack. ``build(model, settings, eps, seed, targeted)`` returns the function that
    perturbs a batch (called inside the batch's seeded RNG); ``describe(settings)`` says how it
    attacks in one phrase for table.md. The sign family's loop also reads ``steps`` (a fixed
    iteration count, None = attack.steps), ``random_start`` (forced on or off, None =
    attack.random_start) and ``step`` (its step size at an eps)."""

    name: str
    family: str  # "sign": pcnets' own loop; "torchattacks"
    targetable: bool  # can aim at a target class (attack.targeted); else always untargeted
    gradient_free: bool
    build: Callable[[nn.Module, Settings, float, int, bool], Perturb]
    describe: Callable[[Settings], str]
    steps: int | None = None
    random_start: bool | None = None
    step: Callable[[Settings, float], float] = bim_step

    def iterations(self, s: Settings) -> int:
        return self.steps or s.steps

    def starts_random(self, s: Settings) -> bool:
        return s.random_start if self.random_start is None else self.random_start


def _sign(name: str, steps=None, random_start=None, step_is_eps: bool = False) -> Attack:
    """An attack of pcnets' sign-gradient loop (targeted or not, as attack.targeted says)."""
    step = (lambda s, eps: eps) if step_is_eps else bim_step

    def build(model, s, eps, seed, targeted) -> Perturb:
        n, start, size = entry.iterations(s), entry.starts_random(s), entry.step(s, eps)
        return lambda x, y, t: sign_attack(model, x, y, t, eps, size, n, start, targeted)

    def describe(s) -> str:
        size = (
            f"{s.step_size:g}"
            if s.step_size is not None
            else (f"min(2.5 eps / steps, {s.max_step_size:g})")
        )
        size = "eps" if step_is_eps else size
        return (
            f"pcnets' sign-gradient loop, {entry.iterations(s)} step(s) of {size}, random start "
            f"{'on' if entry.starts_random(s) else 'off'}, keeps each image's first successful "
            "iterate, else its best by the attack loss"
        )

    entry = Attack(name, "sign", True, False, build, describe, steps, random_start, step)
    return entry


def torchattacks():
    """The torchattacks module, or one line saying how to install it."""
    try:
        import torchattacks as ta
    except ImportError:
        raise PcnetsError(
            "torchattacks is not installed: pip install --no-deps torchattacks==3.5.1 "
            "(its declared requests pin is never used; see docs/dependencies.md)"
        ) from None
    return ta


def _torchattacks(name: str, make, describe, gradient_free: bool = False) -> Attack:
    """An untargeted torchattacks attack: ``make(ta, model, settings, eps, seed)``."""

    def build(model, s, eps, seed, targeted) -> Perturb:
        attack = make(torchattacks(), model, s, eps, seed)
        return lambda x, y, t: attack(x, y)

    return Attack(name, "torchattacks", False, gradient_free, build, describe)


def _square(ta, model, s, eps, seed):
    return ta.Square(model, eps=eps, n_queries=s.queries, n_restarts=1, p_init=s.p_init, seed=seed)


def _autoattack(ta, model, s, eps, seed):
    """AutoAttack's standard version (APGD-CE, APGD-T, FAB-T, Square) with ``target_classes``
    target classes, as the original, since torchattacks' own would try every ImageNet class."""
    n, classes = s.steps, s.target_classes + 1
    return ta.MultiAttack(
        [
            ta.APGD(model, eps=eps, steps=n, n_restarts=1, seed=seed, loss="ce"),
            ta.APGDT(model, eps=eps, steps=n, n_restarts=1, seed=seed, n_classes=classes),
            ta.FAB(
                model,
                eps=eps,
                steps=n,
                n_restarts=1,
                seed=seed,
                multi_targeted=True,
                n_classes=classes,
            ),
            _square(ta, model, s, eps, seed),
        ]
    )


def _apgd_text(label: str):
    return lambda s: f"torchattacks {label}, {s.steps} steps, {s.restarts} restart(s)"


_ENTRIES = (
    _sign("bim"),
    _sign("pgd", random_start=True),
    _sign("fgsm", steps=1, random_start=False, step_is_eps=True),
    _torchattacks(
        "apgd",
        lambda ta, m, s, eps, seed: ta.APGD(
            m, eps=eps, steps=s.steps, n_restarts=s.restarts, seed=seed, loss="ce"
        ),
        _apgd_text("APGD"),
    ),
    _torchattacks(
        "apgd_t",
        lambda ta, m, s, eps, seed: ta.APGDT(
            m,
            eps=eps,
            steps=s.steps,
            n_restarts=s.restarts,
            seed=seed,
            n_classes=s.target_classes + 1,
        ),
        _apgd_text("APGD-T"),
    ),
    _torchattacks(
        "square",
        _square,
        lambda s: f"torchattacks Square, {s.queries} queries, p_init {s.p_init:g}",
        gradient_free=True,
    ),
    _torchattacks(
        "autoattack",
        _autoattack,
        lambda s: (
            f"AutoAttack standard (APGD-CE, APGD-T and FAB-T with {s.target_classes} target "
            f"classes, {s.steps} steps; Square with {s.queries} queries)"
        ),
    ),
)
ATTACKS: dict[str, Attack] = {a.name: a for a in _ENTRIES}
