"""Decoder quality on the held-out images (METHOD.md section 5): each decoder's MSE and its
explained variance R^2 = 1 - MSE / Var(target), Var about the target's per-channel mean over the
held-out images. R^2 <= 0: the decoder predicts no better than a constant map."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pcnets.core.dynamics import prediction_error
from pcnets.progress import progress
from pcnets.runtime.distributed import all_reduce_sum, is_main, rank, shard_indices, world_size


class DecoderStack(nn.Module):
    """The decoders as one module (what DDP wraps): e_1..e_N in, predictions of e_0..e_{N-1} out."""

    def __init__(self, decoders: nn.ModuleList):
        super().__init__()
        self.decoders = decoders

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        return [dec(feats[i + 1]) for i, dec in enumerate(self.decoders)]


def decoder_errors(preds: Sequence[Tensor], feats: Sequence[Tensor]) -> list[Tensor]:
    """Per-sample MSE ([B], float32) of each decoder's prediction against the encoder below."""
    return [prediction_error(p.float(), feats[i].float()) for i, p in enumerate(preds)]


class Explained:
    """Running sums for one decoder's R^2: squared error, and the target's per-channel sum and
    sum of squares (float64), so that R^2 over many batches equals R^2 over their union."""

    def __init__(self, channels: int) -> None:
        self.sums = torch.zeros(2 * channels + 2, dtype=torch.float64)  # s1 | s2 | sse | n

    def add(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch: prediction and target [B, C, H, W]."""
        y = target.double().transpose(0, 1).flatten(1)  # [C, B*H*W]
        err = (pred.double().transpose(0, 1).flatten(1) - y).pow(2).sum()
        part = torch.cat([y.sum(1), (y * y).sum(1), err[None], y.new_tensor([y.shape[1]])])
        self.sums += part.cpu()

    def mse(self, sums: Tensor | None = None) -> float:
        s = self.sums if sums is None else sums
        c = (len(s) - 2) // 2
        return float(s[2 * c] / max(float(s[-1]) * c, 1.0))

    def r2(self, sums: Tensor | None = None) -> float:
        s = self.sums if sums is None else sums
        return explained_variance(s)


def explained_variance(sums: Tensor) -> float:
    """R^2 = 1 - SSE / SST from [sum_c y, sum_c y^2, SSE, n per channel] (Explained's layout)."""
    c = (len(sums) - 2) // 2
    s1, s2, sse, n = sums[:c], sums[c : 2 * c], sums[2 * c], sums[-1]
    sst = (s2 - s1**2 / n.clamp_min(1)).sum()
    return float(1 - sse / sst) if sst > 0 else float("nan")


def out_channels(decoder: nn.Module) -> int:
    """The channels a decoder predicts: those of its last (transposed) convolution."""
    convs = [m for m in decoder.modules() if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d))]
    return convs[-1].out_channels


@torch.no_grad()
def validate(
    stack: DecoderStack, feats, indices: Sequence[int], batch: int
) -> tuple[list[float], list[float], int]:
    """(MSE per decoder, R^2 per decoder, images) over the held-out images; sharded over the
    torchrun processes, their sums all-reduced, so K processes report one process's numbers."""
    mine = [indices[i] for i in shard_indices(len(indices), rank(), world_size())]
    acc = [Explained(out_channels(d)) for d in stack.decoders]
    count = 0
    bar = progress(
        feats.batches(mine, batch),
        total=math.ceil(len(mine) / batch),
        desc="held-out",
        unit="batch",
        leave=False,
        show=is_main(),
    )
    for level in bar:
        with feats.autocast():
            preds = stack(level)
        for i, p in enumerate(preds):
            acc[i].add(p.float(), level[i].float())
        count += level[0].shape[0]
    total = int(all_reduce_sum(count))
    sums = [all_reduce_sum(a.sums) for a in acc]
    return [acc[0].mse(s) for s in sums], [explained_variance(s) for s in sums], total
