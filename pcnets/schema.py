"""Typed schemas of the root config and its groups, so that a wrong type or an unknown key is one
clear line at compose time instead of a failure deep inside a run.

Each node is merged into its dataclass (an OmegaConf structured config): values are converted to
the declared type ('5' for an int becomes 5), and a value that cannot be ('abc' for an int) or a
key the schema does not declare (+pc.alpah=1) is a PcnetsError naming the key. Keys a schema
declares but an option leaves out stay out: the YAML says which keys exist, the schema what they
may hold, so composing changes no value and no run hash. Fields typed Any hold tables
(backbone.decoders, backbone.transform: any keys allowed) or unions OmegaConf cannot express (a
number or one per encoder); CHECKS tests those.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from pcnets.errors import PcnetsError, suggest


@dataclass
class Root:
    device: str = "auto"
    seed: int = 0
    out: str | None = None
    amp: Any = "auto"
    channels_last: Any = "auto"
    compile: bool = False
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


@dataclass
class Train:
    optimizer: str = "sgd"
    lr: float = 1.0e-3
    momentum: float = 0.0
    weight_decay: float = 5.0e-4
    scheduler: str = "none"
    T_0: int = 3
    T_mult: int = 1
    eta_min: float = 0.0
    epochs: int = 50
    batch_size: int | None = 64
    shuffle: bool = True
    val_split: str = "auto"
    val_fraction: float = 0.01
    val_max: int | None = None
    max_images: int | None = None
    cache_features: bool = False


@dataclass
class Eval:
    sigmas: list[float] = field(default_factory=list)
    noise_space: str = "normalized"
    batch_size: int | None = None
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
    eps: list[float] = field(default_factory=list)
    steps: int = 10
    step_size: float | None = None
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


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _numbers(v: Any) -> bool:
    return _number(v) or (isinstance(v, list) and bool(v) and all(map(_number, v)))


def _auto_or(kind: type) -> Callable[[Any], bool]:
    return lambda v: v == "auto" or (isinstance(v, kind) and (kind is bool or v is not True))


# Fields typed Any: what each may hold, as (what to say, test).
PER_ENCODER = ("a number or a list of numbers (one per encoder)", _numbers)
CHECKS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "amp": ("true, false or auto", _auto_or(bool)),
    "channels_last": ("true, false or auto", _auto_or(bool)),
    "pc.beta": PER_ENCODER,
    "pc.lam": PER_ENCODER,
    "pc.alpha": PER_ENCODER,
    "data.workers": ("a whole number or auto", lambda v: v == "auto" or type(v) is int),
    "data.pin_memory": ("true, false or auto", _auto_or(bool)),
    "corruptions.names": (
        "null, a list of corruption names, or all / benchmark / extra",
        lambda v: v is None or isinstance(v, str | list),
    ),
}


def typed(cfg: DictConfig) -> DictConfig:
    """``cfg`` checked against the schemas and converted to their types (see the module doc)."""
    plain = _checked(Root, cfg, "")
    for group, schema in GROUPS.items():
        if isinstance(plain.get(group), dict):
            plain[group] = _checked(schema, cfg[group], group)
    for path, (what, test) in CHECKS.items():
        value = _select(plain, path)
        if value is not None and not _interpolation(value) and not test(value):
            raise PcnetsError(f"bad config value {path}={value!r}: it takes {what}")
    out = OmegaConf.create(plain)
    OmegaConf.set_struct(out, True)
    return out


def _select(data: dict, path: str) -> Any:
    for part in path.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _interpolation(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("${")


def _checked(schema: type, node: DictConfig, prefix: str) -> dict:
    """``node`` merged into ``schema`` (types converted), keeping only the keys ``node`` has."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
    except ConfigKeyError as err:
        raise PcnetsError(_unknown_key(schema, prefix, str(err.full_key or err.key))) from None
    except ValidationError as err:
        path = ".".join(p for p in (prefix, str(err.full_key or err.key)) if p)
        line = str(err.msg).strip().splitlines()[0]
        kind = describe(field_type(schema, re.sub(r"\[\d+\]$", "", path)))
        raise PcnetsError(f"bad config value {path}: {line}; {path} takes {kind}") from None
    full = OmegaConf.to_container(merged, resolve=False)
    return _prune(full, OmegaConf.to_container(node, resolve=False))


def _prune(full: Any, given: Any) -> Any:
    if isinstance(full, dict) and isinstance(given, dict):
        return {k: _prune(full[k], v) for k, v in given.items()}
    return full


def _unknown_key(schema: type, prefix: str, key: str) -> str:
    parts = key.split(".")
    for part in parts[:-1]:
        schema = _field_types(schema).get(part, schema)
    known = list(_field_types(schema))
    path = ".".join(p for p in (prefix, key) if p)
    where = path.rsplit(".", 1)[0] if "." in path else "the root config"
    return (
        f"bad config key {path}{suggest(parts[-1], known)}: not in the schema of {where}, whose "
        f"keys are {', '.join(known)} (pcnets configs lists the groups)"
    )


def _field_types(schema: type) -> dict[str, Any]:
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema)}


def field_type(schema: type, path: str) -> Any:
    """The annotation of ``path`` (e.g. 'pc.timesteps') in ``schema`` or a group's schema."""
    parts = path.split(".")
    if schema is Root and parts[0] in GROUPS and len(parts) > 1:
        schema, parts = GROUPS[parts[0]], parts[1:]
    elif parts[0] in GROUPS and schema is GROUPS[parts[0]]:
        parts = parts[1:]
    kind: Any = schema
    for part in parts:
        if not dataclasses.is_dataclass(kind):
            return Any
        kind = _field_types(kind).get(part, Any)
    return kind


def describe(kind: Any) -> str:
    """A type annotation in words: list[float] -> 'a list of numbers'."""
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)][0]
        return f"{describe(inner)} or null"
    if typing.get_origin(kind) is list:
        inner = describe(args[0]) if args else "anything"
        plural = {"an integer": "integers", "a number": "numbers", "a string": "strings"}
        return f"a list of {plural.get(inner, inner)}"
    if typing.get_origin(kind) is dict:
        return "a table of keys and values"
    if dataclasses.is_dataclass(kind):
        return f"a table with keys {', '.join(_field_types(kind))}"
    return names.get(kind, "anything")
