"""`pcnets data ...`: fetch the 1000-image ImageNet sample, check a dataset before a long run."""

from __future__ import annotations

from pathlib import Path

import typer

from pcnets.cli.common import OVERRIDES_HELP, app, command, compose_cli, echo
from pcnets.errors import PcnetsError

data_app = typer.Typer(
    help="Datasets: fetch the ImageNet sample, check a data config.", no_args_is_help=True
)
app.add_typer(data_app, name="data")


@command(on=data_app, name="fetch-sample", config="dataset")
def fetch_sample(
    dest: Path | None = typer.Option(
        None, "--dest", help="Folder to create; default: data.root of data=imagenet_sample."
    ),
    url: str | None = typer.Option(None, "--url", help="Zip to download; default: data.url."),
    archive: Path | None = typer.Option(
        None, "--archive", help="An already downloaded zip of the repository (offline use)."
    ),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait for the server."),
    force: bool = typer.Option(False, "--force", help="Fetch again even if the folder exists."),
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP),
) -> None:
    """Download the 1000-image ImageNet sample (one image per class), short side 256."""
    from pcnets.data import fetch_sample as fetch

    if dest is None or (url is None and archive is None):
        data = compose_cli(overrides).data
        if "url" not in data:
            raise PcnetsError("fetch-sample makes the data=imagenet_sample folder; drop data=...")
        dest = dest or Path(str(data.root))
        url = url or str(data.url)
    if (dest / "val").is_dir() and not force:
        count = sum(1 for _ in (dest / "val").glob("*/*"))
        echo(f"the sample is already at {dest} ({count} images); --force fetches it again")
        return
    count = fetch(dest, url or "", timeout=timeout, archive=archive)
    echo(f"{count} images at {dest}")


@command(on=data_app, name="check", config="dataset")
def check(
    split: str = typer.Option("val", "--split", help="ImageNet split to read: train or val."),
    deep: bool = typer.Option(
        False, "--deep", help="Also decode every image; unreadable ones are listed (exit 2)."
    ),
    overrides: list[str] | None = typer.Argument(None, help=OVERRIDES_HELP),
) -> None:
    """Check the configured dataset (folders, classes) and print its size after split and limit.

    Without --deep no image is opened; with it, every image is decoded as a run would."""
    from pcnets.data import build_dataset, effective_split

    first_class = {"data.check_images": deep, "data.on_bad_image": "stop" if deep else None}
    data = compose_cli(overrides, **first_class).data
    dataset = build_dataset(data, transform=None, split=split)
    where = getattr(dataset, "root", data.kind)
    echo(
        f"{len(dataset)} images of {len(set(dataset.targets))} classes from {where} "
        f"({split}, split={effective_split(data, split)}, limit={data.get('limit')})"
        + (", every image readable" if deep else "")
    )
