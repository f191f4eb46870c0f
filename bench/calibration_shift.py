"""Calibration under a moving roll rate: the evidence behind the deployment refit (docs/models.md).

For one training set (``rollrisk build-training-set`` output), with the shipped training
settings, it prints Markdown rows of out-of-time calibration for:

* the **procedure as the gates judge it** (evaluation fit, out-of-time test months): the split
  before issue 15 (embargo = the outcome window) and after (embargo = window - 1, so the
  calibration months are the latest whose labels are complete when the test months begin, as
  they are for the deployed model), calibrated and uncalibrated;
* an **EM prior-shift** adjustment (Saerens, Latinne and Decaestecker, 2002) of the calibrated
  probabilities, its prior estimated on the unlabelled features of the first test month, of
  each test month, or of the embargo months (known before the test begins): the alternative
  to recalibrating on the latest labelled months;
* two sharper recalibrations on the latest labelled month alone (the last validation month):
  the probabilities moved to its roll rate, and Platt refitted on its calibration rows;
* with ``--data-end``, the **deployed model truly out of time**: the training set is cut to
  what an extract ending at that month-end labels (as-of <= data end - window), the model
  deployed then (before: the evaluation fit, trained on the oldest months; after: the refit on
  every labelled month, calibrated on the latest) scores the as-of months from the data end on,
  whose labels the longer simulation holds; and the refit with EM on each scored month.

    .venv/bin/rollrisk simulate --seed 7 --accounts 60000 --months 30 --out runs/q7
    .venv/bin/rollrisk build-training-set --data runs/q7 --out runs/q7.parquet
    .venv/bin/python bench/calibration_shift.py --training-set runs/q7.parquet \\
        --data-end 2025-12-31 --label "seed 7"
"""

from __future__ import annotations

import argparse
from datetime import date

import numpy as np
import pandas as pd

from rollrisk.features.registry import FEATURE_SET
from rollrisk.models.calibration import em_prior, make_calibrator, shift_prior
from rollrisk.models.metrics import (
    brier_score,
    expected_calibration_error,
    roc_auc,
    smooth_calibration_error,
)
from rollrisk.models.roll_model import RollModel
from rollrisk.models.training import (
    LABEL,
    deployment_split,
    embargo_months,
    fit_on_split,
    model_from_config,
    split_training_set,
)
from rollrisk.storage.config import load_config

WINDOW_MONTHS = 3  # the shipped observation window (conf/default.yaml)


def latest_month_rows(
    model: RollModel,
    split: object,
    frame: pd.DataFrame,
    labels: np.ndarray,
    calibrated: np.ndarray,
    prior: float,
) -> list[dict[str, object]]:
    """Variants that use only what is known when the test months begin: the latest labelled
    validation month (its labels) and the embargo months (their features, not their labels)."""
    test = split.test
    latest = split.months["validation"][-1]
    calibration_as_of = pd.to_datetime(split.calibration["as_of"]).dt.date
    last = split.calibration[calibration_as_of == latest]
    last_rate = float(last[LABEL].mean())
    rows = [
        figures(
            f"after: prior moved to the latest labelled month's rate ({latest:%Y-%m}, {last_rate:.3f})",
            labels,
            shift_prior(calibrated, prior, last_rate),
        )
    ]
    platt = make_calibrator("platt").fit(model.predict_raw(last), last[LABEL].to_numpy())
    rows.append(
        figures(
            f"after: Platt refitted on the latest labelled month only ({latest:%Y-%m})",
            labels,
            platt.predict(model.predict_raw(test)),
        )
    )
    embargo = frame[pd.to_datetime(frame["as_of"]).dt.date.isin(split.months["embargo (dropped)"])]
    embargo = embargo[pd.to_datetime(embargo["as_of"]) > pd.Timestamp(latest)]
    if len(embargo):
        q = em_prior(model.predict_proba(embargo), prior)
        rows.append(
            figures(
                f"after: + EM prior shift, unlabelled embargo months (q={q:.3f})",
                labels,
                shift_prior(calibrated, prior, q),
            )
        )
    return rows


def figures(name: str, labels: np.ndarray, probability: np.ndarray) -> dict[str, object]:
    return {
        "what": name,
        "rows": len(labels),
        "rate": labels.mean(),
        "mean predicted": probability.mean(),
        "ECE": expected_calibration_error(labels, probability),
        "smooth ECE": smooth_calibration_error(labels, probability),
        "Brier": brier_score(labels, probability),
        "AUC": roc_auc(labels, probability),
    }


def fitted(frame: pd.DataFrame, embargo: int) -> tuple[RollModel, object]:
    training = load_config().training
    split = split_training_set(
        frame,
        validation_months=training.split.validation_months,
        test_months=training.split.test_months,
        embargo_months=embargo,
        calibration_fraction=training.calibration.holdout_fraction,
    )
    return fit_on_split(model_from_config(FEATURE_SET, training), split), split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--training-set", required=True)
    parser.add_argument("--data-end", type=date.fromisoformat, default=None)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    training = load_config().training
    frame = pd.read_parquet(args.training_set)
    as_of = pd.to_datetime(frame["as_of"])
    later = None
    if args.data_end is not None:
        last_labelled = pd.Timestamp(args.data_end) - pd.offsets.MonthEnd(WINDOW_MONTHS)
        later = frame[as_of > pd.Timestamp(args.data_end) - pd.offsets.MonthEnd(1)]
        later = later[
            pd.to_datetime(later["as_of"]) <= pd.Timestamp(args.data_end) + pd.offsets.MonthEnd(2)
        ]
        frame = frame[as_of <= last_labelled]
    rows = []
    old_model, old_split = fitted(frame, embargo=WINDOW_MONTHS)
    new_embargo = embargo_months(training, WINDOW_MONTHS)
    new_model, new_split = fitted(frame, embargo=new_embargo)
    for tag, model, split in (("before", old_model, old_split), ("after", new_model, new_split)):
        test = split.test
        labels = test[LABEL].to_numpy()
        calibrated = model.predict_proba(test)
        span = f"{split.months['validation'][0]:%Y-%m}..{split.months['validation'][-1]:%Y-%m}"
        chosen = model.calibration_evidence_.chosen  # the calibration `auto` chose
        rows.append(
            figures(f"{tag}: procedure, calibrated ({chosen}) on {span}", labels, calibrated)
        )
        rows.append(
            figures(
                f"{tag}: procedure, uncalibrated",
                labels,
                np.clip(model.predict_raw(test), 1e-6, 1 - 1e-6),
            )
        )
        if tag == "after":
            prior = float(split.calibration[LABEL].mean())
            months = sorted(pd.to_datetime(test["as_of"]).unique())
            first = (pd.to_datetime(test["as_of"]) == months[0]).to_numpy()
            q = em_prior(calibrated[first], prior)
            rows.append(
                figures(
                    f"after: + EM prior shift, first test month (q={q:.3f})",
                    labels,
                    shift_prior(calibrated, prior, q),
                )
            )
            each = np.empty_like(calibrated)
            for month in months:
                mask = (pd.to_datetime(test["as_of"]) == month).to_numpy()
                each[mask] = shift_prior(calibrated[mask], prior, em_prior(calibrated[mask], prior))
            rows.append(figures("after: + EM prior shift, each test month", labels, each))
            rows.extend(latest_month_rows(model, split, frame, labels, calibrated, prior))
    if later is not None and len(later):
        labels = later[LABEL].to_numpy()
        span = f"{pd.to_datetime(later['as_of']).min():%Y-%m}..{pd.to_datetime(later['as_of']).max():%Y-%m}"
        rows.append(
            figures(
                f"before: deployed (evaluation fit) on {span}",
                labels,
                old_model.predict_proba(later),
            )
        )
        deployment = deployment_split(frame, new_split, training.calibration.holdout_fraction)
        deployed = fit_on_split(model_from_config(FEATURE_SET, training), deployment)
        rows.append(
            figures(
                f"after: deployed (refit, {deployed.calibration_evidence_.chosen}) on {span}",
                labels,
                deployed.predict_proba(later),
            )
        )
        prior = float(deployment.calibration[LABEL].mean())
        scored = deployed.predict_proba(later)
        each = np.empty_like(scored)
        later_as_of = pd.to_datetime(later["as_of"]).to_numpy()
        for month in np.unique(later_as_of):
            mask = later_as_of == month
            each[mask] = shift_prior(scored[mask], prior, em_prior(scored[mask], prior))
        rows.append(
            figures("after: deployed (refit) + EM prior shift, each scored month", labels, each)
        )
    table = pd.DataFrame(rows)
    table.insert(0, "portfolio", args.label)
    print("| " + " | ".join(table.columns) + " |")
    print("|" + "|".join("---" for _ in table.columns) + "|")
    for row in table.itertuples(index=False):
        cells = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
