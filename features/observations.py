"""Observations and labels: who is scored at an as-of date, and did they roll to default.

An **observation** is an (account, as-of date) pair. An as-of is any calendar day (training
panels use month-ends, :func:`eligible_as_of_dates`; scoring and monitoring take any day); it is
read as the *end* of that day, so a record counts at the as-of when its ``known_at`` (or
``action_at``) is before midnight after it.

* **The statement at the as-of** is the account's latest statement (by ``cycle_end``) known at
  the as-of, among those that closed within the two calendar months before the end of the
  as-of day (``cycle_end >= as_of + 1 day - 2 months``: at a month-end, the as-of month and the
  month before). An account without one has stopped reporting (or is not billed yet) and is not
  in the population.
* **DPD at the as-of** (:func:`aged_dpd`) is that statement's ``dpd`` aged to the as-of day: a
  statement with arrears (``dpd`` > 0) closed ``n`` days before the as-of gives ``dpd + n``, since
  its arrears keep ageing until a payment clears them; a current statement (``dpd`` 0) gives 0.
  The contract has no payment table and no due date: a payment becomes known only through the
  statement that records it (its ``amount_paid`` and ``dpd``), so an account is *cured* at the
  as-of exactly when a later statement known by then shows ``dpd`` 0, and an account current at
  its statement is never aged (a due missed after it shows first on the next statement). Each
  account is aged from its own billing day: on day D an account billed on the 5th with 35 DPD
  is at 35 + (D - 5) days, one billed on the 20th is still read from last month's statement
  until its new one is known. ``days_since_statement`` is the age ``n`` as a feature.
* **Population**: DPD at the as-of (aged) in ``[min_dpd, max_dpd]`` (default 1-89, the
  delinquent accounts collections acts on, on that day); the starting bucket is that of the
  aged DPD (M1 1-29, M2 30-59, M3 60-89; M0 and M4+ only if the range is widened).
* **Label** ``rolled_to_default``: 1 when some statement with ``cycle_end`` in the
  ``window_months`` calendar months after the as-of month shows ``dpd >= default_dpd`` (for a
  mid-month as-of too: the rest of the as-of month is not in the window). Labels use only
  statements after the as-of and ignore ``known_at`` (outcomes are known later by definition).
* **Window complete**: the portfolio's latest statement month is at least the as-of month plus
  ``window_months`` (a portfolio-level rule: the data extract ends for everyone at once).
  Observations whose window is not complete are excluded from training and counted.
* **No outcome**: an account in the population with no statement at all in a complete window
  (closed, sold or stopped reporting) has an unknown outcome; it is excluded and counted rather
  than guessed to be good.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from typing import Any

import polars as pl

from rollrisk.errors import UserError
from rollrisk.features.dates import COMPLETE_BOOK_SHARE, DefaultAsOf, default_as_of_choice
from rollrisk.features.registry import FeatureSet

# Buckets by DPD lower bound, as in the roll-rate matrix (docs/features.md).
BUCKETS: tuple[tuple[str, int], ...] = (("M0", 0), ("M1", 1), ("M2", 30), ("M3", 60), ("M4+", 90))
BUCKET_NAMES: tuple[str, ...] = tuple(name for name, _ in BUCKETS)

# Observation status: only "labelled" rows go into a training set.
LABELLED, INCOMPLETE_WINDOW, NO_OUTCOME = "labelled", "incomplete_window", "no_outcome"

RECENT_STATEMENT_MONTHS = 2
"""A statement sets the DPD at an as-of only if it closed within this many calendar months
before the end of the as-of day (:func:`recent_statement_cutoff`): at a month-end, the as-of
month or the month before. An account whose latest known statement is older has stopped
reporting (closed, sold, charged off): it is not acted on, so it is not observed. On a mid-month
day the two months reach into the month before last, so an account whose statement of last month
is not yet known is still read from the one before."""


@dataclass(frozen=True)
class ObservationSpec:
    """What an observation is and what counts as default; read from ``observation:`` in YAML.

    Attributes:
        default_dpd: DPD at or above which an account has defaulted (30 for cards, 60, 90, ...).
        window_months: performance window after the as-of month, in calendar months.
        min_dpd, max_dpd: the population's DPD range at the as-of, inclusive.
    """

    default_dpd: int = 90
    window_months: int = 3
    min_dpd: int = 1
    max_dpd: int = 89

    def __post_init__(self) -> None:
        problems = []
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{item.name} must be a whole number, got {value!r}")
        if problems:
            raise UserError("observation settings: " + "; ".join(problems))
        if not 1 <= self.default_dpd <= 3650:
            problems.append(f"default_dpd must be between 1 and 3650, got {self.default_dpd}")
        if not 1 <= self.window_months <= 36:
            problems.append(f"window_months must be between 1 and 36, got {self.window_months}")
        if self.min_dpd < 0:
            problems.append(f"min_dpd must be >= 0, got {self.min_dpd}")
        if self.min_dpd > self.max_dpd:
            problems.append(f"min_dpd ({self.min_dpd}) must not exceed max_dpd ({self.max_dpd})")
        if self.max_dpd >= self.default_dpd:
            problems.append(
                f"max_dpd ({self.max_dpd}) must be below default_dpd ({self.default_dpd}): "
                "an account already in default cannot roll to default"
            )
        if problems:
            raise UserError("observation settings: " + "; ".join(problems))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "config") -> ObservationSpec:
        """Build from the ``observation:`` YAML section; an unknown key is an error."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(
                f"{source}: unknown key(s) in section 'observation': {', '.join(unknown)} "
                f"(expected some of {', '.join(sorted(known))})"
            )
        try:
            return cls(**dict(values))
        except UserError as error:  # which file holds the bad value
            raise UserError(f"{source}: section 'observation': {error}") from None

    def describe(self) -> str:
        """The definition in words: 'population DPD 1-89, default = DPD >= 90 within 3 months'."""
        return (
            f"population DPD {self.min_dpd}-{self.max_dpd}, default = DPD >= {self.default_dpd} "
            f"within {self.window_months} months"
        )

    def as_flags(self) -> str:
        """The command-line flags that give this definition."""
        return " ".join(f"--{item.name.replace('_', '-')} {getattr(self, item.name)}"
                        for item in fields(self))  # fmt: skip

    def with_overrides(self, **overrides: int | None) -> ObservationSpec:
        """A copy with the given fields replaced; ``None`` values are ignored (flag not given)."""
        changes = {key: value for key, value in overrides.items() if value is not None}
        return ObservationSpec(**{**self.__dict__, **changes})


def month_index(column: str | pl.Expr) -> pl.Expr:
    """Months since year 0 of a Date/Datetime column: consecutive months differ by 1."""
    expr = pl.col(column) if isinstance(column, str) else column
    return expr.dt.year().cast(pl.Int32) * 12 + expr.dt.month().cast(pl.Int32) - 1


def bucket_of(dpd: pl.Expr) -> pl.Expr:
    """The delinquency bucket name (M0 .. M4+) of a DPD expression."""
    expr = pl.lit("M0")
    for name, low in BUCKETS[1:]:
        expr = pl.when(dpd >= low).then(pl.lit(name)).otherwise(expr)
    return expr


def as_of_end(as_of: str = "as_of") -> pl.Expr:
    """The first instant after the as-of day: records known strictly before it count."""
    return (pl.col(as_of) + pl.duration(days=1)).cast(pl.Datetime("us"))


def recent_statement_cutoff(as_of: date) -> date:
    """The earliest ``cycle_end`` of a statement recent enough to set the DPD at ``as_of``: the
    end of the as-of day (the next day's start) moved back :data:`RECENT_STATEMENT_MONTHS`
    calendar months (at 2024-03-31: 2024-02-01; at 2024-03-10: 2024-01-11)."""
    start = as_of + timedelta(days=1)
    month = start.year * 12 + start.month - 1 - RECENT_STATEMENT_MONTHS
    year, month = divmod(month, 12)
    return date(year, month + 1, min(start.day, calendar.monthrange(year, month + 1)[1]))


def aged_dpd(dpd: pl.Expr, cycle_end: pl.Expr, as_of: pl.Expr) -> pl.Expr:
    """DPD at the end of day ``as_of`` of an account whose statement closed at ``cycle_end``
    with ``dpd`` (module docstring): arrears age one day per day until a statement shows them
    cleared; a current statement stays at 0."""
    days = (as_of.cast(pl.Date) - cycle_end.cast(pl.Date)).dt.total_days().clip(lower_bound=0)
    return pl.when(dpd > 0).then(dpd + days).otherwise(0).cast(pl.Int64)


def dpd_at_as_of(statements: pl.DataFrame | pl.LazyFrame, as_of: date) -> pl.DataFrame:
    """``account_id, dpd_at_as_of`` (aged, :func:`aged_dpd`) of every account with a recent
    statement known at ``as_of``, whether in the population or not (the service says why a
    requested account was not scored). Needs ``account_id, cycle_end, known_at, dpd``."""
    return (
        _statement_at_as_of(_history(statements), [as_of])
        .select("account_id", "dpd_at_as_of")
        .collect()
    )


def check_as_of_dates(as_of_dates: Sequence[date]) -> list[date]:
    """Sorted, de-duplicated as-of dates of a training panel; raises when one is not a
    month-end (training panels are monthly, docs/features.md; scoring takes any day)."""
    bad = [d for d in as_of_dates if (pl.Series([d]).dt.month_end()[0] != d)]
    if bad:
        raise UserError(
            "as-of dates must be month-ends (e.g. 2024-03-31); got "
            + ", ".join(d.isoformat() for d in bad)
        )
    return sorted(set(as_of_dates))


def eligible_as_of_dates(
    statements: pl.DataFrame | pl.LazyFrame, spec: ObservationSpec
) -> list[date]:
    """Every month-end with some history known by then and a complete performance window.

    Needs ``statements`` columns ``cycle_end`` and ``known_at``. The first eligible as-of is the
    first month-end at which at least one statement is known; the last is the month-end
    ``window_months`` before the portfolio's last complete month (:func:`labelled_through`).
    """
    first_known = statements.lazy().select(pl.col("known_at").min()).collect().item()
    return eligible_as_of_between(first_known, labelled_through(statements), spec)


def eligible_as_of_between(
    first_known: datetime | None, last_cycle_end: date | None, spec: ObservationSpec
) -> list[date]:
    """:func:`eligible_as_of_dates` from the statements' earliest ``known_at`` and latest
    ``cycle_end`` (None: no statement)."""
    if first_known is None or last_cycle_end is None:
        return []
    first = pl.Series([first_known.date()]).dt.month_end()[0]
    last = (
        pl.Series([last_cycle_end])
        .dt.month_start()
        .dt.offset_by(f"-{spec.window_months}mo")
        .dt.month_end()[0]
    )
    if last < first:
        return []
    months = pl.date_range(first, last, interval="1mo", eager=True).dt.month_end()
    return sorted(set(months.to_list()))


def observations(
    statements: pl.DataFrame | pl.LazyFrame,
    as_of_dates: Sequence[date],
    spec: ObservationSpec,
    last_cycle_end: date | None = None,
) -> pl.DataFrame:
    """The population at each as-of date, with starting bucket, label and status.

    Needs ``statements`` columns ``account_id``, ``cycle_end``, ``known_at``, ``dpd``.
    Returns one row per observation: ``account_id``, ``as_of`` (Date), ``dpd_at_as_of``,
    ``start_bucket``, ``rolled_to_default`` (Int8, null unless labelled) and ``status``
    (``labelled`` | ``incomplete_window`` | ``no_outcome``), sorted by as_of, account_id.
    A window is complete when the portfolio's complete months reach past it: by
    :func:`labelled_through` of ``statements``, or ``last_cycle_end`` when they are only a
    part of the portfolio (the accounts of one partition: the whole book's
    :func:`labelled_through`).
    """
    dates = sorted(set(as_of_dates))
    history = _history(statements)
    if last_cycle_end is None:
        last_cycle_end = labelled_through(statements)
    last_month = pl.LazyFrame({"_last": [last_cycle_end]}, schema={"_last": pl.Date}).select(
        month_index("_last").alias("last_month")
    )
    population = _population(history, dates, spec)

    # outcome: worst DPD in the window months after the as-of month (known_at deliberately ignored)
    ahead = _months_around(dates, range(1, spec.window_months + 1))
    window = (
        population.select("account_id", "as_of")
        .join(ahead, on="as_of")
        .join(history.select("account_id", "_month", "dpd"), on=["account_id", "_month"])
        .group_by("account_id", "as_of")
        .agg(pl.col("dpd").max().alias("_worst_dpd"))
    )
    return (
        population.join(window, on=["account_id", "as_of"], how="left")
        .join(last_month, how="cross")
        .with_columns(
            bucket_of(pl.col("dpd_at_as_of")).alias("start_bucket"),
            pl.when(month_index("as_of") + spec.window_months > pl.col("last_month"))
            .then(pl.lit(INCOMPLETE_WINDOW))
            .when(pl.col("_worst_dpd").is_null())
            .then(pl.lit(NO_OUTCOME))
            .otherwise(pl.lit(LABELLED))
            .alias("status"),
        )
        .with_columns(
            pl.when(pl.col("status") == LABELLED)
            .then((pl.col("_worst_dpd") >= spec.default_dpd).cast(pl.Int8))
            .otherwise(None)
            .cast(pl.Int8)
            .alias("rolled_to_default")
        )
        .select(
            "account_id", "as_of", "dpd_at_as_of", "start_bucket", "rolled_to_default", "status"
        )
        .sort("as_of", "account_id")
        .collect()
    )


def labelled_through(statements: pl.DataFrame | pl.LazyFrame) -> date | None:
    """The month-end of the last month an outcome window may reach: the latest month with a
    complete book (:func:`~rollrisk.features.dates.default_as_of_choice`, the month a job
    scores by default), None without statements.

    Not the latest ``cycle_end``: in an extract taken before a month's cycles closed, the
    accounts without that month's statement had their outcome window cut short and were
    labelled from it (a helper's test book, half of its last month missing: 26 of 665 labels
    at one as-of flipped from 1 to 0, the roll rate 16.2 % read as 12.3 %, with no row
    excluded), into the out-of-time figures the promotion gates read and the monitor's
    backtest."""
    has_rows = statements.lazy().select(pl.col("cycle_end").drop_nulls().len()).collect().item()
    return default_as_of_choice(statements).as_of if has_rows else None


def partial_months_note(choice: DefaultAsOf) -> str | None:
    """What :func:`labelled_through` set aside, for a job's warnings: the months after the
    latest complete one that no outcome is read from (None: none were)."""
    if not choice.skipped:
        return None
    months = choice.skipped_months()
    return (
        f"outcome windows end at {choice.as_of}, the latest month-end with a complete book: "
        f"later months hold statements of too few accounts (fewer than "
        f"{COMPLETE_BOOK_SHARE:.0%} of the month before: {months}; an extract taken before "
        "their cycles closed?), so no outcome is read from them and the as-of dates whose "
        "windows reach them are not labelled"
    )


def population_lazy(
    statements: pl.DataFrame | pl.LazyFrame,
    as_of_dates: Sequence[date],
    spec: ObservationSpec,
) -> pl.LazyFrame:
    """The population part of :func:`observations` (``account_id``, ``as_of``,
    ``dpd_at_as_of``, ``start_bucket``; no label, no order), as a lazy query: what scoring
    needs, to be collected together with the features computed from it."""
    return _population(_history(statements), sorted(set(as_of_dates)), spec).with_columns(
        bucket_of(pl.col("dpd_at_as_of")).alias("start_bucket")
    )


def _history(statements: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    return (
        statements.lazy()
        .select("account_id", "cycle_end", "known_at", "dpd")
        .with_columns(month_index("cycle_end").alias("_month"))
    )


def _months_around(dates: Sequence[date], offsets: range) -> pl.LazyFrame:
    """(as_of, _month) for each as-of and each month offset: an equi-join key into history."""
    return (
        pl.LazyFrame({"as_of": dates}, schema={"as_of": pl.Date})
        .join(pl.LazyFrame({"_offset": list(offsets)}, schema={"_offset": pl.Int32}), how="cross")
        .with_columns((month_index("as_of") + pl.col("_offset")).alias("_month"))
        .drop("_offset")
    )


def _recent_months(dates: Sequence[date]) -> pl.LazyFrame:
    """(as_of, _month, _cutoff): the statement months that may hold the statement at each
    as-of (from its :func:`recent_statement_cutoff` to the as-of month), an equi-join key into
    history: two months at a month-end, three mid-month."""
    rows = [
        (day, month, cutoff)
        for day in dates
        for cutoff in [recent_statement_cutoff(day)]
        for month in range(cutoff.year * 12 + cutoff.month - 1, day.year * 12 + day.month)
    ]
    return pl.LazyFrame(
        rows, schema={"as_of": pl.Date, "_month": pl.Int32, "_cutoff": pl.Date}, orient="row"
    )


def _statement_at_as_of(history: pl.LazyFrame, dates: Sequence[date]) -> pl.LazyFrame:
    """``account_id, as_of, dpd_at_as_of``: the latest recent statement known at each as-of,
    its DPD aged to the as-of day."""
    return (
        history.join(_recent_months(dates), on="_month")
        .filter((pl.col("known_at") < as_of_end()) & (pl.col("cycle_end") >= pl.col("_cutoff")))
        .group_by("account_id", "as_of")
        .agg(
            pl.col("dpd").sort_by("cycle_end").last().alias("_statement_dpd"),
            pl.col("cycle_end").max().alias("_statement_end"),
        )
        .select(
            "account_id",
            "as_of",
            aged_dpd(pl.col("_statement_dpd"), pl.col("_statement_end"), pl.col("as_of")).alias(
                "dpd_at_as_of"
            ),
        )
    )


def _population(
    history: pl.LazyFrame, dates: Sequence[date], spec: ObservationSpec
) -> pl.LazyFrame:
    return _statement_at_as_of(history, dates).filter(
        pl.col("dpd_at_as_of").is_between(spec.min_dpd, spec.max_dpd)
    )


SUMMARY_COUNTS = (
    "population",
    "labelled",
    "positives",
    "excluded_incomplete_window",
    "excluded_no_outcome",
)


def observation_summary(observed: pl.DataFrame) -> pl.DataFrame:
    """Per as-of: population, labelled, positives, roll rate and exclusions by reason."""
    counts = observed.group_by("as_of").agg(
        pl.len().alias("population"),
        (pl.col("status") == LABELLED).sum().alias("labelled"),
        pl.col("rolled_to_default").sum().cast(pl.Int64).alias("positives"),
        (pl.col("status") == INCOMPLETE_WINDOW).sum().alias("excluded_incomplete_window"),
        (pl.col("status") == NO_OUTCOME).sum().alias("excluded_no_outcome"),
    )
    return _with_roll_rate(counts)


def combine_summaries(parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """:func:`observation_summary` of the union of disjoint sets of accounts (the partitions
    of a portfolio), from the summary of each: counts added per as-of, roll rate recomputed."""
    if not parts:
        return observation_summary(
            pl.DataFrame(
                schema={"as_of": pl.Date, "status": pl.String, "rolled_to_default": pl.Int8}
            )
        )
    counts = pl.concat(parts).group_by("as_of").agg(pl.col(SUMMARY_COUNTS).sum())
    return _with_roll_rate(counts)


def _with_roll_rate(counts: pl.DataFrame) -> pl.DataFrame:
    return counts.with_columns(
        (pl.col("positives") / pl.col("labelled")).fill_nan(None).alias("roll_rate")
    ).sort("as_of")


def first_statement_month(statements: Any) -> date | None:
    """The month (its first day) of the portfolio's earliest statement, ``None`` when there
    is none; ``statements`` is a polars or pandas frame with ``cycle_end``."""
    if len(statements) == 0:
        return None
    first = statements["cycle_end"].min()
    return date(first.year, first.month, 1)


def window_lengths(feature_set: FeatureSet) -> list[int]:
    """The feature windows' lengths in months, shortest first."""
    return sorted({spec.window_months for spec in feature_set.features if spec.window_months})


def windows_complete_from(first_month: date, months: int) -> date:
    """The first as-of (a month-end) where a ``months``-month window lies wholly within
    statements starting in ``first_month``: the month-end of the window's last month."""
    month = first_month.month - 1 + months
    return date(first_month.year + month // 12, month % 12 + 1, 1) - timedelta(days=1)


def short_history_warning(
    first_month: date | None, as_of: date, feature_set: FeatureSet
) -> str | None:
    """A warning when the portfolio's statements (from ``first_month``) are too recent for the
    feature windows at ``as_of``: scores there read truncated histories (a 12-month feature
    over 3 months), which the model did not learn them as once its windows were complete.
    ``None`` when every window is complete."""
    windows = window_lengths(feature_set)
    if first_month is None or not windows:
        return None
    covered = (as_of.year - first_month.year) * 12 + as_of.month - first_month.month + 1
    short = [window for window in windows if covered < window]
    if not short:
        return None
    complete_from = windows_complete_from(first_month, short[-1])
    return (
        f"the statements start in {first_month:%Y-%m}, so at as-of {as_of} the feature "
        f"windows hold {covered} month{'s' if covered != 1 else ''} of history: the "
        f"{', '.join(str(w) for w in short)}-month features read shorter histories than their "
        "names say, and these scores are less reliable than the model's out-of-time figures; "
        f"every window is complete from as-of {complete_from} on"
    )


def truncated_history_warning(
    opened_at: date, first_statement: date, as_of: date, feature_set: FeatureSet
) -> str | None:
    """A warning for one account whose history was cut (the service: a client sent only its
    latest statements): its statements start (``first_statement``, a ``cycle_end``) more than a
    month after it opened, and too late for the feature windows at ``as_of``. ``None`` for an
    account that is simply young: its short history is the whole of it, as the model saw such
    accounts in training."""
    first_month = date(first_statement.year, first_statement.month, 1)
    months_open = (first_month.year - opened_at.year) * 12 + first_month.month - opened_at.month
    if months_open <= 1:  # a first statement closes in the opening month or the next
        return None
    warning = short_history_warning(first_month, as_of, feature_set)
    if warning is None:
        return None
    return (
        f"{warning}; the account opened in {opened_at:%Y-%m}, so it had statements before "
        f"{first_month:%Y-%m}: send them to score its whole history"
    )


def _known_recently(statements: pl.DataFrame | pl.LazyFrame, as_of: date) -> pl.LazyFrame:
    """Statements known by the end of ``as_of`` whose cycle ended in the months
    :func:`overdue_statements` looks at."""
    end = datetime.combine(as_of + timedelta(days=1), datetime.min.time())
    earliest = recent_statement_cutoff(as_of) - timedelta(days=31)  # a month more than read
    return (
        statements.lazy()
        .select("account_id", "cycle_end", "known_at", "dpd")
        .filter((pl.col("known_at") < end) & (pl.col("cycle_end") >= earliest))
    )


def statement_timing(statements: pl.DataFrame | pl.LazyFrame, as_of: date) -> pl.DataFrame:
    """One row: the latest ``cycle_end`` and the longest delay from a cycle's end to its
    ``known_at`` among the statements :func:`overdue_statements` reads (combine the rows of
    parts of a book by their maximum)."""
    return _timing(_known_recently(statements, as_of)).collect()


def _timing(known: pl.LazyFrame) -> pl.LazyFrame:
    return known.select(
        pl.col("cycle_end").max().alias("latest"),
        (pl.col("known_at") - pl.col("cycle_end").cast(pl.Datetime("us"))).max().alias("delay"),
    )


# the least delay from cycle end to known_at that a statement judged by its account's own
# statements (``overdue_statements(own_timing=True)``) is allowed before it counts as missing
OWN_TIMING_MIN_DELAY_DAYS = 14


def overdue_statements(
    statements: pl.DataFrame | pl.LazyFrame,
    as_of: date,
    spec: ObservationSpec,
    timing: pl.DataFrame | None = None,
    own_timing: bool = False,
) -> pl.DataFrame:
    """Delinquent accounts whose next statement is missing from the extract: ``account_id``,
    ``last_cycle_end`` (their latest statement known at ``as_of``, in the last
    :data:`RECENT_STATEMENT_MONTHS` + 1 months), ``due_cycle_end`` (a month later), sorted.

    An account counts when its latest statement showed it 1 to ``spec.max_dpd`` days past due
    (a line current at its last statement may have closed), the statement a month later would
    be known by the end of the as-of day even with the longest delay from cycle end to
    ``known_at`` the book shows, and the book holds statements that late (``timing``:
    :func:`statement_timing` of the whole book, when ``statements`` is a part of it). Such an
    account is scored from its last statement with the DPD aged to the as-of (a cure in the
    missing month unseen), or drops out of the population: the extract lost rows.

    ``own_timing``: each account by its own statements alone (the service, whose requests are
    not a book): the statement is due by the as-of and the longest delay of the account's own
    statements, at least :data:`OWN_TIMING_MIN_DELAY_DAYS` (a few statements show less than
    the book's longest delay), whatever other accounts are sent beside it.
    """
    end = datetime.combine(as_of + timedelta(days=1), datetime.min.time())
    known = _known_recently(statements, as_of).collect()  # filtered once, read twice
    per_account: list[pl.Expr] = []
    if own_timing:
        own = (pl.col("known_at") - pl.col("cycle_end").cast(pl.Datetime("us"))).max()
        per_account.append(own.alias("_delay"))
        floor = pl.lit(timedelta(days=OWN_TIMING_MIN_DELAY_DAYS))
        latest, delay = pl.lit(as_of), pl.max_horizontal(pl.col("_delay"), floor)
    else:
        book = (_timing(known.lazy()).collect() if timing is None else timing).row(0)
        if book[0] is None:  # no statement known by the as-of (its first days): none is due
            return known.select(
                "account_id",
                pl.col("cycle_end").alias("last_cycle_end"),
                pl.col("cycle_end").alias("due_cycle_end"),
            ).clear()
        latest, delay = pl.lit(book[0]), pl.lit(book[1])
    due = pl.col("last_cycle_end").dt.offset_by("1mo")
    return (
        known.lazy()
        .group_by("account_id")
        .agg(
            pl.col("cycle_end").max().alias("last_cycle_end"),
            pl.col("dpd").sort_by("cycle_end").last().alias("_dpd"),
            *per_account,
        )
        .filter(
            pl.col("_dpd").is_between(1, spec.max_dpd)
            & (due <= latest)
            & (due.cast(pl.Datetime("us")) + delay < pl.lit(end))
        )
        .select("account_id", "last_cycle_end", due.alias("due_cycle_end"))
        .sort("account_id")
        .collect()
    )


def overdue_statements_warning(missing: pl.DataFrame, as_of: date) -> str | None:
    """One line for the job's warnings when :func:`overdue_statements` found accounts."""
    if not missing.height:
        return None
    examples = ", ".join(
        f"{account} (last {last}, none for {due:%Y-%m})"
        for account, last, due in missing.head(3).iter_rows()
    )
    return (
        f"{missing.height:,} delinquent account{'s' * (missing.height != 1)} lack the statement "
        f"that was due a month after their latest, although it would be known by {as_of} and "
        f"the book holds statements that late (e.g. {examples}): the extract looks to have lost "
        "them. Such an account is scored from its last statement, its DPD aged to the as-of "
        "(a cure or payment since unseen), or drops out of the population; check the extract"
    )
