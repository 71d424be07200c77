"""Term sizes in a run folder (issue 22, item 1). Each finished cell's terms.csv rows are written
with the cell as <run>/terms/<cell>.csv, before the cell is marked done, so a resumed run keeps
them and a rerun cell replaces them; terms.csv, terms.png, their summary.csv rows and one line of
table.md are rendered from those files alone (``render_terms``).

Recording is on unless the command's config says ``eval.terms: false`` (``manifold.terms`` for
`pcnets manifold`): it costs four norms per encoder and timestep on values the step has already.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from pcnets.reporting.terms import TERMS_FILE, TermSizes, acts_text, figure, summary_rows
from pcnets.runtime.files import atomic_write

TERMS_DIR = "terms"  # one terms.csv part per finished cell: <run>/terms/<cell>.csv
KEYS = ["encoder", "layer", "term", "timestep"]


def records_terms(cfg: DictConfig, group: str = "eval") -> bool:
    """Whether the command records term sizes: ``<group>.terms`` (default true)."""
    return bool(OmegaConf.select(cfg, f"{group}.terms", default=True))


def new_sizes(pnet, timesteps: int) -> TermSizes:
    """Empty running sums for ``pnet``'s encoders at timesteps 0..``timesteps``."""
    return TermSizes(pnet.num_encoders, timesteps)


def save_cell_terms(run_path: Path, cell_file: str, sizes: TermSizes, names, fields) -> Path:
    """Write one cell's rows (TermSizes.rows with the cell's ``fields``) to terms/<cell>.csv;
    a run of 0 timesteps has none and writes nothing."""
    name = Path(cell_file).name
    stem = name.removesuffix(".npz")  # a cell's images file, or a bare name like sigma=0.25
    target = Path(run_path) / TERMS_DIR / f"{stem}.csv"
    rows = sizes.rows(list(names), **fields)
    if not rows:  # no timestep after t = 0 (T = 0): no update, so no terms, and no file
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(target, pd.DataFrame(rows).to_csv(index=False))


def load_terms(path: Path) -> pd.DataFrame | None:
    """Every cell's rows of a run folder (in file-name order), or None when none were recorded."""
    files = [f for f in sorted((Path(path) / TERMS_DIR).glob("*.csv")) if f.stat().st_size]
    if not files:
        return None
    return pd.concat([pd.read_csv(f, dtype={"layer": str}) for f in files], ignore_index=True)


def pooled(terms: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The rows of ``terms`` pooled over every column but ``by`` and KEYS: the ratio weighted by
    the images of each part (their mean over all images)."""
    keys = [*by, *KEYS]
    weighted = terms.assign(total=terms["term_ratio"] * terms["images"])
    sums = weighted.groupby(keys, sort=False)[["total", "images"]].sum().reset_index()
    sums["term_ratio"] = sums["total"] / sums["images"]
    return sums.drop(columns="total")


def render_terms(
    path: Path, title: str, by: list[str], terms: pd.DataFrame | None = None
) -> tuple[list[dict], list[str]]:
    """terms.csv and terms.png of a run folder, from its terms/ files (or ``terms``), and
    (summary.csv rows per value of ``by``, e.g. sigma, with those columns set; table.md lines);
    terms.csv is sorted by ``by``.
    Nothing when no sizes were recorded."""
    path = Path(path)
    terms = load_terms(path) if terms is None else terms
    if terms is None or terms.empty:
        return [], []
    terms = terms.sort_values(by, kind="stable", ignore_index=True)
    atomic_write(path / TERMS_FILE, terms.to_csv(index=False))
    rows = []
    for key, part in pooled(terms, by).groupby(by, sort=False):
        where = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        rows += [{**row, **where} for row in summary_rows(part)]
    overall = pooled(terms, [])
    conditions = len(terms.drop_duplicates(by))
    figure(path / "terms.png", overall, f"{title}: update terms, {conditions} conditions pooled")
    line = (
        f"Term sizes ||term|| / ||e_n(t)||, mean over images: {acts_text(terms)}. "
        "Per condition: terms.csv; figure: terms.png"
    )
    return rows, [line, ""]
