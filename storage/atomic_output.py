"""Partitioned Parquet output that becomes visible atomically and resumes after a kill.

Layout under an output folder ``OUT``::

    OUT/current -> runs/<key>            symlink, swapped atomically when a run completes
    OUT/runs/<key>/part-00000.parquet    one file per partition
    OUT/runs/<key>/rejects.csv           files published with the result (attachments)
    OUT/runs/<key>/manifest.json         written last: counts, checksums, identity
    OUT/rejects.csv -> current/rejects.csv   each attachment, reached through ``current``
    OUT/.lock                            held by the one run writing into OUT
    OUT/.staging/                        files a run prepares before it knows its key

``<key>`` is a digest of everything that determines the output (input fingerprint, model
version, as-of, configuration), so the same inputs always land in the same folder:

* one run at a time: a run holds ``OUT/.lock`` (``flock``, released by the kernel when the
  process ends, however it ends) from before it reads its inputs until it has published; a
  second run into the same folder stops at once with :class:`OutputFolderBusy`;
* a partition file appears only by ``os.replace`` of a finished temporary file, so a file
  that exists is complete; a killed run leaves at most a stray ``*.tmp``;
* a rerun with the same key skips partitions already written (resume) and produces the same
  bytes for the others (deterministic writers);
* readers follow ``OUT/current``, which always points at a run with a manifest, or does not
  exist: a run killed at any moment leaves either nothing or the complete previous result,
  its attachments (the rejects) included, since they live in the run folder and are listed
  with their checksums in its manifest;
* a run writes only into a folder that is new, empty or of this layout
  (:func:`check_output_folder`): a folder holding anything else (a training run's report, a
  user's ``rejects.csv`` or ``current`` file) is refused before anything in it changes.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import inspect
import json
import os
import re
import shutil
import socket
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import polars as pl

from rollrisk.errors import UserError

MANIFEST = "manifest.json"
CURRENT = "current"
LOCK = ".lock"
STAGING = ".staging"

Params = ParamSpec("Params")
Result = TypeVar("Result")


class OutputFolderBusy(UserError):
    """Another run holds the output folder's lock."""


class NotAnOutputFolder(UserError):
    """The output folder holds files that are not of this layout (publishing would replace
    them, or mix its files with them)."""


def identity_key(identity: Mapping[str, Any]) -> str:
    """A short, stable digest of a run's identity (JSON with sorted keys)."""
    canonical = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- where a job may write


def check_output_outside_data(data: Path, output: Path, flag: str = "--out") -> None:
    """Refuse an output path ``output`` (what ``flag`` names) that is the portfolio folder
    ``data``, lies inside it, or holds it: a job never writes into its own input, since its
    files would replace the tables (an ``accounts.csv`` training set, a rejects file named
    ``statements.csv``) or mix with them (``current/``, ``runs/``, ``.lock``). Called by every
    job that takes ``--data`` before it creates or removes anything. Paths are compared
    resolved (symbolic links and ``..`` followed), so another spelling of the same folder is
    caught too.

    Raises:
        UserError: one line naming both paths.
    """
    # os.path.realpath, not Path.resolve: Python 3.11's resolve raises RuntimeError on a looping
    # link, which the loader reports as such
    folder, target = Path(os.path.realpath(data)), Path(os.path.realpath(output))
    if target == folder:
        where = "is the portfolio folder"
    elif folder in target.parents:
        where = "is inside the portfolio folder"
    elif target in folder.parents:
        where = "holds the portfolio folder"
    else:
        return
    raise UserError(
        f"{flag} {output} {where} --data {data}: a job never writes into its input (its files "
        f"would replace or mix with the tables); give a {flag} outside {data}"
    )


# --------------------------------------------------------------------------- the folder's lock


@contextmanager
def output_lock(out_dir: Path) -> Iterator[Path]:
    """Hold the lock of the output folder ``out_dir`` (made if needed) while the block runs,
    and yield its staging folder, emptied: files a run prepares before it knows its key (the
    rejects) wait there until :meth:`PartitionedRun.publish` moves them into the run folder.

    The lock is an ``flock`` on ``OUT/.lock``: the kernel releases it when the process ends,
    killed or not, so a dead run never blocks the next one. The lock file names its holder
    (process id, host, start time) for the message a second run gets.

    Raises:
        NotAnOutputFolder: ``out_dir`` holds files that are not of this layout
            (:func:`check_output_folder`); nothing is made in it.
        OutputFolderBusy: another run holds the lock (this run stops at once: waiting would
            only make it score inputs that may have changed meanwhile, and a scheduler's
            retry is the clearer place to wait).
        UserError: the folder cannot be made or written (read-only, no permission, full disk).
    """
    out_dir = Path(out_dir)
    # the topmost folder this run makes: removed again when the run ends leaving nothing in
    # it but its lock (a failed first run must not leave a folder that looks like an output)
    created = next((p for p in (*reversed(out_dir.parents), out_dir) if not p.exists()), None)
    # before the lock file is made: a folder of other files is left as it was (a run writing
    # into a folder of this layout meanwhile makes only entries of the layout)
    check_output_folder(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(out_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise UserError(
            f"{out_dir}: cannot write to this output folder ({error.strerror or error})"
        ) from error
    with _locked(out_dir, descriptor, created) as staging:
        yield staging


def _remove_if_unused(out_dir: Path, created: Path) -> None:
    """Remove ``out_dir`` and the folders above it up to ``created`` (which this run made)
    when ``out_dir`` holds nothing but the lock file: the run published nothing. Called while
    the lock is still held, so no other run is writing there; anything else in the folder (a
    result, a file another run made meanwhile) keeps it."""
    try:
        if {entry.name for entry in out_dir.iterdir()} != {LOCK}:
            return
        (out_dir / LOCK).unlink()
        folder = out_dir
        while True:
            folder.rmdir()  # only when empty: OSError otherwise, and we stop
            if folder == created:
                return
            folder = folder.parent
    except OSError:
        return


@contextmanager
def _locked(out_dir: Path, descriptor: int, created: Path | None) -> Iterator[Path]:
    """Take the ``flock`` on the opened lock file ``descriptor`` of ``out_dir`` and yield the
    emptied staging folder (:func:`output_lock`); at the end, remove the folders ``created``
    by this run if it left nothing in them."""
    with os.fdopen(descriptor, "r+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().strip() or "a process that has not said who it is"
            raise OutputFolderBusy(
                f"{out_dir} is being written by another run ({holder}); two runs into one "
                "folder would mix their files, so this one stops without writing: wait for "
                "the other to finish, or give another --out"
            ) from None
        started = datetime.now().astimezone().isoformat(timespec="seconds")
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {started}\n")
        handle.flush()
        staging = out_dir / STAGING
        shutil.rmtree(staging, ignore_errors=True)  # a killed run's leftovers: ours now
        try:
            staging.mkdir()
        except OSError as error:  # the lock file was writable, the folder is not
            raise UserError(
                f"{out_dir}: cannot write to this output folder ({error.strerror or error})"
            ) from error
        try:
            yield staging
        finally:
            # what a failed run staged is not published; `rollrisk validate` shows the rows
            shutil.rmtree(staging, ignore_errors=True)
            handle.seek(0)
            handle.truncate()
            if created is not None:
                _remove_if_unused(out_dir, created)


def staging_path(out_dir: Path, name: str) -> Path:
    """Where a run holding the lock of ``out_dir`` (:func:`output_lock`) stages file ``name``."""
    return Path(out_dir) / STAGING / name


def holds_output_lock(function: Callable[Params, Result]) -> Callable[Params, Result]:
    """Run ``function`` holding the lock of the folder passed as its argument ``out``
    (:func:`output_lock`): a job writing an output folder is declared as one with this."""
    signature = inspect.signature(function)
    if "out" not in signature.parameters:
        raise TypeError(f"{function.__qualname__} has no parameter `out` to lock")

    @functools.wraps(function)
    def locked(*args: Params.args, **kwargs: Params.kwargs) -> Result:
        out = signature.bind(*args, **kwargs).arguments["out"]
        with output_lock(Path(out)):
            return function(*args, **kwargs)

    return locked


# --------------------------------------------------------------------------- what may be replaced


# a link a killed publish staged (:func:`_point`): `.<name>.<pid>.tmp`
_STAGED_LINK = re.compile(r"\..+\.\d+\.tmp")


def check_output_folder(out_dir: Path, names: Collection[str] | None = None) -> None:
    """Refuse an output folder ``out_dir`` that holds anything but this layout (the module
    docstring): the ``current`` link into ``runs/``, the ``runs`` folder, links through
    ``current`` (the attachments), the lock, the staging folder and a killed run's staged
    links. Publishing replaces ``current`` and each attachment's name by a link, and a plain
    file there (a user's ``rejects.csv``, a training run's files) would be lost or mixed with
    this output's. A folder of the older layout, whose published manifest lists no
    attachments, held them as plain files: those are replaced. ``names``: only these entries
    are checked (those publishing replaces), instead of all.

    Raises:
        NotAnOutputFolder: one line naming the folder, the first offending entry and what to
            do instead.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return
    older_layout = _published_manifest_lacks_attachments(out_dir)
    try:
        entries = (
            sorted(out_dir.iterdir(), key=lambda p: p.name)
            if names is None
            else [out_dir / name for name in sorted(names)]
        )
    except OSError:  # unreadable: the lock, made next, says what is wrong with the folder
        return
    for entry in entries:
        problem = _foreign(entry, older_layout)
        if problem is not None:
            raise NotAnOutputFolder(
                f"{out_dir} holds {entry.name!r}, {problem}: a run publishes its result there "
                f"as links ({CURRENT} -> runs/<key>, attachments through {CURRENT}/), which "
                f"would replace or mix with it; give another --out (new, empty, or one that "
                f"this job wrote), or move {entry} away first"
            )


def _foreign(entry: Path, older_layout: bool) -> str | None:
    """Why ``entry`` (in an output folder) is not of this layout, or None when it is."""
    name = entry.name
    if not (entry.exists() or entry.is_symlink()):
        return None
    if name in (LOCK, STAGING) or (_STAGED_LINK.fullmatch(name) and entry.is_symlink()):
        return None
    if name == CURRENT:
        if entry.is_symlink() and Path(os.readlink(entry)).parts[:1] == ("runs",):
            return None
        return f"a {_kind(entry)}, not the link to runs/<key> a run publishes"
    if name == "runs":
        return None if entry.is_dir() and not entry.is_symlink() else f"a {_kind(entry)}"
    if entry.is_symlink() and Path(os.readlink(entry)) == Path(CURRENT) / name:
        return None  # an attachment, reached through `current`
    if older_layout and entry.is_file() and not entry.is_symlink():
        return None  # an attachment of the older layout: replaced by its link
    return f"a {_kind(entry)} that this kind of output does not make"


def _kind(entry: Path) -> str:
    if entry.is_symlink():
        return f"link to {os.readlink(entry)}"
    return "folder" if entry.is_dir() else "regular file"


def _published_manifest_lacks_attachments(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds a result published by the older layout: ``current`` links a
    run whose manifest has no ``attachments`` (those were written beside ``current`` as plain
    files, where the links are now)."""
    link = out_dir / CURRENT
    if not link.is_symlink() or Path(os.readlink(link)).parts[:1] != ("runs",):
        return False
    try:
        manifest = json.loads((link / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "attachments" not in manifest


# --------------------------------------------------------------------------- one run's files


@dataclass(frozen=True)
class PartitionFile:
    partition: int
    path: Path
    rows: int
    sha256: str


class PartitionedRun:
    """One run's partitioned output; see the module docstring for the guarantees.

    Write and publish while holding the folder's lock (:func:`output_lock`).
    """

    def __init__(self, out_dir: Path, identity: Mapping[str, Any]) -> None:
        self.out_dir = Path(out_dir)
        self.identity = dict(identity)
        self.key = identity_key(self.identity)
        self.run_dir = self.out_dir / "runs" / self.key

    def partition_path(self, partition: int) -> Path:
        return self.run_dir / f"part-{partition:05d}.parquet"

    def is_done(self, partition: int) -> bool:
        return self.partition_path(partition).is_file()

    @property
    def is_published(self) -> bool:
        return (self.run_dir / MANIFEST).is_file() and self.current_target() == self.run_dir

    def current_target(self) -> Path | None:
        link = self.out_dir / CURRENT
        return (self.out_dir / os.readlink(link)) if link.is_symlink() else None

    def write_partition(self, partition: int, frame: pl.DataFrame) -> PartitionFile:
        """Write one partition: a temporary file first, then an atomic rename.

        Raises:
            OSError: the file cannot be written (a full disk, no permission); the temporary
                file is removed, and nothing else changes.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        final = self.partition_path(partition)
        temporary = _temporary(final)
        try:
            try:
                frame.write_parquet(temporary, compression="zstd", statistics=True)
            except pl.exceptions.PolarsError as error:
                os_error = _os_error_of(error, temporary)
                if os_error is None:
                    raise
                raise os_error from error
            _fsync(temporary)
            os.replace(temporary, final)
        except BaseException:
            temporary.unlink(missing_ok=True)  # a half-written file must not fill the disk
            raise
        return PartitionFile(partition, final, frame.height, file_sha256(final))

    def existing_partition(self, partition: int) -> PartitionFile:
        path = self.partition_path(partition)
        rows = pl.scan_parquet(path).select(pl.len()).collect().item()
        return PartitionFile(partition, path, rows, file_sha256(path))

    def publish(
        self,
        manifest: Mapping[str, Any],
        partitions: list[PartitionFile],
        attachments: Mapping[str, Path] | None = None,
    ) -> Path:
        """Move the ``attachments`` (file name in the run folder -> staged file) into the run
        folder, write the manifest (partitions and attachments with their checksums), then
        point ``OUT/current`` at this run in one atomic step.

        Each attachment is also reachable as ``OUT/<name>``, a link through ``current``, so
        it always belongs to the published result. Leftover temporary files of killed runs
        in the run folder are removed last.
        """
        # the last word before anything moves (the lock took the first): never replace a file
        # this layout did not make
        check_output_folder(self.out_dir, [CURRENT, *(attachments or {})])
        self.run_dir.mkdir(parents=True, exist_ok=True)
        attached = []
        for name, staged in sorted((attachments or {}).items()):
            final = self.run_dir / name
            _fsync(Path(staged))
            os.replace(staged, final)
            attached.append(
                {"file": name, "bytes": final.stat().st_size, "sha256": file_sha256(final)}
            )
        body = {
            **manifest,
            "run_key": self.key,
            "identity": self.identity,
            "partitions": [
                {"file": p.path.name, "rows": p.rows, "sha256": p.sha256}
                for p in sorted(partitions, key=lambda p: p.partition)
            ],
            "attachments": attached,
        }
        manifest_path = self.run_dir / MANIFEST
        temporary = _temporary(manifest_path)
        temporary.write_text(json.dumps(body, indent=2, sort_keys=True, default=str) + "\n")
        _fsync(temporary)
        os.replace(temporary, manifest_path)
        # the links through `current` first: until the swap they show the previous result's
        # files, after it this one's, so no moment mixes the two
        for name in sorted(attachments or {}):
            _point(self.out_dir / name, Path(CURRENT) / name)
        _point(self.out_dir / CURRENT, Path("runs") / self.key)
        for stray in self.run_dir.glob("*.tmp"):
            stray.unlink(missing_ok=True)
        return manifest_path


def publish_file(staged: Path, final: Path) -> None:
    """Make the finished file ``staged`` visible as ``final`` in one step (fsync, rename):
    ``final`` is the previous complete file or the new complete file, never a partial one."""
    _fsync(staged)
    os.replace(staged, final)


def _point(link: Path, target: Path) -> None:
    """Make ``link`` a symlink to ``target`` by one rename(2), which is atomic (an existing
    link, or a plain file of the older layout, is replaced: :func:`check_output_folder` has
    refused any other file)."""
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    staged = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    staged.unlink(missing_ok=True)
    staged.symlink_to(target)
    os.replace(staged, link)


def _temporary(final: Path) -> Path:
    """A temporary name beside ``final``, owned by this process."""
    return final.with_name(f"{final.name}.{os.getpid()}.tmp")


_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _os_error_of(error: Exception, path: Path) -> OSError | None:
    """The operating-system error inside a polars error (polars reports a full disk as
    ``ComputeError: ... No space left on device (os error 28)``), or None."""
    found = _OS_ERROR.search(str(error))
    if found is None:
        return None
    code = int(found.group(1))
    return OSError(code, os.strerror(code), str(path))


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        try:
            os.fsync(handle.fileno())
        except OSError as error:  # a full disk often shows here first: say which file
            if error.filename is not None:
                raise
            raise OSError(error.errno, error.strerror, str(path)) from error


def read_current(out_dir: Path) -> tuple[dict[str, Any], pl.DataFrame]:
    """The manifest and all rows of the published result in ``out_dir``."""
    current = Path(out_dir) / CURRENT
    if not (current / MANIFEST).is_file():
        raise FileNotFoundError(f"{out_dir}: no published result ({CURRENT}/{MANIFEST} missing)")
    manifest = json.loads((current / MANIFEST).read_text())
    files = [current / entry["file"] for entry in manifest["partitions"]]
    frame = pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()
    return manifest, frame
