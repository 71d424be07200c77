"""The parts of a sweep report beside the eval-noise comparisons: the spread of tune jobs across
seeds, and sweep.png (the changes against the swept value)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pcnets.reporting.figures import Curve, Panel, save_panels
from pcnets.reporting.tables import read_summary, summary_row


def tune_rows(runs: list, labels: list[str]) -> list[dict]:
    """The spread across tune jobs (seeds): mean, sd, min, max of every tuned value and of the
    objective at the start and the end."""
    frames = []
    for run, label in zip(runs, labels, strict=True):
        summary = read_summary(run.path)
        if run.command == "tune" and summary is not None:
            frames.append(summary.assign(job=label))
    if len(frames) < 2:
        return []
    both = pd.concat(frames)
    losses = both["metric"].isin(["first_loss", "final_loss"]) & (both["condition"] == "all")
    keep = both["metric"].str.startswith("tuned_") | losses
    rows = []
    for (metric, encoder), part in both[keep].groupby(["metric", "encoder"], dropna=False):
        v = part["value"].astype(float)
        where = {"encoder": None if pd.isna(encoder) else int(encoder), "n": len(v)}
        for stat, value in (
            ("mean", v.mean()),
            ("sd", v.std(ddof=1)),
            ("min", v.min()),
            ("max", v.max()),
        ):
            rows.append(
                summary_row(f"{metric}_{stat}", value, "across jobs", condition="tune", **where)
            )
    return rows


def _positions(labels: list[str], keys: dict[str, list]) -> tuple[list[float], str, bool]:
    """x of every job: the swept value when one numeric key is swept, else the job's number."""
    if len(keys) == 1:
        ((key, values),) = keys.items()
        try:
            return [float(v) for v in values], key, False
        except (TypeError, ValueError):
            pass
    return list(range(len(labels))), "job (see sweep.md)", True


def sweep_figure(target: Path, table: pd.DataFrame, labels: list[str], keys: dict, title: str):
    """sweep.png: the change from t = 0 and against the baseline per sigma, against the swept
    value, with the paired 95 % intervals."""
    xs, xlabel, integer = _positions(labels, keys)
    where = dict(zip(labels, xs, strict=True))
    panels = []
    for metric in ("change_from_t0", "change_from_baseline"):
        part = table[table["metric"] == metric]
        if part.empty:
            continue
        curves = []
        for sigma, s in part.groupby("sigma"):
            s = s.assign(x=[where[c] for c in s["condition"]]).sort_values("x")
            curves.append(Curve(f"sigma {sigma:g}", s["value"], s["low"], s["high"], x=s["x"]))
        panels.append(
            Panel(
                metric.replace("_", " "),
                curves,
                xlabel=xlabel,
                ylabel="percentage points",
                reference=0.0,
                integer_x=integer,
            )
        )
    if not panels:
        return None
    return save_panels(target, panels, f"sweep {title}", note="bands: 95 % paired intervals")
