"""Row-level enforcement of the data contract: raw table in, accepted rows and rejects out.

Pure functions (no I/O). The raw frame carries two bookkeeping columns added by the reader,
:data:`FILE_COLUMN` (index into the list of source files) and :data:`ROW_COLUMN` (0-based data
row in that file), so that every reject names the file and row it came from. Checks run in this order, and a row
is rejected at the first stage that finds it bad (all of that stage's reasons are reported):

1. types: every contract column is cast to its contract dtype; a value that does not parse
   (``"abc"`` in ``amount_due``, ``"2024-13-45"`` in ``cycle_end``, ``12.5`` in ``dpd``) rejects
   the row, and so does a number that is not finite (NaN, ``inf``) or a boolean given as a
   number (the value rules of :mod:`rollrisk.features.schemas`, which the service applies too);
   dates and timestamps follow :mod:`rollrisk.features.dates` (the contract's formats or the
   declared one, checked per value and never guessed; none after the extract date);
2. the pandera schema of the table: nullability, ranges, allowed values, cross-column checks;
3. duplicates: a second row with the same key (e.g. account and cycle) is rejected, naming the
   row it duplicates; the first one in file order is kept;
4. references: a row whose ``account_id`` is not an accepted account is rejected; when the
   account is listed but its own row was rejected, the reason names that row and its reason
   (the root cause), not just the id.

Rows read = rows accepted + rows rejected, always; :class:`TableOutcome` carries the counts.

Columns of the lender's own (beyond the contract) are set aside before any check and put back
on the accepted rows, so that no name a lender picks (``reason``, ``file``, ``row``) can meet a
name used here; the bookkeeping columns carry a reserved prefix.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandera.polars as pa
import polars as pl

from rollrisk.errors import DataContractError
from rollrisk.features.dates import (
    DATED_BY_EXTRACT,
    DateSettings,
    cast_temporal,
    is_temporal,
    out_of_bounds,
)
from rollrisk.features.observations import month_index
from rollrisk.features.schemas import (
    ID_PATTERN,
    ID_WORDS,
    INVISIBLE,
    INVISIBLE_SHOWN,
    MAX_AMOUNT,
    TableContract,
)

# Reserved names (documented in docs/data-contract.md): a lender's column may be called
# anything else, including ``_file`` or ``row``.
FILE_COLUMN = "__rollrisk_file"
ROW_COLUMN = "__rollrisk_row"
BOOKKEEPING = (FILE_COLUMN, ROW_COLUMN)

REJECT_SCHEMA: dict[str, pl.DataType] = {
    "table": pl.String(),
    "file": pl.String(),
    "row": pl.Int64(),
    "key": pl.String(),
    "reasons": pl.String(),
}


KNOCK_ON_REASON = "account_id: the account was rejected in table accounts"
"""How a row rejected only because its account was rejected starts its reason; the rest names
the account's row and its reason (see :func:`validate_table`)."""

INCOMPLETE_HISTORY_REASON = "incomplete history"
"""How a row of a history table (:attr:`TableContract.history`, the statements) starts its
reason when it is set aside only because another row of its account was rejected."""

CONFLICT_REASON = "conflicting duplicate"
"""How a row starts its reason when it repeats the key of a kept row with other values."""

SHOWN_CHARACTERS = 40
"""A value quoted in a reason or key is cut to this many characters (a 10,000-character id
would make a 10,000-character reject line); the cut says how long the value was."""


@dataclass(frozen=True)
class TableOutcome:
    """What validating one table produced."""

    table: str
    accepted: pl.DataFrame  # contract dtypes, bookkeeping columns dropped
    rejects: pl.DataFrame  # REJECT_SCHEMA, one row per rejected input row
    rows_read: int
    # the account_id of each reject, as given (text; null when missing): which accounts lost
    # rows, and what the knock-on rejects of other tables point to
    rejected_account_ids: pl.Series = field(
        default_factory=lambda: pl.Series("account_id", [], dtype=pl.String), repr=False
    )

    @property
    def rows_accepted(self) -> int:
        return self.accepted.height

    @property
    def rows_rejected(self) -> int:
        return self.rejects.height

    @property
    def rejected_accounts(self) -> pl.DataFrame:
        """``account_id`` (as given), ``file``, ``row`` and ``reasons`` of every reject: pass
        the accounts table's to :func:`validate_table` so knock-on rejects name their cause."""
        return self.rejects.select("file", "row", "reasons").with_columns(
            self.rejected_account_ids.alias("account_id")
        )


SHOWN_COLUMNS = 30
"""A missing-column error lists at most this many of the columns found (a wide export may
have hundreds)."""


def check_columns(columns: Sequence[str], table: TableContract, source: str) -> None:
    """Raise if a contract column is missing from a file: no row of it could be accepted.

    The message lists the columns found (quoted, so that a space at either end shows) and,
    for a missing name, the column found that is most likely meant for it (``Balance``,
    ``balance `` or ``acount_id``): names are matched exactly and never corrected silently.
    """
    missing = [name for name in table.dtypes if name not in columns]
    if missing:
        found = [name for name in columns if name not in BOOKKEEPING]
        expected = ", ".join(f"{name} ({dtype})" for name, dtype in table.dtypes.items())
        hints = _closest_columns(missing, [name for name in found if name not in table.dtypes])
        hint = "".join(
            f"; did you mean {name}? the header has {given!r} ({why}), and column names are "
            f"matched exactly: rename it to {name}"
            for name, given, why in hints
        )
        shown = ", ".join(repr(name) for name in found[:SHOWN_COLUMNS])
        more = len(found) - SHOWN_COLUMNS
        listed = f"{shown} and {more} more" if more > 0 else shown or "none"
        raise DataContractError(
            f"{source}: table '{table.name}' lacks column(s) {', '.join(missing)}{hint}; "
            f"expected columns: {expected}; columns found: {listed}"
        )


def _closest_columns(
    missing: Sequence[str], candidates: Sequence[str]
) -> list[tuple[str, str, str]]:
    """(missing name, the column found most likely meant for it, how the two differ) for each
    missing name with a close enough column; each column is suggested at most once."""
    left = list(candidates)
    hints = []
    for name in missing:
        by_form: dict[str, str] = {}
        for given in left:
            by_form.setdefault(given.strip().lower(), given)
        close = difflib.get_close_matches(name.lower(), list(by_form), n=1, cutoff=0.6)
        if not close:
            continue
        given = by_form[close[0]]
        left.remove(given)
        hints.append((name, given, _difference(name, given)))
    return hints


def _difference(name: str, given: str) -> str:
    """How the column name ``given`` differs from the expected ``name``, in words."""
    stripped = given.strip()
    if stripped != given:
        ends = [
            end
            for end, spaced in (
                ("start", given != given.lstrip()),
                ("end", given != given.rstrip()),
            )
            if spaced
        ]
        space = f"white space at its {' and '.join(ends)}"
        return space if stripped == name else f"{space}, and {_difference(name, stripped)}"
    if given.lower() == name:
        return "the letter case differs"
    return "spelt differently"


def _cast_expression(name: str, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    column = pl.col(name)
    if source == target:
        return column
    if source == pl.String():
        column = column.str.strip_chars()
        if target.is_integer():
            # "12" and "12.0" are integers, "12.5" is not
            as_float = column.cast(pl.Float64, strict=False)
            return pl.when(as_float == as_float.floor()).then(as_float).cast(target, strict=False)
        return column.cast(target, strict=False)
    if (source.is_float() or source.is_decimal()) and target.is_integer():
        # 15.0 is a whole number, 15.5 is not (a cast would cut it to 15)
        as_float = column.cast(pl.Float64)
        return pl.when(as_float == as_float.floor()).then(column).cast(target, strict=False)
    return column.cast(target, strict=False)


def _cast_to_contract(
    raw: pl.DataFrame, table: TableContract, dates: DateSettings | None = None
) -> pl.DataFrame:
    """Cast to contract dtypes, adding ``_type_reason`` (null where every value parsed).

    The reason quotes the value as it was given. Dates and timestamps are read by ``dates``
    (:mod:`rollrisk.features.dates`: the contract's formats and the declared one, each value
    on its own, and none before the earliest date or after the extract date).

    Two passes: the typed values first; then the reasons of dates and timestamps, worded only
    for the rows whose value failed or breaks a bound (found on the typed column: usually
    none). Wording them on every row parsed each text date three or four times over (a CSV
    book's statements: 5.8 s for one date column where its value takes 1.4 s).
    """
    dates = dates or DateSettings()
    position = "__cast_row"
    casts: list[pl.Expr] = []
    reasons: dict[str, pl.Expr] = {}  # per column, in the contract's order
    temporal: dict[str, tuple[pl.Expr, pl.Expr, pl.Expr]] = {}  # typed, suspect, reason
    for name, target in table.dtypes.items():
        source = raw.schema[name]
        if is_temporal(target):
            bounded = name in DATED_BY_EXTRACT.get(table.name, ())
            value, expected = cast_temporal(name, source, target, dates, bounded)
            typed = pl.col(f"__typed_{name}")
            suspect = (typed.is_null() & pl.col(name).is_not_null()) | out_of_bounds(
                typed, target, dates, bounded
            )
            reason = pl.when(expected.is_not_null()).then(
                pl.format(
                    "{}: expected {}, got '{}'",
                    pl.lit(name),
                    expected,
                    _shown(pl.col(name).cast(pl.String)),
                )
            )
            temporal[name] = (value, suspect, reason)
            reasons[name] = pl.col(f"__reason_{name}")
            continue
        cast = _cast_expression(name, source, target)
        casts.append(cast.alias(name))
        number_reason = _number_reason(name, source, target, cast)
        if number_reason is not None:
            reasons[name] = number_reason
            continue
        if source == target:
            continue
        failed = pl.col(name).is_not_null() & cast.is_null()
        reasons[name] = pl.when(failed).then(
            pl.format(
                "{}: expected {}, got '{}'",
                pl.lit(name),
                pl.lit(_describe(target)),
                _shown(pl.col(name).cast(pl.String)),
            )
        )
    frame = raw.with_row_index(position).with_columns(
        value.alias(f"__typed_{name}") for name, (value, _, _) in temporal.items()
    )
    if temporal:
        suspects = frame.filter(
            pl.any_horizontal(suspect for _, suspect, _ in temporal.values())
        ).rechunk()  # a few rows; unchunked, since polars 2.1 panics wording some filtered views
        worded = suspects.select(
            position,
            *(reason.alias(f"__reason_{name}") for name, (_, _, reason) in temporal.items()),
        )
        rows = worded.get_column(position)
        frame = frame.with_columns(
            pl.repeat(None, frame.height, dtype=pl.String, eager=True)
            .alias(f"__reason_{name}")
            .scatter(rows, worded.get_column(f"__reason_{name}"))
            if worded.height
            else pl.lit(None, dtype=pl.String).alias(f"__reason_{name}")
            for name in temporal
        )
    joined = (
        pl.concat_str(list(reasons.values()), separator="; ", ignore_nulls=True)
        if reasons
        else pl.lit("")
    )
    reason = pl.when(joined != "").then(joined)  # concat of all-null reasons is "", not null
    return (
        frame.with_columns(reason.cast(pl.String).alias("_type_reason"))
        .with_columns(*casts, *(pl.col(f"__typed_{name}").alias(name) for name in temporal))
        .select(*raw.columns, "_type_reason")
    )


def _number_reason(
    name: str, source: pl.DataType, target: pl.DataType, cast: pl.Expr
) -> pl.Expr | None:
    """The reason a value of a numeric contract column is not a contract number, or ``None``
    when the generic parse check says all (integer columns of a non-boolean source).

    A contract number is finite and never a boolean (``features/schemas.py``): a Parquet
    boolean column would otherwise cast to 1.0 / 0.0, and NaN or ``inf`` (from ``"inf"``,
    ``"1e400"`` or a float column) would pass the range checks as amounts.
    """
    if not target.is_numeric():
        return None
    given = _shown(pl.col(name).cast(pl.String))
    if source == pl.Boolean():
        return pl.when(pl.col(name).is_not_null()).then(
            pl.format("{}: expected a number, got a boolean '{}'", pl.lit(name), given)
        )
    if not target.is_float():
        return None
    words = "{}: expected {}, got '{}'"
    return (
        pl.when(pl.col(name).is_not_null() & cast.is_null())
        .then(pl.format(words, pl.lit(name), pl.lit(_describe(target)), given))
        .when(cast.is_not_null() & ~cast.is_finite())
        .then(pl.format(words, pl.lit(name), pl.lit("a finite number"), given))
    )


def _shown(text: pl.Expr) -> pl.Expr:
    """``text`` as quoted in a reason: cut to :data:`SHOWN_CHARACTERS`, saying its length,
    with every invisible character written as its code (``\\u0000``), so that a reason names
    what no eye could see and a rejects file never carries a NUL or a line break."""
    text = text.str.replace_many(list(INVISIBLE), list(INVISIBLE_SHOWN))
    length = text.str.len_chars()
    return (
        pl.when(length > SHOWN_CHARACTERS)
        .then(
            pl.format(
                "{}... ({} characters)", text.str.slice(0, SHOWN_CHARACTERS), length.cast(pl.String)
            )
        )
        .otherwise(text)
    )


def _describe(dtype: pl.DataType) -> str:
    if dtype == pl.Date():
        return DateSettings().date_words()
    if isinstance(dtype, pl.Datetime):
        return DateSettings().timestamp_words()
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
                _shown(pl.col("failure_case")),
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
    (r"^str_length\((\d+), (\d+)\)$", "text of $1 to $2 characters"),
    (r"^str_length\((.*)\)$", "text of length $1"),
)
# pandera spells a bound as Python prints it; the amount bound reads better as 1e+15
_BOUNDS_IN_WORDS = ((str(MAX_AMOUNT), f"{MAX_AMOUNT:.0e}"),)


def _readable_check(check: pl.Expr) -> pl.Expr:
    """Turn pandera's check names (``greater_than_or_equal_to(0)``) into words."""
    check = check.str.replace(f"str_matches('{ID_PATTERN}')", ID_WORDS, literal=True)
    for pattern, words in _CHECK_WORDS:
        check = check.str.replace(pattern, words)
    for spelled, words in _BOUNDS_IN_WORDS:
        check = check.str.replace_all(spelled, words, literal=True)
    return check


def _key_expression(table: TableContract) -> pl.Expr:
    return pl.concat_str(
        [
            pl.format(f"{name}={{}}", _shown(pl.col(name).cast(pl.String)).fill_null("?"))
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
    rejected_accounts: pl.DataFrame | None = None,
    dates: DateSettings | None = None,
    opened_at: pl.DataFrame | None = None,
    unread_accounts: Sequence[str] = (),
) -> TableOutcome:
    """Validate one table read from ``files``.

    ``raw`` holds every contract column (any dtype; CSV columns arrive as text), the
    bookkeeping columns :data:`FILE_COLUMN` and :data:`ROW_COLUMN`, and any columns of the
    lender's own. ``known_accounts`` are the accepted account ids when the table references
    accounts; ``rejected_accounts`` (:attr:`TableOutcome.rejected_accounts` of the accounts
    table) lets a row of an account that is listed but was rejected name that rejection as its
    reason. ``dates`` says how dates and timestamps are read and the extract date no row may
    be dated after (:class:`~rollrisk.features.dates.DateSettings`; default: the contract's
    formats, no time zone, no extract date). ``opened_at`` (``account_id``, ``opened_at`` of the
    accepted accounts) rejects a row whose :attr:`TableContract.dated_by` date falls before
    its account was opened: a statement of a month the account did not exist in is a wrong
    date or a wrong account, and scoring it moves the account's features. ``unread_accounts``
    are accounts files that could not be read (file errors): a row whose account is not
    among those read names them as the likely cause. Returns the accepted rows in contract dtypes followed by the lender's columns
    untouched, in input order, and the rejects. Frames are copied only where rows are
    actually rejected.
    """
    check_columns(raw.columns, table, f"{table.name} ({', '.join(files) or 'no files'})")
    rows_read = raw.height
    # the lender's own columns wait aside: no check reads them, and no name of theirs can
    # meet a working column below (``reason``, ``file``, ``_pos``...)
    own = [name for name in raw.columns if name not in table.dtypes and name not in BOOKKEEPING]
    lender_columns = raw.select(own)
    raw = raw.select(*table.dtypes, *BOOKKEEPING)
    rejects: list[pl.DataFrame] = []
    checked: list[pl.DataFrame] = []
    for start in range(0, rows_read, chunk_rows):
        chunk = raw.slice(start, chunk_rows).with_columns(
            pl.int_range(start, start + pl.len(), dtype=pl.Int64).alias("_pos")
        )
        frame = _cast_to_contract(chunk, table, dates)
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
            raw.with_columns(pl.lit(0, dtype=pl.Int64).alias("_pos")), table, dates
        ).drop("_type_reason")
    )

    # the rows whose loss leaves a gap in their account's history: those rejected for their
    # content (types, schema) or for a conflicting repeat; not an exact repeat of a kept row,
    # nor a row of an account that is not accepted, nor one dated before its account opened
    # (outside the account's life: what is left is its history from the opening on)
    gaps = list(rejects)
    if table.unique:
        duplicated = _duplicates(candidates, table, files)
        if duplicated.height:
            rejected = _reject_rows(candidates.join(duplicated, on="_pos"), "reason", table, files)
            rejects.append(rejected)
            exact = duplicated.filter("_exact")["_pos"].implode()
            gaps.append(rejected.filter(~pl.col("_pos").is_in(exact)))
            conflicts = candidates.join(duplicated.filter(~pl.col("_exact")), on="_pos")
            candidates = _without(candidates, duplicated)
            if conflicts.height and not table.history:
                # the kept row of a conflict is no more right than the other: keeping the
                # first read made the result depend on the files' order (an account's credit
                # limit and product with it); a history table sets the whole account aside
                kept = _conflicted_kept_rows(candidates, conflicts, table, files)
                rejects.append(_reject_rows(kept, "reason", table, files))
                candidates = _without(candidates, kept)

    if table.references_accounts and known_accounts is not None:
        unknown = candidates.filter(~pl.col("account_id").is_in(known_accounts.implode()))
        if unknown.height:
            rejects.append(
                _reject_rows(
                    unknown.with_columns(
                        _unknown_account_reason(
                            unknown, rejected_accounts, known_accounts, unread_accounts
                        )
                    ),
                    "reason",
                    table,
                    files,
                )
            )
            candidates = _without(candidates, unknown)

    if table.dated_by is not None and opened_at is not None and candidates.height:
        early = _before_opening(candidates, table.dated_by, opened_at)
        if early.height:
            rejects.append(_reject_rows(early, "reason", table, files))
            candidates = _without(candidates, early)

    if table.history and gaps and candidates.height:
        incomplete = _incomplete_histories(candidates, pl.concat(gaps), table)
        if incomplete.height:
            rejects.append(_reject_rows(incomplete, "reason", table, files))
            candidates = _without(candidates, incomplete)

    if table.history and table.dated_by is not None and candidates.height:
        # a month missing from the extract itself: the same wrong history as a rejected row;
        # a month held twice: counted twice
        irregular = _irregular_months(candidates, table)
        if irregular.height:
            rejects.append(_reject_rows(irregular, "reason", table, files))
            candidates = _without(candidates, irregular)

    accepted = candidates.drop("_pos", *BOOKKEEPING)
    if own:
        if accepted.height != rows_read:
            lender_columns = lender_columns.select(pl.all().gather(candidates["_pos"]))
        accepted = accepted.hstack(lender_columns.get_columns())
    reject_frame = (
        pl.concat(rejects).sort("_pos").drop("_pos")
        if rejects
        else pl.DataFrame(schema={**REJECT_SCHEMA, "_account_id": pl.String()})
    )
    if accepted.height + reject_frame.height != rows_read:  # a broken invariant is a bug
        raise AssertionError(
            f"{table.name}: {rows_read} rows read but {accepted.height} accepted "
            f"+ {reject_frame.height} rejected"
        )
    return TableOutcome(
        table.name,
        accepted,
        reject_frame.drop("_account_id"),
        rows_read,
        reject_frame["_account_id"].alias("account_id"),
    )


def _incomplete_histories(
    candidates: pl.DataFrame, gaps: pl.DataFrame, table: TableContract
) -> pl.DataFrame:
    """The rows of ``candidates`` whose account had a row rejected (``gaps``: reject lines
    with ``_pos`` and ``_account_id``), with a ``reason`` naming the first such row."""
    first = (
        gaps.filter(pl.col("_account_id").is_not_null())
        .sort("_pos")
        .unique("_account_id", keep="first", maintain_order=True)
        .select(
            pl.col("_account_id").alias("account_id"),
            # worded as the accounts knock-on is, the root cause last, and its own reasons
            # joined by ", ": "; " separates a row's reasons (reason_kinds counts them apart)
            pl.format(
                "{}: another of the account's {} was rejected, and this one is set aside "
                "with it so that the account is neither scored nor trained on with a gap in "
                "its history, see row {} of {}: {}",
                pl.lit(INCOMPLETE_HISTORY_REASON),
                pl.lit(table.name),
                pl.col("row"),
                pl.col("file"),
                pl.col("reasons").str.replace_all("; ", ", ", literal=True),
            ).alias("reason"),
        )
    )
    return candidates.join(first, on="account_id", how="inner", maintain_order="left")


COPY_DAYS = 28
"""Two statements of an account with the same figures less than this many days apart are one
statement sent twice with a shifted date (two cycles are a month apart)."""


def _irregular_months(candidates: pl.DataFrame, table: TableContract) -> pl.DataFrame:
    """The rows of accounts whose rows (dated by the table's ``dated_by``) skip a calendar
    month between their first and their last, or hold one row twice under two dates, with a
    ``reason`` naming the month or the two dates: a statement the extract does not hold is a
    gap as a rejected one is, and a statement sent again with a shifted date (its key differs,
    its figures do not) would be counted twice by every feature counting months.

    A copy is the same figures less than :data:`COPY_DAYS` apart, in one month or across a
    month's end, among the rows of an account holding two in some month; a statement with
    nothing due, paid or past due (a dormant account: all its statements alike) is never one,
    and two statements of a month with other figures (a cycle day moved) are two cycles.

    Found from each account's first and last month, its number of distinct months and of
    rows (one aggregation, no sort); only the accounts found are sorted to name the rows."""
    column = table.dated_by
    assert column is not None
    dated = pl.col(column)
    if candidates.schema[column] != pl.Date():
        dated = dated.dt.date()
    month = month_index(dated).alias("_m")
    counts = (
        candidates.lazy()
        .select("account_id", month)
        .group_by("account_id")
        .agg(
            (pl.col("_m").max() - pl.col("_m").min() + 1 > pl.col("_m").n_unique()).alias("_gap"),
            (pl.len() > pl.col("_m").n_unique()).alias("_doubled"),
        )
        .filter(pl.col("_gap") | pl.col("_doubled"))
        .collect()
    )
    if counts.is_empty():
        return candidates.clear().with_columns(pl.lit(None, dtype=pl.String).alias("reason"))
    gapped = counts.filter("_gap").select("account_id")
    gaps = (
        candidates.select("account_id", dated.alias("_dated"))
        .join(gapped, on="account_id")
        .sort("account_id", "_dated")
        .with_columns(pl.col("_dated").shift(1).over("account_id").alias("_before"))
        .filter(month_index("_dated") - month_index("_before") > 1)
        .group_by("account_id", maintain_order=True)
        .first()
        .select(
            "account_id",
            pl.format(
                f"{INCOMPLETE_HISTORY_REASON}: the account's {table.name} skip a month (one "
                f"a month is expected from its first to its last {column}), so all of them "
                "are set aside and the account is neither scored nor trained on with a gap "
                "in its history, got '{} missing between {} and {}'",
                (pl.col("_before").dt.offset_by("1mo")).dt.strftime("%Y-%m"),
                pl.col("_before"),
                pl.col("_dated"),
            ).alias("reason"),
        )
    )
    figures = [
        name
        for name, dtype in table.dtypes.items()
        if name != "account_id" and not is_temporal(dtype)
    ]
    quiet = [pl.col(name) == 0 for name in ("amount_due", "amount_paid", "dpd") if name in figures]
    doubled = counts.filter(~pl.col("_gap") & pl.col("_doubled")).select("account_id")
    copies = (
        candidates.select("account_id", *figures, dated.alias("_dated"))
        .join(doubled, on="account_id")
        .filter(~pl.all_horizontal(quiet) if quiet else pl.lit(True))
        .sort("account_id", *figures, "_dated")
        .with_columns(pl.col("_dated").shift(1).over("account_id", *figures).alias("_before"))
        .filter((pl.col("_dated") - pl.col("_before")).dt.total_days() < COPY_DAYS)
        .sort("account_id", "_before")
        .group_by("account_id", maintain_order=True)
        .first()
        .select(
            "account_id",
            pl.format(
                f"{table.name} sent twice: the account's {table.name} hold the same figures "
                f"under two {column} dates less than {COPY_DAYS} days apart (one statement sent "
                "again with a shifted date would be counted twice, so all of them are set "
                "aside and the account is neither scored nor trained on with a month counted "
                "twice), got '{} and {}'",
                pl.col("_before"),
                pl.col("_dated"),
            ).alias("reason"),
        )
    )
    first = pl.concat([gaps, copies])
    return candidates.join(first, on="account_id", how="inner", maintain_order="left")


def _before_opening(candidates: pl.DataFrame, column: str, opened_at: pl.DataFrame) -> pl.DataFrame:
    """The rows of ``candidates`` dated (by ``column``, as a date) before their account's
    ``opened_at``, with a ``reason`` naming both dates.

    The comparison joins the key, the date and the position only; the rows found (usually
    none) are then taken whole, in input order (joining every column of a 43M-row statements
    table to find none took about 10 s)."""
    dated = pl.col(column)
    if candidates.schema[column] != pl.Date():
        dated = dated.dt.date()
    early = (
        candidates.select("_pos", "account_id", column)
        .join(
            opened_at.select("account_id", pl.col("opened_at").alias("_opened_at")),
            on="account_id",
        )
        .filter(dated < pl.col("_opened_at"))
        .select(
            "_pos",
            pl.format(
                f"{column}: expected a date on or after the account's opened_at, got '{{}}' "
                "for an account opened on '{}'",
                pl.col(column),
                pl.col("_opened_at"),
            ).alias("reason"),
        )
    )
    return candidates.join(early, on="_pos", maintain_order="left")


_ASCII_CODES = "_ascii_codes"
_OUTSIDE_ASCII = r"[^\x00-\x7F]"


def _with_ascii_codes(unknown: pl.DataFrame) -> pl.DataFrame:
    """``unknown`` with :data:`_ASCII_CODES`: the account id with every character outside
    ASCII written as its code (``\\u0410001`` for a Cyrillic 'А001'), null for an ASCII id. An
    id that looks like a listed one but is not is, most often, one with a look-alike letter
    of another alphabet or a full-width digit; the codes show what no eye can. Each distinct
    id is written once (Python, on the rejected ids only)."""
    odd = (
        unknown.select(pl.col("account_id").unique())
        .filter(pl.col("account_id").str.contains(_OUTSIDE_ASCII))["account_id"]
        .to_list()
    )
    codes = pl.DataFrame(
        {
            "account_id": odd,
            _ASCII_CODES: [i.encode("ascii", "backslashreplace").decode() for i in odd],
        },
        schema={"account_id": pl.String, _ASCII_CODES: pl.String},
    )
    return unknown.join(codes, on="account_id", how="left", maintain_order="left")


def _unknown_account_reason(
    unknown: pl.DataFrame,
    rejected_accounts: pl.DataFrame | None,
    known_accounts: pl.Series | None = None,
    unread_accounts: Sequence[str] = (),
) -> pl.Series:
    """The reason of each row whose account is not accepted: the account's own reject (the
    first row of it, with its reason) when it was listed and rejected, else that it is not
    listed: with the likely cause when one is seen (an accounts file that could not be read;
    an id that matches a listed one, accepted or rejected, once surrounding whitespace is
    stripped from both; an id with characters outside ASCII, shown as codes)."""
    # decided by the row's own id, not by the other ids listed: the Spark engine validates a
    # partition's rows against that partition's accounts, and must give the same reasons
    unknown = _with_ascii_codes(unknown)
    not_listed = (
        pl.when(pl.col(_ASCII_CODES).is_not_null())
        .then(
            pl.format(
                "account_id: expected an account listed in accounts, got '{}' (it holds "
                "characters outside ASCII, written here as codes: '{}'; a letter of another "
                "alphabet or a full-width digit looks like the Latin letter or digit it "
                "replaces: compare it with the ids in accounts)",
                _shown(pl.col("account_id")),
                _shown(pl.col(_ASCII_CODES)),
            )
        )
        .otherwise(
            pl.format(
                "account_id: expected an account listed in accounts, got '{}'",
                _shown(pl.col("account_id")),
            )
        )
    )
    if unread_accounts:  # the likely cause is the accounts file that could not be read
        not_listed = pl.format(
            "account_id: expected an account listed in accounts, got '{}' (not among the "
            "accounts read: {} could not be read, see its file error, and fix it first)",
            _shown(pl.col("account_id")),
            pl.lit(", ".join(unread_accounts)),
        )
    if known_accounts is not None:
        # listed ids, accepted or not: an id with a space at an end is itself rejected from
        # accounts (not printable), and its statements' plain id is then the likely intent
        listed = known_accounts
        if rejected_accounts is not None and rejected_accounts.height > 0:
            listed = pl.concat([listed, rejected_accounts["account_id"].drop_nulls()])
        stripped = listed.str.strip_chars().implode()
        not_listed = (
            pl.when(pl.col("account_id").str.strip_chars().is_in(stripped))
            .then(
                pl.format(
                    "account_id: expected an account listed in accounts (it matches one only "
                    "once surrounding whitespace is stripped: check the ids of both tables for "
                    "spaces), got '{}'",
                    _shown(pl.col("account_id")),
                )
            )
            .otherwise(not_listed)
        )
    if rejected_accounts is None or rejected_accounts.height == 0:
        return unknown.select(not_listed.alias("reason")).to_series()
    roots = (
        rejected_accounts.filter(pl.col("account_id").is_not_null())
        .unique("account_id", keep="first", maintain_order=True)
        .select(
            "account_id",
            pl.format(
                f"{KNOCK_ON_REASON}, see row {{}} of {{}}: {{}}",
                pl.col("row"),
                pl.col("file"),
                pl.col("reasons"),
            ).alias("_root"),
        )
    )
    return (
        unknown.select("account_id", _ASCII_CODES)
        .join(roots, on="account_id", how="left", maintain_order="left")
        .select(pl.coalesce("_root", not_listed).alias("reason"))
        .to_series()
    )


def _without(frame: pl.DataFrame, bad: pl.DataFrame) -> pl.DataFrame:
    """``frame`` less the rows whose ``_pos`` is in ``bad``, order kept."""
    return frame.filter(~pl.col("_pos").is_in(bad["_pos"].implode()))


def _reject_rows(
    frame: pl.DataFrame, reason_column: str, table: TableContract, files: Sequence[str]
) -> pl.DataFrame:
    """Reject lines (REJECT_SCHEMA plus ``_pos`` and ``_account_id``, the id as given) for
    the rows of ``frame``."""
    return frame.join(
        _file_names(files, frame.schema[FILE_COLUMN]), on=FILE_COLUMN, how="left"
    ).select(
        pl.lit(table.name).alias("table"),
        pl.col("file"),
        pl.col(ROW_COLUMN).cast(pl.Int64).alias("row"),
        _key_expression(table).alias("key"),
        pl.col(reason_column).alias("reasons"),
        "_pos",
        pl.col("account_id").cast(pl.String).alias("_account_id"),
    )


def _duplicates(
    candidates: pl.DataFrame, table: TableContract, files: Sequence[str]
) -> pl.DataFrame:
    """(``_pos``, reason, ``_exact``) for every row repeating the key of an earlier row;
    ``_exact``: it repeats that row's every value too (a harmless re-sent row)."""
    assert table.unique is not None
    keys = list(table.unique)
    # One cheap pass over a 64-bit hash of the key finds the rows that may repeat a key; the
    # exact comparison then runs on those few rows only (a hash collision is not a duplicate).
    none = pl.DataFrame(schema={"_pos": pl.Int64, "reason": pl.String, "_exact": pl.Boolean})
    key_hash = candidates.select(pl.struct(keys).hash(seed=17)).to_series()
    # as many distinct hashes as rows: every key distinct (the common case; counting them is
    # about 15x faster than marking the first of each on a 43M-row statements table)
    if key_hash.n_unique() == candidates.height:
        return none
    maybe = candidates.filter(~key_hash.is_first_distinct())
    if maybe.height == 0:
        return none
    involved = candidates.join(maybe.select(keys).unique(), on=keys, nulls_equal=True)
    first = involved.group_by(keys).agg(
        pl.col("_pos").min().alias("_first_pos"),
        pl.col(FILE_COLUMN).sort_by("_pos").first().alias("_first_file"),
        pl.col(ROW_COLUMN).sort_by("_pos").first().alias("_first_row"),
    )
    # a repeat with other values than the kept row is a conflict: which row is right, nothing
    # says (the kept one is only the first read)
    values = [name for name in table.dtypes if name not in keys]
    kept = involved.join(first, left_on="_pos", right_on="_first_pos").select(
        *keys, *(pl.col(name).alias(f"_kept_{name}") for name in values)
    )
    differing = [
        pl.when(pl.col(name).eq_missing(pl.col(f"_kept_{name}"))).then(None).otherwise(pl.lit(name))
        for name in values
    ]
    return (
        involved.join(first, on=keys, nulls_equal=True)
        .filter(pl.col("_pos") != pl.col("_first_pos"))
        .join(kept, on=keys, nulls_equal=True)
        .join(
            _file_names(files, candidates.schema[FILE_COLUMN]),
            left_on="_first_file",
            right_on=FILE_COLUMN,
        )
        .with_columns(
            pl.concat_str(differing, separator=", ", ignore_nulls=True).alias("_differing")
        )
        .select(
            "_pos",
            pl.when(pl.col("_differing") == "")
            .then(
                pl.format(
                    "duplicate ({}): same key and values as row {} of {}, which was kept",
                    pl.lit(", ".join(keys)),
                    pl.col("_first_row"),
                    pl.col("file"),
                )
            )
            .otherwise(
                pl.format(
                    "{} ({}): same key as row {} of {}, which was kept, but other values in {}",
                    pl.lit(CONFLICT_REASON),
                    pl.lit(", ".join(keys)),
                    pl.col("_first_row"),
                    pl.col("file"),
                    pl.col("_differing"),
                )
            )
            .alias("reason"),
            (pl.col("_differing") == "").alias("_exact"),
        )
    )


def _conflicted_kept_rows(
    candidates: pl.DataFrame, conflicts: pl.DataFrame, table: TableContract, files: Sequence[str]
) -> pl.DataFrame:
    """The rows of ``candidates`` (the kept first rows) whose key another row repeated with
    other values (``conflicts``: those rows, with their reasons), each with a ``reason``
    naming the first such row and the columns that differ."""
    assert table.unique is not None
    keys = list(table.unique)
    first = (
        conflicts.sort("_pos")
        .unique(keys, keep="first", maintain_order=True)
        .join(_file_names(files, conflicts.schema[FILE_COLUMN]), on=FILE_COLUMN, how="left")
        .select(
            *keys,
            pl.format(
                "{} ({}): another row repeats this key with other values, and which is right "
                "nothing says, so neither is kept, see row {} of {} (other values in {})",
                pl.lit(CONFLICT_REASON),
                pl.lit(", ".join(keys)),
                pl.col(ROW_COLUMN),
                pl.col("file"),
                pl.col("reason").str.extract(r"other values in (.*)$").fill_null(""),
            ).alias("reason"),
        )
    )
    return candidates.join(first, on=keys, how="inner", nulls_equal=True, maintain_order="left")


def _file_names(files: Sequence[str], dtype: pl.DataType) -> pl.DataFrame:
    return pl.DataFrame(
        {FILE_COLUMN: pl.Series(range(len(files)), dtype=dtype), "file": list(files)}
    )
