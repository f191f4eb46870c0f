"""Point-in-time features from borrower history: one polars aggregation per registered feature.

Every feature of :data:`rollrisk.features.registry.FEATURE_SET` is computed by exactly one
expression below, filed under the same name in the table of its source (``STATEMENT_FEATURES``
and ``STATEMENT_SUMS``, the statement features made of window sums; ``PROMISE_FEATURES`` and
``ACTION_FEATURES`` for the action log, ``TREATMENT_FEATURES``, ``ACCOUNT_FEATURES``); a unit
test checks the names and sources agree with the registry.

How time is handled (the point-in-time rules, see ``docs/features.md``):

* the as-of is the end of its day: a statement or treatment counts when ``known_at`` is before
  the midnight after the as-of, an action when ``action_at`` is;
* statement windows ("last k months") are the k statement months ending with the latest
  statement known at the as-of (column ``_lag`` = months back from it); with a shorter history
  a window simply holds fewer statements (6 months of data still give 12-month features);
* action and treatment windows are the k calendar months ending with the as-of month
  (column ``_months_back``);
* a credit balance (a negative ``balance``: the lender owes the borrower) owes nothing: the
  balance and utilisation features read ``max(balance, 0)``;
* statement and account features are always present; action features are missing when the
  portfolio has no ``collection_actions`` table and treatment features when it has no
  ``treatments`` table (counts are 0, not missing, for an account with no rows in a table that
  exists).

All aggregation is vectorised polars over lazy frames grouped by each observation's number
(one per (account_id, as_of), its rows sorted by it); there is no per-account Python.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import polars as pl

from rollrisk.features.observations import as_of_end, month_index
from rollrisk.features.registry import FEATURE_SET, FeatureSet
from rollrisk.features.schemas import FAILED_OUTCOMES, REACHED_OUTCOMES

KEY = ["account_id", "as_of"]


# "only the minimum" means paying at least min_due but less than this multiple of it
MIN_DUE_ONLY_TOLERANCE = 1.10
# a promise counts as kept when the next statement shows at least this share of it paid
PROMISE_KEPT_SHARE = 0.99


@dataclass(frozen=True)
class Aggregate:
    """A feature's aggregation over its source rows of one (account_id, as_of).

    ``when_no_rows`` is the value for an observation with no rows in the source table
    (0.0 for counts; ``None`` for ratios, recencies and values that need a row).
    """

    expr: pl.Expr
    when_no_rows: float | None = None
    # a share (:func:`_share`): its numerator and denominator, aggregated as columns of their
    # own and divided after the group-by (:class:`_Aggregates`); ``expr`` is the same share
    # computed inside the aggregation
    ratio_of: tuple[pl.Expr, pl.Expr] | None = None


def _window(months: int) -> pl.Expr:
    return pl.col("_lag") < months


def _count(condition: pl.Expr) -> Aggregate:
    return Aggregate(condition.sum(), when_no_rows=0.0)


def _max_where(condition: pl.Expr, column: str) -> pl.Expr:
    """The largest ``column`` among the rows where ``condition`` holds (null if none).

    ``when/then`` rather than ``filter``: the same value, and polars aggregates it without
    evaluating the group's rows one group at a time (a maximum does not depend on the order).
    """
    return pl.when(condition).then(pl.col(column)).max()


def _divide(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """``numerator`` times the reciprocal of ``denominator``, the one way every feature divides.
    Polars divides a column by a one-value column through its reciprocal and by an equally
    long column exactly, and which of the two a plan meets depends on the engine and the
    query's shape (one account or many, streaming or in memory): the same account's ratio then
    differed in the last bit between a service request and a batch. A reciprocal taken value
    by value and then multiplied gives the same bits in every plan; features/online.py divides
    the same way."""
    return numerator * (1.0 / denominator)


def _ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """``numerator / denominator`` (:func:`_divide`), missing when the denominator is not above
    0 or the ratio is not finite: an amount the contract allows, such as a credit limit of
    1e-310, has no finite reciprocal, and an infinite utilisation read as a fact broke the
    reason texts, the batch and the service (features/online.py ``_ratio`` agrees)."""
    ratio = _divide(numerator, denominator)
    return pl.when((denominator > 0) & ratio.is_finite()).then(ratio).otherwise(None)


def _months_since_last_not(flag: pl.Expr) -> pl.Expr:
    """Length of the run of latest statement months where ``flag`` holds (0 if the latest fails)."""
    last_break = _max_where(~flag, "_month")
    return pl.col("_latest_month").first() - pl.coalesce(last_break, pl.col("_month").min() - 1)


def _previous_delinquency_month() -> pl.Expr:
    """Month of the last delinquent statement before the latest current (DPD 0) one
    (``_last_current_month``, a row column: a group's own aggregate compared with its rows
    inside an aggregation makes polars evaluate the groups one at a time)."""
    before_last_current = pl.col("_month") < pl.col("_last_current_month")
    return _max_where((pl.col("dpd") > 0) & before_last_current, "_month")


_DELINQUENT = pl.col("dpd") > 0
_BUCKET = pl.col("_bucket")
_PREVIOUS = pl.col("_previous_bucket")
_LATEST_DUE = pl.col("amount_due").last()
# the latest statement's values taken first, then combined: the same arithmetic on the same row
# as combining every row and taking the latest, without the work on the other rows
_LATEST_OVERDUE = (pl.col("amount_due").last() - pl.col("amount_paid").last()).clip(lower_bound=0)
_PAID, _DUE, _MIN_DUE = pl.col("amount_paid"), pl.col("amount_due"), pl.col("min_due")
# What the borrower owes at cycle end. A negative balance is a credit (an overpayment or a
# refund: the lender owes the borrower) and owes nothing; features read it as 0, so that a
# credit never shows as negative use of the limit (which, with utilisation's +1 direction,
# would push the risk below that of an account owing nothing) nor as a negative exposure.
_OWED = pl.col("balance").clip(lower_bound=0)


def _previous(column: str) -> pl.Expr:
    """``column`` on the statement of the month before the latest statement's (null if none)."""
    return pl.col(column).filter(pl.col("_lag") == 1).last()


def _last_minus_previous(column: str) -> Aggregate:
    return Aggregate(pl.col(column).last() - _previous(column))


def _months_since_statement(flag: pl.Expr) -> Aggregate:
    """Statement months from the last statement where ``flag`` holds to the latest statement
    (0: the latest); null when it never holds in the known history."""
    return Aggregate(pl.col("_latest_month").first() - _max_where(flag, "_month"))


def _bucket_months(bucket: int, months: int) -> tuple[str, Aggregate]:
    return f"months_in_m{bucket}_{months}m", _count((_BUCKET == bucket) & _window(months))  # noqa: SIM300


# Statement features: rows are the statements known at the as-of, sorted by cycle_end, with
# helper columns _month, _latest_month, _last_current_month, _lag, _bucket (0..4),
# _previous_bucket, _utilisation, _paid_to_due, _min_due_only, credit_limit (see
# _statement_rows).
STATEMENT_FEATURES: Mapping[str, Aggregate] = {
    "dpd_current": Aggregate(pl.col("dpd").last()),
    "dpd_max_3m": Aggregate(_max_where(_window(3), "dpd")),
    "dpd_max_6m": Aggregate(_max_where(_window(6), "dpd")),
    "dpd_max_12m": Aggregate(_max_where(_window(12), "dpd")),
    **dict(_bucket_months(b, m) for m in (3, 6, 12) for b in (1, 2, 3)),
    "months_delinquent_12m": _count(_DELINQUENT & _window(12)),
    "consecutive_delinquent_months": Aggregate(_months_since_last_not(_DELINQUENT)),
    "roll_count_12m": _count((_BUCKET > _PREVIOUS) & _window(12)),
    "cure_count_12m": _count((_PREVIOUS > 0) & (_BUCKET == 0) & _window(12)),
    "delinquency_episodes_12m": _count((_BUCKET > 0) & (_PREVIOUS.fill_null(0) == 0) & _window(12)),
    "months_since_previous_delinquency": Aggregate(
        pl.col("_latest_month").first() - _previous_delinquency_month()
    ),
    "first_delinquency": Aggregate(
        (_previous_delinquency_month().is_null() & (pl.col("dpd").last() > 0)).cast(pl.Float64)
    ),
    "paid_to_due_ratio_last": Aggregate(_ratio(_PAID.last(), _LATEST_DUE)),
    "min_due_only_streak": Aggregate(_months_since_last_not(pl.col("_min_due_only"))),
    "min_due_only_months_6m": _count(pl.col("_min_due_only") & _window(6)),
    "partial_payments_6m": _count((_PAID > 0) & (_PAID < _MIN_DUE) & _window(6)),
    "zero_payments_3m": _count((_DUE > 0) & (_PAID == 0) & _window(3)),
    "utilisation_current": Aggregate(pl.col("_utilisation").last()),
    "balance_current": Aggregate(pl.col("balance").last().clip(lower_bound=0)),  # _OWED
    "amount_overdue": Aggregate(_LATEST_OVERDUE),
    "overdue_to_limit_ratio": Aggregate(_ratio(_LATEST_OVERDUE, pl.col("credit_limit").first())),
    "days_since_statement": Aggregate(
        (pl.col("as_of").first() - pl.col("cycle_end").last()).dt.total_days()
    ),
    # dynamics (feature set 1.1.0): differences, trends, volatility, recencies, ratios
    "dpd_change_last": _last_minus_previous("dpd"),
    "months_since_last_cure": _months_since_statement((_PREVIOUS > 0) & (_BUCKET == 0)),
    "months_since_last_payment": _months_since_statement(_PAID > 0),
    "months_since_last_full_payment": _months_since_statement((_DUE > 0) & (_PAID >= _DUE)),
    "paid_to_due_change_last": _last_minus_previous("_paid_to_due"),
    "overdue_to_due_ratio": Aggregate(_ratio(_LATEST_OVERDUE, _LATEST_DUE)),
    "utilisation_change_last": _last_minus_previous("_utilisation"),
}

# --- Statement window sums: one order of addition, two ways to compute it ---------------------
#
# Totals, means, standard deviations and least-squares slopes over a statement window add
# floats, and float addition depends on its order. They are added in ONE documented order, the
# statements' own: from 0.0, the window's oldest statement first, a missing value skipped.
# features/online.py adds them in that order too, so the service's features equal the batch's
# bit for bit, and an observation's features depend neither on the other observations of a
# query nor on where it sits among them. Polars' own ``sum``/``mean``/``std`` are not used:
# they add a group's floats in blocks (compensated or not) that depend on the whole query.
#
# The order is computed two ways, chosen per observation:
# * picked (vectorised): the latest ``PICKED_STATEMENTS`` statements of each observation are
#   picked into columns, one row per observation (``list.get`` on the group's rows as a list),
#   and added with explicit ``+``, oldest pick first, from 0.0; a pick outside the window, past
#   the first statement or with the value missing adds 0.0. That is the order above whenever
#   the widest window holds at most ``PICKED_STATEMENTS`` statements (always with one
#   statement a month): the picks outside the window are older than it, and adding 0.0 to a
#   sum started at 0.0 changes nothing;
# * in rows (per group, slower): ``cum_sum`` over the window's rows in the group, taken only
#   for the observations whose widest window holds more statements (several cycles a month).

# Statements picked per observation: one per month of the widest window.
PICKED_STATEMENTS = 12
# The widest window a statement sum may use (a wider one would need more picks).
WIDEST_SUM_WINDOW = 12
# The statement columns that window sums read.
SUMMED_COLUMNS = ("amount_paid", "amount_due", "min_due", "dpd", "_utilisation", "_paid_to_due")


class _Window(Protocol):
    """The sums of one statement column over a window of ``months`` statement months: over
    the window's statements where the column is known, in the order above."""

    def total(self, column: str, months: int) -> pl.Expr:
        """The column's values added (0.0 when none is known)."""
        ...

    def count(self, column: str, months: int) -> pl.Expr:
        """How many values are known (UInt32)."""
        ...

    def squares(self, column: str, months: int) -> pl.Expr:
        """The squared deviations from :func:`_mean` added."""
        ...

    def moments(self, column: str, months: int) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
        """With x = -lag (the month, 0 the latest): x, x * x and x * value added."""
        ...

    def latest(self, column: str) -> pl.Expr:
        """The column on the latest statement."""
        ...


def _check_window(months: int) -> None:
    if months > WIDEST_SUM_WINDOW:
        raise ValueError(f"a {months}-month window sum is wider than {WIDEST_SUM_WINDOW} months")


def _mean(window: _Window, column: str, months: int) -> pl.Expr:
    """The mean of the window's known values (null for none)."""
    count = window.count(column, months)
    return pl.when(count > 0).then(_divide(window.total(column, months), count))


class _InRows:
    """The sums as aggregations of an observation's rows (in a ``group_by``), by ``cum_sum``."""

    @staticmethod
    def _values(column: str, months: int) -> pl.Expr:
        _check_window(months)
        return (
            pl.col(column).cast(pl.Float64).filter(_window(months) & pl.col(column).is_not_null())
        )

    @staticmethod
    def _added(values: pl.Expr) -> pl.Expr:
        # from 0.0, as the picks are added: a sum of zeros is +0.0, never -0.0
        return pl.lit(0.0) + values.cum_sum().last().fill_null(0.0)

    def total(self, column: str, months: int) -> pl.Expr:
        return self._added(self._values(column, months))

    def count(self, column: str, months: int) -> pl.Expr:
        return self._values(column, months).count().cast(pl.UInt32)

    def squares(self, column: str, months: int) -> pl.Expr:
        deviation = self._values(column, months) - _mean(self, column, months)
        return self._added(deviation * deviation)

    def moments(self, column: str, months: int) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
        _check_window(months)
        known = _window(months) & pl.col(column).is_not_null()
        x = (-pl.col("_lag")).cast(pl.Float64).filter(known)
        y = self._values(column, months)
        return self._added(x), self._added(x * x), self._added(x * y)

    def latest(self, column: str) -> pl.Expr:
        return pl.col(column).last()


def _picked_name(column: str, position: int) -> str:
    """The column of ``column`` on the statement ``position`` statements before the latest."""
    return f"{column}[{position}]"


class _Picked:
    """The sums from the picked columns (one row per observation), by explicit ``+``.

    Each sum a feature asks for is recorded and returned as a column; :meth:`stages` gives
    the expressions that compute those columns, in the order they depend on each other (the
    totals, counts and moments; the means; the squared deviations from them): one column
    each, not one expression per feature, as each feature would repeat its sums' additions.
    """

    def __init__(self) -> None:
        self._stages: tuple[dict[str, pl.Expr], ...] = ({}, {}, {})

    def _column(self, stage: int, name: str, build: Callable[[], pl.Expr]) -> pl.Expr:
        if name not in self._stages[stage]:
            self._stages[stage][name] = build().alias(name)
        return pl.col(name)

    @staticmethod
    def _picks(column: str, months: int) -> list[tuple[pl.Expr, pl.Expr]]:
        """(value, x = -lag) of each pick, oldest first; both null outside the window, past
        the first statement (a null ``_lag``) or where the value is missing."""
        _check_window(months)
        picks = []
        for position in reversed(range(PICKED_STATEMENTS)):
            lag = pl.col(_picked_name("_lag", position))
            value = pl.col(_picked_name(column, position)).cast(pl.Float64)
            inside = (lag < months) & value.is_not_null()
            picks.append((pl.when(inside).then(value), pl.when(inside).then(-lag.cast(pl.Float64))))
        return picks

    @staticmethod
    def _added(terms: list[pl.Expr]) -> pl.Expr:
        total = pl.lit(0.0)
        for term in terms:
            total = total + term.fill_null(0.0)
        return total

    def total(self, column: str, months: int) -> pl.Expr:
        return self._column(
            0,
            f"total({column},{months})",
            lambda: self._added([value for value, _ in self._picks(column, months)]),
        )

    def count(self, column: str, months: int) -> pl.Expr:
        def build() -> pl.Expr:
            count = pl.lit(0, dtype=pl.UInt32)
            for value, _ in self._picks(column, months):
                count = count + value.is_not_null().cast(pl.UInt32)
            return count

        return self._column(0, f"count({column},{months})", build)

    def squares(self, column: str, months: int) -> pl.Expr:
        mean = self._column(1, f"mean({column},{months})", lambda: _mean(self, column, months))

        def build() -> pl.Expr:
            deviations = [value - mean for value, _ in self._picks(column, months)]
            return self._added([deviation * deviation for deviation in deviations])

        return self._column(2, f"squares({column},{months})", build)

    def moments(self, column: str, months: int) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
        picks = self._picks(column, months)
        return (
            self._column(
                0, f"sum_x({column},{months})", lambda: self._added([x for _, x in picks])
            ),
            self._column(
                0, f"sum_xx({column},{months})", lambda: self._added([x * x for _, x in picks])
            ),
            self._column(
                0, f"sum_xy({column},{months})", lambda: self._added([x * v for v, x in picks])
            ),
        )

    def latest(self, column: str) -> pl.Expr:
        return pl.col(_picked_name(column, 0))

    def stages(self) -> list[list[pl.Expr]]:
        """The expressions of the recorded sums, stage by stage (each may use the previous)."""
        return [list(stage.values()) for stage in self._stages if stage]


WindowFeature = Callable[[_Window], pl.Expr]
"""A statement feature made of window sums, for either way of computing them."""


def _ratio_of_totals(numerator: str, denominator: str, months: int) -> WindowFeature:
    return lambda w: _ratio(w.total(numerator, months), w.total(denominator, months))


def _last_minus_mean(column: str, months: int) -> WindowFeature:
    return lambda w: w.latest(column).cast(pl.Float64) - _mean(w, column, months)


def _volatility(column: str, months: int) -> WindowFeature:
    """Sample standard deviation over the window, two-pass (null with fewer than 2 values)."""

    def feature(w: _Window) -> pl.Expr:
        count = w.count(column, months)
        return pl.when(count > 1).then(_divide(w.squares(column, months), count - 1).sqrt())

    return feature


def _trend(column: str, months: int) -> WindowFeature:
    """Least-squares slope per month of ``column`` on month (x = -lag) over the window's
    statements where it is known; null with fewer than 2 of them."""

    def feature(w: _Window) -> pl.Expr:
        n = w.count(column, months).cast(pl.Float64)
        sum_x, sum_xx, sum_xy = w.moments(column, months)
        denominator = n * sum_xx - sum_x**2
        return _ratio(n * sum_xy - sum_x * w.total(column, months), denominator)

    return feature


# Statement features made of window sums (rows as in STATEMENT_FEATURES).
STATEMENT_SUMS: Mapping[str, WindowFeature] = {
    "paid_to_due_ratio_3m": _ratio_of_totals("amount_paid", "amount_due", 3),
    "paid_to_due_ratio_6m": _ratio_of_totals("amount_paid", "amount_due", 6),
    "paid_to_min_due_ratio_3m": _ratio_of_totals("amount_paid", "min_due", 3),
    "utilisation_mean_6m": lambda w: _mean(w, "_utilisation", 6),
    "utilisation_trend_6m": _trend("_utilisation", 6),
    # dynamics (feature set 1.1.0)
    "dpd_last_minus_mean_6m": _last_minus_mean("dpd", 6),
    "dpd_last_minus_mean_12m": _last_minus_mean("dpd", 12),
    "dpd_trend_3m": _trend("dpd", 3),
    "dpd_trend_6m": _trend("dpd", 6),
    "dpd_trend_12m": _trend("dpd", 12),
    "dpd_volatility_6m": _volatility("dpd", 6),
    "dpd_volatility_12m": _volatility("dpd", 12),
    "paid_to_due_ratio_12m": _ratio_of_totals("amount_paid", "amount_due", 12),
    "paid_to_due_last_minus_mean_6m": _last_minus_mean("_paid_to_due", 6),
    "paid_to_due_trend_6m": _trend("_paid_to_due", 6),
    "paid_to_due_volatility_6m": _volatility("_paid_to_due", 6),
    "utilisation_last_minus_mean_12m": _last_minus_mean("_utilisation", 12),
    "utilisation_trend_3m": _trend("_utilisation", 3),
    "utilisation_trend_12m": _trend("_utilisation", 12),
    "utilisation_volatility_6m": _volatility("_utilisation", 6),
    "utilisation_volatility_12m": _volatility("_utilisation", 12),
}

_OUTCOME = pl.col("outcome")


def _action_window(months: int) -> pl.Expr:
    return pl.col("_months_back") < months


_REACHED = _OUTCOME.is_in(REACHED_OUTCOMES)
# the observation's last action that reached the borrower, on every row (see _action_rows)
_LAST_REACHED_AT = pl.col("_last_reached_at")


def _days_before_as_of_end(at: pl.Expr) -> pl.Expr:
    """Days (fractional) from the instant ``at`` to the end of the as-of day."""
    return _divide((pl.col("_as_of_end").first() - at).dt.total_seconds(), pl.lit(86_400.0))


def _days_since_action(condition: pl.Expr) -> Aggregate:
    """Days from the last action where ``condition`` holds to the as-of (null if none)."""
    return Aggregate(_days_before_as_of_end(pl.col("action_at").filter(condition).max()))


def _share(part: pl.Expr, whole: pl.Expr) -> Aggregate:
    """Rows where ``part`` holds over rows where ``whole`` holds (null when none do)."""
    numerator, denominator = (part & whole).sum(), whole.sum()
    return Aggregate(_ratio(numerator, denominator), ratio_of=(numerator, denominator))


# Action features: rows are the actions taken before the end of the as-of day, with helper
# columns _months_back (calendar months before the as-of month), _as_of_end and
# _last_reached_at (see _action_rows); the outcome is Categorical.
ACTION_FEATURES: Mapping[str, Aggregate] = {
    "promises_made_3m": _count((_OUTCOME == "promise_to_pay") & _action_window(3)),
    "refusals_6m": _count((_OUTCOME == "refused") & _action_window(6)),
    "disputes_6m": _count((_OUTCOME == "dispute") & _action_window(6)),
    "hardship_claims_6m": _count((_OUTCOME == "hardship_claimed") & _action_window(6)),
    "contact_rate_3m": _share(_REACHED, _action_window(3)),
    "actions_3m": _count(_action_window(3)),
    "no_answers_3m": _count((_OUTCOME == "no_answer") & _action_window(3)),
    "wrong_numbers_6m": _count((_OUTCOME == "wrong_number") & _action_window(6)),
    "unreachable_6m": _count((_OUTCOME == "unreachable") & _action_window(6)),
    "failed_contact_streak": _count(
        _OUTCOME.is_in(FAILED_OUTCOMES)
        & (pl.col("action_at") > _LAST_REACHED_AT.fill_null(datetime(1900, 1, 1)))
    ),
    "days_since_last_contact": Aggregate(_days_before_as_of_end(_LAST_REACHED_AT.first())),
    # dynamics (feature set 1.1.0): recencies and contact-outcome rates
    "days_since_last_promise": _days_since_action(_OUTCOME == "promise_to_pay"),
    "days_since_last_hardship_claim": _days_since_action(_OUTCOME == "hardship_claimed"),
    "contact_rate_6m": _share(_REACHED, _action_window(6)),
    "no_answer_rate_3m": _share(_OUTCOME == "no_answer", _action_window(3)),
    "promise_rate_6m": _share(_OUTCOME == "promise_to_pay", _REACHED & _action_window(6)),
    "refusal_rate_6m": _share(_OUTCOME == "refused", _REACHED & _action_window(6)),
}

# the longest look-back of a promise feature, in calendar months before the as-of month
PROMISE_LOOKBACK_MONTHS = 12
_KEPT = pl.col("_promise_status") == "kept"
_BROKEN = pl.col("_promise_status") == "broken"
_PROMISE_6M = _action_window(6)

# Promise features: rows are the promises to pay made in the PROMISE_LOOKBACK_MONTHS months
# before the as-of whose promised date is on or before the as-of, each resolved against the
# first statement known at the as-of with cycle_end on or after the promised date
# (_promise_status kept|broken|pending), with _months_back as the action rows.
PROMISE_FEATURES: Mapping[str, Aggregate] = {
    "promises_kept_6m": _count(_KEPT & _PROMISE_6M),
    "promises_broken_6m": _count(_BROKEN & _PROMISE_6M),
    "promise_keep_rate_6m": _share(_KEPT, (_KEPT | _BROKEN) & _PROMISE_6M),
    # dynamics (feature set 1.1.0)
    "promise_keep_rate_12m": _share(_KEPT, _KEPT | _BROKEN),
    "days_since_last_broken_promise": Aggregate(
        (pl.col("as_of").first() - pl.col("promised_date").filter(_BROKEN).max()).dt.total_days()
    ),
}

_KIND = pl.col("kind")
_STARTED = pl.col("start_at") < pl.col("_as_of_end")

# Treatment features: rows are the treatments known before the end of the as-of day, with
# _months_back (calendar months from known_at to the as-of month) and _as_of_end.
TREATMENT_FEATURES: Mapping[str, Aggregate] = {
    "grace_periods_12m": _count((_KIND == "grace_period") & (pl.col("_months_back") < 12)),
    "interest_waivers_12m": _count((_KIND == "interest_waiver") & (pl.col("_months_back") < 12)),
    "restructures_ever": _count(_KIND == "restructure"),
    "extensions_ever": _count(_KIND == "first_delinquency_extension"),
    "treatment_active": Aggregate(
        (_STARTED & (pl.col("end_at").is_null() | (pl.col("end_at") >= pl.col("_as_of_end"))))
        .any()
        .cast(pl.Float64),
        when_no_rows=0.0,
    ),
    "months_since_last_treatment": Aggregate(
        month_index(pl.col("as_of").first())
        - month_index(pl.col("start_at").filter(_STARTED).max())
    ),
}

# Account features: one row per observation joined to its account (no aggregation).
ACCOUNT_FEATURES: Mapping[str, pl.Expr] = {
    "credit_limit": pl.col("credit_limit"),
    "product": pl.col("product"),
    "months_on_book": (month_index("as_of") - month_index("opened_at")).clip(lower_bound=0),
    "as_of_month": pl.col("as_of").dt.month(),
}

SOURCES: Mapping[str, Mapping[str, object]] = {
    "statements": {**STATEMENT_FEATURES, **STATEMENT_SUMS},
    "collection_actions": {**ACTION_FEATURES, **PROMISE_FEATURES},
    "treatments": TREATMENT_FEATURES,
    "accounts": {k: v for k, v in ACCOUNT_FEATURES.items() if k != "as_of_month"},
    "as_of": {"as_of_month": ACCOUNT_FEATURES["as_of_month"]},
}


# each observation's number (0, 1, ... in the order of the keys), carried on its rows: sorting
# and windowing the statement rows by it costs a tenth of doing so by (account_id, as_of)
_OBSERVATION = "_observation"
_SAME_OBSERVATION_AS_PREVIOUS_ROW = pl.col(_OBSERVATION) == pl.col(_OBSERVATION).shift(1)
# Every source's rows are sorted by the observation number and grouped by it alone, marked as
# sorted: polars then cuts the groups from runs of equal numbers instead of hashing keys, and
# aggregates them 2-4x faster (one partition's statement aggregates 0.48 -> 0.22 s grouped by
# (account_id, as_of) unsorted against by the sorted number; docs/benchmarks.md). Polars reads
# the flag only where it is set on the column itself; a sort by two columns does not set it.
_SORTED_OBSERVATION = pl.col(_OBSERVATION).set_sorted()
# The order of the statement rows, (observation, cycle_end), as one integer: a sort on one
# integer column takes a third of the time of a sort on the two (21 against 67 ms on one
# partition's 673,000 rows). The observation number (UInt32) fills the high 32 bits of a
# UInt64 and the day number (Int32, negative before 1970), shifted to start at 0, the low
# 32: every pair has its own value, in the two columns' order, for any number of
# observations the UInt32 holds.
_OBSERVATION_THEN_CYCLE_END = pl.col(_OBSERVATION).cast(pl.UInt64) * (1 << 32) + (
    pl.col("cycle_end").cast(pl.Int32).cast(pl.Int64) + (1 << 31)
).cast(pl.UInt64)


def _statement_rows(
    keys: pl.LazyFrame, statements: pl.LazyFrame, accounts: pl.LazyFrame
) -> pl.LazyFrame:
    """Statements known at each observation's as-of, with the helper columns features use.

    ``keys`` carries each observation's number (:data:`_OBSERVATION`); the rows come sorted
    by it, then by ``cycle_end``."""
    bucket = (
        pl.when(pl.col("dpd") >= 90)
        .then(4)
        .when(pl.col("dpd") >= 60)
        .then(3)
        .when(pl.col("dpd") >= 30)
        .then(2)
        .when(pl.col("dpd") >= 1)
        .then(1)
        .otherwise(0)
        .cast(pl.Int8)
    )
    columns = ["account_id", "cycle_end", "known_at", "amount_due", "min_due", "amount_paid",
               "balance", "dpd"]  # fmt: skip
    return (
        # the limit joined to the observations, not to their many statements
        keys.join(accounts.select("account_id", "credit_limit"), on="account_id", how="left")
        .join(statements.select(columns), on="account_id")
        .filter(pl.col("known_at") < as_of_end())
        .sort(_OBSERVATION_THEN_CYCLE_END)
        .with_columns(
            _SORTED_OBSERVATION, month_index("cycle_end").alias("_month"), bucket.alias("_bucket")
        )
        .with_columns(
            pl.col("_month").max().over(_OBSERVATION).alias("_latest_month"),
            _max_where(pl.col("dpd") == 0, "_month")
            .over(_OBSERVATION)
            .alias("_last_current_month"),
            # the row before, when it is the same observation's (rows are sorted just above):
            # a plain shift, not shift().over(KEY), which groups the rows once more
            pl.when(_SAME_OBSERVATION_AS_PREVIOUS_ROW)
            .then(pl.col("_bucket").shift(1))
            .alias("_previous_bucket"),
            _ratio(_OWED, pl.col("credit_limit")).alias("_utilisation"),
            _ratio(_PAID, _DUE).alias("_paid_to_due"),
            (
                (_MIN_DUE > 0)
                & (_PAID >= _MIN_DUE)
                & (_PAID < pl.min_horizontal(_MIN_DUE * MIN_DUE_ONLY_TOLERANCE, _DUE))  # noqa: SIM300
            ).alias("_min_due_only"),
        )
        .with_columns((pl.col("_latest_month") - pl.col("_month")).alias("_lag"))
    )


@dataclass(frozen=True)
class _Aggregates:
    """One source's aggregates as polars expressions, built once, at import: building ~60
    expressions on every call cost more than the query of a service request's few rows."""

    names: tuple[str, ...]
    aggregations: tuple[pl.Expr, ...]
    fills: tuple[pl.Expr, ...]  # the value of an observation without rows (counts: 0)
    # the shares, divided after the group-by from their parts' columns (then dropped): in
    # polars' group context the division's condition and reciprocal cost 5x the two sums
    # (one partition's 5 action shares: 0.13 of the branch's 0.18 s)
    shares: tuple[pl.Expr, ...] = ()
    parts: tuple[str, ...] = ()

    @classmethod
    def of(cls, features: Mapping[str, Aggregate]) -> _Aggregates:
        aggregations, shares, parts = [], [], []
        for name, aggregate in features.items():
            if aggregate.ratio_of is None:
                aggregations.append(aggregate.expr.cast(pl.Float64).alias(name))
                continue
            numerator, denominator = f"{name}:numerator", f"{name}:denominator"
            aggregations += [
                aggregate.ratio_of[0].alias(numerator),
                aggregate.ratio_of[1].alias(denominator),
            ]
            shares.append(
                _ratio(pl.col(numerator), pl.col(denominator)).cast(pl.Float64).alias(name)
            )
            parts += [numerator, denominator]
        return cls(
            names=tuple(features),
            aggregations=tuple(aggregations),
            fills=tuple(
                pl.col(name).fill_null(aggregate.when_no_rows)
                for name, aggregate in features.items()
                if aggregate.when_no_rows is not None
            ),
            shares=tuple(shares),
            parts=tuple(parts),
        )

    def aggregated(self, rows: pl.LazyFrame) -> pl.LazyFrame:
        """One row per observation of ``rows``: every aggregate, named."""
        grouped = rows.group_by(_OBSERVATION).agg(self.aggregations)
        if not self.shares:
            return grouped
        return grouped.with_columns(self.shares).drop(self.parts)


_STATEMENTS = _Aggregates.of(STATEMENT_FEATURES)
assert not _STATEMENTS.shares  # the statement branch aggregates its own way (no shares)
_ACTIONS = _Aggregates.of(ACTION_FEATURES)
_PROMISES = _Aggregates.of(PROMISE_FEATURES)
_TREATMENTS = _Aggregates.of(TREATMENT_FEATURES)


def _attach(
    combined: pl.LazyFrame, rows: pl.LazyFrame | None, aggregates: _Aggregates
) -> pl.LazyFrame:
    """Aggregate ``rows`` per observation and left-join the result to every observation of
    ``combined``; observations without rows get ``when_no_rows``. ``rows`` is ``None`` when the
    source table is absent: every feature is then missing.
    """
    if rows is None:
        return combined.with_columns(
            pl.lit(None, dtype=pl.Float64).alias(name) for name in aggregates.names
        )
    return _join(combined, aggregates.aggregated(rows), aggregates)


def _join(
    combined: pl.LazyFrame, aggregated: pl.LazyFrame, aggregates: _Aggregates
) -> pl.LazyFrame:
    """Left-join ``aggregated`` (one row per observation) to every observation of ``combined``;
    observations without a row get ``when_no_rows``."""
    return combined.join(aggregated, on=_OBSERVATION, how="left").with_columns(aggregates.fills)


def _list_name(column: str) -> str:
    return f"{column}[]"


# the window sums' expressions, built once as _Aggregates' are: from the picks, and in rows
_PICKS = tuple(
    pl.col(_list_name(column)).list.get(-1 - position, null_on_oob=True)
    .alias(_picked_name(column, position))
    for column in (*SUMMED_COLUMNS, "_lag")
    for position in range(PICKED_STATEMENTS)
)  # fmt: skip
_PICKED = _Picked()
_SUMS_PICKED = tuple(
    rule(_PICKED).cast(pl.Float64).alias(name) for name, rule in STATEMENT_SUMS.items()
)
_PICKED_STAGES = _PICKED.stages()
_SUMS_IN_ROWS = tuple(
    rule(_InRows()).cast(pl.Float64).alias(name) for name, rule in STATEMENT_SUMS.items()
)
_CROWDED = pl.col("_window_statements") > PICKED_STATEMENTS
_IN_ROWS = ":in_rows"


# below this many statement rows the query adds every window in rows: the picks' ~600
# expressions cost more to plan than the rows cost to add one group at a time (CPU ms, one
# as-of, 16 months an account: 320 rows 131 picks / 41 in rows, 6,400 rows 120 / 81, 24,000
# rows 229 / 195, 64,000 rows 339 / 518; Intel Xeon, loaded); the two plans give the same bits
# (tests/unit/test_online_features.py)
IN_ROWS_BELOW = 30_000


def feature_engine(statements: pl.DataFrame | pl.LazyFrame) -> str:
    """The polars engine to collect the feature query of ``statements`` on. Polars 2 runs a
    query on its streaming engine unless told otherwise; the feature queries (a group-by of
    ~100 aggregations per source, joined) run about a quarter faster in memory, to the same
    values: 1.35-1.51 s against 1.81-1.91 s of CPU for one 37,650-account partition on one
    thread (docs/benchmarks.md). Below :data:`IN_ROWS_BELOW` statement rows they stay on the
    default engine. Both engines give the same bits (every division goes through
    :func:`_divide`; tests/unit/test_online_features.py runs each)."""
    few = not isinstance(statements, pl.DataFrame) or statements.height < IN_ROWS_BELOW
    return "auto" if few else "in-memory"


def _statement_features(rows: pl.LazyFrame, in_rows: bool = False) -> pl.LazyFrame:
    """Every statement feature (``STATEMENT_FEATURES`` and ``STATEMENT_SUMS``) of each
    observation of ``rows`` (the statement rows of :func:`_statement_rows`), one row per
    observation with its number :data:`_OBSERVATION`, in that order.

    Window sums are taken from the picks, or in rows for the few observations whose widest
    window holds more statements than are picked (see "Statement window sums" above); with
    ``in_rows``, in rows for every observation.
    """
    if in_rows:
        return (
            rows.group_by(_OBSERVATION, maintain_order=True)  # rows in the statements' order
            .agg(*_STATEMENTS.aggregations, *_SUMS_IN_ROWS)
            .select(_OBSERVATION, *_STATEMENTS.names, *STATEMENT_SUMS)
        )
    aggregated = rows.group_by(_OBSERVATION, maintain_order=True).agg(
        *_STATEMENTS.aggregations,
        _window(WIDEST_SUM_WINDOW).sum().alias("_window_statements"),
        # the group's rows as lists (cheap: slices of the sorted rows), picked from below
        *(pl.col(column).alias(_list_name(column)) for column in (*SUMMED_COLUMNS, "_lag")),
    )
    picked = aggregated.with_columns(_PICKS)
    for stage in _PICKED_STAGES:
        picked = picked.with_columns(stage)
    picked = picked.with_columns(_SUMS_PICKED)
    crowded = aggregated.filter(_CROWDED).select(_OBSERVATION)
    in_rows = (
        rows.join(crowded, on=_OBSERVATION, how="semi")
        .sort(_OBSERVATION_THEN_CYCLE_END)  # a join keeps no row order: the sums need it
        .group_by(_OBSERVATION)
        .agg(_SUMS_IN_ROWS)
    )
    return picked.join(in_rows, on=_OBSERVATION, how="left", suffix=_IN_ROWS).select(
        _OBSERVATION,
        *_STATEMENTS.names,
        *(
            pl.when(_CROWDED).then(pl.col(name + _IN_ROWS)).otherwise(pl.col(name)).alias(name)
            for name in STATEMENT_SUMS
        ),
    )


def _action_rows(keys: pl.LazyFrame, actions: pl.LazyFrame) -> pl.LazyFrame:
    return (
        keys.join(
            actions.select(
                "account_id", "action_at", "outcome", "promised_amount", "promised_date"
            ),
            on="account_id",
        )
        .with_columns(as_of_end().alias("_as_of_end"))
        .filter(pl.col("action_at") < pl.col("_as_of_end"))
        .sort(_OBSERVATION)  # grouped by it, sorted (see _SORTED_OBSERVATION)
        .with_columns(
            _SORTED_OBSERVATION,
            (month_index("as_of") - month_index("action_at")).alias("_months_back"),
            # compared as codes, not text: the action features' 20-odd tests of the outcome
            # took half their aggregation time (an outcome outside the contract stays itself)
            pl.col("outcome").cast(pl.Categorical),
        )
        # a group's own aggregate, put on its rows here: compared with the rows inside an
        # aggregation, polars would evaluate the groups one at a time
        .with_columns(
            _max_where(_REACHED, "action_at").over(_OBSERVATION).alias("_last_reached_at")
        )
    )


def _promise_rows(actions: pl.LazyFrame, statements: pl.LazyFrame) -> pl.LazyFrame:
    """Promises due by the as-of, resolved against the first known statement on/after the date."""
    promises = actions.filter(
        (pl.col("outcome") == "promise_to_pay")
        & (pl.col("_months_back") < PROMISE_LOOKBACK_MONTHS)
        & pl.col("promised_date").is_not_null()
        & (pl.col("promised_date") <= pl.col("as_of"))
    ).select(_OBSERVATION, "as_of", "promised_date", "promised_amount", "_months_back")
    # only the statements of observations holding a promise: an as-of join matches within an
    # observation, and on the rest its grouping cost two thirds of the branch (one partition's
    # 30,370 promises against 922,000 statements: 0.39 -> 0.13 s)
    resolving = statements.select(
        _OBSERVATION, pl.col("cycle_end").alias("_resolved_by"), "amount_paid"
    ).join(promises.select(_OBSERVATION).unique(), on=_OBSERVATION, how="semi")
    resolved = promises.sort("promised_date").join_asof(
        resolving.sort("_resolved_by"),
        left_on="promised_date",
        right_on="_resolved_by",
        by=_OBSERVATION,
        strategy="forward",
        check_sortedness=False,  # both sides are sorted by the join key just above
    )
    # with no promised amount, any payment keeps the promise
    needed = pl.col("promised_amount").fill_null(0.0) * PROMISE_KEPT_SHARE
    return resolved.with_columns(
        pl.when(pl.col("_resolved_by").is_null())
        .then(pl.lit("pending"))
        .when((pl.col("amount_paid") >= needed) & (pl.col("amount_paid") > 0))
        .then(pl.lit("kept"))
        .otherwise(pl.lit("broken"))
        .alias("_promise_status")
    )


def _treatment_rows(keys: pl.LazyFrame, treatments: pl.LazyFrame) -> pl.LazyFrame:
    return (
        keys.join(
            treatments.select("account_id", "kind", "start_at", "end_at", "known_at"),
            on="account_id",
        )
        .with_columns(as_of_end().alias("_as_of_end"))
        .filter(pl.col("known_at") < pl.col("_as_of_end"))
        .with_columns((month_index("as_of") - month_index("known_at")).alias("_months_back"))
    )


def compute_features(
    keys: pl.DataFrame | pl.LazyFrame,
    accounts: pl.DataFrame | pl.LazyFrame,
    statements: pl.DataFrame | pl.LazyFrame,
    collection_actions: pl.DataFrame | pl.LazyFrame | None = None,
    treatments: pl.DataFrame | pl.LazyFrame | None = None,
    feature_set: FeatureSet = FEATURE_SET,
) -> pl.LazyFrame:
    """Every feature of ``feature_set`` for each observation, using only what was known then.

    Needs ``keys`` with ``account_id`` (str) and ``as_of`` (Date, month-ends), one row per
    observation, and the portfolio tables in contract columns (extra columns are ignored).
    Returns a lazy frame with ``account_id``, ``as_of`` and one column per feature, in
    feature-set order: numeric features Float64, categorical ones String (collect it with
    ``engine=feature_engine(statements)``). The inputs are not modified.
    """
    keys = (
        keys.lazy()
        .select(pl.col("account_id"), pl.col("as_of").cast(pl.Date))
        # in order: every source's rows are joined back by this number, and a branch of the
        # plan may compute the keys again, so the same observation must get the same number
        .unique(KEY, maintain_order=True)
        .with_row_index(_OBSERVATION)
        # computed once: every source joins them, and when they come from a lazy query (the
        # scoring population) each branch ran it again (one partition's query 1.06 -> 0.93 s)
        .cache()
    )
    few = isinstance(statements, pl.DataFrame) and statements.height < IN_ROWS_BELOW
    accounts, statements = accounts.lazy(), statements.lazy()
    # the statement and action rows feed two aggregations each; polars' own common-plan
    # elimination computed the statement rows twice (they reach each branch with other
    # columns): cached, one partition's query takes a sixth less time
    statement_rows = _statement_rows(keys, statements, accounts).cache()
    # one chain of left joins onto the observations (not one frame per source joined at the
    # end): fewer plan nodes, which is most of the cost on a service request's few rows
    combined = _join(keys, _statement_features(statement_rows, in_rows=few), _STATEMENTS)

    if collection_actions is None:
        combined = _attach(combined, None, _ACTIONS)
        combined = _attach(combined, None, _PROMISES)
    else:
        action_rows = _action_rows(keys, collection_actions.lazy()).cache()
        combined = _attach(combined, action_rows, _ACTIONS)
        promise_rows = _promise_rows(action_rows, statement_rows)
        combined = _attach(combined, promise_rows, _PROMISES)

    if treatments is None:
        combined = _attach(combined, None, _TREATMENTS)
    else:
        treatment_rows = _treatment_rows(keys, treatments.lazy())
        combined = _attach(combined, treatment_rows, _TREATMENTS)

    numeric_account = {k: v.cast(pl.Float64) for k, v in ACCOUNT_FEATURES.items() if k != "product"}
    combined = combined.join(
        accounts.select("account_id", "credit_limit", "product", "opened_at"),
        on="account_id",
        how="left",
    ).with_columns(
        ACCOUNT_FEATURES["product"].alias("product"),
        *(expr.alias(name) for name, expr in numeric_account.items()),
    )
    return combined.select(*KEY, *feature_set.names)
