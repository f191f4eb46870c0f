"""Simulate the scored (model-driven) policy against the baseline and references on the simulator.

Takes the published result of `rollrisk score` (OUT/current) on a SIMULATED portfolio, replays
the simulator to the scores' as-of (at the last two month-ends of the simulated window it reads
the state `rollrisk simulate` stored in truth/replay_state/ instead of re-simulating), and rolls every scored account forward --months months
(default 6) under each arm with the same random draws: the treatment the policy chose for it
(after compliance; decided once, at the as-of: no re-scoring within the horizon), the baseline
tiered policy, and the references - baseline plus grace for all, segment-blind (every account
in the fallback segment), the policy fed the true drivers as segments, and the oracle (best
bundle per true driver x bucket among the policy file's treatments and the tiered baseline,
chosen on --oracle-seeds separate seeds). Repeats that for
--seeds seeds. Headline: book value = cash collected - action and treatment costs - agency
commission + the open balance at the end valued by the portfolio's recovery curve for its
bucket (a restructure plan at the share the portfolio's plans kept); its uplift with a
95 % interval resampling accounts and seeds together, and the Monte Carlo (seeds-only)
t-interval beside it. Also value captured (policy vs oracle, overall and per true driver),
value of segmentation, roll-to-default by count and balance-weighted, cash, costs, contacts,
agency assignments, legal filings, disputes (complaint proxy), pressure contacts on
capacity-shock borrowers, treatments granted, compliance blocks, agent calls and field visits
made and dropped for capacity, and the uplift per segment.

Every arm, the baseline included, obeys the scoring run's compliance rules (its recorded
compliance file and jurisdictions) every month, and the contact capacity of --capacity (agent
calls a day, field visits a month; `auto` sized from the portfolio's collection log): what
they remove is not made and is counted per arm (docs/strategies.md, "Contact capacity").

A decision of `standard_queue` (e.g. scored with --policy conf/policy_standard.yaml, the baseline
as a policy file) leaves the account in the lender's tiered collection in the simulation too.

Only a portfolio written by `rollrisk simulate` (with its truth/ folder) can be used: the
borrowers' response to a policy is known only there. Method and limits: docs/strategies.md.

What "roll to default" means comes from the observation settings, as for the training labels:
those the scoring run recorded (the model's default DPD and window), else the config's
`observation:`; an observation flag given here overrides either. --months is the simulated
horizon (default 6), independent of the performance window.

Writes DIR/policy_simulation.json and DIR/policy_simulation.md (layout: docs/strategies.md)
and prints the tables. With --propose-policy FILE it also writes a policy file tuned on this
world (per scored segment x start bucket, the treatment that beat the baseline beyond noise on
the oracle's selection seeds; docs/strategies.md, "How the shipped rules were chosen").

example:
  rollrisk simulate-policy --scores runs/demo/scores --data runs/demo/portfolio \\
      --months 6 --seeds 20 --out runs/demo/policy_simulation
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from tqdm import tqdm

from rollrisk.arguments import (
    add_capacity_argument,
    add_config_argument,
    add_data_argument,
    add_observation_arguments,
    load_config_argument,
    with_observation_flags,
    workers_count,
)
from rollrisk.errors import UserError
from rollrisk.reports.policy_simulation import markdown
from rollrisk.simulator.replay import DEFAULT_BASE_SEED, DEFAULT_COSTS
from rollrisk.simulator.rules import RESPONSE_TABLES
from rollrisk.storage.results import POLICY_SIMULATION_JSON as RESULT_JSON
from rollrisk.strategies.tuning import DEFAULT_CONFIDENCE, DEFAULT_MIN_ACCOUNTS

RESULT_MD = "policy_simulation.md"
DEFAULT_MONTHS = 6
MAX_HORIZON_MONTHS = 240  # as `rollrisk simulate --months`
DEFAULT_ORACLE_SEEDS = 5
ORACLE_SEED_START = 10_000  # the oracle's selection seeds; the reported ones are 0..--seeds-1

if TYPE_CHECKING:
    import polars as pl

    from rollrisk.features.observations import ObservationSpec
    from rollrisk.simulator.replay import (
        ActionCosts,
        ArmSpec,
        DecisionInputs,
        ModelPlan,
        OracleChoice,
        Replay,
        Valuation,
    )
    from rollrisk.simulator.truth import SimulatedPortfolio
    from rollrisk.storage.config import RollriskConfig
    from rollrisk.storage.loader import Portfolio
    from rollrisk.strategies.capacity import ContactCapacity
    from rollrisk.strategies.compliance import EffectiveCompliance
    from rollrisk.strategies.policy import Policy
    from rollrisk.strategies.tuning import CellChoice


# below this many scored accounts the arms run in this process (auto): a spawned worker's
# start (imports, its copy of the replay) costs seconds. bench/bench_simulate_policy.py: oracle
# and arms 10.8 s in one process against 18.5 s in 2 workers at 20,000 accounts, 150.0 against
# 103.5 s at 100,000 (docs/benchmarks.md)
ACCOUNTS_PER_ARM_WORKER = 50_000


class References(NamedTuple):
    """What :func:`build_references` gives the job."""

    arms: dict[str, ArmSpec]  # the reference arms, by name
    drivers: list[str]  # each scored account's true driver
    oracle: OracleChoice | None
    per_bucket_choice: dict[str, str] | None  # best_bundle_per_bucket: start bucket -> bundle
    proposal: list[CellChoice] | None  # --propose-policy: the segment x bucket choice


# from this many chunks to replay the chunks are replayed in worker processes (auto): a chunk
# of 50,000 accounts x 24 months takes about 2 s, a worker's start about 5 s
CHUNKS_PER_REPLAY_WORKER = 8


def replay_workers(requested: int | None, chunks: int) -> int:
    """``--workers`` for the replay: the number given, else one per usable core from
    :data:`CHUNKS_PER_REPLAY_WORKER` chunks to replay, else 1."""
    from rollrisk.scoring.workers import usable_cores

    if requested is not None:
        return requested
    return usable_cores() if chunks >= CHUNKS_PER_REPLAY_WORKER else 1


def arm_workers(requested: int | None, accounts: int) -> int:
    """``--workers``: the number given, else one per usable core from
    :data:`ACCOUNTS_PER_ARM_WORKER` scored accounts, else 1."""
    from rollrisk.scoring.workers import usable_cores

    if requested is not None:
        return requested
    return usable_cores() if accounts >= ACCOUNTS_PER_ARM_WORKER else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scores", type=Path, required=True, help="output folder of `rollrisk score`"
    )
    add_data_argument(parser, help="the simulated portfolio that was scored")
    parser.add_argument(
        "--months",
        type=int,
        default=DEFAULT_MONTHS,
        help=f"months simulated forward (default {DEFAULT_MONTHS}; the policy decides once, at "
        "the as-of, and its ladder's contacts repeat monthly: no re-scoring in the horizon)",
    )
    parser.add_argument("--seeds", type=int, default=20, help="number of random seeds")
    parser.add_argument(
        "--oracle-seeds",
        type=int,
        default=DEFAULT_ORACLE_SEEDS,
        help="seeds the oracle's best bundle per true driver x bucket is chosen on (kept apart "
        f"from the reported seeds: numbered from {ORACLE_SEED_START}; default "
        f"{DEFAULT_ORACLE_SEEDS}; 0 leaves the oracle and value captured out)",
    )
    parser.add_argument(
        "--response-table",
        choices=RESPONSE_TABLES,
        default=None,
        help="how the borrowers respond in the horizon: default the table the portfolio was "
        "simulated with (truth/params.json); another table asks how the policy fares when "
        "borrowers respond otherwise than the beliefs it was written from (the history up to "
        "the as-of is unchanged; docs/simulator.md, 'Response tables')",
    )
    parser.add_argument(
        "--base-seed", type=int, default=DEFAULT_BASE_SEED, help="root of the seeds' streams"
    )
    parser.add_argument(
        "--workers",
        type=workers_count,
        default="auto",
        help="processes the replay's chunks and the arms' runs (the oracle's and the seeds') "
        "are spread over (auto: one per usable core from "
        f"{CHUNKS_PER_REPLAY_WORKER} chunks to replay, and for the runs from "
        f"{ACCOUNTS_PER_ARM_WORKER:,} scored accounts, else 1: a worker's start and its copy "
        "of the replay cost more than it saves on a small book); the result is the same for "
        "any number (default: auto)",
    )
    parser.add_argument(
        "--costs", type=Path, default=DEFAULT_COSTS, help="action cost table (YAML)"
    )
    add_capacity_argument(
        parser,
        help="contact capacity (YAML): agent calls a day and field visits a month for the "
        "scored accounts, enforced in every arm every month (calls and visits beyond it are "
        "not made, highest balance served first, and are counted); `auto` sizes it from the "
        "portfolio's collection log (default: the shipped conf/capacity.yaml, auto)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/policy_simulation"), help="output folder"
    )
    parser.add_argument(
        "--propose-policy",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write a policy file tuned on THIS world: per scored segment x start bucket, "
        "the treatment of the scoring run's policy file whose book-value gain over the tiered "
        "baseline has the highest lower confidence bound on the oracle's selection seeds, if "
        "above 0, else the standard queue (strategies/tuning.py). Tune on one world, then "
        "evaluate the file on others (bench/strategy_spread.py --policy) before adopting it. "
        "FILE must not exist: a proposal never replaces a policy file",
    )
    parser.add_argument(
        "--propose-confidence",
        type=float,
        default=DEFAULT_CONFIDENCE,
        help="--propose-policy: joint confidence of the lower bounds (one-sided Student-t, "
        "Bonferroni over every cell with scored accounts x treatment, a cell being a segment x "
        f"start bucket, x risk band with --propose-by-band; default {DEFAULT_CONFIDENCE})",
    )
    parser.add_argument(
        "--propose-by-band",
        action="store_true",
        help="--propose-policy: split each segment x start bucket cell by the scored risk band "
        "(low/medium/high of the policy file), so a treatment can be kept where it pays (say "
        "for the riskier accounts of a segment) and left out where it does not; the "
        "Bonferroni correction counts every cell that has accounts, up to three times as many",
    )
    parser.add_argument(
        "--propose-blind-first",
        action="store_true",
        help="--propose-policy: first give each start bucket (x band) its segment-blind choice "
        "(the best treatment for all its accounts pooled, if its lower bound over the baseline "
        "is above 0), then let a segment's cell depart from that choice only to a treatment, or "
        "the baseline, that beats it beyond noise: each segment rule must beat the best policy "
        "that ignores the segments, not only the baseline (bucket rules at precedence 50, "
        "segment rules at 10)",
    )
    parser.add_argument(
        "--propose-min-accounts",
        type=int,
        default=DEFAULT_MIN_ACCOUNTS,
        help="--propose-policy: a cell with fewer scored accounts keeps the baseline whatever "
        f"its bound (it still counts in the Bonferroni correction; default "
        f"{DEFAULT_MIN_ACCOUNTS})",
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

    from rollrisk.arguments import check_output_argument, load_portfolio_argument
    from rollrisk.simulator.replay import (
        compare_policies,
        load_action_costs,
        model_plan,
        month_index,
        read_replay_points,
        recovery_valuation,
        replay_to_month,
        with_constraints,
        with_responses,
    )
    from rollrisk.simulator.truth import REPLAY_POINT_MONTHS, read_simulation_params
    from rollrisk.storage.results import read_scores
    from rollrisk.strategies.capacity import load_lines, planned_load

    check_output_argument(args, folder=True)
    if args.seeds < 2:
        raise UserError(f"--seeds must be at least 2 (for an interval), got {args.seeds}")
    if args.seeds > ORACLE_SEED_START:
        raise UserError(
            f"--seeds must be at most {ORACLE_SEED_START} (the oracle's selection seeds start "
            f"there), got {args.seeds}"
        )
    if args.oracle_seeds < 0:
        raise UserError(f"--oracle-seeds must be 0 or more, got {args.oracle_seeds}")
    if args.propose_policy is not None and not args.oracle_seeds:
        raise UserError(
            "--propose-policy chooses on the oracle's selection seeds: --oracle-seeds must be "
            "at least 1"
        )
    if not 0 < args.propose_confidence < 1:
        raise UserError(
            f"--propose-confidence must be between 0 and 1, got {args.propose_confidence}"
        )
    if args.propose_min_accounts < 1:
        raise UserError(
            f"--propose-min-accounts must be at least 1, got {args.propose_min_accounts}"
        )
    proposing = {
        "--propose-by-band": args.propose_by_band,
        "--propose-blind-first": args.propose_blind_first,
        "--propose-confidence": args.propose_confidence != DEFAULT_CONFIDENCE,
        "--propose-min-accounts": args.propose_min_accounts != DEFAULT_MIN_ACCOUNTS,
    }
    given = [name for name, used in proposing.items() if used]
    if given and args.propose_policy is None:
        raise UserError(
            f"{', '.join(given)} tune(s) a proposed policy: give --propose-policy FILE as well"
        )
    if args.propose_policy is not None:
        check_output_argument(args, "--propose-policy")
        if args.propose_policy.is_dir():
            raise UserError(f"--propose-policy {args.propose_policy}: a folder (give a file name)")
        if args.propose_policy.exists():
            # it may be the policy a scoring run was decided with (its digest is in the run's
            # manifest) or a shipped default: a proposal never replaces a policy file
            raise UserError(
                f"--propose-policy {args.propose_policy} exists: a proposal is written to a new "
                "file (remove or rename the old one if it is an earlier proposal)"
            )
        if args.propose_policy.resolve() == args.out.resolve():
            raise UserError(
                f"--propose-policy {args.propose_policy} is the --out folder: give a file name"
            )
    if args.base_seed < 0:
        raise UserError(f"--base-seed must be 0 or more, got {args.base_seed}")
    if not 1 <= args.months <= MAX_HORIZON_MONTHS:
        raise UserError(
            f"--months must be between 1 and {MAX_HORIZON_MONTHS} (the horizon simulated "
            f"forward), got {args.months}"
        )
    scores, out = args.scores.resolve(), args.out.resolve()
    if out == scores or scores in out.parents:
        raise UserError(
            f"--out {args.out} is inside --scores {args.scores}: the published scores are "
            "never written into; give another folder"
        )
    started = time.perf_counter()
    config = load_config_argument(args)
    sim = read_simulation_params(args.data)
    costs = load_action_costs(args.costs)
    manifest, scored = read_scores(args.scores)
    observation, source = observation_settings(args, manifest, config)
    months = args.months
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

    def progress_of(what: str):  # noqa: ANN202 - a tqdm adapter per long step
        def progress(items, total):  # noqa: ANN001, ANN202
            return tqdm(items, total=total, desc=what, file=sys.stderr)

        return progress

    ids = scored["account_id"].to_list()
    policy, compliance, fallback = recorded_rules(args, manifest)
    capacity = capacity_for(args.capacity, portfolio, as_of, len(ids))
    print(
        f"[simulate-policy] every arm, every month: the compliance rules of {args.scores}'s "
        f"run ({', '.join(compliance.jurisdictions)}); contact capacity "
        f"{capacity.agent_calls_per_day:,} agent calls a day ({capacity.agent_calls_per_month:,}"
        f" a month) and {capacity.field_visits_per_month:,} field visits a month "
        f"({capacity.sizing})",
        file=sys.stderr,
        flush=True,
    )
    points = read_replay_points(args.data, sim, month)
    replay = replay_to_month(
        sim, ids, month, months, portfolio.statements, progress_of("replay to the as-of (chunks)"),
        lambda chunks: replay_workers(args.workers, chunks), points,
    )  # fmt: skip
    print(
        f"[simulate-policy] the scored accounts' state at {as_of}: "
        + (
            f"{replay.chunks_from_points:,} of {replay.chunks:,} chunks read from the state "
            "`rollrisk simulate` wrote (truth/replay_state/), "
            f"{replay.chunks - replay.chunks_from_points:,} re-simulated"
            if points
            else f"{replay.chunks:,} chunks re-simulated (the portfolio holds no stored state "
            "for this month-end: `rollrisk simulate` writes it for its last "
            f"{REPLAY_POINT_MONTHS})"
        ),
        file=sys.stderr,
        flush=True,
    )
    off_book = int((~replay.on_book).sum()) if replay.on_book is not None else 0
    if off_book:
        raise UserError(
            f"{off_book:,} scored accounts are not on the simulated book at {as_of} (not booked "
            f"yet or already closed, so no statement that month): were the scores made from "
            f"{args.data}?"
        )
    if replay.replay_match_share < 0.95:
        raise UserError(
            f"only {replay.replay_match_share:.1%} of the scored accounts' statements at "
            f"{as_of} match the replayed simulator state: was {args.data} modified after "
            "`rollrisk simulate`, or scored from another portfolio?"
        )
    history_table = replay.rules.response_table
    replay = with_responses(replay, args.response_table or history_table)
    replay = with_constraints(replay, compliance, capacity)
    print(
        f"[simulate-policy] response table: {replay.rules.response_table} in the horizon "
        f"(the portfolio was simulated under {history_table})",
        file=sys.stderr,
        flush=True,
    )
    ordered = scored.join(
        pl.DataFrame({"account_id": replay.account_ids, "_order": np.arange(len(ids))}),
        on="account_id",
    ).sort("_order")
    plan = model_plan(ordered["actions"].to_list(), ordered["trail"].to_list())
    load = planned_load(ordered["actions"].to_list())
    for line in load_lines(load, capacity):
        print(f"[simulate-policy] scored plan, {line}", file=sys.stderr, flush=True)
    seeds = list(range(args.seeds))
    workers = arm_workers(args.workers, len(ids))
    if workers > 1:
        print(
            f"[simulate-policy] the arms' runs in {workers} worker processes (--workers)",
            file=sys.stderr,
            flush=True,
        )
    valuation = recovery_valuation(portfolio.statements, treatments=portfolio.treatments)
    built = build_references(
        args, ordered, portfolio, replay, plan, costs, months, valuation,
        observation.default_dpd, policy, compliance, fallback, progress_of("oracle (bundle runs)"),
        workers,
    )  # fmt: skip
    references, drivers, oracle = built.arms, built.drivers, built.oracle
    result = compare_policies(
        replay,
        plan,
        costs,
        months,
        seeds,
        segments=ordered["segment"].to_list(),
        base_seed=args.base_seed,
        progress=progress_of("arms (seeds)"),
        workers=workers,
        default_dpd=observation.default_dpd,
        valuation=valuation,
        references=references,
        drivers=drivers,
    )
    result["decision"] = (
        "the scored decision at the as-of, once: its ladder's contacts repeat every month the "
        "account stays in M1-M3 and its treatments start in the first month; the policy does "
        "not re-score the book during the horizon"
    )
    result["constraints"]["scored_plan_load"] = {
        "agent_calls": load.agent_calls,
        "field_visits": load.field_visits,
        "accounts": load.accounts,
        "within_capacity": load.agent_calls <= capacity.agent_calls_per_month
        and load.field_visits <= capacity.field_visits_per_month,
    }
    if oracle is not None:
        result["oracle"] = {
            "selection_seeds": oracle.selection_seeds,
            "candidates": oracle.candidates,
            "choice": oracle.choice,
            "best_bundle_per_bucket": built.per_bucket_choice,
        }
    result = {
        "scores": str(args.scores),
        # the scores' run (their manifest's run_key): report refuses a simulation of other scores
        "scores_run_key": manifest.get("run_key"),
        "data": str(args.data),
        "as_of": as_of,
        "model": manifest.get("model", {}),
        "policy": manifest.get("config", {}).get("policy"),
        "compliance": manifest.get("config", {}).get("compliance"),
        "simulation": {
            "seed": sim.seed,
            "accounts": sim.accounts,
            "months": sim.months,
            "start_month": sim.start_month,
            "response_table": history_table,
            "horizon_response_table": replay.rules.response_table,
        },
        "costs": {
            "source": costs.source,
            "channels": dict(costs.channels),
            "treatments": dict(costs.treatments),
            "agency_commission": dict(costs.agency_commission),
        },
        **result,
        "seconds": round(time.perf_counter() - started, 1),
    }
    proposal_text = None
    if args.propose_policy is not None and built.proposal:
        proposal_text, result["proposal"] = proposal_file(args, manifest, built, sim, replay, as_of)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / RESULT_JSON).write_text(json.dumps(result, indent=2, default=str))
    text = markdown(result)
    (args.out / RESULT_MD).write_text(text)
    print(text)
    print(f"written: {args.out / RESULT_JSON}, {args.out / RESULT_MD}")
    if args.propose_policy is not None:
        if proposal_text is None:
            raise UserError(
                f"no account was scored in {args.scores}: nothing to tune --propose-policy on "
                f"(the simulation's results are written; {args.propose_policy} is not)"
            )
        args.propose_policy.parent.mkdir(parents=True, exist_ok=True)
        args.propose_policy.write_text(proposal_text)
        from rollrisk.strategies.tuning import EVERY_SEGMENT

        cells = result["proposal"]["cells"]
        blind = [c for c in cells if c["segment"] == EVERY_SEGMENT]
        own = [c for c in cells if c["segment"] != EVERY_SEGMENT]
        departs = sum(c["chosen"] != c.get("versus", "baseline_tiered") for c in own)
        what = (
            f"{sum(c['chosen'] != 'baseline_tiered' for c in blind)} of {len(blind)} buckets "
            f"take a segment-blind treatment, {departs} of {len(own)} segment cells depart "
            "from their bucket's choice"
            if blind
            else f"{departs} of {len(own)} cells depart from the baseline"
        )
        print(
            f"[simulate-policy] proposed policy: {args.propose_policy} ({what}); tuned on this "
            "world: evaluate it on others before adopting it",
            file=sys.stderr,
            flush=True,
        )
    return 0


def proposal_file(
    args: argparse.Namespace,
    manifest: Mapping[str, Any],
    built: References,
    sim: SimulatedPortfolio,
    replay: Replay,
    as_of: Any,
) -> tuple[str, dict[str, Any]]:
    """--propose-policy's file (:func:`rollrisk.strategies.tuning.proposed_policy_text`) and
    its cells for the JSON result; built before anything is written, so an error here loses
    nothing."""
    from dataclasses import asdict

    from rollrisk.strategies.tuning import EVERY_SEGMENT, proposed_policy_text

    cells = built.proposal or []
    # every scored account is in one segment cell (and, with --propose-blind-first, in one of
    # its bucket's blind cells as well)
    scored = sum(c.accounts for c in cells if c.segment != EVERY_SEGMENT)
    source = Path(manifest["config"]["policy"])
    provenance = {
        "tuned on": f"{args.data} (simulator seed {sim.seed}, {sim.accounts:,} accounts, "
        f"simulated under response table {sim.rules.response_table})",
        "scores": f"{args.scores} (as-of {as_of}, {scored:,} accounts)",
        "candidates": f"the treatments of {source.name} and the tiered baseline, "
        f"{args.oracle_seeds} selection seeds from {ORACLE_SEED_START} (base seed "
        f"{args.base_seed}), {args.months} months, response table "
        f"{replay.rules.response_table}",
        "cells": "scored segment x start bucket"
        + (" x risk band" if args.propose_by_band else "")
        + (
            ", each against its bucket's segment-blind choice (--propose-blind-first)"
            if args.propose_blind_first
            else ""
        ),
        "confidence": f"{args.propose_confidence} (one-sided Student-t, Bonferroni over every "
        f"cell x treatment); at least {args.propose_min_accounts} accounts per departing cell",
    }
    text = proposed_policy_text(cells, source.read_text(), provenance)
    return text, {"file": str(args.propose_policy), "provenance": provenance,
                  "cells": [asdict(c) for c in cells]}  # fmt: skip


def recorded_rules(
    args: argparse.Namespace, manifest: Mapping[str, Any]
) -> tuple[Policy, EffectiveCompliance, str]:
    """The policy, the compliance rules (strictest over the recorded jurisdictions) and the
    fallback segment the scoring run recorded in its manifest: the references re-decide with
    them and every arm's replayed contacts obey the same compliance rules."""
    from rollrisk.scoring.batch import recorded_rule_file
    from rollrisk.strategies.compliance import load_compliance
    from rollrisk.strategies.policy import load_policy
    from rollrisk.strategies.segments import load_segment_rules

    recorded = manifest.get("config", {})
    paths = {
        key: recorded_rule_file(
            manifest, key, args.scores, "the references re-decide with the same rules"
        )
        for key in ("policy", "compliance", "segments")
    }
    policy = load_policy(paths["policy"])
    compliance = load_compliance(paths["compliance"]).strictest(recorded.get("jurisdictions") or [])
    fallback = load_segment_rules(paths["segments"]).fallback
    return policy, compliance, fallback


def capacity_for(path: Path, portfolio: Portfolio, as_of: Any, accounts: int) -> ContactCapacity:
    """The contact capacity of ``path`` for ``accounts`` accounts, its ``auto`` numbers sized
    from the portfolio's collection log up to the as-of (:mod:`rollrisk.strategies.capacity`)."""
    from datetime import date

    from rollrisk.strategies.capacity import capacity_for_book, load_capacity

    day = as_of if isinstance(as_of, date) else date.fromisoformat(str(as_of)[:10])
    return capacity_for_book(
        load_capacity(path), portfolio.statements, portfolio.collection_actions, day, accounts
    )


def build_references(
    args: argparse.Namespace,
    ordered: pl.DataFrame,
    portfolio: Portfolio,
    replay: Replay,
    plan: ModelPlan,
    costs: ActionCosts,
    months: int,
    valuation: Valuation,
    default_dpd: int,
    policy: Policy,
    compliance: EffectiveCompliance,
    fallback: str,
    progress: Callable[[Iterable[int], int], Iterable[int]] | None = None,
    workers: int = 1,
) -> References:
    """The reference arms run beside the two policies, and each account's true driver.

    ``baseline_plus_grace`` (the tiered baseline plus a grace period for every delinquent
    account at the first month), ``segment_blind`` (the scored policy with every account in
    the fallback segment), ``oracle_segments`` (the same policy fed the true drivers as
    segments; ``healthy`` -> the fallback) and, unless --oracle-seeds is 0, ``oracle`` (the best
    of the policy's treatments, each given to everyone, and the tiered baseline per true driver
    x start bucket, chosen on the selection seeds: :func:`oracle_candidates`) and ``best_bundle_per_bucket`` (the same choice per start
    bucket only, without the truth: a segment-blind control). Re-decided arms go through the batch's own decision step
    and compliance rules; re-deciding with the scored segments must give the scored
    decisions back, else the job refuses (the references would not be comparable).
    """
    import numpy as np

    from rollrisk.simulator.replay import (
        ArmSpec,
        candidate_book_values,
        choose_oracle,
        decision_inputs,
        plan_for_segments,
        same_plan,
    )
    from rollrisk.simulator.truth import read_true_drivers

    if ordered.height == 0:
        return References({}, [], None, None, None)  # nothing scored: no reference to run either
    truth = read_true_drivers(args.data)
    if truth is None:
        raise UserError(f"{args.data}: no truth/borrowers.parquet (the true drivers)")
    drivers_frame = ordered.select("account_id").join(truth, on="account_id", how="left")
    if drivers_frame["driver"].null_count():
        raise UserError(
            f"{args.data}: truth/borrowers.parquet has no driver for "
            f"{drivers_frame['driver'].null_count():,} scored accounts"
        )
    drivers = drivers_frame["driver"].to_list()
    as_of = ordered["as_of"][0]
    if "experiment_id" in ordered.columns and ordered["experiment_id"].is_not_null().any():
        running = sorted(set(ordered["experiment_id"].drop_nulls()))
        raise UserError(
            f"{args.scores} was scored with a running experiment ({', '.join(running)}): its "
            "challenger accounts did not get the policy's decision, and this job replays the "
            "policy's own; score again without --experiments (or with one not running then)"
        )
    print(
        f"[simulate-policy] re-deciding the {ordered.height:,} scored accounts for the references "
        "(the scored segments, the fallback segment, the true drivers, each oracle candidate)",
        file=sys.stderr,
        flush=True,
    )
    inputs = decision_inputs(
        ordered, portfolio.accounts, portfolio.statements, portfolio.collection_actions,
        portfolio.treatments, as_of, policy, compliance,
    )  # fmt: skip
    n = len(drivers)
    again = same_plan(plan_for_segments(inputs, ordered["segment"].to_list()), plan)
    if again < 1.0:
        raise UserError(
            f"re-deciding the scored accounts with their own segments gives the scored decisions "
            f"back for only {again:.1%} of them: the policy, compliance or portfolio changed "
            f"since {args.scores} was written (score again)"
        )
    everyone, nobody = np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    oracle_segments = [d if d in policy.segments else fallback for d in drivers]
    references = {
        "baseline_plus_grace": ArmSpec("baseline_plus_grace", plan, everyone, grace_all=True),
        "segment_blind": ArmSpec(
            "segment_blind", plan_for_segments(inputs, [fallback] * n), nobody
        ),
        "oracle_segments": ArmSpec(
            "oracle_segments", plan_for_segments(inputs, oracle_segments), nobody
        ),
    }
    oracle, per_bucket_choice, proposal = None, None, None
    if args.oracle_seeds:
        candidates = oracle_candidates(inputs, plan)
        print(
            f"[simulate-policy] choosing the oracle: {len(candidates)} bundles x "
            f"{args.oracle_seeds} selection seeds",
            file=sys.stderr,
            flush=True,
        )
        selection = range(ORACLE_SEED_START, ORACLE_SEED_START + args.oracle_seeds)
        values = candidate_book_values(
            replay, candidates, costs, months, selection, args.base_seed, default_dpd, valuation,
            progress, workers,
        )  # fmt: skip
        buckets = ordered["start_bucket"].to_list()  # the bucket the policy decided on
        oracle = choose_oracle(
            replay, candidates, costs, months, drivers, selection, values=values,
            buckets=buckets,
        )  # fmt: skip
        # the same choice without the truth: one bundle per bucket for everyone
        per_bucket = choose_oracle(
            replay, candidates, costs, months, ["any"] * n, selection, values=values,
            name="best_bundle_per_bucket", buckets=buckets,
        )  # fmt: skip
        references["best_bundle_per_bucket"] = per_bucket.arm
        references["oracle"] = oracle.arm
        per_bucket_choice = per_bucket.choice["any"]
        if args.propose_policy is not None:
            from rollrisk.strategies.tuning import choose_cells

            proposal = choose_cells(
                values, list(candidates), ordered["segment"].to_list(), buckets,
                args.propose_confidence, args.propose_min_accounts,
                ordered["risk_band"].to_list() if args.propose_by_band else None,
                args.propose_blind_first,
            )  # fmt: skip
    return References(references, drivers, oracle, per_bucket_choice, proposal)


def oracle_candidates(inputs: DecisionInputs, plan: ModelPlan) -> dict[str, ArmSpec]:
    """The bundles the oracle chooses from: every treatment of the evaluated policy file given
    to every account (``treatment:<name>``, through the batch's decision step and compliance:
    the choices a policy file, and the policy learner, have), and the tiered baseline
    (``baseline_tiered``). A treatment that leaves every account in the standard queue is the
    baseline, listed once under that name."""
    import numpy as np

    from rollrisk.simulator.replay import ArmSpec, plan_for_treatment

    n = len(inputs.probability)
    nobody = np.zeros(n, dtype=bool)
    candidates: dict[str, ArmSpec] = {}
    for name in inputs.policy.treatments:
        given = plan_for_treatment(inputs, name)
        if given.queued_only.all():
            continue  # standard_queue with nothing added: the baseline below
        candidates[f"treatment:{name}"] = ArmSpec(f"treatment:{name}", given, nobody)
    candidates["baseline_tiered"] = ArmSpec("baseline_tiered", plan, np.ones(n, dtype=bool))
    return candidates
