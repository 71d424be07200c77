"""What every command shares: the Typer app, config composition from the command line (one root
config per command), sweeps (-m), --cfg, and turning PcnetsError into one clear line and exit 2.

    @command("eval-noise", config="eval-noise", sweeps=True)   # adds --multirun/-m and --cfg
    def eval_noise(overrides=..., timesteps=...):
        launch(run, overrides, **{"pc.timesteps": timesteps})   # one run, a sweep, or --cfg
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from omegaconf import DictConfig

from pcnets.cli.completion import complete_overrides
from pcnets.config import compose, override, show
from pcnets.errors import PcnetsError
from pcnets.reporting.commands import COMMANDS
from pcnets.runtime.failures import Terminated
from pcnets.runtime.failures import guarded as closing_runs

app = typer.Typer(
    name="pcnets",
    help=(
        "Predictive-coding feedback for pretrained CNNs (Predify, NeurIPS 2021). "
        "Options set the common knobs; everything else is a Hydra override such as "
        "backbone=efficientnet_lite0 data.limit=100 pc.beta=0.6 (pcnets configs lists them)."
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)

OVERRIDES_HELP = (
    "Hydra overrides: group=option (backbone=vgg16), key=value (data.limit=50), +key=value to add "
    "a key the schema allows; with -m also sweeps (pc.alpha=0.01,0.1 'seed=range(3)')."
)
MULTIRUN_HELP = (
    "Sweep: one job per combination of the overrides' values, each an ordinary run folder in "
    "the sweep folder (--out), launched by "
    "hydra/launcher=basic|joblib|submitit_local|submitit_slurm."
)
CFG_HELP = "Print the config and exit: job (the resolved config), hydra (launcher...), or all."


class CfgPart(str, Enum):
    job = "job"
    hydra = "hydra"
    all = "all"


@dataclass(frozen=True)
class Invocation:
    """How the running command was called: its name, root config, -m, and --cfg."""

    name: str
    config: str
    multirun: bool = False
    cfg: str | None = None


_INVOCATION: ContextVar[Invocation | None] = ContextVar("invocation", default=None)


def command(
    name: str, on: typer.Typer | None = None, config: str | None = None, sweeps: bool = False, **kw
) -> Callable:
    """Register a command (on ``app``, or the sub-app ``on``). With ``config`` (for a command of
    pcnets.reporting.commands: its spec's) it composes conf/<config>.yaml and has --cfg;
    ``sweeps`` adds --multirun/-m. Its PcnetsError (and Ctrl-C) ends in one line and a non-zero
    exit."""
    if config is None and on is None and name in COMMANDS:
        config = COMMANDS[name].config

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def guarded(*args, multirun: bool = False, cfg: CfgPart | None = None, **kwargs):
            how = Invocation(name, config or "config", multirun, cfg.value if cfg else None)
            token = _INVOCATION.set(how)
            try:
                return closing_runs(fn, *args, **kwargs)
            except PcnetsError as err:
                typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
                raise typer.Exit(2) from None
            except Terminated:
                line = "terminated (SIGTERM): finished work is saved; rerun to resume"
                typer.secho(line, err=True)
                raise typer.Exit(143) from None
            except KeyboardInterrupt:
                typer.secho("interrupted: finished work is saved; rerun to resume", err=True)
                raise typer.Exit(130) from None
            finally:
                _INVOCATION.reset(token)

        guarded.__signature__ = _signature(fn, config is not None, sweeps)
        return (on or app).command(name, **kw)(guarded)

    return wrap


def _signature(fn: Callable, cfg: bool, sweeps: bool) -> inspect.Signature:
    """``fn``'s parameters, its overrides completing from Hydra, plus --cfg and -m."""
    params = list(inspect.signature(fn).parameters.values())
    for p in params:
        if p.name == "overrides" and hasattr(p.default, "autocompletion"):
            p.default.autocompletion = complete_overrides
    kind = inspect.Parameter.KEYWORD_ONLY
    if sweeps:
        option = typer.Option(False, "--multirun", "-m", help=MULTIRUN_HELP)
        params.append(inspect.Parameter("multirun", kind, default=option, annotation=bool))
    if cfg:
        option = typer.Option(None, "--cfg", help=CFG_HELP)
        params.append(inspect.Parameter("cfg", kind, default=option, annotation=CfgPart | None))
    return inspect.signature(fn).replace(parameters=params)


def cli_overrides(overrides: list[str] | None, first_class: dict[str, Any]) -> list[str]:
    """The overrides, then the first-class options that were given as overrides (None means
    'not given'), so that a sweep's jobs compose exactly what a single run does. They are
    ``++key=value`` (set, or add where an option lacks the key); the schemas still check them."""
    given = [f"++{override(k, v)}" for k, v in first_class.items() if v is not None and k != "out"]
    return [*(overrides or []), *given]


def compose_cli(overrides: list[str] | None, **first_class) -> DictConfig:
    """Compose the running command's root config from overrides and first-class options (keys
    like 'pc.timesteps'); with --cfg print it and exit."""
    how = _INVOCATION.get() or Invocation("", "config")
    out = first_class.get("out")
    args = cli_overrides(overrides, first_class) + ([override("out", out)] if out else [])
    if how.cfg is not None:
        typer.echo(show(how.config, args, how.cfg), nl=False)
        raise typer.Exit(0)
    return compose(args, how.config)


def launch(
    run: Callable[[DictConfig], Any] | None,
    overrides: list[str] | None,
    show_result: Callable[[Any], None] | None = None,
    **first_class,
) -> None:
    """Run the command once, sweep it (-m: one job per combination, through Hydra's launchers),
    or print its config (--cfg). ``run`` must be a module-level function (a sweep's jobs may run
    in other processes), None for the command spec's own; ``show_result`` prints what it
    returned."""
    how = _INVOCATION.get() or Invocation("", "config")
    run = run or COMMANDS[how.name].load("run")
    from pcnets.loggers import Logged

    show_result = show_result or print_summary
    run = Logged(run)  # the experiment loggers (logger=...), after each run or sweep job
    if not how.multirun:
        show_result(run(compose_cli(overrides, **first_class)))
        return
    from pcnets.cli.sweep import Failed, multirun

    args = cli_overrides(overrides, first_class)
    if first_class.get("out") is not None:  # in a sweep, the sweep's folder
        args.append(override("hydra.sweep.dir", Path(first_class["out"]).absolute()))
    if how.cfg is not None:
        typer.echo(show(how.config, args, how.cfg, sweep=True), nl=False)
        return
    sweep = multirun(how.config, run, args)
    echo(f"{len(sweep.jobs)} jobs in {sweep.folder}")
    shared = set.intersection(*(set(job.overrides) for job in sweep.jobs)) if sweep.jobs else set()
    for job in sweep.jobs:
        own = [o for o in job.overrides if o not in shared or len(sweep.jobs) == 1]
        echo(f"#{job.num} {job.folder}  {' '.join(own)}")
        if isinstance(job.value, Failed):
            echo(f"  failed: {job.value.message}")
        else:
            show_result(job.value)
    if sweep.failed:
        nums = ", ".join(f"#{job.num}" for job in sweep.failed)
        raise PcnetsError(
            f"{len(sweep.failed)} of {len(sweep.jobs)} jobs failed ({nums}); fix the cause and "
            f"rerun with --out {sweep.folder} to resume"
        )


def echo(msg: str) -> None:
    typer.echo(msg, file=sys.stdout)


@app.callback()
def _root(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output (PCNETS_QUIET=1)."),
) -> None:
    """Predictive-coding feedback for pretrained CNNs. Run `pcnets COMMAND --help` for details."""
    if quiet:  # read by pcnets.progress, in this process and in torchrun/launcher children
        os.environ["PCNETS_QUIET"] = "1"


def print_summary(result) -> None:
    """A command's Result: its summary lines, on the process that writes (rank 0)."""
    from pcnets.runtime.distributed import is_main

    if is_main():
        for line in result.summary:
            echo(line)
