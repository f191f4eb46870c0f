"""Jobs with accounts and statements alone: which tables a model was trained with, and the
refusal to score it on fewer (issue 14)."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from rollrisk.arguments import add_missing_table_argument, allowed_missing_tables
from rollrisk.errors import UserError
from rollrisk.features.registry import FEATURE_SET
from rollrisk.models.training import ALL_TABLES, left_out_features, tables_with_data
from rollrisk.scoring.core import (
    ALLOW_MISSING_TABLE_FLAG,
    OPTIONAL_TABLES,
    ScoringSetup,
    check_tables,
    tables_present,
    trained_tables,
)


def _features(**sources_with_values: bool) -> pd.DataFrame:
    """One row per observation, every feature: a source's features hold values when True."""
    rows = 5
    columns = {}
    for spec in FEATURE_SET.features:
        filled = sources_with_values.get(spec.source, True)
        values = np.arange(rows, dtype=float) if filled else np.full(rows, np.nan)
        columns[spec.name] = values.astype(str) if spec.kind == "categorical" else values
    return pd.DataFrame(columns)


def test_a_training_set_says_which_tables_it_was_built_with() -> None:
    assert tables_with_data(_features(), FEATURE_SET) == ALL_TABLES
    without_actions = _features(collection_actions=False)
    assert tables_with_data(without_actions, FEATURE_SET) == (
        "accounts",
        "statements",
        "treatments",
    )
    bare = _features(collection_actions=False, treatments=False)
    assert tables_with_data(bare, FEATURE_SET) == ("accounts", "statements")
    # one value in one row is enough: a table that was there gives counts of 0, not missing
    one = bare.copy()
    one.loc[3, "treatment_active"] = 0.0
    assert tables_with_data(one, FEATURE_SET) == ("accounts", "statements", "treatments")


def test_left_out_features_are_those_of_the_missing_tables() -> None:
    left_out = left_out_features(("accounts", "statements"), FEATURE_SET)
    assert set(left_out) == set(OPTIONAL_TABLES)
    for table, names in left_out.items():
        assert names == [s.name for s in FEATURE_SET.features if s.source == table]
    assert left_out_features(ALL_TABLES, FEATURE_SET) == {}


def test_trained_tables_read_from_metadata_and_strict_when_unrecorded() -> None:
    assert trained_tables({"tables": "accounts,statements"}) == ("accounts", "statements")
    assert trained_tables({"tables": "treatments, statements,accounts"}) == (
        "accounts",
        "statements",
        "treatments",
    )
    # a model logged before the tables were recorded: every table (refuse rather than guess)
    assert trained_tables({}) == ALL_TABLES


def _setup(trained: tuple[str, ...], allowed: frozenset[str] = frozenset()) -> ScoringSetup:
    return ScoringSetup(
        model=SimpleNamespace(feature_set=FEATURE_SET),  # type: ignore[arg-type]
        model_name="m",
        model_version="3",
        observation=None,  # type: ignore[arg-type]
        segment_rules=None,  # type: ignore[arg-type]
        policy=None,  # type: ignore[arg-type]
        compliance=None,  # type: ignore[arg-type]
        trained_tables=trained,
        allowed_missing_tables=allowed,
    )


def test_scoring_with_fewer_tables_is_refused_naming_the_table_and_the_flag() -> None:
    setup = _setup(ALL_TABLES)
    bare = tables_present(None, None)
    assert bare == ("accounts", "statements")
    with pytest.raises(UserError) as refused:
        check_tables(setup, bare, "/data/book")
    message = str(refused.value)
    assert "model m v3 was trained with accounts, statements, collection_actions, treatments" in (
        message
    )
    assert "/data/book has no collection_actions and no treatments" in message
    optional = [s for s in FEATURE_SET.features if s.source in ("collection_actions", "treatments")]
    assert len(optional) == 28  # 22 from the action log, 6 from treatments (docs/models.md)
    assert "the model's 28 features from them would be missing" in message
    assert (
        f"{ALLOW_MISSING_TABLE_FLAG} collection_actions {ALLOW_MISSING_TABLE_FLAG} treatments"
    ) in message
    # one table allowed, the other still refused, and only it is named
    with pytest.raises(UserError, match=r"has no treatments: the model's 6 features from it"):
        check_tables(_setup(ALL_TABLES, frozenset({"collection_actions"})), bare, "x")


def test_allowed_or_unneeded_tables_pass_and_the_allowed_ones_are_returned() -> None:
    allowed = _setup(ALL_TABLES, frozenset(OPTIONAL_TABLES))
    assert check_tables(allowed, ("accounts", "statements"), "x") == OPTIONAL_TABLES
    assert check_tables(allowed, ALL_TABLES, "x") == ()
    # a model trained on accounts and statements alone needs nothing more, and more is fine
    lean = _setup(("accounts", "statements"))
    assert check_tables(lean, ("accounts", "statements"), "x") == ()
    assert check_tables(lean, ALL_TABLES, "x") == ()


def test_the_flag_named_in_the_refusal_is_the_one_the_jobs_take() -> None:
    parser = argparse.ArgumentParser()
    add_missing_table_argument(parser)
    args = parser.parse_args([ALLOW_MISSING_TABLE_FLAG, "treatments"])
    assert allowed_missing_tables(args) == frozenset({"treatments"})
    assert allowed_missing_tables(parser.parse_args([])) == frozenset()
    with pytest.raises(SystemExit):
        parser.parse_args([ALLOW_MISSING_TABLE_FLAG, "statements"])  # required: never missing
