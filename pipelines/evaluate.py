"""Evaluate any registered roll model on any portfolio and write a readable report.

  rollrisk evaluate --model models:/rollrisk-roll-to-default@champion --data runs/demo/portfolio

The training set is built from --data with the observation settings the model was trained with
(default DPD, window), unless flags override them; the model scores every row and is measured:
AUC, Gini, KS, Brier, log loss, expected calibration error with a reliability plot, a lift /
gains table by decile, and the PSI of its scores against its own training scores (fixed
training bins), overall and per product and starting bucket. Only labelled rows are scored,
so the latest as-of months (whose outcome window is still open) are left out. Use --as-of-from
to evaluate a later period only.

Writes report.html (plots embedded), report.md and the PNG plots into --out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from rollrisk.errors import UserError
from rollrisk.storage.config import load_config

LABEL = "rolled_to_default"
SLICES = ("product", "start_bucket")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="MLflow model URI, e.g. models:/rollrisk-roll-to-default@champion or runs:/<id>/model",
    )
    parser.add_argument("--data", type=Path, required=True, help="portfolio folder to evaluate on")
    from rollrisk.pipelines.train import add_training_data_arguments

    add_training_data_arguments(parser)
    parser.add_argument(
        "--as-of-from",
        type=str,
        default=None,
        help="evaluate only as-of dates on or after this date (YYYY-MM-DD)",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/evaluate"), help="report folder")


def run(args: argparse.Namespace) -> int:
    import mlflow

    from rollrisk.pipelines.train import load_training_set, observation_spec
    from rollrisk.reports.evaluation import write_evaluation_report
    from rollrisk.storage.loader import load_portfolio
    from rollrisk.storage.tracking import configure_tracking, fingerprint_files

    config = load_config(args.config)
    configure_tracking()
    try:
        model = mlflow.pyfunc.load_model(args.model)
    except Exception as error:  # noqa: BLE001 - MLflow raises several types for a bad URI
        raise UserError(f"cannot load model {args.model!r}: {error}") from error
    metadata = model.metadata.metadata or {}
    # The model's own label definition is the default, so it is judged on what it predicts.
    for name in ("default_dpd", "window_months"):
        if getattr(args, name, None) is None and f"observation_{name}" in metadata:
            setattr(args, name, int(metadata[f"observation_{name}"]))
    if not args.data.is_dir():
        raise UserError(f"--data {args.data} is not a folder (expected a portfolio folder)")
    print(f"[evaluate] loading portfolio {args.data}", file=sys.stderr, flush=True)
    portfolio = load_portfolio(args.data)
    spec = observation_spec(args, config)
    frame = load_training_set(args, portfolio, config)
    if args.as_of_from:
        try:
            start = pd.Timestamp(args.as_of_from)
        except ValueError as error:
            raise UserError(
                f"--as-of-from {args.as_of_from!r} is not a date (YYYY-MM-DD)"
            ) from error
        frame = frame[pd.to_datetime(frame["as_of"]) >= start]
    frame = frame[frame[LABEL].notna()].reset_index(drop=True)
    if frame.empty:
        raise UserError(f"no labelled rows to evaluate in {args.data} (check --as-of-from)")
    print(f"[evaluate] scoring {len(frame)} rows", file=sys.stderr, flush=True)
    scored = frame[["account_id", "as_of", *SLICES, LABEL]].copy()
    schema = model.metadata.get_input_schema()
    inputs = frame[schema.input_names()] if schema is not None else frame
    scored["roll_model"] = np.asarray(model.predict(inputs), dtype=np.float64)

    from rollrisk.models.evaluation import evaluate_models

    python_model = model.unwrap_python_model()
    reference = getattr(python_model, "reference_scores_", None)
    comparison = evaluate_models(
        scored,
        LABEL,
        {"roll_model": "roll_model"},
        slice_cols=SLICES,
        reference_probs={"roll_model": reference} if reference is not None else None,
    )
    as_of = pd.to_datetime(frame["as_of"]).dt.date
    context = {
        "model": args.model,
        "feature set": f"{metadata.get('feature_set', '?')} v{metadata.get('feature_set_version', '?')}",
        "portfolio": str(args.data),
        "data fingerprint (sha256)": fingerprint_files(args.data)[:16],
        "as-of dates": f"{as_of.min()}..{as_of.max()} ({as_of.nunique()} months, {len(frame)} rows)",
        "label": f"reaches {spec.default_dpd}+ DPD within {spec.window_months} months",
        "PSI reference": "the model's training scores" if reference is not None else "none logged",
    }
    report = write_evaluation_report(
        comparison, args.out, title=f"Evaluation of {args.model}", context=context
    )
    print(
        comparison.overall[["auc", "gini", "ks", "brier", "log_loss", "ece"]].round(4).to_string()
    )
    if len(comparison.stability):
        print(comparison.stability.round(4).to_string(index=False))
    print(f"report: {report.resolve()}")
    return 0
