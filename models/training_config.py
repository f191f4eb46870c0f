"""The typed ``training:`` settings: how the roll model is split, fitted, calibrated and tuned.

Plain frozen pydantic models, so that :mod:`rollrisk.models.training` takes a typed object and
never a YAML file: :func:`rollrisk.storage.config.load_config` reads the file (at a job's
entry point) into a :class:`TrainingConfig`; a notebook builds one directly, e.g.
``TrainingConfig(seed=3, lightgbm=LightGBMConfig(n_estimators=200))``. A key a model does not
know is an error (a typo must never fall back to a default silently). Importing this module
loads pydantic only (no LightGBM: ``rollrisk serve`` sets OpenMP's settings before that).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rollrisk.errors import UserError


class ConfigSection(BaseModel):
    """A section of the configuration file: frozen, an unknown key is an error, and so is a
    value of another kind (strict): built in code, ``LightGBMConfig(learning_rate=True)`` was
    a learning rate of 1.0 and ``n_estimators="200"`` 200, as a config file may not say them
    (:func:`rollrisk.storage.config.load_config` refuses those with its own words first). A
    whole number is a decimal field's value (``reg_lambda=1``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _numpy_scalars(cls, data: Any) -> Any:
        """numpy's numbers as the Python values they hold (``np.int64(3)`` is 3), as the
        API's other checks take them; a numpy bool stays a bool, refused for a number."""
        if not isinstance(data, dict):
            return data
        return {
            key: value.item()
            if type(value).__module__ == "numpy" and hasattr(value, "item")
            else value
            for key, value in data.items()
        }


class SplitConfig(ConfigSection):
    """As-of months held out at the end of the history, latest last."""

    validation_months: int = Field(3, ge=1)
    test_months: int = Field(3, ge=1)
    # As-of months dropped before validation and before test; None: the outcome window less
    # one (the months whose labels are not yet complete when the next part begins).
    embargo_months: int | None = Field(None, ge=0)
    # A history too short for these sizes gets a smaller split (validation and test down to
    # one month, then the embargo), with a warning; False: refuse, naming what would fit.
    adapt: bool = True


class CalibrationConfig(ConfigSection):
    # cross_fit (the default): Platt or isotonic by cross-fitted Brier on all calibration rows;
    # auto: chosen out of time within the validation months (none, Platt or isotonic; docs/models.md
    # "Choosing the calibration": opt-in, it calibrated the deployed model worse on 2 of 3 seeds);
    # the others force one.
    method: Literal["auto", "cross_fit", "none", "isotonic", "platt"] = "cross_fit"
    holdout_fraction: float = Field(0.5, gt=0.0, lt=1.0)
    folds: int = Field(5, ge=2)


class LightGBMConfig(ConfigSection):
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


class TuningConfig(ConfigSection):
    time_budget_seconds: float = Field(300.0, gt=0.0)
    max_trials: int = Field(40, ge=1)


class TrainingConfig(ConfigSection):
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
        return _validated_flags(lambda: self.model_validate({**self.model_dump(), **changes}))

    def with_section_overrides(self, section: str, **overrides: Any) -> TrainingConfig:
        """A copy with fields of one nested section (``"tuning"``, ``"calibration"``, ...)
        replaced; ``None`` values are ignored (a flag not given)."""
        changes = {key: value for key, value in overrides.items() if value is not None}
        if not changes:
            return self
        current = getattr(self, section).model_dump()
        return _validated_flags(
            lambda: self.model_validate({**self.model_dump(), section: {**current, **changes}})
        )


# the `rollrisk train` flags whose names are not their field's (pipelines/train.py)
_FLAGS = {"time_budget_seconds": "--time-budget", "experiment_name": "--experiment"}


def _flag(field: str) -> str:
    return _FLAGS.get(field, "--" + field.replace("_", "-"))


def _validated_flags(build: Callable[[], TrainingConfig]) -> TrainingConfig:
    """``build()``, its validation errors said as the flags that gave the values (a flag's
    value out of range was a pydantic traceback)."""
    try:
        return build()
    except ValidationError as error:
        problems = [
            f"{_flag(str(item['loc'][-1]))}: {item['msg']} (got {item.get('input')!r})"
            for item in error.errors()
        ]
        raise UserError("; ".join(problems)) from None
