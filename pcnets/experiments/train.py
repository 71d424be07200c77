"""Feedback training (METHOD.md section 5, paper eq. 3): the backbone is frozen, one feedforward
pass gives e_0 (the normalised image) .. e_N, and the loss is the sum over decoders of
MSE(d_{n-1}(e_n), e_{n-1}); only the decoders learn.

A run is resumable: a checkpoint is written after every epoch and, on SIGINT/SIGTERM, after the
step in progress (mid-epoch). The same command runs under torchrun with DDP over the decoders;
each of the K processes takes 1/K of every global batch, so K processes and one process see the
same global batches (the epoch order is a DistributedSampler's in both cases).
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor, nn
from torch.utils.data import Dataset, DistributedSampler
from tqdm import tqdm

from pcnets.core.dynamics import prediction_error
from pcnets.core.files import load_data_file
from pcnets.core.pnet import PredictiveNet
from pcnets.data import build_dataset
from pcnets.errors import PcnetsError, suggest
from pcnets.runtime.devices import resolve_device, switch
from pcnets.runtime.distributed import (
    active,
    all_reduce_sum,
    barrier,
    cleanup,
    init_distributed,
    is_main,
    rank,
    shard_indices,
    world_size,
)
from pcnets.runtime.loading import build_loader
from pcnets.runtime.runs import Run, cell_key

COMMAND = "train-feedback"
CHECKPOINT = "checkpoint.pt"
DECODERS = "decoders.pt"
CHECKPOINT_FORMAT = "pcnets-train-checkpoint-v1"
OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw")
SCHEDULERS = ("none", "cosine_restarts", "cosine")
VAL_SPLITS = ("auto", "holdout", "val")


class TrainingInterrupted(KeyboardInterrupt):
    """A stop request (SIGINT/SIGTERM) ended training after its checkpoint was saved."""


# ---- what one step computes ------------------------------------------------------------------


@torch.no_grad()
def feedforward_features(pnet: PredictiveNet, x: Tensor) -> list[Tensor]:
    """e_0 (the normalised image) .. e_N of one plain feedforward pass: decoder inputs and targets.

    No graph is kept: the backbone is frozen, so targets and decoder inputs are constants.
    """
    (step,) = list(pnet.steps(x, 0, states=True, random_init=False))
    return [pnet.normalize(x), *step.states]


class DecoderStack(nn.Module):
    """The decoders as one module (what DDP wraps): e_1..e_N in, predictions of e_0..e_{N-1} out."""

    def __init__(self, decoders: nn.ModuleList):
        super().__init__()
        self.decoders = decoders

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        return [dec(feats[i + 1]) for i, dec in enumerate(self.decoders)]


def decoder_errors(preds: Sequence[Tensor], feats: Sequence[Tensor]) -> list[Tensor]:
    """Per-sample MSE ([B], float32) of each decoder's prediction against the encoder below."""
    return [prediction_error(p.float(), feats[i].float()) for i, p in enumerate(preds)]


# ---- configuration ---------------------------------------------------------------------------


def run_config(cfg: DictConfig) -> DictConfig:
    """The parts of a composed config that decide what training computes (they name the run folder).

    Eval, attack and dynamics settings are left out, so changing them keeps the trained decoders.
    """
    keep = {k: cfg.get(k) for k in ("backbone", "data", "train", "seed", "amp", "channels_last")}
    keep["pc"] = {"decoders": cfg.pc.get("decoders") if "pc" in cfg else None}
    keep.update(device=cfg.get("device"), out=cfg.get("out"))
    return OmegaConf.create(OmegaConf.to_container(OmegaConf.create(keep), resolve=True))


def build_optimizer(params, tcfg: DictConfig) -> torch.optim.Optimizer:
    """The optimizer that train.optimizer names, with train.lr / momentum / weight_decay."""
    name = str(tcfg.optimizer).lower()
    lr, wd = float(tcfg.lr), float(tcfg.get("weight_decay") or 0.0)
    momentum = float(tcfg.get("momentum") or 0.0)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    raise PcnetsError(
        f"unknown train.optimizer={name!r}{suggest(name, OPTIMIZERS)}; use {OPTIMIZERS}"
    )


def build_scheduler(optimizer: torch.optim.Optimizer, tcfg: DictConfig):
    """The per-epoch learning-rate schedule of train.scheduler (None for 'none')."""
    name = str(tcfg.get("scheduler") or "none").lower()
    if name == "none":
        return None
    if name == "cosine_restarts":
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer,
            T_0=int(tcfg.T_0),
            T_mult=int(tcfg.get("T_mult") or 1),
            eta_min=float(tcfg.get("eta_min") or 0.0),
        )
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=int(tcfg.epochs), eta_min=float(tcfg.get("eta_min") or 0.0)
        )
    raise PcnetsError(
        f"unknown train.scheduler={name!r}{suggest(name, SCHEDULERS)}; use {SCHEDULERS}"
    )


def global_batch(cfg: DictConfig) -> int:
    """train.batch_size, or data.batch_size when it is null: the batch of all processes together."""
    value = cfg.train.get("batch_size") or cfg.data.get("batch_size") or 64
    if isinstance(value, bool) or int(value) < 1:
        raise PcnetsError(f"train.batch_size must be a positive whole number, got {value!r}")
    return int(value)


# ---- data: the training images and the held-out validation images ----------------------------


def in_holdout(key: str, fraction: float) -> bool:
    """Whether item `key` is held out for validation: a fixed hash of its id, not its position."""
    digest = hashlib.sha256(f"pcnets-val/{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


class Picked(Dataset):
    """Items `indices` of `dataset`, in that order, as (image, index into dataset)."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[self.indices[i]][0], self.indices[i]


def training_data(cfg: DictConfig, transform) -> tuple[Dataset, list[int], Dataset, list[int]]:
    """(train dataset, its training indices, validation dataset, its indices).

    train.val_split: holdout = a fixed train.val_fraction of the training images (by hash of the
    item id); val = the dataset's val split; auto = val when it shares no image with the training
    images, else holdout (the ImageNet sample has one folder, so its eval half is never touched).
    """
    tcfg = cfg.train
    train_ds = build_dataset(cfg.data, transform, split="train")
    mode = str(tcfg.get("val_split") or "auto")
    if mode not in VAL_SPLITS:
        raise PcnetsError(f"unknown train.val_split={mode!r}{suggest(mode, VAL_SPLITS)}")
    val_ds = None
    if mode in ("val", "auto"):
        val_ds = build_dataset(cfg.data, transform, split="val")
        if set(val_ds.keys) & set(train_ds.keys):
            if mode == "val":
                raise PcnetsError(
                    "train.val_split=val: the val split holds training images (one folder, as "
                    "in the ImageNet sample); use train.val_split=holdout"
                )
            val_ds = None
    if val_ds is None:
        fraction = float(tcfg.get("val_fraction") or 0.0)
        held = [in_holdout(k, fraction) for k in train_ds.keys]
        train_idx = [i for i, h in enumerate(held) if not h]
        val_ds, val_idx = train_ds, [i for i, h in enumerate(held) if h]
    else:
        train_idx, val_idx = list(range(len(train_ds))), list(range(len(val_ds)))
    if tcfg.get("max_images"):
        train_idx = train_idx[: int(tcfg.max_images)]
    if tcfg.get("val_max"):
        val_idx = val_idx[: int(tcfg.val_max)]
    if not train_idx:
        raise PcnetsError("no training images are left: check data.limit and train.val_fraction")
    if not val_idx:
        raise PcnetsError(
            f"no validation images among {len(train_ds)}: raise train.val_fraction "
            f"(now {tcfg.get('val_fraction')}) or data.limit"
        )
    return train_ds, train_idx, val_ds, val_idx


def epoch_order(n: int, epoch: int, seed: int, shuffle: bool) -> list[int]:
    """This process's positions in 0..n-1 for one epoch: a DistributedSampler's, also for one
    process, so K processes' local batches together are the one-process global batches."""
    sampler = DistributedSampler(
        range(n), num_replicas=world_size(), rank=rank(), shuffle=shuffle, seed=seed
    )
    sampler.set_epoch(epoch)
    return list(sampler)


class Features:
    """Feature batches for a list of dataset indices: loaded and run through the backbone, or
    (with train.cache_features) taken from memory once every index has been seen."""

    def __init__(self, pnet, dataset, data_cfg, device, autocast, channels_last, cache: bool):
        self.pnet, self.dataset, self.data_cfg, self.device = pnet, dataset, data_cfg, device
        self.autocast, self.channels_last = autocast, channels_last
        self.cache: dict[int, list[Tensor]] | None = {} if cache else None

    def batches(self, indices: Sequence[int], batch: int) -> Iterator[list[Tensor]]:
        if self.cache is not None and all(i in self.cache for i in indices):
            for start in range(0, len(indices), batch):
                items = [self.cache[i] for i in indices[start : start + batch]]
                yield [torch.stack(level) for level in zip(*items, strict=True)]
            return
        data_cfg = self.data_cfg.copy()
        with open_dict(data_cfg):
            data_cfg.batch_size = batch
        for x, idx in build_loader(Picked(self.dataset, indices), data_cfg, self.device):
            x = x.to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self.autocast():
                feats = feedforward_features(self.pnet, x)
            if self.cache is not None:
                for j, i in enumerate(idx.tolist()):
                    self.cache[i] = [f[j].clone() for f in feats]
            yield feats


# ---- stopping cleanly ------------------------------------------------------------------------


class StopRequest(AbstractContextManager):
    """While active, SIGINT/SIGTERM only set a flag: the loop saves a checkpoint and stops.

    ``after`` (tests) requests a stop after that many optimizer steps, as a signal would.
    """

    def __init__(self, after: int | None = None):
        self.after = after
        self.requested = False
        self.steps = 0
        self._old: dict = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def _handle(self, signum, frame) -> None:
        if not self.requested and is_main():
            tqdm.write(f"{signal.Signals(signum).name}: saving a checkpoint after this step")
        self.requested = True

    def count_step(self) -> None:
        """Count one optimizer step (for ``after``)."""
        self.steps += 1
        if self.after is not None and self.steps >= self.after:
            self.requested = True

    def agreed(self) -> bool:
        """True when any process was asked to stop (every process stops at the same step)."""
        if active():
            return all_reduce_sum(int(self.requested)) > 0
        return self.requested


# ---- checkpoints -----------------------------------------------------------------------------


def _rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_checkpoint(path: Path, pnet: PredictiveNet, run_hash: str) -> dict | None:
    """The checkpoint at `path` (None if there is none), checked against this network and config."""
    if not path.is_file():
        return None
    ckpt = load_data_file(path, "checkpoint", "delete it to start over")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise PcnetsError(f"{path} is not a pcnets training checkpoint; delete it to start over")
    if ckpt["backbone"] != pnet.name or list(ckpt["encoders"]) != pnet.encoder_names:
        raise PcnetsError(
            f"{path} is a checkpoint of backbone {ckpt['backbone']!r} with encoders "
            f"{list(ckpt['encoders'])}, not {pnet.name!r} with {pnet.encoder_names}; "
            "choose another --out"
        )
    if ckpt["config_hash"] != run_hash:
        raise PcnetsError(
            f"{path} was made with config {ckpt['config_hash']}, not {run_hash}; "
            "choose another --out"
        )
    return ckpt


def _broadcast(obj):
    """Rank 0's object on every process (the run folder need not be shared between nodes)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ---- the training loop -----------------------------------------------------------------------


def train_feedback(
    cfg: DictConfig, pnet: PredictiveNet | None = None, stop_after: int | None = None
) -> Path:
    """Train the decoders of cfg.backbone (or of `pnet`) by cfg.train; returns the decoder file.

    Re-running with the same config resumes from the run folder's checkpoint. `stop_after` (tests)
    stops after that many optimizer steps as SIGINT would: checkpoint, then TrainingInterrupted.
    """
    joined = not (dist.is_available() and dist.is_initialized())
    init_distributed()
    try:
        return FeedbackTraining(cfg, pnet).run(stop_after)
    finally:
        if joined:
            cleanup()


def is_rank_zero() -> bool:
    """Whether this process prints: torchrun's RANK is 0 (also after the process group is gone)."""
    return int(os.environ.get("RANK", "0")) == 0


class FeedbackTraining:
    """One training run: the network, its data, the optimizer, and the run folder's checkpoint."""

    def __init__(self, cfg: DictConfig, pnet: PredictiveNet | None = None):
        from pcnets.backbones import pnet_from_config

        self.cfg, tcfg = cfg, cfg.train
        self.device = _device(cfg)
        self.epochs = int(tcfg.epochs)
        if self.epochs < 1:
            raise PcnetsError(f"train.epochs must be >= 1, got {self.epochs}")
        self.batch, world = global_batch(cfg), world_size()
        if self.batch % world:
            raise PcnetsError(
                f"the global batch ({self.batch}) must be divisible by the number of processes "
                f"({world})"
            )
        self.local_batch = self.batch // world
        # the data first: a wrong data.root fails before a network is built (or downloaded)
        train_ds, self.train_idx, val_ds, self.val_idx = training_data(cfg, None)
        if pnet is None:
            torch.manual_seed(int(cfg.seed))  # the same initial decoders in every process
            pnet = pnet_from_config(cfg, self.device)
        self.pnet = pnet.to(self.device).eval()
        for p in self.pnet.backbone.parameters():
            p.requires_grad_(False)
        channels_last = switch(cfg.get("channels_last", False), self.device)
        if channels_last:
            self.pnet.to(memory_format=torch.channels_last)
        self.amp = switch(cfg.get("amp", False), self.device)
        for ds in (train_ds, val_ds):
            if hasattr(ds, "transform"):
                ds.transform = self.pnet.transform
        cache = bool(tcfg.get("cache_features", False))
        feats = (cfg.data, self.device, self.autocast, channels_last, cache)
        self.train_feats = Features(self.pnet, train_ds, *feats)
        self.val_feats = Features(self.pnet, val_ds, *feats)
        self.stack = DecoderStack(self.pnet.decoders)
        self.optimizer = build_optimizer(self.stack.parameters(), tcfg)
        self.scheduler = build_scheduler(self.optimizer, tcfg)
        self.model: nn.Module = self.stack
        if world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.stack, device_ids=ids)
        self.history: dict[int, list[dict]] = {}
        self.say = tqdm.write if is_main() else (lambda msg: None)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    # ---- the run folder ----------------------------------------------------------------------

    def open_run(self) -> dict | None:
        """Open the run folder and read its checkpoint on rank 0; errors reach every process."""
        error, ckpt = None, None
        try:
            self.run_dir = Run(COMMAND, run_config(self.cfg))
            self.ckpt_path = self.run_dir.path / CHECKPOINT
            if is_main():
                ckpt = read_checkpoint(self.ckpt_path, self.pnet, self.run_dir.hash)
        except PcnetsError as exc:
            error = str(exc)
        error, ckpt = _broadcast((error, ckpt))
        if error:
            raise PcnetsError(error)
        return ckpt

    def save(self, epoch: int, step: int, partial: tuple[Tensor, int]) -> None:
        """Checkpoint after `epoch` finished epochs and `step` batches of the next (rank 0 only)."""
        if not is_main():
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "backbone": self.pnet.name,
            "encoders": self.pnet.encoder_names,
            "config_hash": self.run_dir.hash,
            "epoch": epoch,
            "step": step,
            "partial": (partial[0].tolist(), int(partial[1])),
            "history": self.history,
            "decoders": self.pnet.decoders.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "rng": _rng_state(),
        }
        tmp = self.ckpt_path.with_name(self.ckpt_path.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.ckpt_path)

    def restore(self, ckpt: dict) -> tuple[int, int, tuple[Tensor, int]]:
        """Load a checkpoint; (finished epochs, batches done in the next one, its running sums)."""
        self.pnet.decoders.load_state_dict(ckpt["decoders"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"])
        self.history = dict(ckpt["history"])
        sums, count = self.zeros(), 0
        if is_main():  # the other processes add their own sums to these at the epoch's end
            sums, count = torch.tensor(ckpt["partial"][0], dtype=torch.float64), ckpt["partial"][1]
        return int(ckpt["epoch"]), int(ckpt["step"]), (sums, count)

    def zeros(self) -> Tensor:
        return torch.zeros(self.pnet.num_encoders, dtype=torch.float64)

    def rows(self, epoch: int, split: str, mse: Sequence[float], count: int) -> list[dict]:
        return [
            {
                "epoch": epoch,
                "decoder": i + 1,
                "encoder": name,
                "split": split,
                "mse": float(mse[i]),
                "images": int(count),
            }
            for i, name in enumerate(self.pnet.encoder_names)
        ]

    def finish_epoch(self, epoch: int, rows: list[dict]) -> None:
        """Keep an epoch's rows: in the checkpoint first, then in the run folder's metrics."""
        self.history[epoch] = rows
        self.save(epoch, 0, (self.zeros(), 0))
        self.run_dir.record(cell_key(epoch=epoch), rows)

    # ---- training ----------------------------------------------------------------------------

    def run(self, stop_after: int | None = None) -> Path:
        """Validate the initial decoders, train the remaining epochs, write the results."""
        ckpt = self.open_run()
        done, skip, partial = 0, 0, (self.zeros(), 0)
        if ckpt is not None:
            done, skip, partial = self.restore(ckpt)
        for epoch, rows in sorted(self.history.items()):
            if not self.run_dir.is_done(cell_key(epoch=epoch)):
                self.run_dir.record(cell_key(epoch=epoch), rows)
        world = world_size()
        self.say(
            f"{COMMAND} {self.pnet.name}: {len(self.train_idx)} training and {len(self.val_idx)} "
            f"validation images, batch {self.batch} ({world} process{'es' * (world > 1)}), "
            f"{self.epochs} epochs -> {self.run_dir.path}"
        )
        with StopRequest(after=stop_after) as stop:
            if 0 not in self.history:
                mse, count = validate(self.stack, self.val_feats, self.val_idx, self.local_batch)
                self.finish_epoch(0, self.rows(0, "val", mse, count))
                self.say(f"epoch 0 (before training): val {sum(mse):.4g} (sum of decoder MSEs)")
            for epoch in range(done + 1, self.epochs + 1):
                self.train_epoch(epoch, skip, partial, stop)
                skip, partial = 0, (self.zeros(), 0)
                if stop.agreed() and epoch < self.epochs:
                    raise TrainingInterrupted(
                        f"interrupted after epoch {epoch}: checkpoint {self.ckpt_path}; "
                        "rerun the same command to resume"
                    )
        return self.finish()

    def train_epoch(self, epoch: int, skip: int, partial, stop: StopRequest) -> None:
        """One epoch from batch `skip` on (a resumed epoch), then validation and a checkpoint."""
        started = time.time()
        shuffle = bool(self.cfg.train.get("shuffle", True))
        order = epoch_order(len(self.train_idx), epoch, int(self.cfg.seed), shuffle)
        order = [self.train_idx[p] for p in order]
        sums, count = partial[0].to(self.device), partial[1]
        total = math.ceil(len(order) / self.local_batch)
        bar = tqdm(
            self.train_feats.batches(order[skip * self.local_batch :], self.local_batch),
            total=total,
            initial=skip,
            desc=f"epoch {epoch}/{self.epochs}",
            unit="batch",
            disable=not is_main(),
            dynamic_ncols=True,
        )
        for step, feats in enumerate(bar, start=skip + 1):
            with self.autocast():
                preds = self.model(feats)
            per_decoder = torch.stack([e.mean() for e in decoder_errors(preds, feats)])
            self.optimizer.zero_grad(set_to_none=True)
            per_decoder.sum().backward()
            self.optimizer.step()
            sums += per_decoder.detach().double() * feats[0].shape[0]
            count += feats[0].shape[0]
            if step % 10 == 1 or step == total:
                bar.set_postfix(loss=f"{per_decoder.sum().item():.4g}")
            stop.count_step()
            if stop.agreed() and step < total:
                bar.close()
                self.save(epoch - 1, step, (all_reduce_sum(sums.cpu()), all_reduce_sum(count)))
                barrier()
                raise TrainingInterrupted(
                    f"interrupted in epoch {epoch} after batch {step}/{total}: checkpoint "
                    f"{self.ckpt_path}; rerun the same command to resume"
                )
        bar.close()
        count = all_reduce_sum(count)
        train_mse = (all_reduce_sum(sums.cpu()) / max(count, 1)).tolist()
        if self.scheduler is not None:
            self.scheduler.step()
        mse, val_count = validate(self.stack, self.val_feats, self.val_idx, self.local_batch)
        rows = self.rows(epoch, "train", train_mse, count) + self.rows(epoch, "val", mse, val_count)
        self.finish_epoch(epoch, rows)
        self.say(
            f"epoch {epoch}/{self.epochs}: train {sum(train_mse):.4g}, val {sum(mse):.4g} "
            f"(sum of decoder MSEs), {time.time() - started:.0f} s"
        )

    def finish(self) -> Path:
        """Write decoders.pt (pnet.save_decoders), table.md and curves.png; rank 0 only."""
        out = self.run_dir.path / DECODERS
        if is_main():
            final = self.history[self.epochs]
            self.pnet.save_decoders(
                out,
                epochs=self.epochs,
                config_hash=self.run_dir.hash,
                val_mse=[r["mse"] for r in final if r["split"] == "val"],
            )
            metrics = self.run_dir.metrics()
            self.run_dir.write_text("table.md", table_markdown(metrics, self.pnet.name, self.cfg))
            title = f"Feedback training of {self.pnet.name}"
            plot_curves(metrics, self.run_dir.path / "curves.png", title)
            self.run_dir.finish(
                epochs=self.epochs, train_images=len(self.train_idx), val_images=len(self.val_idx)
            )
        barrier()
        return out


def _device(cfg: DictConfig) -> torch.device:
    device = resolve_device(cfg.get("device"))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


@torch.no_grad()
def validate(
    stack: DecoderStack, feats: Features, indices: Sequence[int], batch: int
) -> tuple[list[float], int]:
    """Per-decoder MSE over the validation images (sharded over processes, sums all-reduced)."""
    mine = [indices[i] for i in shard_indices(len(indices), rank(), world_size())]
    sums = torch.zeros(len(stack.decoders), dtype=torch.float64)
    count = 0
    bar = tqdm(
        feats.batches(mine, batch),
        total=math.ceil(len(mine) / batch),
        desc="validation",
        unit="batch",
        leave=False,
        disable=not is_main(),
    )
    for level in bar:
        with feats.autocast():
            preds = stack(level)
        for i, err in enumerate(decoder_errors(preds, level)):
            sums[i] += err.double().sum().cpu()
        count += level[0].shape[0]
    total = all_reduce_sum(count)
    return (all_reduce_sum(sums) / max(total, 1)).tolist(), total


# ---- what a run leaves: table and figure -----------------------------------------------------


def table_markdown(metrics: pd.DataFrame, name: str, cfg: DictConfig) -> str:
    """Validation MSE per decoder before training and after the last epoch, with the train MSE."""
    t = cfg.train
    last = int(metrics["epoch"].max())
    val = metrics[metrics["split"] == "val"]
    train = metrics[(metrics["split"] == "train") & (metrics["epoch"] == last)]
    init = val[val["epoch"] == 0].set_index("decoder")
    end = val[val["epoch"] == last].set_index("decoder")
    tr = train.set_index("decoder")
    lines = [
        f"# Feedback training: {name}",
        "",
        f"{t.optimizer} lr {t.lr}, weight decay {t.get('weight_decay')}, scheduler "
        f"{t.get('scheduler')}, {last} epochs, batch {global_batch(cfg)}; "
        f"{int(init['images'].iloc[0])} held-out validation images.",
        "MSE between each decoder's prediction and the encoder output below it "
        "(decoder 1 predicts the normalised image).",
        "",
        f"| decoder | encoder | val MSE before | val MSE after epoch {last} | after / before "
        f"| train MSE in epoch {last} |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for dec in init.index:
        before, after = init.loc[dec, "mse"], end.loc[dec, "mse"]
        train_mse = f"{tr.loc[dec, 'mse']:.4g}" if dec in tr.index else "-"
        lines.append(
            f"| {dec} | {init.loc[dec, 'encoder']} | {before:.4g} | {after:.4g} | "
            f"{after / before:.3f} | {train_mse} |"
        )
    return "\n".join(lines) + "\n"


def plot_curves(metrics: pd.DataFrame, path: Path, title: str) -> Path:
    """MSE per decoder against epoch, log scale: validation solid (from epoch 0), train dashed."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    decoders = sorted(metrics["decoder"].unique())
    colors = [f"C{i % 10}" for i in range(len(decoders))]
    for color, dec in zip(colors, decoders, strict=True):
        for split, style in (("val", "-"), ("train", "--")):
            part = metrics[(metrics["decoder"] == dec) & (metrics["split"] == split)]
            part = part.sort_values("epoch")
            if len(part):
                label = f"{dec}: {part['encoder'].iloc[0]}" if split == "val" else None
                ax.plot(
                    part["epoch"], part["mse"], style, color=color, marker="o", ms=3, label=label
                )
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (0 = before training)")
    ax.set_ylabel("MSE of the prediction (log scale)")
    ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    handles += [
        Line2D([], [], color="0.3", ls="-", label="validation"),
        Line2D([], [], color="0.3", ls="--", label="training (epoch mean)"),
    ]
    ax.legend(
        handles=handles,
        title="decoder: encoder",
        fontsize=7,
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
    )
    ax.grid(True, which="both", alpha=0.3)
    fig.savefig(path, dpi=120)
    return path
