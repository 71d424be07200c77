"""One progress helper for every loop: a tqdm bar on a terminal; otherwise (a log file, a pipe, a
cluster job) one plain line every PCNETS_PROGRESS_SECONDS (30 s) with count, rate and ETA, with
no carriage returns or escape codes. `pcnets --quiet` (PCNETS_QUIET=1) silences it, and so does
tqdm's own TQDM_DISABLE=1.

A base module (not runtime/) because the data layer's loops (sample download, ImageNet-C) use it.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from typing import IO

from tqdm import tqdm

ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
LINE = (
    "{desc}: {n_fmt}/{total_fmt} ({percentage:.0f}%), {rate_fmt}, {elapsed} elapsed, "
    "ETA {remaining}{postfix}"
)
LINE_NO_TOTAL = "{desc}: {n_fmt}, {rate_fmt}, {elapsed} elapsed{postfix}"


def quiet() -> bool:
    """True when progress is switched off: `pcnets --quiet` (PCNETS_QUIET=1) or TQDM_DISABLE=1
    (read here at each call, as tqdm itself reads it only once, when imported)."""
    return any(
        os.environ.get(key, "").strip().lower() not in ("", "0", "false", "no")
        for key in ("PCNETS_QUIET", "TQDM_DISABLE")
    )


def interval() -> float:
    """Seconds between two plain progress lines when the output is not a terminal."""
    try:
        return max(0.0, float(os.environ.get("PCNETS_PROGRESS_SECONDS", "30")))
    except ValueError:
        return 30.0


class _Lines:
    """A file for tqdm that turns its redrawn status into whole lines (no \\r, no escapes)."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def write(self, text: str) -> None:
        line = ESCAPES.sub("", text).replace("\r", "").strip()
        if line:
            if self.stream is not sys.stdout:  # keep `2>&1` logs in time order
                sys.stdout.flush()
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress(
    iterable: Iterable | None = None, *, show: bool = True, file: IO[str] | None = None, **kwargs
) -> tqdm:
    """A tqdm over ``iterable`` (or a manual one: total=..., then update()); ``show=False`` (say,
    on a process other than rank 0) or --quiet turns it off. Other keywords go to tqdm.

    ``disable`` is only passed when off, so tqdm's other TQDM_* settings apply too.
    """
    stream = file if file is not None else sys.stderr
    if not show or quiet():
        kwargs["disable"] = True
    elif not stream.isatty():
        every = interval()
        total = kwargs.get("total", _length(iterable))
        kwargs.setdefault("bar_format", LINE if total else LINE_NO_TOTAL)
        kwargs.update(mininterval=every, maxinterval=max(every, 1.0), dynamic_ncols=False)
        stream = _Lines(stream)
    return tqdm(iterable, file=stream, **kwargs)


def _length(iterable: Iterable | None) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None
