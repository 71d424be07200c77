"""Run folders that lost a file or hold a malformed line: no cell of another config is reused, no
folder is stuck, and a killed session does not stay "running" (issue 24 items 2, 6, 11)."""

from __future__ import annotations

import json

import pytest

from pcnets.config import compose
from pcnets.errors import PcnetsError
from pcnets.runtime.runs import Run, cell_key

ROW = {"sigma": 0.5, "timestep": 0, "correct": 3, "total": 5}


def finished(tmp_path, *overrides):
    cfg = compose(["data.limit=5", *overrides])
    run = Run("eval-noise", cfg, out=tmp_path / "r")
    run.record(cell_key(sigma=0.5), [ROW])
    run.finish()
    return tmp_path / "r"


def test_a_folder_without_config_yaml_reuses_no_cell(tmp_path):
    folder = finished(tmp_path, "pc.beta=0.8")
    (folder / "config.yaml").unlink()
    with pytest.raises(PcnetsError, match="no config.yaml, so the config"):
        Run("eval-noise", compose(["data.limit=5", "pc.beta=0.5"]), out=folder)
    assert not (folder / "config.yaml").exists()  # nothing was claimed for the new config


def test_cells_of_another_run_id_are_refused_even_with_a_matching_config(tmp_path):
    folder = finished(tmp_path, "pc.beta=0.8")
    other = finished(tmp_path / "o", "pc.beta=0.5")
    (folder / "cells.jsonl").write_text((other / "cells.jsonl").read_text())
    with pytest.raises(PcnetsError, match="holds cells of another config"):
        Run("eval-noise", compose(["data.limit=5", "pc.beta=0.8"]), out=folder)


def test_a_missing_metrics_csv_is_rebuilt_from_the_cells(tmp_path):
    folder = finished(tmp_path)
    before = (folder / "metrics.csv").read_text()
    (folder / "metrics.csv").unlink()
    Run("eval-noise", compose(["data.limit=5"]), out=folder)
    assert (folder / "metrics.csv").read_text() == before


@pytest.mark.parametrize(
    "line",
    [
        '{"cell":"x","rows":"notalist"}',
        '{"cell":"x","rows":[1, 2]}',
        '{"cell":3,"rows":[]}',
        '["cell", "rows"]',
    ],
)
def test_a_malformed_cells_line_is_dropped_and_its_cell_redone(tmp_path, line):
    folder = finished(tmp_path)
    with open(folder / "cells.jsonl", "a") as fh:
        fh.write(line + "\n")
    again = Run("eval-noise", compose(["data.limit=5"]), out=folder)
    assert again.is_done(cell_key(sigma=0.5)) and not again.is_done("x")
    assert again.metrics()["correct"].tolist() == [3]
    assert line not in (folder / "cells.jsonl").read_text()


def test_a_killed_session_is_marked_killed_when_the_folder_is_opened_again(tmp_path):
    cfg = compose(["data.limit=5"])
    run = Run("eval-noise", cfg, out=tmp_path / "r")
    run.record(cell_key(sigma=0.5), [ROW])  # then kill -9: no chance to write an end
    prov = json.loads((tmp_path / "r" / "provenance.json").read_text())
    assert prov["status"] == "running" and prov["cells_done"] == 1
    again = Run("eval-noise", cfg, out=tmp_path / "r")
    again.finish()
    prov = json.loads((tmp_path / "r" / "provenance.json").read_text())
    assert [s["status"] for s in prov["sessions"]] == ["killed", "finished"]
