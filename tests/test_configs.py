"""The configs: every option of every group composes in every command that uses the group, the
typed schemas turn a wrong type or an unknown key into one line, and change no default value."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf, open_dict

from pcnets.config import CONF_DIR, compose, groups, hydra_app, options, root_groups, roots
from pcnets.errors import PcnetsError
from pcnets.runtime.runs import run_hash

COMMANDS = ("eval-noise", "eval-corruptions", "attack", "tune", "manifold", "train-feedback")
ROOT_KEYS = ["device", "seed", "out", "amp", "channels_last", "compile", "fold_bn", "fast_kernels"]


def rounds(root: str) -> list[list[str]]:
    """Overrides that pick every option of every group the root uses, option i of each group in
    round i (fewer composes than one per option, the same coverage)."""
    takes_experiment = "- experiment:" in (CONF_DIR / f"{root}.yaml").read_text()
    used = [*root_groups(root), *(["experiment"] if takes_experiment else [])]
    picks = {g: options(g) for g in used}
    n = max(len(o) for o in picks.values())
    return [[f"{g}={o[i % len(o)]}" for g, o in picks.items()] for i in range(n)]


def untyped(overrides: list[str], root: str) -> dict:
    """What Hydra alone composes (no schema), for comparing values."""
    from hydra.types import RunMode

    with hydra_app(root) as hydra:
        cfg = hydra.compose_config(config_name=root, overrides=overrides, run_mode=RunMode.RUN)
    with open_dict(cfg):
        del cfg["hydra"]
    return OmegaConf.to_container(cfg, resolve=False)


@pytest.mark.parametrize("root", roots())
def test_every_option_of_every_group_composes_in_every_root_using_it(root):
    picked = set()
    for overrides in rounds(root):
        cfg = compose(overrides, root)
        assert [k for k in cfg if k not in ROOT_KEYS] == root_groups(root)
        picked.update(overrides)
    assert {o.split("=")[0] for o in picked} >= set(root_groups(root))


def test_each_command_composes_only_its_groups():
    used = {c: root_groups(c) for c in COMMANDS}
    assert used["eval-noise"] == ["backbone", "pc", "data", "eval", "logger"]
    assert used["train-feedback"] == ["backbone", "pc", "data", "train", "logger"]
    assert used["attack"] == ["backbone", "pc", "data", "attack", "logger"]
    cfg = compose([], "manifold")
    assert list(cfg) == [*ROOT_KEYS, "backbone", "pc", "data", "manifold", "logger"]
    assert set(groups()) >= {g for c in COMMANDS for g in used[c]}


@pytest.mark.parametrize("overrides", rounds("config"))
def test_schemas_change_no_composed_value(overrides):
    typed = OmegaConf.to_container(compose(overrides), resolve=False)
    assert typed == untyped(overrides, "config")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_commands_run_hash_is_the_same_from_its_root_or_from_every_group(command):
    args = ["data.limit=5", "backbone=resnet18"]
    assert run_hash(command, compose(args, command)) == run_hash(command, compose(args))
    other = "attack.steps=3" if command != "attack" else "eval.bootstrap=7"
    assert run_hash(command, compose([*args, other])) == run_hash(command, compose(args))


def test_the_experiment_picks_the_training_recipe_only_where_there_is_training():
    assert compose(["experiment=pvgg16"], "train-feedback").train.optimizer == "sgd"
    peffb0 = compose(["experiment=peffb0"], "train-feedback")
    assert (peffb0.train.optimizer, peffb0.backbone.name) == ("rmsprop", "efficientnet_b0")
    demo = OmegaConf.load(CONF_DIR / "train" / "demo.yaml")
    chosen = compose(["experiment=peffb0", "train=demo"], "train-feedback").train
    assert chosen.solver == demo.solver
    default = compose([], "train-feedback").train  # no experiment: the demo recipe
    assert (default.epochs, default.solver) == (demo.epochs, demo.solver) != (50, "sgd")
    noise = compose(["experiment=pvgg16"], "eval-noise")
    assert "train" not in noise and noise.data.num_classes == 1000 and noise.pc.timesteps == 10


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "pc.timesteps=abc",
            "pc.timesteps: Value 'abc' of type 'str' could not be converted to "
            "Integer; pc.timesteps takes an integer",
        ),
        ("pc.alpha=abc", "pc.alpha: it takes a number or a list of numbers (one per encoder), got"),
        (
            "pc.beta=[0.5,x]",
            "pc.beta: it takes a number or a list of numbers (one per encoder), got",
        ),
        ("pc.beta=[0.5,x]", "got [0.5, 'x']"),
        ("data.limit=x", "data.limit takes an integer or null"),
        ("eval.sigmas=[0,a]", "eval.sigmas[1]: Value 'a' of type 'str' could not be converted"),
        ("pc.gradient_scaling=maybe", "pc.gradient_scaling takes true or false"),
        ("amp=sometimes", "amp: it takes true, false or auto, got 'sometimes'"),
        ("data.workers=many", "data.workers: it takes a whole number or auto, got 'many'"),
    ],
)
def test_a_wrong_type_is_one_line_naming_the_key_and_the_type(override, message):
    with pytest.raises(PcnetsError) as err:
        compose([override], "eval-noise")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_types_are_converted_to_the_schemas():
    cfg = compose(["pc.timesteps='5'", "eval.sigmas=[0,1]", "data.limit='7'"], "eval-noise")
    assert (cfg.pc.timesteps, list(cfg.eval.sigmas), cfg.data.limit) == (5, [0.0, 1.0], 7)
    assert isinstance(cfg.eval.sigmas[0], float)


def test_an_added_key_is_refused_unless_the_schema_allows_it():
    with pytest.raises(PcnetsError, match=r"bad config key pc\.alpah \(did you mean: alpha"):
        compose(["+pc.alpah=1"], "eval-noise")
    with pytest.raises(PcnetsError, match="bad config key attack.checks.min_sucess"):
        compose(["+attack.checks.min_sucess=1"], "attack")
    with pytest.raises(PcnetsError, match="bad config key fail_seed"):
        compose(["+fail_seed=1"], "eval-noise")
    # tables are open: any key may be added there
    cfg = compose(["backbone=efficientnet_lite0", "+backbone.transform.antialias=true"], "pnet")
    assert cfg.backbone.transform.antialias is True
    assert compose(["+data.folders.test=test"], "eval-noise").data.folders.test == "test"


def test_hydras_own_hint_reaches_the_one_line_error():
    with pytest.raises(PcnetsError) as err:
        compose(["pc.alpah=1"], "eval-noise")
    text = str(err.value)
    assert "Could not override 'pc.alpah'. To append to your config use +pc.alpah=1" in text
    assert "(did you mean: alpha" in text and "\n" not in text
    with pytest.raises(PcnetsError, match="Available options in 'data': imagenet, imagenet_sa"):
        compose(["data=imagenett"], "eval-noise")
    with pytest.raises(PcnetsError, match="Could not override 'train'"):
        compose(["train=sgd"], "eval-noise")
