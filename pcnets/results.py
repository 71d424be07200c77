"""``pcnets.results.load(paths, summary=False)``: one tidy DataFrame across run folders (the
implementation is pcnets.reporting.results; this public name only re-exports it)."""

from pcnets.reporting.results import export, load

__all__ = ["export", "load"]
