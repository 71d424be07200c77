"""Decoder quality and the solvers of train-feedback: held-out R^2 by hand, the ridge fit against
a known decoder and against the optimizer loop, R^2 in the decoder file and the loading warning,
early stopping that keeps the best decoders, and the speed numbers of a run."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from helpers import tiny_backbone, tiny_pnet
from torch import nn

from pcnets.backbones.registry import apply_pc_config
from pcnets.config import compose
from pcnets.core.decoders import DecoderSpec, build_decoder
from pcnets.core.pnet import PredictiveNet
from pcnets.errors import PcnetsError
from pcnets.experiments.train import train_feedback
from pcnets.experiments.train.data import flip_crop
from pcnets.experiments.train.linear import linear_parts, to_matrix
from pcnets.experiments.train.lstsq import LeastSquares
from pcnets.experiments.train.quality import Explained

pytestmark = pytest.mark.usefixtures("one_thread")


def linear_pnet() -> PredictiveNet:
    """The tiny test net with linear decoders only ([Up] -> ConvT k3 s1 p1), as EfficientNet's."""
    specs = [DecoderSpec(4, 3), DecoderSpec(6, 4, upsample=2), DecoderSpec(8, 6, upsample=2)]
    torch.manual_seed(1)
    decoders = [build_decoder(s) for s in specs]
    return PredictiveNet(
        tiny_backbone(),
        ["1", "4", "7"],
        decoders,
        [0.4, 0.5, 0.6],
        [0.2, 0.25, 0.3],
        name="tiny-linear",
        probe_size=8,
    )


def cfg_for(out, *extra: str):
    """48 synthetic 8-px images, a quarter held out, batch 4."""
    return compose(
        [
            "data=synthetic",
            "data.size=8",
            "data.num_images=48",
            "train=sgd",
            "train.batch_size=4",
            "train.val_fraction=0.25",
            "train.cache_features=true",
            f"out={out}",
            *extra,
        ]
    )


def val_rows(folder, epoch=None) -> pd.DataFrame:
    m = pd.read_csv(folder / "metrics.csv")
    m = m[m["split"] == "val"]
    return m[m["epoch"] == (m["epoch"].max() if epoch is None else epoch)].set_index("decoder")


def test_r2_is_one_minus_sse_over_the_per_channel_variance():
    # channel 0: y = 1 3 | 5 7 (mean 4, SST 20), prediction 2 3 | 5 6 (SSE 2);
    # channel 1: y = 10 10 | 12 12 (mean 11, SST 4), predicted exactly. R^2 = 1 - 2 / 24.
    y = torch.tensor([[[[1.0, 3.0]], [[10.0, 10.0]]], [[[5.0, 7.0]], [[12.0, 12.0]]]])
    p = y.clone()
    p[0, 0, 0, 0], p[1, 0, 0, 1] = 2.0, 6.0
    whole, parts = Explained(2), Explained(2)
    whole.add(p, y)
    parts.add(p[:1], y[:1])
    parts.add(p[1:], y[1:])
    assert whole.r2() == pytest.approx(1 - 2 / 24, abs=1e-12)
    assert parts.r2() == pytest.approx(1 - 2 / 24, abs=1e-12)  # batches add up to the union
    assert whole.mse() == pytest.approx(2 / 8)


def test_lstsq_recovers_a_known_linear_decoder():
    torch.manual_seed(0)
    true = build_decoder(DecoderSpec(6, 3, upsample=2))
    fit = build_decoder(DecoderSpec(6, 3, upsample=2))
    ls = LeastSquares([fit], max_rows=40, seed=0, fold=0)
    with torch.no_grad():
        for _ in range(3):
            x = torch.randn(4, 6, 5, 5)
            ls.add([true(x), x])
    ((ridge, mse, r2, fold_r2, rows),) = ls.solve([1e-10], ridge=1e-10)
    assert rows == 3 * 4 * 40 and r2 > 1 - 1e-9 and mse < 1e-10
    w, w_true = to_matrix(linear_parts(fit)[1]), to_matrix(linear_parts(true)[1])
    torch.testing.assert_close(w, w_true, atol=1e-4, rtol=0)


def test_lstsq_reaches_at_most_the_optimizer_loops_held_out_loss(tmp_path):
    sgd = train_feedback(
        cfg_for(tmp_path / "sgd", "train.optimizer=adam", "train.lr=0.02", "train.epochs=8"),
        pnet=linear_pnet(),
    )
    lstsq = train_feedback(cfg_for(tmp_path / "lstsq", "train.solver=lstsq"), pnet=linear_pnet())
    a, b = val_rows(tmp_path / "sgd"), val_rows(tmp_path / "lstsq")
    assert (val_rows(tmp_path / "sgd", 0)["mse"] > a["mse"]).all()  # the optimizer did learn
    assert (b["mse"] <= a["mse"] * (1 + 1e-6)).all(), (a["mse"], b["mse"])
    assert (b["r2"] >= a["r2"] - 1e-9).all() and (
        b["r2"] > val_rows(tmp_path / "sgd", 0)["r2"]
    ).all()
    for path, folder in ((sgd, "sgd"), (lstsq, "lstsq")):
        meta = torch.load(path, weights_only=False)
        summary = pd.read_csv(tmp_path / folder / "summary.csv")
        assert meta["heldout_r2"] == pytest.approx(summary["r2_best"].tolist())
        assert meta["trained_on"]["solver"] == folder and meta["trained_on"]["train_images"] > 30
    prov = json.loads((tmp_path / "lstsq" / "provenance.json").read_text())
    timing = prov["timing"]
    assert timing["samples"] == prov["train_images"] and timing["samples_per_s"] > 0
    assert timing["data_wait_s"] >= 0
    table = (tmp_path / "lstsq" / "table.md").read_text()
    assert "samples/s" in table and "waiting for data" in table and "R^2 epoch 1" in table


def test_lstsq_refuses_a_decoder_with_a_relu(tmp_path):
    with pytest.raises(PcnetsError, match="decoder 2 is not linear.*train.solver=sgd"):
        train_feedback(cfg_for(tmp_path, "train.solver=lstsq"), pnet=tiny_pnet())
    with pytest.raises(PcnetsError, match="use train.augment=none"):
        train_feedback(cfg_for(tmp_path, "train.solver=lstsq", "train.augment=flip_crop"))


def test_loading_prints_r2_and_warns_for_each_decoder_at_or_below_zero(tmp_path, capsys):
    path = tmp_path / "d.pt"
    tiny_pnet().save_decoders(path, heldout_r2=[0.5, -0.25, 0.0])
    apply_pc_config(tiny_pnet(), {"decoders": str(path)})
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == f"decoders {path}: held-out R^2 per decoder 1..3: 0.500 -0.250 0.000"
    assert len(lines) == 3 and lines[1].startswith("warning: decoder 2 has held-out R^2 -0.250")
    assert "encoder 1's lambda to 0" in lines[1] and "encoder 2's lambda to 0" in lines[2]
    tiny_pnet().save_decoders(path)  # an older file: no R^2, one line that says so
    apply_pc_config(tiny_pnet(), {"decoders": str(path)})
    assert "R^2 not recorded" in capsys.readouterr().err


def test_early_stopping_stops_and_keeps_the_best_decoders(tmp_path):
    # SGD at lr 3 diverges: epoch 0 (the initial decoders) stays the best, patience 2 stops at 2
    pnet = linear_pnet()
    initial = {k: v.clone() for k, v in pnet.decoders.state_dict().items()}
    cfg = cfg_for(tmp_path, "train.lr=3.0", "train.epochs=6", "train.patience=2")
    path = train_feedback(cfg, pnet=pnet)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert sorted(metrics["epoch"].unique()) == [0, 1, 2]
    val = metrics[metrics["split"] == "val"].groupby("epoch")["mse"].sum()
    assert val[1] > val[0] and val[2] > val[0]
    saved = torch.load(path, weights_only=False)
    assert all(torch.equal(saved["decoders"][k], v) for k, v in initial.items())
    assert saved["trained_on"]["best_epoch"] == 0
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["stopped_early"] is True and prov["best_epoch"] == 0
    assert train_feedback(cfg, pnet=linear_pnet()) == path  # a rerun trains nothing more
    assert len(pd.read_csv(tmp_path / "metrics.csv")) == len(metrics)


def test_flip_crop_flips_and_crops_reproducibly():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8) / 384
    a = flip_crop(x, torch.Generator().manual_seed(0))
    b = flip_crop(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert isinstance(linear_parts(nn.ConvTranspose2d(2, 2, 3, 1, 1))[1], nn.ConvTranspose2d)
