"""Learning beta, lambda and alpha per encoder (METHOD.md section 6; paper appendix A.7).

The backbone and the decoders stay frozen. Per encoder n, three raw parameters give
s_b, s_l, s_m = sigmoid(raw) and beta, lambda, memory = s_b, s_l, s_m / (s_b + s_l + s_m), so the
three shares are positive and sum to 1 (hence beta + lambda < 1). The top encoder has no feedback:
its lambda is fixed to 0 (beta, memory = s_b, s_m / (s_b + s_m)). alpha = softplus(raw_alpha) keeps
alpha >= 0; near 0 softplus is ~exp, so small alphas move on a log scale. Adam minimises the
cross-entropy of noisy images through the unrolled dynamics (differentiable run): at the last
timestep (objective=last, default) or averaged over timesteps 1..T (objective=mean).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pcnets.core.pnet import Hyper, PredictiveNet
from pcnets.errors import PcnetsError, suggest

OBJECTIVES = ("last", "mean")
SHARE_FLOOR = 1e-7  # shares of exactly 0 map to this (a sigmoid never reaches 0)
Values = Tensor | Sequence[float] | float  # one value per encoder (or one for all)


# ---- the parametrisation -------------------------------------------------------------------


def shares_from_raw(raw: Tensor, lam_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(beta, lambda, memory) from raw parameters of shape [3, N]: sigmoids normalised to sum 1;
    ``lam_mask`` [N] is 0 where lambda is fixed to 0 (the top encoder)."""
    s = torch.sigmoid(raw)
    s_b, s_l, s_m = s[0], s[1] * lam_mask, s[2]
    total = s_b + s_l + s_m
    return s_b / total, s_l / total, s_m / total


def raw_from_shares(beta: Values, lam: Values, lam_mask: Values | None = None) -> Tensor:
    """Raw parameters [3, N] (float64) whose shares are ``beta``, ``lam``, 1 - beta - lam.

    The sigmoids are scaled so that the largest share maps to 0.5 (raw 0, the steepest point);
    shares of 0 become SHARE_FLOOR. Needs 0 <= beta, lam and beta + lam <= 1 per encoder.
    """
    beta = torch.as_tensor(beta, dtype=torch.float64).flatten()
    lam = torch.as_tensor(lam, dtype=torch.float64).flatten()
    if lam_mask is not None:
        lam = lam * torch.as_tensor(lam_mask, dtype=torch.float64)
    if beta.shape != lam.shape:
        raise PcnetsError(f"beta and lam need the same length, got {len(beta)} and {len(lam)}")
    memory = 1.0 - beta - lam
    shares = torch.stack([beta, lam, memory])
    if (shares < -1e-6).any():
        raise PcnetsError(
            f"need beta, lam >= 0 and beta + lam <= 1, got beta {beta.tolist()}, lam {lam.tolist()}"
        )
    shares = shares.clamp(min=SHARE_FLOOR)
    s = 0.5 * shares / shares.max(dim=0).values
    return torch.log(s) - torch.log1p(-s)


def softplus_inverse(alpha: Values) -> Tensor:
    """The raw value whose softplus is ``alpha`` (float64; alpha = 0 maps to ~1e-12)."""
    a = torch.as_tensor(alpha, dtype=torch.float64).flatten()
    if (a < 0).any():
        raise PcnetsError(f"alpha must be >= 0, got {a.tolist()}")
    a = a.clamp(min=1e-12)
    return torch.where(a > 20, a, torch.log(torch.expm1(a)))


class HyperParams(nn.Module):
    """Learnable per-encoder beta, lambda (top encoder: 0) and alpha; ``forward()`` -> Hyper."""

    def __init__(self, beta: Values, lam: Values, alpha: Values, learn_alpha: bool = True):
        super().__init__()
        n = torch.as_tensor(beta).numel()
        mask = torch.ones(n)
        mask[-1] = 0.0
        self.register_buffer("lam_mask", mask)
        self.raw = nn.Parameter(raw_from_shares(beta, lam, mask).float())
        raw_alpha = softplus_inverse(alpha).float().expand(n).clone()
        if learn_alpha:
            self.raw_alpha = nn.Parameter(raw_alpha)
        else:
            self.register_buffer("raw_alpha", raw_alpha)

    @classmethod
    def from_pnet(cls, pnet: PredictiveNet, learn_alpha: bool = True) -> HyperParams:
        h = pnet.hyper()
        return cls(h.beta.detach().cpu(), h.lam.detach().cpu(), h.alpha.detach().cpu(), learn_alpha)

    def shares(self) -> tuple[Tensor, Tensor, Tensor]:
        """(beta, lambda, memory), each [N]."""
        return shares_from_raw(self.raw, self.lam_mask)

    def alpha(self) -> Tensor:
        return F.softplus(self.raw_alpha)

    def forward(self) -> Hyper:
        beta, lam, _ = self.shares()
        return Hyper(beta, lam, self.alpha())

    def values(self) -> dict[str, list[float]]:
        """Current values as plain lists (beta, lam, memory, alpha)."""
        with torch.no_grad():
            beta, lam, memory = self.shares()
            return {
                "beta": beta.tolist(),
                "lam": lam.tolist(),
                "memory": memory.tolist(),
                "alpha": self.alpha().tolist(),
            }


# ---- the objective -------------------------------------------------------------------------


def objective(
    pnet: PredictiveNet, x: Tensor, y: Tensor, timesteps: int, hyper: Hyper, kind: str = "last"
) -> tuple[Tensor, Tensor]:
    """(loss, logits at T) of [0,1] images x through the unrolled dynamics: CE at t = T (last) or
    the mean CE over t = 1..T (mean; t = 0 when T = 0), with the graph kept for ``hyper``."""
    check_objective(kind)
    logits = pnet.run(x, timesteps, differentiable=True, hyper=hyper)
    used = logits[-1:] if kind == "last" or timesteps == 0 else logits[1:]
    loss = torch.stack([F.cross_entropy(z.float(), y) for z in used]).mean()
    return loss, logits[-1].detach()


def check_objective(kind: str) -> str:
    """``kind`` if it names an objective (last, mean), else a PcnetsError with a hint."""
    if kind not in OBJECTIVES:
        raise PcnetsError(
            f"tune.objective must be one of {list(OBJECTIVES)}, got {kind!r}"
            f"{suggest(str(kind), OBJECTIVES)}"
        )
    return kind


def batch_indices(n: int, batch: int, step: int, seed: int) -> list[int]:
    """The dataset indices of one tuning step: consecutive slices of a stream of per-epoch random
    permutations, so any step can be recomputed (resume) without replaying the others."""
    if n < 1:
        raise PcnetsError("tuning needs at least one image; check data.split / data.limit")
    out: list[int] = []
    pos = step * batch
    while len(out) < batch:
        epoch, offset = divmod(pos, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        take = perm[offset : offset + batch - len(out)].tolist()
        out += take
        pos += len(take)
    return out


# ---- the command ---------------------------------------------------------------------------
