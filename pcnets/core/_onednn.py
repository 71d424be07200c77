"""Private to core/kernels.py (the one door to the fast kernels): oneDNN's own fp32 CPU kernels,
reached through private torch ops. A ConvTranspose2d with its weight prepacked once (oneDNN
otherwise reorders the weight at every call, which costs as much as the convolution itself for
the large decoder kernels), and a convolution with its activation in one call.
"""

from __future__ import annotations

import weakref

import torch
from torch import Tensor, nn

from pcnets.core.shapes import layout_of

# One packed copy per decoder, tied to the weight's storage and version (training or loading
# repacks it) and to the input's shape.
_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def usable(u: Tensor, w: Tensor) -> bool:
    """Whether oneDNN's own fp32 CPU kernels may run on input ``u`` with weight ``w``: fp32 4-d
    on a CPU, oneDNN on, and no autocast or torch.compile around."""
    return (
        not torch.compiler.is_compiling()
        and u.device.type == "cpu"
        and u.dtype == torch.float32
        and w.dtype == torch.float32
        and u.dim() == 4
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and not torch.is_autocast_enabled("cpu")
        and hasattr(torch.ops.mkldnn, "_convolution_transpose_pointwise")
    )


def packing_pays(conv: nn.ConvTranspose2d, u: Tensor) -> bool:
    """The packed kernel works in channels_last: it pays when the weight outweighs the feature
    maps that must be brought to that layout and back."""
    w = conv.weight
    return usable(u, w) and w.numel() > u.numel() * (1 + w.shape[1] * conv.groups / w.shape[0])


def packed_conv_transpose(conv: nn.ConvTranspose2d, u: Tensor, relu: bool) -> Tensor:
    """ConvTranspose2d (+ ReLU) of ``u`` with the prepacked weight, in ``u``'s layout."""
    w = conv.weight
    key = (w.data_ptr(), w._version, w.dtype, tuple(u.shape[1:]))
    entry = _PACKED.get(conv)
    if entry is None or entry[0] != key:
        packed = torch.ops.mkldnn._reorder_convolution_transpose_weight(
            w, list(conv.padding), list(conv.output_padding), list(conv.stride),
            list(conv.dilation), conv.groups, list(u.shape),
        )  # fmt: skip
        entry = (key, packed)
        _PACKED[conv] = entry
    out = torch.ops.mkldnn._convolution_transpose_pointwise(
        u, entry[1], conv.bias, list(conv.padding), list(conv.output_padding),
        list(conv.stride), list(conv.dilation), conv.groups, "relu" if relu else "none", [], "",
    )  # fmt: skip
    # oneDNN hands back channels_last; keep the caller's layout (and with it the numerics).
    return out.contiguous(memory_format=layout_of(u))


# oneDNN's name and scalars of each activation it can compute inside a convolution
POINTWISE = {"relu": ("relu", []), "relu6": ("hardtanh", [0.0, 6.0]), "silu": ("swish", [])}


def conv_pointwise(
    x: Tensor, w: Tensor, b: Tensor | None, padding, stride, dilation, groups: int, act: str
) -> Tensor:
    """act(conv2d(x)) in one oneDNN call."""
    attr, scalars = POINTWISE[act]
    return torch.ops.mkldnn._convolution_pointwise(
        x, w, b, list(padding), list(stride), list(dilation), groups, attr, scalars, ""
    )
