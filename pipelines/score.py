"""Score every delinquent account of a portfolio at an as-of date (the nightly batch job).

For each account in the population (DPD within the observation range at --as-of) it writes
the calibrated roll-to-default probability, the risk band, up to 4 reason codes (English and
Chinese), the driver-family contributions, the segment, the treatment with the trail of the
policy rule and every compliance rule that changed it, the expected loss (balance x
probability), the model name and version, and the as-of.

Output (see docs/scoring.md):
  OUT/current -> runs/<key>          the published result; swapped atomically at the end
  OUT/runs/<key>/part-NNNNN.parquet  accounts partitioned by a hash of account_id
  OUT/runs/<key>/manifest.json       counts, checksums, model URI and version, code, config
  OUT/rejects.csv                    input rows set aside by the data contract, with reasons

A run killed at any moment leaves the previous result in place; rerunning the same command
resumes, skipping finished partitions; the same inputs give byte-identical partitions.
Accounts in = scored + rejected, checked and written to the manifest.

example:
  rollrisk score --model models:/rollrisk-roll-to-default@champion \\
      --data runs/demo/portfolio --as-of 2025-12-31 --out runs/demo/scores
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import polars as pl
from tqdm import tqdm

from rollrisk import __version__
from rollrisk.errors import UserError
from rollrisk.storage.atomic_output import PartitionedRun, PartitionFile
from rollrisk.storage.registry import add_scoring_arguments
from rollrisk.storage.results import partition_rows, split_tables

ACCOUNTS_PER_PARTITION = 50_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_scoring_arguments(parser)  # --model, --config, --policy, ... shared with `serve`
    add_portfolio_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("runs/scores"), help="output folder")
    parser.add_argument(
        "--partitions",
        type=int,
        default=None,
        help=f"number of output partitions (default: one per {ACCOUNTS_PER_PARTITION:,} accounts)",
    )
    parser.add_argument(
        "--engine",
        choices=("local", "spark"),
        default="local",
        help="local: this process; spark: a PySpark job running the same code per partition",
    )


def add_portfolio_arguments(parser: argparse.ArgumentParser) -> None:
    """--data and --as-of, as every job that looks at a population at one date takes them."""
    parser.add_argument("--data", type=Path, required=True, help="portfolio folder")
    parser.add_argument(
        "--as-of",
        type=date.fromisoformat,
        default=None,
        help="observation date YYYY-MM-DD (default: the month-end of the latest statement)",
    )


def default_as_of(statements: pl.DataFrame) -> date:
    latest = statements.select(pl.col("cycle_end").max()).item()
    if latest is None:
        raise UserError("the portfolio has no statements: nothing to score")
    return pl.select(pl.lit(latest).dt.month_end()).item()


def _config_digest(paths: Sequence[Path | None]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        if path is not None and Path(path).is_file():
            digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


def run(args: argparse.Namespace) -> int:
    from rollrisk.scoring.core import population, score_accounts
    from rollrisk.storage.loader import load_portfolio
    from rollrisk.storage.registry import jurisdictions_of, setup_from_arguments
    from rollrisk.storage.tracking import fingerprint_files, git_commit

    started = time.perf_counter()
    stage_seconds: dict[str, float] = {}
    step_seconds: dict[str, float] = {}  # inside score_accounts, summed over partitions

    def stage(name: str, since: float) -> float:
        now = time.perf_counter()
        stage_seconds[name] = stage_seconds.get(name, 0.0) + now - since
        return now

    print(f"[score] loading model {args.model}", file=sys.stderr, flush=True)
    loaded, setup = setup_from_arguments(args)
    jurisdictions = jurisdictions_of(args)
    mark = stage("load model and rules", started)

    args.out.mkdir(parents=True, exist_ok=True)
    print(f"[score] loading portfolio {args.data}", file=sys.stderr, flush=True)
    portfolio = load_portfolio(args.data, rejects_path=args.out / "rejects.csv")
    as_of = args.as_of or default_as_of(portfolio.statements)
    people = population(portfolio.statements, as_of, setup.observation)
    if people.height == 0:
        raise UserError(
            f"no account of {args.data} is delinquent ({setup.observation.min_dpd}-"
            f"{setup.observation.max_dpd} DPD) at {as_of}: nothing to score"
        )
    partitions = args.partitions or max(1, -(-people.height // ACCOUNTS_PER_PARTITION))
    identity = {
        "data": fingerprint_files(args.data),
        "model_uri": args.model,
        "model_version": loaded.version,
        "as_of": as_of.isoformat(),
        "config": _config_digest([args.config, args.policy, args.segments, args.compliance]),
        "jurisdictions": sorted(jurisdictions),
        "observation": setup.observation.__dict__,
        "partitions": partitions,
        "code": __version__,
    }
    output = PartitionedRun(args.out, identity)
    mark = stage("read and validate", mark)
    if args.engine == "spark":
        try:
            from rollrisk.scoring.spark_engine import score_with_spark
        except ImportError as error:
            raise UserError(
                f"--engine spark needs PySpark and Java 17 ({error}); "
                "install it with `pip install -e '.[spark]'`"
            ) from error

        files = score_with_spark(portfolio, as_of, setup, output, partitions)
    else:
        tables = split_tables(
            {
                "accounts": portfolio.accounts,
                "statements": portfolio.statements,
                "collection_actions": portfolio.collection_actions,
                "treatments": portfolio.treatments,
            },
            partitions,
        )
        files: list[PartitionFile] = []
        skipped = 0
        for partition in tqdm(range(partitions), desc="score", unit="part", file=sys.stderr):
            if output.is_done(partition):
                files.append(output.existing_partition(partition))
                skipped += 1
                continue
            scored = score_accounts(
                partition_rows(tables["accounts"], partition),
                partition_rows(tables["statements"], partition),
                partition_rows(tables["collection_actions"], partition),
                partition_rows(tables["treatments"], partition),
                as_of,
                setup,
                timings=step_seconds,
            )
            written = time.perf_counter()
            files.append(output.write_partition(partition, scored))
            step_seconds["write"] = step_seconds.get("write", 0.0) + time.perf_counter() - written
        if skipped:
            print(
                f"[score] resumed: {skipped} of {partitions} partitions were already written",
                file=sys.stderr,
            )
    mark = stage("features, scores, explanations, decisions, write", mark)

    scored_accounts = sum(f.rows for f in files)
    if scored_accounts != people.height:  # nothing lost, nothing doubled
        raise RuntimeError(
            f"{people.height} accounts in the population but {scored_accounts} scored; "
            "the output was not published"
        )
    report = portfolio.report
    manifest = {
        "as_of": as_of.isoformat(),
        "model": {"uri": args.model, "name": loaded.name, "version": loaded.version},
        "code": {"rollrisk": __version__, "git_commit": git_commit()},
        "config": {
            "policy": str(args.policy),
            "segments": str(args.segments),
            "compliance": str(args.compliance),
            "jurisdictions": sorted(jurisdictions),
            "observation": setup.observation.__dict__,
        },
        "counts": {
            "population": people.height,
            "scored": scored_accounts,
            "rejected_accounts": 0,
            "input_rows": {
                t.table: {
                    "read": t.rows_read,
                    "accepted": t.rows_accepted,
                    "rejected": t.rows_rejected,
                }
                for t in report.tables
            },
        },
        "rejects_file": str(args.out / "rejects.csv") if report.rows_rejected else None,
        "engine": args.engine,
    }
    manifest_path = output.publish(manifest, files)
    stage("publish", mark)
    print(
        f"[score] {scored_accounts:,} accounts scored at {as_of} with {loaded.name} v{loaded.version}"
    )
    for name, seconds in stage_seconds.items():
        print(f"  {name:<50} {seconds:8.1f} s")
        if name.startswith("features, scores") and step_seconds:
            for step, step_time in step_seconds.items():
                print(f"    {step:<48} {step_time:8.1f} s")
    print(f"  result: {args.out / 'current'} (manifest {manifest_path})")
    return 0
