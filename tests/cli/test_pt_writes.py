"""Every .pt file goes through the one atomic write: a full disk or a read-only folder while
writing a checkpoint or decoders is one line and exit 2, leaves no temporary file, keeps the old
file whole and marks the run folder "failed" (issue 24 item 5)."""

from __future__ import annotations

import errno
import json
import os

import pytest
import torch
from helpers import tiny_pnet
from typer.testing import CliRunner

from pcnets.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = [
    "train-feedback",
    "backbone=resnet18",
    "backbone.pretrained=false",
    "backbone.probe_size=32",
    "data=synthetic",
    "data.size=32",
    "device=cpu",
    "data.limit=8",
    "train.val_fraction=0.5",
    "train=sgd",
    "train.batch_size=4",
    "train.epochs=1",
]


def fail_pt_writes(monkeypatch, code: int) -> None:
    """os.fsync fails with ``code`` for the temporary files of .pt writes (a full disk, a
    read-only file system), as the kernel reports it; every other file is written."""
    real = os.fsync

    def fsync(fd):
        if ".pt." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(code, os.strerror(code))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_saving_decoders_on_a_full_disk_is_an_os_error_and_keeps_the_old_file(
    tmp_path, monkeypatch, code
):
    pnet = tiny_pnet()
    pnet.save_decoders(tmp_path / "d.pt")
    before = (tmp_path / "d.pt").read_bytes()
    fail_pt_writes(monkeypatch, code)
    with pytest.raises(OSError) as err:  # not torch's RuntimeError from inline_container.cc
        pnet.save_decoders(tmp_path / "d.pt", note="new")
    assert err.value.errno == code
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.pt"]  # no temporary file left
    assert (tmp_path / "d.pt").read_bytes() == before


def test_a_full_disk_while_checkpointing_is_one_line_and_a_failed_run(tmp_path, monkeypatch):
    fail_pt_writes(monkeypatch, errno.ENOSPC)
    monkeypatch.setenv("PCNETS_QUIET", "1")
    out = tmp_path / "tr"
    result = CliRunner().invoke(app, [*TRAIN, "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no space left on device"), lines
    assert json.loads((out / "provenance.json").read_text())["status"] == "failed"
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert not (out / "checkpoint.pt").exists()
    torch.manual_seed(0)  # the run seeded torch; leave no trace for the next test


def test_a_refused_write_names_the_file_asked_for_not_its_temporary(tmp_path, monkeypatch):
    from pcnets.core import files

    def refuse(name, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(name))

    monkeypatch.setattr(files, "open", refuse, raising=False)
    with pytest.raises(PermissionError) as err:
        files.atomic_write(tmp_path / "x.pt", b"data")
    assert err.value.filename == str(tmp_path / "x.pt")
