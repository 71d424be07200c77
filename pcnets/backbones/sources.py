"""One model constructor per weight source (backbone.source: torchvision, timm, the Lite0
package): each gives the architecture with random weights, the preprocessing its published
weights expect (resize, crop, interpolation, mean, std) and their URL; make_transform turns that
preprocessing into the eval transform.
"""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig
from torch import nn
from torchvision import transforms as T

from pcnets.errors import PcnetsError, suggest

# ---- weights: where the published ones come from, and what preprocessing they expect -------


def _torchvision_model(cfg: DictConfig) -> tuple[nn.Module, dict, str | None]:
    import torchvision

    try:
        model = torchvision.models.get_model(cfg.arch, weights=None)
    except ValueError:
        raise PcnetsError(f"torchvision has no model {cfg.arch!r}") from None
    weights = torchvision.models.get_model_weights(cfg.arch)[cfg.weights_tag or "DEFAULT"]
    tf = weights.transforms()
    meta = {
        "resize": tf.resize_size[0],
        "crop": tf.crop_size[0],
        "interpolation": tf.interpolation.value,
        "mean": list(tf.mean),
        "std": list(tf.std),
    }
    return model, meta, weights.url


def _timm_model(cfg: DictConfig) -> tuple[nn.Module, dict, str | None]:
    import timm

    if not timm.is_model(cfg.arch):
        raise PcnetsError(f"timm has no model {cfg.arch!r}{suggest(cfg.arch, timm.list_models())}")
    name = f"{cfg.arch}.{cfg.weights_tag}" if cfg.weights_tag else cfg.arch
    model = timm.create_model(name, pretrained=False)
    pc = model.pretrained_cfg
    size = pc["input_size"][-1]
    meta = {
        "resize": int(round(size / pc.get("crop_pct", 0.875))),
        "crop": size,
        "interpolation": pc.get("interpolation", "bilinear"),
        "mean": list(pc["mean"]),
        "std": list(pc["std"]),
    }
    return model, meta, pc.get("url") or None


def _lite0_package_model(cfg: DictConfig) -> tuple[nn.Module, dict, str | None]:
    """timm's tf_efficientnet_lite0 architecture; the weights come from an installed package."""
    import timm

    return timm.create_model("tf_efficientnet_lite0", pretrained=False), {}, None


SOURCES: dict[str, Callable[[DictConfig], tuple[nn.Module, dict, str | None]]] = {
    "torchvision": _torchvision_model,
    "timm": _timm_model,
    "efficientnet_lite0_package": _lite0_package_model,
}

# ---- the transform that the weights expect -------------------------------------------------


def make_transform(meta: dict) -> T.Compose:
    """PIL image -> [0,1] tensor: resize the short side, center crop (normalising is the net's)."""
    interp = T.InterpolationMode(meta.get("interpolation", "bilinear"))
    return T.Compose(
        [T.Resize(meta["resize"], interpolation=interp), T.CenterCrop(meta["crop"]), T.ToTensor()]
    )
