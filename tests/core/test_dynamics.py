"""The engine against METHOD.md sections 2-3, on PVGG16 with random weights and on a tiny net."""

from __future__ import annotations

import pytest
import torch
import torchvision
from helpers import tiny_pnet

from pcnets import build_pnet
from pcnets.core.decoders import DecoderSpec, build_decoder
from pcnets.core.dynamics import decoder_window, predict_and_gradient

VGG_ENCODERS = (3, 8, 15, 22, 29)
BETA, LAM, ALPHA = 0.6, 0.25, 200.0  # a large alpha, so that the error term matters


@pytest.fixture(scope="module")
def pvgg16():
    torch.manual_seed(0)
    pnet = build_pnet("vgg16", pretrained=False).eval()
    pnet.set_hyperparameters(beta=BETA, lam=LAM, alpha=ALPHA)
    return pnet


@pytest.fixture(scope="module")
def images():
    return torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def plain_loop(pnet, x, timesteps, beta, lam, alpha):
    """METHOD.md section 2 written out layer by layer for VGG16, with no shared code."""
    vgg = pnet.backbone
    x = (x - pnet.mean) / pnet.std
    n_enc = len(VGG_ENCODERS)
    prev, preds, grads, logits = [None] * n_enc, [None] * n_enc, [None] * n_enc, []
    for t in range(timesteps + 1):
        h, e, new_preds, new_grads, n = x, [None] * n_enc, [None] * n_enc, [None] * n_enc, 0
        for idx, layer in enumerate(vgg.features):
            h = layer(h)
            if n < n_enc and idx == VGG_ENCODERS[n]:
                if t > 0:
                    if n + 1 < n_enc:  # feedback from the encoder above, made at t-1
                        h = beta * h + lam * preds[n + 1] + (1 - beta - lam) * prev[n]
                    else:
                        h = beta * h + (1 - beta) * prev[n]
                    h = h - alpha * grads[n]
                e[n] = h
                target = x if n == 0 else e[n - 1]
                leaf = h.detach().requires_grad_(True)
                with torch.enable_grad():
                    pred = pnet.decoders[n](leaf)
                    err = ((pred - target) ** 2).flatten(1).mean(1).sum()
                    (grads_n,) = torch.autograd.grad(err, leaf)
                new_preds[n], new_grads[n] = pred.detach(), grads_n
                n += 1
        logits.append(vgg.classifier(torch.flatten(vgg.avgpool(h), 1)))
        prev, preds, grads = e, new_preds, new_grads
    return logits


@torch.no_grad()
def test_t0_is_plain_vgg16_and_later_steps_match_the_plain_loop(pvgg16, images):
    x = images[:2]
    out = pvgg16.run(x, timesteps=3)
    assert len(out) == 4
    plain = torchvision.models.vgg16()
    plain.load_state_dict(pvgg16.backbone.state_dict())
    plain.eval()
    assert torch.equal(out[0], plain((x - pvgg16.mean) / pvgg16.std))
    ref = plain_loop(pvgg16, x, 3, BETA, LAM, ALPHA)
    for t in range(4):
        assert torch.allclose(out[t], ref[t], atol=1e-5, rtol=0), t
    moved = (out[3] - out[0]).abs().max().item()
    assert moved > 1e-3, f"the dynamics should move the logits, moved {moved}"
    no_error = pvgg16.run(x, timesteps=3, hyper=_hyper(pvgg16, BETA, LAM, 0.0))
    assert (no_error[3] - out[3]).abs().max().item() > 1e-4, "alpha must matter at this size"


def _hyper(pnet, beta, lam, alpha):
    from pcnets.core.pnet import Hyper

    n = pnet.num_encoders
    return Hyper(torch.full((n,), beta), torch.full((n,), lam), torch.full((n,), alpha))


@torch.no_grad()
def test_pure_feedforward_hyperparameters_reproduce_feedforward(pvgg16, images):
    x = images[:2]
    out = pvgg16.run(x, timesteps=3, hyper=_hyper(pvgg16, 1.0, 0.0, 0.0))
    for t in range(4):
        assert torch.allclose(out[t], out[0], atol=1e-6, rtol=0), t


@torch.no_grad()
def test_per_sample_errors_make_an_image_independent_of_its_batch(pvgg16, images):
    alone = pvgg16.run(images[1:2], timesteps=3)
    batch = pvgg16.run(images, timesteps=3)
    for t in range(4):
        assert torch.allclose(alone[t][0], batch[t][1], atol=1e-5, rtol=0), t
    ref_alone = pvgg16.run(images[1:2], timesteps=3, error_reduction="batch_mean")
    ref_batch = pvgg16.run(images, timesteps=3, error_reduction="batch_mean")
    gap = (ref_alone[3][0] - ref_batch[3][1]).abs().max().item()
    assert gap > 1e-4, "batch_mean errors should make the result depend on the batch"


def test_batch_mean_gradient_is_per_sample_divided_by_batch():
    torch.manual_seed(0)
    dec = build_decoder(DecoderSpec(6, 3, kernel=3, relu=True))
    e, target = torch.randn(5, 6, 8, 8), torch.randn(5, 3, 8, 8)
    _, err_ps, g_ps = predict_and_gradient(dec, e, target, "per_sample")
    _, err_bm, g_bm = predict_and_gradient(dec, e, target, "batch_mean")
    assert torch.allclose(g_bm, g_ps / 5, atol=1e-9, rtol=1e-6)
    assert torch.allclose(err_ps, err_bm)
    # per sample: g_b is the gradient of image b's own mean squared error
    leaf = e[2:3].clone().requires_grad_(True)
    ((dec(leaf) - target[2:3]) ** 2).mean().backward()
    assert torch.allclose(g_ps[2:3], leaf.grad, atol=1e-7, rtol=1e-5)


def test_gradient_is_not_kept_in_a_graph_outside_differentiable_mode(tiny):
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    steps = list(tiny.steps(x, timesteps=2, states=True))
    assert all(s.logits.grad_fn is None for s in steps)
    assert all(e.grad_fn is None for s in steps for e in s.states)
    assert [s.states is None for s in tiny.steps(x, timesteps=1)] == [True, True]


def test_errors_are_reported_per_decoder_and_timestep(tiny):
    steps = list(tiny.steps(torch.rand(3, 3, 8, 8), timesteps=2, errors=True))
    assert [len(s.errors) for s in steps] == [3, 3, 3]
    assert steps[0].errors[0].shape == (3,)
    assert all((err >= 0).all() for s in steps for err in s.errors)


def test_random_init_replaces_the_first_feedforward_pass(tiny):
    x = torch.rand(2, 3, 8, 8)
    torch.manual_seed(0)
    out = tiny.run(x, timesteps=1, random_init=True)
    assert not torch.allclose(out[0], tiny.feedforward(x))
    assert torch.allclose(tiny.run(x, timesteps=1)[0], tiny.feedforward(x))


def test_gradcheck_through_the_unrolled_dynamics():
    pnet = tiny_pnet(torch.float64)
    pnet.set_hyperparameters(beta=0.5, lam=0.3, alpha=0.5)
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)

    def logits_at_2(inp):
        return pnet.run(inp, timesteps=2, differentiable=True)[-1]

    assert torch.autograd.gradcheck(logits_at_2, (x,), eps=1e-6, atol=1e-5)
    # and the error-gradient term is part of that graph: alpha changes d logits / d x
    g1 = torch.autograd.grad(logits_at_2(x).sum(), x)[0]
    pnet.set_hyperparameters(alpha=0.0)
    g0 = torch.autograd.grad(logits_at_2(x).sum(), x)[0]
    assert (g1 - g0).abs().max().item() > 1e-6


def test_decoder_window_counts_the_cells_one_input_reaches():
    conv = build_decoder(DecoderSpec(4, 5, kernel=3))
    assert decoder_window(conv, (2, 4, 9, 9)) == pytest.approx(9 * 5)
    vgg1 = build_decoder(DecoderSpec(64, 3, kernel=5, padding=2))
    assert decoder_window(vgg1, (1, 64, 12, 12)) == pytest.approx(25 * 3)


@torch.no_grad()
def test_gradient_scaling_multiplies_alpha_by_k_over_sqrt_c(tiny):
    x = torch.rand(2, 3, 8, 8)
    tiny.set_hyperparameters(beta=0.7, lam=0.2, alpha=1e-3)
    scaled = tiny.run(x, timesteps=1, gradient_scaling=True)
    c = tiny.window.clone()
    k = torch.tensor([3 * 8 * 8, 4 * 8 * 8, 6 * 4 * 4], dtype=torch.float32)
    by_hand = _hyper(tiny, 0.7, 0.2, 0.0)
    by_hand.alpha = 1e-3 * k / c.sqrt()
    assert torch.allclose(scaled[1], tiny.run(x, timesteps=1, hyper=by_hand)[1], atol=1e-6)
    assert c[0].item() == pytest.approx(9 * 3)  # ConvT k3 to 3 channels: a 3x3x3 window


@pytest.mark.parametrize(
    ("name", "decoder", "expected"),
    [("efficientnet_b0", 7, 4032), ("efficientnet_b0", 8, 1728), ("vgg16", 5, 75313)],
)
def test_windows_at_224_px_are_the_authors_figures(name, decoder, expected):
    """METHOD.md section 3: C is estimated at the run's own size, never on a 64 px probe."""
    pnet = build_pnet(name, pretrained=False)
    dec = pnet.decoders[decoder - 1]
    at = {s: decoder_window(dec, (2, *pnet.feature_shapes(s)[decoder]), tries=3) for s in (224, 64)}
    assert at[224] == pytest.approx(expected, rel=0.01)
    assert at[64] < 0.9 * expected  # a 64 px probe cuts the window off at the map's border


def test_a_run_uses_the_window_of_its_own_input_size(tiny):
    x_small, x_large = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 16, 16)
    tiny.run(x_small, timesteps=1, gradient_scaling=True)
    small = tiny.window.clone()
    tiny.run(x_large, timesteps=1, gradient_scaling=True)
    assert torch.equal(tiny.window, tiny.estimate_windows((16, 16)))
    assert not torch.equal(small, tiny.window) or small.numel() == 0


@torch.no_grad()
def test_a_deep_copy_runs_its_own_dynamics(tiny):
    import copy

    tiny.set_hyperparameters(beta=0.6, lam=0.3, alpha=1.0)
    x = torch.rand(2, 3, 8, 8)
    twin = copy.deepcopy(tiny)
    original, copied = tiny.run(x, 2), twin.run(x, 2)
    assert (original[2] - original[0]).abs().max().item() > 1e-3  # the dynamics move the logits
    assert torch.allclose(copied[2], original[2], atol=1e-6)  # and the copy's move alike
    twin.set_hyperparameters(beta=1.0, lam=0.0, alpha=0.0)
    assert torch.allclose(tiny.run(x, 2)[2], original[2], atol=1e-6)  # the original is untouched
