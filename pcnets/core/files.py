"""Tensor files: written atomically (``atomic_write``, ``atomic_save``), and read as data:
decoder files, backbone weights and training checkpoints are loaded without unpickling arbitrary
objects, so a downloaded or shared file cannot run code.

torch.load(weights_only=True) accepts tensors, containers, numbers and strings; the allow-list adds
plain numpy arrays (numpy's RNG state in training checkpoints). ``.safetensors`` files are read
with safetensors, which has no code path at all.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from pathlib import Path

import numpy as np
import torch

from pcnets.errors import PcnetsError

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
REMEDY = "save or download it again"
SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


def _allowed_globals() -> list:
    """numpy's array reconstruction (the array type itself must also be allowed to be built)."""
    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, *_dtype_classes()]


def _dtype_classes() -> list:
    dtypes = getattr(np, "dtypes", None)
    names = ("UInt32DType", "Float64DType", "Int64DType")
    return [getattr(dtypes, n) for n in names] if dtypes else []


def load_data_file(path: str | Path, what: str, remedy: str = REMEDY) -> object:
    """The contents of a torch or safetensors file, or one PcnetsError line that names ``what``
    (e.g. 'pc.decoders') and ``remedy``; a pickle that asks for any other Python object is
    refused before that object is touched."""
    path = Path(path).expanduser()
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix in SUFFIXES)
        hint = f" (it holds {', '.join(inside[:3])})" if inside else ""
        raise PcnetsError(f"{what}: {path} is a folder; give the file inside it{hint}")
    if not path.is_file():
        raise PcnetsError(f"{what}: no such file {path}")
    if path.suffix == ".safetensors":
        return _load_safetensors(path, what, remedy)
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.search(str(exc))
        if found:
            raise PcnetsError(
                f"{what}: {path} asks to load the Python object {found.group(1)}, and pcnets loads "
                "only tensors, so nothing in it was run; re-save it as a plain state_dict "
                "(torch.save(model.state_dict(), PATH)) or as .safetensors"
            ) from None
        raise PcnetsError(_unreadable(path, what, exc, remedy)) from None
    except Exception as exc:  # noqa: BLE001 - any damaged file gets one clear line
        raise PcnetsError(_unreadable(path, what, exc, remedy)) from None


def _unreadable(path: Path, what: str, exc: Exception, remedy: str) -> str:
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # torch's own reason, after a paragraph of advice
        text = text.split("WeightsUnpickler error:", 1)[1]
    first = (text.strip().splitlines() or [""])[0].strip()
    if not isinstance(exc, pickle.UnpicklingError):
        first = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return f"{what}: cannot read {path} ({first}): it is damaged or not a torch file; {remedy}"


def _load_safetensors(path: Path, what: str, remedy: str) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise PcnetsError(_unreadable(path, what, exc, remedy)) from None


def atomic_write(path: str | Path, data: str | bytes, fsync: bool = True) -> Path:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it over
    ``path``: a reader sees the old file or the new one, never a torn one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    binary = isinstance(data, bytes)
    try:
        with open(tmp, "wb" if binary else "w", encoding=None if binary else "utf-8") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        tmp.replace(path)
    except OSError as exc:
        if exc.filename == str(tmp):  # the error names the file asked for, not the temporary
            exc.filename = str(path)
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_save(path: str | Path, obj: object) -> Path:
    """torch.save through ``atomic_write``: serialised in memory first, so a full disk or a
    read-only folder is an OSError (one line in every command), never torch's RuntimeError, and
    no temporary file is left behind."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, buffer.getvalue())
