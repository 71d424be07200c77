"""`pcnets bench`: time the dynamics against the straightforward loop and the plain backbone."""

from __future__ import annotations

import functools
from pathlib import Path

import typer

from pcnets.cli.common import OVERRIDES_HELP, command, compose_cli, echo
from pcnets.errors import PcnetsError


@command("bench", config="bench")
def bench(
    batch: str = typer.Option(
        "2", "--batch", help="Images per batch, or auto (CUDA: the largest power of two that fits)."
    ),
    size: int = typer.Option(224, "--size", help="Image side in pixels."),
    timesteps: int = typer.Option(4, "--timesteps", help="Timesteps T of each run."),
    repeats: int = typer.Option(5, "--repeats", help="Interleaved rounds; each mode's median."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N."),
    pretrained: bool | None = typer.Option(
        None,
        "--pretrained/--random",
        help="Published or random backbone weights (default random; pretrained with --accuracy).",
    ),
    fast: bool | None = typer.Option(
        None,
        "--fast/--no-fast",
        help="Also time the run's own numerics, what commands run (default: on).",
    ),
    compile_: bool = typer.Option(
        False, "--compile", help="Also time the fast path with torch.compile of the decoder step."
    ),
    modes: str | None = typer.Option(
        None, "--modes", help="Comma list of modes to time instead of the default set."
    ),
    accuracy: bool = typer.Option(
        False, "--accuracy", help="Also top-1 per timestep on the data config, fp32 vs fast."
    ),
    bf16: bool = typer.Option(
        False,
        "--bf16",
        help="fp32 against bf16 autocast: the fast modes timed in both, top-1 per timestep "
        "compared (its difference and agreement); changes no default.",
    ),
    out: Path | None = typer.Option(None, "--out", help="Run folder; default under results/."),
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP),
) -> None:
    """Image-timesteps per second, peak memory and speed ratios of the dynamics (bench.csv)."""
    from dataclasses import replace

    from omegaconf import open_dict

    from pcnets.experiments.bench import BenchSpec, bench_config, check_modes, default_modes, run
    from pcnets.loggers import Logged
    from pcnets.runtime.numerics import numerics

    if batch != "auto" and not batch.isdigit():
        raise PcnetsError(f"--batch must be a number or auto, got {batch!r}")
    cfg = compose_cli(overrides, device=device, out=out)
    num = numerics(cfg)
    if compile_:
        num = replace(num, compile=True)
    chosen = check_modes(modes.split(",")) if modes else default_modes(num.device, fast, compile_)
    if bf16 and not modes:  # the run's own numerics, in fp32 and in bf16
        chosen = ["feedforward_fast", "engine_fast"]
    spec = BenchSpec(
        batch=int(batch) if batch != "auto" else 0,
        size=size,
        timesteps=timesteps,
        repeats=repeats,
        modes=chosen,
        seed=int(cfg.seed),
    )
    weights = pretrained if pretrained is not None else (accuracy or bf16)
    cfg = bench_config(cfg, spec, batch, weights)
    if bf16:  # its own run folder (the hash), beside the plain bench's
        with open_dict(cfg):
            cfg.bench.bf16 = True
    run_bench = functools.partial(
        run, spec=spec, num=num, batch_auto=batch == "auto", accuracy=accuracy, bf16=bf16
    )
    result = Logged(run_bench)(cfg)  # the experiment loggers (logger=...), as other commands
    for line in result.summary:
        echo(line)
