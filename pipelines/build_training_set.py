"""Build a training set: delinquent accounts at month-end as-of dates, their point-in-time
features and whether they rolled to default within the performance window.

An observation is (account, as-of). The population at an as-of is every account whose DPD on
its latest statement known at that as-of is in [--min-dpd, --max-dpd] (default 1-89). The
label rolled_to_default is 1 when the account reaches --default-dpd (default 90) or more on a
statement in the --window-months (default 3) calendar months after the as-of month. Features
use only records known by the end of the as-of day (statements and treatments by known_at,
actions by action_at); the feature set and every definition are in docs/features.md.

By default every month-end with history before it and a complete performance window is used;
--as-of picks dates instead (repeat it). Observations whose window is not complete yet, or
with no statement at all in the window (closed / stopped reporting), are excluded and counted
in the summary. The defaults come from the `observation:` section of the config file; the
flags override them. Missing optional tables (collection_actions, treatments) leave their
features missing rather than failing, and the job says so. Rows the data contract rejects are
counted by table and by account on stderr and listed in OUT_STEM.rejects.csv beside --out;
above --max-reject-rate (default 1%) of a table's rows or of the accounts the job stops.

--engine spark reads, validates and builds per account partition on Spark's executors (the
same rows, rejects and summary; docs/spark.md), and the executors write the rows: --out is
then a folder of Parquet parts (part-NNNNN.parquet, one per account partition, and
manifest.json), published in one rename once every part is in. `rollrisk train` and
`evaluate` read either form with --training-set (a folder's rows sorted as the file's).
Training stays on one machine.

Output: a Parquet file at --out (a folder of parts with --engine spark) with account_id, as_of,
product, start_bucket, rolled_to_default and one column per feature, validated against its
schema, and a summary per as-of on stdout (population, labelled, positives, roll rate,
exclusions).

examples:
  rollrisk build-training-set --data runs/portfolio --out runs/training_set.parquet
  rollrisk build-training-set --data runs/portfolio --out ts.parquet --as-of 2024-06-30 --as-of 2024-07-31
  rollrisk build-training-set --data cards/ --out ts30.parquet --max-dpd 29 --default-dpd 30 --window-months 6
  rollrisk build-training-set --data runs/portfolio --out runs/training_set.parquet --engine spark
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from rollrisk.arguments import (
    add_config_argument,
    add_data_argument,
    add_observation_arguments,
    as_of_date,
    load_config_argument,
    observation_spec,
)
from rollrisk.errors import UserError

if TYPE_CHECKING:
    from rollrisk.features.observations import ObservationSpec
    from rollrisk.scoring.spark_engine import TrainingSetWritten
    from rollrisk.storage.config import RollriskConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_argument(parser)
    parser.add_argument("--out", type=Path, required=True, help="Parquet file to write the training set to (--engine spark: a folder of Parquet parts)")  # fmt: skip
    parser.add_argument(
        "--as-of",
        type=as_of_date,
        action="append",
        default=None,
        metavar="DATE",
        help="a month-end as-of date (repeatable); default: every eligible month-end",
    )
    add_config_argument(parser)
    add_observation_arguments(parser)
    parser.add_argument(
        "--engine",
        choices=("local", "spark"),
        default="local",
        help="local: this process; spark: read, validate and build per account partition on "
        "Spark's executors, which write --out as a folder of parts (same rows; docs/spark.md)",
    )


def format_summary(summary: pl.DataFrame) -> str:
    header = (
        f"{'as_of':<10}  {'population':>10}  {'labelled':>9}  {'positives':>9}  "
        f"{'roll rate':>9}  {'excl. incomplete':>16}  {'excl. no outcome':>16}"
    )
    lines = [header]
    for row in summary.iter_rows(named=True):
        rate = "-" if row["roll_rate"] is None else f"{row['roll_rate']:.1%}"
        lines.append(
            f"{row['as_of'].isoformat():<10}  {row['population']:>10,}  {row['labelled']:>9,}  "
            f"{row['positives'] or 0:>9,}  {rate:>9}  {row['excluded_incomplete_window']:>16,}  "
            f"{row['excluded_no_outcome']:>16,}"
        )
    totals: dict[str, Any] = summary.select(
        pl.col("population", "labelled", "positives", "excluded_incomplete_window",
               "excluded_no_outcome").sum()
    ).row(0, named=True)  # fmt: skip
    rate = totals["positives"] / totals["labelled"] if totals["labelled"] else None
    lines.append(
        f"{'total':<10}  {totals['population']:>10,}  {totals['labelled']:>9,}  "
        f"{totals['positives'] or 0:>9,}  {'-' if rate is None else f'{rate:.1%}':>9}  "
        f"{totals['excluded_incomplete_window']:>16,}  {totals['excluded_no_outcome']:>16,}"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from rollrisk.api import build_training_set_with_summary
    from rollrisk.arguments import check_output_argument, load_portfolio_argument
    from rollrisk.features.dates import default_as_of_choice
    from rollrisk.features.observations import partial_months_note
    from rollrisk.features.registry import FEATURE_SET
    from rollrisk.features.training_set import nothing_labelled
    from rollrisk.storage.tracking import fingerprint_files
    from rollrisk.storage.training_sets import check_training_set_target, write_training_set

    check_output_argument(args)
    check_training_set_target(args.out)  # before the build: never delete a folder given by mistake
    if args.engine == "local":
        _check_local_target(args.out)
    started = time.perf_counter()
    config = load_config_argument(args)
    spec = observation_spec(args, config)
    # the rejected rows beside the training set (a stale list from an earlier run is removed)
    rejects = args.out.with_name(f"{args.out.stem}.rejects.csv")
    rejects.unlink(missing_ok=True)
    if args.engine == "spark":
        written = _build_on_spark(args, rejects, config, spec)
        summary, rows, columns = written.summary, written.rows, written.columns
        partial = written.partial_months
    else:
        portfolio, _ = load_portfolio_argument(args, "build-training-set", rejects, config)
        partial = partial_months_note(default_as_of_choice(portfolio.statements))
        built = build_training_set_with_summary(portfolio, args.as_of, spec, progress=True)
        if built.training_set.height == 0:
            print(format_summary(built.summary))
            raise UserError(
                nothing_labelled(
                    args.data, args.as_of, built.summary, "nothing was written", **_FLAG_NAMES
                )
            )
        portfolio_record = {"folder": str(args.data), "fingerprint": fingerprint_files(args.data)}
        write_training_set(built.training_set, args.out, spec, portfolio_record)
        summary, rows, columns = built.summary, *built.training_set.shape
    print(
        f"observation: population DPD {spec.min_dpd}-{spec.max_dpd}, default = DPD >= "
        f"{spec.default_dpd} within {spec.window_months} months; feature set "
        f"{FEATURE_SET.name} v{FEATURE_SET.version} ({len(FEATURE_SET.features)} features)"
    )
    print(format_summary(summary))
    if partial:
        print(f"warning: {partial}", file=sys.stderr)
    if rows == 0:  # the Spark build's executors have written their (empty) parts
        raise UserError(
            nothing_labelled(
                args.data, args.as_of, summary, f"{args.out} holds no row", **_FLAG_NAMES
            )
        )
    print(
        f"wrote {rows:,} rows x {columns} columns to {args.out} "
        f"({time.perf_counter() - started:.1f} s)"
    )
    return 0


def _check_local_target(out: Path) -> None:
    """The local build writes one Parquet file: an existing empty folder (a file would replace
    it, where the user meant a file inside it) or a name of another format is refused."""
    if out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
        raise UserError(
            f"--out {out} is an empty folder: the local build writes one Parquet file; give a "
            f"file such as {out / 'training_set.parquet'} (--engine spark writes a folder)"
        )
    if not out.is_dir() and out.suffix.lower() not in (".parquet", ".pq", ".parq"):
        raise UserError(
            f"--out {out}: the training set is written as Parquet; give a name ending in "
            f".parquet, e.g. {out.with_suffix('.parquet')}"
        )


# what the refusal of an empty training set calls the dates and the window here
_FLAG_NAMES = {"as_of_name": "--as-of", "window_name": "--window-months"}


def _build_on_spark(
    args: argparse.Namespace, rejects: Path, config: RollriskConfig, spec: ObservationSpec
) -> TrainingSetWritten:
    """Validate, build and write on Spark; the same messages and limit as the local read."""
    import sys

    from rollrisk.api import write_training_set_on_spark
    from rollrisk.arguments import date_settings, report_rejects
    from rollrisk.scoring.spark_engine import spark_portfolio

    job = "build-training-set"
    print(f"[{job}] validating portfolio {args.data} on Spark", file=sys.stderr, flush=True)
    with spark_portfolio(args.data, rejects, date_settings(args)) as book:
        report_rejects(args, job, book.rejects, book.report.absent_optional, rejects, config)
        return write_training_set_on_spark(book, args.out, args.as_of, spec)
