"""The arithmetic of each mode: the FLOPs of one run, counted by torch.utils.flop_counter, and how
close to the device's measured matmul peak the timed runs came (bench.csv's roofline columns)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from pcnets.experiments.bench.peak import peak_dtype
from pcnets.runtime.numerics import Numerics


class _GlobalOnly(contextlib.nullcontext):
    """Stands in for FlopCounterMode's module tracker: totals only, no per-module attribution."""

    parents = frozenset({"Global"})


def count_flops(fn: Callable[[], object]) -> int:
    """The FLOPs of one call of ``fn``: 2 per multiply-add of the convolutions and matrix
    products (elementwise work, pooling, upsampling are not counted), as FlopCounterMode counts."""
    counter = FlopCounterMode(display=False)
    # Its module tracker puts global module hooks in place, which would send the engine off its
    # explicit adjoint (core.kernels.decoder_plan refuses hooked modules) and break the reference
    # loop's autograd.grad on leaves; the totals need no tracker.
    counter.mod_tracker = _GlobalOnly()
    # Without oneDNN the engine's ConvTranspose takes the plain aten op (same algorithm, same
    # FLOPs) instead of the prepacked mkldnn op that FlopCounterMode does not know (core/kernels).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's note on oneDNN TF32 for Intel GPUs
        with torch.backends.mkldnn.flags(enabled=False), counter:
            fn()
    return counter.get_total_flops()


def mode_flops(fns: dict[str, Callable[[], object]], modes: list[str]) -> dict[str, float]:
    """The FLOPs of one run of each mode, each counted in one extra, untimed run. engine_compiled
    is counted as its eager twin engine_fast (same computation, same FLOPs): FlopCounterMode
    does not see inside a compiled graph's kernels."""
    counted: dict[str, float] = {}
    for m in modes:
        name = "engine_fast" if m == "engine_compiled" else m
        if name not in counted:
            try:
                counted[name] = float(count_flops(fns[name]))
            except Exception as exc:  # a count is a bonus; the timings must still come out
                warnings.warn(f"could not count the FLOPs of {name}: {exc}", stacklevel=2)
                counted[name] = float("nan")
    return {m: counted["engine_fast" if m == "engine_compiled" else m] for m in modes}


def add_arithmetic(
    rows: list[dict], flops: dict[str, float], peaks: dict[str, float], num: Numerics
) -> list[dict]:
    """Add to each row of ``summarize`` its GFLOP per run and per image-timestep (a feedforward
    pass is one timestep), the GFLOP/s of its median run, and the peak of its dtype."""
    nan = float("nan")
    for r in rows:
        gflop = flops.get(r["mode"], nan) / 1e9
        kind = peak_dtype(r["mode"], num)
        r["gflop_per_run"] = gflop
        r["gflop_per_image_timestep"] = gflop / (r["batch"] * (r["timesteps"] or 1))
        r["gflops_per_s"] = gflop / r["seconds"]
        r["peak_dtype"] = kind
        r["peak_gflops"] = peaks.get(kind, nan)
        r["fraction_of_peak"] = r["gflops_per_s"] / r["peak_gflops"]
    return rows
