"""The bench's arithmetic: FLOP counts that equal a hand count (the engine's prepacked oneDNN
ConvTranspose included), the engine's skipped last predictions, the measured matmul peak, and the
columns they fill in bench.csv and table.md."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from helpers import tiny_pnet
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pcnets.core.decoders import DecoderSpec, build_decoder
from pcnets.core.pnet import PredictiveNet
from pcnets.core.reference import reference_run
from pcnets.experiments.bench import BenchSpec, measure, mode_functions, summarize
from pcnets.experiments.bench.flops import add_arithmetic, count_flops, mode_flops
from pcnets.experiments.bench.peak import matmul_peak, peak_dtype
from pcnets.reporting.bench import format_table
from pcnets.runtime.numerics import Numerics, prepare

CPU = torch.device("cpu")


def conv_flops(batch: int, hw: int, c_in: int, c_out: int, k: int) -> int:
    """2 x multiply-adds of a convolution over ``hw`` positions (the output's for a Conv2d, the
    input's for a ConvTranspose2d: every tap, those that land in the cropped border too)."""
    return 2 * batch * hw * c_in * c_out * k * k


def naive_count(fn) -> int:
    """FlopCounterMode with oneDNN on (and no module tracker): blind to oneDNN's own ops."""
    naive = FlopCounterMode(display=False)
    naive.mod_tracker = contextlib.nullcontext()
    naive.mod_tracker.parents = {"Global"}
    with naive:
        fn()
    return naive.get_total_flops()


def test_count_of_a_conv_and_a_conv_transpose_is_the_hand_count():
    conv, convt = nn.Conv2d(3, 8, 3, padding=1), nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1)
    with torch.no_grad():
        assert count_flops(lambda: conv(torch.rand(2, 3, 10, 10))) == conv_flops(2, 100, 3, 8, 3)
        # 5x5 in, 10x10 out: nominal = 25 input positions x all 16 taps
        assert count_flops(lambda: convt(torch.rand(1, 4, 5, 5))) == conv_flops(1, 25, 4, 2, 4)


def one_encoder_pnet() -> PredictiveNet:
    """Conv(3->16) encoder on 4x4 images, decoded by a 7x7 ConvTranspose whose weight (2352)
    outweighs its input (256): the engine takes oneDNN's prepacked op for it (core/adjoint)."""
    torch.manual_seed(0)
    backbone = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 5),
    )  # fmt: skip
    decoder = build_decoder(DecoderSpec(16, 3, kernel=7, padding=3))
    return PredictiveNet(backbone, ["1"], [decoder], [0.5] * 3, [0.25] * 3, probe_size=4)


def test_engine_count_includes_the_prepacked_conv_transpose():
    pnet, x, steps = one_encoder_pnet(), torch.rand(2, 3, 4, 4), 3
    backbone = conv_flops(2, 16, 3, 16, 3) + 2 * 2 * 16 * 5  # conv + Linear
    decoder = 2 * conv_flops(2, 16, 16, 3, 7)  # ConvTranspose + its adjoint (a conv2d)
    with torch.no_grad():
        counted = count_flops(lambda: pnet.run(x, steps))
        blind = naive_count(lambda: pnet.run(x, steps))  # the prepacked op counts nothing
    assert counted == (steps + 1) * backbone + steps * decoder
    assert blind == (steps + 1) * backbone + steps * decoder // 2


def test_fused_backbone_of_the_fast_modes_counts_like_the_plain_one():
    pnet, x = tiny_pnet(size=16), torch.rand(2, 3, 16, 16)
    fast = prepare(tiny_pnet(size=16), Numerics(CPU, fold_bn=True))  # conv+ReLU in one oneDNN op
    with torch.no_grad():
        plain, fused = count_flops(lambda: pnet.run(x, 2)), count_flops(lambda: fast.run(x, 2))
        blind = naive_count(lambda: fast.run(x, 2))
    assert fused == plain
    assert blind < plain  # the fused op is there, and only the count without oneDNN sees it


@pytest.mark.parametrize("steps", [1, 3])
def test_engine_skips_the_last_predictions_of_the_reference_loop(steps):
    pnet, x = tiny_pnet(size=16), torch.rand(2, 3, 16, 16)
    # encoders 16x16x4, 8x8x6, 4x4x8; decoders to the image, e_1, e_2 (the last after a 2x
    # bilinear upsampling to 8x8), each a ConvTranspose plus its adjoint or autograd backward
    backbone = conv_flops(2, 256, 3, 4, 3) + conv_flops(2, 64, 4, 6, 3) + conv_flops(2, 16, 6, 8, 3)
    backbone += 2 * 2 * 8 * 5
    decoders = 2 * (conv_flops(2, 256, 4, 3, 3) + conv_flops(2, 64, 6, 4, 4))
    decoders += 2 * conv_flops(2, 64, 8, 6, 3)
    with torch.no_grad():
        engine = count_flops(lambda: pnet.run(x, steps))
    reference = count_flops(lambda: reference_run(pnet, x, steps))
    assert engine == (steps + 1) * backbone + steps * decoders
    assert reference == (steps + 1) * (backbone + decoders)
    assert engine / reference == pytest.approx(
        ((steps + 1) * backbone + steps * decoders) / ((steps + 1) * (backbone + decoders))
    )


def test_compiled_mode_is_counted_as_its_eager_twin_and_a_failure_is_nan():
    a = torch.rand(8, 8)

    def boom() -> None:
        raise RuntimeError("no")

    fns = {"engine_fast": lambda: a @ a, "reference": boom}
    with pytest.warns(UserWarning, match="reference"):
        flops = mode_flops(fns, ["engine_compiled", "reference"])
    assert flops["engine_compiled"] == 2 * 8**3
    assert math.isnan(flops["reference"])


def test_matmul_peak_is_a_plausible_rate_and_each_mode_gets_its_dtype():
    peak = matmul_peak(CPU, "fp32", budget_s=0.3)
    assert math.isfinite(peak) and 0.1 < peak < 100_000  # GFLOP/s of a CPU, not FLOP/s
    amp = Numerics(CPU, amp=True)
    assert [peak_dtype(m, amp) for m in ("engine", "engine_fast")] == ["fp32", "bf16"]
    assert peak_dtype("engine_fast", Numerics(CPU)) == "fp32"


def test_bench_rows_and_table_carry_the_arithmetic():
    pnet, x, num = tiny_pnet(size=16), torch.rand(2, 3, 16, 16), Numerics(CPU)
    modes = ["reference", "feedforward", "engine"]
    fns = mode_functions(pnet, None, None, x, 3, num)
    results = measure(fns, modes, CPU, repeats=1, warmup=1, progress=False)
    rows = summarize(results, BenchSpec(batch=2, size=16, timesteps=3), num, "tiny")
    rows = add_arithmetic(rows, mode_flops(fns, modes), {"fp32": 50.0}, num)
    by = {r["mode"]: r for r in rows}
    assert by["feedforward"]["gflop_per_image_timestep"] == pytest.approx(193_696 / 2 / 1e9)
    assert by["engine"]["gflop_per_run"] == pytest.approx(2_691_712 / 1e9)
    assert by["engine"]["gflop_per_image_timestep"] == pytest.approx(2_691_712 / 6 / 1e9)
    engine = by["engine"]
    assert engine["gflops_per_s"] == pytest.approx(engine["gflop_per_run"] / engine["seconds"])
    assert engine["fraction_of_peak"] == pytest.approx(engine["gflops_per_s"] / 50.0)
    assert all(r["peak_gflops"] == 50.0 and r["peak_dtype"] == "fp32" for r in rows)
    table = format_table(rows)
    assert "| GFLOP / image-timestep | GFLOP/s (% of peak) |" in table
    assert "Peak: fp32 matmul 50 GFLOP/s measured" in table
    assert f"| {2_691_712 / 6 / 1e9:.3g} |" in table
    pct = 100 * engine["fraction_of_peak"]
    assert f"({pct:.1f} %) |" in table if pct >= 1 else f"({pct:.2f} %) |" in table
    new = ("gflop_per_run", "gflop_per_image_timestep", "gflops_per_s", "peak_gflops")
    old = [
        {k: v for k, v in r.items() if k not in new} | {"fraction_of_peak": math.nan} for r in rows
    ]
    old_table = format_table(old)
    assert "Peak" not in old_table
    assert all(line.endswith("| - | - |") for line in old_table.splitlines()[4:])
