"""No silent leakage: a decoder file records which images trained it, and an evaluation that
would read any of them is an error naming the split to use instead.

The record is the image folder (its root, the sub-folder, the dataset's download url when it has
one, so a moved copy of the sample is still recognised) and the hash half that training read.
Two halves of one folder are disjoint (decoders vs eval); every other pair shares images.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from pcnets.data.datasets import _folder, _kind, _root, effective_split
from pcnets.errors import PcnetsError

OTHER_HALF = {"decoders": "eval", "eval": "decoders"}


def data_origin(data_cfg: DictConfig, split: str = "train") -> dict:
    """What a command reading ``split`` of ``data_cfg`` reads: saved with trained decoders."""
    if _kind(data_cfg) != "folder":
        return {"kind": "synthetic", "half": effective_split(data_cfg, split)}
    return {
        "kind": "folder",
        "root": str(_root(data_cfg).resolve()),
        "folder": _folder(data_cfg, split),
        "url": data_cfg.get("url"),
        "half": effective_split(data_cfg, split),
    }


def _same_images(a: dict, b: dict) -> bool:
    if a.get("kind") != "folder" or b.get("kind") != "folder" or a["folder"] != b["folder"]:
        return False  # synthetic images are drawn afresh per split: never the same
    return a["root"] == b["root"] or (a.get("url") is not None and a.get("url") == b.get("url"))


def check_unseen(trained_on: dict | None, data_cfg: DictConfig, split: str, what: str) -> None:
    """Refuse to evaluate ``split`` of ``data_cfg`` when ``trained_on`` (a decoder file's
    data_origin; None for files that predate the record) says those images trained ``what``."""
    if not trained_on:
        return
    now = data_origin(data_cfg, split)
    if not _same_images(trained_on, now):
        return
    half, reading = trained_on.get("half", "all"), now["half"]
    if OTHER_HALF.get(half) == reading:
        return
    where = Path(trained_on["root"]) / trained_on["folder"]
    if half in OTHER_HALF:
        raise PcnetsError(
            f"{what} was trained on the {half} half of {where}, and data.split={reading} "
            f"contains those images: evaluate with data.split={OTHER_HALF[half]}"
        )
    raise PcnetsError(
        f"{what} was trained on every image of {where}: evaluate on other images (another "
        "data.root), or retrain on one half (data.train_split=decoders) and use data.split=eval"
    )
