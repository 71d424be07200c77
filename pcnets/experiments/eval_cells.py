"""The resumable cell machinery of eval-noise and eval-corruptions (METHOD.md section 7, items 1-2).

Each condition (a noise sigma, or a corruption x severity) is one cell of the run folder: rows per
timestep with counts in metrics.csv, and every image's prediction at every timestep in
images/<cell>.npz. The dynamics run once per batch for all timesteps, through the Session (its
device, numerics and prefetching). Under torchrun the images are sharded over the processes and
the predictions gathered, so every number equals a single process's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from pcnets.core.pnet import PredictiveNet
from pcnets.data import WithIndex
from pcnets.errors import PcnetsError
from pcnets.progress import progress as progress_bar
from pcnets.reporting.term_files import new_sizes, records_terms, save_cell_terms
from pcnets.reporting.terms import TermSizes
from pcnets.runtime.cell_images import IMAGES, save_cell_images
from pcnets.runtime.distributed import all_reduce_sum, is_main
from pcnets.runtime.loading import build_loader
from pcnets.runtime.runs import Run
from pcnets.runtime.session import Result, Session


@dataclass
class Cell:
    """One condition of a sweep: its resume key, its per-image file, the columns of its rows,
    and how to make its dataset of (image, label, index) items (only when it runs)."""

    key: str
    file: str
    fields: dict
    dataset: Callable[[], WithIndex]


def open_session(
    command: str, cfg: DictConfig, pnet: PredictiveNet | None, evaluates: str | None = "val"
) -> tuple:
    """(session, prepared pnet): the Session of ``command`` and the network (the config's when
    ``pnet`` is None) on its device. The caller opens the run folder (session.open_run_folder)
    once its inputs are checked, so a network or dataset that fails leaves no run folder behind.
    ``evaluates``: the split the command reads, checked against what trained the decoders."""
    session = Session.start(command, cfg, run_folder=False)
    own = pnet is None
    if own:
        from pcnets.backbones import pnet_from_config

        pnet = pnet_from_config(cfg, session.device, evaluates)
    return session, session.prepare(pnet, own=own)


def finish(session: Session, render: Callable[[Path], list[str]]) -> Result:
    """Render the run folder's tables and figures (rank 0), mark it finished, and return the
    Result; the other processes wait for rank 0, then all leave together."""
    summary = render(session.path) if is_main() else []
    session.finish()
    return Result(session.path, session.run_folder.metrics(), summary)


def predict(
    session: Session,
    pnet: PredictiveNet,
    loader,
    timesteps: int,
    num_images: int,
    bar: tqdm | None = None,
    sizes: TermSizes | None = None,
) -> np.ndarray:
    """Top-1 class of every image at every timestep, shape (num_images, timesteps + 1), from a
    loader of (image, label, index) batches; this process's shard is gathered with the others'.
    With ``sizes``, the term sizes of every step are added to it (summed over the processes)."""
    found = np.zeros((num_images, timesteps + 2), dtype=np.int64)  # last column: times seen
    for images, _, index in session.batches(loader):
        if sizes is None:
            logits = session.run(pnet, images, timesteps)
        else:
            steps = sizes.add_steps(session.steps(pnet, images, timesteps, terms=True))
            logits = [step.logits for step in steps]
        top = torch.stack([out.argmax(dim=1) for out in logits], dim=1).cpu().numpy()
        index = index.cpu().numpy()
        found[index, :-1] = top
        found[index, -1] += 1
        if bar is not None:
            bar.update(len(index))
    found = all_reduce_sum(found)  # each image is in one shard: the sum is a gather
    if (found[:, -1] != 1).any():
        raise RuntimeError("some images were predicted by no process, or by more than one")
    if sizes is not None:
        sizes.reduce()
    return found[:, :-1]


def cell_rows(correct: np.ndarray, fields: dict) -> list[dict]:
    """One row per timestep: the cell's fields, timestep, correct, total, accuracy."""
    total = int(correct.shape[0])
    counts = correct.sum(axis=0)
    return [
        {**fields, "timestep": t, "correct": int(c), "total": total, "accuracy": float(c) / total}
        for t, c in enumerate(counts)
    ]


def _finished(run: Run, cell: Cell) -> bool:
    """Rank 0 decides (it alone reads the run folder); every process learns its answer."""
    done = run.writer and run.is_done(cell.key) and (run.path / IMAGES / cell.file).is_file()
    return all_reduce_sum(int(done)) > 0


def evaluate_cells(
    session: Session,
    cells: Sequence[Cell],
    pnet: PredictiveNet,
    data_cfg: DictConfig,
    timesteps: int,
    progress: bool = True,
) -> None:
    """Run every unfinished cell at timesteps 0..``timesteps``, its images loaded by ``data_cfg``
    (loader_config's): predictions per image and timestep, then its .npz, its term sizes
    (terms/<cell>.csv, unless eval.terms is false) and rows."""
    run = session.run_folder
    terms = records_terms(session.cfg)
    todo = [cell for cell in cells if not _finished(run, cell)]
    show = progress and run.writer
    outer = progress_bar(total=len(cells), initial=len(cells) - len(todo), desc="cells", show=show)
    with outer:
        for cell in todo:
            dataset = cell.dataset()
            loader = build_loader(dataset, data_cfg, session.device, distributed=True)
            with progress_bar(
                total=len(loader.sampler),
                desc=cell.file.removesuffix(".npz"),
                unit="img",
                leave=False,
                show=show,
            ) as bar:
                sizes = new_sizes(pnet, timesteps) if terms else None
                predictions = predict(session, pnet, loader, timesteps, len(dataset), bar, sizes)
            labels = np.asarray(dataset.targets)
            if run.writer:
                save_cell_images(run.path / IMAGES / cell.file, dataset.keys, labels, predictions)
                if sizes is not None:
                    names = pnet.encoder_names
                    save_cell_terms(run.path, cell.file, sizes, names, cell.fields)
            run.record(cell.key, cell_rows(predictions == labels[:, None], cell.fields))
            outer.update(1)


# Above this batch a CPU runs the dynamics no faster and needs more memory (docs/performance.md).
CPU_BATCH = 16


def loader_config(cfg: DictConfig, device: torch.device | None = None) -> DictConfig:
    """The data config with the evaluation batch in place of data.batch_size.

    eval.batch_size: a number; null = data.batch_size; auto (the default) = data.batch_size, but
    at most CPU_BATCH on a CPU when the errors are per_sample (results then do not depend on the
    batch; under batch_mean the batch is part of the method, and data.batch_size stands).
    """
    batch = cfg.eval.get("batch_size")
    if batch == "auto":
        per_sample = cfg.pc.get("error_reduction", "per_sample") == "per_sample"
        cap = device is not None and device.type == "cpu" and per_sample
        batch = min(int(cfg.data.batch_size), CPU_BATCH) if cap else None
    if batch is None:
        return cfg.data
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise PcnetsError(f"eval.batch_size must be a whole number, auto or null, got {batch!r}")
    return OmegaConf.merge(cfg.data, {"batch_size": batch})


def warn_untrained(cfg: DictConfig, session: Session) -> None:
    """One line on stderr when the decoders are untrained: the results then mean little."""
    if not cfg.pc.get("decoders") and not cfg.pc.get("hyper") and is_main():
        print(
            "warning: pc.decoders is not set, so the feedback decoders are untrained (random); "
            "pass pc.decoders=PATH from `pcnets train-feedback`",
            file=sys.stderr,
        )
