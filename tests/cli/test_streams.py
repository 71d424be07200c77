"""A closed stdout or a reader that goes away never ends a run: the work and its files complete,
the output goes nowhere (issue 24 item 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import REPO

from pcnets.runtime.streams import Unbreakable

TOY = [
    "eval-noise",
    "backbone=resnet18",
    "backbone.pretrained=false",
    "backbone.probe_size=32",
    "data=synthetic",
    "data.size=32",
    "data.limit=2",
    "eval.bootstrap=10",
    "device=cpu",
    "eval.sigmas=[0.0,0.1]",
    "-T",
    "1",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PCNETS_PROGRESS_SECONDS": "0"}


def finished(out) -> bool:
    prov = json.loads((out / "provenance.json").read_text())
    return prov["status"] == "finished" and prov["cells_done"] == 2


def test_a_write_to_a_pipe_without_reader_goes_nowhere():
    read, write = os.pipe()
    os.close(read)
    stream = Unbreakable(os.fdopen(write, "w", buffering=1))
    assert stream.write("lost\n") == 5  # EPIPE: swallowed, the fd now points at /dev/null
    stream.write("also lost\n")
    stream.flush()
    assert os.path.realpath(f"/proc/self/fd/{stream.fileno()}") == os.devnull
    stream.close()


def test_other_os_errors_still_raise(tmp_path):
    class Full:
        def write(self, text):
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        Unbreakable(Full()).write("x")


@pytest.mark.slow
def test_a_run_with_stdout_closed_finishes(tmp_path):
    out = tmp_path / "closed"
    cmd = [sys.executable, "-m", "pcnets", *TOY, "--out", str(out)]
    shell = " ".join(f"'{a}'" for a in cmd) + " >&-"
    done = subprocess.run(["bash", "-c", shell], cwd=REPO, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]
    assert "Traceback" not in done.stderr and finished(out)


@pytest.mark.slow
def test_a_pipe_closed_early_keeps_the_run_going(tmp_path):
    out = tmp_path / "piped"
    cmd = [sys.executable, "-m", "pcnets", *TOY, "--out", str(out)]
    shell = "set -o pipefail; " + " ".join(f"'{a}'" for a in cmd) + " 2>&1 | head -1"
    done = subprocess.run(["bash", "-c", shell], cwd=REPO, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
    assert len(done.stdout.splitlines()) == 1 and finished(out)
