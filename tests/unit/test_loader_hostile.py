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
