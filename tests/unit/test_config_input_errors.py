"""Config and strategy YAML files that are folders, missing or not UTF-8; booleans as numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rollrisk.errors import UserError
from rollrisk.storage.config import load_config, parse_config
from rollrisk.strategies.compliance import load_compliance
from rollrisk.strategies.policy import load_policy
from rollrisk.strategies.segments import load_segment_rules


@pytest.mark.parametrize(
    ("loader", "what"),
    [
        (load_config, "config file"),
        (load_policy, "policy file"),
        (load_segment_rules, "segments file"),
        (load_compliance, "compliance file"),
    ],
)
def test_a_yaml_that_is_not_utf8_names_the_file(tmp_path: Path, loader, what: str) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(UserError, match=f"{what} {path} is not UTF-8 text"):
        loader(path)


@pytest.mark.parametrize("loader", [load_config, load_policy, load_segment_rules, load_compliance])
def test_a_folder_given_as_a_yaml_file_is_called_a_folder(tmp_path: Path, loader) -> None:
    with pytest.raises(UserError, match=f"{tmp_path} is a folder, not a file"):
        loader(tmp_path)


def test_a_latin1_config_names_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("data:\n  max_reject_rate: 0.02  # r\xe9jets\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"byte 0xe9 at offset 34"):
        load_config(path)


@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_reject_rate_is_refused(tmp_path: Path, value: bool) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"data:\n  max_reject_rate: {str(value).lower()}\n", encoding="utf-8")
    with pytest.raises(UserError, match=rf"{path}: data.max_reject_rate: expected a number"):
        load_config(path)


def test_a_boolean_in_a_nested_numeric_key_is_refused() -> None:
    with pytest.raises(UserError, match="training.split.validation_months: expected a number"):
        parse_config({"training": {"split": {"validation_months": True}}})


def test_a_boolean_key_still_takes_a_boolean_and_numbers_still_load() -> None:
    config = parse_config({"monitoring": {"psi_act": 0.3, "min_population": 10}})
    assert config.monitoring.psi_act == pytest.approx(0.3)
    assert config.monitoring.min_population == 10
    assert parse_config({"training": {"split": {"adapt": False}}}).training.split.adapt is False


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"promotion": {"max_ece": "0.5"}},
         "promotion.max_ece: expected a number, got '0.5' (write it without quotes)"),
        ({"promotion": {"max_ece": "3e-2"}},
         "promotion.max_ece: expected a number, got '3e-2' (YAML reads this spelling as text"),
        ({"promotion": {"require_beats_baselines": "no"}},
         "promotion.require_beats_baselines: expected true or false, got 'no' (text)"),
        ({"promotion": {"require_beats_baselines": 0}},
         "promotion.require_beats_baselines: expected true or false, got 0"),
        ({"training": {"split": {"adapt": "off"}}},
         "training.split.adapt: expected true or false, got 'off' (text)"),
    ],
)  # fmt: skip
def test_quoted_numbers_and_words_for_switches_are_refused(section, message) -> None:
    """Pydantic would read "0.5" as 0.5 and "no", "off" or 0 as false: a gate written that way
    looks set and may not be what the writer meant."""
    with pytest.raises(UserError, match=re.escape(message)):
        parse_config(section)


def test_the_shipped_config_still_loads() -> None:
    assert load_config().promotion.require_beats_baselines is True


@pytest.mark.parametrize(
    ("section", "flags", "message"),
    [
        ("tuning", {"max_trials": 0}, "--max-trials: Input should be greater than or equal to 1"),
        ("tuning", {"time_budget_seconds": -5.0}, "--time-budget: Input should be greater than 0"),
    ],
)
def test_a_train_flag_out_of_range_is_named_not_a_traceback(section, flags, message) -> None:
    """`train --max-trials 0` and `--time-budget -5` were pydantic tracebacks (exit 1)."""
    with pytest.raises(UserError, match=re.escape(message)):
        parse_config({}).training.with_section_overrides(section, **flags)
