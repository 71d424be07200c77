"""Unreadable images (truncated, empty, not an image at all): found before any work, then a
policy, data.on_bad_image: "stop" (default) refuses the run in one line that lists them, "skip"
leaves them out, and the run folder records which were skipped (provenance.json and table.md)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from pcnets.errors import PcnetsError

POLICIES = ("stop", "skip")
SHOWN = 5  # files named in the one-line error
_SKIPPED: dict[str, str] = {}  # path -> reason, for every image this process left out
_OK: set[tuple[str, int, int]] = set()  # (path, size, mtime) already decoded in this process


class UnreadableImage(PcnetsError):
    """An image that cannot be decoded. A DataLoader worker re-raises it with its traceback in
    the message; only the last line is kept, so the CLI still prints one line."""

    def __init__(self, message: str):
        if "Traceback" in message:
            message = message.strip().splitlines()[-1].split(": ", 1)[-1]
        super().__init__(message)


def open_rgb(path: str | Path) -> Image.Image:
    """The image at ``path`` as 8-bit RGB (to_rgb), or UnreadableImage naming the file and what
    to do."""
    try:
        with Image.open(path) as img:
            return to_rgb(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(
            f"unreadable image {path} ({_reason(exc)}): list all with `pcnets data check --deep`, "
            "then remove them or set data.on_bad_image=skip"
        ) from None


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB. PIL's own conversion clips 16- and 32-bit images to white (a 16-bit
    grayscale PNG) or black (floats): 16-bit values (modes I;16*, and I within 0..65535) are
    scaled by 255/65535, floats within [0, 1] by 255; other ranges are a ValueError, since their
    scale is unknown. Palette, LA, RGBA, CMYK, 1 and L convert as in torchvision's loader."""
    if img.mode.startswith("I") or img.mode == "F":
        pixels = np.asarray(img, dtype=np.float64)
        low, high = (float(pixels.min()), float(pixels.max())) if pixels.size else (0.0, 0.0)
        if img.mode == "F" and 0 <= low and high <= 1:
            scale = 255.0
        elif img.mode != "F" and 0 <= low and high <= 65535:
            scale = 255.0 / 65535.0
        else:
            raise ValueError(
                f"{img.mode} image with values in [{low:g}, {high:g}] has no known scale; "
                "convert it to 8-bit RGB"
            )
        gray = Image.fromarray(np.rint(pixels * scale).astype(np.uint8), mode="L")
        return gray.convert("RGB")
    return img.convert("RGB")


def _reason(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _problem(path: Path) -> str | None:
    """Why ``path`` cannot be decoded (None when it can). JPEGs decode at 1/8 size: every byte is
    still read, so a truncated file is found, at a fraction of the cost."""
    try:
        st = path.stat()
        stamp = (str(path), st.st_size, int(st.st_mtime_ns))
        if stamp in _OK:
            return None
        if st.st_size == 0:
            return "empty file"
        with Image.open(path) as img:
            img.draft("RGB", (img.width // 8 or 1, img.height // 8 or 1))
            img.load()
        _OK.add(stamp)
        return None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return _reason(exc)


def find_unreadable(paths: Sequence[Path]) -> list[tuple[Path, str]]:
    """(path, reason) of every image in ``paths`` that cannot be decoded, in order."""
    workers = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        problems = list(pool.map(_problem, paths))
    return [(p, why) for p, why in zip(paths, problems, strict=True) if why is not None]


def apply_policy(root: Path, keys: Sequence[str], policy: str) -> set[str]:
    """The keys (paths under ``root``) to leave out under data.on_bad_image=``policy``; "stop"
    raises one line listing the unreadable files instead."""
    if policy not in POLICIES:
        raise PcnetsError(f"data.on_bad_image must be one of {POLICIES}, got {policy!r}")
    bad = find_unreadable([root / k for k in keys])
    if not bad:
        return set()
    if policy == "stop":
        raise PcnetsError(f"{describe(bad)}: remove them, or set data.on_bad_image=skip")
    _SKIPPED.update({str(p): why for p, why in bad})
    return {str(p.relative_to(root)) for p, _ in bad}


def describe(bad: Sequence[tuple[Path, str]]) -> str:
    """'N unreadable image(s): a (reason), b (reason), ... (+K more)'."""
    shown = ", ".join(f"{p} ({why})" for p, why in bad[:SHOWN])
    more = f" (+{len(bad) - SHOWN} more)" if len(bad) > SHOWN else ""
    return f"{len(bad)} unreadable image(s): {shown}{more}"


def skipped_images() -> dict[str, str]:
    """{path: reason} of the images this process skipped under data.on_bad_image=skip."""
    return dict(_SKIPPED)


def skipped_note() -> str:
    """The line table.md gets when images were skipped ('' when none were)."""
    if not _SKIPPED:
        return ""
    return (
        f"\n{len(_SKIPPED)} unreadable image(s) were skipped (data.on_bad_image=skip); "
        "provenance.json lists them.\n"
    )
