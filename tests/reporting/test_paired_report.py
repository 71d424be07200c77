"""summary.csv's p_value, p_adjusted and mde columns of an eval-noise run made by hand: they are
McNemar's and Holm's numbers of the per-image files, and the table says them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pcnets.config import compose
from pcnets.intervals import holm, mcnemar_p
from pcnets.reporting import noise_report as noise
from pcnets.reporting.tables import read_summary
from pcnets.runtime.cell_images import IMAGES, save_cell_images
from pcnets.runtime.runs import Run, cell_key

T = 2


def _cell(run: Run, sigma: float, correct: np.ndarray) -> None:
    keys = [f"n0/{i:03d}.JPEG" for i in range(len(correct))]
    labels = np.arange(len(correct)) % 5
    predictions = np.where(correct, labels[:, None], (labels[:, None] + 1) % 5)
    save_cell_images(run.path / IMAGES / noise.noise_file(sigma), keys, labels, predictions)
    rows = [
        {"sigma": sigma, "timestep": t, "correct": int(c), "total": len(correct)}
        for t, c in enumerate(correct.sum(axis=0))
    ]
    run.record(cell_key(sigma=sigma), rows)


def _column(first: int, lost: int, gained: int, n: int) -> np.ndarray:
    """Correctness (n, T+1): ``first`` right at t=0; at t>=1 ``lost`` of them wrong and ``gained``
    of the wrong ones right."""
    x = np.zeros((n, T + 1), bool)
    x[:first, 0] = True
    x[:, 1:] = x[:, :1]
    x[:lost, 1:] = False
    x[first : first + gained, 1:] = True
    return x


def test_noise_summary_has_mcnemar_holm_and_mde(tmp_path):
    cfg = compose(["data.limit=5", "eval.bootstrap=50", f"pc.timesteps={T}"])
    run = Run("eval-noise", cfg, out=tmp_path / "run")
    n = 100
    cells = {0.0: (60, 10, 1), 0.5: (40, 3, 3)}  # clean: 10 lost, 1 gained; sigma 0.5: 3 and 3
    for sigma, (first, lost, gained) in cells.items():
        _cell(run, sigma, _column(first, lost, gained, n))
    noise.render(run.path)
    run.finish()
    summary = read_summary(run.path)
    change = summary[(summary["metric"] == "change_from_t0") & (summary["timestep"] == T)]
    change = change.set_index("sigma")
    p_clean, p_noise = mcnemar_p(10, 1), mcnemar_p(3, 3)
    assert change.loc[0.0, "p_value"] == pytest.approx(p_clean)  # 2 * 12 / 2048
    assert p_clean == pytest.approx(0.01171875)
    assert change.loc[0.5, "p_value"] == pytest.approx(1.0)
    np.testing.assert_allclose(change["p_adjusted"], holm([p_clean, p_noise]))
    assert change.loc[0.0, "p_adjusted"] == pytest.approx(2 * p_clean)
    # 11 discordant of 100 -> 2.8016 * sqrt(0.11 / 100) in points
    assert change.loc[0.0, "mde"] == pytest.approx(100 * 2.801585 * np.sqrt(0.0011), rel=1e-5)
    # t=0 against itself: p = 1, no adjusted p (outside the family)
    first = summary[(summary["metric"] == "change_from_t0") & (summary["timestep"] == 0)]
    assert (first["p_value"] == 1.0).all() and first["p_adjusted"].isna().all()
    assert summary[summary["metric"] == "accuracy"]["p_value"].isna().all()
    table = (run.path / "table.md").read_text()
    assert f"{p_clean:.3g} ({2 * p_clean:.3g})" in table
    columns = list(pd.read_csv(run.path / "summary.csv").columns)
    assert {"p_value", "p_adjusted", "mde"} <= set(columns)


def test_findings_decide_only_below_an_adjusted_005():
    from pcnets.reporting.findings import decision

    row = {"value": -3.1, "low": -6.4, "high": -0.2, "p_value": 0.058, "p_adjusted": 0.17}
    row["mde"] = 4.3
    text = decision(row)
    assert text.startswith("not decided") and "4.3 pp" in text and "Holm 0.17" in text
    row.update(p_value=0.004, p_adjusted=0.012)
    assert decision(row) == "decided: lower (McNemar p 0.004, Holm 0.012)"
    row.update(value=2.0)
    assert decision(row).startswith("decided: higher")
    # a run without p-values: the interval's verdict, as before
    old = {"value": -3.1, "low": -6.4, "high": -0.2, "p_adjusted": float("nan")}
    assert decision(old) == "lower (the interval excludes 0)"


def test_corruption_findings_rely_on_the_ratio_of_sums_when_resamples_are_undefined():
    from pcnets.reporting.findings import corruption_findings

    rows = [
        ("relative_mce", 1.2, 1.05, float("inf")),
        ("relative_mce_undefined", 0.42, None, None),
        ("summed_error_ratio", 1.148, 0.97, 1.31),
    ]
    summary = pd.DataFrame(
        [
            {"metric": m, "condition": "all", "timestep": 5, "value": v, "low": lo, "high": hi}
            for m, v, lo, hi in rows
        ]
    ).assign(n=100)
    (text,) = corruption_findings(summary)
    assert "undefined in 42% of resamples" in text
    assert "ratio of summed errors 1.148 [0.970, 1.310]" in text
    assert text.endswith("no change the interval can tell from 1")  # not "higher" from [1.05, inf]
    summary.loc[1, "value"] = 0.0
    (text,) = corruption_findings(summary)
    assert "summed" not in text and "higher (the interval excludes 1)" in text


def test_noise_findings_name_the_sigma_in_the_papers_units():
    from pcnets.reporting.findings import noise_findings

    base = {"condition": "noise", "sigma": 0.226, "n": 100}
    rows = [
        {**base, "metric": "accuracy", "timestep": 0, "value": 60.0},
        {**base, "metric": "accuracy", "timestep": 2, "value": 57.0},
        {**base, "metric": "change_from_t0", "timestep": 2, "value": -3.0, "low": -6.0},
        {**base, "metric": "sigma_reference", "value": 0.5},
        {**base, "metric": "sigma_pixel", "value": 0.113},
    ]
    summary = pd.DataFrame(rows)
    summary.loc[2, ["high", "p_value", "p_adjusted", "mde"]] = [-0.5, 0.01, 0.03, 2.5]
    (text,) = noise_findings(summary)
    assert text.startswith("sigma 0.226 (0.5 in the paper's units, 0.113 px): 60.0 -> 57.0 %")
    assert text.endswith("decided: lower (McNemar p 0.01, Holm 0.03)")
