"""The strategy report's tables (pure functions over scored accounts)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from scipy import stats as scipy_stats

from rollrisk.reports.strategy import (
    action_mix,
    calibration_by_band,
    expected_loss_by_band,
    top_reasons,
)


def _scored() -> pl.DataFrame:
    reason = lambda code, rank: {"code": code, "feature": code.lower(), "rank": rank}  # noqa: E731
    return pl.DataFrame(
        {
            "account_id": ["A1", "A2", "A3", "A4"],
            "segment": ["forgetful", "forgetful", "low_willingness", "low_willingness"],
            "risk_band": ["low", "low", "high", "medium"],
            "probability": [0.1, 0.2, 0.8, 0.4],
            "exposure": [1_000.0, 2_000.0, 10_000.0, 5_000.0],
            "expected_loss": [100.0, 400.0, 8_000.0, 2_000.0],
            "treatment": ["reminder_only", "reminder_only", "escalate_agency", "escalate_agency"],
            "actions": [
                json.dumps([{"action": "reminder"}]),
                json.dumps([{"action": "reminder"}]),
                json.dumps([{"action": "call"}, {"action": "agency_assignment"}]),
                json.dumps([{"action": "call"}]),
            ],
            "trail": [
                "[]",
                "[]",
                json.dumps(
                    [
                        {
                            "action": "legal_referral via legal at 2025-04-01 10:00",
                            "change": "removed",
                        }
                    ]
                ),  # fmt: skip
                json.dumps([{"action": "call via agent_call", "change": "moved to 08:00"}]),
            ],
            "reasons": [
                json.dumps([reason("RR-1", 1)]),
                json.dumps([reason("RR-1", 1), reason("RR-2", 2)]),
                json.dumps([reason("RR-2", 1)]),
                "[]",
            ],
        }
    )


def test_expected_loss_is_split_by_segment_and_band_with_totals():
    table = expected_loss_by_band(_scored()).set_index("segment")
    assert table.loc["low_willingness", "high"] == pytest.approx(8_000.0)
    assert table.loc["low_willingness", "medium"] == pytest.approx(2_000.0)
    assert table.loc["forgetful", "total"] == pytest.approx(500.0)
    assert table.loc["all segments", "total"] == pytest.approx(10_500.0)
    assert list(table.columns) == ["low", "medium", "high", "total"]


def test_action_mix_counts_planned_actions_and_compliance_removals_only():
    treatments, steps = action_mix(_scored())
    assert treatments.set_index("treatment").loc["escalate_agency", "all"] == 2
    steps = steps.set_index("action")
    assert steps.loc["reminder", "planned (after compliance)"] == 2
    assert steps.loc["legal_referral", "removed by compliance"] == 1
    assert steps.loc["call", "removed by compliance"] == 0  # a move is not a removal


def test_top_reasons_share_is_over_the_segment_accounts():
    table = top_reasons(_scored()).set_index(["segment", "code"])
    assert table.loc[("forgetful", "RR-1"), "share"] == pytest.approx(1.0)
    assert table.loc[("forgetful", "RR-2"), "as_first"] == 0
    assert table.loc[("low_willingness", "RR-2"), "share"] == pytest.approx(0.5)


def test_calibration_uses_matured_outcomes_only_and_says_none_when_nothing_matured():
    outcomes = pl.DataFrame(
        {"account_id": ["A1", "A2", "A3", "A4"], "rolled_to_default": [0, 1, 1, None]},
        schema={"account_id": pl.String, "rolled_to_default": pl.Int8},
    )
    table = calibration_by_band(_scored(), outcomes).set_index("risk_band")
    assert table.loc["low", "accounts"] == 2 and table.loc["low", "realised"] == pytest.approx(0.5)
    assert table.loc["low", "predicted"] == pytest.approx(0.15)
    assert "medium" not in table.index  # A4 has not matured
    assert table.loc["all", "accounts"] == 3
    # The Wilson bounds are the roots in p of (realised - p)^2 = z^2 p (1 - p) / n (the score
    # test inverted): solved here independently of the report's closed form.
    z = scipy_stats.norm.ppf(0.975)
    for band, rolled, n in (("low", 1, 2), ("high", 1, 1), ("all", 2, 3)):
        p_hat = rolled / n
        roots = sorted(np.roots([1 + z * z / n, -(2 * p_hat + z * z / n), p_hat * p_hat]).real)
        bounds = table.loc[band, ["realised_ci_low", "realised_ci_high"]].to_list()
        assert bounds == pytest.approx(roots, abs=1e-6), band
    nothing = outcomes.with_columns(pl.lit(None, dtype=pl.Int8).alias("rolled_to_default"))
    assert calibration_by_band(_scored(), nothing) is None
