"""The one validating loader every job reads a portfolio folder through.

A table is found as ``DIR/<table>.parquet``, ``DIR/<table>.csv`` or a folder ``DIR/<table>/``
of part files; Parquet is recognised by ``.parquet``, ``.pq`` or ``.parq``, CSV by ``.csv``, in
any letter case. ``accounts`` and ``statements`` are required, ``collection_actions`` and
``treatments`` optional, and so is the record ``experiment_assignments`` (checked, never a
feature; it is returned as :attr:`Portfolio.experiment_assignments`). Anything else in the folder (``truth/`` from the simulator, notes) is
not read; a file that looks meant as a table but is not read (``statements.csv.gz``,
``Accounts.csv``, ``collection_action.csv``: :func:`misspelt`) is reported.

Every file in a table folder is read or reported: hidden and marker files of the tools that
write part files (``.`` or ``_`` first, as ``_SUCCESS`` and ``.part-0.parquet.crc``) are
listed as ignored; any other file (``notes.txt``, ``part-3.csv.gz``) or subfolder is a file
error, because data in it would silently be left out.

Columns are typed per file before the parts of a table meet: time-zone-aware timestamps are
converted to the declared reporting time zone (:mod:`rollrisk.features.dates`); a contract
column stored as a list or structure, or a date column stored as a number, is a file error.
Parts that disagree in a column's type are reconciled (dates and timestamps to timestamps,
other contract columns to text that is then parsed per row; extra columns to text), and
extra columns whose types cannot meet (a list in one part, text in another) are reported by
name, file and type.

Bad rows are set aside with a reason (see :mod:`rollrisk.features.validation`); a file that
cannot be read at all (truncated, not Parquet, missing columns) is a file error: ``validate``
reports it, every other job stops, because scoring a partial portfolio would lose accounts.
A CSV file the reader refuses is read again (on that failed path only) to say which line is
wrong: a row with more fields than the header, or a byte that is not UTF-8 (with how to
convert the file; no encoding is guessed).
"""

from __future__ import annotations

import codecs
import csv
import difflib
import os
import re
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path

import polars as pl

from rollrisk.errors import DataContractError
from rollrisk.features.dates import (
    TIMESTAMP,
    DateSettings,
    aware_column_message,
    in_time_zone,
    is_temporal,
    is_zone_aware,
    readable_as_temporal,
)
from rollrisk.features.schemas import RECORD_TABLES, TABLES, TableContract
from rollrisk.features.validation import (
    FILE_COLUMN,
    REJECT_SCHEMA,
    ROW_COLUMN,
    TableOutcome,
    check_columns,
    validate_table,
)

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv",)
SUFFIXES = PARQUET_SUFFIXES + CSV_SUFFIXES  # compared in lower case


REJECTED_ACCOUNTS_SCHEMA: dict[str, pl.DataType] = {"table": pl.String(), "account_id": pl.String()}


@dataclass(frozen=True)
class TableReport:
    table: str
    files: tuple[str, ...]
    rows_read: int
    rows_accepted: int
    rows_rejected: int
    top_reasons: tuple[tuple[str, int], ...]


OPTIONAL_TABLE_NAMES = tuple(table.name for table in TABLES if not table.required)
REQUIRED_TABLE_NAMES = tuple(table.name for table in TABLES if table.required)


@dataclass(frozen=True)
class ValidationReport:
    """Counts per table, file-level errors and where the rejects were written."""

    data_dir: Path
    tables: tuple[TableReport, ...]
    file_errors: tuple[str, ...] = ()
    absent_optional: tuple[str, ...] = ()
    rejects_path: Path | None = None
    # how dates were read: formats, time zone and the extract date rows were checked against
    dates: DateSettings = field(default_factory=DateSettings)
    extract_date_given: bool = False  # False: the extract date is the day of the run
    ignored_files: tuple[str, ...] = ()  # hidden and marker files in table folders

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
        for table in self.tables:
            # (a table none of whose files could be read has its file errors said below)
            if table.table in OPTIONAL_TABLE_NAMES and table.rows_accepted == 0 and table.files:
                state = (
                    f"every one of its {table.rows_read:,} rows rejected"
                    if table.rows_read
                    else "present but empty"
                )
                lines.append(
                    f"  {table.table}: {state} (no accepted row): treated as absent; "
                    f"a model trained with it scores only with --allow-missing-table {table.table}"
                )
        lines.append(f"  {self.dates_line()}")
        if self._dates_rejected():
            declared = self.dates.date_format
            lines.append(
                "  dates are read as YYYY-MM-DD, never guessed: if the files write them another "
                "way, declare it with --date-format (e.g. --date-format %d/%m/%Y)"
                if declared is None
                else f"  dates are read as YYYY-MM-DD or the declared {declared}, never guessed: "
                "values it cannot read may be written in another order of day and month "
                f"({_swapped(declared)}?), and those it reads may then be swapped: check a few "
                "against the source before going on"
            )
        if self.ignored_files:
            shown = ", ".join(self.ignored_files[:10])
            more = len(self.ignored_files) - 10
            lines.append(
                f"  ignored (hidden or marker files): {shown}"
                + (f" and {more} more" if more > 0 else "")
            )
        for error in self.file_errors:
            lines.append(f"  FILE ERROR: {error}")
        if self.rejects_path is not None and self.rows_rejected:
            lines.append(f"  rejects written to {self.rejects_path}")
        return "\n".join(lines)

    def dates_line(self) -> str:
        """How dates were read, in one line: formats, time zone, extract date."""
        dates = self.dates
        formats = "YYYY-MM-DD" + (f" or {dates.date_format}" if dates.date_format else "")
        zone = dates.time_zone or "none declared"
        source = "given" if self.extract_date_given else "today"
        return (
            f"dates: {formats}; time zone: {zone}; extract date {dates.extract_date} "
            f"({source}; rows dated after it are rejected)"
        )

    def _dates_rejected(self) -> bool:
        return any(
            "expected a date YYYY-MM-DD" in reason or "expected a timestamp YYYY-MM-DD" in reason
            for table in self.tables
            for reason, _ in table.top_reasons
        )


def _swapped(date_format: str) -> str:
    """``date_format`` with its day and month swapped (``%d/%m/%Y`` -> ``%m/%d/%Y``)."""
    return date_format.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")


@dataclass(frozen=True)
class Portfolio:
    """The accepted rows of every table, in contract dtypes, plus how they were obtained."""

    accounts: pl.DataFrame
    statements: pl.DataFrame
    collection_actions: pl.DataFrame | None
    treatments: pl.DataFrame | None
    report: ValidationReport = field(repr=False)
    # ``table`` and ``account_id`` (as given; null when missing) of every rejected row: which
    # accounts lost rows (counted by rollrisk.storage.rejects)
    rejected_accounts: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=REJECTED_ACCOUNTS_SCHEMA), repr=False
    )
    # optional tables whose files are there but hold no accepted row (a header only, or every
    # row rejected): given as None above, like an absent table, so a model trained with them
    # is refused unless the user opts in; named so the refusal can say "present but empty"
    empty_tables: tuple[str, ...] = ()
    # the optional record of past experiments (RECORD_TABLES); None when absent or empty
    experiment_assignments: pl.DataFrame | None = None


@dataclass(frozen=True)
class TableFiles:
    """What a portfolio folder holds for one table."""

    files: tuple[Path, ...] = ()  # read, in name order
    ignored: tuple[Path, ...] = ()  # hidden and marker files of a table folder (listed)
    unusable: tuple[str, ...] = ()  # files meant for the table that are not read, and why


def _file_kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return "Parquet"
    if suffix in CSV_SUFFIXES:
        return "CSV"
    return None


def misspelt(name: str, table: str) -> bool:
    """``name`` (a file's stem or a folder's name) looks meant as ``table`` without being it:
    with ``-`` or spaces for ``_``, or a letter or two off (``collection_action``,
    ``collection-actions``, ``statments``, ``Treatment``): a similarity of at least 0.9."""
    typed = re.sub(r"[-\s]+", "_", name.strip().lower())
    return name != table and difflib.SequenceMatcher(None, typed, table).ratio() >= 0.9


def list_table_files(data_dir: Path, table: str) -> TableFiles:
    """The files of ``table`` in ``data_dir``: read, ignored, and not readable (with why).

    Raises:
        DataContractError: the table is given more than once (a file and a folder, or two
            files), or its folder holds nothing to read and nothing to report.
    """
    data_dir = Path(data_dir)
    entries = sorted(data_dir.iterdir())
    tops = [p for p in entries if p.is_file() and p.stem == table and _file_kind(p)]
    # a link that leads nowhere (or to itself) is neither a file nor a folder: say which it is
    broken = [
        f"{p}: broken or looping link (it leads to no file), so table '{table}' is not read"
        for p in entries
        if p.stem == table and p.is_symlink() and not p.exists()
    ]
    # a file meant as this table that is not read: another suffix or letter case, or a table
    # file (or folder) whose name is a near miss of the table's
    near = [
        f"{p}: not read as table '{table}' (expected {table}.parquet, .pq, .parq or .csv, or a "
        f"folder {table}/ of part files)"
        for p in entries
        if p not in tops
        and not (p.is_symlink() and not p.exists())
        and p.name != table
        and (
            p.name.lower().startswith(f"{table.lower()}.")
            or p.name.lower() == table.lower()
            or ((p.is_dir() or _file_kind(p) is not None) and misspelt(p.stem, table))
        )
    ]
    near = [*broken, *near]
    folder = data_dir / table
    found = [*tops, *([folder] if folder.is_dir() else [])]
    if len(found) > 1:
        raise DataContractError(
            f"{data_dir}: table '{table}' is given more than once "
            f"({', '.join(p.name for p in found)}); keep exactly one"
        )
    if not folder.is_dir():
        return TableFiles(files=tuple(tops), unusable=tuple(near))
    parts: list[Path] = []
    ignored: list[Path] = []
    unusable = list(near)
    for path in sorted(folder.iterdir()):
        if path.name.startswith((".", "_")):
            ignored.append(path)  # _SUCCESS, .crc checksums, _temporary/: the writer's own
        elif path.is_dir():
            unusable.append(
                f"{path}: subfolder of table folder {folder} is not read (part files in "
                "partition subfolders are not supported); put its part files in the folder itself"
            )
        elif _file_kind(path) is None:
            unusable.append(
                f"{path}: not a part file of table '{table}' (.parquet, .pq, .parq or .csv), so "
                "it would not be read; convert it or move it out of the folder"
            )
        else:
            parts.append(path)
    if not parts and not unusable:
        raise DataContractError(
            f"{folder}: folder for table '{table}' holds no .parquet or .csv part files"
        )
    return TableFiles(files=tuple(parts), ignored=tuple(ignored), unusable=tuple(unusable))


def find_table_files(data_dir: Path, table: str) -> list[Path]:
    """The files holding ``table`` in ``data_dir`` that the loader reads (empty when the
    table is absent); :func:`list_table_files` also says what is ignored or not readable."""
    return list(list_table_files(data_dir, table).files)


def read_table_file(
    path: Path, table: TableContract, dates: DateSettings, rows: tuple[int, int] | None = None
) -> pl.DataFrame:
    """Read one file as it is (CSV as text, so that type errors can be reported per row), then
    type its contract columns as far as the file alone decides (:func:`_typed_per_file`).

    ``rows`` = ``(offset, length)`` reads only those rows of a Parquet file (an executor's
    share of a large file); a length of 0 reads no row, only the columns and their types, of
    either kind of file (the Spark engine's look at a file before it is read).

    Raises:
        DataContractError: the file cannot be read, lacks a contract column, repeats a column
            name, or stores a contract column in a type that cannot hold it.
    """
    kind = _file_kind(path)
    try:
        if kind == "CSV":
            if path.stat().st_size == 0:
                raise DataContractError(
                    f"{path}: the file is empty (0 bytes, not even a header line; a failed "
                    f"export?): write at least its header for a table '{table.name}' without "
                    "rows, or remove the file"
                )
            _check_line_ends(path)
            header = _csv_header(path)
            _check_separator(header, path)
            _check_unique_columns(header, path)
            head = {} if rows is None or rows[1] else {"n_rows": 0}
            frame = pl.read_csv(path, infer_schema=False, null_values=[""], **head)
        elif rows is None:
            frame = pl.read_parquet(path)
        else:
            frame = pl.scan_parquet(path).slice(*rows).collect()
    except DataContractError:
        raise
    except pl.exceptions.DuplicateError as error:  # Parquet: polars refuses a repeated name
        found = re.search(r"name '(.*)' has more than one", str(error))
        name = found.group(1) if found else str(error).splitlines()[0]
        raise DataContractError(_duplicate_message(path, [name])) from None
    except Exception as error:  # polars raises several types for corrupt files
        # the reader's own words name no line: find what is wrong (the file is read again,
        # on this failed path only) and say where
        problem = _csv_problem(path) if kind == "CSV" else None
        if problem is not None:
            raise DataContractError(f"{path}: {problem}") from None
        raise DataContractError(
            f"{path}: cannot read this {kind} file for table '{table.name}' "
            f"(truncated or not {kind}?): {type(error).__name__}: {str(error).splitlines()[0]}"
        ) from error
    if kind == "CSV" and frame.height:
        _check_last_line_complete(path)
        breaks, quotes = _breaks_and_quotes(path)
        # one line per row (and the header): no value holds a line break
        one_line_rows = breaks <= frame.height + 1
        _check_no_short_rows(path, frame, one_line_rows)
        if quotes and not one_line_rows:
            _check_rows_are_lines(path, frame, table)
    check_columns(frame.columns, table, str(path))
    return _typed_per_file(frame, table, dates, path)


def _check_line_ends(path: Path) -> None:
    """Raise if the file's lines end with a carriage return only (an old Mac export): read as
    one line, its whole content would be taken for the header."""
    with path.open("rb") as handle:
        head = handle.read(1 << 16)
    if b"\r" in head and b"\n" not in head:
        raise DataContractError(
            f"{path}: the lines end with a carriage return only (\\r, an old Mac export), not "
            f"a line break (\\n), so the file reads as one line: convert it, e.g. `tr "
            f"'\\r' '\\n' < {shlex.quote(str(path))} > {shlex.quote(str(path))}.unix`, and put "
            "the copy in its place"
        )


def _check_separator(header: Sequence[str], path: Path) -> None:
    """Raise if a one-column header holds another separator: the file is not comma-separated
    (a European Excel export uses ';'), and its columns would all be "missing"."""
    if len(header) != 1:
        return
    found = next((s for s in (";", "\t", "|") if s in header[0]), None)
    if found is not None:
        name = {";": "semicolons", "\t": "tabs", "|": "'|'"}[found]
        raise DataContractError(
            f"{path}: the header is one column, {header[0][:SHOWN_LINE]!r}, holding {name}: "
            f"the file is separated by {name}, and a CSV file of the contract is "
            "comma-separated: export it again with commas (and a '.' for decimals)"
        )


def _check_last_line_complete(path: Path) -> None:
    """Raise if a CSV file with rows does not end with a line break: a copy cut short mostly
    ends mid-line, and its last row then reads as a shorter, valid-looking value (a DPD of 521
    cut to 52)."""
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
    raise DataContractError(
        f"{path}: the file does not end with a line break, so its last line may have been cut "
        "short (a truncated copy?) and its last row read as another value: check the file "
        "against its source, or add the final line break if the file is whole"
    )


SCAN_BYTES = 1 << 24
"""How much of a CSV file :func:`_first_non_utf8` reads at a time."""

LINE_BYTES = 1 << 20
"""The longest start of a line :func:`_first_non_utf8` reads again to name the column."""

SHOWN_LINE = 200
"""A line quoted in an error is cut to this many characters."""


def _csv_problem(path: Path) -> str | None:
    """Why a CSV file the reader refused cannot be read, naming the line, or ``None`` when
    neither check finds it (the reader's own message then says what it can). Reads the whole
    file, so it runs only once a read has failed."""
    try:
        return _non_utf8_problem(path) or _quote_problem(path) or _long_row_problem(path)
    except OSError:
        return None


def _non_utf8_problem(path: Path) -> str | None:
    """Where the first byte that is not UTF-8 is, and how to convert the file (its encoding
    is never guessed: a wrong guess reads every Chinese name as other text, silently)."""
    found = _first_non_utf8(path)
    if found is None:
        return None
    offset, line, bad, column = found
    where = "the header" if line == 1 else f"column {column}" if column else None
    shown = " ".join(f"0x{byte:02x}" for byte in bad)
    quoted = shlex.quote(str(path))
    if offset == 0 and bad[:2] in (b"\xff\xfe", b"\xfe\xff"):  # a byte-order mark says so
        return (
            "the file is not UTF-8 text but UTF-16 (it starts with the UTF-16 byte-order mark "
            f"{shown[:9]}); a CSV file must be UTF-8: convert it "
            f"and put the copy in its place, e.g. `iconv -f UTF-16 -t UTF-8 {quoted} > "
            f"{quoted}.utf8`"
        )
    return (
        f"the file is not UTF-8 text: line {line} (byte offset {offset}"
        + (f", in {where}" if where else "")
        + f") holds bytes {shown}, which are not UTF-8; a CSV file must be UTF-8, and no other "
        "encoding is guessed: convert it from the encoding it was saved in and put the copy in "
        f"its place, e.g. `iconv -f GB18030 -t UTF-8 {quoted} > {quoted}.utf8` for a Chinese "
        "export (GBK, GB2312, GB18030), or `iconv -f WINDOWS-1252 -t UTF-8 ...` for a Western "
        "European one (Latin-1)"
    )


def _first_non_utf8(path: Path) -> tuple[int, int, bytes, str | None] | None:
    """The byte offset and 1-based line of the first byte of ``path`` that is not UTF-8, the
    bytes from there (up to 4), and the header's name of the column it is in (``None`` when
    that cannot be told cheaply); ``None`` when the file is UTF-8 throughout."""
    start = 0  # file offset of data[0]
    line = 1  # line number at data[0]
    quotes = 0  # double quotes before data[0]
    line_start, quotes_at_line = 0, 0  # file offset of the last line start seen, quotes before
    carry = b""
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(SCAN_BYTES)
            data = carry + chunk
            final = len(chunk) < SCAN_BYTES
            invalid = False
            try:  # a character cut at the chunk's end is not decoded: it goes to the next one
                _, used = codecs.utf_8_decode(data, "strict", final)
            except UnicodeDecodeError as error:
                used, invalid = error.start, True
            if not invalid and final:
                return None
            newline = data.rfind(b"\n", 0, used)
            if newline >= 0:
                line_start = start + newline + 1
                quotes_at_line = quotes + data.count(b'"', 0, newline + 1)
            line += data.count(b"\n", 0, used)
            quotes += data.count(b'"', 0, used)
            if invalid:
                offset = start + used
                handle.seek(offset)
                bad = handle.read(4)
                # the column can be told when the line starts a row (an even count of quotes
                # before it: not inside a quoted value) and is not too long to read again
                column = None
                if line > 1 and quotes_at_line % 2 == 0 and offset - line_start <= LINE_BYTES:
                    handle.seek(line_start)
                    before = handle.read(offset - line_start).decode("utf-8")
                    column = _column_at(path, before)
                return offset, line, bad, column
            start += used
            carry = data[used:]


def _column_at(path: Path, before: str) -> str | None:
    """The header's name of the column a row's text ``before`` ends in (``None`` when the row
    has more fields than the header, or the header cannot be read)."""
    try:
        with path.open("rb") as handle:  # only the first line: later ones may not decode
            first = handle.readline().decode("utf-8")
        header = next(csv.reader([first.removeprefix("\ufeff")]), [])
        fields = next(csv.reader([before]), [])  # none when ``before`` is empty
    except (csv.Error, UnicodeDecodeError):
        return None
    index = max(len(fields) - 1, 0)
    return header[index] if index < len(header) else None


def _quote_problem(path: Path) -> str | None:
    """Where a double quote breaks the file's rows, or ``None``: a quote inside a value that
    does not start with one, a quoted value no later quote closes (the rest of the file would
    be that one value), one whose closing quote is followed by more of the value (a quote
    inside a quoted value not doubled). A quoted value may span lines (one value with a line
    break, as CSV allows). Runs once the reader has refused the file; two stray quotes the
    reader accepts are :func:`_check_rows_are_lines`'s. Lines are split at line breaks only (a
    carriage return inside a value is part of it, as the reader reads it)."""
    lines = _text_lines(path)
    first = next(lines, "")
    names = next(csv.reader([first.removeprefix("\ufeff")]), [])
    line, opened, field = 1, (0, 0, ""), 0
    quoted = False
    for text in lines:
        line += 1
        if not quoted:
            field, start = 0, True
        index = 0
        while index < len(text):
            char = text[index]
            if quoted:
                if char == '"' and text[index + 1 : index + 2] == '"':
                    index += 2  # a doubled quote: one quote in the value
                    continue
                if char == '"':
                    quoted = False
                    after = text[index + 1 : index + 2]
                    if after not in ("", ",", "\n", "\r"):
                        return _unclosed(opened, names, line, text, after)
            elif char == '"':
                if not start:
                    return (
                        f"line {line} has a double quote inside the value of "
                        f"{_column_name(names, field)}, which does not start with one: a "
                        "value holding a double quote must be in double quotes, its own "
                        'quotes doubled ("5"" screen" for 5" screen); line '
                        f"{line} reads {_shown_line(text.rstrip(chr(13) + chr(10)))}"
                    )
                quoted, opened = True, (line, field, text)
            elif char == ",":
                field, start = field + 1, True
                index += 1
                continue
            start = False
            index += 1
    if quoted:
        return _unclosed(opened, names, line, None, None)
    return None


_DATE_LIKE = re.compile(r"^\s*\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}")
"""A field that looks like a date in any of the forms a contract file may write one."""


def _check_rows_are_lines(path: Path, frame: pl.DataFrame, table: TableContract) -> None:
    """Raise if two stray double quotes swallowed rows into one value: the reader accepts a
    quoted value over several lines, so the rows between the quotes were read as one lender's
    note and lost. Values legitimately quoted over lines (an address, a note) pass.

    Called only for a file holding quotes and more lines than rows (:func:`_breaks_and_quotes`
    settles nearly every file); only the values holding a line break are looked at: one is refused when a line of it reads as a row of ``table`` by itself (a
    field where each of the table's date columns is that looks like a date, as many fields as
    those columns need; an address line does not)."""
    dated = [
        index
        for index, name in enumerate(frame.columns)
        if name in table.dtypes and is_temporal(table.dtypes[name])
    ]
    if not dated:
        return
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String()]
    spans = frame.select(
        pl.int_range(pl.len()).alias("_row"),
        *text,
        pl.sum_horizontal(pl.col(text).str.count_matches("\n", literal=True).fill_null(0)).alias(
            "_breaks"
        ),
    )
    for row in spans.filter(pl.col("_breaks") > 0).iter_rows(named=True):
        for name in text:
            value = row[name]
            if not value or "\n" not in value:
                continue
            for offset, piece in enumerate(value.split("\n")[1:], start=1):
                fields = next(csv.reader([piece.replace("\r", " ")]), [])
                covered = [index for index in dated if index < len(fields)]
                if covered and all(_DATE_LIKE.match(fields[index]) for index in covered):
                    # the line of the file: the header, one per earlier row, and the line
                    # breaks inside earlier rows' values and this one's before it
                    opens = 2 + row["_row"] + int(spans["_breaks"].head(row["_row"]).sum())
                    raise DataContractError(
                        f"{path}: line {opens} opens a quoted value in column {name} that runs "
                        f"over {value.count(chr(10)) + 1} lines, and line {opens + offset} reads "
                        "as a row of its own "
                        f"({_shown_line(piece.rstrip(chr(13)))}): two stray double quotes "
                        "swallow the rows between them into one value, and those rows would be "
                        "lost; put a value holding a double quote in double quotes with its own "
                        'quotes doubled ("5"" screen")'
                    )


def _text_lines(path: Path) -> Iterator[str]:
    """The lines of ``path`` as text, split at line breaks only (a carriage return inside a
    value stays in it, written as a space, as the reader keeps it; one before the line break
    ends the line): what :mod:`csv` and a line loop see match the rows the reader read."""
    with path.open("rb") as handle:
        for raw in handle:
            text = raw.decode("utf-8", errors="replace")
            body, end = (
                (text[:-2], "\r\n")
                if text.endswith("\r\n")
                else ((text[:-1], "\n") if text.endswith("\n") else (text, ""))
            )
            yield body.replace("\r", " ") + end


def _column_name(names: Sequence[str], field: int) -> str:
    return (
        f"column {names[field]}" if field < len(names) else f"field {field + 1} (past the header)"
    )


def _unclosed(
    opened: tuple[int, int, str],
    names: Sequence[str],
    line: int,
    text: str | None,
    after: str | None,
) -> str:
    """:func:`_quote_problem`'s words for a quoted value opened on ``opened`` (line, field,
    text) that never closes (``text`` ``None``: the file ends) or closes on ``line`` followed
    by ``after``."""
    start, field, first = opened
    where = (
        f"line {start} opens a quoted value (a double quote at its start) in "
        f"{_column_name(names, field)}"
    )
    if text is None:
        return (
            f"{where} that no later double quote closes: the rest of the file, "
            f"{line - start + 1:,} lines, would be that one value; close the quote, or double a "
            f'quote that belongs to the value (""); line {start} reads '
            f"{_shown_line(first.rstrip(chr(13) + chr(10)))}"
        )
    closes = "on the same line" if line == start else f"on line {line}"
    return (
        f"{where} that closes {closes} followed by {after!r} instead of a comma or the end of "
        'the line: a double quote inside a quoted value must be doubled (""), or the value '
        f"was never meant to be quoted; line {line} reads "
        f"{_shown_line(text.rstrip(chr(13) + chr(10)))}"  # type: ignore[union-attr]
    )


def _long_row_problem(path: Path) -> str | None:
    """The first line with more fields than the header, and how many such lines there are."""
    found = _ragged_rows(path, longer=True)
    if found is None:
        return None
    line, fields, expected, text, count = found
    others = f"; {count:,} lines in all have more fields than the header" if count > 1 else ""
    return (
        f"line {line} has {fields} fields, but the header (line 1) has {expected}: expected "
        f"{expected} comma-separated values on each line (a stray comma, or a value holding a "
        f"comma without double quotes around it?); line {line} reads {_shown_line(text)}{others}"
    )


def _breaks_and_quotes(path: Path) -> tuple[int, int]:
    """The line breaks and the double quotes of ``path``, in one pass over its bytes."""
    breaks = quotes = 0
    with path.open("rb") as handle:
        while chunk := handle.read(SCAN_BYTES):
            breaks += chunk.count(b"\n")
            quotes += chunk.count(b'"')
    return breaks, quotes


def _check_no_short_rows(path: Path, frame: pl.DataFrame, one_line_rows: bool) -> None:
    """Raise if a line of a CSV file has fewer fields than its header: the reader would fill
    the fields it lacks with empty values, silently (a row cut short, or one row split in two
    by a line break inside a value without double quotes). Blank lines are not counted: they
    read as rows without any value, which validation rejects. Free when the file's last
    column holds a value on every row (a short row lacks it); in columns when each row is one
    line (``one_line_rows``: quoted values' commas taken out first), by :mod:`csv` otherwise."""
    if frame.get_column(frame.columns[-1]).null_count() == 0:
        return
    found = (
        _short_rows(path, len(frame.columns)) if one_line_rows else _ragged_rows(path, longer=False)
    )
    if found is None:
        return
    line, fields, expected, text, count = found
    others = f"; {count:,} lines in all have fewer fields than the header" if count > 1 else ""
    raise DataContractError(
        f"{path}: line {line} has {fields} "
        f"{'field' if fields == 1 else 'fields'}, but the header (line 1) has {expected}: "
        f"expected {expected} comma-separated values on each line, and the missing ones would "
        "be read as empty (a row cut short, or a value holding a line break without double "
        f"quotes around it, which splits its row in two?); line {line} reads "
        f"{_shown_line(text)}{others}"
    )


def _shown_line(text: str) -> str:
    return repr(text if len(text) <= SHOWN_LINE else text[:SHOWN_LINE] + "...")


def _short_rows(path: Path, expected: int) -> tuple[int, int, int, str, int] | None:
    """:func:`_ragged_rows` for lines with fewer fields than the ``expected``, of a file whose
    every row is one line: counted by commas in columns, once quoted values (which may hold
    commas) are taken out of each line."""
    unquoted = pl.col("text").str.replace_all(r'"[^"]*"', "")
    short = (
        pl.scan_lines(path, name="text")
        .with_row_index("line", offset=1)
        .slice(1)
        .with_columns(fields=unquoted.str.count_matches(",", literal=True) + 1)
        .filter((pl.col("fields") < expected) & (pl.col("text").str.strip_chars() != ""))
        .collect()
    )
    if short.is_empty():
        return None
    first = short.row(0, named=True)
    text = first["text"].rstrip("\r")
    return first["line"], first["fields"], expected, text, short.height


def _ragged_rows(path: Path, longer: bool) -> tuple[int, int, int, str, int] | None:
    """The 1-based line of the first row of ``path`` with more fields than its header (fewer
    when not ``longer``; a blank line is no row), its field count, the header's, its text and
    the count of such rows; ``None`` if there is none. Lines are counted as in the file (a
    quoted value spanning lines counts each)."""
    first: tuple[int, int, str] | None = None
    count = 0
    # the file's lines split at line breaks only, as the reader splits them; fields of any
    # length (csv's default limit of 131,072 characters would stop the count unseen)
    csv.field_size_limit(2**31 - 1)
    reader = csv.reader(_text_lines(path))
    try:
        header = next(reader, None)
        if header is None:
            return None
        expected = len(header)
        line = reader.line_num + 1  # where the next row starts
        for row in reader:
            blank = len(row) <= 1 and not "".join(row).strip()
            if (len(row) > expected) if longer else (len(row) < expected and not blank):
                count += 1
                if first is None:
                    first = (line, len(row), ",".join(row))
            line = reader.line_num + 1
    except csv.Error:  # what csv cannot read at all: report what was found
        pass
    if first is None:
        return None
    return first[0], first[1], expected, first[2], count


def _csv_header(path: Path) -> tuple[str, ...]:
    """The column names of a CSV file exactly as its first line gives them (polars renames a
    repeated name to ``<name>_duplicated_0`` when it reads the table)."""
    try:
        header = pl.read_csv(path, has_header=False, n_rows=1, infer_schema=False)
    except pl.exceptions.NoDataError:
        return ()
    return (
        tuple("" if value is None else str(value) for value in header.row(0)) if len(header) else ()
    )


def _check_unique_columns(columns: Sequence[str], path: Path) -> None:
    """Raise if a column name appears twice: which of the two holds the data is a guess."""
    seen: set[str] = set()
    repeated = [name for name in columns if name in seen or seen.add(name)]
    if repeated:
        raise DataContractError(_duplicate_message(path, sorted(set(repeated))))


def _duplicate_message(path: Path, names: Sequence[str]) -> str:
    return (
        f"{path}: column {', '.join(names)} appears more than once in the header; which one "
        "holds the data cannot be told: keep exactly one column of each name"
    )


def _typed_per_file(
    frame: pl.DataFrame, table: TableContract, dates: DateSettings, path: Path
) -> pl.DataFrame:
    """Time-zone-aware contract timestamps converted to the declared zone (before parts meet,
    where a cast would silently move them to UTC).

    Raises:
        DataContractError: a contract column holds a list or structure per row; a date or
            timestamp column is stored in a type that holds no date (a number), or is
            time-zone aware while no zone is declared.
    """
    converted = []
    for name, target in table.dtypes.items():
        dtype = frame.schema[name]
        if dtype.is_nested() or dtype == pl.Object():
            raise DataContractError(
                f"{path}: column {name} is stored as {dtype}, a list or structure in each row; "
                f"the contract's {name} is one {_kind_of(target)} per row"
            )
        if target == pl.String() and (
            dtype.is_float() or (dtype.is_decimal() and (getattr(dtype, "scale", 0) or 0) > 0)
        ):
            raise DataContractError(
                f"{path}: column {name} is stored as {dtype}, a number with a fraction, but the "
                f"contract's {name} is text: such a number cannot hold an id or a code exactly "
                "(123 would read as '123.0' or '123.0000000000', and a float loses digits past "
                "the 15th, so ids would no longer match the lender's); write the column as "
                "text, or as whole numbers"
            )
        if not is_temporal(target):
            continue
        if is_zone_aware(dtype):
            if dates.time_zone is None:
                raise DataContractError(f"{path}: {aware_column_message(name, dtype)}")
            converted.append(in_time_zone(pl.col(name), dates.time_zone).alias(name))
        elif not readable_as_temporal(dtype):
            raise DataContractError(
                f"{path}: column {name} is stored as {dtype}, which holds no "
                f"{_kind_of(target)}: expected a Parquet {_kind_of(target)}, or text "
                f"{'YYYY-MM-DD' if target == pl.Date() else 'YYYY-MM-DD[ HH:MM:SS]'}"
            )
    return frame.with_columns(converted) if converted else frame


def _kind_of(dtype: pl.DataType) -> str:
    if dtype == pl.Date():
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "timestamp"
    if dtype.is_integer():
        return "whole number"
    if dtype.is_numeric():
        return "number"
    return "text value"


def _read_table(
    files: Sequence[Path], table: TableContract, errors: list[str], dates: DateSettings
) -> tuple[pl.DataFrame, list[str]]:
    frames: list[pl.DataFrame] = []
    names: list[str] = []
    for path in files:
        try:
            frame = read_table_file(path, table, dates)
        except DataContractError as error:
            errors.append(str(error))
            continue
        frames.append(with_bookkeeping(frame, table, len(names)))
        names.append(str(path))
    if not frames:
        return empty_raw_table(table), names
    plan = alignment([frame.schema for frame in frames], names, table, errors)
    aligned = [plan.apply(frame, index) for index, frame in enumerate(frames)]
    return pl.concat(aligned, how="diagonal_relaxed", rechunk=False), names


def with_bookkeeping(
    frame: pl.DataFrame, table: TableContract, file_index: int, first_row: int = 0
) -> pl.DataFrame:
    """A file's rows (from :func:`read_table_file`) with the contract columns first, the
    lender's after, and :data:`FILE_COLUMN` / :data:`ROW_COLUMN` naming the file (its index in
    the table's list of files) and the row in it (``first_row`` is the first row's number)."""
    contract = list(table.dtypes)
    extra = [c for c in frame.columns if c not in contract and c not in (FILE_COLUMN, ROW_COLUMN)]
    return frame.select(
        *contract,
        *extra,
        pl.lit(file_index, dtype=pl.UInt32).alias(FILE_COLUMN),
        pl.int_range(first_row, first_row + pl.len(), dtype=pl.Int64).alias(ROW_COLUMN),
    )


def empty_raw_table(table: TableContract) -> pl.DataFrame:
    """The raw table of no file (every contract column as text, and the bookkeeping)."""
    empty = {name: pl.String() for name in table.dtypes}
    return pl.DataFrame(schema={**empty, FILE_COLUMN: pl.UInt32, ROW_COLUMN: pl.Int64})


@dataclass(frozen=True)
class Alignment:
    """How each part of one table is cast so that the parts meet (:func:`alignment`)."""

    dropped: tuple[str, ...]  # extra columns whose types cannot meet (a file error each)
    casts: dict[str, list[pl.Expr]]  # per column, one cast per part (in the parts' order)

    def apply(self, frame: pl.DataFrame, index: int) -> pl.DataFrame:
        """Part ``index`` of the table cast to the common types."""
        frame = frame.drop(self.dropped, strict=False)
        return frame.with_columns(
            cast[index] for name, cast in self.casts.items() if name in frame.columns
        )


def alignment(
    schemas: Sequence[pl.Schema], names: Sequence[str], table: TableContract, errors: list[str]
) -> Alignment:
    """The casts that bring the parts of one table (their ``schemas``, read from the files
    ``names``) to types that can meet, every value kept as given or as text. It depends on the
    parts' types only, so an executor holding a few rows of one part casts them exactly as the
    local reader casts the whole part.

    Parts may disagree in a column's type (a CSV next to Parquet, an integer column stored as
    float in one part, dates as text in another). Contract dates and timestamps stored as
    either become timestamps (the contract cast then takes a date at midnight only); a contract
    column mixing other types becomes text, which the contract cast parses per row, so a bad
    value is a row reject quoting it. An extra column mixing scalar types is carried as text;
    one mixing a list or structure with anything else cannot be, and is reported in ``errors``
    with each file's type and left out (every job but ``validate`` stops on the error).
    """
    columns = list(dict.fromkeys(name for schema in schemas for name in schema))
    casts: dict[str, list[pl.Expr]] = {}
    dropped: list[str] = []
    for name in columns:
        dtypes = {schema[name] for schema in schemas if name in schema} - {pl.Null()}
        if len(dtypes) <= 1:
            continue
        target = table.dtypes.get(name)
        if target is not None and is_temporal(target) and all(map(is_temporal, dtypes)):
            casts[name] = [pl.col(name).cast(TIMESTAMP)] * len(schemas)
        elif target is not None:
            casts[name] = [_as_text(schema.get(name), target, name) for schema in schemas]
        elif any(dtype.is_nested() or dtype == pl.Object() for dtype in dtypes):
            kinds = "; ".join(
                f"{file}: {schema[name]}"
                for schema, file in zip(schemas, names, strict=True)
                if name in schema
            )
            errors.append(
                f"table '{table.name}': extra column {name} has types that cannot be reconciled "
                f"across its files ({kinds}); give it one type in every file, or drop it (extra "
                "columns are carried through as they are)"
            )
            dropped.append(name)
        else:
            casts[name] = [pl.col(name).cast(pl.String)] * len(schemas)
    return Alignment(tuple(dropped), casts)


def _as_text(dtype: pl.DataType | None, target: pl.DataType, name: str) -> pl.Expr:
    """Column ``name`` (stored as ``dtype``) as text the contract cast of ``target`` reads
    back: dates ``YYYY-MM-DD``, timestamps ``YYYY-MM-DD HH:MM:SS.ffffff`` (a midnight one as a
    date, for a date column)."""
    column = pl.col(name)
    if isinstance(dtype, pl.Datetime) and target == pl.Date():
        return (
            pl.when(column.dt.time() == time(0))
            .then(column.dt.strftime("%Y-%m-%d"))
            .otherwise(column.cast(pl.String))
        )
    return column.cast(pl.String)


def _not_a_folder(path: Path) -> str:
    """Why ``path``, given as a portfolio folder, is not one (what the user would check)."""
    if path.is_symlink() and not path.exists():
        return "portfolio folder is a broken or looping link"
    if path.exists():
        return "is a file, not a portfolio folder: give the folder that holds the tables"
    return "portfolio folder does not exist"


def reading_dates(dates: DateSettings | None) -> tuple[DateSettings, bool]:
    """The date settings a read uses (the extract date defaulting to today, in the declared
    time zone) and whether the extract date was given."""
    dates = dates or DateSettings()
    given = dates.extract_date is not None
    return (dates if given else dates.with_extract_date(dates.today())), given


def check_portfolio_folder(data_dir: Path) -> Path:
    """``data_dir`` as a Path, or a :class:`DataContractError` saying why it is no folder."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataContractError(f"{data_dir}: {_not_a_folder(data_dir)}")
    return data_dir


def missing_table_error(data_dir: Path, table: TableContract, listing: TableFiles) -> str:
    """Why a required table was not found, with what was found instead: the listing's near
    misses, and any other file or folder whose name holds the table's (``statements_bak/``,
    ``old_statements.parquet``), which is not read under that name (beside a table that is
    there such names are a lender's own copies and pass unremarked)."""
    named = {problem.split(": ", 1)[0] for problem in listing.unusable}
    holding = [
        path.name
        for path in sorted(data_dir.iterdir())
        if table.name in path.name.lower() and str(path) not in named
    ]
    found = (
        f"; found {', '.join(holding)}: a table is read only under its own name (if one of "
        f"them holds the {table.name}, rename it {table.name}.parquet or {table.name}.csv by "
        f"its format, or {table.name}/ for a folder of part files)"
        if holding
        else ""
    )
    return (
        f"{data_dir}: required table '{table.name}' not found "
        f"(expected {table.name}.parquet, {table.name}.csv or a folder {table.name}/ "
        "of part files)" + "".join(f"; {problem}" for problem in listing.unusable) + found
    )


def list_portfolio_tables(data_dir: Path, tables: Sequence[TableContract]) -> dict[str, TableFiles]:
    """The files each of ``tables`` has in ``data_dir``.

    Raises :class:`DataContractError` when a required table has none, naming every missing
    required table and every other file problem of the listing at once, so that a user fixes
    the folder in one go rather than one error per run.
    """
    listings = {table.name: list_table_files(data_dir, table.name) for table in tables}
    missing = [table for table in tables if table.required and not listings[table.name].files]
    if missing:
        others = [
            problem
            for table in tables
            if table not in missing
            for problem in listings[table.name].unusable
        ]
        raise DataContractError(
            "; ".join(
                missing_table_error(data_dir, table, listings[table.name]) for table in missing
            )
            + ("; also: " + "; ".join(others) if others else "")
        )
    return listings


def no_rows_error(names: Sequence[str], table: TableContract) -> str:
    # a header and no row: nothing downstream can run, and "OK" would mislead
    return f"{', '.join(names)}: required table '{table.name}' has a header but no rows"


def validate_next(
    raw: pl.DataFrame,
    table: TableContract,
    names: Sequence[str],
    outcomes: dict[str, TableOutcome],
    dates: DateSettings,
    unread_accounts: Sequence[str] = (),
) -> TableOutcome:
    """Validate ``table`` (its ``raw`` rows read from the files ``names``) after the tables
    before it in :data:`TABLES` order, whose ``outcomes`` give the accepted and rejected
    accounts the references are checked against; ``unread_accounts``: the accounts files that
    could not be read (file errors), which a row of an account not read then names."""
    accounts = outcomes["accounts"] if table.references_accounts else None
    return validate_table(
        raw,
        table,
        names,
        known_accounts=None if accounts is None else accounts.accepted["account_id"],
        rejected_accounts=None if accounts is None else accounts.rejected_accounts,
        dates=dates,
        opened_at=None if accounts is None else accounts.accepted.select("account_id", "opened_at"),
        unread_accounts=unread_accounts if accounts is not None else (),
    )


def validate_portfolio(
    data_dir: Path, rejects_path: Path | None = None, dates: DateSettings | None = None
) -> Portfolio:
    """Read and validate every table; never raises for bad rows or unreadable files.

    ``dates`` says how dates are read (:class:`~rollrisk.features.dates.DateSettings`); its
    extract date defaults to today (in its time zone), and rows dated after it are rejected.

    Raises :class:`DataContractError` only when the folder itself is unusable (missing,
    no accounts or statements files, a table given twice).
    """
    data_dir = check_portfolio_folder(data_dir)
    dates, extract_date_given = reading_dates(dates)
    errors: list[str] = []
    ignored: list[str] = []
    outcomes: dict[str, TableOutcome] = {}
    sources: dict[str, tuple[str, ...]] = {}
    absent: list[str] = []
    unread: tuple[str, ...] = ()  # accounts files that could not be read
    listings = list_portfolio_tables(data_dir, (*TABLES, *RECORD_TABLES))
    for table in (*TABLES, *RECORD_TABLES):
        listing = listings[table.name]
        errors.extend(listing.unusable)
        ignored.extend(str(path) for path in listing.ignored)
        files = listing.files
        if not files:  # an optional table (a missing required one raised above)
            if table in TABLES:  # an absent record table costs no feature: nothing to say
                absent.append(table.name)
            continue
        before = len(errors)
        raw, names = _read_table(files, table, errors, dates)
        if table.name == "accounts":
            unread = tuple(str(path) for path in files if str(path) not in names)
            # read, but its parts could not meet, or a header and no row: a file error each
            if not unread and (len(errors) > before or not raw.height):
                unread = tuple(names)
        outcomes[table.name] = validate_next(raw, table, names, outcomes, dates, unread)
        sources[table.name] = tuple(names)
        if table.required and not raw.height and names:
            errors.append(no_rows_error(names, table))

    rejects = pl.concat(
        [pl.DataFrame(schema=REJECT_SCHEMA), *(o.rejects for o in outcomes.values())]
    )
    if rejects.height and rejects_path is not None:
        rejects_path.parent.mkdir(parents=True, exist_ok=True)
        rejects.write_csv(rejects_path)
    report = ValidationReport(
        data_dir=data_dir,
        tables=tuple(
            table_report(name, sources[name], outcome, _top_reasons(outcome.rejects))
            for name, outcome in outcomes.items()
        ),
        file_errors=tuple(errors),
        absent_optional=tuple(absent),
        rejects_path=rejects_path if rejects.height else None,
        dates=dates,
        extract_date_given=extract_date_given,
        ignored_files=tuple(ignored),
    )
    return portfolio_of(outcomes, report)


def table_report(
    name: str,
    files: Sequence[str],
    outcome: TableOutcome,
    top_reasons: tuple[tuple[str, int], ...] = (),
) -> TableReport:
    return TableReport(
        table=name,
        files=tuple(files),
        rows_read=outcome.rows_read,
        rows_accepted=outcome.rows_accepted,
        rows_rejected=outcome.rows_rejected,
        top_reasons=top_reasons,
    )


def portfolio_of(outcomes: dict[str, TableOutcome], report: ValidationReport) -> Portfolio:
    """The :class:`Portfolio` of the validated tables ``outcomes`` (in :data:`TABLES` order)."""
    # an optional table with no accepted row counts as absent (scores would move just as much)
    empty = tuple(
        table.name
        for table in TABLES
        if table.name in OPTIONAL_TABLE_NAMES
        and table.name in outcomes
        and not outcomes[table.name].rows_accepted
    )

    def accepted(name: str) -> pl.DataFrame | None:
        return outcomes[name].accepted if name in outcomes and name not in empty else None

    return Portfolio(
        accounts=outcomes["accounts"].accepted,
        statements=outcomes["statements"].accepted,
        collection_actions=accepted("collection_actions"),
        treatments=accepted("treatments"),
        experiment_assignments=(
            outcomes["experiment_assignments"].accepted
            if "experiment_assignments" in outcomes
            and outcomes["experiment_assignments"].rows_accepted
            else None
        ),
        report=report,
        rejected_accounts=pl.concat(
            [
                pl.DataFrame(schema=REJECTED_ACCOUNTS_SCHEMA),
                *(
                    pl.DataFrame(
                        {"table": name, "account_id": outcome.rejected_account_ids},
                        schema=REJECTED_ACCOUNTS_SCHEMA,
                    )
                    for name, outcome in outcomes.items()
                ),
            ]
        ),
        empty_tables=empty,
    )


def reason_kinds(rejects: pl.DataFrame) -> pl.DataFrame:
    """``reason``, ``len``: how many rejects of ``rejects`` give each kind of reason (values
    stripped so that like counts with like). Counts of parts of a table add up."""
    return (
        rejects.select(pl.col("reasons").str.split("; ").alias("reason"))
        .explode("reason")
        .select(
            pl.col("reason")
            # the value, at the end or before a closing remark in brackets: one kind for
            # every account an unreadable accounts file left unknown
            .str.replace(r", got '.*'( \([^']*\))?$", "${1}")
            .str.replace(r" row \d+ of .*", " an earlier row")
        )
        .group_by("reason")
        .len()
    )


OTHER_REASONS = "other reasons (the rejects file has every row)"


def top_reasons(kinds: pl.DataFrame, limit: int = 5) -> tuple[tuple[str, int], ...]:
    """The ``limit`` most frequent of :func:`reason_kinds` (ties by reason), then, when there
    are more kinds, :data:`OTHER_REASONS` with the count of the rest, so that the listed counts
    add up to every reason given (a row may have several: they count reasons, not rows)."""
    ranked = kinds.sort(["len", "reason"], descending=[True, False])
    top = tuple((reason, count) for reason, count in ranked.head(limit).iter_rows())
    rest = int(ranked["len"].slice(limit).sum())
    return (*top, (OTHER_REASONS, rest)) if rest else top


def _top_reasons(rejects: pl.DataFrame, limit: int = 5) -> tuple[tuple[str, int], ...]:
    """The most frequent kinds of reason, with values stripped so that like counts with like."""
    if rejects.height == 0:
        return ()
    return top_reasons(reason_kinds(rejects), limit)


def load_portfolio(
    data_dir: Path, rejects_path: Path | None = None, dates: DateSettings | None = None
) -> Portfolio:
    """Validate a portfolio folder for a job: bad rows are set aside, unreadable files stop it.

    ``dates``: as for :func:`validate_portfolio`. Raises :class:`DataContractError` (one line,
    every file error joined by ``; ``) when a file cannot be used, and when every row of a
    required table was rejected (whatever the reject limit: nothing could run).
    """
    portfolio = validate_portfolio(data_dir, rejects_path, dates)
    check_usable(portfolio.report)
    return portfolio


def file_errors_error(errors: Sequence[str]) -> DataContractError:
    """The error that stops a job on a portfolio with file errors: every one, in one line."""
    count = len(errors)
    return DataContractError(
        f"the portfolio has {count} file error{'s' * (count > 1)}, so no job runs on it "
        "(run `rollrisk validate` for the full report): " + "; ".join(errors)
    )


def check_usable(report: ValidationReport) -> None:
    """Stop a job on a portfolio with a file error, or whose required table lost every row.

    Raises:
        DataContractError: one line, every file error joined by ``; ``; or the table whose
            rows were all rejected, with its most common reason.
    """
    if report.file_errors:
        raise file_errors_error(report.file_errors)
    for table in report.tables:
        if table.table in REQUIRED_TABLE_NAMES and table.rows_read and not table.rows_accepted:
            # said here, with the cause: later a job would only find "no statements"
            reason, count = table.top_reasons[0]
            raise DataContractError(
                f"{report.data_dir}: all {table.rows_read:,} rows of required table "
                f"'{table.table}' were rejected, so nothing can run; most common reason: "
                f"{reason} ({count:,} rows); `rollrisk validate --data {report.data_dir}` lists "
                "every one"
            )
