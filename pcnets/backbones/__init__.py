"""The backbone registry: one name gives a feedforward model with its weights, its preprocessing,
its encoder cut points and its decoders (conf/backbone/<name>.yaml, one small YAML each)."""

from pcnets.backbones.registry import (
    apply_pc_config,
    backbone_config,
    build_from_config,
    build_pnet,
    load_hyper,
    pnet_from_config,
)
from pcnets.backbones.weights import read_state_dict

__all__ = [
    "apply_pc_config",
    "backbone_config",
    "build_from_config",
    "build_pnet",
    "load_hyper",
    "pnet_from_config",
    "read_state_dict",
]
