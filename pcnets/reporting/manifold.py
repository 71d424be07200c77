"""The table, figure and summary.csv of a manifold run folder, from its metrics.csv alone:
`render(path)` draws them again without a model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from pcnets.reporting.figures import Curve, Panel, save_panels
from pcnets.reporting.manifold_controls import (
    control_figure,
    control_summary_rows,
    control_table,
)
from pcnets.reporting.tables import markdown_table, summary_row, write_summary
from pcnets.reporting.term_files import load_terms, render_terms
from pcnets.runtime.files import atomic_write

# What each distance compares: the reference's measure, then the two controls (issue 22, 7).
COMPARISONS = ("noisy_t_vs_clean_t", "noisy_t_vs_clean_0", "clean_t_vs_clean_0")


def split_comparisons(metrics: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the reference's noisy(t) vs clean(t) rows, the control rows); a run folder made before
    the controls existed has the first only."""
    if "comparison" not in metrics.columns:
        return metrics, metrics.iloc[0:0]
    main = metrics["comparison"].isna() | (metrics["comparison"] == COMPARISONS[0])
    return metrics[main], metrics[~main]


def render(path: str | Path) -> list[str]:
    """table.md, manifold.png and summary.csv of a manifold run folder (the sigmas of its config);
    returns the lines a command prints: the relative distance at the last timestep per sigma."""
    path = Path(path)
    cfg = OmegaConf.load(path / "config.yaml")
    metrics = pd.read_csv(path / "metrics.csv")
    sigmas = [float(s) for s in cfg.manifold.sigmas]
    metrics, controls = split_comparisons(metrics[metrics["sigma"].isin(sigmas)])
    backbone = str(OmegaConf.select(cfg, "backbone.name", default=""))
    text = manifold_table(metrics, backbone)
    rows = summary_rows(metrics)
    if not controls.empty:
        text += "\n" + control_table(metrics, controls)
        control_figure(metrics, controls, path / "manifold_controls.png", title=backbone)
        rows += control_summary_rows(controls)
    terms = load_terms(path)
    if terms is not None:
        terms = terms[terms["sigma"].isin(sigmas)]
    term_rows, term_lines = render_terms(path, backbone, ["sigma"], terms)
    atomic_write(path / "table.md", "\n".join([text, *term_lines]))
    manifold_figure(metrics, path / "manifold.png", title=backbone)
    write_summary(path, rows + term_rows)
    last = metrics[metrics["timestep"] == metrics["timestep"].max()]
    lines = []
    for sigma, part in last.groupby("sigma"):
        values = " ".join(f"{v:.3f}" for v in part.sort_values("encoder")["normalized"])
        lines.append(
            f"sigma {sigma:g}: distance at t={int(part['timestep'].iloc[0])} / t=0: {values}"
        )
    return lines


def summary_rows(metrics: pd.DataFrame) -> list[dict]:
    """The distance and the distance relative to t = 0, with intervals, per sigma, encoder and
    timestep: every number table.md shows."""
    rows = []
    for r in metrics.itertuples(index=False):
        where = {
            "condition": r.name,
            "sigma": r.sigma,
            "encoder": r.encoder,
            "timestep": r.timestep,
        }
        where["n"] = r.images
        rows.append(
            summary_row(
                "distance", r.distance, "1 - pearson r", r.distance_low, r.distance_high, **where
            )
        )
        rows.append(
            summary_row(
                "relative_distance",
                r.normalized,
                "ratio to t=0",
                r.normalized_low,
                r.normalized_high,
                **where,
            )
        )
    return rows


def _ci(point: float, low: float, high: float) -> str:
    return f"{point:.3f} [{low:.3f}, {high:.3f}]"


def manifold_table(metrics: pd.DataFrame, backbone: str = "") -> str:
    """table.md: the normalised distance at the last timestep per sigma and encoder, then the full
    curves per sigma (mean over images relative to t = 0, with 95% bootstrap intervals)."""
    last_t = int(metrics["timestep"].max())
    n_img = int(metrics["images"].max())
    last = metrics[metrics["timestep"] == last_t]
    summary = last.pivot_table(index="sigma", columns="encoder", values="normalized").reset_index()
    summary.columns = ["sigma"] + [f"e{c}" for c in summary.columns[1:]]
    summary = summary.map(lambda v: f"{v:.3f}" if isinstance(v, float) else v)
    names = metrics.drop_duplicates("encoder").set_index("encoder")["name"].to_dict()
    text = [
        f"Correlation distance 1 - pearson(e_n noisy, e_n clean) of {backbone}, mean over "
        f"{n_img} images, relative to t = 0 (below 1: the noisy representation moved towards the "
        f"clean one). Encoders: " + ", ".join(f"e{k} = {v}" for k, v in names.items()) + ".\n",
        f"At t = {last_t}:\n",
        markdown_table(summary),
        "",
    ]
    for sigma, part in metrics.groupby("sigma"):
        wide = part.assign(
            cell=[
                _ci(a, b, c)
                for a, b, c in zip(
                    part["normalized"],
                    part["normalized_low"],
                    part["normalized_high"],
                    strict=True,
                )
            ]
        ).pivot(index="timestep", columns="encoder", values="cell")
        wide.columns = [f"e{c}" for c in wide.columns]
        d0 = part[part["timestep"] == 0].set_index("encoder")["distance"]
        text += [
            f"sigma = {sigma:g}: relative distance [95% CI]; the distance at t = 0 is "
            + ", ".join(f"e{k} {v:.4f}" for k, v in d0.items())
            + ".\n",
            markdown_table(wide.reset_index()),
            "",
        ]
    return "\n".join(text)


def manifold_figure(metrics: pd.DataFrame, path: Path, title: str = "") -> Path:
    """manifold.png: one panel per sigma, one line per encoder (relative distance, 95% band)."""
    panels = []
    for sigma, part in metrics.groupby("sigma"):
        curves = [
            Curve(
                f"e{enc}",
                line["normalized"],
                line["normalized_low"],
                line["normalized_high"],
                x=line["timestep"],
            )
            for enc, line in part.sort_values("timestep").groupby("encoder")
        ]
        panels.append(
            Panel(
                f"sigma = {sigma:g}",
                curves,
                ylabel="distance to clean / distance at t = 0",
                reference=1.0,
                legend=not panels,
            )
        )
    n_img = int(metrics["images"].max())
    return save_panels(
        path,
        panels,
        f"{title}: noisy vs clean representations, 1 - pearson r per encoder",
        ncols=min(3, len(panels)),
        sharey=True,
        note=f"mean over {n_img} images relative to t = 0; bands: 95% bootstrap intervals",
    )
