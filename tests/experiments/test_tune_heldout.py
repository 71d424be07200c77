"""Tuning is checked on held-out images (issue 22, item 8): the images of tune.heldout_fraction
(chosen by the decoders' id hash) never enter a tuning batch, their objective before and after
equals a hand computation with the same noise, it falls on a problem that tuning can solve, and
the table, summary.csv and term sizes say so."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from test_tune import N_IMAGES, T, _cfg, _problem

import pcnets.experiments.tune as tune_mod
from pcnets.core.pnet import Hyper
from pcnets.data.noise import add_noise
from pcnets.errors import PcnetsError
from pcnets.experiments.hyperparams import objective
from pcnets.experiments.train.data import in_holdout
from pcnets.experiments.tune import tune
from pcnets.experiments.tune_heldout import split_heldout
from pcnets.runtime.runs import Run

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def test_held_out_images_are_never_tuned_on_and_their_objective_falls(tmp_path, monkeypatch):
    pnet, data = _problem()
    held = [i for i, k in enumerate(data.keys) if in_holdout(k, 0.3)]
    assert 0 < len(held) < N_IMAGES  # the hash holds out some of the 16 images, not all
    seen, phase = [], {"now": "tuning"}
    getitem = type(data).__getitem__
    monkeypatch.setattr(
        type(data),
        "__getitem__",
        lambda self, i: seen.append((phase["now"], i)) or getitem(self, i),
    )
    real = tune_mod.heldout_rows

    def flagged(*args, **kwargs):
        phase["now"] = "heldout"
        try:
            return real(*args, **kwargs)
        finally:
            phase["now"] = "tuning"

    monkeypatch.setattr(tune_mod, "heldout_rows", flagged)
    cfg = _cfg("tune.steps=20", "tune.save_every=5", "tune.heldout_fraction=0.3", "seed=4")
    result = tune(cfg, pnet=pnet, run=Run("tune", cfg, out=tmp_path), progress=False, dataset=data)
    tuned_on = {i for p, i in seen if p == "tuning"}
    assert tuned_on and not tuned_on & set(held)
    assert sorted({i for p, i in seen if p == "heldout"}) == held

    heldout = result.hyper["heldout"]
    assert heldout["images"] == len(held) and result.hyper["heldout_fraction"] == 0.3
    x = torch.stack([data.x[i] for i in held])
    y = torch.tensor([int(data.y[i]) for i in held])
    gen = torch.Generator().manual_seed(4 * 1_000_003 + 7919)  # seed 4, the first sigma
    noisy = add_noise(x, 0.25, std=pnet.std, noise=torch.randn(x.shape, generator=gen))
    for phase_name, values in (("initial", result.hyper["initial"]), ("tuned", result.hyper)):
        hyper = Hyper(
            *(
                torch.as_tensor(values[k]).float().expand(3).clone()
                for k in ("beta", "lam", "alpha")
            )
        )
        hyper.lam[-1] = 0.0
        with torch.no_grad():
            want = objective(pnet, noisy, y, T, hyper)[0].item()
        assert heldout["loss"][phase_name] == pytest.approx(want, rel=1e-4)
    assert heldout["loss"]["tuned"] < 0.9 * heldout["loss"]["initial"]

    summary = pd.read_csv(tmp_path / "summary.csv")
    row = summary[(summary["metric"] == "heldout_loss_tuned") & (summary["condition"] == "all")]
    assert row["value"].item() == pytest.approx(heldout["loss"]["tuned"])
    table = (tmp_path / "table.md").read_text()
    assert f"Objective on {len(held)} held-out images" in table and "(fell;" in table
    terms = pd.read_csv(tmp_path / "terms.csv")
    assert set(terms["condition"]) == {"initial", "tuned"} and set(terms["images"]) == {len(held)}
    assert json.loads((tmp_path / "hyper.json").read_text())["heldout"] == heldout


def test_no_held_out_image_is_said_and_all_held_out_is_refused():
    _, data = _problem()
    tuning, held = split_heldout(data, 0.01)  # no id of 16 falls in 1 %
    assert held == [] and tuning == list(range(N_IMAGES))
    assert split_heldout(data, 0.0) == (list(range(N_IMAGES)), [])
    with pytest.raises(PcnetsError, match="holds out all 16 images"):
        split_heldout(data, 0.999999)
