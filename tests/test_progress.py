"""Progress: a bar on a terminal, plain periodic lines (rate, ETA) elsewhere, and off with
--quiet or TQDM_DISABLE."""

from __future__ import annotations

import io
import os

import pytest
from typer.testing import CliRunner

from pcnets.cli import app
from pcnets.progress import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in ("PCNETS_QUIET", "TQDM_DISABLE", "PCNETS_PROGRESS_SECONDS"):
        monkeypatch.delenv(key, raising=False)


def test_redirected_output_is_whole_lines_with_rate_and_eta(monkeypatch):
    monkeypatch.setenv("PCNETS_PROGRESS_SECONDS", "0")
    out = io.StringIO()
    for _ in progress(range(4), desc="eval", unit="img", file=out):
        pass
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert lines[0] == "eval: 0/4 (0%), ?img/s, 00:00 elapsed, ETA ?"
    assert lines[-1].startswith("eval: 4/4 (100%), ") and "img/s" in lines[-1]
    assert len(lines) >= 5  # one line per update at a 0 s interval, plus the final one


def test_lines_come_at_most_every_interval():
    out = io.StringIO()
    for _ in progress(range(1000), desc="fast", file=out):  # default interval: 30 s
        pass
    assert [line.split(",")[0] for line in out.getvalue().splitlines()] == [
        "fast: 0/1000 (0%)",
        "fast: 1000/1000 (100%)",
    ]


def test_a_terminal_gets_a_redrawn_bar():
    out = Terminal()
    for _ in progress(range(3), desc="bar", file=out):
        pass
    assert "\r" in out.getvalue() and "3/3" in out.getvalue()


@pytest.mark.parametrize("env", ["PCNETS_QUIET", "TQDM_DISABLE"])
def test_quiet_and_tqdm_disable_silence_it(monkeypatch, env):
    monkeypatch.setenv(env, "1")
    for out in (io.StringIO(), Terminal()):
        bar = progress(total=3, desc="x", file=out)
        bar.update(3)
        bar.close()
        assert out.getvalue() == ""
    out = io.StringIO()
    monkeypatch.delenv(env)
    list(progress(range(2), show=False, file=out))  # rank != 0
    assert out.getvalue() == ""


def test_root_quiet_option_sets_the_switch():
    result = CliRunner().invoke(app, ["--quiet", "info"])
    assert result.exit_code == 0, result.output
    assert os.environ.pop("PCNETS_QUIET") == "1"
