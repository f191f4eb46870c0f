"""`rollrisk validate` on real folders: clean, corrupted, truncated."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from rollrisk.cli import main
from rollrisk.errors import DataContractError
from rollrisk.storage.loader import load_portfolio, validate_portfolio


def test_clean_portfolio_validates_with_zero_rejects(tiny_portfolio: Path, tmp_path: Path, capsys):
    rejects = tmp_path / "rejects.csv"
    assert main(["validate", "--data", str(tiny_portfolio), "--rejects", str(rejects)]) == 0
    out = capsys.readouterr().out
    assert "OK: no rejects" in out
    assert not rejects.exists()


def test_corrupted_copy_gets_precise_rejects_and_reconciles(
    tiny_portfolio: Path, tmp_path: Path, capsys
):
    # statements as CSV with a wrong type, a negative amount, a duplicate month, an unknown account
    statements = pl.read_parquet(tiny_portfolio / "statements.parquet")
    (tiny_portfolio / "statements.parquet").unlink()
    text = statements.with_columns(pl.all().cast(pl.String))
    bad = pl.concat(
        [
            text,
            text.slice(0, 1),  # duplicate of row 0 -> row 9
            text.slice(1, 1).with_columns(pl.lit("A404").alias("account_id")),  # row 10
        ]
    ).with_columns(
        pl.when(pl.int_range(pl.len()) == 2)
        .then(pl.lit("lots"))
        .otherwise("amount_due")
        .alias("amount_due"),
        pl.when(pl.int_range(pl.len()) == 5)
        .then(pl.lit("-1"))
        .otherwise("amount_paid")
        .alias("amount_paid"),
    )
    bad.write_csv(tiny_portfolio / "statements.csv")
    rejects_path = tmp_path / "out" / "rejects.csv"
    assert main(["validate", "--data", str(tiny_portfolio), "--rejects", str(rejects_path)]) == 1
    rejects = pl.read_csv(rejects_path)
    assert rejects.columns == ["table", "file", "row", "key", "reasons"]
    by_row = {row: reason for row, reason in rejects.select("row", "reasons").iter_rows()}
    csv = tiny_portfolio / "statements.csv"

    def set_aside(row: int, reason: str) -> str:  # the account's other statements go with it
        return (
            "incomplete history: another of the account's statements was rejected, and this "
            "one is set aside with it so that the account is neither scored nor trained on "
            f"with a gap in its history, see row {row} of {csv}: {reason}"
        )

    lots, negative = (
        "amount_due: expected a number, got 'lots'",
        ("amount_paid: expected a value >= 0, got '-1.0'"),
    )
    assert by_row == {
        0: set_aside(2, lots),  # A1's other statements
        1: set_aside(2, lots),
        2: lots,
        3: set_aside(5, negative),  # A2's
        4: set_aside(5, negative),
        5: negative,
        # an exact repeat of a kept row leaves the history whole
        9: f"duplicate (account_id, cycle_end): same key and values as row 0 of {csv}, "
        "which was kept",
        10: "account_id: expected an account listed in accounts, got 'A404'",
    }
    assert set(rejects["file"]) == {str(tiny_portfolio / "statements.csv")}
    report = validate_portfolio(tiny_portfolio).report
    statements_report = next(t for t in report.tables if t.table == "statements")
    assert statements_report.rows_read == 11
    assert statements_report.rows_accepted == 3  # A3's
    assert (
        statements_report.rows_read
        == statements_report.rows_accepted + statements_report.rows_rejected
    )
    out = capsys.readouterr().out
    assert "NOT CLEAN: 8 rows rejected" in out


def test_truncated_parquet_part_is_a_file_error_and_other_parts_still_count(
    tiny_portfolio: Path, capsys
):
    statements = pl.read_parquet(tiny_portfolio / "statements.parquet")
    (tiny_portfolio / "statements.parquet").unlink()
    parts = tiny_portfolio / "statements"
    parts.mkdir()
    statements.slice(0, 6).write_parquet(parts / "part-00000.parquet")
    statements.slice(6).write_parquet(parts / "part-00001.parquet")
    whole = (parts / "part-00001.parquet").read_bytes()
    (parts / "part-00001.parquet").write_bytes(whole[: len(whole) // 2])

    assert main(["validate", "--data", str(tiny_portfolio)]) == 1
    out = capsys.readouterr().out
    assert f"FILE ERROR: {parts / 'part-00001.parquet'}: cannot read this Parquet file" in out
    report = validate_portfolio(tiny_portfolio).report
    assert next(t for t in report.tables if t.table == "statements").rows_accepted == 6
    with pytest.raises(DataContractError, match="part-00001.parquet: cannot read"):
        load_portfolio(tiny_portfolio)


def test_a_csv_cut_mid_line_is_a_file_error_not_a_shorter_value(tiny_portfolio: Path, capsys):
    """A copy cut short mostly ends mid-line: its last row would read as another valid value
    (a DPD of 45 cut to 4), so the file is refused; the same file whole is read."""
    statements = pl.read_parquet(tiny_portfolio / "statements.parquet")
    (tiny_portfolio / "statements.parquet").unlink()
    csv = tiny_portfolio / "statements.csv"
    statements.write_csv(csv)
    text = csv.read_text()
    assert text.endswith(",45\n")
    csv.write_text(text[:-2])  # the last row's dpd 45 -> 4, and no final line break
    assert main(["validate", "--data", str(tiny_portfolio)]) == 1
    out = capsys.readouterr().out
    assert f"FILE ERROR: {csv}: the file does not end with a line break" in out
    with pytest.raises(DataContractError, match="statements.csv: the file does not end"):
        load_portfolio(tiny_portfolio)
    csv.write_text(text)
    assert load_portfolio(tiny_portfolio).statements["dpd"].to_list()[-1] == 45


def test_optional_tables_may_be_absent(tiny_portfolio: Path):
    (tiny_portfolio / "collection_actions.parquet").unlink()
    (tiny_portfolio / "treatments.parquet").unlink()
    portfolio = load_portfolio(tiny_portfolio)
    assert portfolio.collection_actions is None and portfolio.treatments is None
    assert portfolio.report.absent_optional == ("collection_actions", "treatments")
    assert portfolio.statements.height == 9


def test_missing_required_table_and_folder_errors_speak_to_the_user(
    tiny_portfolio: Path, tmp_path: Path, capsys
):
    (tiny_portfolio / "statements.parquet").unlink()
    assert main(["validate", "--data", str(tiny_portfolio)]) == 2
    err = capsys.readouterr().err
    assert "required table 'statements' not found" in err
    assert main(["validate", "--data", str(tmp_path / "nowhere")]) == 2
    assert "portfolio folder does not exist" in capsys.readouterr().err


def test_a_table_given_twice_is_refused(tiny_portfolio: Path):
    shutil.copy(tiny_portfolio / "accounts.parquet", tmp := tiny_portfolio / "accounts.csv")
    assert tmp.exists()
    with pytest.raises(DataContractError, match="table 'accounts' is given more than once"):
        validate_portfolio(tiny_portfolio)


def test_a_rejects_path_holding_another_file_is_refused_and_kept(
    tiny_portfolio: Path, tmp_path: Path, capsys
):
    """validate replaces its rejects CSV, or removes it on a clean portfolio: a file that is
    not one (a typo in --rejects) is never replaced or removed."""
    other = tmp_path / "notes.txt"
    other.write_text("my notes\n")
    assert main(["validate", "--data", str(tiny_portfolio), "--rejects", str(other)]) == 2
    assert "is not a rejects CSV" in capsys.readouterr().err
    assert other.read_text() == "my notes\n"
    # its own rejects CSV from an earlier run is removed once the portfolio is clean
    own = tmp_path / "rejects.csv"
    own.write_text("table,file,row,key,reasons\nstatements,s.csv,0,k,r\n")
    assert main(["validate", "--data", str(tiny_portfolio), "--rejects", str(own)]) == 0
    assert not own.exists()


def test_rows_of_accounts_in_an_unreadable_accounts_file_name_that_file(
    tiny_portfolio: Path, tmp_path: Path
):
    """An accounts file with a file error (here a contract column missing) leaves no account
    to check the other tables against: their rows say the file is the cause, not only that
    the account is not listed."""
    accounts = tiny_portfolio / "accounts.parquet"
    pl.read_parquet(accounts).drop("credit_limit").write_parquet(accounts)
    rejects_path = tmp_path / "rejects.csv"
    portfolio = validate_portfolio(tiny_portfolio, rejects_path)
    assert any("credit_limit" in error for error in portfolio.report.file_errors)
    statements = pl.read_csv(rejects_path).filter(pl.col("table") == "statements")
    assert statements.height == 9
    assert (
        statements["reasons"]
        .str.ends_with(
            f"(not among the accounts read: {accounts} could not be read, see its file error, and "
            "fix it first)"
        )
        .all()
    )
    # the summary counts them as one kind of reason per table, not one line per account
    listed = [line for line in portfolio.report.summary().splitlines() if " x account_id: " in line]
    assert listed[0].strip() == (
        "9 x account_id: expected an account listed in accounts (not among the accounts read: "
        f"{accounts} could not be read, see its file error, and fix it first)"
    )
    assert len(listed) == len({line.strip() for line in listed})


def test_a_zero_byte_csv_is_one_file_error_not_also_an_empty_table(tiny_portfolio: Path, capsys):
    (tiny_portfolio / "collection_actions.parquet").unlink()
    empty = tiny_portfolio / "collection_actions.csv"
    empty.write_bytes(b"")
    assert main(["validate", "--data", str(tiny_portfolio)]) == 1
    out = capsys.readouterr().out
    assert f"FILE ERROR: {empty}: the file is empty (0 bytes, not even a header line" in out
    assert "present but empty" not in out


def test_two_portfolios_of_the_same_name_keep_their_own_default_rejects(
    tiny_portfolio: Path, tmp_path: Path, monkeypatch, capsys
):
    """The default rejects file is named after the folder and its path: validating a clean
    ``b/portfolio`` once removed the rejects of ``a/portfolio`` (the same default file)."""
    dirty, clean = tmp_path / "a" / "portfolio", tmp_path / "b" / "portfolio"
    shutil.copytree(tiny_portfolio, dirty)
    shutil.copytree(tiny_portfolio, clean)
    statements = pl.read_parquet(dirty / "statements.parquet")
    statements.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(-1.0)
        .otherwise("amount_paid")
        .alias("amount_paid")
    ).write_parquet(dirty / "statements.parquet")
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "--data", str(dirty)]) == 1
    written = [
        line for line in capsys.readouterr().out.splitlines() if "rejects written to" in line
    ]
    (dirty_rejects,) = (tmp_path / "runs" / "validate").glob("portfolio-*/rejects.csv")
    assert written == [f"  rejects written to {dirty_rejects.relative_to(tmp_path)}"]
    assert main(["validate", "--data", str(clean)]) == 0
    assert dirty_rejects.is_file()  # still there: the clean folder's default is another file
    assert pl.read_csv(dirty_rejects).height >= 1


def test_validate_holds_the_rejects_against_the_config_s_limit_as_the_other_jobs_do(
    tiny_portfolio: Path, tmp_path: Path, capsys
):
    """A config with data.max_reject_rate 0.5 lets the other jobs go on; validate, which took
    no --config, said every other job would stop (at the built-in 1 %)."""
    statements = pl.read_parquet(tiny_portfolio / "statements.parquet")
    statements.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(-1.0)
        .otherwise("amount_paid")
        .alias("amount_paid")
    ).write_parquet(tiny_portfolio / "statements.parquet")
    rejects = ["--rejects", str(tmp_path / "rejects.csv")]
    assert main(["validate", "--data", str(tiny_portfolio), *rejects]) == 1
    assert "ABOVE the reject limit of 1.00% (--max-reject-rate)" in capsys.readouterr().out
    config = tmp_path / "lenient.yaml"
    config.write_text("data:\n  max_reject_rate: 0.5\n")
    assert main(["validate", "--data", str(tiny_portfolio), *rejects, "--config", str(config)]) == 1
    assert (
        f"within the reject limit of 50.00% (data.max_reject_rate of {config}; --max-reject-rate "
        "overrides it): other jobs set these rows aside and go on" in capsys.readouterr().out
    )
    argv = ["validate", "--data", str(tiny_portfolio), *rejects, "--config", str(config)]
    assert main([*argv, "--max-reject-rate", "0"]) == 1
    assert "ABOVE the reject limit of 0.00% (--max-reject-rate)" in capsys.readouterr().out
    config.write_text("data:\n  max_reject_rat: 0.5\n")  # a bad config: refused before reading
    assert main(argv) == 2
    assert "max_reject_rat" in capsys.readouterr().err
