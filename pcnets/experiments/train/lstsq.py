"""Closed-form ridge fit of linear decoders (train.solver=lstsq; linear.py says which decoders).

For a linear decoder eq. 3 is a least-squares problem. One pass over the features accumulates,
per decoder and in float64, the normal equations A = X^T X and B = X^T Y (X: input patches plus a
ones column for the bias, Y: target pixels); the solution is w = (A + lam I) \\ B, lam = ridge *
mean(diag A) on the weights only (the bias is not penalised). The ridge of each decoder is chosen
from train.lstsq.ridges on every `fold`-th training batch (fitted on the others, all in closed
form), then the fit uses every batch. The float64 solve matters: with a small ridge, a float32
solve of the deepest EfficientNet decoder loses half its held-out R^2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from pcnets.experiments.train.linear import linear_parts, patches, set_from_matrix
from pcnets.runtime.distributed import all_reduce_sum


class NormalEquations:
    """Running X^T X, X^T Y (bias row and column last) and sum of y^2 of one decoder, float64."""

    def __init__(self, dim: int, out: int) -> None:
        self.xtx = torch.zeros(dim + 1, dim + 1, dtype=torch.float64)
        self.xty = torch.zeros(dim + 1, out, dtype=torch.float64)  # last row: sum of y
        self.y_sq = torch.zeros(out, dtype=torch.float64)
        self.rows = 0

    def add(self, x: Tensor, y: Tensor) -> None:
        """Add n rows: patches x [D, n] and targets y [C_out, n]."""
        x, y = x.double(), y.double()
        d, xs = x.shape[0], x.sum(1).cpu()
        self.xtx[:d, :d] += (x @ x.T).cpu()
        self.xtx[:d, d] += xs
        self.xtx[d, :d] += xs
        self.xtx[d, d] += x.shape[1]
        self.xty[:d] += (x @ y.T).cpu()
        self.xty[d] += y.sum(1).cpu()
        self.y_sq += (y * y).sum(1).cpu()
        self.rows += x.shape[1]

    def merge(self, other: NormalEquations) -> None:
        """Add another accumulator's sums (another fold or process)."""
        for name in ("xtx", "xty", "y_sq"):
            getattr(self, name).add_(getattr(other, name))
        self.rows += other.rows

    def all_reduce(self) -> None:
        """Sum the equations of every torchrun process (a no-op for one process)."""
        for name in ("xtx", "xty", "y_sq"):
            setattr(self, name, all_reduce_sum(getattr(self, name)))
        self.rows = int(all_reduce_sum(self.rows))

    def solve(self, ridge: float) -> Tensor:
        """[D + 1, C_out] solution of (A + lam I) w = B, lam = ridge * mean(diag A) (floored at
        1e-12, so all-zero inputs still solve), bias not penalised."""
        a = self.xtx.clone()
        a.diagonal()[:-1] += ridge * a.diagonal()[:-1].mean().clamp_min(1e-12)
        return torch.linalg.solve(a, self.xty)

    def sse(self, mat: Tensor) -> float:
        """The squared error of the solution `mat` summed over these rows and channels."""
        mat = mat.double()
        return float(self.y_sq.sum() - 2 * (mat * self.xty).sum() + (mat * (self.xtx @ mat)).sum())

    def r2(self, mat: Tensor) -> float:
        """R^2 = 1 - SSE / SST of `mat` on these rows, SST about their per-channel mean."""
        return float(1 - self.sse(mat) / (self.y_sq - self.xty[-1] ** 2 / self.rows).sum())


class DecoderFit(NamedTuple):
    """One decoder's fit: the ridge used, MSE and R^2 on the fitted rows, R^2 on the
    ridge-selection fold (fitted without it; nan when the ridge was given), fitted rows."""

    ridge: float
    train_mse: float
    train_r2: float
    fold_r2: float
    rows: int


class LeastSquares:
    """The normal equations of every decoder (decoder i maps e_{i+1} to e_i) over feature batches
    [e_0 .. e_N]: every `fold`-th batch apart for choosing ridges (fold 0: none apart).
    `max_rows` keeps that many random output pixels per image (None: all of them)."""

    def __init__(
        self, decoders: Sequence[nn.Module], max_rows: int | None, seed: int, fold: int
    ) -> None:
        convs = [linear_parts(d, n)[1] for n, d in enumerate(decoders, start=1)]
        shapes = [(c.in_channels * c.kernel_size[0] ** 2, c.out_channels) for c in convs]
        self.decoders, self.max_rows, self.fold = list(decoders), max_rows, fold
        self.main = [NormalEquations(*s) for s in shapes]
        self.held = [NormalEquations(*s) for s in shapes]
        self.gen = torch.Generator().manual_seed(seed)
        self.batches = 0

    @torch.no_grad()
    def add(self, feats: Sequence[Tensor]) -> None:
        """Add one batch of features e_0 .. e_N to every decoder's equations."""
        held = self.fold and self.batches % self.fold == self.fold - 1
        eqs = self.held if held else self.main
        for i, (dec, eq) in enumerate(zip(self.decoders, eqs, strict=True)):
            target = feats[i].float().flatten(2)  # [B, C, H*W]
            pixels = None
            if self.max_rows is not None and target.shape[2] > self.max_rows:
                noise = torch.rand(target.shape[0], target.shape[2], generator=self.gen)
                pixels = noise.argsort(dim=1)[:, : self.max_rows].to(target.device)
                target = target.gather(2, pixels[:, None].expand(-1, target.shape[1], -1))
            x = patches(dec, feats[i + 1].float(), pixels)  # [B, D, n]
            if x.shape[2] != target.shape[2]:
                raise ValueError(f"decoder {i + 1}: {x.shape[2]} outputs, target {target.shape}")
            eq.add(x.transpose(0, 1).flatten(1), target.transpose(0, 1).flatten(1))
        self.batches += 1

    def solve(self, ridges: Sequence[float], ridge: float | None = None) -> list[DecoderFit]:
        """Fit every decoder in place (after summing over processes): the given ridge, or per
        decoder the best of `ridges` on the held-apart batches; then the fit on all batches."""
        for eq in (*self.main, *self.held):
            eq.all_reduce()
        chosen, fold_r2 = [], []
        for m, h in zip(self.main, self.held, strict=True):
            if ridge is not None or h.rows == 0 or m.rows == 0:
                chosen.append(float(ridge if ridge is not None else min(ridges)))
                fold_r2.append(float("nan"))
                continue
            best = max(((r, h.r2(m.solve(r))) for r in ridges), key=lambda t: t[1])
            chosen.append(best[0])
            fold_r2.append(best[1])
        fits = []
        for n, (dec, m, h) in enumerate(zip(self.decoders, self.main, self.held, strict=True)):
            m.merge(h)
            mat = m.solve(chosen[n])
            set_from_matrix(linear_parts(dec, n + 1)[1], mat)
            mse = m.sse(mat) / max(m.rows * mat.shape[1], 1)
            fits.append(DecoderFit(chosen[n], mse, m.r2(mat), fold_r2[n], m.rows))
        return fits
