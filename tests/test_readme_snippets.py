"""The README's Python snippets, extracted from README.md (so they cannot drift), run as far as
they need no network or optional package (issue 24 item 12)."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from helpers import REPO
from torch import nn

import pcnets
from pcnets.core.decoders import build_decoder, default_specs
from pcnets.errors import PcnetsError

pytestmark = pytest.mark.usefixtures("one_thread")


def python_blocks() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def block_with(marker: str) -> str:
    found = [b for b in python_blocks() if marker in b]
    assert len(found) == 1, f"one README python block holds {marker!r}"
    return found[0]


class MyCNN(nn.Module):
    """The README's `MyCNN`: block1, block2, head."""

    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.block2 = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))

    def forward(self, x):
        return self.head(self.block2(self.block1(x)))


def fresh_mycnn() -> pcnets.PredictiveNet:
    """As the README builds it, before set_decoders."""
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    return pcnets.PredictiveNet(
        MyCNN(), ["block1", "block2"], None, mean=mean, std=std, name="mycnn"
    )


def test_your_own_module_snippet_and_reading_its_decoders_into_a_fresh_network(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    space = {"MyCNN": MyCNN}
    exec(block_with("net = MyCNN()"), space)  # noqa: S102 - the README's own code
    pnet = space["pnet"]
    x = torch.rand(2, 3, 32, 32)
    assert len(pnet.run(x, 2)) == 3
    fresh = fresh_mycnn()
    fresh.load_decoders("mycnn_decoders.pt")  # "load_decoders() reads it", on a fresh network
    saved, loaded = pnet.decoders.state_dict(), fresh.decoders.state_dict()
    assert list(saved) == list(loaded)
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_decoders_that_do_not_fit_say_what_does_not_fit(tmp_path):
    small = fresh_mycnn()
    small.set_decoders([build_decoder(s) for s in default_specs(small.shapes)])
    small.save_decoders(tmp_path / "d.pt")
    other = fresh_mycnn()
    other.set_decoders([nn.ConvTranspose2d(4, 3, 5, padding=2), small.decoders[1]])
    with pytest.raises(PcnetsError) as err:
        other.load_decoders(tmp_path / "d.pt")
    message = str(err.value)
    assert "Unexpected key(s) in state_dict" in message and "pnet.set_decoders" in message
    assert "\n" not in message


@pytest.mark.slow  # PVGG16 at 64 px, 10 timesteps three times
def test_the_python_snippet_with_a_random_backbone_warns_of_untrained_decoders():
    lines = [line for line in block_with("from pcnets import build_pnet").splitlines()]
    runnable = "\n".join(
        line for line in lines if "efficientnet" not in line and line.strip() != "..."
    )  # the EfficientNet lines need downloaded weights
    runnable = runnable.replace("for step in", "for _ in").replace(
        "# e_n(t) and prediction errors", "# e_n(t) and prediction errors\n    pass"
    )
    from PIL import Image

    x = torch.rand(1, 3, 64, 64)
    space = {"x": x, "pil_image": Image.new("RGB", (80, 80))}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(runnable, space)  # noqa: S102 - the README's own code
    assert any("untrained" in str(w.message) for w in caught)
    assert len(space["logits"]) == 11 and space["x_tensor"].shape[0] == 3


def test_the_autoattack_snippet_passes_the_device():
    # AutoAttack defaults to device='cuda'; on a CPU the snippet must pass it (the package is
    # optional and not installed here, so this is checked on the text)
    assert "device=device)" in block_with("AutoAttack(model")
