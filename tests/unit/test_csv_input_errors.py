"""Bad CSV input names the file, the line and what was expected: a row with more or fewer
fields than the header, a file that is not UTF-8 (GB18030, Latin-1, UTF-16), a header that is nearly
right (``acount_id``, ``Balance``, ``balance `` with a space; Parquet too)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from rollrisk.cli import main
from rollrisk.errors import DataContractError
from rollrisk.features.schemas import TABLES_BY_NAME
from rollrisk.features.validation import check_columns
from rollrisk.storage import loader
from rollrisk.storage.loader import load_portfolio, validate_portfolio
from tests.conftest import tiny_accounts, tiny_actions, tiny_statements

STATEMENTS = TABLES_BY_NAME["statements"]


def _folder(root: Path) -> Path:
    folder = root / "portfolio"
    folder.mkdir()
    tiny_accounts().write_csv(folder / "accounts.csv")
    tiny_statements().write_csv(folder / "statements.csv")
    return folder


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _write(path: Path, lines: list[str], encoding: str = "utf-8") -> None:
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))


def _only_error(folder: Path) -> str:
    errors = validate_portfolio(folder).report.file_errors
    assert len(errors) == 1, errors
    return errors[0]


def _with_branch(folder: Path, branch_on_line: int, branch: str, encoding: str) -> Path:
    """accounts.csv with an extra column ``branch``, ``branch`` on line ``branch_on_line`` (1-
    based, the header being line 1) and ``main`` elsewhere, written in ``encoding``."""
    path = folder / "accounts.csv"
    lines = _lines(path)
    lines[0] += ",branch"
    for number in range(2, len(lines) + 1):
        lines[number - 1] += "," + (branch if number == branch_on_line else "main")
    _write(path, lines, encoding)
    return path


# 1. a row with more fields than the header


def test_a_row_with_a_stray_comma_names_the_file_the_line_and_the_field_counts(
    tmp_path: Path,
) -> None:
    folder = _folder(tmp_path)
    path = folder / "statements.csv"
    lines = _lines(path)
    lines[4] += ","  # line 5 of the file: the header, then the 4th row
    _write(path, lines)
    error = _only_error(folder)
    assert error.startswith(f"{path}: line 5 has 9 fields, but the header (line 1) has 8: ")
    assert "expected 8 comma-separated values on each line" in error
    assert f"line 5 reads {lines[4]!r}" in error
    assert "lines in all" not in error  # one such line
    with pytest.raises(DataContractError, match=r"statements\.csv: line 5 has 9 fields"):
        load_portfolio(folder)


def test_every_line_with_too_many_fields_is_counted_and_quoted_lines_are_counted_as_lines(
    tmp_path: Path,
) -> None:
    folder = _folder(tmp_path)
    path = folder / "statements.csv"
    lines = _lines(path)
    # an extra column whose value in the first row spans two lines (quoted, so it is one
    # value): the lines after it are one further down than the rows
    lines[0] += ",note"
    lines[1] += ',"two\nlines, one value"'
    for number in range(3, len(lines) + 1):
        lines[number - 1] += ",x"
    lines[6] += ",y,z"  # row 6, on line 8 of the file
    lines[8] += ",y"  # row 8, on line 10
    _write(path, lines)
    error = _only_error(folder)
    assert error.startswith(f"{path}: line 8 has 11 fields, but the header (line 1) has 9: ")
    assert error.endswith("; 2 lines in all have more fields than the header")


def test_a_row_with_fewer_fields_than_the_header_is_refused_not_filled_with_empty_values(
    tmp_path: Path,
) -> None:
    """The reader fills a short row's missing fields with empty values: a collection action
    without its last two (optional) fields would pass validation, which fields are missing
    never told."""
    folder = _folder(tmp_path)
    path = folder / "collection_actions.csv"
    tiny_actions().write_csv(path)
    lines = _lines(path)
    assert lines[3].endswith(",no_answer,,")
    lines[3] = lines[3].removesuffix(",,")  # line 4: written without its empty fields
    _write(path, lines)
    error = _only_error(folder)
    assert error.startswith(f"{path}: line 4 has 4 fields, but the header (line 1) has 6: ")
    assert "the missing ones would be read as empty" in error
    assert error.endswith(f"line 4 reads {lines[3]!r}")
    with pytest.raises(DataContractError, match=r"collection_actions\.csv: line 4 has 4 fields"):
        load_portfolio(folder)


def test_a_short_row_of_a_file_quoting_every_value_is_counted_in_columns(tmp_path: Path) -> None:
    """Every value quoted (a spreadsheet export), commas inside some: the quoted values are
    taken out of each line before its commas are counted."""
    import csv as csv_module

    folder = _folder(tmp_path)
    path = folder / "collection_actions.csv"
    tiny_actions().with_columns(pl.col("channel").cast(pl.String)).to_pandas().to_csv(
        path, index=False, quoting=csv_module.QUOTE_ALL
    )
    lines = _lines(path)
    lines[1] = lines[1].replace('"sms"', '"sms, then call"')  # a quoted comma: no short row
    lines[3] = lines[3].rsplit(",", 2)[0]  # line 4: its two optional fields cut off
    _write(path, lines)
    error = _only_error(folder)
    assert error.startswith(f"{path}: line 4 has 4 fields, but the header (line 1) has 6: ")


def test_a_row_split_in_two_by_a_line_break_is_refused_where_values_are_quoted(
    tmp_path: Path,
) -> None:
    """A value with a line break but no quotes splits its row into two short lines; a file
    holding quoted values is counted by a CSV parser (a quoted line break is one value)."""
    folder = _folder(tmp_path)
    path = folder / "statements.csv"
    lines = _lines(path)
    lines[0] += ",note"
    lines[1] += ',"two\nlines, one value"'  # quoted: one value, no short row
    for number in range(3, len(lines) + 1):
        lines[number - 1] += ",x"
    head, tail = lines[5].split(",", 1)  # row 5 (line 7 of the file) split after its first field
    lines[5] = f"{head}\n{tail}"
    _write(path, lines)
    error = _only_error(folder)
    assert error.startswith(f"{path}: line 7 has 1 field, but the header (line 1) has 9: ")
    assert error.endswith("; 2 lines in all have fewer fields than the header")  # both halves


def test_empty_last_values_are_not_a_short_row(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    path = folder / "collection_actions.csv"
    tiny_actions().write_csv(path)
    assert _lines(path)[1].endswith(",delivered,,")  # the last column empty, its comma there
    loaded = validate_portfolio(folder)
    assert loaded.report.file_errors == ()
    assert loaded.report.rows_rejected == 0
    assert loaded.collection_actions.height == 3


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (
            lambda head, rest: f'{head},x"{rest}',  # a quote inside an unquoted value
            "line 5 has a double quote inside the value of column cycle_end, which does not "
            "start with one: a value holding a double quote must be in double quotes",
        ),
        (
            lambda head, rest: f'{head},"{rest}',  # a quote opened and never closed
            "line 5 opens a quoted value (a double quote at its start) in column cycle_end that "
            "no later double quote closes: the rest of the file, 6 lines, would be that one "
            "value",
        ),
    ],
)
def test_a_stray_double_quote_names_its_line_and_column(tmp_path: Path, make, expected) -> None:
    """The reader's own words ("CSV malformed: expected 0 rows, actual 7 rows, in chunk
    starting at row_offset 2") name neither the line nor the quote."""
    folder = _folder(tmp_path)
    path = folder / "statements.csv"
    lines = _lines(path)
    lines[4] = make(*lines[4].split(",", 1))
    _write(path, lines)
    error = _only_error(folder)
    assert error.startswith(f"{path}: {expected}"), error
    assert "CSV malformed" not in error and "could not parse" not in error


@pytest.mark.parametrize("note_first", [False, True])
def test_two_stray_quotes_that_swallow_whole_rows_refuse_the_file(
    tmp_path: Path, note_first: bool
) -> None:
    """The reader accepts a quoted value running from a stray quote to the next one: the rows
    between them became one lender's note, read, validated "OK" and lost (with the note before
    the figures, the merged row took one account's id and another's figures)."""
    folder = _folder(tmp_path)
    path = folder / "statements.csv"
    lines = _lines(path)
    rows = [line.split(",", 1) for line in lines]
    notes = ["note"] + ["ok"] * (len(lines) - 1)
    notes[3], notes[6] = '"12 inch TV', 'remark"'  # lines 4 and 7 of the file
    if note_first:
        lines = [f"{key},{note},{rest}" for (key, rest), note in zip(rows, notes, strict=True)]
    else:
        lines = [f"{line},{note}" for line, note in zip(lines, notes, strict=True)]
    _write(path, lines)
    error = _only_error(folder)
    assert error.startswith(
        f"{path}: line 4 opens a quoted value in column note that runs over 4 lines, and line 5 "
        "reads as a row of its own ("
    ), error
    assert error.endswith(
        "): two stray double quotes swallow the rows between them into one value, and those "
        "rows would be lost; put a value holding a double quote in double quotes with its own "
        'quotes doubled ("5"" screen")'
    )


def test_an_address_over_lines_with_many_commas_is_one_value(tmp_path: Path) -> None:
    """Found by a helper: an address line with as many commas as the header was taken for a
    swallowed row and the file refused. A row is told by its dates, which an address lacks."""
    folder = _folder(tmp_path)
    path = folder / "accounts.csv"
    lines = _lines(path)
    lines = [f"{line},{'address' if n == 0 else 'x'}" for n, line in enumerate(lines)]
    lines[2] = lines[2].removesuffix(",x") + (
        ',"Attn: collections\nFlat 3, 12 High St, Springfield, IL, 62704, USA, near park"'
    )
    _write(path, lines)
    loaded = validate_portfolio(folder)
    assert loaded.report.file_errors == ()
    assert loaded.accounts.height == 3


def test_a_carriage_return_inside_a_value_is_part_of_it(tmp_path: Path) -> None:
    """pandas writes a value holding a bare carriage return unquoted; the reader keeps it in
    the value, and so do the checks (they split lines at line breaks only)."""
    folder = _folder(tmp_path)
    path = folder / "collection_actions.csv"
    notes = pl.Series("note", ["line1\rline2", None, "x"])  # the last column once empty
    tiny_actions().with_columns(notes).write_csv(path)
    data = path.read_bytes().replace(b'"line1\rline2"', b"line1\rline2")
    path.write_bytes(data.replace(b",note\n", b',"note"\n'))  # a quote elsewhere in the file
    loaded = validate_portfolio(folder)
    assert loaded.report.file_errors == ()
    assert loaded.collection_actions.height == 3


def test_a_quoted_value_spanning_lines_is_read_as_one_value(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    path = folder / "statements.csv"
    lines = _lines(path)
    lines = [f"{line},{'note' if n == 0 else 'ok'}" for n, line in enumerate(lines)]
    lines[2] = lines[2].removesuffix(",ok") + ',"called twice,\nsaid ""next week"""'
    _write(path, lines)
    loaded = validate_portfolio(folder)
    assert loaded.report.file_errors == ()
    assert loaded.report.rows_rejected == 0
    assert loaded.statements.height == len(lines) - 1


def test_a_semicolon_separated_file_says_so(tmp_path: Path) -> None:
    """A European Excel export: every column read as "missing" in a one-column header."""
    folder = _folder(tmp_path)
    path = folder / "accounts.csv"
    _write(path, [line.replace(",", ";") for line in _lines(path)])
    error = _only_error(folder)
    assert error.startswith(
        f"{path}: the header is one column, 'account_id;borrower_id;product;opened_at;"
        "credit_limit;currency', holding semicolons: the file is separated by semicolons"
    ), error


def test_lines_ending_with_a_carriage_return_only_say_so(tmp_path: Path) -> None:
    """An old Mac export: the file read as one line, every value taken for a column name."""
    folder = _folder(tmp_path)
    path = folder / "accounts.csv"
    path.write_bytes(("\r".join(_lines(path)) + "\r").encode())
    error = _only_error(folder)
    assert error.startswith(f"{path}: the lines end with a carriage return only"), error
    assert "appears more than once" not in error


# 2. a file that is not UTF-8


@pytest.mark.parametrize(
    ("encoding", "branch", "first_bad"),
    [("gb18030", "上海分行", "0xc9 0xcf 0xba 0xa3"), ("latin-1", "Zürich", "0xfc 0x72 0x69 0x63")],
)
def test_a_file_that_is_not_utf8_names_the_line_the_byte_and_the_conversion(
    tmp_path: Path, encoding: str, branch: str, first_bad: str
) -> None:
    folder = _folder(tmp_path)
    path = _with_branch(folder, 3, branch, encoding)
    data = path.read_bytes()
    offset = data.index(branch.encode(encoding)) + (1 if branch == "Zürich" else 0)
    error = _only_error(folder)
    assert error.startswith(
        f"{path}: the file is not UTF-8 text: line 3 (byte offset {offset}, in column branch) "
        f"holds bytes {first_bad}, which are not UTF-8; "
    )
    assert "no other encoding is guessed" in error
    assert f"`iconv -f GB18030 -t UTF-8 {path} > {path}.utf8`" in error
    assert "`iconv -f WINDOWS-1252 -t UTF-8 ...`" in error
    assert "invalid utf-8 sequence" not in error  # the reader's words, which name no line
    with pytest.raises(DataContractError, match=r"accounts\.csv: the file is not UTF-8 text"):
        load_portfolio(folder)


def test_a_non_utf8_header_is_named_as_the_header(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    path = folder / "accounts.csv"
    lines = _lines(path)
    lines[0] += ",分行"
    lines[1:] = [line + ",main" for line in lines[1:]]
    _write(path, lines, "gb18030")
    offset = path.read_bytes().index("分".encode("gb18030"))
    error = _only_error(folder)
    assert error.startswith(
        f"{path}: the file is not UTF-8 text: line 1 (byte offset {offset}, in the header) "
    )


def test_a_utf16_file_is_named_by_its_byte_order_mark(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    path = folder / "accounts.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode("utf-16"))
    error = _only_error(folder)
    assert error.startswith(f"{path}: the file is not UTF-8 text but UTF-16 (it starts with ")
    assert f"`iconv -f UTF-16 -t UTF-8 {path} > {path}.utf8`" in error


def test_the_line_is_found_across_the_scan_chunks_and_valid_utf8_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # valid Chinese text (3 bytes a character) on every line, so that chunks of 7 bytes cut
    # through characters; the bad byte is on line 9
    monkeypatch.setattr(loader, "SCAN_BYTES", 7)
    folder = _folder(tmp_path)
    accounts = folder / "accounts.csv"
    lines = _lines(accounts)
    lines[0] += ",branch"
    lines[1:] = [line + ",北京分行" for line in lines[1:]]
    _write(accounts, lines)
    assert validate_portfolio(folder).report.file_errors == ()  # UTF-8 Chinese is fine

    path = folder / "statements.csv"
    lines = _lines(path)
    lines[0] += ",branch"
    lines[1:] = [line + ",北京分行" for line in lines[1:]]
    lines[8] = lines[8].replace("北京分行", "北京\xff分行")
    data = ("\n".join(lines) + "\n").encode("utf-8").replace("\xff".encode(), b"\xff")
    path.write_bytes(data)
    offset = data.index(b"\xff")
    error = _only_error(folder)
    assert error.startswith(
        f"{path}: the file is not UTF-8 text: line 9 (byte offset {offset}, in "
        "column branch) holds bytes 0xff 0xe5 0x88 0x86, "
    )


def test_a_file_that_reads_is_not_scanned_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scans run only on the failed path: a file that reads costs one read."""

    def scanned(path: Path) -> str:
        raise AssertionError(f"{path} was scanned although it was read")

    monkeypatch.setattr(loader, "_csv_problem", scanned)
    folder = _folder(tmp_path)
    _with_branch(folder, 3, "上海分行", "utf-8")
    assert validate_portfolio(folder).report.file_errors == ()


# 3. a header that is nearly right


@pytest.mark.parametrize(
    ("table", "right", "given", "why"),
    [
        ("accounts", "account_id", "acount_id", "spelt differently"),
        ("statements", "balance", "Balance", "the letter case differs"),
        ("statements", "balance", "balance ", "white space at its end"),
        (
            "statements",
            "balance",
            " Balance",
            "white space at its start, and the letter case differs",
        ),
    ],
)
def test_a_nearly_right_csv_header_shows_the_columns_and_the_name_meant(
    tmp_path: Path, table: str, right: str, given: str, why: str
) -> None:
    folder = _folder(tmp_path)
    path = folder / f"{table}.csv"
    lines = _lines(path)
    lines[0] = ",".join(given if name == right else name for name in lines[0].split(","))
    _write(path, lines)
    error = next(e for e in validate_portfolio(folder).report.file_errors if str(path) in e)
    found = ", ".join(repr(name) for name in lines[0].split(","))
    assert error.startswith(
        f"{path}: table '{table}' lacks column(s) {right}; did you mean {right}? the header has "
        f"{given!r} ({why}), and column names are matched exactly: rename it to {right}; "
        "expected columns: "
    )
    assert error.endswith(f"; columns found: {found}")


def test_a_nearly_right_parquet_column_is_named_the_same_way(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "statements.csv").unlink()
    path = folder / "statements.parquet"
    tiny_statements().rename({"balance": "Balance", "dpd": "DPD "}).write_parquet(path)
    error = _only_error(folder)
    assert error.startswith(
        f"{path}: table 'statements' lacks column(s) balance, dpd; "
        "did you mean balance? the header has 'Balance' (the letter case differs), and column "
        "names are matched exactly: rename it to balance; "
        "did you mean dpd? the header has 'DPD ' (white space at its end, and the letter case "
        "differs), and column names are matched exactly: rename it to dpd; expected columns: "
    )
    assert error.endswith(
        "; columns found: 'account_id', 'cycle_end', 'known_at', 'amount_due', 'min_due', "
        "'amount_paid', 'Balance', 'DPD '"
    )


def test_a_missing_column_with_nothing_like_it_lists_what_was_found() -> None:
    columns = [name for name in STATEMENTS.dtypes if name != "dpd"] + ["notes", "__rollrisk_row"]
    with pytest.raises(DataContractError) as raised:
        check_columns(columns, STATEMENTS, "s.csv")
    message = str(raised.value)
    assert message.startswith("s.csv: table 'statements' lacks column(s) dpd; expected columns: ")
    assert "did you mean" not in message
    assert message.endswith(
        "; columns found: 'account_id', 'cycle_end', 'known_at', "
        "'amount_due', 'min_due', 'amount_paid', 'balance', 'notes'"
    )
    assert "__rollrisk_row" not in message  # the loader's bookkeeping is not the lender's


def test_the_validate_command_prints_the_line(tmp_path: Path, capsys) -> None:
    folder = _folder(tmp_path)
    path = folder / "statements.csv"
    lines = _lines(path)
    lines[6] += ",extra"
    _write(path, lines)
    code = main(["validate", "--data", str(folder), "--rejects", str(tmp_path / "r.csv")])
    out = capsys.readouterr().out
    assert code == 1
    assert f"FILE ERROR: {path}: line 7 has 9 fields, but the header (line 1) has 8" in out


def test_a_bad_byte_first_on_its_line_is_in_the_first_column(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    path = folder / "accounts.csv"
    lines = _lines(path)
    lines[3] = "é" + lines[3]  # line 4: an account id exported in Latin-1
    _write(path, lines, "latin-1")
    offset = path.read_bytes().index(b"\xe9")
    error = _only_error(folder)
    assert error.startswith(
        f"{path}: the file is not UTF-8 text: line 4 (byte offset {offset}, in column "
        "account_id) holds bytes 0xe9 0x41 0x33 0x2c, "
    )
