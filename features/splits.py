"""Out-of-time splits of a training set: by as-of date, latest last, never random across time.

Rows of one as-of date always land in the same part, so no account-month is scored by a model
that saw a later month of the same portfolio. Because a label looks ``window_months`` ahead,
the last ``embargo_months`` as-of dates before validation (and before test) can be dropped so
that no training label overlaps the validation period's outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from rollrisk.errors import UserError


@dataclass(frozen=True)
class TimeSplit:
    """The as-of dates of each part, earliest to latest."""

    train: tuple[date, ...]
    validation: tuple[date, ...]
    test: tuple[date, ...]
    dropped: tuple[date, ...] = ()  # embargoed dates, in no part


def plan_split_by_as_of(
    as_of_dates: list[date],
    validation_months: int = 3,
    test_months: int = 3,
    embargo_months: int = 0,
    min_train_months: int = 1,
) -> TimeSplit:
    """Assign sorted as-of dates to train | [embargo] | validation | [embargo] | test.

    Raises:
        UserError: fewer as-of dates than the parts need (the message gives both numbers).
    """
    if min(validation_months, test_months, min_train_months) < 1 or embargo_months < 0:
        raise UserError(
            "split sizes must be at least 1 month (embargo at least 0): got "
            f"validation={validation_months}, test={test_months}, "
            f"min_train={min_train_months}, embargo={embargo_months}"
        )
    dates = sorted(set(as_of_dates))
    needed = min_train_months + validation_months + test_months + 2 * embargo_months
    if len(dates) < needed:
        raise UserError(
            f"an out-of-time split needs at least {needed} as-of dates "
            f"({min_train_months} train + {embargo_months} embargo + {validation_months} "
            f"validation + {embargo_months} embargo + {test_months} test), got {len(dates)}"
            + (f" ({dates[0]} .. {dates[-1]})" if dates else "")
        )
    test = dates[len(dates) - test_months :]
    rest = dates[: len(dates) - test_months - embargo_months]
    embargo_test = dates[len(rest) : len(dates) - test_months]
    validation = rest[len(rest) - validation_months :]
    train_and_embargo = rest[: len(rest) - validation_months]
    train = train_and_embargo[: len(train_and_embargo) - embargo_months]
    embargo_validation = train_and_embargo[len(train) :]
    return TimeSplit(
        train=tuple(train),
        validation=tuple(validation),
        test=tuple(test),
        dropped=tuple(embargo_validation + embargo_test),
    )
