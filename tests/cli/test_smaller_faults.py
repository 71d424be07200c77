"""The smaller faults of issue 24 item 11: a strict ASCII locale with a non-ASCII path, an
unquoted data.root with spaces, fewer eligible images than attack.num_images asks for."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import REPO

from pcnets.config import compose
from pcnets.errors import PcnetsError
from pcnets.experiments.attack.attack_run import few_images_line
from pcnets.experiments.attack.selection import Selection
from pcnets.experiments.attack.spec import AttackSpec
from pcnets.runtime.runs import Run, cell_key


def test_report_under_an_ascii_locale_with_a_non_ascii_path(tmp_path):
    root = tmp_path / "résumé"
    run = Run("eval-noise", compose(["data.limit=5"]), out=root / "run")
    run.record(cell_key(sigma=0), [{"sigma": 0, "timestep": 0, "correct": 1, "total": 2}])
    run.finish()
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONIOENCODING": "ascii"}
    env.update(PYTHONUTF8="0", OMP_NUM_THREADS="1")
    args = ["report", str(root), "--out", str(root / "report.md")]
    done = subprocess.run(
        [sys.executable, "-m", "pcnets", *args], cwd=REPO, env=env, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-400:]
    assert (root / "report.md").read_text(encoding="utf-8").startswith("# pcnets report")
    assert done.stdout.decode("ascii").startswith("wrote ")  # escaped, never an encoding error


def test_an_unquoted_value_with_spaces_gets_the_hint_to_quote_it():
    with pytest.raises(PcnetsError) as err:
        compose(["data=imagenet", "data.root=/data/my", "set"], "eval-noise")
    message = str(err.value)
    assert "'set' has no '='" in message and "quote the whole override" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("select", "which"), [("correct", "classified correctly"), ("any", "available")]
)
def test_fewer_eligible_images_than_asked_is_said(select, which):
    spec = AttackSpec.from_config(
        compose(["attack.num_images=100", f"attack.select={select}"], "attack").attack
    )
    selection = Selection([0, 4, 7], ["a", "b", "c"], [1, 2, 3], 9, 2, 0)
    line = few_images_line(spec, selection)
    assert line == (
        f"warning: attack.num_images=100, but only 3 of 9 images are {which}"
        + (" at every timestep" if select == "correct" else "")
        + ": the attack runs on 3 (raise data.limit for more)"
    )
