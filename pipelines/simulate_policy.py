"""Simulate the scored (model-driven) policy against the baseline tiered policy on the simulator.

Takes the published result of `rollrisk score` (OUT/current) on a SIMULATED portfolio, replays
the simulator to the scores' as-of, and rolls every scored account forward --months months
twice with the same random draws: once with the treatment the policy chose for it (after
compliance), once with the baseline tiered policy (by DPD bucket and amount). Repeats that for
--seeds seeds and reports, per policy and as the uplift (model-driven - baseline, with a 95 %
t-interval over the seeds): recovered amount, action cost (conf/action_costs.yaml), net
recovery, roll-to-default rate (a cycle end at --default-dpd or more within the horizon), contacts
made, agency assignments,
legal filings, disputes (complaint proxy), pressure contacts on capacity-shock borrowers,
treatments granted and compliance blocks. Also the uplift per segment.

Only a portfolio written by `rollrisk simulate` (with its truth/ folder) can be used: the
borrowers' response to a policy is known only there. Method and limits: docs/strategies.md.

What "roll to default" means comes from the observation settings, as for the training labels:
those the scoring run recorded (the model's default DPD and window), else the config's
`observation:`; an observation flag given here overrides either. --months defaults to the
performance window.

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
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from rollrisk.arguments import (
    add_config_argument,
    add_data_argument,
    add_observation_arguments,
    load_config_argument,
    with_observation_flags,
)
from rollrisk.errors import UserError
from rollrisk.reports.policy_simulation import markdown
from rollrisk.simulator.replay import DEFAULT_BASE_SEED, DEFAULT_COSTS
from rollrisk.storage.results import POLICY_SIMULATION_JSON as RESULT_JSON

RESULT_MD = "policy_simulation.md"

if TYPE_CHECKING:
    from rollrisk.features.observations import ObservationSpec
    from rollrisk.storage.config import RollriskConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scores", type=Path, required=True, help="output folder of `rollrisk score`"
    )
    add_data_argument(parser, help="the simulated portfolio that was scored")
    parser.add_argument(
        "--months",
        type=int,
        default=None,
        help="months simulated forward (default: the observation's window_months)",
    )
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
    add_config_argument(
        parser, help="YAML config: its `observation:` applies when the scoring run recorded none"
    )
    add_observation_arguments(parser)


def observation_settings(
    args: argparse.Namespace, manifest: Mapping[str, Any], config: RollriskConfig
) -> tuple[ObservationSpec, str]:
    """The observation settings the simulation follows, and where they come from.

    The scoring run's recorded ``observation`` (the model's default DPD and window, the scored
    population's range), else the config's ``observation:``; the observation flags given
    override either.
    """
    from rollrisk.features.observations import ObservationSpec

    recorded = manifest.get("config", {}).get("observation")
    if recorded:
        source = f"the scoring run {args.scores}"
        base = ObservationSpec.from_mapping(recorded, source=f"{source} (manifest)")
    else:
        source = f"config file {config.source}"
        base = config.observation_spec()
    spec = with_observation_flags(args, base)
    return spec, source if spec == base else f"{source}, with the flags given"


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import polars as pl

    from rollrisk.arguments import load_portfolio_argument
    from rollrisk.simulator.replay import (
        compare_policies,
        load_action_costs,
        model_plan,
        month_index,
        replay_to_month,
    )
    from rollrisk.simulator.truth import read_simulation_params
    from rollrisk.storage.results import read_scores

    if args.seeds < 2:
        raise UserError(f"--seeds must be at least 2 (for an interval), got {args.seeds}")
    started = time.perf_counter()
    config = load_config_argument(args)
    sim = read_simulation_params(args.data)
    costs = load_action_costs(args.costs)
    manifest, scored = read_scores(args.scores)
    observation, source = observation_settings(args, manifest, config)
    months = observation.window_months if args.months is None else args.months
    if months < 1:
        raise UserError(f"--months must be at least 1, got {months}")
    print(
        f"[simulate-policy] roll to default = a cycle end at DPD >= {observation.default_dpd} "
        f"within {months} months (observation settings of {source})",
        file=sys.stderr,
        flush=True,
    )
    as_of = manifest["as_of"]
    month = month_index(sim.start_month, as_of)
    portfolio, _ = load_portfolio_argument(args, "simulate-policy", config=config)

    def progress(items, total):  # noqa: ANN001, ANN202 - tqdm adapter
        return tqdm(items, total=total, desc="replay/seeds", file=sys.stderr)

    ids = scored["account_id"].to_list()
    replay = replay_to_month(sim, ids, month, months, portfolio.statements, progress)
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
        months,
        seeds,
        segments=ordered["segment"].to_list(),
        base_seed=args.base_seed,
        progress=progress,
        default_dpd=observation.default_dpd,
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
