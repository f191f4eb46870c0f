"""The Python API's surface: lazily re-exported by ``rollrisk``, typed, free of argparse; and
the small pieces it rests on (training settings, training-set files)."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing
from datetime import date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import rollrisk
from rollrisk import api
from rollrisk.errors import UserError
from rollrisk.features.observations import ObservationSpec
from rollrisk.models.training_config import TrainingConfig
from rollrisk.storage.training_sets import (
    publish_training_parts,
    read_training_set,
    training_parts_staging,
    write_training_part,
    write_training_set,
)
from tests.feature_history import synthetic_history


def test_import_rollrisk_loads_nothing_heavy_and_the_api_on_first_use() -> None:
    script = (
        "import sys, rollrisk\n"
        "heavy = ('pandas', 'polars', 'lightgbm', 'mlflow', 'rollrisk.api')\n"
        "print([m for m in heavy if m in sys.modules])\n"
        "rollrisk.score\n"
        "print('rollrisk.api' in sys.modules)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split("\n")[:2] == ["[]", "True"]


def test_the_package_re_exports_the_api_and_lists_it() -> None:
    exported = set(rollrisk.__all__) - {"__version__"}
    assert exported <= set(api.__all__)
    assert {"load_portfolio", "build_training_set", "train", "load_model", "score", "explain"} <= (
        exported
    )
    for name in exported:
        assert getattr(rollrisk, name) is getattr(api, name)
    assert exported <= set(dir(rollrisk))
    with pytest.raises(AttributeError, match="has no attribute 'trian'"):
        rollrisk.trian  # noqa: B018 - the look-up is the test


def test_every_public_function_is_typed_and_needs_no_argparse() -> None:
    functions = [
        getattr(api, name) for name in api.__all__ if inspect.isfunction(getattr(api, name))
    ]
    assert len(functions) >= 10
    for function in functions:
        hints = typing.get_type_hints(function)
        parameters = inspect.signature(function).parameters
        assert set(parameters) | {"return"} == set(hints), function.__name__
        assert "argparse" not in repr(hints), function.__name__
        assert function.__doc__ and len(function.__doc__) > 80, function.__name__


def test_section_overrides_replace_only_what_is_given() -> None:
    config = TrainingConfig()
    assert config.with_section_overrides("tuning", time_budget_seconds=None) is config
    changed = config.with_section_overrides("calibration", method="platt", folds=None)
    assert changed.calibration.method == "platt"
    assert changed.calibration.folds == config.calibration.folds
    assert changed.tuning == config.tuning and config.calibration.method == "cross_fit"
    with pytest.raises(UserError, match="--budget: Extra inputs are not permitted"):
        config.with_section_overrides("tuning", budget=3)


def test_training_set_files_round_trip_and_a_wrong_file_is_named(tmp_path: Path) -> None:
    portfolio = api.load_portfolio(
        synthetic_history(accounts=80, months=6, seed=2).write(tmp_path / "p")
    )
    spec = ObservationSpec(window_months=1)
    built = api.build_training_set_with_summary(portfolio, observation=spec)
    assert built.training_set.height == built.summary["labelled"].sum() > 0
    path = tmp_path / "out" / "training_set.parquet"
    write_training_set(built.training_set, path)
    assert not list(path.parent.glob(".*.tmp"))
    assert read_training_set(path).equals(built.training_set)

    built.training_set.drop("days_since_statement").write_parquet(tmp_path / "old.parquet")
    with pytest.raises(UserError, match=r"old\.parquet does not match feature set"):
        read_training_set(tmp_path / "old.parquet")
    with pytest.raises(UserError, match="does not exist"):
        read_training_set(tmp_path / "missing.parquet")


def test_a_folder_of_parts_reads_as_the_file_and_replaces_it_whole(tmp_path: Path) -> None:
    """The Spark build's layout: parts written into a staging folder, published by one
    rename; read back, the rows are the file's rows in the file's order."""
    portfolio = api.load_portfolio(
        synthetic_history(accounts=80, months=6, seed=2).write(tmp_path / "p")
    )
    built = api.build_training_set_with_summary(
        portfolio, observation=ObservationSpec(window_months=1)
    )
    frame = built.training_set
    assert frame["as_of"].n_unique() > 1
    path = tmp_path / "out" / "training_set.parquet"
    write_training_set(frame, path)  # an earlier local build, replaced by the folder
    # three parts split by account, as the executors split them, and an empty one
    shards = [frame.filter(pl.col("account_id").hash(seed=0) % 3 == k) for k in range(3)]
    staging = training_parts_staging(path)
    assert staging.parent == path.parent and staging.name.startswith(".")
    parts = [write_training_part(staging, k, shard) for k, shard in enumerate(shards)]
    parts.append(write_training_part(staging, 3, frame.clear()))
    assert read_training_set(path).equals(frame)  # still the file until published
    publish_training_parts(staging, path, parts, frame.columns)
    assert path.is_dir() and not staging.exists()
    assert sorted(p.name for p in path.iterdir()) == [
        "manifest.json", "part-00000.parquet", "part-00001.parquet", "part-00002.parquet",
        "part-00003.parquet",
    ]  # fmt: skip
    assert read_training_set(path).equals(frame)
    assert not list(path.parent.glob(".*"))  # no staging, no old copy left

    (path / "part-00001.parquet").unlink()
    with pytest.raises(UserError, match=r"part part-00001\.parquet is missing, its manifest"):
        read_training_set(path)
    (path / "manifest.json").unlink()
    with pytest.raises(UserError, match="folder without manifest.json"):
        read_training_set(path)
    write_training_set(frame, path)  # a local build replaces the folder
    assert path.is_file() and read_training_set(path).equals(frame)


def test_a_history_too_short_for_the_window_says_so(tmp_path: Path) -> None:
    portfolio = api.load_portfolio(
        synthetic_history(accounts=20, months=3, seed=1).write(tmp_path / "p")
    )
    with pytest.raises(UserError, match="no month-end has both statements known before it"):
        api.build_training_set(portfolio, observation=ObservationSpec(window_months=6))
    dates = api.training_as_of_dates(portfolio, ObservationSpec(window_months=1))
    assert dates == [date(2023, 1, 31), date(2023, 2, 28)]  # 3 months, the last one's window


def test_train_refuses_a_training_set_labelled_otherwise_or_repeated(tmp_path: Path) -> None:
    """A training set built with a 6-month window and trained with the default observation
    (3 months) trained without a word: the gap before the out-of-time months was sized for 3
    months, so 6-month labels reached into them; a training set concatenated with itself
    counted its test rows twice. Both are refused before any fit, naming a row."""
    portfolio = api.load_portfolio(
        synthetic_history(accounts=300, months=16, seed=2).write(tmp_path / "p")
    )
    six = ObservationSpec(window_months=6)
    built = api.build_training_set(portfolio, observation=six)
    with pytest.raises(UserError, match=r"rows are not labelled as the observation given .*"
                       r"within 3 months.*pass train\(\) the observation"):  # fmt: skip
        api.train(built, portfolio)
    with pytest.raises(UserError, match=r"repeat an \(account_id, as_of\) pair"):
        api.train(pl.concat([built, built]), portfolio, observation=six)
    api.check_labels(built.to_pandas(), portfolio, six)  # its own observation: accepted


def test_training_as_of_dates_are_read_and_checked_as_score_reads_its_as_of(tmp_path: Path) -> None:
    """build_training_set(as_of_dates=...) returned 0 rows without a word for a month-end
    outside the data, and raised a raw polars error for a string or a datetime."""
    portfolio = api.load_portfolio(
        synthetic_history(accounts=50, months=12, seed=3).write(tmp_path / "p")
    )
    by_string = api.build_training_set(portfolio, as_of_dates=["2023-03-31"])
    assert by_string.height and by_string.equals(
        api.build_training_set(portfolio, as_of_dates=[date(2023, 3, 31)])
    )
    for given, words in (
        (date(2030, 6, 30), "after the portfolio's latest month"),
        (date(2020, 6, 30), "before the portfolio's first month"),
        (datetime(2023, 3, 31), "expected a date or a string YYYY-MM-DD"),
    ):
        with pytest.raises(UserError, match=words):
            api.build_training_set(portfolio, as_of_dates=[given])


def test_a_rejects_file_left_by_an_earlier_load_is_not_read_as_this_ones(tmp_path: Path) -> None:
    """load_portfolio(rejects_path=...) wrote the file only when a row was rejected, so a
    list an earlier load left there stayed, read as this load's rejects."""
    folder = synthetic_history(accounts=20, months=6, seed=1).write(tmp_path / "p")
    rejects = tmp_path / "rejects.csv"
    rejects.write_text("table,file,row,key,reasons\nstatements,old.csv,1,A1,STALE\n")
    portfolio = api.load_portfolio(folder, rejects_path=rejects)
    assert sum(t.rows_rejected for t in portfolio.report.tables) == 0
    assert not rejects.exists()


@pytest.mark.parametrize("limit", [True, "0.5", float("nan"), 1.5, -0.1])
def test_a_reject_limit_that_is_not_a_share_is_refused_before_anything_is_read(
    tmp_path: Path, limit: object
) -> None:
    """True was taken as a 100% limit and "0.5" raised a raw TypeError."""
    with pytest.raises(UserError, match=r"max_reject_rate: expected a share between 0 and 1"):
        rollrisk.load_portfolio(tmp_path / "nowhere", max_reject_rate=limit)  # type: ignore[arg-type]


@pytest.mark.parametrize("count", [2.5, True, "2", 0, 5])
def test_explain_refuses_a_number_of_reasons_that_is_not_a_whole_number_from_1_to_4(
    count: object,
) -> None:
    """2.5 and True failed deep in the numba kernel, "2" with a raw TypeError."""
    with pytest.raises(UserError, match=r"max_reasons: expected a whole number from 1 to 4"):
        rollrisk.explain(None, pl.DataFrame(), max_reasons=count)  # type: ignore[arg-type]


def test_explain_refuses_an_as_of_beside_a_frame_of_feature_rows() -> None:
    """It was ignored silently: the rows of every as-of of a training set came back."""
    with pytest.raises(UserError, match=r"as_of: given with a frame of feature rows"):
        rollrisk.explain(None, pl.DataFrame(), as_of="2020-01-01")  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"observation: given with a frame of feature rows"):
        rollrisk.explain(None, pl.DataFrame(), observation=ObservationSpec())  # type: ignore[arg-type]


def test_numbers_held_as_decimals_are_numbers_and_text_is_not() -> None:
    """A Decimal column was refused as "text" (its reasons are the float column's)."""
    from decimal import Decimal

    import pandas as pd

    from rollrisk.features.registry import FEATURE_SET

    name = next(f.name for f in FEATURE_SET.features if f.kind == "numeric")
    api._check_numbers_are_numbers(pd.DataFrame({name: [Decimal("1.5"), None]}), FEATURE_SET)
    with pytest.raises(UserError, match=f"column\\(s\\) {name} hold text"):
        api._check_numbers_are_numbers(pd.DataFrame({name: ["1.5"]}), FEATURE_SET)


@pytest.mark.parametrize(("given", "read"), [("3", "3"), ("v3", "3"), ("03", "3"), (" 1", "1")])
def test_a_rollback_version_is_read_as_a_number(given: str, read: str) -> None:
    from rollrisk.pipelines.promote import _version_number

    assert _version_number(given) == read


@pytest.mark.parametrize("given", ["one", "0", "1.0", "\u00b2", "-1", "v 1"])
def test_a_rollback_version_that_is_no_number_is_refused(given: str) -> None:
    """ "\u00b2" (a superscript two) passed the digit test and failed int() with argparse's
    generic message."""
    import argparse

    from rollrisk.pipelines.promote import _version_number

    with pytest.raises(argparse.ArgumentTypeError, match="expected a version number"):
        _version_number(given)


@pytest.mark.parametrize("extract", ["2025-01-01", datetime(2025, 1, 1, 12)])
def test_an_extract_date_that_is_not_a_date_is_refused_with_the_way_round(extract: object) -> None:
    """A string reached the loader's comparison with the date columns as a polars error."""
    from rollrisk.features.dates import DateSettings

    with pytest.raises(UserError, match=r"extract_date: expected a datetime.date"):
        DateSettings(extract_date=extract)  # type: ignore[arg-type]


def test_a_training_set_left_empty_is_refused_saying_why(tmp_path: Path, capsys) -> None:
    """An as-of whose performance window runs past the data gave 0 rows without a word from
    the API (the CLI refused it, with a message no test read)."""
    from rollrisk.cli import main

    folder = synthetic_history(accounts=50, months=12, seed=3).write(tmp_path / "p")
    portfolio = api.load_portfolio(folder)
    last = "2023-12-31"  # the last month: no month after it to label
    with pytest.raises(UserError) as raised:
        api.build_training_set(portfolio, as_of_dates=[last])
    message = str(raised.value)
    assert f"no labelled observation at as_of_dates {last} in {folder}" in message
    assert "lack a complete performance window" in message and "window_months" in message
    # given as an iterator, read once: the message named "any eligible month-end"
    with pytest.raises(UserError, match=f"at as_of_dates {last} in"):
        api.build_training_set(portfolio, as_of_dates=(d for d in [last]))
    with pytest.raises(UserError, match="as_of_dates: no month-end given"):
        api.build_training_set(portfolio, as_of_dates=[])
    built = api.build_training_set_with_summary(portfolio, as_of_dates=[last])
    assert built.training_set.height == 0 and built.summary["excluded_incomplete_window"].sum()

    out = tmp_path / "ts.parquet"
    assert main(["build-training-set", "--data", str(folder), "--out", str(out),
                 "--as-of", last]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert f"no labelled observation at --as-of {last} in {folder}" in err
    assert "nothing was written" in err and "--window-months" in err and not out.exists()


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: api.scoring_setup(None, jurisdictions="CN"), "jurisdictions: expected a list"),
        (
            lambda: api.scoring_setup(None, allow_missing_tables="treatments"),
            "allow_missing_tables: expected a list of table names, got the string 'treatments'",
        ),
        (lambda: api.scoring_setup(None, jurisdictions=[]), "at least one jurisdiction"),
        (
            lambda: api.build_training_set(None, as_of_dates="2025-06-30"),
            r"as_of_dates: expected a list of month-ends, got the string '2025-06-30'; give \[",
        ),
    ],
)
def test_a_string_where_a_list_is_expected_is_refused_not_read_letter_by_letter(
    call, words
) -> None:
    """ "CN" was read as the jurisdictions C and N, "treatments" as seven table names, a date
    string as the as-of "2"; an empty list of jurisdictions silently became CN."""
    with pytest.raises(UserError, match=words):
        call()


@pytest.mark.parametrize(
    ("section", "values"),
    [
        ("LightGBMConfig", {"learning_rate": True}),
        ("LightGBMConfig", {"n_estimators": "200"}),
        ("LightGBMConfig", {"n_estimators": 200.0}),
        ("TrainingConfig", {"seed": "3"}),
        ("SplitConfig", {"adapt": 0}),
    ],
)
def test_training_settings_built_in_code_refuse_a_value_of_another_kind(section, values) -> None:
    """A config file may not say `learning_rate: true` or `n_estimators: "200"`; built in
    code they were coerced (a learning rate of 1.0, 200 trees)."""
    from pydantic import ValidationError

    from rollrisk.models import training_config

    with pytest.raises(ValidationError):
        getattr(training_config, section)(**values)
    # a whole number for a decimal setting stays a value of its kind, numpy's numbers too
    assert training_config.LightGBMConfig(reg_lambda=1).reg_lambda == 1.0
    assert training_config.TrainingConfig(seed=np.int64(3)).seed == 3
