"""The bench's tables and figure, from its rows (bench.csv / accuracy.csv)."""

from __future__ import annotations

from pathlib import Path

from pcnets.reporting.figures import save_figure as save_png


def format_table(rows: list[dict]) -> str:
    """A Markdown table of the rows of ``summarize`` (with the arithmetic of ``add_arithmetic``
    where the rows have it: rows of an older bench.csv show "-" there)."""
    head = (
        "| mode | numerics | s / run (min-max) | image-timesteps/s | peak MiB (+run) "
        "| vs reference (of minima) | vs feedforward | max abs diff vs reference "
        "| GFLOP / image-timestep | GFLOP/s (% of peak) |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        pct = 100 * _value(r, "fraction_of_peak")
        share = "" if pct != pct else f" ({pct:.1f} %)" if pct >= 1 else f" ({pct:.2f} %)"
        lines.append(
            f"| {r['mode']} | {r['numerics']} | {r['seconds']:.3f} "
            f"({r['seconds_min']:.3f}-{r['seconds_max']:.3f}) | {r['image_timesteps_per_s']:.2f} "
            f"| {r['peak_mem_mb']:.0f} (+{r['extra_mem_mb']:.0f}) | {r['vs_reference']:.3f} "
            f"({r['vs_reference_of_minima']:.3f}) "
            f"| {r['vs_feedforward']:.2f} | {r['max_abs_diff_vs_reference']:.2e} "
            f"| {_num(_value(r, 'gflop_per_image_timestep'))} "
            f"| {_num(_value(r, 'gflops_per_s'))}{share} |"
        )
    r0 = rows[0]
    title = (
        f"{r0['backbone']} on {r0['device']}: batch {r0['batch']}, {r0['size']} px, "
        f"T = {max(r['timesteps'] for r in rows)}, median of {r0['repeats']} interleaved rounds, "
        f"{r0['threads']} threads. Ratios: median over rounds of the ratio within a round (in "
        f"brackets: ratio of the fastest runs){_peak_line(rows)}\n\n"
    )
    return title + head + "\n".join(lines) + "\n"


def _value(row: dict, key: str) -> float:
    """``row[key]`` as a float; NaN when the row (say, of an older bench.csv) lacks it."""
    try:
        return float(row.get(key, float("nan")))
    except (TypeError, ValueError):
        return float("nan")


def _num(v: float) -> str:
    """3 significant digits, whole numbers from 1000 up, "-" for NaN."""
    if v != v:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def _peak_line(rows: list[dict]) -> str:
    """'. Peak: fp32 matmul 95 GFLOP/s measured' for the peaks in ``rows``, or nothing."""
    found: dict[str, float] = {}
    for r in rows:
        kind, peak = r.get("peak_dtype"), _value(r, "peak_gflops")
        if isinstance(kind, str) and peak == peak:
            found.setdefault(kind, peak)
    if not found:
        return ""
    each = ", ".join(f"{kind} matmul {_num(peak)} GFLOP/s" for kind, peak in found.items())
    return f". Peak: {each} measured"


def accuracy_table(
    rows: list[dict], totals: list[dict], nums, backbone: str, timesteps: int
) -> str:
    """Top-1 per timestep under each numerics (%), the difference from the first (pp), the
    agreement of top-1 predictions with the first, and loading times."""
    first = nums[0].label
    lines = [
        f"top-1 per timestep, {backbone}, {totals[0]['n']} images, T = {timesteps}\n",
        "| t | " + " | ".join(n.label for n in nums) + f" | difference from {first} (pp) "
        f"| agreement with {first} |",
        "|---" * (len(nums) + 3) + "|",
    ]
    for t in range(timesteps + 1):
        at_t = [r for r in rows if r["t"] == t]
        diff = ", ".join(f"{100 * (r['top1'] - at_t[0]['top1']):+.2f}" for r in at_t[1:])
        agree = ", ".join(f"{r['agreement_with_' + first]:.4f}" for r in at_t[1:])
        top = " | ".join(f"{100 * r['top1']:.2f}" for r in at_t)
        lines.append(f"| {t} | {top} | {diff} | {agree} |")
    lines.append("")
    lines.append("| numerics | seconds | images/s | waiting for data |")
    lines.append("|---|---|---|---|")
    for tot in totals:
        lines.append(
            f"| {tot['numerics']} | {tot['seconds']:.1f} | {tot['images_per_s']:.1f} "
            f"| {tot['data_wait_s']:.1f} s ({100 * tot['data_wait_fraction']:.1f} %) |"
        )
    return "\n".join(lines) + "\n"


def save_figure(rows: list[dict], path: str | Path) -> Path:
    """Seconds per run by mode, as a bar chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels = [f"{r['mode']}\n({r['numerics']})" for r in rows]
    ax.bar(labels, [r["seconds"] for r in rows], color="tab:blue")
    r0 = rows[0]
    ax.set_ylabel("seconds per run (median)")
    ax.set_title(
        f"{r0['backbone']} on {r0['device']}: batch {r0['batch']}, {r0['size']} px, "
        f"T = {max(r['timesteps'] for r in rows)}"
    )
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    return save_png(fig, path)
