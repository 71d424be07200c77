"""Typed schemas of the root config and its groups (dataclasses, read as OmegaConf structured
configs): what each key may hold. pcnets.validate checks a composed config against them, so that
a wrong type or an unknown key is one clear line at compose time instead of a failure deep
inside a run. Fields typed Any hold tables (backbone.decoders, backbone.transform: any keys
allowed) or unions OmegaConf cannot express (a number or one per encoder; pcnets.validate.CHECKS).
Every numeric setting carries its bounds (``bounded``), checked at compose time, one line each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from pcnets.bounds import MAX_TIMESTEPS, bounded


@dataclass
class Root:
    device: str = "auto"
    seed: int = bounded(0, ">= 0")
    out: str | None = None
    amp: Any = "auto"
    channels_last: Any = "auto"
    compile: bool = False
    fold_bn: bool = True
    fast_kernels: bool = True
    backbone: Any = None
    pc: Any = None
    data: Any = None
    train: Any = None
    eval: Any = None
    corruptions: Any = None
    attack: Any = None
    tune: Any = None
    manifold: Any = None
    logger: Any = None


@dataclass
class Backbone:
    name: str = MISSING
    source: str = "torchvision"
    arch: str = MISSING
    weights_tag: str | None = None
    pretrained: bool = True
    weights: str | None = None
    download_url: str | None = None
    transform: dict[str, Any] | None = None
    probe_size: int = bounded(64, ">= 1")
    cpu_channels_last: bool = True
    encoders: list[str] = MISSING
    decoders: list[Any] | None = None


@dataclass
class Pc:
    beta: Any = 0.8
    lam: Any = 0.1
    alpha: Any = 0.01
    timesteps: int = bounded(10, f"[0, {MAX_TIMESTEPS}]")
    error_reduction: str = "per_sample"
    gradient_scaling: bool = False
    random_init: bool = False
    alpha_normalization: str = "none"
    decoders: str | None = None
    hyper: str | None = None


@dataclass
class Data:
    kind: str = "folder"
    root: str | None = None
    url: str | None = None
    num_classes: int = bounded(1000, ">= 1")
    num_images: int = bounded(64, ">= 1")
    size: int = bounded(224, ">= 1")
    seed: int = bounded(0, ">= 0")
    folders: dict[str, str] | None = None
    split: str = "all"
    train_split: str = "all"
    limit: int | None = bounded(None, ">= 1")
    batch_size: int = bounded(64, ">= 1")
    workers: Any = bounded("auto", ">= 0")
    pin_memory: Any = "auto"
    prefetch_factor: int = bounded(2, ">= 1")
    persistent_workers: bool = False
    check_images: bool = True
    on_bad_image: str = "stop"


@dataclass
class Lstsq:
    ridge: float | None = bounded(None, ">= 0")
    ridges: list[float] = bounded([], ">= 0")
    fold: int = bounded(5, ">= 1")
    max_rows: int = bounded(1024, ">= 1")


@dataclass
class Train:
    solver: str = "sgd"
    optimizer: str = "sgd"
    lr: float = bounded(1.0e-3, "> 0")
    momentum: float = bounded(0.0, "[0, 1)")
    weight_decay: float = bounded(5.0e-4, ">= 0")
    scheduler: str = "none"
    T_0: int = bounded(3, ">= 1")
    T_mult: int = bounded(1, ">= 1")
    eta_min: float = bounded(0.0, ">= 0")
    plateau_factor: float = bounded(0.3, "(0, 1)")
    plateau_patience: int = bounded(1, ">= 0")
    patience: int | None = bounded(None, ">= 1")
    augment: str = "none"
    epochs: int = bounded(50, ">= 1")
    batch_size: int | None = bounded(64, ">= 1")
    shuffle: bool = True
    val_split: str = "auto"
    val_fraction: float = bounded(0.01, "(0, 1)")
    val_max: int | None = bounded(None, ">= 1")
    max_images: int | None = bounded(None, ">= 1")
    cache_features: bool = False
    lstsq: Lstsq = field(default_factory=Lstsq)


@dataclass
class Eval:
    sigmas: list[float] = bounded([], ">= 0")
    noise_space: str = "normalized"
    sigma_unit: str | None = None
    batch_size: Any = bounded("auto", ">= 1")
    bootstrap: int = bounded(1000, ">= 1")
    level: float = bounded(0.95, "(0, 1)")
    terms: bool = True


@dataclass
class Corruptions:
    source: str = "generate"
    root: str | None = None
    names: Any = None
    severities: list[int] = bounded([], "[1, 5]")
    seed: int = bounded(0, ">= 0")
    size: int = bounded(224, ">= 1")
    jpeg_quality: int | None = bounded(85, "[1, 100]")


@dataclass
class AttackChecks:
    num_images: int = bounded(4, ">= 1")
    large_eps: float = bounded(0.1, "(0, 1]")
    min_success: float = bounded(0.9, "[0, 1]")
    tolerance: float = bounded(0.0, "[0, 1]")
    t0_mismatch: float = bounded(0.001, "[0, 1]")


@dataclass
class Attack:
    name: str = MISSING
    also: list[str] = field(default_factory=list)
    eps: list[float] = bounded([], "[0, 1]")
    steps: int = bounded(10, ">= 1")
    step_size: float | None = bounded(None, "> 0")
    max_step_size: float = bounded(0.02, "> 0")
    restarts: int = bounded(1, ">= 1")
    queries: int = bounded(1000, ">= 1")
    p_init: float = bounded(0.8, "(0, 1]")
    target_classes: int = bounded(9, ">= 1")
    checkpoint: bool | None = None
    allow_suspect: bool = False
    random_start: bool = False
    timesteps: list[int] = bounded([], f"[0, {MAX_TIMESTEPS}]")
    targeted: bool = True
    target_offset: int = bounded(800, ">= 1")
    select: str = "correct"
    num_images: int = bounded(1000, ">= 1")
    batch_size: int = bounded(16, ">= 1")
    terms: bool = True
    checks: AttackChecks = field(default_factory=AttackChecks)


@dataclass
class Tune:
    steps: int = bounded(200, ">= 1")
    batch_size: int = bounded(8, ">= 1")
    lr: float = bounded(0.05, "> 0")
    timesteps: int | None = bounded(None, f"[1, {MAX_TIMESTEPS}]")
    objective: str = "last"
    sigmas: list[float] = bounded([], ">= 0")
    learn_alpha: bool = True
    save_every: int = bounded(10, ">= 1")
    heldout_fraction: float = bounded(0.15, "[0, 1)")


@dataclass
class Manifold:
    sigmas: list[float] = bounded([], "> 0")
    timesteps: int = bounded(14, f"[0, {MAX_TIMESTEPS}]")
    split: str = "val"
    n_resamples: int = bounded(1000, ">= 1")
    level: float = bounded(0.95, "(0, 1)")
    terms: bool = True


@dataclass
class Logger:
    """Experiment loggers (pcnets.loggers): which, and where a run or a sweep goes."""

    backends: list[str] = field(default_factory=list)  # csv, tensorboard, mlflow, wandb
    project: str = "pcnets"
    group: str | None = None
    save_dir: str | None = None
    tracking_uri: str | None = None
    wandb_mode: str = "offline"


GROUPS: dict[str, type] = {
    "backbone": Backbone,
    "pc": Pc,
    "data": Data,
    "train": Train,
    "eval": Eval,
    "corruptions": Corruptions,
    "attack": Attack,
    "tune": Tune,
    "manifold": Manifold,
    "logger": Logger,
}
