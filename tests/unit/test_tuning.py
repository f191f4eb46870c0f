"""`rollrisk train --tune`: the Optuna search of LightGBM parameters (models/training.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from rollrisk.models.training import (
    LABEL,
    SEARCH_SPACE,
    SplitFrames,
    split_training_set,
    tune_lightgbm,
    tuning_outcome,
)
from rollrisk.models.training_config import LightGBMConfig, TrainingConfig, TuningConfig
from tests.synthetic_training_set import TEST_FEATURE_SET, make_training_frame

TRAINING = TrainingConfig(
    seed=3,
    lightgbm=LightGBMConfig(n_estimators=60, early_stopping_rounds=10, n_jobs=1),
    tuning=TuningConfig(max_trials=4, time_budget_seconds=600.0),
)


@pytest.fixture(scope="module")
def split() -> SplitFrames:
    frame = make_training_frame(n_accounts=200, n_months=9, seed=5)
    return split_training_set(
        frame, validation_months=2, test_months=2, embargo_months=0, calibration_fraction=0.5
    )


def _scores(trials: list[dict[str, object]]) -> list[float]:
    return [float(trial["validation_log_loss"]) for trial in trials]  # type: ignore[arg-type]


def test_the_search_is_seeded_starts_from_the_configured_parameters_and_keeps_the_best(
    split: SplitFrames,
) -> None:
    overrides, trials = tune_lightgbm(TEST_FEATURE_SET, TRAINING, split)
    again_overrides, again = tune_lightgbm(TEST_FEATURE_SET, TRAINING, split)
    assert len(trials) == TRAINING.tuning.max_trials
    # same data, same seed, stopped by the trial cap: the same trials and the same choice
    assert [{k: v for k, v in t.items() if k != "seconds"} for t in trials] == [
        {k: v for k, v in t.items() if k != "seconds"} for t in again
    ]
    assert overrides == again_overrides
    configured = TRAINING.lightgbm.model_dump()
    assert {name: trials[0][name] for name in SEARCH_SPACE} == {
        name: configured[name] for name in SEARCH_SPACE
    }
    best = min(trials, key=lambda trial: float(trial["validation_log_loss"]))  # type: ignore[arg-type]
    expected = {} if best["trial"] == 0 else {name: best[name] for name in SEARCH_SPACE}
    assert overrides == expected
    # the sampler explores: later trials are not the configured parameters again
    assert any(trial["num_leaves"] != configured["num_leaves"] for trial in trials[1:])


def test_another_seed_explores_other_parameters(split: SplitFrames) -> None:
    _, trials = tune_lightgbm(TEST_FEATURE_SET, TRAINING, split)
    _, other = tune_lightgbm(TEST_FEATURE_SET, TRAINING.with_overrides(seed=4), split)
    assert [t["learning_rate"] for t in trials[1:]] != [t["learning_rate"] for t in other[1:]]


def test_the_time_budget_stops_the_search(split: SplitFrames) -> None:
    hurried = TRAINING.with_section_overrides("tuning", time_budget_seconds=1e-3, max_trials=50)
    overrides, trials = tune_lightgbm(TEST_FEATURE_SET, hurried, split)
    # the budget is checked between trials: the first one runs, then the search stops
    assert len(trials) == 1
    assert overrides == {}


def test_tuning_never_reads_the_calibration_rows_or_the_test_months(split: SplitFrames) -> None:
    def flipped(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(**{LABEL: 1 - frame[LABEL]})

    _, trials = tune_lightgbm(TEST_FEATURE_SET, TRAINING, split)
    blind = SplitFrames(
        train=split.train,
        early_stopping=split.early_stopping,
        calibration=flipped(split.calibration),
        test=flipped(split.test),
        months=split.months,
    )
    _, blind_trials = tune_lightgbm(TEST_FEATURE_SET, TRAINING, blind)
    assert _scores(blind_trials) == pytest.approx(_scores(trials), rel=1e-12)
    # ... while the early-stopping rows are what it scores
    seen = SplitFrames(
        train=split.train,
        early_stopping=flipped(split.early_stopping),
        calibration=split.calibration,
        test=split.test,
        months=split.months,
    )
    _, seen_trials = tune_lightgbm(TEST_FEATURE_SET, TRAINING, seen)
    assert _scores(seen_trials)[0] != pytest.approx(_scores(trials)[0], rel=1e-3)


def test_the_outcome_is_said_in_one_line() -> None:
    """`train --tune` said nothing of what its search did (a user found no trace of it)."""
    trials = [
        {"trial": 0, "num_leaves": 15, "validation_log_loss": 0.31234},
        {"trial": 1, "num_leaves": 31, "validation_log_loss": 0.30111},
        {"trial": 2, "num_leaves": 7, "validation_log_loss": 0.32},
    ]
    assert tuning_outcome({"num_leaves": 31, "learning_rate": 0.0456789}, trials) == (
        "tuning: 3 trials (validation log loss: configured parameters 0.31234, best 0.30111, "
        "trial 1); kept: learning_rate=0.04568, num_leaves=31"
    )
    assert tuning_outcome({}, trials[:1]) == (
        "tuning: 1 trial (validation log loss: configured parameters 0.31234); the configured "
        "parameters won and are kept"
    )
    assert "no trial finished" in tuning_outcome({}, [])
