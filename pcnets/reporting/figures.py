"""Small matplotlib helpers shared by the commands: curves over timesteps with interval bands,
and grids of small panels, saved atomically as PNG files readable without the text.

    curve = Curve("sigma 0.5", accuracy, low, high)      # y per timestep, optional band
    save_panels(path, [Panel("Accuracy", [curve], ylabel="top-1 accuracy (%)")], "Title")
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, safe in DataLoader workers and on servers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from pcnets.runtime.files import atomic_write

DPI = 130


@dataclass
class Curve:
    """One line: y over x (default x = 0, 1, 2, ... = timesteps), optional band low..high."""

    label: str
    y: Sequence[float]
    low: Sequence[float] | None = None
    high: Sequence[float] | None = None
    x: Sequence[float] | None = None
    style: dict = field(default_factory=dict)

    def xs(self) -> np.ndarray:
        return np.arange(len(self.y)) if self.x is None else np.asarray(self.x, dtype=float)


@dataclass
class Panel:
    """One axes: title, curves, axis labels (with units), an optional horizontal reference."""

    title: str
    curves: Sequence[Curve]
    xlabel: str = "timestep t"
    ylabel: str = ""
    reference: float | None = None
    reference_label: str | None = None
    legend: bool = True
    integer_x: bool = True


def draw_panel(ax, panel: Panel) -> None:
    """Draw a Panel on a matplotlib axes: lines with markers, shaded bands (an infinite bound is
    drawn to just past the largest finite value of the panel), reference line."""
    top, bottom = _finite_range(panel)
    for i, curve in enumerate(panel.curves):
        color = curve.style.get("color", f"C{i % 10}")
        style = {"marker": "o", "markersize": 3, "linewidth": 1.6, "color": color, **curve.style}
        x = curve.xs()
        ax.plot(x, np.asarray(curve.y, dtype=float), label=curve.label, **style)
        if curve.low is not None and curve.high is not None:
            ax.fill_between(
                x,
                np.clip(np.asarray(curve.low, dtype=float), bottom, top),
                np.clip(np.asarray(curve.high, dtype=float), bottom, top),
                color=color,
                alpha=0.18,
                linewidth=0,
            )
    if panel.reference is not None:
        ax.axhline(
            panel.reference,
            color="0.35",
            linestyle="--",
            linewidth=1,
            label=panel.reference_label,
        )
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)
    if panel.integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if panel.legend and any(c.label for c in panel.curves):
        ax.legend(fontsize=8, frameon=False)


def _finite_range(panel: Panel) -> tuple[float, float]:
    """(top, bottom) to which infinite band bounds are clipped: the finite values' range + 5%."""
    values = [
        np.asarray(v, dtype=float)
        for c in panel.curves
        for v in (c.y, c.low, c.high)
        if v is not None
    ]
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.array([])
    if finite.size == 0:
        return 1.0, 0.0
    margin = 0.05 * max(float(finite.max() - finite.min()), 1e-9)
    return float(finite.max() + margin), float(finite.min() - margin)


def save_panels(
    path: str | Path,
    panels: Sequence[Panel],
    title: str,
    ncols: int | None = None,
    panel_size: tuple[float, float] = (5.0, 3.6),
    sharey: bool = False,
    note: str | None = None,
) -> Path:
    """One figure of panels in a grid (ncols default: up to 2), a suptitle and an optional
    footnote (e.g. what the bands are); saved as PNG atomically. Returns the path."""
    ncols = ncols or min(2, len(panels))
    fig, axes = _grid(len(panels), ncols, panel_size, sharey, note)
    for ax, panel in zip(axes.flat, panels, strict=False):
        draw_panel(ax, panel)
    fig.suptitle(title, fontsize=12)
    return save_figure(fig, path)


def save_grid(
    path: str | Path,
    panels: Sequence[Panel],
    title: str,
    ncols: int = 5,
    panel_size: tuple[float, float] = (3.0, 2.4),
    sharey: bool = True,
    note: str | None = None,
) -> Path:
    """Many small panels (e.g. one per corruption); the legend only in the first, axis labels
    only on the left column and the bottom row."""
    ncols = max(1, min(ncols, len(panels)))
    fig, axes = _grid(len(panels), ncols, panel_size, sharey, note)
    nrows = axes.shape[0]
    for k, (ax, panel) in enumerate(zip(axes.flat, panels, strict=False)):
        draw_panel(ax, Panel(**{**panel.__dict__, "legend": k == 0}))
        row, col = divmod(k, ncols)
        if col > 0 and sharey:
            ax.set_ylabel("")
        if row < nrows - 1 and k + ncols < len(panels):
            ax.set_xlabel("")
    fig.suptitle(title, fontsize=12)
    return save_figure(fig, path)


def _grid(count: int, ncols: int, panel_size, sharey: bool, note: str | None):
    """A constrained-layout figure with count axes (extra cells hidden) and the note below."""
    nrows = math.ceil(count / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(panel_size[0] * ncols, panel_size[1] * nrows + 0.9),
        squeeze=False,
        sharey=sharey,
        layout="constrained",
    )
    for ax in list(axes.flat)[count:]:
        ax.set_visible(False)
    if note:
        fig.supxlabel(note, fontsize=8, color="0.3")
    return fig, axes


def save_figure(fig, path: str | Path) -> Path:
    """Save a figure as PNG under a temporary name, rename it into place, and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=DPI, format="png")
    plt.close(fig)
    return atomic_write(path, buffer.getvalue())
