"""`pcnets report`: every run folder given (or found under a root) is in the report with its
table, figures, command and config; a corrupt folder stops it with a clear one-line error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pcnets.cli.common import app
from pcnets.config import compose
from pcnets.errors import PcnetsError
from pcnets.experiments.manifold import summarize
from pcnets.reporting.manifold import manifold_figure
from pcnets.reporting.report import write_report
from pcnets.reporting.run_folders import find_runs, load_run
from pcnets.reporting.tables import markdown_table
from pcnets.runtime.runs import Run, cell_key


@pytest.fixture(scope="module")
def cfg():
    return compose(["data.limit=5"])


def _noise_run(cfg, path: Path, correct: int) -> Path:
    run = Run("eval-noise", cfg, out=path)
    for sigma in (0.5, 1.0):
        rows = [
            {"sigma": sigma, "timestep": t, "correct": correct - t, "total": 10} for t in range(3)
        ]
        run.record(cell_key(sigma=sigma), rows)
    run.write_text("table.md", "# accuracy\n\n| sigma | acc |\n|---|---|\n| 0.5 | 0.6 |\n")
    run.finish()
    return path


def _manifold_run(cfg, path: Path) -> Path:
    run = Run("manifold", cfg, out=path)
    dist = np.random.default_rng(0).uniform(0.1, 0.5, size=(8, 2, 3))
    run.record(cell_key(sigma=0.5), summarize(dist, ["a", "b"], 0.5, n_resamples=50))
    run.write_text("table.md", "manifold table")
    manifold_figure(run.metrics(), path / "manifold.png", title="test")
    run.finish()
    return path


def _tune_run(cfg, path: Path) -> Path:
    run = Run("tune", cfg, out=path)
    run.record(cell_key(final=True), [{"step": 0, "encoder": 1, "beta": 0.7, "loss": 1.0}])
    hyper = {"backbone": "vgg16", "beta": [0.7, 0.6], "lam": [0.2, 0.0], "alpha": [0.01, 0.02]}
    hyper.update(first_loss=2.0, final_loss=1.5)
    run.write_text("hyper.json", json.dumps(hyper))
    run.finish()
    return path


@pytest.fixture
def root(tmp_path, cfg) -> Path:
    results = tmp_path / "results"
    _noise_run(cfg, results / "eval-noise" / "vgg16" / "aaa", correct=6)
    _noise_run(cfg, results / "eval-noise" / "vgg16" / "bbb", correct=9)
    _manifold_run(cfg, results / "manifold" / "vgg16" / "ccc")
    _tune_run(cfg, results / "tune" / "vgg16" / "ddd")
    return results


def test_the_report_lists_every_run_with_tables_figures_and_config(root, tmp_path):
    out = tmp_path / "docs" / "REPORT.md"
    path, runs = write_report([root], out)
    text = path.read_text()
    assert len(runs) == 4
    for folder in ("eval-noise/vgg16/aaa", "eval-noise/vgg16/bbb", "manifold/vgg16/ccc"):
        assert f"../results/{folder}" in text
    assert text.count("### eval-noise:") == 2 and "#### accuracy" in text  # headings demoted
    # the figure link resolves relative to the report
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == 1 and (out.parent / links[0]).is_file()
    assert "`data.limit=5`" in text and '`backbone.name="vgg16"`' in text
    # paper-style noise summary: accuracy per run, sigma and timestep from the counts
    noise = text.split("### Accuracy under Gaussian noise")[1].split("###")[0]
    assert "| 0.6 | 0.5 | 0.4 |" in noise and "| 0.9 | 0.8 | 0.7 |" in noise
    assert "### Tuned hyperparameters" in text and "2.000 -> 1.500" in text


def test_rerunning_the_report_picks_up_new_runs(root, tmp_path, cfg):
    out = tmp_path / "REPORT.md"
    write_report([root], out)
    _noise_run(cfg, root / "eval-noise" / "vgg16" / "eee", correct=7)
    _, runs = write_report([root / "eval-noise" / "vgg16" / "eee", root], out)
    assert len(runs) == 5  # a folder given twice (directly and under the root) counts once
    assert "results/eval-noise/vgg16/eee" in out.read_text()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "provenance.json").unlink(), "provenance.json is missing"),
        (lambda p: (p / "provenance.json").write_text("{not json"), "not valid JSON"),
        (lambda p: (p / "provenance.json").write_text("{}"), 'no "command"'),
        (lambda p: (p / "config.yaml").unlink(), "config.yaml is missing"),
        (lambda p: (p / "config.yaml").write_text("a: [1,"), "config.yaml is not valid YAML"),
        (lambda p: (p / "metrics.csv").write_text(""), "metrics.csv cannot be read"),
    ],
)
def test_a_corrupt_run_folder_is_named_in_one_clear_error(root, tmp_path, damage, message):
    bad = root / "eval-noise" / "vgg16" / "bbb"
    damage(bad)
    out = tmp_path / "REPORT.md"
    with pytest.raises(PcnetsError, match=re.escape(message)) as err:
        write_report([root], out, strict=True)
    assert f"corrupt run folder {bad}" in str(err.value)
    assert not out.exists()  # no half report


def test_the_command_line_reports_and_fails_with_exit_2(root, tmp_path):
    runner = CliRunner()
    out = tmp_path / "r.md"
    ok = runner.invoke(
        app, ["report", str(root / "tune"), str(root / "manifold"), "--out", str(out)]
    )
    assert ok.exit_code == 0 and "2 run folders" in ok.output
    (root / "tune" / "vgg16" / "ddd" / "metrics.csv").unlink()
    bad = runner.invoke(app, ["report", str(root), "--out", str(out), "--strict"])
    assert bad.exit_code == 2
    assert "metrics.csv is missing" in bad.output and "ddd" in bad.output
    empty = tmp_path / "empty"
    empty.mkdir()
    none = runner.invoke(app, ["report", str(empty), "--out", str(out)])
    assert none.exit_code == 2 and "no run folders" in none.output


def test_find_runs_and_markdown_helpers(root, tmp_path):
    found = find_runs([root])
    assert sorted(p.name for p in found) == ["aaa", "bbb", "ccc", "ddd"]
    assert load_run(found[0]).command in {"eval-noise", "manifold", "tune"}
    with pytest.raises(PcnetsError, match="no such folder"):
        find_runs([tmp_path / "missing"])
    import pandas as pd

    table = markdown_table(pd.DataFrame({"a": [1, 2], "b|c": [0.123456, float("nan")]}))
    assert table.splitlines() == ["| a | b\\|c |", "|---|---|", "| 1 | 0.1235 |", "| 2 |  |"]


def test_attack_and_corruption_summaries_from_counts(tmp_path, cfg):
    attack = Run("attack", cfg, out=tmp_path / "results" / "attack")
    rows = [
        {"kind": "unrolled", "eps": 0.01, "timestep": 0, "success": 8, "total": 10},
        {"kind": "transfer", "eps": 0.01, "timestep": 0, "success": 1, "total": 10},
        {"kind": "unrolled", "eps": 0.01, "timestep": 2, "success": 5, "total": 10},
    ]
    attack.record(cell_key(eps=0.01), rows)
    attack.finish()
    corr = Run("eval-corruptions", cfg, out=tmp_path / "results" / "corr")
    # error rates: gaussian_noise 0.5 at t=0 and 0.25 at t=1, both severities; fog 0.2 -> 0.2
    for name, wrong in (("gaussian_noise", (2, 1)), ("fog", (1, 1))):
        corr.record(
            cell_key(corruption=name),
            [
                {"corruption": name, "severity": s, "timestep": t, "correct": 4 - w, "total": 4}
                if name == "gaussian_noise"
                else {"corruption": name, "severity": s, "timestep": t, "correct": 4, "total": 5}
                for s in (1, 2)
                for t, w in enumerate(wrong)
            ],
        )
    corr.finish()
    out = tmp_path / "R.md"
    write_report([tmp_path / "results"], out)
    text = out.read_text()
    attack_table = text.split("### Attack success rate per timestep")[1].split("###")[0]
    assert "| 0.01 | 0.8 | 0.5 |" in attack_table  # the transfer row is left out
    mce = text.split("### Corruption errors")[1].split("###")[0]
    assert "| relative_mce | 2 | 1 | 0.75 |" in mce  # mean of 0.25/0.5 and 0.2/0.2
