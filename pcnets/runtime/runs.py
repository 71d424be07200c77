"""Run folders (DESIGN.md "Results"): one per command and config, resumable cell by cell.

    results/<command>/<backbone>/<config hash>/
        config.yaml      the resolved config
        provenance.json  versions, git revision, hardware, command line, times, status
        cells.jsonl      one line per finished cell (the resume log; append-only, fsynced)
        .lock            held by the process computing into the folder (runtime.locks)
        metrics.csv      every finished cell's rows, long format
        table.md, *.png  what the command makes of them

The folder name is the config's hash, so re-running the same command with the same config finds
its finished cells and skips them. Under torchrun only rank 0 writes. A run that ends without
finishing says "interrupted" or "failed" in provenance.json (runtime.failures).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from pcnets.config import CONF_DIR, config_hash, root_groups
from pcnets.data.images import skipped_images, skipped_note
from pcnets.data.subsets import digest, recorded, subset_text
from pcnets.errors import PcnetsError
from pcnets.runtime import failures, locks
from pcnets.runtime.cells import CELLS, append_cell, read_cells
from pcnets.runtime.distributed import is_main
from pcnets.runtime.files import atomic_write
from pcnets.runtime.provenance import environment
from pcnets.schema import GROUPS

RESULTS = Path(os.environ.get("PCNETS_RESULTS", "results"))
# Keys that change where or how fast a run goes, not what it computes.
NOT_HASHED = ("out", "device", "compile", "fold_bn")


def run_hash(command: str, cfg: DictConfig) -> str:
    """The hash that names a command's run folder: the whole of its own config (its root config's
    groups, conf/<command>.yaml), so a config composed with every group (compose(), Python) names
    the same folder, and changing, say, attack settings keeps the noise evaluation's cells."""
    if not (CONF_DIR / f"{command}.yaml").is_file():
        return config_hash(cfg, ignore=NOT_HASHED)
    groups = set(root_groups(command))
    keep = {k: cfg.get(k) for k in cfg if k not in NOT_HASHED and (k in groups or k not in GROUPS)}
    return config_hash(OmegaConf.create(OmegaConf.to_container(OmegaConf.create(keep))))


def cell_key(**parts) -> str:
    """A canonical string for one cell of a sweep, e.g. cell_key(sigma=0.5)."""
    return json.dumps(parts, sort_keys=True, default=str)


class Run:
    """One run folder; ``record`` a finished cell, ``is_done`` to skip it on resume."""

    def __init__(self, command: str, cfg: DictConfig, out: str | Path | None = None):
        self.command = command
        self.cfg = cfg
        self.hash = run_hash(command, cfg)
        out = out if out is not None else cfg.get("out")
        name = cfg.backbone.name if "backbone" in cfg else "run"
        self.path = Path(out) if out else RESULTS / command / str(name) / self.hash
        self.writer = is_main()
        self._cells: dict[str, list[dict]] = {}
        self._started = time.time()
        self._earlier: list[dict] = []
        if self.writer:
            self._open()

    # ---- the folder ------------------------------------------------------------------------

    def _open(self) -> None:
        self._make_folder()
        locks.acquire(self.path)
        cfg_file = self.path / "config.yaml"
        text = OmegaConf.to_yaml(self.cfg, resolve=True)
        if cfg_file.exists():
            old = OmegaConf.load(cfg_file)
            if run_hash(self.command, old) != self.hash:
                raise PcnetsError(
                    f"{self.path} holds a run of another config; choose another --out or delete it"
                )
        else:
            atomic_write(cfg_file, text)
        self._cells = read_cells(self.path / CELLS)
        self._earlier = _earlier_sessions(self.path / "provenance.json")
        self.provenance(status="running")
        failures.track(self)

    def _make_folder(self) -> None:
        """Create the folder, or one line when --out is a file or a folder one cannot write."""
        if self.path.exists() and not self.path.is_dir():
            raise PcnetsError(f"--out {self.path} is a file, not a folder: choose a folder path")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise PcnetsError(f"--out {self.path}: a part of this path is a file") from None
        except PermissionError:
            raise PcnetsError(f"--out {self.path}: cannot create it (permission denied)") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise PcnetsError(f"--out {self.path} is not writable: choose another folder")

    def provenance(self, status: str, **extra) -> None:
        if not self.writer:
            return
        session = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self._started)),
            "seconds": round(time.time() - self._started, 1),
            "status": status,
        }
        sessions = [*self._earlier, session]
        info = {
            "command": self.command,
            "config_hash": self.hash,
            "status": status,
            "started": sessions[0]["started"],
            "seconds": round(sum(s["seconds"] for s in sessions), 1),  # over every session
            "sessions": sessions,
            "cells_done": len(self._cells),
            "environment": environment(),
            **extra,
        }
        skipped = skipped_images()
        if skipped:  # data.on_bad_image=skip: counts never change silently
            info["skipped_images"] = {"count": len(skipped), "files": skipped}
        subsets = recorded()
        if subsets:  # data.limit: the seeded stratified subset, the same across runs compared
            info["subset"] = {
                k: {"images": len(v), "sha256": digest(v)} for k, v in subsets.items()
            }
            atomic_write(self.path / "subset.txt", subset_text(subsets))
        atomic_write(self.path / "provenance.json", json.dumps(info, indent=2, default=str))

    # ---- cells -----------------------------------------------------------------------------

    def is_done(self, key: str) -> bool:
        return key in self._cells

    def rows_of(self, key: str) -> list[dict]:
        return self._cells[key]

    def labels(self) -> dict:
        """What made this run's rows, put in front of every row: concatenated metrics.csv files
        of many runs (a sweep) still say which run, backbone and decoder file each row is from."""
        pc = self.cfg.get("pc") or {}
        return {
            "run_id": self.hash,
            "backbone": str(self.cfg.backbone.name) if "backbone" in self.cfg else "",
            "decoders": str(pc.get("decoders") or "untrained"),
        }

    def record(self, key: str, rows: Iterable[dict]) -> None:
        """Save a finished cell: appended and fsynced, then metrics.csv is rewritten. Every row
        starts with the run's labels (run_id, backbone, decoders)."""
        rows = [{**self.labels(), **dict(r)} for r in rows]
        self._cells[key] = rows
        if not self.writer:
            return
        append_cell(self.path / CELLS, key, rows)
        atomic_write(self.path / "metrics.csv", self.metrics().to_csv(index=False))

    def metrics(self) -> pd.DataFrame:
        """All finished rows, in the order their cells finished."""
        return pd.DataFrame([r for rows in self._cells.values() for r in rows])

    # ---- outputs ---------------------------------------------------------------------------

    def write_text(self, name: str, text: str) -> Path:
        path = self.path / name
        if name == "table.md":
            text += skipped_note()
        if self.writer:
            atomic_write(path, text)
        return path

    def finish(self, status: str = "finished", **extra) -> None:
        """Record the run's end: "finished", or e.g. "suspect" when a sanity check failed."""
        self.close(status, **extra)

    def close(self, status: str, **extra) -> None:
        """End this session of the run: provenance says ``status``, the lock is released."""
        try:
            self.provenance(status=status, **extra)
        finally:
            failures.untrack(self)
            if self.writer:
                locks.release(self.path)


def _earlier_sessions(path: Path) -> list[dict]:
    """The sessions recorded by earlier invocations of this run (a resumed run adds one)."""
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    return old.get("sessions") or [
        {
            "started": old.get("started"),
            "seconds": old.get("seconds", 0),
            "status": old.get("status"),
        }
    ]
