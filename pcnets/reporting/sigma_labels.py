"""The noise levels of an eval-noise run folder in every unit: sigma_units.json (written by the
command, which knows the backbone's std) and the labels tables and figures give each sigma."""

from __future__ import annotations

import json
from pathlib import Path

from pcnets.data.sigma_units import units_text
from pcnets.runtime.files import atomic_write

UNITS = "sigma_units.json"


def write_units(run, unit: str, std: list[float], units: list[dict]) -> None:
    """sigma_units.json of a run folder: the unit eval.sigmas were given in, the backbone's std,
    and every sigma in the three units (pcnets.data.sigma_units), keyed by the sigma drawn."""
    if run.writer:
        info = {"unit": unit, "backbone_std": std, "sigmas": units}
        atomic_write(run.path / UNITS, json.dumps(info, indent=2))


def read_units(path: Path, space: str) -> dict[float, dict]:
    """{sigma drawn: {'reference', 'normalized', 'pixel'}} of a run folder ({} before the file
    existed: the sigmas are then in the noise space's own unit only)."""
    file = path / UNITS
    if not file.is_file():
        return {}
    key = "pixel" if space == "pixel" else "normalized"
    return {float(u[key]): u for u in json.loads(file.read_text())["sigmas"]}


def sigma_label(sigma: float, units: dict | None = None) -> str:
    if sigma == 0:
        return "clean (sigma 0)"
    if units and sigma in units:
        return f"sigma {units_text(units[sigma])}"
    return f"sigma {sigma:g}"
