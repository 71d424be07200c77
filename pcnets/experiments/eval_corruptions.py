"""`pcnets eval-corruptions`: top-1 accuracy at every timestep on ImageNet-C (METHOD.md section 7,
item 2), one resumable cell per corruption x severity, read from a tree or generated on the fly;
tables and figures are pcnets.reporting.corruption_report'."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig
from torch.utils.data import Dataset
from torchvision.transforms import functional as TF

from pcnets.core.guards import check_timesteps
from pcnets.core.pnet import PredictiveNet
from pcnets.data import ImageFiles, WithIndex, dataset_samples, effective_split, select_indices
from pcnets.data.classes import class_labels
from pcnets.data.datasets import readable
from pcnets.data.imagenet_c import cell_dataset, check_config
from pcnets.data.imagenet_c_tree import ImageNetCFolder
from pcnets.errors import PcnetsError
from pcnets.experiments.eval_cells import (
    Cell,
    evaluate_cells,
    finish,
    loader_config,
    open_session,
    warn_untrained,
)
from pcnets.reporting.corruption_report import corruption_file, render
from pcnets.runtime.runs import cell_key
from pcnets.runtime.session import Result


def run(
    cfg: DictConfig,
    pnet: PredictiveNet | None = None,
    dataset: Dataset | None = None,
    progress: bool = True,
) -> Result:
    """Top-1 accuracy at timesteps 0..pc.timesteps on every corruptions.names x severities cell,
    read from an ImageNet-C tree (checked first) or generated on the fly from the val images
    (``dataset``: clean (path, label) samples to corrupt; default the config's)."""
    names, severities = check_config(cfg.corruptions)  # the whole tree, before any work
    timesteps = check_timesteps(cfg.pc.timesteps)
    source = str(cfg.corruptions.get("source", "generate"))
    if source == "generate":
        base = dataset if dataset is not None else dataset_samples(cfg.data, "val")
        if not base:
            raise PcnetsError("no val images to corrupt; check data.split and data.limit")
    else:
        root = Path(str(cfg.corruptions.root)).expanduser()
        classes = _class_index(cfg, root / names[0] / str(severities[0]))
    session, pnet = open_session("eval-corruptions", cfg, pnet)
    data_cfg = loader_config(cfg, session.device)
    warn_untrained(cfg, session)
    session.open_run_folder()

    def factory(name: str, severity: int) -> Callable[[], WithIndex]:
        if source == "generate":
            return lambda: WithIndex(cell_dataset(cfg.corruptions, name, severity, base))
        return lambda: WithIndex(_folder_cell(cfg, root, name, severity, classes))

    cells = [
        Cell(
            cell_key(corruption=name, severity=severity),
            corruption_file(name, severity),
            {"condition": name, "corruption": name, "severity": severity},
            factory(name, severity),
        )
        for name in names
        for severity in severities
    ]
    evaluate_cells(session, cells, pnet, data_cfg, timesteps, progress)
    return finish(session, render)


def _class_index(cfg: DictConfig, first_cell: Path) -> dict[str, int]:
    """wnid -> label: the clean val's sorted class folders when data.root has them (a partial
    tree then keeps the right labels), else the tree's own, which must be all the classes."""
    data = cfg.data
    if str(data.get("kind", "folder")) == "folder" and data.get("root") not in (None, "", "???"):
        folders = data.get("folders") or {}
        val = Path(str(data.root)).expanduser() / str(folders.get("val", "val"))
        if val.is_dir():
            wnids = sorted(e.name for e in os.scandir(val) if e.is_dir() and e.name[0] != ".")
            return dict(zip(wnids, class_labels(val, wnids, None), strict=True))
    wnids = sorted(e.name for e in os.scandir(first_cell) if e.is_dir() and e.name[0] != ".")
    expected = data.get("num_classes")
    if expected is not None and len(wnids) != int(expected):
        raise PcnetsError(
            f"{first_cell} has {len(wnids)} class folders, not data.num_classes={expected}, so "
            "its labels are unknown: set data.root to the clean ImageNet (its val class folders "
            "give the labels) or data.num_classes"
        )
    return dict(zip(wnids, class_labels(first_cell, wnids, None), strict=True))


def _folder_cell(
    cfg: DictConfig, root: Path, name: str, severity: int, classes: dict[str, int]
) -> ImageFiles:
    """One ImageNet-C cell read from disk, labelled by `classes`, after data.split and data.limit
    (the same images that source=generate would corrupt from the same val folder)."""
    cell = ImageNetCFolder(root, name, severity)
    items = []
    for path, _ in cell.samples:
        wnid = Path(path).parent.name
        if wnid not in classes:
            raise PcnetsError(f"class folder {wnid} of {root / name / str(severity)} is unknown")
        items.append((f"{wnid}/{Path(path).name}", classes[wnid]))
    keys = [key for key, _ in items]
    labels = [label for _, label in items]
    split = effective_split(cfg.data, "val")
    limit = cfg.data.get("limit")
    seed = int(cfg.data.get("seed") or 0)
    order = select_indices(keys, labels, split, None if limit is None else int(limit), seed)
    folder = root / name / str(severity)
    chosen = readable(folder, [items[i] for i in order], cfg.data)  # data.on_bad_image
    return ImageFiles(folder, chosen, TF.to_tensor)
