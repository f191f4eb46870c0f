"""The data contract's row-level checks: every bad row is set aside with its reason."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest

from rollrisk.errors import DataContractError
from rollrisk.features.schemas import TABLES_BY_NAME
from rollrisk.features.validation import FILE_COLUMN, ROW_COLUMN, validate_table
from tests.conftest import tiny_accounts, tiny_statements

STATEMENTS = TABLES_BY_NAME["statements"]
ACCOUNTS = TABLES_BY_NAME["accounts"]


def _raw(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.lit(0, dtype=pl.UInt32).alias(FILE_COLUMN),
        pl.int_range(pl.len(), dtype=pl.Int64).alias(ROW_COLUMN),
    )


def _reasons(outcome) -> dict[int, str]:
    return dict(outcome.rejects.select("row", "reasons").iter_rows())


def test_clean_table_is_accepted_whole_with_contract_dtypes():
    outcome = validate_table(_raw(tiny_statements()), STATEMENTS, ["s.parquet"])
    assert outcome.rows_rejected == 0
    assert outcome.rows_accepted == outcome.rows_read == 9
    assert outcome.accepted.schema["dpd"] == pl.Int64
    assert FILE_COLUMN not in outcome.accepted.columns


def test_text_columns_are_parsed_and_unparseable_values_rejected_with_the_value():
    text = tiny_statements().head(3).with_columns(pl.all().cast(pl.String))
    text = text.with_columns(
        pl.Series("amount_due", ["300", "abc", "300"]),
        pl.Series("dpd", ["0", "15", "12.5"]),
    )
    outcome = validate_table(_raw(text), STATEMENTS, ["s.csv"])
    reasons = _reasons(outcome)
    assert set(reasons) == {1, 2}
    assert reasons[1] == "amount_due: expected a number, got 'abc'"
    assert reasons[2] == "dpd: expected a whole number, got '12.5'"
    assert outcome.accepted["known_at"].dtype == pl.Datetime("us")
    assert outcome.accepted["cycle_end"].to_list() == [date(2024, 1, 20)]


def test_ranges_and_cross_column_rules_name_column_and_expectation():
    frame = (
        tiny_statements()
        .head(3)
        .with_columns(
            pl.Series("amount_paid", [30.0, -5.0, 0.0]),
            pl.Series("min_due", [30.0, 30.0, 900.0]),
            pl.Series(
                "known_at",
                [datetime(2024, 1, 22), datetime(2024, 2, 22), datetime(2024, 3, 1)],
            ),
        )
    )
    outcome = validate_table(_raw(frame), STATEMENTS, ["s.parquet"])
    reasons = _reasons(outcome)
    assert reasons[1] == "amount_paid: expected a value >= 0, got '-5.0'"
    assert "min_due must not exceed amount_due" in reasons[2]
    assert "known_at must not be before cycle_end" in reasons[2]
    assert outcome.rows_accepted + outcome.rows_rejected == 3


def test_duplicate_account_month_keeps_the_first_and_names_it():
    frame = pl.concat([tiny_statements(), tiny_statements().slice(4, 1)])
    outcome = validate_table(_raw(frame), STATEMENTS, ["s.parquet"])
    assert outcome.rows_rejected == 1
    assert _reasons(outcome) == {
        9: "duplicate (account_id, cycle_end): same key as row 4 of s.parquet, which was kept"
    }
    assert outcome.rejects["key"].to_list() == ["account_id=A2, cycle_end=2024-02-20"]


def test_unknown_account_is_rejected_as_a_reference_error():
    frame = tiny_statements().with_columns(
        pl.when(pl.col("account_id") == "A3")
        .then(pl.lit("ZZ"))
        .otherwise("account_id")
        .alias("account_id")
    )
    known = tiny_accounts()["account_id"]
    outcome = validate_table(_raw(frame), STATEMENTS, ["s.parquet"], known_accounts=known)
    assert outcome.rows_rejected == 3
    assert set(outcome.rejects["reasons"]) == {
        "account_id: expected an account listed in accounts, got 'ZZ'"
    }


def test_enumerations_and_nulls_are_reported_in_words():
    frame = tiny_accounts().with_columns(
        pl.Series("product", ["bnpl", "spaceship", "agri_loan"]),
        pl.Series("credit_limit", [1.0, 1.0, None]),
    )
    outcome = validate_table(_raw(frame), ACCOUNTS, ["a.parquet"])
    reasons = _reasons(outcome)
    assert reasons[1].startswith("product: expected one of ['bnpl'")
    assert reasons[1].endswith("got 'spaceship'")
    assert reasons[2] == "credit_limit: expected a value, got nothing"


def test_missing_contract_column_is_a_table_error_naming_it():
    with pytest.raises(DataContractError, match=r"lacks column\(s\) dpd; expected columns:"):
        validate_table(_raw(tiny_statements().drop("dpd")), STATEMENTS, ["s.parquet"])


def test_results_do_not_depend_on_the_chunk_size():
    frame = pl.concat([tiny_statements(), tiny_statements().slice(4, 2)]).with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(-1.0).otherwise("balance").alias("balance")
    )
    whole = validate_table(_raw(frame), STATEMENTS, ["s.parquet"])
    for chunk_rows in (1, 2, 4):
        chunked = validate_table(_raw(frame), STATEMENTS, ["s.parquet"], chunk_rows=chunk_rows)
        assert chunked.rejects.equals(whole.rejects)
        assert chunked.accepted.equals(whole.accepted)
    assert whole.rows_rejected == 3
