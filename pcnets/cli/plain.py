"""A plain Typer command for every command spec (pcnets.reporting.commands) that has no Typer
function of its own: overrides, --device and --out, with -m and --cfg."""

from __future__ import annotations

from pathlib import Path

import typer

from pcnets.cli.common import OVERRIDES_HELP, app, command, launch
from pcnets.reporting.commands import COMMANDS, CommandSpec


def plain_command(spec: CommandSpec) -> None:
    def plain(
        overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP),
        device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
        out: Path | None = typer.Option(None, "--out", help="Run folder (default: by hash)."),
    ) -> None:
        launch(None, overrides, device=device, out=out)

    plain.__doc__ = spec.help
    command(spec.name, sweeps=True)(plain)


_registered = {c.name for c in app.registered_commands}
for _spec in COMMANDS.values():
    if _spec.name not in _registered:
        plain_command(_spec)
