"""The typed config loader: defaults, the shipped file, unknown keys named with their file."""

from __future__ import annotations

import re
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
    with pytest.raises(
        UserError,
        match=r"bad\.yaml: unknown key training\.lightgbm\.num_leafs \(did you mean 'num_leaves'\?\)",
    ):
        load_config(path)
    path.write_text("promotion:\n  min_auc_gan: 0.01\n  colour: red\n")
    with pytest.raises(UserError) as raised:
        load_config(path)
    assert "unknown key promotion.min_auc_gan (did you mean 'min_auc_gain'?)" in str(raised.value)
    assert "unknown key promotion.colour;" in str(raised.value) + ";"  # nothing near: no guess


def test_wrong_type_names_the_key_and_value() -> None:
    with pytest.raises(UserError, match=r"promotion\.max_ece: .*got 'high'"):
        parse_config({"promotion": {"max_ece": "high"}}, source="x.yaml")


def test_misspelt_section_is_an_error() -> None:
    with pytest.raises(UserError, match=r"unknown section 'trainng' \(did you mean 'training'\?\)"):
        parse_config({"trainng": {}}, source="x.yaml")


def test_an_unknown_section_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    """No job reads a section other than the five: `serving: {port: 9000}` was kept, unread, and
    looked set."""
    path = tmp_path / "c.yaml"
    path.write_text("observation:\n  window_months: 6\nserving:\n  port: 9000\n")
    message = (
        f"config file {path}:3: unknown section 'serving' "
        "(expected one of training, promotion, monitoring, data, observation)"
    )
    with pytest.raises(UserError, match=re.escape(message)):
        load_config(path)
    with pytest.raises(UserError, match=r"^config file x\.yaml: unknown section 'serving'"):
        parse_config({"serving": {"port": 8000}}, source="x.yaml")
    assert parse_config({"observation": {"window_months": 6}}).observation["window_months"] == 6


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("training:\n  seed: 3\npromotion:\n  max_ece: 0.05\ntraining:\n  seed: 5\n",
         ":5: duplicate key 'training' (already given on line 1)"),
        ("training:\n  lightgbm:\n    learning_rate: 0.1\n    num_leaves: 7\n"
         "    learning_rate: 0.2\n",
         ":5: duplicate key 'learning_rate' (already given on line 3)"),
    ],
)  # fmt: skip
def test_a_key_written_twice_is_refused_naming_the_line(
    tmp_path: Path, text: str, message: str
) -> None:
    """YAML keeps the last of two equal keys: the first value was dropped without a word."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=re.escape(f"config file {path}{message}")):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("training: 0\n", "section 'training' must be a mapping of keys to values (or empty), "
                          "got the number 0"),
        ("training: []\n", "section 'training' must be a mapping of keys to values (or empty), "
                           "got an empty list"),
        ("data: ''\n", "section 'data' must be a mapping of keys to values (or empty), "
                       "got the text ''"),
        ("observation: []\n", "section 'observation' must be a mapping of keys to values "
                              "(or empty), got an empty list"),
        ("observation: 5\n", "section 'observation' must be a mapping of keys to values "
                             "(or empty), got the number 5"),
    ],
)  # fmt: skip
def test_a_section_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str, found: str) -> None:
    """`training: 0` or `observation: []` were read as the defaults (`raw.get(name) or {}`)."""
    path = tmp_path / "c.yaml"
    path.write_text("monitoring:\n  psi_act: 0.3\n" + text)
    with pytest.raises(UserError, match=re.escape(f"config file {path}:3: {found}")):
        load_config(path)


def test_an_empty_file_or_section_is_the_defaults(tmp_path: Path) -> None:
    for name, text in [("empty", ""), ("comments", "# nothing yet\n"), ("bare", "training:\n")]:
        (tmp_path / f"{name}.yaml").write_text(text)
        config = load_config(tmp_path / f"{name}.yaml")
        assert config.training == parse_config({}).training, name
        assert dict(config.observation) == {}, name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- training\n", ":1: the top level must be a mapping of keys to values, got a list"),
        ("training:\n  seed: [7\n", ":3: not valid YAML: expected ',' or ']'"),
        ("promotion:\n  max_ece: 3e-2\n",
         ": promotion.max_ece: expected a number, got '3e-2' (YAML reads this spelling as text"),
    ],
)  # fmt: skip
def test_a_file_that_is_not_a_config_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=re.escape(f"config file {path}{message}")) as error:
        load_config(path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"training": {"lightgbm": {"n_estimators": 2000.0}}}, "training.lightgbm.n_estimators"),
        ({"training": {"split": {"embargo_months": 1.0}}}, "training.split.embargo_months"),
        ({"promotion": {"min_train_rows": 2000.0}}, "promotion.min_train_rows"),
        ({"monitoring": {"min_population": 50.0}}, "monitoring.min_population"),
    ],
)
def test_a_decimal_for_a_whole_number_is_refused(section: dict, key: str) -> None:
    """Pydantic reads 2000.0 as 2000 for an int (and refuses 2000.5)."""
    value = float(_flat(section)[key])
    with pytest.raises(UserError, match=re.escape(f"{key}: expected a whole number, got {value}")):
        parse_config(section, source="x.yaml")


def test_decimals_and_whole_numbers_still_load_into_decimal_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  lightgbm:\n    n_estimators: 2000\n    reg_lambda: 2\n"
                    "    learning_rate: 0.1\ndata:\n  max_reject_rate: 0\n")  # fmt: skip
    config = load_config(path)
    assert config.training.lightgbm.n_estimators == 2000
    assert config.training.lightgbm.reg_lambda == 2.0
    assert config.training.lightgbm.learning_rate == pytest.approx(0.1)
    assert config.data.max_reject_rate == 0.0


def test_overrides_replace_only_given_values() -> None:
    training = parse_config({}).training
    changed = training.with_overrides(structure="per_bucket", seed=None)
    assert changed.structure == "per_bucket" and changed.seed == training.seed
    with pytest.raises(UserError, match="--structure: Input should be 'single' or 'per_bucket'"):
        training.with_overrides(structure="forest")


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_a_bad_observation_value_names_the_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("observation:\n  window_months: 2.0\n  max_dpd: 95\n", encoding="utf-8")
    with pytest.raises(UserError) as caught:  # when the file is read, before any job's work
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"config file {path}: section 'observation': ")
    assert "window_months must be a whole number, got 2.0" in message


def test_a_gate_that_cannot_fail_is_refused(tmp_path: Path) -> None:
    """max_ece: 3 was accepted: an ECE is at most 1, so the calibration gate could not fail."""
    path = tmp_path / "lax.yaml"
    path.write_text("promotion:\n  max_ece: 3\n")
    with pytest.raises(UserError, match=r"promotion\.max_ece: Input should be less than 1"):
        load_config(path)
