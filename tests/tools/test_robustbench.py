"""RobustBench (the real package): its clean_accuracy on pcnets.classifier equals pcnets' own
accuracy at every timestep, and `pcnets export robustbench` writes its ModelInfo fields.

robustbench 1.1.1 from PyPI imports `autoattack`, the module its dependency pyautoattack ships
as `pyautoattack` (the same code, renamed on PyPI), and pkg_resources (setuptools < 81): the
alias below is the one line that makes the published package importable offline."""

from __future__ import annotations

import dataclasses
import json
import sys

import pandas as pd
import pytest
import torch
from toy_images import labelled_net
from typer.testing import CliRunner

import pcnets
from pcnets.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")


def robustbench_utils():
    import pyautoattack
    import pyautoattack.state

    sys.modules.setdefault("autoattack", pyautoattack)
    sys.modules.setdefault("autoattack.state", pyautoattack.state)
    import robustbench.utils

    return robustbench.utils


class Tensors(torch.utils.data.Dataset):
    """In-memory [0, 1] images with labels and keys, as pcnets datasets have them."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.targets = images, labels.tolist()
        self.keys = [f"img{i:03d}" for i in range(len(labels))]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        return self.images[i], self.targets[i]


def test_robustbench_clean_accuracy_equals_pcnets_accuracy_at_every_timestep(tmp_path):
    from pcnets.config import compose
    from pcnets.experiments.eval_noise import run as eval_noise

    utils = robustbench_utils()
    pnet, x, labels = labelled_net(24)
    T = 3
    cfg = compose(
        ["data=synthetic", "eval.sigmas=[0]", f"pc.timesteps={T}", "eval.bootstrap=20"]
        + ["device=cpu", f"out={tmp_path}"],
        "eval-noise",
    )
    # pcnets' accuracy: the eval-noise command's cells (sigma 0) on the same images
    result = eval_noise(cfg, pnet=pnet, dataset=Tensors(x, labels), progress=False)
    ours = result.metrics.sort_values("timestep")["accuracy"].tolist()
    theirs = [
        utils.clean_accuracy(pcnets.classifier(pnet, t), x, labels, batch_size=8)
        for t in range(T + 1)
    ]
    assert theirs == pytest.approx(ours, abs=1e-12)
    assert len(set(ours)) > 1 and 0 < min(ours) and max(ours) < 1  # a comparison that can fail
    bad = CliRunner().invoke(app, ["export", "robustbench", str(tmp_path)])
    assert bad.exit_code == 2 and "holds a `eval-noise` run" in bad.output


def test_export_robustbench_writes_its_model_info_fields_from_an_eval_corruptions_run(
    tmp_path, sample_root, monkeypatch
):
    from pcnets.config import compose
    from pcnets.experiments.eval_corruptions import run as eval_corruptions

    utils = robustbench_utils()
    monkeypatch.setenv("PCNETS_DATA_DIR", str(sample_root.parent))
    cfg = compose(
        ["data.split=all", "data.limit=4", "data.workers=0", "corruptions.size=32"]
        + ["corruptions.names=[gaussian_noise,fog,speckle_noise]", "corruptions.severities=[1,2]"]
        + ["pc.timesteps=2", "eval.bootstrap=20", "device=cpu", f"out={tmp_path / 'run'}"],
        "eval-corruptions",
    )
    run = eval_corruptions(cfg, labelled_net(4)[0], progress=False).path
    res = CliRunner().invoke(app, ["export", "robustbench", str(run), "--name", "PC-tiny"])
    assert res.exit_code == 0, res.output
    info = json.loads((run / "robustbench.json").read_text())
    fields = {f.name for f in dataclasses.fields(utils.ModelInfo)}
    # RobustBench's own fields (the installed ModelInfo's; builds of 1.1.1 differ in the mCE and
    # 3D-corruption fields), plus pcnets' details
    assert fields <= set(info)
    assert set(info) - fields <= {
        "pcnets",
        "corruptions_mce",
        "corruptions_acc_3d",
        "corruptions_mce_3d",
    }
    model = utils.ModelInfo(**{k: info[k] for k in fields})
    assert (model.name, model.dataset, model.number_forward_passes) == ("PC-tiny", "imagenet", 3)
    assert "exclude" in model.footnote and "optimisation loop" in model.footnote
    m = pd.read_csv(run / "metrics.csv")
    last = m[(m["timestep"] == 2) & m["corruption"].isin(["gaussian_noise", "fog"])]
    assert float(model.corruptions_acc) == round(
        100 * last["accuracy"].mean(), 2
    )  # benchmark 15 only
    cell = m[(m["corruption"] == "speckle_noise") & (m["severity"] == 2) & (m["timestep"] == 1)]
    assert info["pcnets"]["accuracy"]["speckle_noise"]["2"]["1"] == str(
        round(100 * float(cell["accuracy"].iloc[0]), 2)
    )
    assert (
        info["pcnets"]["numerics"].startswith("fp32") and info["pcnets"]["decoders"] == "untrained"
    )
    assert sorted(info["pcnets"]["corruptions_acc_per_timestep"]) == ["0", "1", "2"]
