"""`pcnets eval-noise` and `pcnets eval-corruptions`: accuracy per timestep on noisy and
corrupted images, with the paper's tables and figures (the science is in pcnets.experiments)."""

from __future__ import annotations

from pathlib import Path

import typer

from pcnets.cli.common import OVERRIDES_HELP, command, echo, launch, print_summary

TIMESTEPS_HELP = "Run the dynamics for t = 0..T (sets pc.timesteps)."
DEVICE_HELP = "auto, cpu, cuda or cuda:N (sets device)."
OUT_HELP = "Run folder (default results/<command>/<backbone>/<config hash>)."


def _finish(result) -> None:
    from pcnets.runtime.distributed import cleanup, is_main

    print_summary(result)
    if is_main():
        echo(f"results: {result.path} (table.md, metrics.csv, summary.csv, *.png)")
    cleanup()


@command("eval-noise", sweeps=True)
def eval_noise(
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP),
    timesteps: int | None = typer.Option(None, "--timesteps", "-T", help=TIMESTEPS_HELP),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    out: Path | None = typer.Option(None, "--out", help=OUT_HELP),
) -> None:
    """Top-1 accuracy at every timestep under Gaussian noise, for each of eval.sigmas (0 = clean).

    Noise is seeded per image: every model and timestep sees the same noisy images.

    Rerun to resume; under torchrun the images are sharded over the processes.

    Example: pcnets eval-noise backbone=efficientnet_lite0 pc.decoders=D.pt 'eval.sigmas=[0,1]'
    """
    launch(None, overrides, _finish, **{"pc.timesteps": timesteps, "device": device, "out": out})


@command("eval-corruptions", sweeps=True)
def eval_corruptions(
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP),
    timesteps: int | None = typer.Option(None, "--timesteps", "-T", help=TIMESTEPS_HELP),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    out: Path | None = typer.Option(None, "--out", help=OUT_HELP),
) -> None:
    """Top-1 accuracy at every timestep on ImageNet-C, with relative and AlexNet-normalised mCE.

    corruptions=generate (default) corrupts the val images on the fly.

    corruptions=folder corruptions.root=DIR reads a tree, checked whole before any work.

    Subsets: 'corruptions.names=\\[fog,snow]' 'corruptions.severities=\\[3]'. Rerun to resume.
    """
    launch(None, overrides, _finish, **{"pc.timesteps": timesteps, "device": device, "out": out})
