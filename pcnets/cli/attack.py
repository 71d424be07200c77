"""`pcnets attack`: L-infinity attacks through the unrolled dynamics, with the sanity checks that
catch masked gradients (the science is in pcnets.experiments.attack)."""

from __future__ import annotations

from pathlib import Path

import typer

from pcnets.cli.common import OVERRIDES_HELP, command, echo, launch
from pcnets.errors import PcnetsError

EPS_HELP = "L-infinity budget(s) on [0, 1] pixels: 0.004, 1/255 or 0.001,0.002 (sets attack.eps)."
TIMESTEPS_HELP = "Attack the dynamics unrolled to these T, e.g. 0,2,4 (sets attack.timesteps)."


def _timesteps(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise PcnetsError(f"--timesteps takes whole numbers like 0,2,4, got {text!r}") from None


@command("attack", sweeps=True)
def attack(
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP),
    eps: str | None = typer.Option(None, "--eps", help=EPS_HELP),
    timesteps: str | None = typer.Option(None, "--timesteps", "-T", help=TIMESTEPS_HELP),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    out: Path | None = typer.Option(None, "--out", help="Run folder (default results/attack/...)."),
) -> None:
    """BIM/PGD/FGSM, APGD, APGD-T, Square or AutoAttack through the dynamics unrolled to each
    timestep: success per attack x eps x t, with 95 % intervals.

    Also a transfer attack (made at t=0, evaluated at every t) and sanity checks; a failed
    check makes the run "suspect" and the command exit 2 unless attack.allow_suspect=true.
    attack.also=[square] runs more attacks on the same images. Rerun to resume; works
    under torchrun.

    Example: pcnets attack --eps 0.001,0.004 backbone=efficientnet_lite0
    pc.decoders=decoders.pt data.split=eval attack.num_images=32 attack.also=[apgd,square]
    """
    from pcnets.experiments.attack import parse_eps
    from pcnets.runtime.distributed import cleanup

    values = parse_eps(eps) if eps is not None else None
    first_class = {
        "attack.eps": values,
        "attack.timesteps": _timesteps(timesteps),
        "device": device,
    }
    try:
        launch(None, overrides, _show, **first_class, out=out)
    finally:
        cleanup()


def _show(result) -> None:
    from omegaconf import OmegaConf

    from pcnets.runtime.distributed import is_main

    if not is_main():
        return
    rates = result.metrics[result.metrics["kind"] == "unrolled"]
    for (name, eps_value), rows in rates.groupby(["attack", "eps"], sort=False):
        cells = ", ".join(
            f"t={int(r.timestep)} {100 * r.success_rate:.1f}% "
            f"[{100 * r.success_low:.0f}, {100 * r.success_high:.0f}]"
            for r in rows.itertuples()
        )
        echo(f"{name} eps={eps_value:g}: success {cells} ({int(rows['total'].iloc[0])} images)")
    for check in result.checks:
        if check.passed:
            echo(f"check {check.name}: ok")
    for line in result.summary:
        echo(line)
    echo(f"results: {result.path} (table.md, metrics.csv, summary.csv, *.png)")
    allowed = OmegaConf.load(result.path / "config.yaml").attack.get("allow_suspect", False)
    if result.status == "suspect" and not allowed:
        failed = ", ".join(c.name for c in result.checks if not c.passed)
        raise PcnetsError(
            f"the result is suspect: sanity check(s) {failed} failed (see {result.path}/table.md);"
            " fix the attack, or set attack.allow_suspect=true to accept it"
        )
