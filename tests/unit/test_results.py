"""Partition numbering and reading a published scoring run."""

from __future__ import annotations

import polars as pl
import pytest

from rollrisk.errors import UserError
from rollrisk.storage.atomic_output import PartitionedRun
from rollrisk.storage.results import (
    PARTITION_COLUMN,
    PartitionedTables,
    default_partitions,
    partition_of,
    read_policy_simulation,
    read_scores,
)


def _accounts(ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"account_id": ids, "balance": [float(i) for i in range(len(ids))]})


def test_an_account_lands_in_the_same_partition_whatever_else_is_in_the_table():
    ids = [f"A{i:04d}" for i in range(200)]
    alone = pl.DataFrame({"account_id": ["A0042"]}).select(partition_of(pl.col("account_id"), 7))
    among = pl.DataFrame({"account_id": ids}).select(partition_of(pl.col("account_id"), 7))
    assert alone.item() == among.to_series()[42]
    assert set(among.to_series().to_list()) == set(range(7))  # 200 ids fill 7 partitions


def test_the_partitions_of_a_table_hold_each_row_exactly_once_in_the_tables_order():
    ids = [f"A{i:04d}" for i in range(100)]
    accounts = _accounts(ids)
    # several rows per account, in an order that is not sorted by account or partition
    statements = pl.DataFrame(
        {"account_id": [ids[(7 * i) % 100] for i in range(300)], "row": list(range(300))}
    )
    tables = PartitionedTables(
        {"accounts": accounts, "statements": statements, "treatments": None}, 4
    )
    parts = [tables.rows(k) for k in range(4)]
    assert all(part["treatments"] is None for part in parts)
    for name, frame in (("accounts", accounts), ("statements", statements)):
        assert all(PARTITION_COLUMN not in part[name].columns for part in parts)
        assert (
            pl.concat(part[name] for part in parts)
            .sort(frame.columns)
            .equals(frame.sort(frame.columns))
        )
        for k, part in enumerate(parts):  # what a filter on the partition gives, in order
            expected = frame.filter(partition_of(pl.col("account_id"), 4) == k)
            assert part[name].equals(expected)


def test_only_the_kept_accounts_are_cut_and_an_empty_partition_has_no_rows():
    accounts = _accounts([f"A{i:04d}" for i in range(100)])
    keep = pl.Series(["A0003", "A0050"])
    tables = PartitionedTables({"accounts": accounts}, 50, keep=keep)
    kept = pl.concat(tables.rows(k)["accounts"] for k in range(50))
    assert sorted(kept["account_id"]) == ["A0003", "A0050"]
    empty = next(k for k in range(50) if tables.rows(k)["accounts"].height == 0)
    assert tables.rows(empty)["accounts"].schema == accounts.schema


def test_reading_scores_says_to_run_score_first_or_that_nothing_was_scored(tmp_path):
    with pytest.raises(UserError, match="run `rollrisk score` first"):
        read_scores(tmp_path)
    run = PartitionedRun(tmp_path, {"as_of": "2025-06-30"})
    run.publish({"as_of": "2025-06-30"}, [run.write_partition(0, _accounts([]))])
    with pytest.raises(UserError, match="has no scored accounts"):
        read_scores(tmp_path)
    run = PartitionedRun(tmp_path, {"as_of": "2025-07-31"})
    run.publish({"as_of": "2025-07-31"}, [run.write_partition(0, _accounts(["A1"]))])
    manifest, scored = read_scores(tmp_path)
    assert manifest["as_of"] == "2025-07-31" and scored["account_id"].to_list() == ["A1"]


def test_a_missing_policy_simulation_names_the_file_and_the_job(tmp_path):
    with pytest.raises(UserError, match=r"policy_simulation\.json not found.*simulate-policy"):
        read_policy_simulation(tmp_path)
    (tmp_path / "policy_simulation.json").write_text('{"as_of": "2025-06-30"}')
    assert read_policy_simulation(tmp_path) == {"as_of": "2025-06-30"}


def test_spark_default_partitions_size_tasks_by_accounts_read_too() -> None:
    """A Spark task holds every row of its partition's accounts, delinquent or not: the default
    is the local engine's (by population) unless the accounts read need more."""
    from rollrisk.scoring.batch import spark_default_partitions

    assert spark_default_partitions(37_717, 1_000_000) == 20  # 4% delinquent: by accounts read
    assert spark_default_partitions(1_000_000, 1_000_000) == default_partitions(1_000_000) == 20
    assert spark_default_partitions(120_000, 130_000) == default_partitions(120_000) == 3
    assert spark_default_partitions(1, 1) == 1


def test_a_damaged_published_run_or_its_current_folder_given_is_one_clear_error(tmp_path):
    run = PartitionedRun(tmp_path, {"as_of": "2025-07-31"})
    run.publish({"as_of": "2025-07-31"}, [run.write_partition(0, _accounts(["A1", "A2"]))])
    # the published folder itself given: the error says to give the folder above it
    with pytest.raises(UserError, match=r"give the folder above it, .*\(the --out of"):
        read_scores(tmp_path / "current")
    # a partition truncated after publishing: no polars traceback
    part = next((tmp_path / "current").glob("part-*.parquet"))
    part.write_bytes(part.read_bytes()[:500])
    with pytest.raises(UserError, match="the published run cannot be read .*score again"):
        read_scores(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [("[]", "holds no simulation result"), ('{"as_of": "2025-', "cannot be read")],
)
def test_a_damaged_policy_simulation_is_one_clear_error(tmp_path, text, message):
    (tmp_path / "policy_simulation.json").write_text(text)
    with pytest.raises(UserError, match=message):
        read_policy_simulation(tmp_path)
