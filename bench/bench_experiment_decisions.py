"""Benchmark: what a running experiment adds to the decision step of scoring, in CPU seconds.

What is timed, in this process with ``time.process_time`` (CPU, steadier than wall time on a
shared machine): the policy's choice (``choose``), the experiments' assignment and ladder swap
(``decide_experiments``), the ladders' planning and the compliance rules (``enforce_all``) for
``--accounts`` synthetic accounts, once with no experiment and once with the shipped example
experiment (``conf/experiments.yaml``, three arms 2:1:1) running on the whole book (its
``eligible`` dropped) at ``--share``; the two alternate, ``--repeats`` times, medians printed.
The JSON encoding of the actions and trails and the contact-history join, which the scoring
core's decision step also does, are the same with and without an experiment and are left out.

The accounts: DPD uniform in 1-89 (bucket from the DPD), probability uniform, four segments,
three products, no contact history, seed 0 (``numpy.random.default_rng``).

Run:
    nice .venv/bin/python bench/bench_experiment_decisions.py              # 100,000 accounts, 10%
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from datetime import date, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine_description  # noqa: E402

from rollrisk.conf import DEFAULT_COMPLIANCE, DEFAULT_POLICY  # noqa: E402
from rollrisk.strategies.compliance import (  # noqa: E402
    AccountStates,
    ContactHistories,
    enforce_all,
    load_compliance,
)
from rollrisk.strategies.experiments import (  # noqa: E402
    NOT_RANDOMISED,
    ExperimentPlan,
    decide_experiments,
    parse_experiments,
    shipped_example,
)
from rollrisk.strategies.policy import PolicyCases, choose, load_policy  # noqa: E402

AS_OF = date(2026, 3, 31)  # inside the shipped example's dates
DECIDED_AT = datetime(2026, 4, 1, 8)


def synthetic_cases(n: int) -> PolicyCases:
    rng = np.random.default_rng(0)
    dpd = rng.integers(1, 90, n)
    return PolicyCases(
        account_id=np.array([f"ACC{i:07d}" for i in range(n)], dtype=object),
        decided_at=DECIDED_AT,
        start_bucket=np.array(["M1", "M2", "M3"], dtype=object)[np.minimum(dpd // 30, 2)],
        probability=rng.uniform(0, 1, n),
        segment=rng.choice(["general", "forgetful", "low_willingness", "capacity_shock"], n).astype(
            object
        ),
        product=rng.choice(["bnpl", "credit_card", "cash_loan"], n).astype(object),
        dpd=dpd,
        amount_overdue=rng.uniform(50, 3000, n),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--share", type=float, default=0.1, help="share of the book randomised")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    n = args.accounts
    cases = synthetic_cases(n)
    states = AccountStates(
        cases.account_id, cases.dpd, cases.amount_overdue, np.zeros(n, dtype=bool),
        np.zeros(n, dtype=bool), np.zeros(n, dtype=bool),
        np.full(n, np.datetime64(DECIDED_AT, "us")),
    )  # fmt: skip
    no_history = ContactHistories(
        np.array([], dtype=np.int64), np.array([], dtype="datetime64[us]"),
        np.array([], dtype=object), np.array([], dtype=object),
    )  # fmt: skip
    policy = load_policy(DEFAULT_POLICY)
    compliance = load_compliance(DEFAULT_COMPLIANCE).strictest(["CN"])
    text = re.sub(r"\n +eligible:\n +start_bucket: .*", "", shipped_example())
    plans = {
        "no experiment": ExperimentPlan("experiments.yaml", ()),
        f"{args.share:.0%} experiment": parse_experiments(
            re.sub(r"share: .*", f"share: {args.share}", text), "experiments.yaml"
        ),
    }
    seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in plans}
    randomised = 0
    for _ in range(args.repeats):
        for name, plan in plans.items():
            start = time.process_time()
            choices = choose(policy, cases)
            chosen = decide_experiments(policy, choices, cases, AS_OF, plan)
            chose = time.process_time()
            enforce_all(chosen.planned_actions(DECIDED_AT), states, no_history, compliance)
            seconds[name].append((chose - start, time.process_time() - start))
            if plan.experiments:
                randomised = sum(arm not in (None, NOT_RANDOMISED) for arm in chosen.arm)
    print(f"machine: {machine_description()}; load average {os.getloadavg()[0]:.1f}")
    print(f"{n:,} synthetic accounts, {randomised:,} randomised; CPU s, median of {args.repeats}")
    print(f"{'':<16} {'choose + experiments':>21} {'+ planning + compliance':>24}")
    for name, runs in seconds.items():
        first = statistics.median(r[0] for r in runs)
        total = statistics.median(r[1] for r in runs)
        print(f"{name:<16} {first:21.3f} {total:24.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
