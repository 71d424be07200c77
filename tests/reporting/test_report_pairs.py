"""The report's paired comparisons between runs (issue 22, item 6): two eval-noise runs that
differ in one config key are compared image by image (the demo's tuned against its default
hyperparameters), with McNemar and Holm over the report's pairs, the default's run as the
baseline; runs that differ in more, repeated configs and pairs of sweep jobs are not paired."""

from __future__ import annotations

import pytest
from test_sweep_report import N, _correct, _job

from pcnets.intervals import holm, mcnemar_p
from pcnets.reporting.pairs import pair_rows, pairs
from pcnets.reporting.report import write_report
from pcnets.reporting.run_folders import load_run


def test_runs_differing_in_one_key_are_paired_with_the_default_as_baseline(tmp_path):
    _job(tmp_path / "plain", 0.0, _correct(30, 30))
    _job(tmp_path / "feedback", 0.1, _correct(30, 22))  # pc.lam's default; 8 images lost
    _job(tmp_path / "again", 0.1, _correct(30, 22))  # the same config: no second comparison
    _job(tmp_path / "two-keys", 0.3, _correct(30, 10), "pc.beta=0.5")  # lam and beta differ
    names = ("plain", "feedback", "again", "two-keys")
    runs = [load_run(tmp_path / name) for name in names]
    found = pairs(runs)
    assert [(a.path.name, b.path.name, key) for a, b, key in found] == [
        ("feedback", "plain", "pc.lam")
    ]
    (row,) = pair_rows(runs)
    assert row["value"] == pytest.approx(100 * 8 / N) and row["n"] == N
    assert row["p_value"] == pytest.approx(mcnemar_p(0, 8))
    assert row["p_adjusted"] == pytest.approx(holm([mcnemar_p(0, 8)])[0])
    assert 0 <= row["low"] < row["value"] < row["high"]
    assert row["verdict"] == "decided" and row["comparison"] == "pc.lam: 0.1 -> 0.0"

    out, _ = write_report([tmp_path], tmp_path / "report.md")
    text = out.read_text()
    section = text[text.index("## Paired comparisons between runs") :].split("\n## ")[0]
    # the report reads the folders in name order: "again" stands for its config there
    assert "| pc.lam: 0.1 -> 0.0 | again | plain | clean (sigma 0) | 13.3" in section
    assert "two-keys" not in section


def test_sweep_jobs_are_left_to_the_sweep_reports_unless_paired_with_a_run_made_alone(tmp_path):
    for sweep, lam, correct in (("a", 0.0, _correct(30, 30)), ("b", 0.1, _correct(30, 22))):
        (tmp_path / sweep).mkdir()
        (tmp_path / sweep / "multirun.yaml").write_text("hydra: {}\n")
        _job(tmp_path / sweep / "0", lam, correct)
    jobs = [load_run(tmp_path / sweep / "0") for sweep in ("a", "b")]
    assert pairs(jobs) == []  # two sweeps' jobs: each sweep's own report compares its jobs
    _job(tmp_path / "alone", 0.0, _correct(30, 30), "pc.beta=0.5")
    alone = load_run(tmp_path / "alone")
    ((base, other, key),) = pairs([*jobs, alone])
    assert (base.path.name, other.path.name, key) == ("0", "alone", "pc.beta")
    assert pair_rows([*jobs, alone])[0]["baseline"] == "a/0"


def test_pairs_compare_the_sigmas_the_runs_evaluated_not_the_configs_unit(tmp_path):
    # eval.sigmas in the paper's units name other numbers than the runs' files (normalised units)
    unit = ("eval.sigma_unit=reference", "eval.sigmas=[0.5]")
    _job(tmp_path / "plain", 0.0, _correct(30, 30), *unit)
    _job(tmp_path / "feedback", 0.1, _correct(30, 22), *unit)
    runs = [load_run(tmp_path / name) for name in ("plain", "feedback")]
    (row,) = pair_rows(runs)
    assert row["sigma"] == "clean (sigma 0)" and row["value"] == pytest.approx(100 * 8 / N)
