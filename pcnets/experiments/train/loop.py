"""The state of one training run and the optimizer loop (train.solver=sgd): epochs of steps on the
feature batches, a learning-rate schedule, the held-out quality after every epoch, the best
decoders by held-out loss, early stopping (train.patience), checkpoints after every epoch and on
SIGINT/SIGTERM after the step in progress (checkpoint.py)."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from tqdm import tqdm

from pcnets.core.pnet import PredictiveNet
from pcnets.experiments.train.checkpoint import (
    CHECKPOINT,
    StopRequest,
    TrainingInterrupted,
    set_rng_state,
    training_state,
    write_checkpoint,
)
from pcnets.experiments.train.data import Features, epoch_order
from pcnets.experiments.train.quality import DecoderStack, decoder_errors, validate
from pcnets.experiments.train.recipe import build_optimizer, build_scheduler
from pcnets.loggers import log_epoch
from pcnets.progress import progress
from pcnets.runtime.distributed import all_reduce_sum, barrier, is_main, world_size
from pcnets.runtime.runs import cell_key
from pcnets.runtime.session import Session


@dataclass
class Split:
    """The images of one run: training and held-out dataset indices and their features."""

    train_idx: list[int]
    val_idx: list[int]
    train: Features
    val: Features


@dataclass
class Best:
    """The best decoders so far by held-out loss (the sum of the decoders' held-out MSEs)."""

    epoch: int = -1
    loss: float = math.inf
    state: dict = field(default_factory=dict)


class Training:
    """One run's network, data, optimizer and history; what a checkpoint saves and restores."""

    def __init__(self, session: Session, pnet: PredictiveNet, split: Split, local_batch: int):
        self.session, self.pnet, self.split, self.local_batch = session, pnet, split, local_batch
        self.cfg: DictConfig = session.cfg
        self.epochs = int(self.cfg.train.epochs)
        self.stack = DecoderStack(pnet.decoders)
        self.optimizer = build_optimizer(self.stack.parameters(), self.cfg.train)
        self.scheduler = build_scheduler(self.optimizer, self.cfg.train)
        self.model: nn.Module = self.stack
        if world_size() > 1 and str(self.cfg.train.get("solver") or "sgd") == "sgd":
            dev = session.device
            ids = [dev.index] if dev.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.stack, device_ids=ids)
        self.history: dict[int, list[dict]] = {}
        self.timing: dict[int, dict] = {}
        self.best = Best()
        self.ckpt_path = session.path / CHECKPOINT
        self.say = tqdm.write if is_main() else (lambda msg: None)

    def save(self, epoch: int, step: int, partial: tuple[Tensor, int]) -> None:
        """Checkpoint after `epoch` finished epochs and `step` batches of the next (rank 0 only)."""
        if is_main():
            write_checkpoint(self.ckpt_path, training_state(self, epoch, step, partial))

    def restore(self, ckpt: dict) -> tuple[int, int, tuple[Tensor, int]]:
        """Load a checkpoint; (finished epochs, batches done in the next one, its running sums)."""
        self.pnet.decoders.load_state_dict(ckpt["decoders"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        self.history, self.timing = dict(ckpt["history"]), dict(ckpt.get("timing") or {})
        self.best = Best(**ckpt["best"]) if ckpt.get("best") else Best()
        sums, count = self.zeros(), 0
        if is_main():  # the other processes add their own sums to these at the epoch's end
            sums, count = torch.tensor(ckpt["partial"][0], dtype=torch.float64), ckpt["partial"][1]
        return int(ckpt["epoch"]), int(ckpt["step"]), (sums, count)

    def zeros(self) -> Tensor:
        return torch.zeros(self.pnet.num_encoders, dtype=torch.float64)

    # ---- epochs --------------------------------------------------------------------------

    def rows(self, epoch: int, split: str, mse: Sequence[float], count: int, **cols) -> list[dict]:
        """metrics.csv rows of one epoch and split: per decoder its MSE, R^2 and extra columns
        (each a list with one value per decoder)."""
        return [
            {
                "epoch": epoch,
                "decoder": i + 1,
                "encoder": name,
                "split": split,
                "mse": float(mse[i]),
                **{k: float(v[i]) for k, v in cols.items()},
                "images": int(count),
            }
            for i, name in enumerate(self.pnet.encoder_names)
        ]

    def held_out(self, epoch: int) -> list[dict]:
        """The held-out rows of the decoders as they are now."""
        mse, r2, count = validate(self.stack, self.split.val, self.split.val_idx, self.local_batch)
        return self.rows(epoch, "val", mse, count, r2=r2)

    def finish_epoch(self, epoch: int, rows: list[dict], timing: dict | None = None) -> None:
        """Keep an epoch's rows and the best decoders: in the checkpoint, then in metrics.csv."""
        loss = sum(r["mse"] for r in rows if r["split"] == "val")
        if loss < self.best.loss:
            state = copy.deepcopy(self.pnet.decoders.state_dict())
            self.best = Best(epoch, loss, {k: v.cpu() for k, v in state.items()})
        self.history[epoch] = rows
        if timing is not None:
            self.timing[epoch] = timing
        self.save(epoch, 0, (self.zeros(), 0))
        self.session.run_folder.record(cell_key(epoch=epoch), rows)
        log_epoch(self.session.cfg, self.session.path, rows)  # experiment loggers, if any

    def stopped_early(self) -> bool:
        """train.patience epochs without a better held-out loss than the best epoch's."""
        patience = self.cfg.train.get("patience")
        last = max(self.history) if self.history else 0
        return patience is not None and last - self.best.epoch >= int(patience)

    def report(self, epoch: int, rows: list[dict], timing: dict) -> None:
        """The epoch's log line: losses, R^2 per decoder, speed and time waiting for data."""
        val = [r for r in rows if r["split"] == "val"]
        train = sum(r["mse"] for r in rows if r["split"] == "train")
        r2 = " ".join(f"{r['r2']:.3f}" for r in val)
        self.say(
            f"epoch {epoch}/{self.epochs}: train {train:.4g}, held-out "
            f"{sum(r['mse'] for r in val):.4g} (sum of decoder MSEs), R^2 {r2}; "
            f"{timing['seconds']:.0f} s, {timing['samples_per_s']:.1f} samples/s, "
            f"{timing['data_wait_s']:.1f} s waiting for data"
        )

    def train_epoch(self, epoch: int, skip: int, partial, stop: StopRequest) -> None:
        """One optimizer epoch from batch `skip` on (a resumed epoch), then the held-out rows."""
        started, waited = time.perf_counter(), self.split.train.wait_s
        order = epoch_order(
            len(self.split.train_idx),
            epoch,
            int(self.cfg.seed),
            bool(self.cfg.train.get("shuffle", True)),
        )
        order = [self.split.train_idx[p] for p in order]
        sums, count = partial[0].to(self.session.device), partial[1]
        total = math.ceil(len(order) / self.local_batch)
        lr = self.optimizer.param_groups[0]["lr"]
        batches = self.split.train.batches(order[skip * self.local_batch :], self.local_batch)
        bar = progress(
            batches,
            total=total,
            initial=skip,
            desc=f"epoch {epoch}/{self.epochs}",
            unit="batch",
            show=is_main(),
            dynamic_ncols=True,
        )
        for step, feats in enumerate(bar, start=skip + 1):
            with self.session.autocast():
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
        count = int(all_reduce_sum(count))
        train_mse = (all_reduce_sum(sums.cpu()) / max(count, 1)).tolist()
        seconds = time.perf_counter() - started
        rows = self.rows(epoch, "train", train_mse, count, lr=[lr] * len(train_mse))
        timing = speed(count - partial[1], seconds, self.split.train.wait_s - waited)
        rows += self.held_out(epoch)
        if self.scheduler is not None:
            plateau = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
            val_loss = sum(r["mse"] for r in rows if r["split"] == "val")
            self.scheduler.step(val_loss) if plateau else self.scheduler.step()
        self.finish_epoch(epoch, rows, timing)
        self.report(epoch, rows, timing)


def speed(samples: int, seconds: float, wait_s: float) -> dict:
    """An epoch's throughput: samples, seconds, samples/s and seconds waiting for data."""
    return {
        "samples": int(samples),
        "seconds": round(seconds, 3),
        "samples_per_s": samples / seconds if seconds > 0 else float("nan"),
        "data_wait_s": round(wait_s, 3),
    }
