"""The tables, figures and summary.csv of an eval-corruptions run folder, from its files alone
(config.yaml, metrics.csv, images/*.npz): `render(path)` draws them again without a model.

Relative mCE per timestep (all / standard 15 / extra 4), the AlexNet-normalised mCE, the CE of
every corruption relative to t=0, and the accuracy of every cell, with bootstrap intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from pcnets.data.images import skipped_note
from pcnets.errors import PcnetsError
from pcnets.intervals import bootstrap_means, ratio_interval
from pcnets.metrics import ALEXNET_ERR, ALL_CORRUPTIONS, SEVERITIES, mce_intervals
from pcnets.reporting.corruption_figures import grid_figure, mce_figure
from pcnets.reporting.corruption_text import corruption_lines, labelled
from pcnets.reporting.tables import bootstrap_settings, summary_row, write_summary
from pcnets.reporting.term_files import render_terms
from pcnets.runtime.cell_images import IMAGES, load_cell_images
from pcnets.runtime.files import atomic_write

# The relative mCEs of the tables, by group (the column of summary.csv's "condition").
# The ratio of summed errors (all corruptions) is reported beside them.
GROUPS = {
    "relative_mce": "all",
    "standard_relative_mce": "standard",
    "extra_relative_mce": "extra",
    "summed_error_ratio": "all",
}


def corruption_file(name: str, severity: int) -> str:
    """The per-image file name of one corruption x severity under <run>/images/."""
    return f"{name}_{int(severity)}.npz"


def corruption_cube(
    path: Path, names: Sequence[str], severities: Sequence[int]
) -> tuple[list[str], np.ndarray]:
    """Per-image correctness (image, corruption, severity, timestep) over the images that every
    cell has (all of them, unless cells of a folder tree hold different files)."""
    cells = {
        (name, s): load_cell_images(path / IMAGES / corruption_file(name, s))
        for name in names
        for s in severities
    }
    common = set.intersection(*(set(keys) for keys, _, _ in cells.values()))
    if not common:
        raise PcnetsError(f"{path}: the corruption cells share no image")
    order = sorted(common)
    timesteps = next(iter(cells.values()))[2].shape[1]
    cube = np.zeros((len(order), len(names), len(severities), timesteps), dtype=bool)
    for (name, s), (keys, _, correct) in cells.items():
        where = {k: i for i, k in enumerate(keys)}
        rows = [where[k] for k in order]
        cube[:, names.index(name), list(severities).index(s)] = correct[rows]
    return order, cube


def corruption_stats(path: Path) -> dict:
    """Everything the tables and figures show, computed from the run folder's files."""
    cfg = OmegaConf.load(path / "config.yaml")
    resamples, level, seed = bootstrap_settings(cfg)
    df = pd.read_csv(path / "metrics.csv")
    present = set(df["corruption"])
    names = [c for c in ALL_CORRUPTIONS if c in present] + sorted(present - set(ALL_CORRUPTIONS))
    severities = sorted(int(s) for s in df["severity"].unique())
    _, correct = corruption_cube(path, names, severities)
    table = mce_intervals(correct, names, resamples, seed, level)
    both = "standard_relative_mce" in table
    mce = {
        k: {
            "value": table[k].to_numpy(),
            "low": table[f"{k}_low"].to_numpy(),
            "high": table[f"{k}_high"].to_numpy(),
            "undefined": table[f"{k}_undefined"].to_numpy(),
        }
        for k in GROUPS
        if k in table and (k in ("relative_mce", "summed_error_ratio") or both)
    }
    alexnet = None
    if "standard_mce" in table:
        alexnet = {
            k: 100 * np.asarray(table[f"standard_mce{s}"])
            for k, s in (("value", ""), ("low", "_low"), ("high", "_high"))
        }
    errors = 1.0 - correct.mean(axis=0)  # (corruption, severity, timestep)
    ce = errors.sum(axis=1)  # (corruption, timestep)
    boot_ce = (1.0 - bootstrap_means(correct, resamples, seed)).sum(axis=-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = ce / ce[:, :1]
        rel_low, rel_high = ratio_interval(boot_ce / boot_ce[..., :1], level)
    scale = len(SEVERITIES) / len(severities)
    vs_alexnet = np.array(
        [
            100 * ce[i, 0] * scale / (len(SEVERITIES) * ALEXNET_ERR.get(c, np.nan))
            for i, c in enumerate(names)
        ]
    )
    return {
        "cfg": cfg,
        "names": names,
        "severities": severities,
        "n": correct.shape[0],
        "timesteps": correct.shape[-1] - 1,
        "resamples": resamples,
        "pct": f"{level:.0%}",
        "mce": mce,
        "alexnet": alexnet,
        "relative": (relative, rel_low, rel_high),
        "vs_alexnet": vs_alexnet,
        "accuracy": 100 * correct.mean(axis=0),  # (corruption, severity, timestep)
    }


def summary_rows(st: dict) -> list[dict]:
    """Every number the tables show, for summary.csv (mCEs and the ratio of summed errors with
    intervals per timestep and the share of resamples where each is undefined, the corruption
    counts per group, and per corruption its CE ratio, CE/AlexNet and accuracy)."""
    names, n = st["names"], st["n"]
    standard = [c for c in names if c in ALEXNET_ERR]
    counts = {"all": len(names), "standard": len(standard), "extra": len(names) - len(standard)}
    rows = [summary_row("corruptions", v, "count", condition=k) for k, v in counts.items()]
    rows.append(summary_row("severities", len(st["severities"]), "count", condition="all"))
    for key, s in st["mce"].items():
        for t in range(st["timesteps"] + 1):
            rows.append(
                summary_row(
                    key,
                    s["value"][t],
                    "ratio",
                    s["low"][t],
                    s["high"][t],
                    condition=GROUPS[key],
                    timestep=t,
                    n=n,
                )
            )
            undefined = s["undefined"][t]
            where = {"condition": GROUPS[key], "timestep": t, "n": n}
            rows.append(summary_row(f"{key}_undefined", undefined, "fraction", **where))
    if st["alexnet"] is not None:
        a = st["alexnet"]
        for t in range(st["timesteps"] + 1):
            rows.append(
                summary_row(
                    "standard_mce",
                    a["value"][t],
                    "%",
                    a["low"][t],
                    a["high"][t],
                    condition="standard",
                    timestep=t,
                    n=n,
                )
            )
    relative, low, high = st["relative"]
    for i, name in enumerate(names):
        group = "standard" if name in ALEXNET_ERR else "extra"
        if name in ALEXNET_ERR:
            rows.append(
                summary_row(
                    "ce_vs_alexnet",
                    st["vs_alexnet"][i],
                    "%",
                    condition=group,
                    corruption=name,
                    timestep=0,
                    n=n,
                )
            )
        for t in range(st["timesteps"] + 1):
            rows.append(
                summary_row(
                    "relative_ce",
                    relative[i, t],
                    "ratio",
                    low[i, t],
                    high[i, t],
                    condition=group,
                    corruption=name,
                    timestep=t,
                    n=n,
                )
            )
            for j, s in enumerate(st["severities"]):
                rows.append(
                    summary_row(
                        "accuracy",
                        st["accuracy"][i, j, t],
                        "%",
                        condition=f"severity {s}",
                        corruption=name,
                        timestep=t,
                        n=n,
                    )
                )
    return rows


def render(path: str | Path) -> list[str]:
    """table.md, mce.png, corruptions.png and summary.csv of an eval-corruptions run folder;
    returns the lines a command prints."""
    path = Path(path)
    st = corruption_stats(path)
    lines, summary = corruption_lines(st)
    cfg, n = st["cfg"], st["n"]
    labels = labelled(st)
    mce_figure(path / "mce.png", cfg, labels, st["alexnet"], n, st["pct"], st["severities"])
    grid_figure(
        path / "corruptions.png",
        cfg,
        st["names"],
        st["severities"],
        st["accuracy"],
        st["relative"][0],
        n,
    )
    term_rows, term_lines = render_terms(path, cfg.backbone.name, ["corruption"])
    atomic_write(path / "table.md", "\n".join(lines + ["", *term_lines]) + skipped_note())
    write_summary(path, summary_rows(st) + term_rows)
    return summary
