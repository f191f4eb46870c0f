"""Score PSI, feature CSI on fixed reference bins, and the per-band backtest."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rollrisk.features.registry import FeatureSet, FeatureSpec
from rollrisk.models import monitoring
from rollrisk.models.monitoring import (
    MISSING_BIN,
    UNSEEN_BIN,
    StabilityVerdict,
    backtest,
    feature_stability,
    judge_stability,
    monitoring_reference,
    population_change,
    reference_population,
    score_stability,
)
from rollrisk.models.risk_bands import risk_band
from rollrisk.models.stats import MIN_NOISE_REPLICATIONS, stability_noise

SPECS = (
    FeatureSpec("balance", "exposure", None, "", "", "", ""),
    FeatureSpec("product", "product_seasonality", None, "", "", "", "", kind="categorical"),
)
FEATURES = FeatureSet("monitoring-test", "1", SPECS)
BANDS = (("low", 0.15), ("medium", 0.4), ("high", 1.0))


def frame(balance: np.ndarray, product: list[str | None]) -> pd.DataFrame:
    return pd.DataFrame({"balance": balance, "product": product})


def reference() -> pd.DataFrame:
    # 1..100 ten times: quantile edges at 10, 20, ..., 90 -> ten equal bins of 100 rows
    return frame(np.tile(np.arange(1.0, 101.0), 10), ["bnpl", "cash_loan"] * 500)


def test_identical_population_is_stable() -> None:
    stability = feature_stability(reference(), reference(), FEATURES)
    assert stability.summary["csi"].abs().max() < 1e-9
    assert set(stability.summary["verdict"]) == {"stable"}


def test_emptied_bin_stays_finite_and_counts() -> None:
    current = reference()
    current = current[current["balance"] > 10].reset_index(drop=True)  # the first bin empties
    stability = feature_stability(reference(), current, FEATURES)
    row = stability.summary.set_index("feature").loc["balance"]
    bins = stability.bins[stability.bins["feature"] == "balance"]
    first = bins.iloc[0]
    assert first["actual_count"] == 0
    assert first["expected_count"] == 100
    assert first["actual_share"] == pytest.approx(1e-4)
    # the empty bin's own term: (1e-4 - 0.1) * ln(1e-4 / 0.1) ~ 0.69, alone above "act"
    assert first["contribution"] == pytest.approx((1e-4 - 0.1) * math.log(1e-4 / 0.1))
    assert math.isfinite(row["csi"])
    assert row["csi"] > first["contribution"] - 1e-9
    assert row["verdict"] == "act"
    assert row["empty_bins_actual"] == 1  # the missing bin, empty on both sides, is not one


def test_missing_values_are_their_own_bin_not_dropped() -> None:
    current = reference()
    current.loc[: len(current) // 2, "balance"] = np.nan  # half the balances go missing
    stability = feature_stability(reference(), current, FEATURES)
    bins = stability.bins[stability.bins["feature"] == "balance"].set_index("label")
    assert bins.loc[MISSING_BIN, "expected_count"] == 0
    assert bins.loc[MISSING_BIN, "actual_count"] == current["balance"].isna().sum()
    row = stability.summary.set_index("feature").loc["balance"]
    assert row["missing_share_actual"] == pytest.approx(0.5, abs=0.01)
    assert row["verdict"] == "act"


def test_unseen_category_lands_in_other_bin() -> None:
    current = reference().assign(product=["bnpl", "crypto_loan"] * 500)
    stability = feature_stability(reference(), current, FEATURES)
    bins = stability.bins[stability.bins["feature"] == "product"].set_index("label")
    assert list(bins.index) == ["bnpl", "cash_loan", UNSEEN_BIN, MISSING_BIN]
    assert bins.loc[UNSEEN_BIN, "actual_count"] == 500
    assert bins.loc["cash_loan", "actual_count"] == 0
    row = stability.summary.set_index("feature").loc["product"]
    assert row["unseen_share_actual"] == pytest.approx(0.5)
    assert row["verdict"] == "act"
    # the summary is sorted by CSI, the drifted feature first
    assert stability.summary["feature"].iloc[0] == "product"


def test_feature_stability_names_missing_columns() -> None:
    with pytest.raises(ValueError, match=r"current frame lacks feature column\(s\) \['product'\]"):
        feature_stability(reference(), reference().drop(columns="product"), FEATURES)


def test_score_stability_uses_reference_bins() -> None:
    rng = np.random.default_rng(3)
    train = rng.beta(2, 8, 20_000)
    same = score_stability(train, rng.beta(2, 8, 5_000))
    shifted = score_stability(train, rng.beta(5, 5, 5_000))
    assert same.value < 0.1 and same.verdict == "stable"
    assert shifted.value > 0.25 and shifted.verdict == "act"
    assert np.allclose(same.bin_edges, shifted.bin_edges)


def test_risk_bands_use_inclusive_upper_bounds() -> None:
    assert [risk_band(p, BANDS) for p in (0.0, 0.15, 0.150001, 0.4, 0.41, 1.0)] == [
        "low", "low", "medium", "medium", "high", "high",
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"probability must be within \[0, 1\], got nan"):
        risk_band(math.nan, BANDS)


def test_backtest_on_known_data() -> None:
    # low band: 200 accounts predicted 0.10, 20 rolled (on target)
    # high band: 200 accounts predicted 0.60, 60 rolled (0.30 realised: the model overstates)
    scored = pd.DataFrame(
        {
            "probability": [0.10] * 200 + [0.60] * 200 + [0.30] * 10,
            "rolled_to_default": [1] * 20 + [0] * 180 + [1] * 60 + [0] * 140 + [0] * 10,
        }
    )
    table = backtest(scored, BANDS, tolerance=0.05, min_accounts=30).set_index("band")
    assert list(table.index) == ["low", "medium", "high", "all"]
    assert table.loc["low", "accounts"] == 200
    assert table.loc["low", "realised_rate"] == pytest.approx(0.10)
    assert table.loc["low", "predicted_mean"] == pytest.approx(0.10)
    assert table.loc["low", "verdict"] == "ok"
    assert table.loc["high", "realised_rate"] == pytest.approx(0.30)
    assert table.loc["high", "gap"] == pytest.approx(-0.30)
    assert table.loc["high", "ci_upper"] < 0.6
    assert table.loc["high", "verdict"] == "act"
    assert table.loc["medium", "accounts"] == 10
    assert table.loc["medium", "verdict"] == "too few"
    assert table.loc["all", "accounts"] == 410
    assert table.loc["all", "rolled"] == 80


def test_backtest_interval_widens_with_its_confidence() -> None:
    # 50 accounts predicted 0.10, 12 rolled (0.24): outside the 95% interval, inside the
    # interval of a band that holds its share of a 1% false-alarm rate over 64 checks
    scored = pd.DataFrame({"probability": [0.10] * 50, "rolled_to_default": [1] * 12 + [0] * 38})
    usual = backtest(scored, BANDS).set_index("band")
    strict = backtest(scored, BANDS, confidence=1 - 0.01 / 64).set_index("band")
    assert usual.loc["low", "verdict"] == "act"
    assert strict.loc["low", "verdict"] == "ok"
    assert strict.loc["low", "ci_lower"] < 0.10 < usual.loc["low", "ci_lower"]
    assert strict.loc["low", "ci_upper"] > usual.loc["low", "ci_upper"]
    # a gross miss still alerts: 25 of 50 against 0.10
    gross = scored.assign(rolled_to_default=[1] * 25 + [0] * 25)
    assert (
        backtest(gross, BANDS, confidence=1 - 0.01 / 64).set_index("band").loc["low", "verdict"]
        == "act"
    )
    with pytest.raises(ValueError, match="confidence must be in"):
        backtest(scored, BANDS, confidence=1.0)


def test_backtest_rejects_unmatured_rows() -> None:
    scored = pd.DataFrame({"probability": [0.1, 0.2], "rolled_to_default": [1, None]})
    with pytest.raises(ValueError, match="1 rows have no matured outcome"):
        backtest(scored, BANDS)


# --------------------------------------------------------------------------- noise and verdicts


def _null_psis(n_reference: int, n_current: int, draws: int, seed: int) -> np.ndarray:
    """PSI of pairs of samples of ONE continuous distribution, on the reference's deciles."""
    rng = np.random.default_rng(seed)
    return np.array(
        [
            score_stability(rng.beta(2, 5, n_reference), rng.beta(2, 5, n_current)).value
            for _ in range(draws)
        ]
    )


def test_noise_matches_the_chi_square_on_large_samples() -> None:
    from scipy.stats import chi2

    sizes = 1.0 / 20_000 + 1.0 / 5_000
    noise = stability_noise([2_000] * 10, 5_000, level=0.01)
    # PSI ~ chi-square(bins - 1) x (1/n + 1/m) once no bin can empty by chance
    assert noise.expected == pytest.approx(9 * sizes, rel=0.05)
    assert noise.critical == pytest.approx(chi2.ppf(0.99, 9) * sizes, rel=0.05)
    assert noise.level == 0.01 and noise.replications == MIN_NOISE_REPLICATIONS


def test_noise_on_small_samples_holds_the_empty_bin_tail() -> None:
    from scipy.stats import chi2

    # 60 accounts in 10 bins: a decile left empty by chance adds ~0.69, beyond the chi-square
    noise = stability_noise([50] * 10, 60, level=0.01)
    assert noise.critical > 1.5 * chi2.ppf(0.99, 9) * (1 / 500 + 1 / 60)
    assert noise.expected > 0.15  # the figure docs/monitoring.md quotes for 60 accounts


def test_noise_threshold_holds_its_false_alarm_rate_on_real_psi() -> None:
    # the real statistic (quantile bins fixed by a random reference), not the model of it
    psis = _null_psis(500, 60, draws=600, seed=11)
    reference_counts = score_stability(np.linspace(0, 1, 500), np.linspace(0, 1, 60)).table[
        "expected_count"
    ]
    critical = stability_noise(reference_counts, 60, level=0.05).critical
    assert 0.02 <= float((psis > critical).mean()) <= 0.09
    # the fixed 0.25 threshold alone is no threshold at this size: noise crosses it often
    assert float((psis > 0.25).mean()) > 0.1


def test_noise_is_reproducible_and_checks_its_inputs() -> None:
    first = stability_noise([30, 50, 20], 40, level=0.001)
    assert first == stability_noise([30, 50, 20], 40, level=0.001)
    assert first.replications == 20_000  # 20 draws beyond the critical value
    assert stability_noise([0, 100, 0], 10, level=0.01).critical == 0.0  # one bin: no noise
    with pytest.raises(ValueError, match="level must be in"):
        stability_noise([10, 10], 10, level=0.0)
    with pytest.raises(ValueError, match="current_size must be at least 1"):
        stability_noise([10, 10], 0, level=0.01)
    with pytest.raises(ValueError, match="not all 0"):
        stability_noise([0, 0], 10, level=0.01)


def test_judge_stability_alerts_only_beyond_act_and_noise() -> None:
    deciles = [100] * 10

    def judge(value: float, size: int, minimum: int = 50) -> StabilityVerdict:
        return judge_stability(value, deciles, size, act=0.25, level=0.001, min_population=minimum)

    assert judge(0.05, 5_000).verdict == "stable"
    assert judge(0.05, 5_000).noise_critical is None  # not needed below act
    assert judge(0.2, 5_000).verdict == "watch"
    large = judge(0.3, 5_000)
    assert large.verdict == "act" and large.alert
    assert large.threshold == 0.25 and large.noise_critical < 0.25  # act binds on large samples
    small = judge(0.3, 60)  # the same value on 60 accounts is within sampling noise
    assert small.verdict == "within noise" and not small.alert
    assert small.threshold == small.noise_critical > 0.3
    assert judge(small.threshold + 0.01, 60).alert
    too_few = judge(5.0, 40)
    assert too_few.verdict == "too few" and not too_few.alert
    assert math.isinf(too_few.threshold)
    assert judge(0.05, 5_000, minimum=1).verdict == "stable"
    always = judge_stability(0.05, deciles, 5_000, 0.25, 0.001, 50, always_noise=True)
    assert always.verdict == "stable" and always.noise_critical is not None


def test_monitoring_reference_is_the_latest_labelled_months(monkeypatch) -> None:
    months = pd.to_datetime(["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30"])
    parts = [
        reference().assign(as_of=months[i], start_bucket="M1").iloc[i * 100 : (i + 1) * 100]
        for i in range(4)
    ]
    chosen = monitoring_reference(parts[2:] + parts[:2], FEATURES, seed=1, months=2)
    assert sorted(chosen["as_of"].unique()) == list(months[2:])
    assert len(chosen) == 200
    assert list(chosen.columns) == ["as_of", "product", "start_bucket", "balance"]
    assert chosen["as_of"].is_monotonic_increasing
    monkeypatch.setattr(monitoring, "REFERENCE_SAMPLE_ROWS", 50)
    sampled = monitoring_reference(parts, FEATURES, seed=1, months=2)
    assert len(sampled) == 50 and set(sampled["as_of"]) <= set(months[2:])
    assert sampled.equals(monitoring_reference(parts, FEATURES, seed=1, months=2))
    with pytest.raises(ValueError, match="no labelled row"):
        monitoring_reference([parts[0].iloc[:0]], FEATURES, seed=1)
    # the size the monitor compares with: every account of those months, before sampling
    assert reference_population(parts, months=2) == {"2024-03-31": 100, "2024-04-30": 100}


def test_a_book_halved_or_doubled_acts_and_a_small_reference_is_not_judged() -> None:
    reference = {"2024-03-31": 190, "2024-04-30": 210}  # 200 a month
    assert population_change(56, reference, 0.5, 50).verdict == "act"
    assert population_change(101, reference, 0.5, 50).verdict == "within"
    assert population_change(399, reference, 0.5, 50).verdict == "within"
    assert population_change(401, reference, 0.5, 50).verdict == "act"
    assert population_change(150, reference, 0.2, 50).verdict == "act"  # below 80%
    small = population_change(5, {"2024-03-31": 40}, 0.5, 50)
    assert small.verdict == "not judged" and small.ratio == pytest.approx(5 / 40)
    assert population_change(56, reference, 0.5, 50).sentence() == (
        "56 delinquent accounts today against 200 a month in the reference (2 months): -72%"
    )


def test_a_day_count_feature_is_reported_not_judged_mid_month():
    """Every account billed on the 20th: at month-ends days_since_statement is 10-11, on the
    16th it is 26-27. The day of the month alone moves it; mid-month it is not judged."""
    from rollrisk.features.registry import FEATURE_SET
    from rollrisk.models.monitoring import NOT_AT_MONTH_END
    from rollrisk.pipelines.monitor import Reference, judge_population
    from rollrisk.storage.config import MonitoringConfig

    spec = next(f for f in FEATURE_SET.features if f.name == "days_since_statement")
    feature_set = FeatureSet("one", "0", (spec,))
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({spec.name: rng.choice([10.0, 11.0], 2000)})
    current = pd.DataFrame(
        {spec.name: rng.choice([26.0, 27.0], 400), "probability": rng.uniform(0, 1, 400)}
    )
    scores = rng.uniform(0, 1, 2000)
    months = ["2024-10-31", "2024-11-30", "2024-12-31"]
    ref = Reference(reference, scores, "latest labelled months", months, "")
    judged = judge_population(ref, current, feature_set, MonitoringConfig())
    assert judged.feature_verdicts[spec.name].alert  # at a month-end this would be drift
    mid_month = judge_population(
        ref, current, feature_set, MonitoringConfig(), not_judged=frozenset({spec.name})
    )
    verdict = mid_month.feature_verdicts[spec.name]
    assert verdict.verdict == NOT_AT_MONTH_END and not verdict.alert
    assert verdict.value == judged.feature_verdicts[spec.name].value > 1.0  # still reported
    assert mid_month.alerts == ()


def test_a_backtest_on_the_months_the_model_learnt_from_is_called_in_sample():
    """The monitor's backtest at an as-of the deployed model was fitted and calibrated on
    passed every band without a word (a helper's 2025-09-30 and 2024-01-31 runs)."""
    from datetime import date

    from rollrisk.pipelines.monitor import backtest_in_sample_note

    trained = "2024-01-31..2025-09-30"
    note = backtest_in_sample_note(trained, date(2025, 9, 30))
    assert note is not None and "one of the months the model learnt from" in note
    assert "monitor an as-of after 2025-09-30" in note
    assert backtest_in_sample_note(trained, date(2024, 1, 31)) is not None
    assert backtest_in_sample_note(trained, date(2025, 10, 31)) is None
    assert backtest_in_sample_note(None, date(2025, 9, 30)) is None  # a model before the record


def test_a_model_is_named_by_its_version_or_as_unregistered_by_its_uri() -> None:
    """Found by an attacker: a model loaded from its folder was "unregistered vunregistered"."""
    from rollrisk.pipelines.monitor import _model_line
    from rollrisk.storage.registry import UNREGISTERED, model_label

    assert model_label("rollrisk-roll-to-default", "7", "models:/x@champion") == (
        "rollrisk-roll-to-default v7"
    )
    assert (
        model_label(UNREGISTERED, UNREGISTERED, "/m/model") == "the unregistered model at /m/model"
    )
    line = _model_line({"name": UNREGISTERED, "version": UNREGISTERED, "uri": "/m/model"})
    assert line == "Model: the unregistered model at `/m/model`"


def test_a_book_s_size_is_compared_on_the_dpd_range_its_reference_was_counted_on() -> None:
    """Found by an attacker: a model trained on 30-89 DPD, monitored with the config's 1-89,
    compared 85 accounts with 51 a month (+68%) on the reference's own month."""
    from rollrisk.features.observations import ObservationSpec
    from rollrisk.pipelines.monitor import _population_size
    from rollrisk.storage.config import MonitoringConfig

    counts = '{"2025-01-31": 59, "2025-02-28": 48, "2025-03-31": 46}'
    metadata = {"reference_population": counts, "reference_population_dpd": "30-89"}
    other = _population_size(metadata, 85, MonitoringConfig(), ObservationSpec())
    assert isinstance(other, str) and "counted the accounts at 30-89 DPD" in other
    assert "today's population is 1-89 DPD" in other
    same = _population_size(metadata, 59, MonitoringConfig(), ObservationSpec(min_dpd=30))
    assert not isinstance(same, str) and same.verdict == "within"
    unrecorded = _population_size({}, 59, MonitoringConfig(), ObservationSpec())
    assert isinstance(unrecorded, str) and "records no reference population size" in unrecorded
