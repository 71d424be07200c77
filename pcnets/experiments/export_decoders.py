"""Write a pcnets decoder file back in the paper authors' format, the inverse of import-decoders.

Two styles, one file per decoder ("pcoder"), numbered in the file name as the authors number
them (decoder n predicts encoder n-1; pc1 predicts the image):
- pvgg16: the decoder's nn.Sequential state dict itself, '<prefix>_pc<n>_pmodule.pth'
  (the authors' PVGG16 files),
- peffb0: a checkpoint {'pcoderweights': the PCoder's state dict, keys prefixed 'pmodule.'},
  '<prefix>_pc<n>.pth' (the authors' PEfficientNetB0 files).
`pcnets import-decoders` reads either back tensor for tensor.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from pcnets.errors import PcnetsError, suggest
from pcnets.runtime.files import atomic_save
from pcnets.runtime.session import Result

STYLES = ("pvgg16", "peffb0")


def default_style(backbone: str) -> str:
    """The authors' PVGG16 layout for vgg16, their PEfficientNetB0 checkpoints otherwise."""
    return "pvgg16" if backbone == "vgg16" else "peffb0"


def authors_files(
    decoders: list[dict[str, Tensor]], style: str, prefix: str
) -> dict[str, dict[str, object]]:
    """File name -> the object to torch.save, one per decoder (state dicts in decoder order)."""
    if style not in STYLES:
        raise PcnetsError(f"unknown export style {style!r}{suggest(style, STYLES)}; use {STYLES}")
    files = {}
    for n, state in enumerate(decoders, start=1):
        tensors = {k: v.detach().cpu().clone() for k, v in state.items()}
        if style == "pvgg16":
            files[f"{prefix}_pc{n}_pmodule.pth"] = tensors
        else:
            theirs = {f"pmodule.{k}": v for k, v in tensors.items()}
            files[f"{prefix}_pc{n}.pth"] = {"pcoderweights": theirs}
    return files


def export_decoders(
    pnet, out: str | Path, style: str | None = None, prefix: str | None = None
) -> list[Path]:
    """Write ``pnet``'s decoders into folder ``out`` in the authors' format; returns the files,
    by decoder number. Refuses a folder that already holds other pc<n> files of another prefix
    (import-decoders would then find two files for one decoder)."""
    from pcnets.experiments.import_decoders import SUFFIXES, decoder_number

    style = style or default_style(pnet.name)
    prefix = prefix or f"p{pnet.name}"
    files = authors_files([d.state_dict() for d in pnet.decoders], style, prefix)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PcnetsError(f"--out {out} is a file; export-decoders writes a folder of files")
    out.mkdir(parents=True, exist_ok=True)
    others = sorted(
        f.name
        for f in out.iterdir()
        if f.suffix in SUFFIXES and decoder_number(f) is not None and f.name not in files
    )
    if others:
        raise PcnetsError(
            f"{out} already holds other decoder files ({', '.join(others[:3])}); "
            "choose an empty --out folder"
        )
    written = []
    for name, obj in files.items():
        written.append(atomic_save(out / name, obj))
    return written


def run(
    cfg: DictConfig,
    src: str | Path,
    out: str | Path,
    style: str | None = None,
    prefix: str | None = None,
) -> Result:
    """`pcnets export-decoders`: load the decoder file ``src`` into the configured backbone
    (random backbone weights: only the decoders' shapes matter) and export it."""
    from pcnets.backbones import build_from_config

    pnet = build_from_config(OmegaConf.merge(cfg.backbone, {"pretrained": False}))
    pnet.load_decoders(src)
    files = export_decoders(pnet, out, style, prefix)
    chosen = style or default_style(pnet.name)
    summary = [
        f"{len(files)} decoders of {pnet.name} in the authors' {chosen} format: "
        f"{files[0].name} .. {files[-1].name}",
        f"decoders: {Path(out)}",
    ]
    return Result(Path(out), summary=summary, extra={"files": files, "style": chosen})
