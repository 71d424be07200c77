"""Standard streams that never end a run: started with stdout closed (`>&-`), or with a reader
that goes away (`| head -1`), a command still does all its work and writes all its files;
progress lines and summaries then go nowhere. Text is written as UTF-8 or escaped, never a
UnicodeEncodeError under a strict ASCII locale."""

from __future__ import annotations

import errno
import os
import sys
from typing import IO

GONE = (errno.EPIPE, errno.EBADF, errno.ECONNRESET, errno.EIO)


class Unbreakable:
    """A text stream whose write and flush never raise because the reader is gone: from then on
    its file descriptor points at os.devnull (so Python's final flush succeeds too)."""

    def __init__(self, stream: IO[str]):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (OSError, ValueError) as exc:
            self._gone(exc)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError) as exc:
            self._gone(exc)

    def isatty(self) -> bool:
        try:
            return self._stream.isatty()
        except (OSError, ValueError):
            return False

    def _gone(self, exc: Exception) -> None:
        if isinstance(exc, OSError) and exc.errno not in GONE:
            raise exc
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)
        except (OSError, ValueError):
            self._stream = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def keep_streams_open() -> None:
    """File descriptors 0-2 open (a closed one on os.devnull, so that no file of a run becomes
    fd 1), and sys.stdout / sys.stderr Unbreakable, escaping what their encoding cannot hold."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = getattr(sys, name)
        if stream is None:
            stream = open(fd, "w", closefd=False)  # noqa: SIM115
        if isinstance(stream, Unbreakable):
            continue
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
        setattr(sys, name, Unbreakable(stream))
