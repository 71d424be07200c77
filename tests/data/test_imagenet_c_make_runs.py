"""make-imagenet-c on one --out: the run-folder lock refuses a second one, temporary names are
each process's own, and pool workers end with their parent (issue 24 item 10)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pcnets.cli import app
from pcnets.data import imagenet_c_make
from pcnets.runtime import locks


def val_folder(tmp_path: Path) -> Path:
    root = tmp_path / "val"
    for c, wnid in enumerate(("n01440764", "n01443537")):
        (root / wnid).mkdir(parents=True)
        pixels = np.full((40, 48, 3), 60 + 50 * c, np.uint8)
        Image.fromarray(pixels).save(root / wnid / f"img{c}.JPEG")
    return root


def hold(folder: Path, ready, done) -> None:
    locks.acquire(folder)
    ready.set()
    done.wait(30)


def test_a_second_make_imagenet_c_on_one_out_is_refused(tmp_path):
    out = tmp_path / "inc"
    out.mkdir()
    ctx = multiprocessing.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    child = ctx.Process(target=hold, args=(out, ready, done))
    child.start()
    args = ["make-imagenet-c", "--val-root", str(val_folder(tmp_path)), "--out", str(out)]
    args += ["--names", "gaussian_noise", "--severities", "1", "--size", "32", "--workers", "0"]
    try:
        assert ready.wait(30)
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2
        assert f"is in use by process {child.pid} on host" in result.stderr
        assert not (out / "gaussian_noise").exists()
    finally:
        done.set()
        child.join(30)
    result = CliRunner().invoke(app, args)  # free once the holder ended
    assert result.exit_code == 0, result.output
    assert len(list((out / "gaussian_noise" / "1").rglob("*.JPEG"))) == 2


def test_temporary_names_are_this_processs_own_and_removed(tmp_path, monkeypatch):
    seen = []
    real = os.replace

    def replace(src, dst):
        seen.append(Path(src).name)
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "a" / "x.JPEG"
    imagenet_c_make._save_atomically(np.zeros((8, 8, 3), np.uint8), target, 85)
    assert seen == [f".x.JPEG.{os.getpid()}.tmp"] and target.is_file()
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.JPEG"]


def test_an_orphaned_worker_writes_nothing_more(tmp_path, monkeypatch):
    val = val_folder(tmp_path)
    task = (str(next(val.rglob("*.JPEG"))), "n01440764/img0.JPEG", [("gaussian_noise", 1)])
    task = (*task, str(tmp_path / "out"), 32, 0, 85)
    monkeypatch.setattr(imagenet_c_make, "_PARENT", os.getppid() + 1)  # not its parent now
    assert imagenet_c_make._write_image_cells(task) == (0, {})
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(imagenet_c_make, "_PARENT", os.getppid())
    count, _ = imagenet_c_make._write_image_cells(task)
    assert count == 1 and len(list((tmp_path / "out").rglob("*.JPEG"))) == 1


PARENT = """
import multiprocessing, os, sys, time
from pcnets.data.imagenet_c_make import _init_worker
def pid(_):
    return os.getpid()
if __name__ == "__main__":
    pool = multiprocessing.get_context("spawn").Pool(1, _init_worker)
    print(pool.apply(pid, (0,)), flush=True)
    time.sleep(60)
"""


@pytest.mark.slow
def test_pool_workers_end_with_a_killed_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    pytest.fail("the pool worker outlived its killed parent")
