"""`pcnets data fetch-sample`: the 1000-image ImageNet sample (one image per class), downloaded
and laid out as val/<wnid>/<file> with the short side resized, the stand-in for ImageNet val."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from PIL import Image

from pcnets.data.datasets import SAMPLE_FILE, _name
from pcnets.errors import PcnetsError
from pcnets.progress import progress


def fetch_sample(
    dest_dir: str | Path,
    url: str,
    timeout: float = 60.0,
    archive: str | Path | None = None,
    short_side: int = 256,
) -> int:
    """Download the imagenet-sample-images repository zip from `url` (or read a local `archive`),
    resize each image to `short_side`, lay it out as dest_dir/val/<wnid>/<file>; returns the count.
    """
    dest = Path(dest_dir).expanduser().resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if archive is not None:
        if not Path(archive).is_file():
            raise PcnetsError(f"archive not found: {archive}")
        return _unpack(Path(archive), dest, str(archive), short_side)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}-", suffix=".zip", dir=dest.parent)
    os.close(fd)
    try:
        _download(url, Path(tmp), timeout, dest)
        return _unpack(Path(tmp), dest, url, short_side)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _download(url: str, target: Path, timeout: float, dest: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with progress(total=total, unit="B", unit_scale=True, desc="imagenet-sample") as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        raise PcnetsError(
            f"could not download the ImageNet sample from {url}: the server answered HTTP "
            f"{err.code} {err.reason}; check the URL (data.url or --url)"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise PcnetsError(
            f"could not download the ImageNet sample from {url} ({reason}); no network? "
            f"Download it elsewhere and run `pcnets data fetch-sample --archive FILE.zip`, "
            f"or put the images by hand at {dest}/val/<wnid>/<wnid>_<name>.JPEG"
        ) from None


def _unpack(zip_path: Path, dest: Path, source: str, short_side: int) -> int:
    """Resize the sample's images from the zip into a staging folder, then move it to dest."""
    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile:
        raise PcnetsError(f"{source} is not a zip archive") from None
    staging = dest.parent / f".{dest.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    with zf:
        members = [
            m for m in zf.infolist() if not m.is_dir() and SAMPLE_FILE.match(_name(m.filename))
        ]
        if not members:
            raise PcnetsError(f"no ImageNet images (n########_<name>.JPEG) in zip from {source}")
        for member in progress(members, desc="resizing", unit="img"):
            name = _name(member.filename)
            out = staging / "val" / SAMPLE_FILE.match(name).group(1) / name
            out.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(io.BytesIO(zf.read(member))) as img:
                resize_short_side(img.convert("RGB"), short_side).save(out, "JPEG", quality=90)
    (staging / "README.md").write_text(_readme(source, len(members), short_side))
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return len(members)


def resize_short_side(image: Image.Image, short_side: int) -> Image.Image:
    """Bicubic resize so the shorter side is `short_side` pixels, keeping the aspect ratio."""
    width, height = image.size
    scale = short_side / min(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def _readme(source: str, count: int, short_side: int) -> str:
    return (
        "# imagenet-sample\n\n"
        f"{count} ImageNet images in ImageFolder layout: `val/<wnid>/<wnid>_<name>.JPEG`.\n"
        "Sorted wnids give the standard ImageNet class index.\n\n"
        f"Made by `pcnets data fetch-sample` from {source}: each image converted to RGB, resized\n"
        f"so that its short side is {short_side} pixels (bicubic), saved as JPEG quality 90.\n"
    )
