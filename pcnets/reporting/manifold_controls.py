"""The controls of a manifold run (issue 22, item 7): noisy(t) vs clean(0) and clean(t) vs
clean(0) beside the reference's noisy(t) vs clean(t), in table.md, summary.csv and
manifold_controls.png.

Reading them: denoising shows as noisy(t) vs clean(t) falling *and* noisy(t) vs clean(0) falling
while clean(t) vs clean(0) stays small; a common drift shows as clean(t) moving away from
clean(0) as far as noisy(t) approaches clean(t).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pcnets.reporting.figures import Curve, Panel, save_panels
from pcnets.reporting.tables import markdown_table, summary_row

LABELS = {
    "noisy_t_vs_clean_t": "noisy(t) vs clean(t)",
    "noisy_t_vs_clean_0": "noisy(t) vs clean(0)",
    "clean_t_vs_clean_0": "clean(t) vs clean(0)",
}


def control_summary_rows(controls: pd.DataFrame) -> list[dict]:
    """distance_<comparison> (with interval) per sigma, encoder and timestep, and the relative
    distance where it is defined (noisy(t) vs clean(0))."""
    rows = []
    for r in controls.itertuples(index=False):
        where = {"condition": r.name, "sigma": r.sigma, "encoder": r.encoder}
        where.update(timestep=r.timestep, n=r.images)
        rows.append(
            summary_row(
                f"distance_{r.comparison}",
                r.distance,
                "1 - pearson r",
                r.distance_low,
                r.distance_high,
                **where,
            )
        )
        if pd.notna(r.normalized):
            rows.append(
                summary_row(
                    f"relative_distance_{r.comparison}",
                    r.normalized,
                    "ratio to t=0",
                    r.normalized_low,
                    r.normalized_high,
                    **where,
                )
            )
    return rows


def _all(metrics: pd.DataFrame, controls: pd.DataFrame) -> pd.DataFrame:
    main = metrics.assign(comparison="noisy_t_vs_clean_t")
    return pd.concat([main, controls], ignore_index=True)


def control_table(metrics: pd.DataFrame, controls: pd.DataFrame) -> str:
    """The three distances at t = 0 and the last timestep, per sigma and encoder."""
    both = _all(metrics, controls)
    last = int(both["timestep"].max())
    body = []
    for (sigma, encoder), part in both.groupby(["sigma", "encoder"]):
        at = part.set_index(["comparison", "timestep"])["distance"]
        row = [f"{sigma:g}", f"e{int(encoder)}"]
        row += [f"{at[(c, 0)]:.4f} -> {at[(c, last)]:.4f}" for c in LABELS]
        body.append(row)
    header = ["sigma", "encoder", *[f"{v}, t=0 -> t={last}" for v in LABELS.values()]]
    return "\n".join(
        [
            "## Controls: is it convergence or a common drift?\n",
            "Correlation distances (1 - pearson r, mean over images). Denoising: noisy(t) vs "
            "clean(0) falls too while clean(t) vs clean(0) stays small. A common drift (both "
            "moving towards the decoders' prior): clean(t) vs clean(0) grows as far as noisy(t) "
            "vs clean(t) falls, and noisy(t) vs clean(0) does not fall. Intervals: summary.csv.\n",
            markdown_table(body, header),
            "",
        ]
    )


def control_figure(metrics: pd.DataFrame, controls: pd.DataFrame, path: Path, title: str = ""):
    """manifold_controls.png: one panel per sigma and encoder, the three distances over t."""
    both = _all(metrics, controls)
    panels = []
    for (sigma, encoder), part in both.groupby(["sigma", "encoder"]):
        curves = [
            Curve(
                LABELS[c],
                line["distance"],
                line["distance_low"],
                line["distance_high"],
                x=line["timestep"],
            )
            for c, line in part.sort_values("timestep").groupby("comparison", sort=False)
        ]
        panels.append(
            Panel(
                f"sigma = {sigma:g}, e{int(encoder)}",
                curves,
                ylabel="1 - pearson r",
                legend=not panels,
            )
        )
    return save_panels(
        path,
        panels,
        f"{title}: convergence against its controls",
        ncols=min(4, len(panels)),
        note="mean over images; bands: 95% bootstrap intervals",
    )
