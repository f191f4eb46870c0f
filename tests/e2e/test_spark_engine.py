"""`rollrisk score --engine spark` on a local Spark session gives the local engine's result."""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

pytest.importorskip(
    "pyspark", reason="PySpark is not installed (`pip install -e '.[spark]'`; CI installs it)"
)

from rollrisk.cli import main  # noqa: E402
from rollrisk.storage.atomic_output import read_current  # noqa: E402
from rollrisk.storage.training_sets import read_training_set  # noqa: E402
from tests.conftest import MIXED_AS_OF  # noqa: E402

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


def _score(world, out: Path, engine: str, *extra: str) -> int:
    return main(
        ["score", "--model", world.model_uri, "--data", str(world.portfolio), "--as-of", AS_OF,
         "--out", str(out), "--partitions", PARTITIONS, "--engine", engine, *extra]
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
    # the same rows read, accepted and rejected per table, the record of past experiments too
    assert "experiment_assignments" in local_manifest["counts"]["input_rows"]
    assert spark_manifest["counts"]["input_rows"] == local_manifest["counts"]["input_rows"]
    assert spark_manifest["counts"]["rejects"] == local_manifest["counts"]["rejects"]

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


def test_an_experiment_assigns_the_same_arms_on_spark(scoring_world, spark, tmp_path, monkeypatch):
    """An active experiment: Spark's executors assign the arms the local engine assigns (the
    same bytes) and the manifests count the same accounts per arm."""
    from rollrisk.strategies.experiments import shipped_example

    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    experiments = tmp_path / "exp.yaml"
    running = shipped_example().replace("2026-01-01", "2025-01-01")
    experiments.write_text(running.replace("share: 0.10", "share: 0.5"))
    for engine in ("spark", "local"):
        assert (
            _score(scoring_world, tmp_path / engine, engine, "--experiments", str(experiments)) == 0
        )
    spark_manifest, by_spark = read_current(tmp_path / "spark")
    local_manifest, _ = read_current(tmp_path / "local")
    assert [p["sha256"] for p in spark_manifest["partitions"]] == [
        p["sha256"] for p in local_manifest["partitions"]
    ]
    counts = spark_manifest["counts"]["experiments"]["EXP-2026-H1-EARLY"]
    assert counts == local_manifest["counts"]["experiments"]["EXP-2026-H1-EARLY"]
    assert set(counts) == {"policy", "champion", "early_agent_call", "grace_then_reminder"}
    assert sum(counts.values()) == by_spark["experiment_id"].is_not_null().sum() > 0


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


def test_spark_resumes_after_a_task_failed_writing_its_partition(
    both_engines, scoring_world, tmp_path, monkeypatch, capsys
):
    """A task that fails (here: its partition file cannot be renamed into place, a folder is
    in the way) fails the run before anything is published; the rerun keeps the partitions
    already written and publishes the local engine's bytes."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    spark_out, local_out = both_engines
    out = tmp_path / "failed"
    shutil.copytree(spark_out, out, symlinks=True)
    run_dir = (out / "current").resolve()
    (run_dir / "manifest.json").unlink()
    (out / "current").unlink()
    for k in (0, 1):
        (run_dir / f"part-{k:05d}.parquet").unlink()
    (run_dir / "part-00001.parquet").mkdir()  # the task of partition 1 cannot write its file

    with pytest.raises(RuntimeError, match="a Spark task failed: .*part-00001"):
        _score(scoring_world, out, "spark")
    assert not (out / "current").exists() and not (run_dir / "manifest.json").exists()

    (run_dir / "part-00001.parquet").rmdir()
    capsys.readouterr()
    assert _score(scoring_world, out, "spark") == 0
    resumed = re.search(r"resumed: (\d) of 3 partitions", capsys.readouterr().err)
    assert resumed is not None and 1 <= int(resumed.group(1)) <= 2  # partition 2 at least
    after, _ = read_current(out)
    local, _ = read_current(local_out)
    assert [p["sha256"] for p in after["partitions"]] == [p["sha256"] for p in local["partitions"]]


def test_build_training_set_on_spark_gives_the_local_rows(scoring_world, spark, tmp_path, capsys):
    """The executors write the rows as a folder of parts; read back (sorted as the local build
    sorts), they are the local file's rows, and the summary printed is the same."""
    outputs = {}
    for engine in ("spark", "local"):
        out = tmp_path / f"{engine}.parquet"
        argv = ["build-training-set", "--data", str(scoring_world.portfolio), "--out", str(out),
                "--engine", engine]  # fmt: skip
        capsys.readouterr()
        assert main(argv) == 0
        printed = capsys.readouterr().out.splitlines()
        outputs[engine] = (
            read_training_set(out),
            [line for line in printed if "wrote" not in line],
        )
    (by_spark, spark_summary), (by_local, local_summary) = outputs["spark"], outputs["local"]
    assert by_local.height > 0 and by_local["as_of"].n_unique() > 1  # every eligible as-of
    assert_frame_equal(by_spark, by_local)  # same rows, same order, floats within tolerance
    assert_frame_equal(by_local, pl.read_parquet(tmp_path / "local.parquet"))  # the file as is
    assert spark_summary == local_summary
    folder = tmp_path / "spark.parquet"
    parts = sorted(folder.glob("part-*.parquet"))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(parts) == len(manifest["parts"]) == manifest["partitions"] > 1
    assert manifest["rows"] == sum(pl.read_parquet(p).height for p in parts) == by_local.height
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging


@pytest.fixture(scope="module")
def hostile_portfolio(scoring_world, tmp_path_factory):
    """The world's portfolio with bad rows of every kind the contract rejects, statements in
    a Parquet part (several row groups, read by several tasks) and a CSV part."""
    from rollrisk.storage.loader import find_table_files

    folder = tmp_path_factory.mktemp("hostile") / "portfolio"
    folder.mkdir()
    source = scoring_world.portfolio
    accounts = pl.read_parquet(find_table_files(source, "accounts"))
    ids = accounts["account_id"].to_list()
    # the first account is rejected (an unknown product): its other rows are knock-ons
    accounts = accounts.with_columns(
        pl.when(pl.col("account_id") == ids[0])
        .then(pl.lit("yacht"))
        .otherwise(pl.col("product"))
        .alias("product")
    )
    accounts.write_parquet(folder / "accounts.parquet")
    statements = pl.read_parquet(find_table_files(source, "statements"))
    half = statements.height // 2
    parts = folder / "statements"
    parts.mkdir()
    first = pl.concat([statements.head(half), statements.slice(10, 1)])  # a duplicate
    first.write_parquet(parts / "part-0.parquet", row_group_size=700)
    second = statements.slice(half).with_columns(pl.all().cast(pl.String))
    bad = second.head(3).with_columns(
        pl.Series("account_id", ["NOT-AN-ACCOUNT", f" {ids[1]}", ids[2]]),
        pl.Series("amount_due", [*second["amount_due"].head(2), "abc"]),
    )
    pl.concat([second, bad]).write_csv(parts / "part-1.csv")
    for name in ("collection_actions", "treatments"):
        for path in find_table_files(source, name):
            (folder / name).mkdir(exist_ok=True)
            shutil.copy(path, folder / name / path.name)
    # the record of past experiments, checked like the inputs: a propensity out of range, a
    # duplicate key, and the rejected first account's rows as knock-ons
    assignments = pl.read_parquet(find_table_files(source, "experiment_assignments"))
    first_account = assignments.filter(pl.col("account_id") == ids[0]).head(1)
    if first_account.height == 0:
        first_account = assignments.head(1).with_columns(pl.lit(ids[0]).alias("account_id"))
    pl.concat(
        [
            assignments.with_columns(
                pl.when(pl.int_range(pl.len()) == 5)
                .then(pl.lit(1.5))
                .otherwise(pl.col("propensity"))
                .alias("propensity")
            ),
            assignments.slice(7, 1),
            first_account,
        ]
    ).write_parquet(folder / "experiment_assignments.parquet")
    return folder


def test_spark_validation_gives_the_local_rejects_and_counts(hostile_portfolio, spark, tmp_path):
    from rollrisk.features.dates import DateSettings
    from rollrisk.features.validation import KNOCK_ON_REASON
    from rollrisk.scoring.spark_portfolio import plan_read, validate_on_spark
    from rollrisk.storage.loader import validate_portfolio
    from rollrisk.storage.rejects import account_rejects

    dates = DateSettings(extract_date=date(2026, 1, 1))
    local = validate_portfolio(hostile_portfolio, tmp_path / "local.csv", dates)
    plan = plan_read(hostile_portfolio, dates, unit_rows=700)
    assert len([u for u in plan.units if u.path.endswith("part-0.parquet")]) > 1
    book = validate_on_spark(spark, plan, tmp_path / "spark.csv")
    try:
        reasons = (tmp_path / "local.csv").read_text()
        for kind in ("duplicate", "expected an account listed", "whitespace is stripped",
                     "the account was rejected in table accounts", "expected a number"):  # fmt: skip
            assert kind in reasons, kind  # the test data holds every kind of reject
        record = pl.read_csv(tmp_path / "local.csv").filter(
            pl.col("table") == "experiment_assignments"
        )
        record_reasons = "\n".join(record["reasons"].to_list())
        for kind in ("propensity", "duplicate", KNOCK_ON_REASON):  # each kind of bad row
            assert kind in record_reasons, kind
        (record_rejects,) = [t for t in book.rejects.tables if t.table == "experiment_assignments"]
        assert record_rejects.knock_on >= 1 and record_rejects.rows_rejected == record.height
        assert (tmp_path / "spark.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
        assert book.report.tables == local.report.tables
        assert book.rejects.as_dict() == account_rejects(local).as_dict()
        assert book.empty_tables == local.empty_tables
    finally:
        book.release()


def test_a_table_none_of_whose_files_can_be_read_is_its_file_error_before_any_task(
    scoring_world, tmp_path
):
    """Found by an attacker: an empty accounts CSV (or a corrupt statements Parquet, a file
    lacking a column) was told as "accounts (no files): table 'accounts' lacks column(s)
    account_id, ... columns found: none" after the Spark job ran, where the local loader names
    the file and what is wrong with it. The plan's file errors now stop the run before any
    task (no Spark needed: the session is not touched), in the loader's words."""
    from rollrisk.errors import DataContractError
    from rollrisk.features.schemas import TABLES_BY_NAME
    from rollrisk.scoring.spark_portfolio import plan_read, validate_on_spark
    from rollrisk.storage.loader import check_usable, empty_raw_table, validate_portfolio

    folder = tmp_path / "portfolio"
    shutil.copytree(scoring_world.portfolio, folder)
    for path in folder.glob("accounts*"):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    (folder / "accounts.csv").write_bytes(b"")
    local = validate_portfolio(folder)
    with pytest.raises(DataContractError) as expected:
        check_usable(local.report)
    assert "accounts.csv: the file is empty" in str(expected.value)
    plan = plan_read(folder)
    assert plan.raw_schemas["accounts"] == empty_raw_table(TABLES_BY_NAME["accounts"]).schema
    with pytest.raises(DataContractError) as spark:
        validate_on_spark(None, plan)  # type: ignore[arg-type]
    assert str(spark.value) == str(expected.value)


def test_the_spark_engine_refuses_accounts_in_another_currency_as_the_local_one_does(
    scoring_world, spark, mixed_book, tmp_path, monkeypatch, capsys
):
    """Counted on the executors from the validation pass (the accounts' currency is kept
    beside the statements): the local engine's message, word for word."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    local, spark = tmp_path / "local", tmp_path / "spark"
    assert _score_book(scoring_world.model_uri, mixed_book.folder, local) == 2
    by_local = capsys.readouterr().err
    assert _score_book(scoring_world.model_uri, mixed_book.folder, spark, "--engine", "spark") == 2
    by_spark = capsys.readouterr().err
    (refusal,) = [line for line in by_local.splitlines() if line.startswith("rollrisk score: ")]
    assert "HKD (1 account, e.g. " in refusal
    assert refusal in by_spark.splitlines()
    assert not spark.exists()


def _score_book(model: str, data: Path, out: Path, *extra: str) -> int:
    return main(
        ["score", "--model", model, "--data", str(data), "--as-of", MIXED_AS_OF, "--out",
         str(out), "--partitions", PARTITIONS, *extra]
    )  # fmt: skip


def test_each_account_partition_is_a_spark_task_of_its_own(spark):
    """Found by a reader of the engine: groupBy("partition") hashed every group onto the
    session's 8 shuffle partitions (or fewer, coalesced), so a cluster ran at most 8 tasks."""
    import pandas as pd
    from pyspark import TaskContext

    from rollrisk.scoring.spark_portfolio import one_group_per_task

    partitions = [0, 2, 3, 5, 8, 13, 21, 34, 35, 36, 37, 38, 39, 40, 41, 42, 50, 51, 52, 60]
    rows = [(k, i) for k in partitions for i in range(k % 4 + 1)]
    frame = spark.createDataFrame(rows, "partition int, value int")

    def task_of(group: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            {"partition": [int(group["partition"].iloc[0])], "rows": [len(group)],
             "task": [TaskContext.get().partitionId()]}
        )  # fmt: skip

    grouped = one_group_per_task(spark, frame, partitions)
    result = grouped.applyInPandas(task_of, "partition int, rows int, task int").toPandas()
    assert sorted(result["partition"]) == partitions  # every group once
    assert dict(zip(result["partition"], result["rows"], strict=True)) == {
        k: k % 4 + 1 for k in partitions
    }
    assert sorted(result["task"]) == list(range(len(partitions)))  # a task each, none empty
