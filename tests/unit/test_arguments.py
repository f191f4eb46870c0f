"""Shared CLI arguments (rollrisk/arguments.py): one flag, one meaning, in every job."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

import pytest

from rollrisk.arguments import (
    add_observation_arguments,
    add_portfolio_arguments,
    add_scoring_arguments,
    jurisdictions_of,
    observation_spec,
    with_observation_flags,
)
from rollrisk.cli import _parser
from rollrisk.features.observations import ObservationSpec
from rollrisk.storage.config import parse_config

CONFIG = parse_config(
    {"observation": {"default_dpd": 60, "window_months": 6, "max_dpd": 59}}, source="t.yaml"
)


def _parse(command: str, *flags: str) -> argparse.Namespace:
    return _parser(command).parse_args([command, *flags])


def test_flags_override_the_config_and_absent_flags_keep_it() -> None:
    parser = argparse.ArgumentParser()
    add_observation_arguments(parser)
    assert observation_spec(parser.parse_args([]), CONFIG) == ObservationSpec(
        default_dpd=60, window_months=6, max_dpd=59
    )
    args = parser.parse_args(["--window-months", "2", "--max-dpd", "29"])
    assert observation_spec(args, CONFIG) == ObservationSpec(
        default_dpd=60, window_months=2, min_dpd=1, max_dpd=29
    )


def test_a_job_without_observation_flags_leaves_the_settings_alone() -> None:
    spec = ObservationSpec(default_dpd=30, window_months=1, max_dpd=29)
    assert with_observation_flags(argparse.Namespace(), spec) == spec


@pytest.mark.parametrize("command", ["build-training-set", "train", "evaluate"])
def test_every_job_that_builds_observations_reads_the_flags_the_same_way(command: str) -> None:
    flags = ["--data", "p", "--default-dpd", "120", "--window-months", "4", "--min-dpd", "5"]
    if command == "build-training-set":
        flags += ["--out", "ts.parquet"]
    if command == "evaluate":
        flags += ["--model", "models:/m/1"]
    spec = observation_spec(_parse(command, *flags), CONFIG)
    assert spec == ObservationSpec(default_dpd=120, window_months=4, min_dpd=5, max_dpd=59)


def test_portfolio_arguments_take_a_date_and_say_what_a_bad_one_should_be(capsys) -> None:
    parser = argparse.ArgumentParser(prog="job")
    add_portfolio_arguments(parser)
    args = parser.parse_args(["--data", "folder", "--as-of", "2024-06-30"])
    assert args.data == Path("folder") and args.as_of == date(2024, 6, 30)
    assert parser.parse_args(["--data", "folder"]).as_of is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "folder", "--as-of", "30/06/2024"])
    assert "expected a date YYYY-MM-DD, got '30/06/2024'" in capsys.readouterr().err


def test_score_and_serve_declare_the_same_model_and_rule_flags() -> None:
    def options(command: str) -> dict[str, object]:
        parser = _parser(command)
        sub = next(
            action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
        ).choices[command]
        return {
            option: action.default
            for action in sub._actions
            for option in action.option_strings
            if option in ("--model", "--config", "--policy", "--segments", "--compliance",
                          "--jurisdiction")
        }  # fmt: skip

    shared = options("score")
    assert len(shared) == 6 and shared == options("serve")
    parser = argparse.ArgumentParser()
    add_scoring_arguments(parser)
    assert jurisdictions_of(parser.parse_args([])) == ["CN"]
    assert jurisdictions_of(parser.parse_args(["--jurisdiction", "HK"])) == ["HK"]


@pytest.mark.parametrize("partitions", ["0", "-1", "two"])
def test_score_refuses_partitions_below_one_before_reading_anything(capsys, partitions) -> None:
    """Found by an attacker: --partitions -1 ran the whole read and validation, then ended in a
    traceback ("87 accounts in the population but 0 scored"); 0 meant the default."""
    with pytest.raises(SystemExit):
        _parse("score", "--data", "folder", "--out", "o", "--partitions", partitions)
    assert f"expected a whole number of at least 1, got '{partitions}'" in capsys.readouterr().err
    assert _parse("score", "--data", "folder", "--out", "o", "--partitions", "3").partitions == 3


def test_the_python_api_refuses_partitions_below_one(tmp_path) -> None:
    from rollrisk.errors import UserError
    from rollrisk.scoring.batch import score_portfolio

    with pytest.raises(UserError, match="partitions must be at least 1, got 0"):
        score_portfolio(tmp_path, tmp_path / "out", None, model_uri="m", rule_files=None,  # type: ignore[arg-type]
                        jurisdictions=(), partitions=0)  # fmt: skip
