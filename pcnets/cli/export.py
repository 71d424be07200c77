"""`pcnets export robustbench RUN`: a run folder in the form of the field's tools."""

from __future__ import annotations

from pathlib import Path

import typer

from pcnets.cli.common import app, command, echo

export_app = typer.Typer(
    help="Write a run folder in another tool's format (RobustBench model info).",
    no_args_is_help=True,
)
app.add_typer(export_app, name="export")


@command(on=export_app, name="robustbench")
def robustbench(
    run: Path = typer.Argument(..., help="An eval-corruptions run folder."),
    out: Path | None = typer.Option(
        None, "--out", help="The JSON file (default: RUN/robustbench.json)."
    ),
    name: str | None = typer.Option(None, "--name", help="The model's name in the JSON."),
) -> None:
    """RobustBench model-info JSON of an eval-corruptions run (corruptions board; its Lp boards
    exclude models with an optimisation loop at inference, such as PC dynamics)."""
    from pcnets.reporting.robustbench import write_model_info

    echo(f"wrote {write_model_info(run, out or run / 'robustbench.json', name)}")
