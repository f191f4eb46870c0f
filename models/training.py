"""Train the roll-to-default model and measure it out of time against two baselines (no I/O).

What :func:`train_roll_model` does, in order:

  1. the as-of months of the training set are split in time, latest last: train | validation |
     out-of-time test (:func:`split_training_set`). Validation accounts are split in two: one
     part stops the boosting early, the other fits the calibrator (isotonic or Platt, chosen by
     cross-fitted Brier score). Training rows whose outcome window reaches into the next
     part's months are dropped (their labels would not be known when a model for those months
     is trained);
  2. optionally, LightGBM parameters are tuned by random search on the early-stopping rows
     (:func:`tune_lightgbm`);
  3. LightGBM (monotone where the feature registry declares a direction) is trained, with two
     baselines on the same split: the roll-rate Markov chain by product and bucket (today's
     forecast) and a WOE logistic scorecard;
  4. all are evaluated on the out-of-time months (AUC, Gini, KS, Brier, log loss, ECE, lift,
     PSI against training scores, per product and per starting bucket).

The result (:class:`TrainingResult`) holds the fitted models and every figure; logging it to
MLflow is :func:`rollrisk.storage.tracking.log_training_run`, and the HTML report is the
`rollrisk train` job's. Settings come typed (:class:`~rollrisk.models.training_config.TrainingConfig`);
progress goes to an optional callback. Design notes: docs/models.md.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from rollrisk.errors import UserError
from rollrisk.features.registry import FeatureSet
from rollrisk.features.schemas import TABLES
from rollrisk.features.splits import plan_split_by_as_of
from rollrisk.models.baselines import RollRateChainModel, WoeScorecardModel
from rollrisk.models.evaluation import ModelComparison, evaluate_models
from rollrisk.models.metrics import HEADLINE_METRICS, log_loss
from rollrisk.models.roll_model import RollModel
from rollrisk.models.training_config import TrainingConfig

LABEL = "rolled_to_default"
SLICES = ("product", "start_bucket")
PRIMARY = "lightgbm"
BASELINES = ("roll_rate_chain", "scorecard")
SPLIT_PARTS = ("train", "early_stopping", "calibration", "test")
# every portfolio table, in contract order (accounts, statements, then the optional ones)
ALL_TABLES: tuple[str, ...] = tuple(table.name for table in TABLES)
# Rows of training features kept with a model, so that monitoring can bin today's features
# on them (CSI) as it bins today's scores on the training scores (PSI).
REFERENCE_SAMPLE_ROWS = 50_000


def no_progress(message: str) -> None:
    """The default progress callback: say nothing."""


# --------------------------------------------------------------------------- split


@dataclass(frozen=True)
class SplitFrames:
    """The time split of a training set, and the as-of months of each part."""

    train: pd.DataFrame
    early_stopping: pd.DataFrame
    calibration: pd.DataFrame
    test: pd.DataFrame
    months: Mapping[str, tuple[date, ...]]

    def describe(self) -> dict[str, str]:
        def span(months: tuple[date, ...]) -> str:
            return f"{months[0]}..{months[-1]} ({len(months)} months)" if months else "none"

        return {f"{part} as-of": span(months) for part, months in self.months.items()}


def _month_ends(frame: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(frame["as_of"]).dt.date


def split_training_set(
    frame: pd.DataFrame,
    validation_months: int,
    test_months: int,
    embargo_months: int,
    calibration_fraction: float,
) -> SplitFrames:
    """Split by as-of month: train | embargo | validation | embargo | test, latest last.

    The plan is :func:`rollrisk.features.splits.plan_split_by_as_of`. The embargo (normally the
    outcome window) drops the as-of months whose labels would reach into the next part's
    period: a model made for the test months could not have known them. Validation accounts
    are then split by a stable hash of ``account_id``: ``calibration_fraction`` of them fit the
    calibrator, the rest stop the boosting early. Needs ``as_of`` and ``account_id``; the input
    is not modified.
    """
    as_of = _month_ends(frame)
    plan = plan_split_by_as_of(
        sorted(as_of.unique()),
        validation_months=validation_months,
        test_months=test_months,
        embargo_months=embargo_months,
    )
    validation_rows = frame[as_of.isin(plan.validation)]
    share = pd.util.hash_array(validation_rows["account_id"].astype(str).to_numpy(object)) / 2.0**64
    calibration_rows = share < calibration_fraction
    return SplitFrames(
        train=frame[as_of.isin(plan.train)],
        early_stopping=validation_rows[~calibration_rows],
        calibration=validation_rows[calibration_rows],
        test=frame[as_of.isin(plan.test)],
        months={
            "train": plan.train,
            "validation": plan.validation,
            "embargo (dropped)": plan.dropped,
            "out-of-time test": plan.test,
        },
    )


# --------------------------------------------------------------------------- training


@dataclass
class TrainingResult:
    """What a training run produced, before anything is logged.

    ``model`` is the fitted roll model; ``comparison`` its out-of-time metrics beside the
    baselines' (``comparison.overall``: one row per model); ``test_scores`` the test rows
    (``account_id, as_of``, the slices, the label and one probability column per model);
    ``train_scores`` each model's probabilities on the training rows (the PSI reference).
    ``feature_set``, ``training``, ``default_dpd`` and ``window_months`` say how it was made;
    ``tables`` which portfolio tables its features were computed from
    (:func:`tables_with_data`): scoring without one of them is refused unless the user opts in.
    """

    model: RollModel
    chain: RollRateChainModel
    scorecard: WoeScorecardModel
    split: SplitFrames
    comparison: ModelComparison
    test_scores: pd.DataFrame
    train_scores: Mapping[str, np.ndarray]
    feature_set: FeatureSet
    training: TrainingConfig
    default_dpd: int
    window_months: int
    tuning_trials: list[dict[str, Any]] = field(default_factory=list)
    tables: tuple[str, ...] = ALL_TABLES

    @property
    def left_out_features(self) -> dict[str, list[str]]:
        """Per portfolio table the model was trained without, the features it left missing."""
        return left_out_features(self.tables, self.feature_set)

    @property
    def observation(self) -> dict[str, int]:
        """The label's definition: ``default_dpd`` and ``window_months``."""
        return {"default_dpd": self.default_dpd, "window_months": self.window_months}

    def gaps(self) -> pd.DataFrame:
        return self.comparison.gaps(PRIMARY)

    def beats_baselines(self) -> bool:
        """True when LightGBM has a higher out-of-time AUC and a lower Brier than each baseline."""
        gaps = self.gaps().set_index("model")
        return all(gaps.loc[b, "auc_gap"] > 0 and gaps.loc[b, "brier_gap"] < 0 for b in BASELINES)


def tables_with_data(training_set: pd.DataFrame, feature_set: FeatureSet) -> tuple[str, ...]:
    """The portfolio tables a training set was built with, in contract order: the required
    ones, and each optional table at least one of whose features holds a value.

    A table the portfolio lacks leaves every one of its features missing, while a table that
    is there gives counts of 0 to an account without rows in it (``features/history.py``), so
    the training rows themselves say which tables were there, also for a training set read
    from a file. Needs the feature columns of ``feature_set``.
    """
    present = []
    for table in TABLES:
        columns = [spec.name for spec in feature_set.features if spec.source == table.name]
        if table.required or not columns or training_set[columns].notna().any(axis=None):
            present.append(table.name)
    return tuple(present)


def left_out_features(tables: tuple[str, ...], feature_set: FeatureSet) -> dict[str, list[str]]:
    """The features of ``feature_set`` whose source table is not in ``tables``, per table."""
    left_out: dict[str, list[str]] = {}
    for spec in feature_set.features:
        if spec.source in ALL_TABLES and spec.source not in tables:
            left_out.setdefault(spec.source, []).append(spec.name)
    return left_out


def model_from_config(
    feature_set: FeatureSet, training: TrainingConfig, **overrides: Any
) -> RollModel:
    """An unfitted :class:`RollModel` with the configured LightGBM parameters, structure,
    calibration and seed; ``overrides`` replace LightGBM parameters (tuning trials)."""
    params = training.lightgbm.model_dump()
    params.update(overrides)
    return RollModel(
        feature_set,
        structure=training.structure,
        calibration=training.calibration.method,
        calibration_folds=training.calibration.folds,
        random_state=training.seed,
        **params,
    )


def fit_on_split(
    model: RollModel, split: SplitFrames, calibration: pd.DataFrame | None = None
) -> RollModel:
    """Fit on the split's training rows, stopping early on its early-stopping rows, calibrating
    on ``calibration`` (default: the split's calibration rows)."""
    calibration = split.calibration if calibration is None else calibration
    return model.fit(
        split.train,
        split.train[LABEL],
        X_valid=split.early_stopping,
        y_valid=split.early_stopping[LABEL],
        X_calibration=calibration,
        y_calibration=calibration[LABEL],
        calibration_groups=calibration["account_id"].astype(str).to_numpy(),
    )


def tune_lightgbm(
    feature_set: FeatureSet, training: TrainingConfig, split: SplitFrames
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Random search of LightGBM parameters scored on the early-stopping part of validation.

    Never looks at the calibration part or the test months. Stops at the time budget or after
    ``max_trials``; returns the best overrides (empty when no trial beat the configured ones).
    """
    rng = random.Random(training.seed)
    budget = training.tuning.time_budget_seconds
    started = time.perf_counter()
    trials: list[dict[str, Any]] = []
    candidates: list[dict[str, Any]] = [{}]  # the configured parameters are trial 0
    while len(trials) < training.tuning.max_trials and time.perf_counter() - started < budget:
        overrides = (
            candidates.pop()
            if candidates
            else {
                "num_leaves": rng.choice([7, 15, 31, 63]),
                "min_child_samples": rng.choice([20, 50, 100, 200, 400]),
                "learning_rate": rng.choice([0.02, 0.05, 0.1]),
                "colsample_bytree": rng.choice([0.5, 0.7, 0.9, 1.0]),
                "reg_lambda": rng.choice([0.0, 1.0, 5.0, 20.0]),
            }
        )
        model = model_from_config(feature_set, training, **overrides)
        # Early-stopping rows double as the tuning score; calibration rows stay untouched.
        model = fit_on_split(model, split, calibration=split.early_stopping)
        score = log_loss(
            split.early_stopping[LABEL],
            np.clip(model.predict_raw(split.early_stopping), 1e-6, 1 - 1e-6),
        )
        trials.append({**overrides, "validation_log_loss": float(score)})
    best = min(trials, key=lambda trial: trial["validation_log_loss"])
    return {k: v for k, v in best.items() if k != "validation_log_loss"}, trials


def train_roll_model(
    training_set: pd.DataFrame,
    statements: Any,
    accounts: Any,
    feature_set: FeatureSet,
    training: TrainingConfig,
    default_dpd: int,
    window_months: int,
    tune: bool = False,
    progress: Callable[[str], None] = no_progress,
) -> TrainingResult:
    """Split, train LightGBM and both baselines, and compare them on the out-of-time months.

    ``training_set`` is a pandas training-set frame (``account_id, as_of, product,
    start_bucket, rolled_to_default`` and the feature columns); ``statements`` / ``accounts``
    are the portfolio tables the roll-rate chain is estimated from (polars or pandas).
    ``default_dpd`` and ``window_months`` are the label's definition (the chain forecasts the
    same event). Raises :class:`UserError` when a column is missing or a part of the split has
    a single outcome. The input is not modified.
    """
    missing = [
        c
        for c in ("account_id", "as_of", *SLICES, LABEL, *feature_set.names)
        if c not in training_set.columns
    ]
    if missing:
        raise UserError(
            f"the training set lacks column(s) {missing} (feature set {feature_set.name} v{feature_set.version})"
        )
    split = split_training_set(
        training_set,
        validation_months=training.split.validation_months,
        test_months=training.split.test_months,
        embargo_months=window_months
        if training.split.embargo_months is None
        else training.split.embargo_months,
        calibration_fraction=training.calibration.holdout_fraction,
    )
    for part in SPLIT_PARTS:
        labels = getattr(split, part)[LABEL]
        if labels.nunique() < 2:
            raise UserError(
                f"the {part} part of the split has {len(labels)} rows and only one outcome; simulate more accounts or months"
            )
    tables = tables_with_data(training_set, feature_set)
    for table, names in left_out_features(tables, feature_set).items():
        progress(
            f"no {table} in the training data: its {len(names)} features are left missing "
            "(LightGBM learns nothing from them, the scorecard leaves them out); the model "
            f"records that it was trained without {table}"
        )

    trials: list[dict[str, Any]] = []
    overrides: dict[str, Any] = {}
    if tune:
        progress("tuning LightGBM on validation data")
        overrides, trials = tune_lightgbm(feature_set, training, split)
    progress("training LightGBM")
    model = fit_on_split(model_from_config(feature_set, training, **overrides), split)

    progress("training the roll-rate chain baseline")
    cutoff = split.months["out-of-time test"][0]
    chain = RollRateChainModel(default_dpd=default_dpd, window_months=window_months)
    chain.fit(statements, until=cutoff, accounts=accounts)

    progress("training the WOE scorecard baseline")
    scorecard_columns = model.input_columns
    scorecard = WoeScorecardModel(feature_specs=feature_set.features)
    scorecard.fit(
        split.train[scorecard_columns].reset_index(drop=True), split.train[LABEL].to_numpy()
    )

    progress("scoring the out-of-time months")
    probabilities = {
        PRIMARY: model.predict_proba,
        f"{PRIMARY}_uncalibrated": model.predict_raw,
        "roll_rate_chain": chain.predict_proba,
        "scorecard": lambda frame: scorecard.predict_proba(
            frame[scorecard_columns].reset_index(drop=True)
        ),
    }
    test = split.test.reset_index(drop=True)
    test_scores = test[["account_id", "as_of", *SLICES, LABEL]].copy()
    train = split.train.reset_index(drop=True)
    train_scores: dict[str, np.ndarray] = {}
    for name, predict in probabilities.items():
        test_scores[name] = np.asarray(predict(test), dtype=np.float64)
        train_scores[name] = np.asarray(predict(train), dtype=np.float64)
    comparison = evaluate_models(
        test_scores,
        LABEL,
        {name: name for name in probabilities},
        slice_cols=SLICES,
        reference_probs=train_scores,
        primary_model=PRIMARY,
    )
    return TrainingResult(
        model=model,
        chain=chain,
        scorecard=scorecard,
        split=split,
        comparison=comparison,
        test_scores=test_scores,
        train_scores=train_scores,
        feature_set=feature_set,
        training=training,
        default_dpd=default_dpd,
        window_months=window_months,
        tuning_trials=trials,
        tables=tables,
    )


# --------------------------------------------------------------------------- evaluation


def evaluate_probabilities(
    labelled: pd.DataFrame,
    probabilities: np.ndarray,
    reference_scores: np.ndarray | None = None,
    name: str = "roll_model",
) -> ModelComparison:
    """One model's metrics on labelled rows, overall and per product and starting bucket.

    ``labelled`` holds ``account_id, as_of, product, start_bucket, rolled_to_default`` (a
    training set's rows); ``probabilities`` are the model's, row for row. ``reference_scores``
    (the model's training scores), when given, add the PSI of these scores against them.
    """
    scored = labelled[["account_id", "as_of", *SLICES, LABEL]].copy()
    scored[name] = np.asarray(probabilities, dtype=np.float64)
    return evaluate_models(
        scored,
        LABEL,
        {name: name},
        slice_cols=SLICES,
        reference_probs={name: reference_scores} if reference_scores is not None else None,
    )


# --------------------------------------------------------------------------- what is logged


def comparison_metrics(comparison: ModelComparison, prefix: str = "oot") -> dict[str, float]:
    """Flat MLflow metrics: ``oot_auc`` for LightGBM, ``oot_auc_scorecard`` for a baseline,
    ``oot_auc.product.bnpl`` / ``oot_auc_scorecard.start_bucket.M2`` per slice, ``oot_psi``.
    """
    metrics: dict[str, float] = {}

    def key(metric: str, model: str) -> str:
        return f"{prefix}_{metric}" if model == PRIMARY else f"{prefix}_{metric}_{model}"

    for model, row in comparison.overall.iterrows():
        for metric in (*HEADLINE_METRICS, "base_rate", "mean_predicted", "n"):
            metrics[key(metric, str(model))] = float(row[metric])
    for _, row in comparison.by_slice.iterrows():
        for metric in HEADLINE_METRICS:
            metrics[f"{key(metric, str(row['model']))}.{row['slice']}.{row['value']}"] = float(
                row[metric]
            )
    for _, row in comparison.stability.iterrows():
        metrics[key("psi", str(row["model"]))] = float(row["psi"])
    for _, row in comparison.gaps(PRIMARY).iterrows():
        for metric in ("auc", "brier", "ece"):
            metrics[f"{prefix}_{metric}_gap_vs_{row['model']}"] = float(row[f"{metric}_gap"])
    return {name: value for name, value in metrics.items() if np.isfinite(value)}


def reference_sample(train: pd.DataFrame, feature_set: FeatureSet, seed: int) -> pd.DataFrame:
    """Up to :data:`REFERENCE_SAMPLE_ROWS` training rows (fixed seed): the slices and features."""
    columns = list(dict.fromkeys([*SLICES, *feature_set.names]))
    rows = train[columns]
    if len(rows) > REFERENCE_SAMPLE_ROWS:
        rows = rows.sample(n=REFERENCE_SAMPLE_ROWS, random_state=seed)
    return rows.reset_index(drop=True)
