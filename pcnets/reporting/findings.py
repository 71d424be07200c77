"""The report's "Findings": what the dynamics did in each evaluation, in words, with the interval
that decides it and the held-out R^2 of the decoders that made it.

Every number comes from a run's own summary.csv; the decoders' R^2 from the train-feedback run
among the gathered ones whose decoders.pt the evaluation loaded (``pc.decoders``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from pcnets.reporting.commands import specs_with
from pcnets.reporting.tables import interval_text, read_summary


def verdict(low: float, high: float, better: str = "higher", null: str = "0") -> str:
    """Whether an interval of a change from t = 0 (measured from 0) tells the direction:
    ``better`` is the word for a positive change (accuracy up), the other direction is its
    opposite; ``null`` is how the text names no change (1 for a ratio given as ratio - 1)."""
    worse = "lower" if better == "higher" else "higher"
    if low > 0:
        return f"{better} (the interval excludes {null})"
    if high < 0:
        return f"{worse} (the interval excludes {null})"
    return f"no change the interval can tell from {null}"


def decision(row, better: str = "higher", unit: str = "pp") -> str:
    """The verdict of a paired change from its summary.csv row: decided only when its
    Holm-adjusted McNemar p is below 0.05; otherwise what size of change it rules out (its MDE at
    80 % power). A row without p-values (a run made before they existed) falls back to
    ``verdict`` of its interval."""
    p_adj = row.get("p_adjusted")
    if p_adj is None or pd.isna(p_adj):
        return verdict(row["low"], row["high"], better)
    worse = "lower" if better == "higher" else "higher"
    if p_adj < 0.05:
        word = better if row["value"] > 0 else worse
        return f"decided: {word} (McNemar p {row['p_value']:.2g}, Holm {p_adj:.2g})"
    return (
        f"not decided (McNemar p {row['p_value']:.2g}, Holm {p_adj:.2g}); a change of "
        f"{row['mde']:.1f} {unit} or more would have shown 4 times in 5, so it is unlikely"
    )


def decoder_quality(run, runs: list) -> str:
    """'decoders R^2 0.99 0.91 ...' from the train-feedback run that wrote the decoders ``run``
    loaded, or what is known about them."""
    path = OmegaConf.select(run.config, "pc.decoders", default=None)
    if not path:
        return "untrained decoders"
    target = Path(str(path)).resolve()
    for other in runs:
        if other.command == "train-feedback" and (other.path / "decoders.pt").resolve() == target:
            summary = read_summary(other.path)
            if summary is not None and "r2_best" in summary.columns:
                r2 = " ".join(f"{v:.2f}" for v in summary.sort_values("decoder")["r2_best"])
                return f"decoders' held-out R^2 {r2} ({other.name})"
    return f"decoders {path} (their train-feedback run, with the R^2, is not in this report)"


def setting(run) -> str:
    """The numerics that made a run: error reduction and gradient scaling."""
    reduction = OmegaConf.select(run.config, "pc.error_reduction", default="?")
    scaled = OmegaConf.select(run.config, "pc.gradient_scaling", default=False)
    return f"{reduction} errors, {'with' if scaled else 'no'} gradient scaling"


def _last(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    part = summary[summary["metric"] == metric]
    return part[part["timestep"] == part["timestep"].max()]


def _reference(summary: pd.DataFrame, sigma: float) -> str:
    """' (0.5 in the paper's units, 0.113 px)' when the run recorded its sigma units."""
    units = summary[(summary["sigma"] == sigma) & summary["metric"].isin(["sigma_reference"])]
    pixel = summary[(summary["sigma"] == sigma) & (summary["metric"] == "sigma_pixel")]
    if units.empty or pixel.empty:
        return ""
    return f" ({units['value'].iloc[0]:.3g} in the paper's units, {pixel['value'].iloc[0]:.3g} px)"


def noise_findings(summary: pd.DataFrame) -> list[str]:
    acc, change = _last(summary, "accuracy"), _last(summary, "change_from_t0")
    first = summary[(summary["metric"] == "accuracy") & (summary["timestep"] == 0)]
    out = []
    for _, row in change.iterrows():
        sigma = row["sigma"]
        name = "clean" if sigma == 0 else f"sigma {sigma:g}" + _reference(summary, sigma)
        start = first[first["sigma"] == sigma]["value"].iloc[0]
        end = acc[acc["sigma"] == sigma]["value"].iloc[0]
        text = interval_text(row["value"], row["low"], row["high"], "+.1f")
        out.append(
            f"{name}: {start:.1f} -> {end:.1f} % at t={int(row['timestep'])} ({text} pp), "
            f"{decision(row)}"
        )
    return out


def corruption_findings(summary: pd.DataFrame) -> list[str]:
    """The relative mCE at the last timestep; when it is undefined in part of the resamples (a
    corruption without error at t = 0), the verdict rests on the ratio of summed errors."""
    out = []
    summed = _last(summary, "summed_error_ratio")
    for _, row in _last(summary, "relative_mce").iterrows():
        # relative mCE is 1 at t = 0: judge the interval of its change, mCE - 1
        text = interval_text(row["value"], row["low"], row["high"], ".3f")
        undefined = _last(summary, "relative_mce_undefined")
        share = undefined["value"].iloc[0] if not undefined.empty else 0.0
        head = (
            f"relative mCE over {row['condition']} corruptions {text} at t={int(row['timestep'])}"
        )
        if share > 0 and not summed.empty:
            ratio = summed.iloc[0]
            ratio_text = interval_text(ratio["value"], ratio["low"], ratio["high"], ".3f")
            out.append(
                f"{head} (undefined in {share:.0%} of resamples), ratio of summed errors "
                f"{ratio_text} ({int(row['n'])} images): error "
                f"{verdict(ratio['low'] - 1, ratio['high'] - 1, null='1')}"
            )
            continue
        word = verdict(row["low"] - 1, row["high"] - 1, null="1")
        out.append(f"{head} ({int(row['n'])} images): error {word}")
    return out


def findings(runs: list) -> str | None:
    """The "Findings" section: one bullet per evaluation run, its verdicts in words."""
    lines, evaluations = [], {spec.name: spec for spec in specs_with("findings")}
    for run in runs:
        if run.command not in evaluations:
            continue
        summary = read_summary(run.path)
        if summary is None:
            continue
        parts = evaluations[run.command].load("findings")(summary)
        if parts:
            head = f"**{run.label}** ({setting(run)}; {decoder_quality(run, runs)}; {run.status})"
            lines.append(f"- {head}: " + "; ".join(parts) + ".")
    if not lines:
        return None
    intro = (
        "What the dynamics did, from each run's summary.csv: the change from t = 0 to the last "
        "timestep with its paired 95 % interval; a change is decided only when its exact McNemar "
        "p, Holm-adjusted over the run's comparisons, is below 0.05, and an undecided one says "
        "which size it rules out (its minimum detectable change at 80 % power)."
    )
    return "## Findings\n\n" + intro + "\n\n" + "\n".join(lines)
