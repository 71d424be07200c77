"""Sweeps across runs through Hydra's multirun: each job an ordinary, resumable run folder, one
report across the jobs; the basic launcher in-process, submitit_local as separate processes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import REPO
from typer.testing import CliRunner

from pcnets.cli import app

# About two seconds a job: random ResNet-18, four 32-pixel synthetic images, t = 0..1.
TOY = [
    "data=synthetic",
    "data.num_images=4",
    "data.size=32",
    "data.batch_size=4",
    "backbone=resnet18",
    "backbone.pretrained=false",
    "eval.sigmas=[0]",
    "eval.bootstrap=10",
    "device=cpu",
]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch, one_thread):
    """Each test in its own folder; undo the logging set-up an in-process sweep leaves."""
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield tmp_path
    assert Path(os.getcwd()) == tmp_path  # no job changed the folder
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def job(folder: Path) -> tuple[dict, dict]:
    """(config.yaml, provenance.json) of one job's run folder."""
    config = yaml.safe_load((folder / "config.yaml").read_text())
    return config, json.loads((folder / "provenance.json").read_text())


def test_a_basic_sweep_runs_one_run_folder_per_job_resumably_and_reports_them(in_tmp):
    args = ["eval-noise", "-m", *TOY, "seed=0,1", "-T", "1", "--out", "sw"]
    res = cli(*args)
    assert res.exit_code == 0, res.output
    sweep = in_tmp / "sw"
    assert f"2 jobs in {sweep}" in res.stdout
    for num in (0, 1):
        config, prov = job(sweep / str(num))
        assert (config["seed"], config["pc"]["timesteps"], config["out"]) == (
            num,
            1,
            str(sweep / str(num)),
        )
        assert prov["status"] == "finished" and prov["command"] == "eval-noise"
        assert f"#{num} {sweep / str(num)}  seed={num}" in res.stdout
        assert len(pd.read_csv(sweep / str(num) / "metrics.csv")) == 2  # t = 0, 1
    assert (sweep / "multirun.yaml").is_file()
    again = cli(*args)  # the same sweep again: every job resumes its folder, nothing is redone
    assert again.exit_code == 0, again.output
    assert [len(job(sweep / n)[1]["sessions"]) for n in "01"] == [2, 2]
    report = cli("report", str(sweep), "--out", str(in_tmp / "report.md"))
    assert report.exit_code == 0 and "(2 run folders)" in report.stdout, report.output
    text = (in_tmp / "report.md").read_text()  # one table across the jobs
    # a job is named with its sweep: job numbers alone repeat across sweeps
    assert "| resnet18 sw/0 | 0 | 4 |" in text and "| resnet18 sw/1 | 0 | 4 |" in text
    assert "| sw/0 |" in text and "| sw/1 |" in text


def test_a_sweep_that_does_not_compose_runs_no_job(in_tmp):
    res = cli("eval-noise", "-m", *TOY, "pc.timesteps=1,abc", "--out", "sw")
    assert res.exit_code == 2
    assert res.stderr.startswith("error: bad config value pc.timesteps: Value 'abc'")
    assert res.stderr.count("\n") == 1 and not (in_tmp / "sw").exists()


def test_a_failed_job_fails_the_sweep_after_the_others_ran(in_tmp):
    res = cli("eval-noise", "-m", *TOY, "-T", "1", "pc.decoders=missing.pt,null", "--out", "sw")
    assert res.exit_code == 2, res.output
    assert "#0 " in res.stdout and "failed: " in res.stdout and "missing.pt" in res.stdout
    assert "error: 1 of 2 jobs failed (#0)" in res.stderr and "--out" in res.stderr
    assert job(in_tmp / "sw" / "1")[1]["status"] == "finished"


def test_a_submitit_slurm_sweep_composes_with_its_options_and_submits_nothing(in_tmp):
    res = cli(
        "attack",
        "-m",
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.gpus_per_node=4",
        "hydra.launcher.timeout_min=600",
        "seed=range(3)",
        "--cfg",
        "hydra",
    )
    assert res.exit_code == 0, res.output
    launcher = yaml.safe_load(res.stdout)["hydra"]["launcher"]
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert (launcher["partition"], launcher["gpus_per_node"], launcher["timeout_min"]) == (
        "gpu",
        4,
        600,
    )
    assert list(in_tmp.iterdir()) == []


def test_a_joblib_sweep_composes_with_its_options(in_tmp):
    args = ["eval-noise", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1"]
    res = cli(*args, "--cfg", "hydra")
    assert res.exit_code == 0, res.output
    launcher = yaml.safe_load(res.stdout)["hydra"]["launcher"]
    assert launcher["_target_"].endswith("JoblibLauncher") and launcher["n_jobs"] == 2
    assert list(in_tmp.iterdir()) == []


@pytest.mark.slow  # about a minute on a busy 2-core machine: three processes import torch
def test_a_submitit_local_sweep_runs_each_job_in_its_own_process(in_tmp):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pcnets", "eval-noise", "-m", "hydra/launcher=submitit_local"]
    cmd += ["hydra.launcher.timeout_min=5", *TOY, "seed=0,1", "-T", "1", "--out", "sw"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    sweep = in_tmp / "sw"
    assert f"2 jobs in {sweep}" in res.stdout
    assert [job(sweep / n)[0]["seed"] for n in "01"] == [0, 1]
    assert [job(sweep / n)[1]["status"] for n in "01"] == ["finished", "finished"]
    logs = sorted(p.name for p in (sweep / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2  # two processes, one log each
