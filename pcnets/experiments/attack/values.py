"""Values of the attack config: eps budgets, whole numbers and finite numbers, checked with one
clear line each, and the reference code's target labels."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from omegaconf import OmegaConf
from torch import Tensor

from pcnets.errors import PcnetsError


def as_list(value) -> list:
    """A config value as a list (a scalar becomes a one-item list)."""
    if OmegaConf.is_list(value) or isinstance(value, list | tuple):
        return list(value)
    return [value]


def number(value, key: str) -> float:
    """A finite number, else one clear line naming the key."""
    if isinstance(value, bool):
        raise PcnetsError(f"{key} must be a number, got {value!r}")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise PcnetsError(f"{key} must be a number, got {value!r}") from None
    if not math.isfinite(result):
        raise PcnetsError(f"{key} must be finite, got {value!r}")
    return result


def whole(value, key: str, low: int) -> int:
    """A whole number >= low, else one clear line naming the key."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise PcnetsError(f"{key} must be a whole number >= {low}, got {value!r}")
    return int(value)


def parse_eps(value) -> list[float]:
    """eps values in [0, 1] (L-infinity, [0, 1] pixel scale) from a number, a list, or a string
    like "0.004" / "0.001,0.002" / "8/255"; anything else is a PcnetsError."""
    items: list = []
    for item in as_list(value):
        if isinstance(item, str):
            items += [part.strip() for part in item.split(",") if part.strip()]
        else:
            items.append(item)
    if not items:
        raise PcnetsError("give at least one eps, e.g. --eps 0.004 or attack.eps=[0.002,0.004]")
    values = []
    for item in items:
        try:
            eps = float(Fraction(item)) if isinstance(item, str) else number(item, "eps")
        except (ValueError, ZeroDivisionError):
            raise PcnetsError(
                f"eps {item!r} is not a number; give e.g. 0.004, 1/255 or 0.001,0.002"
            ) from None
        if not 0 <= eps <= 1:
            raise PcnetsError(
                f"eps must be in [0, 1] (L-infinity budget on [0, 1] pixels, e.g. 0.004 or "
                f"8/255), got {eps:g}"
            )
        values.append(eps)
    return values


def target_labels(labels: Tensor, num_classes: int, offset: int) -> Tensor:
    """The reference code's targets: (label + offset) mod num_classes (offset 800 on ImageNet)."""
    if offset % num_classes == 0:
        raise PcnetsError(
            f"attack.target_offset={offset} maps every label to itself with {num_classes} "
            "classes; choose another offset"
        )
    return (labels + offset) % num_classes
