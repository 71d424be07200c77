"""Labels of class folders: a folder named by an ImageNet-1k wnid is labelled with that wnid's
index among the 1000 sorted wnids, so a class subset keeps the indices the classifier outputs.
Folders with other names get their sorted index, which is only right for a full set."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path

from pcnets.errors import PcnetsError

WNID = re.compile(r"^n\d{8}$")


@functools.cache
def imagenet_wnids() -> dict[str, int]:
    """{wnid: ImageNet-1k class index} (the sorted wnids, as torchvision and timm number them)."""
    from timm.data import ImageNetInfo

    return {wnid: i for i, wnid in enumerate(sorted(ImageNetInfo().label_names()))}


def class_labels(split_dir: Path, classes: Sequence[str], num_classes: int | None) -> list[int]:
    """The label of each class folder in ``classes`` (sorted names), or one PcnetsError line when
    the folders cannot be labelled without changing what a label means."""
    wnids = [c for c in classes if WNID.match(c)]
    if wnids and len(wnids) != len(classes):
        other = next(c for c in classes if not WNID.match(c))
        raise PcnetsError(
            f"{split_dir} mixes ImageNet wnid folders with other names (e.g. {other!r}): "
            "remove the stray folders"
        )
    known = imagenet_wnids()
    if wnids:
        unknown = [c for c in classes if c not in known]
        if unknown:
            raise PcnetsError(
                f"{split_dir}: class folder {unknown[0]} is not one of the 1000 ImageNet-1k wnids"
            )
    if num_classes is not None and len(classes) != num_classes:
        subset = (
            f"to evaluate this class subset set data.num_classes={len(classes)} "
            "(labels stay the wnids' ImageNet indices)"
            if wnids
            else "a class subset needs folders named by ImageNet wnid (n01440764, ...) so that "
            "labels keep their ImageNet indices"
        )
        raise PcnetsError(
            f"{split_dir} has {len(classes)} class folders, but data.num_classes={num_classes}: "
            f"point data.root at a full copy, or {subset}"
        )
    if wnids:
        return [known[c] for c in classes]
    return list(range(len(classes)))
