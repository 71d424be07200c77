"""The experiment loggers, one class each, all with the same five calls (params, tags, points,
figures, close). Each library is imported when its logger is made; a missing one is one line
naming the extra that installs it (pcnets.loggers.require)."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path

import yaml

from pcnets.errors import PcnetsError
from pcnets.loggers.record import Point, Record

EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def require(module: str, extra: str):
    """``module`` imported, or a PcnetsError naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise PcnetsError(
            f"logger {extra} needs the {extra} package: pip install 'pcnets[{extra}]'"
        ) from None


class CsvLogger:
    """Lightning's CSVLogger layout, <base>/csv/<run name>/: scalars.csv (key, step, value; not
    metrics.csv, which would read as a run folder), hparams.yaml (the config), tags.yaml."""

    def __init__(self, rec: Record, settings) -> None:
        self.folder = rec.base / "csv" / rec.name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.file = self.folder / "scalars.csv"
        if not self.file.exists():
            self.file.write_text("key,step,value\n")

    def params(self, params: dict) -> None:
        (self.folder / "hparams.yaml").write_text(yaml.safe_dump(params, sort_keys=True))

    def tags(self, tags: dict) -> None:
        (self.folder / "tags.yaml").write_text(yaml.safe_dump(tags, sort_keys=True))

    def points(self, points: list[Point]) -> None:
        with self.file.open("a") as f:
            for p in points:
                f.write(f"{p.key},{'' if p.step is None else p.step},{p.value!r}\n")

    def figures(self, paths: list[Path]) -> None:
        return None  # the figures stay in the run folder the csv names (tags.yaml: path)

    def close(self) -> None:
        return None


class TensorBoardLogger:
    """Event files in <base>/tensorboard/<run name>: scalars (step = timestep or epoch, 0 for
    numbers without one), the config and tags as text, the figures as images."""

    def __init__(self, rec: Record, settings) -> None:
        require("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(rec.base / "tensorboard" / rec.name))

    def params(self, params: dict) -> None:
        text = "\n".join(f"    {k}: {v}" for k, v in sorted(params.items()))
        self.writer.add_text("config", text)

    def tags(self, tags: dict) -> None:
        rows = "\n".join(f"| {k} | {v} |" for k, v in tags.items())
        self.writer.add_text("provenance", "| tag | value |\n|---|---|\n" + rows)

    def points(self, points: list[Point]) -> None:
        for p in points:
            self.writer.add_scalar(p.key, p.value, 0 if p.step is None else p.step)
        self.writer.flush()

    def figures(self, paths: list[Path]) -> None:
        import numpy as np
        from PIL import Image

        for path in paths:
            image = np.asarray(Image.open(path).convert("RGB"))
            self.writer.add_image(f"figures/{path.stem}", image, 0, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


class MlflowLogger:
    """One MLflow run per run folder, in the experiment logger.project (a sweep's jobs: one
    experiment, project/command/sweep). Tracking: logger.tracking_uri, else
    MLFLOW_TRACKING_URI, else a SQLite store <base>/mlflow.db with artifacts beside it."""

    def __init__(self, rec: Record, settings) -> None:
        require("mlflow", "mlflow")
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        uri = settings.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
        artifacts = None
        if not uri:
            rec.base.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{rec.base / 'mlflow.db'}"
            artifacts = (rec.base / "mlartifacts").as_uri()
        project = str(settings.get("project") or "pcnets")
        name = f"{project}/{rec.command}/{rec.group}" if rec.group else project
        self.client = MlflowClient(uri)
        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                exp = self.client.create_experiment(name, artifact_location=artifacts)
            except MlflowException:  # a parallel job of the same sweep made it first
                exp = self.client.get_experiment_by_name(name).experiment_id
        else:
            exp = found.experiment_id
        self.run_id = self.client.create_run(exp, run_name=rec.name).info.run_id

    def params(self, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def tags(self, tags: dict) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def points(self, points: list[Point]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(p.key, p.value, now, p.step or 0) for p in points]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def figures(self, paths: list[Path]) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path), "figures")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class WandbLogger:
    """One W&B run per run folder in project logger.project, group = the sweep, job_type = the
    command; offline unless logger.wandb_mode=online. Files: <base>/wandb/."""

    def __init__(self, rec: Record, settings) -> None:
        wandb = require("wandb", "wandb")
        rec.base.mkdir(parents=True, exist_ok=True)
        self.wandb = wandb
        self.run = wandb.init(
            project=str(settings.get("project") or "pcnets"),
            group=rec.group,
            job_type=rec.command,
            name=rec.name,
            dir=str(rec.base),
            mode=str(settings.get("wandb_mode") or "offline"),
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off"),
        )
        self.step = -1

    def params(self, params: dict) -> None:
        self.run.config.update(params, allow_val_change=True)

    def tags(self, tags: dict) -> None:
        self.run.config.update({f"tag.{k}": v for k, v in tags.items()}, allow_val_change=True)
        self.run.tags = tuple(
            f"{k}:{v}"[:64] for k, v in tags.items() if k in ("command", "backbone", "numerics")
        )

    def points(self, points: list[Point]) -> None:
        by_step: dict[int, dict] = defaultdict(dict)
        for p in points:
            if p.step is None:
                self.run.summary[p.key] = p.value
            else:
                by_step[p.step][p.key] = p.value
        for step in sorted(s for s in by_step if s > self.step):  # W&B steps only increase
            self.run.log(by_step[step], step=step)
            self.step = step

    def figures(self, paths: list[Path]) -> None:
        images = {f"figures/{p.stem}": self.wandb.Image(str(p)) for p in paths}
        if images:
            self.run.log(images, step=max(self.step, 0))

    def close(self) -> None:
        self.run.finish()


BACKENDS = {
    "csv": CsvLogger,
    "tensorboard": TensorBoardLogger,
    "mlflow": MlflowLogger,
    "wandb": WandbLogger,
}
