"""The roof of the bench's roofline view: the GFLOP/s of a dense matmul, measured on the bench's
device in the dtype a mode computes in (fp32, TF32 on CUDA when cuDNN may use it, or bf16)."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator

import torch

from pcnets.experiments.bench.spec import FAST_MODES
from pcnets.runtime.numerics import Numerics

DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16}


def peak_dtype(mode: str, num: Numerics) -> str:
    """What a mode's convolutions compute in: bf16 for the fast modes under amp; otherwise fp32,
    called tf32 on CUDA when cuDNN may use TF32 (torch.backends.cudnn.allow_tf32)."""
    if mode in FAST_MODES and num.amp:
        return "bf16"
    cuda = num.device.type == "cuda"
    return "tf32" if cuda and torch.backends.cudnn.allow_tf32 else "fp32"


def matmul_peak(device: torch.device, kind: str = "fp32", budget_s: float = 1.0) -> float:
    """GFLOP/s of an n x n @ n x n matmul (n = 8192 on CUDA, 2048 on a CPU, 1024 for CPU bf16):
    one warm-up, then the median of up to 5 timed runs, stopping once ``budget_s`` is spent.
    NaN when it does not fit in memory."""
    cuda = device.type == "cuda"
    n = 8192 if cuda else (2048 if kind != "bf16" else 1024)
    inner = 2 if cuda else 1  # matmuls per timed run on CUDA, where one takes about a millisecond
    sync = torch.cuda.synchronize if cuda else (lambda *args: None)
    try:
        with _matmul_tf32(device, kind == "tf32"):
            gen = torch.Generator(device).manual_seed(0)
            a = torch.randn(n, n, device=device, dtype=DTYPES[kind], generator=gen)
            b = torch.randn(n, n, device=device, dtype=DTYPES[kind], generator=gen)
            times: list[float] = []
            spent = time.perf_counter()
            for i in range(6):  # the first run is the warm-up
                sync(device)
                start = time.perf_counter()
                for _ in range(inner):
                    torch.mm(a, b)
                sync(device)
                if i > 0:
                    times.append((time.perf_counter() - start) / inner)
                    if time.perf_counter() - spent > budget_s:
                        break
            del a, b
        return 2 * n**3 / statistics.median(times) / 1e9
    except torch.cuda.OutOfMemoryError:
        return float("nan")
    finally:
        if cuda:
            torch.cuda.empty_cache()


@contextlib.contextmanager
def _matmul_tf32(device: torch.device, on: bool) -> Iterator[None]:
    """On CUDA, matmuls with TF32 ``on`` or off for the duration (as cuDNN's setting allows the
    convolutions to), then the setting as it was."""
    if device.type != "cuda":
        yield
        return
    matmul = torch.backends.cuda.matmul
    was = matmul.allow_tf32
    matmul.allow_tf32 = on
    try:
        yield
    finally:
        matmul.allow_tf32 = was


def peaks(modes: list[str], num: Numerics) -> dict[str, float]:
    """The measured peak (GFLOP/s) of each dtype that ``modes`` compute in."""
    kinds = sorted({peak_dtype(m, num) for m in modes})
    return {kind: matmul_peak(num.device, kind) for kind in kinds}
