"""Run ``rollrisk score`` on Apache Spark: the same scoring code, once per account partition.

``rollrisk score --engine spark`` gives the same published result as the local engine (same
partition files holding the same accounts, same rows) while the scoring itself runs in Spark's
Python workers, in parallel across a cluster's cores. See docs/spark.md for running on a cluster.

How a run goes:

1. The driver reads and validates the portfolio with
   :func:`rollrisk.storage.loader.load_portfolio` (done by
   :func:`rollrisk.scoring.batch.score_portfolio`, as for the local engine), so the data
   contract and the rejects are exactly the same.
2. Each table is split by :func:`rollrisk.storage.results.partition_of`, the local engine's
   partition function, so partition ``k`` holds the same accounts in both engines. Partitions
   whose file is already written are skipped (resume).
3. The pending partitions go to Spark in waves of ``2 x defaultParallelism``: one DataFrame row
   per partition holding its four tables as Arrow IPC bytes, one Spark task per row. In each
   task ``mapInArrow`` rebuilds the tables and calls
   :func:`rollrisk.scoring.core.score_accounts` with the :class:`ScoringSetup` (model, rules)
   broadcast once per run; the scored rows come back as Arrow IPC bytes.
4. The driver writes each scored partition with :meth:`PartitionedRun.write_partition`: the
   same writer, hence the same bytes and the same atomic rename as the local engine, and
   :func:`~rollrisk.scoring.batch.score_portfolio` publishes the manifest as usual.

Why the driver writes the files rather than the executors: the run folder then only has to be
visible to the driver (executors need no shared mount), and a task that Spark retries or runs
speculatively can never race another attempt on the same ``part-NNNNN.parquet.tmp``. The
price is that scored rows travel back to the driver; waves bound that to a few partitions at
a time, and a run killed between waves keeps every partition already written.

Limits: the driver holds the whole validated portfolio in memory (like the local engine);
one partition's tables must fit in one Spark task (see docs/spark.md for the settings and for
how a portfolio larger than the driver's memory would be read).
"""

from __future__ import annotations

import functools
import glob
import io
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
from tqdm import tqdm

from rollrisk.errors import UserError
from rollrisk.scoring.core import INPUT_TABLES, ScoringSetup, score_accounts
from rollrisk.storage.atomic_output import PartitionedRun, PartitionFile
from rollrisk.storage.loader import Portfolio
from rollrisk.storage.results import PARTITION_COLUMN, split_tables

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MASTER_VARIABLE = "ROLLRISK_SPARK_MASTER"
DRIVER_MEMORY_VARIABLE = "ROLLRISK_SPARK_DRIVER_MEMORY"
DEFAULT_MASTER = "local[2]"
DEFAULT_DRIVER_MEMORY = "4g"
WAVE_PER_CORE = 2  # partitions per core sent to Spark at once: keeps cores busy, bounds memory

# One row per partition to score: its tables as Arrow IPC streams (None: table absent).
PAYLOAD_SCHEMA = "partition int, " + ", ".join(f"{name} binary" for name in INPUT_TABLES)
# One row per scored partition: the scored accounts (SCORED_SCHEMA) as an Arrow IPC stream.
RESULT_SCHEMA = "partition int, rows long, scored binary"


def spark_session() -> tuple[SparkSession, bool]:
    """The active SparkSession if there is one (a notebook, a test), else a new one.

    Returns the session and whether this call started it (then the caller stops it). The
    master comes from ``ROLLRISK_SPARK_MASTER`` (default ``local[2]``), the driver's heap from
    ``ROLLRISK_SPARK_DRIVER_MEMORY`` (default 4g: the Python driver holds the portfolio too).
    """
    from pyspark.errors import PySparkRuntimeError
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    master = os.environ.get(MASTER_VARIABLE, DEFAULT_MASTER)
    _prepare_environment(master)
    builder = (
        SparkSession.builder.master(master)
        .appName("rollrisk-score")
        .config(
            "spark.driver.memory", os.environ.get(DRIVER_MEMORY_VARIABLE, DEFAULT_DRIVER_MEMORY)
        )
        # a task carries one partition's tables; a result one partition's scored rows
        .config("spark.rpc.message.maxSize", "1024")
        .config("spark.driver.maxResultSize", "2g")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.ui.showConsoleProgress", "false")  # tqdm shows the progress
    )
    if master.startswith("local"):
        builder = builder.config("spark.ui.enabled", "false")
    try:
        session = builder.getOrCreate()
    except PySparkRuntimeError as error:  # no Java, a wrong JAVA_HOME, an unreachable master
        raise UserError(
            f"cannot start Spark with master {master!r} (JAVA_HOME="
            f"{os.environ.get('JAVA_HOME', 'unset')}): {str(error).splitlines()[0]}; "
            "--engine spark needs Java 17 (set JAVA_HOME) and a reachable master "
            f"(set {MASTER_VARIABLE})"
        ) from error
    session.sparkContext.setLogLevel("ERROR")
    return session, True


def _prepare_environment(master: str) -> None:
    """Point Spark at Java 17 and, on a local master, at this interpreter (set only if unset)."""
    if not os.environ.get("JAVA_HOME"):
        for candidate in sorted(glob.glob("/usr/lib/jvm/*17*")):
            if Path(candidate, "bin", "java").is_file():
                os.environ["JAVA_HOME"] = candidate
                break
    if master.startswith("local"):
        # the workers must import rollrisk from the same environment as the driver
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def score_with_spark(
    portfolio: Portfolio,
    as_of: date,
    setup: ScoringSetup,
    output: PartitionedRun,
    partitions: int,
) -> list[PartitionFile]:
    """Score every partition of ``portfolio`` on Spark and write it into ``output``.

    Partition ``k`` holds the accounts with ``partition_of(account_id, partitions) == k``, as in
    the local engine; partitions already written in ``output`` are kept as they are (resume).
    Returns one :class:`PartitionFile` per partition, in partition order.
    """
    files = {k: output.existing_partition(k) for k in range(partitions) if output.is_done(k)}
    pending = [k for k in range(partitions) if k not in files]
    if pending:
        tables = split_tables({name: getattr(portfolio, name) for name in INPUT_TABLES}, partitions)
        spark, started = spark_session()
        try:
            files.update(_score_pending(spark, tables, pending, as_of, setup, output))
        finally:
            if started:
                spark.stop()
    return [files[k] for k in range(partitions)]


def _score_pending(
    spark: SparkSession,
    tables: dict[str, pl.DataFrame | None],
    pending: Sequence[int],
    as_of: date,
    setup: ScoringSetup,
    output: PartitionedRun,
) -> dict[int, PartitionFile]:
    context = spark.sparkContext
    shared_setup = context.broadcast(setup)  # pickled once, fetched once per executor
    score_rows = functools.partial(_score_partitions, shared_setup, as_of)
    wave_size = max(1, WAVE_PER_CORE * context.defaultParallelism)
    written: dict[int, PartitionFile] = {}
    with tqdm(total=len(pending), desc="score (spark)", unit="part", file=sys.stderr) as progress:
        for start in range(0, len(pending), wave_size):
            wave = list(pending[start : start + wave_size])
            payloads = list(_payloads(tables, wave))
            # one slice per partition: each is scored by its own task
            rows = context.parallelize(payloads, numSlices=len(payloads))
            with warnings.catch_warnings():
                # PySpark warns that pandas >= 3 is not fully supported; mapInArrow uses no pandas
                warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas")
                scored = spark.createDataFrame(rows, PAYLOAD_SCHEMA).mapInArrow(
                    score_rows, RESULT_SCHEMA
                )
            for result in scored.collect():
                frame = _from_ipc(result["scored"])
                if frame is None or frame.height != result["rows"]:
                    raise RuntimeError(
                        f"partition {result['partition']}: the executor scored {result['rows']} "
                        "accounts but a different number arrived at the driver"
                    )
                written[result["partition"]] = output.write_partition(result["partition"], frame)
                progress.update(1)
    shared_setup.unpersist()
    return written


def _payloads(
    tables: dict[str, pl.DataFrame | None], wave: Sequence[int]
) -> Iterator[tuple[int | bytes | None, ...]]:
    """``(partition, accounts, statements, collection_actions, treatments)`` per partition of
    ``wave``, each table as Arrow IPC bytes with the rows in their original order."""
    split: dict[str, tuple[dict[int, pl.DataFrame], pl.DataFrame] | None] = {}
    for name in INPUT_TABLES:
        frame = tables[name]
        if frame is None:
            split[name] = None
            continue
        in_wave = frame.filter(pl.col(PARTITION_COLUMN).is_in(wave)).partition_by(
            PARTITION_COLUMN, as_dict=True, maintain_order=True
        )
        parts = {key[0]: part.drop(PARTITION_COLUMN) for key, part in in_wave.items()}
        split[name] = (parts, frame.drop(PARTITION_COLUMN).clear())
    for partition in wave:
        row: list[int | bytes | None] = [partition]
        for name in INPUT_TABLES:
            table = split[name]
            if table is None:
                row.append(None)  # an absent optional table stays absent
            else:
                parts, empty = table
                row.append(_to_ipc(parts.get(partition, empty)))
        yield tuple(row)


def _score_partitions(
    shared_setup: Any, as_of: date, batches: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """Runs in a Spark Python worker: score each partition row of ``batches``."""
    setup: ScoringSetup = shared_setup.value
    for batch in batches:
        for row in batch.to_pylist():
            scored = score_accounts(*(_from_ipc(row[name]) for name in INPUT_TABLES), as_of, setup)
            yield pa.RecordBatch.from_pydict(
                {
                    "partition": pa.array([row["partition"]], pa.int32()),
                    "rows": pa.array([scored.height], pa.int64()),
                    "scored": pa.array([_to_ipc(scored)], pa.binary()),
                }
            )


def _to_ipc(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_ipc(buffer, compression="lz4")
    return buffer.getvalue()


def _from_ipc(payload: bytes | None) -> pl.DataFrame | None:
    return None if payload is None else pl.read_ipc(io.BytesIO(payload))
