"""The MLflow store is checked before MLflow touches it: only a job that logs runs creates one,
and only where it was meant to; a mistyped, unreachable, damaged or locked store is one clear
error (storage/tracking.py)."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rollrisk.storage import tracking
from rollrisk.storage.tracking import TrackingStoreError, configure_tracking


@pytest.fixture(autouse=True)
def _no_tracking_variable(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _uri(path: Path) -> str:
    return f"sqlite:///{path}"


def test_the_default_store_is_made_by_a_writing_job_only(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        TrackingStoreError, match="no MLflow store at .*runs/mlflow.db; run `rollrisk train` first"
    ):
        configure_tracking()
    assert not (tmp_path / "runs").exists()  # a reading job made nothing
    setup = configure_tracking(create=True)
    assert "creating a new MLflow store at" in capsys.readouterr().err
    assert (tmp_path / "runs" / "mlflow.db").is_file()
    assert setup.artifact_root == tmp_path / "runs" / "mlartifacts"
    assert configure_tracking().tracking_uri == setup.tracking_uri  # now found by any job
    assert capsys.readouterr().err == ""  # and not announced again


def test_an_explicit_store_in_a_missing_folder_is_a_typo_never_created(tmp_path, monkeypatch):
    uri = _uri(tmp_path / "mlfow" / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for create in (False, True):
        with pytest.raises(TrackingStoreError, match=f"MLFLOW_TRACKING_URI='{uri}'"):
            configure_tracking(create=create)
    assert not (tmp_path / "mlfow").exists()


def test_an_explicit_store_is_created_in_an_existing_folder_by_a_writing_job(tmp_path, capsys):
    uri = _uri(tmp_path / "new.db")
    with pytest.raises(TrackingStoreError, match="only `rollrisk train` .* create a store"):
        configure_tracking(uri=uri)
    configure_tracking(uri=uri, create=True)
    assert f"creating a new MLflow store at {tmp_path / 'new.db'}" in capsys.readouterr().err
    assert configure_tracking(uri=uri).artifact_root == tmp_path / "mlartifacts"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("sqlit:////srv/mlflow.db", r"unknown scheme 'sqlit' \(did you mean 'sqlite'\?\)"),
        ("htp://mlflow.internal:5000", r"unknown scheme 'htp' \(did you mean 'http'\?\)"),
        ("/srv/mlflow.db", "is a path, not a store URI"),
        ("runs/mlflow.db", "is a path, not a store URI"),
        ("file:///srv/mlruns", "is a path, not a store URI"),
        ("sqlite://", "names no database file"),
        ("sqlite:///:memory:", "names no database file"),
    ],
)
def test_a_mistyped_uri_is_an_error_naming_it(uri, message):
    with pytest.raises(TrackingStoreError, match=message):
        configure_tracking(uri=uri, create=True)


def test_a_file_that_is_not_an_mlflow_store_is_refused(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database\n" * 100)
    with pytest.raises(TrackingStoreError, match="is not a SQLite database"):
        configure_tracking(uri=_uri(garbage), create=True)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(TrackingStoreError, match="a SQLite database but not an MLflow store"):
        configure_tracking(uri=_uri(other), create=True)
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(TrackingStoreError, match="is empty, not an MLflow store"):
        configure_tracking(uri=_uri(empty))
    with pytest.raises(TrackingStoreError, match="is a folder"):
        configure_tracking(uri=_uri(tmp_path))


def test_a_locked_store_is_an_error_after_a_bounded_wait(tmp_path, monkeypatch):
    store = tmp_path / "mlflow.db"
    configure_tracking(uri=_uri(store), create=True)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time\n"
         "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(60)",
         str(store)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(tracking, "SQLITE_BUSY_SECONDS", 0.5)
        started = time.monotonic()
        with pytest.raises(TrackingStoreError, match=r"stayed locked by another process for 0.5 s"):
            configure_tracking(uri=_uri(store))
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()
    configure_tracking(uri=_uri(store))  # usable again once the lock is gone


def test_a_server_nobody_listens_on_is_an_error_within_the_timeout(monkeypatch):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(tracking, "SERVER_TIMEOUT_SECONDS", 2.0)
    started = time.monotonic()
    with pytest.raises(TrackingStoreError, match=r"tracking server does not answer .* within 2 s"):
        configure_tracking(uri=f"http://127.0.0.1:{port}")
    assert time.monotonic() - started < 5


def test_a_server_that_never_answers_is_an_error_within_the_timeout(monkeypatch):
    with socket.socket() as silent:  # listens (the connection is made) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        monkeypatch.setattr(tracking, "SERVER_TIMEOUT_SECONDS", 1.0)
        started = time.monotonic()
        with pytest.raises(TrackingStoreError, match=r"does not answer .* within 1 s"):
            configure_tracking(uri=f"http://127.0.0.1:{port}/")
        assert time.monotonic() - started < 5


def test_a_copied_store_says_its_runs_write_to_the_originals_folder(tmp_path, capsys):
    """MLflow writes a run's files where its experiment says, an absolute folder: a store
    copied to try something wrote its models into the original's folder, without a word."""
    import shutil

    original, copy = tmp_path / "a", tmp_path / "b"
    original.mkdir()
    setup = configure_tracking(uri=f"sqlite:///{original / 'mlflow.db'}", create=True)
    tracking.ensure_experiment("rollrisk", setup)
    capsys.readouterr()
    tracking.ensure_experiment("rollrisk", setup)  # the store's own folder: nothing said
    assert "WARNING" not in capsys.readouterr().err
    shutil.copytree(original, copy)
    setup = configure_tracking(uri=f"sqlite:///{copy / 'mlflow.db'}")
    tracking.ensure_experiment("rollrisk", setup)
    err = capsys.readouterr().err
    assert (
        f"WARNING: experiment rollrisk of the store sqlite:///{copy / 'mlflow.db'} keeps its "
        f"files in {original.resolve() / 'mlartifacts' / 'rollrisk'}, not beside the store "
        f"({copy.resolve() / 'mlartifacts' / 'rollrisk'}): the store was copied or moved"
    ) in err, err
