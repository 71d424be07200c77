"""The text of an eval-corruptions run's table.md and of the lines the command prints, from the
numbers of reporting.corruptions.corruption_stats."""

from __future__ import annotations

from pcnets.metrics import ALEXNET_ERR, SEVERITIES
from pcnets.reporting.tables import describe, interval_text, markdown_table


def corruption_lines(st: dict) -> tuple[list[str], list[str]]:
    """(table.md lines, summary lines): the mCE per timestep, the CE of every corruption relative
    to t=0, and the accuracy of every cell at t=0 and the last t."""
    cfg, names, severities, pct = st["cfg"], st["names"], st["severities"], st["pct"]
    n, timesteps, alexnet = st["n"], st["timesteps"], st["alexnet"]
    standard = [c for c in names if c in ALEXNET_ERR]
    stats = labelled(st)
    lines = [
        f"# eval-corruptions: {cfg.backbone.name}, corruption error per timestep",
        "",
        *describe(cfg, n),
        f"- corruptions: {len(names)} ({len(standard)} standard, {len(names) - len(standard)} "
        f"extra) x severities {', '.join(map(str, severities))}; source: {cfg.corruptions.source}"
        + (f" ({cfg.corruptions.root})" if cfg.corruptions.source == "folder" else ""),
        f"- intervals: {pct} percentile bootstrap over images ({st['resamples']} resamples), the "
        "same resampled images for every corruption, severity and timestep",
        "- CE_c(t) = sum over severities of the top-1 error rate; relative mCE(t) = mean over "
        "corruptions of CE_c(t) / CE_c(0) (the Predify reference code; 1 at t=0, lower is better)",
        "- standard mCE = mean over the standard corruptions of CE_c / CE_c(AlexNet) "
        "(Hendrycks & Dietterich; lower is better)",
    ]
    if len(severities) != len(SEVERITIES):
        lines.append(
            "- only some severities were run: the standard mCE here is the mean error over "
            f"severities {', '.join(map(str, severities))} divided by AlexNet's error averaged "
            "over all 5, an approximation of the standard number"
        )
    if len(standard) not in (0, len(ALEXNET_ERR)):
        lines.append(
            f"- only {len(standard)} of the {len(ALEXNET_ERR)} standard corruptions were run: "
            "the standard mCE is over those alone and is not comparable to published numbers"
        )
    lines.append(
        "- ratio of summed errors(t) = sum over corruptions and severities of the error at t / the "
        "same sum at t=0: defined whenever t=0 errs at all, so the findings rely on it when the "
        "relative mCE is undefined in some resamples"
    )
    undefined = {k: s["undefined"][-1] for k, s in stats.items() if s["undefined"][-1] > 0}
    if undefined:
        shares = ", ".join(f"{k} {v:.1%}" for k, v in undefined.items())
        lines.append(
            f"- undefined in part of the resamples at t={timesteps} (NaN 0/0 or inf: t=0 made no "
            f"error on a corruption there): {shares}; the interval is over the other resamples, "
            "with an inf bound when some were inf; more images tighten it"
        )
    lines += ["", f"## mCE per timestep ({pct} intervals)", ""]
    header = ["t", *stats]
    if alexnet is not None:
        header.append("standard mCE vs AlexNet (%)")
    body = []
    for t in range(timesteps + 1):
        row = [str(t)]
        row += [
            interval_text(s["value"][t], s["low"][t], s["high"][t], ".3f") for s in stats.values()
        ]
        if alexnet is not None:
            row.append(
                interval_text(alexnet["value"][t], alexnet["low"][t], alexnet["high"][t], ".1f")
            )
        body.append(row)
    lines += [markdown_table(body, header), ""]
    lines += _ce_lines(st) + _accuracy_lines(st)
    first = next(iter(stats.items()))
    summary = [
        f"{first[0]} at t={timesteps}: "
        + interval_text(first[1]["value"][-1], first[1]["low"][-1], first[1]["high"][-1], ".3f")
        + " (t=0 = 1)"
    ]
    if alexnet is not None:
        summary.append(
            f"standard mCE vs AlexNet: t=0 {alexnet['value'][0]:.1f}% -> t={timesteps} "
            + interval_text(alexnet["value"][-1], alexnet["low"][-1], alexnet["high"][-1], ".1f")
            + "%"
        )
    return lines, summary


def _ce_lines(st: dict) -> list[str]:
    timesteps, pct = st["timesteps"], st["pct"]
    relative, rel_low, rel_high = st["relative"]
    lines = [
        "## CE per corruption, relative to timestep 0 (CE_c(t) / CE_c(0))",
        "",
        "CE/AlexNet: the corruption's CE at t=0 divided by AlexNet's (standard corruptions only).",
        "",
    ]
    header = [
        "corruption",
        "group",
        "CE/AlexNet t=0",
        *[f"t={t}" for t in range(1, timesteps)],
        f"t={timesteps} [{pct}]" if timesteps else "t=0",
    ]
    body = []
    for i, name in enumerate(st["names"]):
        alex = name in ALEXNET_ERR
        row = [
            name,
            "standard" if alex else "extra",
            f"{st['vs_alexnet'][i]:.1f}%" if alex else "-",
        ]
        row += [f"{relative[i, t]:.3f}" for t in range(1, timesteps)]
        row.append(
            interval_text(relative[i, -1], rel_low[i, -1], rel_high[i, -1], ".3f")
            if timesteps
            else "1.000"
        )
        body.append(row)
    return [*lines, markdown_table(body, header), ""]


def _accuracy_lines(st: dict) -> list[str]:
    timesteps, accuracy, severities = st["timesteps"], st["accuracy"], st["severities"]
    lines = [f"## Top-1 accuracy (%) per corruption and severity, t=0 and t={timesteps}", ""]
    header = ["corruption", *[f"s{s}: t=0 -> t={timesteps}" for s in severities]]
    body = [
        [
            name,
            *[
                f"{accuracy[i, j, 0]:.1f} -> {accuracy[i, j, -1]:.1f}"
                for j in range(len(severities))
            ],
        ]
        for i, name in enumerate(st["names"])
    ]
    return [*lines, markdown_table(body, header), "", "Figures: mce.png, corruptions.png", ""]


def labelled(st: dict) -> dict:
    """The relative mCEs under the labels the tables and figures give them."""
    names = st["names"]
    standard = sum(c in ALEXNET_ERR for c in names)
    label = {
        "relative_mce": f"relative mCE, all {len(names)}",
        "standard_relative_mce": f"relative mCE, standard {standard}",
        "extra_relative_mce": f"relative mCE, extra {len(names) - standard}",
        "summed_error_ratio": f"ratio of summed errors, all {len(names)}",
    }
    return {label[k]: v for k, v in st["mce"].items()}
