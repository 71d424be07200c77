"""Training data (METHOD.md section 5): the training and held-out images, and their features e_0
(the normalised image) .. e_N from one frozen feedforward pass, cached in memory when asked.

train.augment=flip_crop (a random horizontal flip and a random crop of 80-100 % of each side,
resized back) draws new images every epoch, so it turns the training features' cache off (the
held-out features stay cached: they are never augmented). Time spent waiting for the loader and
in the backbone is counted, so a run can say whether it trains at the data's speed.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler

from pcnets.core.pnet import PredictiveNet
from pcnets.data import build_dataset
from pcnets.data.subsets import stratified_subset
from pcnets.errors import PcnetsError, suggest
from pcnets.runtime.distributed import rank, world_size
from pcnets.runtime.loading import build_loader
from pcnets.runtime.numerics import Prefetcher
from pcnets.runtime.session import Session

VAL_SPLITS = ("auto", "holdout", "val")


@torch.no_grad()
def feedforward_features(pnet: PredictiveNet, x: Tensor) -> list[Tensor]:
    """e_0 (the normalised image) .. e_N of one plain feedforward pass: decoder inputs and targets.

    No graph is kept: the backbone is frozen, so targets and decoder inputs are constants.
    """
    (step,) = list(pnet.steps(x, 0, states=True, random_init=False))
    return [pnet.normalize(x), *step.states]


def in_holdout(key: str, fraction: float) -> bool:
    """Whether item `key` is held out for validation: a fixed hash of its id, not its position."""
    digest = hashlib.sha256(f"pcnets-val/{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


class Picked(Dataset):
    """Items `indices` of `dataset`, in that order, as (image, index into dataset)."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[self.indices[i]][0], self.indices[i]


def training_data(cfg: DictConfig, transform) -> tuple[Dataset, list[int], Dataset, list[int]]:
    """(train dataset, its training indices, validation dataset, its indices).

    train.val_split: holdout = a fixed train.val_fraction of the training images (by hash of the
    item id); val = the dataset's val split; auto = val when it shares no image with the training
    images, else holdout (the ImageNet sample has one folder, so its eval half is never touched).
    """
    tcfg = cfg.train
    train_ds = build_dataset(cfg.data, transform, split="train")
    # validation reads the training half too (data.train_split), never data.split's eval half
    half = OmegaConf.merge(cfg.data, {"split": cfg.data.get("train_split") or "all"})
    mode = str(tcfg.get("val_split") or "auto")
    if mode not in VAL_SPLITS:
        raise PcnetsError(f"unknown train.val_split={mode!r}{suggest(mode, VAL_SPLITS)}")
    val_ds = None
    if mode in ("val", "auto"):
        val_ds = build_dataset(half, transform, split="val")
        if set(val_ds.keys) & set(train_ds.keys):
            if mode == "val":
                raise PcnetsError(
                    "train.val_split=val: the val split holds training images (one folder, as "
                    "in the ImageNet sample); use train.val_split=holdout"
                )
            val_ds = None
    if val_ds is None:
        fraction = float(tcfg.get("val_fraction") or 0.0)
        held = [in_holdout(k, fraction) for k in train_ds.keys]
        train_idx = [i for i, h in enumerate(held) if not h]
        val_ds, val_idx = train_ds, [i for i, h in enumerate(held) if h]
    else:
        train_idx, val_idx = list(range(len(train_ds))), list(range(len(val_ds)))
    if tcfg.get("max_images") and int(tcfg.max_images) < len(train_idx):
        # a seeded class-stratified draw (data.seed), as data.limit: never the lowest classes
        seed = int(cfg.data.get("seed") or 0)
        keys, labels = train_ds.keys, train_ds.targets
        train_idx = stratified_subset(keys, labels, train_idx, int(tcfg.max_images), seed)
    if tcfg.get("val_max"):
        val_idx = val_idx[: int(tcfg.val_max)]
    if not train_idx:
        raise PcnetsError("no training images are left: check data.limit and train.val_fraction")
    if not val_idx:
        raise PcnetsError(
            f"no validation images among {len(train_ds)}: raise train.val_fraction "
            f"(now {tcfg.get('val_fraction')}) or data.limit"
        )
    return train_ds, train_idx, val_ds, val_idx


def epoch_order(n: int, epoch: int, seed: int, shuffle: bool) -> list[int]:
    """This process's positions in 0..n-1 for one epoch: a DistributedSampler's, also for one
    process, so K processes' local batches together are the one-process global batches."""
    sampler = DistributedSampler(
        range(n), num_replicas=world_size(), rank=rank(), shuffle=shuffle, seed=seed
    )
    sampler.set_epoch(epoch)
    return list(sampler)


def flip_crop(x: Tensor, gen: torch.Generator, min_side: float = 0.8) -> Tensor:
    """Each image flipped left-right with probability 1/2, then a random crop of `min_side`..1 of
    each side resized back to the full size (bilinear): flips and crops on [0,1] pixels."""
    b, _, h, w = x.shape
    out = []
    for img, flip, scale, oy, ox in zip(
        x, torch.rand(b, generator=gen) < 0.5, torch.empty(b).uniform_(min_side, 1, generator=gen),
        torch.rand(b, generator=gen), torch.rand(b, generator=gen), strict=True,
    ):  # fmt: skip
        img = img.flip(-1) if flip else img
        ch, cw = max(1, round(h * float(scale))), max(1, round(w * float(scale)))
        y0, x0 = int(float(oy) * (h - ch)), int(float(ox) * (w - cw))
        crop = img[None, :, y0 : y0 + ch, x0 : x0 + cw]
        out.append(F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)[0])
    return torch.stack(out)


class Features:
    """Feature batches for a list of dataset indices: loaded (through the session's prefetcher) and
    run through the backbone, or taken from memory once every index has been seen (cache=True).
    ``augment`` (a generator) applies flip_crop to every loaded batch and disables the cache.
    ``wait_s`` and ``backbone_s`` add up the time spent waiting for images and in the backbone."""

    def __init__(
        self,
        pnet: PredictiveNet,
        dataset: Dataset,
        data_cfg: DictConfig,
        session: Session,
        cache: bool,
        augment: torch.Generator | None = None,
    ):
        self.pnet, self.dataset, self.data_cfg, self.session = pnet, dataset, data_cfg, session
        self.augment = augment
        self.cache: dict[int, list[Tensor]] | None = {} if cache and augment is None else None
        self.wait_s = 0.0
        self.backbone_s = 0.0

    def autocast(self):
        return self.session.autocast()

    def batches(self, indices: Sequence[int], batch: int) -> Iterator[list[Tensor]]:
        if self.cache is not None and all(i in self.cache for i in indices):
            for start in range(0, len(indices), batch):
                began = time.perf_counter()
                items = [self.cache[i] for i in indices[start : start + batch]]
                level = [torch.stack(level) for level in zip(*items, strict=True)]
                self.wait_s += time.perf_counter() - began
                yield level
            return
        data_cfg = self.data_cfg.copy()
        with open_dict(data_cfg):
            data_cfg.batch_size = batch
        loader = build_loader(Picked(self.dataset, indices), data_cfg, self.session.device)
        prefetch = Prefetcher(loader, self.session.numerics)
        waited = 0.0
        for x, idx in prefetch:
            self.wait_s += prefetch.wait_s - waited
            waited = prefetch.wait_s
            began = time.perf_counter()
            if self.augment is not None:
                x = flip_crop(x, self.augment)
            with self.autocast():
                feats = feedforward_features(self.pnet, x)
            if self.cache is not None:
                for j, i in enumerate(idx.tolist()):
                    self.cache[i] = [f[j].clone() for f in feats]
            self.backbone_s += time.perf_counter() - began
            yield feats
