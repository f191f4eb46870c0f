"""Typed configuration: ``conf/default.yaml`` read once, at a job's entry point.

Each section a job owns is validated into a frozen pydantic model: a key the model does not know
is an error that names the file and the key (a typo must never silently fall back to a default).
Sections owned by other jobs are kept as plain mappings in :attr:`RollriskConfig.sections`.
Command-line flags override values after loading (see :meth:`TrainingConfig.with_overrides`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rollrisk.conf import DEFAULT_CONFIG
from rollrisk.errors import UserError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitConfig(_Section):
    """As-of months held out at the end of the history, latest last."""

    validation_months: int = Field(3, ge=1)
    test_months: int = Field(3, ge=1)
    # As-of months dropped before validation and before test; None: the outcome window.
    embargo_months: int | None = Field(None, ge=0)


class CalibrationConfig(_Section):
    method: Literal["auto", "isotonic", "platt"] = "auto"
    holdout_fraction: float = Field(0.5, gt=0.0, lt=1.0)
    folds: int = Field(5, ge=2)


class LightGBMConfig(_Section):
    n_estimators: int = Field(1000, ge=1)
    learning_rate: float = Field(0.05, gt=0.0)
    num_leaves: int = Field(15, ge=2)
    min_child_samples: int = Field(20, ge=1)
    subsample: float = Field(0.8, gt=0.0, le=1.0)
    subsample_freq: int = Field(1, ge=0)
    colsample_bytree: float = Field(0.8, gt=0.0, le=1.0)
    reg_lambda: float = Field(1.0, ge=0.0)
    early_stopping_rounds: int = Field(50, ge=1)
    n_jobs: int = Field(0, ge=0)  # LightGBM threads; 0: OpenMP's default (all cores)


class TuningConfig(_Section):
    time_budget_seconds: float = Field(300.0, gt=0.0)
    max_trials: int = Field(40, ge=1)


class TrainingConfig(_Section):
    model_name: str = "rollrisk-roll-to-default"
    experiment_name: str = "rollrisk-roll-model"
    seed: int = 7
    structure: Literal["single", "per_bucket"] = "single"
    split: SplitConfig = SplitConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    lightgbm: LightGBMConfig = LightGBMConfig()
    tuning: TuningConfig = TuningConfig()

    def with_overrides(self, **overrides: Any) -> TrainingConfig:
        """A copy with the given top-level fields replaced; ``None`` values are ignored."""
        changes = {key: value for key, value in overrides.items() if value is not None}
        return self.model_validate({**self.model_dump(), **changes})


class PromotionConfig(_Section):
    """Gates a challenger must pass before the champion alias moves to it."""

    from_alias: str = "challenger"
    to_alias: str = "champion"
    min_auc_gain: float = 0.005
    max_ece: float = Field(0.03, gt=0.0)
    max_psi: float = Field(0.25, gt=0.0)
    # The challenger's own run must show it beats both baselines (out-of-time AUC and Brier).
    require_beats_baselines: bool = True


class MonitoringConfig(_Section):
    """Thresholds at which ``rollrisk monitor`` exits 3 (alert)."""

    psi_act: float = Field(0.25, gt=0.0)  # score PSI above this: act
    csi_act: float = Field(0.25, gt=0.0)  # any feature's CSI above this: act
    # a risk band's realised roll rate differs from its mean prediction by more than this
    # (absolute) and the prediction is outside the realised rate's 95% interval: act
    backtest_tolerance: float = Field(0.05, gt=0.0, lt=1.0)
    backtest_min_accounts: int = Field(30, ge=1)  # smaller bands are reported, never judged


class RollriskConfig(_Section):
    """The whole configuration file: typed sections plus the others, untouched."""

    source: str = "<built-in defaults>"
    training: TrainingConfig = TrainingConfig()
    promotion: PromotionConfig = PromotionConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    observation: Mapping[str, Any] = Field(default_factory=dict)
    sections: Mapping[str, Any] = Field(default_factory=dict)


_TYPED_SECTIONS: dict[str, type[_Section]] = {
    "training": TrainingConfig,
    "promotion": PromotionConfig,
    "monitoring": MonitoringConfig,
}
_KNOWN_SECTIONS = (*_TYPED_SECTIONS, "observation")


def default_config_path() -> Path:
    """The shipped ``default.yaml`` (package data :mod:`rollrisk.conf`)."""
    return DEFAULT_CONFIG


def load_config(path: Path | None = None) -> RollriskConfig:
    """Read and validate a YAML configuration file (``None``: the default file, if any).

    Raises:
        UserError: the file is missing or unreadable, or a typed section holds an unknown key
            or a value of the wrong type; the message names the file and the key.
    """
    if path is None:
        path = default_config_path()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
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
        try:
            typed[name] = model.model_validate(section)
        except ValidationError as error:
            raise UserError(_describe(error, source, name)) from error
    observation = raw.get("observation") or {}
    if not isinstance(observation, Mapping):
        raise UserError(f"config file {source}: section 'observation' must be a mapping")
    others = {key: value for key, value in raw.items() if key not in _KNOWN_SECTIONS}
    return RollriskConfig(source=source, observation=dict(observation), sections=others, **typed)


def _describe(error: ValidationError, source: str, section: str) -> str:
    problems = []
    for item in error.errors():
        key = ".".join([section, *(str(part) for part in item["loc"])])
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown key {key}")
        else:
            problems.append(f"{key}: {item['msg']} (got {item.get('input')!r})")
    return f"config file {source}: " + "; ".join(problems)
