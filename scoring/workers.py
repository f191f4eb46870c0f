"""Score partitions of a book in worker processes (the local engine on more than one core).

Most of a partition's scoring runs on one core: the decisions, reasons, segments and the
frames around them are Python, and polars and the explanation kernel spread only some of their
work over threads. :class:`ScoringWorkers` therefore scores several partitions at once, each
in its own process, every process with ``cores // workers`` threads for polars, numba and
OpenMP so that the processes do not fight over the cores.

The processes are *spawned* (a fresh interpreter each), never forked: polars' thread pool and
GNU OpenMP (LightGBM, the numba kernel) are not fork-safe once used, and the parent has used
them reading the book. Each worker receives the scoring setup once (pickled, as Spark's
broadcast does) and then one partition's four tables per task; it scores them with
:func:`score_partition`, the function the in-process loop calls, and writes the partition file
itself, so the bytes are the same whichever way a partition was scored. Only the written file's
name, rows and checksum come back, with the step timings.

At most ``workers + 1`` partitions' tables are held for the workers at a time, beside the
book the parent holds. A worker that dies (killed, out of memory) stops the run with a
message naming the partition; the partitions already written stay, and a rerun resumes.

A spawned worker imports the main module of the program that started it, as Python's
``multiprocessing`` does: a script that scores with workers (``score_portfolio(...,
workers=2)``) must keep its top-level code under ``if __name__ == "__main__":``. The CLI does.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from datetime import date
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import polars as pl

from rollrisk.scoring.core import ScoringSetup, score_accounts, warm_up
from rollrisk.storage.atomic_output import PartitionedRun, PartitionFile

# a partition's accounts, statements, collection actions and treatments (None: no such table)
PartitionInputs = tuple[pl.DataFrame | None, ...]

# the thread pools of the libraries a worker uses, sized before the worker imports them
THREAD_VARIABLES = ("POLARS_MAX_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS")
# polars' allocator (jemalloc) is configured from this variable as polars is imported: polars
# itself asks it to hand the pages a query freed back to the kernel after half a second, so a
# scoring worker, one partition after another, has the kernel fault and zero every page in
# again. A scoring worker keeps its pages instead (no decay; the last setting in the variable
# wins). Scoring 1,000,000 accounts: page faults 13.2M -> 9.3M, system time 47-51 -> 41-43 s,
# the workers' summed memory +1.1 GiB (docs/benchmarks.md). The policy simulation's replay
# workers, whose memory was not measured with it, keep polars' setting.
ALLOCATOR_VARIABLE, KEEP_MEMORY_PAGES = "_RJEM_MALLOC_CONF", "dirty_decay_ms:-1,muzzy_decay_ms:-1"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# a worker's start (a fresh interpreter importing polars, LightGBM and numba, then the
# explanation kernel's tables) costs about what scoring this many accounts costs: below it,
# another worker does not pay for itself
ACCOUNTS_PER_WORKER = 25_000


def auto_workers(accounts: int) -> int:
    """Workers worth starting for ``accounts`` to score: one per usable core, at most one per
    :data:`ACCOUNTS_PER_WORKER` accounts, at least one (1: score in this process)."""
    return max(1, min(usable_cores(), accounts // ACCOUNTS_PER_WORKER))


def score_partition(
    partition: int,
    inputs: PartitionInputs,
    as_of: date,
    setup: ScoringSetup,
    output: PartitionedRun,
    step_seconds: MutableMapping[str, float],
) -> PartitionFile:
    """Score one partition's tables and write its file; each step's wall seconds are added to
    ``step_seconds`` (the steps of :func:`rollrisk.scoring.core.score_accounts`, and write)."""
    scored = score_accounts(*inputs, as_of, setup, timings=step_seconds)
    started = time.perf_counter()
    written = output.write_partition(partition, scored)
    step_seconds["write"] = step_seconds.get("write", 0.0) + time.perf_counter() - started
    return written


class ScoringWorkers:
    """``workers`` spawned processes ready to score partitions with ``setup``.

    The processes start when the object is made and bootstrap (import, receive the setup,
    load the explanation kernel) while the caller goes on, e.g. cutting the book into
    partitions; :meth:`score` hands them the partitions; leaving the ``with`` block (or
    :meth:`close`) stops them, cancelling what was not started.
    """

    def __init__(self, setup: ScoringSetup, workers: int) -> None:
        self.workers = workers
        threads = max(1, usable_cores() // workers)
        self._pool = spawn_pool(
            workers, _start_worker, (setup, threads), allocator=KEEP_MEMORY_PAGES
        )
        # each partition's tables go to its worker as Arrow IPC files here (see _write_inputs)
        self._inputs = Path(tempfile.mkdtemp(prefix="rollrisk-partitions-"))

    def __enter__(self) -> ScoringWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self._inputs, ignore_errors=True)  # a cancelled or failed task's files

    def score(
        self,
        pending: Sequence[int],
        inputs: Callable[[int], PartitionInputs],
        as_of: date,
        output: PartitionedRun,
        step_seconds: MutableMapping[str, float],
    ) -> Iterator[PartitionFile]:
        """Score the ``pending`` partitions, yielding each written partition as it finishes
        (not in partition order). ``inputs(k)`` gives partition ``k``'s tables; it is called
        when a worker is about to be free (one spare task is queued, so that no worker waits
        for its data), so few partitions' tables are held at a time. The workers' step
        timings are summed into ``step_seconds`` (wall seconds of all workers added up, so
        they can exceed the run's wall time).

        Raises:
            RuntimeError: a worker process died while scoring a partition (named).
        """
        running: dict[Future[tuple[PartitionFile, dict[str, float]]], int] = {}
        queue = iter(pending)

        def submit(partition: int) -> None:
            files = _write_inputs(inputs(partition), self._inputs / f"part-{partition:05d}")
            task = self._pool.submit(_score_task, partition, files, as_of, output)
            running[task] = partition

        for partition in queue:
            submit(partition)
            if len(running) > self.workers:
                break
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                partition = running.pop(future)
                try:
                    written, timings = future.result()
                except BrokenProcessPool as error:
                    raise RuntimeError(
                        f"a scoring worker process died while partition {partition} was being "
                        "scored (killed, or out of memory?); the partitions already written "
                        "are kept and a rerun resumes from them; with less memory, score with "
                        "fewer workers (--workers)"
                    ) from error
                for name, seconds in timings.items():
                    step_seconds[name] = step_seconds.get(name, 0.0) + seconds
                following = next(queue, None)
                if following is not None:
                    submit(following)
                yield written


def spawn_pool(
    workers: int,
    initializer: Callable[..., object],
    initargs: tuple[object, ...] = (),
    allocator: str | None = None,
) -> ProcessPoolExecutor:
    """``workers`` spawned processes (never forked: see the module docstring), all started now,
    each with ``usable_cores() // workers`` threads for polars, numba and OpenMP, each killed
    when this process dies, each running ``initializer(*initargs)`` once before any task.
    ``allocator``: settings of polars' allocator for the workers, after those already in
    :data:`ALLOCATOR_VARIABLE` (e.g. :data:`KEEP_MEMORY_PAGES`; None: polars' own). A
    spawned worker imports the main module of the program: see the module docstring.

    ``initargs`` are pickled once into a temporary file that each worker reads as it starts
    (removed when the pool is shut down). Handed through the start-up pipe, as
    ``multiprocessing`` does, a large argument (a scoring setup holds the model) would keep
    this process waiting for each worker in turn to start its interpreter and read it: 4.4 s
    for two scoring workers, which now start side by side while this process goes on."""
    threads = max(1, usable_cores() // workers)
    handle, name = tempfile.mkstemp(prefix="rollrisk-workers-", suffix=".pickle")
    with os.fdopen(handle, "wb") as file:
        pickle.dump(initargs, file, protocol=pickle.HIGHEST_PROTOCOL)
    with _worker_environment(threads, allocator):  # read by each spawned worker as it starts
        pool = _SpawnedPool(
            Path(name),
            max_workers=workers,
            mp_context=get_context("spawn"),
            initializer=_start_spawned,
            initargs=(os.getpid(), initializer, name),
        )
        # workers start on demand, one per task while none is idle: start them all now,
        # inside the variables
        for _ in range(workers):
            pool.submit(os.getpid)
    return pool


class _SpawnedPool(ProcessPoolExecutor):
    """A process pool that removes its workers' start-up file once it is shut down (or, at
    the latest, when it is collected or this process exits)."""

    def __init__(self, startup_file: Path, **options: Any) -> None:
        super().__init__(**options)
        self._startup_file = startup_file
        self._remove = weakref.finalize(self, startup_file.unlink, missing_ok=True)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=wait, cancel_futures=cancel_futures)
        if wait:  # every worker has stopped: none can still need the file
            self._remove()


def _start_spawned(parent: int, initializer: Callable[..., object], startup_file: str) -> None:
    _die_with(parent)
    with open(startup_file, "rb") as file:
        initargs = pickle.load(file)
    initializer(*initargs)


@contextmanager
def _worker_environment(threads: int, allocator: str | None = None) -> Iterator[None]:
    """Set the libraries' thread counts, and ``allocator`` after the allocator's settings
    already there (the last setting wins), in this process's environment for the duration (a
    spawned child copies the environment when it starts), then restore them."""
    saved = {name: os.environ.get(name) for name in (*THREAD_VARIABLES, ALLOCATOR_VARIABLE)}
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    if allocator is not None:
        before = saved[ALLOCATOR_VARIABLE]
        os.environ[ALLOCATOR_VARIABLE] = f"{before},{allocator}" if before else allocator
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_SETUP: ScoringSetup | None = None  # the worker's copy of the scoring setup


def _start_worker(setup: ScoringSetup, threads: int) -> None:
    """Runs once in each worker: keep the setup, compile or load the explanation kernel."""
    global _SETUP
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    _SETUP = setup
    warm_up(setup)


def _die_with(parent: int) -> None:
    """Have the kernel kill this worker when the process that started it dies (Linux), so a
    killed run leaves no worker writing partitions behind it; elsewhere workers exit when
    they find the parent's queue closed, after the partition in hand."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        return
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _write_inputs(inputs: PartitionInputs, stem: Path) -> tuple[str | None, ...]:
    """A partition's tables as uncompressed Arrow IPC files ``STEM.N.arrow`` (None for an
    absent table), read back by its worker (:func:`_read_inputs`). Through the task queue
    they were pickled by this process and unpickled by the worker: 0.34 + 0.17 s for one
    50,000-account partition's 113 MB, against 0.08 + 0.07-0.12 s written and read here."""
    files: list[str | None] = []
    for index, table in enumerate(inputs):
        if table is None:
            files.append(None)
            continue
        path = stem.with_name(f"{stem.name}.{index}.arrow")
        table.write_ipc(path, compression="uncompressed")
        files.append(str(path))
    return tuple(files)


def _read_inputs(files: tuple[str | None, ...]) -> PartitionInputs:
    """The tables :func:`_write_inputs` wrote, each file removed once read."""
    tables: list[pl.DataFrame | None] = []
    for path in files:
        if path is None:
            tables.append(None)
            continue
        tables.append(pl.read_ipc(path))
        os.unlink(path)
    return tuple(tables)


def _score_task(
    partition: int, files: tuple[str | None, ...], as_of: date, output: PartitionedRun
) -> tuple[PartitionFile, dict[str, float]]:
    """Runs in a worker: one partition read, scored and written, with its step timings."""
    assert _SETUP is not None, "the worker was not started by ScoringWorkers"
    timings: dict[str, float] = {}
    inputs = _read_inputs(files)
    return score_partition(partition, inputs, as_of, _SETUP, output, timings), timings
