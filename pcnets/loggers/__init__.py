"""Experiment loggers (logger=csv|tensorboard|mlflow|wandb|many, or logger.backends=[...]).

Logging happens in one place: ``Logged`` wraps every command's run function (pcnets.cli.common
.launch, so single runs and each job of a ``-m`` sweep alike), and once the command has returned
its Result, ``log_run`` sends what its run folder's files hold (pcnets.loggers.record). The one
other call is ``log_epoch``, train-feedback's per-epoch hook (losses and R^2 as they come).
Only the process that writes files (rank 0) logs. The run folder stays the record: a logger that
fails afterwards is a warning, never a lost run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pcnets.errors import PcnetsError
from pcnets.loggers.backends import BACKENDS, EXTRAS, require
from pcnets.loggers.record import (
    Record,
    epoch_points,
    figures,
    params,
    record,
    summary_points,
    tags,
)


def backends(cfg) -> list[str]:
    """The loggers ``cfg`` asks for (logger.backends), each checked to exist."""
    names = list((cfg.get("logger") or {}).get("backends") or [])
    for name in names:
        if name not in BACKENDS:
            raise PcnetsError(
                f"logger.backends: unknown logger {name!r}; choose from {', '.join(BACKENDS)}"
            )
    return names


def check(cfg) -> None:
    """Before a run: every logger asked for is known and its package installed."""
    for name in backends(cfg):
        if name in EXTRAS:
            require(EXTRAS[name], name)


@dataclass
class _Open:
    rec: Record
    loggers: list
    seen: set = field(default_factory=set)  # (key, step) already sent

    def send(self, points) -> None:
        new = [p for p in points if (p.key, p.step) not in self.seen]
        self.seen.update((p.key, p.step) for p in new)
        for logger in self.loggers:
            logger.points(new)


_OPEN: dict[Path, _Open] = {}  # the loggers of runs in progress in this process


def _open(cfg, path: Path) -> _Open | None:
    from pcnets.runtime.distributed import is_main

    names = backends(cfg)
    if not names or path is None or not is_main():
        return None
    path = Path(path).absolute()
    if path not in _OPEN:
        rec = record(cfg, path)
        settings = cfg.get("logger") or {}
        loggers = [BACKENDS[name](rec, settings) for name in names]
        config = params(path)
        for logger in loggers:
            logger.params(config)
        _OPEN[path] = _Open(rec, loggers)
    return _OPEN[path]


def log_epoch(cfg, path: Path | None, rows: list[dict]) -> None:
    """train-feedback's hook: one epoch's rows (mse, r2 per decoder and split), step = epoch."""
    run = _open(cfg, path)
    if run is not None:
        run.send(epoch_points(pd.DataFrame(rows)))


def log_run(cfg, path: Path | None) -> None:
    """Send a finished run folder to the loggers ``cfg`` asks for, then close them."""
    try:
        run = _open(cfg, path)
    except PcnetsError:
        raise
    except Exception as exc:  # noqa: BLE001 - a logger's failure must not lose the run
        return _warn(exc)
    if run is None:
        return None
    path = run.rec.path
    try:
        metrics = path / "metrics.csv"
        if metrics.is_file():
            run.send(epoch_points(pd.read_csv(metrics)))
        run.send(summary_points(path))
        info, pictures = tags(run.rec), figures(path)
        for logger in run.loggers:
            logger.tags(info)
            logger.figures(pictures)
    except Exception as exc:  # noqa: BLE001
        _warn(exc)
    finally:
        _OPEN.pop(path, None)
        for logger in run.loggers:
            try:
                logger.close()
            except Exception as exc:  # noqa: BLE001
                _warn(exc)
    return None


def _warn(exc: Exception) -> None:
    line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    print(
        f"warning: experiment logger failed ({line}); the run folder is complete", file=sys.stderr
    )


@dataclass(frozen=True)
class Logged:
    """A command's run function with its loggers: checked before, the run folder logged after.
    Picklable (a sweep's launcher sends it to other processes)."""

    run: Callable[[Any], Any]

    def __call__(self, cfg) -> Any:
        check(cfg)
        result = self.run(cfg)
        log_run(cfg, getattr(result, "path", None))
        return result
