"""Calibration: both methods fix a known distortion, the choice follows the evidence, round trips."""

from __future__ import annotations

import numpy as np
import pytest

from rollrisk.models.calibration import (
    IdentityCalibrator,
    IsotonicCalibrator,
    PlattCalibrator,
    calibrator_from_dict,
    em_prior,
    make_calibrator,
    select_calibrator,
    shift_prior,
)


def _distorted(n: int, seed: int, power: float) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes drawn with probability p, but the score reported is p ** power (miscalibrated)."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.02, 0.9, size=n)
    y = (rng.uniform(size=n) < truth).astype(int)
    return truth**power, y


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_reduces_brier_on_a_distorted_score(method: str) -> None:
    raw, y = _distorted(4000, seed=1, power=2.0)  # scores far too low
    raw_test, y_test = _distorted(4000, seed=2, power=2.0)
    calibrator = make_calibrator(method).fit(raw, y)
    before = np.mean((raw_test - y_test) ** 2)
    after = np.mean((calibrator.predict(raw_test) - y_test) ** 2)
    assert after < before - 0.01
    assert abs(calibrator.predict(raw_test).mean() - y_test.mean()) < 0.02


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibrators_are_monotone_non_decreasing(method: str) -> None:
    raw, y = _distorted(2000, seed=3, power=1.5)
    calibrator = make_calibrator(method).fit(raw, y)
    grid = np.linspace(0.0, 1.0, 501)
    assert np.all(np.diff(calibrator.predict(grid)) >= -1e-12)


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_round_trip_through_dict_predicts_the_same(method: str) -> None:
    raw, y = _distorted(1000, seed=4, power=1.3)
    calibrator = make_calibrator(method).fit(raw, y)
    again = calibrator_from_dict(calibrator.to_dict())
    np.testing.assert_allclose(again.predict(raw), calibrator.predict(raw), rtol=0, atol=1e-12)


def test_probabilities_stay_inside_the_open_unit_interval() -> None:
    raw = np.array([0.0, 0.0, 0.1, 0.9, 1.0, 1.0])
    y = np.array([0, 0, 0, 1, 1, 1])
    p = IsotonicCalibrator().fit(raw, y).predict(raw)
    assert p.min() > 0.0 and p.max() < 1.0


def test_auto_picks_isotonic_for_a_step_shaped_distortion() -> None:
    # A step-shaped truth that no sigmoid of the logit can follow, with plenty of rows.
    rng = np.random.default_rng(5)
    raw = rng.uniform(0, 1, size=6000)
    truth = np.where(raw < 0.5, 0.05, 0.6)
    y = (rng.uniform(size=raw.size) < truth).astype(int)
    calibrator, evidence = select_calibrator(raw, y, folds=5)
    assert evidence.chosen == "isotonic"
    assert isinstance(calibrator, IsotonicCalibrator)
    assert evidence.by_method["isotonic"].brier < evidence.by_method["platt"].brier


def test_auto_picks_platt_for_a_sigmoid_distortion_on_few_rows() -> None:
    rng = np.random.default_rng(6)
    z = rng.normal(size=300)
    raw = 1 / (1 + np.exp(-0.5 * z))  # under-confident score of a logistic truth
    y = (rng.uniform(size=z.size) < 1 / (1 + np.exp(-1.0 * z))).astype(int)
    calibrator, evidence = select_calibrator(raw, y, folds=5)
    assert evidence.chosen == "platt"
    assert isinstance(calibrator, PlattCalibrator)
    metrics = evidence.as_metrics()
    assert {
        "calibration_platt_brier",
        "calibration_isotonic_ece",
        "calibration_uncalibrated_brier",
    } <= set(metrics)


def test_forced_method_is_used_and_both_are_still_measured() -> None:
    raw, y = _distorted(500, seed=7, power=2.0)
    calibrator, evidence = select_calibrator(raw, y, method="isotonic")
    assert evidence.chosen == "isotonic" and isinstance(calibrator, IsotonicCalibrator)
    assert set(evidence.by_method) == {"isotonic", "platt"}


def test_folds_keep_an_account_together() -> None:
    raw, y = _distorted(600, seed=8, power=1.0)
    groups = np.repeat(np.arange(3), 200)  # three accounts only: at most three folds
    _, evidence = select_calibrator(raw, y, groups=groups, folds=5)
    assert evidence.n_folds == 3


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="both outcomes"):
        PlattCalibrator().fit(np.array([0.1, 0.2]), np.array([0, 0]))
    with pytest.raises(ValueError, match="differ in length"):
        IsotonicCalibrator().fit(np.array([0.1, 0.2, 0.3]), np.array([0, 1]))
    with pytest.raises(RuntimeError, match="not fitted"):
        PlattCalibrator().predict(np.array([0.5]))
    with pytest.raises(ValueError, match="unknown calibration method 'beta'"):
        select_calibrator(np.array([0.1, 0.9]), np.array([0, 1]), method="beta")


def test_auto_does_not_pick_isotonic_on_a_small_slice() -> None:
    rng = np.random.default_rng(5)
    raw = rng.uniform(0, 1, size=6000)
    y = (rng.uniform(size=raw.size) < np.where(raw < 0.5, 0.05, 0.6)).astype(int)
    _, evidence = select_calibrator(raw, y, folds=5, min_isotonic_rows=10_000)
    assert evidence.by_method["isotonic"].brier < evidence.by_method["platt"].brier
    assert evidence.chosen == "platt"


# --------------------------------------------------------------- chosen out of time (rolling origin)

MONTHS = ("2025-02-28", "2025-03-31", "2025-04-30")


def _months_of(
    rates: tuple[float, ...], n: int, seed: int, power: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``n`` rows per month of :data:`MONTHS`, one account each. The score is a truth ``p``
    (raised to ``power``: 1 keeps it calibrated) of the *last* month's population; in each
    month the outcomes are drawn from ``p`` moved to that month's roll rate (``rates``, the
    first ones relative to the last), so a map fitted on earlier months carries their level."""
    rng = np.random.default_rng(seed)
    raws, labels, months = [], [], []
    for month, rate in zip(MONTHS, rates, strict=True):
        truth = 1 / (1 + np.exp(-rng.normal(-1.6, 1.2, size=n)))  # mean about 0.22
        moved = shift_prior(truth, rates[-1], rate)
        labels.append((rng.uniform(size=n) < moved).astype(int))
        raws.append(truth**power)
        months.append(np.full(n, month))
    raw, y, month = np.concatenate(raws), np.concatenate(labels), np.concatenate(months)
    return raw, y, month, np.arange(raw.size)


def test_rolling_origin_keeps_the_raw_score_when_earlier_months_roll_at_another_rate() -> None:
    # Earlier months roll at 0.30 where the latest rolls at 0.22 (the demo's fall): a map fitted
    # on them lifts every probability, and the latest month shows it.
    raw, y, months, groups = _months_of((0.30, 0.30, 0.22), n=3000, seed=21)
    calibrator, evidence = select_calibrator(raw, y, groups=groups, months=months)
    rolling = evidence.rolling_origin
    assert rolling is not None and rolling.scored_months == (MONTHS[-1],)
    assert rolling.fit_months == MONTHS[:-1] and rolling.fit_rows == 6000
    assert rolling.by_candidate["platt"].ece > rolling.by_candidate["none"].ece + 0.03
    assert evidence.chosen == "none" and isinstance(calibrator, IdentityCalibrator)
    np.testing.assert_allclose(calibrator.predict(raw), raw, rtol=0, atol=1e-6)
    assert "no map" in evidence.rule


def test_rolling_origin_picks_a_map_when_the_rate_is_stable_and_the_score_distorted() -> None:
    # Same roll rate every month, but the score is p ** 2 (far too low): a map fitted on the
    # earlier months fixes the latest month well beyond the noise.
    raw, y, months, groups = _months_of((0.22, 0.22, 0.22), n=3000, seed=22, power=2.0)
    calibrator, evidence = select_calibrator(raw, y, groups=groups, months=months)
    rolling = evidence.rolling_origin
    assert rolling is not None
    assert evidence.chosen in ("platt", "isotonic")
    gain = rolling.by_candidate["none"].ece - rolling.by_candidate[evidence.chosen].ece
    assert gain > 1.645 * rolling.ece_gain_se[evidence.chosen] > 0
    # refitted on every month: calibrated on the whole window
    assert abs(calibrator.predict(raw).mean() - y.mean()) < 0.01


def test_rolling_origin_needs_more_than_noise_to_leave_a_calibrated_score() -> None:
    raw, y, months, groups = _months_of((0.22, 0.22, 0.22), n=2000, seed=23)
    _, evidence = select_calibrator(raw, y, groups=groups, months=months)
    assert evidence.chosen == "none"
    assert set(evidence.rolling_origin.ece_gain_se) == {"platt", "isotonic"}


def test_rolling_origin_is_reproducible_and_logged() -> None:
    raw, y, months, groups = _months_of((0.30, 0.26, 0.22), n=1500, seed=24)
    first = select_calibrator(raw, y, groups=groups, months=months, seed=3)[1]
    again = select_calibrator(raw, y, groups=groups, months=months, seed=3)[1]
    assert first == again
    metrics = first.as_metrics()
    assert {"calibration_rolling_none_ece", "calibration_rolling_platt_ece_gain_se"} <= set(metrics)
    assert first.as_dict()["rolling_origin"]["scored_months"] == [MONTHS[-1]]
    assert "2025-02-28..2025-03-31" in first.summary()


def test_rolling_origin_skips_isotonic_on_few_rows_and_falls_back_on_one_month() -> None:
    raw, y, months, groups = _months_of((0.22, 0.22, 0.22), n=300, seed=25, power=2.0)
    _, evidence = select_calibrator(raw, y, groups=groups, months=months)
    assert "isotonic" in evidence.rolling_origin.skipped
    assert "isotonic" not in evidence.rolling_origin.by_candidate
    single = np.full(raw.size, MONTHS[0])
    _, evidence = select_calibrator(raw, y, groups=groups, months=single)
    assert evidence.rolling_origin is None and evidence.chosen in ("platt", "isotonic")
    assert "one month" in evidence.rule


def test_none_is_a_calibrator_that_round_trips() -> None:
    raw, y = _distorted(500, seed=9, power=2.0)
    calibrator, evidence = select_calibrator(raw, y, method="none")
    assert evidence.chosen == "none" and isinstance(calibrator, IdentityCalibrator)
    again = calibrator_from_dict(calibrator.to_dict())
    np.testing.assert_allclose(again.predict(raw), np.clip(raw, 1e-6, 1 - 1e-6), atol=0)


# --------------------------------------------------------------------------- measures of it


def test_smooth_ece_reads_a_constant_gap_as_that_gap_and_a_calibrated_score_as_noise() -> None:
    from rollrisk.models.metrics import expected_calibration_error, smooth_calibration_error

    rng = np.random.default_rng(4)
    truth = rng.beta(0.6, 2.2, size=40_000).clip(0.001, 0.999)
    y = (rng.uniform(size=truth.size) < truth).astype(int)
    calibrated = smooth_calibration_error(y, truth)
    assert calibrated < 0.01  # sampling noise only (the binned ECE is ~0.005 here too)
    shifted = smooth_calibration_error(y, np.clip(truth + 0.05, 0, 1))
    assert shifted == pytest.approx(0.05, abs=0.01)
    assert shifted == pytest.approx(
        expected_calibration_error(y, np.clip(truth + 0.05, 0, 1)), abs=0.01
    )
    # one predicted value: the kernel puts all of it on that value, so the gap is exact
    constant = smooth_calibration_error(np.r_[np.ones(300), np.zeros(700)], np.full(1000, 0.25))
    assert constant == pytest.approx(0.05, abs=1e-3)


def test_smooth_ece_needs_no_bins_where_binned_ece_depends_on_them() -> None:
    """Over- and under-prediction alternating faster than a bin is wide cancel out inside
    each bin; the smooth ECE at a narrow width still sees them, and its self-tuned width is
    the fixed point smECE(s) = s."""
    from rollrisk.models.metrics import expected_calibration_error, smooth_calibration_error

    rng = np.random.default_rng(5)
    p = rng.uniform(0.2, 0.8, size=60_000)
    wiggle = 0.1 * np.sign(np.sin(2 * np.pi * p / 0.02))  # +-0.1, period 0.02
    y = (rng.uniform(size=p.size) < p + wiggle).astype(int)
    assert expected_calibration_error(y, p, n_bins=10) < 0.02
    assert smooth_calibration_error(y, p, bandwidth=0.002) > 0.06
    tuned = smooth_calibration_error(y, p)
    assert smooth_calibration_error(y, p, bandwidth=tuned) == pytest.approx(tuned, abs=1e-6)
    with pytest.raises(ValueError, match="bandwidth must be positive"):
        smooth_calibration_error(y, p, bandwidth=0.0)
    with pytest.raises(ValueError, match="probabilities in"):
        smooth_calibration_error([0, 1], [0.5, 1.5])


def test_jeffreys_test_per_grade_against_the_beta_posterior() -> None:
    from scipy import stats

    from rollrisk.models.stats import JEFFREYS_COLUMNS, jeffreys_test

    # grade a: 200 rows predicted 0.10, 20 rolled (right); b: 100 rows predicted 0.30, 50
    # rolled (far too low); c: 100 rows predicted 0.60, 30 rolled (far too high)
    probability = np.r_[np.full(200, 0.10), np.full(100, 0.30), np.full(100, 0.60)]
    outcome = np.r_[np.arange(200) < 20, np.arange(100) < 50, np.arange(100) < 30].astype(int)
    group = np.r_[["a"] * 200, ["b"] * 100, ["c"] * 100]
    table = jeffreys_test(probability, outcome, group, ["a", "b", "c", "d"]).set_index("group")
    assert list(table.reset_index().columns) == list(JEFFREYS_COLUMNS)
    assert table.loc["a", "p_value_under"] == pytest.approx(stats.beta(20.5, 180.5).cdf(0.10))
    assert table.loc["b", "p_value_under"] == pytest.approx(stats.beta(50.5, 50.5).cdf(0.30))
    assert table.loc["a", "ci_lower"] == pytest.approx(stats.beta(20.5, 180.5).ppf(0.025))
    assert table.loc["a", "ci_upper"] == pytest.approx(stats.beta(20.5, 180.5).ppf(0.975))
    assert table["verdict"].to_dict() == {
        "a": "consistent",
        "b": "underestimates",
        "c": "overestimates",
        "d": "no rows",
        "all": "consistent",  # 0.275 predicted on average, 100 / 400 = 0.25 realised
    }
    assert table.loc["all", "accounts"] == 400 and table.loc["all", "rolled"] == 100
    with pytest.raises(ValueError, match="differ in length"):
        jeffreys_test(probability, outcome[:10], group, ["a"])


@pytest.mark.parametrize("new_prior", [0.12, 0.3, 0.45])
def test_em_finds_the_roll_rate_of_a_label_shifted_population(new_prior: float) -> None:
    # Features given the outcome are N(0, 1) (no roll) and N(1.5, 1) (roll) in both periods;
    # only the share of rollers moves, from 0.25 to new_prior: a pure prior shift.
    rng = np.random.default_rng(3)
    prior, shift = 0.25, 1.5

    def posterior(x: np.ndarray, rate: float) -> np.ndarray:
        log_odds = np.log(rate / (1 - rate)) + shift * x - shift**2 / 2
        return 1 / (1 + np.exp(-log_odds))

    y = rng.random(40_000) < new_prior
    x = rng.normal(0.0, 1.0, y.size) + shift * y
    calibrated_before = posterior(x, prior)
    estimate = em_prior(calibrated_before, prior)
    assert abs(estimate - new_prior) < 0.015  # the population's true rate, not the old 0.25
    assert abs(estimate - y.mean()) < 0.015
    # moving the probabilities to the true new prior gives the true new posterior
    np.testing.assert_allclose(
        shift_prior(calibrated_before, prior, new_prior), posterior(x, new_prior), rtol=1e-9
    )


def test_shift_prior_refuses_a_prior_outside_the_open_interval() -> None:
    with pytest.raises(ValueError, match="prior must be strictly between 0 and 1"):
        shift_prior(np.array([0.2]), 0.0, 0.3)
    with pytest.raises(ValueError, match="EM needs at least one probability"):
        em_prior(np.array([]), 0.2)


def test_cross_fit_keeps_the_in_period_rule_even_with_several_months() -> None:
    raw, y, months, groups = _months_of((0.30, 0.30, 0.22), n=1500, seed=26)
    _, evidence = select_calibrator(raw, y, groups=groups, months=months, method="cross_fit")
    assert evidence.rolling_origin is None and evidence.chosen in ("platt", "isotonic")
    assert evidence.rule.startswith("cross_fit")
