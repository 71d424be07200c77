"""Gaussian noise on [0, 1] images, seeded per image: one helper for every command that adds noise
(eval-noise, manifold, tune), so "sigma in normalised space" means the same in all of them.

The noise of an image comes from a seed made of the run's seed and the image's key, so it is the
same whatever the batch, the process count, the timestep or the model. Two seedings exist, and
both are kept so that every command's numbers stay what they were:

- per (seed, image, sigma) -- eval-noise: each sigma draws its own sample;
- per (seed, image) -- manifold (``sigma=None``): every sigma scales the same draw (common random
  numbers, so the distance curves of two sigmas differ by the noise level alone).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from pcnets.data.indexed import WithIndex
from pcnets.errors import PcnetsError, suggest

NOISE_SPACES = ("normalized", "pixel")


def noise_seed(seed: int, key: str, sigma: float | None = None) -> int:
    """A stable seed for one image's noise: sha256 of 'seed|key|repr(sigma)|gaussian' cut to 63
    bits (per image and sigma), or of 'seed|key|gaussian', 64 bits (per image: ``sigma=None``)."""
    if sigma is None:
        text = f"{int(seed)}|{key}|gaussian"
        return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    text = f"{int(seed)}|{key}|{float(sigma)!r}|gaussian"
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") % 2**63


def image_noise(
    keys: Sequence[str], shape: Sequence[int], seed: int, sigma: float | None = None
) -> Tensor:
    """Standard normal noise [len(keys), *shape] (float32), one seeded draw per image key."""
    return torch.stack(
        [
            torch.randn(
                tuple(shape),
                generator=torch.Generator().manual_seed(noise_seed(seed, k, sigma)),
                dtype=torch.float32,
            )
            for k in keys
        ]
    )


def check_unit(key: str, value, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices`` (the British 'normalised' is read as 'normalized'),
    else one PcnetsError line naming ``key``."""
    value = "normalized" if str(value) == "normalised" else str(value)
    if value not in choices:
        raise PcnetsError(
            f"{key} must be one of {', '.join(choices)}, got {value!r}{suggest(value, choices)}"
        )
    return value


def check_noise_space(space: str) -> str:
    """'normalized' or 'pixel' (the British spelling is accepted); anything else is an error."""
    return check_unit("eval.noise_space", space, NOISE_SPACES)


def add_noise(
    image: Tensor,
    sigma: float,
    seed: int | None = None,
    std: Tensor | Sequence[float] | None = None,
    space: str = "normalized",
    noise: Tensor | None = None,
) -> Tensor:
    """[0, 1] images (C,H,W or B,C,H,W) plus sigma x a standard normal draw: ``noise`` when given,
    else drawn from ``seed``. In the network's normalised space (sigma x the channel ``std`` in
    pixels, not clipped, as the reference code adds it to the normalised tensor) or in pixel
    space (sigma in [0, 1] units, then clipped to [0, 1])."""
    space = check_noise_space(space)
    if sigma == 0:
        return image
    if noise is None:
        if seed is None:
            raise PcnetsError("add_noise needs a seed or a noise tensor")
        generator = torch.Generator().manual_seed(int(seed))
        noise = torch.randn(image.shape, generator=generator, dtype=torch.float32)
    z = noise.to(image.device, image.dtype)
    if space == "pixel":
        return (image + float(sigma) * z).clamp_(0.0, 1.0)
    if std is None:
        raise PcnetsError("noise in normalised space needs the network's channel std")
    std = torch.as_tensor(std, dtype=image.dtype, device=image.device).reshape(-1, 1, 1)
    return image + float(sigma) * std * z


class NoisyImages(WithIndex):
    """(image, label, index) items with Gaussian noise seeded per image and sigma, added in the
    DataLoader workers: identical for every batch size, process count, timestep and model."""

    def __init__(
        self,
        dataset: Dataset,
        sigma: float,
        seed: int = 0,
        std: Tensor | Sequence[float] | None = None,
        space: str = "normalized",
    ):
        super().__init__(dataset)
        self.sigma, self.seed, self.space = float(sigma), int(seed), check_noise_space(space)
        self.std = None if std is None else torch.as_tensor(std, dtype=torch.float32).flatten()

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        seed = noise_seed(self.seed, self.keys[index], self.sigma)
        return add_noise(image, self.sigma, seed, self.std, self.space), label, index
