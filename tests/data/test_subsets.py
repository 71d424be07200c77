"""data.limit: a seeded, class-stratified subset (never the first N), the same for the same seed,
split and limit, recorded in the run folder."""

from __future__ import annotations

import json

from pcnets.config import compose
from pcnets.data import build_dataset
from pcnets.data.datasets import select_indices
from pcnets.data.subsets import digest, stratified_subset


def _toy(classes: int = 10, per_class: int = 3):
    keys = [f"val/c{c:02d}/img{c:02d}_{k}.JPEG" for c in range(classes) for k in range(per_class)]
    labels = [c for c in range(classes) for _ in range(per_class)]
    return keys, labels


def test_a_limit_below_the_class_count_takes_distinct_random_classes():
    keys, labels = _toy()
    picked = select_indices(keys, labels, "all", 4, seed=0)
    classes = [labels[i] for i in picked]
    assert len(picked) == 4 and len(set(classes)) == 4  # one image per class
    assert select_indices(keys, labels, "all", 4, seed=0) == picked  # same seed, same subset
    draws = {tuple(select_indices(keys, labels, "all", 4, seed=s)) for s in range(6)}
    assert len(draws) > 1  # the seed changes it
    # not the first N: over seeds, the lowest 4 classes are not always the ones drawn
    assert any({labels[i] for i in d} != {0, 1, 2, 3} for d in draws)


def test_a_limit_above_the_class_count_spreads_evenly():
    keys, labels = _toy(classes=5, per_class=4)
    picked = select_indices(keys, labels, "all", 12, seed=3)
    per_class = [sum(labels[i] == c for i in picked) for c in range(5)]
    assert sorted(per_class) == [2, 2, 2, 3, 3]  # 12 over 5 classes: 2 or 3 each
    # a subset of the same keys under another folder (ImageNet-C's wnid/file) is the same
    moved = [k.replace("val/", "gaussian_noise/3/") for k in keys]
    assert set(stratified_subset(moved, labels, range(20), 12, 3)) == set(picked)
    assert select_indices(keys, labels, "all", None) == select_indices(keys, labels, "all", 100)


def test_the_sample_subset_is_recorded_in_the_run_folder(tmp_path, sample_root):
    from pcnets.runtime.runs import Run

    cfg = compose(["data.limit=12", "data.split=eval"])
    first = build_dataset(cfg.data, None, "val")
    again = build_dataset(compose(["data.limit=12", "data.split=eval"]).data, None, "val")
    other = build_dataset(compose(["data.limit=12", "data.split=eval", "data.seed=1"]).data, None)
    assert first.keys == again.keys and first.keys != other.keys
    assert len(set(first.targets)) == 12
    first_n = build_dataset(compose(["data.split=eval"]).data, None, "val").keys[:12]
    assert first.keys != first_n
    first = build_dataset(cfg.data, None, "val")  # the one recorded last
    run = Run("eval-noise", cfg, out=tmp_path / "run")
    run.finish()
    lines = (tmp_path / "run" / "subset.txt").read_text().splitlines()
    assert lines == [f"val\t{k}" for k in first.keys]
    info = json.loads((tmp_path / "run" / "provenance.json").read_text())["subset"]["val"]
    assert info == {"images": 12, "sha256": digest(first.keys)}
