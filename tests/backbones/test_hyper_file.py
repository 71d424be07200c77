"""hyper.json is checked field by field: null, missing, wrong type, wrong length, not a JSON
object, not UTF-8 are each one line naming the field (issue 24 item 4)."""

from __future__ import annotations

import json

import pytest
from helpers import tiny_pnet

from pcnets.backbones import load_hyper
from pcnets.errors import PcnetsError

GOOD = {"backbone": "tiny", "beta": [0.5, 0.4, 0.3], "lam": [0.2, 0.1, 0.0], "alpha": 0.01}


def hyper_file(tmp_path, content) -> str:
    path = tmp_path / "hyper.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(json.dumps(content))
    return str(path)


def test_a_good_file_gives_its_values(tmp_path):
    values = load_hyper(hyper_file(tmp_path, GOOD), tiny_pnet())
    assert values == {"beta": [0.5, 0.4, 0.3], "lam": [0.2, 0.1, 0.0], "alpha": 0.01}


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ({**GOOD, "beta": None}, "field 'beta' is null; give a number or 3 numbers"),
        ({k: v for k, v in GOOD.items() if k != "lam"}, "field 'lam' is missing"),
        ({**GOOD, "alpha": "0.01"}, "field 'alpha' must be a finite number or a list of 3"),
        ({**GOOD, "beta": [0.5, True, 0.3]}, "field 'beta' must be a finite number"),
        ({**GOOD, "lam": [0.1, 0.1]}, "field 'lam' has 2 values, but the network has 3 encoders"),
        ({**GOOD, "alpha": {"a": 1}}, "field 'alpha' must be a finite number"),
        ([1, 2], "holds a JSON list, not an object with beta, lam, alpha"),
        ("text", "holds a JSON str, not an object"),
        (b'{"beta": "\xff"}', "is not UTF-8 text (byte 10)"),
        (b"{not json", "is not valid JSON"),
    ],
)
def test_a_bad_field_is_one_line_naming_it(tmp_path, content, line):
    with pytest.raises(PcnetsError) as err:
        load_hyper(hyper_file(tmp_path, content), tiny_pnet())
    assert line in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith("pc.hyper: ")
