"""`rollrisk simulate` end to end through the real CLI."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import polars as pl

from rollrisk.cli import main


def test_simulate_writes_a_portfolio_that_validates(tmp_path: Path, capsys):
    out = tmp_path / "portfolio"
    assert (
        main(["simulate", "--accounts", "400", "--months", "6", "--seed", "3", "--out", str(out)])
        == 0
    )
    captured = capsys.readouterr()
    assert "simulated 400 accounts x 6 months" in captured.out
    # the rows written are the rows reported; fewer than 400 x 6 on the open book (accounts are
    # booked and close inside the window, docs/simulator.md)
    written = pl.read_parquet(out / "statements" / "*.parquet").height
    assert 0 < written < 400 * 6
    assert "statements" in captured.out and f"{written:,} rows" in captured.out
    assert "simulate: 100%" in captured.err  # progress bar on stderr
    assert (out / "statements" / "part-00000.parquet").exists()
    assert (out / "collection_actions" / "part-00000.parquet").exists()
    assert (out / "treatments" / "part-00000.parquet").exists()
    params = json.loads((out / "truth" / "params.json").read_text())
    assert params["seed"] == 3
    assert params["start_month"] == "2024-01"
    first = pl.read_parquet(out / "statements" / "*.parquet")["cycle_end"].min()
    assert (first.year, first.month) == (2024, 1)

    assert main(["validate", "--data", str(out), "--rejects", str(tmp_path / "rejects.csv")]) == 0
    assert "OK: no rejects" in capsys.readouterr().out


def test_simulate_refuses_to_overwrite_unless_asked(tmp_path: Path, capsys):
    out = tmp_path / "portfolio"
    argv = ["simulate", "--accounts", "50", "--months", "3", "--out", str(out)]
    assert main(argv) == 0
    before = (out / "accounts.parquet").read_bytes()
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--out {out} is not empty" in err
    assert "--overwrite" in err
    (out / "notes.txt").write_text("kept")
    assert main([*argv, "--seed", "8", "--overwrite"]) == 0
    assert (out / "accounts.parquet").read_bytes() != before
    assert (
        out / "notes.txt"
    ).read_text() == "kept"  # only the simulator's own outputs are replaced


def test_simulate_csv_format_and_start_month(tmp_path: Path, capsys):
    out = tmp_path / "csv"
    argv = ["simulate", "--accounts", "60", "--months", "4", "--out", str(out)]
    assert main([*argv, "--format", "csv", "--start-month", "2025-07"]) == 0
    assert (out / "accounts.csv").exists()
    assert (out / "statements" / "part-00000.csv").exists()
    statements = pl.read_csv(out / "statements" / "part-00000.csv", try_parse_dates=True)
    assert statements["cycle_end"].min().month == 7
    capsys.readouterr()
    assert main(["validate", "--data", str(out)]) == 0


def test_simulate_rejects_bad_arguments_with_a_clear_message(tmp_path: Path, capsys):
    out = tmp_path / "bad"
    assert (
        main(["simulate", "--accounts", "10", "--out", str(out), "--start-month", "2024-13"]) == 2
    )
    assert (
        "--start-month must look like 2024-01 (YYYY-MM), got '2024-13'" in capsys.readouterr().err
    )
    assert main(["simulate", "--accounts", "0", "--out", str(out)]) == 2
    assert "--accounts must be at least 1, got 0" in capsys.readouterr().err
    assert not out.exists()


def test_simulate_warns_when_its_history_is_dated_after_today(tmp_path: Path, capsys):
    from rollrisk.pipelines.simulate import _future_warning

    argv = ["simulate", "--accounts", "200", "--months", "2", "--seed", "3"]
    future = tmp_path / "future"
    assert main([*argv, "--start-month", "2099-01", "--out", str(future)]) == 0
    err = capsys.readouterr().err
    # said before and after the simulation, with the way out
    assert err.count("WARNING: the simulated months run to 2099-02") == 2
    given = re.search(r"--extract-date (\d{4}-\d{2}-\d{2}) or later", err).group(1)
    # the way out is right: with that extract date every row is accepted (without it, not)
    assert main(["validate", "--data", str(future), "--extract-date", given]) == 0
    assert main(["validate", "--data", str(future)]) != 0
    assert main([*argv, "--start-month", "2024-01", "--out", str(tmp_path / "past")]) == 0
    assert "WARNING" not in capsys.readouterr().err
    # the months it suggests are dated by today; one month later they are not
    warning = _future_warning("2026-11", 3, date(2026, 12, 2), 26)
    assert "--start-month 2026-08 or earlier for 3 months" in warning
    assert _future_warning("2026-08", 3, date(2026, 12, 2), 26) is None  # to 10-31 + 26 days
    assert _future_warning("2026-09", 3, date(2026, 12, 2), 26) is not None  # 11-30 + 26 days
