"""Fast elastic_transform whose output is byte-identical to imagecorruptions' own.

The library builds a 3-D meshgrid and three coordinate columns (one per pixel and channel) and
hands them to scipy's map_coordinates (order 1, mode 'reflect'), which then interpolates in 3-D
although the channel coordinate is a whole number. Here the random displacement fields are drawn
and smoothed by the same calls, in the same order (so numpy's global stream is consumed alike),
and one compiled pass interpolates in 2-D with scipy's arithmetic: the same reflection of the
coordinate, the same weights (w1 = 1 - w0), the same products and sums in double precision, and
a float32 result. The channel axis only ever adds terms multiplied by a weight of exactly 0.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from skimage.filters import gaussian

# alpha per severity, as imagecorruptions.corruptions.elastic_transform.
ELASTIC = (250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12)


@njit(cache=True)
def _reflect(c, size):
    """scipy's map_coordinate for mode 'reflect' (half-sample symmetric) and size > 1."""
    if c < 0:
        period = 2 * size
        if c < -period:
            c = period * int(-c / period) + c
        if c < -size:
            c = c + period
        else:
            c = (1e-15 if c > -1e-15 else -c) - 1
    elif c > size - 1:
        period = 2 * size
        c -= period * int(c / period)
        if c >= size:
            c = period - c - 1
    return c


@njit(cache=True)
def _neighbour(index, size):
    """The input index scipy reads for a filter tap at `index` (reflected at the borders)."""
    if index < 0:
        return -index - 1
    if index >= size:
        return 2 * size - index - 1
    return index


@njit(cache=True)
def _warp(image, dy, dx, out):
    """out[i, j, ch] = scipy's order-1 reflect interpolation of image at (i + dy, j + dx)."""
    height, width = image.shape[0], image.shape[1]
    for i in range(height):
        for j in range(width):
            cy = _reflect(i + np.float64(dy[i, j]), height)
            cx = _reflect(j + np.float64(dx[i, j]), width)
            y0 = math.floor(cy)
            x0 = math.floor(cx)
            wy0 = 1.0 - (cy - y0)
            wy1 = 1.0 - wy0
            wx0 = 1.0 - (cx - x0)
            wx1 = 1.0 - wx0
            a, b = _neighbour(int(y0), height), _neighbour(int(y0) + 1, height)
            p, q = _neighbour(int(x0), width), _neighbour(int(x0) + 1, width)
            for ch in range(image.shape[2]):
                t = 0.0
                t += np.float64(image[a, p, ch]) * wy0 * wx0 * 1.0
                t += np.float64(image[a, q, ch]) * wy0 * wx1 * 1.0
                t += np.float64(image[b, p, ch]) * wy1 * wx0 * 1.0
                t += np.float64(image[b, q, ch]) * wy1 * wx1 * 1.0
                out[i, j, ch] = np.float32(t)
    return out


def elastic_transform(image: np.ndarray, severity: int) -> np.ndarray:
    """imagecorruptions' elastic_transform(image, severity) of a uint8 HxWx3 image (float32
    0..255), drawing from numpy's global generator exactly as the library does."""
    x = np.array(image, dtype=np.float32) / 255.0
    shape = x.shape[:2]
    sigma = np.array(shape) * 0.01
    alpha = ELASTIC[severity - 1]
    max_delta = x.shape[0] * 0.005
    fields = []
    for _ in range(2):  # dx, then dy, as the library draws them
        noise = np.random.uniform(-max_delta, max_delta, size=shape)
        smooth = gaussian(noise, sigma, mode="reflect", truncate=3)
        fields.append((smooth * alpha).astype(np.float32))
    dx, dy = fields
    out = _warp(x, dy, dx, np.empty_like(x))
    return np.clip(out, 0, 1) * 255
