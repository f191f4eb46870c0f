"""LightGBM against the WOE scorecard, out of time, per simulator seed and per starting bucket.

The figures of docs/models.md ("LightGBM against the scorecard, per seed and bucket"). For each
seed the portfolio is simulated (when its folder does not exist), the training set built with
the shipped observation settings (cached beside the portfolio, by feature-set version), and
both models trained on the same out-of-time split of conf/default.yaml, in three variants:

* ``v1.0.0``: the 59 features of feature set v1.0.0, the configured LightGBM parameters;
* ``v1.1.0``: the 90 features of v1.1.0 (the dynamics added), the configured parameters;
* ``v1.1.0 tuned``: the same, with ``rollrisk train --tune`` (Optuna on the early-stopping
  rows, within ``--tune-seconds`` / ``--tune-trials``; never the calibration rows or the test
  months).

The scorecard is refitted on each variant's features, so a margin always compares the two
models on the same inputs. Usage:

    nice -n 10 .venv/bin/python bench/margin_over_scorecard.py --seeds 7 11 12 \\
        --accounts 60000 --months 24 --root runs/margin

Prints Markdown tables: overall AUC per seed and variant, the mean margin over the seeds, and
AUC per starting bucket.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from rollrisk.api import build_training_set, load_config, load_portfolio, train
from rollrisk.features.registry import DYNAMICS_FEATURES, FEATURE_SET, FeatureSet
from rollrisk.models.training import LABEL

MODELS = ("lightgbm", "scorecard")


def previous_feature_set() -> FeatureSet:
    """Feature set v1.0.0: today's less the dynamics added in v1.1.0."""
    added = {spec.name for spec in DYNAMICS_FEATURES}
    kept = tuple(spec for spec in FEATURE_SET.features if spec.name not in added)
    return FeatureSet(FEATURE_SET.name, "1.0.0", kept)


def _markdown(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _training_set(folder: Path, args: argparse.Namespace) -> pd.DataFrame:
    if not folder.exists():
        subprocess.run(
            [sys.executable, "-m", "rollrisk.cli", "simulate", "--accounts", str(args.accounts),
             "--months", str(args.months), "--seed", folder.name.removeprefix("seed"),
             "--out", str(folder)],
            check=True,
        )  # fmt: skip
    cached = folder.parent / f"{folder.name}-training-set-v{FEATURE_SET.version}.parquet"
    if cached.exists():
        return pd.read_parquet(cached)
    spec = load_config(args.config).observation_spec()
    frame = build_training_set(load_portfolio(folder), observation=spec).to_pandas()
    frame.to_parquet(cached)
    return frame


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 12])
    parser.add_argument("--accounts", type=int, default=60_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--root", type=Path, default=Path("runs/margin"))
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--tune-seconds", type=float, default=None)
    parser.add_argument("--tune-trials", type=int, default=None)
    parser.add_argument(
        "--variants", nargs="+", default=["v1.0.0", "v1.1.0", "v1.1.0 tuned"],
        choices=["v1.0.0", "v1.1.0", "v1.1.0 tuned"],
    )  # fmt: skip
    args = parser.parse_args()
    config = load_config(args.config)
    training = config.training.with_section_overrides(
        "tuning", time_budget_seconds=args.tune_seconds, max_trials=args.tune_trials
    )
    feature_sets = {"v1.0.0": previous_feature_set(), "v1.1.0": FEATURE_SET}

    overall, buckets = [], []
    for seed in args.seeds:
        folder = args.root / f"seed{seed}"
        frame = _training_set(folder, args)
        portfolio = load_portfolio(folder)
        for variant in args.variants:
            feature_set = feature_sets[variant.split()[0]]
            started = time.perf_counter()
            result = train(
                frame,
                portfolio,
                training,
                observation=config.observation_spec(),
                tune=variant.endswith("tuned"),
                feature_set=feature_set,
            )
            seconds = time.perf_counter() - started
            auc = result.comparison.overall["auc"]
            months = result.split.months
            overall.append({
                "seed": seed, "variant": variant, "features": len(feature_set.features),
                "test rows": len(result.split.test),
                "test as-of": f"{months['out-of-time test'][0]}..{months['out-of-time test'][-1]}",
                "lightgbm": round(auc["lightgbm"], 4), "scorecard": round(auc["scorecard"], 4),
                "margin": round(auc["lightgbm"] - auc["scorecard"], 4),
                "trials": len(result.tuning_trials), "seconds": round(seconds, 1),
            })  # fmt: skip
            by_slice = result.comparison.by_slice
            by_bucket = by_slice[by_slice["slice"] == "start_bucket"].pivot(
                index="value", columns="model", values="auc"
            )
            counts = by_slice[(by_slice["slice"] == "start_bucket")].groupby("value")["n"].first()
            for bucket, row in by_bucket.iterrows():
                buckets.append({
                    "seed": seed, "variant": variant, "bucket": bucket, "n": int(counts[bucket]),
                    "lightgbm": round(row["lightgbm"], 4), "scorecard": round(row["scorecard"], 4),
                    "margin": round(row["lightgbm"] - row["scorecard"], 4),
                })  # fmt: skip
            print(f"seed {seed} {variant}: {overall[-1]}", file=sys.stderr, flush=True)
            for row in buckets[-len(by_bucket) :]:
                print(f"  {row}", file=sys.stderr, flush=True)
        if seed == args.seeds[0]:
            print("split:", "; ".join(f"{k}: {v}" for k, v in result.split.describe().items()))
            print(f"training set: {len(frame)} rows, base rate {frame[LABEL].mean():.4f}")

    overall_frame = pd.DataFrame(overall)
    print("\n## Out-of-time AUC per seed\n")
    print(_markdown(overall_frame))
    print("\n## Mean over the seeds\n")
    mean = overall_frame.groupby("variant", sort=False)[["lightgbm", "scorecard", "margin"]].mean()
    print(_markdown(mean.round(4).reset_index()))
    bucket_frame = pd.DataFrame(buckets)
    print("\n## Out-of-time AUC per starting bucket\n")
    print(_markdown(bucket_frame))
    print("\n## Mean margin per bucket over the seeds\n")
    per_bucket = bucket_frame.pivot_table(
        index="variant", columns="bucket", values="margin", aggfunc="mean", sort=False
    )
    print(_markdown(per_bucket.round(4).reset_index()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
