"""Row-level enforcement of the data contract: raw table in, accepted rows and rejects out.

Pure functions (no I/O). The raw frame carries two bookkeeping columns added by the reader,
``_file`` (index into the list of source files) and ``_row`` (0-based data row in that file),
so that every reject names the file and row it came from. Checks run in this order, and a row
is rejected at the first stage that finds it bad (all of that stage's reasons are reported):

1. types: every contract column is cast to its contract dtype; a value that does not parse
   (``"abc"`` in ``amount_due``, ``"2024-13-45"`` in ``cycle_end``, ``12.5`` in ``dpd``) rejects
   the row;
2. the pandera schema of the table: nullability, ranges, allowed values, cross-column checks;
3. duplicates: a second row with the same key (e.g. account and cycle) is rejected, naming the
   row it duplicates; the first one in file order is kept;
4. references: a row whose ``account_id`` is not an accepted account is rejected.

Rows read = rows accepted + rows rejected, always; :class:`TableOutcome` carries the counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandera.polars as pa
import polars as pl

from rollrisk.errors import DataContractError
from rollrisk.features.schemas import TableContract

FILE_COLUMN = "_file"
ROW_COLUMN = "_row"
BOOKKEEPING = (FILE_COLUMN, ROW_COLUMN)

REJECT_SCHEMA: dict[str, pl.DataType] = {
    "table": pl.String(),
    "file": pl.String(),
    "row": pl.Int64(),
    "key": pl.String(),
    "reasons": pl.String(),
}


@dataclass(frozen=True)
class TableOutcome:
    """What validating one table produced."""

    table: str
    accepted: pl.DataFrame  # contract dtypes, bookkeeping columns dropped
    rejects: pl.DataFrame  # REJECT_SCHEMA, one row per rejected input row
    rows_read: int

    @property
    def rows_accepted(self) -> int:
        return self.accepted.height

    @property
    def rows_rejected(self) -> int:
        return self.rejects.height


def check_columns(columns: Sequence[str], table: TableContract, source: str) -> None:
    """Raise if a contract column is missing from a file: no row of it could be accepted."""
    missing = [name for name in table.dtypes if name not in columns]
    if missing:
        expected = ", ".join(f"{name} ({dtype})" for name, dtype in table.dtypes.items())
        raise DataContractError(
            f"{source}: table '{table.name}' lacks column(s) {', '.join(missing)}; "
            f"expected columns: {expected}"
        )


def _cast_expression(name: str, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    column = pl.col(name)
    if source == target:
        return column
    if source == pl.String():
        column = column.str.strip_chars()
        if target == pl.Date():
            return column.str.to_date(strict=False)
        if isinstance(target, pl.Datetime):
            # accept "2024-01-31", "2024-01-31 10:00:00" and "2024-01-31T10:00:00"
            return pl.coalesce(
                column.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us"),
                column.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us"),
                column.str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False, time_unit="us"),
                column.str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False, time_unit="us"),
                column.str.to_date("%Y-%m-%d", strict=False).cast(target),
            )
        if target.is_integer():
            # "12" and "12.0" are integers, "12.5" is not
            as_float = column.cast(pl.Float64, strict=False)
            return pl.when(as_float == as_float.floor()).then(as_float).cast(target, strict=False)
        return column.cast(target, strict=False)
    if source.is_float() and target.is_integer():
        return pl.when(column == column.floor()).then(column).cast(target, strict=False)
    return column.cast(target, strict=False)


def _cast_to_contract(raw: pl.DataFrame, table: TableContract) -> pl.DataFrame:
    """Cast to contract dtypes, adding ``_type_reason`` (null where every value parsed).

    All expressions of one ``with_columns`` see the raw values, so the reason quotes the
    value as it was given.
    """
    casts = []
    reasons = []
    for name, target in table.dtypes.items():
        source = raw.schema[name]
        cast = _cast_expression(name, source, target)
        casts.append(cast.alias(name))
        if source == target:
            continue
        failed = pl.col(name).is_not_null() & cast.is_null()
        reasons.append(
            pl.when(failed).then(
                pl.format(
                    "{}: expected {}, got '{}'",
                    pl.lit(name),
                    pl.lit(_describe(target)),
                    pl.col(name).cast(pl.String),
                )
            )
        )
    joined = pl.concat_str(reasons, separator="; ", ignore_nulls=True) if reasons else pl.lit("")
    reason = pl.when(joined != "").then(joined)  # concat of all-null reasons is "", not null
    return raw.with_columns(*casts, reason.cast(pl.String).alias("_type_reason"))


def _describe(dtype: pl.DataType) -> str:
    if dtype == pl.Date():
        return "a date (YYYY-MM-DD)"
    if isinstance(dtype, pl.Datetime):
        return "a timestamp (YYYY-MM-DD[ HH:MM:SS])"
    if dtype.is_integer():
        return "a whole number"
    if dtype.is_float():
        return "a number"
    return "text"


def _schema_failures(frame: pl.DataFrame, table: TableContract) -> pl.DataFrame:
    """Run the table's pandera schema; return (``_pos``, reason) per failing row."""
    try:
        table.schema.validate(frame.drop(*BOOKKEEPING, "_pos"), lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    else:
        return pl.DataFrame(schema={"_pos": pl.Int64, "reason": pl.String})
    if cases["index"].null_count():
        # a failure not tied to a row (a wrong dtype after casting) is a bug here, not bad data
        unrowed = cases.filter(pl.col("index").is_null())
        raise DataContractError(
            f"table '{table.name}' failed schema checks not tied to a row: "
            + "; ".join(f"{c}: {k}" for c, k in unrowed.select("column", "check").iter_rows())
        )
    is_row_check = pl.col("schema_context") == "DataFrameSchema"
    reasons = cases.select(
        pl.col("index").cast(pl.Int64).alias("_index"),
        pl.when(is_row_check)
        .then(pl.col("check"))
        .when(pl.col("check") == "not_nullable")
        .then(pl.format("{}: expected a value, got nothing", pl.col("column")))
        .otherwise(
            pl.format(
                "{}: expected {}, got '{}'",
                pl.col("column"),
                _readable_check(pl.col("check")),
                pl.col("failure_case"),
            )
        )
        .alias("reason"),
    )
    # pandera's index is the row position within `frame`
    positions = frame.select(pl.col("_pos"), pl.int_range(pl.len(), dtype=pl.Int64).alias("_index"))
    return (
        reasons.join(positions, on="_index")
        .group_by("_pos", maintain_order=True)
        .agg(pl.col("reason").unique(maintain_order=True).str.join("; "))
    )


_CHECK_WORDS = (
    (r"^isin\((.*)\)$", "one of $1"),
    (r"^greater_than_or_equal_to\((.*)\)$", "a value >= $1"),
    (r"^greater_than\((.*)\)$", "a value > $1"),
    (r"^less_than_or_equal_to\((.*)\)$", "a value <= $1"),
    (r"^less_than\((.*)\)$", "a value < $1"),
    (r"^str_matches\((.*)\)$", "text matching $1"),
    (r"^str_length\((.*)\)$", "text of length $1"),
)


def _readable_check(check: pl.Expr) -> pl.Expr:
    """Turn pandera's check names (``greater_than_or_equal_to(0)``) into words."""
    for pattern, words in _CHECK_WORDS:
        check = check.str.replace(pattern, words)
    return check


def _key_expression(table: TableContract) -> pl.Expr:
    return pl.concat_str(
        [
            pl.format(f"{name}={{}}", pl.col(name).cast(pl.String).fill_null("?"))
            for name in table.key
        ],
        separator=", ",
    )


CHUNK_ROWS = 2_000_000  # rows typed and schema-checked at once: bounds the memory of the checks


def validate_table(
    raw: pl.DataFrame,
    table: TableContract,
    files: Sequence[str],
    known_accounts: pl.Series | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> TableOutcome:
    """Validate one table read from ``files``.

    ``raw`` holds every contract column (any dtype; CSV columns arrive as text) plus
    ``_file`` and ``_row``. ``known_accounts`` are the accepted account ids when the table
    references accounts. Returns the accepted rows in contract dtypes, in input order, and
    the rejects. Frames are copied only where rows are actually rejected.
    """
    check_columns(raw.columns, table, f"{table.name} ({', '.join(files) or 'no files'})")
    rows_read = raw.height
    rejects: list[pl.DataFrame] = []
    checked: list[pl.DataFrame] = []
    for start in range(0, rows_read, chunk_rows):
        chunk = raw.slice(start, chunk_rows).with_columns(
            pl.int_range(start, start + pl.len(), dtype=pl.Int64).alias("_pos")
        )
        frame = _cast_to_contract(chunk, table)
        mistyped = frame.filter(pl.col("_type_reason").is_not_null())
        if mistyped.height:
            # keys are rendered from the raw values, so a value that failed to parse still shows
            rejects.append(
                _reject_rows(
                    chunk.join(mistyped.select("_pos", "_type_reason"), on="_pos"),
                    "_type_reason",
                    table,
                    files,
                )
            )
            frame = _without(frame, mistyped)
        frame = frame.drop("_type_reason")
        failures = _schema_failures(frame, table)
        if failures.height:
            rejects.append(_reject_rows(frame.join(failures, on="_pos"), "reason", table, files))
            frame = _without(frame, failures)
        checked.append(frame)
    candidates = (
        pl.concat(checked, rechunk=False)
        if checked
        else _cast_to_contract(
            raw.with_columns(pl.lit(0, dtype=pl.Int64).alias("_pos")), table
        ).drop("_type_reason")
    )

    if table.unique:
        duplicated = _duplicates(candidates, table, files)
        if duplicated.height:
            rejects.append(
                _reject_rows(candidates.join(duplicated, on="_pos"), "reason", table, files)
            )
            candidates = _without(candidates, duplicated)

    if table.references_accounts and known_accounts is not None:
        unknown = candidates.filter(~pl.col("account_id").is_in(known_accounts.implode()))
        if unknown.height:
            reason = pl.format(
                "account_id: expected an account listed in accounts, got '{}'",
                pl.col("account_id"),
            )
            rejects.append(
                _reject_rows(unknown.with_columns(reason.alias("reason")), "reason", table, files)
            )
            candidates = _without(candidates, unknown)

    accepted = candidates.drop("_pos", *BOOKKEEPING)
    reject_frame = (
        pl.concat(rejects).sort("_pos").drop("_pos")
        if rejects
        else pl.DataFrame(schema=REJECT_SCHEMA)
    )
    if accepted.height + reject_frame.height != rows_read:  # a broken invariant is a bug
        raise AssertionError(
            f"{table.name}: {rows_read} rows read but {accepted.height} accepted "
            f"+ {reject_frame.height} rejected"
        )
    return TableOutcome(table.name, accepted, reject_frame, rows_read)


def _without(frame: pl.DataFrame, bad: pl.DataFrame) -> pl.DataFrame:
    """``frame`` less the rows whose ``_pos`` is in ``bad``, order kept."""
    return frame.filter(~pl.col("_pos").is_in(bad["_pos"].implode()))


def _reject_rows(
    frame: pl.DataFrame, reason_column: str, table: TableContract, files: Sequence[str]
) -> pl.DataFrame:
    """Reject lines (REJECT_SCHEMA plus ``_pos``) for the rows of ``frame``."""
    return frame.join(
        _file_names(files, frame.schema[FILE_COLUMN]), on=FILE_COLUMN, how="left"
    ).select(
        pl.lit(table.name).alias("table"),
        pl.col("file"),
        pl.col(ROW_COLUMN).cast(pl.Int64).alias("row"),
        _key_expression(table).alias("key"),
        pl.col(reason_column).alias("reasons"),
        "_pos",
    )


def _duplicates(
    candidates: pl.DataFrame, table: TableContract, files: Sequence[str]
) -> pl.DataFrame:
    """(``_pos``, reason) for every row repeating the key of an earlier row."""
    assert table.unique is not None
    keys = list(table.unique)
    # One cheap pass over a 64-bit hash of the key finds the rows that may repeat a key; the
    # exact comparison then runs on those few rows only (a hash collision is not a duplicate).
    key_hash = candidates.select(pl.struct(keys).hash(seed=17)).to_series()
    maybe = candidates.filter(~key_hash.is_first_distinct())
    if maybe.height == 0:
        return pl.DataFrame(schema={"_pos": pl.Int64, "reason": pl.String})
    involved = candidates.join(maybe.select(keys).unique(), on=keys, nulls_equal=True)
    first = involved.group_by(keys).agg(
        pl.col("_pos").min().alias("_first_pos"),
        pl.col(FILE_COLUMN).sort_by("_pos").first().alias("_first_file"),
        pl.col(ROW_COLUMN).sort_by("_pos").first().alias("_first_row"),
    )
    return (
        involved.join(first, on=keys, nulls_equal=True)
        .filter(pl.col("_pos") != pl.col("_first_pos"))
        .join(
            _file_names(files, candidates.schema[FILE_COLUMN]),
            left_on="_first_file",
            right_on=FILE_COLUMN,
        )
        .select(
            "_pos",
            pl.format(
                "duplicate ({}): same key as row {} of {}, which was kept",
                pl.lit(", ".join(keys)),
                pl.col("_first_row"),
                pl.col("file"),
            ).alias("reason"),
        )
    )


def _file_names(files: Sequence[str], dtype: pl.DataType) -> pl.DataFrame:
    return pl.DataFrame(
        {FILE_COLUMN: pl.Series(range(len(files)), dtype=dtype), "file": list(files)}
    )
