"""Hostile inputs of the issue 14 follow-up, through the real CLI: config and strategy files
that are folders or not UTF-8, booleans as numbers, repeated column names, header-only tables,
rows dated before their account opened, and the messages of a few confusing mistakes.

Each variant ends in one clear line (exit 2, no traceback) or in reasoned rejects and a
complete published result.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rollrisk.cli import main
from rollrisk.features.registry import FEATURE_SET
from rollrisk.storage.atomic_output import read_current

pytestmark = pytest.mark.slow
AS_OF = "2025-03-31"
NOT_UTF8 = b"\xff\xfe garbage"


@pytest.fixture
def world(scoring_world, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    return scoring_world


def _copy(world, tmp_path: Path) -> Path:
    portfolio = tmp_path / "portfolio"
    shutil.copytree(world.portfolio, portfolio, ignore=shutil.ignore_patterns("truth"))
    return portfolio


def _score(world, portfolio: Path, out: Path, *extra: str) -> int:
    return main(["score", "--model", world.model_uri, "--data", str(portfolio), "--as-of", AS_OF,
                 "--out", str(out), *extra])  # fmt: skip


def _one_line_error(capsys, code: int, job: str = "score") -> str:
    """The error line of a run that exited ``code`` 2, checked to be alone and no traceback."""
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith(f"rollrisk {job}: error:")]
    assert len(errors) == 1, err
    return errors[0]


def _accounts_csv(portfolio: Path) -> Path:
    """The portfolio's accounts table rewritten as accounts.csv."""
    csv = portfolio / "accounts.csv"
    pl.read_parquet(portfolio / "accounts.parquet").write_csv(csv)
    (portfolio / "accounts.parquet").unlink()
    return csv


# ---------------------------------------------------------------- A, E, F: config and YAML files


@pytest.mark.parametrize(
    ("flag", "what"),
    [
        ("--config", "config file"),
        ("--policy", "policy file"),
        ("--segments", "segments file"),
        ("--compliance", "compliance file"),
    ],
)
def test_a_yaml_file_that_is_not_utf8_is_named_in_one_line(world, tmp_path, capsys, flag, what):
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(NOT_UTF8)
    code = _score(world, world.portfolio, tmp_path / "out", flag, str(bad))
    line = _one_line_error(capsys, code)
    assert f"{what} {bad} is not UTF-8 text" in line
    assert not (tmp_path / "out" / "current").exists()


def test_train_with_a_non_utf8_config_is_one_line(world, tmp_path, capsys):
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(NOT_UTF8)
    code = main(["train", "--data", str(world.portfolio), "--config", str(bad),
                 "--out", str(tmp_path / "train")])  # fmt: skip
    assert f"config file {bad} is not UTF-8 text" in _one_line_error(capsys, code, "train")


@pytest.mark.parametrize(
    ("flag", "what"), [("--config", "config file"), ("--policy", "policy file")]
)
def test_a_folder_given_as_a_yaml_file_is_called_a_folder(world, tmp_path, capsys, flag, what):
    folder = tmp_path / "emptydir"
    folder.mkdir()
    code = _score(world, world.portfolio, tmp_path / "out", flag, str(folder))
    assert f"{what} {folder} is a folder, not a file" in _one_line_error(capsys, code)


def test_a_boolean_reject_rate_in_the_config_is_refused(world, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  max_reject_rate: true\n", encoding="utf-8")
    code = _score(world, world.portfolio, tmp_path / "out", "--config", str(config))
    line = _one_line_error(capsys, code)
    assert f"config file {config}: data.max_reject_rate: expected a number" in line


# ---------------------------------------------------------------- B: dated before opened_at


def test_statements_before_the_account_opened_are_rejected_and_the_rest_scored(world, tmp_path):
    portfolio = _copy(world, tmp_path)
    accounts = pl.read_parquet(portfolio / "accounts.parquet")
    late = accounts["account_id"][0]
    accounts.with_columns(
        opened_at=pl.when(pl.col("account_id") == late)
        .then(pl.date(2025, 1, 1))
        .otherwise(pl.col("opened_at"))
    ).write_parquet(portfolio / "accounts.parquet")

    assert _score(world, portfolio, tmp_path / "out") == 0
    manifest, scored = read_current(tmp_path / "out")
    rejects = pl.read_csv(tmp_path / "out" / "rejects.csv")
    statements = rejects.filter(pl.col("table") == "statements")
    assert statements.height > 0
    assert statements["key"].str.contains(late).all()
    assert (
        statements["reasons"]
        .str.contains(
            r"^cycle_end: expected a date on or after the account's opened_at, got '2024-.*' for an "
            r"account opened on '2025-01-01'$"
        )
        .all()
    )
    counts = manifest["counts"]["input_rows"]["statements"]
    assert counts["rejected"] == statements.height
    assert counts["read"] == counts["accepted"] + counts["rejected"]
    assert manifest["counts"]["scored"] == manifest["counts"]["population"] == scored.height


# ---------------------------------------------------------------- C: repeated column names


def test_a_csv_header_naming_a_column_twice_is_one_line_naming_file_and_column(
    world, tmp_path, capsys
):
    portfolio = _copy(world, tmp_path)
    csv = _accounts_csv(portfolio)
    lines = csv.read_text().splitlines()
    lines[0] = lines[0].replace("currency", "credit_limit")
    csv.write_text("\n".join(lines) + "\n")
    line = _one_line_error(capsys, _score(world, portfolio, tmp_path / "out"))
    assert f"{csv}: column credit_limit appears more than once in the header" in line
    assert not (tmp_path / "out" / "current").exists()


def test_a_parquet_file_naming_a_column_twice_is_one_line_naming_it(world, tmp_path, capsys):
    portfolio = _copy(world, tmp_path)
    path = portfolio / "accounts.parquet"
    table = pq.read_table(path)
    doubled = pa.Table.from_arrays(
        [*table.columns, pa.array([-5.0] * table.num_rows)],
        names=[*table.column_names, "credit_limit"],
    )
    pq.write_table(doubled, path)
    line = _one_line_error(capsys, _score(world, portfolio, tmp_path / "out"))
    assert f"{path}: column credit_limit appears more than once" in line
    assert "truncated" not in line


# ---------------------------------------------------------------- D: header-only tables


def _header_only(portfolio: Path, table: str) -> Path:
    """Replace ``table``'s folder of parts by a CSV holding only its header."""
    parts = sorted((portfolio / table).glob("*.parquet"))
    columns = pl.read_parquet(parts[0]).columns
    shutil.rmtree(portfolio / table)
    csv = portfolio / f"{table}.csv"
    csv.write_text(",".join(columns) + "\n")
    return csv


def test_statements_with_a_header_only_fail_validate_and_score(world, tmp_path, capsys):
    portfolio = _copy(world, tmp_path)
    csv = _header_only(portfolio, "statements")
    code = main(["validate", "--data", str(portfolio), "--rejects", str(tmp_path / "r.csv")])
    out = capsys.readouterr().out
    assert code == 1
    assert f"FILE ERROR: {csv}: required table 'statements' has a header but no rows" in out
    assert "OK:" not in out
    line = _one_line_error(capsys, _score(world, portfolio, tmp_path / "out"))
    assert "required table 'statements' has a header but no rows" in line


def test_actions_with_a_header_only_are_refused_unless_allowed(world, tmp_path, capsys):
    portfolio = _copy(world, tmp_path)
    _header_only(portfolio, "collection_actions")
    line = _one_line_error(capsys, _score(world, portfolio, tmp_path / "out"))
    assert "has no collection_actions (present but empty: no accepted row)" in line
    assert "--allow-missing-table collection_actions" in line
    assert not (tmp_path / "out" / "current").exists()
    allowed = _score(world, portfolio, tmp_path / "out", "--allow-missing-table",
                     "collection_actions")  # fmt: skip
    assert allowed == 0
    manifest, scored = read_current(tmp_path / "out")
    assert scored.height == manifest["counts"]["population"] > 0
    # the reasons from the table left out say it was not given, never "not reached"
    from_actions = {spec.name for spec in FEATURE_SET.features
                    if spec.source == "collection_actions"}  # fmt: skip
    quoted = [reason for text in scored["reasons"].to_list() for reason in json.loads(text)
              if reason["feature"] in from_actions]  # fmt: skip
    assert quoted, "no reason quotes an action feature: the check below would be empty"
    for reason in quoted:
        assert reason["text_en"].endswith(": not known, the collection actions were not given")
        assert reason["text_zh"].endswith("：未知（未提供催收记录）")


# ---------------------------------------------------------------- F: messages


def test_a_file_given_as_data_is_called_a_file(world, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    line = _one_line_error(capsys, _score(world, afile, tmp_path / "out"))
    assert "is a file, not a portfolio folder" in line


def test_a_looping_data_link_is_called_one(world, tmp_path, capsys):
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    line = _one_line_error(capsys, _score(world, tmp_path / "loop1", tmp_path / "out"))
    assert "portfolio folder is a broken or looping link" in line


def test_an_accounts_file_linked_to_itself_is_called_a_looping_link(world, tmp_path, capsys):
    portfolio = _copy(world, tmp_path)
    (portfolio / "accounts.parquet").unlink()
    (portfolio / "accounts.csv").symlink_to(portfolio / "accounts.csv")
    line = _one_line_error(capsys, _score(world, portfolio, tmp_path / "out"))
    assert "accounts.csv: broken or looping link" in line


def test_a_malformed_model_uri_lists_the_accepted_forms(world, tmp_path, capsys):
    code = main(["score", "--model", "models:/rollrisk-roll-to-default@", "--data",
                 str(world.portfolio), "--out", str(tmp_path / "out")])  # fmt: skip
    line = _one_line_error(capsys, code)
    assert "model URI 'models:/rollrisk-roll-to-default@' is malformed" in line
    assert "models:/NAME@ALIAS" in line and "models:/NAME/VERSION" in line


def test_ids_with_look_alike_characters_are_shown_as_codes(world, tmp_path, capsys):
    """One account's statements under its id with a full-width last digit (as a spreadsheet
    can write it): the rejects said "expected an account listed in accounts, got 'A...１'",
    an id no eye tells from a listed one; the reason now writes the characters outside ASCII
    as codes."""
    portfolio = _copy(world, tmp_path)
    statements = sorted((portfolio / "statements").glob("*.parquet"))[0]
    frame = pl.read_parquet(statements)
    first = frame["account_id"][0]
    twin = first[:-1] + chr(0xFF10 + int(first[-1])) if first[-1].isdigit() else "Ａ" + first[1:]
    frame.with_columns(
        pl.when(pl.col("account_id") == first).then(pl.lit(twin)).otherwise("account_id")
        .alias("account_id")
    ).write_parquet(statements)  # fmt: skip
    rejects = tmp_path / "rejects.csv"
    assert main(["validate", "--data", str(portfolio), "--rejects", str(rejects)]) == 1
    reasons = pl.read_csv(rejects).filter(pl.col("table") == "statements")["reasons"]
    assert reasons.len() > 0
    codes = twin.encode("ascii", "backslashreplace").decode()
    assert reasons.str.contains(f"written here as codes: '{codes}'", literal=True).all()
    assert not pl.read_csv(rejects).filter(pl.col("table") == "accounts").height


def test_every_statement_rejected_says_so_even_with_the_limit_off(world, tmp_path, capsys):
    portfolio = _copy(world, tmp_path)
    for part in sorted((portfolio / "statements").glob("*.parquet")):
        pl.read_parquet(part).with_columns(dpd=pl.lit(-1)).write_parquet(part)
    code = _score(world, portfolio, tmp_path / "out", "--max-reject-rate", "1")
    line = _one_line_error(capsys, code)
    assert "rows of required table 'statements' were rejected" in line
    assert "most common reason: dpd:" in line
    assert "has no statements" not in line


def test_ids_with_a_trailing_space_get_a_whitespace_hint(world, tmp_path, capsys):
    portfolio = _copy(world, tmp_path)
    accounts = pl.read_parquet(portfolio / "accounts.parquet")
    accounts.with_columns(pl.col("account_id") + " ").write_parquet(portfolio / "accounts.parquet")
    rejects = tmp_path / "rejects.csv"
    assert main(["validate", "--data", str(portfolio), "--rejects", str(rejects)]) == 1
    reasons = pl.read_csv(rejects).filter(pl.col("table") == "statements")["reasons"]
    assert reasons.len() > 0
    assert reasons.str.contains("once surrounding whitespace is stripped").all()
