"""The fast TreeSHAP kernel against its oracles: LightGBM's pred_contrib and shap.TreeExplainer.

Models are generated at random (varied leaves, depth and tree counts, missing values, zero as
missing, categorical splits, monotone constraints, constant features), and rows include the
awkward cases of LightGBM's decision rules: values exactly on thresholds, tiny values below
kZeroThreshold, negative, fractional, unseen and huge category codes.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import shap

from rollrisk.models.treeshap import (
    DEFAULT_BLOCK_ROWS,
    MAX_PATTERN_NODES,
    MIN_PATTERN_ROWS,
    MIN_SPLIT_ROWS,
    TreeEnsemble,
    block_rows_for,
    fast_pred_contrib,
    lightgbm_matrix,
    tree_contributions,
)

TOLERANCE = 1e-9


def random_frame(rng: np.random.Generator, n_rows: int, n_numeric: int) -> pd.DataFrame:
    """Numeric columns of several shapes (some with NaN or zeros), a constant and a category."""
    columns: dict[str, object] = {}
    for j in range(n_numeric):
        kind = j % 4
        if kind == 0:
            values = rng.normal(size=n_rows)
        elif kind == 1:
            values = rng.poisson(2.0, n_rows).astype(float)  # many exact zeros
        elif kind == 2:
            values = np.round(rng.exponential(100.0, n_rows), 1)
        else:
            values = rng.uniform(-1, 1, n_rows)
        if j % 3 == 0:
            values[rng.random(n_rows) < 0.2] = np.nan
        columns[f"x{j}"] = values
    columns["constant"] = np.full(n_rows, 3.0)
    columns["product"] = pd.Categorical(
        rng.choice(["bnpl", "card", "cash", "merchant", "agri", "other"], n_rows)
    )
    return pd.DataFrame(columns)


def random_label(rng: np.random.Generator, frame: pd.DataFrame) -> np.ndarray:
    numeric = frame.drop(columns=["product", "constant"]).fillna(0.0).to_numpy()
    weights = rng.normal(size=numeric.shape[1])
    logit = (numeric - numeric.mean(0)) / (numeric.std(0) + 1e-9) @ weights * 0.7
    logit += frame["product"].cat.codes.to_numpy() % 3 - 1.0
    return (rng.random(len(frame)) < 1 / (1 + np.exp(-logit))).astype(int)


def train_random_model(seed: int, **overrides: object) -> tuple[lgb.Booster, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n_numeric = int(rng.integers(3, 9))
    frame = random_frame(rng, 1_500, n_numeric)
    label = random_label(rng, frame)
    monotone = [int(rng.choice([-1, 0, 1])) for _ in range(n_numeric)] + [0, 0]
    params = {
        "objective": "binary",
        "num_leaves": int(rng.choice([3, 7, 31, 63])),
        "max_depth": int(rng.choice([-1, 3, 6, 12])),
        "min_data_in_leaf": int(rng.choice([1, 5, 20])),
        "learning_rate": 0.2,
        "zero_as_missing": bool(rng.random() < 0.3),
        "monotone_constraints": monotone,
        "min_data_per_group": 5,
        "cat_smooth": 1.0,
        "max_cat_to_onehot": int(rng.choice([1, 8])),
        "verbose": -1,
        "num_threads": 1,
        "seed": seed,
    }
    params.update(overrides)
    rounds = int(rng.integers(5, 30))
    booster = lgb.train(params, lgb.Dataset(frame, label), num_boost_round=rounds)
    return booster, frame


def awkward_rows(booster: lgb.Booster, frame: pd.DataFrame, seed: int) -> np.ndarray:
    """Rows on thresholds, below kZeroThreshold, NaN where training had none (missing type
    None: NaN counts as 0), odd category codes, plus real rows."""
    rng = np.random.default_rng(seed)
    matrix = lightgbm_matrix(frame, booster)
    ensemble = TreeEnsemble.from_lightgbm(booster)
    extra = matrix[rng.integers(0, len(matrix), 240)].copy()
    numeric = ~ensemble.node_is_categorical
    for row in extra[:120]:
        nodes = rng.choice(np.flatnonzero(numeric), size=min(3, numeric.sum()), replace=True)
        for node in nodes:
            row[ensemble.node_feature[node]] = ensemble.node_threshold[node]
    numeric_columns = [j for j in range(matrix.shape[1] - 1)]
    extra[120:140, rng.choice(numeric_columns, 20)] = rng.choice([1e-36, -1e-36, 0.0, -0.0], 20)
    category = matrix.shape[1] - 1
    extra[140:200, category] = rng.choice([-1.0, -0.5, 0.7, 2.9, 5.0, 40.0, 1e12, -1e12], 60)
    extra[200:240][rng.random((40, matrix.shape[1])) < 0.3] = np.nan
    return np.vstack([matrix[:300], extra])


@pytest.mark.parametrize("seed", range(12))
def test_matches_lightgbm_pred_contrib_on_random_models(seed: int) -> None:
    booster, frame = train_random_model(seed)
    rows = awkward_rows(booster, frame, seed)
    expected = booster.predict(rows, pred_contrib=True)
    raw_score = booster.predict(rows, raw_score=True)

    for max_table_features in (0, 4, 12):  # direct, mixed and fully tabulated leaves
        ensemble = TreeEnsemble.from_lightgbm(booster, max_table_features=max_table_features)
        # uneven chunks and blocks, and blocks of a single row
        for chunk_rows, block_rows in ((97, 13), (50, 1)):
            got = tree_contributions(ensemble, rows, chunk_rows=chunk_rows, block_rows=block_rows)

            assert got.shape == expected.shape
            np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
            np.testing.assert_allclose(got.sum(axis=1), raw_score, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("seed", [101, 102])
def test_matches_shap_tree_explainer(seed: int) -> None:
    booster, frame = train_random_model(seed, num_leaves=31, max_depth=-1)
    rows = lightgbm_matrix(frame, booster)[:400]
    explainer = shap.TreeExplainer(booster)
    values = explainer.shap_values(rows)
    values = values[-1] if isinstance(values, list) else values

    got = tree_contributions(TreeEnsemble.from_lightgbm(booster), rows)

    np.testing.assert_allclose(got[:, :-1], values, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(got[:, -1], np.ravel(explainer.expected_value)[-1], atol=TOLERANCE)


def test_deep_chain_trees_use_the_direct_path_and_stay_exact() -> None:
    """Deep trees (long paths, many distinct features) beyond the table limit."""
    booster, frame = train_random_model(7, num_leaves=63, max_depth=-1, min_data_in_leaf=1)
    rows = lightgbm_matrix(frame, booster)
    ensemble = TreeEnsemble.from_lightgbm(booster, max_table_features=2)
    assert (ensemble.leaf_table_start < 0).any() and (ensemble.leaf_table_start >= 0).any()

    got = tree_contributions(ensemble, rows)

    np.testing.assert_allclose(got, booster.predict(rows, pred_contrib=True), atol=TOLERANCE)


def test_large_trees_are_explained_row_by_row_beside_patterned_ones() -> None:
    """A tree of more than MAX_PATTERN_NODES internal nodes has no 64-bit decision pattern:
    it is explained row by row, in the same blocks as the smaller trees beside it."""
    booster, frame = train_random_model(
        5, num_leaves=120, max_depth=-1, min_data_in_leaf=1, learning_rate=0.05
    )
    rows = awkward_rows(booster, frame, 5)
    ensemble = TreeEnsemble.from_lightgbm(booster, max_table_features=6)
    internal = np.diff(ensemble.tree_node_start)
    assert (internal > MAX_PATTERN_NODES).any() and (internal <= MAX_PATTERN_NODES).any()

    for block_rows in (DEFAULT_BLOCK_ROWS, 7):
        got = tree_contributions(ensemble, rows, block_rows=block_rows)

        np.testing.assert_allclose(got, booster.predict(rows, pred_contrib=True), atol=TOLERANCE)


def test_rows_sharing_a_decision_pattern_get_the_same_contributions() -> None:
    """Explained once per distinct pattern of a block: rows repeated within a block, across
    blocks and alone get the same values, to the bit, whether their block went by pattern (one
    block of 101 rows) or row by row (blocks of 51 and 50 rows, and a row alone: fewer than
    MIN_PATTERN_ROWS)."""
    booster, frame = train_random_model(9, num_leaves=31, max_depth=-1)
    matrix = lightgbm_matrix(frame, booster)[:50]
    rows = np.vstack([matrix, matrix[::-1], matrix[:1]])  # each row twice, the first thrice
    ensemble = TreeEnsemble.from_lightgbm(booster)
    alone = np.vstack([tree_contributions(ensemble, row[None, :]) for row in matrix])

    assert MIN_PATTERN_ROWS == 64  # the block sizes below take both paths
    assert block_rows_for(len(rows), 128, threads=2) == 101  # one block, by pattern
    assert block_rows_for(len(rows), 64, threads=1) == 51  # two blocks, row by row
    for most in (128, 64):
        got = tree_contributions(ensemble, rows, block_rows=most)

        np.testing.assert_array_equal(got[:50], alone)
        np.testing.assert_array_equal(got[50:100], alone[::-1])
        np.testing.assert_array_equal(got[100], alone[0])
        np.testing.assert_allclose(got, booster.predict(rows, pred_contrib=True), atol=TOLERANCE)


@pytest.mark.parametrize(
    ("rows", "most", "threads", "expected"),
    [(50_000, 16_384, 1, 12_500),  # four even blocks, not 3 x 16,384 and one of 848
     (65_536, 16_384, 1, 16_384),
     (20_000, 16_384, 2, 10_000),  # a block per thread
     (5_000, 16_384, 2, 2_500),
     (3_000, 16_384, 2, 3_000),  # not split below MIN_SPLIT_ROWS a block
     (100, 16_384, 8, 100),
     (1, 16_384, 2, 1),
     (97, 13, 1, 13)],
)  # fmt: skip
def test_blocks_are_even_within_the_most_rows_and_one_a_thread_while_large(
    rows: int, most: int, threads: int, expected: int
) -> None:
    assert MIN_SPLIT_ROWS == 2048
    assert block_rows_for(rows, most, threads) == expected


def test_single_leaf_trees_only_move_the_expected_value() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"flat": np.ones(300), "noise": rng.normal(size=300)})
    label = rng.integers(0, 2, 300)
    booster = lgb.train(
        {"objective": "binary", "min_data_in_leaf": 200, "verbose": -1},
        lgb.Dataset(frame, label),
        num_boost_round=4,
    )
    rows = frame.to_numpy()
    ensemble = TreeEnsemble.from_lightgbm(booster)
    assert np.diff(ensemble.tree_node_start).max() == 0  # every tree is a single leaf

    got = tree_contributions(ensemble, rows)

    np.testing.assert_allclose(got, booster.predict(rows, pred_contrib=True), atol=TOLERANCE)
    np.testing.assert_allclose(got[:, :-1], 0.0, atol=0)


def test_uses_the_best_iteration_like_predict() -> None:
    booster, frame = train_random_model(11)
    booster.best_iteration = 3
    rows = lightgbm_matrix(frame, booster)[:200]

    got = tree_contributions(TreeEnsemble.from_lightgbm(booster), rows)

    assert TreeEnsemble.from_lightgbm(booster).n_trees == 3
    np.testing.assert_allclose(got, booster.predict(rows, pred_contrib=True), atol=TOLERANCE)


def test_fast_pred_contrib_takes_the_training_frame() -> None:
    booster, frame = train_random_model(5)
    sample = frame.iloc[:250]

    got = fast_pred_contrib(booster, sample)

    np.testing.assert_allclose(got, booster.predict(sample, pred_contrib=True), atol=TOLERANCE)


def test_explains_a_single_row_and_an_empty_batch() -> None:
    booster, frame = train_random_model(9)
    rows = lightgbm_matrix(frame, booster)
    ensemble = TreeEnsemble.from_lightgbm(booster)

    one = tree_contributions(ensemble, rows[4:5])
    none = tree_contributions(ensemble, rows[:0])

    np.testing.assert_allclose(one, booster.predict(rows[4:5], pred_contrib=True), atol=TOLERANCE)
    assert none.shape == (0, rows.shape[1] + 1)


def test_input_is_not_modified() -> None:
    booster, frame = train_random_model(4)
    rows = lightgbm_matrix(frame, booster)[:50]
    rows[:, 0] = 1e-36
    before = rows.copy()

    tree_contributions(TreeEnsemble.from_lightgbm(booster), rows)

    np.testing.assert_array_equal(rows, before)


def test_rejects_a_matrix_with_the_wrong_number_of_columns() -> None:
    booster, frame = train_random_model(1)
    ensemble = TreeEnsemble.from_lightgbm(booster)
    rows = lightgbm_matrix(frame, booster)

    with pytest.raises(ValueError, match=rf"{ensemble.n_features} columns .* got shape \(10, "):
        tree_contributions(ensemble, rows[:10, :-1])


def test_rejects_an_out_of_range_table_limit() -> None:
    booster, _ = train_random_model(1)

    with pytest.raises(ValueError, match="max_table_features must be between 0 and 20, got 21"):
        TreeEnsemble.from_lightgbm(booster, max_table_features=21)


def test_rejects_a_multiclass_model() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 3))
    booster = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1},
        lgb.Dataset(features, rng.integers(0, 3, 300)),
        num_boost_round=2,
    )

    with pytest.raises(ValueError, match="num_tree_per_iteration=3"):
        TreeEnsemble.from_lightgbm(booster)


def test_lightgbm_matrix_refuses_a_frame_without_the_category_column() -> None:
    booster, frame = train_random_model(2)
    plain = frame.assign(product=frame["product"].astype(str))

    with pytest.raises(ValueError, match="0 category columns .* trained with 1"):
        lightgbm_matrix(plain, booster)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"linear_tree": True}, "linear trees"),
        ({"boosting": "rf", "bagging_fraction": 0.5, "bagging_freq": 1}, "average_output=True"),
    ],
)
def test_rejects_models_whose_raw_score_is_not_a_sum_of_leaf_values(
    params: dict[str, object], message: str
) -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 3))
    label = (features[:, 0] + rng.normal(size=300) > 0).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, **params}, lgb.Dataset(features, label), 2
    )

    with pytest.raises(ValueError, match=message):
        TreeEnsemble.from_lightgbm(booster)
