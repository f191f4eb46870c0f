"""Rejected rows and accounts: how storage.rejects counts them and when a job stops (issue 14)."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from rollrisk.arguments import add_reject_rate_argument, max_reject_rate
from rollrisk.errors import UserError
from rollrisk.storage.config import DEFAULT_MAX_REJECT_RATE, parse_config
from rollrisk.storage.loader import load_portfolio
from rollrisk.storage.rejects import (
    MAX_REJECT_RATE_FLAG,
    RejectAccounting,
    account_rejects,
    check_reject_rate,
)
from tests.conftest import tiny_accounts, tiny_actions, tiny_statements, tiny_treatments


def _portfolio(folder: Path) -> Path:
    """tiny_portfolio with: A2's accounts row bad (its 3 statements and 2 actions follow as
    knock-ons), every statement of A3 bad (A3 listed, but no history left), one treatment
    without an account id."""
    folder.mkdir()
    tiny_accounts().with_columns(
        pl.when(pl.col("account_id") == "A2")
        .then(-1.0)
        .otherwise("credit_limit")
        .alias("credit_limit")
    ).write_parquet(folder / "accounts.parquet")
    tiny_statements().with_columns(
        pl.when(pl.col("account_id") == "A3").then(-5).otherwise("dpd").alias("dpd")
    ).write_parquet(folder / "statements.parquet")
    tiny_actions().write_parquet(folder / "collection_actions.parquet")
    extra = pl.DataFrame(
        {
            "account_id": [None],
            "kind": ["grace_period"],
            "start_at": [datetime(2024, 3, 25)],
            "end_at": [datetime(2024, 4, 25)],
            "known_at": [datetime(2024, 3, 25)],
        },
        schema=tiny_treatments().schema,
    )
    pl.concat([tiny_treatments(), extra]).write_parquet(folder / "treatments.parquet")
    return folder


@pytest.fixture
def accounting(tmp_path: Path) -> RejectAccounting:
    return account_rejects(load_portfolio(_portfolio(tmp_path / "portfolio")))


def test_rows_are_counted_per_table_with_their_knock_ons(accounting: RejectAccounting) -> None:
    accounts = accounting.table("accounts")
    statements = accounting.table("statements")
    actions = accounting.table("collection_actions")
    treatments = accounting.table("treatments")
    assert accounts is not None and statements is not None
    assert actions is not None and treatments is not None
    assert (accounts.rows_read, accounts.rows_rejected, accounts.knock_on) == (3, 1, 0)
    # A2's 3 statements follow its account row; A3's 3 statements are bad themselves
    assert (statements.rows_read, statements.rows_rejected, statements.knock_on) == (9, 6, 3)
    assert (actions.rows_read, actions.rows_rejected, actions.knock_on) == (3, 2, 2)
    assert (treatments.rows_read, treatments.rows_rejected) == (2, 1)
    assert accounting.rows_read == 17 and accounting.rows_rejected == 10
    assert accounting.row_rate == pytest.approx(10 / 17)
    assert statements.rate == pytest.approx(6 / 9)
    # the sentence ends (found by an attacker: "29 of them because their account was")
    assert "  statements: 6 of 9 rows (66.67%), 3 of them because their account was rejected" in (
        accounting.lines()
    )


def test_accounts_rejected_and_lost(accounting: RejectAccounting) -> None:
    # A2 (its own row) and A3 (its statements) have rejected rows; A1 none
    assert accounting.accounts_read == 3
    assert accounting.accounts_rejected == 2
    assert accounting.account_rate == pytest.approx(2 / 3)
    # A2 is not listed any more; A3 is listed but has no statement left: both lost
    assert accounting.accounts_lost == 2
    assert accounting.rejected_without_id == 1
    record = accounting.as_dict()
    assert record["accounts_rejected"] == 2 and record["accounts_lost"] == 2
    assert record["tables"]["statements"] == {
        "rows_read": 9,
        "rows_rejected": 6,
        "reject_rate": pytest.approx(6 / 9, abs=1e-6),
        "knock_on": 3,
    }
    assert record["rejected_rows_without_account_id"] == 1


def test_within_the_limit_the_job_goes_on_and_records_the_limit(
    accounting: RejectAccounting,
) -> None:
    checked = check_reject_rate(accounting, 0.9, "/data/book")
    assert checked.max_reject_rate == 0.9
    assert checked.as_dict()["max_reject_rate"] == 0.9
    assert accounting.over(0.9) == []


def test_above_the_limit_the_message_names_rates_counts_and_root_cause(
    accounting: RejectAccounting,
) -> None:
    with pytest.raises(UserError) as stopped:
        check_reject_rate(accounting, 0.01, "/data/book")
    message = str(stopped.value)
    assert "\n" not in message
    assert message.startswith("/data/book: too much of the portfolio was rejected")
    assert "statements 66.67% of rows (6 of 9)" in message
    assert "accounts with a rejected row 66.67% (2 of 3, 2 lost entirely)" in message
    assert f"above the limit of 1.00% ({MAX_REJECT_RATE_FLAG})" in message
    # the root cause first: the accounts row, then what followed from it
    assert "root cause: 1 accounts rows rejected (1 x credit_limit: expected a value > 0)" in (
        message
    )
    assert "3 statements rows, 2 collection_actions rows as knock-ons" in message
    # the statements' own reason beside it, without the knock-ons
    assert "statements: 3 rows (3 x dpd: expected a value >= 0" in message
    assert "rollrisk validate --data /data/book" in message


def test_a_clean_portfolio_has_nothing_to_say(tiny_portfolio: Path) -> None:
    clean = account_rejects(load_portfolio(tiny_portfolio))
    assert clean.rows_rejected == 0 and clean.accounts_rejected == 0 and clean.accounts_lost == 0
    assert clean.lines() == ["rejects: none (16 rows read, 3 accounts)"]
    assert check_reject_rate(clean, 0.0, tiny_portfolio).over(0.0) == []


def test_the_limit_comes_from_the_flag_else_the_config() -> None:
    parser = argparse.ArgumentParser()
    add_reject_rate_argument(parser)
    config = parse_config({"data": {"max_reject_rate": 0.05}})
    assert max_reject_rate(parser.parse_args([]), None) == DEFAULT_MAX_REJECT_RATE == 0.01
    assert max_reject_rate(parser.parse_args([]), config) == 0.05
    assert max_reject_rate(parser.parse_args([MAX_REJECT_RATE_FLAG, "0.2"]), config) == 0.2
    for bad in ("1.5", "-0.1", "nan", "two"):
        with pytest.raises(SystemExit):
            parser.parse_args([MAX_REJECT_RATE_FLAG, bad])
    with pytest.raises(UserError, match=r"data.max_reject_rate"):
        parse_config({"data": {"max_reject_rate": 2}})
    with pytest.raises(UserError, match=r"unknown key data.max_rejects"):
        parse_config({"data": {"max_rejects": 0.1}})


def test_the_listed_reasons_add_up_to_every_reason_given(tmp_path: Path) -> None:
    """Found by a new user: validate listed 5 kinds of reason and the job 3, summing to 83
    and 81 of 84 rejected rows, with no word of the rest."""
    from rollrisk.storage.loader import OTHER_REASONS, top_reasons, validate_portfolio

    kinds = pl.DataFrame({"reason": [f"r{i}" for i in range(7)], "len": [9, 8, 7, 6, 5, 2, 1]})
    assert top_reasons(kinds) == (
        ("r0", 9), ("r1", 8), ("r2", 7), ("r3", 6), ("r4", 5), (OTHER_REASONS, 3)
    )  # fmt: skip
    assert top_reasons(kinds.head(5)) == tuple(kinds.head(5).iter_rows())  # nothing left out

    folder = tmp_path / "portfolio"
    folder.mkdir()
    tiny_accounts().write_parquet(folder / "accounts.parquet")
    statements = tiny_statements()
    negative = ["dpd", "balance", "min_due", "amount_paid", "amount_due"]  # a kind a row
    frames = [statements.slice(0, 4)] + [
        statements.slice(4 + i, 1).with_columns(pl.col(name) * 0 - 1)
        for i, name in enumerate(negative)
    ]
    pl.concat(frames).write_parquet(folder / "statements.parquet")
    table = next(t for t in validate_portfolio(folder).report.tables if t.table == "statements")
    assert table.rows_rejected >= 5 and len(table.top_reasons) >= 5
    lines = account_rejects(load_portfolio(folder)).lines()
    listed = [line for line in lines if line.startswith("      ")]
    assert len(listed) == 4 and listed[-1].endswith(f"x {OTHER_REASONS}")
    assert sum(int(line.split(" x ")[0].replace(",", "")) for line in listed) == sum(
        count for _, count in table.top_reasons
    )
