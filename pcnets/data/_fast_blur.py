"""Fast glass_blur and zoom_blur whose outputs are byte-identical to imagecorruptions' own.

glass_blur: the library's jitted pixel loop has no disk cache (each new process, e.g. every
DataLoader worker, compiles it again, ~3 s, and severity 3 once more), draws its offsets
through a new array per pixel, and falls back to an unseeded generator. Here the loop is compiled
once per machine (numba's cache) for one signature and always seeded.
zoom_blur: the library zooms the whole image with scipy's 3-D order-1 spline once per zoom
factor; here one compiled pass computes the same double-precision sums, in the same order, only
for the pixels that clipped_zoom keeps, with the per-axis weights computed once per image size.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit
from skimage.filters import gaussian

# (sigma, max_delta, iterations) per severity, as imagecorruptions.corruptions.glass_blur.
GLASS_BLUR = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))

# Zoom factors per severity, built by the same expressions as imagecorruptions' zoom_blur.
ZOOM_BLUR = (
    np.arange(1, 1.11, 0.01),
    np.arange(1, 1.16, 0.01),
    np.arange(1, 1.21, 0.02),
    np.arange(1, 1.26, 0.02),
    np.arange(1, 1.31, 0.03),
)


@njit(cache=True)
def _shuffle_pixels(x, max_delta, iterations, seed):
    """The library's local pixel shuffle. Its tuple 'swap' of two pixel views copies one way only
    (the second assignment reads the already overwritten pixel); kept so outputs stay identical."""
    np.random.seed(seed)
    for _ in range(iterations):
        for h in range(x.shape[0] - max_delta, max_delta, -1):
            for w in range(x.shape[1] - max_delta, max_delta, -1):
                dx = np.random.randint(-max_delta, max_delta)
                dy = np.random.randint(-max_delta, max_delta)
                for ch in range(x.shape[2]):
                    x[h, w, ch] = x[h + dy, w + dx, ch]
    return x


def glass_blur(image: np.ndarray, severity: int, seed: int) -> np.ndarray:
    """imagecorruptions' glass_blur(image, severity, seed=seed) of a uint8 HxWx3 image (0..255)."""
    sigma, max_delta, iterations = GLASS_BLUR[severity - 1]
    x = np.uint8(gaussian(image / 255.0, sigma=sigma, channel_axis=-1) * 255)
    x = _shuffle_pixels(x, int(max_delta), int(iterations), int(seed))
    return np.clip(gaussian(x / 255.0, sigma=sigma, channel_axis=-1), 0, 1) * 255


@functools.lru_cache(maxsize=64)
def _axis_weights(size: int, severity: int) -> tuple[np.ndarray, ...]:
    """Per zoom factor and kept output index along one axis: the two input indices, their order-1
    spline weights (as scipy computes them) and whether the point lies inside the input, where
    scipy's mode='constant' would give 0 instead."""
    rows = [_one_axis(size, float(z)) for z in ZOOM_BLUR[severity - 1]]
    tables = tuple(np.ascontiguousarray(np.stack(column)) for column in zip(*rows, strict=True))
    for table in tables:
        table.setflags(write=False)
    return tables


def _one_axis(size: int, zoom_factor: float) -> tuple[np.ndarray, ...]:
    crop = int(np.ceil(size / zoom_factor))  # clipped_zoom: central crop, zoomed back up
    top = (size - crop) // 2
    zoomed = int(round(crop * zoom_factor))  # scipy.ndimage.zoom's output length
    step = (crop - 1) / (zoomed - 1) if zoomed != 1 else 1.0
    coord = np.arange(size) * step  # only the first `size` outputs survive the crop
    start = np.floor(coord).astype(np.int64)
    weight0 = 1.0 - (coord - np.floor(coord))
    weight1 = 1.0 - weight0  # scipy makes the weights sum to 1 this way
    inside = coord <= crop - 1
    first = top + np.minimum(start, crop - 1)
    second = top + np.minimum(start + 1, crop - 1)  # its weight is 0 at the last input index
    return first, second, weight0, weight1, inside


@njit(cache=True)
def _sum_zoom_layers(x, r0, r1, rw0, rw1, rin, c0, c1, cw0, cw1, cin, out):
    """out += every zoom layer, each value the float32 of scipy's double sum v*w_row*w_col over
    the four neighbours in scipy's order, layers added in the library's order."""
    for z in range(r0.shape[0]):
        for i in range(x.shape[0]):
            if not rin[z, i]:
                continue
            a, b, wa, wb = r0[z, i], r1[z, i], rw0[z, i], rw1[z, i]
            for j in range(x.shape[1]):
                if not cin[z, j]:
                    continue
                p, q, wp, wq = c0[z, j], c1[z, j], cw0[z, j], cw1[z, j]
                for ch in range(x.shape[2]):
                    t = np.float64(x[a, p, ch]) * wa * wp
                    t += np.float64(x[a, q, ch]) * wa * wq
                    t += np.float64(x[b, p, ch]) * wb * wp
                    t += np.float64(x[b, q, ch]) * wb * wq
                    out[i, j, ch] += np.float32(t)
    return out


def zoom_blur(image: np.ndarray, severity: int) -> np.ndarray:
    """imagecorruptions' zoom_blur(image, severity) for a uint8 HxWx3 image (float32 0..255)."""
    x = (image / 255.0).astype(np.float32)
    out = np.zeros_like(x)
    rows = _axis_weights(x.shape[0], severity)
    cols = _axis_weights(x.shape[1], severity)
    _sum_zoom_layers(x, *rows, *cols, out)
    x = (x + out) / (len(ZOOM_BLUR[severity - 1]) + 1)
    return np.clip(x, 0, 1) * 255
