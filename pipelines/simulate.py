"""Write a simulated, contract-valid portfolio folder, plus the hidden truth behind it.

The simulator is a causal model of a consumer lender's book (docs/simulator.md): five products
(bnpl, credit_card, cash_loan, merchant_loan, agri_loan), latent borrower drivers (healthy,
capacity_shock, low_willingness, unreachable, forgetful, seasonal), a macro cycle, harvest and
sales seasons, regional shocks, a baseline tiered collection policy with a 5% holdout, and
treatments. Delinquency rolls month by month and responds to the actions taken. The book is
open: accounts are booked during the window, instalment lines are paid off or prepaid and
close, card and BNPL accounts are closed by their borrowers; --accounts counts every account
ever on the book in the window (each has at least one statement), and bookings keep the active
book about level (about 63% of the accounts are on it at the first month; docs/simulator.md,
"An open book").

Output (DIR = --out):
  DIR/accounts.parquet                       one row per account (opened_at: when it was booked)
  DIR/statements/part-NNNNN.parquet          monthly statements from each account's first to its
                                             last (closed: balance 0), one part per chunk
  DIR/collection_actions/part-NNNNN.parquet  every action with its outcome
  DIR/treatments/part-NNNNN.parquet          grace periods, waivers, restructures, extensions
  DIR/experiment_assignments/part-NNNNN.parquet  the lender's experiment: arm and propensity
                                             per eligible account-month (with --explore-share > 0)
  DIR/experiments.yaml                       that experiment, in the experiment-file format
  DIR/truth/borrowers.parquet                latent driver, region, shock onset (never a feature)
  DIR/truth/params.json                      every simulator parameter, the seed, the world
  DIR/truth/replay_state/YYYY-MM.npz         the simulator's state of the accounts delinquent
                                             at each of the last two month-ends (or the
                                             month-end before), so that
                                             simulate-policy there need not re-simulate

Exploration: like a real lender, the simulated one runs a champion/challenger test so that
a policy can be learnt from its history (`rollrisk learn-policy`). Each month a share
(--explore-share, default 0.10) of the accounts it would collect in M1-M3 (not paused by a
treatment, not in the holdout) gets, instead of the tiered actions, the ladder of one
treatment of --exploration-policy (equal weights; the treatments that keep the standard queue
are the control, not arms); an account keeps its arm. Arms are drawn by
the product's hash of experiment and account id, never from the simulator's random streams, so
--explore-share 0 writes exactly what a simulator without exploration writes.
docs/simulator.md, "Exploration".

Borrowers in M2 or worse sometimes pay part of their arrears and move back one bucket
(partial cures), and a promise to pay is kept (paid by its date, at least the promised
amount) or broken (no arrears paid, a higher roll risk) at a rate by driver; docs/simulator.md,
"Partial cures and promises".

Stress (--stress, default none = the same files as without the flag): 'regional' puts 30% of
the most populous latent region's accounts into a capacity shock from window month
--stress-start for --stress-months; 'macro' raises every account's macro logit by 0.5 for
those months. The scenario is recorded in truth/params.json, and simulate-policy on the
stressed portfolio replays the same world. docs/simulator.md, "Stress scenarios".

The same --seed always writes the same files. Examples:
  rollrisk simulate --accounts 20000 --months 24 --seed 7 --out runs/portfolio
  rollrisk validate --data runs/portfolio
  rollrisk simulate --accounts 20000 --seed 7 --stress regional --stress-start 12 --out runs/stress
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path

from tqdm import tqdm

from rollrisk.conf import DEFAULT_POLICY
from rollrisk.errors import UserError
from rollrisk.features.dates import end_of_month
from rollrisk.simulator.engine import latest_day_after_cycle_end, output_paths, write_portfolio
from rollrisk.simulator.exploration import DEFAULT_SHARE, exploration_from_policy
from rollrisk.simulator.rules import (
    PRIMARY_RESPONSES,
    RESPONSE_TABLES,
    STRESS_KINDS,
    SimulationRules,
    StressRules,
)
from rollrisk.strategies.policy import load_policy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--accounts",
        type=int,
        default=20_000,
        help="accounts ever on the book in the window (some are booked, some close during it)",
    )
    parser.add_argument(
        "--months", type=int, default=24, help="months in the window (the statement months)"
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (same seed, same files)")
    parser.add_argument("--out", type=Path, required=True, help="output portfolio folder")
    parser.add_argument(
        "--start-month", default="2024-01", help="month of the first statement (YYYY-MM)"
    )
    parser.add_argument(
        "--format", choices=("parquet", "csv"), default="parquet", help="file format of the tables"
    )
    parser.add_argument(
        "--response-table",
        choices=RESPONSE_TABLES,
        default=PRIMARY_RESPONSES,
        help="how borrowers respond to contacts and treatments: the primary tables of "
        "simulator/rules.py, or one of the scaled draws kept against circularity (each effect "
        "x a factor drawn in [0.5, 1.5]; docs/simulator.md, 'Response tables'); recorded in "
        "truth/params.json (default primary)",
    )
    parser.add_argument(
        "--stress",
        choices=STRESS_KINDS,
        default="none",
        help="a stress scenario from window month --stress-start for --stress-months months: "
        "'regional', a disaster in the most populous (latent) region that puts "
        f"{StressRules().regional_share:.0%}% of its accounts into a capacity shock (less ability "
        "to pay, rising utilisation); 'macro', a downturn that raises every roll logit by "
        f"{StressRules().macro_shift} (cure logits fall by half of it). Recorded in "
        "truth/params.json, which simulate-policy reads back to replay the same world; 'none' "
        "(default) writes the same files as before the flag existed",
    )
    parser.add_argument(
        "--stress-start",
        type=int,
        default=StressRules().start_month,
        help="window month the stress begins (0 = --start-month; default %(default)s)",
    )
    parser.add_argument(
        "--stress-months",
        type=int,
        default=StressRules().months,
        help="how many months the stress lasts (default %(default)s)",
    )
    parser.add_argument(
        "--explore-share",
        type=float,
        default=DEFAULT_SHARE,
        help="share of the accounts the lender randomises into its experiment: each month an "
        "eligible one (M1-M3, collection not paused, not in the holdout) gets its arm's ladder "
        "instead of the tiered actions; logged in experiment_assignments with propensities "
        f"(0 = no experiment, the files of a lender that never explores; default {DEFAULT_SHARE})",
    )
    parser.add_argument(
        "--exploration-policy",
        type=Path,
        default=None,
        help="policy file whose treatments are the experiment's arms, all of them with equal "
        "weight, except those that keep the account in the standard queue (the control; the "
        "shipped conf/policy.yaml, the default, gives 11 arms of its 14 treatments)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the tables and truth/ of an existing portfolio in --out",
    )


def run(args: argparse.Namespace) -> int:
    if args.accounts < 1:
        raise UserError(f"--accounts must be at least 1, got {args.accounts}")
    if not 1 <= args.months <= 240:
        raise UserError(f"--months must be between 1 and 240, got {args.months}")
    if args.seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {args.seed}")
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", args.start_month):
        raise UserError(f"--start-month must look like 2024-01 (YYYY-MM), got {args.start_month!r}")
    first_year = int(args.start_month[:4])
    last_year = first_year + (int(args.start_month[5:]) - 1 + args.months - 1) // 12
    if first_year < 1900 or last_year > 2199:
        raise UserError(
            f"--start-month {args.start_month} with --months {args.months}: the history must "
            f"lie between 1900 and 2199 (it would run to {last_year})"
        )
    days_after = latest_day_after_cycle_end(SimulationRules())
    future = _future_warning(args.start_month, args.months, date.today(), days_after)
    if future is not None:
        print(future, file=sys.stderr)
    if not 0 <= args.explore_share < 1:
        raise UserError(
            f"--explore-share must be at least 0 and below 1 (the tiered lender keeps the "
            f"rest), got {args.explore_share}"
        )
    if args.stress == "none" and (
        args.stress_start != StressRules().start_month or args.stress_months != StressRules().months
    ):
        raise UserError("--stress-start and --stress-months need --stress regional or macro")
    if args.stress_months < 1:
        raise UserError(f"--stress-months must be at least 1, got {args.stress_months}")
    if args.stress != "none" and not 0 <= args.stress_start < args.months:
        given = args.stress_start != StressRules().start_month
        raise UserError(
            f"--stress-start must be a window month, 0 to {args.months - 1}, got "
            f"{args.stress_start}"
            + (
                ""
                if given
                else f" (its default: with --months {args.months}, give --stress-start too)"
            )
        )
    stress = StressRules(args.stress, start_month=args.stress_start, months=args.stress_months)
    exploration = None
    if args.explore_share > 0:
        path = args.exploration_policy or DEFAULT_POLICY
        exploration = exploration_from_policy(
            load_policy(path),
            args.explore_share,
            source="conf/policy.yaml (shipped)" if args.exploration_policy is None else str(path),
        )
    elif args.exploration_policy is not None:
        raise UserError("--exploration-policy needs --explore-share above 0")
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise UserError(
            f"--out {out} is not empty; choose an empty folder or pass --overwrite "
            "to replace the portfolio in it"
        )
    out.mkdir(parents=True, exist_ok=True)
    # written beside --out first, then moved in: an interrupted run leaves the portfolio that
    # was there as it was (and no half-written one)
    staged = out.parent / f".{out.name}.simulating-{os.getpid()}"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir()

    def progress(chunks: Iterable[int], total: int) -> Iterable[int]:
        return tqdm(chunks, total=total, desc="simulate", unit="chunk", file=sys.stderr)

    try:
        summary = write_portfolio(
            staged,
            args.accounts,
            args.months,
            args.seed,
            start_month=args.start_month,
            file_format=args.format,
            rules=SimulationRules(response_table=args.response_table, stress=stress),
            progress=progress,
            exploration=exploration,
        )
        for path in output_paths(out):  # the earlier portfolio's files (--overwrite)
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        for path in staged.iterdir():
            path.rename(out / path.name)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    print(f"simulated {summary.accounts:,} accounts x {summary.months} months -> {out}")
    for table, rows in summary.rows.items():
        print(f"  {table:<20} {rows:>12,} rows")
    if exploration is not None:
        print(
            f"  experiments.yaml     {exploration.experiment_id}: {exploration.share:.0%} "
            f"randomised across {len(exploration.arms)} treatments of {exploration.policy_source}"
        )
    print(
        "  truth/               borrowers.parquet, params.json, replay_state/ (never read by "
        "models)"
    )
    print(f"  {summary.seconds:.1f} s")
    if future is not None:  # said again, after the progress bar
        print(future, file=sys.stderr)
    return 0


def _future_warning(start_month: str, months: int, today: date, days_after: int) -> str | None:
    """A warning when the simulated history is dated after ``today`` (its rows are dated up to
    ``days_after`` days after the last month's end): every job rejects rows dated after the
    day the data was extracted (today unless ``--extract-date`` says otherwise), so such a
    portfolio fails validation unless the jobs are told the later extract date. None when the
    history ends in time."""

    def dated_until(month: int) -> date:  # month: months since year 0
        return end_of_month(date(month // 12, month % 12 + 1, 1)) + timedelta(days=days_after)

    year, month = map(int, start_month.split("-"))
    last = year * 12 + month - 1 + months - 1
    if dated_until(last) <= today:
        return None
    latest = today.year * 12 + today.month - 1  # the latest month whose rows are all dated
    while dated_until(latest) > today:
        latest -= 1
    first = latest - (months - 1)
    return (
        f"WARNING: the simulated months run to {last // 12:04d}-{last % 12 + 1:02d} and their "
        f"rows are dated up to {dated_until(last)}, after today ({today}): every job rejects "
        "rows dated after the day the data was extracted (today unless --extract-date says "
        f"otherwise), so give the jobs --extract-date {dated_until(last)} or later, or simulate "
        f"months whose rows are all dated by today (--start-month {first // 12:04d}-"
        f"{first % 12 + 1:02d} or earlier for {months} months)"
    )
