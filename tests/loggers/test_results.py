"""pcnets.results.load: one DataFrame across a sweep's run folders, joined with their configs
and swept values; `pcnets report --export`; summary.csv rows labelled like metrics.csv's."""

from __future__ import annotations

import pandas as pd
import pytest
from logged_sweep import run_sweep
from typer.testing import CliRunner

import pcnets.results
from pcnets.cli import app
from pcnets.errors import PcnetsError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    """A 4-job sweep: seed=0,1 x data.num_images=8,12 (no logger)."""
    folder = tmp_path_factory.mktemp("results") / "sw"
    done = run_sweep(folder, "data.num_images=8,12")
    assert not done.failed and len(done.jobs) == 4
    return folder


def test_load_joins_every_metrics_row_with_its_config_and_swept_values(four):
    df = pcnets.results.load(four)
    assert len(df) == 4 * 2 * 3  # jobs x sigmas x timesteps
    for col in ("run_id", "backbone", "decoders", "command", "numerics", "pc.beta", "pc.alpha"):
        assert df[col].notna().all(), col
    assert list(df.columns[:3]) == ["run_id", "backbone", "decoders"]
    jobs = df.groupby("path")[["seed", "data.num_images", "total"]].first()
    assert sorted(map(tuple, jobs[["seed", "data.num_images"]].values)) == [
        (0, 8),
        (0, 12),
        (1, 8),
        (1, 12),
    ]
    assert (jobs["total"] == jobs["data.num_images"]).all()  # each row's own job's values
    assert df["run_id"].nunique() == 4 and set(df["command"]) == {"eval-noise"}
    # a glob of two job folders, and summary rows
    two = pcnets.results.load(str(four / "[01]"), summary=True)
    assert two["path"].nunique() == 2 and {"metric", "value", "seed"} <= set(two.columns)


def test_summary_csv_rows_carry_run_id_backbone_decoders_like_metrics_csv(four):
    for job in "0123":
        summary, metrics = (
            pd.read_csv(four / job / "summary.csv"),
            pd.read_csv(four / job / "metrics.csv"),
        )
        labels = ["run_id", "backbone", "decoders"]
        assert list(summary.columns[:3]) == labels
        assert (
            summary[labels].drop_duplicates().values.tolist()
            == metrics[labels].drop_duplicates().values.tolist()
        )


def test_report_exports_the_table_as_csv_and_parquet(four, tmp_path):
    for name in ("rows.csv", "rows.parquet"):
        out = tmp_path / name
        res = CliRunner().invoke(
            app, ["report", str(four), "--out", str(tmp_path / "r.md"), "--export", str(out)]
        )
        assert res.exit_code == 0, res.output
        back = pd.read_csv(out) if name.endswith(".csv") else pd.read_parquet(out)
        assert (
            len(back) == 24
            and back["accuracy"].tolist() == pcnets.results.load(four)["accuracy"].tolist()
        )
    bad = CliRunner().invoke(
        app, ["report", str(four), "--out", str(tmp_path / "r.md"), "--export", "x.xlsx"]
    )
    assert bad.exit_code == 2 and "give a .csv or .parquet file" in bad.output


def test_load_says_what_is_missing(tmp_path):
    with pytest.raises(PcnetsError, match="matches no folder"):
        pcnets.results.load(str(tmp_path / "nothing*"))
    with pytest.raises(PcnetsError, match="no such folder"):
        pcnets.results.load(tmp_path / "absent")
