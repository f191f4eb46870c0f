"""Typed configuration: ``conf/default.yaml`` read once, at a job's entry point.

Each section a job owns is validated into a frozen pydantic model: a key the model does not know
is an error that names the file and the key (a typo must never silently fall back to a default).
Sections owned by other jobs are kept as plain mappings in :attr:`RollriskConfig.sections`.
Command-line flags override values after loading (see :meth:`TrainingConfig.with_overrides`).
The ``training:`` models live with the training code (:mod:`rollrisk.models.training_config`),
which takes them as typed inputs and never reads a file.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from rollrisk.conf import DEFAULT_CONFIG
from rollrisk.errors import UserError
from rollrisk.features.observations import ObservationSpec
from rollrisk.models.promotion import PromotionConfig
from rollrisk.models.training_config import ConfigSection, TrainingConfig
from rollrisk.strategies.yaml_config import read_yaml_text

# The jurisdictions whose compliance rules apply when a job or an API call names none.
DEFAULT_JURISDICTIONS: tuple[str, ...] = ("CN",)


class MonitoringConfig(ConfigSection):
    """Thresholds at which ``rollrisk monitor`` exits 3 (alert); see docs/monitoring.md."""

    # a score PSI (a feature's CSI) above this is a change large enough to act on; it alerts
    # when sampling noise at the sizes compared could not have produced it (false_alarm_rate)
    psi_act: float = Field(0.25, gt=0.0)
    csi_act: float = Field(0.25, gt=0.0)
    # the chance that a population with no change raises a PSI or CSI alert by sampling noise
    # alone, shared out among the checks (the score and every feature)
    false_alarm_rate: float = Field(0.01, gt=0.0, lt=1.0)
    # fewer delinquent accounts: PSI and CSI are reported, not judged (5 per bin of 10 bins)
    min_population: int = Field(50, ge=1)
    # a risk band's realised roll rate differs from its mean prediction by more than this
    # (absolute) and the prediction is outside the realised rate's 95% interval: act
    backtest_tolerance: float = Field(0.05, gt=0.0, lt=1.0)
    backtest_min_accounts: int = Field(30, ge=1)  # smaller bands are reported, never judged


# The share of a table's rows, or of the accounts, the data contract may reject before a job
# stops (docs/data-contract.md, "Rejected rows and accounts").
DEFAULT_MAX_REJECT_RATE = 0.01


class DataConfig(ConfigSection):
    """How much bad data a job tolerates; ``--max-reject-rate`` overrides it."""

    max_reject_rate: float = Field(DEFAULT_MAX_REJECT_RATE, ge=0.0, le=1.0)


class RollriskConfig(ConfigSection):
    """The whole configuration file: typed sections plus the others, untouched."""

    source: str = "<built-in defaults>"
    training: TrainingConfig = TrainingConfig()
    promotion: PromotionConfig = PromotionConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    data: DataConfig = DataConfig()
    observation: Mapping[str, Any] = Field(default_factory=dict)
    sections: Mapping[str, Any] = Field(default_factory=dict)

    def observation_spec(self) -> ObservationSpec:
        """The ``observation:`` section as settings (an unknown key names this file)."""
        return ObservationSpec.from_mapping(self.observation, source=f"config file {self.source}")


_TYPED_SECTIONS: dict[str, type[ConfigSection]] = {
    "training": TrainingConfig,
    "promotion": PromotionConfig,
    "monitoring": MonitoringConfig,
    "data": DataConfig,
}
_KNOWN_SECTIONS = (*_TYPED_SECTIONS, "observation")


def default_config_path() -> Path:
    """The shipped ``default.yaml`` (package data :mod:`rollrisk.conf`)."""
    return DEFAULT_CONFIG


def load_config(path: Path | None = None) -> RollriskConfig:
    """Read and validate a YAML configuration file (``None``: the default file, if any).

    Raises:
        UserError: the file is missing, a folder or not UTF-8 text, or a typed section holds an unknown key
            or a value of the wrong type; the message names the file and the key.
    """
    if path is None:
        path = default_config_path()
    path = Path(path)
    text = read_yaml_text(path, "config file")
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise UserError(f"config file {path} is not valid YAML: {error}") from error
    if not isinstance(raw, Mapping):
        raise UserError(f"config file {path}: expected a mapping of sections at the top level")
    return parse_config(raw, source=str(path))


def parse_config(raw: Mapping[str, Any], source: str = "<mapping>") -> RollriskConfig:
    """Validate an already-parsed configuration mapping (see :func:`load_config`)."""
    for key in raw:
        close = difflib.get_close_matches(str(key), _KNOWN_SECTIONS, n=1, cutoff=0.75)
        if key not in _KNOWN_SECTIONS and close:
            raise UserError(
                f"config file {source}: unknown section {key!r} (did you mean {close[0]!r}?)"
            )
    typed: dict[str, Any] = {}
    for name, model in _TYPED_SECTIONS.items():
        section = raw.get(name) or {}
        _refuse_lax_values(section, model, source, name)
        try:
            typed[name] = model.model_validate(section)
        except ValidationError as error:
            raise UserError(_describe(error, source, name)) from error
    observation = raw.get("observation") or {}
    if not isinstance(observation, Mapping):
        raise UserError(f"config file {source}: section 'observation' must be a mapping")
    others = {key: value for key, value in raw.items() if key not in _KNOWN_SECTIONS}
    return RollriskConfig(source=source, observation=dict(observation), sections=others, **typed)


def _value_kinds(annotation: Any) -> tuple[bool, bool, bool]:
    """Whether ``annotation`` admits an int or a float, a bool, and text."""
    options = typing.get_args(annotation) if typing.get_origin(annotation) in _UNIONS else ()
    options = options or (annotation,)
    numeric = any(option in (int, float) for option in options)
    text = any(option is str or typing.get_origin(option) is typing.Literal for option in options)
    return numeric, bool in options, text


_UNIONS = (typing.Union, types.UnionType)


def _refuse_lax_values(section: Any, model: type[BaseModel], source: str, where: str) -> None:
    """A value of the wrong YAML type under a typed key is an error naming the file and the key.

    Pydantic reads ``true`` as 1 (1.0) for an int (float) field, the text ``"0.5"`` as 0.5, and
    ``"no"``, ``"off"`` or ``0`` as false for a boolean, so ``max_reject_rate: true`` would
    silently switch the reject limit off and ``require_beats_baselines: "no"`` (a quoted word)
    would pass for false: a number is written as a number, a switch as true or false. Nested
    sections (a pydantic model under a key) are checked the same way.
    """
    if not isinstance(section, Mapping):
        return
    for key, value in section.items():
        field = model.model_fields.get(str(key))
        if field is None:
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            _refuse_lax_values(value, annotation, source, f"{where}.{key}")
            continue
        numeric, admits_bool, admits_text = _value_kinds(annotation)
        if isinstance(value, bool) and numeric and not admits_bool:
            raise UserError(
                f"config file {source}: {where}.{key}: expected a number, got the boolean "
                f"{str(value).lower()}"
            )
        if isinstance(value, str) and (numeric or admits_bool) and not admits_text:
            wanted = "a number" if numeric else "true or false"
            try:
                unquoted = float(value)
            except ValueError:
                unquoted = None
            is_number = unquoted is not None
            hint = "text"
            if numeric and is_number:  # "0.5" quoted; 3e-2 is text to YAML 1.1 even unquoted
                hint = (
                    "YAML reads this spelling as text: write a plain decimal, e.g. 0.03"
                    if isinstance(yaml.safe_load(value), str)
                    else "write it without quotes"
                )
            raise UserError(
                f"config file {source}: {where}.{key}: expected {wanted}, got {value!r} ({hint})"
            )
        if admits_bool and not numeric and not isinstance(value, bool) and value is not None:
            raise UserError(
                f"config file {source}: {where}.{key}: expected true or false, got {value!r}"
            )


def _describe(error: ValidationError, source: str, section: str) -> str:
    problems = []
    for item in error.errors():
        key = ".".join([section, *(str(part) for part in item["loc"])])
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown key {key}")
        else:
            problems.append(f"{key}: {item['msg']} (got {item.get('input')!r})")
    return f"config file {source}: " + "; ".join(problems)
