"""summary.csv and the report: run folders made by hand (no model), rendered from their files, and
the report's summary tables checked number by number against each run's summary.csv."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pcnets.config import compose
from pcnets.metrics import ALEXNET_ERR
from pcnets.reporting import corruption_report, noise_report
from pcnets.reporting.report import write_report
from pcnets.reporting.tables import markdown_table, read_summary
from pcnets.runtime.cell_images import IMAGES, save_cell_images
from pcnets.runtime.runs import Run, cell_key

NAMES = ("gaussian_noise", "fog", "speckle_noise")
SEVERITIES = (1, 2)
IMAGES_N, T = 30, 2


def _cell(run: Run, file: str, fields: dict, correct: np.ndarray) -> None:
    """One cell as the experiments write it: per-image predictions and the rows of counts."""
    keys = [f"n0/{i:03d}.JPEG" for i in range(len(correct))]
    labels = np.arange(len(correct)) % 5
    predictions = np.where(correct, labels[:, None], (labels[:, None] + 1) % 5)
    save_cell_images(run.path / IMAGES / file, keys, labels, predictions)
    counts = correct.sum(axis=0)
    rows = [
        {**fields, "timestep": t, "correct": int(c), "total": len(correct)}
        for t, c in enumerate(counts)
    ]
    run.record(cell_key(**fields), rows)


def _correct(rng, p: float) -> np.ndarray:
    return rng.random((IMAGES_N, T + 1)) < np.linspace(p, p + 0.2, T + 1)


@pytest.fixture(scope="module")
def cfg():
    return compose(["data.limit=5", "eval.bootstrap=100", f"pc.timesteps={T}"])


def _noise_run(cfg, path: Path) -> Path:
    run = Run("eval-noise", cfg, out=path)
    rng = np.random.default_rng(0)
    for sigma, p in ((0.0, 0.6), (0.5, 0.3)):
        _cell(run, noise_report.noise_file(sigma), {"sigma": sigma}, _correct(rng, p))
    noise_report.render(path)
    run.finish()
    return path


def _corruption_run(cfg, path: Path) -> Path:
    run = Run("eval-corruptions", cfg, out=path)
    rng = np.random.default_rng(1)
    for name in NAMES:
        for s in SEVERITIES:
            fields = {"corruption": name, "severity": s}
            _cell(
                run,
                corruption_report.corruption_file(name, s),
                fields,
                _correct(rng, 0.7 - 0.2 * s),
            )
    corruption_report.render(path)
    run.finish()
    return path


def _table(text: str, heading: str) -> pd.DataFrame:
    """A Markdown table of the report, under ``heading``, as text cells."""
    block = text.split(heading)[1].split("###")[0].strip().splitlines()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in block if "|" in line]
    return pd.DataFrame(rows[2:], columns=rows[0])


def test_the_report_numbers_are_each_runs_summary_csv(tmp_path, cfg):
    results = tmp_path / "results"
    noisy = _noise_run(cfg, results / "eval-noise" / "toy" / "aaa")
    corr = _corruption_run(cfg, results / "eval-corruptions" / "toy" / "bbb")
    out = tmp_path / "REPORT.md"
    write_report([results], out)
    text = out.read_text()

    summary = read_summary(noisy)
    report = _table(text, "### Accuracy under Gaussian noise")
    assert len(report) == 2 and set(report["unit"]) == {"%"}
    for _, row in report.iterrows():
        acc = summary[(summary["metric"] == "accuracy") & (summary["sigma"] == float(row["sigma"]))]
        for t in range(T + 1):
            want = acc[acc["timestep"] == t]["value"].item()
            assert float(row[f"t{t}"]) == pytest.approx(want, rel=5e-3)  # 3 significant digits
        change = summary[(summary["metric"] == "change_from_t0") & (summary["timestep"] == T)]
        last = change[change["sigma"] == float(row["sigma"])].iloc[0]
        assert row["change at last t (pp)"] == (
            f"{last['value']:+.1f} [{last['low']:.1f}, {last['high']:.1f}]"
        )
    # percent, as the run's own table: 100 x the counts
    clean = summary[(summary["metric"] == "accuracy") & (summary["sigma"] == 0)]
    counts = pd.read_csv(noisy / "metrics.csv").query("sigma == 0")
    np.testing.assert_allclose(clean["value"], 100 * counts["correct"] / counts["total"])

    summary = read_summary(corr)
    report = _table(text, "### Corruption errors").set_index("measure")
    count = summary[summary["metric"] == "corruptions"].set_index("condition")["value"]
    assert count.to_dict() == {"all": 3, "standard": 2, "extra": 1}
    assert report.loc["relative_mce", "corruptions"] == "3"
    assert report.loc["standard_mce (%)", "corruptions"] == "2"  # not all 3 (nor 19)
    for measure, metric in (("relative_mce", "relative_mce"), ("standard_mce (%)", "standard_mce")):
        part = summary[
            (summary["metric"] == metric) & (summary["condition"].isin(["all", "standard"]))
        ]
        for t in range(T + 1):
            want = part[part["timestep"] == t]["value"].item()
            assert float(report.loc[measure, f"t{t}"]) == pytest.approx(want, rel=5e-4)
    # the standard mCE is in percent and scaled for 2 of the 5 severities, as in the run's table
    cube = [pd.read_csv(corr / "metrics.csv").query("corruption == @c") for c in NAMES[:2]]
    by_hand = np.mean(
        [
            (1 - (d.query("timestep == 0")["correct"] / d.query("timestep == 0")["total"])).mean()
            / ALEXNET_ERR[c]
            for d, c in zip(cube, NAMES[:2], strict=True)
        ]
    )
    standard = summary[(summary["metric"] == "standard_mce") & (summary["timestep"] == 0)]
    assert standard["value"].item() == pytest.approx(100 * by_hand, rel=1e-9)
    table = (corr / "table.md").read_text()
    first = re.search(r"^\| 0 \| .*\| ([\d.]+) \[", table, re.M).group(1)
    assert float(first) == pytest.approx(100 * by_hand, abs=0.05)


def test_render_redraws_from_the_folder_and_markdown_takes_rows_or_frames(tmp_path, cfg):
    path = _noise_run(cfg, tmp_path / "run")
    before = (path / "summary.csv").read_text()
    (path / "table.md").unlink()
    (path / "summary.csv").unlink()
    lines = noise_report.render(path)  # no model: the files alone
    assert (path / "summary.csv").read_text() == before
    assert "## Change from timestep 0" in (path / "table.md").read_text()
    assert lines[0].startswith("clean (sigma 0): t=0 ")
    (path / "table.md").unlink()
    (path / "summary.csv").write_text("metric\n")  # stale: the report redraws it
    write_report([path], tmp_path / "R.md", render=True)
    assert (path / "summary.csv").read_text() == before and (path / "table.md").is_file()
    rows = markdown_table([["a", 0.5]], ["x", "y|z"]).splitlines()
    assert rows == ["| x | y\\|z |", "|---|---|", "| a | 0.5 |"]
    with pytest.raises(ValueError, match="header"):
        markdown_table([["a"]])


def test_manifold_and_tune_report_numbers_are_their_summary_csv(tmp_path):
    from pcnets.experiments.manifold import summarize
    from pcnets.reporting import manifold, tune

    results = tmp_path / "results"
    cfg = compose(["manifold.sigmas=[0.5]", "data.limit=4"])
    man = Run("manifold", cfg, out=results / "manifold")
    dist = np.random.default_rng(0).uniform(0.1, 0.5, size=(8, 2, 3))
    man.record(cell_key(sigma=0.5), summarize(dist, ["a", "b"], 0.5, n_resamples=50))
    manifold.render(man.path)
    man.finish()

    run = Run("tune", cfg, out=results / "tune")
    names = ["a", "b"]
    values = {"beta": [0.7, 0.6], "lam": [0.2, 0.0], "memory": [0.1, 0.4], "alpha": [0.01, 0.02]}
    rows = [
        {"step": s, "encoder": i + 1, "name": n, **{k: v[i] for k, v in values.items()}}
        | {"loss": 2.0 - 0.1 * s, "sigma": 0.5}
        for s in range(4)
        for i, n in enumerate(names)
    ]
    run.record(cell_key(steps_to=4), rows)
    initial = {"beta": [0.8, 0.8], "lam": [0.1, 0.1], "alpha": [0.01, 0.01]}
    hyper = {"backbone": "toy", "encoders": names, "initial": initial, "objective": "last"}
    hyper |= {"steps": 4, "lr": 0.1, "batch_size": 2, "timesteps": 2, "sigmas": [0.5]}
    hyper |= {**values, "first_loss": 2.0, "final_loss": 1.7, "loss_by_sigma": {"0.5": [2, 1.7]}}
    (run.path / "hyper.json").write_text(json.dumps(hyper))
    assert tune.render(run.path)[0].startswith("beta   0.7 0.6")
    run.finish()

    out = tmp_path / "R.md"
    write_report([results], out)
    text = out.read_text()
    summary = read_summary(man.path)
    report = _table(text, "### Convergence to clean representations").iloc[0]
    last = summary[(summary["metric"] == "relative_distance") & (summary["timestep"] == 2)]
    for encoder, want in zip(last["encoder"], last["value"], strict=True):
        assert float(report[f"e{encoder}"]) == pytest.approx(want, rel=5e-3)
    assert want == pytest.approx(dist[:, 1, 2].mean() / dist[:, 1, 0].mean(), rel=1e-9)
    summary = read_summary(run.path)
    report = _table(text, "### Tuned hyperparameters").set_index("value")
    tuned = summary[summary["metric"] == "tuned_lam"].sort_values("encoder")["value"].tolist()
    assert tuned == [0.2, 0.0] and [float(report.loc["lambda", e]) for e in ("e1", "e2")] == tuned
    assert report.loc["beta", "objective"] == "2.000 -> 1.700"
    initial_memory = summary[summary["metric"] == "initial_memory"]["value"].tolist()
    assert initial_memory == pytest.approx([0.1, 0.2])  # the top encoder's lambda is 0


def test_findings_state_each_change_and_whether_its_interval_decides_it(tmp_path, cfg):
    from pcnets.reporting.findings import decision, verdict

    assert verdict(0.5, 2.0) == "higher (the interval excludes 0)"
    assert verdict(-2.0, -0.1) == "lower (the interval excludes 0)"
    assert verdict(-1.0, 1.0) == "no change the interval can tell from 0"
    assert verdict(-0.3, -0.05, better="lower").startswith("higher")

    results = tmp_path / "results"
    noisy = _noise_run(cfg, results / "eval-noise" / "toy" / "aaa")
    _corruption_run(cfg, results / "eval-corruptions" / "toy" / "bbb")
    out = tmp_path / "REPORT.md"
    write_report([results], out)
    text = out.read_text().split("## Findings")[1].split("## Summary")[0]
    summary = read_summary(noisy)
    change = summary[(summary["metric"] == "change_from_t0") & (summary["timestep"] == T)]
    for _, row in change.iterrows():
        name = "clean" if row["sigma"] == 0 else f"sigma {row['sigma']:g}"
        said = f"({row['value']:+.1f} [{row['low']:.1f}, {row['high']:.1f}] pp), "
        said += decision(row)  # McNemar, Holm-adjusted: decided only below 0.05
        assert f"{name}: " in text and said in text
    assert "per_sample errors, no gradient scaling; untrained decoders" in text
    assert "relative mCE over all corruptions" in text
