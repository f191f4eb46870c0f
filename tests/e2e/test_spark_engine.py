"""`rollrisk score --engine spark` on a local Spark session gives the local engine's result."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import polars as pl
import pytest

pytest.importorskip(
    "pyspark", reason="PySpark is not installed (`pip install -e '.[spark]'`; CI installs it)"
)

from rollrisk.cli import main  # noqa: E402
from rollrisk.storage.atomic_output import read_current  # noqa: E402

pytestmark = pytest.mark.slow
AS_OF = "2025-03-31"
PARTITIONS = "3"


@pytest.fixture(scope="module")
def spark():
    """One local[2] session for the module, started by the engine's own builder and reused by
    every `--engine spark` run below (the engine does not stop a session it did not start)."""
    from rollrisk.scoring.spark_engine import spark_session

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROLLRISK_SPARK_MASTER", "local[2]")
        session, started = spark_session()
        assert started
        session.conf.set("spark.sql.shuffle.partitions", "2")
        yield session
        session.stop()


def _score(world, out: Path, engine: str) -> int:
    return main(
        ["score", "--model", world.model_uri, "--data", str(world.portfolio), "--as-of", AS_OF,
         "--out", str(out), "--partitions", PARTITIONS, "--engine", engine]
    )  # fmt: skip


@pytest.fixture(scope="module")
def both_engines(scoring_world, spark, tmp_path_factory):
    """The same portfolio, as-of and partitions scored by each engine into its own folder."""
    root = tmp_path_factory.mktemp("engines")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
        assert _score(scoring_world, root / "spark", "spark") == 0
        assert _score(scoring_world, root / "local", "local") == 0
    return root / "spark", root / "local"


def _accounts_per_file(out: Path) -> dict[str, list[str]]:
    files = sorted((out / "current").glob("part-*.parquet"))
    return {f.name: sorted(pl.read_parquet(f)["account_id"].to_list()) for f in files}


def test_spark_publishes_the_same_rows_as_the_local_engine(both_engines):
    spark_out, local_out = both_engines
    spark_manifest, by_spark = read_current(spark_out)
    local_manifest, by_local = read_current(local_out)
    assert spark_manifest["engine"] == "spark" and local_manifest["engine"] == "local"
    assert spark_manifest["counts"]["scored"] == local_manifest["counts"]["scored"] > 0

    by_spark, by_local = by_spark.sort("account_id"), by_local.sort("account_id")
    assert by_spark.schema == by_local.schema
    assert (
        by_spark.height == by_local.height and by_spark["account_id"].n_unique() == by_spark.height
    )
    for column, dtype in by_spark.schema.items():
        if dtype == pl.Float64:
            difference = (by_spark[column] - by_local[column]).abs().fill_null(0.0).max()
            assert difference <= 1e-12, column
            assert by_spark[column].is_null().to_list() == by_local[column].is_null().to_list()
        else:
            assert by_spark[column].to_list() == by_local[column].to_list(), column


def test_each_partition_file_holds_the_same_accounts_in_both_engines(both_engines):
    spark_out, local_out = both_engines
    by_spark, by_local = _accounts_per_file(spark_out), _accounts_per_file(local_out)
    assert list(by_spark) == [f"part-{k:05d}.parquet" for k in range(int(PARTITIONS))]
    assert by_spark == by_local
    assert sum(len(accounts) for accounts in by_spark.values()) > 0


def test_spark_resume_skips_the_partitions_already_written(
    both_engines, scoring_world, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    spark_out, _ = both_engines
    out = tmp_path / "resumed"
    shutil.copytree(spark_out, out, symlinks=True)
    run_dir = (out / "current").resolve()
    before, _ = read_current(out)
    # as if killed after two partitions: one file and the manifest missing, nothing published
    (run_dir / "part-00001.parquet").unlink()
    (run_dir / "manifest.json").unlink()
    (out / "current").unlink()
    kept = {name: os.stat(run_dir / name) for name in ("part-00000.parquet", "part-00002.parquet")}
    capsys.readouterr()

    assert _score(scoring_world, out, "spark") == 0

    assert "resumed: 2 of 3 partitions were already written" in capsys.readouterr().err
    for name, stat in kept.items():  # skipped: the very same file, not rewritten
        now = os.stat(run_dir / name)
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns), name
    after, _ = read_current(out)
    assert (out / "current").resolve() == run_dir
    assert [p["sha256"] for p in after["partitions"]] == [p["sha256"] for p in before["partitions"]]
