"""Unit tests of the baselines: the roll-rate chain and the WOE scorecard."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import polars as pl
import pytest

from rollrisk.features.registry import FeatureSpec
from rollrisk.models.baselines import (
    NotFittedError,
    RollRateChainModel,
    WoeScorecardModel,
    chain_states,
)
from rollrisk.models.metrics import roc_auc

# States M0, M1, M2, M3, M4+ (default, absorbing); rows sum to 1.
TRUE_MATRIX = np.array(
    [
        [0.80, 0.20, 0.00, 0.00, 0.00],
        [0.50, 0.20, 0.30, 0.00, 0.00],
        [0.20, 0.10, 0.20, 0.50, 0.00],
        [0.10, 0.00, 0.10, 0.30, 0.50],
        [0.00, 0.00, 0.00, 0.00, 1.00],
    ]
)
OTHER_MATRIX = np.array(
    [
        [0.95, 0.05, 0.00, 0.00, 0.00],
        [0.80, 0.10, 0.10, 0.00, 0.00],
        [0.50, 0.10, 0.20, 0.20, 0.00],
        [0.30, 0.00, 0.10, 0.40, 0.20],
        [0.00, 0.00, 0.00, 0.00, 1.00],
    ]
)
DPD_OF_STATE = np.array([0, 15, 45, 75, 120])


def month_end(index: int) -> date:
    return date(2024 + index // 12, index % 12 + 1, 28)


def simulate_statements(
    matrices: list[np.ndarray],
    n_accounts: int,
    product: str = "bnpl",
    seed: int = 0,
    prefix: str = "A",
) -> pl.DataFrame:
    """Monthly statements of accounts following a Markov chain; matrices[k] drives month k -> k+1."""
    rng = np.random.default_rng(seed)
    state = rng.integers(0, 4, n_accounts)
    account_ids, months, dpds = [], [], []
    for month in range(len(matrices) + 1):
        account_ids.append(np.arange(n_accounts))
        months.append(np.full(n_accounts, month))
        dpds.append(DPD_OF_STATE[state])
        if month < len(matrices):
            cumulative = matrices[month][state].cumsum(axis=1)
            state = (rng.random(n_accounts)[:, None] > cumulative).sum(axis=1)
            state = np.minimum(state, 4)
    account = np.concatenate(account_ids)
    month = np.concatenate(months)
    return pl.DataFrame(
        {
            "account_id": [f"{prefix}{value}" for value in account],
            "cycle_end": [month_end(int(value)) for value in month],
            "dpd": np.concatenate(dpds).astype(np.int64),
            "product": product,
            "balance": 1_000.0,
        }
    )


@pytest.fixture(scope="module")
def markov_statements() -> pl.DataFrame:
    return simulate_statements([TRUE_MATRIX] * 11, n_accounts=5_000)


def test_chain_states_follow_default_dpd() -> None:
    assert chain_states(90) == ["M0", "M1", "M2", "M3", "M4+"]
    assert chain_states(60) == ["M0", "M1", "M2", "M3+"]
    assert chain_states(120) == ["M0", "M1", "M2", "M3", "M4", "M5+"]
    with pytest.raises(ValueError, match="default_dpd must be a roll-rate bucket boundary"):
        chain_states(75)


def test_chain_counts_consecutive_months_only() -> None:
    statements = pl.DataFrame(
        {
            "account_id": ["A", "A", "A", "A", "A"],
            # March is missing: Feb -> Apr is not a transition
            "cycle_end": [
                date(2024, 1, 20),
                date(2024, 2, 20),
                date(2024, 4, 20),
                date(2024, 5, 20),
                date(2024, 6, 20),
            ],
            "dpd": [0, 10, 40, 95, 125],
            "product": "cash_loan",
            "balance": [100.0, 200.0, 300.0, 400.0, 500.0],
        }
    )
    model = RollRateChainModel(min_count=0).fit(statements, until=date(2024, 5, 31))
    counts = model.transition_counts_.select("from_bucket", "to_bucket", "accounts").rows()
    assert sorted(counts) == [("M0", "M1", 1), ("M2", "M4", 1)]  # June is after `until`
    matrix = model.transition_matrix("cash_loan")
    assert matrix.loc["M0", "M1"] == pytest.approx(1.0)
    assert matrix.loc["M2", "M4+"] == pytest.approx(1.0)
    assert model.unobserved_states_ == ["M1", "M3"]
    assert matrix.loc["M1", "M1"] == pytest.approx(1.0)  # never seen leaving: stays put


def test_chain_recovers_known_transition_matrix(markov_statements: pl.DataFrame) -> None:
    model = RollRateChainModel(min_count=0).fit(markov_statements, until=month_end(11))
    fitted = model.transition_matrix("bnpl").to_numpy()
    assert model.states_ == ["M0", "M1", "M2", "M3", "M4+"]
    assert np.allclose(fitted, TRUE_MATRIX, atol=0.03)
    assert fitted[-1].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]  # default is absorbing


def test_chain_three_month_probability_is_the_matrix_power(markov_statements: pl.DataFrame) -> None:
    model = RollRateChainModel(min_count=0, window_months=3).fit(
        markov_statements, until=month_end(11)
    )
    frame = pd.DataFrame({"product": ["bnpl"] * 3, "start_bucket": ["M1", "M2", "M3"]})
    predicted = model.predict_proba(frame)
    fitted_power = np.linalg.matrix_power(model.transition_matrix("bnpl").to_numpy(), 3)[1:4, -1]
    true_power = np.linalg.matrix_power(TRUE_MATRIX, 3)[1:4, -1]
    assert predicted == pytest.approx(fitted_power, abs=1e-12)
    assert predicted == pytest.approx(true_power, abs=0.03)
    # more DPD at the start never lowers the chained risk here
    assert np.all(np.diff(predicted) > 0)


def test_chain_uses_only_months_up_to_until() -> None:
    # first 6 transitions follow TRUE_MATRIX, the later ones a much safer matrix
    statements = simulate_statements(
        [TRUE_MATRIX] * 6 + [OTHER_MATRIX] * 6, n_accounts=5_000, seed=1
    )
    model = RollRateChainModel(min_count=0).fit(statements, until=month_end(6))
    assert np.allclose(model.transition_matrix("bnpl").to_numpy(), TRUE_MATRIX, atol=0.04)
    later = RollRateChainModel(min_count=0).fit(statements, until=month_end(12))
    assert not np.allclose(later.transition_matrix("bnpl").to_numpy(), TRUE_MATRIX, atol=0.04)


def test_chain_per_product_with_pooled_fallback() -> None:
    statements = pl.concat(
        [
            simulate_statements(
                [TRUE_MATRIX] * 8, n_accounts=4_000, product="bnpl", seed=2, prefix="B"
            ),
            simulate_statements(
                [OTHER_MATRIX] * 8, n_accounts=4_000, product="cash_loan", seed=3, prefix="C"
            ),
            simulate_statements(
                [OTHER_MATRIX] * 1, n_accounts=5, product="agri_loan", seed=4, prefix="G"
            ),
        ]
    )
    model = RollRateChainModel(min_count=50).fit(statements, until=month_end(8))
    frame = pd.DataFrame(
        {
            "product": ["bnpl", "cash_loan", "agri_loan", "merchant_loan"],
            "start_bucket": ["M3", "M3", "M3", "M3"],
        }
    )
    bnpl, cash, agri, unknown = model.predict_proba(frame)
    assert bnpl == pytest.approx(np.linalg.matrix_power(TRUE_MATRIX, 3)[3, -1], abs=0.04)
    assert cash == pytest.approx(np.linalg.matrix_power(OTHER_MATRIX, 3)[3, -1], abs=0.04)
    pooled = model.window_default_probabilities().loc["pooled", "M3"]
    assert unknown == pytest.approx(pooled)  # unseen product -> pooled matrix
    assert abs(agri - pooled) < 0.05  # five accounts: shrunk almost entirely to pooled


def test_chain_with_default_at_60_dpd() -> None:
    statements = simulate_statements([TRUE_MATRIX] * 6, n_accounts=2_000, seed=5)
    model = RollRateChainModel(default_dpd=60, min_count=0).fit(statements, until=month_end(6))
    assert model.states_ == ["M0", "M1", "M2", "M3+"]
    predicted = model.predict_proba(
        pd.DataFrame({"product": ["bnpl"] * 2, "start_bucket": ["M2", "M3"]})
    )
    assert predicted[1] == pytest.approx(1.0)  # 60+ DPD is already default
    # from M2, the one-month roll to 60+ is 0.5 in the simulated chain
    one_month = model.transition_matrix("bnpl").loc["M2", "M3+"]
    assert one_month == pytest.approx(0.5, abs=0.04)


def test_chain_prefers_dpd_current_and_joins_products_from_accounts(
    markov_statements: pl.DataFrame,
) -> None:
    accounts = markov_statements.select("account_id", "product").unique()
    model = RollRateChainModel(min_count=0).fit(
        markov_statements.drop("product"), until=month_end(11), accounts=accounts
    )
    frame = pl.DataFrame({"product": ["bnpl"], "start_bucket": ["M1"], "dpd_current": [65]})
    expected = model.window_default_probabilities().loc["bnpl", "M3"]
    assert model.predict_proba(frame)[0] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("dpd_current", "state"),
    [
        (1, "M1"),
        (29, "M1"),
        (30, "M2"),
        (59, "M2"),
        (60, "M3"),
        (89, "M3"),
        (90, "M4+"),
        (400, "M4+"),
    ],
)
def test_chain_bucket_boundaries(
    markov_statements: pl.DataFrame, dpd_current: int, state: str
) -> None:
    model = RollRateChainModel(min_count=0).fit(markov_statements, until=month_end(11))
    predicted = model.predict_proba(
        pl.DataFrame({"product": ["bnpl"], "dpd_current": [dpd_current]})
    )
    assert predicted[0] == pytest.approx(model.window_default_probabilities().loc["bnpl", state])


def test_chain_errors_speak_to_the_user(markov_statements: pl.DataFrame) -> None:
    with pytest.raises(NotFittedError, match="RollRateChainModel is not fitted yet"):
        RollRateChainModel().predict_proba(pd.DataFrame({"start_bucket": ["M1"]}))
    model = RollRateChainModel().fit(markov_statements, until=month_end(11))
    with pytest.raises(ValueError, match="start_bucket has unknown values \\['M9'\\]"):
        model.predict_proba(pd.DataFrame({"product": ["bnpl"], "start_bucket": ["M9"]}))
    with pytest.raises(ValueError, match="needs a 'start_bucket'"):
        model.predict_proba(pd.DataFrame({"product": ["bnpl"]}))
    with pytest.raises(ValueError, match="no consecutive monthly statements end on or before"):
        RollRateChainModel().fit(markov_statements, until=date(2020, 1, 1))
    with pytest.raises(ValueError, match="pass accounts="):
        RollRateChainModel().fit(markov_statements.drop("product"), until=month_end(11))


# --------------------------------------------------------------------------- scorecard


def scorecard_data(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    broken_promises = rng.poisson(1.5, n).astype(float)
    payment_ratio = rng.uniform(0, 1, n)
    noise = rng.normal(size=n)
    product = rng.choice(["bnpl", "cash_loan", "agri_loan"], n)
    logit = -1.0 + 0.8 * broken_promises - 2.0 * payment_ratio + 0.7 * (product == "agri_loan")
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    payment_ratio[rng.random(n) < 0.05] = np.nan  # missing values must be handled
    frame = pd.DataFrame(
        {
            "broken_promises": broken_promises,
            "payment_ratio": payment_ratio,
            "noise": noise,
            "product": product,
        }
    )
    return frame, labels


SPECS = (
    FeatureSpec("broken_promises", "willingness", 3, "", "", "", "", direction=1),
    FeatureSpec("payment_ratio", "payment_capacity", 3, "", "", "", "", direction=-1),
    FeatureSpec("noise", "exposure", None, "", "", "", ""),
    FeatureSpec("product", "product_seasonality", None, "", "", "", "", kind="categorical"),
)


@pytest.fixture(scope="module")
def fitted_scorecard() -> tuple[WoeScorecardModel, pd.DataFrame, np.ndarray]:
    train, train_labels = scorecard_data(4_000, seed=10)
    model = WoeScorecardModel(feature_specs=SPECS).fit(train, train_labels)
    test, test_labels = scorecard_data(2_000, seed=11)
    return model, test, test_labels


def test_scorecard_beats_a_random_score(
    fitted_scorecard: tuple[WoeScorecardModel, pd.DataFrame, np.ndarray],
) -> None:
    model, test, labels = fitted_scorecard
    probabilities = model.predict_proba(test)
    assert probabilities.shape == (len(test),)
    assert np.all((probabilities > 0) & (probabilities < 1))
    random_auc = roc_auc(labels, np.random.default_rng(0).random(len(labels)))
    assert roc_auc(labels, probabilities) > 0.72
    assert roc_auc(labels, probabilities) > random_auc + 0.15


def test_scorecard_bins_follow_registry_directions(
    fitted_scorecard: tuple[WoeScorecardModel, pd.DataFrame, np.ndarray],
) -> None:
    model, _, _ = fitted_scorecard
    table = model.scorecard_table()
    assert model.categorical_features_ == ["product"]
    for feature, sign in (("broken_promises", 1), ("payment_ratio", -1)):
        rows = table.loc[(table["feature"] == feature) & ~table["bin"].isin(["Special", "Missing"])]
        rates = rows["event_rate"].to_numpy()
        assert len(rates) >= 2
        assert np.all(sign * np.diff(rates) > 0), f"{feature} bad rate not monotone: {rates}"


def test_scorecard_points_add_up_to_the_score(
    fitted_scorecard: tuple[WoeScorecardModel, pd.DataFrame, np.ndarray],
) -> None:
    model, test, _ = fitted_scorecard
    table = model.scorecard_table()
    assert {"feature", "bin", "woe", "coefficient", "points"} <= set(table.columns)
    rows = test.head(20)
    woe = model.binning_process_.transform(
        model._prepare(rows), metric="woe", metric_missing="empirical", metric_special="empirical"
    )
    for index in range(len(rows)):
        total = 0.0
        for feature in model.feature_names_:
            candidates = table.loc[table["feature"] == feature]
            match = candidates.loc[np.isclose(candidates["woe"], woe[feature].iloc[index])]
            total += float(match["points"].iloc[0])
        assert total == pytest.approx(model.score_points(rows)[index], abs=1e-6)


def test_scorecard_handles_missing_and_unseen_values(
    fitted_scorecard: tuple[WoeScorecardModel, pd.DataFrame, np.ndarray],
) -> None:
    model, test, _ = fitted_scorecard
    odd = test.head(3).copy()
    odd["payment_ratio"] = np.nan
    odd["product"] = ["merchant_loan", None, "bnpl"]
    probabilities = model.predict_proba(odd)
    assert np.all(np.isfinite(probabilities))


def test_scorecard_errors_speak_to_the_user() -> None:
    with pytest.raises(NotFittedError, match="WoeScorecardModel is not fitted yet"):
        WoeScorecardModel().predict_proba(pd.DataFrame({"x": [1.0]}))
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="single class"):
        WoeScorecardModel().fit(frame, [0, 0, 0])
    with pytest.raises(ValueError, match="binary"):
        WoeScorecardModel().fit(frame, [0, 1, 2])
    train, labels = scorecard_data(500, seed=12)
    model = WoeScorecardModel().fit(train, labels)
    with pytest.raises(ValueError, match="missing feature column\\(s\\) \\['noise'\\]"):
        model.predict_proba(train.drop(columns="noise"))


def test_scorecard_leaves_out_a_feature_with_no_value_and_says_so() -> None:
    """A portfolio without an optional table gives its features no value at all: the
    scorecard bins the others (optbinning would fit a tree on zero rows) and lists it."""
    train, labels = scorecard_data(2_000, seed=13)
    train = train.assign(promises_made_3m=np.nan)
    specs = (*SPECS, FeatureSpec("promises_made_3m", "willingness", 3, "", "", "", ""))
    model = WoeScorecardModel(feature_specs=specs).fit(train, labels)
    assert model.excluded_features_ == ["promises_made_3m"]
    assert "promises_made_3m" not in model.feature_names_
    assert "promises_made_3m" not in set(model.scorecard_table()["feature"])
    without = WoeScorecardModel(feature_specs=SPECS).fit(
        train.drop(columns="promises_made_3m"), labels
    )
    test, _ = scorecard_data(200, seed=14)
    # the column carried no evidence: the same scores with or without it, and not needed
    np.testing.assert_allclose(
        model.predict_proba(test.assign(promises_made_3m=2.0)),
        without.predict_proba(test),
        atol=1e-12,
    )
    np.testing.assert_allclose(model.predict_proba(test), without.predict_proba(test), atol=1e-12)
    with pytest.raises(ValueError, match="every column of X is missing"):
        WoeScorecardModel().fit(pd.DataFrame({"x": [np.nan] * 4}), [0, 1, 0, 1])
