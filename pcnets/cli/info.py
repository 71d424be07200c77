"""`pcnets info`: versions, the device, and the registered backbones."""

from __future__ import annotations

from pcnets.cli.common import command, echo


@command("info")
def info() -> None:
    """Print package versions, the available device, and the registered backbones."""
    from pcnets.config import options
    from pcnets.runtime.provenance import environment

    env = environment()
    for key in ("pcnets", "python", "torch", "torchvision", "timm", "numpy", "device", "git"):
        echo(f"{key:12s} {env.get(key)}")
    echo(f"{'backbones':12s} {', '.join(options('backbone'))}")
