"""Sweeps across runs (`pcnets COMMAND -m key=a,b ...`) through Hydra's own multirun: its sweeper
syntax (lists, range(), several keys) and its launcher plugins (basic, joblib, submitit_local,
submitit_slurm). Each job is an ordinary run of the command, in its own run folder
<sweep dir>/<job number>, resumable like any other.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from pcnets.config import compose, hydra_app, one_line_errors, override, own_groups
from pcnets.errors import PcnetsError
from pcnets.validate import typed


@dataclass(frozen=True)
class Failed:
    """A job that stopped on a PcnetsError (bad input found while it ran): its one line."""

    message: str


@dataclass(frozen=True)
class HydraJob:
    """The task function handed to Hydra. Picklable (submitit and joblib send it to another
    process) as ``run`` is a module-level function. The job's config is checked as a single run's
    is, and ``out`` points at the job's folder unless the overrides set it."""

    run: Callable[[DictConfig], Any]
    config: str

    def __call__(self, cfg: DictConfig) -> Any:
        from hydra.core.hydra_config import HydraConfig

        cfg = typed(own_groups(cfg, self.config))
        if cfg.get("out") is None:
            with open_dict(cfg):
                cfg.out = HydraConfig.get().runtime.output_dir
        try:
            return self.run(cfg)
        except PcnetsError as err:
            return Failed(str(err))


@dataclass
class Job:
    num: int
    folder: Path
    overrides: list[str]
    value: Any  # what run() returned, or Failed


@dataclass
class Sweep:
    folder: Path
    jobs: list[Job] = field(default_factory=list)

    @property
    def failed(self) -> list[Job]:
        return [job for job in self.jobs if isinstance(job.value, Failed)]


def job_overrides(overrides: list[str]) -> list[list[str]]:
    """The overrides of every job the basic sweeper makes of ``overrides`` (a=1,2 b=3 -> two)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    with one_line_errors():
        parsed = OverridesParser.create().parse_overrides(overrides)
        return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def sweep_dir(command: str, overrides: list[str]) -> Path:
    """hydra.sweep.dir resolved once, absolute: read back later it would re-resolve ${now:}."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    with hydra_app(command) as hydra, one_line_errors():
        master = hydra.compose_config(
            config_name=command, overrides=overrides, run_mode=RunMode.MULTIRUN
        )
        before = HydraConfig.instance().cfg
        HydraConfig.instance().set_config(master)  # for ${hydra:...} in hydra.sweep.dir
        try:
            return Path(str(master.hydra.sweep.dir)).absolute()
        finally:
            HydraConfig.instance().cfg = before


def multirun(command: str, run: Callable[[DictConfig], Any], overrides: list[str]) -> Sweep:
    """Hydra's multirun of ``run`` over ``overrides`` with the configured launcher. Every job's
    config is composed and checked first (basic sweeper), so a bad value runs no job."""
    overrides = list(overrides)
    custom_sweeper = any(o.split("=", 1)[0].lstrip("+~") == "hydra/sweeper" for o in overrides)
    if not custom_sweeper:
        for job in job_overrides(overrides):
            compose([o for o in job if not o.startswith("hydra")], command)
    folder = sweep_dir(command, overrides)
    existed = folder.exists()
    # hydra.mode as Hydra's own entry sets it; jobs never chdir, so relative paths keep meaning
    # the user's folder (given as overrides: a hydra/* file would lose to Hydra's own default)
    overrides += [
        override("hydra.sweep.dir", folder),
        "hydra.mode=MULTIRUN",
        "hydra.job.chdir=false",
    ]
    try:
        with hydra_app(command) as hydra, one_line_errors():
            batches = hydra.multirun(
                config_name=command, task_function=HydraJob(run, command), overrides=overrides
            )
    except PcnetsError:
        made = not existed and folder.is_dir()
        if made and [p.name for p in folder.iterdir()] == ["multirun.yaml"]:
            shutil.rmtree(folder)  # no job ran: leave nothing behind
        raise
    result = Sweep(folder)
    for batch in batches:  # the basic sweeper's list of batches of JobReturn
        for ret in batch:
            result.jobs.append(
                Job(
                    num=int(ret.hydra_cfg.hydra.job.num),
                    folder=Path(ret.hydra_cfg.hydra.runtime.output_dir),
                    overrides=list(ret.overrides),
                    value=ret.return_value,
                )
            )
    return result
