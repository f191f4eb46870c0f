"""Score every delinquent account of a portfolio at an as-of date (the nightly batch job).

--as-of is any calendar day: each account's DPD is that of its latest statement known by the
end of the day, aged from the statement's cycle end to the as-of when in arrears (cured when a
later statement known by then shows 0 DPD); features use only what was known by then
(docs/features.md, "Any day of the month").

For each account in the population (DPD within the observation range at --as-of) it writes
the calibrated roll-to-default probability, the risk band, up to 4 reason codes (English and
Chinese), the driver-family contributions, the segment, the treatment with the trail of the
policy rule and every compliance rule that changed it, the expected loss (balance x
probability), the model name and version, and the as-of. An experiment of --experiments
active at the as-of (none in the shipped file) gives the accounts it randomises its arm's
ladder in place of the policy's, through the same compliance rules; every row carries
experiment_id, arm and propensity (null outside every experiment) and the manifest counts the
accounts per arm (counts.experiments); each experiment of the file not running at the as-of
is named in a note on stderr, with its dates.

Output (see docs/scoring.md):
  OUT/current -> runs/<key>          the published result; swapped atomically at the end
  OUT/runs/<key>/part-NNNNN.parquet  accounts partitioned by a hash of account_id
  OUT/runs/<key>/manifest.json       counts, checksums, model URI and version, code, config
  OUT/rejects.csv                    input rows set aside by the data contract, with reasons

With --capacity FILE (conf/capacity.yaml) the job then prints the agent calls and field visits
the published decisions plan in one month against that contact capacity, with a WARNING when
the plan exceeds it; it does not re-plan (docs/strategies.md, "Contact capacity").

The local engine scores --workers partitions at once (default: one per usable core when there
are at least 25,000 accounts per worker to score), each in a spawned process of its own with a
share of the cores; every partition's file holds the same bytes whatever the number of
workers. Each worker holds one partition (by default 50,000 accounts) beside the whole book
this process holds.

A run killed at any moment leaves the previous result in place; rerunning the same command
resumes, skipping finished partitions; the same inputs give byte-identical partitions.
Accounts in the population = accounts scored, checked before anything is published. Rows the
data contract rejects are counted by table and by account on stderr and in the manifest
(counts.rejects); above --max-reject-rate (default 1%) of a table's rows or of the accounts
the job stops and publishes nothing. A portfolio lacking a table the model was trained with
is refused unless --allow-missing-table names it (then recorded in the manifest's "tables").

examples:
  rollrisk score --model models:/rollrisk-roll-to-default@champion \\
      --data runs/demo/portfolio --as-of 2025-12-31 --out runs/demo/scores
  rollrisk score --model models:/rollrisk-roll-to-default@champion \\
      --data runs/demo/portfolio --as-of 2025-12-16 --out runs/demo/scores-2025-12-16
  rollrisk score --model models:/rollrisk-roll-to-default@champion \\
      --data runs/demo/portfolio --experiments my-experiments.yaml --out runs/demo/scores
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from rollrisk.arguments import (
    add_capacity_argument,
    add_portfolio_arguments,
    add_scoring_arguments,
    positive_count,
    workers_count,
)
from rollrisk.errors import UserError
from rollrisk.storage.results import ACCOUNTS_PER_PARTITION

if TYPE_CHECKING:
    from rollrisk.storage.atomic_output import PartitionFile


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_scoring_arguments(parser)  # --model, --config, --policy, ... shared with `serve`
    add_portfolio_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("runs/scores"), help="output folder")
    add_capacity_argument(
        parser,
        default=None,
        help="contact capacity YAML (e.g. conf/capacity.yaml): after scoring, print the "
        "agent calls and field visits the decisions plan in one month against it, with a "
        "WARNING when the plan exceeds it (the plan is not changed; `auto` numbers are sized "
        "from the portfolio's collection log, which is read again for it)",
    )
    parser.add_argument(
        "--partitions",
        type=positive_count,
        default=None,
        help=f"number of output partitions (default: one per {ACCOUNTS_PER_PARTITION:,} accounts "
        "scored; with --engine spark, per accounts read when that is more: a task holds all its "
        "accounts' rows); at least 1, at most the accounts to score",
    )
    parser.add_argument(
        "--workers",
        type=workers_count,
        default="auto",
        help="local engine: partitions scored at once, each in its own process (auto: one per "
        "usable core, at most one per partition and one per 25,000 accounts to score, about "
        "what a worker's start-up costs; 1: all in this process). Each worker holds one "
        "partition beside the book this process holds; the output is the same for any number "
        "(default: auto)",
    )
    parser.add_argument(
        "--engine",
        choices=("local", "spark"),
        default="local",
        help="local: this process; spark: a PySpark job whose executors read, validate, score "
        "and write each partition with the same code (docs/spark.md)",
    )


def run(args: argparse.Namespace) -> int:
    from rollrisk.arguments import (
        check_output_argument,
        date_settings,
        jurisdictions_of,
        load_config_argument,
        max_reject_rate,
        setup_from_arguments,
    )
    from rollrisk.scoring.batch import RuleFiles, score_portfolio
    from rollrisk.storage.registry import model_label, recorded_model_uri

    check_output_argument(args, folder=True)
    if args.engine == "spark" and args.workers is not None:
        raise UserError(
            f"--workers {args.workers}: the worker processes are the local engine's; with "
            "--engine spark the executors score the partitions (their number and cores are "
            "Spark's settings, docs/spark.md)"
        )
    if args.engine == "spark":  # refused before the model is loaded, not after
        from rollrisk.scoring.spark_engine import require_pyspark

        require_pyspark()
    started = time.perf_counter()
    print(f"[score] loading model {args.model}", file=sys.stderr, flush=True)
    _, setup = setup_from_arguments(args)
    loaded_seconds = time.perf_counter() - started

    def progress(partitions: Iterable[PartitionFile], total: int) -> Iterable[PartitionFile]:
        return tqdm(partitions, total=total, desc="score", unit="part", file=sys.stderr)

    print(f"[score] loading portfolio {args.data}", file=sys.stderr, flush=True)
    result = score_portfolio(
        args.data,
        args.out,
        setup,
        model_uri=recorded_model_uri(args.model),
        rule_files=RuleFiles(
            args.config, args.policy, args.segments, args.compliance, args.experiments
        ),
        jurisdictions=jurisdictions_of(args),
        as_of=args.as_of,
        partitions=args.partitions,
        engine=args.engine,
        progress=progress,
        dates=date_settings(args),
        max_reject_rate=max_reject_rate(args, load_config_argument(args)),
        workers=args.workers,
    )
    for line in result.rejects.lines():
        print(f"[score] {line}", file=sys.stderr)
    if result.as_of_note:
        print(f"[score] note: {result.as_of_note}", file=sys.stderr)
    # an experiment of --experiments outside its dates assigns nothing: said, not silent
    for note in setup.experiments.not_running_notes(result.as_of):
        print(f"[score] note: {note}", file=sys.stderr)
    for warning in result.warnings:
        print(f"[score] WARNING: {warning}", file=sys.stderr)
    if result.resumed_partitions:
        print(
            f"[score] resumed: {result.resumed_partitions} of {result.partitions} partitions "
            "were already written",
            file=sys.stderr,
        )
    print(
        f"[score] {result.scored:,} accounts scored at {result.as_of} with "
        + model_label(setup.model_name, setup.model_version, args.model)
    )
    for experiment_id, arms in result.experiment_counts.items():
        per_arm = ", ".join(f"{arm} {accounts:,}" for arm, accounts in arms.items())
        print(f"[score] experiment {experiment_id} ({args.experiments}): {per_arm}")
    for table in result.scored_without:
        print(
            f"[score] WARNING: scored without {table}, which the model was trained with "
            "(--allow-missing-table): its features are missing, recorded in the manifest",
            file=sys.stderr,
        )
    stage_seconds = {"load model and rules": loaded_seconds, **result.stage_seconds}
    for name, seconds in stage_seconds.items():
        print(f"  {name:<50} {seconds:8.1f} s")
        if name.startswith("features, scores") and result.step_seconds:
            if result.workers > 1:
                print(f"    (in {result.workers} workers at once: their steps' seconds added up)")
            for step, step_time in result.step_seconds.items():
                print(f"    {step:<48} {step_time:8.1f} s")
    print(f"  result: {result.current} (manifest {result.manifest_path})")
    if args.capacity is not None:
        report_capacity(args, result.as_of)
    return 0


def report_capacity(args: argparse.Namespace, as_of: object) -> None:
    """Print the published decisions' planned agent calls and field visits (one month of
    their ladders) against ``--capacity``; a WARNING line on stderr for each one over it."""
    from datetime import date

    from rollrisk.arguments import date_settings
    from rollrisk.storage.atomic_output import read_current
    from rollrisk.storage.loader import load_portfolio
    from rollrisk.strategies.capacity import (
        capacity_for_book,
        load_capacity,
        load_lines,
        planned_load,
    )

    settings = load_capacity(args.capacity)
    _, scored = read_current(args.out)
    statements = actions = None
    if settings.needs_log:
        portfolio = load_portfolio(args.data, dates=date_settings(args))
        statements, actions = portfolio.statements, portfolio.collection_actions
    day = as_of if isinstance(as_of, date) else date.fromisoformat(str(as_of)[:10])
    capacity = capacity_for_book(settings, statements, actions, day, scored.height)
    print(
        f"[score] contact capacity: {capacity.agent_calls_per_day:,} agent calls a day "
        f"({capacity.agent_calls_per_month:,} a month), {capacity.field_visits_per_month:,} "
        f"field visits a month ({capacity.sizing})"
    )
    for line in load_lines(planned_load(scored["actions"].to_list()), capacity):
        print(f"[score] {line}", file=sys.stderr if line.startswith("WARNING") else sys.stdout)
