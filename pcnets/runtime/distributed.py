"""torchrun helpers: one process per GPU (or CPU process), counts all-reduced across them.

Every helper is a no-op in a plain single process, so the same code runs with and without torchrun.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist


def init_distributed() -> tuple[int, int, int]:
    """Join the torchrun process group (nccl on CUDA, else gloo); (rank, world_size, local_rank).

    Without torchrun's WORLD_SIZE/RANK/LOCAL_RANK, or with one process, nothing happens: (0, 1, 0).
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), _local_rank()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "RANK" not in os.environ or not dist.is_available():
        return 0, 1, 0
    local_rank = _local_rank()
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank))
    else:
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size(), local_rank


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def active() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on the process that writes files and prints: rank 0, or the only process; without a
    process group (not yet made, or already gone) torchrun's RANK says."""
    if active():
        return rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def all_reduce_sum(value: torch.Tensor | float | Sequence[float] | np.ndarray):
    """The sum of `value` over all processes, of the kind given (tensor, number, list, array).

    Integers are summed exactly (int64); a tensor is not modified in place.
    """
    if isinstance(value, torch.Tensor):
        return _reduce_tensor(value.detach().clone())
    array = np.asarray(value)
    exact = np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_
    tensor = torch.as_tensor(array, dtype=torch.int64 if exact else torch.float64)
    summed = _reduce_tensor(tensor).numpy()
    if isinstance(value, np.ndarray):
        return summed
    if isinstance(value, (list, tuple)):
        return type(value)(summed.tolist())
    return summed.item()


def _reduce_tensor(tensor: torch.Tensor) -> torch.Tensor:
    if not active():
        return tensor
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        on_gpu = tensor.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(on_gpu, op=dist.ReduceOp.SUM)
        return on_gpu.to(tensor.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def shard_indices(n: int, rank: int, world: int) -> range:
    """This rank's contiguous block of range(n): blocks cover each index once, sizes differ <= 1."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in a world of {world} processes")
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def barrier() -> None:
    """Wait until every process gets here (no-op in a single process)."""
    if active():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def cleanup() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
