"""Shared test fixtures: tiny, hand-made portfolios (tests never download data)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest


def tiny_accounts() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "account_id": ["A1", "A2", "A3"],
            "borrower_id": ["B1", "B2", "B3"],
            "product": ["bnpl", "cash_loan", "agri_loan"],
            "opened_at": [date(2023, 1, 15)] * 3,
            "credit_limit": [2_000.0, 50_000.0, 30_000.0],
            "currency": ["CNY"] * 3,
        }
    )


def tiny_statements() -> pl.DataFrame:
    rows = []
    for account in ("A1", "A2", "A3"):
        for month, dpd in zip((1, 2, 3), (0, 15, 45), strict=True):
            cycle_end = date(2024, month, 20)
            rows.append(
                {
                    "account_id": account,
                    "cycle_end": cycle_end,
                    "known_at": datetime(2024, month, 22, 6, 0),
                    "amount_due": 300.0,
                    "min_due": 30.0,
                    "amount_paid": 30.0 if dpd == 0 else 0.0,
                    "balance": 1_500.0,
                    "dpd": dpd,
                }
            )
    return pl.DataFrame(rows)


def tiny_actions() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "account_id": ["A2", "A2", "A3"],
            "action_at": [
                datetime(2024, 2, 23, 10),
                datetime(2024, 2, 25, 15),
                datetime(2024, 3, 23, 9),
            ],
            "channel": ["sms", "agent_call", "robo_call"],
            "outcome": ["delivered", "promise_to_pay", "no_answer"],
            "promised_amount": [None, 300.0, None],
            "promised_date": [None, date(2024, 3, 5), None],
        }
    )


def tiny_treatments() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "account_id": ["A3"],
            "kind": ["grace_period"],
            "start_at": [datetime(2024, 3, 25)],
            "end_at": [datetime(2024, 4, 25)],
            "known_at": [datetime(2024, 3, 25)],
        }
    )


@pytest.fixture
def tiny_portfolio(tmp_path: Path) -> Path:
    """A clean four-table portfolio folder (Parquet), 3 accounts x 3 months."""
    folder = tmp_path / "portfolio"
    folder.mkdir()
    tiny_accounts().write_parquet(folder / "accounts.parquet")
    tiny_statements().write_parquet(folder / "statements.parquet")
    tiny_actions().write_parquet(folder / "collection_actions.parquet")
    tiny_treatments().write_parquet(folder / "treatments.parquet")
    return folder
