"""Fair subsets: ``data.limit=N`` draws a seeded, class-stratified subset of the split instead of
its first N images (which were the lowest classes: fish and birds on the sample).

Every image gets a rank inside its class from a hash of (seed, file name), and every class a
place in each round from a hash of (seed, round, class folder name); the subset is the first N
images in (rank, place) order: the first image of every class (classes in a seeded order), then the
second, ... So a limit below the class count takes N distinct classes drawn at random, and a
larger one spreads evenly over the classes. The draw depends on the seed (data.seed) and the
file and class folder names alone: the same seed, split and limit give the same subset on every
machine and in every command, and ImageNet-C folders (keyed wnid/file) pick the same images as
the val folder they were made from. The selected keys are recorded for the run folder
(subset.txt and provenance.json, see ``record`` / ``recorded``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import PurePosixPath

_RECORDED: dict[str, list[str]] = {}


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def stratified_subset(
    keys: Sequence[str], labels: Sequence[int], indices: Sequence[int], limit: int, seed: int = 0
) -> list[int]:
    """The ``limit`` of ``indices`` (positions in keys/labels) a seeded class-stratified draw
    keeps, returned in the order of ``indices``."""
    by_class: dict[int, list[int]] = {}
    for i in indices:
        by_class.setdefault(int(labels[i]), []).append(i)
    ranked = []
    for label, members in by_class.items():
        members.sort(key=lambda i: (_hash(f"{seed}|{PurePosixPath(keys[i]).name}"), keys[i]))
        wnid = PurePosixPath(keys[members[0]]).parent.name  # the class folder names the class
        for rank, i in enumerate(members):
            ranked.append((rank, _hash(f"{seed}|{rank}|{wnid}"), label, i))
    keep = {i for *_, i in sorted(ranked)[:limit]}
    return [i for i in indices if i in keep]


def record(split: str, keys: Sequence[str]) -> None:
    """Remember the keys a limited dataset of ``split`` selected (the run folder writes them)."""
    _RECORDED[split] = list(keys)


def recorded() -> dict[str, list[str]]:
    """{split: selected keys} of the limited datasets this process built."""
    return {k: list(v) for k, v in _RECORDED.items()}


def subset_text(subsets: dict[str, list[str]]) -> str:
    """subset.txt: one 'split<TAB>key' line per selected image."""
    return "".join(f"{split}\t{key}\n" for split, keys in subsets.items() for key in keys)


def digest(keys: Sequence[str]) -> str:
    """sha256 of the sorted keys: two runs compared on the same subset show the same digest."""
    return hashlib.sha256("\n".join(sorted(keys)).encode("utf-8")).hexdigest()
