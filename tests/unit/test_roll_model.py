"""RollModel: scikit-learn manners, fixed categories, monotone constraints, serialisation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rollrisk.models.metrics import roc_auc
from rollrisk.models.roll_model import NotFittedError, RollModel
from tests.synthetic_training_set import TEST_FEATURE_SET, make_training_frame, split_frames

LABEL = "rolled_to_default"
SMALL = {
    "n_estimators": 20,
    "min_child_samples": 10,
    "early_stopping_rounds": 5,
    "num_leaves": 7,
    "n_jobs": 1,
}


def _fit(structure: str = "single", **params: object) -> tuple[RollModel, pd.DataFrame]:
    frame = make_training_frame(n_accounts=150, n_months=6, seed=0)
    parts = split_frames(frame)
    model = RollModel(TEST_FEATURE_SET, structure=structure, **{**SMALL, **params})
    model.fit(
        parts["train"],
        parts["train"][LABEL],
        X_valid=parts["valid"],
        y_valid=parts["valid"][LABEL],
        X_calibration=parts["calibration"],
        y_calibration=parts["calibration"][LABEL],
        calibration_groups=parts["calibration"]["account_id"],
    )
    return model, frame


@pytest.fixture(scope="module")
def fitted() -> tuple[RollModel, pd.DataFrame]:
    return _fit()


def test_init_only_stores_parameters() -> None:
    model = RollModel(TEST_FEATURE_SET, num_leaves=7)
    assert model.num_leaves == 7
    assert not [name for name in vars(model) if name.endswith("_")]


def test_unfitted_model_refuses_to_predict() -> None:
    with pytest.raises(NotFittedError, match="not fitted yet"):
        RollModel(TEST_FEATURE_SET).predict_proba(make_training_frame(n_accounts=2, n_months=1))


def test_fit_returns_self_and_ranks_better_than_chance(
    fitted: tuple[RollModel, pd.DataFrame],
) -> None:
    model, frame = fitted
    probabilities = model.predict_proba(frame)
    assert probabilities.shape == (len(frame),)
    assert np.all((probabilities > 0) & (probabilities < 1))
    assert roc_auc(frame[LABEL], probabilities) > 0.7


def test_monotone_constraints_follow_the_registry_and_the_bucket_order(
    fitted: tuple[RollModel, pd.DataFrame],
) -> None:
    model, _ = fitted
    constraints = dict(zip(model.feature_columns_, model.monotone_constraints_, strict=True))
    assert constraints["dpd_current"] == 1
    assert constraints["payment_ratio_3m"] == -1
    assert constraints["months_on_book"] == 0
    assert constraints["start_bucket"] == 1
    assert constraints["product"] == 0 and constraints["last_outcome"] == 0


def test_categories_are_fixed_from_the_schema_and_training_values(
    fitted: tuple[RollModel, pd.DataFrame],
) -> None:
    model, _ = fitted
    assert model.categories_["product"] == [
        "bnpl",
        "credit_card",
        "cash_loan",
        "merchant_loan",
        "agri_loan",
    ]
    assert model.categories_["last_outcome"] == ["contacted", "no_answer", "promise_to_pay"]


def test_unknown_category_is_an_error_naming_column_and_value(
    fitted: tuple[RollModel, pd.DataFrame],
) -> None:
    model, frame = fitted
    bad = frame.head(3).assign(product="mortgage")
    with pytest.raises(ValueError, match=r"column 'product' has unknown value\(s\) \['mortgage'\]"):
        model.predict_proba(bad)


def test_missing_column_is_an_error_naming_it(fitted: tuple[RollModel, pd.DataFrame]) -> None:
    model, frame = fitted
    with pytest.raises(ValueError, match=r"lacks model input column\(s\) \['dpd_current'\]"):
        model.predict_proba(frame.drop(columns="dpd_current"))


def test_input_frame_is_not_modified(fitted: tuple[RollModel, pd.DataFrame]) -> None:
    model, frame = fitted
    before = frame.copy()
    model.predict_proba(frame)
    pd.testing.assert_frame_equal(frame, before)


def test_round_trip_through_dict_scores_identically(fitted: tuple[RollModel, pd.DataFrame]) -> None:
    model, frame = fitted
    again = RollModel.from_dict(model.to_dict())
    np.testing.assert_allclose(again.predict_proba(frame), model.predict_proba(frame), atol=1e-12)
    assert again.feature_set == model.feature_set


def test_per_bucket_structure_trains_one_booster_per_bucket() -> None:
    model, frame = _fit(structure="per_bucket")
    assert sorted(model.boosters_) == ["M1", "M2", "M3"]
    assert "start_bucket" not in model.feature_columns_
    assert roc_auc(frame[LABEL], model.predict_proba(frame)) > 0.7


def test_labels_must_be_binary_and_aligned() -> None:
    frame = make_training_frame(n_accounts=20, n_months=3)
    model = RollModel(TEST_FEATURE_SET, **SMALL)
    with pytest.raises(ValueError, match="training labels must be 0 or 1"):
        model.fit(frame, frame[LABEL] * 2, X_valid=frame, y_valid=frame[LABEL],
                  X_calibration=frame, y_calibration=frame[LABEL])  # fmt: skip
    with pytest.raises(ValueError, match=r"validation labels \(3\) and rows \(60\) differ"):
        model.fit(frame, frame[LABEL], X_valid=frame, y_valid=[0, 1, 0],
                  X_calibration=frame, y_calibration=frame[LABEL])  # fmt: skip


def test_feature_importance_covers_every_input(fitted: tuple[RollModel, pd.DataFrame]) -> None:
    model, _ = fitted
    table = model.feature_importance()
    assert set(table["feature"]) == set(model.feature_columns_)
    assert table["gain_share"].sum() == pytest.approx(1.0)
    assert table.iloc[0]["feature"] in {
        "dpd_current",
        "max_dpd_6m",
        "start_bucket",
        "payment_ratio_3m",
    }


def test_matrix_is_what_lightgbm_makes_of_the_encoded_frame(
    fitted: tuple[RollModel, pd.DataFrame],
) -> None:
    """Scoring predicts and explains from ``matrix``: it must be LightGBM's own coding of the
    pandas frame (categories as the booster's codes, missing as NaN), and predict the same."""
    from rollrisk.models.lightgbm_input import lightgbm_matrix

    model, frame = fitted
    rows = frame.head(200).copy()
    rows.loc[rows.index[:5], "last_outcome"] = None  # a missing category
    rows.loc[rows.index[5:10], "payment_ratio_3m"] = np.nan
    booster = next(iter(model.boosters_.values()))
    matrix = model.matrix(rows)
    encoded = model.encode(rows)
    np.testing.assert_array_equal(matrix, lightgbm_matrix(encoded, booster))
    assert np.isnan(matrix[:5, model.feature_columns_.index("last_outcome")]).all()
    assert np.isnan(matrix[5:10, model.feature_columns_.index("payment_ratio_3m")]).all()
    np.testing.assert_array_equal(booster.predict(matrix), booster.predict(encoded))


def test_calibration_months_make_auto_choose_out_of_time_and_the_choice_round_trips() -> None:
    frame = make_training_frame(n_accounts=150, n_months=6, seed=0)
    parts = split_frames(frame)  # calibration rows span the last two as-of months
    calibration = parts["calibration"]
    model = RollModel(TEST_FEATURE_SET, **SMALL).fit(
        parts["train"],
        parts["train"][LABEL],
        X_valid=parts["valid"],
        y_valid=parts["valid"][LABEL],
        X_calibration=calibration,
        y_calibration=calibration[LABEL],
        calibration_groups=calibration["account_id"],
        calibration_months=calibration["as_of"].astype(str),
    )
    rolling = model.calibration_evidence_.rolling_origin
    months = sorted(calibration["as_of"].astype(str).unique())
    assert rolling is not None
    assert rolling.fit_months == tuple(months[:-1]) and rolling.scored_months == (months[-1],)
    assert model.calibration_evidence_.rule.startswith("rolling origin")
    again = RollModel.from_dict(model.to_dict())
    np.testing.assert_allclose(again.predict_proba(frame), model.predict_proba(frame), atol=1e-12)
    with pytest.raises(ValueError, match="calibration_months"):
        RollModel(TEST_FEATURE_SET, **SMALL).fit(
            parts["train"],
            parts["train"][LABEL],
            X_valid=parts["valid"],
            y_valid=parts["valid"][LABEL],
            X_calibration=calibration,
            y_calibration=calibration[LABEL],
            calibration_months=calibration["as_of"].astype(str).iloc[:3],
        )
