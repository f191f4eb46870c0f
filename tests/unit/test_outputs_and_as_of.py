"""Where a job may write (never inside its --data folder), the output lock's folder after a
run that published nothing, the as-of bounds of a portfolio, and the Python API's reject
limit (issue 14 follow-up)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

import rollrisk
from rollrisk.errors import UserError
from rollrisk.features.dates import check_as_of
from rollrisk.storage.atomic_output import LOCK, check_output_outside_data, output_lock
from tests.conftest import tiny_accounts, tiny_statements


@pytest.mark.parametrize(
    ("relative", "words"),
    [
        (".", "is the portfolio folder"),
        ("accounts.parquet", "is inside the portfolio folder"),
        ("statements/part-0.parquet", "is inside the portfolio folder"),
        ("..", "holds the portfolio folder"),
        ("../portfolio/./x.csv", "is inside the portfolio folder"),
    ],
)
def test_an_output_in_or_around_the_portfolio_is_refused(tmp_path, relative, words):
    data = tmp_path / "portfolio"
    data.mkdir()
    with pytest.raises(UserError) as raised:
        check_output_outside_data(data, data / relative, "--out")
    message = str(raised.value)
    assert words in message and "--out" in message and str(data) in message
    assert "\n" not in message


def test_an_output_beside_the_portfolio_is_allowed(tmp_path):
    data = tmp_path / "portfolio"
    data.mkdir()
    check_output_outside_data(data, tmp_path / "portfolio-scores", "--out")  # a prefix only
    check_output_outside_data(data, tmp_path / "runs" / "scores", "--out")


def test_a_link_to_the_portfolio_is_refused(tmp_path):
    data = tmp_path / "portfolio"
    data.mkdir()
    (tmp_path / "link").symlink_to(data, target_is_directory=True)
    with pytest.raises(UserError, match="is the portfolio folder"):
        check_output_outside_data(data, tmp_path / "link", "--out")


def test_a_run_that_publishes_nothing_leaves_no_folder_it_made(tmp_path):
    out = tmp_path / "new" / "scores"
    with pytest.raises(RuntimeError), output_lock(out):
        raise RuntimeError("the run failed")
    assert not (tmp_path / "new").exists()


def test_a_folder_that_was_there_keeps_its_lock_file(tmp_path):
    out = tmp_path / "scores"
    out.mkdir()
    with pytest.raises(RuntimeError), output_lock(out):
        raise RuntimeError("the run failed")
    assert (out / LOCK).is_file()


def test_a_folder_with_a_result_is_kept(tmp_path):
    out = tmp_path / "scores"
    with output_lock(out):
        (out / "result.txt").write_text("published")
    assert (out / "result.txt").read_text() == "published"


# --------------------------------------------------------------------------- as-of bounds


def test_an_as_of_within_the_statement_months_is_taken():
    statements = tiny_statements()  # cycle ends 2024-01-20 .. 2024-03-20
    check_as_of(statements, date(2024, 1, 1))
    check_as_of(statements, date(2024, 3, 31))


def test_an_as_of_after_the_latest_month_names_it_and_the_default():
    with pytest.raises(UserError) as raised:
        check_as_of(tiny_statements(), date(2024, 4, 1))
    message = str(raised.value)
    assert "--as-of 2024-04-01" in message
    assert "latest month with statements, 2024-03" in message
    assert "up to 2024-03-31" in message
    assert "the default would be 2024-03-31" in message


def test_mid_month_as_ofs_follow_the_same_bounds():
    statements = tiny_statements()  # cycle ends 2024-01-20 .. 2024-03-20
    check_as_of(statements, date(2024, 2, 14))
    check_as_of(statements, date(2024, 3, 25))  # after the last cycle end, in its month
    with pytest.raises(UserError, match="--as-of 2024-04-15 is after .* latest month with "):
        check_as_of(statements, date(2024, 4, 15))
    with pytest.raises(UserError, match="--as-of 2023-12-15 is before .* first month with "):
        check_as_of(statements, date(2023, 12, 15))


def test_an_as_of_before_the_first_month_names_it():
    with pytest.raises(UserError, match="first month with statements, 2024-01"):
        check_as_of(tiny_statements(), date(2023, 12, 31), name="as_of")


# --------------------------------------------------------------------------- the API's reject limit


def _half_rejected(tmp_path: Path) -> Path:
    """A portfolio whose accounts A1 and A2 break the contract (a negative credit limit)."""
    folder = tmp_path / "portfolio"
    folder.mkdir()
    accounts = tiny_accounts().with_columns(
        pl.when(pl.col("account_id") == "A3")
        .then(pl.col("credit_limit"))
        .otherwise(-1.0)
        .alias("credit_limit")
    )
    accounts.write_parquet(folder / "accounts.parquet")
    tiny_statements().write_parquet(folder / "statements.parquet")
    return folder


def test_load_portfolio_refuses_a_book_shrunk_past_the_limit(tmp_path):
    with pytest.raises(UserError) as raised:
        rollrisk.load_portfolio(_half_rejected(tmp_path))
    message = str(raised.value)
    assert "too much of the portfolio was rejected" in message
    assert "max_reject_rate" in message and "--max-reject-rate" not in message


def test_load_portfolio_takes_a_higher_limit_or_none(tmp_path):
    folder = _half_rejected(tmp_path)
    assert rollrisk.load_portfolio(folder, max_reject_rate=0.7).accounts.height == 1
    loaded = rollrisk.load_portfolio(folder, max_reject_rate=None)
    assert loaded.accounts.height == 1
    assert loaded.report.rows_rejected > 0


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_load_portfolio_refuses_a_limit_that_is_not_a_share(tiny_portfolio, rate):
    with pytest.raises(UserError, match="max_reject_rate: expected a share between 0 and 1"):
        rollrisk.load_portfolio(tiny_portfolio, max_reject_rate=rate)


def test_load_portfolio_of_a_clean_book_is_unchanged(tiny_portfolio):
    assert rollrisk.load_portfolio(tiny_portfolio).accounts.height == 3
