"""Typed configuration: ``conf/default.yaml`` read once, at a job's entry point.

Each section is validated into a frozen pydantic model (``observation:`` into
:class:`~rollrisk.features.observations.ObservationSpec`, checked on loading and built when a
job asks for it): a key the model
does not know is an error that names the file and the key (a typo must never silently fall back
to a default). So is a section no job reads (``serving: {port: 9000}`` would look set and
change nothing), a section that is not a mapping (``training: 0``), a key written twice
(YAML would keep the last one) and a value of the wrong YAML type (see
:func:`_refuse_lax_values`). Structural mistakes name the line; an empty file is the defaults.
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
from rollrisk.strategies.yaml_config import (
    describe_value,
    line_of,
    parse_yaml_with_lines,
    read_yaml_text,
)

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
    # today's delinquent accounts below (1 - this) or above 1 / (1 - this) times the
    # reference's per month (halved or doubled at 0.5): the book changed size, act
    population_change_act: float = Field(0.5, gt=0.0, lt=1.0)
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
    """The whole configuration file, section by section."""

    source: str = "<built-in defaults>"
    training: TrainingConfig = TrainingConfig()
    promotion: PromotionConfig = PromotionConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    data: DataConfig = DataConfig()
    observation: Mapping[str, Any] = Field(default_factory=dict)

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
_SECTION_LIST = ", ".join(_KNOWN_SECTIONS)


def default_config_path() -> Path:
    """The shipped ``default.yaml`` (package data :mod:`rollrisk.conf`)."""
    return DEFAULT_CONFIG


def load_config(path: Path | None = None) -> RollriskConfig:
    """Read and validate a YAML configuration file (``None``: the default file, if any).

    Raises:
        UserError: the file is missing, a folder, not UTF-8 text or not YAML; its top level is
            not a mapping; a key is written twice (at any depth); a section is unknown or not a
            mapping; or a section holds an unknown key or a value of the wrong type. The message
            names the file and the key (and the line, for all but the values).
    """
    if path is None:
        path = default_config_path()
    path = Path(path)
    text = read_yaml_text(path, "config file")
    # the strategy files' parser: the same syntax errors, and a duplicate key is refused rather
    # than last-wins; nothing but comments (or nothing at all) is the defaults
    raw = parse_yaml_with_lines(text, f"config file {path}", empty_ok=True)
    return parse_config(raw, source=str(path))


def parse_config(raw: Mapping[str, Any], source: str = "<mapping>") -> RollriskConfig:
    """Validate an already-parsed configuration mapping (see :func:`load_config`).

    ``raw`` from :func:`load_config` knows its lines, and messages about a section name it.
    """
    for key in raw:
        if key in _KNOWN_SECTIONS:
            continue
        close = difflib.get_close_matches(str(key), _KNOWN_SECTIONS, n=1, cutoff=0.75)
        expected = f"did you mean {close[0]!r}?" if close else f"expected one of {_SECTION_LIST}"
        # no job reads any other section: kept, `serving: {port: 9000}` would look set
        raise UserError(
            f"config file {_at(source, raw, key)}: unknown section {key!r} ({expected})"
        )
    sections = {name: _section(raw, name, source) for name in _KNOWN_SECTIONS}
    typed: dict[str, Any] = {}
    for name, model in _TYPED_SECTIONS.items():
        section = sections[name]
        _refuse_lax_values(section, model, source, name)
        try:
            typed[name] = model.model_validate(section)
        except ValidationError as error:
            raise UserError(_describe(error, source, name, model)) from error
    config = RollriskConfig(source=source, observation=dict(sections["observation"]), **typed)
    # checked here too, not only when a job reads it: `rollrisk train` with a bad
    # `window_months` would otherwise fail after minutes of work, and `validate` not at all
    config.observation_spec()
    return config


def _at(source: str, raw: Mapping[str, Any], key: Any) -> str:
    """``source:line`` of ``key`` when ``raw`` came from a file, else ``source``."""
    line = line_of(raw, key)
    return source if line is None else f"{source}:{line}"


def _section(raw: Mapping[str, Any], name: str, source: str) -> Mapping[str, Any]:
    """Section ``name`` of ``raw``: a mapping, or empty (absent, or ``training:`` with nothing
    under it). ``training: 0`` or ``observation: []`` is an error, not the defaults."""
    value = raw.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UserError(
            f"config file {_at(source, raw, name)}: section {name!r} must be a mapping of keys "
            f"to values (or empty), got {describe_value(value)}"
        )
    return value


def _value_kinds(annotation: Any) -> tuple[bool, bool, bool, bool]:
    """Whether ``annotation`` admits an int or a float, a float, a bool, and text."""
    options = typing.get_args(annotation) if typing.get_origin(annotation) in _UNIONS else ()
    options = options or (annotation,)
    numeric = any(option in (int, float) for option in options)
    text = any(option is str or typing.get_origin(option) is typing.Literal for option in options)
    return numeric, float in options, bool in options, text


_UNIONS = (typing.Union, types.UnionType)


def _refuse_lax_values(section: Any, model: type[BaseModel], source: str, where: str) -> None:
    """A value of the wrong YAML type under a typed key is an error naming the file and the key.

    Pydantic reads ``true`` as 1 (1.0) for an int (float) field, the text ``"0.5"`` as 0.5, and
    ``"no"``, ``"off"`` or ``0`` as false for a boolean, so ``max_reject_rate: true`` would
    silently switch the reject limit off and ``require_beats_baselines: "no"`` (a quoted word)
    would pass for false: a number is written as a number, a switch as true or false. It also
    reads ``2000.0`` as 2000 for a whole-number key (``n_estimators``) while it refuses
    ``2000.5``: a count is written as a whole number, so both are refused (a whole number for a
    decimal key, ``reg_lambda: 1``, is fine). Nested sections (a pydantic model under a
    key) are checked the same way.
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
        numeric, admits_float, admits_bool, admits_text = _value_kinds(annotation)
        if isinstance(value, float) and numeric and not admits_float:
            raise UserError(
                f"config file {source}: {where}.{key}: expected a whole number, got {value!r}"
            )
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


def _did_you_mean(model: type[BaseModel], location: tuple[Any, ...]) -> str:
    """`` (did you mean 'min_auc_gain'?)`` for an unknown key near a known one of its model
    (followed through nested sections), else ``""``."""
    for part in location[:-1]:
        field = model.model_fields.get(str(part))
        nested = getattr(field, "annotation", None) if field is not None else None
        if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
            return ""
        model = nested
    close = difflib.get_close_matches(str(location[-1]), list(model.model_fields), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _describe(error: ValidationError, source: str, section: str, model: type[BaseModel]) -> str:
    problems = []
    for item in error.errors():
        key = ".".join([section, *(str(part) for part in item["loc"])])
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown key {key}{_did_you_mean(model, item['loc'])}")
        else:
            problems.append(f"{key}: {item['msg']} (got {item.get('input')!r})")
    return f"config file {source}: " + "; ".join(problems)
