"""The attack report's sentences: the verdict per eps (robustness, no gain, or masking) and the
dynamics' settings in one line."""

from __future__ import annotations

import pandas as pd

from pcnets.reporting.attack_figures import pivot


def describe_dynamics(cfg, hyper, error_reduction: str, gradient_scaling: bool) -> str:
    """The dynamics' settings in one line, from the network's hyperparameters (beta, lam, alpha
    tensors) and the config's decoder file."""
    values = {k: _compact(getattr(hyper, k)) for k in ("beta", "lam", "alpha")}
    return (
        f"beta {values['beta']}, lambda {values['lam']}, alpha {values['alpha']}, "
        f"error_reduction {error_reduction}, gradient_scaling {gradient_scaling}, "
        f"decoders {cfg.get('pc', {}).get('decoders')}"
    )


def _compact(values) -> str:
    items = [round(float(v), 4) for v in values.flatten()]
    return f"{items[0]:g}" if len(set(items)) == 1 else str(items)


def verdict(rows: pd.DataFrame) -> list[str]:
    """A plain sentence per eps: does success fall from t=0 to the last t, and is the fall more
    than the transfer attack explains (else it is gradient masking). Counts of images shown."""
    direct, transfer = pivot(rows, "unrolled", "success"), pivot(rows, "transfer", "success")
    n = int(rows["total"].max())
    t_max = max(direct.columns)
    if t_max == 0:
        return ["Only t=0 was attacked."]
    lines = [f"Verdict per eps (t=0 vs t={t_max}, in images of {n}):", ""]
    for eps in direct.index:
        d0, dt, tt = (
            int(v) for v in (direct.loc[eps, 0], direct.loc[eps, t_max], transfer.loc[eps, t_max])
        )
        if dt >= d0:
            text = f"no robustness gain: {dt}/{n} succeed at t={t_max}, {d0}/{n} at t=0"
        elif dt < tt:
            text = (
                f"success falls from {d0}/{n} to {dt}/{n} at t={t_max}, but the transfer "
                f"attack reaches {tt}/{n}: gradient masking, not robustness"
            )
        else:
            text = (
                f"success falls from {d0}/{n} to {dt}/{n} at t={t_max}; the transfer attack "
                f"reaches {tt}/{n}, so the fall is not explained by masked gradients"
            )
        lines.append(f"- eps={eps:g}: {text}")
    return lines
