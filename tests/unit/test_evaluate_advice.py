"""`rollrisk evaluate`'s advice on in-sample rows and on an empty evaluation."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

import pandas as pd

from rollrisk.features.observations import ObservationSpec
from rollrisk.pipelines.evaluate import _in_sample_note, _no_labelled_rows

TRAINED = "2025-01-31..2025-06-30"


def _as_of(*months: str) -> pd.Series:
    return pd.to_datetime(pd.Series(months))


def test_later_labelled_months_are_suggested_with_as_of_from():
    labelled = _as_of("2025-05-31", "2025-06-30", "2025-08-31", "2025-08-31", "2025-09-30")
    note = _in_sample_note(pd.DataFrame({"as_of": labelled}), TRAINED, labelled)
    assert note.startswith("2 of 5 rows are of the months the model learnt from")
    assert note.endswith(
        "evaluate later months with --as-of-from 2025-08-31 (3 labelled rows, "
        "2025-08-31..2025-09-30)"
    )


def test_no_later_labelled_month_says_a_later_extract_is_needed():
    labelled = _as_of("2025-05-31", "2025-06-30")
    note = _in_sample_note(pd.DataFrame({"as_of": labelled}), TRAINED, labelled)
    assert "--as-of-from" not in note
    assert note.endswith(
        "this portfolio has no labelled months after the model's training data (its latest "
        "labelled as-of is 2025-06-30), so an out-of-sample evaluation needs a later extract "
        "(--data with months after those)"
    )


def test_out_of_sample_rows_need_no_note():
    labelled = _as_of("2025-08-31")
    assert _in_sample_note(pd.DataFrame({"as_of": labelled}), TRAINED, labelled) is None
    assert _in_sample_note(pd.DataFrame({"as_of": labelled}), None, labelled) is None


def test_nothing_to_evaluate_names_the_labelled_months():
    args = argparse.Namespace(training_set=None, data=Path("runs/p"), as_of_from=date(2025, 10, 31))
    message = _no_labelled_rows(args, ObservationSpec(), _as_of("2025-01-31", "2025-06-30"))
    assert message.startswith(
        "no labelled rows to evaluate in runs/p on or after --as-of-from 2025-10-31: its "
        "labelled as-of months are 2025-01-31..2025-06-30 (a row is labelled once its "
    )
    assert message.endswith("give an earlier --as-of-from, or a later extract")
    args.as_of_from = None
    assert _no_labelled_rows(args, ObservationSpec(), _as_of()).startswith(
        "no labelled rows to evaluate in runs/p (a row is labelled once its "
    )
