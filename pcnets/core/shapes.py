"""Build-time checks of a PredictiveNet: the feature-map shapes of its encoders (a dry run of the
backbone), that each decoder maps its encoder's output to its target's shape, and in-place
activations turned off."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from pcnets.errors import PcnetsError

if TYPE_CHECKING:
    from pcnets.core.pnet import PredictiveNet


def memory_layout(x: Tensor) -> torch.memory_format:
    """channels_last for a 4-d tensor laid out NHWC (and not also NCHW-contiguous), else
    contiguous_format: the layout that outputs of ``x`` should keep."""
    cl = torch.channels_last
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=cl):
        return cl
    return torch.contiguous_format


def param_like(pnet: PredictiveNet) -> dict:
    """dtype and device of the backbone's parameters, for dry-run inputs."""
    p = next(pnet.backbone.parameters(), None)
    return {"dtype": p.dtype, "device": p.device} if p is not None else {}


@torch.no_grad()
def probe(pnet: PredictiveNet, size: int | tuple[int, int]) -> list[tuple[int, int, int]]:
    """C,H,W of e_0..e_N for a probe image of ``size`` (decoder checks, default decoders)."""
    height, width = _size(size)
    shapes: list = [None] * pnet.num_encoders
    modules = dict(pnet.backbone.named_modules())
    handles = [
        modules[m].register_forward_hook(
            lambda mod, inp, out, i=i: shapes.__setitem__(i, tuple(out.shape[1:]))
        )
        for i, m in enumerate(pnet.encoder_names)
    ]
    was_training = pnet.backbone.training
    pnet.backbone.eval()
    try:
        pnet.backbone(torch.zeros(1, pnet.mean.shape[1], height, width, **param_like(pnet)))
    finally:
        pnet.backbone.train(was_training)
        for h in handles:
            h.remove()
    for i, shape in enumerate(shapes):
        if shape is None or len(shape) != 3:
            raise PcnetsError(
                f"encoder {pnet.encoder_names[i]!r} does not output a [B,C,H,W] feature map"
            )
    return [(pnet.mean.shape[1], height, width), *shapes]


@torch.no_grad()
def check_decoders(pnet: PredictiveNet) -> None:
    for i, dec in enumerate(pnet.decoders):
        src, want = pnet.shapes[i + 1], pnet.shapes[i]
        try:
            got = tuple(dec(torch.zeros(1, *src, **param_like(pnet))).shape[1:])
        except RuntimeError as exc:
            raise PcnetsError(
                f"decoder {i + 1} cannot take encoder {pnet.encoder_names[i]!r}'s output "
                f"{src}: {str(exc).splitlines()[0]}"
            ) from None
        if got != want:
            raise PcnetsError(
                f"decoder {i + 1} maps {pnet.encoder_names[i]!r} {src} to {got}, but its "
                f"target has shape {want}: fix the decoder spec "
                "(kernel/stride/padding/upsample)"
            )


def _size(size) -> tuple[int, int]:
    """(H, W) from an int or a pair."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _make_out_of_place(model: nn.Module) -> None:
    """In-place activations would overwrite e_n(t) and break autograd: turn them off."""
    for m in model.modules():
        if getattr(m, "inplace", False) is True:
            m.inplace = False
