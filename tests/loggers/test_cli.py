"""Loggers from the command line: train-feedback's per-epoch hook through the CLI, and the
one-line errors for a logger that is unknown or whose package is not installed."""

from __future__ import annotations

import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from pcnets.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")

LITE = [
    "backbone=efficientnet_lite0",
    "backbone.pretrained=false",
    "backbone.probe_size=32",
    "data=synthetic",
    "data.size=32",
    "data.num_images=16",
    "train=sgd",
    "train.batch_size=4",
    "train.val_fraction=0.25",
]


def test_train_feedback_logs_each_epoch_and_its_summary_to_csv(tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(
        app, ["train-feedback", *LITE, "--epochs", "2", "--out", str(out), "logger=csv"]
    )
    assert res.exit_code == 0, res.output
    (folder,) = (out / "csv").iterdir()
    scalars = pd.read_csv(folder / "scalars.csv")
    metrics = pd.read_csv(out / "metrics.csv")
    val = metrics[metrics["split"] == "val"]
    for row in val.itertuples():
        got = scalars[(scalars["key"] == f"r2/{row.encoder}/val") & (scalars["step"] == row.epoch)]
        assert got["value"].tolist() == pytest.approx([row.r2])
    assert sorted(scalars["step"].dropna().unique()) == [0, 1, 2]
    summary = pd.read_csv(out / "summary.csv")
    best = scalars.set_index("key")["value"]
    for row in summary.itertuples():
        assert best[f"r2_best/{row.encoder}"] == pytest.approx(row.r2_best)


def test_an_unknown_logger_or_a_missing_package_is_one_line_before_any_work(tmp_path, monkeypatch):
    out = tmp_path / "run"
    args = ["eval-noise", "data=synthetic", "data.num_images=4", "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "logger.backends=[tensorbord]"])
    assert res.exit_code == 2
    assert res.output.strip() == (
        "error: logger.backends: unknown logger 'tensorbord'; choose from csv, tensorboard, "
        "mlflow, wandb"
    )
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if W&B were not installed
    res = CliRunner().invoke(app, [*args, "logger=wandb"])
    assert res.exit_code == 2
    assert res.output.strip() == (
        "error: logger wandb needs the wandb package: pip install 'pcnets[wandb]'"
    )
    assert not out.exists()
