"""Train the roll-to-default model, compare it with two baselines, log and register it in MLflow.

What happens, in order:

  1. the training set is built from the portfolio in --data (or read from --training-set):
     one row per delinquent account (M1-M3) and month-end as-of, labelled 1 when it reaches
     --default-dpd within --window-months;
  2. the as-of months are split in time, latest last: train | validation | out-of-time test.
     Validation accounts are split in two: one part stops the boosting early, the other fits
     the calibrator (isotonic or Platt, chosen by cross-fitted Brier score). Training rows
     whose outcome window reaches into the test months are dropped (their labels would not be
     known when a model for those months is trained);
  3. LightGBM (monotone where the feature registry declares a direction) is trained, with two
     baselines on the same split: the roll-rate Markov chain by product and bucket (today's
     forecast) and a WOE logistic scorecard;
  4. all are evaluated on the out-of-time months (AUC, Gini, KS, Brier, log loss, ECE, lift,
     PSI against training scores, per product and per starting bucket) into an HTML report;
  5. everything is logged to one MLflow run; the model is registered and gets the alias
     `challenger`. `rollrisk promote` decides whether it becomes `champion`.

Tracking store: MLFLOW_TRACKING_URI, else sqlite:///runs/mlflow.db (browse it with
`mlflow ui --backend-store-uri sqlite:///runs/mlflow.db`). Design notes: docs/models.md.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rollrisk.errors import UserError
from rollrisk.features.observations import ObservationSpec
from rollrisk.features.registry import FeatureSet
from rollrisk.models.baselines import RollRateChainModel, WoeScorecardModel
from rollrisk.models.evaluation import ModelComparison, evaluate_models
from rollrisk.models.roll_model import RollModel
from rollrisk.storage.config import RollriskConfig, TrainingConfig, load_config

LABEL = "rolled_to_default"
SLICES = ("product", "start_bucket")
PRIMARY = "lightgbm"
BASELINES = ("roll_rate_chain", "scorecard")
REPORTED_METRICS = ("auc", "gini", "ks", "brier", "log_loss", "ece")


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", type=Path, required=True, help="portfolio folder (see docs/data-contract.md)"
    )
    add_training_data_arguments(parser)
    parser.add_argument(
        "--out", type=Path, default=Path("runs/train"), help="folder for the report"
    )
    parser.add_argument(
        "--model-name",
        default=None,
        help="MLflow registered model name (config: training.model_name)",
    )
    parser.add_argument(
        "--experiment", default=None, help="MLflow experiment (config: training.experiment_name)"
    )
    parser.add_argument(
        "--structure",
        choices=("single", "per_bucket"),
        default=None,
        help="one model with the bucket as a feature, or one model per bucket (config: training.structure)",
    )
    parser.add_argument(
        "--calibration",
        choices=("auto", "isotonic", "platt"),
        default=None,
        help="calibration method; auto picks by cross-fitted Brier score (config: training.calibration.method)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="random seed (config: training.seed)"
    )
    parser.add_argument(
        "--tune",
        action="store_true",
        help="random search of LightGBM parameters on validation data, within training.tuning.time_budget_seconds",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="tuning time budget (config: training.tuning.time_budget_seconds)",
    )
    parser.add_argument(
        "--no-register", action="store_true", help="log the run but do not register the model"
    )


def add_training_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--training-set`` and the observation flags of `rollrisk
    build-training-set`: how `train` and `evaluate` get their labelled observations."""
    from rollrisk.pipelines.build_training_set import add_observation_arguments

    parser.add_argument(
        "--config", type=Path, default=None, help="YAML config (default: conf/default.yaml)"
    )
    parser.add_argument(
        "--training-set",
        type=Path,
        default=None,
        help="a training set already built by `rollrisk build-training-set` (Parquet); "
        "default: build it from --data",
    )
    add_observation_arguments(parser)


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
    from rollrisk.features.splits import plan_split_by_as_of

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
    """What a training run produced, before anything is logged."""

    model: RollModel
    chain: RollRateChainModel
    scorecard: WoeScorecardModel
    split: SplitFrames
    comparison: ModelComparison
    test_scores: pd.DataFrame  # test rows: account_id, as_of, slices, label, one column per model
    train_scores: Mapping[str, np.ndarray]
    tuning_trials: list[dict[str, Any]] = field(default_factory=list)

    def gaps(self) -> pd.DataFrame:
        return self.comparison.gaps(PRIMARY)

    def beats_baselines(self) -> bool:
        """True when LightGBM has a higher out-of-time AUC and a lower Brier than each baseline."""
        gaps = self.gaps().set_index("model")
        return all(gaps.loc[b, "auc_gap"] > 0 and gaps.loc[b, "brier_gap"] < 0 for b in BASELINES)


def _model_from_config(
    feature_set: FeatureSet, training: TrainingConfig, **overrides: Any
) -> RollModel:
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


def _fit(
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
    from rollrisk.models.metrics import log_loss

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
        model = _model_from_config(feature_set, training, **overrides)
        # Early-stopping rows double as the tuning score; calibration rows stay untouched.
        model = _fit(model, split, calibration=split.early_stopping)
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
    progress: Callable[[str], None] = lambda message: None,
) -> TrainingResult:
    """Split, train LightGBM and both baselines, and compare them on the out-of-time months.

    ``training_set`` is a pandas training-set frame (``account_id, as_of, product,
    start_bucket, rolled_to_default`` and the feature columns); ``statements`` / ``accounts``
    are the portfolio tables the roll-rate chain is estimated from (polars or pandas).
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
    for part in ("train", "early_stopping", "calibration", "test"):
        labels = getattr(split, part)[LABEL]
        if labels.nunique() < 2:
            raise UserError(
                f"the {part} part of the split has {len(labels)} rows and only one outcome; simulate more accounts or months"
            )

    trials: list[dict[str, Any]] = []
    overrides: dict[str, Any] = {}
    if tune:
        progress("tuning LightGBM on validation data")
        overrides, trials = tune_lightgbm(feature_set, training, split)
    progress("training LightGBM")
    model = _fit(_model_from_config(feature_set, training, **overrides), split)

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
        model, chain, scorecard, split, comparison, test_scores, train_scores, trials
    )


# --------------------------------------------------------------------------- metrics for MLflow


def comparison_metrics(comparison: ModelComparison, prefix: str = "oot") -> dict[str, float]:
    """Flat MLflow metrics: ``oot_auc`` for LightGBM, ``oot_auc_scorecard`` for a baseline,
    ``oot_auc.product.bnpl`` / ``oot_auc_scorecard.start_bucket.M2`` per slice, ``oot_psi``.
    """
    metrics: dict[str, float] = {}

    def key(metric: str, model: str) -> str:
        return f"{prefix}_{metric}" if model == PRIMARY else f"{prefix}_{metric}_{model}"

    for model, row in comparison.overall.iterrows():
        for metric in (*REPORTED_METRICS, "base_rate", "mean_predicted", "n"):
            metrics[key(metric, str(model))] = float(row[metric])
    for _, row in comparison.by_slice.iterrows():
        for metric in REPORTED_METRICS:
            metrics[f"{key(metric, str(row['model']))}.{row['slice']}.{row['value']}"] = float(
                row[metric]
            )
    for _, row in comparison.stability.iterrows():
        metrics[key("psi", str(row["model"]))] = float(row["psi"])
    for _, row in comparison.gaps(PRIMARY).iterrows():
        for metric in ("auc", "brier", "ece"):
            metrics[f"{prefix}_{metric}_gap_vs_{row['model']}"] = float(row[f"{metric}_gap"])
    return {name: value for name, value in metrics.items() if np.isfinite(value)}


# --------------------------------------------------------------------------- job


def observation_spec(args: argparse.Namespace, config: RollriskConfig) -> ObservationSpec:
    """The observation settings: config ``observation:`` section, overridden by flags."""
    from rollrisk.pipelines.build_training_set import observation_spec_from_args

    return observation_spec_from_args(args, config)


def load_training_set(
    args: argparse.Namespace, portfolio: Any, config: RollriskConfig
) -> pd.DataFrame:
    """The training set as a pandas frame: read from --training-set, else built from --data
    by the same code as `rollrisk build-training-set` (validated against its schema)."""
    if getattr(args, "training_set", None) is not None:
        if not args.training_set.exists():
            raise UserError(f"training set {args.training_set} does not exist")
        import polars as pl

        from rollrisk.features.training_set import validate_training_set

        return validate_training_set(pl.read_parquet(args.training_set)).to_pandas()
    from rollrisk.pipelines.build_training_set import training_set_from_args

    return training_set_from_args(args, portfolio=portfolio, config=config).to_pandas()


def _progress(message: str) -> None:
    print(f"[train] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from rollrisk.features.registry import FEATURE_SET
    from rollrisk.storage.loader import load_portfolio
    from rollrisk.storage.tracking import fingerprint_files

    config = load_config(args.config)
    training = config.training.with_overrides(
        model_name=args.model_name,
        experiment_name=args.experiment,
        structure=args.structure,
        seed=args.seed,
    )
    if args.time_budget is not None:
        training = training.model_validate(
            {
                **training.model_dump(),
                "tuning": {**training.tuning.model_dump(), "time_budget_seconds": args.time_budget},
            }
        )
    if args.calibration is not None:
        training = training.model_validate(
            {
                **training.model_dump(),
                "calibration": {**training.calibration.model_dump(), "method": args.calibration},
            }
        )
    spec = observation_spec(args, config)
    observation = {"default_dpd": spec.default_dpd, "window_months": spec.window_months}
    if not args.data.is_dir():
        raise UserError(f"--data {args.data} is not a folder (expected a portfolio folder)")

    _progress(f"loading portfolio {args.data}")
    portfolio = load_portfolio(args.data)
    training_set = load_training_set(args, portfolio, config)
    _progress(
        f"training set: {len(training_set)} rows, {training_set['account_id'].nunique()} accounts"
    )
    result = train_roll_model(
        training_set,
        portfolio.statements,
        portfolio.accounts,
        FEATURE_SET,
        training,
        tune=args.tune,
        progress=_progress,
        **observation,
    )
    data_fingerprint = fingerprint_files(args.data)
    report = _write_report(result, args, training, observation, data_fingerprint)
    run_id, version = log_training_run(
        result,
        training,
        observation,
        FEATURE_SET,
        report.parent,
        args.data,
        data_fingerprint,
        register=not args.no_register,
    )
    _print_summary(result, report, run_id, training, version)
    return 0


def _context(
    result: TrainingResult,
    data: Path,
    training: TrainingConfig,
    observation: Mapping[str, int],
    fingerprint: str,
) -> dict[str, str]:
    evidence = result.model.calibration_evidence_
    context = {
        "portfolio": str(data),
        "data fingerprint (sha256)": fingerprint[:16],
        "label": f"reaches {observation['default_dpd']}+ DPD within {observation['window_months']} months of the as-of",
        **result.split.describe(),
        "rows train / early stopping / calibration / test": " / ".join(
            str(len(getattr(result.split, part)))
            for part in ("train", "early_stopping", "calibration", "test")
        ),
        "model structure": training.structure,
        "trees (early stopping)": ", ".join(
            f"{k}: {v}" for k, v in result.model.best_iterations_.items()
        ),
        "calibration": f"{evidence.chosen} (cross-fitted Brier: "
        + ", ".join(f"{m} {s.brier:.5f}" for m, s in evidence.by_method.items())
        + f"; uncalibrated {evidence.uncalibrated.brier:.5f})",
        "ships": "yes: beats both baselines on out-of-time AUC and Brier"
        if result.beats_baselines()
        else "no: does not beat both baselines on out-of-time AUC and Brier",
    }
    return context


def _write_report(
    result: TrainingResult,
    args: argparse.Namespace,
    training: TrainingConfig,
    observation: Mapping[str, int],
    fingerprint: str,
) -> Path:
    from rollrisk.reports.evaluation import write_evaluation_report

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result.model.feature_importance().to_csv(out / "feature_importance.csv", index=False)
    result.comparison.by_slice.to_csv(out / "metrics_by_slice.csv", index=False)
    result.gaps().to_csv(out / "gaps_vs_baselines.csv", index=False)
    return write_evaluation_report(
        result.comparison,
        out,
        title="Roll-to-default model: LightGBM against the roll-rate chain and the WOE scorecard",
        context=_context(result, args.data, training, observation, fingerprint),
    )


def log_training_run(
    result: TrainingResult,
    training: TrainingConfig,
    observation: Mapping[str, int],
    feature_set: FeatureSet,
    report_dir: Path,
    data: Path,
    data_fingerprint: str,
    register: bool = True,
) -> tuple[str, str | None]:
    """Log one MLflow run (params, metrics, artifacts, model); register it as challenger.

    Returns (run id, registered version or None).
    """
    import mlflow
    from mlflow.models import infer_signature

    from rollrisk.models.pyfunc import (
        MODEL_ARTIFACT,
        REFERENCE_FEATURES_ARTIFACT,
        REFERENCE_SCORES_ARTIFACT,
        RollModelPyfunc,
        as_signature_frame,
    )
    from rollrisk.storage.tracking import (
        configure_tracking,
        ensure_experiment,
        git_commit,
        library_versions,
    )

    setup = configure_tracking()
    experiment_id = ensure_experiment(training.experiment_name, setup)
    model = result.model
    evidence = model.calibration_evidence_
    with (
        mlflow.start_run(experiment_id=experiment_id) as active,
        tempfile.TemporaryDirectory() as scratch,
    ):
        run_id = active.info.run_id
        mlflow.set_tags(
            {
                "feature_set": feature_set.name,
                "feature_set_version": feature_set.version,
                "data_fingerprint": data_fingerprint,
                "data_path": str(data),
                "git_commit": git_commit(),
                "model_structure": training.structure,
                "calibration_method": evidence.chosen,
                "ships": str(result.beats_baselines()).lower(),
                **{f"version.{name}": version for name, version in library_versions().items()},
            }
        )
        params = {
            **{f"lightgbm.{k}": v for k, v in model.lightgbm_params().items()},
            **{f"best_iteration.{k}": v for k, v in model.best_iterations_.items()},
            "structure": training.structure,
            "seed": training.seed,
            "calibration.requested": training.calibration.method,
            "calibration.chosen": evidence.chosen,
            "calibration.holdout_fraction": training.calibration.holdout_fraction,
            "split.validation_months": training.split.validation_months,
            "split.test_months": training.split.test_months,
            **{f"observation.{k}": v for k, v in observation.items()},
            "feature_set": f"{feature_set.name}@{feature_set.version}",
            "monotone_constraints": json.dumps(
                dict(zip(model.feature_columns_, model.monotone_constraints_, strict=True))
            ),
        }
        for part, months in result.split.months.items():
            params[f"split.{part.split(' ')[0]}_as_of"] = (
                f"{months[0]}..{months[-1]}" if months else "none"
            )
        mlflow.log_params(params)
        mlflow.log_metrics(comparison_metrics(result.comparison))
        mlflow.log_metrics(evidence.as_metrics())
        for part in ("train", "early_stopping", "calibration", "test"):
            mlflow.log_metric(f"rows_{part}", len(getattr(result.split, part)))
        mlflow.log_artifacts(str(report_dir), artifact_path="report")

        scratch_dir = Path(scratch)
        (scratch_dir / "calibration_evidence.json").write_text(
            json.dumps(
                {
                    "chosen": evidence.chosen,
                    "rows": evidence.n_rows,
                    "folds": evidence.n_folds,
                    "uncalibrated": vars(evidence.uncalibrated),
                    **{m: vars(s) for m, s in evidence.by_method.items()},
                },
                indent=2,
            )
        )
        mlflow.log_artifact(str(scratch_dir / "calibration_evidence.json"))
        if result.tuning_trials:
            pd.DataFrame(result.tuning_trials).to_csv(
                scratch_dir / "tuning_trials.csv", index=False
            )
            mlflow.log_artifact(str(scratch_dir / "tuning_trials.csv"))
        # The out-of-time rows, so `rollrisk promote` can score the champion on the same rows.
        test_columns = ["account_id", "as_of", LABEL, *model.input_columns]
        oot = result.split.test[list(dict.fromkeys(test_columns))].copy()
        oot["as_of"] = pd.to_datetime(oot["as_of"])
        oot.to_parquet(scratch_dir / "oot_test.parquet", index=False)
        mlflow.log_artifact(str(scratch_dir / "oot_test.parquet"), artifact_path="evaluation")

        model_json = scratch_dir / "roll_model.json"
        model_json.write_text(json.dumps(model.to_dict()), encoding="utf-8")
        reference_json = scratch_dir / "reference_scores.json"
        reference_json.write_text(
            json.dumps(result.train_scores[PRIMARY].round(6).tolist()), encoding="utf-8"
        )
        # A fixed-seed sample of the training rows' features: `rollrisk monitor` bins today's
        # features on it (CSI), as it bins today's scores on reference_scores (PSI).
        reference_features = scratch_dir / "reference_features.parquet"
        reference_sample(result.split.train, feature_set, training.seed).to_parquet(
            reference_features, index=False
        )
        example = as_signature_frame(result.split.test.head(5), model.input_columns)
        signature = _all_inputs_required(infer_signature(example, model.predict_proba(example)))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=RollModelPyfunc(),
            artifacts={
                MODEL_ARTIFACT: str(model_json),
                REFERENCE_SCORES_ARTIFACT: str(reference_json),
                REFERENCE_FEATURES_ARTIFACT: str(reference_features),
            },
            signature=signature,
            input_example=example,
            # Declared rather than inferred: inference spawns a subprocess that re-imports
            # everything (seconds per run). rollrisk itself must be installed where it loads.
            pip_requirements=model_requirements(),
            metadata={
                "feature_set": feature_set.name,
                "feature_set_version": feature_set.version,
                **{f"observation_{k}": v for k, v in observation.items()},
            },
        )
        version = None
        if register:
            registered = mlflow.register_model(info.model_uri, training.model_name)
            version = str(registered.version)
            mlflow.MlflowClient().set_registered_model_alias(
                training.model_name, "challenger", version
            )
    return run_id, version


REFERENCE_SAMPLE_ROWS = 50_000


def reference_sample(train: pd.DataFrame, feature_set: FeatureSet, seed: int) -> pd.DataFrame:
    """Up to :data:`REFERENCE_SAMPLE_ROWS` training rows (fixed seed): the slices and features."""
    columns = list(dict.fromkeys([*SLICES, *feature_set.names]))
    rows = train[columns]
    if len(rows) > REFERENCE_SAMPLE_ROWS:
        rows = rows.sample(n=REFERENCE_SAMPLE_ROWS, random_state=seed)
    return rows.reset_index(drop=True)


def _all_inputs_required(signature: Any) -> Any:
    """The inferred signature with every input column required: inference marks a column
    optional when the example rows happen to be all missing there, but the model needs every
    column (a missing *value* is NaN in a double column and is fine)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    inputs = Schema(
        [ColSpec(column.type, column.name, required=True) for column in signature.inputs.inputs]
    )
    return ModelSignature(inputs=inputs, outputs=signature.outputs)


def model_requirements() -> list[str]:
    """Pinned third-party requirements of the logged model (the libraries predict imports)."""
    from importlib import metadata

    names = (
        "mlflow",
        "cloudpickle",
        "lightgbm",
        "numpy",
        "pandas",
        "polars",
        "pandera",
        "scikit-learn",
        "pyarrow",
    )
    return [f"{name}=={metadata.version(name)}" for name in names]


def _print_summary(
    result: TrainingResult, report: Path, run_id: str, training: TrainingConfig, version: str | None
) -> None:
    overall = result.comparison.overall
    print("\nout-of-time test (" + result.split.describe()["out-of-time test as-of"] + "):")
    print(overall[["auc", "gini", "ks", "brier", "log_loss", "ece"]].round(4).to_string())
    gaps = result.gaps().set_index("model")[["auc_gap", "brier_gap", "ece_gap"]]
    print("\nLightGBM minus baseline (AUC gap > 0 and Brier gap < 0: LightGBM is better):")
    print(gaps.round(4).to_string())
    verdict = "beats" if result.beats_baselines() else "does NOT beat"
    print(f"\nLightGBM {verdict} both baselines on out-of-time AUC and Brier score.")
    print(f"calibration: {result.model.calibration_evidence_.chosen}")
    print(f"MLflow run: {run_id}")
    if version is not None:
        print(
            f"registered: models:/{training.model_name}/{version} (alias challenger); promote with `rollrisk promote`"
        )
    print(f"report: {report.resolve()}")
