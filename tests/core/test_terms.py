"""The size of each term of the update (Step.terms, issue 22 item 1) equals a hand computation,
and the optional normalised error step (pc.alpha_normalization=relative, beyond the paper) is
the same in the engine, its differentiable path and the reference loop."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_pnet

from pcnets.core.reference import reference_run
from pcnets.errors import PcnetsError

pytestmark = pytest.mark.usefixtures("one_thread")
X = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
BETA, LAM, ALPHA = 0.6, 0.25, 0.7


def _net():
    pnet = tiny_pnet()
    pnet.set_hyperparameters(beta=BETA, lam=LAM, alpha=ALPHA)
    return pnet


def _norm(x):
    return x.flatten(1).norm(dim=1)


def _by_hand(pnet, relative: bool) -> torch.Tensor:
    """[N, 4, B] at t = 1 from the net's modules and the states e_n(0), e_n(1) alone."""
    steps = list(pnet.steps(X, 1, states=True))
    e0, e1, img = steps[0].states, steps[1].states, pnet.normalize(X)
    blocks = [pnet.backbone[0:2], pnet.backbone[2:5], pnet.backbone[5:8]]
    below0, below1 = [img, *e0[:-1]], [img, *e1[:-1]]
    preds, grads = [], []
    for dec, e, target in zip(pnet.decoders, e0, below0, strict=True):
        with torch.enable_grad():
            src = e.detach().requires_grad_(True)
            d = dec(src)
            (g,) = torch.autograd.grad(((d - target) ** 2).flatten(1).mean(1).sum(), src)
        preds.append(d.detach())
        grads.append(g)
    rows = []
    for n in range(3):
        ff = blocks[n](below1[n])
        top = n == 2
        error = ALPHA * (_norm(e0[n]) if relative else _norm(grads[n]))
        sizes = [
            BETA * _norm(ff),
            torch.zeros(3) if top else LAM * _norm(preds[n + 1]),
            (1 - BETA - (0 if top else LAM)) * _norm(e0[n]),
            error,
        ]
        rows.append(torch.stack(sizes) / _norm(e1[n]))
    return torch.stack(rows)


@pytest.mark.parametrize("differentiable", [False, True])
@pytest.mark.parametrize("relative", [False, True])
def test_term_sizes_equal_a_hand_computation(differentiable, relative):
    pnet = _net()
    pnet.alpha_normalization = "relative" if relative else "none"
    steps = list(pnet.steps(X, 2, terms=True, differentiable=differentiable))
    assert steps[0].terms is None
    got = steps[1].terms.detach()
    assert got.shape == (3, 4, 3) and got.dtype == torch.float32
    with torch.no_grad():
        want = _by_hand(pnet, relative)
    assert (got - want).abs().max() < 1e-5 * want.abs().max()
    assert (got[2, 1] == 0).all() and (got[:2, 1] > 0).all()  # the top encoder has no feedback
    assert (got[:, 3] > 0).all()
    assert list(pnet.steps(X, 1))[1].terms is None  # off unless asked for


def test_relative_alpha_equals_the_reference_loop_and_acts():
    pnet = _net()
    plain = pnet.run(X, 3)
    pnet.alpha_normalization = "relative"
    engine = pnet.run(X, 3)
    ref = reference_run(pnet, X, 3)
    graph = [z.detach() for z in pnet.run(X, 3, differentiable=True)]
    for a, b, c in zip(engine, ref, graph, strict=True):
        assert (a - b).abs().max() < 1e-5 and (c - b).abs().max() < 1e-5
    assert (engine[3] - plain[3]).abs().max() > 1e-3  # it changes what the error term does
    none = reference_run(pnet, X, 3, alpha_normalization="none")
    assert torch.equal(none[3], reference_run(_net(), X, 3)[3])


def test_relative_alpha_with_a_zero_gradient_adds_nothing():
    pnet = _net()
    with torch.no_grad():
        for dec in pnet.decoders:
            for p in dec.parameters():
                p.zero_()  # d = 0 everywhere: g = 0 (ReLU'(0) = 0 included)
    pnet.set_hyperparameters(lam=0.0)
    want = pnet.run(X, 2)
    got = pnet.run(X, 2, alpha_normalization="relative")
    assert all(torch.equal(a, b) for a, b in zip(want, got, strict=True))


def test_an_unknown_alpha_normalization_is_one_line():
    with pytest.raises(PcnetsError, match=r"alpha_normalization must be one of \['none', "):
        _net().run(X, 1, alpha_normalization="sqrt")
