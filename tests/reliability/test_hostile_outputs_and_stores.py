"""Hostile conditions around the outputs and the stores (issue 14, part C): two runs into one
output folder, a run killed before it publishes, a damaged, locked, missing or mistyped MLflow
store, a deleted or truncated model artifact, a read-only output folder, a full disk.

Each ends in a clear outcome through the real CLI: exit 2 with one line ``rollrisk CMD:
error: ...`` and no traceback, and the previously published result unchanged, or a complete
result whose manifest's checksums match the files on disk.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from rollrisk.cli import main
from rollrisk.storage import tracking
from rollrisk.storage.atomic_output import read_current
from tests.conftest import model_files

pytestmark = pytest.mark.slow
PREVIOUS_AS_OF = "2025-02-28"  # the result already published in an output folder
AS_OF = "2025-03-31"  # the run that meets the hostile condition


def _score_argv(world, out: Path, *, data: Path | None = None, as_of: str = AS_OF) -> list[str]:
    return ["score", "--model", world.model_uri, "--data", str(data or world.portfolio),
            "--as-of", as_of, "--out", str(out)]  # fmt: skip


def _one_line_error(capsys, command: str) -> str:
    """The one error line a failed command printed (and no traceback); returns its message."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith(f"rollrisk {command}: ")]
    assert len(errors) == 1, err
    assert errors[0].startswith(f"rollrisk {command}: error: ")
    return errors[0].removeprefix(f"rollrisk {command}: error: ")


def _snapshot(out: Path) -> dict[str, str]:
    """Every file and link under ``out`` (but the lock file, whose holder line comes and goes):
    its sha256 or link target."""
    found = {}
    for path in sorted(out.rglob("*")):
        name = path.relative_to(out).as_posix()
        if path.is_symlink():
            found[name] = "-> " + os.readlink(path)
        elif path.is_file() and path.name != ".lock":
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _checksums_match(out: Path) -> dict:
    """The published manifest, after checking that every partition and attachment it lists
    is on disk with the listed checksum and that the rows add up."""
    manifest, rows = read_current(out)
    current = out / "current"
    for entry in [*manifest["partitions"], *manifest["attachments"]]:
        assert hashlib.sha256((current / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
    assert sum(p["rows"] for p in manifest["partitions"]) == rows.height
    assert manifest["counts"]["scored"] == manifest["counts"]["population"] == rows.height
    return manifest


@pytest.fixture(scope="module")
def published(scoring_world, tmp_path_factory) -> Path:
    """An output folder holding a published result (copied by each test that needs one)."""
    out = tmp_path_factory.mktemp("published") / "scores"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
        assert main(_score_argv(scoring_world, out, as_of=PREVIOUS_AS_OF)) == 0
    return out


def _previous_result(published: Path, tmp_path: Path) -> Path:
    out = tmp_path / "scores"
    shutil.copytree(published, out, symlinks=True)
    return out


def _copy_store(world, into: Path) -> str:
    """A private copy of the session's MLflow store and artifacts (so that a test may damage
    them); the copy's database names the copy's artifact folder. Returns its URI."""
    into.mkdir()
    source = sqlite3.connect(world.root / "mlflow.db")
    copy = sqlite3.connect(into / "mlflow.db")
    try:
        source.backup(copy)  # a consistent copy even while another test writes the store
        tables = copy.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        for (table,) in tables:
            for column in copy.execute(f"PRAGMA table_info('{table}')").fetchall():
                if column[2].upper().startswith(("VARCHAR", "TEXT")):
                    copy.execute(
                        f'UPDATE "{table}" SET "{column[1]}" = replace("{column[1]}", ?, ?)',
                        (str(world.root), str(into)),
                    )
        copy.commit()
    finally:
        source.close()
        copy.close()
    shutil.copytree(world.root / "mlartifacts", into / "mlartifacts")
    return f"sqlite:///{into / 'mlflow.db'}"


# --------------------------------------------------------------------------- output folders


def test_two_runs_into_one_folder_one_stops_and_the_result_matches_its_checksums(
    scoring_world, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    out = tmp_path / "scores"
    first = subprocess.Popen(
        [sys.executable, "-m", "rollrisk", *_score_argv(scoring_world, out), "--partitions", "60"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    holder = f"pid {first.pid} "
    while time.monotonic() < deadline and first.poll() is None:
        lock = out / ".lock"
        if lock.is_file() and lock.read_text().startswith(holder):
            break
        time.sleep(0.01)
    assert main(_score_argv(scoring_world, out)) == 2
    message = _one_line_error(capsys, "score")
    assert first.poll() is None, "the first run finished before the second tried: no overlap"
    assert message.startswith(f"{out} is being written by another run ({holder}on ")
    assert "give another --out" in message
    assert first.wait(timeout=300) == 0, first.stderr.read()
    manifest = _checksums_match(out)
    assert manifest["as_of"] == AS_OF and len(manifest["partitions"]) == 60
    assert [a["file"] for a in manifest["attachments"]] == ["rejects.csv"]


def test_a_killed_run_leaves_the_previous_rejects_with_the_previous_result(
    scoring_world, published, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    out = _previous_result(published, tmp_path)
    previous = _checksums_match(out)
    previous_rejects = (out / "rejects.csv").read_bytes()
    assert pl.read_csv(out / "rejects.csv").height == 0  # a clean book: the header only

    portfolio = tmp_path / "portfolio"  # the next run meets 7 statements of nobody's account
    shutil.copytree(scoring_world.portfolio, portfolio)
    part = sorted((portfolio / "statements").glob("*.parquet"))[0]
    spoilt = pl.int_range(pl.len()).is_between(10, 16)
    pl.read_parquet(part).with_columns(
        pl.when(spoilt).then(pl.lit("NOBODY")).otherwise("account_id").alias("account_id")
    ).write_parquet(part)
    argv = [*_score_argv(scoring_world, out, data=portfolio), "--partitions", "40"]
    process = subprocess.Popen([sys.executable, "-m", "rollrisk", *argv],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    new_runs = lambda: [d for d in (out / "runs").iterdir() if d.name != previous["run_key"]]  # noqa: E731
    while time.monotonic() < deadline and not any(
        list(d.glob("part-*.parquet")) for d in new_runs()
    ):
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"

    assert (out / ".staging" / "rejects.csv").is_file()  # the killed run had its rejects ready
    assert (out / "rejects.csv").read_bytes() == previous_rejects  # readers see the old ones
    assert _checksums_match(out) == previous
    assert main(argv) == 0  # the rerun takes the folder over, resumes and publishes both
    assert _checksums_match(out)["as_of"] == AS_OF
    assert pl.read_csv(out / "rejects.csv")["row"].to_list() == list(range(10, 17))
    assert not (out / ".staging").exists()  # nothing staged is left behind


def test_a_read_only_output_folder_is_one_line_and_the_result_stays(
    scoring_world, published, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    with _read_only_copy(published, tmp_path) as out:
        before = _snapshot(out)
        assert main(_score_argv(scoring_world, out)) == 2
        message = _one_line_error(capsys, "score")
        assert message.startswith(f"{out}: cannot write to this output folder (")
        assert _snapshot(out) == before


@pytest.mark.parametrize(
    "files",
    [
        {"rejects.csv": "precious\n", "current": "y\n"},  # a user's files
        # a training run's folder: its report, metrics and the rejects it wrote
        {"report.md": "# roll model\n", "metrics_by_slice.csv": "slice,auc\n",
         "rejects.csv": "table,file,row,key,reasons\n"},
    ],
)  # fmt: skip
def test_a_folder_of_other_files_is_refused_in_one_line_and_left_as_it_was(
    scoring_world, published, tmp_path, monkeypatch, capsys, files
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    out = tmp_path / "x"
    out.mkdir()
    for name, text in files.items():
        (out / name).write_text(text)
    before = _snapshot(out)
    assert main(_score_argv(scoring_world, out)) == 2
    message = _one_line_error(capsys, "score")
    assert message.startswith(f"{out} holds '") and "give another --out" in message
    assert _snapshot(out) == before and not (out / ".lock").exists()
    # a folder an earlier run published into is taken, and the rerun of that run too
    out = _previous_result(published, tmp_path)
    assert main(_score_argv(scoring_world, out)) == 0
    assert main(_score_argv(scoring_world, out)) == 0
    assert read_current(out)[0]["as_of"] == AS_OF and (out / "rejects.csv").is_symlink()


@contextlib.contextmanager
def _read_only_copy(published: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of a published output folder that this process cannot write: by its mode for a
    normal user; for root (whom modes do not stop), on a tmpfs remounted read-only."""
    if os.geteuid() != 0:
        out = _previous_result(published, tmp_path)
        for path in [out, *out.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o555)
        try:
            yield out
        finally:
            for path in [out, *out.rglob("*")]:
                if path.is_dir() and not path.is_symlink():
                    path.chmod(0o755)
        return
    with _tmpfs(tmp_path / "mount", "4m") as mount:
        out = _previous_result(published, mount)
        _mount("-o", "remount,ro", str(mount))
        yield out


def _mount(*argv: str) -> None:
    subprocess.run(["mount", *argv], check=True, capture_output=True)


@contextlib.contextmanager
def _tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A fresh tmpfs of ``size`` at ``mount`` (skips the test where mounting is not allowed)."""
    mount.mkdir()
    try:
        _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount))
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"cannot mount a tmpfs here: {error}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


def test_a_full_disk_is_one_line_and_the_result_stays(
    scoring_world, published, tmp_path, monkeypatch, capsys
):
    """The disk fills while a partition is synced to it (fsync reports ENOSPC)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    out = _previous_result(published, tmp_path)
    before = _snapshot(out)

    def full_disk(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    fsync = os.fsync
    monkeypatch.setattr(os, "fsync", full_disk)
    assert main(_score_argv(scoring_world, out)) == 2
    monkeypatch.setattr(os, "fsync", fsync)
    message = _one_line_error(capsys, "score")
    assert message.startswith(f"No space left on device: {out / 'runs'}/")
    assert message.endswith(".tmp; free some space and rerun")
    after = _snapshot(out)
    assert {k: v for k, v in after.items() if k in before} == before
    assert not [name for name in after if name.endswith(".tmp") or name not in before]


def test_a_really_full_disk_is_one_line_and_the_result_stays(
    scoring_world, published, tmp_path, monkeypatch, capsys
):
    """The output folder on a small tmpfs that the previous result and a filler almost fill."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    with _tmpfs(tmp_path / "mount", "1m") as mount:
        out = _previous_result(published, mount)
        filler = mount / "filler"
        with filler.open("wb", buffering=0) as handle, contextlib.suppress(OSError):
            while True:  # until the disk is full
                handle.write(b"\0" * 4096)
        filler.write_bytes(filler.read_bytes()[: -16 * 1024])  # room for the lock, not a part
        before = _snapshot(out)
        assert main(_score_argv(scoring_world, out)) == 2
        message = _one_line_error(capsys, "score")
        assert message.startswith("No space left on device: ")
        assert message.endswith("; free some space and rerun")
        after = _snapshot(out)
        assert {k: v for k, v in after.items() if k in before} == before
        assert not [name for name in after if name not in before]
        assert read_current(out)[0]["as_of"] == PREVIOUS_AS_OF


def test_validate_publishes_its_rejects_whole_and_removes_stale_ones(
    tiny_portfolio, tmp_path, capsys
):
    rejects = tmp_path / "rejects.csv"
    statements = pl.read_parquet(tiny_portfolio / "statements.parquet")
    statements.with_columns(pl.lit(-1).alias("dpd")).write_parquet(
        tiny_portfolio / "statements.parquet"
    )
    assert main(["validate", "--data", str(tiny_portfolio), "--rejects", str(rejects)]) == 1
    assert pl.read_csv(rejects).height == statements.height
    assert f"rejects written to {rejects}" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    statements.write_parquet(tiny_portfolio / "statements.parquet")
    assert main(["validate", "--data", str(tiny_portfolio), "--rejects", str(rejects)]) == 0
    assert not rejects.exists()  # the old list described other data


# --------------------------------------------------------------------------- the MLflow store


def _store_fault(world, out: Path, capsys, command: list[str] | None = None) -> str:
    """Run ``command`` (default: score into ``out``): it must fail in one line, leaving ``out``
    as it was; returns the message."""
    before = _snapshot(out) if out.exists() else None
    argv = command or _score_argv(world, out)
    assert main(argv) == 2
    message = _one_line_error(capsys, argv[0])
    assert (_snapshot(out) if out.exists() else None) == before
    return message


def test_a_garbage_store_is_one_line(scoring_world, published, tmp_path, monkeypatch, capsys):
    store = tmp_path / "mlflow.db"
    store.write_bytes(os.urandom(8192))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    message = _store_fault(scoring_world, _previous_result(published, tmp_path), capsys)
    assert f"{store} is not a SQLite database" in message


def test_a_locked_store_is_one_line_after_a_bounded_wait(
    scoring_world, published, tmp_path, monkeypatch, capsys
):
    uri = _copy_store(scoring_world, tmp_path / "store")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time\n"
         "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(60)",
         str(tmp_path / "store" / "mlflow.db")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.setattr(tracking, "SQLITE_BUSY_SECONDS", 1.0)
        message = _store_fault(scoring_world, _previous_result(published, tmp_path), capsys)
    finally:
        holder.kill()
        holder.wait()
    assert "stayed locked by another process for 1 s" in message


def test_deleted_model_files_are_one_line_naming_where_they_were(
    scoring_world, published, tmp_path, monkeypatch, capsys
):
    uri = _copy_store(scoring_world, tmp_path / "store")
    model = model_files(scoring_world, uri)
    shutil.rmtree(model)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    message = _store_fault(scoring_world, _previous_result(published, tmp_path), capsys)
    assert message.startswith(f"cannot load model '{scoring_world.model_uri}' (version 1 of ")
    assert f"files at {model.as_uri()}" in message
    assert "the model's files are missing or unreadable" in message


@pytest.mark.parametrize(
    ("file", "kind"),
    [
        ("artifacts/roll_model.json", "JSONDecodeError"),
        ("artifacts/reference_features.parquet", "ArrowInvalid"),
        ("python_model.pkl", "UnpicklingError"),
    ],
)
def test_a_truncated_model_file_is_one_line(
    scoring_world, published, tmp_path, monkeypatch, capsys, file, kind
):
    uri = _copy_store(scoring_world, tmp_path / "store")
    damaged = model_files(scoring_world, uri) / file
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    message = _store_fault(scoring_world, _previous_result(published, tmp_path), capsys)
    assert "its files are damaged (truncated or overwritten?): " + kind in message


def test_a_store_in_a_mistyped_folder_is_an_error_and_not_a_new_store(
    scoring_world, published, tmp_path, monkeypatch, capsys
):
    uri = f"sqlite:///{tmp_path / 'mlfow' / 'mlflow.db'}"  # the folder is `mlflow`, misspelt
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    message = _store_fault(scoring_world, _previous_result(published, tmp_path), capsys)
    assert message.startswith(f"MLFLOW_TRACKING_URI='{uri}': no MLflow store at ")
    started = time.monotonic()  # train checks the store before it trains, and makes nothing
    train = ["train", "--data", str(scoring_world.portfolio), "--out", str(tmp_path / "train")]
    message = _store_fault(scoring_world, tmp_path / "train", capsys, train)
    assert f"folder {tmp_path / 'mlfow'} does not exist" in message
    assert time.monotonic() - started < 15
    assert not (tmp_path / "mlfow").exists() and not (tmp_path / "train").exists()


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sqlit:///runs/mlflow.db", "unknown scheme 'sqlit' (did you mean 'sqlite'?)"),
        ("runs/mlflow.db", "is a path, not a store URI"),
    ],
)
def test_a_mistyped_uri_is_one_line(
    scoring_world, published, tmp_path, monkeypatch, capsys, uri, expected
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    assert expected in _store_fault(scoring_world, _previous_result(published, tmp_path), capsys)
    assert not (tmp_path / "runs").exists()


def test_a_server_nobody_listens_on_is_one_line_within_seconds(
    scoring_world, published, tmp_path, monkeypatch, capsys
):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(tracking, "SERVER_TIMEOUT_SECONDS", 2.0)
    started = time.monotonic()
    message = _store_fault(scoring_world, _previous_result(published, tmp_path), capsys)
    assert time.monotonic() - started < 10  # MLflow alone retries for minutes
    assert "the MLflow tracking server does not answer" in message


@pytest.mark.parametrize("command", ["score", "promote", "monitor"])
def test_a_reading_job_without_a_store_makes_none(
    scoring_world, tmp_path, monkeypatch, capsys, command
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    argv = {
        "score": _score_argv(scoring_world, tmp_path / "scores"),
        "promote": ["promote"],
        "monitor": ["monitor", "--model", scoring_world.model_uri, "--data",
                    str(scoring_world.portfolio), "--out", str(tmp_path / "monitor")],
    }[command]  # fmt: skip
    message = _store_fault(scoring_world, tmp_path / "scores", capsys, argv)
    assert "no MLflow store at " in message and "run `rollrisk train` first" in message
    assert not (tmp_path / "runs").exists()


def test_a_model_given_by_its_folder_needs_no_store(scoring_world, tmp_path, monkeypatch):
    model = model_files(scoring_world, scoring_world.tracking_uri)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    argv = ["score", "--model", str(model), "--data", str(scoring_world.portfolio),
            "--as-of", AS_OF, "--out", str(tmp_path / "scores")]  # fmt: skip
    assert main(argv) == 0
    assert _checksums_match(tmp_path / "scores")["model"]["version"] == "unregistered"
    assert not (tmp_path / "runs").exists()  # no store was looked for, none was made
