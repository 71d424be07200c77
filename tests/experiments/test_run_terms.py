"""Every command that runs the dynamics records the size of each update term (issue 22, item 1):
eval-noise's terms.csv equals a hand aggregation of pnet.steps(terms=True) over the same noisy
images, its summary rows, table line and figure come from the run folder alone, and manifold
records one set per sigma."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import tiny_pnet
from test_eval_noise import STD, TIMESTEPS, noise_cfg, reference_seed, toy_pnet
from test_manifold import _cfg as manifold_cfg

from pcnets.data import build_dataset
from pcnets.data.noise import add_noise, image_noise
from pcnets.experiments.eval_noise import run as eval_noise
from pcnets.experiments.manifold import manifold
from pcnets.reporting.noise_report import render
from pcnets.reporting.terms import TERMS
from pcnets.runtime.cell_images import IMAGES, load_cell_images
from pcnets.runtime.runs import Run

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def hand_terms(pnet, x: torch.Tensor, timesteps: int) -> np.ndarray:
    """Mean over the images of x of step.terms: [encoders, 4, timesteps + 1], t = 0 unset."""
    out = np.full((pnet.num_encoders, len(TERMS), timesteps + 1), np.nan)
    with torch.no_grad():
        for step in pnet.steps(x, timesteps, terms=True):
            if step.t > 0:
                out[:, :, step.t] = step.terms.double().mean(dim=2).numpy()
    return out


def test_eval_noise_terms_equal_a_hand_aggregation_and_render_from_the_folder(tmp_path):
    pnet = toy_pnet()
    cfg = noise_cfg(tmp_path / "run", "eval.batch_size=5")  # batches of 5, 5 and 2
    result = eval_noise(cfg, pnet=pnet, progress=False)
    terms = pd.read_csv(result.path / "terms.csv")
    assert len(terms) == 3 * 2 * len(TERMS) * TIMESTEPS  # sigma x encoder x term x t >= 1
    assert terms["sigma"].drop_duplicates().tolist() == [0.0, 0.5, 1.0]
    assert set(terms["images"]) == {12} and set(terms["layer"].astype(str)) == {"1", "3"}
    dataset = build_dataset(cfg.data, None)
    std = torch.tensor(STD).view(3, 1, 1)
    for sigma in (0.0, 0.5, 1.0):
        noisy = []
        for i in range(len(dataset)):
            image, _ = dataset[i]
            gen = torch.Generator().manual_seed(reference_seed(dataset.keys[i], sigma))
            noisy.append(image + sigma * std * torch.randn(image.shape, generator=gen))
        want = hand_terms(pnet, torch.stack(noisy), TIMESTEPS)
        part = terms[terms["sigma"] == sigma]
        for row in part.itertuples():
            got = row.term_ratio
            assert got == pytest.approx(want[row.encoder - 1, TERMS.index(row.term), row.timestep])
    # the toy's error term is small but there, and the top encoder has no feedback
    error = terms[terms["term"] == "error"]["term_ratio"]
    assert (error > 0).all() and (error < terms[terms["term"] == "ff"]["term_ratio"].max()).all()
    top = terms[(terms["encoder"] == 2) & (terms["term"] == "feedback")]
    assert (top["term_ratio"] == 0).all()

    summary = pd.read_csv(result.path / "summary.csv")
    ratio = summary[summary["metric"] == "term_ratio"]
    assert len(ratio) == 3 * 2 * len(TERMS) and set(ratio["timestep"]) == {TIMESTEPS}
    one = ratio[(ratio["sigma"] == 1.0) & (ratio["encoder"] == 1) & (ratio["condition"] == "error")]
    at_last = terms[
        (terms["sigma"] == 1.0)
        & (terms["encoder"] == 1)
        & (terms["term"] == "error")
        & (terms["timestep"] == TIMESTEPS)
    ]
    assert one["value"].item() == pytest.approx(at_last["term_ratio"].item())
    assert (summary["metric"] == "term_ratio_max").sum() == 3 * 2 * len(TERMS)
    table = (result.path / "table.md").read_text()
    assert "alpha * g is more than 1% of ||e_n||" in table
    assert (result.path / "terms.png").stat().st_size > 10_000

    # render from the files alone: the same terms.csv after it and the figure are removed
    before = (result.path / "terms.csv").read_bytes()
    (result.path / "terms.csv").unlink()
    (result.path / "terms.png").unlink()
    render(result.path)
    assert (result.path / "terms.csv").read_bytes() == before
    assert (result.path / "terms.png").is_file()


def test_switched_off_there_are_no_terms_and_the_same_predictions(tmp_path):
    on = eval_noise(noise_cfg(tmp_path / "on"), pnet=toy_pnet(), progress=False)
    off = eval_noise(noise_cfg(tmp_path / "off", "eval.terms=false"), toy_pnet(), None, False)
    assert not (off.path / "terms.csv").exists() and not (off.path / "terms").exists()
    assert "term_ratio" not in set(pd.read_csv(off.path / "summary.csv")["metric"])
    for name in ("noise_sigma=0.npz", "noise_sigma=1.npz"):
        a, b = (load_cell_images(r.path / IMAGES / name)[2] for r in (on, off))
        assert np.array_equal(a, b)


def test_manifold_records_the_terms_of_each_sigmas_noisy_copies(tmp_path):
    # 0.25 and 0.5 once shared a file name (sigma=0): the second overwrote the first
    cfg = manifold_cfg("manifold.sigmas=[0.25,0.5,1.0]")
    pnet = tiny_pnet()
    manifold(cfg, pnet=pnet, run=Run("manifold", cfg, out=tmp_path), progress=False)
    terms = pd.read_csv(tmp_path / "terms.csv")
    assert sorted(set(terms["sigma"])) == [0.25, 0.5, 1.0] and set(terms["images"]) == {12}
    assert len(terms) == 3 * pnet.num_encoders * len(TERMS) * 3
    x = torch.stack([build_dataset(cfg.data, pnet.transform)[i][0] for i in range(12)])
    keys = build_dataset(cfg.data, pnet.transform).keys
    noise = image_noise(keys, tuple(x.shape[1:]), int(cfg.seed))
    want = hand_terms(pnet, add_noise(x, 1.0, std=pnet.std, noise=noise), 3)
    part = terms[terms["sigma"] == 1.0]
    got = part.set_index(["encoder", "term", "timestep"])["term_ratio"]
    for (encoder, term, t), value in got.items():
        assert value == pytest.approx(want[encoder - 1, TERMS.index(term), t], rel=1e-5)
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert (summary["metric"] == "term_ratio").sum() == 3 * pnet.num_encoders * len(TERMS)
    assert (tmp_path / "terms.png").is_file()


def test_a_run_of_zero_timesteps_has_no_terms_and_renders(tmp_path):
    """T = 0 runs no update: no terms file is written, and the run still renders (a run of the
    feedforward model once wrote empty files that stopped its report)."""
    result = eval_noise(
        noise_cfg(tmp_path / "run", "pc.timesteps=0"), pnet=toy_pnet(), progress=False
    )
    assert not (result.path / "terms.csv").exists() and not (result.path / "terms").exists()
    assert "Term sizes" not in (result.path / "table.md").read_text()
    assert set(result.metrics["timestep"]) == {0}
