"""Bounds of numeric settings: the schemas (pcnets.schema) declare them with ``bounded``, and
pcnets.validate checks every composed config against them, one line per broken bound."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# The most timesteps a run may unroll (pc.timesteps, --timesteps): the paper uses up to 15 and
# the convergence analysis 14; beyond this a typo (1000 for 10) would silently run for hours.
MAX_TIMESTEPS = 100


@dataclass(frozen=True)
class Bound:
    """The values a numeric setting may take: '>= 1', '> 0', '[0, 100]', '(0, 1)', '[0, 1)'."""

    rule: str

    def parts(self) -> tuple[float, float, bool, bool]:
        """(low, high, low allowed, high allowed)."""
        if self.rule.startswith(">"):
            return float(self.rule.lstrip(">= ")), math.inf, "=" in self.rule, False
        low, high = (float(x) for x in self.rule[1:-1].split(","))
        return low, high, self.rule[0] == "[", self.rule[-1] == "]"

    def fault(self, value: Any) -> str | None:
        """Why ``value`` breaks the bound (None when it holds)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "not a number"
        if not math.isfinite(value):
            return "not a finite number"
        low, high, low_ok, high_ok = self.parts()
        if value < low or (value == low and not low_ok):
            return f"below the minimum of {low:g}" if low_ok else f"not above {low:g}"
        if value > high or (value == high and not high_ok):
            return f"above the maximum of {high:g}" if high_ok else f"not below {high:g}"
        return None


def bounded(default: Any, rule: str) -> Any:
    """A schema field whose numbers (a list's every item) must satisfy ``rule`` (see Bound)."""
    bound = {"bound": Bound(rule)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=bound)
    return field(default=default, metadata=bound)


def words(rule: str) -> str:
    """'>= 1' -> 'a number >= 1'; '[0, 1)' -> 'a number in [0, 1)'."""
    return f"a number {rule}" if rule.startswith(">") else f"a number in {rule}"
