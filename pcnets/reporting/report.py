"""One Markdown report of many run folders (DESIGN.md "Results"): paper-style summary tables, then
every run's table.md and figures with the command and the key config that made it.

Only files are read (provenance.json, config.yaml, metrics.csv, summary.csv, table.md, *.png,
hyper.json), so re-running the report after more runs finish updates it without rerunning
anything; the summary tables take their numbers from each run's summary.csv. A folder that looks
like a run folder but lacks or garbles one of the three required files is skipped with a one-line
warning naming the folder and the file (strict: it stops the report).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from pcnets.errors import PcnetsError
from pcnets.reporting import attack, corruptions, manifold, noise, tune
from pcnets.reporting.findings import findings
from pcnets.reporting.summaries import (
    corruption_summary,
    has_columns,
    manifold_summary,
    noise_summary,
    tune_summary,
)
from pcnets.reporting.tables import markdown_table
from pcnets.runtime.files import atomic_write

# The order of the sections: the paper's pipeline, then anything else alphabetically.
COMMAND_ORDER = ("train-feedback", "eval-noise", "eval-corruptions", "attack", "tune", "manifold")
REQUIRED = ("provenance.json", "config.yaml", "metrics.csv")
MARKERS = (*REQUIRED, "cells.jsonl")
COUNT_COLUMNS = {"timestep", "correct", "total", "success", "images"}
SAFE_NAME = re.compile(r"[\w.-]+")
# The config groups that describe each command's own settings (beside backbone, pc and data).
COMMAND_GROUPS = {
    "train-feedback": ("train",),
    "eval-noise": ("eval",),
    "eval-corruptions": ("eval", "corruptions"),
    "attack": ("attack",),
    "tune": ("tune",),
    "manifold": ("manifold",),
}
COMMON_KEYS = (
    "backbone.name",
    "pc.beta",
    "pc.lam",
    "pc.alpha",
    "pc.timesteps",
    "pc.error_reduction",
    "pc.gradient_scaling",
    "pc.decoders",
    "pc.hyper",
    "data.kind",
    "data.split",
    "data.limit",
    "seed",
)


# ---- reading run folders -------------------------------------------------------------------


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
    def label(self) -> str:
        """Backbone, folder name (the config hash by default), and whether tuned hyperparameters
        were used: tells runs apart in the summary tables."""
        h = self.path.name
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


def _order(run: RunFolder) -> tuple:
    cmd = run.command
    rank = COMMAND_ORDER.index(cmd) if cmd in COMMAND_ORDER else len(COMMAND_ORDER)
    return (rank, cmd, run.backbone, str(run.path))


# ---- per-run sections ----------------------------------------------------------------------


def command_line(run: RunFolder) -> str:
    """The command line that made the run (provenance's argv), or a reconstruction from it."""
    argv = (run.provenance.get("environment") or {}).get("argv")
    if isinstance(argv, list) and argv:
        return shlex.join(["pcnets" if "pcnets" in str(argv[0]) else str(argv[0]), *argv[1:]])
    return f"pcnets {run.command} (command line not recorded)"


def key_config(run: RunFolder) -> dict[str, object]:
    """The settings worth seeing beside a result: backbone, dynamics, data, and the command's own
    config group(s), flattened to dotted keys."""
    out: dict[str, object] = {}
    for key in COMMON_KEYS:
        value = OmegaConf.select(run.config, key, default="(unset)")
        if value != "(unset)":
            out[key] = _plain(value)
    for group in COMMAND_GROUPS.get(run.command, ()):
        node = run.config.get(group)
        if isinstance(node, DictConfig):
            for key, value in _flatten(OmegaConf.to_container(node), group).items():
                out[key] = value
    return out


def _plain(value):
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _flatten(node, prefix: str) -> dict:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}"))
        return out
    return {prefix: node}


def _demote(markdown: str, levels: int = 3) -> str:
    return "\n".join(
        ("#" * levels + line) if line.startswith("#") else line for line in markdown.splitlines()
    )


def _figure_link(fig: Path, run: RunFolder, out: Path, copy: bool) -> str:
    if copy:  # every part read from a file is one plain name: nothing leaves the figures folder
        h = run.provenance.get("config_hash") or run.path.name
        folder = out.parent / f"{out.stem}_figures"
        parts = [_plain_name(p, run.path.name) for p in (run.command, run.backbone, h)]
        target = folder.joinpath(*parts, fig.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(fig, target)
    else:
        target = fig
    rel = os.path.relpath(target.resolve(), out.parent.resolve())
    return Path(rel).as_posix()


def _plain_name(value: str, fallback: str) -> str:
    """``value`` when it is a plain file name (letters, digits, . _ -, not '.' or '..')."""
    value = str(value)
    return value if SAFE_NAME.fullmatch(value) and value not in (".", "..") else fallback


def run_section(run: RunFolder, out: Path, copy_figures: bool = False) -> str:
    """The Markdown of one run: where, how (command, key config), its table and figures."""
    rel = Path(os.path.relpath(run.path.resolve(), out.parent.resolve())).as_posix()
    unfinished = {"finished": "", "suspect": " — **SUSPECT: a sanity check failed**"}.get(
        run.status, f" — **{run.status}, not finished**"
    )
    lines = [
        f"### {run.command}: {run.label}{unfinished}",
        "",
        f"- folder: [`{rel}`]({rel}/)",
        f"- command: `{command_line(run)}`",
        f"- started {run.provenance.get('started', '?')}, {run.provenance.get('seconds', '?')} s, "
        f"git {(run.provenance.get('environment') or {}).get('git', '?')}, "
        f"device {(run.provenance.get('environment') or {}).get('device', '?')}",
        "- key config: "
        + ", ".join(f"`{k}={json.dumps(v, default=str)}`" for k, v in key_config(run).items()),
        "",
    ]
    lines.append(_demote(run.table.strip()) if run.table else "(this run wrote no table.md)")
    lines.append("")
    for fig in run.figures:
        lines += [f"![{run.command} {fig.stem}]({_figure_link(fig, run, out, copy_figures)})", ""]
    return "\n".join(lines)


# ---- paper-style summaries across runs -----------------------------------------------------


def attack_summary(runs: list[RunFolder]) -> str | None:
    """Attack success rate per epsilon and timestep per run (and per attack, when metrics.csv
    has an "attack" column), when metrics.csv has columns eps, timestep, total and one count of
    successes (success, successes or fooled); with a "kind" column, only the attacks through the
    unrolled dynamics (not the transfer rows)."""
    rows = []
    for run in runs:
        df = run.metrics
        if "kind" in df.columns:
            df = df[df["kind"] == "unrolled"]
        hit = next((c for c in ("success", "successes", "fooled") if c in df.columns), None)
        if (
            run.command != "attack"
            or hit is None
            or not has_columns(df, "eps", "timestep", "total")
        ):
            continue
        keys = ["attack", "eps"] if "attack" in df.columns else ["eps"]
        counts = df.groupby([*keys, "timestep"])[[hit, "total"]].sum()
        rate = (counts[hit] / counts["total"]).unstack("timestep")
        for key, series in rate.iterrows():
            key = key if isinstance(key, tuple) else (key,)
            row = {"run": run.label, **dict(zip(keys, key, strict=True))}
            row.update({f"t{int(t)}": v for t, v in series.items()})
            rows.append(row)
    if not rows:
        return None
    return "### Attack success rate per timestep\n\n" + markdown_table(pd.DataFrame(rows), 3)


SUMMARIES = (noise_summary, corruption_summary, attack_summary, tune_summary, manifold_summary)


# ---- the report ----------------------------------------------------------------------------


def build_report(runs: list[RunFolder], out: Path, copy_figures: bool = False) -> str:
    """The Markdown text of the report of ``runs`` (figures linked relative to ``out``)."""
    runs = sorted(runs, key=_order)
    out = Path(out)
    lines = [
        "# pcnets report",
        "",
        f"{len(runs)} run folders, gathered {time.strftime('%Y-%m-%d %H:%M:%S')} by "
        "`pcnets report` (rerun it to update; nothing is recomputed).",
        "",
        "## Runs",
        "",
    ]
    index = pd.DataFrame(
        [
            {
                "#": i + 1,
                "command": r.command,
                "backbone": r.backbone,
                "status": r.status,
                "config hash": r.provenance.get("config_hash", ""),
                "folder": Path(os.path.relpath(r.path.resolve(), out.parent.resolve())).as_posix(),
            }
            for i, r in enumerate(runs)
        ]
    )
    lines += [markdown_table(index), ""]
    said = findings(runs)
    if said:
        lines += [said, ""]
    summaries = [s for s in (fn(runs) for fn in SUMMARIES) if s]
    if summaries:
        lines += ["## Summary", ""]
        for s in summaries:
            lines += [s, ""]
    current = None
    for run in runs:
        if run.command != current:
            current = run.command
            lines += [f"## {current}", ""]
        lines += [run_section(run, out, copy_figures), ""]
    return "\n".join(lines).rstrip() + "\n"


# The commands whose tables, figures and summary.csv can be drawn again from their run folder.
RENDERERS = {
    "attack": attack.render,
    "eval-noise": noise.render,
    "eval-corruptions": corruptions.render,
    "manifold": manifold.render,
    "tune": tune.render,
}


def write_report(
    paths: Iterable[str | Path],
    out: str | Path,
    copy_figures: bool = False,
    render: bool = False,
    strict: bool = False,
) -> tuple[Path, list[RunFolder]]:
    """Find, check and read the run folders under ``paths`` and write the report to ``out``;
    with ``render``, first draw every run's tables, figures and summary.csv again from its files
    (no model is built). Every folder is checked before anything is written, so a corrupt one
    leaves no half report."""
    out = Path(out)
    if out.is_dir():
        raise PcnetsError(
            f"--out {out} is a folder; give the report's file, e.g. {out / 'report.md'}"
        )
    runs = load_runs(paths, strict)
    if render:
        for run in runs:
            if run.command in RENDERERS and run.status in ("finished", "suspect"):
                RENDERERS[run.command](run.path)
        runs = [load_run(run.path) for run in runs]
    out.parent.mkdir(parents=True, exist_ok=True)
    text = build_report(runs, out, copy_figures)
    atomic_write(out, text)
    return out, runs
