"""Train the roll-to-default model, compare it with two baselines, log and register it in MLflow.

What happens, in order:

  1. the training set is built from the portfolio in --data (or read from --training-set):
     one row per delinquent account (M1-M3) and month-end as-of, labelled 1 when it reaches
     --default-dpd within --window-months;
  2. the as-of months are split in time, latest last: train | embargo | validation | embargo
     | out-of-time test (a short history gets a smaller split, and the job says how).
     Validation accounts are split in two: one part stops the boosting early, the other fits
     the calibrator. By default (--calibration cross_fit, training.calibration.method) it is
     Platt or isotonic, whichever has the lower cross-fitted Brier score on those accounts
     (always a map; Platt on a tie or below 1,000 rows). --calibration auto instead chooses
     none, Platt or isotonic out of time (each fitted on the earlier validation months and
     judged by ECE on the latest; the raw score stays unless a map beats it there by more than
     the noise); none, platt or isotonic force one. The chosen one is fitted on every
     validation month.
     The embargo drops the as-of months whose labels would not yet be complete when the next
     part begins;
  3. LightGBM (monotone where the feature registry declares a direction) is trained, with two
     baselines on the same split: the roll-rate Markov chain by product and bucket (today's
     forecast) and a WOE logistic scorecard;
  4. all are evaluated on the out-of-time months (AUC, Gini, KS, Brier, log loss, ECE and
     smooth ECE, lift, PSI against training scores, per product and per starting bucket, the
     Jeffreys test per risk grade of --policy) into an HTML report, with the verdict of the
     promotion gates that need no champion (what `rollrisk promote` will say);
  5. the same procedure is refit on the latest labelled months (trees on every month before
     them, calibrated on them): that deployed model is what is registered and scored;
  6. everything is logged to one MLflow run (both fits' provenance, the evaluation fit as an
     artifact); the deployed model is registered and gets the alias `challenger`.
     `rollrisk promote` decides whether it becomes `champion`.

Warnings (on stderr, in the report and in the run) say when the split was shrunk to fit a short
history and when feature windows reach back before the portfolio's first statements.

Rows the data contract rejects are counted by table and by account on stderr and written to
OUT/rejects.csv and OUT/rejects.json (logged with the report); above --max-reject-rate
(default 1%) of a table's rows or of the accounts the job stops. A portfolio of accounts and
statements alone trains: the features of an absent optional table are left missing, the job
says so, and the model records the tables it was trained with (`rollrisk score` refuses to
score it on fewer unless told --allow-missing-table).

Tracking store: MLFLOW_TRACKING_URI, else sqlite:///runs/mlflow.db (browse it with
`mlflow ui --backend-store-uri sqlite:///runs/mlflow.db`). Design notes: docs/models.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from rollrisk.arguments import (
    add_data_argument,
    add_training_data_arguments,
    load_config_argument,
    observation_spec,
    training_set_from_arguments,
)
from rollrisk.conf import DEFAULT_POLICY
from rollrisk.errors import UserError
from rollrisk.models.metrics import HEADLINE_METRICS
from rollrisk.models.promotion import PromotionDecision, data_shortfalls, decide_promotion
from rollrisk.models.training import (
    DEPLOYMENT_PARTS,
    LABEL,
    PRIMARY,
    SPLIT_PARTS,
    TrainingResult,
)
from rollrisk.models.training_config import TrainingConfig
from rollrisk.storage.config import RollriskConfig
from rollrisk.storage.tracking import TrainingRun


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_argument(parser)
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
        choices=("auto", "cross_fit", "none", "isotonic", "platt"),
        default=None,
        help="calibration method (config: training.calibration.method, cross_fit in "
        "conf/default.yaml): cross_fit takes Platt or isotonic by cross-fitted Brier; auto "
        "chooses none, Platt or isotonic out of time within the validation months; "
        "docs/models.md 'Choosing the calibration'",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="random seed (config: training.seed)"
    )
    parser.add_argument(
        "--tune",
        action="store_true",
        help="tune LightGBM parameters with Optuna (TPE seeded with --seed) on the early-stopping "
        "rows of validation, up to training.tuning.max_trials trials within "
        "training.tuning.time_budget_seconds",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="tuning time budget (config: training.tuning.time_budget_seconds)",
    )
    parser.add_argument(
        "--max-trials",
        type=int,
        default=None,
        metavar="N",
        help="tuning trial cap (config: training.tuning.max_trials)",
    )
    parser.add_argument(
        "--no-register", action="store_true", help="log the run but do not register the model"
    )
    parser.add_argument(
        "--policy",
        type=Path,
        default=DEFAULT_POLICY,
        help="policy YAML whose risk_bands are the risk grades of the calibration back-test "
        "(Jeffreys test per grade in the report)",
    )


def training_config(args: argparse.Namespace, config: RollriskConfig) -> TrainingConfig:
    """The config's ``training:`` section, overridden by the flags given."""
    return (
        config.training.with_overrides(
            model_name=args.model_name,
            experiment_name=args.experiment,
            structure=args.structure,
            seed=args.seed,
        )
        .with_section_overrides(
            "tuning", time_budget_seconds=args.time_budget, max_trials=args.max_trials
        )
        .with_section_overrides("calibration", method=args.calibration)
    )


def _progress(message: str) -> None:
    print(f"[train] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from rollrisk.api import train
    from rollrisk.arguments import check_output_argument, load_portfolio_argument
    from rollrisk.storage.registry import alias_version
    from rollrisk.storage.tracking import configure_tracking, fingerprint_files, log_training_run

    check_output_argument(args, folder=True)
    tracking = configure_tracking(create=True)  # a broken store fails now, not after training
    config = load_config_argument(args)
    training = training_config(args, config)
    spec = observation_spec(args, config)
    if not args.data.is_dir():
        raise UserError(f"--data {args.data} is not a folder (expected a portfolio folder)")

    # the rows the contract set aside, and their count by table and account, go in the report
    # folder (logged to MLflow with it); a stale list from an earlier run is removed first
    rejects = Path(args.out) / "rejects.csv"
    rejects.unlink(missing_ok=True)
    portfolio, accounting = load_portfolio_argument(args, "train", rejects, config)
    accounting.write(Path(args.out) / "rejects.json")
    data_fingerprint = fingerprint_files(args.data)
    training_set = training_set_from_arguments(args, portfolio, spec, data_fingerprint)
    _progress(
        f"training set: {len(training_set)} rows, {training_set['account_id'].nunique()} accounts"
    )
    result = train(
        training_set, portfolio, training, observation=spec, tune=args.tune, progress=_progress
    )
    grades = calibration_by_grade(result, args.policy)
    # the gates that need no champion; one that exists is compared by `rollrisk promote`
    champion = alias_version(training.model_name, config.promotion.to_alias)
    gates = decide_promotion(
        result.candidate_figures(),
        None,
        config.promotion,
        champion_not_judged=champion.version if champion is not None else None,
    )
    short = data_shortfalls(result.candidate_figures(), config.promotion)
    if short:
        _progress(
            "warning: small or thin training data: " + "; ".join(short) + "; `rollrisk promote` "
            "refuses a model evaluated on so little (promotion.min_* in the config)"
        )
    report = _write_report(result, args.out, args.data, data_fingerprint, grades, gates)
    logged = log_training_run(
        result,
        data=args.data,
        data_fingerprint=data_fingerprint,
        report_dir=report.parent,
        register=not args.no_register,
        calibration_by_grade=grades,
        population_dpd=(spec.min_dpd, spec.max_dpd),
    )
    # the report folder names the model it describes (its copy in MLflow is the run's own)
    identity = {
        "run_id": logged.run_id,
        "model_uri": logged.model_uri,
        "registered": logged.registered_uri,
        "tracking_uri": tracking.tracking_uri,
    }
    (report.parent / "run.json").write_text(json.dumps(identity, indent=2) + "\n")
    _print_summary(result, report, logged, grades, gates)
    return 0


def calibration_by_grade(result: TrainingResult, policy: Path) -> pd.DataFrame:
    """The Jeffreys test of the evaluation fit's out-of-time probabilities per risk grade (the
    policy's risk bands), and over all rows."""
    from rollrisk.models.risk_bands import risk_band
    from rollrisk.models.stats import jeffreys_test
    from rollrisk.strategies.policy import load_policy

    if not Path(policy).exists():  # a folder: load_policy says so
        raise UserError(f"--policy {policy}: file not found")
    bands = load_policy(policy).risk_bands
    scores = result.test_scores
    grades = [risk_band(p, bands) for p in scores[PRIMARY]]
    return jeffreys_test(scores[PRIMARY], scores[LABEL], grades, [name for name, _ in bands])


def _context(result: TrainingResult, data: Path, fingerprint: str) -> dict[str, str]:
    evaluated, deployed = result.evaluation_model, result.model
    evidence = evaluated.calibration_evidence_
    deployment = result.deployment_split
    deployed_months = deployment.describe()
    context = {
        "portfolio": str(data),
        "data fingerprint (sha256)": fingerprint[:16],
        "label": f"reaches {result.default_dpd}+ DPD within {result.window_months} months of the as-of",
        **{f"evaluation: {part}": value for part, value in result.split.describe().items()},
        "evaluation: rows train / early stopping / calibration / test": " / ".join(
            str(len(getattr(result.split, part))) for part in SPLIT_PARTS
        ),
        "evaluation: trees (early stopping)": ", ".join(
            f"{k}: {v}" for k, v in evaluated.best_iterations_.items()
        ),
        "evaluation: calibration": evidence.summary(),
        "deployed model (registered)": "the same procedure refit on the latest labelled months: "
        f"trees on {deployed_months['train as-of']}, early stopping and calibration "
        f"({deployed.calibration_evidence_.chosen}) on {deployed_months['validation as-of']}",
        "deployed model: calibration": deployed.calibration_evidence_.summary(),
        "deployed model: rows train / early stopping / calibration": " / ".join(
            str(len(getattr(deployment, part))) for part in DEPLOYMENT_PARTS
        ),
        "deployed model: trees (early stopping)": ", ".join(
            f"{k}: {v}" for k, v in deployed.best_iterations_.items()
        ),
        "model structure": result.training.structure,
        "beats both baselines": "yes: on out-of-time AUC and Brier"
        if result.beats_baselines()
        else "no: not on both out-of-time AUC and Brier",
    }
    for number, warning in enumerate(result.warnings, start=1):
        context[f"warning {number}"] = warning
    return context


def _write_report(
    result: TrainingResult,
    out: Path,
    data: Path,
    fingerprint: str,
    grades: pd.DataFrame,
    gates: PromotionDecision,
) -> Path:
    from rollrisk.reports.evaluation import write_evaluation_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.model.feature_importance().to_csv(out / "feature_importance.csv", index=False)
    result.comparison.by_slice.to_csv(out / "metrics_by_slice.csv", index=False)
    result.gaps().to_csv(out / "gaps_vs_baselines.csv", index=False)
    grades.to_csv(out / "calibration_by_grade.csv", index=False)
    return write_evaluation_report(
        result.comparison,
        out,
        title="Roll-to-default model: LightGBM against the roll-rate chain and the WOE scorecard",
        context=_context(result, data, fingerprint),
        smooth_ece=result.smooth_ece(),
        calibration_by_grade=grades,
        gates=_gate_lines(gates),
    )


def _gate_lines(gates: PromotionDecision) -> list[str]:
    """The verdict of the promotion gates that need no champion, as ``rollrisk promote``
    will print them."""
    verdict = (
        "would pass every gate that needs no champion"
        if gates.promote
        else "would be REFUSED by `rollrisk promote`"
    )
    return [f"This run {verdict}:", *gates.reasons]


def _print_summary(
    result: TrainingResult,
    report: Path,
    logged: TrainingRun,
    grades: pd.DataFrame,
    gates: PromotionDecision,
) -> None:
    overall = result.comparison.overall
    print(
        "\nout-of-time test of the evaluation fit ("
        + result.split.describe()["out-of-time test as-of"]
        + "):"
    )
    print(overall[list(HEADLINE_METRICS)].round(4).to_string())
    gaps = result.gaps().set_index("model")[["auc_gap", "brier_gap", "ece_gap"]]
    print("\nLightGBM minus baseline (AUC gap > 0 and Brier gap < 0: LightGBM is better):")
    print(gaps.round(4).to_string())
    verdict = "beats" if result.beats_baselines() else "does NOT beat"
    print(f"\nLightGBM {verdict} both baselines on out-of-time AUC and Brier score.")
    smooth = result.smooth_ece()[PRIMARY]
    evidence = result.evaluation_model.calibration_evidence_
    print(
        f"calibration: {evidence.chosen}; out-of-time ECE "
        f"{overall.loc[PRIMARY, 'ece']:.4f} (binned), {smooth:.4f} (smooth)"
    )
    print(f"  how it was chosen: {evidence.rule}")
    print("\ncalibration per risk grade (Jeffreys test, out of time):")
    print(grades.round(4).to_string(index=False))
    print()
    verdict, *reasons = _gate_lines(gates)
    print(verdict)
    for reason in reasons:
        print(f"  {reason}")
    deployed_months = result.deployment_split.describe()
    print(
        f"\ndeployed model: refit on {deployed_months['train as-of']}, calibrated "
        f"({result.model.calibration_evidence_.chosen}) on {deployed_months['validation as-of']}"
    )
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(f"MLflow run: {logged.run_id}")
    if logged.registered_uri is not None:
        print(
            f"registered: {logged.registered_uri} (alias challenger); promote with `rollrisk promote`"
        )
    print(f"report: {report.resolve()}")
