"""The registry: the paper's models on current timm/torchvision, weights, and clear errors."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest
import torch
import torchvision
from torchvision.datasets import ImageFolder

from pcnets import build_pnet
from pcnets.config import CONF_DIR
from pcnets.errors import PcnetsError


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_lite0"])
def test_efficientnets_have_8_encoders_and_fitting_decoders(name):
    pnet = build_pnet(name, pretrained=False).eval()
    assert pnet.num_encoders == 8 and len(pnet.decoders) == 8
    assert pnet.encoder_names[0] == "bn1"
    x = torch.rand(1, 3, 224, 224)
    step = next(pnet.steps(x, timesteps=0, states=True))
    targets = [pnet.normalize(x), *step.states[:-1]]
    channels = [e.shape[1] for e in step.states]
    assert channels == [32, 16, 24, 40, 80, 112, 192, 320]
    with torch.no_grad():
        for dec, e, target in zip(pnet.decoders, step.states, targets, strict=True):
            assert dec(e).shape == target.shape


def test_efficientnet_lite0_packaged_weights_score_87_percent_on_the_sample(sample_root):
    pnet = build_pnet("efficientnet_lite0").eval()
    data = ImageFolder(sample_root / "val", transform=pnet.transform)
    assert len(data) == 1000
    loader = torch.utils.data.DataLoader(data, batch_size=50, num_workers=2)
    correct = 0
    with torch.no_grad():
        for x, y in loader:
            correct += (pnet.run(x, timesteps=0)[0].argmax(1) == y).sum().item()
    assert abs(correct / 10 - 87.3) <= 1.0, f"top-1 {correct / 10:.1f}%"


def test_local_weights_file_loads_a_plain_torchvision_state_dict(tmp_path):
    torch.manual_seed(3)
    plain = torchvision.models.resnet18().eval()
    torch.save(plain.state_dict(), tmp_path / "r18.pth")
    pnet = build_pnet("resnet18", weights=str(tmp_path / "r18.pth")).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(pnet.run(x, timesteps=0)[0], plain(pnet.normalize(x)))
    assert pnet.mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])


def test_download_path_fetches_from_a_url(tmp_path, monkeypatch):
    torch.manual_seed(4)
    plain = torchvision.models.resnet18()
    (tmp_path / "www").mkdir()
    torch.save(plain.state_dict(), tmp_path / "www" / "r18-weights.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=tmp_path / "www")
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/r18-weights.pth"
        pnet = build_pnet("resnet18", download_url=url)
    finally:
        server.shutdown()
    assert torch.equal(pnet.backbone.conv1.weight, plain.conv1.weight)
    assert (tmp_path / "hub" / "checkpoints" / "r18-weights.pth").is_file()


def test_offline_download_names_the_local_weights_option(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(PcnetsError, match=r"backbone\.weights=PATH"):
        build_pnet("resnet18", download_url="http://127.0.0.1:9/nothing.pth")


def test_generic_entry_builds_any_model_with_default_decoders():
    pnet = build_pnet("mobilenet_v3_small", pretrained=False, encoders=["features.1", "features.3"])
    assert [d[-1].out_channels for d in pnet.decoders] == [3, 16]
    assert len(pnet.run(torch.rand(1, 3, 64, 64), timesteps=2)) == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "vgg61"}, r"unknown backbone 'vgg61' \(did you mean: vgg16"),
        ({"name": "resnet18", "encoders": ["layer1", "layr2"]}, r"'layr2' not found.*layer2"),
        ({"name": "resnet18", "beta": 0.95, "lam": 0.1}, r"beta \+ lambda must be <= 1"),
        ({"name": "resnet18", "alpha": -0.1}, r"alpha must be >= 0"),
        ({"name": "resnet18", "beta": [0.5, 0.5]}, r"beta needs one value or 4 values"),
        (
            {"name": "resnet18", "decoders": [{"in_ch": 64, "out_ch": 3}] * 4},
            r"decoder 1 maps 'layer1' \(64, 16, 16\) to \(3, 16, 16\).*\(3, 64, 64\)",
        ),
        ({"name": "resnet18", "colour": "red"}, r"unknown backbone options \['colour'\]"),
    ],
)
def test_bad_input_gets_one_clear_error(kwargs, message):
    name = kwargs.pop("name")
    with pytest.raises(PcnetsError, match=message):
        build_pnet(name, pretrained=False, **kwargs)


def test_decoder_files_refuse_another_backbone(tmp_path):
    b0 = build_pnet("efficientnet_b0", pretrained=False)
    b0.save_decoders(tmp_path / "b0.pt")
    lite = build_pnet("efficientnet_lite0", pretrained=False)
    with pytest.raises(PcnetsError, match="for backbone 'efficientnet_b0'"):
        lite.load_decoders(tmp_path / "b0.pt")
    torch.manual_seed(9)
    other = build_pnet("efficientnet_b0", pretrained=False)
    other.load_decoders(tmp_path / "b0.pt")
    assert torch.equal(other.decoders[3][1].weight, b0.decoders[3][1].weight)


REGISTERED = sorted(
    p.stem for p in (CONF_DIR / "backbone").glob("*.yaml") if p.stem != "generic"
)  # generic is abstract: it needs an arch and encoders


@pytest.mark.parametrize("name", REGISTERED)
def test_every_registered_backbone_builds_and_its_decoders_fit_its_encoders(name):
    """Random weights at 64 px: the encoders' shapes are the probe's and shrink (never grow)
    up the hierarchy, and decoder n maps encoder n's shape to encoder n-1's (decoder 0: to the
    image)."""
    torch.manual_seed(0)
    pnet = build_pnet(name, pretrained=False).eval()
    shapes = pnet.feature_shapes(64)
    assert len(shapes) == pnet.num_encoders + 1 == len(pnet.decoders) + 1
    assert shapes[0] == (3, 64, 64) and shapes[-1][1] < 64
    assert all(b[1] <= a[1] and b[2] <= a[2] for a, b in zip(shapes, shapes[1:], strict=False))
    with torch.no_grad():
        x = torch.rand(1, 3, 64, 64)
        feats = {}
        hooks = [
            dict(pnet.backbone.named_modules())[m].register_forward_hook(
                lambda mod, i, out, n=n: feats.__setitem__(n, out)
            )
            for n, m in enumerate(pnet.encoder_names)
        ]
        pnet.feedforward(x)
        for h in hooks:
            h.remove()
        assert [tuple(feats[n].shape[1:]) for n in range(pnet.num_encoders)] == shapes[1:]
        for n, dec in enumerate(pnet.decoders):
            assert tuple(dec(feats[n]).shape[1:]) == shapes[n], (name, n)


def test_timm_weights_come_from_the_tag_that_chose_the_preprocessing(monkeypatch):
    import timm
    from omegaconf import OmegaConf

    from pcnets.backbones.sources import SOURCES

    asked = []
    real = timm.create_model

    def create(name, pretrained=False, **kw):
        asked.append((name, pretrained))
        return real(name, pretrained=False, **kw)

    monkeypatch.setattr(timm, "create_model", create)
    cfg = OmegaConf.create(
        {"name": "r", "arch": "resnet18", "weights_tag": "a1_in1k", "weights": None}
    )
    source = SOURCES["timm"]
    model, meta = source.model(cfg)
    model.pretrained_cfg = {**model.pretrained_cfg, "url": ""}  # no URL: timm's own download
    state, origin = source.published(cfg, model)
    assert asked == [("resnet18.a1_in1k", False), ("resnet18.a1_in1k", True)]
    assert origin == "timm resnet18.a1_in1k" and set(state) == set(model.state_dict())
    assert meta["crop"] == real("resnet18.a1_in1k").pretrained_cfg["input_size"][-1]
