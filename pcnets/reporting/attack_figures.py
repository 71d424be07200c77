"""`pcnets attack`'s figures from metrics.csv: success rate against eps (one line per timestep)
and relative to t=0 against t (one line per eps), with 95 % Wilson bands; a curve with nothing
to draw is left out, so the legend shows only what is drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pcnets.reporting.figures import Curve, Panel, save_panels

KINDS = {"unrolled": "through the dynamics up to t", "transfer": "transfer from t=0"}


def pivot(metrics: pd.DataFrame, kind: str, value: str) -> pd.DataFrame:
    """eps x timestep table of one column for the rows of one kind."""
    rows = metrics[metrics["kind"] == kind]
    return rows.pivot_table(index="eps", columns="timestep", values=value, aggfunc="first")


def attack_figures(path: Path, metrics: pd.DataFrame, backbone: str) -> list[Path]:
    """success_vs_eps.png and relative_vs_timestep.png: one panel per attack and kind."""
    n = int(metrics["total"].max())
    by_eps, by_t = [], []
    for name, rows in metrics.groupby("attack", sort=False):
        for kind, title in KINDS.items():
            rate, low, high = (
                pivot(rows, kind, v) for v in ("success_rate", "success_low", "success_high")
            )
            if rate.empty:
                continue
            eps = rate.index.to_numpy()
            by_eps.append(
                Panel(
                    f"{name}: {title}",
                    [
                        Curve(
                            f"t={t}",
                            100 * rate[t].to_numpy(),
                            100 * low[t].to_numpy(),
                            100 * high[t].to_numpy(),
                            x=eps,
                        )
                        for t in rate.columns
                    ],
                    xlabel="eps (L-infinity, [0, 1] pixel scale)",
                    ylabel="attack success rate (%)",
                    integer_x=False,
                )
            )
            if 0 not in rate.columns:
                continue
            base = rate[0].where(rate[0] > 0)
            curves = [
                Curve(
                    f"eps={e:g}",
                    (rate.loc[e] / base[e]).to_numpy(),
                    (low.loc[e] / base[e]).to_numpy(),
                    (high.loc[e] / base[e]).to_numpy(),
                    x=rate.columns.to_numpy(),
                )
                for e in rate.index
                if np.isfinite(base[e])
            ]
            by_t.append(
                Panel(
                    f"{name}: {title}",
                    curves,
                    ylabel="success rate at t / at t=0",
                    reference=1.0,
                    reference_label="t=0 level",
                )
            )
    figures = [
        save_panels(
            path / "success_vs_eps.png",
            by_eps,
            f"{backbone}: attack success rate vs eps ({n} images)",
            sharey=True,
            note="bands: 95 % Wilson intervals",
        )
    ]
    if by_t:
        figures.append(
            save_panels(
                path / "relative_vs_timestep.png",
                by_t,
                f"{backbone}: attack success relative to t=0 ({n} images)",
                sharey=True,
                note="below 1: fewer successes than on the feedforward model; eps without t=0 "
                "successes are not drawn; bands: the Wilson interval at t over the rate at t=0",
            )
        )
    return figures
