"""Every numeric setting has its bounds in the schema (pcnets.schema, pcnets.bounds): a value
outside them is one line at compose time, naming the key, the value and the bound, and a user's
value is never replaced by another (issue 24 item 9, issue 21 item 5)."""

from __future__ import annotations

import math

import pytest
from omegaconf import OmegaConf

from pcnets.bounds import Bound
from pcnets.config import compose, roots
from pcnets.errors import PcnetsError
from pcnets.experiments.train.recipe import global_batch
from pcnets.validate import bounds

# The values the second probe found unchecked (each a traceback, or worse a silent substitution).
REFUSED = [
    ("eval.bootstrap=0", "eval.bootstrap: 0 is below the minimum of 1"),
    ("eval.level=2", "eval.level: 2.0 is not below 1"),
    ("manifold.level=5", "manifold.level: 5.0 is not below 1"),
    ("manifold.n_resamples=0", "manifold.n_resamples: 0 is below the minimum of 1"),
    ("tune.lr=nan", "tune.lr: nan is not a finite number"),
    ("tune.lr=-1", "tune.lr: -1.0 is not above 0"),
    ("train.lr=nan", "train.lr: nan is not a finite number"),
    ("tune.steps=0", "tune.steps: 0 is below the minimum of 1"),
    ("data.batch_size=0", "data.batch_size: 0 is below the minimum of 1"),
    ("train.batch_size=0", "train.batch_size: 0 is below the minimum of 1"),
    ("eval.batch_size=0", "eval.batch_size: 0 is below the minimum of 1"),
    ("pc.timesteps=101", "pc.timesteps: 101 is above the maximum of 100"),
    ("attack.eps=[0.1,-0.1]", "attack.eps: -0.1 is below the minimum of 0"),
    ("corruptions.severities=[1,6]", "corruptions.severities: 6 is above the maximum of 5"),
    ("train.lstsq.fold=0", "train.lstsq.fold: 0 is below the minimum of 1"),
    ("attack.checks.min_success=1.5", "attack.checks.min_success: 1.5 is above the maximum of 1"),
    ("data.workers=-1", "data.workers: -1 is below the minimum of 0"),
]


@pytest.mark.parametrize(("override", "line"), REFUSED)
def test_a_value_out_of_bounds_is_one_line_at_compose_time(override, line):
    with pytest.raises(PcnetsError) as err:
        compose([override])
    message = str(err.value)
    assert line in message and "\n" not in message
    assert "it must be a number" in message


def test_every_default_and_every_option_lies_within_its_bounds():
    for root in roots():
        cfg = OmegaConf.to_container(compose([], root), resolve=True)
        for path, bound, default in bounds():
            if isinstance(default, int | float) and not isinstance(default, bool):
                assert bound.fault(default) is None, (path, default)
            node = cfg
            for part in path.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            for item in node if isinstance(node, list) else [node]:
                if isinstance(item, int | float) and not isinstance(item, bool):
                    assert bound.fault(item) is None, (root, path, item)


def test_every_numeric_setting_has_a_bound():
    import dataclasses

    from pcnets.schema import GROUPS, Root
    from pcnets.validate import field_types

    bounded = {path for path, _, _ in bounds()}
    numeric = set()

    def walk(schema, prefix):
        for name, kind in field_types(schema).items():
            if dataclasses.is_dataclass(kind):
                walk(kind, f"{prefix}{name}.")
            elif any(t in (int, float) for t in (kind, *getattr(kind, "__args__", ()))):
                numeric.add(f"{prefix}{name}")
            elif str(kind) in ("list[float]", "list[int]"):
                numeric.add(f"{prefix}{name}")

    walk(Root, "")
    for group, schema in GROUPS.items():
        walk(schema, f"{group}.")
    assert numeric and numeric <= bounded, sorted(numeric - bounded)


def test_bound_rules_read_as_written():
    assert Bound(">= 1").fault(1) is None and Bound(">= 1").fault(0) is not None
    assert Bound("> 0").fault(0) == "not above 0" and Bound("> 0").fault(1e-9) is None
    assert Bound("[0, 1)").fault(1) == "not below 1" and Bound("[0, 1)").fault(0) is None
    assert Bound("(0, 1]").fault(1) is None and Bound("(0, 1]").fault(0) == "not above 0"
    assert Bound(">= 0").fault(math.inf) == "not a finite number"
    assert Bound(">= 0").fault(True) == "not a number"


def test_train_batch_size_is_the_users_value_or_data_batch_size_when_null():
    assert global_batch(compose(["train.batch_size=3", "data.batch_size=50"])) == 3
    assert global_batch(compose(["train.batch_size=null", "data.batch_size=50"])) == 50
