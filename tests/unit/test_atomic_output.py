"""Partitioned output: atomic publish, deterministic bytes, resume, one writer per folder,
attachments published with their result, a full disk that leaves no half file."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from rollrisk.storage.atomic_output import (
    NotAnOutputFolder,
    OutputFolderBusy,
    PartitionedRun,
    file_sha256,
    holds_output_lock,
    output_lock,
    publish_file,
    read_current,
    staging_path,
)


def _frame(partition: int) -> pl.DataFrame:
    return pl.DataFrame(
        {"account_id": [f"A{partition}{i}" for i in range(3)], "p": [0.1, 0.2, 0.3]}
    )


def _complete(run: PartitionedRun, partitions: int = 2) -> None:
    files = [run.write_partition(k, _frame(k)) for k in range(partitions)]
    run.publish({"rows": 3 * partitions}, files)


def test_nothing_is_visible_until_publish_and_then_everything_is(tmp_path):
    run = PartitionedRun(tmp_path, {"as_of": "2025-06-30", "model": "v1"})
    run.write_partition(0, _frame(0))
    with pytest.raises(FileNotFoundError, match="no published result"):
        read_current(tmp_path)
    run.publish({"rows": 3}, [run.existing_partition(0)])
    manifest, rows = read_current(tmp_path)
    assert manifest["rows"] == 3 and rows.height == 3
    assert run.is_published


def test_same_identity_same_folder_same_bytes(tmp_path):
    first = PartitionedRun(tmp_path / "a", {"as_of": "2025-06-30"})
    second = PartitionedRun(tmp_path / "b", {"as_of": "2025-06-30"})
    _complete(first)
    _complete(second)
    assert first.key == second.key
    assert [p.sha256 for p in map(first.existing_partition, range(2))] == [
        p.sha256 for p in map(second.existing_partition, range(2))
    ]
    assert PartitionedRun(tmp_path, {"as_of": "2025-07-31"}).key != first.key


def test_a_new_run_replaces_the_previous_result_only_when_complete(tmp_path):
    old = PartitionedRun(tmp_path, {"as_of": "2025-06-30"})
    _complete(old)
    new = PartitionedRun(tmp_path, {"as_of": "2025-07-31"})
    new.write_partition(0, _frame(9))  # killed before the second partition and the publish
    manifest, _ = read_current(tmp_path)
    assert manifest["identity"] == {"as_of": "2025-06-30"}
    assert new.is_done(0) and not new.is_done(1)
    _complete(new)
    assert read_current(tmp_path)[0]["identity"] == {"as_of": "2025-07-31"}


# --------------------------------------------------------------------------- the folder's lock


def _lock_once(out: Path) -> None:
    with output_lock(out):
        pass


def test_a_second_holder_of_the_lock_is_refused_and_named(tmp_path):
    out = tmp_path / "out"
    with output_lock(out):
        holder = rf"being written by another run \(pid {os.getpid()} on .*, since "
        with pytest.raises(OutputFolderBusy, match=holder):
            _lock_once(out)
    _lock_once(out)  # released on exit


def test_a_killed_holder_releases_the_lock(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path\n"
         "from rollrisk.storage.atomic_output import output_lock\n"
         "with output_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)",
         str(out)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(OutputFolderBusy, match=f"pid {holder.pid} "), output_lock(out):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with output_lock(out) as staging:  # the kernel dropped the dead run's lock
        assert staging.is_dir() and not any(staging.iterdir())


def test_the_lock_clears_what_a_killed_run_staged(tmp_path):
    out = tmp_path / "out"
    leftover = staging_path(out, "rejects.csv")
    leftover.parent.mkdir(parents=True)
    leftover.write_text("half a file, left by a killed run")
    with output_lock(out) as staging:
        assert staging == leftover.parent
        assert not any(staging.iterdir())


def test_a_function_declared_with_the_lock_holds_it_while_it_runs(tmp_path):
    @holds_output_lock
    def job(data: str, out: Path) -> str:
        with pytest.raises(OutputFolderBusy), output_lock(out):
            pass
        return data

    assert job("x", out=tmp_path / "out") == "x"
    assert job("y", tmp_path / "out") == "y"
    with pytest.raises(TypeError, match="no parameter `out`"):
        holds_output_lock(lambda data: data)


# --------------------------------------------------------------------------- attachments


def test_an_attachment_is_published_with_its_result_and_only_with_it(tmp_path):
    old = PartitionedRun(tmp_path, {"as_of": "2025-06-30"})
    staged = tmp_path / "staged-old.csv"
    staged.write_text("table,row\nstatements,1\n")
    manifest_path = old.publish({}, [old.write_partition(0, _frame(0))], {"rejects.csv": staged})
    assert not staged.exists()
    assert (tmp_path / "rejects.csv").read_text() == "table,row\nstatements,1\n"
    [entry] = json.loads(manifest_path.read_text())["attachments"]
    assert entry["file"] == "rejects.csv"
    assert entry["sha256"] == file_sha256(tmp_path / "current" / "rejects.csv")

    new = PartitionedRun(tmp_path, {"as_of": "2025-07-31"})
    new.write_partition(0, _frame(1))  # a new run on its way: readers still see the old files
    assert (tmp_path / "rejects.csv").read_text() == "table,row\nstatements,1\n"
    staged = tmp_path / "staged-new.csv"
    staged.write_text("table,row\n")
    new.publish({}, [new.existing_partition(0)], {"rejects.csv": staged})
    assert (tmp_path / "rejects.csv").read_text() == "table,row\n"
    assert (tmp_path / "rejects.csv").is_symlink()


def _older_layout(out: Path) -> None:
    """A result the older layout published: a manifest without attachments, and the rejects
    written beside ``current`` as a plain file."""
    run_dir = out / "runs" / "0123456789abcdef"
    run_dir.mkdir(parents=True)
    (run_dir / "manifest.json").write_text(json.dumps({"run_key": "0123456789abcdef"}))
    (out / "current").symlink_to(Path("runs") / "0123456789abcdef")
    (out / "rejects.csv").write_text("stale, from an older version\n")


def test_publish_replaces_a_plain_rejects_file_of_the_older_layout(tmp_path):
    out = tmp_path / "out"
    _older_layout(out)
    with output_lock(out):  # the folder is of this kind of output: taken
        run = PartitionedRun(out, {"as_of": "2025-06-30"})
        staged = tmp_path / "staged.csv"
        staged.write_text("table,row\n")
        run.publish({}, [run.write_partition(0, _frame(0))], {"rejects.csv": staged})
    assert (out / "rejects.csv").read_text() == "table,row\n"
    assert (out / "rejects.csv").is_symlink()


# --------------------------------------------------------------------------- foreign folders


def _published(out: Path) -> None:
    """A result of this layout in ``out``, with its rejects attached."""
    with output_lock(out) as staging:
        run = PartitionedRun(out, {"as_of": "2025-06-30"})
        (staging / "rejects.csv").write_text("table,row\n")
        run.publish(
            {}, [run.write_partition(0, _frame(0))], {"rejects.csv": staging / "rejects.csv"}
        )


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): (f"-> {os.readlink(p)}" if p.is_symlink() else
                                     p.read_text() if p.is_file() else "/")
        for p in sorted(folder.rglob("*"))
    }  # fmt: skip


@pytest.mark.parametrize(
    ("files", "named"),
    [
        ({"rejects.csv": "precious\n", "current": "y\n"}, "'current', a regular file"),
        ({"rejects.csv": "precious\n"}, "'rejects.csv', a regular file"),
        # a training run's folder: its report and rejects
        ({"report.md": "# model\n", "rejects.csv": "table,file,row,key,reasons\n"}, "'rejects.csv'"),
    ],
)  # fmt: skip
def test_a_folder_of_other_files_is_refused_and_left_as_it_was(tmp_path, files, named):
    out = tmp_path / "x"
    out.mkdir()
    for name, text in files.items():
        (out / name).write_text(text)
    before = _tree(out)
    with (
        pytest.raises(NotAnOutputFolder, match=f"^{out} holds {named}") as refused,
        output_lock(out),
    ):
        pass
    message = str(refused.value)
    assert "\n" not in message and "give another --out" in message
    assert _tree(out) == before  # no lock file, no staging folder, nothing replaced


def test_a_foreign_folder_holding_a_result_is_refused_too(tmp_path):
    out = tmp_path / "out"
    _published(out)
    (out / "rejects.csv").unlink()
    (out / "rejects.csv").write_text("precious\n")  # the user's file where the link was
    with pytest.raises(NotAnOutputFolder, match="'rejects.csv', a regular file"), output_lock(out):
        pass
    # and publish, the last word, never replaces it either
    run = PartitionedRun(out, {"as_of": "2025-07-31"})
    staged = tmp_path / "staged.csv"
    staged.write_text("table,row\n")
    with pytest.raises(NotAnOutputFolder, match="'rejects.csv'"):
        run.publish({}, [run.write_partition(0, _frame(1))], {"rejects.csv": staged})
    assert (out / "rejects.csv").read_text() == "precious\n"
    assert read_current(out)[0]["identity"] == {"as_of": "2025-06-30"}


def test_a_previous_result_and_a_killed_runs_leftovers_are_taken(tmp_path):
    out = tmp_path / "out"
    _published(out)
    (out / ".current.12345.tmp").symlink_to("runs/abc")  # a publish killed between two steps
    (out / ".staging").mkdir()
    (out / ".staging" / "rejects.csv").write_text("half")
    PartitionedRun(out, {"as_of": "2025-07-31"}).write_partition(0, _frame(1))  # killed run
    _published(out)  # the same run again: taken
    with output_lock(tmp_path / "empty"):  # a new folder, and an empty one, too
        pass
    (tmp_path / "empty").mkdir(exist_ok=True)
    with output_lock(tmp_path / "empty"):
        pass


def test_publish_removes_temporary_files_that_killed_runs_left(tmp_path):
    run = PartitionedRun(tmp_path, {"as_of": "2025-06-30"})
    written = run.write_partition(0, _frame(0))
    stray = run.run_dir / "part-00001.parquet.12345.tmp"
    stray.write_bytes(b"half")
    run.publish({}, [written])
    assert sorted(p.name for p in run.run_dir.iterdir()) == ["manifest.json", "part-00000.parquet"]


# --------------------------------------------------------------------------- a full disk


def test_a_full_disk_is_an_os_error_and_leaves_no_half_file(tmp_path, monkeypatch):
    def full_disk(self, file, **options):
        Path(file).write_bytes(b"PAR1 half")  # what polars has written when the disk fills
        raise pl.exceptions.ComputeError(
            "parquet: File out of specification: underlying IO error: No space left on device "
            "(os error 28)"
        )

    monkeypatch.setattr(pl.DataFrame, "write_parquet", full_disk)
    run = PartitionedRun(tmp_path, {"as_of": "2025-06-30"})
    with pytest.raises(OSError, match="No space left on device") as raised:
        run.write_partition(0, _frame(0))
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.filename.endswith(".tmp")
    assert list(run.run_dir.iterdir()) == []


def test_other_polars_errors_pass_through_unchanged(tmp_path, monkeypatch):
    def broken(self, file, **options):
        raise pl.exceptions.ComputeError("a bug, not the disk")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", broken)
    with pytest.raises(pl.exceptions.ComputeError, match="a bug, not the disk"):
        PartitionedRun(tmp_path, {"as_of": "2025-06-30"}).write_partition(0, _frame(0))


def test_publish_file_replaces_the_previous_file_whole(tmp_path):
    final = tmp_path / "rejects.csv"
    final.write_text("old\n")
    staged = tmp_path / ".rejects.csv.1.tmp"
    staged.write_text("new\n")
    publish_file(staged, final)
    assert final.read_text() == "new\n" and not staged.exists()
