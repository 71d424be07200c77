"""The allocator switch keeps freed feature maps in the process (no mmap/munmap per tensor)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import resource, sys, torch
    from pcnets.runtime.allocator import keep_freed_memory

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    from pcnets.runtime.allocator import allocator_label

    applied = keep_freed_memory()
    assert allocator_label() == ("keep-freed" if applied else "system")
    x = torch.ones(2**25)  # 128 MiB, above glibc's largest mmap threshold
    held = rss_mb()
    del x
    print(applied, round(held - rss_mb()))
    """
)


def _released_mb(env_extra: dict) -> tuple[str, int]:
    env = {**os.environ, **env_extra}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux's")
def test_freed_memory_stays_for_reuse_unless_the_system_allocator_is_asked_for():
    applied, released = _released_mb({"PCNETS_ALLOCATOR": ""})
    assert applied == "True"
    assert released < 16  # the 128 MiB block went back to the heap, not to the kernel
    applied, released = _released_mb({"PCNETS_ALLOCATOR": "system"})
    assert applied == "False"
    assert released > 100  # glibc's default: the block is unmapped when freed
