"""Accuracy, CE, both mCEs and bootstrap intervals against small hand-computed examples."""

import numpy as np
import pandas as pd
import pytest

from pcnets import metrics as m


def test_accuracy_and_error_from_counts():
    assert m.accuracy(3, 4) == 0.75
    assert m.error_rate(3, 4) == 0.25
    np.testing.assert_allclose(m.error_rate([1, 9], [10, 10]), [0.9, 0.1])


def test_rates_sums_counts_per_group_first():
    df = pd.DataFrame(
        {"sigma": [0.5, 0.5, 1.0], "shard": [0, 1, 0], "correct": [3, 1, 2], "total": [4, 4, 8]}
    )
    table = m.rates(df, by=["sigma"])
    assert table["correct"].tolist() == [4, 2]
    np.testing.assert_allclose(table["accuracy"], [0.5, 0.25])
    np.testing.assert_allclose(table["error"], [0.5, 0.75])


def test_alexnet_reference_has_the_15_standard_corruptions():
    assert len(m.ALEXNET_ERR) == 15 and len(m.ALL_CORRUPTIONS) == 19
    assert m.ALEXNET_ERR["gaussian_noise"] == 0.886428
    assert m.ALEXNET_ERR["jpeg_compression"] == 0.606500
    assert sum(m.ALEXNET_ERR.values()) == pytest.approx(11.834896)
    assert not set(m.EXTRA_CORRUPTIONS) & set(m.ALEXNET_ERR)


def test_corruption_error_sums_severities_and_normalises():
    errors = [0.1, 0.2, 0.3, 0.4, 0.5]
    assert m.corruption_error(errors) == pytest.approx(1.5)
    assert m.corruption_error(errors, reference=[0.5] * 5) == pytest.approx(0.6)
    assert m.corruption_error(errors, reference=3.0) == pytest.approx(0.5)


def test_relative_mce_by_hand():
    # 2 corruptions x 2 severities x 2 timesteps: CE ratios t1/t0 are 0.5/1.0 and 0.75/1.0
    errors = np.array(
        [
            [[0.4, 0.2], [0.6, 0.3]],
            [[0.5, 0.5], [0.5, 0.25]],
        ]
    )
    np.testing.assert_allclose(m.relative_mce(errors), [1.0, 0.625])


def test_standard_mce_divides_by_five_times_alexnet_average_and_skips_extras():
    errors = np.full((2, 5, 1), 0.5)  # brightness and saturate, error 0.5 at every severity
    got = m.standard_mce(errors, ["brightness", "saturate"])
    np.testing.assert_allclose(got, [2.5 / (5 * 0.564592)])
    alexnet = np.array([[[m.ALEXNET_ERR[c]]] * 5 for c in m.STANDARD_CORRUPTIONS])
    np.testing.assert_allclose(m.standard_mce(alexnet, m.STANDARD_CORRUPTIONS), [1.0])
    with pytest.raises(ValueError, match="AlexNet"):
        m.standard_mce(errors, ["saturate", "spatter"])


def test_mce_table_reports_extras_apart():
    errors = np.stack([np.full((5, 2), 0.5), np.stack([np.full(5, 0.4), np.full(5, 0.2)], axis=1)])
    table = m.mce_table(errors, ["brightness", "spatter"])
    np.testing.assert_allclose(table["relative_mce"], [1.0, 0.75])
    np.testing.assert_allclose(table["standard_mce"], [2.5 / (5 * 0.564592)] * 2)
    np.testing.assert_allclose(table["extra_relative_mce"], [1.0, 0.5])
    rows = m.corruption_table(errors, ["brightness", "spatter"])
    spatter = rows[rows.corruption == "spatter"]
    assert spatter["group"].tolist() == ["extra", "extra"]
    np.testing.assert_allclose(spatter["ce"], [2.0, 1.0])
    assert spatter["alexnet_ce"].isna().all()


def test_error_cube_from_a_long_table_of_counts():
    rows = [
        {"corruption": c, "severity": s, "timestep": t, "correct": 10 * s + t, "total": 100}
        for c in ("spatter", "fog")
        for s in (1, 2)
        for t in (0, 1)
    ]
    names, errors = m.error_cube(pd.DataFrame(rows))
    assert names == ["fog", "spatter"]  # METHOD.md order: standard before extra
    assert errors.shape == (2, 2, 2)
    assert errors[0, 1, 1] == pytest.approx(1 - 21 / 100)
    with pytest.raises(ValueError, match="no counts"):
        m.error_cube(pd.DataFrame(rows[:-1]))


def test_bootstrap_means_is_a_resample_of_images_with_replacement():
    rng = np.random.default_rng(1)
    correct = rng.random((30, 4)) < 0.6
    got = m.bootstrap_means(correct, n_resamples=50, seed=7)
    picks = np.random.default_rng(7).integers(0, 30, size=(50, 30))
    np.testing.assert_allclose(got, correct[picks].mean(axis=1), atol=1e-6)


def test_accuracy_interval_contains_estimate_shrinks_and_is_seeded():
    rng = np.random.default_rng(0)
    small = rng.random((100, 2)) < 0.7
    large = rng.random((4000, 2)) < 0.7
    point, low, high = m.accuracy_interval(small, seed=3)
    assert np.all(low <= point) and np.all(point <= high)
    _, low_l, high_l = m.accuracy_interval(large, seed=3)
    assert np.all((high_l - low_l) < (high - low) / 3)
    again = m.accuracy_interval(small, seed=3)
    np.testing.assert_array_equal(again[1], low)
    assert not np.array_equal(m.accuracy_interval(small, seed=4)[1:], (low, high))
    _, low1, high1 = m.accuracy_interval(np.ones((50, 1), dtype=bool))
    assert low1[0] == high1[0] == 1.0


def test_mce_intervals_contain_the_estimates():
    rng = np.random.default_rng(0)
    names = ["gaussian_noise", "fog", "saturate"]
    # (images, corruption, severity, timestep): feedback helps, so accuracy rises with t
    p = np.linspace(0.3, 0.5, 3)[None, None, None, :]
    correct = rng.random((400, 3, 5, 3)) < p
    table = m.mce_intervals(correct, names, n_resamples=300, seed=0)
    assert table.loc[0, "relative_mce_low"] == table.loc[0, "relative_mce_high"] == 1.0
    for stat in ("relative_mce", "standard_mce", "extra_relative_mce"):
        assert (table[f"{stat}_low"] <= table[stat]).all()
        assert (table[stat] <= table[f"{stat}_high"]).all()
    assert table.loc[2, "relative_mce_high"] < 1.0


def test_mce_intervals_by_hand_on_one_severity():
    # 4 images, one severity, 2 timesteps; gaussian_noise errors 2/4 -> 1/4, spatter 1/4 -> 1/4
    correct = np.ones((4, 2, 1, 2), dtype=bool)
    correct[:2, 0, 0, 0] = False
    correct[0, 0, 0, 1] = False
    correct[3, 1, 0, :] = False
    table = m.mce_intervals(correct, ["gaussian_noise", "spatter"], n_resamples=200, seed=0)
    np.testing.assert_allclose(table["relative_mce"], [1.0, (0.5 + 1.0) / 2])
    np.testing.assert_allclose(table["standard_relative_mce"], [1.0, 0.5])
    np.testing.assert_allclose(table["extra_relative_mce"], [1.0, 1.0])
    # one of 5 severities: the mean error over it, divided by AlexNet's severity-averaged error
    np.testing.assert_allclose(table["standard_mce"], [0.5 / 0.886428, 0.25 / 0.886428])
    assert (table["standard_mce_low"] <= table["standard_mce"]).all()
    # a resample where the feedforward CE is 0 makes the ratio +inf: the bound is inf, not NaN
    low, high = m.ratio_interval(np.array([[1.0], [1.2], [np.inf], [np.inf]]))
    assert np.isfinite(low[0]) and np.isposinf(high[0])
