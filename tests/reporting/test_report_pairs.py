"""The report's paired comparisons between runs (issue 22, item 6): two eval-noise runs that
differ in one config key are compared image by image (the demo's tuned against its default
hyperparameters), with McNemar and Holm over the report's pairs; runs that differ in more, and the
jobs of one sweep, are not paired."""

from __future__ import annotations

import pytest
from test_sweep_report import N, _correct, _job

from pcnets.intervals import holm, mcnemar_p
from pcnets.reporting.pairs import pair_rows, pairs
from pcnets.reporting.report import write_report
from pcnets.reporting.run_folders import load_run


def test_runs_differing_in_one_key_are_paired_with_the_unset_value_as_baseline(tmp_path):
    _job(tmp_path / "feedback", 0.1, _correct(30, 22))  # 8 images lost against no feedback
    _job(tmp_path / "plain", 0.0, _correct(30, 30))
    _job(tmp_path / "two-keys", 0.3, _correct(30, 10), "pc.beta=0.5")  # lam and beta differ
    runs = [load_run(tmp_path / name) for name in ("feedback", "plain", "two-keys")]
    found = pairs(runs)
    assert [(a.path.name, b.path.name, key) for a, b, key in found] == [
        ("plain", "feedback", "pc.lam")
    ]
    (row,) = pair_rows(runs)
    assert row["value"] == pytest.approx(100 * -8 / N) and row["n"] == N
    assert row["p_value"] == pytest.approx(mcnemar_p(0, 8))
    assert row["p_adjusted"] == pytest.approx(holm([mcnemar_p(0, 8)])[0])
    assert row["low"] < row["value"] < row["high"] <= 0
    assert row["verdict"] == "decided" and row["comparison"] == "pc.lam: 0.0 -> 0.1"

    out, _ = write_report([tmp_path], tmp_path / "report.md")
    text = out.read_text()
    section = text[text.index("## Paired comparisons between runs") :].split("\n## ")[0]
    assert "| pc.lam: 0.0 -> 0.1 | plain | feedback | clean (sigma 0) | -13.3" in section
    assert "two-keys" not in section


def test_jobs_of_one_sweep_are_left_to_the_sweep_report(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    _job(sweep / "0", 0.0, _correct(30, 30))
    _job(sweep / "1", 0.1, _correct(30, 22))
    assert pairs([load_run(sweep / "0"), load_run(sweep / "1")]) == []
