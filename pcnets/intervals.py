"""Intervals of rates from counts and per-image correctness: the Wilson score interval and the
bootstrap (resampled means, percentile intervals, and ratio intervals that may be unbounded).

Per-image correctness is (image, ...); leading axes of bootstrap statistics are the resamples.
"""

from __future__ import annotations

import numpy as np


def wilson_interval(successes, total, z: float = 1.959964) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval (95 % by default) of a binomial rate from counts: it stays
    inside [0, 1] and is honest at 0/n and n/n, where the normal approximation collapses.
    A total of 0 gives (0, 1)."""
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(total, dtype=np.float64)
    safe = np.where(n > 0, n, 1.0)
    p = k / safe
    centre = (p + z * z / (2 * safe)) / (1 + z * z / safe)
    half = z * np.sqrt(p * (1 - p) / safe + z * z / (4 * safe * safe)) / (1 + z * z / safe)
    low = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), 0.0)
    high = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), 1.0)
    return (low.item(), high.item()) if low.ndim == 0 else (low, high)


def bootstrap_means(correct, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Mean correctness of `n_resamples` resamples of the images (axis 0) drawn with replacement:
    shape (n_resamples, *conditions). Counts-times-matrix in chunks: fast, bounded memory."""
    x = np.asarray(correct)
    n = x.shape[0]
    flat = x.reshape(n, -1).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, flat.shape[1]), dtype=np.float64)
    step = max(1, min(n_resamples, 2**22 // max(n, 1)))
    for start in range(0, n_resamples, step):
        b = min(step, n_resamples - start)
        picks = rng.integers(0, n, size=(b, n)) + n * np.arange(b)[:, None]
        counts = np.bincount(picks.ravel(), minlength=b * n).reshape(b, n).astype(np.float32)
        out[start : start + b] = counts @ flat / n
    return out.reshape(n_resamples, *x.shape[1:])


def percentile_interval(samples, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The (low, high) percentile interval of bootstrap statistics over axis 0 (NaNs ignored)."""
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.nanpercentile(np.asarray(samples, dtype=np.float64), [tail, 100 - tail], axis=0)
    return low, high


def accuracy_interval(
    correct, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(accuracy, low, high) per condition from per-image correctness (image, *conditions)."""
    point = np.asarray(correct, dtype=np.float64).mean(axis=0)
    low, high = percentile_interval(bootstrap_means(correct, n_resamples, seed), level)
    return point, low, high


def ratio_interval(samples, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """percentile_interval of bootstrap ratios that may be +inf (a resample whose denominator,
    e.g. the feedforward CE, is 0): such bounds are inf instead of NaN."""
    samples = np.asarray(samples, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        low, high = percentile_interval(samples, level)
    unbounded = np.isposinf(samples).any(axis=0)
    return (
        np.where(np.isnan(low) & unbounded, np.inf, low),
        np.where(np.isnan(high) & unbounded, np.inf, high),
    )
