"""A policy learned from the simulated lender's experiments, checked against the truth it never saw.

Issue 13's check (items 4 and 5, and the goals): for each response table,

1. **Learn** on one portfolio seed (default 10, never reported): simulate the lender's history
   with its exploration (``rollrisk simulate``: by default 10 % of the M1-M3 book randomised
   across the policy's treatments, logged with propensities), build the training set, train,
   promote, build the logged decisions (``rollrisk logged-decisions``: each logged decision
   scored at its as-of, its book value over the following months from the history), and learn
   three policies with ``rollrisk learn-policy``, differing only in what the rules may test:

   * ``learned-shap``: start bucket, risk band and the SHAP-driven segment;
   * ``learned-raw``: start bucket, risk band, product, DPD and amount overdue (no explanation);
   * ``learned-bucket``: start bucket only.

2. **Report** on other seeds (default 11, 12, 13) of the same table: each world is simulated,
   trained and scored afresh (``strategy_spread.world``), and the shipped policy and the three
   learned ones are each run through ``simulate-policy`` against the tiered baseline, the
   segment-blind controls and the oracle (which knows the true drivers), in book value with the
   account-and-seed interval.

Nothing is tuned on the reported seeds or on the response tables: the learner sees only the
learning seed's observable history.

    .venv/bin/python bench/learned_policy.py --tables primary scaled-1 --accounts 30000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from strategy_spread import CHALLENGER, CHAMPION, report, rollrisk, world

RULE_FEATURES = {
    "learned-shap": "start_bucket,risk_band,segment",
    "learned-raw": "start_bucket,risk_band,product,dpd,amount_overdue",
    "learned-bucket": "start_bucket",
}


def learn(args: argparse.Namespace, table: str) -> tuple[dict[str, Path], dict[str, dict]]:
    """The learning world of ``table``: its learned policy files and their off-policy estimates."""
    prepared = args.learn_world.get(table) if args.learn_world else None
    folder = (prepared or args.out / f"learn-seed-{args.learn_seed}-{table}").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "log.txt"
    if prepared is None:  # simulate the learning world and build its logged decisions
        log.write_text("")
        rollrisk(["simulate", "--accounts", str(args.learn_accounts), "--months",
                  str(args.months), "--seed", str(args.learn_seed), "--response-table", table,
                  "--out", "portfolio", "--explore-share", str(args.explore_share),
                  "--overwrite"], folder, log)  # fmt: skip
        rollrisk(["build-training-set", "--data", "portfolio", "--out", "training_set.parquet"],
                 folder, log)  # fmt: skip
        rollrisk(["train", "--data", "portfolio", "--training-set", "training_set.parquet",
                  "--out", "train"], folder, log)  # fmt: skip
        promoted = rollrisk(["promote"], folder, log, allowed=(0, 1)) == 0
        rollrisk(["logged-decisions", "--model", CHAMPION if promoted else CHALLENGER, "--data",
                  "portfolio", "--horizon", str(args.horizon), "--out", "logged.parquet"],
                 folder, log)  # fmt: skip
    policies, estimates = {}, {}
    for label, features in RULE_FEATURES.items():
        out = (args.out / f"learned-{table}-{label}").resolve()
        rollrisk(["learn-policy", "--logged", "logged.parquet", "--rule-features", features,
                  "--model-features", args.model_features, "--experiments",
                  "portfolio/experiments.yaml", "--max-depth", str(args.max_depth),
                  *args.learn_args.split(), "--out", str(out)], folder, log)  # fmt: skip
        policies[label] = out / "learned_policy.yaml"
        estimates[label] = json.loads((out / "policy_learning.json").read_text())
    return policies, estimates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learn-seed", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    parser.add_argument("--tables", nargs="+", default=["primary", "scaled-1"])
    parser.add_argument("--as-ofs", type=int, default=1, help="latest month-ends scored")
    parser.add_argument("--accounts", type=int, default=30_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--start-month", default="2024-01")
    parser.add_argument("--horizon", type=int, default=6, help="months of logged outcome")
    parser.add_argument("--max-depth", type=int, default=3)
    parser.add_argument("--model-features", default="probability,dpd,amount_overdue,exposure")
    parser.add_argument(
        "--learn-accounts",
        type=int,
        default=60_000,
        help="accounts of the learning world (its history is the logged data)",
    )
    parser.add_argument(
        "--explore-share",
        type=float,
        default=0.10,
        help="share of the learning world's M1-M3 book the lender randomises",
    )
    parser.add_argument("--learn-args", default="", help="extra learn-policy arguments")
    parser.add_argument(
        "--learn-world",
        nargs="*",
        default=[],
        metavar="TABLE=DIR",
        help="a prepared learning world per table (DIR holds portfolio/, logged.parquet, "
        "mlflow.db), instead of simulating one",
    )
    parser.add_argument("--policy-seeds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_learned_policy"))
    args = parser.parse_args()
    args.learn_world = dict(item.split("=", 1) for item in args.learn_world)
    args.learn_world = {table: Path(path) for table, path in args.learn_world.items()}
    started = time.perf_counter()
    rows: list[dict] = []
    learning: dict[str, dict] = {}
    for table in args.tables:
        print(f"[learned] learning on seed {args.learn_seed}, table {table}", file=sys.stderr)
        policies, estimates = learn(args, table)
        learning[table] = {label: estimates[label] for label in policies}
        candidates: dict[str, Path | None] = {"shipped": None, **policies}
        for seed in args.seeds:
            print(f"[learned] reporting on seed {seed}, table {table}", file=sys.stderr)
            rows += world(args, seed, table, candidates)  # type: ignore[arg-type]
    text = report(rows, time.perf_counter() - started)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(
        json.dumps({"runs": rows, "learning": learning}, indent=2, default=str)
    )
    (args.out / "summary.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
