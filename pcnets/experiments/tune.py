"""`pcnets tune`: learning beta, lambda and alpha per encoder (METHOD.md section 6; paper appendix
A.7) on noisy training images, resumable, torchrun-sharded; the parametrisation and the objective
are in pcnets.experiments.hyperparams, the table and figure in pcnets.reporting.tune."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Subset

from pcnets.core.pnet import PredictiveNet
from pcnets.data import build_dataset
from pcnets.data.noise import add_noise
from pcnets.errors import PcnetsError
from pcnets.experiments.eval_cells import open_session
from pcnets.experiments.hyperparams import (
    HyperParams,
    batch_indices,
    check_objective,
    objective,
)
from pcnets.experiments.tune_heldout import heldout_rows, split_heldout
from pcnets.experiments.tune_record import hyper_file
from pcnets.progress import progress as bar_of
from pcnets.reporting.tune import render
from pcnets.runtime.devices import switch
from pcnets.runtime.distributed import all_reduce_sum, rank, shard_indices, world_size
from pcnets.runtime.files import atomic_save
from pcnets.runtime.loading import num_workers
from pcnets.runtime.runs import Run, cell_key
from pcnets.runtime.session import Result

STATE_FILE = "tune_state.pt"


@dataclass
class TuneResult(Result):
    """What `pcnets tune` made: the Result (run folder, rows, printed lines), the tuned values
    (hyper.json's contents), and the run folder itself."""

    hyper: dict = field(default_factory=dict)
    run: Run | None = None


def _sigmas(value) -> list[float]:
    sigmas = list(value) if OmegaConf.is_list(value) or isinstance(value, list) else [value]
    sigmas = [float(s) for s in sigmas]
    if not sigmas:  # bounds: pcnets.schema
        raise PcnetsError("tune.sigmas must list at least one sigma, e.g. [0, 0.5]")
    return sigmas


def tune_timesteps(cfg: DictConfig) -> int:
    """tune.timesteps, or pc.timesteps when it is null."""
    t = cfg.tune.get("timesteps")
    t = int(cfg.pc.timesteps if t is None else t)
    if t < 1:
        raise PcnetsError(f"tuning needs at least 1 timestep, got {t}")
    return t


def _rows(step: int, values: dict, names: list[str], **extra) -> list[dict]:
    return [
        {
            "step": step,
            "encoder": i + 1,
            "name": names[i],
            **{k: values[k][i] for k in ("beta", "lam", "memory", "alpha")},
            **extra,
        }
        for i in range(len(names))
    ]


def tune(
    cfg: DictConfig,
    pnet: PredictiveNet | None = None,
    run: Run | None = None,
    progress: bool = True,
    dataset: torch.utils.data.Dataset | None = None,
) -> TuneResult:
    """Learn beta, lambda, alpha for ``pnet`` (default: the config's) on noisy images of
    ``dataset`` (default: the config's training split); writes hyper.json, metrics.csv, table.md,
    tune.png and summary.csv into the run folder. Resumes from its last save."""
    if "tune" not in cfg:
        raise PcnetsError("the config has no tune group; compose with +tune=default")
    tc = cfg.tune
    kind = check_objective(str(tc.objective))
    sigmas = _sigmas(tc.sigmas)
    timesteps = tune_timesteps(cfg)
    steps, save_every, batch = int(tc.steps), int(tc.save_every), int(tc.batch_size)
    session, pnet = open_session("tune", cfg, pnet, evaluates=None)  # training images
    world = world_size()
    if batch < world:
        raise PcnetsError(f"tune.batch_size={batch} is smaller than the {world} processes")
    device = session.device
    for p in pnet.parameters():
        p.requires_grad_(False)
    run = session.open_run_folder(run)
    names = list(pnet.encoder_names)

    params = HyperParams.from_pnet(pnet, bool(tc.learn_alpha)).to(device)
    initial = params.values()
    optim = torch.optim.Adam(params.parameters(), lr=float(tc.lr))
    start = 0
    state_path = run.path / STATE_FILE
    if state_path.is_file():  # resume: the values and Adam's moments after `step` steps
        state = torch.load(state_path, map_location=device)
        params.load_state_dict(state["params"])
        optim.load_state_dict(state["optim"])
        initial, start = state["initial"], min(int(state["step"]), steps)

    if dataset is None:
        dataset = build_dataset(cfg.data, pnet.transform, split="train")
    seed = int(cfg.seed)
    tuning, held = split_heldout(dataset, float(tc.get("heldout_fraction") or 0))
    heldout = partial(
        heldout_rows,
        session,
        pnet,
        run,
        images=Subset(dataset, held),
        sigmas=sigmas,
        timesteps=timesteps,
        kind=kind,
        batch=batch,
        seed=seed,
    )
    if held:
        heldout("initial", initial)
    # tune.batch_size images per step in all; under torchrun each process takes a slice of them
    mine = shard_indices(batch, rank(), world)
    plan = [
        [tuning[i] for i in batch_indices(len(tuning), batch, s, seed)] for s in range(start, steps)
    ]
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=[[b[i] for i in mine] for b in plan],
        num_workers=num_workers(cfg.data.get("workers", "auto"), device),
        pin_memory=switch(cfg.data.get("pin_memory", "auto"), device),
    )
    pending: list[dict] = []
    show = progress and run.writer
    bar = bar_of(total=steps, initial=start, desc="tune", unit="step", show=show)
    for step, (x, y) in enumerate(session.batches(loader), start=start):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        sigma = sigmas[int(torch.randint(len(sigmas), (1,), generator=gen))]
        noise = torch.randn((batch, *x.shape[1:]), generator=gen)[mine.start : mine.stop]
        y = y.to(device, non_blocking=True)
        noisy = add_noise(x, sigma, std=pnet.std, noise=noise)
        values = params.values()
        with session.autocast():
            loss, last = objective(pnet, noisy, y, timesteps, params(), kind)
        share = loss * (len(y) / batch)  # this process's part of the mean over the whole batch
        optim.zero_grad(set_to_none=True)
        share.backward()
        for p in params.parameters():
            if p.grad is not None:
                p.grad = all_reduce_sum(p.grad)
        optim.step()
        hits = int((last.argmax(1) == y).sum())
        loss_all, correct = all_reduce_sum([float(share.detach()), hits])
        pending += _rows(
            step, values, names, loss=loss_all, sigma=sigma, correct=int(correct), total=batch
        )
        bar.update(1)
        bar.set_postfix(loss=f"{loss_all:.3f}", sigma=sigma)
        if (step + 1) % save_every == 0 or step + 1 == steps:
            run.record(cell_key(steps_to=step + 1), pending)
            pending = []
            if run.writer:
                _save_state(state_path, params, optim, step + 1, initial)
    bar.close()
    final = params.values()
    if not run.is_done(cell_key(final=True)):
        run.record(cell_key(final=True), _rows(steps, final, names))
    if held:
        heldout("tuned", final)
    hyper = hyper_file(cfg, pnet, run, final, initial, timesteps, sigmas, kind)
    path = run.write_text("hyper.json", json.dumps(hyper, indent=2) + "\n")
    summary = render(run.path) if run.writer else []
    session.finish(hyper=str(path))
    summary.append(f"wrote {path} (use it with pc.hyper={path})")
    return TuneResult(run.path, run.metrics(), summary, {"hyper_file": path}, hyper=hyper, run=run)


def _save_state(path: Path, params: HyperParams, optim, step: int, initial: dict) -> None:
    """The values and Adam's moments after ``step`` steps, written atomically (the resume point)."""
    state = {"params": params.state_dict(), "optim": optim.state_dict()}
    atomic_save(path, {**state, "step": step, "initial": initial})


run = tune  # the entry point every command module has: run(cfg) -> Result
