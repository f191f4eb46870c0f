"""The roll-to-default model: LightGBM trees plus a calibrator, with scikit-learn manners.

:class:`RollModel` takes a training-set frame (one row per account and as-of month, see
``docs/models.md``) and returns calibrated ``P(reaches default_dpd within window_months)``.

Design choices that a reader should know:

* **Inputs** are the feature set's columns plus ``product`` (categorical) and ``start_bucket``.
  ``start_bucket`` is encoded as an ordinal (M0=0, M1=1, M2=2, M3=3, M4+=4) with a +1 monotone constraint, so
  moving an account to a later bucket never lowers its risk (with ``structure="per_bucket"`` it
  selects one model per bucket instead and is not a feature).
* **Monotone constraints** come from the registry's ``direction`` of each feature.
* **Categories are fixed** before training (the schema's enumerations, or the training data's
  values for a categorical the schema does not enumerate), so a batch and each of its rows scored
  alone get identical codes and identical scores. An unknown category is an error, not a silent
  missing value.
* **Early stopping** uses a validation slice; **calibration** uses a different slice (see
  :mod:`rollrisk.models.calibration`): the trees see neither.
* The fitted model serialises to a JSON-safe dict (LightGBM's own text format inside, no pickle)
  via :meth:`RollModel.to_dict` / :meth:`RollModel.from_dict`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd

from rollrisk.features.observations import BUCKET_NAMES
from rollrisk.features.registry import FeatureSet, FeatureSpec
from rollrisk.features.schemas import PRODUCTS
from rollrisk.models.calibration import (
    CalibrationEvidence,
    Calibrator,
    calibrator_from_dict,
    select_calibrator,
)

# Every bucket a training set may hold (M1-M3 by default; M0 / M4+ if the population is widened).
START_BUCKETS: tuple[str, ...] = BUCKET_NAMES
PRODUCT_COLUMN = "product"
BUCKET_COLUMN = "start_bucket"
SINGLE = "all"  # key of the only booster when structure == "single"
SERIALISATION_FORMAT = 1

Structure = Literal["single", "per_bucket"]
_CONSTRUCTOR_LIGHTGBM_PARAMS = (
    "n_estimators",
    "learning_rate",
    "num_leaves",
    "min_child_samples",
    "subsample",
    "subsample_freq",
    "colsample_bytree",
    "reg_lambda",
    "random_state",
    "n_jobs",
)


class NotFittedError(RuntimeError):
    """Raised when an unfitted :class:`RollModel` is asked to predict."""


class RollModel:
    """LightGBM binary classifier of roll to default, with a calibrator fitted on unseen rows.

    Parameters are only stored here (scikit-learn's rule); they are checked in :meth:`fit`.

    Args:
        feature_set: the registry's feature set; gives columns, kinds and monotone directions.
        structure: ``"single"`` (one model, bucket as a monotone feature) or ``"per_bucket"``.
        categories: fixed category lists for categorical columns; ``product`` defaults to the
            schema's enumeration.
        calibration: ``"auto"``, ``"cross_fit"``, ``"none"``, ``"isotonic"`` or ``"platt"``.
        calibration_folds: cross-fitting folds used to compare calibration methods.
        n_estimators ... reg_lambda: LightGBM parameters (``n_estimators`` is the upper bound
            that early stopping cuts).
        early_stopping_rounds: rounds without validation log-loss improvement before stopping.
        random_state: seed for LightGBM's bagging and feature sampling.
        n_jobs: LightGBM threads (0: OpenMP's default, all cores).
    """

    def __init__(
        self,
        feature_set: FeatureSet,
        structure: Structure = "single",
        categories: Mapping[str, Sequence[str]] | None = None,
        calibration: str = "auto",
        calibration_folds: int = 5,
        n_estimators: int = 1000,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 20,
        subsample: float = 0.8,
        subsample_freq: int = 1,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        early_stopping_rounds: int = 50,
        random_state: int = 7,
        n_jobs: int = 0,
    ) -> None:
        self.feature_set = feature_set
        self.structure = structure
        self.categories = categories
        self.calibration = calibration
        self.calibration_folds = calibration_folds
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.subsample_freq = subsample_freq
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.random_state = random_state
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ parameters
    def lightgbm_params(self) -> dict[str, Any]:
        """The LightGBM parameters this model trains with (logged to MLflow as they are)."""
        return {
            "objective": "binary",
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "subsample": self.subsample,
            "subsample_freq": self.subsample_freq,
            "colsample_bytree": self.colsample_bytree,
            "reg_lambda": self.reg_lambda,
            "random_state": self.random_state,
            "n_jobs": self.n_jobs,
            "verbose": -1,
        }

    # ------------------------------------------------------------------ columns
    def _declared_columns(self) -> tuple[list[str], list[str]]:
        """(input columns in model order, the categorical ones) before any fitting."""
        names = list(self.feature_set.names)
        categorical = [s.name for s in self.feature_set.features if s.kind == "categorical"]
        if PRODUCT_COLUMN not in names:
            names.append(PRODUCT_COLUMN)
        if PRODUCT_COLUMN not in categorical:
            categorical.append(PRODUCT_COLUMN)
        if self.structure == "single" and BUCKET_COLUMN not in names:
            names.append(BUCKET_COLUMN)
        if self.structure == "per_bucket" and BUCKET_COLUMN in names:
            names.remove(BUCKET_COLUMN)
        categorical = [name for name in categorical if name != BUCKET_COLUMN]
        return names, categorical

    def _monotone_constraints(self) -> list[int]:
        directions = {spec.name: int(spec.direction) for spec in self.feature_set.features}
        directions[BUCKET_COLUMN] = 1
        return [
            0 if name in self.categorical_columns_ else directions.get(name, 0)
            for name in self.feature_columns_
        ]

    @property
    def input_columns(self) -> list[str]:
        """Raw columns :meth:`predict_proba` needs (features, ``product``, ``start_bucket``)."""
        self._check_fitted()
        columns = list(self.feature_columns_)
        if BUCKET_COLUMN not in columns:
            columns.append(BUCKET_COLUMN)
        return columns

    def encode(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Model-ready copy of ``frame``'s input columns (the input is never modified).

        Numeric columns become float64 (missing values stay NaN), categorical columns become
        pandas categories with the fixed lists, ``start_bucket`` becomes its ordinal.

        Raises:
            ValueError: a column is missing, a category is unknown, or a value is not numeric.
        """
        self._check_fitted()
        return self._encode(frame)

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The float64 matrix LightGBM predicts from: :meth:`encode`'s columns in order, each
        category as its code in the fixed list (NaN when missing), as LightGBM codes a pandas
        frame. Predicting or explaining from it skips LightGBM's own pandas conversion.

        Raises:
            ValueError: as :meth:`encode`.
        """
        self._check_fitted()
        return self._matrix(frame)

    def _encode(self, frame: pd.DataFrame) -> pd.DataFrame:
        matrix = self._matrix(frame)
        columns: dict[str, Any] = {}
        for j, name in enumerate(self.feature_columns_):
            if name in self.categorical_columns_:
                codes = np.where(np.isnan(matrix[:, j]), -1, matrix[:, j]).astype(np.int64)
                columns[name] = pd.Categorical.from_codes(codes, categories=self.categories_[name])
            else:
                columns[name] = matrix[:, j]
        return pd.DataFrame(columns, index=frame.index)

    def _matrix(self, frame: pd.DataFrame) -> np.ndarray:
        needed = list(self.feature_columns_)
        if BUCKET_COLUMN not in needed:
            needed.append(BUCKET_COLUMN)
        missing = [name for name in needed if name not in frame.columns]
        if missing:
            raise ValueError(f"the frame to score lacks model input column(s) {missing}")
        names = list(self.feature_columns_)
        matrix = np.empty((len(frame), len(names)), dtype=np.float64)
        dtypes = dict(zip(frame.columns, frame.dtypes, strict=True))
        # one block conversion for the columns that already hold numbers (the usual case:
        # ~60 per-column conversions cost more than the model on a small request)
        ready = [
            j
            for j, name in enumerate(names)
            if name != BUCKET_COLUMN
            and name not in self.categorical_columns_
            and _is_plain_numeric(dtypes[name])
        ]
        if ready:
            block = frame[[names[j] for j in ready]]
            matrix[:, ready] = block.to_numpy(dtype=np.float64, na_value=np.nan)
        for j in sorted(set(range(len(names))) - set(ready)):
            name = names[j]
            column = frame[name]
            if name == BUCKET_COLUMN:
                matrix[:, j] = self._bucket_ordinal(column)
            elif name in self.categorical_columns_:
                codes = self._categorical(name, column).codes
                matrix[:, j] = np.where(codes < 0, np.nan, codes)
            else:
                try:
                    numbers = pd.to_numeric(column, errors="raise")
                except (TypeError, ValueError) as error:
                    raise ValueError(f"column {name!r} must be numeric: {error}") from error
                matrix[:, j] = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
        return matrix

    def _categorical(self, name: str, column: pd.Series) -> pd.Categorical:
        allowed = list(self.categories_[name])
        encoded, unknown = _coded(column, allowed)
        if unknown:
            raise ValueError(
                f"column {name!r} has unknown value(s) {unknown[:5]}; expected one of {allowed}"
            )
        return encoded

    @staticmethod
    def _bucket_ordinal(column: pd.Series) -> np.ndarray:
        encoded, unknown = _coded(column, list(START_BUCKETS))
        if unknown or (encoded.codes < 0).any():
            shown = unknown[:5] if unknown else ["<missing>"]
            raise ValueError(
                f"column {BUCKET_COLUMN!r} has value(s) {shown}; expected one of {list(START_BUCKETS)}"
            )
        return encoded.codes.astype(np.float64)  # the bucket order is the ordinal

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        X: pd.DataFrame,
        y: Sequence[int] | np.ndarray | pd.Series,
        *,
        X_valid: pd.DataFrame,
        y_valid: Sequence[int] | np.ndarray | pd.Series,
        X_calibration: pd.DataFrame,
        y_calibration: Sequence[int] | np.ndarray | pd.Series,
        calibration_groups: Sequence[str] | np.ndarray | None = None,
        calibration_months: Sequence[Any] | np.ndarray | None = None,
    ) -> RollModel:
        """Train the trees on ``X``, stop early on ``X_valid``, calibrate on ``X_calibration``.

        Each frame needs the feature set's columns, ``product`` and ``start_bucket``; other
        columns are ignored. ``calibration_groups`` (account ids) keep an account's rows in one
        cross-fitting fold or bootstrap draw; ``calibration_months`` (each calibration row's
        as-of), when they span several months, let ``calibration="auto"`` choose out of time:
        fitted on the earlier months, judged on the latest
        (:func:`~rollrisk.models.calibration.select_calibrator`).
        """
        if self.structure not in ("single", "per_bucket"):
            raise ValueError(f"structure must be 'single' or 'per_bucket', got {self.structure!r}")
        for label, frame in (
            ("training", X),
            ("validation", X_valid),
            ("calibration", X_calibration),
        ):
            if len(frame) == 0:
                raise ValueError(f"the {label} frame is empty")
        y_train = self._labels(y, len(X), "training")
        y_stop = self._labels(y_valid, len(X_valid), "validation")
        y_cal = self._labels(y_calibration, len(X_calibration), "calibration")
        months = None if calibration_months is None else np.asarray(calibration_months)
        if months is not None and months.size != len(X_calibration):
            raise ValueError(
                f"calibration_months ({months.size}) and calibration rows "
                f"({len(X_calibration)}) differ in length"
            )

        self.feature_columns_, self.categorical_columns_ = self._declared_columns()
        self.categories_ = self._fixed_categories(X)
        self.monotone_constraints_ = self._monotone_constraints()

        train, stop = self._encode(X), self._encode(X_valid)
        if self.structure == "single":
            keys = {SINGLE: (np.ones(len(X), bool), np.ones(len(X_valid), bool))}
        else:
            keys = {
                bucket: (
                    (X[BUCKET_COLUMN].astype("string") == bucket).to_numpy(),
                    (X_valid[BUCKET_COLUMN].astype("string") == bucket).to_numpy(),
                )
                for bucket in START_BUCKETS
                if (X[BUCKET_COLUMN].astype("string") == bucket).any()
            }
        self.boosters_: dict[str, lgb.Booster] = {}
        self.best_iterations_: dict[str, int] = {}
        for key, (train_rows, stop_rows) in keys.items():
            if not train_rows.any() or len(np.unique(y_train[train_rows])) < 2:
                raise ValueError(f"no trainable rows (both outcomes) for model {key!r}")
            params = {**self.lightgbm_params(), "monotone_constraints": self.monotone_constraints_}
            rounds = params.pop("n_estimators")
            train_data = lgb.Dataset(
                train[train_rows], label=y_train[train_rows], free_raw_data=False
            )
            valid_sets, callbacks = [], []
            if stop_rows.any():
                valid_sets = [train_data.create_valid(stop[stop_rows], label=y_stop[stop_rows])]
                callbacks = [lgb.early_stopping(self.early_stopping_rounds, verbose=False)]
            booster = lgb.train(
                {**params, "metric": "binary_logloss"},
                train_data,
                num_boost_round=rounds,
                valid_sets=valid_sets,
                callbacks=callbacks,
            )
            self.boosters_[key] = booster
            self.best_iterations_[key] = int(booster.best_iteration or booster.current_iteration())

        raw = self.predict_raw(X_calibration)
        groups = None if calibration_groups is None else np.asarray(calibration_groups)
        self.calibrator_, self.calibration_evidence_ = select_calibrator(
            raw,
            y_cal,
            groups=groups,
            method=self.calibration,
            folds=self.calibration_folds,
            months=months,
            seed=self.random_state,
        )
        return self

    @staticmethod
    def _labels(y: Any, n_rows: int, label: str) -> np.ndarray:
        values = np.asarray(y, dtype=np.float64).ravel()
        if values.size != n_rows:
            raise ValueError(
                f"the {label} labels ({values.size}) and rows ({n_rows}) differ in length"
            )
        if not np.isin(values, (0.0, 1.0)).all():
            raise ValueError(f"the {label} labels must be 0 or 1 (missing labels are not allowed)")
        return values.astype(np.int8)

    def _fixed_categories(self, X: pd.DataFrame) -> dict[str, list[str]]:
        declared = {
            PRODUCT_COLUMN: list(PRODUCTS),
            **{k: list(v) for k, v in (self.categories or {}).items()},
        }
        fixed: dict[str, list[str]] = {}
        for name in self.categorical_columns_:
            if name in declared:
                fixed[name] = declared[name]
            elif name in X.columns:
                # No enumeration in the schema: freeze the training values, sorted.
                fixed[name] = sorted(X[name].dropna().astype(str).unique().tolist())
            else:
                raise ValueError(f"the training frame lacks categorical column {name!r}")
        return fixed

    # ------------------------------------------------------------------ predict
    def _check_fitted(self) -> None:
        if not hasattr(self, "boosters_"):
            raise NotFittedError(
                "this RollModel is not fitted yet: call fit(...) before predicting"
            )

    def predict_raw(self, X: pd.DataFrame, *, matrix: np.ndarray | None = None) -> np.ndarray:
        """Uncalibrated tree scores in (0, 1), one per row of ``X``.

        ``matrix`` is ``self.matrix(X)`` when the caller has it already (scoring builds it once
        for the probability and the explanations).
        """
        self._check_fitted()
        if matrix is None:
            matrix = self._matrix(X)
        if self.structure == "single":
            return self.boosters_[SINGLE].predict(matrix)
        scores = np.full(len(X), np.nan)
        buckets = X[BUCKET_COLUMN].astype("string").to_numpy()
        unseen = sorted(set(buckets) - set(self.boosters_))
        if unseen:
            raise ValueError(
                f"no per-bucket model for start_bucket {unseen}; trained on {sorted(self.boosters_)}"
            )
        for bucket, booster in self.boosters_.items():
            rows = buckets == bucket
            if rows.any():
                scores[rows] = booster.predict(matrix[rows])
        return scores

    def predict_proba(self, X: pd.DataFrame, *, matrix: np.ndarray | None = None) -> np.ndarray:
        """Calibrated ``P(roll to default)``, a 1-D array with one value per row of ``X``.

        (1-D, like the baselines in :mod:`rollrisk.models.baselines`, not scikit-learn's
        two-column layout.) ``matrix``: as for :meth:`predict_raw`.
        """
        self._check_fitted()
        if not hasattr(self, "calibrator_"):
            raise NotFittedError("this RollModel has no calibrator: fit(...) did not finish")
        return self.calibrator_.predict(self.predict_raw(X, matrix=matrix))

    def feature_importance(self) -> pd.DataFrame:
        """Total split gain and split count per input column, summed over the boosters."""
        self._check_fitted()
        gain = np.zeros(len(self.feature_columns_))
        splits = np.zeros(len(self.feature_columns_))
        for booster in self.boosters_.values():
            gain += booster.feature_importance("gain")
            splits += booster.feature_importance("split")
        table = pd.DataFrame({"feature": self.feature_columns_, "gain": gain, "splits": splits})
        table["gain_share"] = table["gain"] / max(table["gain"].sum(), 1e-12)
        return table.sort_values("gain", ascending=False, ignore_index=True)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe snapshot of the fitted model (LightGBM text models inside)."""
        self._check_fitted()
        return {
            "format": SERIALISATION_FORMAT,
            "feature_set": {
                "name": self.feature_set.name,
                "version": self.feature_set.version,
                "features": [dataclasses.asdict(spec) for spec in self.feature_set.features],
            },
            "structure": self.structure,
            "feature_columns": list(self.feature_columns_),
            "categorical_columns": list(self.categorical_columns_),
            "categories": {k: list(v) for k, v in self.categories_.items()},
            "monotone_constraints": list(self.monotone_constraints_),
            "best_iterations": dict(self.best_iterations_),
            "boosters": {key: booster.model_to_string() for key, booster in self.boosters_.items()},
            "calibrator": self.calibrator_.to_dict(),
            "lightgbm_params": self.lightgbm_params(),
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> RollModel:
        """Rebuild a fitted model from :meth:`to_dict` output (self-contained: the feature set
        it was trained on travels with it, so an old model loads after the registry moves on).
        """
        if state.get("format") != SERIALISATION_FORMAT:
            raise ValueError(f"unsupported RollModel format {state.get('format')!r}")
        recorded = state["feature_set"]
        feature_set = FeatureSet(
            name=recorded["name"],
            version=recorded["version"],
            features=tuple(FeatureSpec(**spec) for spec in recorded["features"]),
        )
        params = state["lightgbm_params"]
        model = cls(
            feature_set,
            structure=state["structure"],
            **{name: params[name] for name in _CONSTRUCTOR_LIGHTGBM_PARAMS if name in params},
        )
        model.feature_columns_ = list(state["feature_columns"])
        model.categorical_columns_ = list(state["categorical_columns"])
        model.categories_ = {k: list(v) for k, v in state["categories"].items()}
        model.monotone_constraints_ = list(state["monotone_constraints"])
        model.best_iterations_ = dict(state["best_iterations"])
        model.boosters_ = {k: lgb.Booster(model_str=text) for k, text in state["boosters"].items()}
        model.calibrator_ = calibrator_from_dict(state["calibrator"])
        return model

    calibration_evidence_: CalibrationEvidence
    calibrator_: Calibrator


def _is_plain_numeric(dtype: Any) -> bool:
    """True for numpy bool, integer and float dtypes (converted to float64 in one block)."""
    return isinstance(dtype, np.dtype) and dtype.kind in "biuf"


def _coded(column: pd.Series, allowed: list[str]) -> tuple[pd.Categorical, list[str]]:
    """``column`` as a categorical over ``allowed`` (missing stays missing), and the sorted
    distinct values that are not allowed (they would silently become missing)."""
    values = column.to_numpy(dtype=object, na_value=None)
    codes = pd.Index(allowed, dtype=object).get_indexer(values)
    outside = (codes < 0) & pd.notna(values)
    unknown = sorted({str(value) for value in values[outside]}) if outside.any() else []
    return pd.Categorical.from_codes(np.where(outside, -1, codes), categories=allowed), unknown
