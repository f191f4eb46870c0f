"""Check a portfolio folder against the data contract (docs/data-contract.md).

Every violation is reported with its table, file, row, key and what was expected. Bad rows
are written to a rejects CSV (one line per rejected row: table, file, row, key, reasons);
the counts reconcile: rows read = accepted + rejected, per table. Exit code 0 when the
portfolio is clean, 1 when rows were rejected or files could not be read.

example:
  rollrisk validate --data runs/demo/portfolio
  rollrisk validate --data lender_dump/ --rejects lender_dump.rejects.csv
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rollrisk.storage.loader import validate_portfolio


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="portfolio folder to check")
    parser.add_argument(
        "--rejects",
        type=Path,
        default=None,
        help="where to write the rejects CSV (default: runs/validate/<folder name>/rejects.csv)",
    )


def run(args: argparse.Namespace) -> int:
    rejects = args.rejects or Path("runs") / "validate" / args.data.resolve().name / "rejects.csv"
    started = time.perf_counter()
    print(f"validating {args.data} ...", file=sys.stderr)
    report = validate_portfolio(args.data, rejects_path=rejects).report
    print(report.summary())
    seconds = time.perf_counter() - started
    if report.ok:
        print(f"OK: no rejects, no file errors ({seconds:.1f} s)")
        return 0
    print(
        f"NOT CLEAN: {report.rows_rejected:,} rows rejected, "
        f"{len(report.file_errors)} file error(s) ({seconds:.1f} s)"
    )
    return 1
