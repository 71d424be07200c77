"""What each term of the update does: the size of every term relative to the error, per encoder
and timestep, averaged over the images of a run (issue 22, item 1).

The engine's ``pnet.steps(x, T, terms=True)`` gives, at every step t >= 1, ``step.terms``: a
float tensor [encoders, 4, batch] of ||term|| / ||e_n(t)|| per image, the terms in TERMS order
(beta * feedforward, lambda * feedback, the memory share, alpha * error gradient); t = 0 has
none. ``TermSizes`` sums them over batches (and processes), ``rows`` makes the run's terms.csv
(one row per encoder x term x timestep: ``term_ratio`` = the mean over images), and
``summary_rows`` / ``figure`` the summary.csv numbers and terms.png. A reader sees at a glance
whether alpha * g moves anything: its ratio is printed beside the 1 % line.

Wiring (one call in the step loop): for every batch, ``sizes.add_steps(pnet.steps(x, T,
terms=True))`` instead of running the steps without terms, then ``sizes.reduce()`` once.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from pcnets.reporting.figures import Curve, Panel, save_panels
from pcnets.reporting.tables import summary_row

TERMS = ("ff", "feedback", "memory", "error")
TERM_NAMES = {
    "ff": "beta * feedforward",
    "feedback": "lambda * feedback",
    "memory": "memory share",
    "error": "alpha * error gradient",
}
TERMS_FILE = "terms.csv"
ACTS = 0.01  # a term above 1 % of ||e_n|| is taken to move the state


class TermSizes:
    """Running sums of per-image term ratios: sums [encoders, 4, timesteps + 1], images per t."""

    def __init__(self, encoders: int, timesteps: int):
        self.sums = np.zeros((encoders, len(TERMS), timesteps + 1))
        self.images = np.zeros(timesteps + 1, dtype=np.int64)

    def add(self, t: int, terms) -> None:
        """One step's ``terms`` [encoders, 4, batch] (a tensor or array) at timestep t >= 1."""
        values = np.asarray(terms.detach().cpu() if hasattr(terms, "detach") else terms, float)
        if values.ndim != 3 or values.shape[:2] != self.sums.shape[:2]:
            raise ValueError(
                f"step terms must be [{self.sums.shape[0]}, {len(TERMS)}, batch], "
                f"got {list(values.shape)}"
            )
        if not np.isfinite(values).all():
            raise ValueError(f"non-finite term ratio at timestep {t}")
        self.sums[:, :, t] += values.sum(axis=2)
        self.images[t] += values.shape[2]

    def add_steps(self, steps: Iterable) -> list:
        """Add the terms of every step that has them (t = 0 has none); returns the steps."""
        kept = []
        for t, step in enumerate(steps):
            if getattr(step, "terms", None) is not None:
                self.add(t, step.terms)
            kept.append(step)
        return kept

    def reduce(self) -> None:
        """Sum over processes (torchrun): every process then holds the totals."""
        from pcnets.runtime.distributed import all_reduce_sum

        self.sums = all_reduce_sum(self.sums)
        self.images = all_reduce_sum(self.images)

    def mean(self) -> np.ndarray:
        """Mean ratio over images [encoders, 4, timesteps + 1]; NaN where no image was added."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.images > 0, self.sums / np.maximum(self.images, 1), np.nan)

    def rows(self, encoders: list[str], **fields) -> list[dict]:
        """terms.csv rows: one per encoder x term x timestep >= 1, term_ratio = mean over images."""
        mean = self.mean()
        return [
            {
                **fields,
                "encoder": i + 1,
                "layer": name,
                "term": term,
                "timestep": t,
                "term_ratio": float(mean[i, k, t]),
                "images": int(self.images[t]),
            }
            for i, name in enumerate(encoders)
            for k, term in enumerate(TERMS)
            for t in range(1, mean.shape[2])
        ]


def summary_rows(terms: pd.DataFrame) -> list[dict]:
    """summary.csv numbers of terms.csv rows (of one condition): per encoder and term, the mean
    ratio at the last timestep and the largest over timesteps (metrics term_ratio and
    term_ratio_max, condition = the term)."""
    out = []
    last = terms["timestep"].max()
    for (encoder, term), part in terms.groupby(["encoder", "term"], sort=False):
        n = int(part["images"].iloc[0])
        at_last = part[part["timestep"] == last]["term_ratio"].iloc[0]
        where = {"condition": term, "encoder": int(encoder), "n": n}
        out.append(summary_row("term_ratio", at_last, "ratio", timestep=int(last), **where))
        out.append(summary_row("term_ratio_max", part["term_ratio"].max(), "ratio", **where))
    return out


def acts_text(terms: pd.DataFrame) -> str:
    """One line: is alpha * g ever more than 1 % of ||e_n||, and where."""
    error = terms[terms["term"] == "error"]
    if error.empty:
        return "no error-term sizes recorded"
    top = error.loc[error["term_ratio"].idxmax()]
    word = "more" if top["term_ratio"] > ACTS else "never more"
    return (
        f"alpha * g is {word} than {ACTS:.0%} of ||e_n||: at most {top['term_ratio']:.2g} "
        f"(encoder {int(top['encoder'])}, t={int(top['timestep'])})"
    )


def figure(target: Path, terms: pd.DataFrame, title: str) -> Path:
    """terms.png: one panel per encoder, log10 of each term's mean ratio over timesteps, with
    the 1 % line."""
    panels = []
    for encoder, part in terms.groupby("encoder"):
        curves = []
        for term in TERMS:
            rows = part[part["term"] == term].sort_values("timestep")
            if rows.empty:
                continue
            with np.errstate(divide="ignore"):
                y = np.log10(rows["term_ratio"].to_numpy())
            curves.append(Curve(TERM_NAMES[term], y, x=rows["timestep"].to_numpy()))
        layer = part["layer"].iloc[0]
        panels.append(
            Panel(
                f"encoder {int(encoder)} ({layer})",
                curves,
                ylabel="log10(||term|| / ||e_n||), mean over images",
                reference=float(np.log10(ACTS)),
                reference_label="1 % of ||e_n||",
            )
        )
    return save_panels(target, panels, title, note=acts_text(terms))
