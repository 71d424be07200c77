"""Composing the Hydra configs: one root config per command (conf/eval-noise.yaml, ...) naming
only the groups that command uses, checked against the typed schemas (pcnets.schema).

The YAML files are package data, pcnets/conf/ (the checkout's top-level conf/ points there), so
an installed wheel composes the same configs as the source tree. Every entry goes through
Hydra's own app object (``hydra_app``), the one ``@hydra.main`` builds: a single run composes
with it (no run folder, no chdir, no logging set-up), a sweep runs its ``multirun``
(pcnets.cli.sweep), and ``--cfg`` prints what it composed.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from pcnets.errors import PcnetsError, suggest
from pcnets.schema import GROUPS
from pcnets.validate import field_types, typed

CONF_DIR = Path(os.environ.get("PCNETS_CONF_DIR", Path(__file__).resolve().parent / "conf"))
VERSION_BASE = "1.3"  # Hydra's 1.3 defaults: jobs never chdir, outputs/ and multirun/ folders


def options(group: str) -> list[str]:
    """The options of a config group, e.g. options('backbone') -> ['efficientnet_b0', ...]."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def groups() -> list[str]:
    """The config groups (folders of conf/ holding options)."""
    return sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and any(p.glob("*.yaml")))


def roots() -> list[str]:
    """The root configs: one per command, plus config (every group) and pnet (build_pnet)."""
    return sorted(p.stem for p in CONF_DIR.glob("*.yaml") if p.stem != "common")


def first_comment(path: Path) -> str:
    """The first comment line of a YAML file (what an option is for), '' when it has none."""
    for line in path.read_text().splitlines():
        text = line.strip()
        if text.startswith("#") and not text.startswith("# @package"):
            return text.lstrip("#").strip()
    return ""


def root_groups(config_name: str) -> list[str]:
    """The groups a root config composes, in its defaults list's order."""
    data = OmegaConf.load(CONF_DIR / f"{config_name}.yaml")
    found = []
    for entry in data.get("defaults", []):
        key = next(iter(entry)) if isinstance(entry, dict | DictConfig) else str(entry)
        if key in GROUPS:
            found.append(key)
    return found


@contextmanager
def hydra_app(job_name: str) -> Iterator[Any]:
    """Hydra's app object on conf/ (what ``@hydra.main`` builds, through the public
    initialize_config_dir); the global Hydra state is cleared on the way out."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(
            config_dir=str(CONF_DIR), job_name=job_name, version_base=VERSION_BASE
        ):
            yield GlobalHydra.instance().hydra
    finally:
        GlobalHydra.instance().clear()


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Hydra's and OmegaConf's config errors as a PcnetsError of one line, Hydra's hints kept."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        yield
    except (HydraException, OmegaConfBaseException) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":  # as Hydra's own command line
            raise
        raise PcnetsError(f"bad config override: {one_line(err)}{_spaces_hint(err)}") from None


def _spaces_hint(err: BaseException) -> str:
    """The hint for a word without '=' (an unquoted value with spaces, split by the shell)."""
    word = re.search(r"Error parsing override '([^'=]*)'\nmissing EQUAL", str(err))
    if not word:
        return ""
    return (
        f". '{word.group(1)}' has no '=': if it belongs to the value before it (a path with "
        'spaces, split by the shell), quote the whole override, e.g. "data.root=/my data/set"'
    )


def one_line(err: BaseException) -> str:
    """Hydra's multi-line message on one line: hints kept, options listed inline, the search path
    dropped, the first line of an OmegaConf cause added, and a close schema key suggested."""
    text = str(err).split("\nConfig search path:")[0]
    out: list[str] = []
    for line in text.splitlines():
        item = line.strip()
        if not item:
            continue
        if line.startswith("\t") and out:  # an option under "Available options in 'x':"
            out[-1] += (" " if out[-1].endswith(":") else ", ") + item
        else:
            out.append(item)
    msg = ". ".join(part.rstrip(".") for part in out) or type(err).__name__
    cause = err.__cause__
    if cause is not None and str(cause).strip():
        msg += f" ({str(cause).strip().splitlines()[0]})"
    missing = re.search(r"Could not override '(\w+)\.(\w+)'", msg)
    if missing and missing.group(1) in GROUPS:
        msg += suggest(missing.group(2), field_types(GROUPS[missing.group(1)]))
    return msg


def compose(overrides: list[str] | None = None, config_name: str = "config") -> DictConfig:
    """Compose conf/<config_name>.yaml with Hydra overrides (key=value, group=option, +key=value
    to add a key the schema allows), then check it against the schemas."""
    from hydra.types import RunMode

    with hydra_app(config_name) as hydra, one_line_errors():
        cfg = hydra.compose_config(
            config_name=config_name, overrides=list(overrides or []), run_mode=RunMode.RUN
        )
        with open_dict(cfg):
            del cfg["hydra"]
    return typed(own_groups(cfg, config_name))


def own_groups(cfg: DictConfig, config_name: str) -> DictConfig:
    """``cfg`` without the groups its root config does not compose: an experiment (a global
    package) may set, say, attack keys, which only the attack command reads."""
    keep = set(root_groups(config_name))
    with open_dict(cfg):
        for group in [g for g in GROUPS if g in cfg and g not in keep]:
            del cfg[group]
    return cfg


def show(config_name: str, overrides: list[str], part: str = "job", sweep: bool = False) -> str:
    """The YAML of the job's config, Hydra's own (launcher, sweeper) or both, like ``--cfg`` of a
    @hydra.main app. With ``sweep`` the overrides may hold sweeps (a=1,2) and the hydra part is
    the sweep's (launcher, sweeper); the job part leaves the swept keys at their defaults."""
    from hydra.types import RunMode

    mode = RunMode.MULTIRUN if sweep else RunMode.RUN
    with hydra_app(config_name) as hydra, one_line_errors():
        cfg = hydra.compose_config(config_name=config_name, overrides=overrides, run_mode=mode)
        if part == "job":
            with open_dict(cfg):
                del cfg["hydra"]
            if not sweep:
                cfg = typed(own_groups(cfg, config_name))
            return OmegaConf.to_yaml(cfg)
        if sweep:
            with open_dict(cfg):
                cfg.hydra.mode = RunMode.MULTIRUN
        return OmegaConf.to_yaml(hydra.get_sanitized_cfg(cfg, part))


def override(key: str, value: Any) -> str:
    """A ``key=value`` override for a first-class option, in Hydra's override syntax."""
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, list | tuple):
        return f"{key}=[{','.join(override('', v)[1:] for v in value)}]"
    if isinstance(value, bool):
        value = str(value).lower()
    if isinstance(value, str) and not re.fullmatch(r"[\w./\-:+@]+", value):
        value = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"{key}={value}"


def config_hash(cfg: DictConfig, ignore: tuple[str, ...] = ()) -> str:
    """A short, stable hash of the resolved config (run ids, checkpoint compatibility)."""
    data = OmegaConf.to_container(cfg, resolve=True)
    for key in ignore:
        data.pop(key, None)
    text = OmegaConf.to_yaml(OmegaConf.create(data), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]
