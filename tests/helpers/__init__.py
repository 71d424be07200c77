"""Shared test helpers (import them as `from helpers import ...`; fixtures stay in conftest):
the repository and data paths, small networks that build fast on a CPU, and torchrun."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from pcnets.core.decoders import DecoderSpec, build_decoder
from pcnets.core.pnet import PredictiveNet

REPO = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    return Path(os.environ.get("PCNETS_DATA_DIR", REPO.parent / "shared" / "data"))


def tiny_backbone(dtype=torch.float32) -> nn.Module:
    """A 3-stage CNN with pooling between the encoders, like a miniature VGG."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),  # 0,1 -> encoder "1"
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),  # 3,4 -> encoder "4"
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.Tanh(),  # 6,7 -> encoder "7"
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    ).to(dtype)


def tiny_pnet(dtype=torch.float32, size: int = 8) -> PredictiveNet:
    specs = [
        DecoderSpec(4, 3),
        DecoderSpec(6, 4, kernel=4, stride=2, padding=1, relu=True),
        DecoderSpec(8, 6, upsample=2),
    ]
    torch.manual_seed(1)
    decoders = [build_decoder(s).to(dtype) for s in specs]
    pnet = PredictiveNet(
        tiny_backbone(dtype),
        ["1", "4", "7"],
        decoders,
        [0.4, 0.5, 0.6],
        [0.2, 0.25, 0.3],
        name="tiny",
        probe_size=size,
    )
    return pnet.to(dtype)


def standardised_tiny_net(n: int, gen: torch.Generator, size: int = 16):
    """(pnet, images): tiny_pnet with its 5-class head standardised on n flat-coloured noisy
    [0, 1] images drawn from ``gen`` (so predictions vary across images and every class is
    reachable), and alpha 0.5; ``gen`` goes on from where the images left it."""
    pnet = tiny_pnet(size=size)
    base = torch.rand(n, 3, 1, 1, generator=gen) * 0.8 + 0.1
    x = (base + 0.1 * torch.randn(n, 3, size, size, generator=gen)).clamp(0, 1)
    feats = {}
    head = pnet.backbone[-1]
    hook = head.register_forward_hook(lambda m, i, o: feats.__setitem__("f", i[0]))
    with torch.no_grad():
        pnet.feedforward(x)
        hook.remove()
        mu, sd = feats["f"].mean(0), feats["f"].std(0)
        head.weight.div_(sd).mul_(3)
        head.bias.copy_(-(head.weight @ mu))
    pnet.set_hyperparameters(alpha=0.5)
    return pnet, x


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], cwd: Path, nproc: int = 2, timeout: float = 300):
    """Run `torchrun --nproc_per_node=nproc ARGS` on CPU (gloo), one thread per process; the
    test fails with the processes' stderr when they do."""
    cmd = [str(Path(sys.executable).with_name("torchrun")), f"--nproc_per_node={nproc}"]
    cmd += ["--master_addr=127.0.0.1", f"--master_port={free_port()}", *map(str, args)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc
