"""The figures of an eval-corruptions run: mCE per timestep (mce.png) and the accuracy of every
corruption and severity per timestep (corruptions.png)."""

from __future__ import annotations

from pathlib import Path

from pcnets.reporting.figures import Curve, Panel, save_grid, save_panels


def mce_figure(target, cfg, stats: dict, alexnet, n: int, pct: str, severities) -> Path:
    """mce.png: relative mCE per timestep (one curve per group), and the AlexNet-normalised mCE."""
    curves = [Curve(label, s["value"], s["low"], s["high"]) for label, s in stats.items()]
    panels = [
        Panel(
            "mCE relative to timestep 0",
            curves,
            ylabel="mean of CE(t) / CE(0)  (lower = more robust)",
            reference=1.0,
            reference_label="feedforward (t=0)",
        )
    ]
    if alexnet is not None:
        panels.append(
            Panel(
                "Standard mCE (AlexNet-normalised)",
                [Curve("standard corruptions", alexnet["value"], alexnet["low"], alexnet["high"])],
                ylabel="mCE vs AlexNet (%)  (lower = more robust)",
            )
        )
    return save_panels(
        target,
        panels,
        f"{cfg.backbone.name} on ImageNet-C: mCE per timestep ({n} images, severities "
        f"{', '.join(map(str, severities))})",
        note=f"Bands: {pct} bootstrap intervals over images (a band at the top edge is unbounded). "
        "t=0 is the feedforward network; t>0 adds predictive-coding feedback.",
    )


def grid_figure(target, cfg, names, severities, accuracy, relative, n: int) -> Path:
    """corruptions.png: one panel per corruption, one curve per severity (top-1 per timestep)."""
    panels = [
        Panel(
            f"{name} (CE ratio t={accuracy.shape[-1] - 1}: {relative[i, -1]:.3f})",
            [
                Curve(f"severity {s}", accuracy[i, j], style={"color": _severity_color(s)})
                for j, s in enumerate(severities)
            ],
            ylabel="top-1 accuracy (%)",
        )
        for i, name in enumerate(names)
    ]
    return save_grid(
        target,
        panels,
        f"{cfg.backbone.name}: top-1 accuracy per corruption and timestep ({n} images)",
        note="Title: CE at the last timestep / CE at t=0 (below 1 = feedback helps). "
        "t=0 is the feedforward network.",
    )


def _severity_color(severity: int) -> str:
    return {1: "#fdae61", 2: "#f46d43", 3: "#d73027", 4: "#a50026", 5: "#4d0013"}.get(
        int(severity), "C0"
    )
