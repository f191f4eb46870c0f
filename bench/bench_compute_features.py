"""Benchmark: ``compute_features`` of this working tree against another revision's, interleaved.

Loads a simulated portfolio once, takes the observations of every eligible month-end (the
training set's keys; with ``--every-account N``, every account at the last N month-ends, long
histories as the scoring of a whole book has), then runs ``rollrisk.features.history.compute_features`` of the working
tree and of ``features/history.py`` at ``--against`` (a git revision, read with ``git show``)
one after the other, ``--rounds`` times, in one process: both see the same data, caches and
load. Prints, per version, the median and the minimum of the wall and CPU seconds (CPU:
``time.process_time``, all threads; steadier than wall when other jobs share the cores, and the
minimum is the run least disturbed by them), and whether the two versions' features are the
same bits.

usage:
  rollrisk simulate --accounts 40000 --months 24 --seed 7 --out runs/bench/p40k
  python bench/bench_compute_features.py --data runs/bench/p40k --against HEAD~1 --rounds 7
  python bench/bench_compute_features.py --data runs/bench/p40k --against HEAD~1 --every-account 3
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import polars as pl

from rollrisk.features import history

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine_description  # noqa: E402

from rollrisk.features.observations import ObservationSpec, eligible_as_of_dates, observations

REPOSITORY = Path(__file__).resolve().parents[1]
TABLES = ("accounts", "statements", "collection_actions", "treatments")


def _read(folder: Path) -> dict[str, pl.DataFrame]:
    def table(name: str) -> pl.DataFrame:
        path = folder / name
        return pl.read_parquet(path if path.is_dir() else folder / f"{name}.parquet")

    return {name: table(name) for name in TABLES}


def _history_at(revision: str, folder: Path) -> ModuleType:
    """``features/history.py`` as it was at ``revision``, imported as a module of its own."""
    source = subprocess.run(
        ["git", "-C", str(REPOSITORY), "show", f"{revision}:features/history.py"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    path = folder / "history_against.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("history_against", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["history_against"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _same_bits(left: pl.DataFrame, right: pl.DataFrame) -> int:
    """How many values differ, floats compared bit for bit (both sorted by key)."""
    differing = 0
    for name in left.columns:
        a, b = left[name], right[name]
        if a.dtype == pl.Float64:
            bits_a = a.fill_null(0.0).to_numpy().view(np.int64)
            bits_b = b.fill_null(0.0).to_numpy().view(np.int64)
            nulls = a.is_null().to_numpy() != b.is_null().to_numpy()
            differing += int(((bits_a != bits_b) | nulls).sum())
        else:
            differing += int((~a.eq_missing(b)).sum())
    return differing


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="simulated portfolio folder")
    parser.add_argument("--against", default="HEAD~1", help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--every-account", type=int, default=0, metavar="N",
        help="every account at the last N eligible month-ends instead of the observations",
    )  # fmt: skip
    args = parser.parse_args()

    tables = _read(args.data)
    spec = ObservationSpec()
    dates = eligible_as_of_dates(tables["statements"], spec)
    if args.every_account:
        dates = dates[-args.every_account :]
        keys = (
            tables["accounts"]
            .select("account_id")
            .join(pl.DataFrame({"as_of": dates}), how="cross")
        )
    else:
        keys = observations(tables["statements"], dates, spec).select("account_id", "as_of")
    print(f"machine: {machine_description()}; polars {pl.__version__}")
    print(f"data: {args.data}: {tables['accounts'].height:,} accounts, "
          f"{tables['statements'].height:,} statements; {keys.height:,} observations at "
          f"{len(dates)} month-ends ({dates[0]} .. {dates[-1]})")  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        versions = {"this tree": history, args.against: _history_at(args.against, Path(folder))}
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in versions}
        frames: dict[str, pl.DataFrame] = {}
        load = [os.getloadavg()[0]]
        for _ in range(args.rounds):
            for name, module in versions.items():
                wall, cpu = time.perf_counter(), time.process_time()
                frames[name] = module.compute_features(
                    keys, *(tables[table] for table in TABLES)
                ).collect()
                runs[name].append((time.perf_counter() - wall, time.process_time() - cpu))
            load.append(os.getloadavg()[0])
    print(f"load average (1 min) during the runs: {min(load):.1f} .. {max(load):.1f}")
    for name, measured in runs.items():
        wall = [w for w, _ in measured]
        cpu = [c for _, c in measured]
        print(
            f"{name:>12}: wall median {statistics.median(wall):6.2f} s (min {min(wall):.2f}), "
            f"CPU median {statistics.median(cpu):6.2f} s (min {min(cpu):.2f}); "
            f"CPU runs {', '.join(f'{c:.2f}' for c in cpu)}"
        )
    left, right = (frames[name].sort(history.KEY) for name in versions)
    print(f"values differing between the two: {_same_bits(left, right):,} "
          f"of {left.height * (left.width - 2):,}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
