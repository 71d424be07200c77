"""Run folders: the config is saved, finished cells survive an interruption, configs don't mix."""

from __future__ import annotations

import json

import pytest

from pcnets.config import compose
from pcnets.errors import PcnetsError
from pcnets.runtime.runs import Run, cell_key


def test_cells_are_saved_and_found_again(tmp_path):
    cfg = compose(["data.limit=5"])
    run = Run("eval-noise", cfg, out=tmp_path / "r")
    run.record(cell_key(sigma=0.5), [{"sigma": 0.5, "timestep": 0, "correct": 3, "total": 5}])
    with open(tmp_path / "r" / "cells.jsonl", "a") as fh:
        fh.write('{"cell": "cut sh')  # what an interruption mid-write leaves
    again = Run("eval-noise", cfg, out=tmp_path / "r")
    assert again.is_done(cell_key(sigma=0.5)) and not again.is_done(cell_key(sigma=1.0))
    assert again.metrics()["correct"].tolist() == [3]
    header, row = (tmp_path / "r" / "metrics.csv").read_text().splitlines()
    assert header == "run_id,backbone,decoders,sigma,timestep,correct,total"
    assert row == f"{run.hash},vgg16,untrained,0.5,0,3,5"
    prov = json.loads((tmp_path / "r" / "provenance.json").read_text())
    assert prov["status"] == "running" and prov["config_hash"] == run.hash


def test_default_folder_is_named_by_the_config_hash(tmp_path, monkeypatch):
    monkeypatch.setattr("pcnets.runtime.runs.RESULTS", tmp_path)
    a = Run("eval-noise", compose(["data.limit=5"]))
    b = Run("eval-noise", compose(["data.limit=6"]))
    c = Run("eval-noise", compose(["data.limit=5", "device=cpu"]))
    assert a.path.parent == tmp_path / "eval-noise" / "vgg16"
    assert a.path != b.path and a.path == c.path


def test_a_folder_of_another_config_is_refused(tmp_path):
    Run("eval-noise", compose(["data.limit=5"]), out=tmp_path)
    with pytest.raises(PcnetsError, match="holds a run of another config"):
        Run("eval-noise", compose(["data.limit=7"]), out=tmp_path)


def test_a_resumed_run_adds_a_session_and_keeps_the_first_start(tmp_path):
    cfg = compose(["data.limit=5"])
    Run("eval-noise", cfg, out=tmp_path).finish()
    first = json.loads((tmp_path / "provenance.json").read_text())
    Run("eval-noise", cfg, out=tmp_path).finish()
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert len(prov["sessions"]) == 2 and prov["started"] == first["started"]
    assert prov["seconds"] == pytest.approx(sum(s["seconds"] for s in prov["sessions"]))


def test_only_a_commands_own_sections_name_its_folder(tmp_path, monkeypatch):
    monkeypatch.setattr("pcnets.runtime.runs.RESULTS", tmp_path)
    noise = Run("eval-noise", compose(["data.limit=5"]))
    assert Run("eval-noise", compose(["data.limit=5", "attack.steps=3"])).path == noise.path
    assert Run("eval-noise", compose(["data.limit=5", "eval.sigmas=[0.5]"])).path != noise.path
    assert (
        Run("attack", compose(["data.limit=5", "attack.steps=3"])).hash
        != Run("attack", compose(["data.limit=5"])).hash
    )


def test_every_row_names_its_run_backbone_and_decoder_file(tmp_path):
    cfg = compose(["backbone=efficientnet_lite0", "pc.decoders=runs/d.pt"])
    run = Run("attack", cfg, out=tmp_path)
    run.record("a", [{"eps": 0.1}, {"eps": 0.2, "decoders": "own"}])
    labels = run.metrics()[["run_id", "backbone", "decoders"]].values.tolist()
    assert labels[0] == [run.hash, "efficientnet_lite0", "runs/d.pt"]
    assert labels[1][2] == "own"  # a row's own column is never overwritten
    assert list(run.metrics().columns) == ["run_id", "backbone", "decoders", "eps"]
