"""A decoder's bilinear x2 upsampling and 3x3 ConvTranspose2d in one convolution at the input's
resolution (the polyphase form): exact, and without the upsampled map. Private to core/kernels.py
(the one door to the fast kernels).

Bilinear x2 upsampling (align_corners=False) makes each output pixel a fixed mix of the input
pixels i-1, i, i+1 along each axis, so ConvT3x3(Up(e)) is, for each of the four output phases
(row and column parity), a 3x3 convolution of e itself: one conv2d with 4 x C_out channels, then
pixel_shuffle. Only the two outermost output lines on each side read the upsampled map's zero
padding or its clamped border; they are recomputed the plain way on thin strips. The adjoint is
the transpose of the same split: pixel_unshuffle and conv_transpose2d inside, strips on the border.
Same numbers as Up then ConvT up to float rounding. It pays where the upsampled input outweighs
the phase channels (4 x C_out <= C_in): decoder 1 of EfficientNet (32 -> 3 channels) at 224 px
then skips a 32-channel 224 x 224 map in both directions (Lite0, batch 8, channels_last: forward
and adjoint 68 -> 17 ms); with more output channels the plain kernels were as fast or faster.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pcnets.core.shapes import layout_of

# COEF[p][a][k]: weight of input pixel i-1+a in ConvT tap k's upsampled pixel, output phase p.
COEF = (
    ((0.0, 0.25, 0.75), (0.75, 0.75, 0.25), (0.25, 0.0, 0.0)),
    ((0.0, 0.0, 0.25), (0.25, 0.75, 0.75), (0.75, 0.25, 0.0)),
)
MIN_SIDE = 8  # below this the strips cost more than the upsampled map saves
_PHASES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def pays(up: nn.Upsample | None, c: nn.ConvTranspose2d, e_shape: torch.Size) -> bool:
    """Whether the polyphase form is the faster one: it ``fits`` and 4 x C_out <= C_in."""
    return fits(up, c, e_shape) and 4 * c.out_channels <= c.in_channels


def fits(up: nn.Upsample | None, c: nn.ConvTranspose2d, e_shape: torch.Size) -> bool:
    """Whether the decoder is bilinear x2 then ConvT k3 s1 p1 (no groups, dilation or output
    padding) and the input at least MIN_SIDE pixels on each side."""
    if up is None or up.align_corners or len(e_shape) != 4 or min(e_shape[-2:]) < MIN_SIDE:
        return False
    scale = up.scale_factor if isinstance(up.scale_factor, tuple) else (up.scale_factor,) * 2
    return (
        tuple(float(s) for s in scale) == (2.0, 2.0)
        and c.kernel_size == (3, 3)
        and c.stride == (1, 1)
        and c.padding == (1, 1)
        and c.dilation == (1, 1)
        and c.output_padding == (0, 0)
        and c.groups == 1
    )


def up_conv(up: nn.Upsample, c: nn.ConvTranspose2d, e: Tensor, bias: bool = True) -> Tensor:
    """ConvT(Up(e)) (+ the bias unless ``bias`` is False), computed at e's resolution."""
    wp, bp = _phase_weights(c, e)
    b = c.bias if bias else None
    out = F.pixel_shuffle(F.conv2d(e, wp, bp if bias else None, 1, 1), 2)
    for rows, cols in _BORDER:
        out[..., rows, cols] = _plain(up, c, e[..., _lo(rows), _lo(cols)], b)[..., rows, cols]
    return out


def up_conv_adjoint(
    up: nn.Upsample, c: nn.ConvTranspose2d, w: Tensor, e_shape: torch.Size
) -> Tensor:
    """Up^T(ConvT^T(w)) for ``w`` shaped like the prediction: the transpose of ``up_conv``."""
    wp, _ = _phase_weights(c, w)
    inner = w.clone()
    for rows, cols in _BORDER_ONCE:
        inner[..., rows, cols] = 0
    g = F.conv_transpose2d(F.pixel_unshuffle(inner, 2), wp, None, 1, 1)
    for rows, cols in _BORDER_ONCE:
        strip = torch.zeros_like(w[..., _hi(rows), _hi(cols)])
        strip[..., rows, cols] = w[..., rows, cols]
        lo = torch.Size((*e_shape[:2], strip.shape[-2] // 2, strip.shape[-1] // 2))
        g_hi = F.conv2d(strip, c.weight, None, c.stride, c.padding, c.dilation, c.groups)
        g[..., _lo(rows), _lo(cols)] += up_transpose(up, g_hi, lo)
    return g


def up_transpose(up: nn.Upsample, grad: Tensor, e_shape: torch.Size) -> Tensor:
    """Up^T: the bilinear upsampling's own backward kernel, from ``grad`` to ``e_shape``."""
    scale = up.scale_factor
    sh, sw = (scale, scale) if not isinstance(scale, tuple) else scale
    return torch.ops.aten.upsample_bilinear2d_backward(
        grad,
        list(grad.shape[-2:]),
        list(e_shape),
        bool(up.align_corners),
        float(sh),
        float(sw),
    )


# The output's two outer lines on each side, as (rows, columns) slices; _BORDER_ONCE covers each
# pixel once (the columns' strips leave out the rows' corners).
_ALL, _FIRST, _LAST = slice(None), slice(0, 2), slice(-2, None)
_BORDER = ((_FIRST, _ALL), (_LAST, _ALL), (_ALL, _FIRST), (_ALL, _LAST))
_BORDER_ONCE = ((_FIRST, _ALL), (_LAST, _ALL), (slice(2, -2), _FIRST), (slice(2, -2), _LAST))


def _lo(s: slice) -> slice:
    """The input lines that the output lines ``s`` of a border strip depend on."""
    return _FIRST if s == _FIRST else _LAST if s == _LAST else _ALL


def _hi(s: slice) -> slice:
    """The upsampled lines of the strip that holds the output lines ``s`` (4 at a border)."""
    return slice(0, 4) if s == _FIRST else slice(-4, None) if s == _LAST else _ALL


def _plain(up: nn.Upsample, c: nn.ConvTranspose2d, strip: Tensor, bias: Tensor | None) -> Tensor:
    return F.conv_transpose2d(up(strip), c.weight, bias, 1, 1)


def _phase_weights(conv: nn.ConvTranspose2d, like: Tensor) -> tuple[Tensor, Tensor | None]:
    """The 4 x C_out phase kernels of ``conv`` (cached per weight version and layout)."""
    w, b = conv.weight, conv.bias
    layout = layout_of(like)
    key = (w.data_ptr(), w._version, w.dtype, w.device, layout)
    key += (None,) if b is None else (b.data_ptr(), b._version)
    entry = _PHASES.get(conv)
    if entry is None or entry[0] != key:
        coef = torch.tensor(COEF, dtype=torch.float64, device=w.device)
        wp = torch.einsum("yak,xbl,iokl->oyxiab", coef, coef, w.detach().double())
        wp = wp.reshape(-1, w.shape[0], 3, 3).to(w.dtype).contiguous(memory_format=layout)
        bp = None if b is None else b.detach().repeat_interleave(4)
        entry = (key, wp, bp)
        _PHASES[conv] = entry
    return entry[1], entry[2]
