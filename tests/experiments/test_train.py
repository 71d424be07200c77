"""Feedback training: only the decoders learn, runs resume exactly, K processes = one process,
bad input is one line; and the authors' decoder files import tensor for tensor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import tiny_pnet, torchrun
from typer.testing import CliRunner

from pcnets import build_pnet
from pcnets.cli import app
from pcnets.config import compose
from pcnets.errors import PcnetsError
from pcnets.experiments.import_decoders import decoder_number
from pcnets.experiments.train import (
    CHECKPOINT,
    StopRequest,
    TrainingInterrupted,
    in_holdout,
    train_feedback,
)

REPO = Path(__file__).resolve().parents[2]
# A real registry backbone (random weights), small enough for the command line.
LITE = [
    "backbone=efficientnet_lite0",
    "backbone.pretrained=false",
    "backbone.probe_size=32",
    "data=synthetic",
    "data.size=32",
]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def tiny_cfg(out: Path, *extra: str):
    """The tiny test net's training: 24 synthetic 8-px images, 6 of them held out, batch 4."""
    return compose(
        [
            "data=synthetic",
            "data.size=8",
            "data.num_images=24",
            "train=sgd",
            "train.epochs=3",
            "train.batch_size=4",
            "train.lr=0.05",
            "train.val_fraction=0.25",
            f"out={out}",
            *extra,
        ]
    )


def decoder_tensors(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["decoders"]


def test_training_lowers_every_decoder_error_and_leaves_the_backbone_alone(tmp_path):
    pnet = build_pnet("efficientnet_lite0", pretrained=False, probe_size=32)
    backbone = {k: v.clone() for k, v in pnet.backbone.state_dict().items()}
    initial = {k: v.clone() for k, v in pnet.decoders.state_dict().items()}
    cfg = compose(
        [*LITE, "data.num_images=24", "train=demo", "train.solver=sgd", "train.epochs=2"]
        + ["train.optimizer=adam"]
    )
    cfg.train.update(batch_size=8, val_fraction=0.25, max_images=None, lr=0.01, val_max=None)
    cfg.out = str(tmp_path)
    path = train_feedback(cfg, pnet=pnet)

    after = pnet.backbone.state_dict()
    assert any("running_var" in k for k in after)  # the BN buffers are compared too
    assert all(torch.equal(backbone[k], after[k]) for k in backbone)
    assert not any(p.requires_grad for p in pnet.backbone.parameters())
    saved = decoder_tensors(path)
    assert all(torch.equal(saved[k], v) for k, v in pnet.decoders.state_dict().items())
    # what trained them, for the leakage check of the evaluations
    assert torch.load(path, weights_only=False)["data"] == {"kind": "synthetic", "half": "all"}
    assert not torch.equal(saved["0.1.weight"], initial["0.1.weight"])

    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert len(metrics) == 8 * (3 + 2)  # val at epochs 0..2, train at epochs 1..2
    val = metrics[metrics["split"] == "val"].pivot(index="decoder", columns="epoch", values="mse")
    assert (val[2] < val[0]).all(), val
    assert "| 8 | blocks.6 |" in (tmp_path / "table.md").read_text()
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    loaded = build_pnet("efficientnet_lite0", pretrained=False, probe_size=32, decoders=str(path))
    assert torch.equal(loaded.decoders[7][0].weight, pnet.decoders[7][0].weight)


def test_an_interrupted_run_resumes_mid_epoch_to_the_same_weights(tmp_path):
    straight = train_feedback(tiny_cfg(tmp_path / "a"), pnet=tiny_pnet())
    cfg = tiny_cfg(tmp_path / "b")
    with pytest.raises(TrainingInterrupted, match="epoch 2 after batch 2/5"):
        train_feedback(cfg, pnet=tiny_pnet(), stop_after=7)  # 5 batches per epoch
    ckpt = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=False)
    assert (ckpt["epoch"], ckpt["step"], sorted(ckpt["history"])) == (1, 2, [0, 1])
    resumed = train_feedback(cfg, pnet=tiny_pnet())

    a, b = decoder_tensors(straight), decoder_tensors(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = (
        pd.read_csv(tmp_path / "a" / "metrics.csv"),
        pd.read_csv(tmp_path / "b" / "metrics.csv"),
    )
    pd.testing.assert_frame_equal(ma, mb)  # the resumed epoch's train mean included
    again = train_feedback(cfg, pnet=tiny_pnet())  # finished: nothing is trained again
    assert all(torch.equal(b[k], v) for k, v in decoder_tensors(again).items())
    assert len(pd.read_csv(tmp_path / "b" / "metrics.csv")) == len(mb)


def test_a_checkpoint_of_another_network_is_refused(tmp_path):
    cfg = tiny_cfg(tmp_path)
    with pytest.raises(TrainingInterrupted):
        train_feedback(cfg, pnet=tiny_pnet(), stop_after=1)
    other = tiny_pnet()
    other.name = "tiny-other"
    with pytest.raises(PcnetsError, match="checkpoint of backbone 'tiny'.*choose another --out"):
        train_feedback(cfg, pnet=other)


def test_signals_only_request_a_stop_while_training():
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN under nohup, Python's handler otherwise
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.agreed()
    assert signal.getsignal(signal.SIGINT) is before  # the handler it found is back
    assert not StopRequest().agreed()


def test_holdout_is_a_fixed_fraction_chosen_by_id():
    keys = [f"val/n{i:08d}/img{i}.JPEG" for i in range(4000)]
    held = [k for k in keys if in_holdout(k, 0.15)]
    assert 0.13 < len(held) / len(keys) < 0.17
    assert held == [k for k in reversed(keys) if in_holdout(k, 0.15)][::-1]
    assert set(held) <= {k for k in keys if in_holdout(k, 0.3)}


def test_the_sample_trains_on_its_decoders_half_only(sample_root, monkeypatch):
    from pcnets.data import hash_split
    from pcnets.experiments.train import training_data

    monkeypatch.setenv("PCNETS_DATA_DIR", str(sample_root.parent))
    cfg = compose(["data=imagenet_sample", "train=demo"])  # the default data.split is eval
    train_ds, train_idx, val_ds, val_idx = training_data(cfg, None)
    assert val_ds is train_ds and not set(train_idx) & set(val_idx)
    keys = [train_ds.keys[i] for i in train_idx + val_idx]
    assert {hash_split(Path(k).name) for k in keys} == {"decoders"}
    # the demo trains on the whole decoders half (515 images), ~15 % of it held out
    assert (len(train_idx), len(val_idx)) == (431, 84)


def test_two_torchrun_processes_train_like_one(tmp_path):
    args = [*LITE, "data.num_images=24", "train=sgd", "train.lr=0.01", "train.batch_size=8"]
    args += ["train.val_fraction=0.25", "train.max_images=16", "train.epochs=2"]
    cmd = ["-m", "pcnets", "train-feedback", *args, "--out", tmp_path / "two"]
    proc = torchrun(cmd, cwd=tmp_path, timeout=150)
    assert proc.stdout.count("decoders:") == 1  # only rank 0 reports
    one = train_feedback(compose([*args, f"out={tmp_path / 'one'}"]))

    a, b = decoder_tensors(tmp_path / "two" / "decoders.pt"), decoder_tensors(one)
    assert any(not torch.equal(a[k], torch.zeros_like(a[k])) for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0)
    ma, mb = (
        pd.read_csv(tmp_path / "two" / "metrics.csv"),
        pd.read_csv(tmp_path / "one" / "metrics.csv"),
    )
    assert (ma["images"] == mb["images"]).all()
    assert set(ma.loc[ma["split"] == "train", "images"]) == {16}
    assert ma["mse"].to_numpy() == pytest.approx(mb["mse"].to_numpy(), rel=1e-5)


def run_cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output.strip().splitlines()


def test_cli_stops_with_one_line_and_resumes(tmp_path, monkeypatch):
    args = ["train-feedback", *LITE, "data.num_images=16", "train=sgd", "train.batch_size=4"]
    args += ["train.val_fraction=0.25", "--epochs", "2", "--out", str(tmp_path)]
    monkeypatch.setattr(StopRequest, "count_step", lambda self: setattr(self, "requested", True))
    code, lines = run_cli(*args)
    assert code == 130 and lines[-1].startswith("interrupted in epoch 1 after batch 1/")
    monkeypatch.undo()
    code, lines = run_cli(*args)
    assert code == 0 and lines[-1] == f"decoders: {tmp_path / 'decoders.pt'}"
    assert sorted(pd.read_csv(tmp_path / "metrics.csv")["epoch"].unique()) == [0, 1, 2]


def test_cli_errors_are_one_line(tmp_path):
    code, lines = run_cli("train-feedback", "data=imagenet", f"data.root={tmp_path / 'nowhere'}")
    assert code == 2 and len(lines) == 1 and "data folder not found" in lines[0]
    tiny_file = tmp_path / "tiny.pt"
    tiny_pnet().save_decoders(tiny_file)
    code, lines = run_cli("train-feedback", *LITE, f"pc.decoders={tiny_file}", "--out", "x")
    assert code == 2 and len(lines) == 1
    assert "decoders for backbone 'tiny'" in lines[0] and "not 'efficientnet_lite0'" in lines[0]
    code, lines = run_cli("train-feedback", *LITE, "train.optimizer=adm", "--out", "x")
    assert code == 2 and len(lines) == 1 and "did you mean: adam" in lines[0]


# ---- import-decoders --------------------------------------------------------------------------


def authors_files(folder: Path, pnet, style: str) -> dict[int, dict[str, torch.Tensor]]:
    """Random decoder weights saved as the authors ship them; returns them by decoder number."""
    folder.mkdir()
    torch.manual_seed(3)
    weights = {}
    for n, dec in enumerate(pnet.decoders, start=1):
        state = {k: torch.randn_like(v) for k, v in dec.state_dict().items()}
        weights[n] = state
        if style == "pvgg16":  # the pmodule's own state dict
            torch.save(state, folder / f"pvgg16_imagenet_pretrained_pc{n}_pmodule.pth")
        else:  # a training checkpoint; keys renumbered as if the Upsample were not counted
            theirs = {f"pmodule.0.{k.rsplit('.', 1)[1]}": v for k, v in state.items()}
            ckpt = {"pcoderweights": theirs, "optimizer": {"state": {}}, "epoch": 9}
            torch.save(ckpt, folder / f"pnet_pretrained_pc{n}_009.pth")
    return weights


@pytest.mark.parametrize("style", ["pvgg16", "peffb0"])
def test_import_decoders_round_trip(tmp_path, style):
    pnet = build_pnet("efficientnet_lite0", pretrained=False, probe_size=32)
    weights = authors_files(tmp_path / "src", pnet, style)
    out = tmp_path / "imported.pt"
    code, lines = run_cli(
        "import-decoders", "--backbone", "efficientnet_lite0", "--src", str(tmp_path / "src"),
        "--out", str(out), "backbone.probe_size=32",
    )  # fmt: skip
    assert code == 0 and lines[-1] == f"decoders: {out}", lines
    loaded = build_pnet("efficientnet_lite0", pretrained=False, probe_size=32, decoders=str(out))
    for n, state in weights.items():
        ours = loaded.decoders[n - 1].state_dict()
        assert all(torch.equal(ours[k], v) for k, v in state.items())


def test_import_decoders_errors(tmp_path):
    pnet = build_pnet("efficientnet_lite0", pretrained=False, probe_size=32)
    authors_files(tmp_path / "src", pnet, "pvgg16")
    base = ["import-decoders", "--backbone", "efficientnet_lite0", "--out", str(tmp_path / "o.pt")]
    files = sorted((tmp_path / "src").iterdir(), key=decoder_number)
    code, lines = run_cli(*base, *[a for f in files[:-1] for a in ("--src", str(f))])
    assert code == 2 and len(lines) == 1 and "missing [8]" in lines[0]
    code, lines = run_cli(*base, "--backbone", "vgg16", "--src", str(tmp_path / "src"))
    assert code == 2 and len(lines) == 1 and "missing none, unexpected [6, 7, 8]" in lines[0]
    bad = torch.load(files[2], weights_only=True)
    bad["1.weight"] = bad["1.weight"][:, :5]
    torch.save(bad, files[2])
    code, lines = run_cli(*base, "--src", str(tmp_path / "src"))
    assert code == 2 and len(lines) == 1 and "decoder 3, blocks.1" in lines[0]
    assert "holds [1.weight (24, 5, 3, 3)" in lines[0]
    assert "needs [1.weight (24, 16, 3, 3), 1.bias (16,)]" in lines[0]
    assert not (tmp_path / "o.pt").exists()


@pytest.mark.slow
def test_import_pvgg16_files(tmp_path):
    pnet = build_pnet("vgg16", pretrained=False)
    weights = authors_files(tmp_path / "src", pnet, "pvgg16")
    out = tmp_path / "pvgg16.pt"
    code, _ = run_cli(
        "import-decoders", "--backbone", "vgg16", "--src", str(tmp_path / "src"), "--out", str(out)
    )
    assert code == 0
    pnet.load_decoders(out)
    for n, state in weights.items():
        assert all(torch.equal(pnet.decoders[n - 1].state_dict()[k], v) for k, v in state.items())


@pytest.mark.slow
def test_sigint_to_the_command_saves_and_the_rerun_finishes_the_same(tmp_path):
    args = [*LITE, "data.num_images=64", "train=sgd", "train.batch_size=4", "train.epochs=3"]
    args += ["train.val_fraction=0.25"]
    cmd = [sys.executable, "-m", "pcnets", "train-feedback", *args, "--out", str(tmp_path / "b")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    ckpt = tmp_path / "b" / CHECKPOINT
    while not ckpt.exists() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err.strip().splitlines()[-1]
    assert subprocess.run(cmd, env=env, capture_output=True, timeout=300).returncode == 0
    straight = train_feedback(compose([*args, f"out={tmp_path / 'a'}"]))
    a, b = decoder_tensors(straight), decoder_tensors(tmp_path / "b" / "decoders.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)


def test_bf16_autocast_trains_float32_decoders_to_nearly_the_same_errors(tmp_path):
    errors = {}
    for amp in ("false", "true"):
        pnet = tiny_pnet()
        train_feedback(tiny_cfg(tmp_path / amp, f"amp={amp}"), pnet=pnet)
        assert all(p.dtype == torch.float32 for p in pnet.decoders.parameters())
        metrics = pd.read_csv(tmp_path / amp / "metrics.csv")
        errors[amp] = metrics[metrics["split"] == "val"].groupby("epoch")["mse"].sum().to_numpy()
    assert errors["true"] == pytest.approx(errors["false"], rel=1e-2)
    assert errors["true"][-1] < 0.9 * errors["true"][0]
