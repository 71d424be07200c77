"""Tables: the one Markdown table helper, interval text, and summary.csv, the long table of every
derived number a run's table.md shows (so that nothing a table shows exists only in Markdown).

summary.csv has one row per number: metric, condition, sigma, corruption, encoder, timestep,
value, low, high, p_value, p_adjusted, mde, n, unit (blank where a column does not apply; low/high
blank without an interval), after the run's labels run_id, backbone, decoders (as in
metrics.csv). A paired change (t = T vs t = 0, tuned vs default, a sweep value vs its baseline)
carries its exact McNemar p_value, the Holm-adjusted p_adjusted over the run's family of such
changes, and its minimum detectable change at 80 % power (mde, in the value's unit);
pcnets.intervals computes them. `pcnets report` takes its numbers from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from pcnets.runtime.files import atomic_write
from pcnets.runtime.runs import with_labels

SUMMARY = "summary.csv"
SUMMARY_COLUMNS = (
    "metric",
    "condition",
    "sigma",
    "corruption",
    "encoder",
    "timestep",
    "value",
    "low",
    "high",
    "p_value",
    "p_adjusted",
    "mde",
    "n",
    "unit",
)


def _cell(value, digits: int) -> str:
    if isinstance(value, float | np.floating):
        return "" if np.isnan(value) else f"{value:.{digits}g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(
    table: pd.DataFrame | Sequence[Sequence], header: Sequence[str] | None = None, digits: int = 4
) -> str:
    """A GitHub Markdown table of a DataFrame, or of rows under ``header``; floats to ``digits``
    significant digits, text cells as given (a '|' escaped)."""
    if isinstance(table, pd.DataFrame):
        header, rows = list(table.columns), list(table.itertuples(index=False))
    elif header is None:
        raise ValueError("markdown_table needs a header for plain rows")
    else:
        rows = table
    cols = [_cell(c, digits) for c in header]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(_cell(v, digits) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def interval_text(value: float, low: float, high: float, fmt: str) -> str:
    """'value [low, high]' in ``fmt`` (a leading '+' signs the value only)."""
    return f"{value:{fmt}} [{low:{fmt.lstrip('+')}}, {high:{fmt.lstrip('+')}}]"


def summary_row(metric: str, value, unit: str, low=None, high=None, **where) -> dict:
    """One number of summary.csv: ``where`` sets condition, sigma, corruption, encoder, timestep
    and n (the images or steps it is over)."""
    unknown = set(where) - set(SUMMARY_COLUMNS)
    if unknown:
        raise ValueError(f"summary.csv has no column {sorted(unknown)}")
    return {"metric": metric, "value": value, "low": low, "high": high, "unit": unit, **where}


def write_summary(path: str | Path, rows: Sequence[dict]) -> Path:
    """Write summary.csv into the run folder ``path`` (atomically), columns in SUMMARY_COLUMNS."""
    frame = pd.DataFrame(list(rows), columns=list(SUMMARY_COLUMNS))
    for column in ("encoder", "timestep", "n"):  # whole numbers, blank where they do not apply
        frame[column] = pd.array(frame[column], dtype="Int64")
    frame = with_labels(path, frame)  # run_id, backbone, decoders first, as in metrics.csv
    return atomic_write(Path(path) / SUMMARY, frame.to_csv(index=False))


def read_summary(path: str | Path) -> pd.DataFrame | None:
    """A run folder's summary.csv, or None when it has none (a run made before it existed)."""
    file = Path(path) / SUMMARY
    return pd.read_csv(file) if file.is_file() else None


def bootstrap_settings(cfg: DictConfig) -> tuple[int, float, int]:
    """(resamples, level, seed) of a run's bootstrap intervals: eval.bootstrap, eval.level, seed."""
    ev = cfg.get("eval") or {}
    return int(ev.get("bootstrap", 1000)), float(ev.get("level", 0.95)), int(cfg.get("seed", 0))


def describe(cfg: DictConfig, n: int) -> list[str]:
    """The lines of a table.md that say what was run: images, dynamics, decoders."""
    pc, data = cfg.pc, cfg.data
    decoders = f"`{pc.decoders}`" if pc.get("decoders") else "none given: untrained (random)"
    hyper = (
        f"`{pc.hyper}`" if pc.get("hyper") else f"beta={pc.beta}, lambda={pc.lam}, alpha={pc.alpha}"
    )
    where = f"data.split={data.get('split', 'all')}" + (
        f", data.limit={data.limit}" if data.get("limit") is not None else ""
    )
    return [
        f"- images: {n} ({where})",
        f"- dynamics: timesteps 0..{pc.timesteps}, {hyper}, error_reduction={pc.error_reduction}, "
        f"gradient_scaling={pc.gradient_scaling}",
        f"- decoders: {decoders}",
    ]
