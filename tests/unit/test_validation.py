"""The data contract's row-level checks: every bad row is set aside with its reason."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

import polars as pl
import pytest

from rollrisk.errors import DataContractError
from rollrisk.features.schemas import TABLES_BY_NAME
from rollrisk.features.validation import (
    CONFLICT_REASON,
    FILE_COLUMN,
    INCOMPLETE_HISTORY_REASON,
    KNOCK_ON_REASON,
    ROW_COLUMN,
    validate_table,
)
from tests.conftest import tiny_accounts, tiny_statements

# the row checks alone: the statements' history rule (an account's statements kept whole or
# not at all) sets aside more rows, and has its own tests at the end
STATEMENTS = replace(TABLES_BY_NAME["statements"], history=False)
STATEMENTS_WHOLE = TABLES_BY_NAME["statements"]
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
        9: "duplicate (account_id, cycle_end): same key and values as row 4 of s.parquet, "
        "which was kept"
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


@pytest.mark.parametrize(
    ("whole_history", "rejected", "kept"),
    [
        (False, 3, ["A1", "A2", "A3"]),  # A3's bad February, A2's two exact repeats
        (True, 5, ["A1", "A2"]),  # and A3's other two statements (the history rule)
    ],
)
def test_results_do_not_depend_on_the_chunk_size(whole_history, rejected, kept):
    table = STATEMENTS_WHOLE if whole_history else STATEMENTS
    frame = pl.concat([tiny_statements(), tiny_statements().slice(4, 2)]).with_columns(
        pl.when(pl.int_range(pl.len()) == 7)
        .then(-1.0)
        .otherwise("amount_paid")
        .alias("amount_paid")
    )
    whole = validate_table(_raw(frame), table, ["s.parquet"])
    for chunk_rows in (1, 2, 4):
        chunked = validate_table(_raw(frame), table, ["s.parquet"], chunk_rows=chunk_rows)
        assert chunked.rejects.equals(whole.rejects)
        assert chunked.accepted.equals(whole.accepted)
    assert whole.rows_rejected == rejected
    assert whole.accepted["account_id"].unique().sort().to_list() == kept


# -- issue 14: credit balances, one rule set for numbers and ids, honest rejects ---------------


def test_a_credit_balance_with_nothing_due_is_accepted():
    """After an overpayment or a refund the balance is negative and nothing is due."""
    frame = tiny_statements().with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(-250.0).otherwise("balance").alias("balance"),
        pl.when(pl.int_range(pl.len()) == 0).then(0.0).otherwise("amount_due").alias("amount_due"),
        pl.when(pl.int_range(pl.len()) == 0).then(0.0).otherwise("min_due").alias("min_due"),
    )
    outcome = validate_table(_raw(frame), STATEMENTS, ["s.parquet"])
    assert outcome.rows_rejected == 0
    assert outcome.accepted["balance"][0] == pytest.approx(-250.0)


def test_non_finite_numbers_and_booleans_are_rejected_in_the_type_stage():
    frame = (
        tiny_statements()
        .head(4)
        .with_columns(
            pl.Series("amount_due", [float("inf"), 300.0, 300.0, 300.0]),
            pl.Series("balance", [1.0, float("-inf"), float("nan"), 1.0]),
        )
    )
    reasons = _reasons(validate_table(_raw(frame), STATEMENTS, ["s.parquet"]))
    assert reasons == {
        0: "amount_due: expected a finite number, got 'inf'",
        1: "balance: expected a finite number, got '-inf'",
        2: "balance: expected a finite number, got 'NaN'",
    }
    booleans = tiny_statements().head(2).with_columns(pl.Series("amount_paid", [True, False]))
    reasons = _reasons(validate_table(_raw(booleans), STATEMENTS, ["s.parquet"]))
    assert reasons == {
        0: "amount_paid: expected a number, got a boolean 'true'",
        1: "amount_paid: expected a number, got a boolean 'false'",
    }


def test_non_finite_text_is_rejected_like_a_non_finite_float():
    text = tiny_statements().head(3).with_columns(pl.all().cast(pl.String))
    text = text.with_columns(pl.Series("amount_paid", ["inf", "1e400", "NaN"]))
    reasons = _reasons(validate_table(_raw(text), STATEMENTS, ["s.csv"]))
    assert reasons == {
        0: "amount_paid: expected a finite number, got 'inf'",
        1: "amount_paid: expected a finite number, got '1e400'",
        2: "amount_paid: expected a finite number, got 'NaN'",
    }


def test_amounts_beyond_the_contract_bound_are_rejected_in_words():
    frame = tiny_accounts().with_columns(pl.Series("credit_limit", [1.0, 2e15, 3.0]))
    reasons = _reasons(validate_table(_raw(frame), ACCOUNTS, ["a.parquet"]))
    assert reasons == {1: "credit_limit: expected a value <= 1e+15, got '2000000000000000.0'"}


def test_an_over_long_id_is_rejected_and_quoted_short():
    long_id = "X" * 10_000
    frame = tiny_accounts().with_columns(pl.Series("account_id", ["A1", long_id, "A3"]))
    outcome = validate_table(_raw(frame), ACCOUNTS, ["a.parquet"])
    shown = "X" * 40 + "... (10000 characters)"
    assert _reasons(outcome) == {
        1: f"account_id: expected text of 1 to 64 characters, got '{shown}'"
    }
    assert outcome.rejects["key"].to_list() == [f"account_id={shown}"]
    assert outcome.rejected_account_ids.to_list() == [long_id]


@pytest.mark.parametrize(
    "names", [("reason", "file"), ("row", "table"), ("key", "reasons"), ("_pos", "_type_reason")]
)
def test_lender_columns_never_meet_the_rejects_report_columns(names):
    """A lender's own columns, whatever their names, are carried through untouched and never
    take the place of the rejects report's own columns."""
    frame = tiny_statements().with_columns(
        pl.lit("lender's").alias(names[0]),
        pl.int_range(pl.len()).alias(names[1]),
        pl.when(pl.int_range(pl.len()) == 2)
        .then(-1.0)
        .otherwise("amount_paid")
        .alias("amount_paid"),
        pl.when(pl.int_range(pl.len()) == 4)
        .then(float("inf"))
        .otherwise("balance")
        .alias("balance"),
    )
    frame = pl.concat([frame, frame.slice(6, 1)])  # a duplicate too
    known = pl.Series(["A1", "A2"])  # A3 is not listed
    outcome = validate_table(_raw(frame), STATEMENTS, ["s.parquet"], known_accounts=known)
    assert outcome.rejects.columns == ["table", "file", "row", "key", "reasons"]
    assert outcome.rejects["file"].to_list() == ["s.parquet"] * outcome.rows_rejected
    assert _reasons(outcome) == {
        2: "amount_paid: expected a value >= 0, got '-1.0'",
        4: "balance: expected a finite number, got 'inf'",
        **{r: "account_id: expected an account listed in accounts, got 'A3'" for r in (6, 7, 8)},
        9: "duplicate (account_id, cycle_end): same key and values as row 6 of s.parquet, "
        "which was kept",
    }
    accepted = outcome.accepted
    assert accepted.columns[-2:] == list(names)
    assert accepted[names[0]].to_list() == ["lender's"] * accepted.height
    assert accepted[names[1]].to_list() == [0, 1, 3, 5]  # the lender's values of the kept rows


def test_a_knock_on_reject_names_the_rejected_account_row_and_its_reason():
    accounts = tiny_accounts().with_columns(
        pl.Series("opened_at", ["2023-01-15", "22/08/2021", "2023-01-15"])
    )
    account_outcome = validate_table(_raw(accounts), ACCOUNTS, ["lender/accounts.csv"])
    assert account_outcome.rows_rejected == 1
    statements = validate_table(
        _raw(tiny_statements()),
        STATEMENTS,
        ["lender/statements.csv"],
        known_accounts=account_outcome.accepted["account_id"],
        rejected_accounts=account_outcome.rejected_accounts,
    )
    assert statements.rows_rejected == 3
    (root,) = account_outcome.rejects["reasons"].to_list()
    assert set(statements.rejects["reasons"]) == {
        f"{KNOCK_ON_REASON}, see row 1 of lender/accounts.csv: {root}"
    }
    assert root.startswith("opened_at: expected a date") and "'22/08/2021'" in root
    assert statements.rejected_account_ids.to_list() == ["A2"] * 3


# --- the statements' history rule: an account's statements kept whole or not at all ----------


def test_a_rejected_statement_sets_aside_the_accounts_other_statements_naming_it():
    """A2's latest statement is bad: scoring the rest would read its November as its latest
    (a cured account seen still delinquent, or a delinquent one dropped)."""
    frame = tiny_statements().with_columns(
        pl.when(pl.int_range(pl.len()) == 5)
        .then(-1.0)
        .otherwise("amount_paid")
        .alias("amount_paid")
    )
    outcome = validate_table(_raw(frame), STATEMENTS_WHOLE, ["s.parquet"])
    reasons = _reasons(outcome)
    assert reasons[5] == "amount_paid: expected a value >= 0, got '-1.0'"
    for row in (3, 4):  # A2's other statements, each naming the row that was rejected
        assert reasons[row] == (
            f"{INCOMPLETE_HISTORY_REASON}: another of the account's statements was rejected, "
            "and this one is set aside with it so that the account is neither scored nor "
            "trained on with a gap in its history, see row 5 of s.parquet: amount_paid: "
            "expected a value >= 0, got '-1.0'"
        )
    assert set(reasons) == {3, 4, 5}
    assert outcome.accepted["account_id"].unique().sort().to_list() == ["A1", "A3"]
    assert outcome.rows_accepted + outcome.rows_rejected == outcome.rows_read == 9
    assert outcome.rejected_account_ids.to_list() == ["A2"] * 3


def test_an_exact_repeat_keeps_the_history_and_a_conflicting_one_sets_it_aside():
    repeat = tiny_statements().slice(4, 1)  # A2, February, the same values
    conflict = (
        tiny_statements().slice(7, 1).with_columns(pl.lit(40, dtype=pl.Int64).alias("dpd"))
    )  # A3, other dpd
    frame = pl.concat([tiny_statements(), repeat, conflict])
    outcome = validate_table(_raw(frame), STATEMENTS_WHOLE, ["s.parquet"])
    reasons = _reasons(outcome)
    assert reasons[9] == (
        "duplicate (account_id, cycle_end): same key and values as row 4 of s.parquet, "
        "which was kept"
    )
    assert reasons[10] == (
        f"{CONFLICT_REASON} (account_id, cycle_end): same key as row 7 of s.parquet, which "
        "was kept, but other values in dpd"
    )
    # A3's history is set aside whole (the kept row too: which of the two is right, nothing
    # says); A2 keeps its three statements
    assert {6, 7, 8} <= set(reasons)
    assert reasons[7].startswith(f"{INCOMPLETE_HISTORY_REASON}: another of the account's")
    assert "see row 10 of s.parquet: conflicting duplicate" in reasons[7]
    assert outcome.accepted["account_id"].to_list() == ["A1"] * 3 + ["A2"] * 3


@pytest.mark.parametrize("altered_first", [False, True])
def test_a_conflicting_account_row_sets_the_account_aside_whichever_comes_first(altered_first):
    """Two rows of one account with other values: keeping the first read made the account's
    credit limit and product depend on the files' order. Neither is kept; an exact repeat
    still keeps its row."""
    accounts = tiny_accounts()
    altered = accounts.slice(1, 1).with_columns(
        pl.col("credit_limit") * 0.05, pl.lit("bnpl").alias("product")
    )
    repeat = accounts.slice(2, 1)
    parts = [altered, accounts, repeat] if altered_first else [accounts, altered, repeat]
    outcome = validate_table(_raw(pl.concat(parts)), ACCOUNTS, ["a.parquet"])
    assert outcome.accepted["account_id"].to_list() == ["A1", "A3"]
    kept, other = (0, 2) if altered_first else (1, 3)  # rows of A2: the first read, the other
    reasons = _reasons(outcome)
    assert set(reasons) == {kept, other, 4}
    assert reasons[kept] == (
        f"{CONFLICT_REASON} (account_id): another row repeats this key with other values, and "
        f"which is right nothing says, so neither is kept, see row {other} of a.parquet "
        "(other values in product, credit_limit)"
    )
    assert reasons[other].startswith(f"{CONFLICT_REASON} (account_id): same key as row {kept}")
    a3 = 3 if altered_first else 2
    assert reasons[4].startswith(f"duplicate (account_id): same key and values as row {a3} ")
    assert outcome.rejected_account_ids.to_list() == ["A2", "A2", "A3"]
    assert outcome.rows_accepted + outcome.rows_rejected == outcome.rows_read == 5


def test_a_month_skipped_is_found_even_beside_a_month_with_two_statements():
    """A1's cycle day moved (two statements in January) and February is missing: as many rows
    as months spanned, but a month skipped all the same. A2's history is whole."""
    frame = tiny_statements().filter(pl.col("account_id") != "A3")
    moved = frame.filter(
        (pl.col("account_id") == "A1") & (pl.col("cycle_end") == date(2024, 2, 20))
    ).with_columns(
        pl.lit(date(2024, 1, 28)).alias("cycle_end"),
        pl.lit(datetime(2024, 1, 29)).alias("known_at"),
    )
    frame = pl.concat(
        [
            frame.filter(
                ~((pl.col("account_id") == "A1") & (pl.col("cycle_end") == date(2024, 2, 20)))
            ),
            moved,
        ]
    )
    outcome = validate_table(_raw(frame), STATEMENTS_WHOLE, ["s.parquet"])
    assert outcome.accepted["account_id"].to_list() == ["A2"] * 3
    reasons = outcome.rejects["reasons"].to_list()
    assert len(reasons) == 3
    assert all(
        r.startswith(f"{INCOMPLETE_HISTORY_REASON}: the account's statements skip a month")
        and r.endswith("got '2024-02 missing between 2024-01-28 and 2024-03-20'")
        for r in reasons
    ), reasons


def test_a_statement_sent_again_with_a_shifted_date_sets_the_account_aside():
    """Its key differs (cycle_end a day earlier) and no month is skipped, so it passed, and
    every feature counting months counted it twice (months delinquent in 12: 3 -> 6)."""
    frame = tiny_statements().filter(pl.col("account_id") != "A3")
    again = frame.filter(pl.col("account_id") == "A1").with_columns(
        pl.col("cycle_end") - pl.duration(days=1)
    )
    outcome = validate_table(_raw(pl.concat([frame, again])), STATEMENTS_WHOLE, ["s.parquet"])
    assert outcome.accepted["account_id"].to_list() == ["A2"] * 3
    reasons = outcome.rejects["reasons"].to_list()
    assert len(reasons) == 6  # A1's three statements and their three copies
    assert set(reasons) == {
        "statements sent twice: the account's statements hold the same figures under two "
        "cycle_end dates less than 28 days apart (one statement sent again with a shifted date "
        "would be counted twice, so all of them are set aside and the account is neither "
        "scored nor trained on with a month counted twice), got '2024-01-19 and 2024-01-20'"
    }


def test_a_copy_across_a_months_end_or_between_two_cycles_is_found_too():
    """Found by a helper: January's statement sent again dated 1 February beside February's
    own, and a copy with another statement between them (A, B, A), both passed."""
    frame = tiny_statements().filter(pl.col("account_id") == "A1")  # 2024-01-20, 02-20, 03-20
    january = frame.head(1)

    def dated(rows: pl.DataFrame, day: date) -> pl.DataFrame:  # known two days after
        known = datetime.combine(day, datetime.min.time()) + timedelta(days=2)
        return rows.with_columns(pl.lit(day).alias("cycle_end"), pl.lit(known).alias("known_at"))

    across = dated(january, date(2024, 2, 1))
    outcome = validate_table(_raw(pl.concat([frame, across])), STATEMENTS_WHOLE, ["s.parquet"])
    assert outcome.rows_accepted == 0
    assert outcome.rejects["reasons"][0].endswith("got '2024-01-20 and 2024-02-01'")
    # in one month, with the month's own statement (other figures) between the two
    february = frame.slice(1, 1)
    early, late = dated(february, date(2024, 2, 5)), dated(february, date(2024, 2, 25))
    middle = dated(frame.tail(1), date(2024, 2, 15))  # other figures between the two
    rows = pl.concat([january, early, middle, late, frame.tail(1)])
    outcome = validate_table(_raw(rows), STATEMENTS_WHOLE, ["s.parquet"])
    assert outcome.rows_accepted == 0
    assert outcome.rejects["reasons"][0].endswith("got '2024-02-05 and 2024-02-25'")


def test_a_dormant_account_whose_cycle_day_moves_is_kept():
    """All its statements alike (nothing due, paid or past due): two in a month are two
    cycles, not a copy (found by a helper: the account was set aside whole)."""
    days = [date(2024, 1, 2), date(2024, 2, 2), date(2024, 3, 2), date(2024, 3, 28)]
    frame = pl.DataFrame(
        {
            "account_id": ["Z1"] * 4,
            "cycle_end": days,
            "known_at": [datetime.combine(d, datetime.min.time()) for d in days],
            "amount_due": [0.0] * 4,
            "min_due": [0.0] * 4,
            "amount_paid": [0.0] * 4,
            "balance": [0.0] * 4,
            "dpd": [0] * 4,
        }
    )
    outcome = validate_table(_raw(frame), STATEMENTS_WHOLE, ["s.parquet"])
    assert outcome.rows_rejected == 0 and outcome.rows_accepted == 4


def test_two_statements_of_a_month_with_other_figures_are_kept():
    """A cycle day moved: two statements in January, each its own cycle."""
    frame = tiny_statements().filter(pl.col("account_id") == "A1")
    moved = frame.head(1).with_columns(
        pl.lit(date(2024, 1, 30)).alias("cycle_end"),
        pl.lit(datetime(2024, 2, 1)).alias("known_at"),
        pl.lit(120.0).alias("amount_due"),
    )
    outcome = validate_table(_raw(pl.concat([frame, moved])), STATEMENTS_WHOLE, ["s.parquet"])
    assert outcome.rows_rejected == 0 and outcome.rows_accepted == 4
