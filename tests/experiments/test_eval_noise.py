"""eval-noise: seeded noise independent of batching, counts equal to a hand loop, resume without
recomputation, torchrun equal to one process, and the tables, figure and summary.csv of a run."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import torchrun
from torch import nn
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from pcnets.cli import app
from pcnets.config import compose
from pcnets.core.decoders import DecoderSpec, build_decoder
from pcnets.core.pnet import PredictiveNet
from pcnets.data import build_dataset
from pcnets.data.noise import NoisyImages, add_noise
from pcnets.errors import PcnetsError
from pcnets.experiments.eval_noise import check_sigmas
from pcnets.experiments.eval_noise import run as eval_noise
from pcnets.runtime.cell_images import IMAGES, load_cell_images

REPO = Path(__file__).resolve().parents[2]
TIMESTEPS = 3
LABELS = ["run_id", "backbone", "decoders"]
STD = (0.25, 0.5, 1.0)  # unequal channel stds: normalised-space noise must scale per channel


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def toy_pnet() -> PredictiveNet:
    """Two encoders and a spatial readout, so predictions differ between images and timesteps."""
    torch.manual_seed(3)
    backbone = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),  # encoder "1"
        nn.Conv2d(6, 6, 3, padding=1),
        nn.Tanh(),  # encoder "3"
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(96, 5),
    )
    decoders = [build_decoder(DecoderSpec(6, 3)), build_decoder(DecoderSpec(6, 6))]
    pnet = PredictiveNet(backbone, ["1", "3"], decoders, [0.5] * 3, list(STD), probe_size=8)
    pnet.set_hyperparameters(beta=0.5, lam=0.3, alpha=0.5)
    return pnet.eval()


def noise_cfg(out: Path, *extra: str):
    return compose(
        [
            "data=synthetic",
            "data.num_images=12",
            "data.size=8",
            "data.num_classes=5",
            f"pc.timesteps={TIMESTEPS}",
            "eval.sigmas=[0,0.5,1.0]",
            "eval.bootstrap=200",
            "device=cpu",
            f"out={out}",
            *extra,
        ]
    )


def reference_seed(key: str, sigma: float, seed: int = 0) -> int:
    """The documented per-image seed, recomputed here: sha256 of 'seed|key|repr(sigma)|gaussian'."""
    text = f"{seed}|{key}|{float(sigma)!r}|gaussian"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") % 2**63


def test_counts_equal_a_hand_loop_over_the_same_seeded_noise(tmp_path):
    pnet = toy_pnet()
    cfg = noise_cfg(tmp_path / "run", "eval.batch_size=5")
    result = eval_noise(cfg, pnet=pnet, progress=False)
    dataset = build_dataset(cfg.data, None)
    std = torch.tensor(STD).view(3, 1, 1)
    for sigma in (0.0, 0.5, 1.0):
        predictions = []
        for i in range(len(dataset)):
            image, _ = dataset[i]
            gen = torch.Generator().manual_seed(reference_seed(dataset.keys[i], sigma))
            noisy = image + sigma * std * torch.randn(image.shape, generator=gen)
            with torch.no_grad():
                logits = pnet.run(noisy[None], timesteps=TIMESTEPS)
            predictions.append([int(out.argmax()) for out in logits])
        correct = np.array(predictions) == np.array(dataset.targets)[:, None]
        rows = result.metrics[result.metrics["sigma"] == sigma].sort_values("timestep")
        assert rows["correct"].tolist() == correct.sum(axis=0).tolist()
        assert rows["total"].tolist() == [12] * (TIMESTEPS + 1)
        keys, labels, saved = load_cell_images(result.path / IMAGES / f"noise_sigma={sigma:g}.npz")
        assert keys == dataset.keys and labels.tolist() == dataset.targets
        assert np.array_equal(saved, correct)
    # the test is only as strong as the toy is sensitive: noise and dynamics change predictions
    assert len(np.unique(predictions)) > 1
    clean = result.metrics[result.metrics["sigma"] == 0]["correct"].tolist()
    noisy = result.metrics[result.metrics["sigma"] == 1.0]["correct"].tolist()
    assert clean != noisy
    # the run says how it was made: numerics and, on Linux, the allocator switch
    prov = json.loads((result.path / "provenance.json").read_text())
    assert prov["numerics"] == "fp32+fold_bn" or prov["numerics"] == "fp32"
    if sys.platform.startswith("linux") and os.environ.get("PCNETS_ALLOCATOR") != "system":
        assert prov["allocator"] == "keep-freed"


def test_the_noise_of_an_image_is_the_same_whatever_the_batch(tmp_path):
    cfg = noise_cfg(tmp_path)
    base = build_dataset(cfg.data, None)
    noisy = NoisyImages(base, 0.5, seed=0, std=STD)
    one = {
        int(i): x
        for x, _, idx in DataLoader(noisy, batch_size=1)
        for i, x in zip(idx, x, strict=True)
    }
    shuffled = DataLoader(noisy, batch_size=5, shuffle=True, generator=torch.Generator())
    five = {int(i): x for x, _, idx in shuffled for i, x in zip(idx, x, strict=True)}
    assert sorted(one) == list(range(12))
    assert all(torch.equal(one[i], five[i]) for i in range(12))
    assert not torch.equal(one[0] - base[0][0], one[1] - base[1][0])  # a sample per image
    # and so whole runs agree whatever eval.batch_size
    a = eval_noise(noise_cfg(tmp_path / "a", "eval.batch_size=4"), pnet=toy_pnet(), progress=False)
    b = eval_noise(noise_cfg(tmp_path / "b", "eval.batch_size=12"), pnet=toy_pnet(), progress=False)
    for name in ("noise_sigma=0.5.npz", "noise_sigma=1.npz"):
        assert np.array_equal(
            load_cell_images(a.path / IMAGES / name)[2], load_cell_images(b.path / IMAGES / name)[2]
        )


def test_noise_is_scaled_by_the_channel_std_or_clipped_in_pixel_space():
    image = torch.rand(3, 6, 6)
    z = torch.randn(image.shape, generator=torch.Generator().manual_seed(7))
    normalised = add_noise(image, 0.5, 7, std=STD)
    expected = 0.5 * torch.tensor(STD).view(3, 1, 1) * z
    assert torch.allclose(normalised - image, expected, atol=1e-6)
    assert normalised.min() < 0 or normalised.max() > 1  # not clipped
    pixel = add_noise(image, 0.5, 7, space="pixel")
    assert torch.equal(pixel, (image + 0.5 * z).clamp(0, 1))
    assert torch.equal(add_noise(image, 0.0, 7, std=STD), image)
    with pytest.raises(PcnetsError, match="noise_space"):
        add_noise(image, 0.5, 7, space="pixels")
    assert check_sigmas([0, 0.5, 0.5, 1]) == [0.0, 0.5, 1.0]
    with pytest.raises(PcnetsError, match=">= 0"):
        check_sigmas([0.5, -1])


def test_a_cut_short_run_resumes_without_recomputing_finished_cells(tmp_path):
    cfg = noise_cfg(tmp_path / "run", "eval.batch_size=6")  # 2 batches per cell
    pnet = toy_pnet()
    calls = []
    plain_steps = pnet.steps  # pnet.run goes through it too

    def counted(x, timesteps=10, **kw):
        calls.append(len(x))
        if len(calls) == 3:  # the first batch of the second cell
            raise KeyboardInterrupt
        return plain_steps(x, timesteps, **kw)

    pnet.steps = counted
    with pytest.raises(KeyboardInterrupt):
        eval_noise(cfg, pnet=pnet, progress=False)
    log = (tmp_path / "run" / "cells.jsonl").read_text().splitlines()
    assert [json.loads(line)["cell"] for line in log] == ['{"sigma": 0.0}']
    parts = tmp_path / "run" / "terms"
    assert [p.name for p in parts.iterdir()] == ["noise_sigma=0.csv"]  # with its cell only
    first = (parts / "noise_sigma=0.csv").read_bytes()
    calls.clear()
    pnet.steps = lambda x, timesteps=10, **kw: (
        calls.append(len(x)) or plain_steps(x, timesteps, **kw)
    )
    resumed = eval_noise(cfg, pnet=pnet, progress=False)
    assert calls == [6, 6, 6, 6]  # 2 cells x 2 batches: the finished cell was not run again
    assert len((tmp_path / "run" / "cells.jsonl").read_text().splitlines()) == 3
    assert (parts / "noise_sigma=0.csv").read_bytes() == first  # its term sizes were kept
    fresh = eval_noise(noise_cfg(tmp_path / "fresh", "eval.batch_size=6"), toy_pnet(), None, False)
    assert resumed.metrics.equals(fresh.metrics)
    kept, again = (pd.read_csv(r.path / "terms.csv") for r in (resumed, fresh))
    assert len(kept) == 3 * 2 * 4 * TIMESTEPS
    pd.testing.assert_frame_equal(kept, again)


SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_eval_noise import noise_cfg, toy_pnet
from pcnets.runtime.distributed import cleanup, world_size
from pcnets.experiments.eval_noise import run as eval_noise
result = eval_noise(noise_cfg(sys.argv[1], "data.num_images=7", "eval.batch_size=2"), toy_pnet())
assert world_size() == 2
cleanup()
"""


def test_torchrun_with_two_processes_gives_the_counts_of_one(tmp_path):
    script = tmp_path / "evaluate.py"
    script.write_text(textwrap.dedent(SCRIPT.format(tests=str(Path(__file__).parent))))
    torchrun([script, tmp_path / "two"], cwd=tmp_path, timeout=120)
    one = eval_noise(
        noise_cfg(tmp_path / "one", "data.num_images=7", "eval.batch_size=2"),
        toy_pnet(),
        None,
        False,
    )
    two = pd.read_csv(tmp_path / "two" / "metrics.csv")
    assert two.equals(pd.read_csv(tmp_path / "one" / "metrics.csv"))
    assert two["total"].eq(7).all() and len(two) == 3 * (TIMESTEPS + 1)
    for name in ("noise_sigma=0.npz", "noise_sigma=0.5.npz", "noise_sigma=1.npz"):
        a, b = (
            load_cell_images(one.path / IMAGES / name),
            load_cell_images(tmp_path / "two" / IMAGES / name),
        )
        assert a[0] == b[0] and np.array_equal(a[2], b[2])


def test_eval_noise_command_writes_metrics_table_and_figure(tmp_path, monkeypatch):
    monkeypatch.setattr("pcnets.backbones.pnet_from_config", lambda cfg, device, *a: toy_pnet())
    out = tmp_path / "run"
    args = [
        "eval-noise",
        "data=synthetic",
        "data.num_images=12",
        "data.size=8",
        "data.num_classes=5",
        "eval.sigmas=[0,0.5,1.0]",
        "eval.bootstrap=200",
        "--timesteps",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"results: {out}" in result.stdout
    df = pd.read_csv(out / "metrics.csv")
    columns = ["condition", "sigma", "timestep", "correct", "total", "accuracy"]
    assert list(df.columns) == [*LABELS, *columns]  # Run.record puts the run labels first
    assert len(df) == 3 * 3 and df["condition"].tolist()[:4] == ["clean"] * 3 + ["noise"]
    assert np.allclose(df["accuracy"], df["correct"] / df["total"])
    table = (out / "table.md").read_text()
    accuracy = table.split("## Top-1 accuracy (%)")[1].split("##")[0].strip().splitlines()
    assert accuracy[0] == "| sigma | t=0 | t=1 | t=2 |" and len(accuracy) == 2 + 3
    assert [row.split(" | ")[0] for row in accuracy[2:]] == [
        "| clean (sigma 0)",
        "| sigma 0.5 normalised = 0.292 px = 1.29 reference",  # this toy's std is 0.583
        "| sigma 1 normalised = 0.583 px = 2.58 reference",
    ]
    assert "## Change from timestep 0" in table and table.count("| clean (sigma 0) |") == 2
    assert (out / "noise_accuracy.png").stat().st_size > 10_000
    again = CliRunner().invoke(app, args)  # everything done: nothing is recomputed
    assert again.exit_code == 0 and len((out / "cells.jsonl").read_text().splitlines()) == 3


def test_auto_batch_caps_the_cpu_batch_only_where_results_do_not_depend_on_it(tmp_path):
    from pcnets.experiments.eval_cells import CPU_BATCH, loader_config

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    cfg = noise_cfg(tmp_path, "data.batch_size=50")
    assert cfg.eval.batch_size == "auto"
    assert loader_config(cfg, cpu).batch_size == CPU_BATCH == 16
    assert loader_config(cfg, gpu).batch_size == 50
    small = noise_cfg(tmp_path, "data.batch_size=6")
    assert loader_config(small, cpu).batch_size == 6
    ref = noise_cfg(tmp_path, "data.batch_size=50", "pc.error_reduction=batch_mean")
    assert loader_config(ref, cpu).batch_size == 50  # the batch is part of the method there
    plain = noise_cfg(tmp_path, "data.batch_size=50", "eval.batch_size=null")
    assert loader_config(plain, cpu).batch_size == 50
    with pytest.raises(PcnetsError, match="auto or null"):
        loader_config(noise_cfg(tmp_path, "eval.batch_size=fast"), cpu)


def test_sigmas_in_the_papers_units_are_converted_for_the_backbone(tmp_path):
    # the toy's std has mean 0.5833: reference sigma 0.5 is pixel 0.113, normalised 0.1937
    cfg = noise_cfg(tmp_path / "run", "eval.sigma_unit=reference", "eval.sigmas=[0,0.5]")
    result = eval_noise(cfg, pnet=toy_pnet(), progress=False)
    drawn = sorted(result.metrics["sigma"].unique())
    assert drawn == pytest.approx([0.0, round(0.5 * 0.226 / (1.75 / 3), 6)])
    summary = pd.read_csv(result.path / "summary.csv")
    units = summary[summary["metric"].str.startswith("sigma_")].set_index("metric")["value"]
    assert units["sigma_reference"].max() == pytest.approx(0.5)
    assert units["sigma_pixel"].max() == pytest.approx(0.113)
    table = (result.path / "table.md").read_text()
    assert "sigma 0.194 normalised = 0.113 px = 0.5 reference" in table
    assert "given in reference units" in table
    with pytest.raises(PcnetsError, match="eval.sigma_unit must be one of"):
        eval_noise(noise_cfg(tmp_path / "bad", "eval.sigma_unit=paper"), pnet=toy_pnet())
