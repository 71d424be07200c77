"""What every command shares: the Typer app, config composition from the command line, devices,
and turning PcnetsError into one clear line and a non-zero exit."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

import typer
from omegaconf import DictConfig, open_dict

from pcnets.config import compose
from pcnets.errors import PcnetsError
from pcnets.runtime.failures import guarded as closing_runs

app = typer.Typer(
    name="pcnets",
    help=(
        "Predictive-coding feedback for pretrained CNNs (Predify, NeurIPS 2021). "
        "Options set the common knobs; everything else is a Hydra override such as "
        "backbone=efficientnet_lite0 data.limit=100 pc.beta=0.6."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

OVERRIDES_HELP = "Hydra overrides: group=option (backbone=vgg16) or key=value (data.limit=50)."


def command(name: str, on: typer.Typer | None = None, **kwargs) -> Callable:
    """Register a command (on ``app``, or the sub-app ``on``) whose PcnetsError (and Ctrl-C)
    ends in one line and a non-zero exit."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def guarded(*args, **kw):
            try:
                return closing_runs(fn, *args, **kw)
            except PcnetsError as err:
                typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
                raise typer.Exit(2) from None
            except KeyboardInterrupt:
                typer.secho("interrupted: finished work is saved; rerun to resume", err=True)
                raise typer.Exit(130) from None

        return (on or app).command(name, **kwargs)(guarded)

    return wrap


def compose_cli(overrides: list[str] | None, **first_class) -> DictConfig:
    """Compose the config from overrides, then apply the first-class options that were given
    (keys like 'pc.timesteps'; None means 'not given')."""
    cfg = compose(list(overrides or []))
    with open_dict(cfg):
        for key, value in first_class.items():
            if value is None:
                continue
            node, leaf = cfg, key.split(".")
            for part in leaf[:-1]:
                node = node[part]
            node[leaf[-1]] = str(value) if isinstance(value, Path) else value
    return cfg


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
