"""Point-in-time features of a few accounts from their own rows, in plain Python: the service's
per-request path.

:func:`rollrisk.features.history.compute_features` is one polars query for any number of
observations; on the one account of a service request, planning and running its ~20 operators
cost ~6-15 ms while the arithmetic is microseconds (issue 16, item 7). This module computes the
same features of the same feature set from one account's rows with Python floats, ~0.3 ms an
account, and :func:`population_features` returns exactly the frame that
:func:`rollrisk.scoring.core.features_at` returns for the population at an as-of.

It restates each feature's rule (the point-in-time rules of :mod:`rollrisk.features.history`,
its window, its null rules), so the two must never drift apart; that is what
``tests/unit/test_online_features.py`` proves: for hypothesis-generated histories (edge DPDs,
credit balances, zero dues, promises on every side of a statement, rows known after the as-of,
absent and empty optional tables), the frames of both paths are equal value for value, dtype for
dtype, to the last bit. A window's floats are added in the one order the polars query adds
them in (``history.py``, "Statement window sums"): the statements' own, from 0.0, oldest first,
a missing value skipped (not polars' own ``sum``, whose blocks depend on the whole query), and a
sample standard deviation is taken in two passes as ``history._volatility`` takes it, so sums,
means, slopes and standard deviations agree exactly.

Coverage is declared, not assumed: :data:`ONLINE_FEATURES` names the features it computes, and
:func:`covers` tells whether it computes a whole feature set. A feature set with a feature this
module does not define (a new feature added in ``history.py`` only) is scored by the polars
query; the unit test fails until the new feature is defined here too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol

import numpy as np
import pandas as pd

from rollrisk.features.history import (
    MIN_DUE_ONLY_TOLERANCE,
    PROMISE_KEPT_SHARE,
    PROMISE_LOOKBACK_MONTHS,
)
from rollrisk.features.observations import BUCKETS, ObservationSpec, recent_statement_cutoff
from rollrisk.features.registry import FeatureSet
from rollrisk.features.schemas import FAILED_OUTCOMES, REACHED_OUTCOMES


class StatementRow(Protocol):
    cycle_end: date
    known_at: datetime
    amount_due: float
    min_due: float
    amount_paid: float
    balance: float
    dpd: int


class ActionRow(Protocol):
    action_at: datetime
    outcome: str
    promised_amount: float | None
    promised_date: date | None


class TreatmentRow(Protocol):
    kind: str
    start_at: datetime
    end_at: datetime | None
    known_at: datetime


class AccountRows(Protocol):
    """One account with its history, as the API's ``AccountHistory`` holds it: the
    ``accounts`` columns, and the rows of each table (``None``: the table is absent)."""

    account_id: str
    product: str
    opened_at: date
    credit_limit: float
    statements: Sequence[StatementRow]
    collection_actions: Sequence[ActionRow] | None
    treatments: Sequence[TreatmentRow] | None


Value = float | str | None


def month_index(day: date) -> int:
    """:func:`rollrisk.features.observations.month_index` of one date."""
    return day.year * 12 + day.month - 1


def as_of_end(as_of: date) -> datetime:
    """The first instant after the as-of day (records known strictly before it count)."""
    return datetime.combine(as_of + timedelta(days=1), datetime.min.time())


def _bucket(dpd: int) -> int:
    return 4 if dpd >= 90 else 3 if dpd >= 60 else 2 if dpd >= 30 else 1 if dpd >= 1 else 0


def bucket_name(dpd: int) -> str:
    """:func:`rollrisk.features.observations.bucket_of` of one DPD."""
    name = BUCKETS[0][0]
    for bucket, low in BUCKETS[1:]:
        if dpd >= low:
            name = bucket
    return name


def _total(values: Sequence[float]) -> float:
    """The sum of ``values`` added in row order, left to right, from 0.0: the order the polars
    query adds a statement window in (``history.py``, "Statement window sums"), whatever the
    query's other accounts."""
    running_sum = 0.0
    for value in values:
        running_sum += value
    return running_sum


def _divide(numerator: float, denominator: float) -> float:
    """``history._divide``: times the reciprocal, the bits every polars plan gives."""
    return numerator * (1.0 / denominator)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or not denominator > 0:
        return None
    ratio = _divide(numerator, denominator)
    return ratio if math.isfinite(ratio) else None  # history._ratio: no infinite ratio


def _max(values: Sequence[float | int]) -> float | int | None:
    return max(values) if values else None


def _float(value: float | int | bool | None) -> float | None:
    return None if value is None else float(value)


def dpd_at_as_of(statements: Sequence[StatementRow], as_of: date) -> int | None:
    """DPD at the end of day ``as_of`` (:func:`rollrisk.features.observations.aged_dpd`): the
    ``dpd`` of the latest statement (by ``cycle_end``) known then among those that closed on
    or after :func:`~rollrisk.features.observations.recent_statement_cutoff` and not after the
    as-of month, aged by the days since it closed when it shows arrears; ``None`` without such
    a statement (the account is not observed). The rule of
    :func:`rollrisk.features.observations.population_lazy`."""
    end, month, cutoff = as_of_end(as_of), month_index(as_of), recent_statement_cutoff(as_of)
    latest: StatementRow | None = None
    for row in statements:
        if (
            row.known_at < end
            and cutoff <= row.cycle_end
            and month_index(row.cycle_end) <= month
            and (latest is None or row.cycle_end > latest.cycle_end)
        ):
            latest = row
    if latest is None:
        return None
    return latest.dpd + max((as_of - latest.cycle_end).days, 0) if latest.dpd > 0 else 0


@dataclass(frozen=True)
class _Statements:
    """The statements known at the as-of, sorted by ``cycle_end``, with the helper columns of
    ``history._statement_rows`` as lists (one entry per statement)."""

    as_of: date
    credit_limit: float
    rows: tuple[StatementRow, ...]
    lag: tuple[int, ...]
    month: tuple[int, ...]
    bucket: tuple[int, ...]
    previous: tuple[int | None, ...]
    utilisation: tuple[float | None, ...]
    paid_to_due: tuple[float | None, ...]
    min_due_only: tuple[bool, ...]

    @classmethod
    def of(cls, rows: Sequence[StatementRow], as_of: date, credit_limit: float) -> _Statements:
        end = as_of_end(as_of)
        known = tuple(sorted((r for r in rows if r.known_at < end), key=lambda r: r.cycle_end))
        month = tuple(month_index(r.cycle_end) for r in known)
        latest = max(month)
        bucket = tuple(_bucket(r.dpd) for r in known)
        return cls(
            as_of=as_of,
            credit_limit=credit_limit,
            rows=known,
            lag=tuple(latest - m for m in month),
            month=month,
            bucket=bucket,
            previous=(None, *bucket[:-1]),
            utilisation=tuple(_ratio(max(r.balance, 0.0), credit_limit) for r in known),
            paid_to_due=tuple(_ratio(r.amount_paid, r.amount_due) for r in known),
            min_due_only=tuple(
                r.min_due > 0
                and r.amount_paid >= r.min_due
                and r.amount_paid < min(r.min_due * MIN_DUE_ONLY_TOLERANCE, r.amount_due)
                for r in known
            ),
        )

    def window(self, months: int) -> list[int]:
        """Positions of the statements of the last ``months`` statement months."""
        return [i for i, lag in enumerate(self.lag) if lag < months]

    def count(self, months: int, condition: Callable[[int], bool]) -> float:
        return float(sum(1 for i in self.window(months) if condition(i)))

    def total(self, months: int, column: str) -> float:
        inside = self.window(months)
        return _total([getattr(self.rows[i], column) for i in inside])

    @property
    def last(self) -> StatementRow:
        return self.rows[-1]

    def months_since_last_not(self, flags: Sequence[bool]) -> float:
        """``history._months_since_last_not``: the run of latest statement months flagged."""
        breaks = [m for m, flag in zip(self.month, flags, strict=True) if not flag]
        last_break = max(breaks) if breaks else min(self.month) - 1
        return float(max(self.month) - last_break)

    def previous_delinquency_month(self) -> int | None:
        current = [m for m, r in zip(self.month, self.rows, strict=True) if r.dpd == 0]
        if not current:
            return None
        last_current = max(current)
        return _max(
            [
                m
                for m, r in zip(self.month, self.rows, strict=True)
                if r.dpd > 0 and m < last_current
            ]
        )  # type: ignore[return-value]

    def overdue(self) -> float:
        return max(self.last.amount_due - self.last.amount_paid, 0.0)

    def column(self, name: str) -> tuple[float | None, ...]:
        """A numeric helper column by its ``history`` name: ``dpd`` (as a float),
        ``_utilisation`` or ``_paid_to_due`` (``None`` where the ratio is undefined)."""
        if name == "dpd":
            return tuple(float(r.dpd) for r in self.rows)
        return self.utilisation if name == "_utilisation" else self.paid_to_due

    def known(self, months: int, column: str) -> tuple[list[int], list[float]]:
        """The window's positions where ``column`` is known, and its values there."""
        values = self.column(column)
        inside = [i for i in self.window(months) if values[i] is not None]
        return inside, [values[i] for i in inside]  # type: ignore[misc]

    def slope(self, column: str, months: int) -> float | None:
        """``history._trend``: the least-squares slope of ``column`` on x = -lag."""
        inside, y = self.known(months, column)
        x = [float(-self.lag[i]) for i in inside]
        n = float(len(inside))
        sum_x, sum_y = _total(x), _total(y)
        denominator = n * _total([a * a for a in x]) - sum_x**2
        products = [a * b for a, b in zip(x, y, strict=True)]
        numerator = n * _total(products) - sum_x * sum_y
        return _ratio(numerator, denominator)

    def mean(self, column: str, months: int) -> float | None:
        """``history._mean``: the mean of the column's known values in the window."""
        _, known = self.known(months, column)
        return _divide(_total(known), len(known)) if known else None

    def volatility(self, column: str, months: int) -> float | None:
        """``history._volatility``: the sample standard deviation (ddof 1) of the window's known
        values, ``None`` with fewer than 2; two passes, the mean then the squared deviations,
        each added in row order."""
        _, known = self.known(months, column)
        if len(known) < 2:
            return None
        mean = _divide(_total(known), len(known))
        squares = _total([(value - mean) * (value - mean) for value in known])
        return math.sqrt(_divide(squares, len(known) - 1))

    def last_minus_previous(self, column: str) -> float | None:
        """``history._last_minus_previous``: the latest statement's value minus the last
        statement's of the month before (``None`` if either is missing)."""
        values = self.column(column)
        previous = [values[i] for i, lag in enumerate(self.lag) if lag == 1]
        if not previous or previous[-1] is None or values[-1] is None:
            return None
        return values[-1] - previous[-1]

    def last_minus_mean(self, column: str, months: int) -> float | None:
        last, mean = self.column(column)[-1], self.mean(column, months)
        return None if last is None or mean is None else last - mean

    def months_since(self, flags: Sequence[bool]) -> float | None:
        """``history._months_since_statement``: statement months from the last flagged
        statement to the latest (``None``: never flagged)."""
        flagged = [m for m, flag in zip(self.month, flags, strict=True) if flag]
        return float(max(self.month) - max(flagged)) if flagged else None

    def cured(self, i: int) -> bool:
        return self.previous[i] is not None and self.previous[i] > 0 and self.bucket[i] == 0  # type: ignore[operator]


def _bucket_months(bucket: int, months: int) -> tuple[str, Callable[[_Statements], Value]]:
    return (
        f"months_in_m{bucket}_{months}m",
        lambda s: s.count(months, lambda i: s.bucket[i] == bucket),
    )


def _previous_delinquency(s: _Statements) -> float | None:
    month = s.previous_delinquency_month()
    return None if month is None else float(max(s.month) - month)


# Statement features: one function of the account's known statements per feature, under the
# feature's name, each the rule of the same name in history.STATEMENT_FEATURES.
STATEMENT_FEATURES: Mapping[str, Callable[[_Statements], Value]] = {
    "dpd_current": lambda s: float(s.last.dpd),
    "dpd_max_3m": lambda s: float(max(s.rows[i].dpd for i in s.window(3))),
    "dpd_max_6m": lambda s: float(max(s.rows[i].dpd for i in s.window(6))),
    "dpd_max_12m": lambda s: float(max(s.rows[i].dpd for i in s.window(12))),
    **dict(_bucket_months(b, m) for m in (3, 6, 12) for b in (1, 2, 3)),
    "months_delinquent_12m": lambda s: s.count(12, lambda i: s.rows[i].dpd > 0),
    "consecutive_delinquent_months": lambda s: s.months_since_last_not([r.dpd > 0 for r in s.rows]),
    "roll_count_12m": lambda s: s.count(
        12, lambda i: s.previous[i] is not None and s.bucket[i] > s.previous[i]
    ),
    "cure_count_12m": lambda s: s.count(12, s.cured),
    "delinquency_episodes_12m": lambda s: s.count(
        12, lambda i: s.bucket[i] > 0 and (s.previous[i] or 0) == 0
    ),
    "months_since_previous_delinquency": _previous_delinquency,
    "first_delinquency": lambda s: float(s.previous_delinquency_month() is None and s.last.dpd > 0),
    "paid_to_due_ratio_last": lambda s: _ratio(s.last.amount_paid, s.last.amount_due),
    "paid_to_due_ratio_3m": lambda s: _ratio(s.total(3, "amount_paid"), s.total(3, "amount_due")),
    "paid_to_due_ratio_6m": lambda s: _ratio(s.total(6, "amount_paid"), s.total(6, "amount_due")),
    "paid_to_min_due_ratio_3m": lambda s: _ratio(s.total(3, "amount_paid"), s.total(3, "min_due")),
    "min_due_only_streak": lambda s: s.months_since_last_not(s.min_due_only),
    "min_due_only_months_6m": lambda s: s.count(6, lambda i: s.min_due_only[i]),
    "partial_payments_6m": lambda s: s.count(
        6, lambda i: 0 < s.rows[i].amount_paid < s.rows[i].min_due
    ),
    "zero_payments_3m": lambda s: s.count(
        3, lambda i: s.rows[i].amount_due > 0 and s.rows[i].amount_paid == 0
    ),
    "utilisation_current": lambda s: s.utilisation[-1],
    "utilisation_mean_6m": lambda s: s.mean("_utilisation", 6),
    "utilisation_trend_6m": lambda s: s.slope("_utilisation", 6),
    "balance_current": lambda s: max(s.last.balance, 0.0),
    "amount_overdue": lambda s: s.overdue(),
    "overdue_to_limit_ratio": lambda s: _ratio(s.overdue(), s.credit_limit),
    "days_since_statement": lambda s: float((s.as_of - s.last.cycle_end).days),
    # dynamics (feature set 1.1.0)
    "dpd_change_last": lambda s: s.last_minus_previous("dpd"),
    "dpd_last_minus_mean_6m": lambda s: s.last_minus_mean("dpd", 6),
    "dpd_last_minus_mean_12m": lambda s: s.last_minus_mean("dpd", 12),
    "dpd_trend_3m": lambda s: s.slope("dpd", 3),
    "dpd_trend_6m": lambda s: s.slope("dpd", 6),
    "dpd_trend_12m": lambda s: s.slope("dpd", 12),
    "dpd_volatility_6m": lambda s: s.volatility("dpd", 6),
    "dpd_volatility_12m": lambda s: s.volatility("dpd", 12),
    "months_since_last_cure": lambda s: s.months_since([s.cured(i) for i in range(len(s.rows))]),
    "months_since_last_payment": lambda s: s.months_since([r.amount_paid > 0 for r in s.rows]),
    "months_since_last_full_payment": lambda s: s.months_since(
        [r.amount_due > 0 and r.amount_paid >= r.amount_due for r in s.rows]
    ),
    "paid_to_due_ratio_12m": lambda s: _ratio(
        s.total(12, "amount_paid"), s.total(12, "amount_due")
    ),
    "paid_to_due_change_last": lambda s: s.last_minus_previous("_paid_to_due"),
    "paid_to_due_last_minus_mean_6m": lambda s: s.last_minus_mean("_paid_to_due", 6),
    "paid_to_due_trend_6m": lambda s: s.slope("_paid_to_due", 6),
    "paid_to_due_volatility_6m": lambda s: s.volatility("_paid_to_due", 6),
    "overdue_to_due_ratio": lambda s: _ratio(s.overdue(), s.last.amount_due),
    "utilisation_change_last": lambda s: s.last_minus_previous("_utilisation"),
    "utilisation_last_minus_mean_12m": lambda s: s.last_minus_mean("_utilisation", 12),
    "utilisation_trend_3m": lambda s: s.slope("_utilisation", 3),
    "utilisation_trend_12m": lambda s: s.slope("_utilisation", 12),
    "utilisation_volatility_6m": lambda s: s.volatility("_utilisation", 6),
    "utilisation_volatility_12m": lambda s: s.volatility("_utilisation", 12),
}


@dataclass(frozen=True)
class _Actions:
    """The actions taken before the end of the as-of day, with their calendar months back."""

    end: datetime
    rows: tuple[ActionRow, ...]
    months_back: tuple[int, ...]
    last_reached_at: datetime | None

    @classmethod
    def of(cls, rows: Sequence[ActionRow], as_of: date) -> _Actions:
        end = as_of_end(as_of)
        known = tuple(r for r in rows if r.action_at < end)
        reached = [r.action_at for r in known if r.outcome in REACHED_OUTCOMES]
        return cls(
            end=end,
            rows=known,
            months_back=tuple(month_index(as_of) - month_index(r.action_at) for r in known),
            last_reached_at=max(reached) if reached else None,
        )

    def count(self, months: int | None, outcome: str | None = None) -> float:
        return float(
            sum(
                1
                for row, back in zip(self.rows, self.months_back, strict=True)
                if (months is None or back < months) and (outcome is None or row.outcome == outcome)
            )
        )

    def share(
        self, months: int, part: Callable[[str], bool], of_reached: bool = False
    ) -> float | None:
        """``history._share``: of the window's actions (only those that reached the borrower
        when ``of_reached``), the share whose outcome is ``part``; ``None`` when there are none."""
        whole = [
            r.outcome
            for r, back in zip(self.rows, self.months_back, strict=True)
            if back < months and (not of_reached or r.outcome in REACHED_OUTCOMES)
        ]
        return _ratio(float(sum(1 for outcome in whole if part(outcome))), float(len(whole)))

    def failed_streak(self) -> float:
        since = self.last_reached_at or datetime(1900, 1, 1)
        return float(
            sum(1 for r in self.rows if r.outcome in FAILED_OUTCOMES and r.action_at > since)
        )

    def days_since_last(self, outcomes: Collection[str]) -> float | None:
        """``history._days_since_action``: fractional days from the last action with one of
        ``outcomes`` to the end of the as-of day (``None``: no such action)."""
        times = [r.action_at for r in self.rows if r.outcome in outcomes]
        if not times:
            return None
        gap = self.end - max(times)
        # polars' total_seconds: whole seconds, then divided as history.py does
        return _divide(float(gap.days * 86_400 + gap.seconds), 86_400.0)


def _reached(outcome: str) -> bool:
    return outcome in REACHED_OUTCOMES


ACTION_FEATURES: Mapping[str, Callable[[_Actions], Value]] = {
    "promises_made_3m": lambda a: a.count(3, "promise_to_pay"),
    "refusals_6m": lambda a: a.count(6, "refused"),
    "disputes_6m": lambda a: a.count(6, "dispute"),
    "hardship_claims_6m": lambda a: a.count(6, "hardship_claimed"),
    "contact_rate_3m": lambda a: a.share(3, _reached),
    "actions_3m": lambda a: a.count(3),
    "no_answers_3m": lambda a: a.count(3, "no_answer"),
    "wrong_numbers_6m": lambda a: a.count(6, "wrong_number"),
    "unreachable_6m": lambda a: a.count(6, "unreachable"),
    "failed_contact_streak": lambda a: a.failed_streak(),
    "days_since_last_contact": lambda a: a.days_since_last(REACHED_OUTCOMES),
    # dynamics (feature set 1.1.0)
    "days_since_last_promise": lambda a: a.days_since_last(("promise_to_pay",)),
    "days_since_last_hardship_claim": lambda a: a.days_since_last(("hardship_claimed",)),
    "contact_rate_6m": lambda a: a.share(6, _reached),
    "no_answer_rate_3m": lambda a: a.share(3, lambda outcome: outcome == "no_answer"),
    "promise_rate_6m": lambda a: a.share(6, lambda o: o == "promise_to_pay", of_reached=True),
    "refusal_rate_6m": lambda a: a.share(6, lambda o: o == "refused", of_reached=True),
}


@dataclass(frozen=True)
class _Promise:
    status: str  # kept, broken or pending
    months_back: int
    promised_date: date


def _promises(actions: _Actions, statements: _Statements, as_of: date) -> list[_Promise]:
    """``history._promise_rows``: each promise of the last ``PROMISE_LOOKBACK_MONTHS`` months
    due by the as-of, kept, broken or pending against the first known statement closing on or
    after its date."""
    promises = []
    for row, back in zip(actions.rows, actions.months_back, strict=True):
        if not (
            row.outcome == "promise_to_pay"
            and back < PROMISE_LOOKBACK_MONTHS
            and row.promised_date is not None
            and row.promised_date <= as_of
        ):
            continue
        resolving = next((s for s in statements.rows if s.cycle_end >= row.promised_date), None)
        if resolving is None:
            status = "pending"
        else:
            needed = (row.promised_amount or 0.0) * PROMISE_KEPT_SHARE
            paid = resolving.amount_paid
            status = "kept" if paid >= needed and paid > 0 else "broken"
        promises.append(_Promise(status, back, row.promised_date))
    return promises


def _promise_count(promises: list[_Promise], status: str, months: int | None = None) -> float:
    return float(
        sum(
            1 for p in promises if p.status == status and (months is None or p.months_back < months)
        )
    )


def _keep_rate(promises: list[_Promise], months: int | None = None) -> float | None:
    kept = _promise_count(promises, "kept", months)
    return _ratio(kept, kept + _promise_count(promises, "broken", months))


def _days_since_broken(promises: list[_Promise], as_of: date) -> float | None:
    broken = [p.promised_date for p in promises if p.status == "broken"]
    return float((as_of - max(broken)).days) if broken else None


PROMISE_FEATURES: Mapping[str, Callable[[list[_Promise], date], Value]] = {
    "promises_kept_6m": lambda p, as_of: _promise_count(p, "kept", 6),
    "promises_broken_6m": lambda p, as_of: _promise_count(p, "broken", 6),
    "promise_keep_rate_6m": lambda p, as_of: _keep_rate(p, 6),
    # dynamics (feature set 1.1.0): over the whole look-back
    "promise_keep_rate_12m": lambda p, as_of: _keep_rate(p),
    "days_since_last_broken_promise": _days_since_broken,
}


@dataclass(frozen=True)
class _Treatments:
    """The treatments known before the end of the as-of day, with calendar months back."""

    as_of: date
    end: datetime
    rows: tuple[TreatmentRow, ...]
    months_back: tuple[int, ...]

    @classmethod
    def of(cls, rows: Sequence[TreatmentRow], as_of: date) -> _Treatments:
        end = as_of_end(as_of)
        known = tuple(r for r in rows if r.known_at < end)
        return cls(
            as_of=as_of,
            end=end,
            rows=known,
            months_back=tuple(month_index(as_of) - month_index(r.known_at.date()) for r in known),
        )

    def count(self, kind: str, months: int | None = None) -> float:
        return float(
            sum(
                1
                for row, back in zip(self.rows, self.months_back, strict=True)
                if row.kind == kind and (months is None or back < months)
            )
        )

    def active(self) -> float:
        return float(
            any(
                r.start_at < self.end and (r.end_at is None or r.end_at >= self.end)
                for r in self.rows
            )
        )

    def months_since_last(self) -> float | None:
        started = [r.start_at for r in self.rows if r.start_at < self.end]
        if not started:
            return None
        return float(month_index(self.as_of) - month_index(max(started).date()))


TREATMENT_FEATURES: Mapping[str, Callable[[_Treatments], Value]] = {
    "grace_periods_12m": lambda t: t.count("grace_period", 12),
    "interest_waivers_12m": lambda t: t.count("interest_waiver", 12),
    "restructures_ever": lambda t: t.count("restructure"),
    "extensions_ever": lambda t: t.count("first_delinquency_extension"),
    "treatment_active": lambda t: t.active(),
    "months_since_last_treatment": lambda t: t.months_since_last(),
}

ACCOUNT_FEATURES: Mapping[str, Callable[[AccountRows, date], Value]] = {
    "credit_limit": lambda account, as_of: float(account.credit_limit),
    "product": lambda account, as_of: account.product,
    "months_on_book": lambda account, as_of: float(
        max(month_index(as_of) - month_index(account.opened_at), 0)
    ),
    "as_of_month": lambda account, as_of: float(as_of.month),
}

ONLINE_FEATURES: frozenset[str] = frozenset(
    {
        *STATEMENT_FEATURES,
        *ACTION_FEATURES,
        *PROMISE_FEATURES,
        *TREATMENT_FEATURES,
        *ACCOUNT_FEATURES,
    }
)
"""Every feature this module computes."""


def covers(feature_set: FeatureSet) -> bool:
    """Whether this module computes every feature of ``feature_set``."""
    return set(feature_set.names) <= ONLINE_FEATURES


def account_features(
    account: AccountRows, as_of: date, with_actions: bool, with_treatments: bool
) -> dict[str, Value]:
    """Every feature of :data:`ONLINE_FEATURES` for one account at ``as_of``.

    The account needs at least one statement known at the as-of (every account of the
    population has one). ``with_actions`` / ``with_treatments`` False: that table is absent,
    its features are missing (``None``), as :func:`~rollrisk.features.history.compute_features`
    leaves them; an account without rows in a present table has counts 0.
    """
    statements = _Statements.of(account.statements, as_of, float(account.credit_limit))
    values: dict[str, Value] = {name: rule(statements) for name, rule in STATEMENT_FEATURES.items()}
    if with_actions:
        actions = _Actions.of(account.collection_actions or (), as_of)
        values.update((name, rule(actions)) for name, rule in ACTION_FEATURES.items())
        promises = _promises(actions, statements, as_of)
        values.update((name, rule(promises, as_of)) for name, rule in PROMISE_FEATURES.items())
    else:
        values.update(dict.fromkeys((*ACTION_FEATURES, *PROMISE_FEATURES)))
    if with_treatments:
        treatments = _Treatments.of(account.treatments or (), as_of)
        values.update((name, rule(treatments)) for name, rule in TREATMENT_FEATURES.items())
    else:
        values.update(dict.fromkeys(TREATMENT_FEATURES))
    values.update((name, rule(account, as_of)) for name, rule in ACCOUNT_FEATURES.items())
    return values


def population_features(
    accounts: Sequence[AccountRows],
    as_of: date,
    spec: ObservationSpec,
    feature_set: FeatureSet,
    with_actions: bool,
    with_treatments: bool,
) -> pd.DataFrame:
    """The accounts of the population at ``as_of`` with their features: the frame
    :func:`rollrisk.scoring.core.features_at` returns for them (``account_id``,
    ``dpd_at_as_of``, ``start_bucket``, ``as_of``, then ``feature_set``'s features; sorted by
    ``account_id``; the same dtypes: float64 with NaN for a missing number, object strings).

    Raises:
        ValueError: ``feature_set`` has a feature this module does not compute (:func:`covers`).
    """
    if not covers(feature_set):
        missing = sorted(set(feature_set.names) - ONLINE_FEATURES)
        raise ValueError(f"online features do not compute {missing}")
    rows: list[tuple[AccountRows, int]] = []
    for account in accounts:
        dpd = dpd_at_as_of(account.statements, as_of)
        if dpd is not None and spec.min_dpd <= dpd <= spec.max_dpd:
            rows.append((account, dpd))
    rows.sort(key=lambda row: row[0].account_id)
    values = [
        account_features(account, as_of, with_actions, with_treatments) for account, _ in rows
    ]
    columns: dict[str, np.ndarray] = {
        "account_id": np.array([a.account_id for a, _ in rows], dtype=object),
        "dpd_at_as_of": np.array([dpd for _, dpd in rows], dtype=np.int64),
        "start_bucket": np.array([bucket_name(dpd) for _, dpd in rows], dtype=object),
        "as_of": np.array([as_of] * len(rows), dtype="datetime64[D]"),
    }
    for spec_ in feature_set.features:
        column = [row[spec_.name] for row in values]
        if spec_.kind == "categorical":
            columns[spec_.name] = np.array(column, dtype=object)
        else:
            columns[spec_.name] = np.array(
                [np.nan if v is None else v for v in column], dtype=np.float64
            )
    return pd.DataFrame(columns)
