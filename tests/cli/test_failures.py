"""Every fault a shared cluster and shared files bring ends in one line on stderr and exit 2, never
a traceback (the table in docs/errors.md); files are data; no non-finite number is counted."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO, data_dir, tiny_pnet
from typer.testing import CliRunner

from pcnets.cli import app
from pcnets.config import compose
from pcnets.core.pnet import Hyper
from pcnets.errors import PcnetsError
from pcnets.runtime import failures
from pcnets.runtime.runs import Run, cell_key

pytestmark = pytest.mark.usefixtures("one_thread")

TOY = [
    "backbone=resnet18",
    "backbone.pretrained=false",
    "backbone.probe_size=32",
    "data=synthetic",
    "data.size=32",
    "data.limit=2",
    "eval.sigmas=[0.0]",
    "eval.bootstrap=10",
    "device=cpu",
    "-T",
    "1",
]
NET = TOY[:3]
ON_FILES = [*NET, *TOY[6:]]  # the toy run on image folders (real 224-px images)
WNIDS = ("n01440764", "n01443537")  # ImageNet classes 0 and 1


class Evil:
    """A pickle that runs a shell command when loaded with weights_only=False."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_file(tmp: Path, payload: dict) -> Path:
    path = tmp / "evil.pt"
    torch.save({**payload, "x": Evil(tmp / "MARKER")}, path)
    return path


def sample_folder(tmp: Path, bad: bool) -> Path:
    """A 2-class ImageNet-layout folder of real sample images; ``bad`` adds three broken files."""
    sample = data_dir() / "imagenet-sample" / "val"
    if not sample.is_dir():
        pytest.skip("the ImageNet sample is not available (set PCNETS_DATA_DIR)")
    for wnid in WNIDS:
        (tmp / "set" / "val" / wnid).mkdir(parents=True)
        src = next((sample / wnid).iterdir())
        shutil.copy(src, tmp / "set" / "val" / wnid / src.name)
    if bad:
        folder = tmp / "set" / "val" / WNIDS[0]
        good = next(folder.iterdir()).read_bytes()
        (folder / "zero.JPEG").write_bytes(b"")
        (folder / "text.JPEG").write_text("not an image")
        (folder / "cut.JPEG").write_bytes(good[: len(good) // 2])
    return tmp / "set"


def folder_data(root: Path) -> list[str]:
    return ["data=imagenet", f"data.root={root}", "data.num_classes=2", "data.folders.train=val"]


def is_warning(line: str) -> bool:
    """The untrained-decoders notice and progress bars (tqdm writes to stderr): not errors."""
    bar = "%|" in line or "\x1b[A" in line
    return line.startswith("warning: pc.decoders is not set") or bar


def hold_lock(folder: Path, ready, done) -> None:
    Run("eval-noise", compose(["data.limit=5"]), out=folder)
    ready.set()
    done.wait(30)


def make_read_only(tmp, monkeypatch):
    (tmp / "ro").mkdir()
    # root ignores permission bits: the check the code makes is what is simulated
    real = os.access
    monkeypatch.setattr("os.access", lambda p, mode: real(p, mode) and not mode & os.W_OK)
    return ["eval-noise", *TOY, "--out", str(tmp / "ro")]


def disk_full(tmp, monkeypatch):
    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pcnets.runtime.runs.append_cell", full)
    return ["eval-noise", *TOY, "--out", str(tmp / "full")]


def permission_lost(tmp, monkeypatch):
    def denied(log, *args):
        raise PermissionError(errno.EACCES, "Permission denied", str(log))

    monkeypatch.setattr("pcnets.runtime.runs.append_cell", denied)
    return ["eval-noise", *TOY, "--out", str(tmp / "lost")]


def decoders_without_backbone(tmp, monkeypatch):
    torch.save({"format": "pcnets-decoders-v1", "encoders": [], "decoders": {}}, tmp / "d.pt")
    return ["eval-noise", *TOY, f"pc.decoders={tmp / 'd.pt'}", "--out", str(tmp / "o")]


def damaged_decoders(tmp, monkeypatch):
    (tmp / "d.pt").write_bytes(b"\x80\x02}q\x00h\x01.")  # a memo reference with no memo
    return ["eval-noise", *TOY, f"pc.decoders={tmp / 'd.pt'}", "--out", str(tmp / "o")]


def report_root(tmp):
    run = Run("eval-noise", compose(["data.limit=5"]), out=tmp / "res" / "a")
    run.record(cell_key(sigma=0), [{"sigma": 0, "timestep": 0, "correct": 1, "total": 2}])
    run.finish()
    return tmp / "res"


# (id, setup(tmp, monkeypatch) -> argv, what the one line must say)
CASES = [
    ("beta-nan", lambda t, m: ["eval-noise", *TOY, "pc.beta=nan"], "pc.beta must be a finite"),
    ("alpha-inf", lambda t, m: ["eval-noise", *TOY, "pc.alpha=inf"], "pc.alpha must be a finite"),
    ("beta-abc", lambda t, m: ["eval-noise", *TOY, "pc.beta=abc"], "got 'abc'"),
    ("beta-above-1", lambda t, m: ["eval-noise", *TOY, "pc.beta=1.5"], "pc.beta must be in"),
    ("timesteps-1000", lambda t, m: ["eval-noise", *TOY, "-T", "1000"], "above the maximum of 100"),
    (
        "out-is-a-file",
        lambda t, m: (t / "f").write_text("x") and ["eval-noise", *TOY, "--out", str(t / "f")],
        "is a file, not a folder",
    ),
    ("out-read-only", make_read_only, "is not writable"),
    ("disk-full", disk_full, "no space left on device: finished work is saved in"),
    ("permission-lost", permission_lost, "(Permission denied): finished work is saved in"),
    ("decoders-no-backbone", decoders_without_backbone, "decoder file without 'backbone'"),
    (
        "decoders-a-folder",
        lambda t, m: ["eval-noise", *TOY, f"pc.decoders={t}"],
        "is a folder; give the file inside it",
    ),
    ("decoders-damaged", damaged_decoders, "it is damaged or not a torch file"),
    (
        "pickle-decoders",
        lambda t, m: ["eval-noise", *TOY, f"pc.decoders={evil_file(t, {'format': 'x'})}"],
        "asks to load the Python object posix.system",
    ),
    (
        "pickle-weights",
        lambda t, m: [
            "eval-noise",
            *TOY,
            "backbone.pretrained=true",
            f"backbone.weights={evil_file(t, {})}",
        ],
        "backbone.weights: ",
    ),
    (
        "pickle-checkpoint",
        lambda t, m: (
            (t / "tr").mkdir() is None
            and shutil.move(evil_file(t, {}), t / "tr" / "checkpoint.pt")
            and [
                "train-feedback",
                *[a for a in TOY[:-2] if not a.startswith("eval.")],  # train has no eval group
                "data.limit=8",
                "train.val_fraction=0.5",
                "train=sgd",
                "train.batch_size=4",
                "--out",
                str(t / "tr"),
            ]
        ),
        "checkpoint: ",
    ),
    (
        "report-a-file",
        lambda t, m: (t / "f.md").write_text("x") and ["report", str(t / "f.md")],
        "is a file; give run folders",
    ),
    (
        "report-out-a-folder",
        lambda t, m: ["report", str(report_root(t)), "--out", str(t)],
        "is a folder; give the report's file",
    ),
    (
        "subset-not-wnids",
        lambda t, m: (
            (t / "s" / "val" / "cats").mkdir(parents=True) is None
            and ["data", "check", "data=imagenet", f"data.root={t / 's'}"]
        ),
        "a class subset needs folders named by ImageNet wnid",
    ),
    (
        "bad-images-check-deep",
        lambda t, m: ["data", "check", "--deep", *folder_data(sample_folder(t, bad=True))],
        "3 unreadable image(s)",
    ),
    (
        "bad-images-eval",
        lambda t, m: ["eval-noise", *ON_FILES, *folder_data(sample_folder(t, bad=True))],
        "3 unreadable image(s)",
    ),
]


@pytest.mark.parametrize(("setup", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_fault_is_one_line_and_exit_2(tmp_path, monkeypatch, setup, expected):
    monkeypatch.setenv("PCNETS_QUIET", "1")  # progress lines are not errors: count errors alone
    argv = setup(tmp_path, monkeypatch)
    result = CliRunner().invoke(app, [str(a) for a in argv])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip() and not is_warning(ln)]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "MARKER").exists()  # no pickle ran
    assert not list(tmp_path.rglob("metrics.csv")) or "report" in argv[0]  # nothing counted


@pytest.mark.slow  # ~5 s alone, but a subprocess start can take 40 s on the busy shared machine
def test_the_subprocess_prints_the_same_line_as_the_in_process_runner(tmp_path):
    argv = ["eval-noise", *TOY, "pc.beta=abc"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pcnets", *argv], capture_output=True, text=True, env=env
    )
    inproc = CliRunner().invoke(app, argv)
    assert proc.returncode == inproc.exit_code == 2
    assert proc.stderr.strip() == inproc.stderr.strip()
    assert len(proc.stderr.strip().splitlines()) == 1


def test_disk_full_keeps_every_finished_cell(tmp_path, monkeypatch):
    out = tmp_path / "full"
    argv = ["eval-noise", *TOY[:-2], "-T", "1", "eval.sigmas=[0.0,0.5]", "--out", str(out)]
    import pcnets.runtime.runs as runs

    real, calls = runs.append_cell, []

    def second_fails(*args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(*args)

    monkeypatch.setattr(runs, "append_cell", second_fails)
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: no space left on device: finished work is saved in {out}; free space and rerun"
    )
    assert len((out / "cells.jsonl").read_text().splitlines()) == 1
    assert json.loads((out / "provenance.json").read_text())["status"] == "failed"


def test_nan_hyperparameters_can_no_longer_produce_an_accuracy():
    pnet = tiny_pnet()
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(PcnetsError, match="finite"):
        pnet.set_hyperparameters(beta=float("nan"))
    n = pnet.num_encoders
    nan = Hyper(torch.full((n,), float("nan")), torch.zeros(n), torch.zeros(n))
    with pytest.raises(PcnetsError, match=r"non-finite values at timestep 1 in encoder 1 \(1\)"):
        pnet.run(x, 2, hyper=nan)
    assert torch.isfinite(pnet.run(x, 2)[-1]).all()  # the net's own hyperparameters are intact


def test_a_locked_folder_is_refused_naming_the_holder(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    child = ctx.Process(target=hold_lock, args=(tmp_path, ready, done))
    child.start()
    try:
        assert ready.wait(30)
        with pytest.raises(PcnetsError, match=f"in use by process {child.pid} on host "):
            Run("eval-noise", compose(["data.limit=5"]), out=tmp_path)
    finally:
        done.set()
        child.join(30)
    Run("eval-noise", compose(["data.limit=5"]), out=tmp_path).finish()  # free once it ended


def test_a_torn_last_line_is_repaired_and_the_next_cell_appends_cleanly(tmp_path):
    cfg = compose(["data.limit=5"])
    run = Run("eval-noise", cfg, out=tmp_path)
    run.record(cell_key(sigma=0.5), [{"sigma": 0.5, "correct": 3}])
    run.finish()
    with open(tmp_path / "cells.jsonl", "a") as fh:
        fh.write('{"cell": "{\\"sigma\\": 1.0}", "ro')
    again = Run("eval-noise", cfg, out=tmp_path)
    assert (tmp_path / "cells.jsonl").read_text().count("\n") == 1  # the torn line is gone
    again.record(cell_key(sigma=1.0), [{"sigma": 1.0, "correct": 2}])
    again.finish()
    third = Run("eval-noise", cfg, out=tmp_path)
    assert third.is_done(cell_key(sigma=1.0)) and third.metrics()["correct"].tolist() == [3, 2]
    third.finish()


@pytest.mark.parametrize(
    ("error", "status"), [(KeyboardInterrupt, "interrupted"), (PcnetsError, "failed")]
)
def test_provenance_says_how_a_run_ended(tmp_path, error, status):
    def command():
        Run("eval-noise", compose(["data.limit=5"]), out=tmp_path)
        raise error("stop")

    with pytest.raises(error):
        failures.guarded(command)
    assert json.loads((tmp_path / "provenance.json").read_text())["status"] == status


def test_a_class_subset_keeps_its_imagenet_labels(tmp_path):
    from pcnets.data import build_dataset

    root = sample_folder(tmp_path, bad=False)
    (root / "val" / "n01443537").rename(root / "val" / "n15075141")  # the last ImageNet class
    dataset = build_dataset(compose(folder_data(root)).data, None)
    assert sorted(dataset.targets) == [0, 999]


def test_skipped_images_are_counted_in_provenance_and_table(tmp_path):
    root = sample_folder(tmp_path, bad=True)
    argv = ["eval-noise", *ON_FILES, "data.on_bad_image=skip", *folder_data(root)]
    result = CliRunner().invoke(app, [*argv, "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    prov = json.loads((tmp_path / "o" / "provenance.json").read_text())
    assert prov["skipped_images"]["count"] == 3
    assert "3 unreadable image(s) were skipped" in (tmp_path / "o" / "table.md").read_text()
    counts = {
        int(t) for t in __import__("pandas").read_csv(tmp_path / "o" / "metrics.csv")["total"]
    }
    assert counts == {2}


def test_report_skips_a_broken_folder_and_keeps_figures_inside(tmp_path):
    root = report_root(tmp_path)
    (root / "a" / "fig.png").write_bytes(b"png")
    prov = json.loads((root / "a" / "provenance.json").read_text())
    (root / "a" / "provenance.json").write_text(json.dumps({**prov, "config_hash": "../../.."}))
    (root / "b").mkdir()
    (root / "b" / "cells.jsonl").write_text("")  # crashed before its first cell
    out = tmp_path / "rep" / "r.md"
    result = CliRunner().invoke(app, ["report", str(root), "--out", str(out), "--copy-figures"])
    assert result.exit_code == 0, result.output
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith(
        f"warning: skipped corrupt run folder {root / 'b'}"
    )
    copied = [p for p in tmp_path.rglob("fig.png") if p.parent != root / "a"]
    assert len(copied) == 1 and (tmp_path / "rep" / "r_figures") in copied[0].parents


def test_sigterm_ends_the_command_as_interrupted_keeping_finished_cells(tmp_path):
    import signal
    import time

    out = tmp_path / "run"
    argv = ["eval-noise", *TOY[:4], "data.size=32", "data.limit=64", "eval.bootstrap=10"]
    argv += ["eval.sigmas=[0,0.5,1,1.5,2,3]", "device=cpu", "-T", "6", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pcnets", *argv], stderr=subprocess.PIPE, text=True, env=env
    )
    cells = out / "cells.jsonl"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if cells.is_file() and cells.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be terminated"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1].startswith("terminated (SIGTERM): finished work is saved")
    assert json.loads((out / "provenance.json").read_text())["status"] == "interrupted"
    done = [json.loads(line) for line in cells.read_text().splitlines()]
    assert 1 <= len(done) < 6  # finished cells kept, the rest left for a rerun
