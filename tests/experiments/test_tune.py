"""Hyperparameter tuning: the parametrisation keeps beta + lambda <= 1 and round-trips, tuning
lowers its objective, the hyper file loads back, and an interrupted run resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import tiny_pnet, torchrun
from torch.utils.data import Dataset

import pcnets.experiments.tune as tune_mod
from pcnets.backbones import load_hyper
from pcnets.config import compose
from pcnets.core.pnet import Hyper
from pcnets.data.noise import add_noise
from pcnets.errors import PcnetsError
from pcnets.experiments.hyperparams import (
    HyperParams,
    objective,
    raw_from_shares,
    shares_from_raw,
    softplus_inverse,
)
from pcnets.experiments.tune import tune
from pcnets.runtime.runs import Run

SIZE, N_IMAGES, T = 8, 16, 3


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def test_valid_values_round_trip_through_the_raw_parameters():
    gen = torch.Generator().manual_seed(0)
    beta = torch.rand(200, generator=gen, dtype=torch.float64)
    lam = (1 - beta) * torch.rand(200, generator=gen, dtype=torch.float64)
    beta[:3], lam[:3] = torch.tensor([1.0, 0.0, 0.3]), torch.tensor([0.0, 1.0, 0.7])  # edges
    mask = torch.ones(200, dtype=torch.float64)
    raw = raw_from_shares(beta, lam, mask)
    b, lm, m = shares_from_raw(raw, mask)
    assert torch.allclose(b, beta, atol=1e-6, rtol=0)
    assert torch.allclose(lm, lam, atol=1e-6, rtol=0)
    assert torch.allclose(m, 1 - beta - lam, atol=1e-6, rtol=0)
    # the float32 parameters of HyperParams round-trip too, lambda of the top encoder is 0
    params = HyperParams([0.8, 0.3, 0.5], [0.1, 0.7, 0.4], [0.01, 0.0, 2.0])
    values = params.values()
    assert values["beta"] == pytest.approx([0.8, 0.3, 0.5], abs=1e-6)
    assert values["lam"] == pytest.approx([0.1, 0.7, 0.0], abs=1e-6)
    assert values["memory"][2] == pytest.approx(0.5, abs=1e-6)
    assert values["alpha"] == pytest.approx([0.01, 0.0, 2.0], abs=1e-6)


def test_any_raw_values_give_positive_shares_with_beta_plus_lambda_at_most_one():
    gen = torch.Generator().manual_seed(1)
    raw = 6 * torch.randn(3, 500, generator=gen)
    mask = torch.ones(500)
    mask[-1] = 0
    beta, lam, memory = shares_from_raw(raw, mask)
    assert (beta >= 0).all() and (lam >= 0).all() and (memory >= 0).all()
    assert (beta + lam <= 1 + 1e-6).all()
    assert torch.allclose(beta + lam + memory, torch.ones(500), atol=1e-6)
    assert lam[-1] == 0


def test_bad_values_are_refused():
    with pytest.raises(PcnetsError, match="beta \\+ lam <= 1"):
        raw_from_shares([0.8], [0.3])
    with pytest.raises(PcnetsError, match="alpha must be >= 0"):
        softplus_inverse([-0.1])
    with pytest.raises(PcnetsError, match="tune.objective must be one of"):
        objective(tiny_pnet(), torch.rand(1, 3, SIZE, SIZE), torch.tensor([0]), 1, None, "lasst")


class _Labelled(Dataset):
    """Fixed images labelled by the tiny net's own prediction under other hyperparameters, so
    that beta/lambda matter for the cross-entropy (a problem that tuning can solve)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y
        self.keys = [f"img{i}" for i in range(len(x))]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i])


def _problem():
    pnet = tiny_pnet(size=SIZE)
    with torch.no_grad():
        pnet.backbone[-1].weight.mul_(30)  # sharper logits: the dynamics move the CE visibly
    x = torch.rand(N_IMAGES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    target = Hyper(torch.tensor([0.2] * 3), torch.tensor([0.6, 0.6, 0.0]), torch.tensor([0.01] * 3))
    with torch.no_grad():
        y = pnet.run(x, T, hyper=target)[-1].argmax(1)
    return pnet, _Labelled(x, y)


def _cfg(*extra: str):
    return compose(
        [
            "data=synthetic",
            f"data.size={SIZE}",
            "data.num_classes=5",
            "device=cpu",
            f"tune.timesteps={T}",
            f"tune.batch_size={N_IMAGES}",
            "tune.lr=0.1",
            "tune.sigmas=[0.25]",
            *extra,
        ]
    )


def test_tuning_lowers_the_objective_and_writes_a_hyper_file_that_loads(tmp_path):
    pnet, data = _problem()
    cfg = _cfg("tune.steps=20", "tune.save_every=5")
    draw = torch.randn(data.x.shape, generator=torch.Generator().manual_seed(9))
    noisy = add_noise(data.x, 0.25, std=pnet.std, noise=draw)
    with torch.no_grad():
        before = objective(pnet, noisy, data.y, T, pnet.hyper())[0].item()
    result = tune(cfg, pnet=pnet, run=Run("tune", cfg, out=tmp_path), progress=False, dataset=data)
    tuned = Hyper(*(torch.tensor(result.hyper[k]) for k in ("beta", "lam", "alpha")))
    with torch.no_grad():
        after = objective(pnet, noisy, data.y, T, tuned)[0].item()
    assert after < 0.9 * before
    assert result.hyper["final_loss"] < result.hyper["first_loss"]

    saved = json.loads((tmp_path / "hyper.json").read_text())
    assert saved["backbone"] == "tiny" and saved["lam"][-1] == 0.0
    values = load_hyper(tmp_path / "hyper.json", pnet)
    pnet.set_hyperparameters(**values)  # beta + lambda <= 1 is checked here
    assert pnet.beta.tolist() == pytest.approx(saved["beta"], abs=1e-7)
    metrics = result.run.metrics()
    # one row per step and encoder, the final values, and the held-out objective before and after
    assert len(metrics) == (20 + 1) * 3 + 2
    assert metrics["step"].max() == 20 and (tmp_path / "tune.png").stat().st_size > 10_000
    assert "0.800 ->" in (tmp_path / "table.md").read_text()


def test_an_interrupted_tuning_resumes_to_the_same_values(tmp_path, monkeypatch):
    cfg = _cfg("tune.steps=6", "tune.save_every=3")
    pnet, data = _problem()
    straight = tune(
        cfg, pnet=pnet, run=Run("tune", cfg, out=tmp_path / "a"), progress=False, dataset=data
    )

    calls = {"n": 0}
    real = tune_mod.objective

    def dies_at_step_5(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tune_mod, "objective", dies_at_step_5)
    pnet, data = _problem()
    with pytest.raises(KeyboardInterrupt):
        tune(cfg, pnet=pnet, run=Run("tune", cfg, out=tmp_path / "b"), progress=False, dataset=data)
    assert torch.load(tmp_path / "b" / tune_mod.STATE_FILE)["step"] == 3
    resumed = tune(
        cfg, pnet=pnet, run=Run("tune", cfg, out=tmp_path / "b"), progress=False, dataset=data
    )
    assert calls["n"] == 5 + 3  # 4 steps and the interrupted one, then steps 4..6 only
    for key in ("beta", "lam", "alpha"):
        assert resumed.hyper[key] == pytest.approx(straight.hyper[key], abs=1e-6)
    again = tune(
        cfg, pnet=pnet, run=Run("tune", cfg, out=tmp_path / "b"), progress=False, dataset=data
    )
    assert calls["n"] == 8 and again.hyper["beta"] == resumed.hyper["beta"]  # finished: no steps


def test_mean_objective_averages_timesteps_one_to_t():
    pnet, data = _problem()
    x, y = data.x[:4], data.y[:4]
    with torch.no_grad():
        logits = pnet.run(x, T)
        want = torch.stack([torch.nn.functional.cross_entropy(z, y) for z in logits[1:]]).mean()
        got = objective(pnet, x, y, T, pnet.hyper(), "mean")[0]
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


TORCHRUN_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[2])
import torch
from helpers import tiny_pnet
from pcnets.runtime import distributed as d
from pcnets.config import compose
from pcnets.experiments.manifold import manifold
from pcnets.runtime.runs import Run
from pcnets.experiments.tune import tune

d.init_distributed()
common = ["data=synthetic", "data.size=8", "data.num_classes=5", "data.num_images=10",
          "data.batch_size=3", "data.workers=0", "device=cpu", "seed=3"]
cfg = compose(common + ["tune.steps=4", "tune.batch_size=6", "tune.timesteps=2",
               "tune.save_every=2"])
hyper = tune(cfg, pnet=tiny_pnet(), run=Run("tune", cfg, out=sys.argv[1] + "/tune"),
             progress=False).hyper
cfg = compose(common + ["manifold.timesteps=2", "manifold.sigmas=[0.5,1.0]",
               "manifold.n_resamples=50"])
rows = manifold(cfg, pnet=tiny_pnet(), run=Run("manifold", cfg, out=sys.argv[1] + "/man"),
                progress=False).metrics
if d.is_main():
    json.dump({"beta": hyper["beta"], "alpha": hyper["alpha"],
               "distance": rows["distance"].tolist()}, open(sys.argv[1] + "/out.json", "w"))
d.cleanup()
"""


def _torchrun(tmp_path, world: int) -> dict:
    folder = tmp_path / f"world{world}"
    folder.mkdir()
    script = folder / "run.py"
    script.write_text(TORCHRUN_SCRIPT)
    torchrun([script, folder, Path(__file__).parent], cwd=folder, nproc=world)
    return json.loads((folder / "out.json").read_text())


@pytest.mark.slow
def test_torchrun_gives_the_one_process_results(tmp_path):
    """tune splits each batch over the processes and all-reduces the gradients; manifold shards
    the images and all-reduces the distances: two processes give one process's numbers."""
    one, two = _torchrun(tmp_path, 1), _torchrun(tmp_path, 2)
    assert two["beta"] == pytest.approx(one["beta"], abs=1e-5)
    assert two["alpha"] == pytest.approx(one["alpha"], abs=1e-5)
    assert two["distance"] == pytest.approx(one["distance"], abs=1e-9)
    assert one["beta"] != pytest.approx([0.8, 0.8, 0.8], abs=1e-3)  # tuning moved the values
