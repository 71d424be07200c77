"""`pcnets attack`'s table.md and summary.csv, made from the run folder alone (config.yaml,
metrics.csv, checks.json, selection.json, attack.json): success rates with 95 % Wilson intervals
per attack, eps and timestep, the transfer attack, the verdict per eps, cost, and every sanity
check, with the run's status ("suspect" when a check failed)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from pcnets.reporting.attack_figures import attack_figures, pivot
from pcnets.reporting.attack_verdict import describe_dynamics, verdict
from pcnets.reporting.tables import markdown_table, summary_row, write_summary
from pcnets.reporting.term_files import render_terms
from pcnets.runtime.files import atomic_write

__all__ = ["INFO", "attack_table", "describe_dynamics", "render", "summary_rows", "verdict"]

INFO = "attack.json"
PEAK_MEMORY_NOTE = (
    "peak memory of one attack batch above the level before it, divided by the batch size. "
    "CUDA: torch.cuda.max_memory_allocated. CPU (Linux): peak resident set size (VmHWM, reset "
    "through /proc/self/clear_refs after malloc_trim), an estimate that includes allocator slack."
)


def render(path: str | Path) -> str:
    """Write table.md, summary.csv and the figures of an attack run folder from its files alone;
    returns table.md."""
    path = Path(path)
    metrics = pd.read_csv(path / "metrics.csv") if (path / "metrics.csv").is_file() else None
    metrics = metrics if metrics is not None else pd.DataFrame()
    if len(metrics) and "attack" not in metrics:
        metrics = metrics.assign(attack="bim")
    checks = json.loads((path / "checks.json").read_text())
    selection = json.loads((path / "selection.json").read_text())
    info = json.loads((path / INFO).read_text())
    cfg = OmegaConf.load(path / "config.yaml")
    table = attack_table(metrics, checks, selection, info, cfg)
    term_rows, term_lines = render_terms(path, f"{cfg.backbone.name} attack", ["condition"])
    table = "\n".join([table.rstrip("\n"), "", *term_lines]) if term_lines else table
    atomic_write(path / "table.md", table)
    if len(metrics):
        write_summary(path, summary_rows(metrics) + term_rows)
        attack_figures(path, metrics, cfg.backbone.name)
    return table


def summary_rows(metrics: pd.DataFrame) -> list[dict]:
    """Every rate the table shows, for summary.csv: success through the dynamics and by transfer
    per attack, eps and timestep, in %, with the 95 % Wilson interval."""
    names = {"unrolled": "success_rate", "transfer": "transfer_success_rate"}
    return [
        summary_row(
            names[r.kind],
            100 * r.success_rate,
            "%",
            100 * r.success_low,
            100 * r.success_high,
            condition=f"{r.attack} eps={r.eps:g}",
            timestep=int(r.timestep),
            n=int(r.total),
        )
        for r in metrics.itertuples()
    ]


def attack_table(
    metrics: pd.DataFrame, checks: list[dict], selection: dict, info: dict, cfg
) -> str:
    """table.md: per attack, success rates (%, with 95 % Wilson interval) per eps x timestep
    through the dynamics and as a transfer attack, relative to t=0, the verdict per eps; then
    cost per timestep and every sanity check (failures as WARNING lines)."""
    status = info.get("status", "finished")
    lines = [f"# attack: {cfg.backbone.name}, success rate through the unrolled dynamics", ""]
    if status == "suspect":
        lines += [
            "**Status: SUSPECT** - a sanity check failed (below); these numbers are not a "
            "robustness result.",
            "",
        ]
    lines += [f"- attack {text}" for text in info["attacks"].values()]
    lines += [
        f"- eps in {sorted({float(f'{e:g}') for e in metrics.get('eps', [])})}; an image fooled "
        "at a smaller eps counts at every larger one (the larger ball holds that image)",
        f"- images: {len(selection['indices'])}, drawn with seed {selection['seed']} among those "
        f"classified correctly at every timestep 0..{selection['max_timestep']} "
        f"({selection['examined']} examined; data split {cfg.data.get('split', 'all')}); the "
        "same images in every cell",
        f"- dynamics: {info['dynamics']}",
        "- through the dynamics: attacked with gradients through every timestep up to t (double "
        "backward through the decoders), evaluated at t. Transfer: the images attacked at t=0 "
        "(the feedforward model), evaluated at t. A lower rate at t than at t=0 is robustness "
        "only if the transfer rate at t is not higher than the rate through the dynamics.",
        "- rates in %, [95 % Wilson interval]",
        "",
    ]
    if len(metrics) == 0:
        return "\n".join([*lines, "No cell finished yet.", ""])
    for name, rows in metrics.groupby("attack", sort=False):
        lines += _attack_section(name, rows)
    lines += _cost(metrics)
    lines += ["## Sanity checks", ""]
    lines += [f"- {'PASS' if c['passed'] else 'FAIL'} {c['name']}: {c['detail']}" for c in checks]
    failed = [c for c in checks if not c["passed"]]
    lines += [""] + [f"WARNING: sanity check {c['name']} failed: {c['detail']}" for c in failed]
    lines += [
        "",
        f"Status: {status}.",
        "",
        "Figures: success_vs_eps.png, relative_vs_timestep.png",
        "",
    ]
    return "\n".join(lines)


def _attack_section(name: str, rows: pd.DataFrame) -> list[str]:
    timesteps = sorted(rows["timestep"].unique())

    def table(kind: str) -> str:
        rate, low, high = (
            pivot(rows, kind, v) for v in ("success_rate", "success_low", "success_high")
        )
        body = [
            [f"{eps:g}", *[_pct(rate, low, high, eps, t) for t in timesteps]] for eps in rate.index
        ]
        return markdown_table(pd.DataFrame(body, columns=["eps", *[f"t={t}" for t in timesteps]]))

    return [
        f"## {name}: success rate through the dynamics",
        "",
        table("unrolled"),
        "",
        f"## {name}: transfer from the feedforward model",
        "",
        table("transfer"),
        "",
        *verdict(rows),
        "",
    ]


def _pct(rate, low, high, eps, t) -> str:
    value = rate.loc[eps].get(t, float("nan"))
    if pd.isna(value):
        return "-"
    return f"{100 * value:.1f} [{100 * low.loc[eps, t]:.0f}, {100 * high.loc[eps, t]:.0f}]"


def _cost(metrics: pd.DataFrame) -> list[str]:
    rows = metrics[metrics["kind"] == "unrolled"]
    body = []
    for (name, t), group in rows.groupby(["attack", "timestep"], sort=False):
        total = group["total"].clip(lower=1)
        body.append(
            [
                name,
                f"t={int(t)}",
                f"{(group['seconds'] / total).mean():.2f}",
                f"{group['peak_mb_per_image'].max():.1f}",
                f"{group['linf_mean'].max():.4g}",
                f"{group['l2_mean'].max():.3g}",
            ]
        )
    header = [
        "attack",
        "timestep",
        "seconds per image (cell wall time / images)",
        "peak MB per image",
        "max mean L-inf",
        "max mean L2",
    ]
    return [
        "## Cost and perturbation size",
        "",
        markdown_table(pd.DataFrame(body, columns=header)),
        "",
        f"Memory: {PEAK_MEMORY_NOTE}",
        "",
    ]
