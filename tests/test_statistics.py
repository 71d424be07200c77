"""McNemar, Holm and the paired minimum detectable change against hand-computed numbers."""

import numpy as np
import pytest
from scipy.stats import binomtest

from pcnets.intervals import discordant, holm, mcnemar_p, paired_mde, paired_test


def test_mcnemar_matches_the_issue_and_scipy():
    # 35 images lost, 20 gained (issue 22): 2 * P[Bin(55, 1/2) <= 20] = 0.058
    assert mcnemar_p(35, 20) == pytest.approx(0.05806, abs=1e-5)
    assert mcnemar_p(20, 35) == pytest.approx(binomtest(20, 55, 0.5).pvalue, rel=1e-12)


def test_mcnemar_small_cases_by_hand():
    assert mcnemar_p(0, 0) == 1.0
    # b=5, c=0: 2 * (1/2)^5 = 0.0625
    assert mcnemar_p(5, 0) == pytest.approx(0.0625)
    # b=6, c=1: 2 * (1 + 7) / 128 = 0.125
    assert mcnemar_p(6, 1) == pytest.approx(0.125)
    assert mcnemar_p(3, 3) == 1.0
    with pytest.raises(ValueError):
        mcnemar_p(-1, 2)


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, 2*0.03, max(0.06, 1*0.04); NaN kept out of the family
    adjusted = holm([0.01, 0.04, 0.03, np.nan])
    np.testing.assert_allclose(adjusted[:3], [0.03, 0.06, 0.06])
    assert np.isnan(adjusted[3])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])
    assert holm([]).shape == (0,)


def test_mde_matches_the_issue():
    # sigma 0.25 of the demo: 55 discordant images of 485 -> about 4.3 points
    assert 100 * paired_mde(35, 20, 485) == pytest.approx(4.284, abs=1e-3)
    # 2.8016 * sqrt(0.1 / 100) = 0.0886
    assert paired_mde(6, 4, 100) == pytest.approx(2.801585 * np.sqrt(0.001), rel=1e-5)
    # no discordance: one image's worth, never 0
    assert paired_mde(0, 0, 100) == pytest.approx(2.801585 * np.sqrt(0.01 / 100), rel=1e-5)
    with pytest.raises(ValueError):
        paired_mde(1, 1, 0)


def test_paired_test_counts_discordant_images():
    first = np.array([1, 1, 1, 0, 0, 1], bool)
    second = np.array([1, 0, 0, 1, 0, 1], bool)
    assert discordant(first, second) == (2, 1)
    result = paired_test(first, second)
    assert (result["b"], result["c"]) == (2, 1)
    assert result["p_value"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        discordant(first, second[:3])


def test_summed_error_ratio_and_undefined_share_by_hand():
    from pcnets.intervals import undefined_share
    from pcnets.metrics import mce_intervals, summed_error_ratio

    # errors (corruption, severity, timestep): 2 + 0 errors at t=0 -> 1 + 1 at t=1: ratio 1.0,
    # while the relative mCE is (0.5 + inf) / 2
    errors = np.array([[[2.0, 1.0]], [[0.0, 1.0]]])
    np.testing.assert_allclose(summed_error_ratio(errors), [1.0, 1.0])
    errors[1, 0, 1] = 0.0
    np.testing.assert_allclose(summed_error_ratio(errors), [1.0, 0.5])
    assert undefined_share(np.array([1.0, np.nan, np.inf, 2.0])) == pytest.approx(0.5)
    # 4 images: corruption 0 wrong on image 0 at t=0 only; corruption 1 wrong on image 1 at t=1
    correct = np.ones((4, 2, 1, 2), dtype=bool)
    correct[0, 0, 0, 0] = False
    correct[1, 1, 0, 1] = False
    table = mce_intervals(correct, ["gaussian_noise", "fog"], n_resamples=400, seed=0)
    np.testing.assert_allclose(table["summed_error_ratio"], [1.0, 1.0])
    # corruption 1 has no error at t=0: the relative mCE at t=1 is inf in every resample
    assert table.loc[1, "relative_mce_undefined"] == 1.0
    # the ratio of sums is undefined only when image 0 is never drawn: (3/4)^4 of resamples
    assert table.loc[1, "summed_error_ratio_undefined"] == pytest.approx(0.75**4, abs=0.06)
    assert table.loc[0, "summed_error_ratio_undefined"] == pytest.approx(0.75**4, abs=0.06)
