"""A column of labels as codes: many rows, few distinct values (an action, a channel, an outcome).

The compliance rules read such columns of hundreds of thousands of planned actions and past
contacts many times over (is this row a call? is its outcome a reached one? which channel?).
As object arrays of strings each question hashes every row's string again, and taking rows
copies object references; as codes it is a lookup in a table of a few entries, and taking rows
takes integers. A caller that already has codes (the simulator's channels and outcomes) passes
them with its names and no string is ever made per row.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np
import pandas as pd
import polars as pl


class Labels:
    """``names[codes[i]]`` is row ``i``'s label (a string, or ``None``).

    ``names`` may repeat a label (two codes meaning the same thing, e.g. the simulator's
    channels mapped to the action each stands for): every question is asked of the labels, so
    such codes answer alike. ``np.asarray(labels)`` gives the object array of labels (made
    once and read-only; ``np.array(labels)`` a copy). ``==`` is refused: ``equals`` and
    ``isin`` ask the questions.
    """

    __slots__ = ("_objects", "codes", "names")

    def __init__(self, codes: np.ndarray, names: Sequence[Any] | np.ndarray) -> None:
        codes = np.asarray(codes)
        if codes.ndim != 1 or (codes.size and codes.dtype.kind not in "iu"):
            raise ValueError(f"codes must be a 1-d integer array, got {codes.dtype} {codes.shape}")
        table = np.empty(len(names), dtype=object)
        table[:] = list(names)
        if codes.size and (int(codes.min()) < 0 or int(codes.max()) >= len(table)):
            raise ValueError(
                f"codes must lie in [0, {len(table)}) (one per name), got "
                f"[{int(codes.min())}, {int(codes.max())}]"
            )
        self.codes = codes if codes.size else codes.astype(np.int64)
        self.names = table
        self._objects: np.ndarray | None = None

    @classmethod
    def of(cls, values: Labels | Sequence[Any] | np.ndarray | pl.Series) -> Labels:
        """``values`` as labels (labels as they are): each distinct value one code, missing
        values (``None``, NaN) the label ``None``. A polars text column is coded by polars,
        without a Python string per row (a scored partition's 600,000 past actions)."""
        if isinstance(values, Labels):
            return values
        if isinstance(values, pl.Series) and values.dtype in (pl.String, pl.Categorical):
            return cls._of_text(values)
        array = np.asarray(values, dtype=object)
        if array.ndim != 1:
            raise ValueError(f"labels must be 1-d, got shape {array.shape}")
        codes, uniques = pd.factorize(array)  # missing -> -1
        names = list(uniques)
        missing = codes < 0
        if missing.any():
            codes = np.where(missing, len(names), codes)
            names.append(None)
        return cls(codes, names)

    @classmethod
    def _of_text(cls, column: pl.Series) -> Labels:
        # the distinct texts are the names, each row's position among them its code
        text = column.cast(pl.String)
        names: list[str | None] = text.drop_nulls().unique().sort().to_list()
        codes = text.cast(pl.Enum(names)).to_physical()
        if codes.null_count():
            codes = codes.fill_null(len(names))
            names.append(None)
        return cls(codes.to_numpy().astype(np.int64), names)

    def __len__(self) -> int:
        return len(self.codes)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        objects = self.objects()  # read-only: a view of it cannot change these labels
        if dtype is not None and np.dtype(dtype) != objects.dtype:
            if copy is False:
                raise ValueError("labels as another dtype need a copy")
            return objects.astype(dtype)
        return objects.copy() if copy else objects

    def __eq__(self, other: object) -> bool:
        # an array's == would compare each row; this one would say False, silently
        raise TypeError("compare labels with .equals(value) or .isin(values), not ==")

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Labels({len(self)} rows of {sorted(map(str, set(self.names.tolist())))})"

    def take(self, rows: np.ndarray) -> Labels:
        """The given rows (a boolean mask or positions), in that order."""
        return Labels._trusted(self.codes[rows], self.names)

    @classmethod
    def _trusted(cls, codes: np.ndarray, names: np.ndarray) -> Labels:
        # codes already checked against these names (a take of checked labels)
        labels = cls.__new__(cls)
        labels.codes, labels.names, labels._objects = codes, names, None
        return labels

    def objects(self) -> np.ndarray:
        """Each row's label, an object array (made once)."""
        if self._objects is None:
            self._objects = self.names[self.codes]
            self._objects.flags.writeable = False
        return self._objects

    def tolist(self) -> list[Any]:
        return self.objects().tolist()

    def values(self, rows: np.ndarray) -> np.ndarray:
        """The labels of the given rows only, an object array (no column of every row made)."""
        return self.names[self.codes[rows]]

    def where(self, predicate: Callable[[Any], bool]) -> np.ndarray:
        """``predicate(label)`` of each row (a boolean array): asked once per name."""
        answers = np.array([bool(predicate(name)) for name in self.names.tolist()], dtype=bool)
        return answers[self.codes] if len(answers) else np.zeros(len(self), dtype=bool)

    def isin(self, values: Collection[Any]) -> np.ndarray:
        return self.where(lambda name: name in values)

    def equals(self, value: Any) -> np.ndarray:
        return self.where(lambda name: name == value)


def common_codes(*columns: Labels) -> tuple[list[np.ndarray], int]:
    """Each column's rows as codes of one shared numbering (equal labels, equal codes, in
    whichever column), and how many codes that numbering has."""
    index: dict[Any, int] = {}
    out = []
    for column in columns:
        mapping = np.array(
            [index.setdefault(name, len(index)) for name in column.names.tolist()],
            dtype=np.int64,
        )
        out.append(mapping[column.codes] if len(mapping) else np.zeros(0, dtype=np.int64))
    return out, len(index)
