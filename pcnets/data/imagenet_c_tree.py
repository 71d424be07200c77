"""Reading an ImageNet-C tree on disk: check_tree checks a whole tree before any work, and
ImageNetCFolder reads one corruption x severity cell of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from torchvision.datasets import ImageFolder

from pcnets.data.corruptions import (
    SEVERITIES,
    check_name,
    check_severity,
    resolve_names,
    resolve_severities,
)
from pcnets.data.imagenet_c_layout import is_image, to_tensor
from pcnets.data.images import open_rgb
from pcnets.errors import PcnetsError

_LIST_AT_MOST = 20  # entries per kind of problem in check_tree's message


def check_tree(
    root: str | os.PathLike,
    names: str | Iterable[str] | None = None,
    severities: str | Iterable[int] = SEVERITIES,
) -> None:
    """Raise one PcnetsError naming every missing corruption or severity folder, cell without
    class folders, empty class folder and cell whose classes differ, before any work starts."""
    names, severities = resolve_names(names), resolve_severities(severities)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise PcnetsError(
            f"ImageNet-C folder not found: {root} (expected <root>/<corruption>/<severity>/"
            "<wnid>/<image>; download it or make it with `pcnets make-imagenet-c`)"
        )
    problems: dict[str, list[str]] = {
        "missing corruption folders": [],
        "missing severity folders": [],
        "no class folders in": [],
        "empty class folders": [],
        "classes differ from the first cell in": [],
    }
    reference: list[str] | None = None
    for name in names:
        if not (root / name).is_dir():
            problems["missing corruption folders"].append(name)
            continue
        for severity in severities:
            cell = root / name / str(severity)
            if not cell.is_dir():
                problems["missing severity folders"].append(f"{name}/{severity}")
                continue
            classes = _class_folders(cell)
            if not classes:
                problems["no class folders in"].append(f"{name}/{severity}")
                continue
            reference = classes if reference is None else reference
            if classes != reference:
                problems["classes differ from the first cell in"].append(f"{name}/{severity}")
            problems["empty class folders"].extend(
                f"{name}/{severity}/{wnid}" for wnid in classes if not _has_image(cell / wnid)
            )
    found = [f"{kind}: {_short_list(items)}" for kind, items in problems.items() if items]
    if found:
        raise PcnetsError(f"malformed ImageNet-C tree {root}: " + "; ".join(found))


def _class_folders(cell: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(cell) if e.is_dir() and not e.name.startswith("."))


def _has_image(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(e.is_file() and is_image(e.name) for e in entries)


def walk_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` (itself may be a symlink), sorted. Symlinks to directories
    inside it are not followed: one linking to a parent would walk in a loop forever, or count
    another class's images as this one's."""
    files, todo = [], [folder]
    while todo:
        with os.scandir(todo.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    todo.append(Path(entry.path))
                elif entry.is_file():
                    files.append(Path(entry.path))
    return sorted(files)


def _short_list(items: Sequence[str]) -> str:
    more = f" (+{len(items) - _LIST_AT_MOST} more)" if len(items) > _LIST_AT_MOST else ""
    return ", ".join(items[:_LIST_AT_MOST]) + more


class ImageNetCFolder(ImageFolder):
    """One corruption x severity cell of an ImageNet-C tree, with ImageFolder semantics (label =
    index of the wnid in sorted order). `classes`, if given (the clean val's wnids), must match.
    The images are already 224x224: the transform should not resize again (default: to [0,1])."""

    def __init__(
        self,
        root: str | os.PathLike,
        name: str,
        severity: int,
        transform: Callable | None = None,
        classes: Sequence[str] | None = None,
    ):
        cell = Path(root).expanduser() / check_name(name) / str(check_severity(severity))
        if not cell.is_dir():
            raise PcnetsError(f"ImageNet-C cell not found: {cell}; check corruptions.root")
        try:
            super().__init__(str(cell), transform=transform or to_tensor, loader=open_rgb)
        except FileNotFoundError as err:
            raise PcnetsError(f"bad ImageNet-C cell {cell}: {err}") from None
        self.name, self.severity = name, int(severity)
        if classes is not None and list(classes) != self.classes:
            missing = sorted(set(classes) - set(self.classes))
            extra = sorted(set(self.classes) - set(classes))
            raise PcnetsError(
                f"class folders of {cell} do not match the clean val classes (missing: "
                f"{_short_list(missing) or 'none'}; extra: {_short_list(extra) or 'none'})"
            )

    @staticmethod
    def make_dataset(
        directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False
    ):
        """(path, label) of every image in each class folder, found by walk_files (directory
        symlinks inside a class folder are not followed: no loop)."""
        samples = []
        for wnid, label in sorted(class_to_idx.items()):
            paths = walk_files(Path(directory) / wnid)
            found = [(str(p), label) for p in paths if is_image(p.name)]
            if not found and not allow_empty:
                raise FileNotFoundError(f"no image in class folder {wnid}")
            samples.extend(found)
        return samples
