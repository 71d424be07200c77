"""How a result was made: versions, git revision, hardware, command line."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def git_revision() -> str | None:
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict:
    cuda = torch.cuda.is_available()
    return {
        "pcnets": _version("pcnets"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "timm": _version("timm"),
        "numpy": _version("numpy"),
        "hydra-core": _version("hydra-core"),
        "torchattacks": _version("torchattacks"),
        "imagecorruptions-imaug": _version("imagecorruptions-imaug"),
        "device": torch.cuda.get_device_name(0)
        if cuda
        else f"cpu ({platform.processor() or platform.machine()})",
        "cuda": torch.version.cuda if cuda else None,
        "cpu_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "git": git_revision(),
        "argv": sys.argv,
    }


def earlier_sessions(path: Path) -> list[dict]:
    """The sessions recorded by earlier invocations of this run (a resumed run adds one). The
    caller holds the folder's lock, so a session still "running" was killed (kill -9, power loss)
    before it could say so: it becomes "killed"."""
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    if not isinstance(old, dict):
        return []
    sessions = old.get("sessions")
    if isinstance(sessions, list) and all(isinstance(s, dict) for s in sessions) and sessions:
        return [{**s, "status": "killed"} if s.get("status") == "running" else s for s in sessions]
    return [
        {
            "started": old.get("started"),
            "seconds": old.get("seconds", 0),
            "status": "killed" if old.get("status") == "running" else old.get("status"),
        }
    ]
