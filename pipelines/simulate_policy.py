"""Simulate the scored (model-driven) policy against the baseline tiered policy on the simulator.

Takes the published result of `rollrisk score` (OUT/current) on a SIMULATED portfolio, replays
the simulator to the scores' as-of, and rolls every scored account forward --months months
twice with the same random draws: once with the treatment the policy chose for it (after
compliance), once with the baseline tiered policy (by DPD bucket and amount). Repeats that for
--seeds seeds and reports, per policy and as the uplift (model-driven - baseline, with a 95 %
t-interval over the seeds): recovered amount, action cost (conf/action_costs.yaml), net
recovery, roll-to-default rate (90+ DPD within the horizon), contacts made, agency assignments,
legal filings, disputes (complaint proxy), pressure contacts on capacity-shock borrowers,
treatments granted and compliance blocks. Also the uplift per segment.

Only a portfolio written by `rollrisk simulate` (with its truth/ folder) can be used: the
borrowers' response to a policy is known only there. Method and limits: docs/strategies.md.

Writes DIR/policy_simulation.json and DIR/policy_simulation.md and prints the table.

example:
  rollrisk simulate-policy --scores runs/demo/scores --data runs/demo/portfolio \\
      --months 3 --seeds 20 --out runs/demo/policy_simulation
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from rollrisk.errors import UserError
from rollrisk.reports.policy_simulation import markdown
from rollrisk.simulator.replay import DEFAULT_BASE_SEED, DEFAULT_COSTS
from rollrisk.storage.results import POLICY_SIMULATION_JSON as RESULT_JSON

RESULT_MD = "policy_simulation.md"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scores", type=Path, required=True, help="output folder of `rollrisk score`"
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="the simulated portfolio that was scored"
    )
    parser.add_argument("--months", type=int, default=3, help="months simulated forward")
    parser.add_argument("--seeds", type=int, default=20, help="number of random seeds")
    parser.add_argument(
        "--base-seed", type=int, default=DEFAULT_BASE_SEED, help="root of the seeds' streams"
    )
    parser.add_argument(
        "--costs", type=Path, default=DEFAULT_COSTS, help="action cost table (YAML)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/policy_simulation"), help="output folder"
    )


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import polars as pl

    from rollrisk.simulator.replay import (
        compare_policies,
        load_action_costs,
        model_plan,
        month_index,
        read_simulation_params,
        replay_to_month,
    )
    from rollrisk.storage.loader import load_portfolio
    from rollrisk.storage.results import read_scores

    if args.months < 1:
        raise UserError(f"--months must be at least 1, got {args.months}")
    if args.seeds < 2:
        raise UserError(f"--seeds must be at least 2 (for an interval), got {args.seeds}")
    started = time.perf_counter()
    sim = read_simulation_params(args.data)
    costs = load_action_costs(args.costs)
    manifest, scored = read_scores(args.scores)
    as_of = manifest["as_of"]
    month = month_index(sim.start_month, as_of)
    portfolio = load_portfolio(args.data)

    def progress(items, total):  # noqa: ANN001, ANN202 - tqdm adapter
        return tqdm(items, total=total, desc="replay/seeds", file=sys.stderr)

    ids = scored["account_id"].to_list()
    replay = replay_to_month(sim, ids, month, args.months, portfolio.statements, progress)
    if replay.replay_match_share < 0.95:
        raise UserError(
            f"only {replay.replay_match_share:.1%} of the scored accounts' statements at "
            f"{as_of} match the replayed simulator state: was {args.data} modified after "
            "`rollrisk simulate`, or scored from another portfolio?"
        )
    ordered = scored.join(
        pl.DataFrame({"account_id": replay.account_ids, "_order": np.arange(len(ids))}),
        on="account_id",
    ).sort("_order")
    plan = model_plan(ordered["actions"].to_list(), ordered["trail"].to_list())
    seeds = list(range(args.seeds))
    result = compare_policies(
        replay,
        plan,
        costs,
        args.months,
        seeds,
        segments=ordered["segment"].to_list(),
        base_seed=args.base_seed,
        progress=progress,
    )
    result = {
        "scores": str(args.scores),
        "data": str(args.data),
        "as_of": as_of,
        "model": manifest.get("model", {}),
        "policy": manifest.get("config", {}).get("policy"),
        "simulation": {
            "seed": sim.seed,
            "accounts": sim.accounts,
            "months": sim.months,
            "start_month": sim.start_month,
        },
        "costs": {
            "source": costs.source,
            "channels": dict(costs.channels),
            "treatments": dict(costs.treatments),
        },
        **result,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / RESULT_JSON).write_text(json.dumps(result, indent=2, default=str))
    text = markdown(result)
    (args.out / RESULT_MD).write_text(text)
    print(text)
    print(f"written: {args.out / RESULT_JSON}, {args.out / RESULT_MD}")
    return 0
