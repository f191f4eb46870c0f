"""The one statistics module: Wilson and Student-t intervals, the percentile bootstrap and the
calibration backtest, each against a value computed independently."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rollrisk.models.stats import (
    BACKTEST_COLUMNS,
    calibration_backtest,
    group_bootstrap_standard_errors,
    percentile_bootstrap,
    t_interval,
    wilson_interval,
)


def test_wilson_interval_known_values_and_nan_without_trials() -> None:
    lower, upper = wilson_interval(np.array([10, 0, 3]), np.array([100, 20, 0]))
    # Wilson 95 % for 10/100: 0.0552 to 0.1744; for 0/20: 0 to z^2 / (20 + z^2) = 0.1611
    assert lower[0] == pytest.approx(0.05523, abs=1e-4)
    assert upper[0] == pytest.approx(0.17437, abs=1e-4)
    assert lower[1] == pytest.approx(0.0, abs=1e-12)
    assert upper[1] == pytest.approx(0.16112, abs=1e-4)
    assert math.isnan(lower[2]) and math.isnan(upper[2])


def test_t_interval_matches_a_hand_computation() -> None:
    stats = t_interval([1.0, 2.0, 3.0, 4.0])
    half = 3.182446305284263 * np.std([1, 2, 3, 4], ddof=1) / 2  # t(0.975, 3)
    assert stats["mean"] == pytest.approx(2.5)
    assert stats["sd"] == pytest.approx(1.2909944, abs=1e-6)
    assert stats["ci_low"] == pytest.approx(2.5 - half)
    assert stats["ci_high"] == pytest.approx(2.5 + half)
    single = t_interval([7.0])
    assert single["mean"] == 7.0 and math.isnan(single["sd"]) and math.isnan(single["ci_low"])


def test_percentile_bootstrap_of_a_proportion_matches_the_normal_approximation() -> None:
    # 1,000 accounts, 300 of them 1: the bootstrap interval of the mean is close to
    # 0.3 +- 1.96 * sqrt(0.3 * 0.7 / 1000) = [0.2716, 0.3284]
    values = np.array([1.0] * 300 + [0.0] * 700)
    low, high = percentile_bootstrap(lambda pick: float(values[pick].mean()), 1_000, 2_000, 3)
    assert low == pytest.approx(0.2716, abs=0.006)
    assert high == pytest.approx(0.3284, abs=0.006)
    again = percentile_bootstrap(lambda pick: float(values[pick].mean()), 1_000, 2_000, 3)
    assert again == (low, high)  # reproducible from the seed
    other = percentile_bootstrap(lambda pick: float(values[pick].mean()), 1_000, 2_000, 4)
    assert other != (low, high)


def test_percentile_bootstrap_resamples_n_positions_and_is_nan_without_units() -> None:
    seen: list[np.ndarray] = []

    def statistic(pick: np.ndarray) -> float:
        seen.append(pick)
        return float(len(pick))

    percentile_bootstrap(statistic, 5, 50, 0)
    assert len(seen) == 50
    assert all(len(pick) == 5 and pick.min() >= 0 and pick.max() <= 4 for pick in seen)
    assert len({tuple(pick) for pick in seen}) > 1  # with replacement, not the identity
    low, high = percentile_bootstrap(statistic, 0, 50, 0)
    assert math.isnan(low) and math.isnan(high)


def test_calibration_backtest_per_group_and_overall() -> None:
    probability = [0.1, 0.1, 0.1, 0.1, 0.6, 0.6, 0.9]
    outcome = [1, 0, 0, 0, 1, 1, 1]
    group = ["low", "low", "low", "low", "high", "high", "unlisted"]
    table = calibration_backtest(probability, outcome, group, ["low", "medium", "high"])
    assert tuple(table.columns) == BACKTEST_COLUMNS
    assert table["group"].tolist() == ["low", "medium", "high", "all"]
    rows = table.set_index("group")
    assert rows.loc["low", "accounts"] == 4 and rows.loc["low", "rolled"] == 1
    assert rows.loc["low", "realised_rate"] == pytest.approx(0.25)
    assert rows.loc["low", "predicted_mean"] == pytest.approx(0.1)
    assert rows.loc["low", "gap"] == pytest.approx(0.15)
    low, high = wilson_interval(np.array([1]), np.array([4]))
    assert rows.loc["low", "ci_lower"] == pytest.approx(low[0])
    assert rows.loc["low", "ci_upper"] == pytest.approx(high[0])
    assert rows.loc["medium", "accounts"] == 0 and math.isnan(rows.loc["medium", "realised_rate"])
    assert rows.loc["high", "realised_rate"] == pytest.approx(1.0)
    # the unlisted group's row counts only overall
    assert rows.loc["all", "accounts"] == 7 and rows.loc["all", "rolled"] == 4
    assert rows.loc["all", "predicted_mean"] == pytest.approx(sum(probability) / 7)


def test_group_bootstrap_keeps_groups_whole_and_matches_the_standard_error_of_a_mean() -> None:
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(400), 2)  # two rows per account, always drawn together
    values = rng.normal(size=400).repeat(2)

    def statistic(rows: np.ndarray) -> list[float]:
        picked = groups[rows]
        assert (picked[0::2] == picked[1::2]).all()  # an account's two rows side by side
        return [float(values[rows].mean()), 1.0]  # a constant has no noise

    errors = group_bootstrap_standard_errors(statistic, groups, samples=400, seed=0)
    # the mean of 400 independent unit normals: standard error 1 / 20
    assert errors.shape == (2,)
    assert abs(errors[0] - 0.05) < 0.008
    assert errors[1] == 0.0
    again = group_bootstrap_standard_errors(statistic, groups, samples=400, seed=0)
    np.testing.assert_array_equal(errors, again)


def test_stratified_bootstrap_keeps_each_stratum_and_its_size() -> None:
    # 3 units in a small arm beside 500 in a control: each resample holds exactly 3 arm draws
    # (from the arm) and 500 control draws (from the control); a pooled draw would often hold
    # no arm unit at all (probability (500/503)^503 ~ 5 %) and leave the gap undefined
    strata = np.array(["arm"] * 3 + ["control"] * 500)
    sizes: list[tuple[int, int]] = []

    def statistic(pick: np.ndarray) -> float:
        in_arm = pick < 3
        sizes.append((int(in_arm.sum()), int((~in_arm).sum())))
        return float(in_arm.sum())

    low, high = percentile_bootstrap(statistic, 503, 300, 1, strata=strata)
    assert set(sizes) == {(3, 500)} and (low, high) == (3.0, 3.0)
    with pytest.raises(ValueError, match="2 labels for 503 units"):
        percentile_bootstrap(statistic, 503, 10, 1, strata=["a", "b"])
    with pytest.raises(ValueError, match="1 missing label"):  # never drawn: refused
        percentile_bootstrap(statistic, 3, 10, 1, strata=["a", None, "b"])


def test_stratified_bootstrap_of_a_difference_matches_the_normal_approximation() -> None:
    # two samples, 400 and 1,600 values: the gap of means 0.5 - 0.3 has a standard error
    # sqrt(0.25 / 400 + 0.21 / 1600) = 0.02751, so the 95 % interval is about 0.2 +- 0.0539
    a = np.array([1.0] * 200 + [0.0] * 200)
    b = np.array([1.0] * 480 + [0.0] * 1120)
    values = np.concatenate([a, b])
    group = np.array([0] * 400 + [1] * 1600)

    def gap(pick: np.ndarray) -> float:
        chosen = values[pick]
        return float(chosen[group[pick] == 0].mean() - chosen[group[pick] == 1].mean())

    low, high = percentile_bootstrap(gap, 2000, 2000, 5, strata=group)
    assert low == pytest.approx(0.2 - 0.0539, abs=0.007)
    assert high == pytest.approx(0.2 + 0.0539, abs=0.007)
