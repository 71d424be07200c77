"""Composing the Hydra config groups (the compose API: no Hydra app, no run dirs).

The YAML files are package data, pcnets/conf/ (the checkout's top-level conf/ points there), so
an installed wheel composes the same configs as the source tree.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pcnets.errors import PcnetsError

CONF_DIR = Path(os.environ.get("PCNETS_CONF_DIR", Path(__file__).resolve().parent / "conf"))


def options(group: str) -> list[str]:
    """The options of a config group, e.g. options('backbone') -> ['efficientnet_b0', ...]."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def compose(overrides: list[str] | None = None, config_name: str = "config") -> DictConfig:
    """Compose conf/<config_name>.yaml with Hydra overrides (key=value, group=option)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides or [])
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = hydra_compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        group = _group_of_failed_override(overrides, first)
        hint = f"; options for {group}: {', '.join(options(group))}" if group else ""
        raise PcnetsError(f"bad config override: {first}{hint}") from None
    finally:
        GlobalHydra.instance().clear()
    return cfg


def _group_of_failed_override(overrides: list[str], message: str) -> str | None:
    for ov in overrides:
        key = ov.split("=", 1)[0].lstrip("+~")
        if (CONF_DIR / key).is_dir() and key in message:
            return key
    return None


def config_hash(cfg: DictConfig, ignore: tuple[str, ...] = ()) -> str:
    """A short, stable hash of the resolved config (run ids, checkpoint compatibility)."""
    data = OmegaConf.to_container(cfg, resolve=True)
    for key in ignore:
        data.pop(key, None)
    text = OmegaConf.to_yaml(OmegaConf.create(data), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]
