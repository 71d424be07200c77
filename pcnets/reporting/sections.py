"""One run's section of the report: where it is, the command line and the key config that made
it, its table.md (headings demoted) and its figures (linked, or copied beside the report).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pcnets.reporting.run_folders import RunFolder
from pcnets.schema import GROUPS

SAFE_NAME = re.compile(r"[\w.-]+")
# The config groups every command shares; the others in a run's config are the command's own.
SHARED_GROUPS = ("backbone", "pc", "data")
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


def command_line(run: RunFolder) -> str:
    """The command line that made the run (provenance's argv), or a reconstruction from it."""
    argv = (run.provenance.get("environment") or {}).get("argv")
    if isinstance(argv, list) and argv:
        return shlex.join(["pcnets" if "pcnets" in str(argv[0]) else str(argv[0]), *argv[1:]])
    return f"pcnets {run.command} (command line not recorded)"


def key_config(run: RunFolder) -> dict[str, object]:
    """The settings worth seeing beside a result: backbone, dynamics, data, and the command's own
    config group(s) (those of the schema in its config.yaml), flattened to dotted keys."""
    out: dict[str, object] = {}
    for key in COMMON_KEYS:
        value = OmegaConf.select(run.config, key, default="(unset)")
        if value != "(unset)":
            out[key] = _plain(value)
    for group in (g for g in GROUPS if g not in SHARED_GROUPS):
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
