"""Fast brightness and saturate whose outputs are byte-identical to imagecorruptions' own.

Both corruptions convert the whole image to HSV and back with scikit-image (rgb2hsv, hsv2rgb),
which builds about twenty full-size temporary arrays, boolean-mask gathers and an np.choose over
six stacked candidates. Here one compiled pass per pixel does the same double-precision
operations in the same order (the same hue case priority, Python-style float modulo, the same
clipping), so every float, and therefore every byte, is equal.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Per severity, as imagecorruptions.corruptions.brightness (added to V) and saturate (S*a + b).
BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)
SATURATE = ((0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2))


@njit(cache=True)
def _hsv_adjust(image, s_scale, s_shift, v_shift, out):
    """out = clip(hsv2rgb(adjusted rgb2hsv(image / 255.)), 0, 1) * 255, where S becomes
    clip(S * s_scale + s_shift, 0, 1) and V becomes clip(V + v_shift, 0, 1), as scikit-image."""
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            r = image[i, j, 0] / 255.0
            g = image[i, j, 1] / 255.0
            b = image[i, j, 2] / 255.0
            v = max(r, g, b)
            delta = v - min(r, g, b)
            h, s = 0.0, 0.0
            if delta != 0.0:
                s = delta / v
                if b == v:  # scikit-image assigns red, green, blue in turn: blue wins ties
                    h = 4.0 + (r - g) / delta
                elif g == v:
                    h = 2.0 + (b - r) / delta
                else:
                    h = (g - b) / delta
                h = h / 6.0  # in [-1/6, 5/6]: numpy's `% 1.0` only adds 1 to negatives
                if h < 0.0:
                    h += 1.0
                elif h == 0.0:
                    h = 0.0
            s = min(max(s * s_scale + s_shift, 0.0), 1.0)
            v = min(max(v + v_shift, 0.0), 1.0)
            sector = math.floor(h * 6)
            f = h * 6 - sector
            p = v * (1 - s)
            q = v * (1 - f * s)
            t = v * (1 - (1 - f) * s)
            k = int(sector) % 6
            if k == 0:
                r, g, b = v, t, p
            elif k == 1:
                r, g, b = q, v, p
            elif k == 2:
                r, g, b = p, v, t
            elif k == 3:
                r, g, b = p, q, v
            elif k == 4:
                r, g, b = t, p, v
            else:
                r, g, b = v, p, q
            out[i, j, 0] = min(max(r, 0.0), 1.0) * 255
            out[i, j, 1] = min(max(g, 0.0), 1.0) * 255
            out[i, j, 2] = min(max(b, 0.0), 1.0) * 255
    return out


def brightness(image: np.ndarray, severity: int) -> np.ndarray:
    """imagecorruptions' brightness(image, severity) of a uint8 HxWx3 image (float64 0..255)."""
    out = np.empty(image.shape, dtype=np.float64)
    return _hsv_adjust(image, 1.0, 0.0, BRIGHTNESS[severity - 1], out)


def saturate(image: np.ndarray, severity: int) -> np.ndarray:
    """imagecorruptions' saturate(image, severity) of a uint8 HxWx3 image (float64 0..255)."""
    scale, shift = SATURATE[severity - 1]
    out = np.empty(image.shape, dtype=np.float64)
    return _hsv_adjust(image, scale, shift, 0.0, out)
