"""The typed config loader: defaults, the shipped file, unknown keys named with their file."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollrisk.errors import UserError
from rollrisk.storage.config import load_config, parse_config

REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_default_file_loads() -> None:
    config = load_config(REPO / "conf" / "default.yaml")
    assert config.training.model_name == "rollrisk-roll-to-default"
    assert config.training.split.test_months >= 1
    assert 0 < config.promotion.max_ece < 1


def test_unknown_key_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("training:\n  lightgbm:\n    num_leafs: 15\n")
    with pytest.raises(UserError, match=r"bad\.yaml: unknown key training\.lightgbm\.num_leafs"):
        load_config(path)


def test_wrong_type_names_the_key_and_value() -> None:
    with pytest.raises(UserError, match=r"promotion\.max_ece: .*got 'high'"):
        parse_config({"promotion": {"max_ece": "high"}}, source="x.yaml")


def test_misspelt_section_is_an_error() -> None:
    with pytest.raises(UserError, match=r"unknown section 'trainng' \(did you mean 'training'\?\)"):
        parse_config({"trainng": {}}, source="x.yaml")


def test_other_jobs_sections_are_kept_untouched() -> None:
    config = parse_config({"serving": {"port": 8000}, "observation": {"window_months": 6}})
    assert config.sections["serving"] == {"port": 8000}
    assert config.observation["window_months"] == 6


def test_overrides_replace_only_given_values() -> None:
    training = parse_config({}).training
    changed = training.with_overrides(structure="per_bucket", seed=None)
    assert changed.structure == "per_bucket" and changed.seed == training.seed
    with pytest.raises(ValueError, match="structure"):
        training.with_overrides(structure="forest")


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
