"""What a tune run writes beside its rows: hyper.json's contents (the tuned values, how they were
tuned, the objective over the steps and on the held-out images) and the resume point."""

from __future__ import annotations

import time

import pandas as pd

from pcnets.experiments.tune_heldout import heldout_summary

HYPER_FORMAT = "pcnets-hyper-v1"


def loss_summary(metrics: pd.DataFrame) -> tuple[float | None, float | None, dict]:
    """The mean objective over the first and the last quarter of the steps, overall and per
    sigma ({sigma: [first, last]}): single steps are too noisy to compare (small batches)."""
    losses = metrics.dropna(subset=["loss"]).drop_duplicates("step").sort_values("step")
    if losses.empty:
        return None, None, {}
    quarter = max(1, len(losses) // 4)
    head, tail = losses.head(quarter), losses.tail(quarter)
    by_sigma = {}
    for sigma, part in losses.groupby("sigma"):
        q = max(1, len(part) // 4)
        by_sigma[f"{sigma:g}"] = [
            float(part["loss"].head(q).mean()),
            float(part["loss"].tail(q).mean()),
        ]
    return float(head["loss"].mean()), float(tail["loss"].mean()), by_sigma


def hyper_file(cfg, pnet, run, final, initial, timesteps, sigmas, kind) -> dict:
    first, last, by_sigma = loss_summary(run.metrics())
    return {
        "format": HYPER_FORMAT,
        "backbone": pnet.name,
        "encoders": list(pnet.encoder_names),
        "beta": final["beta"],
        "lam": final["lam"],
        "alpha": final["alpha"],
        "memory": final["memory"],
        "initial": {k: initial[k] for k in ("beta", "lam", "alpha")},
        "objective": kind,
        "timesteps": timesteps,
        "sigmas": sigmas,
        "steps": int(cfg.tune.steps),
        "batch_size": int(cfg.tune.batch_size),
        "lr": float(cfg.tune.lr),
        "first_loss": first,
        "final_loss": last,
        "loss_by_sigma": by_sigma,
        "heldout": heldout_summary(run.metrics()),
        "heldout_fraction": float(cfg.tune.get("heldout_fraction") or 0),
        "error_reduction": pnet.error_reduction,
        "gradient_scaling": bool(pnet.gradient_scaling),
        "decoders": cfg.pc.get("decoders"),
        "data": {k: cfg.data.get(k) for k in ("kind", "root", "split", "limit")},
        "config_hash": run.hash,
        "run": str(run.path),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
