"""What a train-feedback run folder shows: summary.csv (per decoder: held-out MSE and R^2 before
training, at the last epoch and at the kept epoch), table.md and curves.png (held-out MSE and
R^2 against epoch). Everything is read from the run folder (metrics.csv, provenance.json,
config.yaml), so a finished run can be redrawn without its models."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from pcnets.reporting.figures import save_figure
from pcnets.reporting.tables import markdown_table
from pcnets.runtime.files import atomic_write
from pcnets.runtime.runs import with_labels


def summarize(metrics: pd.DataFrame, best_epoch: int) -> pd.DataFrame:
    """One row per decoder: held-out MSE and R^2 at epoch 0, the last epoch, the kept (best)
    epoch, and each decoder's highest R^2 over the epochs."""
    val = metrics[metrics["split"] == "val"]
    last = int(val["epoch"].max())
    by = {e: val[val["epoch"] == e].set_index("decoder") for e in (0, last, best_epoch)}
    rows = []
    for dec, enc in val[val["epoch"] == 0][["decoder", "encoder"]].itertuples(index=False):
        r2 = val[val["decoder"] == dec]["r2"]
        rows.append(
            {
                "decoder": int(dec),
                "encoder": enc,
                "mse_init": by[0].loc[dec, "mse"],
                "mse_final": by[last].loc[dec, "mse"],
                "mse_best": by[best_epoch].loc[dec, "mse"],
                "r2_init": by[0].loc[dec, "r2"],
                "r2_final": by[last].loc[dec, "r2"],
                "r2_best": by[best_epoch].loc[dec, "r2"],
                "r2_max": r2.max(),
                "best_epoch": best_epoch,
                "last_epoch": last,
            }
        )
    return pd.DataFrame(rows)


def table_markdown(summary: pd.DataFrame, prov: dict, cfg: dict) -> str:
    """The run's table: recipe, speed and data wait, then held-out quality per decoder."""
    t, timing = cfg.get("train", {}), prov.get("timing") or {}
    solver = t.get("solver", "sgd")
    if solver == "lstsq":
        recipe = f"ridge least squares (train.lstsq: {t.get('lstsq')})"
    else:
        recipe = (
            f"{t.get('optimizer')} lr {t.get('lr')}, weight decay {t.get('weight_decay')}, "
            f"scheduler {t.get('scheduler')}, patience {t.get('patience')}, augment "
            f"{t.get('augment', 'none')}, batch {t.get('batch_size')}"
        )
    best, last = int(summary["best_epoch"].iloc[0]), int(summary["last_epoch"].iloc[0])
    sps = timing.get("samples_per_s")
    lines = [
        f"# Feedback training: {cfg.get('backbone', {}).get('name')}",
        "",
        f"{recipe}; {prov.get('train_images')} training and {prov.get('val_images')} held-out "
        f"images; {last} epochs{' (stopped early)' * bool(prov.get('stopped_early'))}, "
        f"decoders.pt = epoch {best} (lowest held-out loss).",
        f"Speed: {timing.get('samples')} training samples in {timing.get('train_seconds')} s "
        f"({sps if sps is None else round(sps, 2)} samples/s), {timing.get('data_wait_s')} s "
        "waiting for data.",
        "Held-out MSE of each decoder's prediction of the encoder below (decoder 1 predicts the "
        "normalised image) and R^2 = 1 - MSE / Var(target) (Var about the target's per-channel "
        "mean). R^2 <= 0: no better than a constant map.",
        "",
    ]
    cols = ["decoder", "encoder", "mse_init", "mse_best", "r2_init", "r2_final", "r2_best"]
    shown = summary[cols].rename(
        columns={
            "mse_init": "MSE epoch 0",
            "mse_best": f"MSE epoch {best}",
            "r2_init": "R^2 epoch 0",
            "r2_final": f"R^2 epoch {last}",
            "r2_best": f"R^2 epoch {best} (kept)",
        }
    )
    return "\n".join(lines) + markdown_table(shown, digits=4) + "\n"


def plot_curves(metrics: pd.DataFrame, path: Path, title: str) -> Path:
    """Two panels against epoch: MSE per decoder (log; held-out solid from epoch 0, training
    dashed) and held-out R^2 per decoder (the dotted line is R^2 = 0)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 4.6), layout="constrained")
    mse_ax, r2_ax = fig.subplots(1, 2)
    for i, dec in enumerate(sorted(metrics["decoder"].unique())):
        color = f"C{i % 10}"
        for split, style in (("val", "-"), ("train", "--")):
            part = metrics[(metrics["decoder"] == dec) & (metrics["split"] == split)]
            part = part.sort_values("epoch")
            if not len(part):
                continue
            label = f"{dec}: {part['encoder'].iloc[0]}" if split == "val" else None
            mse_ax.plot(part["epoch"], part["mse"], style, color=color, marker="o", ms=3)
            if split == "val":
                r2_ax.plot(
                    part["epoch"], part["r2"], "-", color=color, marker="o", ms=3, label=label
                )
    mse_ax.set_yscale("log")
    mse_ax.set_ylabel("MSE (log; held-out solid, training dashed)")
    r2_ax.axhline(0, color="0.4", ls=":", lw=1)
    r2_ax.set_ylabel("held-out R^2")
    for ax in (mse_ax, r2_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (0 = before training)")
        ax.grid(True, which="both", alpha=0.3)
    r2_ax.legend(
        title="decoder: encoder", fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5)
    )
    fig.suptitle(title)
    return save_figure(fig, path)


def write_outputs(run: Path) -> pd.DataFrame:
    """summary.csv, table.md and curves.png of a train-feedback run folder, from its files."""
    metrics = pd.read_csv(run / "metrics.csv")
    prov = json.loads((run / "provenance.json").read_text())
    cfg = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"))
    summary = summarize(metrics, int(prov.get("best_epoch", metrics["epoch"].max())))
    atomic_write(run / "summary.csv", with_labels(run, summary).to_csv(index=False))
    atomic_write(run / "table.md", table_markdown(summary, prov, cfg))
    name = cfg.get("backbone", {}).get("name")
    plot_curves(metrics, run / "curves.png", f"Feedback training of {name}")
    return summary
