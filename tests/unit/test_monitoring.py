"""Score PSI, feature CSI on fixed reference bins, and the per-band backtest."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rollrisk.features.registry import FeatureSet, FeatureSpec
from rollrisk.models.monitoring import (
    MISSING_BIN,
    UNSEEN_BIN,
    backtest,
    feature_stability,
    score_stability,
)
from rollrisk.models.risk_bands import risk_band

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
    assert row["empty_bins_actual"] >= 1


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


def test_backtest_rejects_unmatured_rows() -> None:
    scored = pd.DataFrame({"probability": [0.1, 0.2], "rolled_to_default": [1, None]})
    with pytest.raises(ValueError, match="1 rows have no matured outcome"):
        backtest(scored, BANDS)
