"""Benchmark: building the training set over a simulated portfolio (polars, lazy).

Measures, each in a fresh subprocess (so peak RSS is per measurement) and repeated:

* ``one_as_of``      build_training_set for one as-of date (population, labels, all 59 features);
* ``twelve_as_of``   build_training_set for twelve as-of dates;
* ``reference``      a hand-written flat polars query of 25 aggregates over the same statement
                     rows (one as-of, every account, no population filter, no joins): the floor
                     a single group-by pass costs on this machine;
* ``load``           (with --with-loader) the validating loader the CLI reads through.

Reading the Parquet tables is timed separately and excluded from the build figures; peak RSS
includes the tables held in memory. Prints the median and all runs of each, and the ratio of
the feature build to the reference.

usage:
  rollrisk simulate --accounts 1000000 --months 24 --seed 7 --out runs/bench/portfolio
  python bench/bench_features.py --data runs/bench/portfolio --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import polars as pl


def _read(folder: Path) -> dict[str, pl.DataFrame]:
    def table(name: str) -> pl.DataFrame:
        path = folder / name
        return pl.read_parquet(path if path.is_dir() else folder / f"{name}.parquet")

    return {
        name: table(name) for name in ("accounts", "statements", "collection_actions", "treatments")
    }


def _as_of_dates(statements: pl.DataFrame, count: int) -> list[date]:
    from rollrisk.features.observations import ObservationSpec, eligible_as_of_dates

    eligible = eligible_as_of_dates(statements, ObservationSpec())
    return eligible[-count:]


def reference_query(statements: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """25 aggregates per account over statements known at the as-of: the hand-written floor.

    One flat filter + group-by, windows counted back from the as-of month, no population filter,
    no joins, no sort, only element-wise conditions inside the aggregations (polars' fast
    path): the least a single pass over every account's history costs.
    """
    end = pl.lit(as_of).cast(pl.Datetime("us")) + pl.duration(days=1)
    month = pl.col("cycle_end").dt.year().cast(pl.Int32) * 12 + pl.col("cycle_end").dt.month()
    lag = as_of.year * 12 + as_of.month - month
    paid, due, dpd = pl.col("amount_paid"), pl.col("amount_due"), pl.col("dpd")
    # the simulator writes each account's statements in cycle order, so last() is the latest
    aggregates = [dpd.last().alias("dpd_last"), pl.col("balance").last().alias("balance_last")]
    for k in (3, 6, 12):
        inside = pl.col("_lag") < k
        aggregates += [
            pl.when(inside).then(dpd).max().alias(f"dpd_max_{k}"),
            ((dpd >= 1) & (dpd < 30) & inside).sum().alias(f"m1_{k}"),
            ((dpd >= 30) & (dpd < 60) & inside).sum().alias(f"m2_{k}"),
            ((dpd >= 60) & (dpd < 90) & inside).sum().alias(f"m3_{k}"),
            pl.when(inside).then(paid).sum().alias(f"paid_{k}"),
            pl.when(inside).then(due).sum().alias(f"due_{k}"),
            ((paid == 0) & inside).sum().alias(f"zero_{k}"),
            pl.when(inside).then(pl.col("balance")).mean().alias(f"balance_mean_{k}"),
        ]
    aggregates.append((dpd > 0).sum().alias("delinquent_months"))
    return (
        statements.lazy()
        .filter(pl.col("known_at") < end)
        .with_columns(lag.alias("_lag"))
        .group_by("account_id")
        .agg(aggregates)
        .collect()
    )


def worker(kind: str, folder: Path, as_of_count: int) -> dict[str, float]:
    from rollrisk.features.observations import ObservationSpec
    from rollrisk.features.training_set import build_training_set

    started = time.perf_counter()
    if kind == "load":
        from rollrisk.storage.loader import load_portfolio

        portfolio = load_portfolio(folder)
        seconds = time.perf_counter() - started
        rows = portfolio.statements.height
        return {"seconds": seconds, "read_seconds": 0.0, "rows": rows, "peak_rss_gib": _peak_rss()}
    tables = _read(folder)
    read_seconds = time.perf_counter() - started
    started = time.perf_counter()
    if kind == "reference":
        out = reference_query(tables["statements"], _as_of_dates(tables["statements"], 1)[0])
    else:
        dates = _as_of_dates(tables["statements"], as_of_count)
        out = build_training_set(
            tables["accounts"],
            tables["statements"],
            dates,
            ObservationSpec(),
            tables["collection_actions"],
            tables["treatments"],
        ).training_set
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "read_seconds": read_seconds,
        "rows": out.height,
        "columns": out.width,
        "peak_rss_gib": _peak_rss(),
    }


def _peak_rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def _measure(kind: str, folder: Path, as_of_count: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", kind, "--data", str(folder),
               "--as-of-count", str(as_of_count)]  # fmt: skip
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB RAM, load average {load:.1f}; "
        f"Python {platform.python_version()}, polars {pl.__version__}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="simulated portfolio folder")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kinds", default="reference,one_as_of,twelve_as_of")
    parser.add_argument(
        "--with-loader", action="store_true", help="also time the validating loader"
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--as-of-count", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.data, args.as_of_count)))
        return 0

    accounts = pl.scan_parquet(args.data / "accounts.parquet").select(pl.len()).collect().item()
    statements = pl.scan_parquet(args.data / "statements").select(pl.len()).collect().item()
    print(f"machine: {_machine()}")
    print(f"data: {args.data} ({accounts:,} accounts, {statements:,} statements)")
    kinds = args.kinds.split(",") + (["load"] if args.with_loader else [])
    counts = {"reference": 1, "one_as_of": 1, "twelve_as_of": 12, "load": 0}
    medians: dict[str, float] = {}
    for kind in kinds:
        runs = [_measure(kind, args.data, counts[kind]) for _ in range(args.repeats)]
        seconds = [run["seconds"] for run in runs]
        medians[kind] = statistics.median(seconds)
        print(
            f"{kind:>13}: median {medians[kind]:7.2f} s  runs {', '.join(f'{s:.2f}' for s in seconds)}"
            f"  peak RSS {max(r['peak_rss_gib'] for r in runs):.2f} GiB"
            f"  (read {statistics.median(r['read_seconds'] for r in runs):.1f} s excluded; "
            f"{runs[0]['rows']:,} rows out)"
        )
    if "reference" in medians:
        for kind in ("one_as_of", "twelve_as_of"):
            if kind in medians:
                print(f"ratio {kind} / reference: {medians[kind] / medians['reference']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
