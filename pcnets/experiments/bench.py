"""`pcnets bench`: how fast the dynamics run, against the straightforward loop and the backbone.

Modes (each a full run of T timesteps on one batch, except the feedforward ones):
    reference         pcnets.core.reference: eager fp32 autograd, every prediction and gradient
                      at every timestep (the reference code's way)
    feedforward       the plain backbone, one pass, fp32
    engine            pcnets' engine, fp32 eager (the default numerics on a CPU)
    feedforward_fast  the plain backbone with the fast numerics
    engine_fast       the engine with the fast numerics (CUDA default: bf16 autocast,
                      channels_last, cuDNN autotuning)
    engine_compiled   engine_fast plus torch.compile of the decoder step

Timing: warm-up runs first, then ``repeats`` rounds that run every mode once, interleaved, so
that a busy machine slows all modes alike; a mode's time is its median over rounds, and a ratio
is the median over rounds of the ratio within a round.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig, open_dict
from torch import Tensor
from tqdm import tqdm

from pcnets.core.pnet import PredictiveNet
from pcnets.core.reference import reference_run
from pcnets.errors import PcnetsError
from pcnets.runtime.memory import PeakMemory
from pcnets.runtime.numerics import Numerics, Prefetcher, autocast, prepare, to_device

MODES = {
    "reference": "straightforward loop: eager fp32 autograd, all predictions+gradients each step",
    "feedforward": "plain backbone, one pass, fp32",
    "engine": "pcnets engine, fp32 eager",
    "feedforward_fast": "plain backbone, one pass, fast numerics",
    "engine_fast": "pcnets engine, fast numerics",
    "engine_compiled": "pcnets engine, fast numerics + torch.compile of the decoder step",
}
FAST_MODES = ("feedforward_fast", "engine_fast", "engine_compiled")


@dataclass
class BenchSpec:
    """What to measure: one batch of ``batch`` random images of ``size`` px, ``timesteps`` T."""

    batch: int = 2
    size: int = 224
    timesteps: int = 4
    repeats: int = 5
    warmup: int = 1
    modes: list[str] = field(default_factory=lambda: ["reference", "feedforward", "engine"])
    seed: int = 0


def default_modes(device: torch.device, fast: bool | None, compile_: bool) -> list[str]:
    """reference, feedforward, engine; the fast modes on CUDA (or when asked for)."""
    modes = ["reference", "feedforward", "engine"]
    if fast or (fast is None and device.type == "cuda") or compile_:
        modes += ["feedforward_fast", "engine_fast"]
    if compile_:
        modes.append("engine_compiled")
    return modes


def check_modes(modes: list[str]) -> list[str]:
    from pcnets.errors import suggest

    for m in modes:
        if m not in MODES:
            raise PcnetsError(f"unknown bench mode {m!r}{suggest(m, MODES)}; modes: {list(MODES)}")
    return modes


# ---- the measurements ------------------------------------------------------------------------


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
            return [pnet(x)]

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
                return [fast_pnet(xf)]

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
    bar = tqdm(total=total, desc="bench", unit="run", disable=not progress)
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
            with PeakMemory(device) as mem:
                start = time.perf_counter()
                logits = fns[m]()
                _sync(device)
                out[m]["times"].append(time.perf_counter() - start)
            out[m]["peak_mb"] = _max(out[m]["peak_mb"], mem.peak_mb)
            out[m]["extra_mb"] = _max(out[m]["extra_mb"], mem.peak_mb - mem.start_mb)
            del logits
            bar.update()
    bar.close()
    return out


def _max(a: float, b: float) -> float:
    return b if a != a else (a if b != b else max(a, b))


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a[i] / b[i]: robust to load that changes between rounds."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


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
            "numerics": num.label if fast else "fp32",
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


def format_table(rows: list[dict]) -> str:
    """A Markdown table of the rows of ``summarize``."""
    head = (
        "| mode | numerics | s / run (min-max) | image-timesteps/s | peak MiB (+run) "
        "| vs reference (of minima) | vs feedforward | max abs diff vs reference |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['numerics']} | {r['seconds']:.3f} "
            f"({r['seconds_min']:.3f}-{r['seconds_max']:.3f}) | {r['image_timesteps_per_s']:.2f} "
            f"| {r['peak_mem_mb']:.0f} (+{r['extra_mem_mb']:.0f}) | {r['vs_reference']:.3f} "
            f"({r['vs_reference_of_minima']:.3f}) "
            f"| {r['vs_feedforward']:.2f} | {r['max_abs_diff_vs_reference']:.2e} |"
        )
    r0 = rows[0]
    title = (
        f"{r0['backbone']} on {r0['device']}: batch {r0['batch']}, {r0['size']} px, "
        f"T = {max(r['timesteps'] for r in rows)}, median of {r0['repeats']} interleaved rounds, "
        f"{r0['threads']} threads. Ratios: median over rounds of the ratio within a round (in "
        "brackets: ratio of the fastest runs)\n\n"
    )
    return title + head + "\n".join(lines) + "\n"


# ---- building what is measured -----------------------------------------------------------------


def build_for_bench(cfg: DictConfig, device: torch.device) -> PredictiveNet:
    """The config's network on ``device`` (fp32, contiguous), with seeded weights when random."""
    from pcnets.backbones import pnet_from_config

    torch.manual_seed(int(cfg.get("seed", 0)))
    return pnet_from_config(cfg, device)


def twin(cfg: DictConfig, pnet: PredictiveNet, num: Numerics) -> PredictiveNet:
    """A second copy of ``pnet`` (same weights) prepared with the fast numerics ``num``."""
    other = build_for_bench(cfg, torch.device("cpu"))
    other.load_state_dict(pnet.state_dict())
    return prepare(other, num)


def largest_batch(make_run: Callable[[int], None], device: torch.device, limit: int = 1024) -> int:
    """The largest power-of-two batch (<= limit) for which ``make_run(batch)`` fits in memory."""
    if device.type != "cuda":
        raise PcnetsError("--batch auto needs CUDA (it fills the GPU's memory); give a number")
    batch, best = 1, 0
    while batch <= limit:
        try:
            make_run(batch)
            best = batch
        except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:  # cuDNN may fail, not OOM
            if best == 0:
                raise PcnetsError(f"not even a batch of 1 runs on this GPU: {exc}") from None
            break
        finally:
            torch.cuda.empty_cache()
        batch *= 2
    return best


def bench(
    cfg: DictConfig,
    spec: BenchSpec,
    num: Numerics,
    batch_auto: bool = False,
    progress: bool = True,
) -> tuple[list[dict], str]:
    """Measure ``spec.modes`` for the network of ``cfg``; rows (see ``summarize``) and a table."""
    device = num.device
    pnet = build_for_bench(cfg, device)
    fast_pnet = compiled = None
    if any(m in FAST_MODES for m in spec.modes):
        fast_pnet = twin(cfg, pnet, Numerics(device, num.amp, num.channels_last, False))
    if "engine_compiled" in spec.modes:
        compiled = twin(cfg, pnet, Numerics(device, num.amp, num.channels_last, True))
    gen = torch.Generator().manual_seed(spec.seed)
    if batch_auto:

        def try_batch(b: int) -> None:
            xb = torch.rand(b, 3, spec.size, spec.size, generator=gen).to(device)
            reference_run(pnet, xb, 1)

        spec.batch = largest_batch(try_batch, device)
    x = torch.rand(spec.batch, 3, spec.size, spec.size, generator=gen).to(device)
    fns = mode_functions(pnet, fast_pnet, compiled, x, spec.timesteps, num)
    results = measure(fns, spec.modes, device, spec.repeats, spec.warmup, progress)
    rows = summarize(results, spec, num, str(cfg.backbone.name))
    return rows, format_table(rows)


# ---- accuracy per timestep and data loading ------------------------------------------------------


def accuracy_by_timestep(
    pnet: PredictiveNet,
    cfg: DictConfig,
    num: Numerics,
    timesteps: int,
    progress: bool = True,
) -> tuple[list[dict], dict]:
    """Top-1 per timestep on the config's dataset with the numerics ``num``, and how the data
    loading kept up: rows (t, top1, correct, n, predictions) and totals (seconds, images per
    second, seconds and fraction of the time spent waiting for data)."""
    from pcnets.data import build_dataset
    from pcnets.runtime.loading import build_loader

    dataset = build_dataset(cfg.data, pnet.transform, split="val")
    loader = build_loader(dataset, cfg.data, num.device)
    batches = Prefetcher(loader, num)
    correct = torch.zeros(timesteps + 1, dtype=torch.long, device=num.device)
    preds: list[Tensor] = []
    n = 0
    start = time.perf_counter()
    for x, y in tqdm(batches, desc=f"top-1 {num.label}", unit="batch", disable=not progress):
        with torch.no_grad(), autocast(num):
            logits = pnet.run(x, timesteps)
        top = torch.stack([z.argmax(1) for z in logits])  # [T+1, B]
        correct += (top == y.view(1, -1)).sum(1)
        preds.append(top)
        n += y.shape[0]
    _sync(num.device)
    seconds = time.perf_counter() - start
    if n == 0:
        raise PcnetsError("the dataset is empty: check data.root / data.limit")
    pred_all = torch.cat(preds, 1).cpu()
    correct = correct.cpu()
    rows = [
        {
            "numerics": num.label,
            "t": t,
            "top1": correct[t].item() / n,
            "correct": int(correct[t]),
            "n": n,
            "predictions": pred_all[t],
        }
        for t in range(timesteps + 1)
    ]
    totals = {
        "numerics": num.label,
        "seconds": seconds,
        "images_per_s": n / seconds,
        "data_wait_s": batches.wait_s,
        "data_wait_fraction": batches.wait_s / seconds,
        "n": n,
    }
    return rows, totals


def compare_accuracy(
    cfg: DictConfig, device: torch.device, timesteps: int, nums: list[Numerics], progress: bool
) -> tuple[list[dict], list[dict], str]:
    """Top-1 per timestep under each of ``nums`` (the first is the baseline): per-timestep rows
    with the agreement of top-1 predictions with the baseline, totals, and a Markdown table."""
    from pcnets.backbones import pnet_from_config

    base = pnet_from_config(cfg, "cpu")
    state = base.state_dict()
    rows, totals, first = [], [], None
    for num in nums:
        pnet = pnet_from_config(cfg, "cpu")
        pnet.load_state_dict(state)
        pnet = prepare(pnet, num)
        r, tot = accuracy_by_timestep(pnet, cfg, num, timesteps, progress)
        first = first or r
        for row, ref in zip(r, first, strict=True):
            row["agreement_with_" + nums[0].label] = (
                (row["predictions"] == ref["predictions"]).float().mean().item()
            )
        rows += r
        totals.append(tot)
        del pnet
    for row in rows:
        row.pop("predictions")
    lines = [
        f"top-1 per timestep, {cfg.backbone.name}, {totals[0]['n']} images, T = {timesteps}\n",
        "| t | " + " | ".join(n.label for n in nums) + f" | agreement with {nums[0].label} |",
        "|---" * (len(nums) + 2) + "|",
    ]
    for t in range(timesteps + 1):
        at_t = [r for r in rows if r["t"] == t]
        agree = ", ".join(f"{r['agreement_with_' + nums[0].label]:.4f}" for r in at_t[1:])
        lines.append(
            f"| {t} | " + " | ".join(f"{100 * r['top1']:.2f}" for r in at_t) + f" | {agree} |"
        )
    lines.append("")
    lines.append("| numerics | seconds | images/s | waiting for data |")
    lines.append("|---|---|---|---|")
    for tot in totals:
        lines.append(
            f"| {tot['numerics']} | {tot['seconds']:.1f} | {tot['images_per_s']:.1f} "
            f"| {tot['data_wait_s']:.1f} s ({100 * tot['data_wait_fraction']:.1f} %) |"
        )
    return rows, totals, "\n".join(lines) + "\n"


def bench_config(cfg: DictConfig, spec: BenchSpec, batch: str, pretrained: bool) -> DictConfig:
    """The composed config with the bench's own settings under ``bench`` (so they name the run
    folder) and the weights choice."""
    with open_dict(cfg):
        cfg.backbone.pretrained = pretrained
        cfg.bench = {
            "batch": batch,
            "size": spec.size,
            "timesteps": spec.timesteps,
            "repeats": spec.repeats,
            "modes": list(spec.modes),
            "device": str(cfg.device),
        }
    return cfg


def save_figure(rows: list[dict], path) -> None:
    """Seconds per run by mode, as a bar chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels = [f"{r['mode']}\n({r['numerics']})" for r in rows]
    ax.bar(labels, [r["seconds"] for r in rows], color="tab:blue")
    r0 = rows[0]
    ax.set_ylabel("seconds per run (median)")
    ax.set_title(
        f"{r0['backbone']} on {r0['device']}: batch {r0['batch']}, {r0['size']} px, "
        f"T = {max(r['timesteps'] for r in rows)}"
    )
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
