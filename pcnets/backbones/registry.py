"""The backbone registry: one YAML per entry under conf/backbone/, one loader per weight source.

An entry names a feedforward model, where its published weights come from (and with them the
eval transform and normalisation), the encoder cut points, and the decoder table. Anything not
in the registry works too: pass a torchvision/timm model name and a list of encoder modules.
Each source object (sources.py) gives the model, its preprocessing and its weights, all by one
weights_tag; weights.py reads and downloads state dicts.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from pcnets.backbones.hyper_file import load_hyper
from pcnets.backbones.sources import SOURCES, make_transform
from pcnets.config import compose, options
from pcnets.core.decoders import DecoderSpec, build_decoder, default_specs, report_quality
from pcnets.core.guards import check_timesteps
from pcnets.core.pnet import PredictiveNet
from pcnets.data import check_unseen
from pcnets.errors import PcnetsError, suggest

PC_KEYS = ("beta", "lam", "alpha", "error_reduction", "gradient_scaling", "random_init", "hyper")


# ---- building ----------------------------------------------------------------------------


def backbone_config(name: str, **overrides) -> DictConfig:
    """The registry entry ``name`` (conf/backbone/<name>.yaml) with ``overrides`` merged in.

    An unregistered name is a generic entry when ``encoders`` is given: source timm when timm
    knows the name, else torchvision; decoders by the default rule unless given.
    """
    known = options("backbone")
    if name in known:
        cfg = compose([f"backbone={name}"], "pnet").backbone
    elif overrides.get("encoders"):
        import timm

        cfg = compose(["backbone=generic"], "pnet").backbone
        cfg.name = cfg.arch = name
        cfg.source = "timm" if timm.is_model(name) else "torchvision"
    else:
        raise PcnetsError(
            f"unknown backbone {name!r}{suggest(name, known)}; known: {', '.join(known)}"
            " (or give encoders=[...] for any torchvision/timm model)"
        )
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise PcnetsError(f"unknown backbone options {sorted(unknown)}; known: {sorted(cfg)}")
    return OmegaConf.merge(cfg, overrides)


def build_from_config(cfg: DictConfig) -> PredictiveNet:
    """A PredictiveNet from a backbone config node (a registry entry, possibly overridden)."""
    missing = [k for k in cfg if OmegaConf.is_missing(cfg, k)]
    if missing:
        raise PcnetsError(
            f"backbone: {', '.join(f'backbone.{k}' for k in missing)} not set; backbone=generic "
            "needs a torchvision/timm model and its encoder modules, e.g. backbone.arch=resnet50 "
            "'backbone.encoders=[layer1,layer2,layer3,layer4]'"
        )
    if cfg.source not in SOURCES:
        raise PcnetsError(f"backbone.source must be one of {sorted(SOURCES)}, got {cfg.source!r}")
    if not cfg.encoders:
        raise PcnetsError(f"backbone {cfg.name!r} needs a list of encoder module names")
    source = SOURCES[cfg.source]
    model, meta = source.model(cfg)
    if cfg.pretrained:
        source.load_weights(model, cfg)
    if cfg.transform:
        meta = {**meta, **OmegaConf.to_container(cfg.transform, resolve=True)}
    missing = {"resize", "crop", "mean", "std"} - set(meta)
    if missing:
        raise PcnetsError(f"backbone {cfg.name!r}: transform lacks {sorted(missing)}")
    model.eval()
    pnet = PredictiveNet(
        model,
        list(cfg.encoders),
        None,
        meta["mean"],
        meta["std"],
        transform=make_transform(meta),
        name=cfg.name,
        probe_size=cfg.probe_size,
    )
    if cfg.decoders:
        try:
            specs = [DecoderSpec.from_dict(dict(d)) for d in OmegaConf.to_container(cfg.decoders)]
        except (TypeError, ValueError) as exc:
            raise PcnetsError(f"backbone {cfg.name!r}: bad decoder spec: {exc}") from None
    else:
        specs = default_specs(pnet.shapes)
    if len(specs) != len(cfg.encoders):
        raise PcnetsError(
            f"backbone {cfg.name!r}: {len(cfg.encoders)} encoders but {len(specs)} decoder specs"
        )
    pnet.set_decoders([build_decoder(s) for s in specs])
    return pnet


def apply_pc_config(pnet: PredictiveNet, pc: DictConfig | dict) -> PredictiveNet:
    """Hyperparameters, numerics and decoder/hyperparameter files from a `pc` config node."""
    pc = OmegaConf.create(pc) if isinstance(pc, dict) else pc
    for key in ("error_reduction", "gradient_scaling", "random_init", "alpha_normalization"):
        if pc.get(key) is not None:
            setattr(pnet, key, pc[key])
    values = {k: pc.get(k) for k in ("beta", "lam", "alpha")}
    values = {k: (list(v) if OmegaConf.is_list(v) else v) for k, v in values.items()}
    pnet.set_hyperparameters(**values)
    if pc.get("timesteps") is not None:
        check_timesteps(pc.timesteps)  # refused before any work, not at the first run
    if pc.get("hyper"):
        pnet.set_hyperparameters(**load_hyper(pc.hyper, pnet))
    if pc.get("decoders"):
        meta = pnet.load_decoders(pc.decoders)
        report_quality(pc.decoders, meta)  # pnet.decoders_trained_on: checked before evaluating
    return pnet


UNTRAINED = (
    "build_pnet({name!r}): the feedback decoders are untrained (random), so the dynamics mean "
    "little; pass decoders=PATH (a file from `pcnets train-feedback`)"
)


def build_pnet(name: str, pretrained: bool = True, **overrides) -> PredictiveNet:
    """A PredictiveNet by registry name, e.g. build_pnet("vgg16", pretrained=False).

    Keyword overrides set backbone options (weights=PATH, encoders=[...], decoders=[specs]) or
    dynamics options (beta, lam, alpha, error_reduction, gradient_scaling, random_init, hyper);
    decoders=PATH loads a decoder file.
    """
    pc = {k: overrides.pop(k) for k in PC_KEYS if k in overrides}
    if isinstance(overrides.get("decoders"), (str, Path)):
        pc["decoders"] = str(overrides.pop("decoders"))
    cfg = backbone_config(name, pretrained=pretrained, **overrides)
    pnet = build_from_config(cfg)
    defaults = compose([], "pnet").pc
    pnet = apply_pc_config(pnet, OmegaConf.merge(defaults, pc))
    if not pc.get("decoders") and not pc.get("hyper"):  # as the CLI warns
        warnings.warn(UNTRAINED.format(name=name), UserWarning, stacklevel=2)
    return pnet


def pnet_from_config(
    cfg: DictConfig, device: torch.device | str = "cpu", evaluates: str | None = "val"
) -> PredictiveNet:
    """The network that a command's composed config describes (backbone + pc), in eval mode.
    Seeded by cfg.seed, so untrained decoders are the same in every run. ``evaluates`` is the
    dataset split the command reads for its results ('val'; None for the training commands):
    decoders trained on any of those images are refused (pcnets.data.check_unseen)."""
    torch.manual_seed(int(cfg.get("seed", 0)))
    pnet = apply_pc_config(build_from_config(cfg.backbone), cfg.pc)
    if evaluates is not None and "data" in cfg:
        check_unseen(
            pnet.decoders_trained_on, cfg.data, evaluates, f"pc.decoders={cfg.pc.decoders}"
        )
    return pnet.to(device).eval()
