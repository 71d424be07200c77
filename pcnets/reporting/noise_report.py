"""The tables, figure and summary.csv of an eval-noise run folder, from its files alone
(config.yaml, metrics.csv, images/*.npz): `render(path)` draws them again without a model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from pcnets.data.images import skipped_note
from pcnets.data.noise import check_noise_space
from pcnets.errors import PcnetsError
from pcnets.intervals import bootstrap_means, changes_from_first, holm, percentile_interval
from pcnets.reporting.figures import Curve, Panel, save_panels
from pcnets.reporting.sigma_labels import UNITS, read_units, sigma_label
from pcnets.reporting.tables import (
    bootstrap_settings,
    describe,
    interval_text,
    markdown_table,
    summary_row,
    write_summary,
)
from pcnets.reporting.term_files import render_terms
from pcnets.runtime.cell_images import IMAGES, load_cell_images
from pcnets.runtime.files import atomic_write


def noise_file(sigma: float) -> str:
    """The per-image file name of one sigma under <run>/images/."""
    return f"noise_sigma={float(sigma):g}.npz"


def noise_stats(path: Path, cfg, df: pd.DataFrame) -> dict[float, dict]:
    """Per sigma, in percent: accuracy per timestep with its bootstrap interval over images, and
    the change from t=0 with its paired interval (the same resampled images at both timesteps)."""
    resamples, level, seed = bootstrap_settings(cfg)
    stats = {}
    for sigma in (float(s) for s in df["sigma"].drop_duplicates()):
        _, _, correct = load_cell_images(path / IMAGES / noise_file(sigma))
        rows = df[df["sigma"] == sigma].sort_values("timestep")
        counts = rows["correct"].to_numpy()
        if not np.array_equal(correct.sum(axis=0), counts):
            raise PcnetsError(f"{path}: per-image file of sigma {sigma:g} disagrees with metrics")
        samples = bootstrap_means(correct, resamples, seed)
        low, high = percentile_interval(samples, level)
        change_low, change_high = percentile_interval(samples - samples[:, :1], level)
        point = counts / rows["total"].to_numpy()
        p_value, mde = changes_from_first(correct)
        stats[sigma] = {
            "p_value": p_value,
            "mde": 100 * mde,
            "acc": 100 * point,
            "low": 100 * low,
            "high": 100 * high,
            "change": 100 * (point - point[0]),
            "change_low": 100 * change_low,
            "change_high": 100 * change_high,
            "n": int(rows["total"].iloc[0]),
        }
    adjusted = holm([st["p_value"][-1] for st in stats.values()])
    for st, p in zip(stats.values(), adjusted, strict=True):
        st["p_adjusted"] = p
    return stats


def summary_rows(stats: dict[float, dict], units: dict | None = None) -> list[dict]:
    """Every number the tables show, for summary.csv: accuracy and change from t=0 per sigma and
    timestep (with intervals, McNemar p-value and MDE; the Holm-adjusted p-value on the last
    timestep, the family being one change per sigma), and the best timestep per sigma."""
    rows = []
    for sigma, st in stats.items():
        where = {"condition": "clean" if sigma == 0 else "noise", "sigma": sigma, "n": st["n"]}
        last = len(st["acc"]) - 1
        for t in range(len(st["acc"])):
            acc = (st["acc"][t], "%", st["low"][t], st["high"][t])
            change = (st["change"][t], "pp", st["change_low"][t], st["change_high"][t])
            tests = {"p_value": st["p_value"][t], "mde": st["mde"][t]}
            if t == last:
                tests["p_adjusted"] = st["p_adjusted"]
            rows.append(summary_row("accuracy", *acc, timestep=t, **where))
            rows.append(summary_row("change_from_t0", *change, timestep=t, **where, **tests))
        rows.append(summary_row("best_timestep", int(np.argmax(st["acc"])), "timestep", **where))
        for unit, value in ((units or {}).get(sigma) or {}).items():
            rows.append(summary_row(f"sigma_{unit}", value, unit, **where))
    return rows


def render(path: str | Path) -> list[str]:
    """table.md, noise_accuracy.png and summary.csv of an eval-noise run folder; returns the
    lines a command prints."""
    path = Path(path)
    cfg = OmegaConf.load(path / "config.yaml")
    resamples, level, _ = bootstrap_settings(cfg)
    df = pd.read_csv(path / "metrics.csv")
    timesteps = int(df["timestep"].max())
    pct = f"{level:.0%}"
    stats = noise_stats(path, cfg, df)
    n = next(iter(stats.values()))["n"]
    space = check_noise_space(cfg.eval.get("noise_space", "normalized"))
    units = read_units(path, space)
    noise = (
        "N(0, sigma^2) added in the network's normalised space (sigma x channel std in pixels, "
        "not clipped)"
        if space == "normalized"
        else "N(0, sigma^2) added to [0, 1] pixels, then clipped to [0, 1]"
    )
    lines = [
        f"# eval-noise: {cfg.backbone.name}, top-1 accuracy per timestep under Gaussian noise",
        "",
        *describe(cfg, n),
        f"- noise: {noise}; one seeded sample per image and sigma, the same at every timestep",
        *(
            [
                "- sigma units: normalised = x this backbone's std in pixels, px = [0, 1] pixels, "
                "reference = the paper's (x ImageNet's std 0.226); eval.sigmas were given in "
                f"{json.loads((path / UNITS).read_text())['unit']} units"
            ]
            if units
            else []
        ),
        f"- intervals: {pct} percentile bootstrap over images ({resamples} resamples); the change "
        "from t=0 is paired (the same resampled images at both timesteps)",
        "",
        "## Top-1 accuracy (%)",
        "",
    ]
    header = ["sigma", *[f"t={t}" for t in range(timesteps + 1)]]
    body = [[sigma_label(s, units), *[f"{a:.1f}" for a in st["acc"]]] for s, st in stats.items()]
    lines += [markdown_table(body, header), ""]
    lines += [f"## Change from timestep 0 (percentage points, {pct} interval)", ""]
    header = [
        "sigma",
        f"t=0 accuracy [{pct}]",
        f"t={timesteps} accuracy [{pct}]",
        f"change at t={timesteps} [{pct}]",
        "McNemar p (Holm)",
        "MDE (pp)",
        "best t",
        f"change at best t [{pct}]",
    ]
    body, summary = [], []
    for sigma, st in stats.items():
        best = int(np.argmax(st["acc"]))
        last = interval_text(st["change"][-1], st["change_low"][-1], st["change_high"][-1], "+.1f")
        body.append(
            [
                sigma_label(sigma, units),
                interval_text(st["acc"][0], st["low"][0], st["high"][0], ".1f"),
                interval_text(st["acc"][-1], st["low"][-1], st["high"][-1], ".1f"),
                last,
                f"{st['p_value'][-1]:.3g} ({st['p_adjusted']:.3g})",
                f"{st['mde'][-1]:.1f}",
                str(best),
                interval_text(
                    st["change"][best], st["change_low"][best], st["change_high"][best], "+.1f"
                ),
            ]
        )
        summary.append(
            f"{sigma_label(sigma, units)}: t=0 {st['acc'][0]:.1f}% -> t={timesteps} "
            f"{st['acc'][-1]:.1f}% (change {last} pp)"
        )
    lines += [markdown_table(body, header), ""]
    lines += [
        "The best t is chosen on these same images, so its change is optimistic; the change at "
        f"t={timesteps} is the unbiased one. McNemar p: exact two-sided test of t={timesteps} "
        "against t=0 on the same images; Holm: adjusted over the sigmas of this run (a change "
        "is decided below 0.05). MDE: the change this many images would detect at 80 % power "
        "(2.80 sqrt(discordant share / images)); a smaller one may go unseen.",
        "",
        "Figure: noise_accuracy.png",
        "",
    ]
    _figure(path / "noise_accuracy.png", cfg, stats, n, pct, space, units)
    term_rows, term_lines = render_terms(path, cfg.backbone.name, ["sigma"])
    atomic_write(path / "table.md", "\n".join(lines + term_lines) + skipped_note())
    write_summary(path, summary_rows(stats, units) + term_rows)
    return summary


def _figure(target: Path, cfg, stats: dict, n: int, pct: str, space: str, units=None) -> Path:
    accuracy = [
        Curve(sigma_label(s, units), st["acc"], st["low"], st["high"]) for s, st in stats.items()
    ]
    change = [
        Curve(sigma_label(s, units), st["change"], st["change_low"], st["change_high"])
        for s, st in stats.items()
    ]
    unit = "normalised units" if space == "normalized" else "pixel units, clipped"
    return save_panels(
        target,
        [
            Panel("Top-1 accuracy", accuracy, ylabel="top-1 accuracy (%)"),
            Panel(
                "Change from timestep 0",
                change,
                ylabel="accuracy - accuracy at t=0 (percentage points)",
                reference=0.0,
                reference_label="no change",
            ),
        ],
        f"{cfg.backbone.name} under Gaussian noise (sigma in {unit}), {n} images",
        note=f"Bands: {pct} bootstrap intervals over images. t=0 is the feedforward network; "
        "t>0 adds predictive-coding feedback.",
    )
