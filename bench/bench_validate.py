"""Benchmark the validating loader (`rollrisk validate`) against a plain Parquet read.

    python bench/bench_validate.py --data DIR            # an existing portfolio folder
    python bench/bench_validate.py --accounts 1000000    # simulate one first (seed 1, 24 months)

The reference, measured in the same run on the same files, is reading every table into
memory with ``polars.read_parquet`` and no checks: the ratio says what the contract checks cost on top
of I/O. Prints the median of --repeats runs (time and peak memory, each run its own process).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine_description, median_of  # noqa: E402

READ_ONLY = """
import sys, polars as pl
from pathlib import Path
from rollrisk.features.schemas import TABLES
from rollrisk.storage.loader import find_table_files
frames = [  # held in memory together, as a job holds the portfolio
    pl.read_parquet(path)
    for table in TABLES
    for path in find_table_files(Path(sys.argv[1]), table.name)
]
print(sum(frame.height for frame in frames))
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, help="portfolio folder (default: simulate one)")
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = args.data
    if data is None:
        data = Path(tempfile.mkdtemp(prefix="bench-validate-")) / "portfolio"
        print(
            f"simulating {args.accounts:,} accounts x {args.months} months into {data} ...",
            flush=True,
        )
        subprocess.run(
            [sys.executable, "-m", "rollrisk.cli", "simulate", "--accounts", str(args.accounts),
             "--months", str(args.months), "--seed", "1", "--out", str(data)],
            check=True,
        )  # fmt: skip
    validate, runs = median_of(
        [sys.executable, "-m", "rollrisk.cli", "validate", "--data", str(data),
         "--rejects", str(data.parent / "bench-rejects.csv")],
        args.repeats,
    )  # fmt: skip
    read, _ = median_of([sys.executable, "-c", READ_ONLY, str(data)], args.repeats)
    print(f"machine: {machine_description()}")
    print(f"data: {data}")
    print(
        f"runs (validate): {', '.join(f'{r.seconds:.1f} s / {r.peak_rss_gib:.2f} GiB' for r in runs)}"
    )
    print(
        f"validate:            {validate.seconds:7.1f} s  peak {validate.peak_rss_gib:5.2f} GiB  (median of {args.repeats})"
    )
    print(f"reference (read):    {read.seconds:7.1f} s  peak {read.peak_rss_gib:5.2f} GiB")
    print(
        f"validate / read: {validate.seconds / read.seconds:.1f}x time, {validate.peak_rss_gib / read.peak_rss_gib:.1f}x memory"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
