"""The CLI's error boundary: what the user or the environment must fix is one line and exit 2;
a bug keeps its traceback (rollrisk/cli.py)."""

from __future__ import annotations

import errno
import os

import polars as pl
import pytest
import sqlalchemy.exc
from mlflow.exceptions import MlflowException

from rollrisk.cli import EXIT_USAGE, TRACEBACK_VARIABLE, main
from rollrisk.errors import NotEnoughEvidence, UserError


def _failing_job(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """`rollrisk validate` raises ``error`` as soon as it runs."""

    def run(args):
        raise error

    monkeypatch.setattr("rollrisk.pipelines.validate.run", run)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rollrisk validate: error: ")
    return lines[0].removeprefix("rollrisk validate: error: ")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (UserError("--data x: not a folder"), "--data x: not a folder"),
        (
            OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/out/runs/k/part-00000.parquet.1.tmp"),
            "No space left on device: /out/runs/k/part-00000.parquet.1.tmp; free some space and rerun",
        ),
        (PermissionError(errno.EACCES, "Permission denied", "/out/.lock"), "Permission denied: /out/.lock"),
        (
            pl.exceptions.ComputeError("parquet: underlying IO error: No space left on device (os error 28)"),
            "No space left on device; free some space and rerun",
        ),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "Connection refused"),
    ],
)  # fmt: skip
def test_user_and_environment_errors_are_one_line_and_exit_2(monkeypatch, capsys, error, expected):
    _failing_job(monkeypatch, error)
    assert main(["validate", "--data", "x"]) == EXIT_USAGE
    assert _one_line_error(capsys) == expected


def test_a_failing_mlflow_store_is_one_line_naming_the_store(monkeypatch, capsys):
    import mlflow

    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: "sqlite:////srv/mlflow.db")
    _failing_job(monkeypatch, MlflowException("Run 'abc' not found\nmore detail"))
    assert main(["validate", "--data", "x"]) == EXIT_USAGE
    assert _one_line_error(capsys) == "MLflow store sqlite:////srv/mlflow.db: Run 'abc' not found"

    locked = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("database is locked"))
    _failing_job(monkeypatch, locked)
    assert main(["validate", "--data", "x"]) == EXIT_USAGE
    assert _one_line_error(capsys) == (
        "MLflow store sqlite:////srv/mlflow.db: database error: database is locked"
    )


@pytest.mark.parametrize(
    "error",
    [
        ZeroDivisionError("division by zero"),
        KeyError("probability"),
        pl.exceptions.ComputeError("a bug, not the disk"),
        sqlalchemy.exc.ArgumentError("a bad SQLAlchemy call"),
    ],
)
def test_a_bug_keeps_its_traceback(monkeypatch, error):
    _failing_job(monkeypatch, error)
    with pytest.raises(type(error)):
        main(["validate", "--data", "x"])


def test_the_traceback_variable_shows_the_traceback_of_a_one_line_error(monkeypatch, capsys):
    """...and keeps its exit code (found by an attacker: 2 became Python's 1, so a scheduler
    told apart by the code would change its handling with the variable)."""
    _failing_job(monkeypatch, OSError(errno.ENOSPC, "No space left on device", "/out/x"))
    monkeypatch.setenv(TRACEBACK_VARIABLE, "1")
    assert main(["validate", "--data", "x"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().splitlines()[-1].startswith("rollrisk validate: error: No space left")
    _failing_job(monkeypatch, NotEnoughEvidence("a job's own exit code"))
    assert main(["validate", "--data", "x"]) == 3


def test_the_processes_a_command_starts_inherit_the_pyspark_warning_filter(monkeypatch, capsys):
    import subprocess
    import sys

    from rollrisk.cli import PYSPARK_PANDAS_WARNING

    monkeypatch.setenv("PYTHONWARNINGS", "default::DeprecationWarning")
    main([])  # no command: the help, after the filter is set
    main([])  # a second command in the same process adds nothing
    assert os.environ["PYTHONWARNINGS"] == (
        f"default::DeprecationWarning,ignore:{PYSPARK_PANDAS_WARNING}:FutureWarning"
    )
    # a child (a spawned worker imports pandera, hence pyspark, again) stays quiet
    child = subprocess.run(
        [sys.executable, "-c",
         f"import warnings; warnings.warn({PYSPARK_PANDAS_WARNING + ' >= 3.0.0'!r}, FutureWarning)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert child.stderr == ""
    loud = subprocess.run(
        [sys.executable, "-c", "import warnings; warnings.warn('other', FutureWarning)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "FutureWarning: other" in loud.stderr  # only that warning is filtered


def test_mlflow_s_artifact_progress_bars_are_off_unless_asked_for(monkeypatch, capsys):
    """Reading a model back drew a progress bar per artifact between promote's own lines."""
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    main([])
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true")  # the user's own choice
    main([])
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "true"
    capsys.readouterr()
