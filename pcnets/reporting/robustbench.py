"""An eval-corruptions run folder as a RobustBench model-info JSON (`pcnets export robustbench`).

RobustBench's model_info/<dataset>/corruptions/<Name>.json holds the fields of its ModelInfo
(robustbench.utils): clean_acc, corruptions_acc (mean accuracy over the 15 benchmark corruptions
x 5 severities, in %), corruptions_mce (mCE against AlexNet, in %), number_forward_passes, ...
Those fields are written as RobustBench writes them (strings of percentages), at the last
timestep T; a "pcnets" key adds what its form has no field for: the accuracy per corruption,
severity and timestep, the numbers at every timestep, the numerics and the decoders.

RobustBench's Lp (Linf, L2) leaderboards exclude models that run an optimisation loop at
inference, and the predictive-coding dynamics are one (T update steps per image), so a PC
model's place there is the corruptions board and external adaptive evaluations; the footnote
says so. Forward passes per image: T + 1 backbone passes (t = 0 is the plain backbone).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from pcnets.data.corruptions import BENCHMARK
from pcnets.errors import PcnetsError
from pcnets.reporting.run_folders import load_run

FOOTNOTE = (
    "Predictive-coding feedback (pcnets): {T} timesteps of feedback dynamics, an optimisation "
    "loop at inference, so this model belongs on the corruptions board and to external adaptive "
    "evaluations, not on RobustBench's Lp leaderboards, which exclude such models."
)


def model_info(run_path: str | Path, name: str | None = None) -> dict:
    """The model-info dict of an eval-corruptions run folder (see the module doc)."""
    run = load_run(run_path)
    if run.command != "eval-corruptions":
        raise PcnetsError(
            f"{run.path} holds a `{run.command}` run; `pcnets export robustbench` writes "
            "eval-corruptions runs (RobustBench's Lp boards exclude models with an inference-time "
            "optimisation loop such as the PC dynamics)"
        )
    cfg, metrics = run.config, run.metrics
    T = int(metrics["timestep"].max())
    cells = metrics.groupby(["corruption", "severity", "timestep"])[["correct", "total"]].sum()
    acc = (cells["correct"] / cells["total"]).rename("accuracy").reset_index()
    standard = acc[acc["corruption"].isin(BENCHMARK)]
    per_t = standard.groupby("timestep")["accuracy"].mean()
    mce = _summary_mce(run.path)
    decoders = OmegaConf.select(cfg, "pc.decoders", default=None)
    arch = str(OmegaConf.select(cfg, "backbone.name", default="?"))
    from pcnets.reporting.results import decoder_r2

    return {
        "link": None,
        "name": name or f"pcnets {arch} PC T={T}",
        "authors": None,
        "additional_data": False,
        "number_forward_passes": T + 1,
        "dataset": "imagenet",
        "venue": None,
        "architecture": f"{arch} + predictive-coding feedback ({T} timesteps)",
        "eps": None,
        "clean_acc": None,  # an eval-corruptions run has no clean cell: see eval-noise sigma=0
        "reported": None,
        "corruptions_acc": _percent(per_t.get(T)),
        "corruptions_acc_3d": None,
        "corruptions_mce": _percent(mce.get(T), scale=1),
        "corruptions_mce_3d": None,
        "autoattack_acc": None,
        "footnote": FOOTNOTE.format(T=T),
        "pcnets": {
            "run": str(run.path),
            "run_id": str(run.provenance.get("config_hash", run.path.name)),
            "timesteps": T,
            "images": int(metrics["total"].max()),
            "benchmark_corruptions": sorted(set(standard["corruption"])),
            "numerics": run.provenance.get("numerics"),
            "decoders": str(decoders) if decoders else "untrained",
            "decoders_r2": list(decoder_r2(str(decoders))) if decoders else [],
            "corruptions_acc_per_timestep": {int(t): _percent(v) for t, v in per_t.items()},
            "corruptions_mce_per_timestep": {int(t): _percent(v, 1) for t, v in mce.items()},
            "accuracy": _nested(acc),
        },
    }


def _summary_mce(path: Path) -> dict[int, float]:
    """The AlexNet-normalised mCE (%) per timestep from summary.csv's standard_mce rows."""
    file = path / "summary.csv"
    if not file.is_file():
        return {}
    s = pd.read_csv(file)
    part = s[s["metric"] == "standard_mce"]
    return {int(t): float(v) for t, v in zip(part["timestep"], part["value"], strict=True)}


def _percent(value, scale: float = 100) -> str | None:
    """RobustBench's form: a percentage as a string with two decimals."""
    return None if value is None or pd.isna(value) else str(round(float(value) * scale, 2))


def _nested(acc: pd.DataFrame) -> dict:
    """{corruption: {severity: {timestep: accuracy in %}}}."""
    out: dict = {}
    for row in acc.itertuples():
        out.setdefault(row.corruption, {}).setdefault(str(int(row.severity)), {})[
            str(int(row.timestep))
        ] = _percent(row.accuracy)
    return out


def write_model_info(run_path: str | Path, out: str | Path, name: str | None = None) -> Path:
    """Write the model-info JSON of ``run_path`` to ``out`` (a .json file)."""
    info = model_info(run_path, name)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=2) + "\n")
    return out
