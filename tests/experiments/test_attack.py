"""pcnets attack: gradients through the unrolled dynamics, the checks that catch masked gradients,
targeted success, resumable run folders, and clear errors for bad settings."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from helpers import standardised_tiny_net, tiny_pnet, torchrun
from typer.testing import CliRunner

import pcnets.experiments.attack as attack_module
import pcnets.experiments.attack.attacks as attacks_module
from pcnets.cli import app
from pcnets.config import compose
from pcnets.errors import PcnetsError
from pcnets.experiments.attack import (
    AttackSpec,
    FeedforwardModel,
    UnrolledModel,
    attack_images,
    input_gradient,
    model_checks,
    parse_eps,
    result_checks,
    run_attack,
    target_labels,
)

SIZE = 16


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


class Images(torch.utils.data.Dataset):
    """In-memory [0, 1] images with labels and keys, as pcnets datasets have them."""

    def __init__(self, images: torch.Tensor, labels: list[int]):
        self.images, self.targets = images, labels
        self.keys = [f"img{i:03d}" for i in range(len(labels))]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        return self.images[i], self.targets[i]


def attackable_net():
    """The 5-class tiny net with a standardised head, so its predictions vary across images and
    every class is reachable; flat-coloured noisy images, labelled with its own t=0 predictions."""
    pnet, x = standardised_tiny_net(40, torch.Generator().manual_seed(0), SIZE)
    with torch.no_grad():
        labels = pnet.feedforward(x).argmax(1).tolist()
    return pnet, Images(x, labels)


@pytest.fixture(scope="module")
def net():
    return attackable_net()


def spec(**kw) -> AttackSpec:
    return AttackSpec(**{"target_offset": 2, "steps": 10, **kw})


class MaskedAfterZero(UnrolledModel):
    """Gradient masking: the same logits as the dynamics, but a zero input gradient for t >= 1."""

    def forward(self, x):
        out = super().forward(x)
        return out if self.timesteps == 0 else out.detach() + 0.0 * x.sum()


class Detached(UnrolledModel):
    """A forward that cuts the graph: no gradient path from the logits to the input."""

    def forward(self, x):
        return super().forward(x.detach())


def test_input_gradient_matches_finite_differences_float64_t2():
    pnet = tiny_pnet(torch.float64, size=8)
    pnet.set_hyperparameters(beta=0.6, lam=0.2, alpha=0.5)
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    label = torch.tensor([1])

    def loss(inp: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(UnrolledModel(pnet, 2)(inp), label)

    with torch.no_grad():  # the model keeps autograd on inside, as some torchattacks paths need
        grad = input_gradient(UnrolledModel(pnet, 2), x, label, None, targeted=False)
    h = 1e-6
    numeric = torch.zeros_like(x)
    for i in range(x.numel()):
        step = torch.zeros_like(x).view(-1)
        step[i] = h
        step = step.view_as(x)
        with torch.no_grad():
            numeric.view(-1)[i] = (loss(x + step) - loss(x - step)) / (2 * h)
    assert torch.allclose(grad, numeric, rtol=1e-5, atol=1e-8)
    # the error-gradient term (double backward) matters: without it the gradient differs
    pnet.set_hyperparameters(alpha=0.0)
    no_error_term = input_gradient(UnrolledModel(pnet, 2), x, label, None, targeted=False)
    assert (grad - no_error_term).abs().max() > 1e-3 * grad.abs().max()
    assert all(not p.requires_grad for p in pnet.parameters())


def test_targeted_attack_hits_the_requested_class(net):
    pnet, data = net
    images, labels = data.images[:12], torch.tensor(data.targets[:12])
    targets = target_labels(labels, 5, 2)
    assert (targets != labels).all()
    for t in (0, 2):
        adv = attack_images(UnrolledModel(pnet, t), images, labels, spec(), 0.5, 0, targets)
        with torch.no_grad():
            pred = pnet.run(adv, t)[-1].argmax(1)
        hit = pred == targets
        assert int(hit.sum()) >= 10  # the requested class, not merely a wrong one ...
        assert torch.equal(pred[~hit], labels[~hit])  # ... and the misses stayed at their label
        assert (adv - images).abs().max() <= 0.5 + 1e-6
        assert adv.min() >= 0 and adv.max() <= 1
    untargeted = spec(targeted=False)
    adv = attack_images(UnrolledModel(pnet, 2), images, labels, untargeted, 0.5, 0)
    with torch.no_grad():
        assert (pnet.run(adv, 2)[-1].argmax(1) != labels).all()


def test_attacks_leave_the_network_in_eval_mode(net):
    """torchattacks restores the mode it found; a wrapper left in training mode would switch the
    backbone's BatchNorm to batch statistics after the first attack (a bug this test pins)."""
    pnet, data = net
    pnet.train()
    images, labels = data.images[:2], torch.tensor(data.targets[:2])
    for model in (UnrolledModel(pnet, 1), FeedforwardModel(pnet)):
        assert not model.training and not pnet.training
        attack_images(
            model, images, labels, spec(name="fgsm"), 0.01, 0, target_labels(labels, 5, 2)
        )
        model.train()
        assert not any(m.training for m in pnet.modules())
    bn = torch.nn.BatchNorm2d(3).eval()
    stats = bn.running_mean.clone()
    wrapped = FeedforwardModel(pnet)
    wrapped.extra = bn
    wrapped.train()
    wrapped.extra(torch.rand(4, 3, 2, 2))
    assert torch.equal(bn.running_mean, stats)


def test_pgd_random_start_is_seeded(net):
    pnet, data = net
    images, labels = data.images[:3], torch.tensor(data.targets[:3])
    pgd = spec(name="pgd", random_start=True, steps=2)
    targets = target_labels(labels, 5, 2)
    model = UnrolledModel(pnet, 0)
    a = attack_images(model, images, labels, pgd, 0.05, seed=7, targets=targets)
    b = attack_images(model, images, labels, pgd, 0.05, seed=7, targets=targets)
    c = attack_images(model, images, labels, pgd, 0.05, seed=8, targets=targets)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3


def test_model_checks_pass_on_the_dynamics_and_catch_masked_gradients(net):
    pnet, data = net
    images, labels = data.images[:3], torch.tensor(data.targets[:3])
    targets = target_labels(labels, 5, 2)
    s = spec(eps=(0.1,), timesteps=(0, 1), checks=attack_module.CheckSpec(large_eps=0.5))
    ff = FeedforwardModel(pnet)
    honest = model_checks(lambda t: UnrolledModel(pnet, t), ff, images, labels, s, targets)
    assert [c.name for c in honest] == [
        "gradients_finite_nonzero",
        "large_eps_succeeds",
        "t0_equals_feedforward",
    ]
    assert all(c.passed for c in honest), honest
    masked = {
        c.name: c
        for c in model_checks(lambda t: MaskedAfterZero(pnet, t), ff, images, labels, s, targets)
    }
    assert not masked["gradients_finite_nonzero"].passed
    assert "t=1: zero for 3/3" in masked["gradients_finite_nonzero"].detail
    assert not masked["large_eps_succeeds"].passed
    assert "0/3 succeeded" in masked["large_eps_succeeds"].detail
    assert masked["t0_equals_feedforward"].passed
    cut = {
        c.name: c for c in model_checks(lambda t: Detached(pnet, t), ff, images, labels, s, targets)
    }
    assert not cut["gradients_finite_nonzero"].passed
    assert attack_module.NO_PATH in cut["gradients_finite_nonzero"].detail
    assert not cut["large_eps_succeeds"].passed and not cut["t0_equals_feedforward"].passed


def _cfg(tmp_path, name: str, *extra: str):
    return compose(
        [
            "backbone=efficientnet_lite0",
            "attack.eps=[0.02,0.5]",
            "attack.timesteps=[1]",
            "attack.num_images=6",
            "attack.batch_size=3",
            "attack.target_offset=2",
            "attack.checks.num_images=3",
            "attack.checks.large_eps=0.5",
            "device=cpu",
            f"out={tmp_path / name}",
            *extra,
        ]
    )


def test_run_writes_cells_resumes_and_flags_masking(net, tmp_path, monkeypatch):
    pnet, data = net
    honest = run_attack(_cfg(tmp_path, "honest"), pnet=pnet, dataset=data, progress=False)
    m = honest.metrics
    assert set(m["kind"]) == {"unrolled", "transfer"}
    assert sorted(m[m.kind == "unrolled"]["timestep"].unique()) == [0, 1]  # t=0 always added
    assert (m["total"] == 6).all()
    assert (m["success_rate"] == m["success"] / m["total"]).all()
    assert (m["linf_mean"] <= m["eps"] + 1e-6).all()
    top = m[(m.kind == "unrolled") & (m.eps == 0.5)]
    assert (top["success"] >= 4).all()
    unrolled0 = m[(m.kind == "unrolled") & (m.timestep == 0)].set_index("eps")["success"]
    transfer0 = m[(m.kind == "transfer") & (m.timestep == 0)].set_index("eps")["success"]
    assert unrolled0.equals(transfer0)
    assert all(c.passed for c in honest.checks), honest.checks
    folder = honest.path
    selection = json.loads((folder / "selection.json").read_text())
    assert len(selection["indices"]) == 6
    with torch.no_grad():
        chosen = data.images[selection["indices"]]
        logits = pnet.run(chosen, 1)
    for out in logits:
        assert out.argmax(1).tolist() == selection["labels"]
    for name in ("metrics.csv", "table.md", "success_vs_eps.png", "relative_vs_timestep.png"):
        assert (folder / name).stat().st_size > 0
    assert "WARNING" not in (folder / "table.md").read_text()
    # the term sizes of the adversarial images' dynamics: every cell, its 6 images, t = 1
    terms = pd.read_csv(folder / "terms.csv")
    cells = {f"bim eps={e:g}, attacked at t={t}" for e in m["eps"].unique() for t in (0, 1)}
    assert set(terms["condition"]) == cells and set(terms["images"]) == {6}
    assert set(terms["timestep"]) == {1} and len(terms) == len(cells) * pnet.num_encoders * 4
    assert (terms["term_ratio"] >= 0).all() and (
        terms[terms["term"] == "ff"]["term_ratio"] > 0
    ).all()
    summary = pd.read_csv(folder / "summary.csv")
    assert (summary["metric"] == "term_ratio").sum() == len(cells) * pnet.num_encoders * 4
    assert "Term sizes" in (folder / "table.md").read_text()

    def no_attacks(*args, **kw):
        raise AssertionError("a finished run must not attack again")

    monkeypatch.setattr(attacks_module, "attack_images", no_attacks)
    again = run_attack(_cfg(tmp_path, "honest"), pnet=pnet, dataset=data, progress=False)
    assert again.metrics.equals(m)
    monkeypatch.undo()

    masked = run_attack(
        _cfg(tmp_path, "masked"), pnet=pnet, dataset=data, model_at=MaskedAfterZero, progress=False
    )
    failed = {c.name for c in masked.checks if not c.passed}
    assert failed == {"gradients_finite_nonzero", "large_eps_succeeds", "not_weaker_than_transfer"}
    mm = masked.metrics
    assert (mm[(mm.kind == "unrolled") & (mm.timestep == 1)]["success"] == 0).all()
    assert (mm[(mm.kind == "transfer") & (mm.timestep == 1) & (mm.eps == 0.5)]["success"] > 0).all()
    table = (masked.path / "table.md").read_text()
    assert "WARNING: sanity check not_weaker_than_transfer failed" in table
    assert "gradient masking, not robustness" in table

    with pytest.raises(PcnetsError, match="no gradient path"):
        run_attack(
            _cfg(tmp_path, "cut"), pnet=pnet, dataset=data, model_at=Detached, progress=False
        )


def test_result_checks_on_rows():
    import pandas as pd

    rows = [
        {"kind": "unrolled", "eps": 0.01, "timestep": 2, "success_rate": 0.5},
        {"kind": "unrolled", "eps": 0.02, "timestep": 2, "success_rate": 0.25},
        {"kind": "transfer", "eps": 0.01, "timestep": 2, "success_rate": 0.75},
        {"kind": "transfer", "eps": 0.02, "timestep": 2, "success_rate": 0.25},
    ]
    monotone, transfer, free = result_checks(pd.DataFrame(rows))
    assert not monotone.passed and "50.0% at eps=0.01 -> 25.0% at eps=0.02" in monotone.detail
    assert not transfer.passed and "eps=0.01 t=2: 50.0% < transfer 75.0%" in transfer.detail
    monotone, transfer, free = result_checks(pd.DataFrame(rows), tolerance=0.3)
    assert monotone.passed and transfer.passed
    assert free.passed and "not run" in free.detail


def test_every_registered_attack_has_its_yaml_and_every_yaml_an_entry():
    from pathlib import Path

    import yaml

    from pcnets.experiments.attack import ATTACKS

    folder = Path(attack_module.__file__).parents[2] / "conf" / "attack"
    named = {p.stem: yaml.safe_load(p.read_text()).get("name") for p in folder.glob("*.yaml")}
    named.pop("base")
    assert named == {name: name for name in ATTACKS}
    for name, entry in ATTACKS.items():
        spec = AttackSpec(name=name, targeted=entry.targetable)
        assert spec.describe().startswith(f"{name}: ")
        assert spec.targeted_for(name) == entry.targetable
    with pytest.raises(PcnetsError, match="attack=bim/pgd/fgsm for a targeted attack"):
        AttackSpec(name="square", targeted=True)


def test_eps_and_settings_are_checked():
    assert parse_eps("0.001, 8/255") == [0.001, pytest.approx(8 / 255)]
    assert parse_eps([0, 1]) == [0.0, 1.0]
    for bad in ("-0.1", "1.5", "abc", "1/0", ""):
        with pytest.raises(PcnetsError):
            parse_eps(bad)
    with pytest.raises(PcnetsError, match="did you mean: pgd"):
        AttackSpec(name="pgdd")
    with pytest.raises(PcnetsError, match="FGSM has no random start"):
        AttackSpec(name="fgsm", random_start=True)
    with pytest.raises(PcnetsError, match="maps every label to itself"):
        target_labels(torch.tensor([1]), 1000, 2000)
    s = AttackSpec(eps=(0.008, 0.002), timesteps=(4, 2), steps=10)
    assert s.eps == (0.002, 0.008) and s.timesteps == (0, 2, 4)
    assert s.step_size_at(0.008) == pytest.approx(0.002)
    assert AttackSpec(name="fgsm").step_size_at(0.01) == 0.01 and AttackSpec(name="fgsm").steps == 1
    cfg = compose(["attack=pgd", "attack.eps=[0.004]"])
    assert AttackSpec.from_config(cfg.attack, seed=3) == AttackSpec(
        name="pgd", eps=(0.004,), random_start=True, seed=3
    )
    with pytest.raises(PcnetsError, match="unknown attack setting"):
        AttackSpec.from_config({**compose([]).attack, "stepz": 3})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--eps=-0.1"], "eps must be in [0, 1]"),
        (["--eps", "2"], "eps must be in [0, 1]"),
        (["--eps", "0.01", "attack.name=cw"], "unknown attack 'cw'"),
        (
            ["--eps", "0.01", "attack=cw"],
            "Available options in 'attack': apgd, apgd_t, autoattack, base, bim, fgsm, pgd, square",
        ),
        (["--eps", "0.01", "attack.steps=0"], "attack.steps: 0 is below the minimum of 1"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(args, message):
    result = CliRunner().invoke(app, ["attack", *args])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output


TORCHRUN_SCRIPT = """
import sys
import torch
sys.path.insert(0, {tests!r})
from test_attack import attackable_net, torchrun_config
from pcnets.experiments.attack import run_attack
from pcnets.runtime.distributed import cleanup, is_main

torch.set_num_threads(1)
pnet, data = attackable_net()
result = run_attack(
    torchrun_config(sys.argv[1], sys.argv[3]), pnet=pnet, dataset=data, progress=False
)
if is_main():
    result.metrics.to_json(sys.argv[2])
cleanup()
"""


TORCHRUN_ATTACKS = {
    "pgd": ["attack=pgd", "attack.eps=[0.02,0.1]"],
    "apgd+square": [
        "attack=apgd",
        "attack.also=[square]",
        "attack.queries=50",
        "attack.steps=5",
        "attack.eps=[0.05,0.2]",
        "attack.allow_suspect=true",
    ],
}


def torchrun_config(out: str, attacks: str = "pgd"):
    """PGD with a random start (or APGD and Square) on 7 images in batches of 2: 4 batches,
    uneven over 2 processes."""
    return compose(
        [
            "backbone=efficientnet_lite0",
            *TORCHRUN_ATTACKS[attacks],
            "attack.timesteps=[1]",
            "attack.num_images=7",
            "attack.batch_size=2",
            "attack.target_offset=2",
            "attack.checks.num_images=2",
            "attack.checks.large_eps=0.5",
            "device=cpu",
            f"out={out}",
        ]
    )


@pytest.mark.slow  # two torchrun processes start in ~40 s on a shared 2-core machine
@pytest.mark.parametrize("attacks", sorted(TORCHRUN_ATTACKS))
def test_torchrun_with_two_processes_gives_the_rows_of_one(net, tmp_path, attacks):
    from pathlib import Path

    import pandas as pd

    script = tmp_path / "attack.py"
    script.write_text(TORCHRUN_SCRIPT.format(tests=str(Path(__file__).parent)))
    torchrun([script, tmp_path / "two", tmp_path / "two.json", attacks], cwd=tmp_path)
    two = pd.read_json(tmp_path / "two.json")
    pnet, data = net
    one = run_attack(
        torchrun_config(str(tmp_path / "one"), attacks), pnet=pnet, dataset=data, progress=False
    )
    columns = [
        "attack",
        "kind",
        "eps",
        "timestep",
        "success",
        "fooled",
        "total",
        "linf_mean",
        "l2_mean",
    ]
    one_rows = one.metrics[columns].reset_index(drop=True)
    two_rows = two[columns].reset_index(drop=True)
    assert (one_rows["total"] == 7).all()
    pd.testing.assert_frame_equal(one_rows, two_rows, check_dtype=False, atol=1e-9)
