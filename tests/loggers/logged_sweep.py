"""A small eval-noise sweep (two jobs, seed=0,1) run through Hydra's multirun with every
logger at once, exactly as `pcnets eval-noise -m ... logger.backends=[...]` runs it (the command's
run function wrapped by pcnets.loggers.Logged); each test reads one library's files back."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from pcnets.cli.sweep import multirun
from pcnets.config import override
from pcnets.core.decoders import DecoderSpec, build_decoder
from pcnets.core.pnet import PredictiveNet
from pcnets.loggers import Logged

ALL = "logger.backends=[csv,tensorboard,mlflow,wandb]"
SWEEP = [
    "data=synthetic",
    "data.num_images=12",
    "data.size=8",
    "data.num_classes=5",
    "pc.timesteps=2",
    "eval.sigmas=[0,0.5]",
    "eval.bootstrap=20",
    "device=cpu",
    "seed=0,1",
]


def toy_pnet() -> PredictiveNet:
    """Two encoders and a 5-class readout: accuracies differ between sigmas and timesteps."""
    torch.manual_seed(3)
    backbone = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1),
        nn.Tanh(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(96, 5),
    )
    decoders = [build_decoder(DecoderSpec(6, 3)), build_decoder(DecoderSpec(6, 6))]
    pnet = PredictiveNet(backbone, ["1", "3"], decoders, [0.5] * 3, [0.5] * 3, probe_size=8)
    pnet.set_hyperparameters(beta=0.5, lam=0.3, alpha=0.5)
    return pnet.eval()


def toy_eval_noise(cfg):
    """The eval-noise command's run function, on the toy network."""
    from pcnets.experiments.eval_noise import run

    return run(cfg, pnet=toy_pnet(), progress=False)


def run_sweep(folder: Path, *extra: str):
    """Hydra's multirun of eval-noise over SWEEP (+ extra), each job logged as the CLI logs it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        args = [*SWEEP, *extra, override("hydra.sweep.dir", folder)]
        return multirun("eval-noise", Logged(toy_eval_noise), args)
    finally:
        torch.set_num_threads(threads)
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)


def logged_sweep(tmp_path_factory) -> Path:
    """<tmp>/sw: jobs 0 and 1, logged to csv, TensorBoard, MLflow (SQLite) and W&B (offline)."""
    folder = tmp_path_factory.mktemp("loggers") / "sw"
    done = run_sweep(folder, ALL)
    assert not done.failed and len(done.jobs) == 2
    return folder


def logger_settings(**settings):
    """A config holding only what the loggers read (logger.*), as a composed one would."""
    from omegaconf import OmegaConf

    from pcnets.config import compose

    base = OmegaConf.to_container(compose([], "eval-noise").logger)
    return OmegaConf.create({"logger": {**base, **settings}})


def summary_values(job: Path, metric: str = "accuracy") -> dict[tuple[str, int], float]:
    """{(key, timestep): value} of summary.csv's ``metric`` rows, keyed as the loggers name
    them (accuracy/clean/sigma_0, accuracy/noise/sigma_0.5): what every logger must carry."""
    s = pd.read_csv(job / "summary.csv")
    s = s[s["metric"] == metric]
    out = {}
    for row in s.itertuples():
        sigma = f"{row.sigma:g}"
        out[(f"{metric}/{row.condition}/sigma_{sigma}", int(row.timestep))] = float(row.value)
    assert len(out) == 6  # two sigmas x t = 0..2
    return out
