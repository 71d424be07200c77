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
from pcnets.runtime.provenance import earlier_sessions, environment
from pcnets.schema import GROUPS

RESULTS = Path(os.environ.get("PCNETS_RESULTS", "results"))
# Keys that change where or how fast a run goes, or where it is logged, not what it computes.
NOT_HASHED = ("out", "device", "compile", "fold_bn", "fast_kernels", "logger")


def run_hash(command: str, cfg: DictConfig) -> str:
    """The hash that names a command's run folder: the whole of its own config (its root config's
    groups, conf/<command>.yaml), so a config composed with every group (compose(), Python) names
    the same folder, and changing, say, attack settings keeps the noise evaluation's cells."""
    if not (CONF_DIR / f"{command}.yaml").is_file():
        return config_hash(cfg, ignore=NOT_HASHED)
    groups = set(root_groups(command))
    keep = {k: cfg.get(k) for k in cfg if k not in NOT_HASHED and (k in groups or k not in GROUPS)}
    return config_hash(OmegaConf.create(OmegaConf.to_container(OmegaConf.create(keep))))


def run_labels(cfg: DictConfig, run_id: str) -> dict:
    """What made a run's rows, put in front of every row of its metrics.csv and summary.csv:
    concatenated files of many runs (a sweep) still say which run, backbone and decoder file
    each row is from."""
    pc = cfg.get("pc") or {}
    return {
        "run_id": run_id,
        "backbone": str(cfg.backbone.name) if "backbone" in cfg else "",
        "decoders": str(pc.get("decoders") or "untrained"),
    }


def with_labels(path: str | Path, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the run folder's labels (run_labels, from its config.yaml and the config
    hash in provenance.json) as its first columns; unchanged when the folder has no config."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        return frame
    cfg = OmegaConf.load(path / "config.yaml")
    try:
        run_id = json.loads((path / "provenance.json").read_text())["config_hash"]
    except (OSError, ValueError, KeyError, TypeError):
        run_id = path.name
    labels = run_labels(cfg, str(run_id))
    rest = frame.drop(columns=[c for c in labels if c in frame.columns])
    return pd.concat([pd.DataFrame({k: [v] * len(rest) for k, v in labels.items()}), rest], axis=1)


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
        self._environment: dict | None = None
        if self.writer:
            self._open()

    # ---- the folder ------------------------------------------------------------------------

    def _open(self) -> None:
        self._make_folder()
        locks.acquire(self.path)
        cfg_file = self.path / "config.yaml"
        self._cells = read_cells(self.path / CELLS)
        _check_same_config(self.path, self.hash, _hash_of(self.command, cfg_file), self._cells)
        if not cfg_file.exists():
            atomic_write(cfg_file, OmegaConf.to_yaml(self.cfg, resolve=True))
        if self._cells and not (self.path / "metrics.csv").is_file():  # rebuilt from the log
            atomic_write(self.path / "metrics.csv", self.metrics().to_csv(index=False))
        self._earlier = earlier_sessions(self.path / "provenance.json")
        self._environment = environment()
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
            "seconds": round(sum(s.get("seconds") or 0 for s in sessions), 1),  # over every session
            "sessions": sessions,
            "cells_done": len(self._cells),
            "environment": self._environment,
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
        """What made this run's rows, put in front of every row (run_labels)."""
        return run_labels(self.cfg, self.hash)

    def record(self, key: str, rows: Iterable[dict]) -> None:
        """Save a finished cell: appended and fsynced, then metrics.csv is rewritten. Every row
        starts with the run's labels (run_id, backbone, decoders)."""
        rows = [{**self.labels(), **dict(r)} for r in rows]
        self._cells[key] = rows
        if not self.writer:
            return
        append_cell(self.path / CELLS, key, rows)
        atomic_write(self.path / "metrics.csv", self.metrics().to_csv(index=False))
        self.provenance(status="running")  # the session's seconds so far, should it be killed

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


def _check_same_config(path: Path, run_hash: str, saved: str | None, cells: dict) -> None:
    """A folder's cells are reused only by the config that made them: its config.yaml (hash
    ``saved``) and every row's run_id must be this run's, else one line saying what to do."""
    if (path / "config.yaml").exists():
        if saved != run_hash:
            raise PcnetsError(
                f"{path} holds a run of another config; choose another --out or delete it"
            )
    elif cells:
        raise PcnetsError(
            f"{path} has finished cells but no config.yaml, so the config that made "
            f"them is unknown and none is reused: delete {path / CELLS} to start over, "
            "or choose another --out"
        )
    others = {r.get("run_id") for rows in cells.values() for r in rows} - {
        None,
        run_hash,
    }
    if others:
        raise PcnetsError(
            f"{path / CELLS} holds cells of another config (run_id {sorted(others)[0]}): "
            "choose another --out, or delete the folder to start over"
        )


def _hash_of(command: str, cfg_file: Path) -> str | None:
    """The run hash of a folder's config.yaml (None when the file cannot be read as a config)."""
    try:
        return run_hash(command, OmegaConf.load(cfg_file))
    except Exception:  # a damaged config.yaml: the folder's config is unknown
        return None
