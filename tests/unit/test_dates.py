"""Dates, time zones, the extract date and the default as-of (features/dates.py), through the
row validation every job reads a portfolio with."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime

import polars as pl
import pytest

from rollrisk.errors import DataContractError, UserError
from rollrisk.features.dates import (
    COMPLETE_BOOK_SHARE,
    DateSettings,
    check_date_format,
    check_time_zone,
    default_as_of_choice,
)
from rollrisk.features.schemas import TABLES_BY_NAME
from rollrisk.features.validation import FILE_COLUMN, ROW_COLUMN, validate_table
from rollrisk.scoring.core import default_as_of
from tests.conftest import tiny_accounts, tiny_actions, tiny_statements, tiny_treatments

ACCOUNTS = TABLES_BY_NAME["accounts"]
# the date checks row by row: the statements' history rule (an account's statements kept whole
# or not at all, tests/unit/test_validation.py) would set aside the rest of a rejected row's
# account too
STATEMENTS = replace(TABLES_BY_NAME["statements"], history=False)
ACTIONS = TABLES_BY_NAME["collection_actions"]
TREATMENTS = TABLES_BY_NAME["treatments"]


def _raw(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.lit(0, dtype=pl.UInt32).alias(FILE_COLUMN),
        pl.int_range(pl.len(), dtype=pl.Int64).alias(ROW_COLUMN),
    )


def _reasons(outcome) -> dict[int, str]:
    return dict(outcome.rejects.select("row", "reasons").iter_rows())


def _accounts_with_opened_at(values: list[str]) -> pl.DataFrame:
    text = tiny_accounts().with_columns(pl.all().cast(pl.String))
    return text.with_columns(pl.Series("opened_at", values))


# --------------------------------------------------------------------------- formats


def test_a_day_first_date_in_the_first_row_does_not_change_how_the_others_are_read():
    frame = _accounts_with_opened_at(["22/08/2021", "2023-01-15", "2023-02-28"])
    outcome = validate_table(_raw(frame), ACCOUNTS, ["a.csv"])
    assert _reasons(outcome) == {0: "opened_at: expected a date YYYY-MM-DD, got '22/08/2021'"}
    assert outcome.accepted["opened_at"].to_list() == [date(2023, 1, 15), date(2023, 2, 28)]


@pytest.mark.parametrize(
    "value",
    # ("2024-03-26 00:00:00" is a date: a timestamp at midnight, as in Parquet, see below)
    ["2024/03/26", "26.03.2024", "2024-3-26", "20240326", "+2024-03-26"],
)
def test_only_yyyy_mm_dd_is_a_date_unless_another_format_is_declared(value):
    frame = _accounts_with_opened_at([value, "2023-01-15", "2023-01-15"])
    outcome = validate_table(_raw(frame), ACCOUNTS, ["a.csv"])
    assert _reasons(outcome) == {0: f"opened_at: expected a date YYYY-MM-DD, got '{value}'"}


def test_a_month_first_file_is_never_swapped_and_reads_right_once_declared():
    frame = _accounts_with_opened_at(["08/22/2021", "01/05/2023", "12/31/2022"])
    guessed = validate_table(_raw(frame), ACCOUNTS, ["a.csv"])
    assert guessed.rows_accepted == 0  # nothing read as 8 Jan or 1 May
    assert set(_reasons(guessed)) == {0, 1, 2}

    declared = validate_table(
        _raw(frame), ACCOUNTS, ["a.csv"], dates=DateSettings(date_format="%m/%d/%Y")
    )
    assert declared.rows_rejected == 0
    assert declared.accepted["opened_at"].to_list() == [
        date(2021, 8, 22),
        date(2023, 1, 5),
        date(2022, 12, 31),
    ]


def test_a_declared_format_is_read_besides_iso_and_values_it_cannot_read_are_rejected():
    frame = _accounts_with_opened_at(["2023-01-15", "31/12/2022", "12/31/2022"])
    outcome = validate_table(
        _raw(frame), ACCOUNTS, ["a.csv"], dates=DateSettings(date_format="%d/%m/%Y")
    )
    assert outcome.accepted["opened_at"].to_list() == [date(2023, 1, 15), date(2022, 12, 31)]
    assert _reasons(outcome) == {
        2: "opened_at: expected a date YYYY-MM-DD or %d/%m/%Y, got '12/31/2022'"
    }


def test_timestamps_in_text_take_the_contract_forms_only():
    values = [
        "2024-01-22 06:00:00",
        "2024-02-22T06:00:00.250",
        "2024-03-22",
        "2024-01-22 06:00",
        "22/01/2024 06:00:00",
        "2024-01-22 25:00:00",
    ]
    text = tiny_statements().head(6).with_columns(pl.all().cast(pl.String))
    text = text.with_columns(pl.Series("known_at", values))
    outcome = validate_table(_raw(text), STATEMENTS, ["s.csv"])
    assert outcome.accepted["known_at"].to_list() == [
        datetime(2024, 1, 22, 6),
        datetime(2024, 2, 22, 6, 0, 0, 250_000),
        datetime(2024, 3, 22),
    ]
    expected = "known_at: expected a timestamp YYYY-MM-DD[ HH:MM:SS]"
    assert _reasons(outcome) == {row: f"{expected}, got '{values[row]}'" for row in (3, 4, 5)}


def test_a_declared_format_also_reads_timestamps():
    text = tiny_statements().head(2).with_columns(pl.all().cast(pl.String))
    text = text.with_columns(
        pl.Series("cycle_end", ["20/01/2024", "2024-02-20"]),
        pl.Series("known_at", ["22/01/2024 06:00:00", "22/02/2024"]),
    )
    outcome = validate_table(
        _raw(text), STATEMENTS, ["s.csv"], dates=DateSettings(date_format="%d/%m/%Y")
    )
    assert outcome.rows_rejected == 0
    assert outcome.accepted["cycle_end"].to_list() == [date(2024, 1, 20), date(2024, 2, 20)]
    assert outcome.accepted["known_at"].to_list() == [
        datetime(2024, 1, 22, 6),
        datetime(2024, 2, 22),
    ]


@pytest.mark.parametrize(
    ("date_format", "words"),
    [
        ("%Y-%m", "has no day"),
        ("%d/%Y", "has no month"),
        ("%d/%m/%Y %H:%M", "time or zone directive"),
        ("%d/%m/%Y%z", "time or zone directive"),
        ("%d/%d/%Y", "has no month"),
        # YYYY-MM-DD is read first: every day up to 12 would be read as the month
        (
            "%Y-%d-%m",
            "writes 3 April 2024 as '2024-03-04', which the contract's YYYY-MM-DD "
            "reads as 4 March 2024: every date whose day is 12 or less would be read with day "
            "and month swapped",
        ),
    ],
)
def test_a_date_format_that_cannot_read_whole_dates_is_refused(date_format, words):
    with pytest.raises(UserError, match=words):
        check_date_format(date_format)


def test_a_usable_date_format_is_kept_and_a_time_zone_must_exist():
    assert check_date_format("%d.%m.%Y") == "%d.%m.%Y"
    assert check_time_zone("Asia/Shanghai") == "Asia/Shanghai"
    with pytest.raises(UserError, match="unknown time zone 'Mars/Olympus'"):
        check_time_zone("Mars/Olympus")
    with pytest.raises(UserError, match="unknown time zone"):
        DateSettings(time_zone="CST+8")


# --------------------------------------------------------------------------- time zones and types


def test_aware_timestamps_are_refused_without_a_zone_and_converted_with_one():
    aware = tiny_statements().with_columns(pl.col("known_at").dt.replace_time_zone("UTC"))
    with pytest.raises(DataContractError, match=r"known_at holds time-zone-aware .*\(UTC\)"):
        validate_table(_raw(aware), STATEMENTS, ["s.parquet"])
    outcome = validate_table(
        _raw(aware), STATEMENTS, ["s.parquet"], dates=DateSettings(time_zone="Asia/Shanghai")
    )
    # 06:00 UTC is 14:00 in Shanghai (UTC+8, no daylight saving)
    assert outcome.accepted["known_at"].to_list()[:2] == [
        datetime(2024, 1, 22, 14),
        datetime(2024, 2, 22, 14),
    ]
    assert outcome.accepted["known_at"].dtype == pl.Datetime("us")


def test_utc_offsets_in_text_are_rejected_without_a_zone_and_converted_with_one():
    text = tiny_statements().head(3).with_columns(pl.all().cast(pl.String))
    text = text.with_columns(
        pl.Series(
            "known_at", ["2024-01-22 06:00:00+08:00", "2024-02-22T06:00:00Z", "2024-03-22 06:00:00"]
        )
    )
    outcome = validate_table(_raw(text), STATEMENTS, ["s.csv"])
    assert set(_reasons(outcome)) == {0, 1}
    assert _reasons(outcome)[1].startswith("known_at: expected a timestamp without a UTC offset")
    converted = validate_table(
        _raw(text), STATEMENTS, ["s.csv"], dates=DateSettings(time_zone="Asia/Shanghai")
    )
    assert converted.accepted["known_at"].to_list() == [
        datetime(2024, 1, 22, 6),  # already +08:00
        datetime(2024, 2, 22, 14),  # UTC -> +08:00
        datetime(2024, 3, 22, 6),  # naive: already in the reporting zone
    ]


def test_a_date_stored_as_a_timestamp_is_a_date_only_at_midnight():
    frame = tiny_accounts().with_columns(
        pl.Series("opened_at", [datetime(2023, 1, 15), datetime(2023, 1, 15, 10), None])
    )
    frame = frame.with_columns(pl.col("opened_at").fill_null(datetime(2023, 2, 1)))
    outcome = validate_table(_raw(frame), ACCOUNTS, ["a.parquet"])
    assert outcome.accepted["opened_at"].to_list() == [date(2023, 1, 15), date(2023, 2, 1)]
    assert _reasons(outcome) == {
        1: "opened_at: expected a date YYYY-MM-DD (a timestamp only at midnight), "
        "got '2023-01-15 10:00:00.000000'"
    }


def test_a_date_stored_as_a_number_is_refused_not_read_as_days_since_1970():
    frame = tiny_accounts().with_columns(pl.lit(19_372).alias("opened_at"))
    with pytest.raises(
        DataContractError, match="opened_at is stored as Int32, which holds no date"
    ):
        validate_table(_raw(frame), ACCOUNTS, ["a.parquet"])


# --------------------------------------------------------------------------- the extract date


def test_rows_dated_after_the_extract_date_are_rejected_with_their_reason():
    extract = DateSettings(extract_date=date(2024, 3, 22))
    frame = pl.concat(
        [
            tiny_statements(),
            tiny_statements()
            .head(1)
            .with_columns(
                pl.lit(date(2099, 12, 20)).alias("cycle_end"),
                pl.lit(datetime(2099, 12, 22)).alias("known_at"),
            ),
        ]
    )
    outcome = validate_table(_raw(frame), STATEMENTS, ["s.parquet"], dates=extract)
    assert _reasons(outcome) == {
        9: "cycle_end: expected a date on or before the extract date 2024-03-22, got "
        "'2099-12-20'; known_at: expected a timestamp on or before the extract date "
        "2024-03-22, got '2099-12-22 00:00:00.000000'"
    }
    # the rows known on the extract day itself (06:00 on 22 March) are kept
    assert outcome.rows_accepted == 9


def test_a_two_digit_year_under_a_declared_four_digit_one_and_placeholders_are_rejected():
    """polars' %Y reads '25' as the year 25: an account opened 19/02/25 was read as opened
    in the year 25, accepted, and its months on book moved the score."""
    settings = DateSettings(date_format="%d/%m/%Y")
    text = _accounts_with_opened_at(["19/02/25", "01/01/1900", "15/01/2023"])
    outcome = validate_table(_raw(text), ACCOUNTS, ["a.csv"], dates=settings)
    words = (
        "opened_at: expected a date on or after 1950-01-01 (earlier is no date of a "
        "consumer-credit book: a two-digit year read as a whole year, 25 for 2025, or a "
        "placeholder such as 1900-01-01?), got "
    )
    assert _reasons(outcome) == {0: words + "'19/02/25'", 1: words + "'01/01/1900'"}
    # a Parquet timestamp too (a placeholder of the lender's system)
    frame = tiny_statements().with_columns(
        pl.when(pl.int_range(pl.len()) == 2)
        .then(pl.lit(datetime(1, 1, 1)))
        .otherwise(pl.col("known_at"))
        .alias("known_at")
    )
    outcome = validate_table(_raw(frame), STATEMENTS, ["s.parquet"], dates=DateSettings())
    assert list(_reasons(outcome)) == [2]
    assert _reasons(outcome)[2].startswith("known_at: expected a timestamp on or after 1950-01-01")


def test_a_two_digit_year_read_in_the_wrong_century_says_so():
    """%y reads 65 as 2065: an account opened in 1965 was rejected as after the extract date,
    with no word of the century."""
    settings = DateSettings(date_format="%d/%m/%y", extract_date=date(2026, 12, 3))
    text = _accounts_with_opened_at(["30/06/65", "15/01/23", "01/02/99"])
    reasons = _reasons(validate_table(_raw(text), ACCOUNTS, ["a.csv"], dates=settings))
    assert list(reasons) == [0]
    assert reasons[0] == (
        "opened_at: expected a date on or before the extract date 2026-12-03 (the declared %y "
        "reads a two-digit year 00-68 as 2000-2068: a year before 1969 needs a four-digit year, "
        "%Y), got '30/06/65'"
    )


def test_the_extract_day_ends_at_midnight_and_future_promises_and_plan_ends_are_allowed():
    extract = DateSettings(extract_date=date(2024, 3, 23))
    actions = tiny_actions().with_columns(
        pl.Series(
            "action_at",
            [datetime(2024, 3, 23, 23, 59, 59), datetime(2024, 3, 24), datetime(2024, 3, 23, 9)],
        ),
        pl.Series("promised_date", [None, date(2024, 4, 5), None]),
    )
    outcome = validate_table(_raw(actions), ACTIONS, ["c.parquet"], dates=extract)
    assert set(_reasons(outcome)) == {1}
    # a promise is for a later day; it is not dated by the extract
    late_promise = tiny_actions().with_columns(
        pl.Series("promised_date", [None, date(2030, 1, 1), None])
    )
    assert validate_table(_raw(late_promise), ACTIONS, ["c"], dates=extract).rows_rejected == 0

    # a plan agreed and recorded before the extract may start and end after it
    plan = tiny_treatments().with_columns(
        pl.lit(datetime(2024, 4, 1)).alias("start_at"),
        pl.lit(datetime(2025, 4, 1)).alias("end_at"),
        pl.lit(datetime(2024, 3, 20)).alias("known_at"),
    )
    assert validate_table(_raw(plan), TREATMENTS, ["t"], dates=extract).rows_rejected == 0
    recorded_later = plan.with_columns(pl.lit(datetime(2024, 3, 25)).alias("known_at"))
    assert validate_table(_raw(recorded_later), TREATMENTS, ["t"], dates=extract).rows_rejected == 1


def test_an_account_opened_after_the_extract_is_rejected():
    frame = tiny_accounts().with_columns(
        pl.Series("opened_at", [date(2023, 1, 15), date(2031, 1, 1), date(2023, 1, 15)])
    )
    outcome = validate_table(
        _raw(frame), ACCOUNTS, ["a"], dates=DateSettings(extract_date=date(2024, 6, 30))
    )
    assert _reasons(outcome) == {
        1: "opened_at: expected a date on or before the extract date 2024-06-30, got '2031-01-01'"
    }


# --------------------------------------------------------------------------- the default as-of


def _book(counts: dict[date, int]) -> pl.DataFrame:
    """Statements: ``count`` accounts (A0, A1, ...) with a cycle ending on each date."""
    rows = [
        {"account_id": f"A{index}", "cycle_end": cycle_end}
        for cycle_end, count in counts.items()
        for index in range(count)
    ]
    return pl.DataFrame(rows, schema={"account_id": pl.String, "cycle_end": pl.Date})


def test_one_stray_row_never_sets_the_default_as_of():
    statements = _book({date(2025, 10, 20): 600, date(2025, 11, 20): 610, date(2099, 12, 20): 1})
    chosen = default_as_of_choice(statements)
    assert chosen.as_of == date(2025, 11, 30) == default_as_of(statements)
    assert chosen.accounts == 610
    assert [book.month_end for book in chosen.skipped] == [date(2099, 12, 31)]
    note = chosen.note()
    assert note is not None and "2099-12 (1 account)" in note and "--as-of" in note


def test_a_partial_last_month_is_passed_over_and_a_complete_one_taken():
    share = COMPLETE_BOOK_SHARE
    partial = int(600 * share) - 1
    statements = _book(
        {date(2025, 10, 20): 600, date(2025, 11, 12): 600, date(2025, 12, 5): partial}
    )
    assert default_as_of_choice(statements).as_of == date(2025, 11, 30)
    complete = _book({date(2025, 10, 20): 600, date(2025, 11, 12): 600, date(2025, 12, 5): 540})
    chosen = default_as_of_choice(complete)
    assert chosen.as_of == date(2025, 12, 31)
    assert chosen.note() is None
    growing = _book({date(2025, 10, 20): 10, date(2025, 11, 12): 600})
    assert default_as_of_choice(growing).as_of == date(2025, 11, 30)


def test_a_single_month_is_its_own_default_and_no_statement_is_an_error():
    assert default_as_of_choice(_book({date(2024, 2, 29): 3})).as_of == date(2024, 2, 29)
    with pytest.raises(UserError, match="no statements"):
        default_as_of_choice(_book({}))


def test_a_date_written_as_a_timestamp_in_text_is_a_date_only_at_midnight():
    """As a Parquet timestamp: many exports write dates as "2024-01-31 00:00:00"."""
    text = tiny_accounts().with_columns(pl.all().cast(pl.String))
    text = text.with_columns(
        pl.Series(
            "opened_at", ["2023-01-15 00:00:00", "2023-01-15T00:00:00", "2023-01-15 10:00:00"]
        )
    )
    outcome = validate_table(_raw(text), TABLES_BY_NAME["accounts"], ["a.csv"])
    assert outcome.accepted["opened_at"].to_list() == [date(2023, 1, 15)] * 2
    assert _reasons(outcome) == {
        2: "opened_at: expected a date YYYY-MM-DD (a timestamp only at midnight), "
        "got '2023-01-15 10:00:00'"
    }


def test_a_declared_format_that_fails_hints_at_the_other_order_of_day_and_month(tmp_path):
    """Month-first dates read with a declared day-first format: the values past the 12th
    fail, and the others were read swapped; the hint names the other order."""
    from rollrisk.storage.loader import validate_portfolio

    folder = tmp_path / "p"
    folder.mkdir()
    tiny_accounts().with_columns(
        pl.Series("opened_at", ["08/22/2021", "01/05/2023", "12/31/2022"])
    ).write_csv(folder / "accounts.csv")
    tiny_statements().write_parquet(folder / "statements.parquet")
    report = validate_portfolio(folder, dates=DateSettings(date_format="%d/%m/%Y")).report
    assert "the declared %d/%m/%Y, never guessed" in report.summary()
    assert "(%m/%d/%Y?)" in report.summary()
