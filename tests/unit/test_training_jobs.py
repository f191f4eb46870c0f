"""Pure parts of the train / promote / tracking jobs: split, promotion gates, fingerprints."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from rollrisk.errors import UserError
from rollrisk.features.observations import first_statement_month, short_history_warning
from rollrisk.features.registry import FEATURE_SET, FeatureSet
from rollrisk.features.splits import (
    MIN_AS_OF_DATES,
    plan_adaptive_split,
    plan_deployment_split,
    plan_split_by_as_of,
)
from rollrisk.models.promotion import CandidateFigures, PromotionConfig, decide_promotion
from rollrisk.models.training import (
    deployment_split,
    embargo_months,
    incomplete_window_warnings,
    split_training_set,
)
from rollrisk.models.training_config import SplitConfig, TrainingConfig
from rollrisk.storage.tracking import _sqlite_path, fingerprint_files
from tests.synthetic_training_set import TEST_FEATURE_SET, make_training_frame

GATES = PromotionConfig(
    min_auc_gain=0.005, max_ece=0.03, max_psi=0.25, require_beats_baselines=False
)
ENOUGH = {"train_rows": 5000, "train_positives": 900, "test_rows": 3000, "test_positives": 500}


def _figures(version: str, auc: float, **figures: object) -> CandidateFigures:
    """A challenger whose evaluation rests on enough data, unless ``figures`` say otherwise."""
    return CandidateFigures(version, auc=auc, **{**ENOUGH, **figures})  # type: ignore[arg-type]


def _month_ends(n: int, start: str = "2024-01-31") -> list[date]:
    return [d.date() for d in pd.date_range(start, periods=n, freq="ME")]


def test_split_is_by_time_with_embargo_and_disjoint_validation_accounts() -> None:
    frame = make_training_frame(n_accounts=80, n_months=12)
    split = split_training_set(
        frame, validation_months=2, test_months=2, embargo_months=1, calibration_fraction=0.5
    )
    months = sorted(pd.to_datetime(frame["as_of"]).dt.date.unique())
    assert split.months["out-of-time test"] == tuple(months[-2:])
    assert split.months["validation"] == tuple(months[-5:-3])
    assert split.months["embargo (dropped)"] == (months[-6], months[-3])
    # two gaps, said as two: one range over them read as if it held the validation months
    assert split.describe()["embargo (dropped) as-of"] == f"{months[-6]}, {months[-3]} (2 months)"
    assert split.describe()["train as-of"] == f"{months[0]}..{months[-7]} (6 months)"
    assert max(pd.to_datetime(split.train["as_of"])) < min(
        pd.to_datetime(split.early_stopping["as_of"])
    )
    assert not set(split.early_stopping["account_id"]) & set(split.calibration["account_id"])
    assert 0.3 < len(split.calibration) / (len(split.calibration) + len(split.early_stopping)) < 0.7


def test_strict_split_refuses_too_short_a_history() -> None:
    with pytest.raises(UserError, match="needs at least 7 as-of dates"):
        plan_split_by_as_of(_month_ends(4), validation_months=2, test_months=2, embargo_months=1)


def test_a_short_history_shrinks_validation_and_test_then_the_embargo_and_says_so() -> None:
    dates = _month_ends(6)
    # configured 3 | 3 with an embargo of 2 needs 11 dates: validation and test go to 1 month
    # first (3, 3 -> 2, 3 -> 2, 2 -> 1, 2 -> 1, 1), then the embargo to 1 (1 + 1 + 1 + 2 = 5)
    plan = plan_adaptive_split(dates, validation_months=3, test_months=3, embargo_months=2)
    assert plan.test == (dates[5],)
    assert plan.validation == (dates[3],)
    assert plan.dropped == (dates[2], dates[4])
    assert plan.train == tuple(dates[:2])
    assert plan.embargo_months == 1
    (note,) = plan.adaptations
    assert "6 labelled as-of dates" in note and "needs 11" in note
    assert "validation 3 -> 1" in note and "test 3 -> 1" in note and "embargo 2 -> 1" in note
    assert "optimistic" in note  # a shorter embargo is said to flatter the figures

    # three dates: the smallest split, no embargo
    smallest = plan_adaptive_split(_month_ends(3), 3, 3, 2)
    assert (len(smallest.train), len(smallest.validation), len(smallest.test)) == (1, 1, 1)
    assert smallest.dropped == ()
    # as configured when the history holds it: nothing to say
    assert plan_adaptive_split(_month_ends(11), 3, 3, 2).adaptations == ()


def test_a_split_too_short_to_adapt_or_not_allowed_to_names_what_would_work() -> None:
    with pytest.raises(UserError) as too_short:
        plan_adaptive_split(_month_ends(MIN_AS_OF_DATES - 1), 3, 3, 2)
    message = str(too_short.value)
    assert f"at least {MIN_AS_OF_DATES} labelled as-of dates" in message
    assert "got 2 (2024-01-31 .. 2024-02-29)" in message and "window_months" in message

    with pytest.raises(UserError) as refused:
        plan_adaptive_split(_month_ends(6), 3, 3, 2, adapt=False)
    message = str(refused.value)
    assert "needs at least 11 as-of dates" in message and "got 6" in message
    assert "validation_months: 1, test_months: 1, embargo_months: 1" in message
    assert "training.split.adapt: true" in message


def test_the_deployment_split_is_the_evaluation_split_shifted_to_the_latest_labels() -> None:
    dates = _month_ends(21)
    evaluation = plan_split_by_as_of(dates, validation_months=3, test_months=3, embargo_months=2)
    deployment = plan_deployment_split(dates, validation_months=3, embargo_months=2)
    shift = len(evaluation.test) + 2  # the test months and the embargo before them
    assert deployment.validation == tuple(dates[-3:]) and deployment.test == ()
    assert deployment.train == tuple(dates[: len(evaluation.train) + shift])
    assert deployment.dropped == tuple(dates[-5:-3])
    assert [dates.index(d) - shift for d in deployment.validation] == [
        dates.index(d) for d in evaluation.validation
    ]


def test_deployment_split_frames_keep_the_evaluation_sizes() -> None:
    frame = make_training_frame(n_accounts=60, n_months=12)
    evaluation = split_training_set(
        frame, validation_months=2, test_months=2, embargo_months=1, calibration_fraction=0.5
    )
    deployment = deployment_split(frame, evaluation, calibration_fraction=0.5)
    months = sorted(pd.to_datetime(frame["as_of"]).dt.date.unique())
    assert deployment.months["validation"] == tuple(months[-2:])
    assert deployment.months["embargo (dropped)"] == (months[-3],)
    assert deployment.months["train"] == tuple(months[:-3])
    assert len(deployment.test) == 0 and deployment.embargo_months == 1
    latest = pd.to_datetime(frame["as_of"]).dt.date.isin(months[-2:])
    assert len(deployment.early_stopping) + len(deployment.calibration) == int(latest.sum())
    assert not set(deployment.early_stopping["account_id"]) & set(
        deployment.calibration["account_id"]
    )


def test_the_default_embargo_is_the_window_less_one_month() -> None:
    assert embargo_months(TrainingConfig(), window_months=3) == 2
    assert embargo_months(TrainingConfig(), window_months=1) == 0
    pinned = TrainingConfig(split=SplitConfig(embargo_months=5))
    assert embargo_months(pinned, window_months=3) == 5


def test_windows_reaching_back_before_the_first_statement_are_warned_about() -> None:
    statements = pd.DataFrame({"cycle_end": pd.to_datetime(["2024-03-20", "2024-01-20"])})
    first = first_statement_month(statements)
    assert first == date(2024, 1, 1)
    features = FeatureSet(
        name="windows",
        version="0",
        features=tuple(
            dataclasses.replace(spec, window_months=window)
            for spec, window in zip(TEST_FEATURE_SET.features[:2], (3, 12), strict=True)
        ),
    )
    rows = pd.DataFrame({"as_of": _month_ends(4) + _month_ends(2, start="2024-12-31")})
    (message,) = incomplete_window_warnings({"deployed model": rows}, first, features)
    # Jan and Feb cover 1 and 2 months (3-month windows short for 2 of 6 rows); every row
    # before December 2024 has a short 12-month window (4 of 6)
    assert "3-month windows 33%" in message and "12-month windows 67% of 6 rows" in message
    assert "statements start in 2024-01" in message
    assert "complete from as-of 2024-12-31" in message
    full = pd.DataFrame({"as_of": _month_ends(2, start="2024-12-31")})
    assert incomplete_window_warnings({"evaluation": full}, first, features) == []


def test_first_challenger_is_promoted_when_calibrated_and_stable() -> None:
    decision = decide_promotion(_figures("1", auc=0.7, ece=0.02, psi=0.05), None, GATES)
    assert decision.promote
    assert any("no champion yet" in reason for reason in decision.reasons)
    assert decision.reasons[0].startswith("pass data: 5000 training rows (900 rolled)")


def test_better_challenger_is_promoted_and_worse_refused_with_figures() -> None:
    champion = CandidateFigures("1", auc=0.80)
    better = decide_promotion(_figures("2", auc=0.81, ece=0.02, psi=0.05), champion, GATES)
    worse = decide_promotion(_figures("3", auc=0.803, ece=0.02, psi=0.05), champion, GATES)
    assert better.promote and not worse.promote
    assert any(r.startswith("FAIL discrimination") and "gain +0.0030" in r for r in worse.reasons)


@pytest.mark.parametrize(
    ("ece", "psi", "failure"),
    [(0.05, 0.05, "FAIL calibration: out-of-time ECE 0.0500 > max_ece 0.0300"),
     (0.02, 0.40, "FAIL stability: PSI 0.4000 > max_psi 0.2500"),
     (None, 0.05, "FAIL calibration: the challenger's run logged no out-of-time ECE (oot_ece)")],
)  # fmt: skip
def test_calibration_and_stability_gates_refuse(
    ece: float | None, psi: float, failure: str
) -> None:
    decision = decide_promotion(
        _figures("2", auc=0.9, ece=ece, psi=psi), CandidateFigures("1", auc=0.7), GATES
    )
    assert not decision.promote
    assert failure in decision.reasons


def test_sqlite_uri_paths() -> None:
    assert _sqlite_path("sqlite:////tmp/x/mlflow.db") == Path("/tmp/x/mlflow.db")
    assert _sqlite_path("sqlite:///runs/mlflow.db") == (Path.cwd() / "runs/mlflow.db").resolve()
    assert _sqlite_path("http://localhost:5000") is None


def test_fingerprints_cover_the_tables_only(tmp_path: Path) -> None:
    (tmp_path / "accounts.csv").write_text("account_id\nA1\n")
    (tmp_path / "truth").mkdir()
    (tmp_path / "truth" / "params.json").write_text("{}")
    first = fingerprint_files(tmp_path)
    (tmp_path / "truth" / "params.json").write_text('{"seed": 2}')
    (tmp_path / "notes.txt").write_text("not a table: no model input")
    assert fingerprint_files(tmp_path) == first
    (tmp_path / "accounts.csv").write_text("account_id\nA2\n")
    assert fingerprint_files(tmp_path) != first


@pytest.mark.parametrize(
    ("ships", "message"), [(False, "FAIL baselines: does not beat both"), (None, "no `ships` tag")]
)
def test_a_challenger_that_does_not_beat_the_baselines_is_refused(
    ships: bool | None, message: str
) -> None:
    gates = PromotionConfig(require_beats_baselines=True)
    figures = _figures("1", auc=0.9, ece=0.01, psi=0.01, beats_baselines=ships)
    decision = decide_promotion(figures, None, gates)
    assert not decision.promote
    assert any(message in reason for reason in decision.reasons)
    shipped = _figures("1", auc=0.9, ece=0.01, psi=0.01, beats_baselines=True)
    assert decide_promotion(shipped, None, gates).promote


def test_the_baselines_gate_shows_each_gap_and_a_skipped_gate_says_so() -> None:
    """Found by an attacker: the gate refused without saying which baseline, which metric or
    by how much, and a gate switched off was left out of the list without a word."""
    gaps = {"roll_rate_chain": (0.0242, 0.0083), "scorecard": (0.0038, -0.0012)}
    figures = _figures("1", auc=0.9, ece=0.01, psi=0.01, beats_baselines=False, baseline_gaps=gaps)
    decision = decide_promotion(figures, None, PromotionConfig(require_beats_baselines=True))
    (line,) = [r for r in decision.reasons if "baselines" in r]
    assert line.startswith("FAIL baselines")
    assert "vs the roll-rate chain AUC gap +0.0242, Brier gap +0.0083 (worse)" in line
    assert "vs the scorecard AUC gap +0.0038, Brier gap -0.0012;" not in line
    assert line.endswith("vs the scorecard AUC gap +0.0038, Brier gap -0.0012")
    skipped = decide_promotion(figures, None, GATES).reasons
    assert "skip baselines: require_beats_baselines is false in the gates" in skipped


def test_gates_that_cannot_fail_or_move_nothing_are_refused() -> None:
    """Found by an attacker: max_psi .inf (a stability gate that cannot fail) and to_alias equal
    to from_alias were accepted."""
    with pytest.raises(ValueError, match="finite"):
        PromotionConfig(max_psi=float("inf"))
    with pytest.raises(ValueError, match="both 'challenger'"):
        PromotionConfig(to_alias="challenger")
    with pytest.raises(ValueError, match="at least 1 character"):
        PromotionConfig(to_alias="")


@pytest.mark.parametrize(
    ("short", "failure"),
    [({"train_rows": 312}, "312 training rows < 2000"),
     ({"train_positives": 40}, "40 rolled training rows < 200"),
     ({"test_rows": 1999}, "1999 out-of-time rows < 2000"),
     ({"test_positives": 150}, "150 rolled out-of-time rows < 200"),
     ({"test_rows": None}, "out-of-time rows not logged by the run (needed >= 2000)")],
)  # fmt: skip
def test_a_model_evaluated_on_too_little_is_refused_whatever_its_figures(
    short: dict[str, int | None], failure: str
) -> None:
    gates = PromotionConfig()  # the documented minimums: 2000 rows and 200 positives each
    figures = _figures("1", auc=0.95, ece=0.0300, psi=0.01, beats_baselines=True, **short)
    decision = decide_promotion(figures, None, gates)
    assert not decision.promote
    (data,) = [reason for reason in decision.reasons if "data:" in reason]
    assert data.startswith("FAIL data: the evaluation rests on too little") and failure in data
    # every other gate passes: the data gate alone refuses (ECE 0.0300 <= 0.0300 is a pass)
    assert [r for r in decision.reasons if r.startswith("FAIL")] == [data]


def test_scoring_where_the_feature_windows_are_not_yet_complete_is_warned_about() -> None:
    """An as-of a few months into the statements: the long windows hold less than their names
    say (a 12-month feature over 3 months), which the scores must say."""
    warning = short_history_warning(date(2023, 11, 1), date(2024, 1, 31), FEATURE_SET)
    assert warning is not None
    assert "the statements start in 2023-11, so at as-of 2024-01-31" in warning
    assert "hold 3 months of history: the 6, 12-month features" in warning
    assert warning.endswith("every window is complete from as-of 2024-10-31 on")
    assert short_history_warning(date(2023, 11, 1), date(2024, 10, 31), FEATURE_SET) is None
    assert short_history_warning(None, date(2024, 10, 31), FEATURE_SET) is None
