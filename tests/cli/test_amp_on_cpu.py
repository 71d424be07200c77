"""Every command runs with amp=true on a CPU (bf16 autocast, small inputs, random weights,
synthetic data): the path a GPU takes by default, exercised where CI runs (issue 24 item 12)."""

from __future__ import annotations

import json

import pytest
from helpers import data_dir
from typer.testing import CliRunner

from pcnets.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")

NET = ["backbone=resnet18", "backbone.pretrained=false", "backbone.probe_size=32", "device=cpu"]
DATA = ["data=synthetic", "data.size=32", "data.limit=4"]
COMMANDS = {
    "eval-noise": [*DATA, "eval.sigmas=[0.0,0.2]", "eval.bootstrap=10", "-T", "2"],
    "eval-corruptions": [
        "data=imagenet_sample",
        "data.limit=2",
        "corruptions.names=[gaussian_noise]",
        "corruptions.severities=[1]",
        "corruptions.size=32",
        "eval.bootstrap=10",
        "-T",
        "1",
    ],
    "attack": [
        *DATA,
        "attack=fgsm",
        "attack.select=any",
        "attack.num_images=2",
        "attack.eps=[0.01]",
        "attack.timesteps=[1]",
        "attack.checks.num_images=1",
        "attack.allow_suspect=true",
    ],
    "tune": [*DATA, "tune.steps=2", "tune.batch_size=2", "tune.sigmas=[0.1]", "--timesteps", "1"],
    "manifold": [*DATA, "manifold.sigmas=[0.5]", "manifold.timesteps=1", "manifold.n_resamples=5"],
    "train-feedback": [*DATA[:2], "data.limit=8", "train=sgd", "train.epochs=1"]
    + ["train.batch_size=4", "train.val_fraction=0.5"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_runs_with_amp_on_a_cpu(command, tmp_path, monkeypatch):
    monkeypatch.setenv("PCNETS_QUIET", "1")
    sample = data_dir() / "imagenet-sample"
    if command == "eval-corruptions" and not (sample / "val").is_dir():
        pytest.skip("the ImageNet sample is not available (set PCNETS_DATA_DIR)")
    monkeypatch.setenv("PCNETS_DATA_DIR", str(sample.parent))
    out = tmp_path / "run"
    args = [command, *NET, *COMMANDS[command], "amp=true", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["status"] in ("finished", "suspect")
    assert prov["numerics"].startswith("bf16")  # the run really went through bf16 autocast
    assert (out / "metrics.csv").stat().st_size > 0
