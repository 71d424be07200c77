"""Paired comparisons between the eval-noise runs of one report (issue 22, item 6): two runs that
differ in exactly one config key (the sigmas aside) and evaluated the same images are compared at
their last timestep, image by image, e.g. the demo's tuned against its default hyperparameters.

Two jobs of sweeps are left to the sweeps' own reports (`pcnets report SWEEP`, sweep.md): a pair
needs one run made alone. Of runs with the same config, one stands for them all (one made
alone if there is one). The run
that holds the default value of the differing key is the baseline, else the one where it is unset
(null, false, 0), else the first in the report's order. Holm's adjustment is over every row of the
section: the report's family.
"""

from __future__ import annotations

from functools import cache
from itertools import combinations

import pandas as pd
from omegaconf import OmegaConf

from pcnets.intervals import holm
from pcnets.reporting.sigma_labels import read_units, sigma_label
from pcnets.reporting.sweep import is_sweep, paired_change, swept
from pcnets.reporting.tables import markdown_table, read_summary

COLUMNS = "comparison baseline run sigma value low high p_value p_adjusted mde n verdict".split()
SIGMAS_KEY = "eval.sigmas"  # runs over other sigmas are compared on the sigmas they share


def _unset(value) -> bool:
    return value is None or value is False or value == 0 or value in ("null", "none")


def _sweep_job(run) -> bool:
    return is_sweep(run.path.resolve().parent)


@cache
def _defaults():
    from pcnets.config import compose

    return compose([])


def _same(x, y) -> bool:
    """Equal as numbers, else as text (the values come from json_normalize: numpy scalars)."""
    try:
        return float(x) == float(y)
    except (TypeError, ValueError):
        return str(x) == str(y)


def _baseline_first(a, b, key: str, va, vb) -> tuple:
    default = OmegaConf.select(_defaults(), key, default=None)
    if _same(va, default) != _same(vb, default):
        return (a, b) if _same(va, default) else (b, a)
    if _unset(va) != _unset(vb):
        return (a, b) if _unset(va) else (b, a)
    return a, b


def pairs(runs: list) -> list[tuple]:
    """(baseline run, other run, differing key) for every pair of finished eval-noise runs, one
    of them made alone, whose configs differ in one key besides the sigmas."""
    noise = [r for r in runs if r.command == "eval-noise" and r.status in ("finished", "suspect")]
    distinct = []
    # a run with the config of an earlier one adds no comparison; runs made alone stand first
    for run in sorted(noise, key=_sweep_job):
        if not any(not _differing(run, seen) for seen in distinct):
            distinct.append(run)
    found = []
    for a, b in combinations(distinct, 2):
        if _sweep_job(a) and _sweep_job(b):
            continue
        keys = _differing(a, b)
        if len(keys) == 1:
            ((key, (va, vb)),) = keys.items()
            found.append((*_baseline_first(a, b, key, va, vb), key))
    return found


def _differing(a, b) -> dict:
    return {k: v for k, v in swept([a, b]).items() if k != SIGMAS_KEY}


def pair_rows(runs: list) -> list[dict]:
    """One row per pair and shared sigma: the change in points with interval, p, Holm p, MDE."""
    rows = []
    for base, other, key in pairs(runs):
        cfg = base.config
        resamples = int(OmegaConf.select(cfg, "eval.bootstrap", default=1000))
        seed = int(OmegaConf.select(cfg, "seed", default=0))
        space = str(OmegaConf.select(cfg, "eval.noise_space", default="normalized"))
        units = read_units(base.path, space)
        shared = _sigmas(base) & _sigmas(other)
        for sigma in sorted(shared):
            paired = paired_change(base, other, sigma, resamples, seed)
            if paired is None:
                continue
            change = f"{key}: {OmegaConf.select(cfg, key)} -> {OmegaConf.select(other.config, key)}"
            rows.append(
                {
                    "comparison": change,
                    "baseline": base.name,
                    "run": other.name,
                    "sigma": sigma_label(sigma, units),
                    **paired,
                }
            )
    for row, p in zip(rows, holm([r["p_value"] for r in rows]), strict=True):
        row["p_adjusted"] = p
        row["verdict"] = (
            "decided" if p < 0.05 else f"not decided: {row['mde']:.1f} pp would show 4 in 5"
        )
    return rows


def _sigmas(run) -> set[float]:
    """The sigmas a run evaluated, as its summary.csv and image files name them (the noise
    space's unit): eval.sigmas may be in another unit (eval.sigma_unit=reference)."""
    summary = read_summary(run.path)
    if summary is None:
        return set()
    return set(summary.loc[summary["metric"] == "change_from_t0", "sigma"].astype(float))


def paired_section(runs: list) -> str:
    """The report's section of paired comparisons between runs ('' when no pair exists)."""
    rows = pair_rows(runs)
    if not rows:
        return ""
    table = pd.DataFrame(rows)[COLUMNS]
    return "\n".join(
        [
            "## Paired comparisons between runs",
            "",
            "Eval-noise runs of this report that differ in one config key (the sigmas aside), "
            "compared at their last timestep on the images both evaluated: accuracy of the run "
            "minus the baseline in percentage points, 95 % paired bootstrap interval, exact "
            "McNemar p, Holm-adjusted over every row below (decided below 0.05), and the change "
            "detectable at 80 % power (MDE), the size a 'not decided' rules out.",
            "",
            markdown_table(table, digits=3),
        ]
    )
