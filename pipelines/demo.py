"""Run the whole flow end to end on a simulated portfolio, as a new user would.

Each stage is the real `rollrisk` subcommand with the arguments printed before it runs, so
the demo doubles as a worked example of the CLI:

  1. simulate            a contract-valid portfolio of N accounts x M months (+ truth/)
  2. validate            the data contract check (zero rejects expected)

Outputs go under --out (default runs/demo). MLflow tracking uses MLFLOW_TRACKING_URI when
set, else the embedded SQLite store runs/mlflow.db.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rollrisk.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accounts", type=int, default=20_000, help="accounts to simulate")
    parser.add_argument("--months", type=int, default=24, help="months of history to simulate")
    parser.add_argument("--seed", type=int, default=7, help="simulation seed")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")


def stages(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """The demo's stages as (title, rollrisk arguments)."""
    portfolio = args.out / "portfolio"
    return [
        (
            "simulate a portfolio",
            [
                "simulate",
                "--accounts", str(args.accounts),
                "--months", str(args.months),
                "--seed", str(args.seed),
                "--out", str(portfolio),
                "--overwrite",
            ],
        ),
        (
            "validate it against the data contract",
            ["validate", "--data", str(portfolio), "--rejects", str(args.out / "rejects.csv")],
        ),
    ]  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from rollrisk.cli import main  # the demo drives the real CLI

    planned = stages(args)
    started = time.perf_counter()
    for number, (title, argv) in enumerate(planned, start=1):
        print(f"\n== [{number}/{len(planned)}] {title}", flush=True)
        print(f"$ rollrisk {_quote(argv)}", flush=True)
        stage_started = time.perf_counter()
        code = main(argv)
        if code != 0:
            raise UserError(f"stage '{title}' failed with exit code {code}; see its output above")
        print(f"   ({time.perf_counter() - stage_started:.1f} s)", file=sys.stderr)
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; outputs under {args.out}")
    return 0


def _quote(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
