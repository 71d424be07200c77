"""Noise levels in the paper's (reference), the backbone's (normalised) and pixel units."""

import pytest

from pcnets.data.sigma_units import check_sigma_unit, in_space, sigma_in_units, units_text
from pcnets.errors import PcnetsError

LITE0 = (0.5, 0.5, 0.5)
VGG = (0.229, 0.224, 0.225)


def test_the_issue_conversion_on_lite0():
    # Lite0's sigma 0.25 and 0.5 are pixel 0.125 and 0.25, i.e. the paper's 0.55 and 1.1
    units = sigma_in_units(0.25, "normalized", LITE0)
    assert units["pixel"] == pytest.approx(0.125)
    assert units["reference"] == pytest.approx(0.125 / 0.226, abs=1e-6)
    assert sigma_in_units(0.5, "normalized", LITE0)["reference"] == pytest.approx(1.106, abs=1e-3)
    # the paper's 0.25 on Lite0: pixel 0.0565, normalised 0.113
    ref = sigma_in_units(0.25, "reference", LITE0)
    assert ref["pixel"] == pytest.approx(0.0565) and ref["normalized"] == pytest.approx(0.113)
    assert in_space(0.25, "reference", "normalized", LITE0) == pytest.approx(0.113)
    assert in_space(0.25, "reference", "pixel", LITE0) == pytest.approx(0.0565)
    assert units_text(ref) == "0.113 normalised = 0.0565 px = 0.25 reference"


def test_reference_is_normalised_on_imagenet_std_and_pixel_is_itself():
    assert sigma_in_units(0.75, "reference", VGG)["normalized"] == pytest.approx(0.75)
    assert sigma_in_units(0.1, "pixel", VGG) == pytest.approx(
        {"reference": 0.1 / 0.226, "normalized": 0.1 / 0.226, "pixel": 0.1}, abs=1e-6
    )
    assert check_sigma_unit("normalised") == "normalized"
    with pytest.raises(PcnetsError, match="eval.sigma_unit must be one of"):
        check_sigma_unit("pixels")
    with pytest.raises(PcnetsError, match="std must be > 0"):
        sigma_in_units(1.0, "pixel", (0.0, 0.0, 0.0))
