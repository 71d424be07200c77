"""Data: datasets (ImageNet, the sample, synthetic), the 19 corruptions, ImageNet-C trees.

Nothing here knows about models or devices: datasets return [0, 1] pixels through the
backbone's own transform, and the loaders that feed them live in pcnets.runtime.loading.
"""

from pcnets.data.datasets import (
    SPLITS,
    ImageFiles,
    SyntheticImages,
    build_dataset,
    dataset_samples,
    effective_split,
    hash_split,
    select_indices,
)
from pcnets.data.indexed import WithIndex
from pcnets.data.leakage import check_unseen, data_origin
from pcnets.data.sample import fetch_sample, resize_short_side

__all__ = [
    "SPLITS",
    "ImageFiles",
    "SyntheticImages",
    "WithIndex",
    "build_dataset",
    "check_unseen",
    "data_origin",
    "dataset_samples",
    "effective_split",
    "fetch_sample",
    "hash_split",
    "resize_short_side",
    "select_indices",
]
