"""Out-of-time splits of a training set: by as-of date, latest last, never random across time.

Rows of one as-of date always land in the same part, so no account-month is scored by a model
that saw a later month of the same portfolio. Because a label looks ``window_months`` ahead,
the last ``embargo_months`` as-of dates before validation (and before test) are dropped, so
that every label a part is fitted on would have been complete when the next part began.

Two plans, one procedure:

* :func:`plan_split_by_as_of` (evaluation): train | embargo | validation | embargo | test. The
  gates judge the model fitted on train and validation, on the test months.
* :func:`plan_deployment_split` (deployment): the same procedure shifted forward by the test
  months and their embargo, train | embargo | validation, ending at the latest labelled as-of:
  the model that is registered and scores the book, fitted and calibrated on the latest labels.

A short history gets a smaller split (:func:`plan_adaptive_split`): validation and test shrink
to one month each, then the embargo; every step is listed in ``TimeSplit.adaptations``, and
below :data:`MIN_AS_OF_DATES` labelled as-of dates the split refuses, naming the smallest
configuration that works.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from rollrisk.errors import UserError

# One train, one validation and one test month, no embargo: the smallest out-of-time split.
MIN_AS_OF_DATES = 3


@dataclass(frozen=True)
class TimeSplit:
    """The as-of dates of each part, earliest to latest.

    ``adaptations`` says how the plan differs from the configured one (empty: as configured);
    ``validation_months``, ``test_months`` and ``embargo_months`` are the sizes it used.
    """

    train: tuple[date, ...]
    validation: tuple[date, ...]
    test: tuple[date, ...]
    dropped: tuple[date, ...] = ()  # embargoed dates, in no part
    adaptations: tuple[str, ...] = ()

    @property
    def validation_months(self) -> int:
        return len(self.validation)

    @property
    def test_months(self) -> int:
        return len(self.test)

    @property
    def embargo_months(self) -> int:
        """Embargoed as-of dates before each of validation and test."""
        return len(self.dropped) // 2 if self.test else len(self.dropped)


def _needed(validation_months: int, test_months: int, embargo_months: int, train: int) -> int:
    return train + validation_months + test_months + 2 * embargo_months


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
    needed = _needed(validation_months, test_months, embargo_months, min_train_months)
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


def _smaller_splits(
    validation_months: int, test_months: int, embargo_months: int
) -> list[tuple[int, int, int]]:
    """Configurations from the given one down to 1 | 1 | no embargo, most preferred first.

    Validation and test shrink first (a shorter test is a noisier but still honest
    out-of-time test), validation before test; the embargo shrinks last, because without it
    the test months share outcome months with the training labels.
    """
    sizes = [(validation_months, test_months, embargo_months)]
    v, t, e = validation_months, test_months, embargo_months
    while v > 1 or t > 1:
        if v >= t and v > 1:
            v -= 1
        else:
            t -= 1
        sizes.append((v, t, e))
    while e > 0:
        e -= 1
        sizes.append((v, t, e))
    return sizes


def plan_adaptive_split(
    as_of_dates: list[date],
    validation_months: int = 3,
    test_months: int = 3,
    embargo_months: int = 0,
    adapt: bool = True,
) -> TimeSplit:
    """The configured split when the history holds it, else the largest smaller one.

    With ``adapt`` (the default), a history too short for the configured sizes gets the first
    of :func:`_smaller_splits` that leaves at least one training month; each change is listed
    in ``adaptations``. Without it, or with fewer than :data:`MIN_AS_OF_DATES` dates, the
    error names the configuration that would work.

    Raises:
        UserError: no split fits (or one would, but ``adapt`` is off).
    """
    dates = sorted(set(as_of_dates))
    configured = (validation_months, test_months, embargo_months)
    for v, t, e in _smaller_splits(*configured):
        if len(dates) < _needed(v, t, e, 1):
            continue
        if (v, t, e) != configured and not adapt:
            break
        plan = plan_split_by_as_of(dates, v, t, e)
        changes = [
            f"{name} {before} -> {after} month(s)"
            for name, before, after in zip(
                ("validation", "test", "embargo"), configured, (v, t, e), strict=True
            )
            if before != after
        ]
        if not changes:
            return plan
        note = (
            f"the history has {len(dates)} labelled as-of dates ({dates[0]} .. {dates[-1]}) and "
            f"the configured split needs {_needed(*configured, 1)}: {', '.join(changes)}"
        )
        if e < embargo_months:
            note += (
                "; with a shorter embargo the test months share outcome months with the "
                "training labels, so the out-of-time figures are somewhat optimistic"
            )
        return TimeSplit(
            train=plan.train,
            validation=plan.validation,
            test=plan.test,
            dropped=plan.dropped,
            adaptations=(note,),
        )
    span = f" ({dates[0]} .. {dates[-1]})" if dates else ""
    smallest = next(
        (
            (v, t, e)
            for v, t, e in _smaller_splits(*configured)
            if len(dates) >= _needed(v, t, e, 1)
        ),
        None,
    )
    if smallest is None:
        raise UserError(
            f"an out-of-time split needs at least {MIN_AS_OF_DATES} labelled as-of dates "
            f"(1 train + 1 validation + 1 test month, no embargo), got {len(dates)}{span}; "
            "each labelled as-of also needs its outcome window of later statements, so the "
            f"portfolio needs at least {MIN_AS_OF_DATES} months of statements plus the "
            "window (window_months)"
        )
    v, t, e = smallest
    raise UserError(
        f"an out-of-time split needs at least {_needed(*configured, 1)} as-of dates "
        f"(1 train + {embargo_months} embargo + {validation_months} validation + "
        f"{embargo_months} embargo + {test_months} test), got {len(dates)}{span}; the largest "
        f"split this history holds is validation_months: {v}, test_months: {t}, "
        f"embargo_months: {e} (set them under training.split in a --config file, or "
        "training.split.adapt: true to let the split shrink by itself)"
    )


def plan_deployment_split(
    as_of_dates: list[date], validation_months: int, embargo_months: int
) -> TimeSplit:
    """The evaluated procedure shifted forward to the latest labelled as-of: train | embargo |
    validation, no test. Use the sizes of the evaluation plan (``TimeSplit.validation_months``
    and ``embargo_months``) so the deployed model is fitted exactly as the judged one was.

    Raises:
        UserError: fewer as-of dates than one training month plus validation and embargo.
    """
    dates = sorted(set(as_of_dates))
    needed = 1 + validation_months + embargo_months
    if validation_months < 1 or embargo_months < 0 or len(dates) < needed:
        raise UserError(
            f"the deployment refit needs at least {needed} as-of dates (1 train + "
            f"{embargo_months} embargo + {validation_months} validation), got {len(dates)}"
        )
    validation = dates[len(dates) - validation_months :]
    train_end = len(dates) - validation_months - embargo_months
    return TimeSplit(
        train=tuple(dates[:train_end]),
        validation=tuple(validation),
        test=(),
        dropped=tuple(dates[train_end : len(dates) - validation_months]),
    )
