"""Decoder files of a PredictiveNet: the checkpoint dict it writes (decoders.DECODER_FORMAT),
writing it atomically, and loading one back after checking that it fits this backbone."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pcnets.core.decoders import DECODER_FORMAT, build_decoder, default_specs, read_decoder_file
from pcnets.core.files import atomic_save
from pcnets.errors import PcnetsError

if TYPE_CHECKING:
    from pcnets.core.pnet import PredictiveNet


def decoder_checkpoint(pnet: PredictiveNet, **meta) -> dict:
    """The dict a decoder file holds: format, backbone, encoders, decoder weights, ``meta``."""
    return {
        "format": DECODER_FORMAT,
        "backbone": pnet.name,
        "encoders": pnet.encoder_names,
        "decoders": pnet.decoders.state_dict(),
        **meta,
    }


def save_decoders(pnet: PredictiveNet, path: str | Path, **meta) -> None:
    """Write the decoders to ``path`` atomically (pcnets.core.files.atomic_save)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(path, decoder_checkpoint(pnet, **meta))


def load_decoders(pnet: PredictiveNet, path: str | Path) -> dict:
    """Load a decoder file written by save_decoders (or `pcnets import-decoders`)."""
    ckpt = read_decoder_file(path)
    if ckpt["backbone"] != pnet.name or list(ckpt["encoders"]) != pnet.encoder_names:
        raise PcnetsError(
            f"{path} holds decoders for backbone {ckpt['backbone']!r} with encoders "
            f"{list(ckpt['encoders'])}, not {pnet.name!r} with {pnet.encoder_names}"
        )
    if len(pnet.decoders) == 0:  # a fresh PredictiveNet: the default decoders, then their weights
        pnet.set_decoders([build_decoder(s) for s in default_specs(pnet.shapes)])
    try:
        pnet.decoders.load_state_dict(ckpt["decoders"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        what = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise PcnetsError(
            f"{path}: decoder weights do not fit this network's decoders ({what}); build the "
            "decoders they were trained with first: pnet.set_decoders([...])"
        ) from None
    pnet._windows.clear()
    return ckpt
