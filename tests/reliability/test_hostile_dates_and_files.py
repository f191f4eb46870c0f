"""Hostile portfolios (issue 14, dates and files): odd date formats, time zones, future-dated
rows, part files under other names or types. Each variant ends in a clear one-line error
(exit 2, no traceback, nothing published) or in reasoned rejects with a complete result: the
same accounts and scores as the clean portfolio, less exactly the rejected accounts.

Every variant changes a copy of the session's simulated portfolio (``scoring_world``) and runs
the real CLI in-process; the clean portfolio is scored once, at its default as-of, as the
reference.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from rollrisk.cli import main
from rollrisk.storage.atomic_output import read_current

pytestmark = pytest.mark.slow
ZONE = "Asia/Shanghai"


@dataclass(frozen=True)
class Reference:
    """The clean portfolio's published scores at its default as-of."""

    as_of: str
    scored: pl.DataFrame  # account_id, probability, sorted by account_id


@pytest.fixture(scope="module")
def reference(scoring_world, tmp_path_factory) -> Reference:
    out = tmp_path_factory.mktemp("reference") / "scores"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
        argv = ["score", "--model", scoring_world.model_uri, "--data",
                str(scoring_world.portfolio), "--out", str(out)]  # fmt: skip
        assert main(argv) == 0
    manifest, scored = read_current(out)
    return Reference(manifest["as_of"], _scores(scored))


@pytest.fixture
def world(scoring_world, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    return scoring_world


def _scores(scored: pl.DataFrame) -> pl.DataFrame:
    return scored.select("account_id", "probability").sort("account_id")


def _copy(world, tmp_path: Path) -> Path:
    portfolio = tmp_path / "portfolio"
    shutil.copytree(world.portfolio, portfolio)
    return portfolio


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return code, out, err


def _score(world, capsys, portfolio: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return _run(capsys, "score", "--model", world.model_uri, "--data", str(portfolio),
                "--out", str(out), *extra)  # fmt: skip


def _validate(capsys, portfolio: Path, rejects: Path, *extra: str) -> tuple[int, str, str]:
    return _run(capsys, "validate", "--data", str(portfolio), "--rejects", str(rejects), *extra)


def _refused(code: int, err: str, *words: str) -> str:
    """The job exited 2 with one line of error, the last it printed, holding ``words``."""
    assert code == 2
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1, err
    assert err.rstrip().splitlines()[-1] == errors[0]
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def _assert_complete(out: Path, reference: Reference, without: set[str] = frozenset()) -> None:
    """The published result is the reference's, less the accounts in ``without``."""
    manifest, scored = read_current(out)
    assert manifest["as_of"] == reference.as_of
    expected = reference.scored.filter(~pl.col("account_id").is_in(list(without)))
    got = _scores(scored)
    assert got["account_id"].to_list() == expected["account_id"].to_list()
    assert (got["probability"] - expected["probability"]).abs().max() < 1e-12
    assert manifest["counts"]["scored"] == manifest["counts"]["population"] == got.height


def _rejected_rows(out: Path) -> int:
    """Rows in the run's rejects file (none written, or a header only: 0)."""
    rejects = out / "rejects.csv"
    return pl.read_csv(rejects).height if rejects.exists() else 0


def _accounts_as_csv(portfolio: Path, opened_at: pl.Expr) -> pl.DataFrame:
    """Rewrite accounts.parquet as accounts.csv, with ``opened_at`` written by ``opened_at``."""
    accounts = pl.read_parquet(portfolio / "accounts.parquet")
    (portfolio / "accounts.parquet").unlink()
    text = accounts.with_columns(opened_at.alias("opened_at")).with_columns(
        pl.all().cast(pl.String)
    )
    text.write_csv(portfolio / "accounts.csv")
    return accounts


def _statements(portfolio: Path) -> pl.DataFrame:
    return pl.read_parquet(portfolio / "statements")


def _write_statement_parts(portfolio: Path, parts: dict[str, pl.DataFrame]) -> None:
    shutil.rmtree(portfolio / "statements")
    (portfolio / "statements").mkdir()
    for name, rows in parts.items():
        rows.write_parquet(portfolio / "statements" / name)


def _thirds(rows: pl.DataFrame) -> list[pl.DataFrame]:
    third = rows.height // 3
    return [rows.slice(0, third), rows.slice(third, third), rows.slice(2 * third)]


# --------------------------------------------------------------------------- date formats


def test_a_day_first_date_in_the_first_row_rejects_that_account_only(
    world, reference, tmp_path, capsys
):
    portfolio = _copy(world, tmp_path)
    first = pl.int_range(pl.len()) == 0
    accounts = _accounts_as_csv(
        portfolio,
        pl.when(first)
        .then(pl.col("opened_at").dt.strftime("%d/%m/%Y"))
        .otherwise(pl.col("opened_at").cast(pl.String)),
    )
    account = accounts["account_id"][0]
    written = accounts["opened_at"][0].strftime("%d/%m/%Y")
    code, out, _ = _validate(capsys, portfolio, tmp_path / "rejects.csv")
    assert code == 1
    rejects = pl.read_csv(tmp_path / "rejects.csv")
    by_table = dict(rejects.group_by("table").len().iter_rows())
    own = _statements(portfolio).filter(pl.col("account_id") == account).height
    assert by_table == {"accounts": 1, "statements": own}  # not 2,975 of 3,001
    assert rejects.filter(pl.col("table") == "accounts")["reasons"].to_list() == [
        f"opened_at: expected a date YYYY-MM-DD, got '{written}'"
    ]
    assert "--date-format" in out

    code, _, _ = _score(world, capsys, portfolio, tmp_path / "scores")
    assert code == 0
    _assert_complete(tmp_path / "scores", reference, without={account})


def test_a_month_first_file_is_never_swapped_and_scores_exactly_once_declared(
    world, reference, tmp_path, capsys
):
    portfolio = _copy(world, tmp_path)
    accounts = _accounts_as_csv(portfolio, pl.col("opened_at").dt.strftime("%m/%d/%Y"))
    code, out, _ = _validate(capsys, portfolio, tmp_path / "rejects.csv")
    assert code == 1
    rejects = pl.read_csv(tmp_path / "rejects.csv").filter(pl.col("table") == "accounts")
    assert rejects.height == accounts.height  # every row refused, none read day-for-month
    assert rejects["reasons"].str.starts_with("opened_at: expected a date YYYY-MM-DD").all()
    assert "--date-format" in out

    code, _, _ = _score(world, capsys, portfolio, tmp_path / "scores", "--date-format", "%m/%d/%Y")
    assert code == 0
    _assert_complete(tmp_path / "scores", reference)


def test_a_date_written_with_slashes_is_a_reasoned_reject(world, tmp_path, capsys):
    portfolio = _copy(world, tmp_path)
    third = pl.int_range(pl.len()) == 2
    accounts = _accounts_as_csv(
        portfolio,
        pl.when(third)
        .then(pl.col("opened_at").dt.strftime("%Y/%m/%d"))
        .otherwise(pl.col("opened_at").cast(pl.String)),
    )
    code, _, _ = _validate(capsys, portfolio, tmp_path / "rejects.csv")
    assert code == 1
    rejects = pl.read_csv(tmp_path / "rejects.csv").filter(pl.col("table") == "accounts")
    assert rejects.select("row", "reasons").rows() == [
        (2, f"opened_at: expected a date YYYY-MM-DD, got '{accounts['opened_at'][2]:%Y/%m/%d}'")
    ]


def test_a_date_format_that_is_no_date_format_is_refused_by_the_flag(world, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["validate", "--data", str(world.portfolio), "--date-format", "%H:%M"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--date-format" in err and "has no year, no month, no day" in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- time zones


def _timestamps_aware(portfolio: Path, convert: bool) -> None:
    """Make every contract timestamp aware: the same wall clock in ``ZONE``, stored as UTC
    instants when ``convert``."""
    for table in ("statements", "collection_actions", "treatments"):
        for part in (portfolio / table).glob("*.parquet"):
            rows = pl.read_parquet(part)
            aware = [
                pl.col(name).dt.replace_time_zone(ZONE)
                for name, dtype in rows.schema.items()
                if isinstance(dtype, pl.Datetime)
            ]
            rows = rows.with_columns(aware)
            if convert:
                rows = rows.with_columns(
                    pl.col(pl.Datetime(time_zone=ZONE)).dt.convert_time_zone("UTC")
                )
            rows.write_parquet(part)


def test_aware_timestamps_without_a_declared_zone_stop_the_job(world, tmp_path, capsys):
    portfolio = _copy(world, tmp_path)
    _timestamps_aware(portfolio, convert=True)
    code, _, err = _score(world, capsys, portfolio, tmp_path / "scores")
    _refused(code, err, "known_at holds time-zone-aware timestamps (UTC)", "--timezone")
    assert not (tmp_path / "scores" / "current").exists()
    code, out, _ = _validate(capsys, portfolio, tmp_path / "rejects.csv")
    assert code == 1 and "FILE ERROR" in out and "action_at holds time-zone-aware" in out


@pytest.mark.parametrize("convert", [False, True], ids=["stored-in-zone", "stored-as-utc"])
def test_aware_timestamps_are_converted_to_the_declared_zone(
    world, reference, tmp_path, capsys, convert
):
    portfolio = _copy(world, tmp_path)
    _timestamps_aware(portfolio, convert=convert)
    code, _, _ = _score(world, capsys, portfolio, tmp_path / "scores", "--timezone", ZONE)
    assert code == 0
    _assert_complete(tmp_path / "scores", reference)  # nobody moved in or out
    manifest, _ = read_current(tmp_path / "scores")
    assert manifest["dates"]["time_zone"] == ZONE


def test_an_unknown_time_zone_is_refused_by_the_flag(world, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["validate", "--data", str(world.portfolio), "--timezone", "China/Beijing"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "unknown time zone 'China/Beijing'" in err and "Traceback" not in err


# --------------------------------------------------------------------------- future rows, as-of


def _with_future_row(world, reference, tmp_path) -> tuple[Path, str]:
    portfolio = _copy(world, tmp_path)
    statements = _statements(portfolio)
    account = reference.scored["account_id"][0]
    future = statements.filter(pl.col("account_id") == account).tail(1)
    future = future.with_columns(
        pl.lit(date(2099, 12, 20)).alias("cycle_end"),
        pl.lit(datetime(2099, 12, 22, 6)).alias("known_at"),
    )
    _write_statement_parts(portfolio, {"part-00000.parquet": pl.concat([statements, future])})
    return portfolio, account


def test_a_future_dated_statement_is_rejected_and_the_book_scored_at_its_month(
    world, reference, tmp_path, capsys
):
    portfolio, account = _with_future_row(world, reference, tmp_path)
    code, _, _ = _score(world, capsys, portfolio, tmp_path / "scores")
    assert code == 0
    # not 1 account at 2099-12-31; the account itself is set aside whole: which real month
    # its mis-dated statement was, nothing says (data-contract.md, "An account's statements
    # are kept whole or not at all")
    _assert_complete(tmp_path / "scores", reference, without={account})
    rejects = pl.read_csv(tmp_path / "scores" / "rejects.csv")
    root = rejects.filter(~pl.col("reasons").str.starts_with("incomplete history: "))
    assert root.height == 1
    assert root["key"][0] == f"account_id={account}, cycle_end=2099-12-20"
    assert root["reasons"][0].startswith("cycle_end: expected a date on or before the extract date")
    assert rejects["key"].str.starts_with(f"account_id={account}, ").all()
    assert rejects.height == _statements(portfolio).filter(pl.col("account_id") == account).height


def test_a_stray_month_after_the_book_never_becomes_the_default_as_of(
    world, reference, tmp_path, capsys
):
    portfolio, account = _with_future_row(world, reference, tmp_path)
    code, _, err = _score(
        world, capsys, portfolio, tmp_path / "scores", "--extract-date", "2100-01-01"
    )
    assert code == 0
    # accepted by the extract date, the row leaves 74 years of months missing in its account's
    # history: the account is set aside whole, so 2099-12 holds no statement to be the as-of
    _assert_complete(tmp_path / "scores", reference, without={account})
    rejects = pl.read_csv(tmp_path / "scores" / "rejects.csv")
    assert rejects["key"].str.starts_with(f"account_id={account}, ").all()
    assert rejects["reasons"].str.contains("the account's statements skip a month").all()
    assert "2099-12" not in err
    manifest, _ = read_current(tmp_path / "scores")
    assert manifest["dates"] == {
        "date_format": None,
        "time_zone": None,
        "extract_date": "2100-01-01",
        "extract_date_given": True,
        "as_of": "latest month with a complete book",
    }


def test_a_partial_last_month_is_passed_over_with_a_note(world, reference, tmp_path, capsys):
    portfolio = _copy(world, tmp_path)
    statements = _statements(portfolio)
    last = statements.filter(pl.col("cycle_end") == pl.col("cycle_end").max())
    # the next month's first cycles closed for a few accounts before the extract was taken
    early = last.head(20).with_columns(
        pl.col("cycle_end").dt.offset_by("1mo"), pl.col("known_at").dt.offset_by("1mo")
    )
    _write_statement_parts(portfolio, {"part-00000.parquet": pl.concat([statements, early])})
    code, _, err = _score(world, capsys, portfolio, tmp_path / "scores")
    assert code == 0
    _assert_complete(tmp_path / "scores", reference)
    assert "the latest month-end with a complete book" in err and "(20 accounts)" in err
    # the same month-end given explicitly is scored as asked, and said loudly to be partial
    month_end = early["cycle_end"].dt.month_end().max()
    code, _, err = _score(
        world, capsys, portfolio, tmp_path / "given", "--as-of", month_end.isoformat()
    )
    assert code == 0
    warning = (
        f"WARNING: --as-of {month_end}: the month {month_end:%Y-%m} holds statements of only "
        "20 accounts, fewer than 90% of the month before"
    )
    assert warning in err
    manifest, _ = read_current(tmp_path / "given")
    assert any(w.startswith(warning.removeprefix("WARNING: ")) for w in manifest["warnings"])
    # a complete month-end given explicitly: no such warning
    previous = last["cycle_end"].dt.month_end().max()
    code, _, err = _score(
        world, capsys, portfolio, tmp_path / "complete", "--as-of", previous.isoformat()
    )
    assert code == 0 and "holds statements of only" not in err


# --------------------------------------------------------------------------- files of a folder


def test_parts_named_upper_case_parquet_or_pq_are_read(world, reference, tmp_path, capsys):
    portfolio = _copy(world, tmp_path)
    rows = _statements(portfolio)
    names = ("part-0.parquet", "part-1.PARQUET", "part-2.pq")
    _write_statement_parts(portfolio, dict(zip(names, _thirds(rows), strict=True)))
    code, _, _ = _score(world, capsys, portfolio, tmp_path / "scores")
    assert code == 0
    _assert_complete(tmp_path / "scores", reference)  # not 338 of 633
    manifest, _ = read_current(tmp_path / "scores")
    assert manifest["counts"]["input_rows"]["statements"]["read"] == rows.height


def test_a_file_in_a_table_folder_that_is_not_read_stops_the_job_and_keeps_the_result(
    world, reference, tmp_path, capsys
):
    portfolio = _copy(world, tmp_path)
    out = tmp_path / "scores"
    assert _score(world, capsys, portfolio, out)[0] == 0
    before = (out / "current" / "manifest.json").read_bytes()
    stray = portfolio / "statements" / "part-00001.txt"
    _statements(portfolio).head(10).write_csv(stray)
    code, _, err = _score(world, capsys, portfolio, out)
    _refused(code, err, str(stray), "not a part file")
    assert (out / "current" / "manifest.json").read_bytes() == before


def test_writer_marker_files_are_listed_and_the_parts_read(world, reference, tmp_path, capsys):
    portfolio = _copy(world, tmp_path)
    (portfolio / "statements" / "_SUCCESS").write_text("")
    (portfolio / "statements" / ".part-00000.parquet.crc").write_bytes(b"\x00crc")
    code, out, _ = _validate(capsys, portfolio, tmp_path / "rejects.csv")
    assert code == 0 and "ignored (hidden or marker files)" in out and "_SUCCESS" in out
    assert _score(world, capsys, portfolio, tmp_path / "scores")[0] == 0
    _assert_complete(tmp_path / "scores", reference)


def test_a_date_column_typed_text_in_one_part_and_date_in_another_is_read_in_full(
    world, reference, tmp_path, capsys
):
    portfolio = _copy(world, tmp_path)
    first, second, third = _thirds(_statements(portfolio))
    as_text = [pl.col("cycle_end").cast(pl.String), pl.col("known_at").cast(pl.String)]
    as_timestamp = [pl.col("cycle_end").cast(pl.Datetime("ns"))]
    _write_statement_parts(
        portfolio,
        {
            "part-0.parquet": first,
            "part-1.parquet": second.with_columns(as_text),
            "part-2.parquet": third.with_columns(as_timestamp),
        },
    )
    code, _, _ = _score(world, capsys, portfolio, tmp_path / "scores")
    assert code == 0
    _assert_complete(tmp_path / "scores", reference)  # not half the book
    assert _rejected_rows(tmp_path / "scores") == 0


def test_an_extra_column_typed_list_in_one_part_and_number_in_another_is_named(
    world, tmp_path, capsys
):
    portfolio = _copy(world, tmp_path)
    first, second, third = _thirds(_statements(portfolio))
    _write_statement_parts(
        portfolio,
        {
            "part-0.parquet": first.with_columns(pl.lit(3).alias("tags")),
            "part-1.parquet": second.with_columns(pl.lit(["late", "hardship"]).alias("tags")),
            "part-2.parquet": third.with_columns(pl.lit(4).alias("tags")),
        },
    )
    code, _, err = _score(world, capsys, portfolio, tmp_path / "scores")
    _refused(code, err, "extra column tags", "part-1.parquet: List(String)", "part-0.parquet")
    assert not (tmp_path / "scores" / "current").exists()


def test_a_list_typed_extra_column_is_carried_and_the_book_scored(
    world, reference, tmp_path, capsys
):
    portfolio = _copy(world, tmp_path)
    accounts = pl.read_parquet(portfolio / "accounts.parquet")
    accounts.with_columns(pl.lit(["+86 10 0000 0000"]).alias("phones")).write_parquet(
        portfolio / "accounts.parquet"
    )
    code, _, _ = _score(world, capsys, portfolio, tmp_path / "scores")
    assert code == 0
    _assert_complete(tmp_path / "scores", reference)


def test_a_contract_column_holding_lists_stops_the_job_naming_file_and_column(
    world, tmp_path, capsys
):
    portfolio = _copy(world, tmp_path)
    first, second, third = _thirds(_statements(portfolio))
    _write_statement_parts(
        portfolio,
        {
            "part-0.parquet": first,
            "part-1.parquet": second.with_columns(pl.concat_list("dpd").alias("dpd")),
            "part-2.parquet": third,
        },
    )
    code, _, err = _score(world, capsys, portfolio, tmp_path / "scores")
    _refused(code, err, "part-1.parquet: column dpd is stored as List(Int64)")


def test_a_date_column_stored_as_numbers_stops_the_job(world, tmp_path, capsys):
    portfolio = _copy(world, tmp_path)
    accounts = pl.read_parquet(portfolio / "accounts.parquet")
    accounts.with_columns(pl.col("opened_at").cast(pl.Int32)).write_parquet(
        portfolio / "accounts.parquet"
    )
    code, _, err = _score(world, capsys, portfolio, tmp_path / "scores")
    _refused(code, err, "accounts.parquet: column opened_at is stored as Int32")
