"""Training-set files: a built training set written to Parquet and read back, checked.

The frame's contract is :func:`rollrisk.features.training_set.training_set_schema`; a file is
checked against it when read, so a stale or hand-edited file fails loudly instead of training a
model on the wrong columns.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
from pandera.errors import SchemaError, SchemaErrors

from rollrisk.errors import UserError
from rollrisk.features.registry import FEATURE_SET, FeatureSet
from rollrisk.features.training_set import validate_training_set


def write_training_set(frame: pl.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` (Parquet) next to the target and rename, so a killed run
    never leaves a half file at ``path``; makes the parent folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    frame.write_parquet(temporary)
    os.replace(temporary, path)


def read_training_set(path: Path, feature_set: FeatureSet = FEATURE_SET) -> pl.DataFrame:
    """A training set written by :func:`write_training_set` (``rollrisk build-training-set``),
    checked against the schema of ``feature_set``.

    Raises:
        UserError: the file does not exist, or breaks the schema (the message lists how).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"training set {path} does not exist")
    try:
        return validate_training_set(pl.read_parquet(path), feature_set)
    except (SchemaError, SchemaErrors) as error:
        raise UserError(
            f"training set {path} does not match feature set {feature_set.name} "
            f"v{feature_set.version} (rebuild it with `rollrisk build-training-set`): {error}"
        ) from error
