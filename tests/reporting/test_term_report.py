"""Term sizes per encoder x term x timestep from fake engine steps ([encoders, 4, batch])."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from pcnets.reporting.terms import TermSizes, acts_text, figure, summary_rows


def _steps(batch: torch.Tensor, T: int):
    """Fake steps: t = 0 without terms, then batch * t (so ratios grow with t)."""
    yield SimpleNamespace(terms=None)
    for t in range(1, T + 1):
        yield SimpleNamespace(terms=batch * t)


def test_mean_over_images_across_batches():
    sizes = TermSizes(encoders=2, timesteps=2)
    a = torch.zeros(2, 4, 3)
    a[0, 3] = torch.tensor([1e-6, 2e-6, 3e-6])  # encoder 1's alpha * g
    a[1, 0] = torch.tensor([0.5, 0.5, 0.5])
    b = torch.zeros(2, 4, 1)
    b[0, 3] = 6e-6
    b[1, 0] = 0.9
    assert len(sizes.add_steps(_steps(a, 2))) == 3
    sizes.add_steps(_steps(b, 2))
    mean = sizes.mean()
    assert sizes.images.tolist() == [0, 4, 4]
    assert mean[0, 3, 1] == pytest.approx((1e-6 + 2e-6 + 3e-6 + 6e-6) / 4)  # 3e-6
    assert mean[1, 0, 2] == pytest.approx(2 * (0.5 * 3 + 0.9) / 4)  # 1.2
    assert np.isnan(mean[:, :, 0]).all()
    rows = pd.DataFrame(sizes.rows(["features.3", "features.8"], sigma=0.5))
    assert len(rows) == 2 * 4 * 2 and set(rows["sigma"]) == {0.5}
    error = rows[(rows["encoder"] == 1) & (rows["term"] == "error")].set_index("timestep")
    assert error.loc[2, "term_ratio"] == pytest.approx(6e-6)
    assert error.loc[1, "layer"] == "features.3"
    summary = pd.DataFrame(summary_rows(rows))
    ff2 = summary[(summary["encoder"] == 2) & (summary["condition"] == "ff")]
    assert ff2.set_index("metric")["value"].to_dict() == pytest.approx(
        {"term_ratio": 1.2, "term_ratio_max": 1.2}
    )
    assert acts_text(rows) == "alpha * g is never more than 1% of ||e_n||: at most 6e-06 " + (
        "(encoder 1, t=2)"
    )


def test_bad_terms_are_refused(tmp_path):
    sizes = TermSizes(encoders=2, timesteps=1)
    with pytest.raises(ValueError, match=r"must be \[2, 4, batch\]"):
        sizes.add(1, torch.zeros(3, 4, 2))
    with pytest.raises(ValueError, match="non-finite"):
        sizes.add(1, torch.full((2, 4, 1), float("nan")))
    sizes.add(1, torch.full((2, 4, 1), 0.02))
    rows = pd.DataFrame(sizes.rows(["a", "b"]))
    assert acts_text(rows).startswith("alpha * g is more than 1%")
    assert figure(tmp_path / "terms.png", rows, "toy").stat().st_size > 5_000
