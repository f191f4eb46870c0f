"""A pandas frame as the float matrix LightGBM predicts from.

LightGBM turns a pandas frame into a float64 matrix before every prediction (categories become
their training codes). :func:`lightgbm_matrix` does the same, so that the project's explanation
kernel (:mod:`rollrisk.models.treeshap`) reads exactly what LightGBM would.
:meth:`rollrisk.models.roll_model.RollModel.matrix` builds that matrix straight from the raw
features for scoring; a test checks the two agree.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd


def lightgbm_matrix(frame: pd.DataFrame, booster: lgb.Booster) -> np.ndarray:
    """Encode a pandas frame as LightGBM does before predicting (float64 matrix).

    Categorical (pandas ``category``) columns are re-coded against the categories the booster
    saw at training (``booster.pandas_categorical``, in column order) and become their integer
    codes, with NaN for missing or unseen values; other columns are cast to float64.
    """
    categories = list(getattr(booster, "pandas_categorical", None) or [])
    dtypes = frame.dtypes
    categorical_columns = [c for c in frame.columns if isinstance(dtypes[c], pd.CategoricalDtype)]
    if len(categorical_columns) != len(categories):
        raise ValueError(
            f"the frame has {len(categorical_columns)} category columns "
            f"({', '.join(map(str, categorical_columns)) or 'none'}) but the model was trained with "
            f"{len(categories)}; pass the frame with the same dtypes as at training"
        )
    matrix = np.empty(frame.shape, dtype=np.float64)
    known = dict(zip(categorical_columns, categories, strict=True))
    other = [j for j, column in enumerate(frame.columns) if column not in known]
    if other:  # one block conversion: per-column access costs more than the kernel on few rows
        matrix[:, other] = frame.iloc[:, other].to_numpy(dtype=np.float64, na_value=np.nan)
    for column, allowed in known.items():
        codes = frame[column].cat.set_categories(allowed).cat.codes.to_numpy()
        matrix[:, frame.columns.get_loc(column)] = np.where(codes < 0, np.nan, codes)
    return matrix
