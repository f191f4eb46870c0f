"""The outcome of a logged decision, from a portfolio's own records (scoring.logged_decisions).

Hand-made accounts whose payments, actions and treatments are known, so every term of the
book value can be worked out by hand; the scoring half is checked in
tests/e2e/test_logged_decisions_cli.py on a simulated portfolio and a trained model.
"""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest

from rollrisk.features.schemas import CHANNELS, TREATMENT_KINDS
from rollrisk.scoring.logged_decisions import OutcomeEconomics, horizon_outcomes

AS_OF = date(2024, 3, 31)
SHARES = (1.0, 0.9, 0.6, 0.3, 0.2, 0.1, 0.1, 0.05)  # M0 .. M7+
ECONOMICS = OutcomeEconomics(
    channel_costs={
        **dict.fromkeys(CHANNELS, 0.0),
        "sms": 1.0,
        "agent_call": 10.0,
        "agency_assignment": 5.0,
        "legal": 1000.0,
    },  # fmt: skip
    treatment_costs={**dict.fromkeys(TREATMENT_KINDS, 0.0), "grace_period": 20.0},
    agency_commission={"M1": 0.1, "M2": 0.2, "M3": 0.3, "M4": 0.4, "M5": 0.5, "M6": 0.6},
    value_shares=SHARES,
    plan_share=0.7,
)


def _statement(account: str, cycle_end: date, paid: float, balance: float, dpd: int) -> dict:
    return {
        "account_id": account,
        "cycle_end": cycle_end,
        "known_at": datetime(cycle_end.year, cycle_end.month, cycle_end.day, 6),
        "amount_due": 100.0,
        "min_due": 10.0,
        "amount_paid": paid,
        "balance": balance,
        "dpd": dpd,
    }


def _statements() -> pl.DataFrame:
    rows = [
        _statement("A1", date(2024, 2, 20), 0.0, 1_400.0, 15),  # before the start: never read
        _statement("A1", date(2024, 3, 20), 0.0, 1_400.0, 45),  # the start statement (M2)
        _statement("A1", date(2024, 4, 20), 100.0, 1_300.0, 60),  # cycle 1: paid 100
        _statement("A1", date(2024, 5, 20), 250.0, 1_000.0, 75),  # cycle 2: paid 250, M3
        _statement("A1", date(2024, 6, 20), 999.0, 0.0, 0),  # after a 2-month horizon
        # A2: a restructure plan in force at the horizon's end, current only by re-aging
        _statement("A2", date(2024, 3, 10), 0.0, 2_000.0, 40),
        _statement("A2", date(2024, 4, 10), 50.0, 1_950.0, 0),
        _statement("A2", date(2024, 5, 10), 50.0, 1_900.0, 0),
        # A3: no statement in May: the horizon is incomplete
        _statement("A3", date(2024, 3, 20), 0.0, 500.0, 20),
        _statement("A3", date(2024, 4, 20), 0.0, 500.0, 50),
        _statement("A3", date(2024, 6, 20), 0.0, 500.0, 110),
    ]
    return pl.DataFrame(rows)


def _actions() -> pl.DataFrame:
    rows = [
        ("A1", datetime(2024, 3, 15, 10), "agent_call"),  # before the start statement
        ("A1", datetime(2024, 3, 25, 10), "sms"),  # after it, before the as-of
        ("A1", datetime(2024, 4, 10, 10), "agency_assignment"),  # cycle 1: commission at M2
        ("A1", datetime(2024, 4, 25, 10), "agent_call"),  # cycle 2
        ("A1", datetime(2024, 5, 21, 10), "legal"),  # after the horizon
        ("A2", datetime(2024, 3, 12, 10), "sms"),
    ]
    return pl.DataFrame(
        {
            "account_id": [r[0] for r in rows],
            "action_at": [r[1] for r in rows],
            "channel": [r[2] for r in rows],
            "outcome": ["delivered"] * len(rows),
            "promised_amount": [None] * len(rows),
            "promised_date": [None] * len(rows),
        },
        schema_overrides={"promised_amount": pl.Float64, "promised_date": pl.Date},
    )


def _treatments() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "account_id": ["A1", "A2"],
            "kind": ["grace_period", "restructure"],
            "start_at": [datetime(2024, 4, 22), datetime(2024, 3, 28)],
            "end_at": [datetime(2024, 5, 22), datetime(2026, 3, 28)],
            "known_at": [datetime(2024, 4, 22), datetime(2024, 3, 28)],
        }
    )


def _outcomes(window_start: str = "cycle", **tables: pl.DataFrame) -> pl.DataFrame:
    starts = pl.DataFrame({"account_id": ["A1", "A2", "A3"], "as_of": [AS_OF] * 3})
    return horizon_outcomes(
        starts,
        tables.get("statements", _statements()),
        tables.get("actions", _actions()),
        tables.get("treatments", _treatments()),
        2,
        ECONOMICS,
        window_start,  # type: ignore[arg-type]
    )


def _row(frame: pl.DataFrame, account: str) -> dict:
    return frame.filter(pl.col("account_id") == account).to_dicts()[0]


def test_book_value_of_an_account_whose_payments_and_actions_are_known() -> None:
    a1 = _row(_outcomes(), "A1")
    assert a1["complete"] and a1["horizon_end"] == date(2024, 5, 20)
    assert a1["start_cycle_end"] == date(2024, 3, 20)
    assert a1["recovered"] == pytest.approx(350.0)  # the two horizon statements
    # sms (after the start statement) 1 + agency 5 + agent call 10 + grace 20; not the call
    # before the start statement nor the legal filing after the horizon
    assert a1["action_cost"] == pytest.approx(36.0)
    # the agency worked cycle 1, which began at M2 (rate 0.2), on its payment of 100
    assert a1["agency_commission"] == pytest.approx(20.0)
    assert a1["end_balance"] == pytest.approx(1_000.0) and a1["end_bucket"] == "M3"
    assert a1["end_value"] == pytest.approx(300.0)
    assert a1["book_value"] == pytest.approx(350.0 - 36.0 - 20.0 + 300.0)


def test_costs_from_the_as_of_leave_out_the_actions_before_it() -> None:
    a1 = _row(_outcomes("as_of"), "A1")
    assert a1["action_cost"] == pytest.approx(35.0)  # the sms of 25 March is not counted
    assert a1["book_value"] == pytest.approx(350.0 - 35.0 - 20.0 + 300.0)


def test_a_restructure_plan_in_force_is_never_at_par() -> None:
    a2 = _row(_outcomes(), "A2")
    assert a2["end_bucket"] == "M0"
    assert a2["end_value"] == pytest.approx(1_900.0 * 0.7)  # the plan share, not 1.0
    # the plan was granted after the start statement: its cost is in the horizon
    assert a2["action_cost"] == pytest.approx(1.0)  # the sms of 12 March (after 10 March)


def test_an_account_missing_a_month_of_the_horizon_has_no_outcome() -> None:
    a3 = _row(_outcomes(), "A3")
    assert not a3["complete"]
    assert a3["book_value"] is None and a3["end_value"] is None


def test_the_outcome_reads_nothing_dated_before_the_start_statement() -> None:
    before = _outcomes()
    statements = _statements().with_columns(
        pl.when(pl.col("cycle_end") < date(2024, 3, 1))
        .then(pl.col("amount_paid") + 5_000.0)
        .otherwise(pl.col("amount_paid"))
        .alias("amount_paid")
    )
    actions = pl.concat(
        [
            _actions(),
            _actions().with_columns(
                pl.lit(datetime(2024, 1, 5, 9)).alias("action_at"),
                pl.lit("legal").alias("channel"),
            ),
        ]
    )
    after = _outcomes(statements=statements, actions=actions)
    assert after.equals(before)
    # and it moves when a record inside the horizon changes (the check above can fail)
    moved = _outcomes(
        statements=_statements().with_columns(
            pl.when(pl.col("cycle_end") == date(2024, 4, 20))
            .then(pl.col("amount_paid") + 1.0)
            .otherwise(pl.col("amount_paid"))
            .alias("amount_paid")
        )
    )
    assert _row(moved, "A1")["recovered"] == pytest.approx(351.0)


def test_without_action_tables_only_the_money_counts() -> None:
    starts = pl.DataFrame({"account_id": ["A1"], "as_of": [AS_OF]})
    a1 = horizon_outcomes(starts, _statements(), None, None, 2, ECONOMICS).to_dicts()[0]
    assert a1["action_cost"] == pytest.approx(0.0)
    assert a1["agency_commission"] == pytest.approx(0.0)
    assert a1["book_value"] == pytest.approx(350.0 + 300.0)


def test_economics_must_cover_every_channel_and_bucket() -> None:
    with pytest.raises(ValueError, match="channel_costs lacks"):
        OutcomeEconomics({"sms": 1.0}, ECONOMICS.treatment_costs, ECONOMICS.agency_commission,
                         SHARES)  # fmt: skip
    with pytest.raises(ValueError, match="one share per bucket"):
        OutcomeEconomics(ECONOMICS.channel_costs, ECONOMICS.treatment_costs,
                         ECONOMICS.agency_commission, SHARES[:3])  # fmt: skip
