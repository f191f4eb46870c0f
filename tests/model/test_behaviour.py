"""Behavioural tests of a trained roll model (small synthetic training set, seconds to run).

* more days past due, all else equal, never lowers the probability of rolling to default;
* changing an account's id never changes its score;
* a batch and each of its rows scored alone get identical scores.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rollrisk.models.roll_model import RollModel
from tests.synthetic_training_set import TEST_FEATURE_SET, make_training_frame, split_frames

LABEL = "rolled_to_default"


def _bucket(dpd: float) -> str:
    return "M1" if dpd < 30 else "M2" if dpd < 60 else "M3"


@pytest.fixture(scope="module", params=["single", "per_bucket"])
def trained(request: pytest.FixtureRequest) -> tuple[RollModel, pd.DataFrame]:
    frame = make_training_frame(n_accounts=200, n_months=6, seed=11)
    parts = split_frames(frame)
    model = RollModel(
        TEST_FEATURE_SET,
        structure=request.param,
        n_estimators=20,
        min_child_samples=10,
        num_leaves=7,
        early_stopping_rounds=5,
        n_jobs=1,
    ).fit(
        parts["train"],
        parts["train"][LABEL],
        X_valid=parts["valid"],
        y_valid=parts["valid"][LABEL],
        X_calibration=parts["calibration"],
        y_calibration=parts["calibration"][LABEL],
        calibration_groups=parts["calibration"]["account_id"],
    )
    return model, frame


def test_more_dpd_never_lowers_the_probability(trained: tuple[RollModel, pd.DataFrame]) -> None:
    model, frame = trained
    if model.structure == "per_bucket":
        pytest.skip("one model per bucket is not monotone across buckets (see docs/models.md)")
    accounts = frame.head(60).reset_index(drop=True)
    previous = None
    for dpd in range(1, 90, 4):
        # The same accounts at a higher DPD: the current DPD, and the bucket it implies.
        moved = accounts.assign(dpd_current=dpd, start_bucket=_bucket(dpd))
        probabilities = model.predict_proba(moved)
        if previous is not None:
            assert np.all(probabilities >= previous - 1e-12), f"risk fell when DPD rose to {dpd}"
        previous = probabilities


def test_more_dpd_within_a_bucket_never_lowers_the_probability(
    trained: tuple[RollModel, pd.DataFrame],
) -> None:
    model, frame = trained
    accounts = frame.head(60).reset_index(drop=True)
    for low, high in ((1, 29), (30, 59), (60, 89)):
        base = model.predict_proba(accounts.assign(dpd_current=low, start_bucket=_bucket(low)))
        more = model.predict_proba(accounts.assign(dpd_current=high, start_bucket=_bucket(high)))
        assert np.all(more >= base - 1e-12)


def test_the_behaviour_test_can_fail_on_an_unconstrained_direction(
    trained: tuple[RollModel, pd.DataFrame],
) -> None:
    # months_on_book has no declared direction: its effect is free to go either way, so the
    # monotonicity asserted above is the constraint's doing, not an accident of the data.
    model, _ = trained
    constraints = dict(zip(model.feature_columns_, model.monotone_constraints_, strict=True))
    assert constraints["months_on_book"] == 0 and constraints["dpd_current"] == 1


def test_changing_the_account_id_never_changes_the_score(
    trained: tuple[RollModel, pd.DataFrame],
) -> None:
    model, frame = trained
    batch = frame.head(100)
    renamed = batch.assign(account_id=[f"other-{i}" for i in range(len(batch))])
    np.testing.assert_array_equal(model.predict_proba(renamed), model.predict_proba(batch))


def test_batch_and_single_rows_score_identically(trained: tuple[RollModel, pd.DataFrame]) -> None:
    model, frame = trained
    # Rows of every product and bucket, including a missing months_on_book.
    batch = frame.groupby(["product", "start_bucket"]).head(1).head(25)
    batch = pd.concat([batch, frame[frame["months_on_book"].isna()].head(2)])
    together = model.predict_proba(batch)
    alone = np.array([model.predict_proba(batch.iloc[[i]])[0] for i in range(len(batch))])
    np.testing.assert_array_equal(alone, together)
    # A row alone has a single category value: fixed category lists keep its code unchanged.
    reordered = model.predict_proba(batch.iloc[::-1])[::-1]
    np.testing.assert_array_equal(reordered, together)
