"""What every command shares: --cfg, `pcnets configs`, one-line errors with Hydra's hints, and
shell completion of the overrides."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from pcnets.cli import app
from pcnets.cli.completion import complete_overrides
from pcnets.config import CONF_DIR, root_groups
from pcnets.reporting.commands import COMMANDS, CommandSpec

ROOT_KEYS = ["device", "seed", "out", "amp", "channels_last", "compile", "fold_bn", "fast_kernels"]


def cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.mark.parametrize("command", COMMANDS)
def test_cfg_job_prints_the_resolved_config_of_the_command_and_runs_nothing(
    command, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    res = cli(command, "--cfg", "job", "backbone=resnet18", "seed=3", "--device", "cpu")
    assert res.exit_code == 0, res.output
    cfg = yaml.safe_load(res.stdout)
    assert list(cfg) == [*ROOT_KEYS, *root_groups(command)]
    assert (cfg["backbone"]["name"], cfg["seed"], cfg["device"]) == ("resnet18", 3, "cpu")
    assert list(tmp_path.iterdir()) == []


def test_every_command_spec_is_a_command_and_names_functions_that_exist():
    registered = {c.name for c in app.registered_commands}
    for spec in COMMANDS.values():
        assert spec.name in registered and (CONF_DIR / f"{spec.config}.yaml").is_file()
        for part in ("run", "render", "summary", "findings"):
            if getattr(spec, part) is not None:
                assert callable(spec.load(part)), (spec.name, part)
    assert CommandSpec("x", "x", "pcnets.config:compose").load("render") is None


def test_a_spec_without_a_typer_function_gets_a_plain_command(monkeypatch):
    from pcnets.cli.plain import plain_command

    spec = CommandSpec("toy-report", "manifold", "pcnets.experiments.manifold:run", "A toy.")
    monkeypatch.setitem(COMMANDS, spec.name, spec)
    before = list(app.registered_commands)
    plain_command(spec)
    try:
        res = cli("toy-report", "--cfg", "job", "seed=5", "--out", "there")
        assert res.exit_code == 0, res.output
        cfg = yaml.safe_load(res.stdout)
        assert (cfg["seed"], cfg["out"], "manifold" in cfg) == (5, "there", True)
    finally:
        app.registered_commands[:] = before


def test_first_class_options_are_overrides_seen_by_cfg():
    res = cli("eval-noise", "--cfg", "job", "-T", "4", "--out", "somewhere")
    cfg = yaml.safe_load(res.stdout)
    assert (cfg["pc"]["timesteps"], cfg["out"]) == (4, "somewhere")
    attack = yaml.safe_load(cli("attack", "--cfg", "job", "--eps", "1/255,0.01").stdout)
    assert attack["attack"]["eps"] == pytest.approx([1 / 255, 0.01])


@pytest.mark.parametrize(
    "args, hint",
    [
        (["pc.alpah=1"], "Could not override 'pc.alpah'. To append to your config use +pc.alpah=1"),
        (["+pc.alpah=1"], "bad config key pc.alpah (did you mean: alpha, lam?)"),
        (
            ["backbone=vgg17"],
            "Available options in 'backbone': efficientnet_b0, efficientnet_lite0",
        ),
        (["seed=1,2"], "To sweep over it, add --multirun"),
        (["-m", "pc.alpah=1,2"], "To append to your config use +pc.alpah=1"),
        (["pc.timesteps=abc"], "pc.timesteps takes an integer"),
        (["train.epochs=3"], "Could not override 'train.epochs'"),
    ],
)
def test_a_bad_override_is_one_line_with_hydras_hint_and_exit_2(args, hint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = cli("eval-noise", *args)
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: bad config ")
    assert hint in res.stderr
    assert list(tmp_path.iterdir()) == []  # no sweep folder left behind


def test_configs_lists_groups_options_with_their_first_comment_and_the_commands():
    res = cli("configs")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    (backbone,) = [line for line in lines if line.startswith("backbone/")]
    assert backbone.startswith("backbone/  (used by attack, bench, eval-corruptions, eval-noise,")
    resnet = [line for line in lines if line.strip().startswith("resnet18 ")]
    assert resnet == [
        "  resnet18            An example of adding a backbone: torchvision ResNet-18, one encoder "
        "per stage, default decoders."
    ]
    assert any(
        line.split()[:6] == ["eval-noise", "backbone,", "pc,", "data,", "eval,", "logger:"]
        for line in lines
    )
    one = cli("configs", "pc")
    assert one.stdout.splitlines()[0].startswith("pc/") and len(one.stdout.splitlines()) == 3
    bad = cli("configs", "backbones")
    assert bad.exit_code == 2 and "did you mean: backbone" in bad.stderr


def complete(monkeypatch, words: list[str]) -> list[str]:
    """What bash would get for the command line ``words`` (bash splits words at '=')."""
    words = ["pcnets", "eval-noise", *words]
    monkeypatch.setenv("COMP_WORDS", "\n".join(words))
    monkeypatch.setenv("COMP_CWORD", str(len(words) - 1))
    ctx = SimpleNamespace(command=SimpleNamespace(name="eval-noise"), params={})
    return complete_overrides(ctx, words[-1])


def test_bash_completes_groups_options_keys_and_launchers(monkeypatch):
    assert complete(monkeypatch, ["pc", "=", "ref"]) == ["reference"]
    assert complete(monkeypatch, ["data", "="]) == ["imagenet", "imagenet_sample", "synthetic"]
    assert complete(monkeypatch, ["pc.time"]) == ["pc.timesteps="]
    assert complete(monkeypatch, ["hydra/launcher", "=", "submitit_s"]) == ["submitit_slurm"]
    assert "train" not in " ".join(complete(monkeypatch, ["tr"]))  # eval-noise has no train
