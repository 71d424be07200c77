"""Noise levels in three units, converted per backbone (eval.sigma_unit):

- ``reference``: the paper's. The reference code adds N(0, sigma^2) to the ImageNet-normalised
  tensor, so its pixel sigma is sigma x ImageNet's std (0.229, 0.224, 0.225; mean 0.226).
- ``normalized``: the backbone's own normalisation (pixel sigma = sigma x the backbone's std;
  0.226 for VGG16/B0, 0.5 for Lite0). The suite's behaviour before the unit existed.
- ``pixel``: [0, 1] pixel units.

A backbone's std is taken as the mean over its channels (the three ImageNet stds differ by
2 %), so "reference sigma 0.25" on Lite0 (std 0.5) is normalised sigma 0.113 and pixel sigma
0.0565. The noise itself is drawn as before (pcnets.data.noise) in eval.noise_space, with the
sigma converted into that space.
"""

from __future__ import annotations

from collections.abc import Sequence

from pcnets.data.noise import check_unit
from pcnets.errors import PcnetsError

SIGMA_UNITS = ("reference", "normalized", "pixel")
IMAGENET_STD = (0.229, 0.224, 0.225)
REFERENCE_STD = sum(IMAGENET_STD) / 3


def check_sigma_unit(unit) -> str:
    """'reference', 'normalized' (British spelling accepted) or 'pixel'; else a PcnetsError."""
    return check_unit("eval.sigma_unit", unit, SIGMA_UNITS)


def mean_std(std: Sequence[float] | float) -> float:
    """The backbone's std as one number: the mean over channels (must be > 0)."""
    values = [float(std)] if isinstance(std, int | float) else [float(s) for s in std]
    value = sum(values) / len(values)
    if not value > 0:
        raise PcnetsError(f"the backbone's normalisation std must be > 0, got {values}")
    return value


def sigma_in_units(sigma: float, unit: str, std: Sequence[float] | float) -> dict[str, float]:
    """{'reference', 'normalized', 'pixel'}: one sigma given in ``unit`` in all three units, for
    a backbone of normalisation ``std`` (rounded to 6 decimals: stable file names and keys)."""
    unit, s = check_sigma_unit(unit), mean_std(std)
    pixel = float(sigma) * {"reference": REFERENCE_STD, "normalized": s, "pixel": 1.0}[unit]
    return {
        "reference": round(pixel / REFERENCE_STD, 6),
        "normalized": round(pixel / s, 6),
        "pixel": round(pixel, 6),
    }


def in_space(sigma: float, unit: str, space: str, std: Sequence[float] | float) -> float:
    """The sigma to draw with in eval.noise_space (``normalized`` or ``pixel``)."""
    return sigma_in_units(sigma, unit, std)["pixel" if space == "pixel" else "normalized"]


def units_text(units: dict[str, float]) -> str:
    """'0.113 normalised = 0.0565 px = 0.25 reference' (the line every table and figure gives)."""
    return (
        f"{units['normalized']:.3g} normalised = {units['pixel']:.3g} px = "
        f"{units['reference']:.3g} reference"
    )
