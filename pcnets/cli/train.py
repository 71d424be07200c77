"""`pcnets train-feedback` (train the decoders, eq. 3), and `pcnets import-decoders` /
`pcnets export-decoders` (from and to the paper authors' published decoder format)."""

from __future__ import annotations

from pathlib import Path

import typer

from pcnets.cli.common import OVERRIDES_HELP, command, compose_cli, echo, launch


@command("train-feedback", sweeps=True)
def train_feedback(
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs (sets train.epochs)."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    out: Path | None = typer.Option(
        None, "--out", help="Run folder; default results/train-feedback/<backbone>/<config hash>."
    ),
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP),
) -> None:
    """Train the feedback decoders of a frozen backbone; rerun the same command to resume.

    Recipes: train=sgd (PVGG16), train=rmsprop (PEfficientNetB0), train=demo (Lite0 on the
    sample, ridge least squares). Solvers: train.solver=sgd (the optimizer loop, any decoder) or
    lstsq (closed form, linear decoders). Many GPUs: torchrun --nproc_per_node=K -m pcnets ...
    """
    from pcnets.experiments.train import TrainingInterrupted
    from pcnets.runtime.distributed import is_main

    try:
        launch(None, overrides, _show, **{"train.epochs": epochs, "device": device, "out": out})
    except TrainingInterrupted as stop:
        if is_main():
            typer.secho(str(stop), err=True)
        raise typer.Exit(130) from None


def _show(result) -> None:
    from pcnets.runtime.distributed import is_main

    if is_main():
        for line in result.summary:
            echo(line)
        echo(f"decoders: {result.extra['decoders']}")


@command("import-decoders", config="pnet")
def import_decoders(
    src: list[Path] = typer.Option(
        ...,
        "--src",
        help="A folder of the authors' per-decoder files (*_pc<N>_*.pth), or the files (repeat).",
    ),
    out: Path = typer.Option(..., "--out", help="The decoder file to write."),
    backbone: str | None = typer.Option(
        None, "--backbone", help="vgg16 (PVGG16), efficientnet_b0 (PEfficientNetB0), ..."
    ),
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP),
) -> None:
    """Convert the paper authors' decoder weights into a pcnets decoder file (pc.decoders=FILE)."""
    from pcnets.experiments.import_decoders import import_decoders as convert

    extra = [f"backbone={backbone}"] if backbone else []
    cfg = compose_cli([*extra, *(overrides or [])])
    path, files = convert(cfg.backbone, src, out)
    echo(f"{len(files)} decoders of {cfg.backbone.name} from {', '.join(f.name for f in files)}")
    echo(f"decoders: {path}")


@command("export-decoders")
def export_decoders(
    src: Path = typer.Option(..., "--src", help="A pcnets decoder file (what pc.decoders takes)."),
    out: Path = typer.Option(..., "--out", help="The folder to write the per-decoder files into."),
    backbone: str | None = typer.Option(
        None, "--backbone", help="The decoders' backbone (vgg16, efficientnet_b0, ...)."
    ),
    style: str | None = typer.Option(
        None,
        "--style",
        help="pvgg16 (state dicts, *_pc<N>_pmodule.pth) or peffb0 ('pcoderweights' checkpoints); "
        "default pvgg16 for vgg16, peffb0 otherwise.",
    ),
    prefix: str | None = typer.Option(None, "--prefix", help="File name prefix (p<backbone>)."),
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP),
) -> None:
    """Write a pcnets decoder file in the paper authors' format (import-decoders reads it back)."""
    from pcnets.experiments.export_decoders import run

    extra = [f"backbone={backbone}"] if backbone else []
    cfg = compose_cli([*extra, *(overrides or [])])
    for line in run(cfg, src, out, style, prefix).summary:
        echo(line)
