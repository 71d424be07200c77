"""pcnets attack, the strong evaluation: success that cannot fall with eps, the gradient-free
check that catches a masked gradient, and a failed check that makes the result suspect."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from test_attack import attackable_net
from typer.testing import CliRunner

from pcnets.cli import app
from pcnets.config import compose
from pcnets.experiments.attack import UnrolledModel, run_attack
from pcnets.intervals import wilson_interval

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture(scope="module")
def net():
    return attackable_net()


class UselessGradient(UnrolledModel):
    """Gradient masking that the gradient checks miss: the logits of the dynamics, but an input
    gradient (finite, non-zero) of an unrelated fixed random function."""

    def forward(self, x):
        out = super().forward(x)
        if not x.requires_grad:
            return out
        gen = torch.Generator().manual_seed(5)
        weight = torch.randn(out.shape[1], x[0].numel(), generator=gen)
        decoy = x.flatten(1) @ weight.T
        return out.detach() + decoy - decoy.detach()


def _cfg(tmp_path, name: str, *extra: str):
    return compose(
        [
            "backbone=efficientnet_lite0",
            "attack.timesteps=[1]",
            "attack.num_images=8",
            "attack.batch_size=4",
            "attack.target_offset=2",
            "attack.checks.num_images=2",
            "attack.checks.large_eps=0.5",
            "device=cpu",
            f"out={tmp_path / name}",
            *extra,
        ]
    )


def test_success_never_falls_with_eps_image_by_image(net, tmp_path):
    pnet, data = net
    cfg = _cfg(
        tmp_path,
        "bim",
        "attack.eps=[0.01,0.03,0.1,0.5]",
        "attack.steps=5",
        "attack.max_step_size=0.5",
    )
    result = run_attack(cfg, pnet=pnet, dataset=data, progress=False)
    m = result.metrics
    for _, rows in m.groupby(["kind", "timestep"]):
        counts = rows.sort_values("eps")["success"].to_numpy()
        assert (counts[1:] >= counts[:-1]).all(), rows
    assert m[m.eps == 0.5]["success"].min() > m[m.eps == 0.01]["success"].max()
    hits = json.loads((result.path / "hits.json").read_text())
    for t in (0, 1):
        keys = sorted(
            (k for k in hits if json.loads(k)["timestep"] == t), key=lambda k: json.loads(k)["eps"]
        )
        for small, large in zip(keys[:-1], keys[1:], strict=True):
            assert set(hits[small][0][0]) <= set(hits[large][0][0])  # the same images, and more
    low, high = wilson_interval(m["success"], m["total"])
    assert m["success_low"].to_numpy() == pytest.approx(low)
    assert m["success_high"].to_numpy() == pytest.approx(high)
    assert {c.name: c.passed for c in result.checks}["monotone_in_eps"]
    summary = pd.read_csv(result.path / "summary.csv")
    rates = summary[~summary["metric"].str.startswith("term_ratio")]  # and the terms' sizes
    assert len(rates) == len(m)
    assert set(rates["metric"]) == {"success_rate", "transfer_success_rate"}
    assert set(summary["metric"]) - set(rates["metric"]) == {"term_ratio", "term_ratio_max"}
    top = summary[(summary.metric == "success_rate") & (summary.condition == "bim eps=0.5")]
    row = m[(m.kind == "unrolled") & (m.eps == 0.5)].sort_values("timestep")
    assert top.sort_values("timestep")["high"].to_numpy() == pytest.approx(
        100 * row["success_high"].to_numpy()
    )
    assert "95 % Wilson" in (result.path / "table.md").read_text()


def test_a_masked_gradient_is_caught_by_the_gradient_free_attack(net, tmp_path):
    pnet, data = net
    extra = ("attack=apgd", "attack.also=[square]", "attack.eps=[0.3]", "attack.queries=300")
    honest = run_attack(_cfg(tmp_path, "honest", *extra), pnet=pnet, dataset=data, progress=False)
    checks = {c.name: c for c in honest.checks}
    assert checks["gradient_free_not_stronger"].passed, checks
    assert honest.status == "finished"
    masked = run_attack(
        _cfg(tmp_path, "masked", *extra),
        pnet=pnet,
        dataset=data,
        model_at=UselessGradient,
        progress=False,
    )
    checks = {c.name: c for c in masked.checks}
    assert checks["gradients_finite_nonzero"].passed  # the old checks see nothing wrong here
    free = checks["gradient_free_not_stronger"]
    assert not free.passed and "gradient masking: " in free.detail
    assert "square eps=0.3 t=1: 8/8 vs gradient" in free.detail
    m = masked.metrics
    direct = m[(m.kind == "unrolled") & (m.timestep == 1)].set_index("attack")["fooled"]
    assert direct["square"] >= direct["apgd"] + 3
    provenance = json.loads((masked.path / "provenance.json").read_text())
    assert provenance["status"] == "suspect"
    assert "Status: SUSPECT" in (masked.path / "table.md").read_text()


def test_a_suspect_result_exits_2_unless_allowed(net, tmp_path, monkeypatch):
    pnet, _ = net
    monkeypatch.setattr("pcnets.backbones.pnet_from_config", lambda cfg, device: pnet)
    args = [
        "attack",
        "--eps",
        "0.1",
        "data=synthetic",
        "data.size=16",
        "data.num_classes=5",
        "data.num_images=8",
        "attack.select=any",
        "attack.num_images=4",
        "attack.timesteps=[1]",
        "attack.target_offset=2",
        "attack.checks.num_images=2",
        "attack.checks.large_eps=0.0001",
        "device=cpu",
    ]
    failed = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert failed.exit_code == 2, failed.output
    last = failed.output.strip().splitlines()[-1]
    assert "suspect" in last and "large_eps_succeeds" in last and "allow_suspect" in last
    allowed = CliRunner().invoke(
        app, [*args, "attack.allow_suspect=true", "--out", str(tmp_path / "b")]
    )
    assert allowed.exit_code == 0, allowed.output
    assert "WARNING: sanity check large_eps_succeeds failed" in allowed.output
