"""Contact capacity: the file, its sizing from the collection log, the plan against it."""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from rollrisk.conf import DEFAULT_CAPACITY
from rollrisk.errors import UserError
from rollrisk.strategies.capacity import (
    ContactCapacity,
    load_capacity,
    load_lines,
    observed_volume,
    parse_capacity,
    planned_load,
    size_capacity,
)

GOOD = """version: 1
agent_calls_per_day: 40
field_visits_per_month: auto
working_days_per_month: 22
auto_margin: 0.1
auto_lookback_months: 6
"""


def test_the_shipped_file_sizes_both_numbers_from_the_log():
    settings = load_capacity(DEFAULT_CAPACITY)
    assert settings.agent_calls_per_day is None and settings.field_visits_per_month is None
    assert settings.needs_log


def test_a_bad_number_names_the_file_the_line_and_what_was_expected():
    with pytest.raises(UserError, match=r"cap\.yaml:3: field_visits_per_month must be a whole"):
        parse_capacity(GOOD.replace("auto\n", "-3\n", 1), "cap.yaml")
    with pytest.raises(UserError, match=r"cap\.yaml:4: working_days_per_month must be"):
        parse_capacity(GOOD.replace("22", "auto"), "cap.yaml")
    with pytest.raises(UserError, match="unknown key 'agents'"):
        parse_capacity(GOOD + "agents: 3\n", "cap.yaml")


@pytest.mark.parametrize("margin", ["10", "1.5", "-0.1", ".nan", "ten", "true"])
def test_an_auto_margin_that_is_not_a_share_is_refused_naming_the_line(margin):
    """`auto_margin: 10` meant as 10 % multiplied the capacity by 11 (26 field visits a month
    became 255) and the over-capacity WARNING disappeared."""
    with pytest.raises(UserError) as raised:
        parse_capacity(GOOD.replace("auto_margin: 0.1", f"auto_margin: {margin}"), "cap.yaml")
    message = str(raised.value)
    assert message.startswith(
        "cap.yaml:5: auto_margin must be a share in [0, 1] added to the busiest month's volume "
        "(0.10 for 10 %), got "
    ), message
    if margin == "10":
        assert message.endswith("got 10; 10 would multiply the capacity by 11: write 0.1 for 10 %")


@pytest.mark.parametrize("margin", ["0", "0.1", "1"])
def test_an_auto_margin_from_none_to_doubling_is_accepted(margin):
    settings = parse_capacity(GOOD.replace("auto_margin: 0.1", f"auto_margin: {margin}"), "c")
    assert settings.auto_margin == float(margin)


def test_missing_file_is_one_clear_error(tmp_path: Path):
    with pytest.raises(UserError, match="capacity file"):
        load_capacity(tmp_path / "nope.yaml")


def _log() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Two delinquent accounts in 2025-11 (one charged off, not counted), three in 2025-12;
    4 agent calls and 1 visit in November, 3 calls in December, 9 calls after the as-of."""
    statements = pl.DataFrame(
        {
            "account_id": ["a", "b", "z", "a", "b", "c"],
            "cycle_end": [date(2025, 11, 5), date(2025, 11, 9), date(2025, 11, 9),
                          date(2025, 12, 5), date(2025, 12, 9), date(2025, 12, 12)],
            "dpd": [10, 40, 200, 40, 70, 5],
        }
    )  # fmt: skip
    at = [datetime(2025, 11, 10, 10)] * 4 + [datetime(2025, 11, 11, 10)]
    at += [datetime(2025, 12, 10, 10)] * 3 + [datetime(2026, 1, 2, 10)] * 9
    channels = ["agent_call"] * 4 + ["field_visit"] + ["agent_call"] * 12
    actions = pl.DataFrame({"account_id": ["a"] * len(at), "action_at": at, "channel": channels})
    return statements, actions


def test_auto_sizes_from_the_busiest_month_per_delinquent_account():
    statements, actions = _log()
    observed = observed_volume(statements, actions, date(2025, 12, 31), 6)
    assert observed.calls_per_account == pytest.approx(4 / 2)  # November: 4 calls, 2 accounts
    assert observed.calls_month == "2025-11"
    assert observed.visits_per_account == pytest.approx(1 / 2)
    settings = parse_capacity(GOOD.replace("40", "auto"), "cap.yaml")
    capacity = size_capacity(settings, 100, observed)
    assert capacity.agent_calls_per_day == math.ceil(2 * 100 * 1.1 / 22)
    assert capacity.field_visits_per_month == math.ceil(0.5 * 100 * 1.1)
    assert "2025-11" in capacity.sizing


def test_a_given_number_is_taken_as_it_is():
    statements, actions = _log()
    settings = parse_capacity(GOOD, "cap.yaml")
    capacity = size_capacity(
        settings, 100, observed_volume(statements, actions, date(2025, 12, 31), 1)
    )
    assert capacity.agent_calls_per_day == 40
    assert capacity.agent_calls_per_month == 40 * 22
    # one month looked at: December, 3 calls over 3 accounts, no visit
    assert capacity.field_visits_per_month == 0


def test_the_plan_is_counted_and_a_plan_over_capacity_warns():
    actions = [
        json.dumps([{"action": "call", "channel": "agent_call"},
                    {"action": "call", "channel": "robo_call"},
                    {"action": "field_visit_with_notice", "channel": None}]),
        json.dumps([{"action": "restructure_offer", "channel": "agent_call"}]),
        json.dumps([]),
    ]  # fmt: skip
    load = planned_load(actions)
    assert (load.agent_calls, load.field_visits, load.accounts) == (2, 1, 3)
    roomy = load_lines(load, ContactCapacity(1, 1, 2, 3, "test"))
    assert not any(line.startswith("WARNING") for line in roomy)
    tight = load_lines(load, ContactCapacity(1, 0, 1, 3, "test"))
    assert sum(line.startswith("WARNING") for line in tight) == 2
    assert "EXCEEDS the capacity by 1" in tight[0]
