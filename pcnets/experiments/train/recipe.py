"""The recipe of a training run (conf/train/*.yaml): which solver, optimizer, learning-rate
schedule, early stopping, augmentation and batch, checked up front with one clear line."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from omegaconf import DictConfig, OmegaConf

from pcnets.errors import PcnetsError, suggest

OPTIMIZERS = ("sgd", "rmsprop", "adam", "adamw")
SCHEDULERS = ("none", "cosine_restarts", "cosine", "plateau")
SOLVERS = ("sgd", "lstsq")
AUGMENTS = ("none", "flip_crop")


def choice(tcfg: DictConfig, key: str, options: tuple[str, ...], default: str) -> str:
    """train.<key> as one of `options` (lower case), else a one-line error with a suggestion."""
    value = str(tcfg.get(key) or default).lower()
    if value not in options:
        raise PcnetsError(f"unknown train.{key}={value!r}{suggest(value, options)}; use {options}")
    return value


def check_recipe(tcfg: DictConfig) -> None:
    """Refuse settings that cannot work together before any network is built."""
    choice(tcfg, "optimizer", OPTIMIZERS, "sgd")
    choice(tcfg, "scheduler", SCHEDULERS, "none")
    solver = choice(tcfg, "solver", SOLVERS, "sgd")
    augment = choice(tcfg, "augment", AUGMENTS, "none")
    if solver == "lstsq" and augment != "none":
        raise PcnetsError(
            "train.solver=lstsq makes one pass over fixed features; use train.augment=none "
            "with it, or train.solver=sgd to train on augmented images"
        )


def run_config(cfg: DictConfig) -> DictConfig:
    """The parts of a composed config that decide what training computes (they name the run folder).

    Eval, attack and dynamics settings are left out, so changing them keeps the trained decoders.
    """
    keep = {k: cfg.get(k) for k in ("backbone", "data", "train", "seed", "amp", "channels_last")}
    keep["pc"] = {"decoders": cfg.pc.get("decoders") if "pc" in cfg else None}
    keep.update(device=cfg.get("device"), out=cfg.get("out"), logger=cfg.get("logger"))
    # the frozen backbone stays bit for bit the caller's (folding BatchNorm rewrites its weights)
    keep["fold_bn"] = False
    return OmegaConf.create(OmegaConf.to_container(OmegaConf.create(keep), resolve=True))


def build_optimizer(params: Iterable, tcfg: DictConfig) -> torch.optim.Optimizer:
    """The optimizer that train.optimizer names, with train.lr / momentum / weight_decay."""
    name = choice(tcfg, "optimizer", OPTIMIZERS, "sgd")
    lr, wd = float(tcfg.lr), float(tcfg.get("weight_decay") or 0.0)
    momentum = float(tcfg.get("momentum") or 0.0)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd)


def build_scheduler(optimizer: torch.optim.Optimizer, tcfg: DictConfig) -> object | None:
    """The per-epoch learning-rate schedule of train.scheduler (None for 'none'); 'plateau'
    lowers the rate when the held-out loss stops improving (stepped with that loss)."""
    name = choice(tcfg, "scheduler", SCHEDULERS, "none")
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
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        factor=float(tcfg.get("plateau_factor") or 0.3),
        patience=int(tcfg.get("plateau_patience") or 1),
        min_lr=float(tcfg.get("eta_min") or 0.0),
    )


def global_batch(cfg: DictConfig) -> int:
    """train.batch_size, or data.batch_size when it is null: the batch of all processes together."""
    value = cfg.train.get("batch_size")  # bounds: pcnets.schema
    return int(cfg.data.batch_size if value is None else value)
