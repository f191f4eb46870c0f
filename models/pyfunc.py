"""The MLflow face of a :class:`~rollrisk.models.roll_model.RollModel`.

``mlflow.pyfunc.load_model("models:/rollrisk-roll-to-default@champion").predict(frame)`` returns
calibrated ``P(roll to default)`` (a 1-D float array) for a pandas frame of *raw* features: the
feature set's columns plus ``product`` and ``start_bucket``, one row per account. Extra columns
(e.g. ``account_id``) are ignored.

The model travels as JSON (LightGBM's text format inside, no pickle of our classes), read in
:meth:`RollModelPyfunc.load_context`; nothing is loaded or configured at import.

Signature rule: every integer column is declared and fed as float64, because an integer feature
that can be missing becomes float in pandas, and MLflow would then reject (or silently drop the
signature of) an integer-typed input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from rollrisk.models.roll_model import RollModel

MODEL_ARTIFACT = "roll_model"  # key in ``artifacts``: the RollModel JSON
REFERENCE_SCORES_ARTIFACT = "reference_scores"  # training-period scores, for PSI later
REFERENCE_FEATURES_ARTIFACT = "reference_features"  # sample of training features, for CSI


def as_signature_frame(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``frame[columns]`` with integer and boolean columns cast to float64 (a new frame).

    Used to build the input example and signature, and applied again to every scoring input,
    so the declared and the fed types always agree.
    """
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks model input column(s) {missing}")
    selected = frame[columns].copy()
    for name in columns:
        dtype = selected[name].dtype
        if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_integer_dtype(dtype):
            selected[name] = selected[name].astype("Float64").astype(np.float64)
        elif isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
            selected[name] = selected[name].astype(object)
    return selected


class RollModelPyfunc(mlflow.pyfunc.PythonModel):
    """Calibrated roll-to-default probabilities from raw features."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        state = json.loads(Path(context.artifacts[MODEL_ARTIFACT]).read_text(encoding="utf-8"))
        self.model_ = RollModel.from_dict(state)
        reference = context.artifacts.get(REFERENCE_SCORES_ARTIFACT)
        self.reference_scores_ = (
            np.asarray(json.loads(Path(reference).read_text(encoding="utf-8")), dtype=np.float64)
            if reference
            else None
        )
        features = context.artifacts.get(REFERENCE_FEATURES_ARTIFACT)
        self.reference_features_ = pd.read_parquet(features) if features else None

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise RuntimeError(
                "RollModelPyfunc has no model: load it with mlflow.pyfunc.load_model"
            )
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        frame = as_signature_frame(frame, self.model_.input_columns)
        return np.asarray(self.model_.predict_proba(frame), dtype=np.float64)
