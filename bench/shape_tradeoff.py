"""Model shape against accuracy and explanation cost (issue 7; figures go into docs/models.md).

Trains the roll model as `rollrisk train` does (the config's time split, early stopping and
calibration, seed, every LightGBM parameter of ``training.lightgbm``), changing only
``num_leaves`` (and, with ``--min-child-samples``, the minimum leaf size), then for each shape
prints:

* trees kept by early stopping, leaves per tree, maximum depth reached;
* log loss on the early-stopping rows (what ``rollrisk train --tune`` ranks by: choose on it,
  not on the test months), out-of-time AUC, Brier and log loss (calibrated), and Brier
  uncalibrated;
* the CPU and wall time per row of exact TreeSHAP contributions, rollrisk's kernel
  (:mod:`rollrisk.models.treeshap`) against LightGBM's ``pred_contrib``, on the same
  out-of-time rows (median of ``--repeats`` interleaved runs, same threads), and the max
  absolute difference between the two.

Usage::

    .venv/bin/python bench/shape_tradeoff.py --training-set runs/demo/training_set.parquet \
        [--config conf/default.yaml] [--leaves 7 15 31 63] [--min-child-samples 100 400] \
        [--seeds 7 8 9] [--rows 10000] [--repeats 3]

``--leaves`` varies the leaf count at the config's minimum leaf size; ``--min-child-samples``
varies the minimum leaf size at the config's leaf count; ``--seeds`` repeats every shape with
each seed and prints the mean and standard deviation over seeds. Needs
``training.structure: single``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numba
import numpy as np
import pandas as pd
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import interleaved_medians  # noqa: E402

from rollrisk.features.registry import FEATURE_SET
from rollrisk.features.training_set import validate_training_set
from rollrisk.models.metrics import brier_score, log_loss, roc_auc
from rollrisk.models.training import (
    LABEL,
    SplitFrames,
    fit_on_split,
    model_from_config,
    split_training_set,
)
from rollrisk.models.training_config import TrainingConfig
from rollrisk.models.treeshap import TreeEnsemble, lightgbm_matrix, tree_contributions
from rollrisk.storage.config import load_config


def measure_shape(
    split: SplitFrames,
    training: TrainingConfig,
    overrides: dict[str, int],
    n_rows: int,
    repeats: int,
    threads: int,
) -> dict[str, object]:
    """Train one shape on ``split`` and measure its accuracy and explanation cost."""
    started = time.perf_counter()
    # The training code's own constructor and fit: only the overridden parameters differ.
    model = fit_on_split(model_from_config(FEATURE_SET, training, **overrides), split)
    train_seconds = time.perf_counter() - started
    booster = model.boosters_["all"]
    test = split.test.reset_index(drop=True)
    probabilities = model.predict_proba(test)
    uncalibrated = model.predict_raw(test)
    rows = test.head(n_rows)
    X = lightgbm_matrix(model.encode(rows)[booster.feature_name()], booster)
    ensemble = TreeEnsemble.from_lightgbm(booster)
    tree_contributions(ensemble, X[:10])  # load the compiled kernel outside the timings
    timed = interleaved_medians(
        {
            "rollrisk": lambda: tree_contributions(ensemble, X),
            "lightgbm": lambda: booster.predict(X, pred_contrib=True, num_threads=threads),
        },
        repeats,
    )
    leaves = np.diff(ensemble.tree_leaf_start)
    ours_wall, ours_cpu, ours = timed["rollrisk"]
    lgb_wall, lgb_cpu, reference = timed["lightgbm"]
    return {
        **overrides,
        "trees": ensemble.n_trees,
        "mean leaves": round(float(leaves.mean()), 1),
        "max depth": ensemble.max_depth,
        # Early stopping already read these rows, but so does `rollrisk train --tune`: the fair
        # way to choose a shape without peeking at the out-of-time months.
        "validation log loss": round(
            log_loss(split.early_stopping[LABEL], model.predict_raw(split.early_stopping)), 5
        ),
        "oot AUC": round(roc_auc(test[LABEL], probabilities), 4),
        "oot Brier": round(brier_score(test[LABEL], probabilities), 5),
        "oot log loss": round(log_loss(test[LABEL], probabilities), 4),
        "oot Brier uncalibrated": round(brier_score(test[LABEL], uncalibrated), 5),
        "calibrator": type(model.calibrator_).__name__,
        "rollrisk us CPU/row": round(1e6 * ours_cpu / len(X), 1),
        "lightgbm us CPU/row": round(1e6 * lgb_cpu / len(X), 1),
        "rollrisk us wall/row": round(1e6 * ours_wall / len(X), 1),
        "lightgbm us wall/row": round(1e6 * lgb_wall / len(X), 1),
        "max abs diff": f"{float(np.abs(ours - reference).max()):.1e}",
        "train s": round(train_seconds, 1),
        "load avg": round(os.getloadavg()[0], 2),
    }


def markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(False)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--training-set", type=Path, required=True, help="training set (Parquet)")
    parser.add_argument("--config", type=Path, default=None, help="default: conf/default.yaml")
    parser.add_argument("--leaves", type=int, nargs="+", default=[7, 15, 31, 63])
    parser.add_argument(
        "--min-child-samples",
        type=int,
        nargs="*",
        default=[],
        help="extra runs at the configured num_leaves with these minimum leaf sizes",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="*",
        default=[],
        help="train every shape with each of these seeds (default: the config's seed)",
    )
    parser.add_argument("--rows", type=int, default=10_000, help="out-of-time rows explained")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median taken)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    numba.set_num_threads(args.threads)

    config = load_config(args.config)
    training = config.training
    if training.structure != "single":
        raise SystemExit(f"training.structure must be 'single' here, got {training.structure!r}")
    frame = validate_training_set(pl.read_parquet(args.training_set)).to_pandas()
    embargo = training.split.embargo_months
    split = split_training_set(
        frame,
        validation_months=training.split.validation_months,
        test_months=training.split.test_months,
        embargo_months=int(config.observation.get("window_months", 3))
        if embargo is None
        else embargo,
        calibration_fraction=training.calibration.holdout_fraction,
    )
    print(f"training set: {args.training_set} ({len(frame)} rows)")
    for part, span in split.describe().items():
        print(f"  {part}: {span}")
    print(
        f"  rows: train {len(split.train)}, early stopping {len(split.early_stopping)}, "
        f"calibration {len(split.calibration)}, out-of-time test {len(split.test)} "
        f"(explained: {min(args.rows, len(split.test))}); {args.threads} threads"
    )
    variants = [{"num_leaves": leaves} for leaves in args.leaves]
    variants += [
        {"num_leaves": training.lightgbm.num_leaves, "min_child_samples": size}
        for size in args.min_child_samples
    ]
    results = []
    for seed in args.seeds or [training.seed]:
        seeded = training.with_overrides(seed=seed)
        for overrides in variants:
            result = measure_shape(split, seeded, overrides, args.rows, args.repeats, args.threads)
            result = {"seed": seed, **result}
            print(result, flush=True)
            results.append(result)
    table = pd.DataFrame(results)
    if "min_child_samples" not in table:
        table["min_child_samples"] = training.lightgbm.min_child_samples
    table["min_child_samples"] = (
        table["min_child_samples"].fillna(training.lightgbm.min_child_samples).astype(int)
    )
    first = ["seed", "num_leaves", "min_child_samples"]
    table = table[first + [c for c in table.columns if c not in first]]
    print(markdown(table))
    if len(args.seeds) > 1:
        metrics = [
            "trees",
            "max depth",
            "validation log loss",
            "oot AUC",
            "oot Brier",
            "oot Brier uncalibrated",
        ]
        shape = ["num_leaves", "min_child_samples"]
        summary = table.groupby(shape)[metrics + ["rollrisk us CPU/row", "lightgbm us CPU/row"]]
        print("mean over seeds:")
        print(markdown(summary.mean().round(5).reset_index()))
        print("standard deviation over seeds:")
        print(markdown(summary.std().round(5).reset_index()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
