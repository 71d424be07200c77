"""Interleaved timing of the modes: warm-up, rounds, peak memory, per-round ratios."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor

from pcnets.core.pnet import PredictiveNet
from pcnets.core.reference import reference_run
from pcnets.experiments.bench.spec import FAST_MODES, BenchSpec
from pcnets.progress import progress as bar_of
from pcnets.runtime.numerics import Numerics, autocast, to_device
from pcnets.runtime.peak_memory import PeakMemory


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mode_functions(
    pnet: PredictiveNet,
    fast_pnet: PredictiveNet | None,
    compiled_pnet: PredictiveNet | None,
    x: Tensor,
    timesteps: int,
    num: Numerics,
) -> dict[str, Callable[[], list[Tensor]]]:
    """One callable per mode, each returning the logits (all timesteps) of one run. On CUDA the
    fp32 modes run without cuDNN autotuning (a switch of the fast path), the fast ones with it."""

    def fp32_engine() -> list[Tensor]:
        with torch.no_grad():
            return pnet.run(x, timesteps)

    def fp32_ff() -> list[Tensor]:
        with torch.no_grad():
            return [pnet.backbone(pnet.normalize(x))]

    fns: dict[str, Callable[[], list[Tensor]]] = {
        "reference": _autotuned(lambda: reference_run(pnet, x, timesteps), False),
        "feedforward": _autotuned(fp32_ff, False),
        "engine": _autotuned(fp32_engine, False),
    }
    if fast_pnet is not None:
        xf = to_device(x, num)

        def fast_engine(net: PredictiveNet = fast_pnet) -> list[Tensor]:
            with torch.no_grad(), autocast(num):
                return net.run(xf, timesteps)

        def fast_ff() -> list[Tensor]:
            with torch.no_grad(), autocast(num):
                return [fast_pnet.backbone(fast_pnet.normalize(xf))]

        fns["engine_fast"] = _autotuned(fast_engine, True)
        fns["feedforward_fast"] = _autotuned(fast_ff, True)
        if compiled_pnet is not None:
            fns["engine_compiled"] = _autotuned(lambda: fast_engine(compiled_pnet), True)
    return fns


def _autotuned(fn: Callable[[], list[Tensor]], on: bool) -> Callable[[], list[Tensor]]:
    """``fn`` with cuDNN autotuning (torch.backends.cudnn.benchmark) on or off while it runs."""

    def wrapped() -> list[Tensor]:
        was = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = on
        try:
            return fn()
        finally:
            torch.backends.cudnn.benchmark = was

    return wrapped


def measure(
    fns: dict[str, Callable[[], list[Tensor]]],
    modes: list[str],
    device: torch.device,
    repeats: int,
    warmup: int = 1,
    progress: bool = True,
) -> dict[str, dict]:
    """Warm up, then time ``repeats`` interleaved rounds of all modes; peak memory per mode.

    Returns per mode: 'times' (seconds, one per round), 'peak_mb' and 'extra_mb' (the largest
    peak over the timed runs, and its rise above the level before the run), 'logits' (of the
    warm-up run, on the CPU, fp32). One-time costs (allocator pools, cuDNN autotuning, packed
    weights, compilation) fall into the warm-up.
    """
    nan = float("nan")
    out: dict[str, dict] = {m: {"times": [], "peak_mb": nan, "extra_mb": nan} for m in modes}
    total = len(modes) * (warmup + repeats)
    bar = bar_of(total=total, desc="bench", unit="run", show=progress)
    for m in modes:
        for _ in range(max(1, warmup)):
            logits = fns[m]()
            _sync(device)
            out[m]["logits"] = [z.float().cpu() for z in logits]
            del logits
            bar.update()
    for _ in range(repeats):
        for m in modes:
            _sync(device)
            with PeakMemory(device) as peak_memory:
                start = time.perf_counter()
                logits = fns[m]()
                _sync(device)
                out[m]["times"].append(time.perf_counter() - start)
            out[m]["peak_mb"] = _max(out[m]["peak_mb"], peak_memory.peak_mb)
            out[m]["extra_mb"] = _max(
                out[m]["extra_mb"], peak_memory.peak_mb - peak_memory.start_mb
            )
            del logits
            bar.update()
    bar.close()
    return out


def _max(a: float, b: float) -> float:
    return b if a != a else (a if b != b else max(a, b))


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a[i] / b[i]: robust to load that changes between rounds."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def mode_label(mode: str, num: Numerics) -> str:
    """The numerics a mode ran with: fp32 for the eager modes; the fast ones with torch.compile
    only in engine_compiled (the others are prepared without it)."""
    if mode not in FAST_MODES:
        return "fp32"
    return replace(num, compile=mode == "engine_compiled").label


def summarize(
    results: dict[str, dict], spec: BenchSpec, num: Numerics, backbone: str
) -> list[dict]:
    """One row per mode: time per run, throughput, memory, ratios, and the logits' distance to
    the reference loop's."""
    rows = []
    ref = results.get("reference")
    for mode, r in results.items():
        fast = mode in FAST_MODES
        ff_mode = "feedforward_fast" if fast else "feedforward"
        is_ff = mode.startswith("feedforward")
        steps = 1 if is_ff else spec.timesteps
        sec = statistics.median(r["times"])
        row = {
            "backbone": backbone,
            "device": str(num.device),
            "numerics": mode_label(mode, num),
            "mode": mode,
            "batch": spec.batch,
            "size": spec.size,
            "timesteps": 0 if is_ff else spec.timesteps,
            "repeats": len(r["times"]),
            "seconds": sec,
            "seconds_min": min(r["times"]),
            "seconds_max": max(r["times"]),
            "image_timesteps_per_s": spec.batch * steps / sec,
            "peak_mem_mb": r["peak_mb"],
            "extra_mem_mb": r["extra_mb"],
            "vs_reference": paired_ratio(r["times"], ref["times"]) if ref else float("nan"),
            "vs_reference_of_minima": min(r["times"]) / min(ref["times"]) if ref else float("nan"),
            "vs_feedforward": (
                paired_ratio(r["times"], results[ff_mode]["times"])
                if ff_mode in results
                else float("nan")
            ),
            "max_abs_diff_vs_reference": float("nan"),
            "seconds_per_round": " ".join(f"{t:.4f}" for t in r["times"]),
            "threads": torch.get_num_threads(),
            "cudnn_tf32": num.device.type == "cuda" and bool(torch.backends.cudnn.allow_tf32),
        }
        if ref is not None and not is_ff:
            row["max_abs_diff_vs_reference"] = max(
                (a - b).abs().max().item() for a, b in zip(r["logits"], ref["logits"], strict=True)
            )
        rows.append(row)
    return rows
