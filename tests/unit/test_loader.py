"""The portfolio loader: which files of a folder are read, ignored or reported, and how parts
that disagree in types meet (storage/loader.py)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from rollrisk.errors import DataContractError
from rollrisk.features.dates import DateSettings
from rollrisk.storage.loader import (
    find_table_files,
    list_table_files,
    load_portfolio,
    validate_portfolio,
)
from tests.conftest import tiny_accounts, tiny_statements


def _portfolio(root: Path, parts: dict[str, pl.DataFrame]) -> Path:
    """accounts.parquet and a statements/ folder holding ``parts`` (file name -> rows)."""
    folder = root / "portfolio"
    (folder / "statements").mkdir(parents=True)
    tiny_accounts().write_parquet(folder / "accounts.parquet")
    for name, rows in parts.items():
        path = folder / "statements" / name
        if name.lower().endswith(".csv"):
            rows.write_csv(path)
        else:
            rows.write_parquet(path)
    return folder


def test_parquet_parts_are_found_by_any_parquet_suffix_in_any_letter_case(tmp_path):
    rows = tiny_statements()
    folder = _portfolio(
        tmp_path,
        {"p0.parquet": rows.slice(0, 3), "p1.PARQUET": rows.slice(3, 3), "p2.pq": rows.slice(6)},
    )
    assert [p.name for p in find_table_files(folder, "statements")] == [
        "p0.parquet",
        "p1.PARQUET",
        "p2.pq",
    ]
    portfolio = load_portfolio(folder)
    assert portfolio.statements.height == 9


def test_marker_files_are_listed_as_ignored_and_any_other_file_is_a_file_error(tmp_path):
    folder = _portfolio(tmp_path, {"p0.parquet": tiny_statements()})
    (folder / "statements" / "_SUCCESS").write_text("")
    (folder / "statements" / ".p0.parquet.crc").write_bytes(b"crc")
    (folder / "statements" / "p1.csv.gz").write_bytes(b"\x1f\x8b")
    (folder / "statements" / "year=2024").mkdir()
    listing = list_table_files(folder, "statements")
    assert [p.name for p in listing.files] == ["p0.parquet"]
    assert sorted(p.name for p in listing.ignored) == [".p0.parquet.crc", "_SUCCESS"]
    report = validate_portfolio(folder).report
    assert len(report.file_errors) == 2
    assert any("p1.csv.gz: not a part file of table 'statements'" in e for e in report.file_errors)
    assert any("year=2024: subfolder" in e for e in report.file_errors)
    assert "_SUCCESS" in report.summary()
    with pytest.raises(DataContractError) as raised:
        load_portfolio(folder)
    assert "\n" not in str(raised.value)  # one line, every error named
    assert "2 file errors" in str(raised.value) and "p1.csv.gz" in str(raised.value)


def test_a_file_meant_as_a_table_but_not_read_is_reported(tmp_path):
    folder = _portfolio(tmp_path, {"p0.parquet": tiny_statements()})
    (folder / "collection_actions.csv.gz").write_bytes(b"\x1f\x8b")
    (folder / "Treatments.csv").write_text("account_id\n")
    (folder / "notes.txt").write_text("not a table")
    report = validate_portfolio(folder).report
    assert sorted(error.split(":")[0].rsplit("/", 1)[-1] for error in report.file_errors) == [
        "Treatments.csv",
        "collection_actions.csv.gz",
    ]


@pytest.mark.parametrize(
    "name", ["collection_action.csv", "collection-actions.csv", "Collection Actions.parquet",
             "colection_actions", "treatment.csv", "Treatment.pq"],
)  # fmt: skip
def test_a_table_file_with_a_near_miss_of_a_table_name_is_a_file_error(tmp_path, name):
    """Found by a new user: collection_action.csv was taken as "collection_actions: absent"
    and validate said OK, losing every feature of the table to a typo."""
    folder = _portfolio(tmp_path, {"p0.parquet": tiny_statements()})
    if "." in name:
        (folder / name).write_text("account_id\n")
    else:  # a folder of parts
        (folder / name).mkdir()
        (folder / name / "p0.csv").write_text("account_id\n")
    report = validate_portfolio(folder).report
    (error,) = report.file_errors
    assert error.startswith(f"{folder / name}: not read as table '")


def test_other_files_beside_the_tables_are_not_taken_for_them(tmp_path):
    folder = _portfolio(tmp_path, {"p0.parquet": tiny_statements()})
    for name in ("statements_2024_backup.csv", "accounts_old.parquet", "scores.parquet",
                 "notes.txt", "treatment_notes.txt"):  # fmt: skip
        (folder / name).write_text("x\n")
    (folder / "truth").mkdir()
    assert validate_portfolio(folder).report.file_errors == ()


def test_a_required_table_in_an_unread_form_names_the_file(tmp_path):
    folder = tmp_path / "portfolio"
    folder.mkdir()
    tiny_accounts().write_parquet(folder / "accounts.parquet")
    (folder / "statements.json").write_text("{}")
    with pytest.raises(DataContractError, match=r"required table 'statements' not found.*json"):
        validate_portfolio(folder)


def test_a_missing_required_table_names_the_files_that_hold_its_name(tmp_path):
    """A renamed copy (``statements_bak/``, ``old_statements.parquet``) is not a near miss of
    the name, but a user looking for why the table is missing needs to see it."""
    folder = tmp_path / "portfolio"
    folder.mkdir()
    tiny_accounts().write_parquet(folder / "accounts.parquet")
    (folder / "statements_bak").mkdir()
    tiny_statements().write_parquet(folder / "statements_bak" / "p0.parquet")
    tiny_statements().write_parquet(folder / "old_statements.parquet")
    (folder / "scores.parquet").write_text("x\n")
    with pytest.raises(DataContractError) as raised:
        validate_portfolio(folder)
    message = str(raised.value)
    assert "required table 'statements' not found" in message
    assert (
        "found old_statements.parquet, statements_bak: a table is read only under its own name"
        in message
    )
    assert "scores.parquet" not in message


def test_every_missing_required_table_and_every_other_file_problem_are_named_at_once(tmp_path):
    """A folder with several problems gets one error naming them all: a user should not have
    to fix it one run at a time."""
    folder = tmp_path / "portfolio"
    folder.mkdir()
    (folder / "collection_actions.csv.gz").write_bytes(b"")
    with pytest.raises(DataContractError) as raised:
        validate_portfolio(folder)
    message = str(raised.value)
    assert "required table 'accounts' not found" in message
    assert "required table 'statements' not found" in message
    assert "also: " in message and "collection_actions.csv.gz" in message


def test_a_date_column_typed_differently_across_parts_is_read_in_full(tmp_path):
    rows = tiny_statements()
    folder = _portfolio(
        tmp_path,
        {
            "p0.parquet": rows.slice(0, 3),
            "p1.parquet": rows.slice(3, 3).with_columns(
                pl.col("cycle_end").cast(pl.String), pl.col("known_at").cast(pl.String)
            ),
            "p2.parquet": rows.slice(6).with_columns(
                pl.col("cycle_end").cast(pl.Datetime("ns")), pl.col("known_at").cast(pl.Date)
            ),
            "p3.csv": rows.slice(0, 0),
        },
    )
    portfolio = load_portfolio(folder)
    assert portfolio.report.rows_rejected == 0
    assert portfolio.statements["cycle_end"].to_list() == rows["cycle_end"].to_list()
    assert portfolio.statements["known_at"].to_list()[:6] == rows["known_at"].to_list()[:6]
    # a Date in a timestamp column is midnight of that day
    assert portfolio.statements["known_at"].dt.hour().to_list()[6:] == [0, 0, 0]


def test_a_timestamp_with_a_time_of_day_in_a_date_column_of_a_mixed_table_is_a_row_reject(
    tmp_path,
):
    rows = tiny_statements()
    late = rows.slice(3).with_columns(pl.col("cycle_end").cast(pl.Datetime) + pl.duration(hours=9))
    folder = _portfolio(
        tmp_path,
        {
            "p0.parquet": rows.slice(0, 3).with_columns(pl.col("cycle_end").cast(pl.String)),
            "p1.parquet": late,
        },
    )
    report = validate_portfolio(folder).report
    statements = next(t for t in report.tables if t.table == "statements")
    assert statements.rows_rejected == 6
    assert statements.top_reasons[0] == (
        "cycle_end: expected a date YYYY-MM-DD (a timestamp only at midnight)",
        6,
    )


def test_extra_columns_of_mixed_scalar_types_are_carried_as_text(tmp_path):
    rows = tiny_statements()
    folder = _portfolio(
        tmp_path,
        {
            "p0.parquet": rows.slice(0, 4).with_columns(pl.lit(7).alias("branch")),
            "p1.parquet": rows.slice(4).with_columns(pl.lit("north").alias("branch")),
        },
    )
    portfolio = load_portfolio(folder)
    assert portfolio.statements["branch"].to_list() == ["7"] * 4 + ["north"] * 5


def test_extra_columns_whose_types_cannot_meet_are_reported_by_name_file_and_type(tmp_path):
    rows = tiny_statements()
    folder = _portfolio(
        tmp_path,
        {
            "p0.parquet": rows.slice(0, 4).with_columns(pl.lit(7).alias("tags")),
            "p1.parquet": rows.slice(4).with_columns(pl.lit(["a", "b"]).alias("tags")),
        },
    )
    report = validate_portfolio(folder).report
    assert report.rows_rejected == 0  # the rows are still checked; the column is the error
    (error,) = report.file_errors
    assert "extra column tags has types that cannot be reconciled" in error
    assert "p0.parquet: Int32" in error and "p1.parquet: List(String)" in error


def test_a_contract_column_holding_lists_is_a_file_error_not_a_crash(tmp_path):
    rows = tiny_statements().with_columns(pl.concat_list("dpd").alias("dpd"))
    folder = _portfolio(tmp_path, {"p0.parquet": rows})
    (error,) = validate_portfolio(folder).report.file_errors
    assert "column dpd is stored as List(Int64)" in error
    assert "one whole number per row" in error


def test_a_list_typed_extra_column_is_carried_through(tmp_path):
    rows = tiny_statements().with_columns(pl.lit(["x"]).alias("flags"))
    folder = _portfolio(tmp_path, {"p0.parquet": rows})
    portfolio = load_portfolio(folder)
    assert portfolio.statements["flags"].to_list() == [["x"]] * 9


def test_the_report_says_how_dates_were_read(tmp_path):
    folder = _portfolio(tmp_path, {"p0.parquet": tiny_statements()})
    given = validate_portfolio(
        folder,
        dates=DateSettings(
            date_format="%d/%m/%Y", time_zone="Asia/Shanghai", extract_date=date(2024, 12, 31)
        ),
    ).report
    assert given.dates_line() == (
        "dates: YYYY-MM-DD or %d/%m/%Y; time zone: Asia/Shanghai; extract date 2024-12-31 "
        "(given; rows dated after it are rejected)"
    )
    default = validate_portfolio(folder).report
    assert default.dates.extract_date == date.today()
    assert not default.extract_date_given
