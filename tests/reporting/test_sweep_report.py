"""`pcnets report` on a -m sweep folder made by hand: the swept key, the change from t = 0 and
against the baseline job with McNemar, Holm and the MDE, in sweep.md, sweep.png, summary.csv."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pcnets.cli import app
from pcnets.config import compose
from pcnets.errors import PcnetsError
from pcnets.intervals import holm, mcnemar_p
from pcnets.reporting import noise_report as noise
from pcnets.reporting.sweep import jobs, swept, write_sweep
from pcnets.runtime.cell_images import IMAGES, save_cell_images
from pcnets.runtime.runs import Run, cell_key

T, N = 2, 60


def _job(folder, lam: float, correct: np.ndarray, *extra: str) -> None:
    cfg = compose(
        ["data.limit=5", "eval.bootstrap=50", f"pc.timesteps={T}", f"pc.lam={lam}", *extra]
    )
    run = Run("eval-noise", cfg, out=folder)
    keys = [f"n0/{i:03d}.JPEG" for i in range(N)]
    labels = np.arange(N) % 5
    predictions = np.where(correct, labels[:, None], (labels[:, None] + 1) % 5)
    save_cell_images(run.path / IMAGES / noise.noise_file(0.0), keys, labels, predictions)
    rows = [
        {"sigma": 0.0, "timestep": t, "correct": int(c), "total": N}
        for t, c in enumerate(correct.sum(axis=0))
    ]
    run.record(cell_key(sigma=0.0), rows)
    noise.render(run.path)
    run.finish()


def _correct(first: int, last: int) -> np.ndarray:
    """``first`` images right at t=0 (the first ones), ``last`` right at t>=1 (the first ones)."""
    x = np.zeros((N, T + 1), bool)
    x[:first, 0] = True
    x[:last, 1:] = True
    return x


@pytest.fixture
def sweep(tmp_path):
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / "multirun.yaml").write_text("hydra: {}\n")
    _job(folder / "0", 0.0, _correct(30, 30))  # baseline: no change
    _job(folder / "1", 0.1, _correct(30, 22))  # 8 lost
    _job(folder / "2", 0.3, _correct(30, 10))  # 20 lost
    return folder


def test_the_sweep_compares_every_job_with_t0_and_the_baseline(sweep):
    runs = jobs(sweep)
    assert swept(runs) == {"pc.lam": [0.0, 0.1, 0.3]}
    write_sweep(sweep)
    summary = pd.read_csv(sweep / "summary.csv")
    vs_base = summary[summary["metric"] == "change_from_baseline"].set_index("condition")
    assert list(vs_base.index) == ["pc.lam=0.1", "pc.lam=0.3"]
    assert vs_base.loc["pc.lam=0.3", "value"] == pytest.approx(100 * (10 - 30) / N)
    assert vs_base.loc["pc.lam=0.1", "p_value"] == pytest.approx(mcnemar_p(8, 0))  # 2 / 2^8
    assert vs_base.loc["pc.lam=0.3", "low"] <= vs_base.loc["pc.lam=0.3", "value"]
    assert vs_base.loc["pc.lam=0.3", "mde"] == pytest.approx(100 * 2.801585 * np.sqrt(20 / N / N))
    change = summary[summary["metric"] == "change_from_t0"]
    assert change["value"].tolist() == pytest.approx([0.0, -800 / N, -2000 / N])
    family = summary[summary["metric"].str.startswith("change")]
    np.testing.assert_allclose(family["p_adjusted"], holm(family["p_value"]))
    text = (sweep / "sweep.md").read_text()
    assert "swept pc.lam" in text and "Baseline job: pc.lam=0.0" in text
    assert (sweep / "sweep.png").stat().st_size > 10_000


def test_report_on_a_sweep_folder_writes_it_and_refuses_a_bad_baseline(sweep, tmp_path):
    result = CliRunner().invoke(app, ["report", str(sweep), "--out", str(tmp_path / "r.md")])
    assert result.exit_code == 0, result.output
    assert "sweep " in result.stdout and (sweep / "sweep.md").is_file()
    with pytest.raises(PcnetsError, match="--baseline 5"):
        write_sweep(sweep, baseline=5)
    bad = CliRunner().invoke(
        app, ["report", str(sweep), "--out", str(tmp_path / "r.md"), "--baseline", "7"]
    )
    assert bad.exit_code != 0 and "--baseline 7" in bad.output


def test_tune_jobs_give_the_spread_across_seeds(tmp_path):
    from types import SimpleNamespace

    from pcnets.reporting.sweep_parts import tune_rows

    runs = []
    for seed, (lam, final) in enumerate(((0.1, 2.0), (0.2, 1.5), (0.6, 1.0))):
        folder = tmp_path / str(seed)
        folder.mkdir()
        pd.DataFrame(
            [
                {"metric": "tuned_lam", "condition": "tuned", "encoder": 1, "value": lam},
                {"metric": "final_loss", "condition": "all", "encoder": None, "value": final},
                {"metric": "final_loss", "condition": "sigma 0.5", "encoder": None, "value": 9.0},
            ]
        ).to_csv(folder / "summary.csv", index=False)
        runs.append(SimpleNamespace(command="tune", path=folder))
    rows = pd.DataFrame(tune_rows(runs, ["seed=0", "seed=1", "seed=2"])).set_index("metric")
    assert rows.loc["tuned_lam_mean", "value"] == pytest.approx(0.3)
    assert rows.loc["tuned_lam_sd", "value"] == pytest.approx(np.std([0.1, 0.2, 0.6], ddof=1))
    assert rows.loc["final_loss_mean", "value"] == pytest.approx(1.5)  # the per-sigma rows left out
    assert rows.loc["final_loss_max", "n"] == 3
    assert tune_rows(runs[:1], ["seed=0"]) == []
