"""The one noise helper: its two documented seedings (per image and sigma for eval-noise, per
image for manifold), recomputed by hand, and a batch that adds a given draw like one image."""

from __future__ import annotations

import hashlib

import torch

from pcnets.data.noise import add_noise, image_noise, noise_seed


def test_the_two_seedings_are_the_documented_hashes():
    digest = hashlib.sha256(b"3|n01/a.JPEG|0.5|gaussian").digest()[:8]
    assert noise_seed(3, "n01/a.JPEG", 0.5) == int.from_bytes(digest, "little") % 2**63
    digest = hashlib.sha256(b"3|n01/a.JPEG|gaussian").digest()[:8]
    assert noise_seed(3, "n01/a.JPEG") == int.from_bytes(digest, "little")  # 64 bits, as before
    # per image: every sigma scales one draw; per image and sigma: each sigma draws its own
    shared = image_noise(["n01/a.JPEG"], (3, 4, 4), 3)
    half = image_noise(["n01/a.JPEG"], (3, 4, 4), 3, sigma=0.5)
    one = image_noise(["n01/a.JPEG"], (3, 4, 4), 3, sigma=1.0)
    assert not torch.equal(half, one) and not torch.equal(shared, half)
    gen = torch.Generator().manual_seed(noise_seed(3, "n01/a.JPEG", 0.5))
    assert torch.equal(half[0], torch.randn(3, 4, 4, generator=gen))


def test_a_batch_with_a_given_draw_equals_each_image_with_its_seed():
    std = torch.tensor([0.25, 0.5, 1.0])
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    seeds = [noise_seed(0, k, 0.75) for k in ("a", "b")]
    draw = image_noise(["a", "b"], (3, 4, 4), 0, sigma=0.75)
    batch = add_noise(x, 0.75, std=std, noise=draw)
    alone = torch.stack([add_noise(x[i], 0.75, seeds[i], std=std) for i in range(2)])
    assert torch.equal(batch, alone)
    assert (batch - x).abs().max() > 0.1
