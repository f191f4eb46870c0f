"""Benchmark the policy simulation engine (`rollrisk simulate-policy`'s arms) on a large book.

A simulated portfolio of ``--accounts`` accounts is written, every account is replayed to the
as-of month, and the job's work is done on all of them: the oracle's choice (7 candidate
bundles x ``--oracle-seeds`` selection seeds) and 6 arms (model-driven, baseline, baseline plus
grace, segment-blind, oracle segments, oracle) x ``--seeds`` seeds x ``--months`` months, with
the two-way interval. The plans are synthetic ladders (one contact channel per candidate), so
the re-decisions through the batch's policy and compliance step, which the job adds, are not
in the figure: they are timed on the demo separately (docs/benchmarks.md).

Every arm is held, as in the job, to the shipped compliance rules (jurisdiction CN) and the
shipped contact capacity (`auto`, sized from the simulated portfolio's collection log for all
the accounts replayed); ``--no-constraints`` leaves both out (the figures before they existed).

    .venv/bin/python bench/bench_simulate_policy.py                     # 100,000 x 6 months x 20 seeds
    .venv/bin/python bench/bench_simulate_policy.py --accounts 20000 --seeds 4
    .venv/bin/python bench/bench_simulate_policy.py --accounts 20000 --seeds 6 --workers 2
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from rollrisk.conf import DEFAULT_CAPACITY, DEFAULT_COMPLIANCE
from rollrisk.features.schemas import CHANNELS
from rollrisk.simulator.engine import CH, write_portfolio
from rollrisk.simulator.replay import (
    ArmSpec,
    ModelPlan,
    candidate_book_values,
    choose_oracle,
    compare_policies,
    load_action_costs,
    recovery_valuation,
    replay_to_month,
    with_constraints,
)
from rollrisk.simulator.rules import DRIVERS
from rollrisk.simulator.truth import read_simulation_params
from rollrisk.storage.loader import load_portfolio
from rollrisk.strategies.capacity import capacity_for_book, load_capacity
from rollrisk.strategies.compliance import load_compliance

LADDERS = ("sms", "app_push", "robo_call", "agent_call", "notice_letter", "field_visit")


def _plan(n: int, channel: str | None, grace: bool = False) -> ModelPlan:
    counts = np.zeros((n, len(CHANNELS)), dtype=np.int64)
    if channel:
        counts[:, CH[channel]] = 1
    flag = np.full(n, grace)
    no = np.zeros(n, dtype=bool)
    return ModelPlan(counts, flag, no, no, no, np.zeros(n, dtype=np.int64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--oracle-seeds", type=int, default=5)
    parser.add_argument(
        "--no-constraints", action="store_true", help="no compliance rules and no capacity"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="with more than 1, the oracle's runs and the arms are timed twice in the same run: "
        "in this process, then in that many worker processes (`simulate-policy --workers`); "
        "the two results must be equal",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "portfolio"
        folder.mkdir()
        mark = time.perf_counter()
        write_portfolio(folder, args.accounts, 12, seed=7)
        print(f"simulate {args.accounts:,} x 12 months: {time.perf_counter() - mark:.1f} s")
        sim = read_simulation_params(folder)
        portfolio = load_portfolio(folder)
        statements = portfolio.statements
        mark = time.perf_counter()
        valuation = recovery_valuation(statements)
        print(f"valuation (recovery curves): {time.perf_counter() - mark:.1f} s")
        ids = [f"A{i:09d}" for i in range(sim.accounts)]
        mark = time.perf_counter()
        replay = replay_to_month(sim, ids, 6, args.months, statements)
        replayed = time.perf_counter() - mark
        print(f"replay to month 6: {replayed:.1f} s (match {replay.replay_match_share:.1%})")
        if not args.no_constraints:
            # the as-of: the last day of month 6 of the window
            as_of = (np.datetime64(sim.start_month, "M") + 7).astype("datetime64[D]") - 1
            capacity = capacity_for_book(
                load_capacity(DEFAULT_CAPACITY), statements, portfolio.collection_actions,
                as_of.item(), len(replay.account_ids),
            )  # fmt: skip
            compliance = load_compliance(DEFAULT_COMPLIANCE).strictest(["CN"])
            replay = with_constraints(replay, compliance, capacity)
            print(f"constraints: CN compliance; capacity {capacity.as_dict()}")
    n = len(replay.account_ids)
    costs = load_action_costs()
    rng = np.random.default_rng(0)
    ladders = {name: _plan(n, name) for name in LADDERS}
    plan = ladders["sms"]
    nobody, everyone = np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
    drivers = [DRIVERS[i] for i in rng.integers(0, len(DRIVERS), n)]
    candidates = {f"ladder:{k}": ArmSpec(k, p, nobody) for k, p in ladders.items()}
    candidates["baseline_tiered"] = ArmSpec("baseline_tiered", plan, everyone)
    selection = range(10_000, 10_000 + args.oracle_seeds)
    timings: dict[int, tuple[float, float]] = {}
    results = {}
    for workers in sorted({1, args.workers}):
        mark = time.perf_counter()
        values = candidate_book_values(
            replay, candidates, costs, args.months, selection, valuation=valuation,
            workers=workers,
        )  # fmt: skip
        oracle = choose_oracle(
            replay, candidates, costs, args.months, drivers, selection, valuation=valuation,
            values=values,
        )  # fmt: skip
        chosen = time.perf_counter() - mark
        print(
            f"oracle choice ({len(candidates)} bundles x {args.oracle_seeds} seeds, "
            f"{workers} worker(s)): {chosen:.1f} s"
        )
        references = {
            "baseline_plus_grace": ArmSpec("baseline_plus_grace", plan, everyone, grace_all=True),
            "segment_blind": ArmSpec("segment_blind", ladders["agent_call"], nobody),
            "oracle_segments": ArmSpec("oracle_segments", ladders["robo_call"], nobody),
            "oracle": oracle.arm,
        }
        mark = time.perf_counter()
        results[workers] = compare_policies(
            replay, plan, costs, args.months, list(range(args.seeds)), valuation=valuation,
            references=references, drivers=drivers, workers=workers,
        )  # fmt: skip
        compared = time.perf_counter() - mark
        print(
            f"6 arms x {args.seeds} seeds x {args.months} months + intervals "
            f"({workers} worker(s)): {compared:.1f} s"
        )
        timings[workers] = (chosen, compared)
    if args.workers > 1:
        one, many = sum(timings[1]), sum(timings[args.workers])
        same = json.dumps(results[1], sort_keys=True, default=str) == json.dumps(
            results[args.workers], sort_keys=True, default=str
        )
        print(
            f"oracle + arms: {one:.1f} s in this process, {many:.1f} s in {args.workers} "
            f"workers ({many / one:.2f}x); the same result: {same}"
        )
    chosen, compared = timings[args.workers]
    result = results[args.workers]
    print(f"engine total (replay + oracle + arms): {replayed + chosen + compared:.1f} s")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    print(f"headline uplift: {result['headline']['uplift']}")


if __name__ == "__main__":
    main()
