"""foolbox 3's LinfBasicIterativeAttack through pcnets.classifier, and pcnets' own BIM (the
sign-gradient loop of `pcnets attack`) at least as strong at the same eps, step and steps."""

from __future__ import annotations

import pytest
import torch
from toy_images import labelled_net

import pcnets
from pcnets.experiments.attack.sign import sign_attack

pytestmark = pytest.mark.usefixtures("one_thread")


def foolbox_bim(model, x, labels, eps: float, step: float, steps: int):
    """(clipped adversarials, success) of foolbox's BIM on ``model`` ([0, 1] pixels)."""
    import foolbox as fb

    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device="cpu")
    attack = fb.attacks.LinfBasicIterativeAttack(abs_stepsize=step, steps=steps)
    _, clipped, success = attack(fmodel, x, labels, epsilons=eps)
    return clipped, success


def test_foolbox_bim_attacks_the_dynamics_through_pcnets_classifier():
    pnet, x, labels = labelled_net(12)
    model = pcnets.classifier(pnet, 2)
    with torch.no_grad():
        right = model(x).argmax(1) == labels
    clipped, success = foolbox_bim(model, x[right], labels[right], eps=0.1, step=0.02, steps=10)
    assert (clipped - x[right]).abs().max() <= 0.1 + 1e-6
    assert clipped.min() >= 0 and clipped.max() <= 1
    with torch.no_grad():  # foolbox's success is the classifier's own verdict on its images
        fooled = model(clipped).argmax(1) != labels[right]
    assert torch.equal(fooled, success)
    assert success.float().mean() > 0.5  # at eps = 0.1 the tiny net is fooled on most images


@pytest.mark.slow
@pytest.mark.parametrize("eps", [0.01, 0.03, 0.1])
def test_pcnets_bim_fools_every_image_foolbox_bim_fools_at_equal_eps_and_steps(eps):
    """Same loss (CE), step and projection: pcnets' loop keeps an image's first success, so the
    images it fools include foolbox's (which scores only the last iterate)."""
    pnet, x, labels = labelled_net(96, seed=1)
    model = pcnets.classifier(pnet, 3)
    with torch.no_grad():  # the images it gets right at T = 3 (as `pcnets attack` selects)
        right = model(x).argmax(1) == labels
    x, labels = x[right], labels[right]
    step, steps = 2.5 * eps / 10, 10
    _, theirs = foolbox_bim(model, x, labels, eps, step, steps)
    ours = sign_attack(model, x, labels, None, eps, step, steps, False, False)
    with torch.no_grad():
        fooled = model(ours).argmax(1) != labels
    assert (ours - x).abs().max() <= eps + 1e-6
    assert bool((fooled | ~theirs).all()), "an image foolbox fools that pcnets' BIM does not"
    assert fooled.sum() >= theirs.sum()


def sample_batch(pnet, count: int, stride: int = 97):
    """``count`` sample images (every ``stride``-th class, so not the lowest classes) as [0, 1]
    tensors through the weights' own transform, with their ImageNet labels."""
    from helpers import data_dir
    from PIL import Image

    val = data_dir() / "imagenet-sample" / "val"
    classes = sorted(p.name for p in val.iterdir() if p.is_dir())
    picks = [(i * stride) % len(classes) for i in range(count)]
    images = []
    for label in picks:
        path = sorted((val / classes[label]).iterdir())[0]
        images.append(pnet.transform(Image.open(path).convert("RGB")))
    return torch.stack(images), torch.tensor(picks)


@pytest.mark.slow
def test_pcnets_bim_is_at_least_as_strong_as_foolbox_bim_on_the_sample_through_lite0():
    """The real network (Lite0's packaged ImageNet weights) on sample images, through T = 2 of
    the dynamics: at equal eps, step and steps, pcnets' BIM fools every image foolbox's does."""
    pnet = pcnets.build_pnet("efficientnet_lite0")
    model = pcnets.classifier(pnet, 2)
    x, labels = sample_batch(pnet, 10)
    with torch.no_grad():
        right = model(x).argmax(1) == labels
    assert int(right.sum()) >= 6  # Lite0 scores about 87 % on the sample
    x, labels = x[right], labels[right]
    for eps in (0.5 / 255, 1 / 255):
        step, steps = 2.5 * eps / 5, 5
        _, theirs = foolbox_bim(model, x, labels, eps, step, steps)
        ours = sign_attack(model, x, labels, None, eps, step, steps, False, False)
        with torch.no_grad():
            fooled = model(ours).argmax(1) != labels
        print(f"eps {eps:.5f}: foolbox {int(theirs.sum())}, pcnets {int(fooled.sum())} of {len(x)}")
        assert (ours - x).abs().max() <= eps + 1e-6
        assert bool((fooled | ~theirs).all()), "an image foolbox fools that pcnets' BIM does not"
