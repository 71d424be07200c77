"""What to attack and how: ``AttackSpec`` (the attack.* config, checked on construction) and the
sanity checks' settings; the values themselves are parsed in values.py."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from omegaconf import DictConfig, OmegaConf

from pcnets.errors import PcnetsError, suggest
from pcnets.experiments.attack.attack_registry import ATTACKS
from pcnets.experiments.attack.values import as_list, number, parse_eps, whole


@dataclass(frozen=True)
class CheckSpec:
    """Settings of the sanity checks (attack.checks)."""

    num_images: int = 4  # images (the first of the selection) for the model checks
    large_eps: float = 0.1  # the attack must succeed on (almost) every image at this eps
    min_success: float = 0.9  # ... namely on at least this share of them
    tolerance: float = 0.0  # success-rate slack of the monotonicity and transfer checks
    t0_mismatch: float = 1e-3  # share of pixels allowed to differ, t=0 vs feedforward attack


@dataclass(frozen=True)
class AttackSpec:
    """What to attack and how (attack.* of the config), checked on construction."""

    name: str = "bim"
    also: tuple[str, ...] = ()
    eps: tuple[float, ...] = (0.001, 0.002, 0.004, 0.008)
    steps: int = 10
    step_size: float | None = None
    max_step_size: float = 0.02
    random_start: bool = False
    restarts: int = 1
    queries: int = 1000
    p_init: float = 0.8
    target_classes: int = 9
    timesteps: tuple[int, ...] = (0, 2, 4)
    targeted: bool = True
    target_offset: int = 800
    num_images: int = 1000
    select: str = "correct"
    batch_size: int = 16
    checkpoint: bool | None = None
    allow_suspect: bool = False
    terms: bool = True  # record the term sizes of the adversarial images' dynamics
    seed: int = 0
    checks: CheckSpec = field(default_factory=CheckSpec)

    def __post_init__(self) -> None:
        name = _attack_name(self.name)
        object.__setattr__(self, "name", name)
        also = tuple(dict.fromkeys(_attack_name(a) for a in as_list(self.also) if a != name))
        object.__setattr__(self, "also", also)
        object.__setattr__(self, "eps", tuple(sorted(set(parse_eps(list(self.eps))))))
        steps = whole(self.steps, "attack.steps", 1)
        entry = ATTACKS[name]
        object.__setattr__(self, "steps", entry.steps or steps)
        for key in ("step_size", "max_step_size", "p_init"):
            value = getattr(self, key)
            if value is None and key == "step_size":
                continue
            size = number(value, f"attack.{key}")
            if not 0 < size <= 1:
                raise PcnetsError(f"attack.{key} must be in (0, 1], got {size}")
            object.__setattr__(self, key, size)
        for key in ("random_start", "targeted", "allow_suspect", "terms"):
            if not isinstance(getattr(self, key), bool):
                raise PcnetsError(f"attack.{key} must be true or false, got {getattr(self, key)!r}")
        if self.checkpoint not in (None, True, False):
            raise PcnetsError(
                f"attack.checkpoint must be true, false or null (auto), got {self.checkpoint!r}"
            )
        if entry.random_start is False and self.random_start:
            raise PcnetsError(f"{name.upper()} has no random start: set attack.random_start=false")
        if self.targeted and not entry.targetable:
            targetable = "/".join(a.name for a in ATTACKS.values() if a.targetable)
            raise PcnetsError(
                f"attack={name} is untargeted (success = misclassified); set "
                f"attack.targeted=false, or use attack={targetable} for a targeted attack"
            )
        timesteps = [whole(t, "attack.timesteps", 0) for t in as_list(self.timesteps)]
        if not timesteps:
            raise PcnetsError("attack.timesteps must list at least one timestep, e.g. [0, 2, 4]")
        object.__setattr__(self, "timesteps", tuple(sorted({0, *timesteps})))
        for key, low in (
            ("target_offset", 1),
            ("num_images", 1),
            ("batch_size", 1),
            ("restarts", 1),
            ("queries", 1),
            ("target_classes", 1),
        ):
            object.__setattr__(self, key, whole(getattr(self, key), f"attack.{key}", low))
        if self.select not in ("correct", "any"):
            raise PcnetsError(f"attack.select must be correct or any, got {self.select!r}")
        c = self.checks
        whole(c.num_images, "attack.checks.num_images", 1)
        for key, low_open in (
            ("large_eps", True),
            ("min_success", False),
            ("tolerance", False),
            ("t0_mismatch", False),
        ):
            value = number(getattr(c, key), f"attack.checks.{key}")
            if not (0 < value <= 1 if low_open else 0 <= value <= 1):
                span = "(0, 1]" if low_open else "[0, 1]"
                raise PcnetsError(f"attack.checks.{key} must be in {span}, got {value}")

    @classmethod
    def from_config(cls, node: DictConfig | dict, seed: int = 0) -> AttackSpec:
        """The spec of a composed config's attack node (and the run's seed)."""
        data = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
        data = dict(data)
        if data.get("name") in (None, "???"):
            raise PcnetsError(f"attack.name is not set; choose one of attack={', '.join(ATTACKS)}")
        known = {f.name for f in fields(cls)} - {"seed", "checks"}
        unknown = sorted(set(data) - known - {"checks"})
        if unknown:
            raise PcnetsError(
                f"unknown attack setting(s) {unknown}{suggest(unknown[0], known)}; "
                f"known: {sorted(known | {'checks'})}"
            )
        checks = dict(data.pop("checks", None) or {})
        bad = sorted(set(checks) - {f.name for f in fields(CheckSpec)})
        if bad:
            raise PcnetsError(
                f"unknown attack.checks setting(s) {bad}; "
                f"known: {sorted(f.name for f in fields(CheckSpec))}"
            )
        data["eps"] = tuple(parse_eps(data.get("eps", cls.eps)))
        data["timesteps"] = tuple(as_list(data.get("timesteps", cls.timesteps)))
        data["also"] = tuple(as_list(data.get("also") or ()))
        return cls(**data, seed=int(seed), checks=CheckSpec(**checks))

    @property
    def attacks(self) -> tuple[str, ...]:
        """Every attack of the run: the named one first, then attack.also."""
        return (self.name, *self.also)

    def targeted_for(self, name: str) -> bool:
        """Whether attack ``name`` aims at the target class (only a targetable one can)."""
        return self.targeted and ATTACKS[name].targetable

    def step_size_at(self, eps: float, name: str | None = None) -> float:
        """Attack ``name``'s step at this eps (the registry entry's rule: BIM/PGD
        attack.step_size, else min(2.5 * eps / steps, attack.max_step_size); FGSM eps)."""
        return ATTACKS[name or self.name].step(self, eps)

    def describe(self, name: str | None = None) -> str:
        """One attack in one line, for table.md."""
        name = name or self.name
        kind = (
            f"targeted, target = (label + {self.target_offset}) mod classes"
            if self.targeted_for(name)
            else "untargeted (success = misclassified)"
        )
        how = ATTACKS[name].describe(self)
        return f"{name}: {how}; L-infinity on [0, 1] pixels, {kind}"


def _attack_name(value) -> str:
    name = str(value)
    if name not in ATTACKS:
        raise PcnetsError(
            f"unknown attack {name!r}{suggest(name, list(ATTACKS))}; use attack={'|'.join(ATTACKS)}"
        )
    return name
