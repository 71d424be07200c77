"""Build-time checks of a PredictiveNet: the feature-map shapes of its encoders (a dry run of the
backbone), that each decoder maps its encoder's output to its target's shape, and in-place
activations turned off."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pcnets.errors import PcnetsError


def layout_of(x: Tensor) -> torch.memory_format:
    """channels_last for a 4-d tensor laid out NHWC (and not also NCHW-contiguous), else
    contiguous_format: the layout that outputs of ``x`` should keep."""
    cl = torch.channels_last
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=cl):
        return cl
    return torch.contiguous_format


def param_like(module: nn.Module) -> dict:
    """dtype and device of a module's parameters, for dry-run inputs."""
    p = next(module.parameters(), None)
    return {"dtype": p.dtype, "device": p.device} if p is not None else {}


@torch.no_grad()
def probe(
    backbone: nn.Module, encoders: Sequence[str], channels: int, size: int | tuple[int, int]
) -> list[tuple[int, int, int]]:
    """C,H,W of e_0..e_N for a probe image of ``size`` with ``channels`` channels, from a dry
    run of the backbone (decoder checks, default decoders)."""
    height, width = hw(size)
    shapes: list = [None] * len(encoders)
    modules = dict(backbone.named_modules())
    handles = [
        modules[m].register_forward_hook(
            lambda mod, inp, out, i=i: shapes.__setitem__(i, tuple(out.shape[1:]))
        )
        for i, m in enumerate(encoders)
    ]
    was_training = backbone.training
    backbone.eval()
    try:
        backbone(torch.zeros(1, channels, height, width, **param_like(backbone)))
    finally:
        backbone.train(was_training)
        for h in handles:
            h.remove()
    for i, shape in enumerate(shapes):
        if shape is None or len(shape) != 3:
            raise PcnetsError(f"encoder {encoders[i]!r} does not output a [B,C,H,W] feature map")
    return [(channels, height, width), *shapes]


@torch.no_grad()
def check_decoders(
    decoders: Sequence[nn.Module], shapes: list, encoders: Sequence[str], like: dict
) -> None:
    """Each decoder maps its encoder's output (``shapes``, from probe) to its target's shape."""
    for i, dec in enumerate(decoders):
        src, want = shapes[i + 1], shapes[i]
        try:
            got = tuple(dec(torch.zeros(1, *src, **like)).shape[1:])
        except RuntimeError as exc:
            raise PcnetsError(
                f"decoder {i + 1} cannot take encoder {encoders[i]!r}'s output "
                f"{src}: {str(exc).splitlines()[0]}"
            ) from None
        if got != want:
            raise PcnetsError(
                f"decoder {i + 1} maps {encoders[i]!r} {src} to {got}, but its "
                f"target has shape {want}: fix the decoder spec "
                "(kernel/stride/padding/upsample)"
            )


def hw(size) -> tuple[int, int]:
    """(H, W) from an int or a pair."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def make_out_of_place(model: nn.Module) -> None:
    """In-place activations would overwrite e_n(t) and break autograd: turn them off."""
    for m in model.modules():
        if getattr(m, "inplace", False) is True:
            m.inplace = False
