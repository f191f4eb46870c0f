"""Dates and timestamps of a portfolio: the formats read, the time zone, the extract date, and
the month a job looks at when it is given no as-of.

Pure (no I/O). The rules, stated once (``docs/data-contract.md`` says the same to lenders):

* **Formats.** A date is read from text written ``YYYY-MM-DD``, a timestamp from
  ``YYYY-MM-DD``, ``YYYY-MM-DD HH:MM:SS[.ffffff]`` or the ``T`` form. Each value is checked on
  its own: nothing is inferred from the first value, so one odd row never changes how the
  others are read, and ``22/08/2021`` or ``2024/03/26`` is a reject with its reason. A lender
  whose files write dates another way declares that format (:attr:`DateSettings.date_format`,
  ``--date-format``); it is read besides ``YYYY-MM-DD`` (which no other format can be
  confused with), never instead of a guess.
* **Time zone.** Timestamps are naive, in the portfolio's reporting time zone. Time-zone-aware
  values (Parquet timestamps with a zone, text with a UTC offset such as ``+08:00`` or ``Z``)
  are converted to the declared zone (:attr:`DateSettings.time_zone`, ``--timezone``) and
  made naive; without a declared zone they are refused, because converting them to UTC (what
  a plain cast does) would move events across day and month boundaries.
* **Parquet types.** A date column may be stored as a Parquet date, as text, or as a
  timestamp at midnight (what pandas writes for dates); a timestamp with a time of day in a
  date column is a reject, since which day it means depends on a time zone.
* **Extract date.** A portfolio is an extract taken on one day: a row dated after it (by the
  columns of :data:`DATED_BY_EXTRACT`) cannot be real and is rejected with its reason, so one
  mistyped year (``2099-12-20``) never becomes the portfolio's latest month.
* **Default as-of.** The month-end of the latest month with a complete book
  (:func:`default_as_of_choice`): a month whose accounts with a statement number at least
  :data:`COMPLETE_BOOK_SHARE` of the month before. A partial last month (an extract taken
  mid-cycle, a few stray rows) is never the default population.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta

import polars as pl

from rollrisk.errors import DataContractError, UserError

ISO_DATE_FORMAT = "%Y-%m-%d"
TIMESTAMP = pl.Datetime("us")
# the contract's text forms (a timestamp's ``T`` is read as a space first); the service's
# request models check JSON values by the same patterns (serving/api_models.py)
ISO_DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
ISO_NAIVE_TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2}(\.\d{1,9})?)?$"
_ISO_DATE = ISO_DATE_PATTERN
_ISO_NAIVE = ISO_NAIVE_TIMESTAMP_PATTERN
_ISO_OFFSET = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}(:?\d{2})?)$"
_TIME_OF_DAY = " %H:%M:%S%.f"
_OFFSET = "%#z"

DATED_BY_EXTRACT: dict[str, tuple[str, ...]] = {
    "accounts": ("opened_at",),
    "statements": ("cycle_end", "known_at"),
    "collection_actions": ("action_at",),
    "treatments": ("known_at",),
}
"""Per table, the columns that say when something happened or became known: none may be after
the extract date. Not in it: ``promised_date`` (a promise to pay is for a future day),
a treatment's ``start_at`` and ``end_at`` (a plan agreed and recorded before the extract may
start or end later; its ``known_at`` says when it was recorded)."""

EARLIEST = date(1950, 1, 1)
"""No date or timestamp of the contract is earlier (rejected): no consumer-credit record of a
book in use predates it, and what does is a misread (``%Y`` reads ``25`` as the year 25) or a
placeholder (1900-01-01, 0001-01-01)."""

COMPLETE_BOOK_SHARE = 0.9
"""A month's book is complete when its accounts with a statement are at least this share of
the month before's (:func:`default_as_of_choice`). Monthly attrition of a lender's book stays
well under 10%; an extract taken before the month's last statement cycles closed, or a few
rows of a later month, fall far short of it."""


@dataclass(frozen=True)
class DateSettings:
    """How a portfolio's dates and timestamps are read (the rules of the module docstring).

    ``date_format``: a strftime format the files also write dates in (``%d/%m/%Y``), besides
    ``YYYY-MM-DD``; a timestamp is that date optionally followed by `` HH:MM:SS[.ffffff]``.
    ``time_zone``: the portfolio's reporting time zone (IANA name, ``Asia/Shanghai``), which
    time-zone-aware values are converted to. ``extract_date``: the day the extract was taken
    (rows dated after it are rejected); ``None`` checks no row against it (the loader sets it,
    by default to today). Raises ``UserError`` for a format or zone that cannot be used.
    """

    date_format: str | None = None
    time_zone: str | None = None
    extract_date: date | None = None

    def __post_init__(self) -> None:
        # a string or a datetime would reach the loader's comparison with the date columns
        # (a polars error, or a time of day the extract date does not have)
        if self.extract_date is not None and (
            isinstance(self.extract_date, datetime) or not isinstance(self.extract_date, date)
        ):
            raise UserError(
                f"extract_date: expected a datetime.date, got {self.extract_date!r} "
                "(a string: date.fromisoformat('YYYY-MM-DD'); a datetime: its .date())"
            )
        if self.date_format is not None:
            check_date_format(self.date_format)
        if self.time_zone is not None:
            check_time_zone(self.time_zone)

    def with_extract_date(self, extract_date: date) -> DateSettings:
        return replace(self, extract_date=extract_date)

    def today(self) -> date:
        """Today in the portfolio's time zone (the machine's when none is declared): the
        extract date when none is given."""
        if self.time_zone is None:
            return date.today()
        from zoneinfo import ZoneInfo

        return datetime.now(ZoneInfo(self.time_zone)).date()

    def date_words(self) -> str:
        """What a date value must look like, in words (for reasons and help texts)."""
        declared = f" or {self.date_format}" if self.date_format else ""
        return f"a date YYYY-MM-DD{declared}"

    def timestamp_words(self) -> str:
        declared = f" or {self.date_format}[ HH:MM:SS]" if self.date_format else ""
        return f"a timestamp YYYY-MM-DD[ HH:MM:SS]{declared}"


def check_date_format(date_format: str) -> str:
    """``date_format`` if it is a strftime format of a whole date and nothing else.

    Raises ``UserError`` naming the problem: no year, month or day directive; a time-of-day or
    zone directive (the time part of a timestamp is always `` HH:MM:SS``); a format that does
    not read back the date it writes (26 March 2024, whose day cannot pass for a month).
    """
    fields = {
        "year": r"%[Yy]",
        "month": r"%[mbB]",
        "day": r"%[de]",
    }
    missing = [name for name, pattern in fields.items() if not re.search(pattern, date_format)]
    if missing:
        raise UserError(
            f"date format {date_format!r} has no {', no '.join(missing)}: give a whole date, "
            "e.g. %d/%m/%Y"
        )
    if re.search(r"%[HIMSpfzZTRrcXx:.#]", date_format):
        raise UserError(
            f"date format {date_format!r} holds a time or zone directive: give the date part "
            "only (a timestamp is read as that date optionally followed by ' HH:MM:SS')"
        )
    probe = date(2024, 3, 26)
    written = probe.strftime(date_format)
    read = pl.Series([written]).str.to_date(date_format, strict=False).item()
    if read != probe:
        raise UserError(
            f"date format {date_format!r} does not read back the date it writes "
            f"({probe} is written {written!r} and read as {read})"
        )
    # YYYY-MM-DD is always read first: a declared format writing dates in that shape with
    # another meaning would have every day up to 12 read as a month, silently (a day of one
    # digit and one of two: %e pads 3 with a space, not 10)
    for probe in (date(2024, 4, 3), date(2021, 5, 10)):
        written = probe.strftime(date_format)
        if re.fullmatch(ISO_DATE_PATTERN.strip("^$"), written) and written != probe.isoformat():
            raise UserError(
                f"date format {date_format!r} writes {probe:%-d %B %Y} as {written!r}, which "
                f"the contract's YYYY-MM-DD reads as {date.fromisoformat(written):%-d %B %Y}: "
                "every date whose day is 12 or less would be read with day and month swapped; "
                "convert the dates to YYYY-MM-DD"
            )
    return date_format


def check_time_zone(time_zone: str) -> str:
    """``time_zone`` if it is a time zone name polars and Python both know (IANA, or UTC).

    Raises ``UserError`` otherwise.
    """
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(time_zone)
        pl.Series([datetime(2024, 1, 1)]).dt.replace_time_zone(time_zone)
    except Exception as error:  # zoneinfo and polars raise several kinds for a bad name
        raise UserError(
            f"unknown time zone {time_zone!r}: give an IANA name such as Asia/Shanghai, "
            "Europe/London or UTC"
        ) from error
    return time_zone


def is_temporal(dtype: pl.DataType) -> bool:
    return dtype == pl.Date() or isinstance(dtype, pl.Datetime)


def is_zone_aware(dtype: pl.DataType) -> bool:
    return isinstance(dtype, pl.Datetime) and dtype.time_zone is not None


def is_text(dtype: pl.DataType) -> bool:
    return dtype == pl.String() or isinstance(dtype, pl.Categorical | pl.Enum)


def readable_as_temporal(dtype: pl.DataType) -> bool:
    """Whether a column stored as ``dtype`` can hold a contract date or timestamp at all."""
    return is_text(dtype) or is_temporal(dtype) or dtype == pl.Null()


def in_time_zone(column: pl.Expr, time_zone: str) -> pl.Expr:
    """A time-zone-aware ``column`` as naive wall-clock time in ``time_zone``."""
    return column.dt.convert_time_zone(time_zone).dt.replace_time_zone(None)


def aware_column_message(name: str, dtype: pl.DataType) -> str:
    """Why a time-zone-aware column cannot be read without a declared time zone."""
    zone = dtype.time_zone if isinstance(dtype, pl.Datetime) else None
    return (
        f"column {name} holds time-zone-aware timestamps ({zone}), but the contract's "
        "timestamps are in the portfolio's reporting time zone and none was declared: declare "
        "it (--timezone, e.g. --timezone Asia/Shanghai) and they are converted to it"
    )


def cast_temporal(
    name: str,
    source: pl.DataType,
    target: pl.DataType,
    settings: DateSettings,
    bounded: bool = False,
) -> tuple[pl.Expr, pl.Expr]:
    """The contract value of date or timestamp column ``name`` and, per row, what was expected
    where the value cannot be used (null where it can).

    ``source`` is the column's dtype as read, ``target`` the contract's (``pl.Date`` or
    :data:`TIMESTAMP`); ``bounded`` checks the value against ``settings.extract_date``
    (:data:`DATED_BY_EXTRACT`). The caller words the reason as ``{name}: expected {what},
    got '{value}'``.

    Raises:
        DataContractError: the column is time-zone aware and no zone is declared, or stored in
            a type that cannot hold a date (an integer, a list): no row of it can be read.
    """
    column = pl.col(name)
    nothing = pl.lit(None, dtype=pl.String)
    if is_text(source):
        value, expected = _parse_text(column.cast(pl.String).str.strip_chars(), target, settings)
    elif isinstance(source, pl.Datetime):
        if source.time_zone is not None:
            if settings.time_zone is None:
                raise DataContractError(aware_column_message(name, source))
            column = in_time_zone(column, settings.time_zone)
        if target == pl.Date():
            # a date stored as a timestamp is a date only at midnight; another time of day
            # would need a time zone to say which day it is
            value = pl.when(column.dt.time() == time(0)).then(column.dt.date())
            expected = pl.when(column.is_not_null() & value.is_null()).then(
                pl.lit(f"{settings.date_words()} (a timestamp only at midnight)")
            )
        else:
            value, expected = column.cast(target), nothing
    elif source == pl.Date() or source == pl.Null():
        value, expected = column.cast(target), nothing
    else:
        raise DataContractError(
            f"column {name} is stored as {source}, which holds no "
            f"{'date' if target == pl.Date() else 'timestamp'}: expected "
            f"{settings.date_words() if target == pl.Date() else settings.timestamp_words()} "
            "(as text) or a Parquet date or timestamp"
        )
    expected = pl.coalesce(
        expected, pl.when(_too_early(value, target)).then(pl.lit(_earliest_words(target)))
    )
    if bounded and settings.extract_date is not None:
        late = _after_extract(value, target, settings.extract_date)
        noun = "date" if target == pl.Date() else "timestamp"
        expected = pl.coalesce(
            expected,
            pl.when(late).then(
                pl.lit(
                    f"a {noun} on or before the extract date {settings.extract_date}"
                    + (
                        " (the declared %y reads a two-digit year 00-68 as 2000-2068: a year "
                        "before 1969 needs a four-digit year, %Y)"
                        if settings.date_format and "%y" in settings.date_format
                        else ""
                    )
                )
            ),
        )
    return value, expected


def out_of_bounds(
    value: pl.Expr, target: pl.DataType, settings: DateSettings, bounded: bool
) -> pl.Expr:
    """Whether a typed contract value (:func:`cast_temporal`'s) breaks a bound: before
    :data:`EARLIEST`, or (``bounded``) after the extract date. The validation finds its suspect
    rows with it cheaply, on the typed column, before wording their reasons."""
    early = _too_early(value, target)
    if bounded and settings.extract_date is not None:
        return early | _after_extract(value, target, settings.extract_date)
    return early


def _too_early(value: pl.Expr, target: pl.DataType) -> pl.Expr:
    return value < pl.lit(datetime.combine(EARLIEST, time(0)) if target != pl.Date() else EARLIEST)


def _earliest_words(target: pl.DataType) -> str:
    noun = "date" if target == pl.Date() else "timestamp"
    return (
        f"a {noun} on or after {EARLIEST} (earlier is no date of a consumer-credit book: a "
        "two-digit year read as a whole year, 25 for 2025, or a placeholder such as 1900-01-01?)"
    )


def _after_extract(value: pl.Expr, target: pl.DataType, extract_date: date) -> pl.Expr:
    if target == pl.Date():
        return value > pl.lit(extract_date)
    # any time on the extract day is on or before it
    next_day = datetime.combine(extract_date + timedelta(days=1), time(0))
    return value >= pl.lit(next_day, dtype=TIMESTAMP)


def _parse_text(
    text: pl.Expr, target: pl.DataType, settings: DateSettings
) -> tuple[pl.Expr, pl.Expr]:
    """Parse each text value by the contract's format and the declared one, never inferred."""
    declared = settings.date_format
    if target == pl.Date():
        value = pl.when(text.str.contains(_ISO_DATE)).then(
            text.str.to_date(ISO_DATE_FORMAT, strict=False)
        )
        if declared:
            value = pl.coalesce(value, text.str.to_date(declared, strict=False))
        # a date written as a timestamp is a date at midnight only, as a Parquet timestamp is
        # (many exports write "2024-01-31 00:00:00"); another time of day would need a time
        # zone to say which day it is
        stamped = _naive_text(text, declared)
        value = pl.coalesce(value, pl.when(stamped.dt.time() == time(0)).then(stamped.dt.date()))
        expected = (
            pl.when(value.is_not_null() | text.is_null())
            .then(None)
            .when(stamped.is_not_null())
            .then(pl.lit(f"{settings.date_words()} (a timestamp only at midnight)"))
            .otherwise(pl.lit(settings.date_words()))
        )
        return value, expected

    iso = _iso_spaced(text)
    naive = _naive_text(text, declared)
    offset = pl.when(iso.str.contains(_ISO_OFFSET)).then(_with_offset(iso, ISO_DATE_FORMAT))
    if declared:
        offset = pl.coalesce(offset, _with_offset(text, declared))
    unreadable = pl.lit(settings.timestamp_words())
    if settings.time_zone is not None:
        value = pl.coalesce(naive, in_time_zone(offset, settings.time_zone))
        expected = pl.when(text.is_not_null() & value.is_null()).then(unreadable)
        return value, expected
    expected = (
        pl.when(offset.is_not_null())
        .then(
            pl.lit(
                "a timestamp without a UTC offset (or declare the portfolio's time zone, "
                "--timezone, to convert it)"
            )
        )
        .when(text.is_not_null() & naive.is_null())
        .then(unreadable)
    )
    return naive, expected


def _iso_spaced(text: pl.Expr) -> pl.Expr:
    """``text`` with an ISO ``T`` between date and time written as a space."""
    return text.str.replace(r"^(\d{4}-\d{2}-\d{2})T", "$1 ")


def _naive_text(text: pl.Expr, declared: str | None) -> pl.Expr:
    """A naive timestamp in ``text``, by the contract's format or the declared one."""
    iso = _iso_spaced(text)
    naive = pl.when(iso.str.contains(_ISO_NAIVE)).then(_naive(iso, ISO_DATE_FORMAT))
    return pl.coalesce(naive, _naive(text, declared)) if declared else naive


def _naive(text: pl.Expr, date_format: str) -> pl.Expr:
    """A timestamp written ``<date>`` or ``<date> HH:MM:SS[.f]`` (or with ``T``)."""
    return pl.coalesce(
        text.str.to_datetime(date_format + _TIME_OF_DAY, strict=False, time_unit="us"),
        text.str.to_datetime(
            date_format + _TIME_OF_DAY.replace(" ", "T"), strict=False, time_unit="us"
        ),
        text.str.to_date(date_format, strict=False).cast(TIMESTAMP),
    )


def _with_offset(text: pl.Expr, date_format: str) -> pl.Expr:
    """A timestamp with a UTC offset (``+08:00``, ``+0800``, ``Z``), as an aware UTC value."""
    return pl.coalesce(
        text.str.to_datetime(
            date_format + _TIME_OF_DAY + _OFFSET, strict=False, time_unit="us", time_zone="UTC"
        ),
        text.str.to_datetime(
            date_format + _TIME_OF_DAY.replace(" ", "T") + _OFFSET,
            strict=False,
            time_unit="us",
            time_zone="UTC",
        ),
    )


# --------------------------------------------------------------------------- the default as-of


@dataclass(frozen=True)
class MonthBook:
    """The accounts with at least one statement whose cycle ended in a month."""

    month_end: date
    accounts: int


@dataclass(frozen=True)
class DefaultAsOf:
    """The as-of a job takes when it is given none, and the later months it passed over."""

    as_of: date
    accounts: int  # accounts with a statement in the as-of's month
    skipped: tuple[MonthBook, ...] = ()  # later months whose book was not complete, oldest first

    def skipped_months(self) -> str:
        """The months passed over with their accounts, e.g. '2025-12 (5,531 accounts)'."""
        return ", ".join(
            f"{book.month_end:%Y-%m} ({book.accounts:,} account{'s' * (book.accounts != 1)})"
            for book in self.skipped
        )

    def note(self) -> str | None:
        """One line saying which later months were passed over and why (None: none were)."""
        if not self.skipped:
            return None
        months = self.skipped_months()
        return (
            f"as-of {self.as_of} ({self.accounts:,} accounts with a statement that month) is "
            f"the latest month-end with a complete book; later months hold statements of too "
            f"few accounts (fewer than {COMPLETE_BOOK_SHARE:.0%} of the month before) and were "
            f"passed over: {months}; give --as-of to choose another month"
        )

    def partial_month_warning(self, as_of: date) -> str | None:
        """A warning when ``as_of``, given explicitly, is the month-end of a month passed over
        here for its partial book (None otherwise; a day within a month is scored from the
        statements known by then, which a partial month is by design)."""
        book = next((b for b in self.skipped if b.month_end == as_of), None)
        if book is None:
            return None
        return (
            f"--as-of {as_of}: the month {as_of:%Y-%m} holds statements of only "
            f"{book.accounts:,} account{'s' * (book.accounts != 1)}, fewer than "
            f"{COMPLETE_BOOK_SHARE:.0%} of the month before (the extract looks taken before the "
            "month's cycles closed, or it lost rows): its accounts without a statement that "
            "month are scored from the month before, aged to the as-of, and some that cured or "
            f"fell behind are scored wrongly or not at all. The latest month-end with a complete "
            f"book is {self.as_of}"
        )


def default_as_of_choice(
    statements: pl.DataFrame, share: float = COMPLETE_BOOK_SHARE
) -> DefaultAsOf:
    """The month-end of the latest month with a complete book: going back from the latest
    month of ``cycle_end``, the first whose accounts with a statement are at least ``share`` of
    those of the month before it that has statements (the earliest month when none is). One
    stray row, or an extract taken before the month's cycles closed, thus never sets the
    population a job looks at.

    Raises:
        UserError: there is no statement.
    """
    months = (
        statements.lazy()
        .select(pl.col("cycle_end").unique())  # few distinct days: month_end on those only
        .select(pl.col("cycle_end").dt.month_end().unique().sort())
        .collect()
        .to_series()
        .drop_nulls()
        .to_list()
    )
    counted: dict[date, int] = {}

    def accounts(month_end: date) -> int:
        # distinct accounts of one month, counted only for the months the walk reaches (the
        # last two, on a complete book): a count over every month costs seconds at 24M rows
        if month_end not in counted:
            month = statements.lazy().filter(
                pl.col("cycle_end").is_between(month_end.replace(day=1), month_end)
            )
            counted[month_end] = month.select(pl.col("account_id").n_unique()).collect().item()
        return counted[month_end]

    return choose_default_as_of(months, accounts, share)


def choose_default_as_of(
    months: Sequence[date], accounts: Callable[[date], int], share: float = COMPLETE_BOOK_SHARE
) -> DefaultAsOf:
    """:func:`default_as_of_choice` from the sorted month-ends with statements and the number
    of accounts with a statement in a month (asked only for the months the walk reaches).

    Raises:
        UserError: there is no month.
    """
    if not months:
        raise UserError("the portfolio has no statements: nothing to score")
    chosen = 0
    for index in range(len(months) - 1, 0, -1):
        if accounts(months[index]) >= share * accounts(months[index - 1]):
            chosen = index
            break
    skipped = tuple(MonthBook(month_end, accounts(month_end)) for month_end in months[chosen + 1 :])
    return DefaultAsOf(months[chosen], accounts(months[chosen]), skipped)


def check_as_of(statements: pl.DataFrame, as_of: date, name: str = "--as-of") -> None:
    """Refuse an as-of given explicitly (``name``: the flag or parameter that gave it) that
    lies outside the months the portfolio has statements for.

    After the month-end of the latest month with a statement, every account's latest figures
    would be stamped with a date they do not describe (June's balances scored "as of July
    31"); before the first month with a statement, nobody has a history, and "no account is
    delinquent" would hide the real cause. Within those months any day is taken as given.

    Raises:
        UserError: the as-of is outside, naming the first or latest statement month (and the
            default as-of, :func:`default_as_of_choice`); or there is no statement.
    """
    first, last = (
        statements.lazy()
        .select(pl.col("cycle_end").min().alias("first"), pl.col("cycle_end").max().alias("last"))
        .collect()
        .row(0)
    )
    check_as_of_within(first, last, as_of, lambda: default_as_of_choice(statements).as_of, name)


def check_as_of_within(
    first: date | None,
    last: date | None,
    as_of: date,
    default: Callable[[], date],
    name: str = "--as-of",
) -> None:
    """:func:`check_as_of` from the first and last ``cycle_end`` of the statements (None: no
    statement) and the default as-of (asked for only when the message names it)."""
    if first is None or last is None:
        raise UserError("the portfolio has no statements: nothing to score")
    latest_end = end_of_month(last)
    if as_of > latest_end:
        suggested = default()
        raise UserError(
            f"{name} {as_of} is after the portfolio's latest month with statements, "
            f"{last:%Y-%m} (last cycle end {last}): its accounts would be stamped {as_of} with "
            f"figures of {last:%Y-%m}; give an as-of up to {latest_end}, or none (the default "
            f"would be {suggested})"
        )
    if as_of < first.replace(day=1):
        raise UserError(
            f"{name} {as_of} is before the portfolio's first month with statements, "
            f"{first:%Y-%m}: no account has a history then; give an as-of from "
            f"{first.replace(day=1)} on"
        )


def end_of_month(day: date) -> date:
    """The last day of ``day``'s month."""
    following = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return following - timedelta(days=1)
