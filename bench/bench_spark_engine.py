"""Benchmark: ``rollrisk score --engine spark`` against ``--engine local`` on the same data.

What is timed: one whole ``rollrisk score`` run in a fresh child process per engine (load the
model, read and validate the portfolio, score, write the partitions, publish), each into a new
output folder so nothing is resumed; wall time and peak RSS of the driver process come from
``os.wait4`` (``bench/harness.py``). The Spark figure includes starting the JVM and a
``local[N]`` session and the Python workers importing rollrisk: on a small portfolio that
start-up is most of it. The reference is the local engine measured in the same run.

Data: by default the tests' world (2,500 accounts x 16 months, seed 5, model trained with the
tests' small LightGBM settings), built in a temporary folder; or ``--data`` with ``--model`` and
``--tracking-uri`` for an existing portfolio and registered model.

Run:
    .venv/bin/python bench/bench_spark_engine.py --repeats 3
    .venv/bin/python bench/bench_spark_engine.py --accounts 50000 --partitions 8 --master 'local[2]'
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Measurement, machine_description, run_measured  # noqa: E402

TRAIN_CONFIG = """
training:
  model_name: rollrisk-bench-spark
  experiment_name: bench
  split: {validation_months: 2, test_months: 2, embargo_months: 1}
  calibration: {method: platt}
  lightgbm: {n_estimators: 60, num_leaves: 7, min_child_samples: 20, learning_rate: 0.1, early_stopping_rounds: 10, n_jobs: 1}
"""


def _rollrisk() -> str:
    return str(Path(sys.executable).with_name("rollrisk"))


def build_world(root: Path, accounts: int, months: int, env: dict[str, str]) -> tuple[Path, str]:
    portfolio = root / "portfolio"
    config = root / "train.yaml"
    config.write_text(TRAIN_CONFIG)
    for argv in (
        ["simulate", "--accounts", str(accounts), "--months", str(months), "--seed", "5",
         "--out", str(portfolio)],
        ["train", "--data", str(portfolio), "--config", str(config), "--out", str(root / "train")],
    ):  # fmt: skip
        subprocess.run([_rollrisk(), *argv], env=env, check=True, stdout=subprocess.DEVNULL)
    return portfolio, "models:/rollrisk-bench-spark@challenger"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=2_500)
    parser.add_argument("--months", type=int, default=16)
    parser.add_argument("--as-of", default="2025-03-31")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--master", default="local[2]", help="ROLLRISK_SPARK_MASTER")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--tracking-uri", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-spark-") as folder:
        root = Path(folder)
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": args.tracking_uri or f"sqlite:///{root / 'mlflow.db'}",
            "ROLLRISK_SPARK_MASTER": args.master,
        }
        if args.data is None:
            data, model = build_world(root, args.accounts, args.months, env)
        else:
            data, model = args.data, args.model
        results: dict[str, list[Measurement]] = {"local": [], "spark": []}
        for repeat in range(args.repeats):
            for engine in results:  # interleaved, so contention hits both alike
                argv = [
                    _rollrisk(), "score", "--model", model, "--data", str(data),
                    "--as-of", args.as_of, "--partitions", str(args.partitions),
                    "--engine", engine, "--out", str(root / f"out-{engine}-{repeat}"),
                ]  # fmt: skip
                results[engine].append(run_measured(argv, env=env))

    print(f"machine: {machine_description()}")
    print(
        f"data: {data if args.data else f'simulated {args.accounts:,} accounts x {args.months} months'}"
        f", as-of {args.as_of}, {args.partitions} partitions, spark master {args.master}"
    )
    medians = {}
    for engine, runs in results.items():
        medians[engine] = statistics.median(r.seconds for r in runs)
        rss = statistics.median(r.peak_rss_gib for r in runs)
        every = ", ".join(f"{r.seconds:.1f}" for r in runs)
        print(
            f"  {engine:<6} median {medians[engine]:6.1f} s  (runs: {every})  "
            f"peak RSS {rss:.2f} GiB"
        )
    print(f"  spark / local wall time: {medians['spark'] / medians['local']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
