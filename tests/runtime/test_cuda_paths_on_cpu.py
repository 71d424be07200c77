"""The GPU path exercised without a GPU (issue 24 item 12): bf16 autocast on the CPU against fp32,
and the CPU-testable logic of the CUDA-only helpers (device choice, memory statistics, RNG state
in checkpoints, NCCL initialisation), with torch.cuda stood in for where a GPU would answer."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from helpers import tiny_pnet

from pcnets.config import compose
from pcnets.experiments.train.checkpoint import rng_state, set_rng_state
from pcnets.runtime import distributed, peak_memory
from pcnets.runtime.devices import resolve_device
from pcnets.runtime.numerics import Numerics, autocast, numerics
from pcnets.runtime.session import command_device

pytestmark = pytest.mark.usefixtures("one_thread")


def test_amp_true_on_a_cpu_is_bf16_autocast_and_agrees_with_fp32_where_top1_is_clear():
    num = numerics(compose(["amp=true", "device=cpu"]), "cpu")
    assert num.amp and num.label.startswith("bf16")
    pnet = tiny_pnet(size=16).eval()
    torch.manual_seed(3)
    x = torch.rand(256, 3, 16, 16)
    with torch.no_grad():
        fp32 = pnet.run(x, 3)
        with autocast(num):
            bf16 = pnet.run(x, 3)
    assert bf16[-1].dtype == torch.bfloat16  # the autocast really ran the network in bf16
    for a, b in zip(fp32, bf16, strict=True):
        b = b.float()
        top2 = a.topk(2, dim=1).values
        clear = (top2[:, 0] - top2[:, 1]) > 0.05 * a.abs().amax(dim=1)  # a margin bf16 keeps
        same = a.argmax(1) == b.argmax(1)
        assert clear.sum() >= 64  # enough images for the comparison to mean something
        assert same[clear].all()  # 100 % where fp32's top-1 is clear
        assert same.float().mean() >= 0.9  # and at least 90 % overall
        assert torch.allclose(a, b, rtol=0.05, atol=0.05 * a.abs().max().item())


def test_device_auto_picks_cuda_when_present_and_plain_cuda_means_this_processs_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert resolve_device("auto") == torch.device("cuda")
    assert command_device(compose(["device=cuda"])) == torch.device("cuda", 3)
    assert command_device(compose(["device=cuda:1"])) == torch.device("cuda", 1)
    num = numerics(compose(["amp=auto", "channels_last=auto"]), "cuda:0")
    assert num.amp and num.channels_last  # auto is on for CUDA


def test_peak_memory_reads_cuda_statistics_on_a_cuda_device(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d: calls.append(("sync", d)))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d: calls.append(("reset",)))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d: 100 * 2**20)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d: 300 * 2**20)
    with peak_memory.PeakMemory("cuda:0") as peak:
        pass
    assert peak.peak == 200 * 2**20 and peak.peak_mb == 300.0
    assert [c[0] for c in calls] == ["sync", "reset", "sync"]
    with peak_memory.PeakMemory("cpu") as cpu_peak:
        block = torch.ones(4 * 2**20)  # 16 MiB touched
        block += 1
    assert cpu_peak.peak_mb > 0 and cpu_peak.peak >= 0


def test_checkpoint_rng_state_carries_the_cuda_generators_when_present(monkeypatch):
    fake = [torch.tensor([1, 2, 3], dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: fake)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda s: restored.append(s))
    state = rng_state()
    assert state["cuda"] is fake
    draws = (torch.rand(2), np.random.rand(), random.random())
    set_rng_state(state)
    assert restored == [fake]
    again = (torch.rand(2), np.random.rand(), random.random())
    assert torch.equal(draws[0], again[0]) and draws[1:] == again[1:]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "cuda" not in rng_state()


def test_torchrun_on_cuda_joins_nccl_on_this_processs_gpu(monkeypatch):
    joined, devices = [], []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: devices.append(i))
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(
        distributed.dist, "init_process_group", lambda *a, **k: joined.append((a, k))
    )
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    assert distributed.init_distributed() == (1, 2, 1)
    assert devices == [1]
    assert joined == [(("nccl",), {"device_id": torch.device("cuda", 1)})]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    joined.clear()
    distributed.init_distributed()
    assert joined == [(("gloo",), {})]


def test_numerics_label_names_bf16():
    assert Numerics(torch.device("cpu"), amp=True).label.startswith("bf16")
    assert Numerics(torch.device("cpu"), amp=False).label.startswith("fp32")
