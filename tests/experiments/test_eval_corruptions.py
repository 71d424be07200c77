"""eval-corruptions: a malformed ImageNet-C tree refused before any work, generated and folder
cells that agree, and the tables and figures of a run folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_eval_noise import TIMESTEPS, toy_pnet
from typer.testing import CliRunner

from pcnets.cli import app
from pcnets.config import compose
from pcnets.data.imagenet_c_make import make_imagenet_c
from pcnets.experiments.eval_corruptions import run as eval_corruptions
from pcnets.runtime.cell_images import IMAGES, load_cell_images

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def test_a_malformed_imagenet_c_tree_is_refused_before_any_work(tmp_path, monkeypatch):
    tree = tmp_path / "imagenet-c"
    (tree / "gaussian_noise" / "1" / "n01440764").mkdir(parents=True)
    Image.new("RGB", (40, 40)).save(tree / "gaussian_noise" / "1" / "n01440764" / "a.JPEG")
    (tree / "gaussian_noise" / "2" / "n01440764").mkdir(parents=True)  # empty class folder

    def no_network(*args, **kwargs):
        raise AssertionError("the network was built before the tree was checked")

    monkeypatch.setattr("pcnets.backbones.pnet_from_config", no_network)
    out = tmp_path / "run"
    args = [
        "eval-corruptions",
        "corruptions=folder",
        f"corruptions.root={tree}",
        "corruptions.names=[gaussian_noise,fog]",
        "corruptions.severities=[1,2,3]",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and message.startswith("error: malformed ImageNet-C")
    assert "missing corruption folders: fog" in message
    assert "missing severity folders: gaussian_noise/3" in message
    assert "empty class folders: gaussian_noise/2/n01440764" in message
    assert not out.exists()


def corruption_cfg(out: Path, *extra: str):
    folder = "corruptions=folder" in extra
    return compose(
        [
            *extra,
            "data.split=all",  # 3 images of all of val, the subset make_imagenet_c draws below
            "data.limit=3",
            "data.workers=0",
            "corruptions.names=[gaussian_noise,fog,speckle_noise]",
            "corruptions.severities=[1,2]",
            *([] if folder else ["corruptions.size=32"]),  # the tree below is made at 32 px
            f"pc.timesteps={TIMESTEPS}",
            "eval.bootstrap=200",
            "device=cpu",
            f"out={out}",
        ]
    )


def test_eval_corruptions_generated_and_from_a_folder_agree(tmp_path, sample_root, monkeypatch):
    monkeypatch.setenv("PCNETS_DATA_DIR", str(sample_root.parent))
    generated = eval_corruptions(corruption_cfg(tmp_path / "gen"), toy_pnet(), progress=False)
    df = generated.metrics
    assert list(df.columns) == [
        "run_id",  # the run labels that Run.record puts first
        "backbone",
        "decoders",
        "condition",
        "corruption",
        "severity",
        "timestep",
        "correct",
        "total",
        "accuracy",
    ]
    assert len(df) == 3 * 2 * (TIMESTEPS + 1) and df["total"].eq(3).all()
    table = (generated.path / "table.md").read_text()
    assert "| 0 | 1.000 [1.000, 1.000] | 1.000 [1.000, 1.000] | 1.000 [1.000, 1.000] |" in table
    for name in ("gaussian_noise", "fog", "speckle_noise"):
        assert f"| {name} | " in table
    assert "an approximation of the standard number" in table  # 2 of 5 severities
    assert (generated.path / "mce.png").is_file() and (generated.path / "corruptions.png").is_file()
    terms = pd.read_csv(generated.path / "terms.csv")  # per corruption x severity cell
    assert len(terms.drop_duplicates(["corruption", "severity"])) == 3 * 2
    assert len(terms) == 3 * 2 * toy_pnet().num_encoders * 4 * TIMESTEPS
    assert set(terms["images"]) == {3} and "alpha * g is" in table
    summary = pd.read_csv(generated.path / "summary.csv")  # pooled over the severities
    ratio = summary[summary["metric"] == "term_ratio"]
    assert sorted(set(ratio["corruption"])) == ["fog", "gaussian_noise", "speckle_noise"]
    assert set(ratio["n"]) == {6}

    tree = tmp_path / "tree"
    make_imagenet_c(
        sample_root / "val",
        tree,
        names="gaussian_noise,fog,speckle_noise",
        severities=[1, 2],
        workers=0,
        size=32,
        limit=3,
        progress=False,
    )
    cfg = corruption_cfg(tmp_path / "folder", "corruptions=folder", f"corruptions.root={tree}")
    folder = eval_corruptions(cfg, toy_pnet(), progress=False)
    assert folder.metrics["run_id"].iloc[0] != df["run_id"].iloc[0]  # two configs, two runs
    assert folder.metrics.drop(columns="run_id").equals(df.drop(columns="run_id"))
    a = load_cell_images(generated.path / IMAGES / "fog_2.npz")
    b = load_cell_images(folder.path / IMAGES / "fog_2.npz")
    assert a[0] == b[0] and a[1].tolist() == b[1].tolist() and np.array_equal(a[2], b[2])
    # a seeded stratified draw of 3 classes (not the first three), labelled as in ImageNet
    assert len(set(a[1].tolist())) == 3 and a[1].tolist() != [0, 1, 2]
    assert all(k.split("/")[-1].startswith(k.split("/")[-2]) for k in a[0])  # wnid/wnid_*.JPEG
