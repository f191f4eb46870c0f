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
features missing rather than failing.

Output: a Parquet file at --out with account_id, as_of, product, start_bucket,
rolled_to_default and one column per feature, validated against its schema, and a summary
per as-of on stdout (population, labelled, positives, roll rate, exclusions).

examples:
  rollrisk build-training-set --data runs/portfolio --out runs/training_set.parquet
  rollrisk build-training-set --data runs/portfolio --out ts.parquet --as-of 2024-06-30 --as-of 2024-07-31
  rollrisk build-training-set --data cards/ --out ts30.parquet --default-dpd 30 --window-months 6
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
from pandera.errors import SchemaError, SchemaErrors
from tqdm import tqdm

from rollrisk.errors import UserError
from rollrisk.features.observations import ObservationSpec, eligible_as_of_dates
from rollrisk.features.registry import FEATURE_SET
from rollrisk.features.training_set import (
    TrainingSetBuild,
    build_training_set,
    validate_training_set,
)
from rollrisk.storage.config import RollriskConfig, load_config
from rollrisk.storage.loader import Portfolio, load_portfolio


def _as_of_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from error


def add_observation_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that define an observation, shared by every command that builds observations."""
    group = parser.add_argument_group("observation (override the config's `observation:`)")
    group.add_argument("--default-dpd", type=int, default=None, metavar="N",
                       help="DPD at or above which an account has defaulted (config default 90)")  # fmt: skip
    group.add_argument("--window-months", type=int, default=None, metavar="N",
                       help="performance window after the as-of month, in months (config default 3)")  # fmt: skip
    group.add_argument("--min-dpd", type=int, default=None, metavar="N",
                       help="lowest DPD at the as-of to be in the population (config default 1)")  # fmt: skip
    group.add_argument("--max-dpd", type=int, default=None, metavar="N",
                       help="highest DPD at the as-of to be in the population (config default 89)")  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="portfolio folder (see docs/data-contract.md)")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="Parquet file to write the training set to")  # fmt: skip
    parser.add_argument(
        "--as-of",
        type=_as_of_date,
        action="append",
        default=None,
        metavar="DATE",
        help="a month-end as-of date (repeatable); default: every eligible month-end",
    )
    parser.add_argument("--config", type=Path, default=None, help="YAML config (default: conf/default.yaml)")  # fmt: skip
    add_observation_arguments(parser)


def observation_spec_from_args(args: argparse.Namespace, config: RollriskConfig) -> ObservationSpec:
    """The config's ``observation:`` section, overridden by any flag given."""
    spec = ObservationSpec.from_mapping(config.observation, source=f"config file {config.source}")
    return spec.with_overrides(
        default_dpd=getattr(args, "default_dpd", None),
        window_months=getattr(args, "window_months", None),
        min_dpd=getattr(args, "min_dpd", None),
        max_dpd=getattr(args, "max_dpd", None),
    )


def build_from_portfolio(
    portfolio: Portfolio, spec: ObservationSpec, as_of_dates: list[date] | None
) -> TrainingSetBuild:
    """Build (with a progress bar) for the given as-of dates, or for every eligible one."""
    if as_of_dates is None:
        as_of_dates = eligible_as_of_dates(portfolio.statements, spec)
        if not as_of_dates:
            raise UserError(
                f"{portfolio.report.data_dir}: no month-end has both statements known before it "
                f"and a complete {spec.window_months}-month performance window after it; "
                "the history is too short (shorten --window-months or add months)"
            )
    with tqdm(total=len(as_of_dates), desc="as-of dates", unit="as-of", file=sys.stderr) as bar:
        return build_training_set(
            portfolio.accounts,
            portfolio.statements,
            as_of_dates,
            spec,
            collection_actions=portfolio.collection_actions,
            treatments=portfolio.treatments,
            on_as_of_done=lambda _: bar.update(),
        )


def training_set_from_args(
    args: argparse.Namespace,
    portfolio: Portfolio | None = None,
    config: RollriskConfig | None = None,
) -> pl.DataFrame:
    """The validated training set for a job's arguments (used by `rollrisk train` too)."""
    config = config if config is not None else load_config(getattr(args, "config", None))
    portfolio = portfolio if portfolio is not None else load_portfolio(args.data)
    spec = observation_spec_from_args(args, config)
    built = build_from_portfolio(portfolio, spec, getattr(args, "as_of", None))
    return _validated(built.training_set)


def _validated(frame: pl.DataFrame) -> pl.DataFrame:
    try:
        return validate_training_set(frame)
    except (SchemaError, SchemaErrors) as error:  # a bug, not a user error: say so plainly
        raise RuntimeError(f"the built training set breaks its own schema: {error}") from error


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


def _write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Write next to the target and rename, so a killed run never leaves a half file at --out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    frame.write_parquet(temporary)
    os.replace(temporary, path)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    config = load_config(args.config)
    spec = observation_spec_from_args(args, config)
    print(f"reading {args.data} ...", file=sys.stderr)
    portfolio = load_portfolio(args.data)
    if portfolio.report.rows_rejected:
        print(
            f"note: {portfolio.report.rows_rejected:,} rows set aside by the data contract "
            "(run `rollrisk validate` for details)",
            file=sys.stderr,
        )
    for table in portfolio.report.absent_optional:
        print(f"note: no {table} table: its features are left missing", file=sys.stderr)
    built = build_from_portfolio(portfolio, spec, args.as_of)
    training_set = _validated(built.training_set)
    _write_parquet(training_set, args.out)
    print(
        f"observation: population DPD {spec.min_dpd}-{spec.max_dpd}, default = DPD >= "
        f"{spec.default_dpd} within {spec.window_months} months; feature set "
        f"{FEATURE_SET.name} v{FEATURE_SET.version} ({len(FEATURE_SET.features)} features)"
    )
    print(format_summary(built.summary))
    print(
        f"wrote {training_set.height:,} rows x {training_set.width} columns to {args.out} "
        f"({time.perf_counter() - started:.1f} s)"
    )
    return 0
