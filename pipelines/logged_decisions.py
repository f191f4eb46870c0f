"""Build the logged-decisions table `rollrisk learn-policy` learns from, from a portfolio's history.

The portfolio must carry the record of its experiments, the optional `experiment_assignments`
table (account_id, as_of, experiment_id, arm, propensity; docs/data-contract.md). For every
as-of of that record whose horizon (--horizon months) the portfolio's statements cover, the
accounts with an assignment row are scored at that as-of with the scoring core `rollrisk
score` runs (same model flags, same features, probability, risk band, segment, driver-family
contributions), and each decision's outcome is measured from what the portfolio recorded after
it (never from a simulator's truth/):

  book_value = payments on the horizon's statements
             - actions x the channel's cost - treatments granted x the kind's cost (--costs)
             - the agency's commission on the payments of cycles with an agency assignment
             + the balance owed at the horizon's last statement x its bucket's value share

The value share of a bucket is the share of the balance this portfolio recovered within 12
months after accounts first reached that bucket's DPD (a restructure plan in force: the share
its own plans kept), the valuation `rollrisk simulate-policy` uses (docs/strategies.md,
"Logged decisions", says where the two definitions differ).

Every assignment row is kept or set aside with a reason, counted on stderr and in the summary:
  horizon_incomplete          the statements end before the as-of's horizon does
  account_horizon_incomplete  the account lacks a statement in a month of the horizon
  not_scored                  not in the scoring population at the as-of
  several_experiments         the account is in more than one experiment at that as-of

Writes (each complete or not at all):
  OUT                       the table (Parquet): account_id, as_of, experiment_id, arm,
                            bundle (the arm; `policy` -> standard_queue; with
                            --experiments, the bundle the file's arm gives), policy_bundle
                            (standard_queue), propensity, book_value and its parts, the rule
                            features (start_bucket, risk_band, segment, product, dpd,
                            amount_overdue, family_*) and model features (probability,
                            exposure, expected_loss), the scored policy's own treatment
  OUT.summary.json          counts (per reason, per as-of, per bundle), settings, valuation,
                            the portfolio's fingerprint and the policy's risk bands (which
                            learn-policy checks its --policy against)
  OUT.set_aside.csv         the assignment rows not kept, with reason and detail
  OUT.rejects.csv           input rows the data contract set aside (when there are any)

example (the chain from a simulated lender to a learned policy):
  rollrisk simulate --accounts 60000 --months 24 --out runs/history
  rollrisk build-training-set --data runs/history --out runs/history_training.parquet
  rollrisk train --data runs/history --training-set runs/history_training.parquet
  rollrisk logged-decisions --model models:/rollrisk-roll-to-default@challenger \\
      --data runs/history --horizon 6 --out runs/history_logged.parquet
  rollrisk learn-policy --logged runs/history_logged.parquet \\
      --experiments runs/history/experiments.yaml \\
      --rule-features start_bucket,segment --model-features probability,dpd --out runs/learned
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rollrisk.arguments import add_data_argument, add_scoring_arguments
from rollrisk.conf import DEFAULT_COSTS
from rollrisk.errors import UserError

DEFAULT_HORIZON = 6
VALUATION_MONTHS = 12  # the recovery curve's horizon, as simulate-policy's valuation


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_scoring_arguments(parser)  # --model, --config, --policy, ... as `score` takes them
    add_data_argument(parser, help="portfolio folder with an experiment_assignments table")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/logged_decisions.parquet"),
        help="the table (Parquet); the summary is written beside it as OUT.summary.json",
    )
    parser.add_argument(
        "--horizon",
        type=int,
        default=DEFAULT_HORIZON,
        help=f"statement cycles after the as-of the outcome covers (default {DEFAULT_HORIZON}, "
        "as simulate-policy's --months); as-ofs without that many later months are set aside",
    )
    parser.add_argument(
        "--costs", type=Path, default=DEFAULT_COSTS, help="action cost table (YAML)"
    )
    parser.add_argument(
        "--costs-from",
        choices=("cycle", "as-of"),
        default="cycle",
        help="cycle (default): actions and treatments from the day after the account's last "
        "statement on or before the as-of, the cycle the decision acts in (as simulate-policy "
        "counts them); as-of: only those dated after the as-of",
    )


def _sibling(out: Path, suffix: str) -> Path:
    return out.with_name(out.name + suffix)


def _publish(final: Path, write: Any) -> None:
    """Write through ``write(path)`` to a temporary name, then rename (never a partial file)."""
    from rollrisk.storage.atomic_output import publish_file

    staged = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        write(staged)
        publish_file(staged, final)
    finally:
        staged.unlink(missing_ok=True)  # published: gone already; failed: not left behind


def run(args: argparse.Namespace) -> int:
    import polars as pl

    from rollrisk.arguments import (
        check_output_argument,
        load_config_argument,
        load_portfolio_argument,
        setup_from_arguments,
    )
    from rollrisk.models.roll_rates import BUCKETS
    from rollrisk.scoring.core import check_tables, tables_present
    from rollrisk.scoring.logged_decisions import (
        MODEL_FEATURES,
        RULE_FEATURES,
        SET_ASIDE_REASONS,
        OutcomeEconomics,
        build_logged_decisions,
    )
    from rollrisk.simulator.replay import load_action_costs, recovery_valuation
    from rollrisk.storage.tracking import fingerprint_files
    from rollrisk.strategies.experiments import ExperimentPlan, arm_bundles

    if args.horizon < 1:
        raise UserError(f"--horizon must be at least 1 month, got {args.horizon}")
    check_output_argument(args)
    if args.out.suffix.lower() != ".parquet":
        raise UserError(f"--out {args.out}: expected a .parquet file name")
    if args.out.is_dir():
        raise UserError(f"--out {args.out} is a folder: expected a .parquet file name")
    started = time.perf_counter()
    costs = load_action_costs(args.costs)
    print(f"[logged-decisions] loading model {args.model}", file=sys.stderr, flush=True)
    _, setup = setup_from_arguments(args)
    # --experiments names the bundles of the record's arms; the scoring gives each account the
    # policy's own decision (scored_treatment), as no experiment had assigned it
    bundles = arm_bundles(setup.experiments, setup.policy)
    setup = dataclasses.replace(setup, experiments=ExperimentPlan(setup.experiments.source, ()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rejects_path = _sibling(args.out, ".rejects.csv")
    # a previous run's rejects must not pass for this run's (the loader writes only when
    # there are some)
    rejects_path.unlink(missing_ok=True)
    portfolio, rejects = load_portfolio_argument(
        args, "logged-decisions", rejects_path, load_config_argument(args)
    )
    record = portfolio.experiment_assignments
    if record is None:
        table = next(
            (t for t in portfolio.report.tables if t.table == "experiment_assignments"), None
        )
        why = (
            "no experiment_assignments table"
            if table is None
            else f"an experiment_assignments table with no accepted row ({table.rows_read} "
            f"read, {table.rows_rejected} rejected"
            + (f": see {rejects_path})" if table.rows_rejected else ": a header and no row)")
        )
        raise UserError(
            f"--data {args.data}: {why}; logged decisions need the record of which arm each "
            "account was in and its propensity (columns account_id, as_of, experiment_id, "
            "arm, propensity; docs/data-contract.md)"
        )
    scored_without = check_tables(
        setup,
        tables_present(portfolio.collection_actions, portfolio.treatments),
        str(args.data),
        portfolio.empty_tables,
    )
    valuation = recovery_valuation(
        portfolio.statements, VALUATION_MONTHS, treatments=portfolio.treatments
    )
    economics = OutcomeEconomics(
        channel_costs=costs.channels,
        treatment_costs=costs.treatments,
        agency_commission=costs.agency_commission,
        value_shares=valuation.shares,
        plan_share=valuation.plan_share,
        valuation=(
            f"open balance x share of the balance recovered within {VALUATION_MONTHS} months "
            "after first reaching the bucket's DPD on this portfolio's statements (M0 at par; "
            "a restructure plan in force at the share this portfolio's plans kept)"
        ),
    )
    print(
        f"[logged-decisions] {record.height:,} assignment rows at "
        f"{record['as_of'].n_unique()} as-of dates; horizon {args.horizon} months",
        file=sys.stderr,
        flush=True,
    )

    def progress(as_of: Any, rows: int, kept: int, seconds: float) -> None:
        print(
            f"[logged-decisions] {as_of}: {rows:,} assignments, {kept:,} kept ({seconds:.1f} s)",
            file=sys.stderr,
            flush=True,
        )

    built = build_logged_decisions(
        portfolio.accounts,
        portfolio.statements,
        portfolio.collection_actions,
        portfolio.treatments,
        record,
        setup,
        economics,
        horizon=args.horizon,
        window_start="as_of" if args.costs_from == "as-of" else "cycle",
        progress=progress,
        arm_bundles=bundles,
    )
    counts = built.set_aside_counts()
    decisions = built.decisions
    print(
        f"[logged-decisions] {record.height:,} assignment rows: {decisions.height:,} kept, "
        f"{built.set_aside.height:,} set aside"
        + "".join(f"; {reason} {n:,}" for reason, n in counts.items() if n),
        file=sys.stderr,
    )
    set_aside_path = _sibling(args.out, ".set_aside.csv")
    _publish(set_aside_path, built.set_aside.write_csv)
    if not decisions.height:
        # an earlier run's table and summary would pass for this run's: removed
        for stale in (args.out, _sibling(args.out, ".summary.json")):
            stale.unlink(missing_ok=True)
        raise UserError(
            f"no assignment row of {args.data} could be kept (reasons in {set_aside_path}): "
            "nothing to write"
        )
    record_report = next(t for t in portfolio.report.tables if t.table == "experiment_assignments")
    by_bundle = (
        decisions.group_by("bundle")
        .agg(
            pl.len().alias("decisions"),
            pl.col("book_value").mean().alias("mean_book_value"),
            pl.col("propensity").mean().alias("mean_propensity"),
        )
        .sort("bundle")
    )
    summary = {
        "data": str(args.data),
        # the portfolio's files (as `rollrisk score` records them): the report ties a policy
        # learnt from this table to the portfolio it came from
        "data_fingerprint": fingerprint_files(args.data),
        "out": str(args.out),
        "model": {"uri": args.model, "name": setup.model_name, "version": setup.model_version},
        "scored_without": list(scored_without),
        # what the rule features mean: learn-policy checks its --policy's risk bands against
        # these (a band is a probability range of the scoring policy)
        "scored_with": {
            "policy": str(args.policy),
            "risk_bands": dict(setup.policy.risk_bands),
            "segments": str(args.segments),
            "experiments": str(args.experiments),
        },
        "horizon_months": args.horizon,
        "costs_from": args.costs_from,
        "costs": {
            "source": costs.source,
            "channels": dict(costs.channels),
            "treatments": dict(costs.treatments),
            "agency_commission": dict(costs.agency_commission),
        },
        "valuation": {
            "shares": {name: share for name, share in zip(BUCKETS, valuation.shares, strict=True)},
            "restructure_plan_share": valuation.plan_share,
            "months": VALUATION_MONTHS,
            "method": economics.valuation,
        },
        "assignments": {
            "rows_read": record_report.rows_read,
            "rejected_by_contract": record_report.rows_rejected,
            "rows": record.height,
            "kept": decisions.height,
            "set_aside": counts,
            "set_aside_file": str(set_aside_path),
        },
        "rejects_file": str(rejects_path) if rejects_path.exists() else None,
        "reasons": SET_ASIDE_REASONS,
        "by_as_of": built.by_as_of,
        "by_bundle": by_bundle.to_dicts(),
        "columns": {
            "rule_features": list(RULE_FEATURES),
            "model_features": list(MODEL_FEATURES),
        },
        "input_rejects": rejects.as_dict(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    _publish(args.out, decisions.write_parquet)
    summary_path = _sibling(args.out, ".summary.json")
    _publish(
        summary_path,
        lambda path: path.write_text(json.dumps(summary, indent=2, default=str) + "\n"),
    )
    print(
        f"[logged-decisions] {decisions.height:,} logged decisions written to {args.out} "
        f"({summary['seconds']} s); summary {summary_path}"
    )
    return 0
