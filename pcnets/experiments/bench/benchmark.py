"""`pcnets bench` as one experiment: build the network, time the modes, optionally compare
top-1 per timestep, and keep it all in a run folder (bench.csv, accuracy.csv, table.md, bench.png).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pandas as pd
import torch
from omegaconf import DictConfig

from pcnets.core.pnet import PredictiveNet
from pcnets.core.reference import reference_run
from pcnets.errors import PcnetsError
from pcnets.experiments.bench.accuracy import compare_accuracy
from pcnets.experiments.bench.flops import add_arithmetic, mode_flops
from pcnets.experiments.bench.peak import peaks
from pcnets.experiments.bench.spec import FAST_MODES, BenchSpec
from pcnets.experiments.bench.timing import measure, mode_functions, summarize
from pcnets.reporting.bench import accuracy_table, format_table, save_figure
from pcnets.runtime.distributed import is_main
from pcnets.runtime.numerics import Numerics, prepare
from pcnets.runtime.runs import cell_key
from pcnets.runtime.session import Result, Session


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
) -> list[dict]:
    """Measure ``spec.modes`` for the network of ``cfg``: one row per mode (see ``summarize``),
    with the FLOPs and the share of the measured peak (see ``add_arithmetic``)."""
    device = num.device
    peak = peaks(spec.modes, num)  # first, while the device's memory is free
    pnet = build_for_bench(cfg, device)
    fast_pnet = compiled = None
    if any(m in FAST_MODES for m in spec.modes):
        fast_pnet = twin(cfg, pnet, replace(num, compile=False))
    if "engine_compiled" in spec.modes:
        compiled = twin(cfg, pnet, replace(num, compile=True))
    gen = torch.Generator().manual_seed(spec.seed)
    if batch_auto:

        def try_batch(b: int) -> None:
            xb = torch.rand(b, 3, spec.size, spec.size, generator=gen).to(device)
            reference_run(pnet, xb, 1)

        spec.batch = largest_batch(try_batch, device)
    x = torch.rand(spec.batch, 3, spec.size, spec.size, generator=gen).to(device)
    fns = mode_functions(pnet, fast_pnet, compiled, x, spec.timesteps, num)
    results = measure(fns, spec.modes, device, spec.repeats, spec.warmup, progress)
    flops = mode_flops(fns, spec.modes)  # one extra, untimed run of each mode
    rows = summarize(results, spec, num, str(cfg.backbone.name))
    return add_arithmetic(rows, flops, peak, num)


def bf16_pair(num: Numerics) -> list[Numerics]:
    """The run's numerics in fp32 and with bf16 autocast, all else the same (``--bf16``)."""
    return [replace(num, amp=False), replace(num, amp=True)]


def run(
    cfg: DictConfig,
    spec: BenchSpec,
    num: Numerics,
    batch_auto: bool = False,
    accuracy: bool = False,
    bf16: bool = False,
) -> Result:
    """Time the modes of ``spec`` (and with ``accuracy`` compare top-1 per timestep, fp32 against
    ``num``) in the session's run folder; the tables and figure come from pcnets.reporting.bench.
    With ``bf16`` the fast modes run twice, fp32 and bf16 autocast (the run's other switches
    kept), and top-1 per timestep is compared between those two."""
    session = Session.start("bench", cfg)
    folder = session.run_folder
    if bf16:
        pair = bf16_pair(num)
        rows = [row for n in pair for row in bench(cfg, spec, n, batch_auto=batch_auto)]
    else:
        rows = bench(cfg, spec, num, batch_auto=batch_auto)
    folder.record(cell_key(part="speed", batch=spec.batch), rows)
    folder.write_text("bench.csv", pd.DataFrame(rows).to_csv(index=False))
    if is_main():
        save_figure(rows, folder.path / "bench.png")
    text = format_table(rows)
    if accuracy or bf16:
        nums = bf16_pair(num) if bf16 else [Numerics(num.device), num]
        acc_rows, totals = compare_accuracy(cfg, num.device, spec.timesteps, nums, progress=True)
        folder.record(cell_key(part="accuracy"), acc_rows)
        folder.write_text("accuracy.csv", pd.DataFrame(acc_rows).to_csv(index=False))
        folder.write_text("data_loading.csv", pd.DataFrame(totals).to_csv(index=False))
        text += "\n" + accuracy_table(acc_rows, totals, nums, cfg.backbone.name, spec.timesteps)
    folder.write_text("table.md", text)
    session.finish(batch=spec.batch)
    return Result(folder.path, folder.metrics(), [text, f"results in {folder.path}"])
