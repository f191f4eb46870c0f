"""Run ``rollrisk score`` and ``rollrisk build-training-set`` on Apache Spark.

The driver looks at the portfolio's files and holds counts; the executors read the rows, give
each its account partition (:func:`rollrisk.storage.results.partition_of`, the local engine's
seeded hash), validate each partition with the loader's own functions and then, per partition,
score it (:func:`rollrisk.scoring.core.score_accounts`) or build its training rows
(:func:`rollrisk.features.training_set.build_training_set`). See
:mod:`rollrisk.scoring.spark_portfolio` for the reading and validation, and docs/spark.md.

How a scoring run goes:

1. :func:`spark_portfolio` plans the read and validates the portfolio on the executors; the
   driver receives per-partition counts (rows, rejects by reason kind, accounts rejected and
   lost, statement months) and the rejected rows, and writes the rejects file as the local
   loader does. :func:`rollrisk.scoring.batch.score_portfolio` checks the rejects, the tables
   and the as-of on those counts, and counts the population on the executors.
2. :func:`score_with_spark` reads the rows again, partitioned by the output partition, for
   the partitions not yet written (resume), and each task validates its partition, scores it
   with the :class:`ScoringSetup` broadcast once per run, and writes
   ``part-NNNNN.parquet`` itself with :meth:`PartitionedRun.write_partition` (temporary file,
   fsync, atomic rename). Only the file's row count and checksum come back to the driver,
   which publishes the manifest and the ``current`` link once every partition is in.

A training-set build (:func:`write_training_set_with_spark`) validates and builds each
partition the same way and each task writes its rows as one part into a staging folder beside
``--out``; the driver receives each part's row count, checksum and per-as-of summary, and
publishes the folder (manifest, then one rename) once every part is in.

The run folder must therefore be visible to every executor at the same path (a shared POSIX
file system on a cluster: the rename and the ``current`` link need POSIX anyway).
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from pandera.errors import SchemaError, SchemaErrors

from rollrisk.errors import UserError
from rollrisk.features.dates import DateSettings
from rollrisk.features.observations import ObservationSpec, combine_summaries, partial_months_note
from rollrisk.features.training_set import (
    build_training_set,
    training_set_schema,
    validate_training_set,
)
from rollrisk.scoring.core import ScoringSetup, population, score_accounts
from rollrisk.scoring.spark_portfolio import (
    ReadPlan,
    SparkPortfolio,
    from_ipc,
    plan_read,
    to_ipc,
    validate_on_spark,
    validate_partition,
)
from rollrisk.storage.atomic_output import PartitionedRun, PartitionFile
from rollrisk.storage.results import default_partitions
from rollrisk.storage.training_sets import (
    OBSERVATION_KEY,
    TrainingPart,
    publish_training_parts,
    training_part_name,
    training_parts_staging,
    write_training_part,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MASTER_VARIABLE = "ROLLRISK_SPARK_MASTER"
DRIVER_MEMORY_VARIABLE = "ROLLRISK_SPARK_DRIVER_MEMORY"
DEFAULT_MASTER = "local[2]"
DEFAULT_DRIVER_MEMORY = "4g"


def spark_session() -> tuple[SparkSession, bool]:
    """The active SparkSession if there is one (a notebook, a test), else a new one.

    Returns the session and whether this call started it (then the caller stops it). The
    master comes from ``ROLLRISK_SPARK_MASTER`` (default ``local[2]``), the driver's heap from
    ``ROLLRISK_SPARK_DRIVER_MEMORY`` (default 4g; in ``local`` mode this JVM also runs the
    executors; the rejected rows are collected there).

    Raises:
        UserError: PySpark is not installed; Spark cannot start (no Java 17, a wrong
            ``JAVA_HOME``, an unreachable master).
    """
    require_pyspark()
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
        # what comes back: the rejected rows (the training rows are written by the executors)
        .config("spark.driver.maxResultSize", "2g")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.ui.showConsoleProgress", "false")  # the job prints its stages
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


def require_pyspark() -> None:
    """Refuse, in one line, ``--engine spark`` without PySpark (an optional dependency, as
    learn-policy's EconML is)."""
    try:
        import pyspark  # noqa: F401  (first: a missing install is named as such)
        import pyspark.errors  # noqa: F401
        import pyspark.sql  # noqa: F401
    except ModuleNotFoundError as error:
        raise UserError(
            f"--engine spark needs PySpark, an optional dependency (no module named "
            f"{error.name!r}): pip install 'rollrisk[spark]' (and Java 17, see docs/spark.md), "
            "or use the local engine"
        ) from None


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


@contextmanager
def spark_portfolio(
    data: Path, rejects_path: Path | None = None, dates: DateSettings | None = None
) -> Iterator[SparkPortfolio]:
    """The portfolio folder ``data`` validated on Spark (rejected rows written to
    ``rejects_path`` when there are any), for the jobs to run per partition while the block
    runs; a session this call started is stopped at the end.

    Raises:
        DataContractError: as :func:`rollrisk.storage.loader.load_portfolio`.
        UserError: PySpark is not installed, or Spark cannot start (:func:`spark_session`).
    """
    spark, started = spark_session()
    try:
        book = validate_on_spark(spark, plan_read(data, dates), rejects_path)
        try:
            yield book
        finally:
            book.release()
    finally:
        if started:
            spark.stop()


SCORED_PARTITION_SCHEMA = "partition int, rows long, sha256 string, population long"


def score_with_spark(
    book: SparkPortfolio,
    as_of: date,
    setup: ScoringSetup,
    output: PartitionedRun,
    partitions: int,
) -> list[PartitionFile]:
    """Score every partition of the portfolio not yet written in ``output``, on the
    executors, each writing its own file; one :class:`PartitionFile` per partition, in order.

    Raises:
        RuntimeError: a partition's scored accounts differ from its population.
    """
    files = {k: output.existing_partition(k) for k in range(partitions) if output.is_done(k)}
    pending = [k for k in range(partitions) if k not in files]
    if pending:
        shared = book.spark.sparkContext.broadcast(setup)  # pickled once, fetched per executor
        work = functools.partial(_score_partition, shared, as_of, book.present, output)
        print(
            f"score (spark): {len(pending)} partitions on the executors",
            file=sys.stderr,
            flush=True,
        )
        for row in book.per_partition(partitions, pending, work, SCORED_PARTITION_SCHEMA):
            if row["rows"] != row["population"]:
                raise RuntimeError(
                    f"partition {row['partition']}: {row['population']} accounts in the "
                    f"population but {row['rows']} scored; the output was not published"
                )
            k = row["partition"]
            files[k] = PartitionFile(k, output.partition_path(k), row["rows"], row["sha256"])
        shared.unpersist()
    return [files[k] for k in range(partitions)]


def _score_partition(
    shared: Any,
    as_of: date,
    present: Sequence[str],
    output: PartitionedRun,
    plan: ReadPlan,
    partition: int,
    blobs: Any,
) -> dict[str, Any]:
    """Runs in a Spark Python worker: validate, score and write one partition."""
    setup: ScoringSetup = shared.value
    tables = validate_partition(plan, partition, blobs)
    inputs = tables.inputs(present)
    scored = score_accounts(*inputs, as_of, setup)
    people = population(inputs[1], as_of, setup.observation).height
    written = output.write_partition(partition, scored)
    return {
        "partition": partition,
        "rows": written.rows,
        "sha256": written.sha256,
        "population": people,
    }


TRAINING_PARTITION_SCHEMA = "partition int, rows long, sha256 string, summary binary"


@dataclass(frozen=True)
class TrainingSetWritten:
    """A training set the executors wrote as a folder of parts (:func:`write_training_set_with_spark`)."""

    path: Path
    rows: int
    columns: int
    summary: pl.DataFrame  # per as-of, as TrainingSetBuild.summary
    partial_months: str | None = None  # observations.partial_months_note of the book


def write_training_set_with_spark(
    book: SparkPortfolio,
    as_of_dates: Sequence[date],
    spec: ObservationSpec,
    out: Path,
    partitions: int | None = None,
) -> TrainingSetWritten:
    """:func:`rollrisk.features.training_set.build_training_set` run per account partition on
    the executors (``partitions``; default: two per core, or one per
    ``ACCOUNTS_PER_PARTITION`` accounts read when that is more), each task checking its rows
    against the training-set schema and writing them as one part; the folder is published at
    ``out`` once every part is in (:func:`rollrisk.storage.training_sets.publish_training_parts`).
    Only each part's row count, checksum and per-as-of summary come back to the driver, so
    its memory does not grow with the training set.

    Raises:
        RuntimeError: a task failed (the staging folder is removed, ``out`` is unchanged).
    """
    if partitions is None:
        cores = book.spark.sparkContext.defaultParallelism
        partitions = max(2 * cores, default_partitions(book.rejects.accounts_read))
    staging = training_parts_staging(out)
    try:
        # whether an as-of's window is complete is the whole book's question, not a partition's
        work = functools.partial(
            _training_partition,
            list(as_of_dates),
            spec,
            book.present,
            book.months.labelled_through(),
            staging,
        )
        rows = book.per_partition(partitions, range(partitions), work, TRAINING_PARTITION_SCHEMA)
        parts = [
            TrainingPart(row["partition"], staging / training_part_name(row["partition"]),
                         row["rows"], row["sha256"])
            for row in rows
        ]  # fmt: skip
        summary = combine_summaries([from_ipc(row["summary"]) for row in rows])
        columns = training_set_schema().columns
        publish_training_parts(
            staging,
            out,
            parts,
            list(columns),
            {"engine": "spark", "partitions": partitions, OBSERVATION_KEY: asdict(spec)},
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    choice = book.months.complete_book()
    return TrainingSetWritten(
        out,
        sum(p.rows for p in parts),
        len(columns),
        summary,
        partial_months=None if choice is None else partial_months_note(choice),
    )


def _training_partition(
    as_of_dates: list[date],
    spec: ObservationSpec,
    present: Sequence[str],
    last_cycle_end: date | None,
    staging: Path,
    plan: ReadPlan,
    partition: int,
    blobs: Any,
) -> dict[str, Any]:
    """Runs in a Spark Python worker: validate one partition, build its training rows, check
    them against the schema and write them as its part."""
    accounts, statements, actions, treatments = validate_partition(plan, partition, blobs).inputs(
        present
    )
    assert accounts is not None and statements is not None  # required tables
    built = build_training_set(
        accounts,
        statements,
        as_of_dates,
        spec,
        collection_actions=actions,
        treatments=treatments,
        last_cycle_end=last_cycle_end,
    )
    try:
        rows = validate_training_set(built.training_set)
    except (SchemaError, SchemaErrors) as error:  # a bug, not a user error: say so plainly
        raise RuntimeError(
            f"partition {partition}: the built training set breaks its own schema: {error}"
        ) from error
    written = write_training_part(staging, partition, rows)
    return {
        "partition": partition,
        "rows": written.rows,
        "sha256": written.sha256,
        "summary": to_ipc(built.summary),
    }
