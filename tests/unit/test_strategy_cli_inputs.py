"""Inputs of `simulate`, `simulate-policy` and `report` that a user gets wrong, refused in one
line before any work (found by an attacker's session, 2026-12-03)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollrisk.cli import main


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--start-month", "0000-01"], "the history must lie between 1900 and 2199"),
        (["--start-month", "2199-12", "--months", "2"], "it would run to 2200"),
        (
            ["--stress", "macro", "--stress-months", "0"],
            "--stress-months must be at least 1, got 0",
        ),
        (
            ["--stress", "macro"],
            "got 12 (its default: with --months 6, give --stress-start too)",
        ),
    ],
)
def test_simulate_refuses_dates_and_stress_windows_it_cannot_write(
    tmp_path: Path, capsys, flags: list[str], message: str
) -> None:
    argv = ["simulate", "--accounts", "50", "--months", "6", "--out", str(tmp_path / "p"), *flags]
    assert main(argv) == 2
    assert message in _error(capsys)
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())


def test_an_interrupted_simulate_overwrite_keeps_the_portfolio_that_was_there(
    tmp_path: Path, monkeypatch
) -> None:
    out = tmp_path / "p"
    assert main(["simulate", "--accounts", "40", "--months", "3", "--out", str(out)]) == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    def interrupted(*args, **kwargs):
        (args[0] / "statements").mkdir()
        (args[0] / "statements" / "part-00000.parquet").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr("rollrisk.pipelines.simulate.write_portfolio", interrupted)
    argv = ["simulate", "--accounts", "40", "--months", "3", "--out", str(out), "--overwrite"]
    assert main(argv) != 0  # the CLI says "interrupted"
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["p"]  # nothing staged left beside it


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--base-seed", "-5"], "--base-seed must be 0 or more, got -5"),
        (["--months", "1000"], "--months must be between 1 and 240"),
        (["--out", "{scores}/current"], "is inside --scores"),
        (["--propose-policy", "{existing}"], "exists: a proposal is written to a new file"),
        (["--out", "{tmp}/o", "--propose-policy", "{tmp}/o"], "is the --out folder"),
    ],
)
def test_simulate_policy_refuses_before_reading_anything(
    tmp_path: Path, capsys, flags: list[str], message: str
) -> None:
    scores, existing = tmp_path / "scores", tmp_path / "policy.yaml"
    scores.mkdir()
    existing.write_text("version: 1\n", encoding="utf-8")
    shown = [f.format(scores=scores, existing=existing, tmp=tmp_path) for f in flags]
    argv = ["simulate-policy", "--scores", str(scores), "--data", str(tmp_path / "data"),
            "--out", str(tmp_path / "sim"), *shown]  # fmt: skip
    assert main(argv) == 2
    assert message in _error(capsys)
    assert existing.read_text(encoding="utf-8") == "version: 1\n"  # never replaced


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--examples", "0"], "--examples must be at least 1"),
        (["--seed", "-1"], "--seed must be in [0, 2**32), got -1"),
        (["--out", "{tmp}/pages"], "is a folder: give the page's file name"),
    ],
)
def test_report_refuses_before_reading_anything(
    tmp_path: Path, capsys, flags: list[str], message: str
) -> None:
    (tmp_path / "pages").mkdir()
    shown = [f.format(tmp=tmp_path) for f in flags]
    argv = ["report", "--scores", str(tmp_path / "scores"), "--data", str(tmp_path / "data"),
            "--no-mlflow", *shown]  # fmt: skip
    assert main(argv) == 2
    assert message in _error(capsys)


def test_a_default_of_zero_is_shown_in_help(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "seed of the samples and bootstrap (default: 0)" in help_text
