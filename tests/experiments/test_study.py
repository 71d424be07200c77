"""`make study SMOKE=1`: every stage of scripts/study.sh runs at tiny scale and leaves its run or
sweep folder, the sweeps their sweep.md, and the report."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
RUNS = ("train-feedback", "eval-noise", "eval-corruptions", "attack", "manifold")
SWEEPS = {  # sweep folder: jobs
    "alpha": 4,
    "alpha-batch-mean": 2,
    "alpha-relative": 2,
    "lambda-per-layer": 2,
    "decoders-by-size": 2,
    "decoder-quality": 3,
    "tune": 3,
    "tuned-vs-default": 4,
}


@pytest.mark.slow  # minutes on a 2-core CPU: `make test-slow`
def test_smoke_study_writes_every_stage(tmp_path, sample_root):
    env = {**os.environ, "SMOKE": "1", "OUT": str(tmp_path / "study")}
    env["PCNETS"] = str(REPO / ".venv" / "bin" / "pcnets")
    env["PCNETS_DATA_DIR"] = str(sample_root.parent)
    done = subprocess.run(
        ["bash", "scripts/study.sh"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "study-smoke"
    for stage in RUNS:
        prov = json.loads((out / stage / "provenance.json").read_text())
        assert prov["status"] in ({"finished", "suspect"} if stage == "attack" else {"finished"})
    for sweep, count in SWEEPS.items():
        jobs = [p for p in (out / sweep).iterdir() if p.name.isdigit()]
        assert len(jobs) == count, sweep
        assert (out / sweep / "sweep.md").is_file(), sweep
    summary = pd.read_csv(out / "alpha" / "summary.csv")
    base = summary[summary["metric"] == "change_from_baseline"]
    assert len(base) == 3 * 2 and base["p_adjusted"].notna().all()  # 3 jobs x 2 sigmas
    units = pd.read_csv(out / "eval-noise" / "summary.csv")
    ref = units[units["metric"] == "sigma_reference"]["value"]
    assert sorted(ref.round(6)) == [0.0, 0.5]
    assert (out / "eval-noise" / "subset.txt").read_text().count("\n") == 4
    terms = pd.read_csv(out / "alpha-relative" / "1" / "terms.csv")  # alpha 0.1 x ||e_n||
    assert (terms[terms["term"] == "error"]["term_ratio"] > 0).any()
    report = (out / "REPORT.md").read_text()
    assert "## Findings" in report
    # alpha/0 and alpha-batch-mean/0 differ in pc.error_reduction alone: the report pairs them
    assert "| pc.error_reduction: per_sample -> batch_mean |" in report
    hyper = json.loads((out / "tune" / "0" / "hyper.json").read_text())
    assert hyper["heldout"]["images"] > 0 and set(hyper["heldout"]["loss"]) == {"initial", "tuned"}
    attack_terms = pd.read_csv(out / "attack" / "terms.csv")
    assert attack_terms["condition"].str.contains("attacked at t=1").any()
