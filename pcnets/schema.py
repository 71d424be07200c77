"""Typed schemas of the root config and its groups (dataclasses, read as OmegaConf structured
configs): what each key may hold. pcnets.validate checks a composed config against them, so that
a wrong type or an unknown key is one clear line at compose time instead of a failure deep
inside a run. Fields typed Any hold tables (backbone.decoders, backbone.transform: any keys
allowed) or unions OmegaConf cannot express (a number or one per encoder; pcnets.validate.CHECKS).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class Root:
    device: str = "auto"
    seed: int = 0
    out: str | None = None
    amp: Any = "auto"
    channels_last: Any = "auto"
    compile: bool = False
    fold_bn: bool = True
    backbone: Any = None
    pc: Any = None
    data: Any = None
    train: Any = None
    eval: Any = None
    corruptions: Any = None
    attack: Any = None
    tune: Any = None
    manifold: Any = None


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
    probe_size: int = 64
    cpu_channels_last: bool = True
    encoders: list[str] = MISSING
    decoders: list[Any] | None = None


@dataclass
class Pc:
    beta: Any = 0.8
    lam: Any = 0.1
    alpha: Any = 0.01
    timesteps: int = 10
    error_reduction: str = "per_sample"
    gradient_scaling: bool = False
    random_init: bool = False
    decoders: str | None = None
    hyper: str | None = None


@dataclass
class Data:
    kind: str = "folder"
    root: str | None = None
    url: str | None = None
    num_classes: int = 1000
    num_images: int = 64
    size: int = 224
    seed: int = 0
    folders: dict[str, str] | None = None
    split: str = "all"
    train_split: str = "all"
    limit: int | None = None
    batch_size: int = 64
    workers: Any = "auto"
    pin_memory: Any = "auto"
    prefetch_factor: int = 2
    persistent_workers: bool = False
    check_images: bool = True
    on_bad_image: str = "stop"


@dataclass
class Lstsq:
    ridge: float | None = None
    ridges: list[float] = field(default_factory=list)
    fold: int = 5
    max_rows: int = 1024


@dataclass
class Train:
    solver: str = "sgd"
    optimizer: str = "sgd"
    lr: float = 1.0e-3
    momentum: float = 0.0
    weight_decay: float = 5.0e-4
    scheduler: str = "none"
    T_0: int = 3
    T_mult: int = 1
    eta_min: float = 0.0
    plateau_factor: float = 0.3
    plateau_patience: int = 1
    patience: int | None = None
    augment: str = "none"
    epochs: int = 50
    batch_size: int | None = 64
    shuffle: bool = True
    val_split: str = "auto"
    val_fraction: float = 0.01
    val_max: int | None = None
    max_images: int | None = None
    cache_features: bool = False
    lstsq: Lstsq = field(default_factory=Lstsq)


@dataclass
class Eval:
    sigmas: list[float] = field(default_factory=list)
    noise_space: str = "normalized"
    sigma_unit: str | None = None
    batch_size: Any = "auto"
    bootstrap: int = 1000
    level: float = 0.95


@dataclass
class Corruptions:
    source: str = "generate"
    root: str | None = None
    names: Any = None
    severities: list[int] = field(default_factory=list)
    seed: int = 0
    size: int = 224
    jpeg_quality: int | None = 85


@dataclass
class AttackChecks:
    num_images: int = 4
    large_eps: float = 0.1
    min_success: float = 0.9
    tolerance: float = 0.0
    t0_mismatch: float = 0.001


@dataclass
class Attack:
    name: str = MISSING
    also: list[str] = field(default_factory=list)
    eps: list[float] = field(default_factory=list)
    steps: int = 10
    step_size: float | None = None
    max_step_size: float = 0.02
    restarts: int = 1
    queries: int = 1000
    p_init: float = 0.8
    target_classes: int = 9
    checkpoint: bool | None = None
    allow_suspect: bool = False
    random_start: bool = False
    timesteps: list[int] = field(default_factory=list)
    targeted: bool = True
    target_offset: int = 800
    select: str = "correct"
    num_images: int = 1000
    batch_size: int = 16
    checks: AttackChecks = field(default_factory=AttackChecks)


@dataclass
class Tune:
    steps: int = 200
    batch_size: int = 8
    lr: float = 0.05
    timesteps: int | None = None
    objective: str = "last"
    sigmas: list[float] = field(default_factory=list)
    learn_alpha: bool = True
    save_every: int = 10


@dataclass
class Manifold:
    sigmas: list[float] = field(default_factory=list)
    timesteps: int = 14
    split: str = "val"
    n_resamples: int = 1000
    level: float = 0.95


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
}
