"""What a scoring worker process starts with (rollrisk.scoring.workers.spawn_pool)."""

from __future__ import annotations

import os

import pytest

from rollrisk.scoring import workers
from rollrisk.scoring.workers import ALLOCATOR_VARIABLE, KEEP_MEMORY_PAGES, spawn_pool


def test_a_scoring_worker_keeps_its_memory_pages_and_the_parent_is_left_as_it_was(monkeypatch):
    # polars sets the allocator variable as it is imported (its own short decay first)
    before = os.environ.get(ALLOCATOR_VARIABLE)
    monkeypatch.setattr(workers, "usable_cores", lambda: 2)
    pool = spawn_pool(1, int, allocator=KEEP_MEMORY_PAGES)  # int(): a start-up doing nothing
    try:
        allocator = pool.submit(os.getenv, ALLOCATOR_VARIABLE).result(timeout=120)
        threads = pool.submit(os.getenv, "POLARS_MAX_THREADS").result(timeout=120)
    finally:
        pool.shutdown()
    # the worker's setting comes last, so it wins over polars' own and any set before
    assert allocator.endswith("," + KEEP_MEMORY_PAGES) or allocator == KEEP_MEMORY_PAGES
    if before:
        assert allocator.startswith(before)
    assert threads == "2"
    assert os.environ.get(ALLOCATOR_VARIABLE) == before  # the parent's own is restored
    assert "dirty_decay_ms:-1" in KEEP_MEMORY_PAGES and "muzzy_decay_ms:-1" in KEEP_MEMORY_PAGES


def test_the_scoring_workers_ask_to_keep_their_pages(monkeypatch):
    asked = {}

    def spawn(workers, initializer, initargs=(), allocator=None):
        asked["allocator"] = allocator
        raise RuntimeError("not started in this test")

    monkeypatch.setattr(workers, "spawn_pool", spawn)
    with pytest.raises(RuntimeError, match="not started"):
        workers.ScoringWorkers(setup=None, workers=2)
    assert asked["allocator"] == KEEP_MEMORY_PAGES


_GIVEN: tuple[object, ...] = ()


def _keep(*given: object) -> None:
    global _GIVEN
    _GIVEN = given


def _given() -> tuple[object, ...]:
    return _GIVEN


def test_the_workers_get_their_start_up_arguments_from_a_file_removed_at_shutdown(tmp_path):
    # a large argument (a scoring setup holds the model) goes through a file, not the pipe
    large = bytes(range(256)) * 40_000  # 10 MB: far above a pipe's buffer
    pool = spawn_pool(1, _keep, ("setup", large))
    startup_file = pool._startup_file
    try:
        assert startup_file.exists()
        given = [pool.submit(_given).result(timeout=120) for _ in range(2)]
    finally:
        pool.shutdown()
    assert all(g == ("setup", large) for g in given)
    assert not startup_file.exists()


def test_a_partition_s_tables_reach_the_worker_as_they_were_and_leave_no_file(tmp_path):
    """The tables go through Arrow IPC files (pickled through the task queue they cost this
    process 0.34 s per 50,000-account partition): the same frames, an absent table kept
    absent, every file removed once read."""
    from datetime import date, datetime

    import polars as pl

    from rollrisk.scoring.workers import _read_inputs, _write_inputs

    statements = pl.DataFrame(
        {
            "account_id": ["A-1", "A-1", "B-\u00e9"],
            "cycle_end": [date(2025, 1, 31), date(2025, 2, 28), date(2025, 1, 31)],
            "known_at": [datetime(2025, 2, 1, 6), datetime(2025, 3, 1, 6), None],
            "amount_due": [1.5, float("nan"), None],
            "dpd": [0, 31, 2],
        }
    )
    inputs = (statements.head(1), statements, None, statements.clear())
    files = _write_inputs(inputs, tmp_path / "part-00003")
    assert files[2] is None and all(f is not None and f.endswith(".arrow") for f in files[:2])
    read = _read_inputs(files)
    assert read[2] is None
    for given, got in zip(inputs, read, strict=True):
        if given is not None:
            assert got is not None and got.equals(given, null_equal=True)
            assert got.schema == given.schema
    assert list(tmp_path.iterdir()) == []
