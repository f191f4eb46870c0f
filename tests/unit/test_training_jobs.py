"""Pure parts of the train / promote / tracking jobs: split, promotion gates, fingerprints."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from rollrisk.errors import UserError
from rollrisk.models.promotion import CandidateFigures, PromotionConfig, decide_promotion
from rollrisk.models.training import split_training_set
from rollrisk.storage.tracking import _sqlite_path, fingerprint_files
from tests.synthetic_training_set import make_training_frame

GATES = PromotionConfig(
    min_auc_gain=0.005, max_ece=0.03, max_psi=0.25, require_beats_baselines=False
)


def test_split_is_by_time_with_embargo_and_disjoint_validation_accounts() -> None:
    frame = make_training_frame(n_accounts=80, n_months=12)
    split = split_training_set(
        frame, validation_months=2, test_months=2, embargo_months=1, calibration_fraction=0.5
    )
    months = sorted(pd.to_datetime(frame["as_of"]).dt.date.unique())
    assert split.months["out-of-time test"] == tuple(months[-2:])
    assert split.months["validation"] == tuple(months[-5:-3])
    assert split.months["embargo (dropped)"] == (months[-6], months[-3])
    assert max(pd.to_datetime(split.train["as_of"])) < min(
        pd.to_datetime(split.early_stopping["as_of"])
    )
    assert not set(split.early_stopping["account_id"]) & set(split.calibration["account_id"])
    assert 0.3 < len(split.calibration) / (len(split.calibration) + len(split.early_stopping)) < 0.7


def test_split_refuses_too_short_a_history() -> None:
    frame = make_training_frame(n_accounts=10, n_months=4)
    with pytest.raises(UserError, match="needs at least 7 as-of dates"):
        split_training_set(
            frame, validation_months=2, test_months=2, embargo_months=1, calibration_fraction=0.5
        )


def test_first_challenger_is_promoted_when_calibrated_and_stable() -> None:
    decision = decide_promotion(CandidateFigures("1", auc=0.7, ece=0.02, psi=0.05), None, GATES)
    assert decision.promote
    assert any("no champion yet" in reason for reason in decision.reasons)


def test_better_challenger_is_promoted_and_worse_refused_with_figures() -> None:
    champion = CandidateFigures("1", auc=0.80)
    better = decide_promotion(CandidateFigures("2", auc=0.81, ece=0.02, psi=0.05), champion, GATES)
    worse = decide_promotion(CandidateFigures("3", auc=0.803, ece=0.02, psi=0.05), champion, GATES)
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
        CandidateFigures("2", auc=0.9, ece=ece, psi=psi), CandidateFigures("1", auc=0.7), GATES
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
    figures = CandidateFigures("1", auc=0.9, ece=0.01, psi=0.01, beats_baselines=ships)
    decision = decide_promotion(figures, None, gates)
    assert not decision.promote
    assert any(message in reason for reason in decision.reasons)
    shipped = CandidateFigures("1", auc=0.9, ece=0.01, psi=0.01, beats_baselines=True)
    assert decide_promotion(shipped, None, gates).promote
