"""The fast path gives the straightforward loop's numbers: engine vs core.reference, the explicit
adjoint vs autograd, channels_last, bf16 autocast (within its documented tolerance), and no work
that nothing uses."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_pnet
from torch import nn

from pcnets import build_pnet
from pcnets.core.adjoint import adjoint_predict_and_gradient
from pcnets.core.decoders import DecoderSpec, build_decoder
from pcnets.core.dynamics import autograd_predict_and_gradient, predict_and_gradient
from pcnets.core.kernels import decoder_plan
from pcnets.core.pnet import Hyper
from pcnets.core.reference import reference_run
from pcnets.experiments.bench import measure, mode_functions, summarize
from pcnets.runtime.numerics import Numerics, Prefetcher, prepare, run

FP32_TOL = 1e-5  # the engine vs the reference loop, fp32, on logits
BF16_TOL = 5e-2  # bf16 autocast vs fp32: max |logit difference| / max |logit| (docs/performance.md)
ADJOINT_TOL = 1e-6  # the explicit adjoint vs autograd, relative to the largest entry
PACKED_TOL = 1e-5  # the same with oneDNN's prepacked ConvT weights (another summation order)
CPU = torch.device("cpu")


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x.float() - y.float()).abs().max().item() for x, y in zip(a, b, strict=True))


def _hyper(pnet, beta, lam, alpha) -> Hyper:
    n = pnet.num_encoders
    return Hyper(torch.full((n,), beta), torch.full((n,), lam), torch.full((n,), float(alpha)))


@pytest.fixture(scope="module")
def pvgg16():
    torch.manual_seed(0)
    pnet = build_pnet("vgg16", pretrained=False).eval()
    pnet.estimate_windows(tries=1)  # C of the gradient scaling; one try keeps the test quick
    return pnet


# ---- the engine against the straightforward loop ---------------------------------------------

# alpha large enough that the error term moves the logits (asserted), small enough to stay stable
SETTINGS = [
    ("per_sample", False, 20.0),
    ("batch_mean", False, 20.0),
    ("per_sample", True, 0.05),
    ("batch_mean", True, 0.05),
]


@pytest.mark.parametrize("reduction,scaling,alpha", SETTINGS)
def test_engine_matches_the_reference_loop_on_the_tiny_net(reduction, scaling, alpha):
    pnet = tiny_pnet()
    pnet.set_hyperparameters(beta=0.6, lam=0.25, alpha=alpha)
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    kw = {"error_reduction": reduction, "gradient_scaling": scaling}
    with torch.no_grad():
        out = pnet.run(x, timesteps=4, **kw)
        no_error = pnet.run(x, timesteps=4, hyper=_hyper(pnet, 0.6, 0.25, 0.0), **kw)
    ref = reference_run(pnet, x, 4, **kw)
    assert len(out) == len(ref) == 5
    assert _max_diff(out, ref) <= FP32_TOL
    assert (out[4] - no_error[4]).abs().max().item() > 1e-3, "the error term must matter here"


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("reduction,scaling,alpha", [SETTINGS[0], SETTINGS[3]])
def test_the_cpu_default_numerics_match_the_reference_loop_on_the_tiny_net(
    reduction, scaling, alpha, channels_last
):
    """What commands run on a CPU: activations fused into the convolutions, NHWC or not."""
    pnet = tiny_pnet()
    pnet.set_hyperparameters(beta=0.6, lam=0.25, alpha=alpha)
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    kw = {"error_reduction": reduction, "gradient_scaling": scaling}
    ref = reference_run(pnet, x, 4, **kw)
    num = Numerics(CPU, fold_bn=True, channels_last=channels_last)
    prepare(pnet, num)
    assert sum(hasattr(m, "_pcnets_act") for m in pnet.backbone) == 2  # the two ReLU encoders
    out = run(pnet, x, 4, num, **kw)
    assert _max_diff(out, ref) <= FP32_TOL
    assert (out[4] - out[0]).abs().max().item() > 1e-3


@pytest.mark.parametrize("reduction,scaling,alpha", [SETTINGS[0], SETTINGS[3]])
def test_engine_matches_the_reference_loop_on_pvgg16(pvgg16, reduction, scaling, alpha):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    hyper = _hyper(pvgg16, 0.6, 0.25, alpha * 10)
    kw = {"error_reduction": reduction, "gradient_scaling": scaling, "hyper": hyper}
    with torch.no_grad():
        out = pvgg16.run(x, timesteps=3, **kw)
    ref = reference_run(pvgg16, x, 3, **kw)
    assert _max_diff(out, ref) <= FP32_TOL
    assert (out[3] - out[0]).abs().max().item() > 1e-3, "the dynamics must move the logits"


def test_channels_last_on_a_cpu_gives_the_same_logits(pvgg16):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    hyper = _hyper(pvgg16, 0.6, 0.25, 200.0)
    with torch.no_grad():
        plain = pvgg16.run(x, timesteps=2, hyper=hyper)
    try:
        prepare(pvgg16, Numerics(CPU, channels_last=True))
        last = run(pvgg16, x, 2, Numerics(CPU, channels_last=True), hyper=hyper)
        assert pvgg16.decoders[2][0].weight.is_contiguous(memory_format=torch.channels_last)
    finally:
        pvgg16.to(memory_format=torch.contiguous_format)
    assert _max_diff(last, plain) <= FP32_TOL
    assert (plain[2] - plain[0]).abs().max().item() > 1e-3


def test_bf16_autocast_stays_within_the_documented_tolerance():
    pnet = tiny_pnet(size=16)
    pnet.set_hyperparameters(beta=0.6, lam=0.25, alpha=20.0)
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    fp32 = run(pnet, x, 3, Numerics(CPU))
    bf16 = run(pnet, x, 3, Numerics(CPU, amp=True, channels_last=True))
    assert all(z.dtype == torch.float32 for z in bf16)
    for a, b in zip(bf16, fp32, strict=True):
        rel = (a - b).abs().max().item() / b.abs().max().item()
        assert 0 < rel <= BF16_TOL, rel  # bf16 does change the numbers, but only this much


@pytest.mark.slow
def test_compiled_decoder_step_gives_the_same_logits():
    pnet = tiny_pnet(size=16)
    pnet.set_hyperparameters(beta=0.6, lam=0.25, alpha=20.0)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    ref = reference_run(pnet, x, 3)
    prepare(pnet, Numerics(CPU, compile=True))
    assert pnet._adjoint is not adjoint_predict_and_gradient
    assert _max_diff(run(pnet, x, 3, Numerics(CPU)), ref) <= FP32_TOL


# ---- the explicit adjoint against autograd ---------------------------------------------------

DECODERS = {
    "vgg_image": DecoderSpec(64, 3, kernel=5, stride=1, padding=2),
    "vgg_relu_k10": DecoderSpec(128, 64, kernel=10, stride=2, padding=4, relu=True),
    "vgg_relu_k14": DecoderSpec(32, 16, kernel=14, stride=2, padding=6, relu=True),
    "effnet_up": DecoderSpec(24, 16, upsample=2),
    "effnet_plain": DecoderSpec(16, 32),
    "default_rule_up4": DecoderSpec(8, 6, upsample=4),
}


def _cases():
    for name, spec in DECODERS.items():
        yield pytest.param(build_decoder(spec), spec.in_ch, id=name)
    odd = nn.Sequential(
        nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=1)
    )
    yield pytest.param(odd, 8, id="groups_output_padding")
    dil = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, stride=1, padding=2, dilation=2), nn.ReLU())
    yield pytest.param(dil, 4, id="dilation_relu")


@pytest.mark.parametrize("decoder,in_ch", list(_cases()))
@pytest.mark.parametrize("reduction", ["per_sample", "batch_mean"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("packed", [False, True])
def test_explicit_adjoint_equals_autograd(decoder, in_ch, reduction, layout, packed):
    torch.manual_seed(0)
    e = torch.randn(3, in_ch, 6, 6)
    with torch.no_grad():
        out_shape = decoder(e).shape
    target = torch.randn(out_shape)
    if layout == "channels_last":
        e = e.contiguous(memory_format=torch.channels_last)
    plan = decoder_plan(decoder)
    assert plan is not None and plan.relu == any(isinstance(m, nn.ReLU) for m in decoder)
    tol = PACKED_TOL if packed else ADJOINT_TOL
    was = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = packed  # off: no packing, the plain kernels
    try:
        pred, err, grad = adjoint_predict_and_gradient(plan, e, target, reduction)
        pred_a, err_a, grad_a = autograd_predict_and_gradient(decoder, e, target, reduction)
        # predict_and_gradient picks the explicit adjoint on its own
        _, _, g_auto = predict_and_gradient(decoder, e, target, reduction)
    finally:
        torch.backends.mkldnn.enabled = was
    scale = grad_a.abs().max().item()
    assert scale > 0
    assert (grad - grad_a).abs().max().item() <= tol * scale
    assert (pred - pred_a).abs().max().item() <= tol * pred_a.abs().max().item()
    assert torch.allclose(err, err_a, rtol=tol, atol=0)
    assert pred.grad_fn is None and grad.grad_fn is None
    assert torch.equal(g_auto, grad)


def test_unknown_decoders_fall_back_to_autograd_and_still_match_the_reference():
    tanh = nn.Sequential(nn.ConvTranspose2d(4, 3, 3, padding=1), nn.Tanh())
    hooked = build_decoder(DecoderSpec(6, 4, kernel=4, stride=2, padding=1, relu=True))
    hooked.register_forward_hook(lambda m, i, o: o * 1.5)  # changes the prediction
    assert decoder_plan(tanh) is None and decoder_plan(hooked) is None
    pnet = tiny_pnet()
    torch.manual_seed(5)
    pnet.set_decoders([tanh, hooked, pnet.decoders[2]])
    pnet.set_hyperparameters(beta=0.6, lam=0.25, alpha=20.0)
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = pnet.run(x, timesteps=3)
    assert _max_diff(out, reference_run(pnet, x, 3)) <= FP32_TOL


def test_packed_weights_follow_in_place_weight_changes(pvgg16):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    hyper = _hyper(pvgg16, 0.6, 0.25, 200.0)
    dec = pvgg16.decoders[3][0]
    with torch.no_grad():
        before = pvgg16.run(x, timesteps=2, hyper=hyper)
        dec.weight.mul_(3.0)
        try:
            after = pvgg16.run(x, timesteps=2, hyper=hyper)
            ref = reference_run(pvgg16, x, 2, hyper=hyper)
        finally:
            dec.weight.div_(3.0)
    assert _max_diff(after, ref) <= FP32_TOL
    assert _max_diff(after, before) > 1e-4


# ---- no work that nothing uses -------------------------------------------------------------


def _count_decoder_steps(pnet):
    calls = []
    inner = pnet._adjoint

    def counting(plan, e, target, reduction, need_error, need_grad):
        calls.append((need_error, need_grad))
        return inner(plan, e, target, reduction, need_error, need_grad)

    pnet._adjoint = counting
    return calls


def test_no_prediction_after_the_last_timestep_and_none_that_nothing_uses():
    pnet = tiny_pnet()
    calls = _count_decoder_steps(pnet)
    x = torch.rand(2, 3, 8, 8)
    pnet.run(x, timesteps=3)
    assert len(calls) == 3 * 3  # T timesteps x N decoders: none at t = T
    assert all(c == (False, True) for c in calls)  # errors not asked for: not computed
    calls.clear()
    list(pnet.steps(x, timesteps=3, errors=True))
    assert len(calls) == 4 * 3  # errors at t = T were asked for
    calls.clear()
    # alpha = 0: no gradient; lambda = 0 as well: no prediction at all, plain feedforward
    no_grad_out = pnet.run(x, timesteps=2, hyper=_hyper(pnet, 0.7, 0.2, 0.0))
    assert calls and all(c == (False, False) for c in calls)
    assert len(calls) == 2 * 2  # decoder 1 predicts the image, which nothing uses
    ref = reference_run(pnet, x, 2, hyper=_hyper(pnet, 0.7, 0.2, 0.0))
    assert _max_diff(no_grad_out, ref) <= FP32_TOL
    calls.clear()
    ff = pnet.run(x, timesteps=2, hyper=_hyper(pnet, 1.0, 0.0, 0.0))
    assert calls == [] and torch.equal(ff[2], ff[0])


# ---- the bench and the data path -----------------------------------------------------------


def test_bench_measures_every_mode_and_checks_the_logits():
    pnet = tiny_pnet(size=16)
    pnet.set_hyperparameters(beta=0.6, lam=0.25, alpha=20.0)
    x = torch.rand(2, 3, 16, 16)
    num = Numerics(CPU)
    fns = mode_functions(pnet, None, None, x, 3, num)
    modes = ["reference", "feedforward", "engine"]
    results = measure(fns, modes, CPU, repeats=2, warmup=1, progress=False)
    from pcnets.experiments.bench import BenchSpec

    rows = summarize(results, BenchSpec(batch=2, size=16, timesteps=3), num, "tiny")
    by_mode = {r["mode"]: r for r in rows}
    assert by_mode["reference"]["vs_reference"] == 1.0
    assert by_mode["engine"]["max_abs_diff_vs_reference"] <= FP32_TOL
    assert by_mode["feedforward"]["timesteps"] == 0
    assert by_mode["engine"]["image_timesteps_per_s"] == pytest.approx(
        2 * 3 / by_mode["engine"]["seconds"]
    )
    assert all(r["repeats"] == 2 and r["seconds"] > 0 for r in rows)


def test_each_bench_mode_is_labelled_with_the_numerics_it_ran():
    from pcnets.experiments.bench.timing import mode_label

    num = Numerics(CPU, compile=True, fold_bn=True)
    assert mode_label("engine", num) == "fp32"
    assert mode_label("engine_fast", num) == "fp32+fold_bn"  # the twin without compile
    assert mode_label("engine_compiled", num) == "fp32+fold_bn+compile"


def test_prefetcher_yields_every_batch_on_the_device_and_counts_the_wait():
    data = torch.utils.data.TensorDataset(torch.rand(10, 3, 4, 4), torch.arange(10))
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    batches = Prefetcher(loader, Numerics(CPU, channels_last=True))
    seen = list(batches)
    assert [y.tolist() for _, y in seen] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert seen[0][0].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(seen[2][0], data.tensors[0][8:])
    assert batches.batches == 3 and batches.wait_s > 0
