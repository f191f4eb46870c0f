"""Partitioned output: atomic publish, deterministic bytes, resume."""

from __future__ import annotations

import polars as pl
import pytest

from rollrisk.storage.atomic_output import PartitionedRun, read_current


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
