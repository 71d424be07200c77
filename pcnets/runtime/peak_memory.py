"""Peak memory of a block of work, the one measure that the attack table and the bench share."""

from __future__ import annotations

import ctypes
import re
import resource
import sys
from pathlib import Path

import torch


class PeakMemory:
    """Peak memory while the block runs: ``peak`` = bytes above the level at entry, ``peak_mb`` =
    the absolute peak in MiB.

    CUDA: torch.cuda.max_memory_allocated. CPU (Linux): the kernel's own peak resident set size
    (VmHWM, reset through /proc/self/clear_refs after malloc_trim returns freed heap), which
    includes the allocator's slack; elsewhere ru_maxrss, which only sees new highs.
    """

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.start = 0
        self.end = 0

    @property
    def peak(self) -> int:
        return max(0, self.end - self.start)

    @property
    def peak_mb(self) -> float:
        return self.end / 2**20

    @property
    def start_mb(self) -> float:
        return self.start / 2**20

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        elif _proc_status():
            trim_heap()
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass
            self.start = _proc_status()["VmRSS"]
        else:
            self.start = _maxrss()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.end = torch.cuda.max_memory_allocated(self.device)
        elif _proc_status():
            self.end = _proc_status()["VmHWM"]
        else:
            self.end = _maxrss()


def trim_heap() -> None:
    """Give freed heap memory back to the system (glibc), so the next peak starts clean."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _proc_status() -> dict[str, int]:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return {}
    found = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, flags=re.M))
    return {k: int(v) * 1024 for k, v in found.items()} if len(found) == 2 else {}


def _maxrss() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, kB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
