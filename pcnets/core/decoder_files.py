"""Decoder files of a PredictiveNet: the checkpoint dict it writes (decoders.DECODER_FORMAT),
writing it atomically, and reading one back after checking that it fits this backbone. The
net's own methods (save_decoders, load_decoders) call these with its name, encoders, decoders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from pcnets.core.decoders import DECODER_FORMAT, build_decoder, default_specs, read_decoder_file
from pcnets.core.files import atomic_save
from pcnets.errors import PcnetsError


def checkpoint(name: str, encoders: Sequence[str], decoders: nn.Module, **meta) -> dict:
    """The dict a decoder file holds: format, backbone, encoders, decoder weights, ``meta``."""
    return {
        "format": DECODER_FORMAT,
        "backbone": name,
        "encoders": list(encoders),
        "decoders": decoders.state_dict(),
        **meta,
    }


def write(path: str | Path, ckpt: dict) -> None:
    """Write ``ckpt`` to ``path`` atomically (pcnets.core.files.atomic_save)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(path, ckpt)


def load_into(decoders: nn.Module, path: str | Path, name: str, encoders: Sequence[str]) -> dict:
    """Read a decoder file written by save_decoders (or `pcnets import-decoders`) into
    ``decoders`` after checking it was made for backbone ``name`` with ``encoders``."""
    ckpt = read_decoder_file(path)
    if ckpt["backbone"] != name or list(ckpt["encoders"]) != list(encoders):
        raise PcnetsError(
            f"{path} holds decoders for backbone {ckpt['backbone']!r} with encoders "
            f"{list(ckpt['encoders'])}, not {name!r} with {list(encoders)}"
        )
    try:
        decoders.load_state_dict(ckpt["decoders"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        what = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise PcnetsError(
            f"{path}: decoder weights do not fit this network's decoders ({what}); build the "
            "decoders they were trained with first: pnet.set_decoders([...])"
        ) from None
    return ckpt


class DecoderFiles:
    """The decoder-file methods of a PredictiveNet (a mixin: the net gives name,
    encoder_names, shapes, set_decoders, decoders, decoders_trained_on and decoders_changed)."""

    def decoder_checkpoint(self, **meta) -> dict:
        """The dict a decoder file holds: format, backbone, encoders, decoder weights, ``meta``."""
        return checkpoint(self.name, self.encoder_names, self.decoders, **meta)

    def save_decoders(self, path: str | Path, **meta) -> None:
        """Write the decoders to ``path`` atomically."""
        write(path, self.decoder_checkpoint(**meta))

    def load_decoders(self, path: str | Path) -> dict:
        """Load a decoder file written by save_decoders (or `pcnets import-decoders`); its
        ``data`` entry (what trained them; None for older files) becomes
        ``decoders_trained_on``."""
        if len(self.decoders) == 0:  # a fresh PredictiveNet: the default decoders, then weights
            self.set_decoders([build_decoder(s) for s in default_specs(self.shapes)])
        ckpt = load_into(self.decoders, path, self.name, self.encoder_names)
        self.decoders_changed()
        self.decoders_trained_on = ckpt.get("data")
        return ckpt
