"""`pcnets attack`: success rates per (attack, eps, timestep) through the unrolled dynamics, the
transfer attack from t=0, and the sanity checks; resumable cell by cell and torchrun-sharded,
through the one runtime Session. A failed check makes the run "suspect"."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict

import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm import tqdm

from pcnets.core.pnet import PredictiveNet
from pcnets.errors import PcnetsError
from pcnets.experiments.attack import attack_cells
from pcnets.experiments.attack.checks import (
    MODEL_CHECKS,
    NO_PATH,
    Check,
    model_checks,
    result_checks,
    warning_lines,
)
from pcnets.experiments.attack.models import FeedforwardModel, unrolled
from pcnets.experiments.attack.selection import Selection, load_images, shared_selection
from pcnets.experiments.attack.spec import AttackSpec
from pcnets.experiments.attack.values import target_labels
from pcnets.progress import progress
from pcnets.reporting.attack import INFO, describe_dynamics, render
from pcnets.reporting.term_files import new_sizes, save_cell_terms
from pcnets.runtime.distributed import all_reduce_sum, is_main, rank, shard_indices, world_size
from pcnets.runtime.files import atomic_write
from pcnets.runtime.runs import Run, cell_key
from pcnets.runtime.session import Result, Session

CHECKS = "checks.json"
ModelFactory = Callable[[PredictiveNet, int], nn.Module]


class AttackResult(Result):
    """Result of `pcnets attack`; ``checks``, ``selection`` and ``status`` live in ``extra``."""

    @property
    def checks(self) -> list[Check]:
        return self.extra["checks"]

    @property
    def selection(self) -> Selection:
        return self.extra["selection"]

    @property
    def status(self) -> str:
        return self.extra["status"]


def run(
    cfg: DictConfig,
    pnet: PredictiveNet | None = None,
    dataset: Dataset | None = None,
    model_at: ModelFactory | None = None,
    progress: bool = True,
) -> AttackResult:
    """Run the attack sweep of ``cfg`` (see the module docstring). ``pnet``/``dataset`` default to
    the config's; ``model_at(pnet, T)`` builds the attacked model (default pcnets.classifier); it
    must give pnet.run's logits at T, since success is measured there."""
    spec = AttackSpec.from_config(cfg.attack, seed=int(cfg.get("seed", 0)))
    session = Session.start("attack", cfg)
    device, folder = session.device, session.run_folder
    own = pnet is None
    if own:
        from pcnets.backbones import pnet_from_config

        pnet = pnet_from_config(cfg, device)
    pnet = session.prepare(pnet, own=own).requires_grad_(False)
    if dataset is None:
        from pcnets.data import build_dataset

        dataset = build_dataset(cfg.data, pnet.transform, split="val")
    if len(dataset) == 0:
        raise PcnetsError("the dataset is empty; check data.split and data.limit")
    factory = model_at or unrolled(spec.checkpoint)
    show = progress and is_main()
    with torch.no_grad():
        num_classes = int(pnet.feedforward(load_images(dataset, [0], device)[0]).shape[1])
    if spec.targeted:
        target_labels(torch.zeros(1, dtype=torch.long), num_classes, spec.target_offset)
    selection = shared_selection(folder, pnet, dataset, spec, device, show)
    if show and len(selection.indices) < spec.num_images:
        print(few_images_line(spec, selection), file=sys.stderr)

    def targets_of(labels: Tensor) -> Tensor | None:
        return target_labels(labels, num_classes, spec.target_offset) if spec.targeted else None

    checks = _model_checks(folder, pnet, dataset, selection, spec, factory, device, targets_of)
    blocked = [c.detail for c in checks if NO_PATH in c.detail and c.name.startswith("grad")]
    if blocked:
        raise PcnetsError(f"the attacked model cannot be attacked: {blocked[0]}")
    if show:
        for line in warning_lines(checks):
            tqdm.write(line)
    _sweep(folder, pnet, dataset, selection, spec, factory, device, targets_of, show, spec.terms)

    metrics = folder.metrics()  # complete on rank 0 only: it alone reads the finished cells
    if folder.writer:
        checks = checks + result_checks(metrics, spec.checks.tolerance)
        atomic_write(folder.path / CHECKS, json.dumps([asdict(c) for c in checks], indent=1))
    status = "finished" if all(c.passed for c in checks) else "suspect"
    info = {
        "status": status,
        "attacks": {name: spec.describe(name) for name in spec.attacks},
        "dynamics": describe_dynamics(
            cfg, pnet.hyper(), pnet.error_reduction, pnet.gradient_scaling
        ),
        "images": len(selection.indices),
        "allow_suspect": spec.allow_suspect,
    }
    if folder.writer:
        atomic_write(folder.path / INFO, json.dumps(info, indent=1))
        render(folder.path)
    direct = metrics[metrics["kind"] == "unrolled"] if len(metrics) else metrics
    peak_mb = direct.groupby("timestep")["peak_mb_per_image"].max().to_dict() if len(direct) else {}
    session.finish(
        status=status,
        images=len(selection.indices),
        examined=selection.examined,
        peak_mb_per_image={int(k): v for k, v in peak_mb.items()},
        checks={c.name: c.passed for c in checks},
        dynamics=info["dynamics"],
    )
    return AttackResult(
        folder.path,
        metrics,
        warning_lines(checks),
        {"checks": checks, "selection": selection, "status": status},
    )


run_attack = run  # the name the command had before the split


def _finished(folder: Run, key: str) -> bool:
    """Rank 0 reads the run folder; every process learns whether the cell is done."""
    return all_reduce_sum(int(folder.writer and folder.is_done(key))) > 0


def _sweep(folder, pnet, dataset, selection, spec, factory, device, targets_of, show, terms):
    """Every (attack, t, eps) cell not yet finished, eps ascending within an attack and t; with
    ``terms``, each cell's term sizes (the adversarial images' dynamics) in terms/<cell>.csv."""
    n = len(selection.indices)
    batches = [list(range(s, min(s + spec.batch_size, n))) for s in range(0, n, spec.batch_size)]
    mine = [(b, batches[b]) for b in shard_indices(len(batches), rank(), world_size())]
    grid = [(a, t, e) for a in spec.attacks for t in spec.timesteps for e in spec.eps]
    keys = {c: cell_key(attack=c[0], eps=c[2], timestep=c[1]) for c in grid}
    todo = [c for c in grid if not _finished(folder, keys[c])]
    total = len(todo) * sum(len(b) for _, b in mine)
    with progress(total=total, desc="attack", unit="img", show=show) as bar:
        for name, t, eps in todo:
            bar.set_postfix(attack=name, t=t, eps=f"{eps:g}")
            smaller = [e for e in spec.eps if e < eps]
            before = keys[(name, t, smaller[-1])] if smaller else None
            shape = (len(spec.timesteps) if t == 0 else 1, 2, n)
            earlier = attack_cells.read_hits(folder, before, shape)
            sizes = new_sizes(pnet, t if t else max(spec.timesteps)) if terms else None
            rows, masks = attack_cells.attack_cell(
                pnet,
                factory(pnet, t),
                dataset,
                selection,
                mine,
                spec,
                (name, t, eps),
                device,
                targets_of,
                earlier,
                bar,
                sizes,
            )
            if sizes is not None and folder.writer:
                where = {"condition": f"{name} eps={eps:g}, attacked at t={t}"}
                cell = f"{name}_t{t}_eps{eps:g}"
                save_cell_terms(folder.path, cell, sizes, pnet.encoder_names, where)
            attack_cells.save_hits(folder, keys[(name, t, eps)], masks)
            folder.record(keys[(name, t, eps)], rows)


def _model_checks(folder, pnet, dataset, selection, spec, factory, device, targets_of):
    """model_checks on the first images of the selection; kept in checks.json for resumed runs."""
    path = folder.path / CHECKS
    if folder.writer and path.is_file():
        saved = [Check(**c) for c in json.loads(path.read_text())]
        if {c.name for c in saved} >= set(MODEL_CHECKS):
            return [c for c in saved if c.name in MODEL_CHECKS]
    count = min(spec.checks.num_images, len(selection.indices))
    images, labels = load_images(dataset, selection.indices[:count], device)
    checks = model_checks(
        lambda t: factory(pnet, t), FeedforwardModel(pnet), images, labels, spec, targets_of(labels)
    )
    if folder.writer:
        atomic_write(path, json.dumps([asdict(c) for c in checks], indent=1))
    return checks


def few_images_line(spec: AttackSpec, selection: Selection) -> str:
    """The warning when fewer images qualify than attack.num_images asks for."""
    which = "classified correctly at every timestep" if spec.select == "correct" else "available"
    return (
        f"warning: attack.num_images={spec.num_images}, but only {len(selection.indices)} of "
        f"{selection.examined} images are {which}: the attack runs on "
        f"{len(selection.indices)} (raise data.limit for more)"
    )
