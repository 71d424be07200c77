"""The 19 ImageNet-C corruptions (METHOD.md section 7.2), reproducible per image and cell.

Built on the maintained `imagecorruptions` fork (imagecorruptions-imaug), which runs on current
numpy and scikit-image. What pcnets adds: a seed per call that never disturbs numpy's global
random state, seeds for the two corruptions the library would otherwise draw from fresh entropy
(glass_blur, impulse_noise), faster byte-identical versions of the five slowest (FAST), and
one-line errors.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image

from pcnets.errors import PcnetsError, suggest

BENCHMARK = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
NAMES = BENCHMARK + EXTRA
GROUPS = {"all": NAMES, "benchmark": BENCHMARK, "extra": EXTRA}
SEVERITIES = (1, 2, 3, 4, 5)
MIN_SIZE = 32  # imagecorruptions' own minimum height and width

# Corruptions with a faster byte-identical version (corrupt(fast=True), the default).
FAST = ("glass_blur", "zoom_blur", "elastic_transform", "brightness", "saturate")
_SEEDED_BY_ARGUMENT = ("glass_blur", "impulse_noise")  # they ignore numpy's global generator
_GLOBAL_RNG_LOCK = threading.Lock()


def check_name(name: str) -> str:
    """The name itself if it is one of the 19 corruptions, else a PcnetsError listing them."""
    if name not in NAMES:
        raise PcnetsError(
            f"unknown corruption {name!r}{suggest(str(name), NAMES)}; valid: {', '.join(NAMES)}"
        )
    return name


def check_severity(severity: int) -> int:
    """The severity as an int if it is 1..5, else a PcnetsError."""
    if isinstance(severity, bool) or not isinstance(severity, int | np.integer):
        raise PcnetsError(f"severity must be a whole number 1..5, got {severity!r}")
    if int(severity) not in SEVERITIES:
        raise PcnetsError(f"severity must be one of 1, 2, 3, 4, 5, got {severity}")
    return int(severity)


def resolve_names(names: str | Iterable[str] | None) -> tuple[str, ...]:
    """Corruption names from None (all 19), a group ('all', 'benchmark', 'extra'), a
    comma-separated string or a list; checked, duplicates dropped, order kept."""
    if names is None:
        return NAMES
    items = names.split(",") if isinstance(names, str) else list(names)
    chosen: list[str] = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        for name in GROUPS.get(item, (item,)):
            if check_name(name) not in chosen:
                chosen.append(name)
    if not chosen:
        raise PcnetsError("no corruption names given; use e.g. 'fog,snow', 'benchmark' or 'all'")
    return tuple(chosen)


def resolve_severities(severities: str | int | Iterable[int] | None) -> tuple[int, ...]:
    """Severities from None (1..5), an int, a comma-separated string or a list; checked, sorted."""
    if severities is None:
        return SEVERITIES
    if isinstance(severities, str):
        try:
            severities = [int(s) for s in severities.split(",") if s.strip()]
        except ValueError:
            raise PcnetsError(
                f"severities must be numbers 1..5 like '1,3,5', got {severities!r}"
            ) from None
    elif isinstance(severities, int | np.integer):
        severities = [severities]
    chosen = sorted({check_severity(s) for s in severities})
    if not chosen:
        raise PcnetsError("no severities given; use some of 1, 2, 3, 4, 5")
    return tuple(chosen)


def cell_seed(base_seed: int, image_key: str, name: str, severity: int) -> int:
    """A stable 32-bit seed for one image x corruption x severity (sha256, so the same on every
    machine and Python run, unlike hash())."""
    text = f"{int(base_seed)}|{image_key}|{name}|{int(severity)}"
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "little")


def corrupt(
    image: np.ndarray, name: str, severity: int, seed: int | None = None, fast: bool = True
) -> np.ndarray:
    """The image (uint8 HxWx3, at least 32x32) with one corruption at one severity, as uint8 of the
    same shape. The same seed gives the same bytes; seed=None draws a fresh one. fast=False runs
    the library's own versions of the FAST corruptions (same output, slower)."""
    image = _check_image(image)
    name, severity = check_name(name), check_severity(severity)
    seed = secrets.randbits(32) if seed is None else int(seed) % 2**32
    with _global_numpy_seed(seed):
        result = _apply(image, name, severity, seed, fast)
    return np.uint8(result)


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = getattr(image, "dtype", type(image).__name__)
        raise PcnetsError(f"corrupt() takes a uint8 HxWx3 numpy array, got {kind}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise PcnetsError(f"corrupt() takes an HxWx3 (RGB) image, got shape {image.shape}")
    height, width = image.shape[:2]
    if height < MIN_SIZE or width < MIN_SIZE:
        raise PcnetsError(
            f"image is {height}x{width} pixels; corruptions need at least {MIN_SIZE}x{MIN_SIZE}"
        )
    return np.ascontiguousarray(image)


@contextmanager
def _global_numpy_seed(seed: int) -> Iterator[None]:
    """Seed numpy's global generator (the library draws from it) and restore its state after,
    so callers' random streams are untouched; the lock keeps threads from interleaving."""
    with _GLOBAL_RNG_LOCK:
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


def _apply(image: np.ndarray, name: str, severity: int, seed: int, fast: bool):
    if fast and name in FAST:
        from pcnets.data import _fast_blur, _fast_color, _fast_elastic

        if name == "glass_blur":
            return _fast_blur.glass_blur(image, severity, seed)
        if name == "zoom_blur":
            return _fast_blur.zoom_blur(image, severity)
        if name == "elastic_transform":
            return _fast_elastic.elastic_transform(image, severity)  # draws from the seeded stream
        return getattr(_fast_color, name)(image, severity)  # brightness, saturate
    from imagecorruptions import corruption_dict

    function = corruption_dict[name]
    if name in _SEEDED_BY_ARGUMENT:
        return function(Image.fromarray(image), severity, seed=seed)
    return function(Image.fromarray(image), severity)
