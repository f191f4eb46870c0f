"""Behavioural tests of the roll model that ``rollrisk train`` registers (see conftest.py).

On rows of the model's own training set, for both model structures:

* every feature with a documented direction moves the risk only that way, all else equal
  (and the trained model carries exactly the documented constraints);
* more days past due, all else equal, never lowers the probability of rolling to default, and
  DPD itself (not only the bucket it implies) raises it;
* changing an account's id never changes its score;
* a batch, its rows scored alone and the batch reversed get identical scores;
* the model ranks the outcomes it was trained on far better than chance.

The synthetic feature set (tests/synthetic_training_set.py) is no longer used here. It stays
in the unit tier (tests/unit/test_roll_model.py) for what the registry cannot give: a
categorical the schema does not enumerate (frozen to its training values), and frames small
and exact enough to check RollModel's manners (unfitted errors, serialisation, bad labels).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from rollrisk.features.registry import FEATURE_SET
from rollrisk.models.roll_model import RollModel
from tests.model.conftest import STRUCTURES, TrainedModels, documented_directions

LABEL = "rolled_to_default"
DIRECTIONS = documented_directions()
DIRECTED = sorted(name for name, direction in DIRECTIONS.items() if direction != 0)
UNDIRECTED_NUMERIC = sorted(
    name
    for name, direction in DIRECTIONS.items()
    if direction == 0 and FEATURE_SET.spec(name).kind == "numeric"
)
BUCKET_DPD = {"M1": (1, 29), "M2": (30, 59), "M3": (60, 89)}  # the default population's buckets
TOLERANCE = 1e-12  # scores are compared as floats; a real violation is many orders larger
# "Far riskier" in odds, not in probability points: the calibrator (fitted on the latest months,
# whose roll rate may be low) moves where the probabilities sit, not how the odds of two rows
# compare. The training sets' own roll rates go from about 0.09 at M1 to 0.65-0.87 at M3: an odds
# ratio of 20 or more. A model that ignored DPD would give 1.
ODDS_RISE = 3.0


@pytest.fixture(params=STRUCTURES)
def trained(request: pytest.FixtureRequest, trained_by_train: TrainedModels) -> RollModel:
    return trained_by_train.models[request.param]


@pytest.fixture
def rows(trained_by_train: TrainedModels) -> pd.DataFrame:
    """300 rows of the training set (fixed seed): real feature values, missing ones included."""
    sample = trained_by_train.training_set.sample(n=300, random_state=0)
    return sample.reset_index(drop=True)


def _odds_ratio(high: np.ndarray, low: np.ndarray) -> float:
    """The geometric mean over rows of odds(high) / odds(low)."""
    high, low = np.clip(high, 1e-9, 1 - 1e-9), np.clip(low, 1e-9, 1 - 1e-9)
    return float(np.exp(np.mean(np.log(high / (1 - high)) - np.log(low / (1 - low)))))


def _bucket(dpd: float) -> str:
    return next(bucket for bucket, (low, high) in BUCKET_DPD.items() if low <= dpd <= high)


def _sweep(model: RollModel, rows: pd.DataFrame, column: str, grid: np.ndarray) -> np.ndarray:
    """P(roll) of every row with ``column`` set to each grid value: shape (grid, rows)."""
    batch = pd.concat([rows.assign(**{column: value}) for value in grid], ignore_index=True)
    return model.predict_proba(batch).reshape(len(grid), len(rows))


def _grid(training_set: pd.DataFrame, column: str) -> np.ndarray:
    """The column's training-set ventiles, plus one value below and one above its range."""
    observed = training_set[column].dropna().to_numpy(dtype=float)
    assert observed.size, f"the training set never fills {column}: its direction is untestable"
    quantiles = np.quantile(observed, np.linspace(0.0, 1.0, 21))
    return np.unique(np.concatenate([quantiles, [observed.min() - 1.0, observed.max() + 1.0]]))


# -- directions ------------------------------------------------------------------------------


def test_the_documentation_gives_every_registered_feature_a_direction() -> None:
    # The parametrisations below come from this table: a feature missing from it would go
    # untested without a word.
    assert set(DIRECTIONS) == set(FEATURE_SET.names)
    assert set(DIRECTIONS.values()) == {-1, 0, 1}


def test_the_trained_model_carries_exactly_the_documented_constraints(trained: RollModel) -> None:
    constraints = dict(zip(trained.feature_columns_, trained.monotone_constraints_, strict=True))
    wrong = {
        name: {"documented": direction, "trained with": constraints[name]}
        for name, direction in DIRECTIONS.items()
        if constraints[name] != direction
    }
    assert wrong == {}
    if trained.structure == "single":
        assert constraints["start_bucket"] == 1


@pytest.mark.parametrize("feature", DIRECTED)
def test_a_feature_never_moves_the_risk_against_its_documented_direction(
    trained: RollModel, rows: pd.DataFrame, trained_by_train: TrainedModels, feature: str
) -> None:
    grid = _grid(trained_by_train.training_set, feature)
    steps = np.diff(_sweep(trained, rows, feature, grid), axis=0) * DIRECTIONS[feature]
    against = steps < -TOLERANCE
    assert not against.any(), (
        f"{feature} (documented direction {DIRECTIONS[feature]:+d}): {against.sum()} of "
        f"{against.size} steps over {np.round(grid, 3).tolist()} move the risk the other way, "
        f"by up to {-steps.min():.4f}"
    )


def test_the_direction_check_sees_a_free_feature_move_both_ways(
    trained_by_train: TrainedModels, rows: pd.DataFrame
) -> None:
    # A positive control for the test above: on the same rows and grids, an unconstrained
    # feature does move the risk both ways, so "no step against the direction" is not an
    # accident of flat trees or too few rows.
    model, training_set = trained_by_train.models["single"], trained_by_train.training_set
    both_ways = []
    for feature in UNDIRECTED_NUMERIC:
        steps = np.diff(_sweep(model, rows, feature, _grid(training_set, feature)), axis=0)
        if (steps > TOLERANCE).any() and (steps < -TOLERANCE).any():
            both_ways.append(feature)
    assert both_ways, f"no undirected feature among {UNDIRECTED_NUMERIC} moves the risk both ways"


# -- days past due ---------------------------------------------------------------------------


def test_more_dpd_never_lowers_the_probability(
    trained_by_train: TrainedModels, rows: pd.DataFrame
) -> None:
    # Across buckets: one model only. Per-bucket models are not monotone across buckets
    # (docs/models.md), which is why `single` is the default.
    model = trained_by_train.models["single"]
    grid = range(1, 90, 4)
    probabilities = np.vstack(
        [model.predict_proba(rows.assign(dpd_current=d, start_bucket=_bucket(d))) for d in grid]
    )
    steps = np.diff(probabilities, axis=0)
    assert (steps >= -TOLERANCE).all(), f"risk fell when DPD rose, by up to {-steps.min():.4f}"
    # ... and it rises: an M3 account at 89 days is far riskier than the same one at 1 day.
    ratio = _odds_ratio(probabilities[-1], probabilities[0])
    assert ratio > ODDS_RISE, f"odds rose only {ratio:.2f}x from the lowest to the highest DPD"


@pytest.mark.parametrize("bucket", sorted(BUCKET_DPD))
def test_more_dpd_within_a_bucket_never_lowers_the_probability(
    trained: RollModel, rows: pd.DataFrame, bucket: str
) -> None:
    low, high = BUCKET_DPD[bucket]
    in_bucket = rows.assign(start_bucket=bucket)
    probabilities = np.vstack(
        [trained.predict_proba(in_bucket.assign(dpd_current=d)) for d in range(low, high + 1)]
    )
    steps = np.diff(probabilities, axis=0)
    assert (steps >= -TOLERANCE).all(), f"risk fell within {bucket}, by up to {-steps.min():.4f}"


def test_dpd_itself_raises_the_risk_not_only_the_bucket(
    trained_by_train: TrainedModels, rows: pd.DataFrame
) -> None:
    # The bucket's own +1 constraint would keep the test above green if the trees ignored
    # dpd_current (as they learn to when its direction is flipped in the registry). With the
    # bucket held, DPD across its training range must still move the risk up. One model only:
    # the per-bucket models each see one bucket's DPD range and, on ~1,550 rows, barely use it.
    model, training_set = trained_by_train.models["single"], trained_by_train.training_set
    probabilities = _sweep(model, rows, "dpd_current", _grid(training_set, "dpd_current"))
    ratio = _odds_ratio(probabilities[-1], probabilities[0])
    assert ratio > ODDS_RISE, f"odds rose only {ratio:.2f}x from the lowest to the highest DPD"


# -- invariances -----------------------------------------------------------------------------


def test_changing_the_account_id_never_changes_the_score(
    trained: RollModel, rows: pd.DataFrame
) -> None:
    renamed = rows.assign(account_id=[f"other-{i}" for i in range(len(rows))])
    np.testing.assert_array_equal(trained.predict_proba(renamed), trained.predict_proba(rows))


def test_batch_single_rows_and_reversed_batch_score_identically(
    trained: RollModel, trained_by_train: TrainedModels
) -> None:
    training_set = trained_by_train.training_set
    # One row of every product and bucket seen, and rows with a missing feature value.
    batch = pd.concat(
        [
            training_set.groupby(["product", "start_bucket"]).head(1),
            training_set[training_set[FEATURE_SET.names].isna().any(axis=1)].head(3),
        ]
    )
    assert batch["product"].nunique() >= 4 and set(batch["start_bucket"]) == set(BUCKET_DPD)
    together = trained.predict_proba(batch)
    alone = np.array([trained.predict_proba(batch.iloc[[i]])[0] for i in range(len(batch))])
    np.testing.assert_array_equal(alone, together)
    # A row alone has a single category value: fixed category lists keep its code unchanged.
    np.testing.assert_array_equal(trained.predict_proba(batch.iloc[::-1])[::-1], together)


# -- discrimination --------------------------------------------------------------------------


def test_the_model_ranks_its_training_outcomes_far_better_than_chance(
    trained: RollModel, trained_by_train: TrainedModels
) -> None:
    training_set = trained_by_train.training_set
    auc = roc_auc_score(training_set[LABEL], trained.predict_proba(training_set))
    assert auc > 0.85
