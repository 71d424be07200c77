"""The fast path's switches (DESIGN.md "Scale"): bf16 autocast, channels_last, cuDNN autotuning and
an optional torch.compile, applied to a PredictiveNet; and batches moved to the device ahead of use.

    num = numerics(cfg, device)        # amp: auto = on for CUDA; channels_last: auto = on for CUDA
                                       # and, on a CPU, where the backbone measured faster with it
    pnet = prepare(pnet, num)          # device, memory format, cuDNN autotuning, compile
    logits = run(pnet, x, 10, num)     # pnet.run under autocast, fp32 logits back

fp32 without channels_last gives the engine's exact numbers; docs/performance.md gives what each
switch does to speed and to accuracy.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from pcnets.core.pnet import PredictiveNet
from pcnets.runtime.devices import resolve_device, switch
from pcnets.runtime.fusion import fold_batchnorm


@dataclass(frozen=True)
class Numerics:
    """How a PredictiveNet computes: on which device, with bf16 autocast, channels_last,
    torch.compile of the decoder step, eval-mode BatchNorm folded into its convolution, and the
    fast kernels of core/kernels.py (polyphase decoders, packed oneDNN weights, convolution +
    activation in one call; ``fast_kernels: false`` gives the plain torch kernels only)."""

    device: torch.device
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    fold_bn: bool = False
    fast_kernels: bool = True

    @property
    def label(self) -> str:
        parts = ["bf16" if self.amp else "fp32"]
        if self.fold_bn:
            parts.append("fold_bn")
        if self.channels_last:
            parts.append("channels_last")
        if self.compile:
            parts.append("compile")
        if not self.fast_kernels:
            parts.append("no_fast_kernels")
        return "+".join(parts)


def numerics(cfg, device: torch.device | str | None = None) -> Numerics:
    """The switches of a composed config (top-level amp, channels_last, compile, fold_bn,
    fast_kernels).

    ``channels_last: auto`` is on for CUDA and, on a CPU, where the backbone's entry says that it
    measured faster (``backbone.cpu_channels_last``, default true: oneDNN's convolutions work in
    NHWC, so NCHW maps are reordered at every call; PVGG16's large decoder kernels are the
    exception). Both layouts give the same logits to ~1e-6.
    """
    device = torch.device(device) if device is not None else resolve_device(cfg.get("device"))
    backbone = cfg.get("backbone") or {}
    cpu_cl = bool(backbone.get("cpu_channels_last", True)) if hasattr(backbone, "get") else True
    return Numerics(
        device=device,
        amp=switch(cfg.get("amp", "auto"), device),
        channels_last=switch(cfg.get("channels_last", "auto"), device, on_cpu=cpu_cl),
        compile=bool(cfg.get("compile", False)),
        fold_bn=bool(cfg.get("fold_bn", True)),
        fast_kernels=bool(cfg.get("fast_kernels", True)),
    )


def prepare(pnet: PredictiveNet, num: Numerics) -> PredictiveNet:
    """Move ``pnet`` to the device in eval mode with BatchNorm folded, the memory format and
    compilation asked for, and let cuDNN pick its fastest kernels (inputs keep one shape per run).
    Folding changes the backbone's weights in place (same function): save decoders, not it."""
    pnet = pnet.to(num.device).eval()
    pnet.fast_kernels = num.fast_kernels
    if num.fold_bn:
        fold_batchnorm(pnet.backbone, fuse=num.fast_kernels)
    if num.channels_last:
        pnet = pnet.to(memory_format=torch.channels_last)
    if num.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if num.compile:
        pnet.compile_decoders()
    return pnet


def autocast(num: Numerics) -> contextlib.AbstractContextManager:
    """bf16 autocast on the device when ``num.amp``; otherwise nothing."""
    if num.amp:
        return torch.autocast(num.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(x: Tensor, num: Numerics) -> Tensor:
    """A batch on the device (asynchronous from pinned memory) in the memory format asked for."""
    x = x.to(num.device, non_blocking=True)
    if num.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def run(pnet: PredictiveNet, x: Tensor, timesteps: int, num: Numerics, **kwargs) -> list[Tensor]:
    """``pnet.run`` with the switches of ``num``; logits come back in fp32."""
    with torch.no_grad(), autocast(num):
        logits = pnet.run(to_device(x, num), timesteps, **kwargs)
    return [z.float() for z in logits]


class Prefetcher:
    """Iterate a DataLoader with the next batch already on its way to the device.

    On CUDA the copy of batch k+1 (from pinned memory, on a side stream) overlaps the compute of
    batch k. ``wait_s`` adds up the seconds the consumer spent waiting for data, the measure of
    whether loading keeps the device busy.
    """

    def __init__(self, loader: Iterable, num: Numerics):
        self.loader = loader
        self.num = num
        self.wait_s = 0.0
        self.batches = 0
        cuda = num.device.type == "cuda"
        self.stream = torch.cuda.Stream(num.device) if cuda else None

    def _load(self, it: Iterator):
        start = time.perf_counter()
        try:
            x, *rest = next(it)
        except StopIteration:
            return None
        finally:
            self.wait_s += time.perf_counter() - start
        if self.stream is None:
            return to_device(x, self.num), rest
        with torch.cuda.stream(self.stream):
            return to_device(x, self.num), [
                r.to(self.num.device, non_blocking=True) if isinstance(r, Tensor) else r
                for r in rest
            ]

    def __iter__(self) -> Iterator:
        it = iter(self.loader)
        nxt = self._load(it)
        while nxt is not None:
            start = time.perf_counter()
            if self.stream is not None:
                torch.cuda.current_stream(self.num.device).wait_stream(self.stream)
                for t in (nxt[0], *nxt[1]):
                    if isinstance(t, Tensor):
                        t.record_stream(torch.cuda.current_stream(self.num.device))
            self.wait_s += time.perf_counter() - start
            current = nxt
            nxt = self._load(it)
            self.batches += 1
            yield (current[0], *current[1])

    def __len__(self) -> int:
        return len(self.loader)
