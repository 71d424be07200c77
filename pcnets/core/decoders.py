"""Feedback decoders W^b_n: specs (the YAML tables of METHOD.md section 4) and the default rule."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn


@dataclass(frozen=True)
class DecoderSpec:
    """[bilinear upsample] -> ConvTranspose2d -> [ReLU]."""

    in_ch: int
    out_ch: int
    kernel: int = 3
    stride: int = 1
    padding: int = 1
    upsample: float | None = None
    relu: bool = False

    @classmethod
    def from_dict(cls, d: dict) -> DecoderSpec:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown decoder keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def build_decoder(spec: DecoderSpec) -> nn.Sequential:
    layers: list[nn.Module] = []
    if spec.upsample and spec.upsample != 1:
        layers.append(nn.Upsample(scale_factor=spec.upsample, mode="bilinear", align_corners=False))
    layers.append(
        nn.ConvTranspose2d(spec.in_ch, spec.out_ch, spec.kernel, spec.stride, spec.padding)
    )
    if spec.relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def default_specs(shapes: list[tuple[int, int, int]]) -> list[DecoderSpec]:
    """The reference package's rule: decoder n maps e_n to e_{n-1}'s shape with bilinear upsampling
    by the spatial ratio (when sizes differ) and a ConvT k3 s1 p1. ``shapes`` are the C,H,W of
    e_0 (the image) .. e_N."""
    specs = []
    for (c_lo, h_lo, _), (c_hi, h_hi, _) in zip(shapes[:-1], shapes[1:], strict=True):
        ratio = h_lo / h_hi
        specs.append(DecoderSpec(c_hi, c_lo, upsample=None if ratio == 1 else ratio))
    return specs
