"""Benchmark the evaluation measures against scikit-learn on synthetic scores.

Prints the median of 5 runs per measure, for 1,000,000 observations with scores rounded to
3 decimals (many ties, as real probability outputs have), and the ratio against
scikit-learn's implementation measured in the same run. Run:

    .venv/bin/python bench/bench_metrics.py [n_rows]
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
from sklearn import metrics as skm

from rollrisk.models.metrics import (
    brier_score,
    expected_calibration_error,
    ks_statistic,
    lift_table,
    population_stability_index,
    roc_auc,
)

REPEATS = 5


def median_seconds(function: Callable[[], object]) -> float:
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        function()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    n_rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    rng = np.random.default_rng(0)
    probs = np.round(rng.beta(2, 6, n_rows), 3)
    labels = (rng.random(n_rows) < probs).astype(np.int8)
    later = np.round(rng.beta(2.2, 6, n_rows), 3)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"rows: {n_rows:,}, median of {REPEATS} runs (seconds)")
    pairs = [
        ("roc_auc", lambda: roc_auc(labels, probs), lambda: skm.roc_auc_score(labels, probs)),
        (
            "ks_statistic",
            lambda: ks_statistic(labels, probs),
            lambda: np.max(np.subtract(*skm.roc_curve(labels, probs)[1::-1])),
        ),
        (
            "brier_score",
            lambda: brier_score(labels, probs),
            lambda: skm.brier_score_loss(labels, probs),
        ),
    ]
    for name, ours, reference in pairs:
        ours_seconds = median_seconds(ours)
        reference_seconds = median_seconds(reference)
        print(
            f"{name:28s} rollrisk {ours_seconds:8.4f}  sklearn {reference_seconds:8.4f}  "
            f"ratio {ours_seconds / reference_seconds:5.2f}"
        )
    for name, function in (
        ("expected_calibration_error", lambda: expected_calibration_error(labels, probs)),
        ("lift_table", lambda: lift_table(labels, probs)),
        ("population_stability_index", lambda: population_stability_index(probs, later)),
    ):
        print(f"{name:28s} rollrisk {median_seconds(function):8.4f}  (no sklearn equivalent)")


if __name__ == "__main__":
    main()
