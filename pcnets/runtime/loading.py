"""DataLoaders with per-device defaults; under torchrun each rank reads its own shard."""

from __future__ import annotations

import os

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from pcnets.runtime.devices import switch
from pcnets.runtime.distributed import rank as process_rank
from pcnets.runtime.distributed import shard_indices
from pcnets.runtime.distributed import world_size as process_count


def _cfg(data_cfg: DictConfig, key: str, default=None):
    value = data_cfg.get(key, default)
    return default if value is None else value


class ShardSampler(Sampler[int]):
    """This rank's contiguous block of the dataset, no padding: sharded counts sum to one pass."""

    def __init__(self, n: int, rank: int, world: int):
        self.indices = shard_indices(n, rank, world)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def num_workers(value, device: torch.device) -> int:
    """data.workers: a number, or auto = 2 on CPU (the model needs the cores), up to 8 on CUDA."""
    if str(value).lower() != "auto":
        return int(value)
    if device.type != "cuda":
        return 2
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    per_process = (cpus or 2) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(8, per_process))


def build_loader(
    dataset: Dataset,
    data_cfg: DictConfig,
    device: torch.device | str,
    shuffle: bool = False,
    distributed: bool = False,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader with the data config's settings; under torchrun each rank gets its shard.

    Shuffled (training): a DistributedSampler (call set_epoch). Unshuffled (evaluation): exact
    contiguous shards without the DistributedSampler's padding, so summed counts equal one process.
    """
    device = torch.device(device)
    workers = num_workers(_cfg(data_cfg, "workers", "auto"), device)
    sampler, generator = None, None
    if distributed and process_count() > 1:
        rank, world = process_rank(), process_count()
        if shuffle:
            sampler = DistributedSampler(
                dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=drop_last
            )
        else:
            sampler = ShardSampler(len(dataset), rank, world)
    elif shuffle:
        generator = torch.Generator().manual_seed(seed)
    extra = {}
    if workers > 0:
        extra["prefetch_factor"] = int(_cfg(data_cfg, "prefetch_factor", 2))
        extra["persistent_workers"] = bool(_cfg(data_cfg, "persistent_workers", False))
    return DataLoader(
        dataset,
        batch_size=int(_cfg(data_cfg, "batch_size", 64)),
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        generator=generator,
        num_workers=workers,
        pin_memory=switch(_cfg(data_cfg, "pin_memory", "auto"), device),
        drop_last=drop_last,
        **extra,
    )


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Reshuffle a distributed loader for a new epoch (a no-op for other samplers)."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
