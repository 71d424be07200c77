"""Accuracy, corruption errors (CE), mean corruption errors (mCE) and their bootstrap intervals.

Arrays of error rates are laid out (..., corruption, severity, timestep); per-image correctness
is (image, ...). Leading axes are kept, so one call scores every bootstrap resample at once. The
general intervals (Wilson, bootstrap means, percentile and ratio intervals) live in
pcnets.intervals and are importable from here too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pcnets.intervals import (  # noqa: F401 - re-exported: pcnets.metrics keeps its names
    accuracy_interval,
    bootstrap_means,
    percentile_interval,
    ratio_interval,
    undefined_share,
    wilson_interval,
)

# AlexNet's top-1 error averaged over the 5 severities (METHOD.md section 7; Hendrycks et al.).
ALEXNET_ERR: dict[str, float] = {
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg_compression": 0.606500,
}
STANDARD_CORRUPTIONS: tuple[str, ...] = tuple(ALEXNET_ERR)
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS: tuple[str, ...] = STANDARD_CORRUPTIONS + EXTRA_CORRUPTIONS
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)


def accuracy(correct, total):
    """Top-1 accuracy from counts (numbers or arrays of the same shape)."""
    result = np.asarray(correct, dtype=np.float64) / np.asarray(total, dtype=np.float64)
    return result.item() if result.ndim == 0 else result


def error_rate(correct, total):
    """Top-1 error rate, 1 - accuracy, from counts."""
    result = 1.0 - np.asarray(accuracy(correct, total))
    return result.item() if result.ndim == 0 else result


def rates(
    df: pd.DataFrame,
    by: Sequence[str] | None = None,
    correct: str = "correct",
    total: str = "total",
) -> pd.DataFrame:
    """Add accuracy and error columns to a table of counts; with `by`, sum the counts per group
    first (e.g. over data shards or over severities)."""
    table = df.groupby(list(by), as_index=False)[[correct, total]].sum() if by else df.copy()
    table["accuracy"] = accuracy(table[correct].to_numpy(), table[total].to_numpy())
    table["error"] = 1.0 - table["accuracy"]
    return table


def corruption_error(errors, reference=None):
    """CE: the sum of error rates over severities (the last axis), divided by `reference`'s sum
    (a reference model's per-severity errors, or their total) when one is given."""
    ce = np.asarray(errors, dtype=np.float64).sum(axis=-1)
    if reference is None:
        return ce
    return ce / np.asarray(reference, dtype=np.float64).sum(axis=-1)


def relative_mce(errors) -> np.ndarray:
    """mCE relative to timestep 0, as the Predify reference code: mean over corruptions of
    CE_c(t) / CE_c(0). errors: (..., corruption, severity, timestep); returns (..., timestep)."""
    ce = np.asarray(errors, dtype=np.float64).sum(axis=-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (ce / ce[..., :1]).mean(axis=-2)


def summed_error_ratio(errors) -> np.ndarray:
    """The ratio of summed errors: sum over corruptions and severities of E(t) / the same sum at
    t = 0. Unlike the relative mCE (a mean of per-corruption ratios, undefined or huge when a
    corruption has 0-2 errors at t = 0) it is defined whenever any error is made at t = 0.
    errors: (..., corruption, severity, timestep); returns (..., timestep)."""
    total = np.asarray(errors, dtype=np.float64).sum(axis=(-3, -2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return total / total[..., :1]


def alexnet_ce_denominator(corruptions: Sequence[str]) -> np.ndarray:
    """AlexNet's CE per corruption: 5 x its severity-averaged error (NaN for the 4 extras)."""
    return np.array([len(SEVERITIES) * ALEXNET_ERR.get(c, np.nan) for c in corruptions])


def standard_mce(errors, corruptions: Sequence[str]) -> np.ndarray:
    """Hendrycks & Dietterich's mCE over the 15 standard corruptions among `corruptions`:
    mean of sum_s E_{s,c} / sum_s E^AlexNet_{s,c}. errors: (..., corruption, severity, timestep).
    With fewer than the 5 severities, the errors are scaled by 5 / (severities given): the mean
    error over the severities run divided by AlexNet's severity-averaged error (an approximation
    of the standard number)."""
    keep = [i for i, c in enumerate(corruptions) if c in ALEXNET_ERR]
    if not keep:
        raise ValueError(f"none of {list(corruptions)} has an AlexNet reference error")
    errors = np.asarray(errors, dtype=np.float64)[..., keep, :, :]
    scale = len(SEVERITIES) / errors.shape[-2]
    if scale != 1:
        errors = errors * scale
    denominator = alexnet_ce_denominator([corruptions[i] for i in keep])
    return (errors.sum(axis=-2) / denominator[:, None]).mean(axis=-2)


def error_cube(
    df: pd.DataFrame,
    corruptions: Sequence[str] | None = None,
    correct: str = "correct",
    total: str = "total",
) -> tuple[list[str], np.ndarray]:
    """(corruption names, errors of shape (corruption, severity, timestep)) from a long table with
    columns corruption, severity, timestep and counts; every cell must be present."""
    names = list(corruptions) if corruptions is not None else _ordered(df["corruption"].unique())
    table = rates(df[df["corruption"].isin(names)], ["corruption", "severity", "timestep"])
    severities = sorted(table["severity"].unique())
    timesteps = sorted(table["timestep"].unique())
    index = pd.MultiIndex.from_product(
        [names, severities, timesteps], names=["corruption", "severity", "timestep"]
    )
    errors = table.set_index(["corruption", "severity", "timestep"])["error"].reindex(index)
    if errors.isna().any():
        missing = errors[errors.isna()].index[0]
        raise ValueError(f"no counts for corruption/severity/timestep {missing}")
    return names, errors.to_numpy().reshape(len(names), len(severities), len(timesteps))


def _ordered(names) -> list[str]:
    known = [c for c in ALL_CORRUPTIONS if c in set(names)]
    return known + sorted(set(names) - set(known))


def mce_table(errors, corruptions: Sequence[str]) -> pd.DataFrame:
    """Per timestep: relative mCE over all given corruptions, the AlexNet-normalised mCE over the
    standard 15, and the relative mCE of the extra corruptions alone (reported apart)."""
    errors = np.asarray(errors, dtype=np.float64)
    timesteps = np.arange(errors.shape[-1])
    table = pd.DataFrame({"timestep": timesteps, "relative_mce": relative_mce(errors)})
    has_standard = any(c in ALEXNET_ERR for c in corruptions)
    table["standard_mce"] = standard_mce(errors, corruptions) if has_standard else np.nan
    extra = [i for i, c in enumerate(corruptions) if c not in ALEXNET_ERR]
    table["extra_relative_mce"] = relative_mce(errors[extra]) if extra else np.nan
    return table


def corruption_table(errors, corruptions: Sequence[str]) -> pd.DataFrame:
    """One row per corruption and timestep: CE, CE relative to timestep 0, CE / AlexNet's CE."""
    ce = corruption_error(np.moveaxis(np.asarray(errors, dtype=np.float64), -2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = ce / ce[:, :1]
    alexnet = ce / alexnet_ce_denominator(corruptions)[:, None]
    rows = [
        {
            "corruption": name,
            "group": "standard" if name in ALEXNET_ERR else "extra",
            "timestep": t,
            "ce": ce[i, t],
            "relative_ce": relative[i, t],
            "alexnet_ce": alexnet[i, t],
        }
        for i, name in enumerate(corruptions)
        for t in range(ce.shape[1])
    ]
    return pd.DataFrame(rows)


def mce_intervals(
    correct,
    corruptions: Sequence[str],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Per timestep, with bootstrap (low, high) columns: relative mCE over all corruptions; over
    the standard and the extra ones apart (standard_relative_mce when both groups are present,
    extra_relative_mce when extras are); and the AlexNet-normalised standard_mce (scaled when
    fewer than 5 severities were run, see standard_mce); and the summed_error_ratio. correct:
    per-image correctness of shape (image, corruption, severity, timestep); the same images are
    resampled for every condition. No resample is dropped silently: every ratio has a column
    <name>_undefined, the share of resamples where it is NaN or inf (a feedforward CE of 0),
    and its interval is over the rest (an inf bound when some were inf)."""
    names = list(corruptions)
    errors = 1.0 - np.asarray(correct, dtype=np.float64).mean(axis=0)
    boot = 1.0 - bootstrap_means(correct, n_resamples, seed)
    standard = [i for i, c in enumerate(names) if c in ALEXNET_ERR]
    extra = [i for i, c in enumerate(names) if c not in ALEXNET_ERR]
    stats = {"relative_mce": (relative_mce, None)}
    if standard and extra:
        stats["standard_relative_mce"] = (relative_mce, standard)
    if extra:
        stats["extra_relative_mce"] = (relative_mce, extra)
    if standard:
        stats["standard_mce"] = (lambda e: standard_mce(e, names), None)
    stats["summed_error_ratio"] = (summed_error_ratio, None)
    table = pd.DataFrame({"timestep": np.arange(errors.shape[-1])})
    for name, (fn, idx) in stats.items():
        pick = (lambda e: e) if idx is None else (lambda e, idx=idx: e[..., idx, :, :])
        with np.errstate(divide="ignore", invalid="ignore"):
            table[name] = fn(pick(errors))
            samples = fn(pick(boot))
            table[f"{name}_low"], table[f"{name}_high"] = ratio_interval(samples, level)
            table[f"{name}_undefined"] = undefined_share(samples)
    return table
