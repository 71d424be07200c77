"""Checking a composed config against the typed schemas (pcnets.schema).

Each node is merged into its dataclass: values are converted to the declared type ('5' for an
int becomes 5), and a value that cannot be ('abc' for an int) or a key the schema does not
declare (+pc.alpah=1) is a PcnetsError naming the key and the type. Keys a schema declares but
an option leaves out stay out: the YAML says which keys exist, the schema what they may hold, so
checking changes no composed value and no run hash. Every number then meets the bound its schema
declares (pcnets.bounds), or the config is refused naming the key, the value and the bound.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from pcnets.bounds import Bound, words
from pcnets.errors import PcnetsError, suggest
from pcnets.schema import GROUPS, Root


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
            raise PcnetsError(f"bad config value {path}: it takes {what}, got {value!r}")
    for path, bound, default in bounds():
        check_bound(path, _select(plain, path), bound, default)
    out = OmegaConf.create(plain)
    OmegaConf.set_struct(out, True)
    return out


def bounds(schema: type = Root, prefix: str = "") -> Iterator[tuple[str, Bound, Any]]:
    """(key, bound, default) of every bounded setting of ``schema`` and, for Root, every group."""
    for f in dataclasses.fields(schema):
        path = f"{prefix}{f.name}"
        if "bound" in f.metadata:
            yield path, f.metadata["bound"], f.default
        kind = field_types(schema)[f.name]
        if dataclasses.is_dataclass(kind):
            yield from bounds(kind, f"{path}.")
    if schema is Root:
        for group, kind in GROUPS.items():
            yield from bounds(kind, f"{group}.")


def check_bound(path: str, value: Any, bound: Bound, default: Any = None) -> None:
    """One PcnetsError line when a number of ``value`` (or of the list) breaks ``bound``; null,
    'auto' and interpolations are left to the type checks."""
    for item in value if isinstance(value, list) else [value]:
        if item is None or isinstance(item, str):
            continue
        fault = bound.fault(item)
        if fault:
            example = f", e.g. {path}={default}" if isinstance(default, int | float) else ""
            raise PcnetsError(
                f"bad config value {path}: {item!r} is {fault}; it must be {words(bound.rule)}"
                f"{example}"
            )


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
        schema = field_types(schema).get(part, schema)
    known = list(field_types(schema))
    path = ".".join(p for p in (prefix, key) if p)
    where = path.rsplit(".", 1)[0] if "." in path else "the root config"
    return (
        f"bad config key {path}{suggest(parts[-1], known)}: not in the schema of {where}, whose "
        f"keys are {', '.join(known)} (pcnets configs lists the groups)"
    )


def field_types(schema: type) -> dict[str, Any]:
    """A schema's fields and their annotations, in order."""
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
        kind = field_types(kind).get(part, Any)
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
        return f"a table with keys {', '.join(field_types(kind))}"
    return names.get(kind, "anything")
