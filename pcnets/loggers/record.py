"""What the experiment loggers send, read from a run folder's files alone (config.yaml,
provenance.json, summary.csv, metrics.csv, *.png), so that every command is covered the same way:

- params: the resolved config, flattened to dotted keys (pc.beta, data.limit, ...);
- tags: provenance (command, run_id, backbone, decoders, status, numerics, git revision, the
  versions of torch and pcnets) and, in a sweep, the sweep folder and the job's overrides;
- points: every number of summary.csv as (key, value, step), the step being the timestep where
  the number has one (accuracy/noise/sigma_0.5 at t = 0..T, mce/..., success_rate/...), and the
  per-epoch rows of train-feedback's metrics.csv (mse/bn1/val at each epoch);
- figures: the run folder's *.png.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from pcnets.reporting.results import swept_values
from pcnets.runtime.runs import run_labels

LABELS = ("run_id", "backbone", "decoders")
# summary.csv's columns that say which number a row is, in the order they name it.
WHERE = ("condition", "sigma", "corruption", "encoder")
NAMED = ("condition", "corruption")  # their value is a name; the others read sigma_0.5


@dataclass(frozen=True)
class Point:
    key: str
    value: float
    step: int | None = None


@dataclass
class Record:
    """One run as the loggers see it: its folder, names, grouping and what to log."""

    path: Path
    command: str
    run_id: str
    name: str
    group: str | None  # the sweep's name (or logger.group); None for a single run
    base: Path  # where loggers that write files put them (logger.save_dir, sweep or run folder)
    sweep: Path | None


def record(cfg, path: Path) -> Record:
    """The Record of the run folder ``path`` made with ``cfg`` (its logger settings)."""
    path = Path(path).absolute()
    prov = _provenance(path)
    command = str(prov.get("command") or "run")
    run_id = str(prov.get("config_hash") or path.name)
    sweep = path.parent if (path.parent / "multirun.yaml").is_file() else None
    settings = cfg.get("logger") or {}
    group = settings.get("group") or (sweep.name if sweep is not None else None)
    name = f"{command}-{path.name}" if sweep is not None else f"{command}-{run_id}"
    base = Path(settings.get("save_dir") or (sweep if sweep is not None else path))
    return Record(path, command, run_id, name, group, base.absolute(), sweep)


def _provenance(path: Path) -> dict:
    try:
        return json.loads((path / "provenance.json").read_text())
    except (OSError, ValueError):
        return {}


def params(path: Path) -> dict[str, str]:
    """The resolved config, flattened: {'pc.beta': '0.8', ...} (the logger settings left out)."""
    cfg = OmegaConf.to_container(OmegaConf.load(path / "config.yaml"), resolve=True)
    cfg.pop("logger", None)
    return {k: str(v)[:6000] for k, v in _flat(cfg).items()}


def _flat(data, prefix: str = "") -> dict:
    if isinstance(data, dict) and data:
        out = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def tags(rec: Record) -> dict[str, str]:
    """Provenance as tags (text), with the sweep and the job's swept values in a sweep."""
    prov = _provenance(rec.path)
    env = prov.get("environment") or {}
    cfg = OmegaConf.load(rec.path / "config.yaml")
    out = {**run_labels(cfg, rec.run_id), "command": rec.command}
    for key, value in {
        "status": prov.get("status"),
        "numerics": prov.get("numerics"),
        "git": env.get("git"),
        "torch": env.get("torch"),
        "pcnets": env.get("pcnets"),
        "device": env.get("device"),
    }.items():
        if value is not None:
            out[key] = str(value)
    if rec.sweep is not None:
        out["sweep"] = str(rec.sweep)
        out["swept"] = " ".join(f"{k}={v}" for k, v in swept_values(rec.path).items())
    return out


def key(*parts) -> str:
    """A metric name every logger accepts: parts joined by '/', other characters as '_'."""
    return "/".join(re.sub(r"[^\w\-. :]", "_", str(p)) for p in parts if str(p) != "")


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def _text(value) -> str:
    """A cell as text: 0.5 -> '0.5', 1.0 -> '1' (an encoder number read back as a float)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def summary_points(path: Path) -> list[Point]:
    """Every number of the run's summary.csv. Long rows (metric, value) are named by the metric
    and where it was measured, with the timestep as step; a wide table (train-feedback's, one row
    per decoder) gives column/encoder per number."""
    file = path / "summary.csv"
    if not file.is_file():
        return []
    frame = pd.read_csv(file).drop(columns=list(LABELS), errors="ignore")
    out = []
    if {"metric", "value"} <= set(frame.columns):
        for row in frame.to_dict("records"):
            if _blank(row["value"]):
                continue
            where = [
                _text(row[c]) if c in NAMED else f"{c}_{_text(row[c])}"
                for c in WHERE
                if c in row and not _blank(row[c])
            ]
            step = None if _blank(row.get("timestep")) else int(row["timestep"])
            out.append(Point(key(row["metric"], *where), float(row["value"]), step))
        return out
    return _wide_points(frame, step=None)


def epoch_points(rows: pd.DataFrame) -> list[Point]:
    """Per-epoch rows of metrics.csv (train-feedback: mse, r2 per decoder and split), step = the
    epoch; other commands' metrics.csv (per cell) are left to summary.csv."""
    if "epoch" not in rows.columns:
        return []
    return _wide_points(rows.drop(columns=list(LABELS), errors="ignore"), step="epoch")


def _wide_points(frame: pd.DataFrame, step: str | None) -> list[Point]:
    text = pd.api.types.is_string_dtype
    names = [c for c in frame.columns if c != step and (text(frame[c]) or frame[c].dtype == object)]
    values = [
        c for c in frame.columns if c not in names and c != step and frame[c].dtype.kind == "f"
    ]
    out = []
    for row in frame.to_dict("records"):
        where = [_text(row[c]) for c in names if not _blank(row[c])]
        at = int(row[step]) if step else None
        out += [Point(key(c, *where), float(row[c]), at) for c in values if not _blank(row[c])]
    return out


def figures(path: Path) -> list[Path]:
    return sorted(path.glob("*.png"))
