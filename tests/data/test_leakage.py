"""No silent leakage: decoders record the images that trained them, and evaluating on any of
those images is a one-line error that names the split to use."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from pcnets.backbones import pnet_from_config
from pcnets.cli import app
from pcnets.config import compose
from pcnets.data import check_unseen, data_origin
from pcnets.errors import PcnetsError

NET = ["backbone=efficientnet_lite0", "backbone.pretrained=false", "backbone.probe_size=32"]


@pytest.fixture
def sample(sample_root, monkeypatch):
    monkeypatch.setenv("PCNETS_DATA_DIR", str(sample_root.parent))
    return sample_root


def test_the_record_names_folder_and_half(sample):
    cfg = compose(["data=imagenet_sample"]).data
    origin = data_origin(cfg, "train")
    assert origin["root"] == str(sample.resolve()) and origin["folder"] == "val"
    assert origin["half"] == "decoders" and origin["url"].startswith("https://")
    assert data_origin(cfg, "val")["half"] == "eval"
    assert data_origin(compose(["data=synthetic"]).data) == {"kind": "synthetic", "half": "all"}


def test_only_the_other_half_of_the_same_images_may_be_evaluated(sample, tmp_path):
    trained = data_origin(compose(["data=imagenet_sample"]).data, "train")
    check_unseen(trained, compose(["data=imagenet_sample"]).data, "val", "D")  # eval half: fine
    check_unseen(None, compose(["data=imagenet_sample", "data.split=all"]).data, "val", "D")
    for split in ("all", "decoders"):
        data = compose(["data=imagenet_sample", f"data.split={split}"]).data
        with pytest.raises(PcnetsError, match=r"evaluate with data\.split=eval$") as err:
            check_unseen(trained, data, "val", "D")
        where = (sample / "val").resolve()
        assert f"D was trained on the decoders half of {where}" in str(err.value)
    moved = {**trained, "root": str(tmp_path)}  # a copy elsewhere: the same sample by its url
    with pytest.raises(PcnetsError, match="data.split=eval"):
        check_unseen(moved, compose(["data=imagenet_sample", "data.split=all"]).data, "val", "D")
    everything = {**trained, "half": "all"}
    with pytest.raises(PcnetsError, match="trained on every image of"):
        check_unseen(everything, compose(["data=imagenet_sample"]).data, "val", "D")
    other = {**trained, "root": str(tmp_path), "url": None}
    check_unseen(other, compose(["data=imagenet_sample", "data.split=all"]).data, "val", "D")


def test_evaluation_commands_refuse_decoders_trained_on_their_images(sample, tmp_path):
    cfg = compose([*NET, "data=imagenet_sample"])
    pnet = pnet_from_config(cfg)
    path = tmp_path / "decoders.pt"
    pnet.save_decoders(path, data=data_origin(cfg.data, "train"))
    assert torch.load(path, weights_only=False)["data"]["half"] == "decoders"
    ok = pnet_from_config(compose([*NET, "data=imagenet_sample", f"pc.decoders={path}"]))
    assert ok.decoders_trained_on["half"] == "decoders"
    leaky = compose([*NET, "data=imagenet_sample", "data.split=all", f"pc.decoders={path}"])
    with pytest.raises(PcnetsError, match="data.split=eval"):
        pnet_from_config(leaky)
    assert pnet_from_config(leaky, evaluates=None).num_encoders == 8  # training reads its half
    result = CliRunner().invoke(
        app, ["eval-noise", *NET, "data.split=all", f"pc.decoders={path}", "--out", str(tmp_path)]
    )
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "Traceback" not in result.output
    assert errors[0].startswith(f"error: pc.decoders={path} was trained on the decoders half")


def test_generic_backbone_without_arch_is_one_line():
    for args in (["backbone=generic"], ["backbone=generic", "backbone.arch=resnet18"]):
        result = CliRunner().invoke(app, ["eval-noise", *args, "data=synthetic", "--out", "x"])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert "backbone.encoders" in lines[0] and "backbone=generic needs" in lines[0]
    with pytest.raises(PcnetsError, match=r"^backbone: backbone\.arch, backbone\.encoders not"):
        pnet_from_config(compose(["backbone=generic", "data=synthetic"]))
