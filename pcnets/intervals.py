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


def undefined_share(samples) -> np.ndarray:
    """Per condition, the share of bootstrap statistics (axis 0) that are not finite (a ratio
    with a 0 denominator in that resample: NaN for 0/0, inf otherwise). An interval computed
    from the rest is conditional on them; report this share beside it."""
    samples = np.asarray(samples, dtype=np.float64)
    return (~np.isfinite(samples)).mean(axis=0)


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


# Paired tests of two classifiers (or two timesteps) on the same images: b = images right only in
# the first condition, c = right only in the second; images both got right or wrong carry no
# information about the difference (McNemar 1947).
Z_95_TWO_SIDED = 1.959964
Z_80_POWER = 0.841621


def discordant(first, second) -> tuple[int, int]:
    """(b, c) of two per-image correctness vectors: b = right in ``first`` only, c = right in
    ``second`` only."""
    a = np.asarray(first, dtype=bool)
    z = np.asarray(second, dtype=bool)
    if a.shape != z.shape:
        raise ValueError(f"paired correctness needs equal shapes, got {a.shape} and {z.shape}")
    return int((a & ~z).sum()), int((~a & z).sum())


def mcnemar_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: under no difference each of the b + c discordant images
    is equally likely to go either way, so p = min(1, 2 P[Binomial(b + c, 1/2) <= min(b, c)]).
    No discordant image gives p = 1."""
    from scipy.stats import binom

    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    if b + c == 0:
        return 1.0
    return float(min(1.0, 2.0 * binom.cdf(min(b, c), b + c, 0.5)))


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (same order out; NaN stays NaN and is
    not counted): the i-th smallest of m becomes max over j <= i of min(1, (m - j + 1) p_(j)).
    Reject where the adjusted p is below the level: the family-wise error stays at that level."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p.ravel()))
    if valid.size == 0:
        return out
    flat = p.ravel()[valid]
    order = np.argsort(flat, kind="stable")
    m = flat.size
    scaled = np.minimum(1.0, (m - np.arange(m)) * flat[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    result = out.ravel()
    result[valid] = adjusted
    return result.reshape(p.shape)


def paired_mde(
    b: int, c: int, n: int, z_alpha: float = Z_95_TWO_SIDED, z_power: float = Z_80_POWER
):
    """Minimum detectable change (a fraction; x100 for percentage points) of a paired comparison
    of n images at 80 % power and two-sided 5 % level, from the discordance rate psi = (b + c) / n:

        mde = (z_{1 - 0.05/2} + z_{0.80}) * sqrt(psi / n) = 2.8016 * sqrt(psi / n)

    (the normal approximation of McNemar's test, Connor 1987, for a change small against psi).
    A change of this size would be found 4 times in 5; a smaller one may be missed. With no
    discordant image psi is taken as 1 / n (one), so the MDE is never 0."""
    n = int(n)
    if n <= 0:
        raise ValueError(f"paired_mde needs n > 0 images, got {n}")
    psi = max(int(b) + int(c), 1) / n
    return float((z_alpha + z_power) * np.sqrt(psi / n))


def paired_test(first, second) -> dict:
    """McNemar p-value and MDE of two per-image correctness vectors (``second`` - ``first``):
    {'b', 'c', 'p_value', 'mde'} with the MDE as a fraction."""
    b, c = discordant(first, second)
    n = int(np.asarray(first).shape[0])
    return {"b": b, "c": c, "p_value": mcnemar_p(b, c), "mde": paired_mde(b, c, n)}


def changes_from_first(correct) -> tuple[np.ndarray, np.ndarray]:
    """(McNemar p-values, MDEs as fractions) of every column of per-image correctness
    (image, timestep) against its first column: the change from t = 0 at each timestep."""
    x = np.asarray(correct, dtype=bool)
    tests = [paired_test(x[:, 0], x[:, t]) for t in range(x.shape[1])]
    return np.array([r["p_value"] for r in tests]), np.array([r["mde"] for r in tests])
