"""export-decoders writes the paper authors' format, and import-decoders reads it back exactly."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from pcnets import build_pnet
from pcnets.cli import app

SMALL = "backbone.probe_size=32"


def run_cli(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output.strip().splitlines()


@pytest.fixture
def decoder_file(tmp_path):
    """A pcnets decoder file of efficientnet_lite0 with random (not initial) weights."""
    pnet = build_pnet("efficientnet_lite0", pretrained=False, probe_size=32)
    torch.manual_seed(5)
    with torch.no_grad():
        for p in pnet.decoders.parameters():
            p.copy_(torch.randn_like(p))
    path = tmp_path / "decoders.pt"
    pnet.save_decoders(path)
    return path, pnet.decoders.state_dict()


@pytest.mark.parametrize("style", ["pvgg16", "peffb0"])
def test_export_then_import_gives_identical_tensors(tmp_path, decoder_file, style):
    src, original = decoder_file
    folder = tmp_path / "authors"
    base = ["--backbone", "efficientnet_lite0"]
    code, lines = run_cli("export-decoders", *base, "--src", str(src), "--out", str(folder),
                          "--style", style, SMALL)  # fmt: skip
    assert code == 0, lines
    names = sorted(f.name for f in folder.iterdir())
    suffix = "_pmodule.pth" if style == "pvgg16" else ".pth"
    assert names == sorted(f"pefficientnet_lite0_pc{n}{suffix}" for n in range(1, 9))
    third = torch.load(folder / f"pefficientnet_lite0_pc3{suffix}", weights_only=True)
    if style == "peffb0":  # the authors' checkpoint: the PCoder's state dict, 'pmodule.' keys
        assert sorted(third) == ["pcoderweights"]
        assert sorted(third["pcoderweights"]) == ["pmodule.1.bias", "pmodule.1.weight"]
    else:  # the authors' PVGG16 files: the decoder's nn.Sequential state dict itself
        assert sorted(third) == ["1.bias", "1.weight"]
    back = tmp_path / "back.pt"
    code, lines = run_cli("import-decoders", *base, "--src", str(folder), "--out", str(back), SMALL)
    assert code == 0 and lines[-1] == f"decoders: {back}", lines
    loaded = build_pnet("efficientnet_lite0", pretrained=False, probe_size=32, decoders=str(back))
    again = loaded.decoders.state_dict()
    assert list(again) == list(original)
    assert all(torch.equal(again[k], v) for k, v in original.items())


def test_export_refuses_a_folder_with_other_decoder_files_and_a_bad_style(tmp_path, decoder_file):
    src, _ = decoder_file
    folder = tmp_path / "authors"
    folder.mkdir()
    (folder / "old_pc1_pmodule.pth").write_bytes(b"")
    base = ["export-decoders", "--backbone", "efficientnet_lite0", "--src", str(src), SMALL]
    code, lines = run_cli(*base, "--out", str(folder))
    assert code == 2 and len(lines) == 1 and "already holds other decoder files" in lines[0]
    code, lines = run_cli(*base, "--out", str(tmp_path / "new"), "--style", "pvgg")
    assert code == 2 and len(lines) == 1 and "did you mean: pvgg16" in lines[0]
