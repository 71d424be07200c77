"""Choosing the device and the numerics switches (AMP, channels_last) from the config."""

from __future__ import annotations

import torch

from pcnets.errors import PcnetsError


def resolve_device(name: str | None = "auto") -> torch.device:
    """'auto' -> cuda when present, else cpu. Asking for CUDA without CUDA is a clear error."""
    name = str(name or "auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PcnetsError(
            f"device={name} was asked for, but this machine has no CUDA; use device=cpu"
        )
    try:
        return torch.device(name)
    except RuntimeError:
        raise PcnetsError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None


def switch(value, device: torch.device, on_cpu: bool = False) -> bool:
    """A config switch that is 'auto' (on for CUDA; on a CPU, ``on_cpu``), true or false."""
    if str(value).lower() == "auto":
        return device.type == "cuda" or (device.type == "cpu" and on_cpu)
    return bool(value)
