"""Benchmark: how the Spark engine brings one account partition's rows together.

The executors read the portfolio's units and cut them into (partition, table, unit, Arrow IPC)
blobs (``scoring/spark_portfolio.py``); every blob of a partition must then meet in one task,
which validates the partition. Two ways are timed on the same blobs, each ending in the
validation of every partition (the loader's ``validate_next`` per table), so that both do the
same work after the shuffle:

* ``groupBy(partition).applyInPandas``: Spark hands the function one partition's blobs (what
  the engine uses);
* ``repartition(n, partition)`` then ``mapInArrow``: a task receives the blobs of the account
  partitions that hash to it, and the function gathers them by partition itself.

Each is run ``--repeats`` times, interleaved, after one warm-up of each (Python workers
importing rollrisk); the figure is the median wall time of the Spark action on the driver.

Data: ``--data`` (a portfolio folder), e.g. the tests' world (``rollrisk simulate --accounts
2500 --months 16 --seed 5``).

Run:
    .venv/bin/python bench/bench_spark_grouping.py --data runs/world/portfolio --repeats 3
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine_description  # noqa: E402


def _validated(plan: Any, partition: int, blobs: Any) -> dict[str, Any]:
    from rollrisk.scoring.spark_portfolio import validate_partition

    tables = validate_partition(plan, partition, blobs)
    return {"partition": partition, "rows": sum(o.rows_read for o in tables.outcomes.values())}


def _gathered(shared: Any, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow after repartition: group this task's blobs by partition, then validate."""
    plan = shared.value
    received = list(batches)
    if not received:  # no account partition hashed to this task
        return
    frame = pa.Table.from_batches(received).to_pandas()
    for partition, blobs in frame.groupby("partition"):
        row = _validated(plan, int(partition), blobs)
        yield pa.RecordBatch.from_pydict(
            {
                "partition": pa.array([row["partition"]], pa.int32()),
                "rows": pa.array([row["rows"]], pa.int64()),
            }
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()
    os.environ["ROLLRISK_SPARK_MASTER"] = args.master

    from rollrisk.scoring.spark_engine import spark_session
    from rollrisk.scoring.spark_portfolio import (
        output_key,
        partition_blobs,
        per_partition_group,
        plan_read,
    )

    spark, _ = spark_session()
    plan = plan_read(args.data)
    shared = spark.sparkContext.broadcast(plan)
    schema = "partition int, rows long"

    def grouped() -> int:
        blobs = partition_blobs(spark, plan, args.partitions, output_key, None)
        rows = blobs.groupBy("partition").applyInPandas(
            per_partition_group(shared, _validated), schema
        )
        return sum(row["rows"] for row in rows.collect())

    def repartitioned() -> int:
        blobs = partition_blobs(spark, plan, args.partitions, output_key, None)
        spread = blobs.repartition(args.partitions, "partition")
        rows = spread.mapInArrow(functools.partial(_gathered, shared), schema)
        return sum(row["rows"] for row in rows.collect())

    ways = {"groupBy.applyInPandas": grouped, "repartition+mapInArrow": repartitioned}
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    counted = {name: way() for name, way in ways.items()}  # warm-up, and the same rows
    if len(set(counted.values())) != 1:
        raise SystemExit(f"the two ways saw different rows: {counted}")
    for _ in range(args.repeats):
        for name, way in ways.items():
            started = time.perf_counter()
            way()
            seconds[name].append(time.perf_counter() - started)
    spark.stop()

    print(f"machine: {machine_description()}")
    print(
        f"data: {args.data} ({next(iter(counted.values())):,} rows read), "
        f"{args.partitions} partitions, master {args.master}, {len(plan.units)} read units"
    )
    reference = statistics.median(seconds["groupBy.applyInPandas"])
    for name, runs in seconds.items():
        median = statistics.median(runs)
        every = ", ".join(f"{s:.2f}" for s in runs)
        print(f"  {name:<24} median {median:6.2f} s  (runs: {every})  {median / reference:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
