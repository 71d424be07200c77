"""The run folders a report reads: finding them under the paths given, and reading and checking
one (provenance.json, config.yaml and metrics.csv required; table.md, *.png and hyper.json taken
when present). A broken folder is a one-line PcnetsError naming the folder and the file.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from pcnets.errors import PcnetsError

REQUIRED = ("provenance.json", "config.yaml", "metrics.csv")
MARKERS = (*REQUIRED, "cells.jsonl")
COUNT_COLUMNS = {"timestep", "correct", "total", "success", "images"}


@dataclass
class RunFolder:
    """One run folder as read from disk."""

    path: Path
    provenance: dict
    config: DictConfig
    metrics: pd.DataFrame
    table: str | None = None
    figures: list[Path] = field(default_factory=list)
    hyper: dict | None = None

    @property
    def command(self) -> str:
        return str(self.provenance["command"])

    @property
    def status(self) -> str:
        return str(self.provenance.get("status", "unknown"))

    @property
    def backbone(self) -> str:
        return str(OmegaConf.select(self.config, "backbone.name", default="?"))

    @property
    def name(self) -> str:
        """The folder's name (the config hash by default), with its sweep's for a job of a -m
        sweep (alpha/2): job numbers alone repeat across sweeps."""
        if (self.path.parent / "multirun.yaml").is_file():
            return f"{self.path.parent.name}/{self.path.name}"
        return self.path.name

    @property
    def label(self) -> str:
        """Backbone, name (folder, or sweep/job), and whether tuned hyperparameters were used:
        tells runs apart in the summary tables."""
        h = self.name
        tuned = " (tuned)" if OmegaConf.select(self.config, "pc.hyper", default=None) else ""
        return f"{self.backbone} {h}{tuned}"


def _is_run_folder(path: Path) -> bool:
    return any((path / m).exists() for m in MARKERS)


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run folders among ``paths``: each is a run folder itself, or a root scanned for them (a run
    folder is any folder holding provenance.json, config.yaml, metrics.csv or cells.jsonl)."""
    found: list[Path] = []
    for given in paths:
        root = Path(given)
        if root.is_file():
            raise PcnetsError(
                f"{root} is a file; give run folders or a results root (the folder holding them)"
            )
        if not root.is_dir():
            raise PcnetsError(f"{root}: no such folder; give run folders or a results root")
        if _is_run_folder(root):
            found.append(root)
            continue
        inside = []
        for dirpath, dirnames, _ in os.walk(root):
            here = Path(dirpath)
            if here != root and _is_run_folder(here):
                inside.append(here)
                dirnames.clear()
            else:
                dirnames.sort()
        if not inside:
            raise PcnetsError(f"{root}: no run folders in it (none holds provenance.json)")
        found += inside
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)
    return list(unique.values())


def _corrupt(path: Path, what: str) -> PcnetsError:
    return PcnetsError(
        f"corrupt run folder {path}: {what}; rerun the command that made it, or leave it out"
    )


def load_run(path: str | Path) -> RunFolder:
    """Read and check one run folder: provenance.json (with "command"), config.yaml and
    metrics.csv must exist and parse; table.md, *.png and hyper.json are taken when present."""
    path = Path(path)
    for name in REQUIRED:
        if not (path / name).is_file():
            raise _corrupt(path, f"{name} is missing")
    try:
        prov = json.loads((path / "provenance.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _corrupt(path, f"provenance.json is not valid JSON ({exc})") from None
    if not isinstance(prov, dict) or not isinstance(prov.get("command"), str):
        raise _corrupt(path, 'provenance.json has no "command"')
    try:
        cfg = OmegaConf.load(path / "config.yaml")
    except Exception as exc:  # noqa: BLE001 - YAML and OmegaConf raise many types
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _corrupt(path, f"config.yaml is not valid YAML ({first})") from None
    if not isinstance(cfg, DictConfig):
        raise _corrupt(path, "config.yaml is not a mapping")
    try:
        metrics = pd.read_csv(path / "metrics.csv")
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise _corrupt(path, f"metrics.csv cannot be read ({str(exc).splitlines()[0]})") from None
    _check_metrics(path, metrics)
    table = (path / "table.md").read_text() if (path / "table.md").is_file() else None
    hyper = None
    if (path / "hyper.json").is_file():
        try:
            hyper = json.loads((path / "hyper.json").read_text())
        except json.JSONDecodeError as exc:
            raise _corrupt(path, f"hyper.json is not valid JSON ({exc})") from None
    figures = sorted(path.glob("*.png"))
    return RunFolder(path, prov, cfg, metrics, table, figures, hyper)


def _check_metrics(path: Path, metrics: pd.DataFrame) -> None:
    """metrics.csv must hold rows of numbers where counts are expected: a garbled file is refused
    here, before its table.md is reported."""
    if metrics.empty or any(str(c).startswith("Unnamed") for c in metrics.columns):
        raise _corrupt(path, "metrics.csv has no rows or unnamed columns")
    for col in COUNT_COLUMNS.intersection(metrics.columns):
        values = pd.to_numeric(metrics[col], errors="coerce")
        given = metrics[col].notna()  # other kinds of row (tune's) leave it empty
        if (given & values.isna()).any() or np.isinf(values).any() or (values < 0).any():
            raise _corrupt(path, f"metrics.csv column {col!r} holds non-numbers or negatives")
    if {"correct", "total"} <= set(metrics.columns):
        if (metrics["correct"] > metrics["total"]).any():
            raise _corrupt(path, "metrics.csv counts more correct images than images")


def load_runs(paths: Iterable[str | Path], strict: bool = False) -> list[RunFolder]:
    """The readable run folders under ``paths``; a broken one is skipped with a one-line warning
    on stderr, or stops the report when ``strict``."""
    runs = []
    for path in find_runs(paths):
        try:
            runs.append(load_run(path))
        except PcnetsError as err:
            if strict:
                raise
            print(f"warning: skipped {err} (--strict stops instead)", file=sys.stderr)
    if not runs:
        raise PcnetsError("no readable run folder to report; the warnings above say why")
    return runs
