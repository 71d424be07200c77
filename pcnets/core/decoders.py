"""Feedback decoders W^b_n: specs (the YAML tables of METHOD.md section 4), the default rule, and
reading decoder files."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn

from pcnets.core.files import load_data_file
from pcnets.errors import PcnetsError


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


# ---- decoder files -------------------------------------------------------------------------

DECODER_FORMAT = "pcnets-decoders-v1"
DECODER_KEYS = ("backbone", "encoders", "decoders")


def read_decoder_file(path: str | Path) -> dict:
    """A decoder file written by save_decoders or `pcnets import-decoders`, read as data only and
    checked for the keys a PredictiveNet needs (one clear line when anything is off)."""
    ckpt = load_data_file(
        path, "pc.decoders", "train decoders with `pcnets train-feedback`, or download them again"
    )
    if not isinstance(ckpt, dict) or ckpt.get("format") != DECODER_FORMAT:
        raise PcnetsError(
            f"{path} is not a pcnets decoder file; convert the authors' files with "
            "`pcnets import-decoders`"
        )
    missing = [k for k in DECODER_KEYS if k not in ckpt]
    if missing:
        raise PcnetsError(
            f"{path} is a decoder file without {', '.join(map(repr, missing))}: it was not written "
            "by pcnets; re-make it with `pcnets train-feedback` or `pcnets import-decoders`"
        )
    return ckpt


def r2_line(r2: list[float]) -> str:
    """Held-out R^2 per decoder in one line: 'held-out R^2 per decoder 1..N: 0.99 0.91 ...'."""
    return f"held-out R^2 per decoder 1..{len(r2)}: " + " ".join(f"{v:.3f}" for v in r2)


def r2_warnings(r2: list[float]) -> list[str]:
    """One line for each decoder whose held-out R^2 is at or below 0 (METHOD.md section 5): what it
    means and what to do. Decoder n predicts e_{n-1}; lambda_{n-1} feeds that prediction back."""
    lines = []
    for n, v in enumerate(r2, start=1):
        if v > 0:
            continue
        if n == 1:
            effect = "the image worse than a constant map, so its error gradient pushes encoder 1"
            fix = "set encoder 1's alpha to 0"
        else:
            effect = (
                f"encoder {n - 1} worse than a constant map, so its feedback pulls encoder {n - 1}"
            )
            fix = f"set encoder {n - 1}'s lambda to 0 (entry {n - 1} of pc.lam)"
        lines.append(
            f"warning: decoder {n} has held-out R^2 {v:.3f} <= 0: it predicts {effect} towards a "
            f"wrong value; train it longer (or with train.solver=lstsq), or {fix}"
        )
    return lines


def report_quality(path: str | Path, meta: dict) -> None:
    """Print a decoder file's held-out R^2 per decoder in one line (stderr, rank 0 only) and one
    warning line for each decoder at or below 0. Every command that loads decoders comes here
    (backbones.registry.apply_pc_config)."""
    if os.environ.get("RANK", "0") != "0":
        return
    r2 = meta.get("heldout_r2")
    if r2 is None:
        print(
            f"decoders {path}: held-out R^2 not recorded (an older or imported file)",
            file=sys.stderr,
        )
        return
    for line in [f"decoders {path}: {r2_line(list(r2))}", *r2_warnings(list(r2))]:
        print(line, file=sys.stderr)
