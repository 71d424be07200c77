"""User-facing errors: one clear line (what is wrong, what to do), never a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PcnetsError(Exception):
    """An error caused by the user's input; the CLI prints its message alone and exits non-zero."""


def suggest(name: str, options: Iterable[str], n: int = 3) -> str:
    """A ' (did you mean: a, b?)' hint naming the closest options, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(options), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""
