"""A linear decoder ([bilinear Upsample] -> stride-1 ConvTranspose2d with bias, no ReLU) as a matrix
product on input patches, so that eq. 3 becomes a least-squares problem (lstsq.py).

ConvTranspose2d(k, stride 1, padding p) is a k x k correlation with padding k-1-p and the flipped,
transposed kernel. So output pixel j of one image is mat[:-1].T @ patch_j + mat[-1], with patch_j
the C_in*k*k window (unfold's order: channel, dy, dx) of the upsampled input around j and
mat = to_matrix(conv) (bias last).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pcnets.errors import PcnetsError


def linear_parts(decoder: nn.Module, number: int = 1) -> tuple[list[nn.Module], nn.ConvTranspose2d]:
    """(the Upsample modules before the ConvT, the ConvT) of a linear decoder; a PcnetsError that
    names decoder `number` and the optimizer solver for anything else (a ReLU, a stride)."""
    *pre, conv = list(decoder) if isinstance(decoder, nn.Sequential) else [decoder]
    hint = "; use train.solver=sgd (the optimizer loop) for this network"
    for m in pre:
        if not (isinstance(m, nn.Upsample) and m.mode in ("bilinear", "nearest")):
            raise PcnetsError(
                f"train.solver=lstsq: decoder {number} is not linear ({type(m).__name__} before "
                f"its ConvTranspose2d){hint}"
            )
    if not isinstance(conv, nn.ConvTranspose2d):
        raise PcnetsError(
            f"train.solver=lstsq: decoder {number} is not linear (it ends in "
            f"{type(conv).__name__}, e.g. a ReLU, not a ConvTranspose2d){hint}"
        )
    k, p = conv.kernel_size, conv.padding
    layout = (conv.stride, conv.dilation, conv.output_padding, conv.groups)
    if layout != ((1, 1), (1, 1), (0, 0), 1) or conv.bias is None or k != k[::-1] or p != p[::-1]:
        raise PcnetsError(
            f"train.solver=lstsq: decoder {number}'s ConvTranspose2d is not stride 1 with a bias "
            f"and a square kernel{hint}"
        )
    if p[0] >= k[0]:
        raise PcnetsError(f"train.solver=lstsq: decoder {number}'s padding >= its kernel{hint}")
    return pre, conv


def patches(decoder: nn.Module, e_in: Tensor, pixels: Tensor | None = None) -> Tensor:
    """[B, C_in*k*k, n] input patches of a batch e_in [B, C_in, h, w] at output pixels `pixels`
    ([B, n] flat indices, one row per image; None: every pixel), in e_in's dtype."""
    pre, conv = linear_parts(decoder)
    u = e_in
    for m in pre:
        u = m(u)
    k, q = conv.kernel_size[0], conv.kernel_size[0] - 1 - conv.padding[0]
    if pixels is None:
        return F.unfold(u, k, padding=q)
    u = F.pad(u, (q, q, q, q))
    b, c, hp, wp = u.shape
    w = wp - k + 1
    base = pixels // w * wp + pixels % w  # [B, n] top-left corner in the padded map
    offsets = torch.tensor([dy * wp + dx for dy in range(k) for dx in range(k)], device=u.device)
    index = (offsets[None, :, None] + base[:, None, :]).reshape(b, 1, -1).expand(b, c, -1)
    return u.reshape(b, c, -1).gather(2, index).reshape(b, c * k * k, -1)


def to_matrix(conv: nn.ConvTranspose2d) -> Tensor:
    """The [C_in*k*k + 1, C_out] matrix of a ConvT, bias last (inverse of `set_from_matrix`)."""
    w = conv.weight.detach().flip(2, 3).transpose(0, 1)  # [C_out, C_in, k, k]
    return torch.cat([w.reshape(w.shape[0], -1).T, conv.bias.detach()[None]], dim=0)


@torch.no_grad()
def set_from_matrix(conv: nn.ConvTranspose2d, mat: Tensor) -> None:
    """Write a [C_in*k*k + 1, C_out] solution into the ConvT's weight and bias, in place."""
    c_in, c_out, k, _ = conv.weight.shape
    mat = mat.to(conv.weight)
    conv.weight.copy_(mat[:-1].T.reshape(c_out, c_in, k, k).transpose(0, 1).flip(2, 3))
    conv.bias.copy_(mat[-1])
