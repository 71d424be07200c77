"""`pcnets report` on a Hydra ``-m`` sweep folder (<sweep>/multirun.yaml, one run folder per job):
the change each swept value makes, as a table (sweep.md), a figure (sweep.png) and summary.csv
in the sweep folder (issue 22, item 3).

The swept keys are the config keys whose values differ between the jobs. For every eval-noise
job and sigma: the change from t = 0 at the last timestep (from the job's own summary.csv), and
the change at the last timestep against the baseline job (the first, or ``baseline``), paired
over the images both evaluated (per-image files): bootstrap interval, exact McNemar p and MDE.
Holm's adjustment is over every comparison of the sweep. Tune jobs (e.g. a sweep over seed) add
the spread of the tuned values and of the objective across jobs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from pcnets.errors import PcnetsError
from pcnets.intervals import bootstrap_means, holm, paired_test, percentile_interval
from pcnets.reporting.noise_report import noise_file
from pcnets.reporting.run_folders import load_run
from pcnets.reporting.sigma_labels import read_units, sigma_label
from pcnets.reporting.sweep_parts import sweep_figure, tune_rows
from pcnets.reporting.tables import markdown_table, read_summary, summary_row, write_summary
from pcnets.runtime.cell_images import IMAGES, load_cell_images
from pcnets.runtime.files import atomic_write

IGNORED = ("out", "run_id")


def is_sweep(path: Path) -> bool:
    return (Path(path) / "multirun.yaml").is_file()


def jobs(path: Path) -> list:
    """The finished run folders of a sweep, in job order."""
    folders = sorted(
        (p for p in Path(path).iterdir() if p.is_dir() and p.name.isdigit()),
        key=lambda p: int(p.name),
    )
    runs = [load_run(p) for p in folders if (p / "provenance.json").is_file()]
    return [r for r in runs if r.status in ("finished", "suspect")]


def swept(runs: list) -> dict[str, list]:
    """{dotted key: value per job} of the keys whose values differ between the jobs."""
    flat = [
        pd.json_normalize(OmegaConf.to_container(r.config, resolve=False)).iloc[0] for r in runs
    ]
    keys = sorted(set().union(*(f.index for f in flat)) - set(IGNORED))
    out = {}
    for key in keys:
        values = [f.get(key) for f in flat]
        if len({repr(v) for v in values}) > 1:
            out[key] = values
    return out


def _correct(run, sigma: float) -> pd.Series:
    keys, _, correct = load_cell_images(run.path / IMAGES / noise_file(sigma))
    return pd.Series(list(correct[:, -1]), index=keys), pd.Series(list(correct[:, 0]), index=keys)


def paired_change(base, run, sigma: float, resamples: int, seed: int) -> dict | None:
    """The change in accuracy at the last timestep from eval-noise run ``base`` to ``run`` at
    ``sigma``, paired over the images both evaluated: value, bootstrap interval, exact McNemar p,
    MDE (in points) and n; None when either lacks the sigma or they share no image."""
    if not all((r.path / IMAGES / noise_file(sigma)).is_file() for r in (base, run)):
        return None
    mine, _ = _correct(run, sigma)
    theirs, _ = _correct(base, sigma)
    common = mine.index.intersection(theirs.index)
    if common.empty:
        return None
    a = np.array(theirs[common].tolist(), bool)
    b = np.array(mine[common].tolist(), bool)
    test = paired_test(a, b)
    diff = bootstrap_means(np.stack([a, b], 1), resamples, seed)
    low, high = percentile_interval(diff[:, 1] - diff[:, 0])
    return {
        "value": 100 * (b.mean() - a.mean()),
        "unit": "pp",
        "low": 100 * low,
        "high": 100 * high,
        "p_value": test["p_value"],
        "mde": 100 * test["mde"],
        "n": len(common),
    }


def noise_rows(
    runs: list, labels: list[str], baseline: int, resamples: int, seed: int
) -> list[dict]:
    """Per eval-noise job and sigma: change from t = 0 and change against the baseline job."""
    rows = []
    base = runs[baseline]
    for run, label in zip(runs, labels, strict=True):
        summary = read_summary(run.path)
        if run.command != "eval-noise" or summary is None:
            continue
        change = summary[summary["metric"] == "change_from_t0"]
        last = change[change["timestep"] == change["timestep"].max()]
        for r in last.itertuples(index=False):
            where = {"condition": label, "sigma": r.sigma, "timestep": int(r.timestep), "n": r.n}
            rows.append(
                summary_row(
                    "change_from_t0",
                    r.value,
                    "pp",
                    r.low,
                    r.high,
                    p_value=r.p_value,
                    mde=r.mde,
                    **where,
                )
            )
            if run is base:
                continue
            paired = paired_change(base, run, r.sigma, resamples, seed)
            if paired is not None:
                rows.append(summary_row("change_from_baseline", **{**where, **paired}))
    adjusted = holm([r["p_value"] for r in rows])
    for r, p in zip(rows, adjusted, strict=True):
        r["p_adjusted"] = p
    return rows


def write_sweep(path: str | Path, baseline: int = 0) -> list[str]:
    """sweep.md, sweep.png and summary.csv of a sweep folder; returns the lines to print."""
    path = Path(path)
    runs = jobs(path)
    if len(runs) < 2:
        raise PcnetsError(f"{path}: a sweep report needs 2 finished jobs, found {len(runs)}")
    if not 0 <= baseline < len(runs):
        raise PcnetsError(f"--baseline {baseline}: the sweep has jobs 0..{len(runs) - 1}")
    keys = swept(runs)
    labels = [
        ", ".join(f"{k}={v[i]}" for k, v in keys.items()) or r.path.name for i, r in enumerate(runs)
    ]
    cfg = runs[0].config
    resamples = int(OmegaConf.select(cfg, "eval.bootstrap", default=1000))
    rows = noise_rows(
        runs, labels, baseline, resamples, int(OmegaConf.select(cfg, "seed", default=0))
    )
    spread = tune_rows(runs, labels)
    write_summary(path, rows + spread)
    lines = [
        f"# Sweep {path.name}: {len(runs)} jobs, swept {', '.join(keys) or '(nothing differs)'}",
        "",
        f"Baseline job: {labels[baseline]}. Changes in percentage points at the last timestep "
        "with 95 % paired bootstrap intervals; McNemar p exact, Holm-adjusted over every "
        "comparison below (decided below 0.05); MDE: the change detectable at 80 % power.",
        "",
    ]
    if rows:
        table = pd.DataFrame(rows)
        space = str(OmegaConf.select(cfg, "eval.noise_space", default="normalized"))
        units = read_units(runs[baseline].path, space)
        table["sigma"] = [sigma_label(s, units) for s in table["sigma"]]
        columns = ["metric", "condition", "sigma", "value", "low", "high"]
        shown = table[[*columns, "p_value", "p_adjusted", "mde", "n"]]
        lines += [markdown_table(shown, digits=3), ""]
        sweep_figure(path / "sweep.png", pd.DataFrame(rows), labels, keys, path.name)
        lines += ["Figure: sweep.png", ""]
    if spread:
        lines += ["## Spread across the tune jobs", ""]
        shown = pd.DataFrame(spread)[["metric", "encoder", "value", "n"]]
        lines += [markdown_table(shown, digits=3), ""]
    atomic_write(path / "sweep.md", "\n".join(lines))
    return [f"sweep {path}: {len(runs)} jobs, {len(rows)} rows -> sweep.md, summary.csv"]
