"""The straightforward loop: METHOD.md sections 2-3 the way the reference code computes them.

Eager, autograd everywhere, and every prediction and error gradient at every timestep, the last
one included. It shares no code with the engine (core/loop.py, timestep.py; only the
PredictiveNet's modules and hyperparameters), hooks the encoders itself, and works for any
PredictiveNet. It is the baseline that `pcnets bench` measures the engine against and that the
fast-path tests match.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pcnets.core.guards import check_reduction
from pcnets.core.pnet import PredictiveNet
from pcnets.core.run_state import Hyper


def reference_run(
    pnet: PredictiveNet,
    x: Tensor,
    timesteps: int = 10,
    *,
    error_reduction: str | None = None,
    gradient_scaling: bool | None = None,
    random_init: bool | None = None,
    alpha_normalization: str | None = None,
    hyper: Hyper | None = None,
) -> list[Tensor]:
    """Logits at timesteps 0..T of ``pnet`` on [0, 1] images ``x``, by the straightforward loop.

    The options mean what they mean in ``PredictiveNet.steps``; the result is detached.
    """
    reduction = check_reduction(error_reduction or pnet.error_reduction)
    scaling = pnet.gradient_scaling if gradient_scaling is None else gradient_scaling
    rand = pnet.random_init if random_init is None else random_init
    relative = (alpha_normalization or pnet.alpha_normalization) == "relative"
    hyper = hyper or pnet.hyper()
    if scaling:
        pnet.estimate_windows(tuple(x.shape[-2:]))
    n = pnet.num_encoders
    stored = {"prev": [None] * n, "pred": [None] * n, "grad": [None] * n}  # timestep t-1
    now: dict = {}

    def hook(i: int, ff: Tensor) -> Tensor:
        beta, lam, alpha = hyper.beta[i], hyper.lam[i], hyper.alpha[i]
        if now["t"] == 0:
            e = torch.randn_like(ff) if rand else ff
        else:
            old_pred, grad, prev = stored["pred"], stored["grad"][i], stored["prev"][i]
            if scaling:
                k = old_pred[i].numel() if reduction == "batch_mean" else old_pred[i][0].numel()
                alpha = alpha * (k / float(pnet.window[i]) ** 0.5)  # K / sqrt(C), METHOD.md 3
            if relative:  # alpha * ||e(t-1)|| * g / ||g||, per sample (0 where g is 0)
                sizes = [(p.norm(), g.norm()) for p, g in zip(prev, grad, strict=True)]
                scales = [float(p / g) if g > 0 else 0.0 for p, g in sizes]
                grad = torch.stack([g * c for g, c in zip(grad, scales, strict=True)])
            if i == n - 1:  # the top encoder: no feedback, memory share 1 - beta
                e = beta * ff + (1 - beta) * prev - alpha * grad
            else:
                e = beta * ff + lam * old_pred[i + 1] + (1 - beta - lam) * prev - alpha * grad
        # e_n(t) becomes a leaf of the autograd graph, as in the reference code, and flows on up.
        leaf = e.detach().requires_grad_(True)
        target = now["e0"] if i == 0 else now["e"][i - 1]
        pred = pnet.decoders[i](leaf)
        per_sample = ((pred - target) ** 2).flatten(1).mean(1)
        loss = per_sample.sum() if reduction == "per_sample" else per_sample.mean()
        (grad_i,) = torch.autograd.grad(loss, leaf)
        now["e"][i], now["pred"][i], now["grad"][i] = leaf.detach(), pred.detach(), grad_i
        return leaf

    modules = dict(pnet.backbone.named_modules())
    handles = [
        modules[name].register_forward_hook(lambda m, inp, out, i=i: hook(i, out))
        for i, name in enumerate(pnet.encoder_names)
    ]
    logits = []
    try:
        with torch.enable_grad():
            for t in range(timesteps + 1):
                e0 = pnet.normalize(x).detach()
                now.update(t=t, e0=e0, e=[None] * n, pred=[None] * n, grad=[None] * n)
                logits.append(pnet.backbone(e0).detach())
                stored = {"prev": now["e"], "pred": now["pred"], "grad": now["grad"]}
    finally:
        for h in handles:
            h.remove()
    return logits
