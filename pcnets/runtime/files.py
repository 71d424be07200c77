"""Writing files so that an interruption never leaves half a file: one atomic write for all
(defined in pcnets.core.files, where decoder files are written too; the layers above import it
from here)."""

from __future__ import annotations

from pcnets.core.files import atomic_save, atomic_write

__all__ = ["atomic_save", "atomic_write"]
