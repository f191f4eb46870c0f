"""The one validating loader every job reads a portfolio folder through.

A table is found as ``DIR/<table>.parquet``, ``DIR/<table>.csv`` or a folder ``DIR/<table>/``
of ``*.parquet`` (or ``*.csv``) part files. ``accounts`` and ``statements`` are required,
``collection_actions`` and ``treatments`` optional. Anything else in the folder (``truth/``
from the simulator, notes) is ignored.

Bad rows are set aside with a reason (see :mod:`rollrisk.features.validation`); a file that
cannot be read at all (truncated, not Parquet, missing columns) is a file error: ``validate``
reports it, every other job stops, because scoring a partial portfolio would lose accounts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from rollrisk.errors import DataContractError
from rollrisk.features.schemas import TABLES, TableContract
from rollrisk.features.validation import (
    FILE_COLUMN,
    REJECT_SCHEMA,
    ROW_COLUMN,
    TableOutcome,
    check_columns,
    validate_table,
)

SUFFIXES = (".parquet", ".csv")


@dataclass(frozen=True)
class TableReport:
    table: str
    files: tuple[str, ...]
    rows_read: int
    rows_accepted: int
    rows_rejected: int
    top_reasons: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class ValidationReport:
    """Counts per table, file-level errors and where the rejects were written."""

    data_dir: Path
    tables: tuple[TableReport, ...]
    file_errors: tuple[str, ...] = ()
    absent_optional: tuple[str, ...] = ()
    rejects_path: Path | None = None

    @property
    def rows_rejected(self) -> int:
        return sum(table.rows_rejected for table in self.tables)

    @property
    def ok(self) -> bool:
        return not self.file_errors and self.rows_rejected == 0

    def summary(self) -> str:
        lines = [f"portfolio {self.data_dir}"]
        width = max((len(t.table) for t in self.tables), default=10)
        lines.append(f"  {'table':<{width}}  {'read':>12}  {'accepted':>12}  {'rejected':>10}")
        for table in self.tables:
            lines.append(
                f"  {table.table:<{width}}  {table.rows_read:>12,}  "
                f"{table.rows_accepted:>12,}  {table.rows_rejected:>10,}"
            )
            for reason, count in table.top_reasons:
                lines.append(f"      {count:>10,} x {reason}")
        for name in self.absent_optional:
            lines.append(f"  {name}: absent (optional; features that need it are left missing)")
        for error in self.file_errors:
            lines.append(f"  FILE ERROR: {error}")
        if self.rejects_path is not None and self.rows_rejected:
            lines.append(f"  rejects written to {self.rejects_path}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Portfolio:
    """The accepted rows of every table, in contract dtypes, plus how they were obtained."""

    accounts: pl.DataFrame
    statements: pl.DataFrame
    collection_actions: pl.DataFrame | None
    treatments: pl.DataFrame | None
    report: ValidationReport = field(repr=False)


def find_table_files(data_dir: Path, table: str) -> list[Path]:
    """The files holding ``table`` in ``data_dir`` (empty when the table is absent)."""
    forms = [data_dir / f"{table}{suffix}" for suffix in SUFFIXES]
    folder = data_dir / table
    found = [path for path in forms if path.is_file()]
    if folder.is_dir():
        parts = sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())
        if not parts:
            raise DataContractError(
                f"{folder}: folder for table '{table}' holds no .parquet or .csv part files"
            )
        found.append(folder)
    if len(found) > 1:
        raise DataContractError(
            f"{data_dir}: table '{table}' is given more than once "
            f"({', '.join(p.name for p in found)}); keep exactly one"
        )
    if not found:
        return []
    if found[0].is_dir():
        return sorted(p for p in found[0].iterdir() if p.suffix in SUFFIXES and p.is_file())
    return found


def _read_file(path: Path, table: TableContract) -> pl.DataFrame:
    """Read one file as it is (CSV as text, so that type errors can be reported per row)."""
    try:
        if path.suffix == ".csv":
            frame = pl.read_csv(path, infer_schema=False, null_values=[""])
        else:
            frame = pl.read_parquet(path)
    except Exception as error:  # polars raises several types for corrupt files
        kind = "Parquet" if path.suffix == ".parquet" else "CSV"
        raise DataContractError(
            f"{path}: cannot read this {kind} file for table '{table.name}' "
            f"(truncated or not {kind}?): {type(error).__name__}: {str(error).splitlines()[0]}"
        ) from error
    check_columns(frame.columns, table, str(path))
    return frame


def _read_table(
    files: list[Path], table: TableContract, errors: list[str]
) -> tuple[pl.DataFrame, list[str]]:
    frames: list[pl.DataFrame] = []
    names: list[str] = []
    for path in files:
        try:
            frame = _read_file(path, table)
        except DataContractError as error:
            errors.append(str(error))
            continue
        index = len(names)
        names.append(str(path))
        contract = list(table.dtypes)
        extra = [
            c for c in frame.columns if c not in contract and c not in (FILE_COLUMN, ROW_COLUMN)
        ]
        frames.append(
            frame.select(
                *contract,
                *extra,
                pl.lit(index, dtype=pl.UInt32).alias(FILE_COLUMN),
                pl.int_range(pl.len(), dtype=pl.Int64).alias(ROW_COLUMN),
            )
        )
    if not frames:
        empty = {name: pl.String() for name in table.dtypes}
        return pl.DataFrame(schema={**empty, FILE_COLUMN: pl.UInt32, ROW_COLUMN: pl.Int64}), names
    # parts may disagree in dtype (a CSV next to Parquet, an int column stored as float):
    # bring each differing column to text so the contract cast reports bad values per row
    return pl.concat(_align(frames), how="diagonal_relaxed", rechunk=False), names


def _align(frames: list[pl.DataFrame]) -> Iterator[pl.DataFrame]:
    differing = {
        name
        for name in frames[0].columns
        if len({frame.schema.get(name) for frame in frames if name in frame.columns}) > 1
    }
    for frame in frames:
        yield frame.with_columns(pl.col(c).cast(pl.String) for c in differing if c in frame.columns)


def validate_portfolio(data_dir: Path, rejects_path: Path | None = None) -> Portfolio:
    """Read and validate every table; never raises for bad rows or unreadable files.

    Raises :class:`DataContractError` only when the folder itself is unusable (missing,
    no accounts or statements files, a table given twice).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataContractError(f"{data_dir}: portfolio folder does not exist")
    errors: list[str] = []
    outcomes: dict[str, TableOutcome] = {}
    sources: dict[str, tuple[str, ...]] = {}
    absent: list[str] = []
    for table in TABLES:
        files = find_table_files(data_dir, table.name)
        if not files:
            if table.required:
                raise DataContractError(
                    f"{data_dir}: required table '{table.name}' not found "
                    f"(expected {table.name}.parquet, {table.name}.csv or a folder {table.name}/ "
                    f"of part files)"
                )
            absent.append(table.name)
            continue
        raw, names = _read_table(files, table, errors)
        known = outcomes["accounts"].accepted["account_id"] if table.references_accounts else None
        outcomes[table.name] = validate_table(raw, table, names, known_accounts=known)
        sources[table.name] = tuple(names)

    rejects = pl.concat(
        [pl.DataFrame(schema=REJECT_SCHEMA), *(o.rejects for o in outcomes.values())]
    )
    if rejects.height and rejects_path is not None:
        rejects_path.parent.mkdir(parents=True, exist_ok=True)
        rejects.write_csv(rejects_path)
    report = ValidationReport(
        data_dir=data_dir,
        tables=tuple(
            TableReport(
                table=name,
                files=sources[name],
                rows_read=outcome.rows_read,
                rows_accepted=outcome.rows_accepted,
                rows_rejected=outcome.rows_rejected,
                top_reasons=_top_reasons(outcome.rejects),
            )
            for name, outcome in outcomes.items()
        ),
        file_errors=tuple(errors),
        absent_optional=tuple(absent),
        rejects_path=rejects_path if rejects.height else None,
    )

    def accepted(name: str) -> pl.DataFrame | None:
        return outcomes[name].accepted if name in outcomes else None

    return Portfolio(
        accounts=outcomes["accounts"].accepted,
        statements=outcomes["statements"].accepted,
        collection_actions=accepted("collection_actions"),
        treatments=accepted("treatments"),
        report=report,
    )


def _top_reasons(rejects: pl.DataFrame, limit: int = 5) -> tuple[tuple[str, int], ...]:
    """The most frequent kinds of reason, with values stripped so that like counts with like."""
    if rejects.height == 0:
        return ()
    kinds = (
        rejects.select(pl.col("reasons").str.split("; ").alias("reason"))
        .explode("reason")
        .select(
            pl.col("reason")
            .str.replace(r", got '.*'$", "")
            .str.replace(r" row \d+ of .*", " an earlier row")
        )
        .group_by("reason")
        .len()
        .sort(["len", "reason"], descending=[True, False])
        .head(limit)
    )
    return tuple((reason, count) for reason, count in kinds.iter_rows())


def load_portfolio(data_dir: Path, rejects_path: Path | None = None) -> Portfolio:
    """Validate a portfolio folder for a job: bad rows are set aside, unreadable files stop it."""
    portfolio = validate_portfolio(data_dir, rejects_path)
    if portfolio.report.file_errors:
        raise DataContractError(
            "the portfolio has files that cannot be used, so no job runs on it "
            "(run `rollrisk validate` for the full report):\n  "
            + "\n  ".join(portfolio.report.file_errors)
        )
    return portfolio
