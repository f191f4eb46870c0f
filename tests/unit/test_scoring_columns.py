"""Columns the scoring core builds without a Python call per row, against the Python they
replace: the reasons' contribution numbers (rollrisk.scoring.core.rounded_json_numbers, the
text json.dumps(round(v, 12)) writes) and the contact history's labels (Labels.of of a polars column)."""

from __future__ import annotations

import json

import numpy as np

from rollrisk.scoring.core import rounded_json_numbers


def python_texts(values: np.ndarray) -> list[str]:
    return [json.dumps(round(value, 12)) for value in values.tolist()]


def test_the_same_text_as_python_on_random_contributions() -> None:
    rng = np.random.default_rng(20261203)
    values = np.concatenate(
        [
            rng.exponential(0.2, 100_000),  # log-odds contributions
            10 ** rng.uniform(-7, 3.5, 100_000),  # every scale, both sides of the fast range
            rng.uniform(0, 1_000, 50_000),
        ]
    )

    assert rounded_json_numbers(values).tolist() == python_texts(values)


def test_ties_round_half_to_even_on_the_exact_binary_value() -> None:
    # k / 8192 times 10**12 ends in exactly .5: a true tie, rounded to the even neighbour;
    # k / 2**20 times 10**12 is no tie but close to one in the float product
    ties = np.arange(1, 40_001, 2) / 8192.0
    near = np.arange(1, 40_001, 2) / 2.0**20

    assert rounded_json_numbers(ties).tolist() == python_texts(ties)
    assert rounded_json_numbers(near).tolist() == python_texts(near)
    assert rounded_json_numbers(np.array([1 / 8192]))[0] == "0.000122070312"  # ...3125 -> ...312


def test_the_edges_of_the_fast_range_and_values_outside_it() -> None:
    values = np.array(
        [
            1e-4,
            np.nextafter(1e-4, 0),
            0.00009999999999995,
            5e-13,
            4.9999e-13,
            1e-12,
            0.0,
            -0.0,
            -0.25,
            999.9999999999995,
            1_000.0,
            12_345.678,
            1.0,
            0.1,
            np.nan,
            np.inf,
            -np.inf,
        ]
    )

    got = rounded_json_numbers(values).tolist()

    assert got == python_texts(values)
    assert got[0] == "0.0001" and got[5] == "1e-12" and got[12] == "1.0"
    assert got[-3:] == ["NaN", "Infinity", "-Infinity"]


def test_a_text_column_becomes_labels_with_nulls_as_none() -> None:
    """The scored accounts' contact history reaches the compliance rules as codes, without a
    Python string per row: each row's label is its text, a null the label None."""
    import polars as pl

    from rollrisk.strategies.labels import Labels

    column = pl.Series(["sms", None, "agent_call", "sms", "", None], dtype=pl.String)

    labels = Labels.of(column)

    assert list(np.asarray(labels)) == ["sms", None, "agent_call", "sms", "", None]
    assert list(np.asarray(Labels.of(pl.Series([], dtype=pl.String)))) == []
    assert list(np.asarray(Labels.of(pl.Series([None, None], dtype=pl.String)))) == [None, None]
