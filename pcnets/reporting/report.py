"""One Markdown report of many run folders (DESIGN.md "Results"): paper-style summary tables, then
every run's table.md and figures with the command and the key config that made it.

Only files are read (provenance.json, config.yaml, metrics.csv, summary.csv, table.md, *.png,
hyper.json), so re-running the report after more runs finish updates it without rerunning
anything; the summary tables take their numbers from each run's summary.csv. A folder that looks
like a run folder but lacks or garbles one of the three required files is skipped with a one-line
warning naming the folder and the file (strict: it stops the report).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from pcnets.errors import PcnetsError
from pcnets.reporting.commands import COMMANDS, specs_with
from pcnets.reporting.findings import findings
from pcnets.reporting.pairs import paired_section
from pcnets.reporting.run_folders import RunFolder, load_run, load_runs
from pcnets.reporting.sections import run_section
from pcnets.reporting.tables import markdown_table
from pcnets.runtime.files import atomic_write


def _order(run: RunFolder) -> tuple:
    """The order of the sections: the command specs' (the paper's pipeline), then anything else
    alphabetically."""
    order = list(COMMANDS)
    cmd = run.command
    rank = order.index(cmd) if cmd in order else len(order)
    return (rank, cmd, run.backbone, str(run.path))


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
    summaries = [
        spec.load("summary")([r for r in runs if r.command == spec.name])
        for spec in specs_with("summary")
    ]
    summaries = [s for s in summaries if s]
    if summaries:
        lines += ["## Summary", ""]
        for s in summaries:
            lines += [s, ""]
    paired = paired_section(runs)
    if paired:
        lines += [paired, ""]
    current = None
    for run in runs:
        if run.command != current:
            current = run.command
            lines += [f"## {current}", ""]
        lines += [run_section(run, out, copy_figures), ""]
    return "\n".join(lines).rstrip() + "\n"


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
        renderers = {spec.name: spec for spec in specs_with("render")}
        for run in runs:
            if run.command in renderers and run.status in ("finished", "suspect"):
                renderers[run.command].load("render")(run.path)
        runs = [load_run(run.path) for run in runs]
    out.parent.mkdir(parents=True, exist_ok=True)
    text = build_report(runs, out, copy_figures)
    atomic_write(out, text)
    return out, runs
