"""The report's paper-style summary tables of eval-noise, eval-corruptions, attack, tune and
manifold runs: each is named by its command's spec (pcnets.reporting.commands) and given that
command's runs only.

Each number is taken from the run's own summary.csv (written beside its table.md), so the report
says what the run's table says: the same values, intervals, units and corruption counts. A run
folder made before summary.csv existed is summarised from its counts (metrics.csv) or
hyper.json instead, and its row says so in the unit column. The attack table is summed from the
counts in metrics.csv.
"""

from __future__ import annotations

import pandas as pd

from pcnets.reporting.run_folders import RunFolder
from pcnets.reporting.tables import interval_text, markdown_table, read_summary


def has_columns(df: pd.DataFrame, *cols: str) -> bool:
    """Whether a run's metrics.csv has every one of ``cols`` (else it is not summarised)."""
    return all(c in df.columns for c in cols)


def _wide(part: pd.DataFrame, prefix: str = "t") -> dict:
    return {f"{prefix}{int(t)}": v for t, v in zip(part["timestep"], part["value"], strict=True)}


def noise_summary(runs: list) -> str | None:
    """Top-1 accuracy per timestep under Gaussian noise, one row per run and sigma (paper fig 3),
    in percent with the change at the last timestep and its paired interval."""
    rows = []
    for run in runs:
        summary = read_summary(run.path)
        if summary is not None:
            acc = summary[summary["metric"] == "accuracy"]
            change = summary[summary["metric"] == "change_from_t0"]
            for sigma, part in acc.groupby("sigma", sort=False):
                last = change[change["sigma"] == sigma].sort_values("timestep").iloc[-1]
                row = {"run": run.label, "sigma": sigma, "images": int(part["n"].iloc[0])}
                row["unit"] = "%"
                row.update(_wide(part.sort_values("timestep")))
                text = interval_text(last["value"], last["low"], last["high"], "+.1f")
                row["change at last t (pp)"] = text
                rows.append(row)
            continue
        df = run.metrics
        if not has_columns(df, "sigma", "timestep", "correct", "total"):
            continue
        counts = df.groupby(["sigma", "timestep"])[["correct", "total"]].sum()
        acc = (counts["correct"] / counts["total"]).unstack("timestep")
        for sigma, series in acc.iterrows():
            row = {
                "run": run.label,
                "sigma": sigma,
                "images": int(counts.loc[sigma]["total"].max()),
            }
            row["unit"] = "fraction (from counts)"
            row.update({f"t{int(t)}": v for t, v in series.items()})
            rows.append(row)
    if not rows:
        return None
    return "### Accuracy under Gaussian noise (top-1 per timestep)\n\n" + markdown_table(
        pd.DataFrame(rows), 3
    )


def corruption_summary(runs: list) -> str | None:
    """mCE per timestep (relative to t = 0, and AlexNet-normalised in percent) per run (paper
    fig. 4), over the corruptions each was computed on."""
    from pcnets.metrics import ALEXNET_ERR, error_cube, mce_table

    rows, notes = [], []
    for run in runs:
        summary = read_summary(run.path)
        if summary is not None:
            count = summary[summary["metric"] == "corruptions"].set_index("condition")["value"]
            for metric, group, label in (
                ("relative_mce", "all", "relative_mce"),
                ("standard_mce", "standard", "standard_mce (%)"),
            ):
                part = summary[(summary["metric"] == metric) & (summary["condition"] == group)]
                if part.empty:
                    continue
                row = {"run": run.label, "measure": label, "corruptions": int(count[group])}
                row.update(_wide(part.sort_values("timestep")))
                rows.append(row)
            continue
        df = run.metrics
        if not has_columns(df, "corruption", "severity", "timestep", "correct", "total"):
            continue
        try:
            names, cube = error_cube(df)
        except ValueError as exc:
            notes.append(f"{run.label}: incomplete ({exc})")
            continue
        table = mce_table(cube, names).set_index("timestep")
        standard = sum(c in ALEXNET_ERR for c in names)
        for col, count, scale in (("relative_mce", len(names), 1), ("standard_mce", standard, 100)):
            if count == 0:
                continue
            label = col if scale == 1 else f"{col} (%)"
            row = {"run": run.label, "measure": label, "corruptions": count}
            row.update({f"t{t}": scale * v for t, v in table[col].items()})
            rows.append(row)
    if not rows and not notes:
        return None
    text = "### Corruption errors (mCE per timestep)\n\n"
    text += markdown_table(pd.DataFrame(rows), 4) if rows else ""
    return text + ("\n\n" + "\n".join(f"- {n}" for n in notes) if notes else "")


def tune_summary(runs: list) -> str | None:
    """Tuned beta / lambda / alpha per encoder (columns e1..eN), one row per tune run and value,
    with the objective at the start and the end of tuning."""
    rows = []
    for run in runs:
        summary = read_summary(run.path)
        if summary is not None:
            values = {k: _tuned(summary, f"tuned_{k}") for k in ("beta", "lam", "alpha")}
            loss = summary[summary["condition"] == "all"].set_index("metric")["value"]
            first, final = loss.get("first_loss"), loss.get("final_loss")
        elif run.hyper:
            values = {k: run.hyper[k] for k in ("beta", "lam", "alpha")}
            first, final = run.hyper.get("first_loss"), run.hyper.get("final_loss")
        else:
            continue
        change = f"{first:.3f} -> {final:.3f}" if first is not None and final is not None else ""
        for key, name in (("beta", "beta"), ("lam", "lambda"), ("alpha", "alpha")):
            row = {"run": run.label, "value": name, "objective": change}
            row.update({f"e{i + 1}": v for i, v in enumerate(values[key])})
            rows.append(row)
    if not rows:
        return None
    return "### Tuned hyperparameters\n\n" + markdown_table(pd.DataFrame(rows), 3)


def _tuned(summary: pd.DataFrame, metric: str) -> list[float]:
    part = summary[summary["metric"] == metric].sort_values("encoder")
    return part["value"].tolist()


def manifold_summary(runs: list) -> str | None:
    """Relative correlation distance to clean at the last timestep, per run, sigma and encoder."""
    rows = []
    for run in runs:
        summary = read_summary(run.path)
        if summary is not None:
            df = summary[summary["metric"] == "relative_distance"]
            df = df.rename(columns={"value": "normalized"})
        elif has_columns(run.metrics, "sigma", "encoder", "timestep", "normalized"):
            df = run.metrics
        else:
            continue
        last = df[df["timestep"] == df["timestep"].max()]
        for sigma, part in last.groupby("sigma"):
            row = {"run": run.label, "sigma": sigma, "t": int(part["timestep"].iloc[0])}
            pairs = zip(part["encoder"], part["normalized"], strict=True)
            row.update({f"e{int(e)}": v for e, v in pairs})
            rows.append(row)
    if not rows:
        return None
    return (
        "### Convergence to clean representations (distance relative to t = 0, last timestep)\n\n"
        + markdown_table(pd.DataFrame(rows), 3)
    )


def attack_summary(runs: list[RunFolder]) -> str | None:
    """Attack success rate per epsilon and timestep per run (and per attack, when metrics.csv
    has an "attack" column), when metrics.csv has columns eps, timestep, total and one count of
    successes (success, successes or fooled); with a "kind" column, only the attacks through the
    unrolled dynamics (not the transfer rows)."""
    rows = []
    for run in runs:
        df = run.metrics
        if "kind" in df.columns:
            df = df[df["kind"] == "unrolled"]
        hit = next((c for c in ("success", "successes", "fooled") if c in df.columns), None)
        if hit is None or not has_columns(df, "eps", "timestep", "total"):
            continue
        keys = ["attack", "eps"] if "attack" in df.columns else ["eps"]
        counts = df.groupby([*keys, "timestep"])[[hit, "total"]].sum()
        rate = (counts[hit] / counts["total"]).unstack("timestep")
        for key, series in rate.iterrows():
            key = key if isinstance(key, tuple) else (key,)
            row = {"run": run.label, **dict(zip(keys, key, strict=True))}
            row.update({f"t{int(t)}": v for t, v in series.items()})
            rows.append(row)
    if not rows:
        return None
    return "### Attack success rate per timestep\n\n" + markdown_table(pd.DataFrame(rows), 3)
