"""How a command ends when it does not finish: its run folders say "interrupted" (Ctrl-C, or
SIGTERM from a scheduler such as SLURM) or "failed" (any error) in provenance.json, and a full
disk or a lost permission is one line that says where the finished work is, never a traceback."""

from __future__ import annotations

import contextlib
import errno
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from pcnets.errors import PcnetsError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
NO_PERMISSION = (errno.EACCES, errno.EPERM, errno.EROFS)


class _Closable(Protocol):
    path: Path

    def close(self, status: str) -> None: ...


_OPEN: list[_Closable] = []  # this process's run folders that have not finished


def track(run: _Closable) -> None:
    """Remember an open run folder, to mark it if the command ends without finishing it."""
    _OPEN.append(run)


def untrack(run: _Closable) -> None:
    if run in _OPEN:
        _OPEN.remove(run)


def close_open(status: str) -> None:
    """Mark every unfinished run folder ``status`` and release its lock (best effort: on a full
    disk the mark itself may not fit, and the finished cells are already on disk)."""
    for run in list(_OPEN):
        try:
            run.close(status)
        except OSError:
            untrack(run)


def os_error_line(exc: OSError) -> str | None:
    """The one line for a full disk or a lost permission (None for other OS errors)."""
    where = _OPEN[-1].path if _OPEN else None
    saved = f": finished work is saved in {where}" if where else ""
    if exc.errno in NO_SPACE:
        return f"no space left on device{saved}" + ("; free space and rerun" if where else "")
    if exc.errno in NO_PERMISSION:
        name = exc.filename or where or "a file"
        return f"cannot write {name} ({exc.strerror}){saved}; fix the permissions or use --out"
    return None


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (a scheduler ending the job, `kill PID`): handled as Ctrl-C is."""


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While active (main thread only), SIGTERM raises Terminated where the command is, so its
    finished cells stay saved and its run folders say "interrupted". Training installs its own
    handler inside (it checkpoints after the step in progress) and restores this one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def guarded(fn: Callable, *args, **kwargs):
    """Call a command's function so that it ends in a finished, "interrupted" or "failed" run
    folder, with disk-full and permission errors turned into one PcnetsError line."""
    try:
        with terminate_as_interrupt():
            return fn(*args, **kwargs)
    except KeyboardInterrupt:
        close_open("interrupted")
        raise
    except OSError as exc:
        line = os_error_line(exc)
        close_open("failed")
        if line is None:
            raise
        raise PcnetsError(line) from None
    except Exception as exc:  # typer.Exit(130) is how a command reports its own interruption
        code = getattr(exc, "exit_code", None)
        if code != 0:
            close_open("interrupted" if code == 130 else "failed")
        raise
