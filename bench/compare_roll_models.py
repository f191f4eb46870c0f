"""Evidence for two design choices of the roll model (figures go into docs/models.md).

1. One LightGBM with the starting bucket as a monotone feature, or one LightGBM per bucket?
2. Isotonic or Platt calibration?

Usage (the portfolio is simulated first if the folder does not exist):

    .venv/bin/python bench/compare_roll_models.py --data runs/evidence/portfolio \
        --accounts 20000 --months 24 --seed 7

Both structures are trained on the same time split (conf/default.yaml `training:`) with the
same parameters; both calibrators are fitted on the same calibration slice and measured on the
out-of-time months. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from rollrisk.api import build_training_set, load_config, load_portfolio, train
from rollrisk.models.calibration import make_calibrator
from rollrisk.models.metrics import HEADLINE_METRICS, binary_metrics
from rollrisk.models.training import LABEL

COLUMNS = list(HEADLINE_METRICS)


def _markdown(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += [
        "| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("runs/evidence/portfolio"))
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--config", type=Path, default=None)
    args = parser.parse_args()
    if not args.data.exists():
        subprocess.run(
            [sys.executable, "-m", "rollrisk.cli", "simulate", "--accounts", str(args.accounts),
             "--months", str(args.months), "--seed", str(args.seed), "--out", str(args.data)],
            check=True,
        )  # fmt: skip
    config = load_config(args.config)
    spec = config.observation_spec()
    portfolio = load_portfolio(args.data)
    started = time.perf_counter()
    frame = build_training_set(portfolio, observation=spec, progress=True).to_pandas()
    print(f"training set: {len(frame)} rows, {frame['account_id'].nunique()} accounts, "
          f"base rate {frame[LABEL].mean():.4f}, built in {time.perf_counter() - started:.1f} s")  # fmt: skip

    rows, slices, calibration_rows = [], [], []
    for structure in ("single", "per_bucket"):
        training = config.training.with_overrides(structure=structure)
        started = time.perf_counter()
        result = train(frame, portfolio, training, observation=spec)
        seconds = time.perf_counter() - started
        if structure == "single":
            print("\nsplit:", "; ".join(f"{k}: {v}" for k, v in result.split.describe().items()))
            print("rows train / early stopping / calibration / test:",
                  [len(getattr(result.split, p)) for p in ("train", "early_stopping", "calibration", "test")])  # fmt: skip
            for name in ("roll_rate_chain", "scorecard"):
                rows.append(
                    {"model": name, **result.comparison.overall.loc[name, COLUMNS].to_dict()}
                )
        rows.append({"model": f"lightgbm ({structure})", "trees": str(result.evaluation_model.best_iterations_),
                     "seconds": round(seconds, 1), **result.comparison.overall.loc["lightgbm", COLUMNS].to_dict()})  # fmt: skip
        by_bucket = result.comparison.by_slice
        by_bucket = by_bucket[
            (by_bucket["model"] == "lightgbm") & (by_bucket["slice"] == "start_bucket")
        ]
        for _, row in by_bucket.iterrows():
            slices.append({"structure": structure, "bucket": row["value"], "n": int(row["n"]),
                           **{c: row[c] for c in ("auc", "brier", "ece")}})  # fmt: skip

        # Calibration: both methods fitted on the same calibration slice, measured out of time.
        model, split = result.evaluation_model, result.split  # the fit the test judges
        raw_calibration = model.predict_raw(split.calibration)
        raw_test = model.predict_raw(split.test)
        y_test = split.test[LABEL].to_numpy()
        evidence = model.calibration_evidence_
        calibration_rows.append({"structure": structure, "method": "uncalibrated",
                                 "cv_brier": evidence.uncalibrated.brier, "cv_ece": evidence.uncalibrated.ece,
                                 **{f"oot_{k}": v for k, v in binary_metrics(y_test, np.clip(raw_test, 1e-6, 1 - 1e-6)).items() if k in ("brier", "log_loss", "ece", "auc")}})  # fmt: skip
        for method in ("platt", "isotonic"):
            calibrator = make_calibrator(method).fit(
                raw_calibration, split.calibration[LABEL].to_numpy()
            )
            oot = binary_metrics(y_test, calibrator.predict(raw_test))
            calibration_rows.append({"structure": structure, "method": method + (" (chosen)" if method == evidence.chosen else ""),
                                     "cv_brier": evidence.by_method[method].brier, "cv_ece": evidence.by_method[method].ece,
                                     **{f"oot_{k}": oot[k] for k in ("brier", "log_loss", "ece", "auc")}})  # fmt: skip

    print("\n## Out-of-time metrics\n")
    print(_markdown(pd.DataFrame(rows).round(4)))
    print("\n## LightGBM by starting bucket, out of time\n")
    print(_markdown(pd.DataFrame(slices).round(4)))
    print("\n## Calibration: cross-fitted on the calibration slice (cv_) and out of time (oot_)\n")
    print(_markdown(pd.DataFrame(calibration_rows).round(5)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
