"""Hyperparameter files (`pcnets tune`'s hyper.json, read through pc.hyper): every field is
checked, and a file that is not UTF-8, not a JSON object, or has a field that is missing, null,
of the wrong type or the wrong length is one line naming the field."""

from __future__ import annotations

import json
import math
from pathlib import Path

from pcnets.core.pnet import PredictiveNet
from pcnets.errors import PcnetsError

VALUES = ("beta", "lam", "alpha")
REMEDY = "make it again with `pcnets tune`"


def load_hyper(path: str | Path, pnet: PredictiveNet) -> dict:
    """{beta, lam, alpha} of a hyperparameter file for ``pnet`` (a number or one per encoder)."""
    path = Path(path)
    if not path.is_file():
        raise PcnetsError(f"pc.hyper: no such file {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise PcnetsError(
            f"pc.hyper: {path} is not UTF-8 text (byte {exc.start}); {REMEDY}"
        ) from None
    except json.JSONDecodeError as exc:
        raise PcnetsError(f"pc.hyper: {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PcnetsError(
            f"pc.hyper: {path} holds a JSON {type(data).__name__}, not an object with "
            f"{', '.join(VALUES)}; {REMEDY}"
        )
    if data.get("backbone") not in (None, pnet.name):
        raise PcnetsError(f"pc.hyper: {path} was tuned for {data['backbone']!r}, not {pnet.name!r}")
    for key in ("error_reduction", "gradient_scaling"):
        # alpha means something else under another error reduction or scaling
        if key in data and data[key] != getattr(pnet, key):
            raise PcnetsError(
                f"pc.hyper: {path} was tuned with pc.{key}={data[key]}, this run has "
                f"{getattr(pnet, key)}; set pc.{key}={data[key]} or tune again"
            )
    n = len(pnet.encoder_names)
    return {key: _values(data, key, n, path) for key in VALUES}


def _values(data: dict, key: str, n: int, path: Path) -> float | list[float]:
    """Field ``key``: a finite number, or a list of ``n`` of them (one per encoder)."""
    where = f"pc.hyper: {path} field {key!r}"
    if key not in data:
        raise PcnetsError(f"{where} is missing; {REMEDY}")
    value = data[key]
    if value is None:
        raise PcnetsError(f"{where} is null; give a number or {n} numbers (one per encoder)")
    items = value if isinstance(value, list) else [value]
    if not all(_finite(v) for v in items):
        raise PcnetsError(
            f"{where} must be a finite number or a list of {n} (one per encoder), got {value!r}"
        )
    if isinstance(value, list) and len(value) != n:
        raise PcnetsError(
            f"{where} has {len(value)} values, but the network has {n} encoders; {REMEDY}"
        )
    return [float(v) for v in value] if isinstance(value, list) else float(value)


def _finite(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
