"""`pcnets tune`, `pcnets manifold`, `pcnets report`: hyperparameter tuning, the convergence to
clean representations, and one Markdown report of many run folders."""

from __future__ import annotations

from pathlib import Path

import typer

from pcnets.cli.common import OVERRIDES_HELP, command, echo, launch, print_summary


@command("tune", sweeps=True)
def tune(
    timesteps: int | None = typer.Option(
        None, "--timesteps", help="Timesteps unrolled (tune.timesteps; default pc.timesteps)."
    ),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    out: Path | None = typer.Option(None, "--out", help="Run folder (default: by config hash)."),
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP),
) -> None:
    """Learn beta, lambda, alpha per encoder on noisy images; writes hyper.json (pc.hyper=PATH)."""
    first_class = {"tune.timesteps": timesteps, "device": device, "out": out}
    launch(None, overrides, print_summary, **first_class)


@command("manifold", sweeps=True)
def manifold(
    timesteps: int | None = typer.Option(
        None, "--timesteps", help="Timesteps t = 0..T (manifold.timesteps, default 14)."
    ),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    out: Path | None = typer.Option(None, "--out", help="Run folder (default: by config hash)."),
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP),
) -> None:
    """Correlation distance of noisy to clean representations per encoder and timestep."""
    first_class = {"manifold.timesteps": timesteps, "device": device, "out": out}
    launch(None, overrides, _show_manifold, **first_class)


def _show_manifold(result) -> None:
    result.summary.append(f"wrote {result.path}")
    print_summary(result)


@command("report")
def report(
    paths: list[Path] = typer.Argument(..., help="Run folders, or results roots to scan."),
    out: Path = typer.Option(Path("results/report.md"), "--out", help="The Markdown file."),
    copy_figures: bool = typer.Option(
        False, "--copy-figures", help="Copy figures beside the report instead of linking them."
    ),
    render: bool = typer.Option(
        False, "--render", help="Draw each run's tables, figures, summary.csv again from its files."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Stop at a broken run folder instead of skipping it."
    ),
    export: Path | None = typer.Option(
        None, "--export", help="Also write every run's rows with its config (FILE.csv|.parquet)."
    ),
    summary: bool = typer.Option(
        False, "--summary", help="--export writes the summary.csv rows instead of metrics.csv's."
    ),
    baseline: int = typer.Option(
        0, "--baseline", help="The job a sweep folder's changes are compared with."
    ),
) -> None:
    """Gather run folders into one Markdown report (tables, figures, commands, key config)."""
    from pcnets.reporting.report import write_report

    path, runs = write_report(paths, out, copy_figures, render, strict)
    echo(f"wrote {path} ({len(runs)} run folder{'' if len(runs) == 1 else 's'})")
    if export is not None:
        from pcnets.reporting.results import export as write_table
        from pcnets.reporting.results import load

        frame = load([run.path for run in runs], summary=summary)
        echo(f"wrote {write_table(frame, export)} ({len(frame)} rows, {frame.shape[1]} columns)")
    from pcnets.reporting.sweep import is_sweep, write_sweep

    for folder in (p for p in paths if is_sweep(p)):  # a -m sweep: its own table and figure
        for line in write_sweep(folder, baseline):
            echo(line)
