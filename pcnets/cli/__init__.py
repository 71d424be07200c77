"""The `pcnets` command line: Typer commands that compose Hydra configs and call the library.

One module per command family; each registers its commands on ``app`` from pcnets.cli.common.
"""

from __future__ import annotations

import importlib

from pcnets.cli.common import app
from pcnets.runtime.streams import keep_streams_open

# Order here is the order in `pcnets --help`.
COMMAND_MODULES = [
    "info",
    "configs",
    "data",
    "train",
    "imagenet_c",
    "evaluate",
    "attack",
    "analysis",
    "export",
    "bench",
    "plain",  # last: a plain command for each command spec without its own
]

for _name in COMMAND_MODULES:
    importlib.import_module(f"pcnets.cli.{_name}")


def main() -> None:
    keep_streams_open()  # a closed stdout or pipe never ends a run (pcnets.runtime.streams)
    app()
