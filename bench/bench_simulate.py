"""Benchmark `rollrisk simulate`: wall time and peak RSS, against a write-only floor.

Each run is a fresh child process (so its peak RSS is its own, read with
``resource.getrusage(RUSAGE_SELF)`` inside the child). The reference, measured in the same
session, is the time to write the same number of rows per table, of random data with the same
dtypes, with the same writer (polars ``write_parquet``, one part per 50,000 accounts): the floor
any simulator writing those files has to pay.

    .venv/bin/python bench/bench_simulate.py                 # 1,000,000 accounts x 24 months, 3 runs
    .venv/bin/python bench/bench_simulate.py --quick         # 50,000 x 24, 3 runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
mode, out, accounts, months = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
started = time.perf_counter()
if mode == "simulate":
    from rollrisk.simulator.engine import write_portfolio
    summary = write_portfolio(out, accounts, months, seed=7)
    rows = summary.rows
else:
    import numpy as np, polars as pl
    rows = json.loads(sys.argv[5])
    chunk = 50_000
    parts = (accounts + chunk - 1) // chunk
    rng = np.random.default_rng(0)
    ids = np.array([f"A{i:09d}" for i in range(accounts)])
    shapes = {
        "statements": {"cycle_end": "D", "known_at": "us", "amount_due": "f", "min_due": "f",
                       "amount_paid": "f", "balance": "f", "dpd": "i"},
        "collection_actions": {"action_at": "us", "channel": "s", "outcome": "s",
                               "promised_amount": "f", "promised_date": "D"},
        "treatments": {"kind": "s", "start_at": "us", "end_at": "us", "known_at": "us"},
    }
    words = np.array(["sms", "agent_call", "no_answer", "contacted", "grace_period"])
    for table, columns in shapes.items():
        (out / table).mkdir(parents=True)
        per_part = rows[table] // parts
        for part in range(parts):
            n = per_part
            data = {"account_id": ids[rng.integers(part * chunk, min(accounts, (part + 1) * chunk), n)]}
            for name, kind in columns.items():
                if kind == "f":
                    data[name] = np.round(rng.random(n) * 1e4, 2)
                elif kind == "i":
                    data[name] = rng.integers(0, 200, n)
                elif kind == "s":
                    data[name] = words[rng.integers(0, len(words), n)]
                elif kind == "D":
                    data[name] = np.datetime64("2024-01-01") + rng.integers(0, 730, n)
                else:
                    data[name] = np.datetime64("2024-01-01T00:00:00", "us") + rng.integers(0, 6e13, n).astype("timedelta64[us]")
            pl.DataFrame(data).sort("account_id").write_parquet(out / table / f"part-{part:05d}.parquet")
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "peak_rss_bytes": peak, "rows": rows}))
"""


def run_child(mode: str, accounts: int, months: int, rows: dict[str, int] | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_simulate_") as tmp:
        out = Path(tmp) / "portfolio"
        out.mkdir()
        argv = [sys.executable, "-c", CHILD, mode, str(out), str(accounts), str(months)]
        if rows is not None:
            argv.append(json.dumps(rows))
        result = subprocess.run(argv, check=True, capture_output=True, text=True)
        return json.loads(result.stdout.strip().splitlines()[-1])


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        ram = f"{mem_kb / 1024**2:.1f} GiB RAM"
    except (OSError, StopIteration):
        ram = "RAM unknown"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{cpu}; nproc={os.cpu_count()}; {ram}; Python {platform.python_version()}; "
        f"load average before the run {load}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="50,000 accounts x 24 months")
    args = parser.parse_args()
    accounts = 50_000 if args.quick else args.accounts
    print(f"machine: {machine()}")
    print(f"size: {accounts:,} accounts x {args.months} months, {args.repeats} runs each\n")
    simulated = [run_child("simulate", accounts, args.months) for _ in range(args.repeats)]
    rows = simulated[0]["rows"]
    reference = [run_child("reference", accounts, args.months, rows) for _ in range(args.repeats)]
    sim_s = statistics.median(r["seconds"] for r in simulated)
    ref_s = statistics.median(r["seconds"] for r in reference)
    sim_rss = max(r["peak_rss_bytes"] for r in simulated) / 1024**3
    ref_rss = max(r["peak_rss_bytes"] for r in reference) / 1024**3
    print("rows: " + ", ".join(f"{t} {n:,}" for t, n in rows.items()))
    for name, runs in (("simulate ", simulated), ("reference", reference)):
        print(f"{name} runs (s): " + ", ".join(f"{r['seconds']:.1f}" for r in runs))
    print(f"simulate : median {sim_s:.1f} s, peak RSS {sim_rss:.2f} GiB")
    print(f"reference: median {ref_s:.1f} s, peak RSS {ref_rss:.2f} GiB (random rows, same writer)")
    print(f"ratio simulate / write-only floor: {sim_s / ref_s:.2f}x")
    budget = 300 * accounts / 1_000_000 * args.months / 24
    print(
        f"budget (5 min per 1M x 24, scaled): {budget:.0f} s -> {'within' if sim_s <= budget else 'OVER'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
