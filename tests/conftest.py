"""Shared fixtures: the sample set's location and small networks that build fast on a CPU (the
helpers behind them are in tests/helpers)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from helpers import data_dir, tiny_pnet

from pcnets.core.pnet import PredictiveNet

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def sample_root() -> Path:
    root = data_dir() / "imagenet-sample"
    if not (root / "val").is_dir():
        pytest.skip(f"the ImageNet sample is not at {root} (set PCNETS_DATA_DIR)")
    return root


@pytest.fixture
def tiny() -> PredictiveNet:
    return tiny_pnet()


@pytest.fixture
def one_thread():
    """Tiny nets run fastest on one thread (and far faster than two on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
