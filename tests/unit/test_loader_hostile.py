"""The loader against hostile folders: a repeated column name, tables with a header only."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rollrisk.errors import DataContractError
from rollrisk.storage.loader import load_portfolio, validate_portfolio
from tests.conftest import tiny_accounts, tiny_actions, tiny_statements


def _folder(root: Path) -> Path:
    folder = root / "portfolio"
    folder.mkdir()
    tiny_accounts().write_csv(folder / "accounts.csv")
    tiny_statements().write_csv(folder / "statements.csv")
    return folder


def test_a_csv_header_that_repeats_a_column_is_a_file_error(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    lines = (folder / "accounts.csv").read_text().splitlines()
    lines[0] = lines[0].replace("currency", "credit_limit")  # the second one holds CNY
    (folder / "accounts.csv").write_text("\n".join(lines) + "\n")
    errors = validate_portfolio(folder).report.file_errors
    assert len(errors) == 1
    assert errors[0].startswith(f"{folder / 'accounts.csv'}: column credit_limit appears more")
    with pytest.raises(DataContractError, match="credit_limit appears more than once"):
        load_portfolio(folder)


def test_a_repeated_extra_column_is_refused_too(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    tiny_accounts().with_columns(note=pl.lit("x")).write_csv(folder / "accounts.csv")
    text = (folder / "accounts.csv").read_text().splitlines()
    text = [f"{line},{line.rsplit(',', 1)[1]}" for line in text]  # note,note
    (folder / "accounts.csv").write_text("\n".join(text) + "\n")
    (error,) = validate_portfolio(folder).report.file_errors
    assert "column note appears more than once" in error


def test_a_parquet_file_with_a_repeated_column_names_it(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "accounts.csv").unlink()
    table = tiny_accounts().to_arrow()
    names = [*table.column_names, "credit_limit"]
    columns = [*table.columns, pa.array([-5.0] * table.num_rows)]
    pq.write_table(pa.Table.from_arrays(columns, names=names), folder / "accounts.parquet")
    (error,) = validate_portfolio(folder).report.file_errors
    assert error.startswith(f"{folder / 'accounts.parquet'}: column credit_limit appears more")
    assert "truncated" not in error


@pytest.mark.parametrize("table", ["accounts", "statements"])
def test_a_required_table_with_a_header_only_is_a_file_error(tmp_path: Path, table) -> None:
    folder = _folder(tmp_path)
    header = (folder / f"{table}.csv").read_text().splitlines()[0]
    (folder / f"{table}.csv").write_text(header + "\n")
    report = validate_portfolio(folder).report
    assert not report.ok
    assert f"required table '{table}' has a header but no rows" in "\n".join(report.file_errors)


def test_an_accounts_file_with_a_header_only_is_named_as_the_cause_of_the_knock_ons(
    tmp_path: Path,
) -> None:
    """Found by a new user: with a header-only accounts.csv the other tables' rows were
    rejected without the hint that the accounts file is the cause, and full optional tables
    were called "present but empty"."""
    folder = _folder(tmp_path)
    tiny_actions().write_csv(folder / "collection_actions.csv")
    header = (folder / "accounts.csv").read_text().splitlines()[0]
    (folder / "accounts.csv").write_text(header + "\n")
    outcome = validate_portfolio(folder)
    summary = outcome.report.summary()
    assert "collection_actions: present but empty" not in summary
    actions = tiny_actions().height
    assert f"collection_actions: every one of its {actions:,} rows rejected" in summary
    reasons = [reason for t in outcome.report.tables for reason, _ in t.top_reasons]
    assert any("accounts.csv could not be read, see its file error" in r for r in reasons)


def test_an_optional_table_with_a_header_only_counts_as_absent(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    tiny_actions().head(0).write_csv(folder / "collection_actions.csv")
    portfolio = load_portfolio(folder)
    assert portfolio.collection_actions is None
    assert portfolio.empty_tables == ("collection_actions",)
    assert "collection_actions: present but empty" in portfolio.report.summary()


def test_an_optional_table_with_rows_is_kept(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    tiny_actions().write_csv(folder / "collection_actions.csv")
    portfolio = load_portfolio(folder)
    assert portfolio.collection_actions is not None
    assert portfolio.collection_actions.height == tiny_actions().height
    assert portfolio.empty_tables == ()


def test_rows_dated_before_their_account_opened_are_rejected_naming_opened_at(
    tmp_path: Path,
) -> None:
    folder = _folder(tmp_path)
    # A2 opened after its January and February statements (2024-01-20, 2024-02-20)
    late = tiny_accounts().with_columns(
        opened_at=pl.when(pl.col("account_id") == "A2")
        .then(pl.date(2024, 2, 21))
        .otherwise(pl.col("opened_at"))
    )
    late.write_csv(folder / "accounts.csv")
    tiny_actions().write_csv(folder / "collection_actions.csv")  # A2's are on 2024-02-23, 25
    portfolio = validate_portfolio(folder)
    statements = portfolio.report.tables[1]
    assert (statements.rows_read, statements.rows_rejected) == (9, 2)
    (reason, count) = statements.top_reasons[0]
    assert count == 2
    assert reason == "cycle_end: expected a date on or after the account's opened_at"
    assert portfolio.report.tables[2].rows_rejected == 0  # actions of 2024-02-23 on: kept
    kept = portfolio.statements.filter(pl.col("account_id") == "A2")["cycle_end"].to_list()
    assert [str(day) for day in kept] == ["2024-03-20"]


def test_the_before_opening_reason_names_both_dates(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    tiny_accounts().with_columns(opened_at=pl.date(2024, 3, 1)).write_csv(folder / "accounts.csv")
    rejects_path = tmp_path / "rejects.csv"
    validate_portfolio(folder, rejects_path)
    rejects = pl.read_csv(rejects_path)
    assert rejects.height == 6  # January and February of three accounts
    assert rejects["reasons"][0] == (
        "cycle_end: expected a date on or after the account's opened_at, got '2024-01-20' "
        "for an account opened on '2024-03-01'"
    )


def test_an_id_that_matches_once_stripped_hints_at_whitespace(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    spaced = tiny_accounts().with_columns(pl.col("account_id") + " ")
    spaced.write_csv(folder / "accounts.csv")
    portfolio = validate_portfolio(folder)
    (reason, count) = portfolio.report.tables[1].top_reasons[0]
    assert count == 9
    assert "surrounding whitespace" in reason


def test_an_unlisted_id_keeps_the_plain_reason(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    tiny_accounts().filter(pl.col("account_id") != "A3").write_csv(folder / "accounts.csv")
    (reason, count) = validate_portfolio(folder).report.tables[1].top_reasons[0]
    assert (reason, count) == ("account_id: expected an account listed in accounts", 3)


def test_a_file_given_as_the_portfolio_folder_is_called_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(DataContractError, match="afile: is a file, not a portfolio folder"):
        validate_portfolio(afile)


def test_a_looping_portfolio_link_is_called_one(tmp_path: Path) -> None:
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    with pytest.raises(DataContractError, match="loop1: portfolio folder is a broken or looping"):
        validate_portfolio(tmp_path / "loop1")


def test_a_table_file_linked_to_itself_is_called_a_looping_link(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "accounts.csv").unlink()
    (folder / "accounts.csv").symlink_to(folder / "accounts.csv")
    with pytest.raises(DataContractError) as raised:
        validate_portfolio(folder)
    assert "accounts.csv: broken or looping link (it leads to no file)" in str(raised.value)
    assert "not read as table" not in str(raised.value)


def test_every_row_of_a_required_table_rejected_names_the_cause(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    tiny_statements().with_columns(dpd=pl.lit(-1)).write_csv(folder / "statements.csv")
    with pytest.raises(DataContractError) as raised:
        load_portfolio(folder)
    message = str(raised.value)
    assert "all 9 rows of required table 'statements' were rejected" in message
    assert "most common reason: dpd:" in message
    assert "\n" not in message


def test_a_malformed_registry_uri_lists_the_accepted_forms() -> None:
    from rollrisk.errors import UserError
    from rollrisk.storage.registry import load_roll_model

    for uri in ("models:/rollrisk-roll-to-default@", "models:/", "models:/a/b/c"):
        with pytest.raises(UserError, match=r"is malformed: expected models:/NAME@ALIAS"):
            load_roll_model(uri)


def test_a_model_path_that_is_no_model_folder_says_so_without_naming_the_store(
    tmp_path: Path, monkeypatch
) -> None:
    from rollrisk.errors import UserError
    from rollrisk.storage.registry import load_roll_model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    missing = tmp_path / "nonexistent_model_dir"
    for uri in (str(missing), missing.as_uri()):
        with pytest.raises(UserError) as raised:
            load_roll_model(uri)
        message = str(raised.value)
        assert message.startswith(f"cannot load model {uri!r}: no model folder at {missing} (")
        assert "holds the MLmodel file" in message
        assert "sqlite" not in message and "No such artifact" not in message

    logged = tmp_path / "run" / "artifacts"  # a folder above the model folder
    logged.mkdir(parents=True)
    (logged / "MLmodel").write_text("flavors: {}\n")
    with pytest.raises(UserError) as raised:
        load_roll_model(str(tmp_path / "run"))
    message = str(raised.value)
    assert f"{tmp_path / 'run'} is not a model folder (no MLmodel file in it;" in message
    assert f"the model folder inside it is {logged}" in message
    assert "sqlite" not in message

    with pytest.raises(UserError) as raised:  # a model folder whose files are not readable
        load_roll_model(str(logged))
    message = str(raised.value)
    assert message.startswith(f"cannot load model {str(logged)!r}: ")
    assert "sqlite" not in message


def test_a_fractional_dpd_stored_as_a_parquet_decimal_is_rejected_not_cut(tmp_path: Path) -> None:
    """A Decimal column was cast to a whole number by cutting: 15.5 days past due was read as
    15, accepted; the same value as text or as a float is rejected."""
    folder = _folder(tmp_path)
    (folder / "statements.csv").unlink()
    statements = tiny_statements().with_columns(
        pl.when(pl.int_range(pl.len()) == 1)  # A1's second statement
        .then(pl.lit(15.5))
        .otherwise(pl.col("dpd").cast(pl.Float64))
        .cast(pl.Decimal(10, 1))
        .alias("dpd")
    )
    statements.write_parquet(folder / "statements.parquet")
    loaded = validate_portfolio(folder)
    (report,) = [table for table in loaded.report.tables if table.table == "statements"]
    assert ("dpd: expected a whole number", 1) in report.top_reasons
    assert report.rows_rejected == 3  # A1's history is set aside whole
    # the whole values of the same Decimal column are read as they are
    assert loaded.statements["dpd"].to_list() == [0, 15, 45, 0, 15, 45]


def test_an_id_column_stored_as_floats_is_a_file_error(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "accounts.csv").unlink()
    accounts = tiny_accounts().with_columns(
        pl.Series("account_id", [1.0, 2.0, 3.0]), pl.Series("borrower_id", ["B1", "B2", "B3"])
    )
    accounts.write_parquet(folder / "accounts.parquet")
    errors = validate_portfolio(folder).report.file_errors
    assert errors == (
        f"{folder / 'accounts.parquet'}: column account_id is stored as Float64, a number with "
        "a fraction, but the contract's account_id is text: such a number cannot hold an id or "
        "a code exactly (123 would read as '123.0' or '123.0000000000', and a float loses "
        "digits past the 15th, so ids would no longer match the lender's); write the column as "
        "text, or as whole numbers",
    )
    # a decimal with a fraction too (a Spark export of an Oracle NUMBER); whole ones are read
    accounts.with_columns(pl.col("account_id").cast(pl.Decimal(38, 10))).write_parquet(
        folder / "accounts.parquet"
    )
    (error,) = validate_portfolio(folder).report.file_errors
    assert "column account_id is stored as Decimal(precision=38, scale=10)" in error
