"""pcnets.classifier: the logits at T as an nn.Module, with input gradients that are the same
whether the timesteps' graphs are stored or recomputed in the backward pass."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_pnet

from pcnets.core.classifier import Classifier, classifier

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("reduction", "scaling"), [("per_sample", False), ("batch_mean", True)])
def test_recomputed_timesteps_give_the_stored_graph_gradients(reduction, scaling):
    pnet = tiny_pnet(size=8)
    pnet.set_hyperparameters(beta=0.6, lam=0.2, alpha=0.5)
    pnet.error_reduction, pnet.gradient_scaling = reduction, scaling
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    grads, outs = [], []
    for checkpoint in (False, True):
        xx = x.clone().requires_grad_(True)
        out = classifier(pnet, 4, checkpoint=checkpoint)(xx)
        weights = torch.linspace(-1, 1, out.numel()).view_as(out)
        (out * weights).sum().backward()
        grads.append(xx.grad)
        outs.append(out.detach())
    assert torch.allclose(outs[0], outs[1], atol=1e-6)
    assert torch.allclose(grads[0], grads[1], rtol=0, atol=1e-5)
    assert grads[0].abs().max() > 1e-4  # a real gradient, not two zeros
    # the error-gradient term is part of what is recomputed: without it the gradient differs
    pnet.set_hyperparameters(alpha=0.0)
    xx = x.clone().requires_grad_(True)
    out = classifier(pnet, 4, checkpoint=True)(xx)
    (out * weights).sum().backward()
    assert (xx.grad - grads[1]).abs().max() > 1e-6


def test_without_gradients_it_is_the_graph_free_run_and_stays_in_eval_mode():
    pnet = tiny_pnet(size=8)
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    model = classifier(pnet, 3)
    assert isinstance(model, Classifier) and model.checkpoint  # on by default from T = 2
    assert not classifier(pnet, 1).checkpoint
    model.train()
    assert not model.training and not pnet.training
    with torch.no_grad():
        out = model(x)
        assert torch.equal(out, pnet.run(x, 3)[-1])
    assert not out.requires_grad
    assert all(not p.requires_grad for p in pnet.parameters())


def test_only_the_states_are_kept_between_recomputed_timesteps():
    """Each recomputed timestep keeps e0 and the previous timestep's states e_n, nothing else:
    not the predictions and error gradients (remade from the states in the backward pass)."""
    pnet = tiny_pnet(size=8)
    pnet.set_hyperparameters(beta=0.6, lam=0.2, alpha=0.5)
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    timesteps = 5
    out = classifier(pnet, timesteps, checkpoint=True)(x)
    nodes, seen, todo = [], set(), [out.grad_fn]
    while todo:  # the _Timestep nodes, walking back from the logits
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if type(node).__name__ == "_TimestepBackward":
            nodes.append(node)
        todo += [f for f, _ in node.next_functions]
    kept = {t.untyped_storage().data_ptr(): t.numel() for n in nodes for t in n.saved_tensors}
    states = 3 * sum(c * h * w for c, h, w in pnet.feature_shapes(8)[1:])  # batch 3; [0]: image
    assert len(nodes) == timesteps + 1
    assert sum(kept.values()) == x.numel() + timesteps * states
