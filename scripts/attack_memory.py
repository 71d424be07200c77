"""Peak memory per image and time per attack step of pcnets.classifier against T, with the
timesteps' graphs stored or recomputed (checkpoint), for the memory-vs-T table of the attack docs.

    OMP_NUM_THREADS=1 python scripts/attack_memory.py --backbone efficientnet_lite0 --size 128
    OMP_NUM_THREADS=1 python scripts/attack_memory.py --backbone vgg16 --size 64 --random-weights

One attack step = the logits at T and the input gradient of their cross-entropy (what BIM, PGD
and APGD do per iteration). Memory, divided by the batch size, median of the repeats:
runtime.peak_memory.PeakMemory (CPU: peak RSS above the level before the step, allocator slack
included; CUDA: max allocated) and, on a CPU, the peak of live tensor bytes that
torch.profiler's memory events give (exact: what the tensors of the step hold at its peak).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile

from pcnets import build_pnet
from pcnets.core.classifier import classifier
from pcnets.runtime.peak_memory import PeakMemory


def step(model, x: torch.Tensor, labels: torch.Tensor) -> None:
    """One attack step: forward to the logits at T, backward to the input."""
    xx = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(xx), labels)
    torch.autograd.grad(loss, xx)


def live_peak_bytes(fn) -> int:
    """The largest sum of live tensor bytes while ``fn()`` runs (CPU; torch.profiler)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = prof.profiler.kineto_results.events()
    changes = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    level = peak = 0
    for _, nbytes in changes:
        level += nbytes
        peak = max(peak, level)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--timesteps", default="0,2,4,10")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    pnet = build_pnet(args.backbone, pretrained=not args.random_weights).to(device).eval()
    x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    labels = torch.zeros(args.batch, dtype=torch.long, device=device)
    print(f"{args.backbone} {args.size}px batch {args.batch} on {device}")
    print("| T | checkpoint | peak MB per image | live tensors MB per image | seconds per step |")
    print("|---|---|---|---|---|")
    for t in (int(v) for v in args.timesteps.split(",")):
        for checkpoint in (False, True) if t > 0 else (False,):
            model = classifier(pnet, t, checkpoint=checkpoint)
            step(model, x, labels)  # warm-up: allocator and kernels
            peaks, seconds = [], []
            for _ in range(args.repeats):
                with PeakMemory(device) as memory:
                    start = time.perf_counter()
                    step(model, x, labels)
                    seconds.append(time.perf_counter() - start)
                peaks.append(memory.peak / 2**20 / args.batch)
            live = "-"
            if device.type == "cpu":
                live_mb = live_peak_bytes(lambda m=model: step(m, x, labels)) / 2**20
                live = f"{live_mb / args.batch:.1f}"
            print(
                f"| {t} | {'on' if checkpoint else 'off'} | {statistics.median(peaks):.0f} | "
                f"{live} | {statistics.median(seconds):.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
