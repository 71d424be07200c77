"""Convergence to clean representations: the distance is 1 - Pearson r (numpy's), the noise is
stable per image, the summary is mean(t) / mean(0), and finished sigmas are not recomputed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import tiny_pnet

from pcnets.config import compose
from pcnets.data.noise import image_noise
from pcnets.errors import PcnetsError
from pcnets.experiments.manifold import correlation_distance, distances, manifold, summarize
from pcnets.runtime.runs import Run

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def test_correlation_distance_equals_numpy_corrcoef():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(5, 3, 4, 6, generator=gen)
    b = 0.7 * a + torch.randn(5, 3, 4, 6, generator=gen)
    b[4] = -2 * a[4] + 1  # perfectly anti-correlated: distance 2
    got = correlation_distance(a, b).numpy()
    want = [1 - np.corrcoef(a[i].numpy().ravel(), b[i].numpy().ravel())[0, 1] for i in range(5)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert got[4] == pytest.approx(2.0, abs=1e-6) and 0.2 < got[0] < 0.8
    assert correlation_distance(torch.ones(1, 10), torch.randn(1, 10)).item() == 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        correlation_distance(a, b[:, :2])


def test_noise_is_fixed_per_image_key_whatever_the_batch():
    one = image_noise(["val/x/a.JPEG"], (3, 4, 4), seed=0)
    two = image_noise(["val/y/b.JPEG", "val/x/a.JPEG"], (3, 4, 4), seed=0)
    assert torch.equal(one[0], two[1]) and not torch.equal(two[0], two[1])
    assert not torch.equal(one, image_noise(["val/x/a.JPEG"], (3, 4, 4), seed=1))


def test_distances_of_an_image_do_not_depend_on_its_batch():
    pnet = tiny_pnet()
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    noise = image_noise([f"k{i}" for i in range(4)], (3, 8, 8), 0)
    batch = distances(pnet, x, noise, [0.5, 1.0], 3)
    alone = distances(pnet, x[2:3], noise[2:3], [1.0], 3)
    assert batch.shape == (2, 4, 3, 4)
    np.testing.assert_allclose(batch[1, 2], alone[0, 0], atol=1e-9)
    # more noise, farther from the clean representation at t = 0
    assert (batch[1, :, :, 0] > batch[0, :, :, 0]).all()


def test_summary_is_the_mean_relative_to_timestep_zero_with_intervals():
    rng = np.random.default_rng(0)
    dist = rng.uniform(0.1, 0.5, size=(40, 2, 3))
    rows = summarize(dist, ["a", "b"], sigma=0.5, n_resamples=300)
    row = next(r for r in rows if r["encoder"] == 2 and r["timestep"] == 2)
    want = dist[:, 1, 2].mean() / dist[:, 1, 0].mean()
    assert row["normalized"] == pytest.approx(want, rel=1e-12)
    assert row["normalized_low"] < row["normalized"] < row["normalized_high"]
    assert row["distance"] == pytest.approx(dist[:, 1, 2].mean(), rel=1e-12)
    assert row["images"] == 40 and len(rows) == 2 * 3


def _cfg(*extra: str):
    return compose(
        [
            "data=synthetic",
            "data.size=8",
            "data.num_images=12",
            "data.batch_size=5",
            "device=cpu",
            "manifold.timesteps=3",
            "manifold.sigmas=[0.5,1.0]",
            "manifold.n_resamples=200",
            *extra,
        ]
    )


def test_manifold_run_writes_all_sigmas_and_resumes(tmp_path):
    cfg = _cfg()
    result = manifold(cfg, pnet=tiny_pnet(), run=Run("manifold", cfg, out=tmp_path), progress=False)
    metrics = result.metrics
    assert result.run.path == tmp_path and len(metrics) == 3 * 2 * 3 * 4  # with the 2 controls
    assert set(metrics["images"]) == {12}
    metrics = metrics[metrics["comparison"] == "noisy_t_vs_clean_t"]
    assert (metrics[metrics["timestep"] == 0]["normalized"] == 1.0).all()
    assert (tmp_path / "manifold.png").stat().st_size > 10_000
    assert "sigma = 0.5" in (tmp_path / "table.md").read_text()
    lines = (tmp_path / "cells.jsonl").read_text().count("\n")
    assert lines == 2

    pnet = tiny_pnet()

    def no_steps(*args, **kwargs):
        raise AssertionError("a finished sigma was recomputed")

    pnet.steps = no_steps
    again = manifold(cfg, pnet=pnet, run=Run("manifold", cfg, out=tmp_path), progress=False)
    assert (tmp_path / "cells.jsonl").read_text().count("\n") == lines
    again = again.metrics[again.metrics["comparison"] == "noisy_t_vs_clean_t"]
    np.testing.assert_allclose(again["normalized"], metrics["normalized"])


def test_bad_sigmas_are_refused(tmp_path):
    with pytest.raises(PcnetsError, match=r"manifold.sigmas: 0.0 is not above 0"):
        _cfg("manifold.sigmas=[0.0]")  # at compose time (pcnets.schema bounds)


def test_the_controls_compare_with_the_clean_representation_at_t0(tmp_path):
    pnet = tiny_pnet()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    noise = image_noise([f"k{i}" for i in range(3)], (3, 8, 8), 0)
    out, ctrl = distances(pnet, x, noise, [0.5, 1.0], 3, controls=True)
    assert ctrl.shape == (2, 2, 3, 3, 4)
    np.testing.assert_allclose(ctrl[0, :, :, :, 0], out[:, :, :, 0])  # at t = 0 they agree
    np.testing.assert_allclose(ctrl[1, :, :, :, 0], 0.0, atol=1e-12)  # clean(0) vs itself
    # clean(t) vs clean(0) by hand, from the clean images alone
    clean = [[e.detach().clone() for e in s.states] for s in pnet.steps(x, 3, states=True)]
    for t in (1, 3):
        for n in range(3):
            want = correlation_distance(clean[t][n], clean[0][n]).numpy()
            np.testing.assert_allclose(ctrl[1, 1, :, n, t], want, atol=1e-6)
    cfg = _cfg()
    manifold(cfg, pnet=tiny_pnet(), run=Run("manifold", cfg, out=tmp_path), progress=False)
    table = (tmp_path / "table.md").read_text()
    assert "## Controls: is it convergence or a common drift?" in table
    summary = pd.read_csv(tmp_path / "summary.csv")
    drift = summary[summary["metric"] == "distance_clean_t_vs_clean_0"]
    assert len(drift) == 2 * 3 * 4 and (drift[drift["timestep"] == 0]["value"].abs() < 1e-9).all()
    assert (summary["metric"] == "relative_distance_noisy_t_vs_clean_0").sum() == 2 * 3 * 4
    assert (summary["metric"] == "relative_distance").sum() == 2 * 3 * 4
    assert (tmp_path / "manifold_controls.png").stat().st_size > 10_000
