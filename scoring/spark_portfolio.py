"""A portfolio folder read and validated by Spark's executors, one account partition per task.

The driver looks at the files only (names, column types, Parquet row counts: no row of the
portfolio); the executors read the rows, give each its account partition, and validate each
partition with the local engine's code. The same functions do it in both engines, so the
rules, the rejects and the counts are the same:

1. **plan** (driver, :func:`plan_read`): the loader's listing of each table's files
   (:func:`~rollrisk.storage.loader.list_table_files`), each file's columns and types read
   without its rows (:func:`~rollrisk.storage.loader.read_table_file` with no row), the
   loader's reconciliation of the parts' types
   (:func:`~rollrisk.storage.loader.alignment`), and the *read units*: a CSV file, or up to
   :data:`UNIT_ROWS` rows of a Parquet file. File errors found here are the loader's.
2. **read** (one task per unit, ``mapInArrow``): the unit's rows read and typed exactly as the
   loader reads its file, with the file and row numbers the rejects name; each row's partition
   is the seeded hash of its ``account_id`` (:func:`rollrisk.storage.results.partition_of`);
   the unit's rows leave the task as one Arrow IPC blob per partition.
3. **shuffle** (:func:`one_group_per_task`, then ``applyInPandas``): every blob of a
   partition, of every table, meets in one task of its own, where the parts are put back in file order and each table is
   validated by :func:`~rollrisk.storage.loader.validate_next`, in the contract's table order
   (accounts first, so references, knock-ons and opening dates are checked against the
   partition's accounts: all rows of an account share its partition).

Two keys partition the rows. Validation for the record (:meth:`SparkPortfolio.validate`) uses
the hash of the id *with surrounding spaces stripped*, so that a statement of ``" A1"`` meets
the account ``"A1"`` and its reject says the spaces are the likely cause, as the local loader
does. Jobs that then work per output partition (scoring, training sets) use the hash of the id
as given, the local engine's partitions; they validate again (rows accepted do not depend on
the grouping) and use the accepted rows only.
"""

from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from rollrisk.errors import DataContractError, UserError
from rollrisk.features.dates import DateSettings, DefaultAsOf, choose_default_as_of
from rollrisk.features.schemas import RECORD_TABLES, TABLES
from rollrisk.features.validation import REJECT_SCHEMA, TableOutcome
from rollrisk.storage.loader import (
    OPTIONAL_TABLE_NAMES,
    Portfolio,
    TableReport,
    ValidationReport,
    alignment,
    check_portfolio_folder,
    check_usable,
    empty_raw_table,
    file_errors_error,
    list_portfolio_tables,
    no_rows_error,
    portfolio_of,
    read_table_file,
    reading_dates,
    reason_kinds,
    table_report,
    top_reasons,
    validate_next,
    with_bookkeeping,
)
from rollrisk.storage.rejects import RejectAccounting, TableRejects, account_rejects
from rollrisk.storage.results import partition_of

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, GroupedData, SparkSession

UNIT_ROWS = 1_000_000  # rows of a Parquet file one read task takes
ROWS_PER_VALIDATION_PARTITION = 2_000_000  # input rows per validation task (at least)
TABLE_NAMES = tuple(table.name for table in TABLES)  # the scoring inputs
# every table read and validated, the loader's order: the inputs, then the optional record of
# past experiments (checked and counted like the others, fed to no feature)
READ_TABLES = (*TABLES, *RECORD_TABLES)
# one row per (unit, partition): the unit's rows of that partition as Arrow IPC; table -1
# marks a partition that must have a group even if no row hashes to it
BLOB_SCHEMA = "partition int, tbl int, unit int, rows binary"
MARKER = -1


@dataclass(frozen=True)
class ReadUnit:
    """One read task's share of one file: ``length`` rows from ``offset`` (None: all)."""

    table: int  # index in READ_TABLES
    file_index: int  # index in the table's files, as FILE_COLUMN numbers them
    path: str
    offset: int = 0
    length: int | None = None


@dataclass(frozen=True)
class ReadPlan:
    """What the driver knows of the portfolio before any row is read (:func:`plan_read`)."""

    data_dir: Path
    dates: DateSettings
    extract_date_given: bool
    files: dict[str, tuple[str, ...]]  # present tables: the files read, in the loader's order
    schemas: dict[str, tuple[pl.Schema, ...]]  # per file, its types as the loader reads them
    raw_schemas: dict[str, pl.Schema]  # the table's parts met: columns and types, in order
    units: tuple[ReadUnit, ...]
    file_errors: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()

    @property
    def rows_known(self) -> int:
        """Rows of the Parquet units (CSV files are counted only when read)."""
        return sum(unit.length or 0 for unit in self.units)


def plan_read(
    data_dir: Path, dates: DateSettings | None = None, unit_rows: int = UNIT_ROWS
) -> ReadPlan:
    """Look at the portfolio folder as the loader does, without reading its rows.

    Raises:
        DataContractError: the folder is unusable (missing, a required table not found or
            given twice), as :func:`rollrisk.storage.loader.validate_portfolio` raises.
    """
    data_dir = check_portfolio_folder(data_dir)
    dates, extract_date_given = reading_dates(dates)
    errors: list[str] = []
    ignored: list[str] = []
    absent: list[str] = []
    files: dict[str, tuple[str, ...]] = {}
    schemas: dict[str, tuple[pl.Schema, ...]] = {}
    raw_schemas: dict[str, pl.Schema] = {}
    units: list[ReadUnit] = []
    listings = list_portfolio_tables(data_dir, READ_TABLES)
    for index, table in enumerate(READ_TABLES):
        listing = listings[table.name]
        errors.extend(listing.unusable)
        ignored.extend(str(path) for path in listing.ignored)
        if not listing.files:  # an optional table (a missing required one raised above)
            if table in TABLES:  # an absent record table costs no feature: nothing to say
                absent.append(table.name)
            continue
        names: list[str] = []
        heads: list[pl.DataFrame] = []
        for path in listing.files:
            try:
                head = read_table_file(path, table, dates, rows=(0, 0))
            except DataContractError as error:
                errors.append(str(error))
                continue
            file_index = len(names)
            names.append(str(path))
            heads.append(with_bookkeeping(head, table, file_index))
            units.extend(_units(index, file_index, path, unit_rows))
        plan = alignment([head.schema for head in heads], names, table, errors)
        aligned = [plan.apply(head, i) for i, head in enumerate(heads)]
        files[table.name] = tuple(names)
        schemas[table.name] = tuple(head.schema for head in heads)
        # a table none of whose files could be read: no rows, in the loader's empty table
        # (its file errors say why), not a table without columns
        raw_schemas[table.name] = (
            pl.concat(aligned, how="diagonal_relaxed").schema
            if aligned
            else empty_raw_table(table).schema
        )
    return ReadPlan(
        data_dir=data_dir,
        dates=dates,
        extract_date_given=extract_date_given,
        files=files,
        schemas=schemas,
        raw_schemas=raw_schemas,
        units=tuple(units),
        file_errors=tuple(errors),
        absent=tuple(absent),
        ignored=tuple(ignored),
    )


def _units(table: int, file_index: int, path: Path, unit_rows: int) -> list[ReadUnit]:
    if path.suffix.lower() == ".csv":
        return [ReadUnit(table, file_index, str(path))]
    rows = pl.scan_parquet(path).select(pl.len()).collect().item()  # the footer only
    return [
        ReadUnit(table, file_index, str(path), offset, min(unit_rows, rows - offset))
        for offset in range(0, max(rows, 1), unit_rows)
    ]


# --------------------------------------------------------------------------- partition keys


def validation_key(partitions: int) -> pl.Expr:
    """The partition a row is validated in: the id as text, surrounding spaces stripped (so an
    id and its spaced copy meet, and the reject can say so)."""
    return partition_of(pl.col("account_id").cast(pl.String).str.strip_chars(), partitions)


def output_key(partitions: int) -> pl.Expr:
    """The local engine's partition of a row: the hash of its account id as accepted (text)."""
    return partition_of(pl.col("account_id").cast(pl.String), partitions)


# --------------------------------------------------------------------------- executor side


def read_unit(plan: ReadPlan, unit: ReadUnit) -> pl.DataFrame:
    """The rows of ``unit`` as the loader reads its file: typed, numbered, types reconciled
    with the table's other files."""
    table = READ_TABLES[unit.table]
    rows = None if unit.length is None else (unit.offset, unit.length)
    frame = read_table_file(Path(unit.path), table, plan.dates, rows=rows)
    frame = with_bookkeeping(frame, table, unit.file_index, unit.offset)
    found = dict(frame.schema)
    expected = dict(plan.schemas[table.name][unit.file_index])
    if found != expected:  # the file changed between the plan and the read
        raise DataContractError(
            f"{unit.path}: its columns changed while the portfolio was being read "
            f"(planned {expected}, read {found}); rerun on a folder that is not being written"
        )
    names = plan.files[table.name]
    return alignment(plan.schemas[table.name], names, table, []).apply(frame, unit.file_index)


def _read_blobs(
    shared: Any,
    partitions: int,
    key: Callable[[int], pl.Expr],
    keep: frozenset[int] | None,
    batches: Iterator[pa.RecordBatch],
) -> Iterator[pa.RecordBatch]:
    """Runs in a Spark Python worker: each unit of ``batches`` read and cut by partition."""
    plan: ReadPlan = shared.value
    for batch in batches:
        for number in batch.column("unit").to_pylist():
            frame = read_unit(plan, plan.units[number]).with_columns(
                key(partitions).alias("_partition")
            )
            if keep is not None:
                frame = frame.filter(pl.col("_partition").is_in(list(keep)))
            parts = frame.partition_by("_partition", as_dict=True, maintain_order=True)
            out = [(k[0], part.drop("_partition")) for k, part in parts.items()]
            if out:
                yield pa.RecordBatch.from_pydict(
                    {
                        "partition": pa.array([k for k, _ in out], pa.int32()),
                        "tbl": pa.array([plan.units[number].table] * len(out), pa.int32()),
                        "unit": pa.array([number] * len(out), pa.int32()),
                        "rows": pa.array([to_ipc(part) for _, part in out], pa.binary()),
                    }
                )


@dataclass(frozen=True)
class PartitionTables:
    """One partition's tables after validation (what a per-partition job is given)."""

    partition: int
    outcomes: dict[str, TableOutcome]
    portfolio: Portfolio  # this partition's accepted rows and its rejects

    def inputs(self, present: Sequence[str]) -> tuple[pl.DataFrame | None, ...]:
        """The accepted rows of each input table, in :data:`TABLE_NAMES` order; a table not in
        ``present`` (absent, or without an accepted row in the whole portfolio) is None, as
        the local engine gives it, even where this partition has rows of it."""
        return tuple(
            self.outcomes[name].accepted if name in present else None for name in TABLE_NAMES
        )


def validate_partition(plan: ReadPlan, partition: int, blobs: Any) -> PartitionTables:
    """Validate one partition's rows: ``blobs`` has columns ``tbl``, ``unit``, ``rows`` (a
    pandas frame from the shuffle), the rows of each unit of this partition as Arrow IPC."""
    parts: dict[int, list[tuple[int, bytes]]] = {}
    for table, unit, rows in zip(blobs["tbl"], blobs["unit"], blobs["rows"], strict=True):
        if table != MARKER:
            parts.setdefault(int(table), []).append((int(unit), rows))
    outcomes: dict[str, TableOutcome] = {}
    for index, table in enumerate(READ_TABLES):
        if table.name not in plan.files:
            continue
        frames = [from_ipc(rows) for _, rows in sorted(parts.get(index, []), key=lambda p: p[0])]
        raw = pl.concat(
            [pl.DataFrame(schema=plan.raw_schemas[table.name]), *frames], how="diagonal_relaxed"
        )
        outcomes[table.name] = validate_next(
            raw, table, plan.files[table.name], outcomes, plan.dates
        )
    report = ValidationReport(
        data_dir=plan.data_dir,
        tables=tuple(
            table_report(name, plan.files[name], outcome) for name, outcome in outcomes.items()
        ),
        dates=plan.dates,
        extract_date_given=plan.extract_date_given,
    )
    return PartitionTables(partition, outcomes, portfolio_of(outcomes, report))


def _validation_record(plan: ReadPlan, partition: int, blobs: Any) -> dict[str, Any]:
    """What one partition's validation adds to the run's record: counts, reason kinds, the
    rejects (IPC), the accounts' reject figures, the statement months and the statements
    (IPC) the population is later counted on."""
    tables = validate_partition(plan, partition, blobs)
    accounting = account_rejects(tables.portfolio)
    statements = tables.portfolio.statements
    months = (
        statements.group_by(pl.col("cycle_end").dt.month_end().alias("month_end"))
        .agg(pl.col("account_id").n_unique().alias("accounts"))
        .sort("month_end")
    )
    bounds = statements.select(
        pl.col("cycle_end").min().alias("first"),
        pl.col("cycle_end").max().alias("last"),
        pl.col("known_at").min().alias("first_known"),
    ).row(0, named=True)
    rejects = pl.concat(
        [pl.DataFrame(schema=REJECT_SCHEMA), *(o.rejects for o in tables.outcomes.values())]
    )
    summary = {
        "tables": {
            name: {
                "read": outcome.rows_read,
                "accepted": outcome.rows_accepted,
                "reasons": reason_kinds(outcome.rejects).rows(),
            }
            for name, outcome in tables.outcomes.items()
        },
        "accounts": {
            "read": accounting.accounts_read,
            "rejected": accounting.accounts_rejected,
            "lost": accounting.accounts_lost,
            "without_id": accounting.rejected_without_id,
            "knock_on": {t.table: t.knock_on for t in accounting.tables},
        },
        "months": [[m.isoformat(), n] for m, n in months.iter_rows()],
        "bounds": {k: None if v is None else v.isoformat() for k, v in bounds.items()},
    }
    history = statements.select("account_id", "cycle_end", "known_at", "dpd")
    # the accepted accounts' currency (one row per account, a few bytes each): the population's
    # currencies are checked against the model's on it (scoring.batch)
    currencies = tables.portfolio.accounts.select("account_id", "currency")
    return {
        "partition": partition,
        "summary": json.dumps(summary),
        "rejects": to_ipc(rejects) if rejects.height else None,
        "history": to_ipc(history),
        "accounts": to_ipc(currencies),
    }


def per_partition_group(
    shared: Any, work: Callable[[ReadPlan, int, Any], dict[str, Any]]
) -> Callable[[Any], Any]:
    """The function Spark runs in a Python worker on one partition's group (a pandas frame):
    ``work`` on it, its result as a one-row pandas frame."""

    def run(blobs: Any) -> Any:
        import pandas as pd

        plan: ReadPlan = shared.value
        partition = int(blobs["partition"].iloc[0])
        return pd.DataFrame([work(plan, partition, blobs)])

    return run


# --------------------------------------------------------------------------- driver side


@dataclass(frozen=True)
class StatementMonths:
    """The statements' months, summed over partitions (accounts are in one partition each)."""

    accounts: dict[date, int]  # month-end -> accounts with a statement that month
    first: date | None  # first and last cycle_end
    last: date | None
    first_known: datetime | None  # earliest known_at

    def month_ends(self) -> list[date]:
        return sorted(self.accounts)

    def complete_book(self) -> DefaultAsOf | None:
        """The latest month with a complete book and the later months passed over
        (:func:`rollrisk.features.dates.default_as_of_choice`), None without statements."""
        if not self.accounts:
            return None
        return choose_default_as_of(self.month_ends(), self.accounts.__getitem__)

    def labelled_through(self) -> date | None:
        """:func:`rollrisk.features.observations.labelled_through` of the whole book: the
        latest month-end with a complete book, None without statements."""
        choice = self.complete_book()
        return None if choice is None else choice.as_of


@dataclass
class SparkPortfolio:
    """A portfolio validated on Spark: the record the local loader would give, without the
    rows, and the means to run a job per partition on the executors."""

    spark: SparkSession
    plan: ReadPlan
    report: ValidationReport
    rejects: RejectAccounting
    months: StatementMonths
    empty_tables: tuple[str, ...]
    # the validation pass's rows, persisted: per partition its accepted statements (history)
    # and its accepted accounts' currency (accounts)
    _records: DataFrame | None = field(default=None, repr=False)

    @property
    def present(self) -> tuple[str, ...]:
        """The tables at hand (an optional table absent or without accepted rows is not)."""
        return tuple(
            name
            for name in TABLE_NAMES
            if name in self.plan.files and name not in self.empty_tables
        )

    def population(self, count: Callable[[pl.DataFrame], int]) -> int:
        """``count`` (statements -> accounts) summed over the validated partitions."""
        assert self._records is not None, "released"
        history = self._records.select("history").rdd
        return int(history.map(lambda row: count(from_ipc(row["history"]))).sum())

    def rows(self, find: Callable[[pl.DataFrame], pl.DataFrame]) -> pl.DataFrame:
        """``find`` (statements -> a few rows) over the validated partitions, concatenated
        (for small results only: they come to the driver)."""
        assert self._records is not None, "released"
        history = self._records.select("history").rdd
        parts = history.map(lambda row: to_ipc(find(from_ipc(row["history"])))).collect()
        return pl.concat([from_ipc(part) for part in parts], how="vertical")

    def per_account_partition(
        self, find: Callable[[pl.DataFrame, pl.DataFrame], pl.DataFrame]
    ) -> list[pl.DataFrame]:
        """``find`` (statements, accounts' ``account_id`` and ``currency`` -> a few rows) on
        each validated partition; the results, one per partition (small: they come to the
        driver)."""
        assert self._records is not None, "released"
        records = self._records.select("history", "accounts").rdd
        parts = records.map(
            lambda row: to_ipc(find(from_ipc(row["history"]), from_ipc(row["accounts"])))
        ).collect()
        return [from_ipc(part) for part in parts]

    def release(self) -> None:
        """Drop the statements kept in Spark for :meth:`population`."""
        if self._records is not None:
            self._records.unpersist()
            self._records = None

    def per_partition(
        self,
        partitions: int,
        pending: Sequence[int],
        work: Callable[[ReadPlan, int, Any], dict[str, Any]],
        schema: str,
    ) -> list[dict[str, Any]]:
        """Run ``work(plan, partition, blobs)`` on the executors once per partition of
        ``pending`` (accounts partitioned as the local engine does, by
        :func:`output_key`), each call returning one row of ``schema``; the rows, collected."""
        keep = frozenset(pending)
        # the work needs the inputs only: the record of past experiments was checked and
        # counted by the validation pass and feeds nothing here
        blobs = partition_blobs(
            self.spark, self.plan, partitions, output_key, keep, inputs_only=True
        )
        markers = self.spark.createDataFrame(
            [(k, MARKER, MARKER, None) for k in pending], BLOB_SCHEMA
        )
        shared = self.spark.sparkContext.broadcast(self.plan)
        grouped = one_group_per_task(self.spark, blobs.unionByName(markers), pending)
        rows = _collect(grouped.applyInPandas(per_partition_group(shared, work), schema))
        return [row.asDict() for row in rows]


def partition_blobs(
    spark: SparkSession,
    plan: ReadPlan,
    partitions: int,
    key: Callable[[int], pl.Expr],
    keep: frozenset[int] | None,
    inputs_only: bool = False,
) -> DataFrame:
    """The portfolio's rows as (partition, table, unit, IPC) blobs, read by the executors;
    with ``inputs_only`` the rows of the input tables only (:data:`TABLES`)."""
    context = spark.sparkContext
    shared = context.broadcast(plan)
    numbers = [
        (k,) for k, unit in enumerate(plan.units) if not inputs_only or unit.table < len(TABLES)
    ]
    units = context.parallelize(numbers, max(1, len(numbers)))
    return spark.createDataFrame(units, "unit int").mapInArrow(
        functools.partial(_read_blobs, shared, partitions, key, keep), BLOB_SCHEMA
    )


def one_group_per_task(
    spark: SparkSession, blobs: DataFrame, partitions: Sequence[int]
) -> GroupedData:
    """``blobs`` grouped by ``partition`` (the values of ``partitions``, each present), every
    group in a Spark task of its own, and as many tasks as groups.

    A plain ``groupBy("partition")`` hashes the groups onto ``spark.sql.shuffle.partitions``
    tasks (the engine's session sets 8), which adaptive execution may coalesce further: a
    cluster would run at most 8 tasks, each holding several partitions one after another.
    Hashing the partition numbers onto as many tasks as groups leaves about a third of the
    tasks empty and others with two or three groups. So each group gets a *slot*: an int
    whose Spark hash lands in a task of its own (:func:`_slots`, found by Spark's own hash),
    the rows are repartitioned by slot into exactly that many tasks (an explicit count, which
    adaptive execution keeps), and grouping by slot and partition needs no second shuffle.
    """
    from pyspark.sql import functions as F

    keys = list(partitions)
    pairs = spark.createDataFrame(
        list(zip(keys, _slots(spark, len(keys)), strict=True)), "partition int, slot int"
    )
    return (
        blobs.join(F.broadcast(pairs), "partition")
        .repartition(len(keys), "slot")
        .groupBy("slot", "partition")
    )


def _slots(spark: SparkSession, tasks: int) -> list[int]:
    """For each task ``0..tasks-1``, the smallest int that Spark's hash partitioning sends to
    it (``pmod(hash(int), tasks)``), computed by Spark so the hash is the one it partitions
    with."""
    from pyspark.sql import functions as F

    slot = F.col("id").cast("int")
    found: dict[int, int] = {}
    limit = 64 * tasks
    while len(found) < tasks:  # 64 draws a task: a task without a slot has odds of e^-64
        rows = (
            spark.range(limit)
            .select(slot.alias("slot"), F.pmod(F.hash(slot), F.lit(tasks)).alias("task"))
            .groupBy("task")
            .agg(F.min("slot").alias("slot"))
            .collect()
        )
        found = {row["task"]: row["slot"] for row in rows}
        limit *= 2
    return [found[task] for task in range(tasks)]


def validate_on_spark(
    spark: SparkSession, plan: ReadPlan, rejects_path: Path | None = None
) -> SparkPortfolio:
    """Validate the portfolio of ``plan`` on the executors and return its record: the report
    and rejects accounting the local loader gives (counts summed over partitions, reasons
    ranked over all of them), the rejected rows written to ``rejects_path`` in the local
    loader's order (when there are any), and the statements and the accounts' currency kept
    in Spark (memory and disk) for the population count and its currencies.

    Raises:
        DataContractError: a file error, or every row of a required table rejected
            (:func:`rollrisk.storage.loader.check_usable`), as the local loader does.
    """
    from pyspark import StorageLevel

    if plan.file_errors:  # the job would stop on them after reading every row: stop now
        raise file_errors_error(plan.file_errors)
    parallelism = spark.sparkContext.defaultParallelism
    partitions = max(2 * parallelism, -(-plan.rows_known // ROWS_PER_VALIDATION_PARTITION), 1)
    blobs = partition_blobs(spark, plan, partitions, validation_key, None)
    shared = spark.sparkContext.broadcast(plan)
    records = one_group_per_task(spark, blobs, range(partitions)).applyInPandas(
        per_partition_group(shared, _validation_record),
        "partition int, summary string, rejects binary, history binary, accounts binary",
    )
    records = records.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        summaries = [json.loads(row["summary"]) for row in _collect(records.select("summary"))]
        report, accounting, months, empty = _combine(plan, summaries, rejects_path)
        if report.rows_rejected and rejects_path is not None:
            _write_rejects(plan, records, rejects_path)
        check_usable(report)
    except BaseException:
        records.unpersist()
        raise
    return SparkPortfolio(spark, plan, report, accounting, months, empty, records)


def _combine(
    plan: ReadPlan, summaries: Sequence[Mapping[str, Any]], rejects_path: Path | None
) -> tuple[ValidationReport, RejectAccounting, StatementMonths, tuple[str, ...]]:
    tables: list[TableReport] = []
    errors = list(plan.file_errors)
    for table in READ_TABLES:
        if table.name not in plan.files:
            continue
        parts = [s["tables"][table.name] for s in summaries if table.name in s["tables"]]
        read = sum(p["read"] for p in parts)
        accepted = sum(p["accepted"] for p in parts)
        kinds = pl.DataFrame(
            [row for p in parts for row in p["reasons"]],
            schema={"reason": pl.String, "len": pl.UInt32},
            orient="row",
        )
        kinds = kinds.group_by("reason").agg(pl.col("len").sum())
        tables.append(
            TableReport(
                table.name,
                plan.files[table.name],
                read,
                accepted,
                read - accepted,
                top_reasons(kinds) if kinds.height else (),
            )
        )
        if table.required and not read and plan.files[table.name]:
            errors.append(no_rows_error(plan.files[table.name], table))
    report = ValidationReport(
        data_dir=plan.data_dir,
        tables=tuple(tables),
        file_errors=tuple(errors),
        absent_optional=plan.absent,
        rejects_path=rejects_path if sum(t.rows_rejected for t in tables) else None,
        dates=plan.dates,
        extract_date_given=plan.extract_date_given,
        ignored_files=plan.ignored,
    )
    accounts = [s["accounts"] for s in summaries]
    accounting = RejectAccounting(
        tables=tuple(
            TableRejects(
                table=t.table,
                rows_read=t.rows_read,
                rows_rejected=t.rows_rejected,
                knock_on=sum(a["knock_on"].get(t.table, 0) for a in accounts),
                top_reasons=t.top_reasons,
            )
            for t in tables
        ),
        accounts_read=sum(a["read"] for a in accounts),
        accounts_rejected=sum(a["rejected"] for a in accounts),
        accounts_lost=sum(a["lost"] for a in accounts),
        rejected_without_id=sum(a["without_id"] for a in accounts),
    )
    counts: dict[date, int] = {}
    for s in summaries:
        for month, n in s["months"]:
            counts[date.fromisoformat(month)] = counts.get(date.fromisoformat(month), 0) + n
    bounds = [s["bounds"] for s in summaries if s["bounds"]["first"] is not None]
    months = StatementMonths(
        accounts=counts,
        first=min((date.fromisoformat(b["first"]) for b in bounds), default=None),
        last=max((date.fromisoformat(b["last"]) for b in bounds), default=None),
        first_known=min((datetime.fromisoformat(b["first_known"]) for b in bounds), default=None),
    )
    empty = tuple(
        t.table for t in tables if t.table in OPTIONAL_TABLE_NAMES and not t.rows_accepted
    )
    return report, accounting, months, empty


def _write_rejects(plan: ReadPlan, records: DataFrame, path: Path) -> None:
    """The rejected rows as the local loader writes them: tables in contract order, rows in
    file order. They come to the driver (bounded by the reject limit of the jobs)."""
    frames = [
        from_ipc(row["rejects"]) for row in _collect(records.select("rejects")) if row["rejects"]
    ]
    order = pl.DataFrame(
        [
            (name, file, table_index, file_index)
            for table_index, name in enumerate(table.name for table in READ_TABLES)
            for file_index, file in enumerate(plan.files.get(name, ()))
        ],
        schema={"table": pl.String, "file": pl.String, "_table": pl.Int64, "_file": pl.Int64},
        orient="row",
    )
    rejects = (
        pl.concat(frames)
        .join(order, on=["table", "file"], how="left")
        .sort("_table", "_file", "row")
        .drop("_table", "_file")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    rejects.write_csv(path)


_EXECUTOR_ERROR = re.compile(r"rollrisk\.errors\.(DataContractError|UserError): (.*)")
_PYTHON_ERROR = re.compile(r"^(\w+(?:\.\w+)*(?:Error|Exception)): (.*)$", re.MULTILINE)


def _collect(frame: DataFrame) -> list[Any]:
    """``frame.collect()``. An error the executors raised for the data (a file that cannot be
    read) is raised again on the driver as that error, in its own words; any other failed task
    (a full disk, a partition file that cannot be written) as a ``RuntimeError`` naming the
    worker's error, without the JVM's stack trace."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    try:
        return frame.collect()
    except (PySparkException, Py4JJavaError) as error:
        text = str(error)
        found = _EXECUTOR_ERROR.search(text)
        if found is not None:
            kind = DataContractError if found.group(1) == "DataContractError" else UserError
            raise kind(found.group(2).strip()) from None
        cause = _PYTHON_ERROR.findall(text)
        if not cause:
            raise
        name, message = cause[-1]
        raise RuntimeError(f"a Spark task failed: {name}: {message.strip()}") from error


def to_ipc(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_ipc(buffer, compression="lz4")
    return buffer.getvalue()


def from_ipc(payload: bytes) -> pl.DataFrame:
    return pl.read_ipc(io.BytesIO(payload))
