"""The table, figure and summary.csv of a tune run folder, from its files alone (metrics.csv and
hyper.json): `render(path)` draws them again without a model."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pcnets.reporting.figures import Curve, Panel, save_panels
from pcnets.reporting.tables import markdown_table, summary_row, write_summary
from pcnets.reporting.term_files import render_terms
from pcnets.runtime.files import atomic_write


def render(path: str | Path) -> list[str]:
    """table.md, tune.png and summary.csv of a tune run folder; returns the lines a command
    prints: the tuned values and the objective at the start and the end."""
    path = Path(path)
    hyper = json.loads((path / "hyper.json").read_text())
    metrics = pd.read_csv(path / "metrics.csv")
    atomic_write(path / "table.md", tune_table(metrics, hyper))
    tune_figure(
        metrics,
        path / "tune.png",
        title=f"{hyper['backbone']}: {hyper['objective']} CE, noisy images",
    )
    title = f"{hyper['backbone']} tune, held-out images"
    term_rows, term_lines = render_terms(path, title, by=["condition", "sigma"])
    write_summary(path, summary_rows(hyper) + term_rows)
    if term_lines:
        atomic_write(path / "table.md", (path / "table.md").read_text() + "\n".join(term_lines))
    lines = [
        f"{key:6s} " + " ".join(f"{v:.4g}" for v in hyper[key]) for key in ("beta", "lam", "alpha")
    ]
    first, final = hyper["first_loss"], hyper["final_loss"]
    if first is not None and final is not None:
        lines.append(
            "objective (mean over the first / last quarter of the steps): "
            f"{first:.3f} -> {final:.3f}"
        )
    if heldout_text(hyper):
        lines.append(heldout_text(hyper).strip())
    return lines


def summary_rows(hyper: dict) -> list[dict]:
    """The initial and tuned beta, lambda, memory and alpha per encoder, and the objective over
    the first and the last quarter of the steps (overall and per sigma): table.md's numbers."""
    init, n, last = hyper["initial"], hyper["steps"], len(hyper["encoders"]) - 1
    rows = []
    for i, name in enumerate(hyper["encoders"]):
        lam0 = 0.0 if i == last else init["lam"][i]
        start = {"beta": init["beta"][i], "lam": lam0, "memory": 1 - init["beta"][i] - lam0}
        start["alpha"] = init["alpha"][i]
        for key, value in start.items():
            unit = "rate" if key == "alpha" else "share"
            where = {"condition": name, "encoder": i + 1, "n": n}
            rows.append(summary_row(f"initial_{key}", value, unit, **where))
            rows.append(summary_row(f"tuned_{key}", hyper[key][i], unit, **where))
    for key in ("first_loss", "final_loss"):
        if hyper.get(key) is not None:
            rows.append(summary_row(key, hyper[key], "nats", condition="all", n=n))
    for sigma, pair in hyper.get("loss_by_sigma", {}).items():
        for key, value in zip(("first_loss", "final_loss"), pair, strict=True):
            rows.append(summary_row(key, value, "nats", condition="sigma", sigma=float(sigma), n=n))
    return rows + heldout_rows(hyper.get("heldout"))


def heldout_rows(heldout: dict | None) -> list[dict]:
    """heldout_loss_<phase> (nats) and heldout_accuracy_<phase> (%) of the held-out images, the
    mean over sigmas (condition all) and per sigma."""
    if not heldout:
        return []
    rows, n = [], heldout["images"]
    for phase in ("initial", "tuned"):
        loss, acc = heldout["loss"][phase], 100 * heldout["accuracy"][phase]
        rows.append(summary_row(f"heldout_loss_{phase}", loss, "nats", condition="all", n=n))
        rows.append(summary_row(f"heldout_accuracy_{phase}", acc, "%", condition="all", n=n))
        for sigma, by_phase in heldout["by_sigma"].items():
            loss, acc = by_phase[phase]
            where = {"condition": "sigma", "sigma": float(sigma), "n": n}
            rows.append(summary_row(f"heldout_loss_{phase}", loss, "nats", **where))
            rows.append(summary_row(f"heldout_accuracy_{phase}", 100 * acc, "%", **where))
    return rows


def heldout_text(hyper: dict) -> str:
    """table.md's line on the held-out objective ('' when none was asked for)."""
    heldout, fraction = hyper.get("heldout"), hyper.get("heldout_fraction")
    if not heldout:
        if not fraction:
            return ""
        return (
            f"No image fell in the held-out share (tune.heldout_fraction={fraction}): the "
            "objective was not checked on held-out images.\n"
        )
    loss, acc = heldout["loss"], heldout["accuracy"]
    per_sigma = ", ".join(
        f"sigma {s}: {p['initial'][0]:.3f} -> {p['tuned'][0]:.3f}"
        for s, p in heldout["by_sigma"].items()
    )
    verdict = "fell" if loss["tuned"] < loss["initial"] else "did not fall"
    return (
        f"Objective on {heldout['images']} held-out images (never in a tuning batch), initial -> "
        f"tuned: {loss['initial']:.4f} -> {loss['tuned']:.4f} ({verdict}; {per_sigma}); "
        f"accuracy at T {100 * acc['initial']:.1f} -> {100 * acc['tuned']:.1f} %.\n"
    )


def tune_table(metrics: pd.DataFrame, hyper: dict) -> str:
    """table.md: initial and tuned values per encoder, and the objective at the start and end."""
    init = hyper["initial"]
    rows = []
    for i, name in enumerate(hyper["encoders"]):
        lam0 = 0.0 if i == len(hyper["encoders"]) - 1 else init["lam"][i]
        rows.append(
            {
                "encoder": f"{i + 1} ({name})",
                "beta": f"{init['beta'][i]:.3f} -> {hyper['beta'][i]:.3f}",
                "lambda": f"{lam0:.3f} -> {hyper['lam'][i]:.3f}",
                "memory": f"{1 - init['beta'][i] - lam0:.3f} -> {hyper['memory'][i]:.3f}",
                "alpha": f"{init['alpha'][i]:.4g} -> {hyper['alpha'][i]:.4g}",
            }
        )
    per_sigma = ", ".join(
        f"sigma {s}: {a:.3f} -> {b:.3f}" for s, (a, b) in hyper.get("loss_by_sigma", {}).items()
    )
    head = (
        f"Tuned hyperparameters of {hyper['backbone']} ({hyper['steps']} Adam steps, lr "
        f"{hyper['lr']}, batch {hyper['batch_size']}, objective: {hyper['objective']} CE over "
        f"T = {hyper['timesteps']} timesteps, sigma in {hyper['sigmas']}, normalised space).\n"
        f"Mean objective over the first / last quarter of the steps: "
        f"{_fmt(hyper['first_loss'])} -> {_fmt(hyper['final_loss'])} ({per_sigma}).\n"
        f"{heldout_text(hyper)}"
        "Values: initial -> tuned; the top encoder has no feedback (lambda fixed to 0).\n\n"
    )
    return head + markdown_table(pd.DataFrame(rows)) + "\n"


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def tune_figure(metrics: pd.DataFrame, path: Path, title: str = "") -> Path:
    """tune.png: the objective, and beta, lambda, alpha per encoder, over the training steps."""
    loss = metrics.dropna(subset=["loss"]).drop_duplicates("step").sort_values("step")
    window = max(1, len(loss) // 10)
    thin = {"marker": None, "linewidth": 0.8, "alpha": 0.5}
    loss_curves = [
        Curve("per step", loss["loss"], x=loss["step"], style=thin),
        Curve(
            f"running mean ({window} steps)",
            loss["loss"].rolling(window, min_periods=1).mean(),
            x=loss["step"],
            style={"marker": None},
        ),
    ]
    panels = [Panel("objective on noisy images", loss_curves, "step", "cross-entropy (nats)")]
    labels = {
        "beta": ("beta per encoder", "beta (feedforward share)"),
        "lam": ("lambda per encoder", "lambda (feedback share)"),
        "alpha": ("alpha per encoder", "alpha (error-correction rate)"),
    }
    for key, (name, ylabel) in labels.items():
        curves = [
            Curve(
                f"e{enc} {part['name'].iloc[0]}", part[key], x=part["step"], style={"marker": None}
            )
            for enc, part in metrics.sort_values("step").groupby("encoder")
        ]
        panels.append(Panel(name, curves, "step", ylabel, legend=key == "beta"))
    return save_panels(path, panels, title or "hyperparameter tuning", ncols=2)
