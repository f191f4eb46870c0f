"""Train the roll-to-default model and measure it out of time against two baselines (no I/O).

What :func:`train_roll_model` does, in order:

  1. the as-of months of the training set are split in time, latest last: train | embargo |
     validation | embargo | out-of-time test (:func:`split_training_set`; a history too short
     for the configured sizes gets a smaller split, with a warning). Validation accounts are
     split in two: one part stops the boosting early, the other fits the calibrator (none,
     Platt or isotonic, chosen out of time: fitted on the earlier validation months, judged by
     ECE on the latest; the raw score unless a map beats it there beyond noise). The embargo
     drops the as-of months whose labels would not yet be complete when the next part begins;
  2. optionally, LightGBM parameters are tuned with Optuna (seeded TPE, within a time budget and
     a trial cap) on the early-stopping rows (:func:`tune_lightgbm`);
  3. LightGBM (monotone where the feature registry declares a direction) is trained, with two
     baselines on the same split: the roll-rate Markov chain by product and bucket (today's
     forecast) and a WOE logistic scorecard;
  4. all are evaluated on the out-of-time months (AUC, Gini, KS, Brier, log loss, ECE and
     smooth ECE, lift, PSI against training scores, per product and per starting bucket):
     these are the figures the promotion gates judge;
  5. the same procedure, with the same settings, is refit shifted forward to the latest
     labelled months (:func:`deployment_split`): trees on every month before them, early
     stopping and calibration on them. That deployed model is the one registered and scored;
     the evaluation fit is kept for the record and for ``rollrisk promote``'s comparisons;
  6. warnings for what the user should know about the data: a shrunk split, feature windows
     reaching back before the portfolio's first statements.

The result (:class:`TrainingResult`) holds the fitted models and every figure; logging it to
MLflow is :func:`rollrisk.storage.tracking.log_training_run`, and the HTML report is the
`rollrisk train` job's. Settings come typed (:class:`~rollrisk.models.training_config.TrainingConfig`);
progress goes to an optional callback. Design notes: docs/models.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from rollrisk.errors import UserError
from rollrisk.features.currencies import currency_counts, mixed_currencies_message
from rollrisk.features.dates import default_as_of_choice
from rollrisk.features.observations import (
    first_statement_month,
    partial_months_note,
    window_lengths,
    windows_complete_from,
)
from rollrisk.features.registry import FeatureSet
from rollrisk.features.schemas import TABLES
from rollrisk.features.splits import plan_adaptive_split, plan_deployment_split
from rollrisk.models.baselines import RollRateChainModel, WoeScorecardModel
from rollrisk.models.evaluation import ModelComparison, evaluate_models
from rollrisk.models.metrics import HEADLINE_METRICS, log_loss, smooth_calibration_error
from rollrisk.models.promotion import CandidateFigures
from rollrisk.models.roll_model import RollModel
from rollrisk.models.training_config import TrainingConfig

LABEL = "rolled_to_default"
SLICES = ("product", "start_bucket")
PRIMARY = "lightgbm"
BASELINES = ("roll_rate_chain", "scorecard")
SPLIT_PARTS = ("train", "early_stopping", "calibration", "test")
DEPLOYMENT_PARTS = ("train", "early_stopping", "calibration")
# every portfolio table, in contract order (accounts, statements, then the optional ones)
ALL_TABLES: tuple[str, ...] = tuple(table.name for table in TABLES)


def no_progress(message: str) -> None:
    """The default progress callback: say nothing."""


# --------------------------------------------------------------------------- split


@dataclass(frozen=True)
class SplitFrames:
    """The time split of a training set, and the as-of months of each part.

    ``embargo_months`` is the embargo the plan used (before validation, and before test when
    there is one); ``adaptations`` how the plan differs from the configured one (a short
    history), in words. A deployment split (:func:`deployment_split`) has an empty ``test``.
    """

    train: pd.DataFrame
    early_stopping: pd.DataFrame
    calibration: pd.DataFrame
    test: pd.DataFrame
    months: Mapping[str, tuple[date, ...]]
    embargo_months: int = 0
    adaptations: tuple[str, ...] = ()

    def describe(self) -> dict[str, str]:
        def span(months: tuple[date, ...]) -> str:
            """``first..last (n months)``, one range per run of consecutive months (the embargo
            is two: before the validation months and before the test)."""
            if not months:
                return "none"
            runs: list[list[date]] = []
            for month in sorted(months):
                if runs and _months_apart(runs[-1][-1], month) == 1:
                    runs[-1].append(month)
                else:
                    runs.append([month])
            count = f"{len(months)} month" + ("s" if len(months) > 1 else "")
            ranges = ", ".join(
                f"{run[0]}..{run[-1]}" if len(run) > 1 else f"{run[0]}" for run in runs
            )
            return f"{ranges} ({count})"

        return {f"{part} as-of": span(months) for part, months in self.months.items()}


def _months_apart(earlier: date, later: date) -> int:
    return (later.year - earlier.year) * 12 + later.month - earlier.month


def _month_ends(frame: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(frame["as_of"]).dt.date


def _validation_parts(
    validation_rows: pd.DataFrame, calibration_fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(early-stopping rows, calibration rows): validation accounts split by a stable hash of
    ``account_id``, ``calibration_fraction`` of them to the calibrator."""
    share = pd.util.hash_array(validation_rows["account_id"].astype(str).to_numpy(object)) / 2.0**64
    calibration_rows = share < calibration_fraction
    return validation_rows[~calibration_rows], validation_rows[calibration_rows]


def split_training_set(
    frame: pd.DataFrame,
    validation_months: int,
    test_months: int,
    embargo_months: int,
    calibration_fraction: float,
    adapt: bool = True,
) -> SplitFrames:
    """Split by as-of month: train | embargo | validation | embargo | test, latest last.

    The plan is :func:`rollrisk.features.splits.plan_adaptive_split` (with ``adapt``, a
    history too short for the configured sizes gets a smaller split, said in
    ``adaptations``). The embargo drops the as-of months whose labels would not yet be complete
    when the next part begins: a model made for the test months could not have known them.
    Validation accounts are then split by a stable hash of ``account_id``:
    ``calibration_fraction`` of them fit the calibrator, the rest stop the boosting early.
    Needs ``as_of`` and ``account_id``; the input is not modified.
    """
    as_of = _month_ends(frame)
    plan = plan_adaptive_split(
        sorted(as_of.unique()),
        validation_months=validation_months,
        test_months=test_months,
        embargo_months=embargo_months,
        adapt=adapt,
    )
    early_stopping, calibration = _validation_parts(
        frame[as_of.isin(plan.validation)], calibration_fraction
    )
    return SplitFrames(
        train=frame[as_of.isin(plan.train)],
        early_stopping=early_stopping,
        calibration=calibration,
        test=frame[as_of.isin(plan.test)],
        months={
            "train": plan.train,
            "validation": plan.validation,
            "embargo (dropped)": plan.dropped,
            "out-of-time test": plan.test,
        },
        embargo_months=plan.embargo_months,
        adaptations=plan.adaptations,
    )


def deployment_split(
    frame: pd.DataFrame, evaluation: SplitFrames, calibration_fraction: float
) -> SplitFrames:
    """The evaluated split shifted forward to the latest labelled as-of: train | embargo |
    validation, with the evaluation's validation and embargo sizes and no test.

    The deployed model is fitted on it exactly as the evaluated one was on ``evaluation``
    (trees on train, early stopping and calibration on the latest labelled months), so the
    gates' figures describe the procedure that made it. Needs ``as_of`` and ``account_id``.
    """
    as_of = _month_ends(frame)
    plan = plan_deployment_split(
        sorted(as_of.unique()),
        validation_months=len(evaluation.months["validation"]),
        embargo_months=evaluation.embargo_months,
    )
    early_stopping, calibration = _validation_parts(
        frame[as_of.isin(plan.validation)], calibration_fraction
    )
    return SplitFrames(
        train=frame[as_of.isin(plan.train)],
        early_stopping=early_stopping,
        calibration=calibration,
        test=frame.iloc[0:0],
        months={
            "train": plan.train,
            "validation": plan.validation,
            "embargo (dropped)": plan.dropped,
        },
        embargo_months=plan.embargo_months,
    )


# --------------------------------------------------------------------------- training


@dataclass
class TrainingResult:
    """What a training run produced, before anything is logged.

    Two fits of one procedure. ``evaluation_model`` is fitted on ``split`` (train, then early
    stopping and calibration on the validation months) and judged on its out-of-time test
    months: ``comparison`` holds its metrics beside the baselines' (``comparison.overall``:
    one row per model), ``test_scores`` the test rows (``account_id, as_of``, the slices, the
    label and one probability column per model), ``train_scores`` each model's probabilities
    on the training rows (the PSI reference of the gates). ``model`` is the deployed model:
    the same procedure on ``deployment_split``, shifted forward to the latest labelled months
    (trees on every month before them, calibrated on them); it is what is registered and
    scores the book, and ``deployment_scores`` are its probabilities on its training rows
    (monitoring's PSI reference). ``warnings`` say what the user should know about the data
    (a split shrunk to fit a short history, feature windows not yet complete).
    ``feature_set``, ``training``, ``default_dpd`` and ``window_months`` say how it was made;
    ``tables`` which portfolio tables its features were computed from
    (:func:`tables_with_data`): scoring without one of them is refused unless the user opts in;
    ``currencies`` the currency of its training accounts (one: a mix is refused before
    fitting; empty when unknown), which scoring requires of the accounts it scores.
    """

    model: RollModel
    evaluation_model: RollModel
    deployment_split: SplitFrames
    deployment_scores: np.ndarray
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
    warnings: tuple[str, ...] = ()
    currencies: tuple[str, ...] = ()

    @property
    def left_out_features(self) -> dict[str, list[str]]:
        """Per portfolio table the model was trained without, the features it left missing."""
        return left_out_features(self.tables, self.feature_set)

    @property
    def trained_as_of(self) -> str:
        """The as-of months the deployed model learnt from, 'first..last' (its training and
        validation months): figures on rows of them are in-sample."""
        months = self.deployment_split.months
        return f"{months['train'][0]}..{months['validation'][-1]}"

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

    def sample_sizes(self) -> dict[str, int]:
        """Rows and positives the judged and the deployed fits rest on: ``train_rows``,
        ``train_positives`` (the evaluation's training months), ``test_rows``,
        ``test_positives`` (its out-of-time months), ``deployment_train_rows`` and
        ``deployment_train_positives`` (the deployed model's training months)."""
        parts = {
            "train": self.split.train,
            "test": self.split.test,
            "deployment_train": self.deployment_split.train,
        }
        sizes: dict[str, int] = {}
        for name, frame in parts.items():
            sizes[f"{name}_rows"] = len(frame)
            sizes[f"{name}_positives"] = int(frame[LABEL].sum())
        return sizes

    def smooth_ece(self) -> dict[str, float]:
        """The smooth (kernel) ECE of every model on the out-of-time rows, beside the binned
        ECE of ``comparison`` (:func:`~rollrisk.models.metrics.smooth_calibration_error`)."""
        labels = self.test_scores[LABEL].to_numpy()
        return {
            name: smooth_calibration_error(labels, self.test_scores[name].to_numpy())
            for name in self.comparison.models
        }

    def calibration_metrics(self, prefix: str = "oot") -> dict[str, float]:
        """:meth:`smooth_ece` as MLflow metrics: ``oot_smooth_ece`` for LightGBM,
        ``oot_smooth_ece_<model>`` for the others."""
        return {
            f"{prefix}_smooth_ece" + ("" if name == PRIMARY else f"_{name}"): value
            for name, value in self.smooth_ece().items()
        }

    def candidate_figures(self, version: str = "this run") -> CandidateFigures:
        """What ``rollrisk promote`` will read of this run, for the gates that need no
        champion: its out-of-time AUC, ECE and PSI, the baselines verdict, the sample sizes."""
        overall = self.comparison.overall
        stability = self.comparison.stability.set_index("model")["psi"]
        sizes = self.sample_sizes()
        gaps = self.gaps().set_index("model")
        return CandidateFigures(
            version=version,
            auc=float(overall.loc[PRIMARY, "auc"]),
            ece=float(overall.loc[PRIMARY, "ece"]),
            psi=float(stability.get(PRIMARY, float("nan"))),
            beats_baselines=self.beats_baselines(),
            baseline_gaps={
                b: (float(gaps.loc[b, "auc_gap"]), float(gaps.loc[b, "brier_gap"]))
                for b in BASELINES
            },
            train_rows=sizes["train_rows"],
            train_positives=sizes["train_positives"],
            test_rows=sizes["test_rows"],
            test_positives=sizes["test_positives"],
        )


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
    on ``calibration`` (default: the split's calibration rows; their as-of months let
    ``auto`` choose the calibration out of time, docs/models.md "Choosing the calibration")."""
    calibration = split.calibration if calibration is None else calibration
    return model.fit(
        split.train,
        split.train[LABEL],
        X_valid=split.early_stopping,
        y_valid=split.early_stopping[LABEL],
        X_calibration=calibration,
        y_calibration=calibration[LABEL],
        calibration_groups=calibration["account_id"].astype(str).to_numpy(),
        calibration_months=_month_ends(calibration).astype(str).to_numpy(),
    )


# The search space of `rollrisk train --tune` (log scale where the effect is multiplicative).
# LightGBM's own tuning guide names these as the parameters that matter for a tree ensemble of
# this size: leaves and rows per leaf (model shape), learning rate (with early stopping: the
# number of trees follows), feature and row sampling, L2 regularisation.
SEARCH_SPACE: Mapping[str, tuple[str, float, float]] = {
    "num_leaves": ("int_log", 7, 63),
    "min_child_samples": ("int_log", 20, 400),
    "learning_rate": ("float_log", 0.02, 0.1),
    "colsample_bytree": ("float", 0.5, 1.0),
    "subsample": ("float", 0.6, 1.0),
    "reg_lambda": ("float_log", 0.01, 20.0),
}


def _suggest(trial: Any, name: str, kind: str, low: float, high: float) -> float | int:
    if kind == "int_log":
        return trial.suggest_int(name, int(low), int(high), log=True)
    return trial.suggest_float(name, low, high, log=kind == "float_log")


def tune_lightgbm(
    feature_set: FeatureSet, training: TrainingConfig, split: SplitFrames
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Optuna (TPE, seeded with ``training.seed``) search of LightGBM parameters, each trial
    scored by log loss on the early-stopping part of validation.

    Trial 0 is the configured parameters, so the search can only keep or improve on them.
    Never looks at the calibration part or the test months. Stops after
    ``training.tuning.max_trials`` trials or when ``time_budget_seconds`` have passed, whichever
    comes first: with the same data and seed, a search that stops at its trial cap is
    reproducible (the budget is a safety stop; trials it cuts short depend on the machine).
    Returns the best trial's parameters as overrides (empty when the configured ones won) and
    every trial (its parameters, ``validation_log_loss``, ``best_iteration``, ``seconds``).
    """
    import optuna  # lazily: only `train --tune` needs it (and its import costs a second)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    configured = training.lightgbm.model_dump()
    study = optuna.create_study(
        direction="minimize", sampler=optuna.samplers.TPESampler(seed=training.seed)
    )
    study.enqueue_trial({name: configured[name] for name in SEARCH_SPACE})
    trials: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        started = time.perf_counter()
        overrides = {name: _suggest(trial, name, *bounds) for name, bounds in SEARCH_SPACE.items()}
        model = model_from_config(feature_set, training, **overrides)
        # Early-stopping rows double as the tuning score; calibration rows stay untouched.
        model = fit_on_split(model, split, calibration=split.early_stopping)
        score = float(
            log_loss(
                split.early_stopping[LABEL],
                np.clip(model.predict_raw(split.early_stopping), 1e-6, 1 - 1e-6),
            )
        )
        trials.append(
            {
                "trial": trial.number,
                **overrides,
                "validation_log_loss": score,
                "best_iteration": str(model.best_iterations_),
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
        return score

    study.optimize(
        objective,
        n_trials=training.tuning.max_trials,
        timeout=training.tuning.time_budget_seconds,
    )
    best = study.best_trial
    if best.number == 0:
        return {}, trials
    return dict(best.params), trials


def tuning_outcome(overrides: dict[str, Any], trials: list[dict[str, Any]]) -> str:
    """One line saying what a search did: how many trials, the configured parameters' and the
    best validation log loss, and what was kept (the configured parameters, or the overrides)."""
    if not trials:
        return (
            "tuning: no trial finished within the time budget; the configured parameters are used"
        )
    configured = next((t for t in trials if t["trial"] == 0), None)
    best = min(trials, key=lambda t: t["validation_log_loss"])
    base = (
        f"configured parameters {configured['validation_log_loss']:.5f}"
        if configured is not None
        else "configured parameters not scored"
    )
    head = (
        f"tuning: {len(trials)} trial{'s' if len(trials) != 1 else ''} (validation log loss: {base}"
    )
    if not overrides:
        return f"{head}); the configured parameters won and are kept"
    chosen = ", ".join(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
                       for name, value in sorted(overrides.items()))  # fmt: skip
    return f"{head}, best {best['validation_log_loss']:.5f}, trial {best['trial']}); kept: {chosen}"


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
    same event). Raises :class:`UserError` when a column is missing, the training set's accounts
    hold more than one currency (before anything is fitted) or a part of the split has a
    single outcome. The input is not modified.
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
    currencies = training_currencies(training_set, accounts)
    split = split_training_set(
        training_set,
        validation_months=training.split.validation_months,
        test_months=training.split.test_months,
        embargo_months=embargo_months(training, window_months),
        calibration_fraction=training.calibration.holdout_fraction,
        adapt=training.split.adapt,
    )
    _check_outcomes(split, SPLIT_PARTS, "the split")
    if split.adaptations:  # the notes themselves come with the result's warnings
        progress(f"the split was shrunk to fit a short history ({len(split.adaptations)} steps)")
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
        progress(tuning_outcome(overrides, trials))
    progress("training LightGBM (evaluation fit: " + split.describe()["train as-of"] + ")")
    evaluation_model = fit_on_split(model_from_config(feature_set, training, **overrides), split)

    progress("training the roll-rate chain baseline")
    cutoff = split.months["out-of-time test"][0]
    chain = RollRateChainModel(default_dpd=default_dpd, window_months=window_months)
    chain.fit(statements, until=cutoff, accounts=accounts)

    progress("training the WOE scorecard baseline")
    scorecard_columns = evaluation_model.input_columns
    scorecard = WoeScorecardModel(feature_specs=feature_set.features)
    scorecard.fit(
        split.train[scorecard_columns].reset_index(drop=True), split.train[LABEL].to_numpy()
    )

    progress("scoring the out-of-time months")
    probabilities = {
        PRIMARY: evaluation_model.predict_proba,
        f"{PRIMARY}_uncalibrated": evaluation_model.predict_raw,
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

    # The evaluated procedure, shifted forward: the deployed model learns from every labelled
    # month and is calibrated on the latest ones, with the settings the evaluation used.
    deployment = deployment_split(training_set, split, training.calibration.holdout_fraction)
    _check_outcomes(deployment, DEPLOYMENT_PARTS, "the deployment refit")
    progress("refitting LightGBM for deployment (" + deployment.describe()["train as-of"] + ")")
    model = fit_on_split(model_from_config(feature_set, training, **overrides), deployment)
    deployment_scores = np.asarray(
        model.predict_proba(deployment.train.reset_index(drop=True)), dtype=np.float64
    )
    partial = partial_months_note(default_as_of_choice(statements))
    warnings = (
        *(f"short history: {note}" for note in split.adaptations),
        *([partial] if partial else []),
        *incomplete_window_warnings(
            {
                "evaluation's training rows": split.train,
                "deployed model's training rows": deployment.train,
            },
            first_statement_month(statements),
            feature_set,
        ),
    )
    # said once, in the job's summary and the report (TrainingResult.warnings), not also here
    return TrainingResult(
        model=model,
        evaluation_model=evaluation_model,
        deployment_split=deployment,
        deployment_scores=deployment_scores,
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
        warnings=warnings,
        currencies=currencies,
    )


def training_currencies(training_set: pd.DataFrame, accounts: Any) -> tuple[str, ...]:
    """The currency of the training set's accounts (``accounts``: the portfolio's, polars or
    pandas); empty when ``accounts`` has no ``currency`` column or none of the accounts.

    Raises:
        UserError: the accounts hold more than one currency (the message counts the accounts
            of each and says what to do).
    """
    if accounts is None or "currency" not in accounts.columns:
        return ()
    ids = pl.from_pandas(training_set["account_id"]).cast(pl.String).unique()
    counts = currency_counts(accounts, ids)
    refusal = mixed_currencies_message(counts)
    if refusal is not None:
        raise UserError(refusal)
    return tuple(counts["currency"].to_list())


def embargo_months(training: TrainingConfig, window_months: int) -> int:
    """The embargo of the split: the configured one, else ``window_months - 1``.

    A label at as-of month ``m`` is complete once the statements of month ``m + window`` are
    in (the training set's own rule), so when a part begins at as-of month ``t`` the latest
    label known is that of month ``t - window``: the ``window - 1`` months between are
    dropped. The deployed model stands in the same place: its latest labelled as-of is
    ``window`` months before the month-end it first scores.
    """
    configured = training.split.embargo_months
    return max(window_months - 1, 0) if configured is None else configured


def _check_outcomes(split: SplitFrames, parts: tuple[str, ...], what: str) -> None:
    """Raise :class:`UserError` naming the first part of ``split`` with a single outcome."""
    months_of = {"train": "train", "early_stopping": "validation", "calibration": "validation"}
    for part in parts:
        labels = getattr(split, part)[LABEL]
        if labels.nunique() < 2:
            months = split.describe()[f"{months_of.get(part, 'out-of-time test')} as-of"]
            raise UserError(
                f"the {part} part of {what} ({months}) has {len(labels)} rows and only one "
                "outcome; a model needs both rolled and not-rolled accounts in every part: "
                "use a portfolio with more accounts or months"
            )


TRUNCATED_TRAINING = (
    "the model learns from truncated histories and monitoring will see these features drift "
    "as the windows fill"
)


def incomplete_window_warnings(
    parts: Mapping[str, pd.DataFrame],
    first_month: date | None,
    feature_set: FeatureSet,
    consequence: str = TRUNCATED_TRAINING,
) -> list[str]:
    """Warnings for training rows whose feature windows reach back before the portfolio's
    first statements (``first_month``): a 12-month feature at an as-of 3 months into the
    history covers 3 months, so the model learns from truncated histories, and monitoring
    sees those features move as the windows fill. One message per part in ``parts`` (name:
    rows with ``as_of``) with such rows, naming each window length and its share of rows.
    """
    windows = window_lengths(feature_set)
    if first_month is None or not windows:
        return []
    messages = []
    for name, frame in parts.items():
        if len(frame) == 0:
            continue
        as_of = pd.to_datetime(frame["as_of"])
        covered = (as_of.dt.year - first_month.year) * 12 + as_of.dt.month - first_month.month + 1
        short = [
            (window, float((covered < window).mean()))
            for window in windows
            if (covered < window).any()
        ]
        if not short:
            continue
        longest = short[-1][0]
        complete_from = windows_complete_from(first_month, longest)
        shares = ", ".join(f"{window}-month windows {share:.0%}" for window, share in short)
        messages.append(
            f"feature windows not yet complete in the {name} ({shares} of "
            f"{len(frame)} rows): the statements start in {first_month:%Y-%m}, so at those "
            "as-of dates a window covers fewer months than its name says; "
            f"{consequence} ({longest}-month windows are complete from as-of {complete_from} on)"
        )
    return messages


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
    ``oot_auc.product.bnpl`` / ``oot_auc_scorecard.start_bucket.M2`` per slice, ``oot_psi``;
    LightGBM's margins ``oot_auc_gap_vs_scorecard`` overall and
    ``oot_auc_gap_vs_scorecard.start_bucket.M2`` per slice (AUC and Brier).
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
    for slice_col in comparison.slice_cols:
        for _, row in comparison.slice_gaps(slice_col, PRIMARY).iterrows():
            for metric in ("auc", "brier"):
                name = f"{prefix}_{metric}_gap_vs_{row['model']}.{slice_col}.{row['value']}"
                metrics[name] = float(row[f"{metric}_gap"])
    return {name: value for name, value in metrics.items() if np.isfinite(value)}
