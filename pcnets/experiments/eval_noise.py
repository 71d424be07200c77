"""`pcnets eval-noise`: top-1 accuracy at every timestep under Gaussian noise (METHOD.md section 7,
item 1), one resumable cell per sigma; tables and figures are pcnets.reporting.noise_report's."""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from pcnets.core.guards import check_timesteps
from pcnets.core.pnet import PredictiveNet
from pcnets.data import build_dataset
from pcnets.data.noise import NoisyImages, check_noise_space
from pcnets.data.sigma_units import check_sigma_unit, sigma_in_units
from pcnets.errors import PcnetsError
from pcnets.experiments.eval_cells import (
    Cell,
    evaluate_cells,
    finish,
    loader_config,
    open_session,
    warn_untrained,
)
from pcnets.reporting.noise_report import noise_file, render
from pcnets.reporting.sigma_labels import write_units
from pcnets.runtime.runs import cell_key
from pcnets.runtime.session import Result


def check_sigmas(values) -> list[float]:
    """eval.sigmas as distinct floats >= 0 in the order given (0 = clean), else a PcnetsError."""
    values = list(values) if OmegaConf.is_list(values) or isinstance(values, list | tuple) else None
    if not values:
        raise PcnetsError("eval.sigmas must be a non-empty list such as [0, 0.25, 0.5]")
    sigmas: list[float] = []
    for value in values:
        try:
            sigma = float(value)
        except (TypeError, ValueError):
            raise PcnetsError(f"eval.sigmas must hold numbers, got {value!r}") from None
        if not np.isfinite(sigma) or sigma < 0:
            raise PcnetsError(f"eval.sigmas must be >= 0, got {value!r}")
        if sigma not in sigmas:
            sigmas.append(sigma)
    return sigmas


def run(
    cfg: DictConfig,
    pnet: PredictiveNet | None = None,
    dataset: Dataset | None = None,
    progress: bool = True,
) -> Result:
    """Top-1 accuracy at timesteps 0..pc.timesteps for every eval.sigmas (0 = clean, in
    eval.sigma_unit, converted for this backbone), noise in eval.noise_space; resumable and
    torchrun-sharded. `pnet`/`dataset` default to the config's."""
    sigmas = check_sigmas(cfg.eval.sigmas)
    space = check_noise_space(cfg.eval.get("noise_space", "normalized"))
    timesteps = check_timesteps(cfg.pc.timesteps)
    session, pnet = open_session("eval-noise", cfg, pnet)
    data_cfg = loader_config(cfg, session.device)
    base = dataset if dataset is not None else build_dataset(cfg.data, pnet.transform, "val")
    if len(base) == 0:
        raise PcnetsError("the evaluation dataset is empty; check data.split and data.limit")
    std = pnet.std.flatten().cpu()
    seed = int(cfg.get("seed", 0))
    unit = check_sigma_unit(cfg.eval.get("sigma_unit") or space)
    units = [sigma_in_units(s, unit, std.tolist()) for s in sigmas]
    sigmas = [u["pixel" if space == "pixel" else "normalized"] for u in units]
    if len(set(sigmas)) != len(sigmas):
        raise PcnetsError(f"eval.sigmas {list(cfg.eval.sigmas)} repeat a noise level")
    warn_untrained(cfg, session)
    session.open_run_folder()
    write_units(session.run_folder, unit, std.tolist(), units)
    cells = [
        Cell(
            cell_key(sigma=sigma),
            noise_file(sigma),
            {"condition": "clean" if sigma == 0 else "noise", "sigma": sigma},
            lambda sigma=sigma: NoisyImages(base, sigma, seed, std, space),
        )
        for sigma in sigmas
    ]
    evaluate_cells(session, cells, pnet, data_cfg, timesteps, progress)
    return finish(session, render)
