"""An exclusive lock on a run folder (fcntl.flock on <folder>/.lock), so that two commands never
compute into one folder: the second is refused with one line naming the holder's PID and host.

The operating system drops the lock when its process ends (also on kill -9), so a stale lock
file never blocks. Within one process a folder's lock is shared by every Run on it (tests and
Python loops open a folder again while an earlier Run object is still referenced).
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path
from typing import IO

from pcnets.errors import PcnetsError

LOCK_FILE = ".lock"
_HELD: dict[Path, IO[str]] = {}  # folder -> the open lock file of this process


def acquire(folder: Path) -> None:
    """Lock ``folder`` for this process, or raise one PcnetsError line naming the holder."""
    key = folder.resolve()
    if key in _HELD:
        return
    fh = open(folder / LOCK_FILE, "a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise PcnetsError(
            f"{folder} is in use by {holder}: wait for that run to end, or choose another --out"
        ) from None
    fh.seek(0)
    fh.truncate()
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    fh.write(f"process {os.getpid()} on host {socket.gethostname()} (since {since})\n")
    fh.flush()
    _HELD[key] = fh


def release(folder: Path) -> None:
    """Give up this process's lock on ``folder`` (nothing when it holds none)."""
    fh = _HELD.pop(folder.resolve(), None)
    if fh is not None:
        fh.close()
