"""The typed config loader: defaults, the shipped file, unknown keys named with their file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rollrisk.errors import UserError
from rollrisk.storage.config import load_config, parse_config

REPO = Path(__file__).resolve().parents[2]


def _flat(mapping: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}, so that pytest.approx can compare nested sections."""
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_the_shipped_default_file_loads(tmp_path: Path) -> None:
    shipped = REPO / "conf" / "default.yaml"
    config = load_config(shipped)
    assert config.training.model_name == "rollrisk-roll-to-default"
    # Every value the file writes reaches the typed config as written.
    written = yaml.safe_load(shipped.read_text())
    assert dict(config.observation) == written["observation"]
    for section in ("training", "promotion", "monitoring"):
        loaded = _flat(getattr(config, section).model_dump())
        assert loaded == pytest.approx(_flat(written[section])), section
    # The shipped values are also the code's defaults: a changed copy shows the file is read.
    text = shipped.read_text()
    assert "test_months: 3 " in text and "max_ece: 0.03 " in text
    edited = text.replace("test_months: 3 ", "test_months: 4 ")
    (tmp_path / "edited.yaml").write_text(edited.replace("max_ece: 0.03 ", "max_ece: 0.07 "))
    config = load_config(tmp_path / "edited.yaml")
    assert config.training.split.test_months == 4
    assert config.promotion.max_ece == pytest.approx(0.07)


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
    with pytest.raises(UserError, match="--structure: Input should be 'single' or 'per_bucket'"):
        training.with_overrides(structure="forest")


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
