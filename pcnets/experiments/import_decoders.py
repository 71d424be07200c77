"""Convert the paper authors' published decoder weights into a pcnets decoder file.

The authors ship one file per decoder ("pcoder"), numbered in the file name (..._pc<N>_...):
- PVGG16: the decoder's nn.Sequential state dict itself ("0.weight", "0.bias"),
- PEfficientNetB0: a training checkpoint whose 'pcoderweights' holds the PCoder's state dict,
  keys prefixed 'pmodule.' ("pmodule.1.weight" behind a parameter-free Upsample).
Tensors are matched to our decoders by parameter order, name (weight/bias) and shape, so the
index of a module inside the Sequential does not matter; anything that does not fit is an error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from pcnets.errors import PcnetsError

SUFFIXES = (".pth", ".pt", ".tar", ".ckpt")
NUMBER = re.compile(r"(?<![a-z0-9])pc(\d+)(?![0-9])", re.IGNORECASE)


def decoder_number(path: Path) -> int | None:
    """The decoder number in an authors' file name ('..._pc3_pmodule.pth' -> 3), or None."""
    found = NUMBER.findall(path.name)
    return int(found[-1]) if found else None


def find_files(sources: Sequence[str | Path], count: int) -> list[Path]:
    """One file per decoder 1..count from folders and/or files, ordered by decoder number."""
    by_number: dict[int, list[Path]] = {}
    for src in map(Path, sources):
        if src.is_dir():
            for f in sorted(src.iterdir()):
                n = decoder_number(f)
                if f.is_file() and f.suffix in SUFFIXES and n is not None:
                    by_number.setdefault(n, []).append(f)
        elif src.is_file():
            n = decoder_number(src)
            if n is None:
                raise PcnetsError(f"{src}: no decoder number pc<N> in the file name; rename it")
            by_number.setdefault(n, []).append(src)
        else:
            raise PcnetsError(f"--src {src}: no such file or folder")
    for n, files in sorted(by_number.items()):
        if len(files) > 1:
            names = ", ".join(f.name for f in files)
            raise PcnetsError(f"{len(files)} files for decoder {n} ({names}); pass one per decoder")
    missing = [n for n in range(1, count + 1) if n not in by_number]
    extra = sorted(n for n in by_number if not 1 <= n <= count)
    if missing or extra:
        have = ", ".join(f"pc{n}" for n in sorted(by_number)) or "none"
        raise PcnetsError(
            f"need one file per decoder pc1..pc{count}; missing {missing or 'none'}, "
            f"unexpected {extra or 'none'} (found: {have})"
        )
    return [by_number[n][0] for n in range(1, count + 1)]


def read_authors_file(path: Path) -> dict[str, Tensor]:
    """The decoder's tensors from one authors' file, 'pmodule.' prefix removed, in file order."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets one clear line
        raise PcnetsError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    if isinstance(obj, dict) and isinstance(obj.get("pcoderweights"), dict):
        obj = obj["pcoderweights"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise PcnetsError(
            f"{path} holds neither a decoder state dict nor a checkpoint with 'pcoderweights'"
        )
    if any(k.startswith("pmodule.") for k in obj):
        obj = {k.removeprefix("pmodule."): v for k, v in obj.items() if k.startswith("pmodule.")}
    if not obj:
        raise PcnetsError(f"{path} holds no tensors")
    return dict(obj)


def map_tensors(decoder: nn.Module, theirs: dict[str, Tensor], where: str) -> dict[str, Tensor]:
    """Our decoder's state dict filled with `theirs`, matched by order, weight/bias and shape."""
    ours = decoder.state_dict()

    def describe(d: dict) -> str:
        return ", ".join(f"{k} {tuple(v.shape)}" for k, v in d.items())

    fits = len(ours) == len(theirs) and all(
        a.rsplit(".", 1)[-1] == b.rsplit(".", 1)[-1] and x.shape == y.shape
        for (a, x), (b, y) in zip(ours.items(), theirs.items(), strict=False)
    )
    if not fits:
        raise PcnetsError(
            f"{where}: the file holds [{describe(theirs)}] but the decoder needs "
            f"[{describe(ours)}]; check --backbone"
        )
    return {k: v.to(ours[k].dtype).clone() for k, v in zip(ours, theirs.values(), strict=True)}


def import_decoders(
    backbone: DictConfig | str, sources: Sequence[str | Path], out: str | Path
) -> tuple[Path, list[Path]]:
    """Convert the authors' files into a decoder file for `backbone` (a registry name or a
    backbone config node); returns (the written file, the files read, by decoder number)."""
    from pcnets.backbones import backbone_config, build_from_config

    cfg = backbone_config(backbone) if isinstance(backbone, str) else backbone.copy()
    files = find_files(sources, len(cfg.encoders))
    cfg = OmegaConf.merge(cfg, {"pretrained": False})  # only the decoders' shapes are needed
    pnet = build_from_config(cfg)
    for i, (decoder, path) in enumerate(zip(pnet.decoders, files, strict=True)):
        where = f"{path.name} (decoder {i + 1}, {pnet.encoder_names[i]})"
        decoder.load_state_dict(map_tensors(decoder, read_authors_file(path), where))
    out = Path(out)
    pnet.save_decoders(out, source="import-decoders", files=[f.name for f in files])
    return out, files
