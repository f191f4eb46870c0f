"""`rollrisk build-training-set` end to end on small portfolio folders."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from rollrisk.cli import main
from rollrisk.features.training_set import LEADING_COLUMNS, feature_columns, validate_training_set
from tests.feature_history import synthetic_history


@pytest.fixture
def portfolio(tmp_path: Path) -> Path:
    return synthetic_history(accounts=300, months=10, seed=4).write(tmp_path / "portfolio")


def test_builds_every_eligible_as_of_and_prints_a_summary(portfolio: Path, tmp_path: Path, capsys):
    out = tmp_path / "out" / "training_set.parquet"
    assert main(["build-training-set", "--data", str(portfolio), "--out", str(out)]) == 0
    frame = pl.read_parquet(out)
    assert frame.columns == [*LEADING_COLUMNS, *feature_columns()]
    validate_training_set(frame)
    assert frame["as_of"].n_unique() == 7  # 10 months of data, 3-month window
    printed = capsys.readouterr().out
    assert "default = DPD >= 90 within 3 months" in printed
    assert f"wrote {frame.height:,} rows" in printed
    assert printed.count("\n2023-") == 7
    assert not list(out.parent.glob(".*.tmp"))


def test_flags_change_the_definition_of_default(portfolio: Path, tmp_path: Path):
    default = tmp_path / "default.parquet"
    early = tmp_path / "early.parquet"
    assert main(["build-training-set", "--data", str(portfolio), "--out", str(default)]) == 0
    args = ["--default-dpd", "30", "--max-dpd", "29", "--window-months", "1"]
    assert main(["build-training-set", "--data", str(portfolio), "--out", str(early), *args]) == 0
    frame = pl.read_parquet(early)
    assert set(frame["start_bucket"]) == {"M1"}
    assert frame["as_of"].n_unique() == 9  # a 1-month window leaves 9 eligible month-ends
    assert frame["rolled_to_default"].mean() > pl.read_parquet(default)["rolled_to_default"].mean()


def test_config_file_sets_the_observation_and_explicit_as_of_reports_incomplete(
    portfolio: Path, tmp_path: Path, capsys
):
    config = tmp_path / "conf.yaml"
    config.write_text("observation:\n  window_months: 2\n", encoding="utf-8")
    out = tmp_path / "ts.parquet"
    argv = ["build-training-set", "--data", str(portfolio), "--out", str(out), "--config", str(config),
            "--as-of", "2023-08-31", "--as-of", "2023-09-30"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "within 2 months" in printed
    september = next(line for line in printed.splitlines() if line.startswith("2023-09-30"))
    population, labelled = (int(v.replace(",", "")) for v in september.split()[1:3])
    assert labelled == 0 and population > 0
    assert september.split()[-2] == f"{population:,}"  # all excluded: window not complete
    assert set(pl.read_parquet(out)["as_of"].to_list()) == {date(2023, 8, 31)}


def test_six_months_without_action_logs(tmp_path: Path, capsys):
    folder = synthetic_history(accounts=200, months=6, seed=9).write(
        tmp_path / "short", tables=("accounts", "statements")
    )
    out = tmp_path / "short.parquet"
    assert main(["build-training-set", "--data", str(folder), "--out", str(out)]) == 0
    frame = pl.read_parquet(out)
    assert frame.height > 0
    assert frame["contact_rate_3m"].null_count() == frame.height
    assert "no collection_actions table" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--as-of", "2023-08-15"],
            "as-of dates must be month-ends (e.g. 2024-03-31); got 2023-08-15",
        ),
        (["--default-dpd", "60"], "max_dpd (89) must be below default_dpd (60)"),
        (
            ["--window-months", "12"],
            "no month-end has both statements known before it and a complete 12-month",
        ),
    ],
)
def test_user_mistakes_exit_2_with_a_message(
    portfolio: Path, tmp_path: Path, capsys, extra, message
):
    out = tmp_path / "ts.parquet"
    assert main(["build-training-set", "--data", str(portfolio), "--out", str(out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_unknown_observation_key_in_config_is_an_error(portfolio: Path, tmp_path: Path, capsys):
    config = tmp_path / "conf.yaml"
    config.write_text("observation:\n  default_days: 60\n", encoding="utf-8")
    argv = ["build-training-set", "--data", str(portfolio), "--out", str(tmp_path / "x.parquet"),
            "--config", str(config)]  # fmt: skip
    assert main(argv) == 2
    assert "unknown key(s) in section 'observation': default_days" in capsys.readouterr().err


def test_a_folder_given_as_out_is_refused_and_kept(portfolio: Path, tmp_path: Path, capsys):
    """A build replaces what is at --out; a folder of other files (here a runs folder) is not
    deleted: the job refuses before it builds anything."""
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "model.txt").write_text("keep me", encoding="utf-8")
    assert main(["build-training-set", "--data", str(portfolio), "--out", str(runs)]) == 2
    err = capsys.readouterr().err
    assert f"--out {runs} is a folder that is not a training set" in err
    assert str(runs / "training_set.parquet") in err
    assert (runs / "model.txt").read_text(encoding="utf-8") == "keep me"
    assert [p.name for p in runs.iterdir()] == ["model.txt"]


def hide_pyspark(monkeypatch) -> None:
    """Make ``import pyspark`` fail as where the extra is not installed (this venv has it)."""
    import sys

    for name in [n for n in sys.modules if n == "pyspark" or n.startswith("pyspark.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import raises ModuleNotFoundError


def test_the_spark_engine_without_pyspark_is_one_line_naming_the_extra(
    portfolio: Path, tmp_path: Path, monkeypatch, capsys
):
    hide_pyspark(monkeypatch)
    out = tmp_path / "ts"
    argv = ["build-training-set", "--data", str(portfolio), "--out", str(out), "--engine", "spark"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "ModuleNotFoundError" not in err
    [line] = [line for line in err.splitlines() if "error:" in line]
    assert "--engine spark needs PySpark" in line and "pip install 'rollrisk[spark]'" in line
    assert not out.exists()


def test_as_of_dates_outside_the_data_write_nothing_and_say_why(
    portfolio: Path, tmp_path: Path, capsys
):
    out = tmp_path / "ts.parquet"
    argv = ["build-training-set", "--data", str(portfolio), "--out", str(out),
            "--as-of", "2030-01-31"]  # fmt: skip
    assert main(argv) == 2
    captured = capsys.readouterr()
    # refused before any build, as score refuses such an as-of (it was built to an empty
    # summary before; the Python API returned 0 rows without a word)
    assert "as_of 2030-01-31 is after the portfolio's latest month with statements" in captured.err
    assert "give an as-of up to 2023-10-31" in captured.err
    assert not out.exists()


def test_the_help_examples_define_valid_observations():
    """Every example of `build-training-set --help` parses, and its observation flags make a
    valid definition (one once paired --default-dpd 30 with the default --max-dpd 89)."""
    import shlex

    from rollrisk.arguments import observation_spec
    from rollrisk.cli import _parser
    from rollrisk.pipelines import build_training_set
    from rollrisk.storage.config import RollriskConfig

    examples = [line.strip() for line in (build_training_set.__doc__ or "").splitlines()
                if line.strip().startswith("rollrisk build-training-set")]  # fmt: skip
    assert len(examples) >= 4
    for example in examples:
        args = _parser("build-training-set").parse_args(shlex.split(example)[1:])
        spec = observation_spec(args, RollriskConfig())
        assert spec.default_dpd > spec.max_dpd, example


def test_train_refuses_a_training_set_of_another_observation(
    portfolio: Path, tmp_path: Path, capsys, monkeypatch
):
    """A set built as 60+ DPD within 2 months, trained as the default 90+ within 3: the labels
    would be read as 90+ (evaluate reads --training-set through the same check)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    out = tmp_path / "ts60.parquet"
    flags = ["--min-dpd", "1", "--max-dpd", "59", "--default-dpd", "60", "--window-months", "2"]
    assert main(["build-training-set", "--data", str(portfolio), "--out", str(out), *flags]) == 0
    capsys.readouterr()
    argv = ["train", "--out", str(tmp_path / "model"), "--data", str(portfolio)]
    assert main([*argv, "--training-set", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        f"--training-set {out} was built with population DPD 1-59, default = DPD >= 60 "
        "within 2 months, but this job's observation (--config and flags) is population "
        "DPD 1-89, default = DPD >= 90 within 3 months" in err
    ), err
    assert "give this job --default-dpd 60 --window-months 2 --min-dpd 1 --max-dpd 59" in err


def test_train_refuses_a_training_set_built_from_another_portfolio(
    portfolio: Path, tmp_path: Path, capsys, monkeypatch
):
    """Found by a new user: a set built from one portfolio, trained with --data another: the
    run recorded the other's folder and fingerprint while learning from the first's rows."""
    import shutil

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    out = tmp_path / "ts.parquet"
    assert main(["build-training-set", "--data", str(portfolio), "--out", str(out)]) == 0
    other = tmp_path / "other"
    shutil.copytree(portfolio, other)
    (accounts,) = other.glob("accounts.*")
    frame = pl.read_parquet(accounts) if accounts.suffix == ".parquet" else pl.read_csv(accounts)
    frame = frame.with_columns(pl.col("credit_limit") * 2)
    frame.write_parquet(accounts) if accounts.suffix == ".parquet" else frame.write_csv(accounts)
    capsys.readouterr()
    argv = ["train", "--out", str(tmp_path / "model"), "--training-set", str(out)]
    assert main([*argv, "--data", str(other)]) == 2
    err = capsys.readouterr().err
    assert (
        f"--training-set {out} was built from the portfolio {portfolio}, but --data {other} "
        "holds other files (their fingerprint differs)"
    ) in err, err
    assert "training LightGBM" not in err  # refused before fitting


def test_a_training_set_without_its_observation_is_taken_with_a_warning(
    portfolio: Path, tmp_path: Path, capsys
):
    from rollrisk.arguments import training_set_from_arguments
    from rollrisk.features.observations import ObservationSpec
    from rollrisk.storage.training_sets import training_set_observation

    out = tmp_path / "ts.parquet"
    assert main(["build-training-set", "--data", str(portfolio), "--out", str(out)]) == 0
    assert training_set_observation(out) == ObservationSpec()
    old = tmp_path / "old.parquet"
    pl.read_parquet(out).write_parquet(old)  # as an earlier rollrisk wrote it: no metadata
    assert training_set_observation(old) is None
    capsys.readouterr()
    args = argparse.Namespace(training_set=old)
    frame = training_set_from_arguments(args, None, ObservationSpec())  # type: ignore[arg-type]
    assert len(frame) == pl.read_parquet(out).height
    assert f"warning: --training-set {old} does not record the observation" in (
        capsys.readouterr().err
    )


def test_a_training_set_that_is_not_one_is_refused_in_one_line(portfolio: Path, tmp_path: Path):
    """Found by an attack: a CSV, a corrupt or partial observation record, and one part of a
    Spark folder each went through (a traceback, a 'written by an earlier rollrisk' warning,
    or a quarter of the accounts trained under the wrong window)."""
    import json

    from rollrisk.errors import UserError
    from rollrisk.features.observations import ObservationSpec
    from rollrisk.storage.atomic_output import MANIFEST
    from rollrisk.storage.training_sets import (
        TRAINING_PARTS_LAYOUT,
        read_training_set,
        training_set_observation,
    )

    out = tmp_path / "ts.parquet"
    assert main(["build-training-set", "--data", str(portfolio), "--out", str(out)]) == 0
    frame = pl.read_parquet(out)
    text = tmp_path / "ts.csv"
    frame.head(5).write_csv(text)
    with pytest.raises(UserError, match=r"cannot be read as Parquet"):
        read_training_set(text)
    for record in ("{not json", "{}", "null", "5", "[1, 2]", '{"window_months": 3}'):
        edited = tmp_path / "edited.parquet"
        frame.write_parquet(edited, metadata={"observation": record})
        with pytest.raises(UserError, match=r"its observation record .* is not the one"):
            training_set_observation(edited)
    typed = dict(default_dpd="90", window_months=3, min_dpd=1, max_dpd=89)
    frame.write_parquet(edited, metadata={"observation": json.dumps(typed)})
    with pytest.raises(UserError, match=rf"training set {edited}: its observation record: .*"
                                        "default_dpd must be a whole number"):  # fmt: skip
        training_set_observation(edited)
    folder = tmp_path / "spark"
    folder.mkdir()
    frame.write_parquet(folder / "part-00000.parquet")
    (folder / MANIFEST).write_text(json.dumps({"layout": TRAINING_PARTS_LAYOUT, "parts": []}))
    with pytest.raises(UserError, match=r"is one part of the Spark training set .*: give the"):
        read_training_set(folder / "part-00000.parquet")
    assert training_set_observation(out) == ObservationSpec()


@pytest.mark.parametrize("name", ["emptyd", "ts_out.csv"])
def test_an_empty_folder_or_another_format_as_out_is_refused(
    portfolio: Path, tmp_path: Path, capsys, name: str
):
    """Found by an attack: an existing empty folder became a Parquet file of that name, and
    `--out ts_out.csv` wrote Parquet under a CSV name."""
    out = tmp_path / name
    if name == "emptyd":
        out.mkdir()
    assert main(["build-training-set", "--data", str(portfolio), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    expected = "is an empty folder" if name == "emptyd" else "give a name ending in .parquet"
    assert expected in err
    assert out.is_dir() if name == "emptyd" else not out.exists()
