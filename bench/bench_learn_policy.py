"""Benchmark `rollrisk learn-policy` on synthetic logged experiments of a chosen size.

    python bench/bench_learn_policy.py --decisions 100000 --repeats 3
    python bench/bench_learn_policy.py --decisions 1000000 --repeats 1

The logged table is made here (seeded): one decision per account; six segments, three buckets,
five products, a probability, DPD, amount and seven driver-family columns; the policy gives
reminder_only (M1), reminder_then_call (M2) or intensive_calls (M3) (treatments of the
hand-written conf/policy_handwritten.yaml, passed as --policy); 10 % of the accounts are
randomised over the shipped example experiment's arms (champion 2 : early_agent_call 1 :
grace_then_reminder 1) with the propensities that implies; the book value has a known best
bundle per segment. It is NOT the simulator's data (issue 13 item 2 is not built): this measures
the learner's time and memory, and whether it finds the known best bundles at that size.

The reference, measured in the same run on the same rows, is one fit of the outcome model the
learner cross-fits (LightGBM, same parameters, one thread): the ratio says what the whole job
costs in units of one outcome-model fit. Each measurement runs in its own process (median of
--repeats; time and peak memory).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine_description, median_of  # noqa: E402

from rollrisk.conf import HANDWRITTEN_POLICY  # noqa: E402
from rollrisk.features.registry import FAMILIES  # noqa: E402
from rollrisk.strategies.experiments import shipped_example  # noqa: E402

SEGMENTS = ("capacity_shock", "low_willingness", "unreachable", "forgetful", "seasonal", "general")
POLICY_BY_BUCKET = {"M1": "reminder_only", "M2": "reminder_then_call", "M3": "intensive_calls"}
ARMS = ("champion", "early_agent_call", "grace_then_reminder")
ARM_WEIGHTS = np.array([0.5, 0.25, 0.25])
# the known best bundle per segment (effect over the policy's decision, per decision)
EFFECT = {
    ("forgetful", "early_agent_call"): 40.0,
    ("capacity_shock", "grace_then_reminder"): 60.0,
    ("seasonal", "grace_then_reminder"): 30.0,
    ("low_willingness", "early_agent_call"): 15.0,
    ("unreachable", "early_agent_call"): -20.0,
    ("general", "grace_then_reminder"): -25.0,
}
SHARE = 0.10

REFERENCE = """
import sys, polars as pl, numpy as np
from lightgbm import LGBMRegressor
frame = pl.read_parquet(sys.argv[1])
columns = [c for c in frame.columns if c not in ("account_id", "bundle", "policy_bundle", "propensity", "book_value")]
x = frame.select(pl.col(c).cast(pl.Categorical).to_physical() if frame[c].dtype == pl.String else pl.col(c) for c in columns).to_numpy()
LGBMRegressor(n_estimators=200, learning_rate=0.05, num_leaves=31, min_child_samples=50, n_jobs=1, verbose=-1).fit(x, frame["book_value"].to_numpy())
"""


def logged_decisions(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    segment = rng.choice(SEGMENTS, n)
    bucket = rng.choice(["M1", "M2", "M3"], n, p=[0.6, 0.25, 0.15])
    policy_bundle = np.vectorize(POLICY_BY_BUCKET.get)(bucket)
    randomised = rng.random(n) < SHARE
    arm = rng.choice(ARMS, n, p=ARM_WEIGHTS)
    bundle = np.where(randomised & (arm != "champion"), arm, policy_bundle)
    propensity = np.where(bundle == policy_bundle, 1 - SHARE + SHARE * 0.5, SHARE * 0.25)
    effect = np.zeros(n)
    for (seg, arm_bundle), value in EFFECT.items():
        effect += value * ((segment == seg) & (bundle == arm_bundle))
    families = {name: rng.normal(0, 0.5, n) for name in FAMILIES}
    base = 300 - 80 * (bucket == "M2") - 160 * (bucket == "M3") + 40 * families["payment_capacity"]
    return pl.DataFrame(
        {
            "account_id": [f"B{i:08d}" for i in range(n)],
            "bundle": bundle,
            "policy_bundle": policy_bundle,
            "propensity": propensity,
            "book_value": base + effect + rng.normal(0, 120, n),
            "segment": segment,
            "start_bucket": bucket,
            "product": rng.choice(
                ["bnpl", "credit_card", "cash_loan", "merchant_loan", "agri_loan"], n
            ),
            "probability": rng.random(n),
            "dpd": rng.integers(1, 90, n),
            "amount_overdue": rng.lognormal(7, 1, n),
            **families,
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        logged = root / "logged.parquet"
        logged_decisions(args.decisions, args.seed).write_parquet(logged)
        experiments = root / "experiments.yaml"
        experiments.write_text(shipped_example(), encoding="utf-8")
        out = root / "out"
        job = [
            sys.executable, "-m", "rollrisk", "learn-policy",
            "--logged", str(logged),
            "--experiments", str(experiments),
            # the synthetic log's policy decides with the hand-written file's treatments
            "--policy", str(HANDWRITTEN_POLICY),
            "--rule-features", "start_bucket,segment",
            "--model-features", "probability,dpd,amount_overdue,product," + ",".join(FAMILIES),
            "--out", str(out),
        ]  # fmt: skip
        learn, learn_runs = median_of(job, args.repeats)
        reference, reference_runs = median_of(
            [sys.executable, "-c", REFERENCE, str(logged)], args.repeats
        )
        result = json.loads((out / "policy_learning.json").read_text())
        rules = (out / "learned_rules.yaml").read_text()
        load = subprocess.run(["cat", "/proc/loadavg"], capture_output=True, text=True).stdout
    evaluation = result["evaluation"]
    print(f"machine: {machine_description()}; load average {load.split()[:3]}")
    print(f"logged decisions: {args.decisions:,} (seed {args.seed}, {SHARE:.0%} randomised)")
    print(
        f"learn-policy: {learn.seconds:.1f} s median of {args.repeats} "
        f"({', '.join(f'{r.seconds:.1f}' for r in learn_runs)}), CPU {learn.cpu_seconds:.1f} s, "
        f"peak {learn.peak_rss_gib:.2f} GiB"
    )
    print(
        f"reference (one LightGBM outcome fit): {reference.seconds:.1f} s "
        f"({', '.join(f'{r.seconds:.1f}' for r in reference_runs)}), CPU "
        f"{reference.cpu_seconds:.1f} s; ratio {learn.seconds / reference.seconds:.1f}x wall, "
        f"{learn.cpu_seconds / reference.cpu_seconds:.1f}x CPU"
    )
    for name in ("proposed_policy", "current_policy", "uplift_vs_current"):
        e = evaluation[name]
        print(f"  {name}: {e['value']:.2f} (95% CI {e['ci_low']:.2f} to {e['ci_high']:.2f})")
    print(rules.split("rules:", 1)[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
