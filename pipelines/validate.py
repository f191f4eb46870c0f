"""Check a portfolio folder against the data contract (docs/data-contract.md).

Every violation is reported with its table, file, row, key and what was expected. Bad rows
are written to a rejects CSV (one line per rejected row: table, file, row, key, reasons);
the counts reconcile: rows read = accepted + rejected, per table. The rejects are also counted
by account (an account with a rejected row in any table; lost entirely when nothing usable is
left of it) and held against --max-reject-rate (default 1%, or the --config file's
data.max_reject_rate): above it, every other job stops
on this portfolio, and validate says so. An account's statements are kept whole or not at
all: a statement rejected for its values sets aside the account's others too. Exit code 0 when the
portfolio is clean, 1 when rows were rejected or files could not be read, 2 when the folder
cannot be checked at all (missing, a required table absent, a table given twice, a --rejects
path holding another file): the error names the cause, and the other files are not checked
until it is fixed.

example:
  rollrisk validate --data runs/demo/portfolio
  rollrisk validate --data lender_dump/ --rejects lender_dump.rejects.csv
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import sys
import time
from pathlib import Path

from rollrisk.arguments import (
    add_config_argument,
    add_data_argument,
    check_output_argument,
    date_settings,
    load_config_argument,
    max_reject_rate,
)
from rollrisk.errors import UserError
from rollrisk.features.validation import REJECT_SCHEMA
from rollrisk.storage.atomic_output import publish_file
from rollrisk.storage.loader import ValidationReport, validate_portfolio
from rollrisk.storage.rejects import account_rejects


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_argument(parser, help="portfolio folder to check")
    parser.add_argument(
        "--rejects",
        type=Path,
        default=None,
        help="where to write the rejects CSV, replaced whole, removed when the portfolio is clean; "
        "an existing file that is not a rejects CSV is refused, never replaced "
        "(default: runs/validate/<folder name>-<8 hex digits of its path>/rejects.csv, so that two "
        "folders of the same name keep their own)",
    )
    add_config_argument(
        parser,
        help="YAML config: its data.max_reject_rate is the limit the rejects are held against, "
        "as in the other jobs given the same --config (default: the shipped conf/default.yaml; "
        "--max-reject-rate overrides it)",
    )


def run(args: argparse.Namespace) -> int:
    rejects = args.rejects or default_rejects_path(args.data)
    config = load_config_argument(args)  # a bad file is refused before the portfolio is read
    check_output_argument(args, "--rejects", rejects)
    _check_replaceable(rejects)
    started = time.perf_counter()
    print(f"validating {args.data} ...", file=sys.stderr)
    staged = rejects.with_name(f".{rejects.name}.{os.getpid()}.tmp")
    portfolio = validate_portfolio(args.data, rejects_path=staged, dates=date_settings(args))
    report = _publish_rejects(portfolio.report, staged, rejects)
    print(report.summary())
    if report.rows_rejected:
        # what the other jobs would say of these rejects: by account, and against the limit
        limit = max_reject_rate(args, config)
        source = (
            f"data.max_reject_rate of {args.config}; --max-reject-rate overrides it"
            if args.config is not None and args.max_reject_rate is None
            else "--max-reject-rate"
        )
        accounting = account_rejects(portfolio)
        print(f"  {accounting.accounts_line()}")
        over = accounting.over(limit)
        print(
            f"  ABOVE the reject limit of {limit:.2%} ({source}): every other job "
            f"stops on this portfolio ({'; '.join(over)})"
            if over
            else f"  within the reject limit of {limit:.2%} ({source}): other jobs "
            "set these rows aside and go on, saying so"
        )
    seconds = time.perf_counter() - started
    if report.ok:
        print(f"OK: no rejects, no file errors ({seconds:.1f} s)")
        return 0
    print(
        f"NOT CLEAN: {report.rows_rejected:,} rows rejected, "
        f"{len(report.file_errors)} file error(s) ({seconds:.1f} s)"
    )
    return 1


def default_rejects_path(data: Path) -> Path:
    """``runs/validate/<folder name>-<8 hex digits of its real path>/rejects.csv``: two
    portfolios of the same name (``a/portfolio``, ``b/portfolio``) keep their own rejects, and
    a clean one never removes the other's."""
    real = os.path.realpath(data)
    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return Path("runs") / "validate" / f"{Path(real).name}-{digest}" / "rejects.csv"


def _check_replaceable(path: Path) -> None:
    """Refuse a ``--rejects`` path that holds a file other than a rejects CSV: validate
    replaces that file, or removes it when the portfolio is clean."""
    if not path.exists():
        return
    header = ",".join(REJECT_SCHEMA)
    try:
        with path.open("rb") as handle:
            first = (
                handle.readline(len(header) + 2).decode("utf-8", errors="replace").rstrip("\r\n")
            )
    except OSError as error:
        raise UserError(f"--rejects {path}: cannot read it ({error})") from None
    if path.is_dir() or first != header:
        raise UserError(
            f"--rejects {path}: this {'folder' if path.is_dir() else 'file'} exists and is not "
            f"a rejects CSV (its first line is not {header!r}); validate replaces the rejects "
            "file, or removes it when the portfolio is clean: give another path"
        )


def _publish_rejects(report: ValidationReport, staged: Path, final: Path) -> ValidationReport:
    """Make the rejects written to ``staged`` visible as ``final`` in one step (a killed run
    leaves the previous file whole), or, on a portfolio without rejects, remove a ``final``
    an earlier run left (it would describe other data). Returns the report naming ``final``."""
    if staged.exists():
        publish_file(staged, final)
        return dataclasses.replace(report, rejects_path=final)
    final.unlink(missing_ok=True)
    return report
