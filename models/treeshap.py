"""A fast, exact TreeSHAP kernel for LightGBM models (the same numbers as ``pred_contrib``).

LightGBM's ``predict(X, pred_contrib=True)`` (which ``shap.TreeExplainer`` calls for LightGBM
models) runs Lundberg's path-dependent TreeSHAP (Algorithm 2): for every row and every tree it
walks all the nodes, growing and unwinding a path of "unique features" at a cost of
``O(L D^2)`` per tree (``L`` leaves, ``D`` depth). This module computes the same values with
work that is done once per *model* instead of once per *row*:

* Each leaf ``l`` of a tree defines a product game over the ``d`` distinct features on its path:
  ``v_l(S) = value_l * prod_{k in S} o_k * prod_{k not in S} z_k`` where ``z_k`` is the share of
  training rows (cover) that follow the leaf's path at the splits on ``k``, and ``o_k`` is 1 if
  the row satisfies every split on ``k`` along the path, else 0. Path-dependent TreeSHAP is the
  sum over leaves of the Shapley values of these games (a feature repeated on a path is merged,
  and a null player changes nothing, exactly as in Algorithm 2).
* Because every ``o_k`` is 0 or 1, the Shapley value of feature ``i`` in leaf ``l`` only depends
  on the set ``A`` of path features the row satisfies. With ``P(B)`` the product of ``z`` over
  the features not satisfied and ``Q(A) = sum_s w(s, d) e_{|A|-s}(z_A)`` (``e_m`` the elementary
  symmetric polynomials, ``w(s, d) = s!(d-s-1)!/d!`` the Shapley weights)::

      phi_i += value_l * (1 - z_i) * P(B) * Q(A without i)     if i is in A
      phi_i -= value_l * P(B) * Q(A)                            if i is not in A

  ``value_l * Q`` is tabulated for all ``2^d`` subsets when the model is loaded (the idea of
  Fast TreeSHAP v2, Yang 2021), so a row costs ``O(L D)`` per tree: one pass over each leaf's
  path to find ``A``, then one table look-up per path feature. Leaves whose path holds more than
  ``max_table_features`` distinct features (deep trees) are computed directly from ``z_A`` at
  ``O(d^2)`` per row instead, so memory stays bounded.
* A tree's contributions to a row depend only on the row's decisions at the tree's nodes. In a
  tree of at most :data:`MAX_PATTERN_NODES` internal nodes these decisions are the bits of one
  64-bit *pattern*; a block of rows (up to 16,384, split evenly) is explained once per distinct pattern
  (found with an open-addressing hash) and each row then adds its pattern's values for the
  tree's few features. On the bench model (151 trees of up to 31 leaves) 49,764 accounts show
  574 patterns per tree on average, and the kernel runs 2.8x faster than row by row
  (docs/benchmarks.md). Larger trees, and blocks of fewer than :data:`MIN_PATTERN_ROWS` rows,
  are explained row by row, summed in the same order: a row gets the same bits either way.
* The splits reproduce LightGBM's ``NumericalDecision`` / ``CategoricalDecision`` bit for bit
  (missing types None / Zero / NaN, ``default_left``, ``kZeroThreshold``, category bitsets,
  negative or NaN categories going right), and the input goes through the same clean-up as
  LightGBM's dense-matrix reader (values with ``|x| <= kZeroThreshold`` become 0).

Functions are pure (inputs never modified, no reading or writing of data). The compiled loops
use numba with ``cache=True``: the first call in a fresh environment compiles for ~5 s and
writes numba's machine-code cache (next to this module, or in the user's cache directory when
that is read-only); later processes load it. Blocks of rows are processed in parallel over
numba's threads (``numba.set_num_threads``; the ``omp`` threading layer is safe to call
from several threads at once, but GNU OpenMP is not fork-safe: do not fork a process after its
first call).

Public API: :class:`TreeEnsemble` (``TreeEnsemble.from_lightgbm(booster)``),
:func:`tree_contributions` (``(n, n_features + 1)`` contributions, last column the expected
value), :func:`lightgbm_matrix` (a pandas frame encoded as LightGBM encodes it) and
:func:`fast_pred_contrib`, a drop-in ``ContributionKernel`` for
:func:`rollrisk.models.explanations.contributions`.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numba
import numpy as np
import pandas as pd

from rollrisk.models.lightgbm_input import lightgbm_matrix

# LightGBM's kZeroThreshold is the float literal 1e-35f, compared as a double.
K_ZERO_THRESHOLD = float(np.float32(1e-35))

MISSING_NONE, MISSING_ZERO, MISSING_NAN = 0, 1, 2
_MISSING_TYPES: Mapping[str, int] = {"None": MISSING_NONE, "Zero": MISSING_ZERO, "NaN": MISSING_NAN}

DEFAULT_MAX_TABLE_FEATURES = 12
"""Leaves with at most this many distinct path features get a precomputed ``2^d`` table
(at most 32 KiB each); deeper leaves are computed directly (exact, but ``O(d^2)`` per row)."""

MAX_PATH_FEATURES = 62
"""Distinct features on one root-to-leaf path are tracked as bits of a 64-bit integer."""

DEFAULT_BLOCK_ROWS = 16_384
"""Most rows explained together, tree by tree: the more rows, the more of them share a decision
pattern (below). On 28,891 distinct accounts of a simulated world (the 151-tree bench model,
one thread, median of 5) blocks of 2,048 rows took 24.0 us a row, 8,192 17.0, 16,384 15.3,
32,768 15.7 and 65,536 14.9: the sharing gained outweighs the block's values and sums
leaving the processor's cache, up to about this size. :func:`block_rows_for` splits a batch
into blocks of at most this many rows, evenly."""

MIN_SPLIT_ROWS = 2048
"""A batch is split into one block per thread only while each block keeps this many rows: a
block smaller than that shares few patterns (the default block size before 2026-12-04)."""

MAX_PATTERN_NODES = 63
"""Trees with at most this many internal nodes are explained once per distinct *decision
pattern* of a block (the bits of a row's decisions at every node of the tree, one 64-bit
integer); larger trees row by row."""

MIN_PATTERN_ROWS = 64
"""Blocks of fewer rows (a service request's few accounts) are explained row by row: so few
rows share few patterns, and the row loops vectorise (10 rows of a 451-tree model: 2.45 ms by
pattern, 1.70 ms by row). Both ways sum a tree's values in the same order: a row gets the
same bits alone and in a partition."""


@dataclass(frozen=True)
class TreeEnsemble:
    """A single-output LightGBM model flattened into arrays for the TreeSHAP kernel.

    Internal nodes of all trees are numbered consecutively (tree ``t`` owns nodes
    ``tree_node_start[t]:tree_node_start[t + 1]``, in LightGBM's order, where a parent comes
    before its children), and so are leaves. A node's ``slot`` is the position of its feature
    among the distinct features of the path from the root down to it; the same position holds
    for every leaf below it. Each leaf lists its distinct path features (``slot_*``: the
    feature, its cover fraction ``z`` and ``(1 - z) / z``).
    """

    n_features: int
    feature_names: tuple[str, ...]
    expected_value: float
    max_table_features: int
    tree_node_start: np.ndarray  # int64 (n_trees + 1)
    tree_leaf_start: np.ndarray  # int64 (n_trees + 1)
    tree_feature_start: np.ndarray  # int64 (n_trees + 1)
    tree_feature: np.ndarray  # int32, each tree's distinct split features
    node_feature: np.ndarray  # int32
    node_threshold: np.ndarray  # float64 (numerical splits)
    node_is_categorical: np.ndarray  # bool
    node_missing_type: np.ndarray  # int8, MISSING_*
    node_default_left: np.ndarray  # bool
    node_category_start: np.ndarray  # int64 into category_bitset (categorical splits)
    node_category_words: np.ndarray  # int32 number of uint32 words of the split's bitset
    category_bitset: np.ndarray  # uint32
    node_parent: np.ndarray  # int32, tree-local index of the parent, -1 at the root
    node_is_left: np.ndarray  # bool, the node is its parent's left child
    node_slot: np.ndarray  # int64
    leaf_value: np.ndarray  # float64
    leaf_parent: np.ndarray  # int32, tree-local index of the parent (0 for a single-leaf tree)
    leaf_is_left: np.ndarray  # bool
    leaf_edge_start: np.ndarray  # int64 (n_leaves + 1), cumulative path lengths
    leaf_slot_start: np.ndarray  # int64 (n_leaves + 1)
    slot_feature: np.ndarray  # int32
    slot_local: np.ndarray  # int32, the slot's feature's position among its tree's features
    slot_zero_fraction: np.ndarray  # float64, z_k
    slot_ratio: np.ndarray  # float64, (1 - z_k) / z_k (0 where z_k = 0)
    leaf_table_start: np.ndarray  # int64, -1 for leaves computed directly
    table: np.ndarray  # float64, value_l * P(N \ A) * Q(A) for every subset A of a tabulated leaf
    shapley_weight: np.ndarray  # float64 (max_d + 1, max_d + 1), w(s, d) = s!(d-s-1)!/d!

    @property
    def n_trees(self) -> int:
        return len(self.tree_node_start) - 1

    @property
    def n_leaves(self) -> int:
        return len(self.leaf_value)

    @property
    def max_depth(self) -> int:
        """Longest root-to-leaf path (number of splits) over all trees."""
        return int(np.diff(self.leaf_edge_start).max(initial=0))

    @classmethod
    def from_lightgbm(
        cls,
        booster: lgb.Booster,
        max_table_features: int = DEFAULT_MAX_TABLE_FEATURES,
        num_iteration: int | None = None,
    ) -> TreeEnsemble:
        """Parse ``booster.dump_model()`` (a binary or regression model, one tree per iteration).

        ``num_iteration`` follows LightGBM: ``None`` means the best iteration if early stopping
        recorded one, else all trees (the same trees ``booster.predict`` uses by default).
        """
        if not 0 <= max_table_features <= 20:
            raise ValueError(
                f"max_table_features must be between 0 and 20, got {max_table_features}"
            )
        model = booster.dump_model(num_iteration=num_iteration)
        return cls.from_model_dump(model, max_table_features)

    @classmethod
    def from_model_dump(
        cls, model: Mapping[str, Any], max_table_features: int = DEFAULT_MAX_TABLE_FEATURES
    ) -> TreeEnsemble:
        """Build from the dictionary returned by ``lightgbm.Booster.dump_model()``."""
        if int(model.get("num_tree_per_iteration", 1)) != 1:
            raise ValueError(
                "only single-output models (binary or regression) are supported, but the model has "
                f"num_tree_per_iteration={model['num_tree_per_iteration']}"
            )
        if model.get("average_output"):
            raise ValueError(
                "random-forest models (average_output=True) are not supported: only boosted "
                "models, whose raw score is the sum of the trees"
            )
        builder = _EnsembleBuilder()
        for tree in model["tree_info"]:
            builder.add_tree(tree["tree_structure"])
        return builder.build(
            n_features=int(model["max_feature_idx"]) + 1,
            feature_names=tuple(model.get("feature_names", ())),
            max_table_features=max_table_features,
        )


class _EnsembleBuilder:
    """Accumulates the flat arrays of :class:`TreeEnsemble` tree by tree."""

    def __init__(self) -> None:
        self.tree_node_start = [0]
        self.tree_leaf_start = [0]
        self.node_feature: list[int] = []
        self.node_threshold: list[float] = []
        self.node_is_categorical: list[bool] = []
        self.node_missing_type: list[int] = []
        self.node_default_left: list[bool] = []
        self.node_category_start: list[int] = []
        self.node_category_words: list[int] = []
        self.category_bitset: list[int] = []
        self.node_parent: list[int] = []
        self.node_is_left: list[bool] = []
        self.node_slot: list[int] = []
        self.leaf_parent: list[int] = []
        self.leaf_is_left: list[bool] = []
        self.leaf_value: list[float] = []
        self.leaf_edge_start = [0]
        self.leaf_slot_start = [0]
        self.slot_feature: list[int] = []
        self.slot_zero_fraction: list[float] = []
        self.expected_value = 0.0

    def add_tree(self, root: Mapping[str, Any]) -> None:
        node_base = self.tree_node_start[-1]
        n_internal = 0
        # (node, path from the root as [(global node, went_left, feature, fraction)], parent, side)
        stack: list[tuple[Mapping[str, Any], list[tuple[int, bool, int, float]], int, bool]]
        stack = [(root, [], -1, False)]
        internal_rows: dict[int, tuple[Any, ...]] = {}
        leaves: dict[int, tuple[float, list[tuple[int, bool, int, float]], int, bool]] = {}
        while stack:
            node, path, parent, is_left = stack.pop()
            if "leaf_value" in node:
                if "leaf_coeff" in node:
                    raise ValueError("linear trees (linear_tree=True) are not supported")
                leaf = (float(node["leaf_value"]), path, parent, is_left)
                leaves[int(node.get("leaf_index", 0))] = leaf
                continue
            local = int(node["split_index"])
            if parent >= local:
                raise ValueError(
                    "LightGBM trees number a node after its parent; this model does not"
                )
            n_internal = max(n_internal, local + 1)
            feature = int(node["split_feature"])
            features_above = list(dict.fromkeys(f for _, _, f, _ in path))
            slot = (
                features_above.index(feature) if feature in features_above else len(features_above)
            )
            internal_rows[local] = (*self._split_row(node), parent, is_left, slot)
            count = float(node["internal_count"])
            for child, went_left in ((node["left_child"], True), (node["right_child"], False)):
                child_count = float(child.get("internal_count", child.get("leaf_count", 0)))
                fraction = child_count / count if count > 0 else 0.0
                step = (node_base + local, went_left, feature, fraction)
                stack.append((child, [*path, step], local, went_left))
        for local in range(n_internal):
            (
                feature,
                threshold,
                categorical,
                missing,
                default_left,
                categories,
                parent,
                is_left,
                slot,
            ) = internal_rows[local]
            self.node_parent.append(parent)
            self.node_is_left.append(is_left)
            self.node_slot.append(slot)
            self.node_feature.append(feature)
            self.node_threshold.append(threshold)
            self.node_is_categorical.append(categorical)
            self.node_missing_type.append(missing)
            self.node_default_left.append(default_left)
            words = _category_bitset(categories)
            self.node_category_start.append(len(self.category_bitset))
            self.node_category_words.append(len(words))
            self.category_bitset.extend(words)
        self.tree_node_start.append(node_base + n_internal)
        for leaf_index in range(len(leaves)):
            value, path, parent, is_left = leaves[leaf_index]
            self.leaf_parent.append(max(parent, 0))
            self.leaf_is_left.append(is_left)
            self._add_leaf(value, path)
        self.tree_leaf_start.append(len(self.leaf_value))

    @staticmethod
    def _split_row(node: Mapping[str, Any]) -> tuple[int, float, bool, int, bool, list[int]]:
        feature = int(node["split_feature"])
        decision = node["decision_type"]
        missing = _MISSING_TYPES[str(node.get("missing_type", "None"))]
        default_left = bool(node.get("default_left", False))
        if decision == "==":
            categories = [int(c) for c in str(node["threshold"]).split("||") if c != ""]
            return feature, math.nan, True, missing, default_left, categories
        if decision != "<=":
            raise ValueError(
                f"unsupported LightGBM decision_type {decision!r} (expected '<=' or '==')"
            )
        return feature, float(node["threshold"]), False, missing, default_left, []

    def _add_leaf(self, value: float, path: Sequence[tuple[int, bool, int, float]]) -> None:
        slots: dict[int, int] = {}
        zero_fraction: list[float] = []
        for _, _, feature, fraction in path:
            slot = slots.setdefault(feature, len(slots))
            if slot == len(zero_fraction):
                zero_fraction.append(1.0)
            zero_fraction[slot] *= fraction
        self.leaf_value.append(value)
        self.leaf_edge_start.append(self.leaf_edge_start[-1] + len(path))
        self.slot_feature.extend(slots.keys())
        self.slot_zero_fraction.extend(zero_fraction)
        self.leaf_slot_start.append(len(self.slot_feature))
        self.expected_value += value * math.prod(zero_fraction)

    def _tree_features(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each tree's distinct split features (in order of first use) and, for every slot of
        its leaves, the position of the slot's feature among them."""
        tree_feature_start, tree_feature, slot_local = [0], [], []
        for t in range(len(self.tree_node_start) - 1):
            nodes = self.node_feature[self.tree_node_start[t] : self.tree_node_start[t + 1]]
            local = {feature: k for k, feature in enumerate(dict.fromkeys(nodes))}
            tree_feature.extend(local)
            tree_feature_start.append(len(tree_feature))
            first = self.leaf_slot_start[self.tree_leaf_start[t]]
            last = self.leaf_slot_start[self.tree_leaf_start[t + 1]]
            slot_local.extend(local[feature] for feature in self.slot_feature[first:last])
        return (
            np.asarray(tree_feature_start, dtype=np.int64),
            np.asarray(tree_feature, dtype=np.int32),
            np.asarray(slot_local, dtype=np.int32),
        )

    def build(
        self, n_features: int, feature_names: tuple[str, ...], max_table_features: int
    ) -> TreeEnsemble:
        leaf_slot_start = np.asarray(self.leaf_slot_start, dtype=np.int64)
        slot_zero_fraction = np.asarray(self.slot_zero_fraction, dtype=np.float64)
        n_slots = np.diff(leaf_slot_start)
        max_d = int(n_slots.max(initial=0))
        if max_d > MAX_PATH_FEATURES:
            raise ValueError(
                f"a leaf's path splits on {max_d} distinct features; at most {MAX_PATH_FEATURES} "
                "are supported"
            )
        # A leaf whose path has an empty branch (z = 0) is computed directly: the table form
        # divides by z.
        has_empty = np.zeros(len(n_slots), dtype=bool)
        slot_leaf = np.repeat(np.arange(len(n_slots)), n_slots)
        np.logical_or.at(has_empty, slot_leaf, slot_zero_fraction == 0.0)
        tabulated = (n_slots <= max_table_features) & (n_slots > 0) & ~has_empty
        sizes = np.where(tabulated, np.left_shift(1, n_slots), 0)
        table_start = np.where(tabulated, np.cumsum(sizes) - sizes, -1).astype(np.int64)
        with np.errstate(divide="ignore"):
            slot_ratio = np.where(
                slot_zero_fraction > 0, (1.0 - slot_zero_fraction) / slot_zero_fraction, 0.0
            )
        shapley_weight = _shapley_weights(max_d)
        tree_feature_start, tree_feature, slot_local = self._tree_features()
        leaf_value = np.asarray(self.leaf_value, dtype=np.float64)
        table = np.zeros(int(sizes.sum()), dtype=np.float64)
        _fill_tables(
            table, table_start, leaf_slot_start, slot_zero_fraction, leaf_value, shapley_weight
        )
        return TreeEnsemble(
            n_features=n_features,
            feature_names=feature_names,
            expected_value=self.expected_value,
            max_table_features=max_table_features,
            tree_node_start=np.asarray(self.tree_node_start, dtype=np.int64),
            tree_leaf_start=np.asarray(self.tree_leaf_start, dtype=np.int64),
            tree_feature_start=tree_feature_start,
            tree_feature=tree_feature,
            node_feature=np.asarray(self.node_feature, dtype=np.int32),
            node_threshold=np.asarray(self.node_threshold, dtype=np.float64),
            node_is_categorical=np.asarray(self.node_is_categorical, dtype=np.bool_),
            node_missing_type=np.asarray(self.node_missing_type, dtype=np.int8),
            node_default_left=np.asarray(self.node_default_left, dtype=np.bool_),
            node_category_start=np.asarray(self.node_category_start, dtype=np.int64),
            node_category_words=np.asarray(self.node_category_words, dtype=np.int32),
            category_bitset=np.asarray(self.category_bitset, dtype=np.uint32),
            node_parent=np.asarray(self.node_parent, dtype=np.int32),
            node_is_left=np.asarray(self.node_is_left, dtype=np.bool_),
            node_slot=np.asarray(self.node_slot, dtype=np.int64),
            leaf_value=leaf_value,
            leaf_parent=np.asarray(self.leaf_parent, dtype=np.int32),
            leaf_is_left=np.asarray(self.leaf_is_left, dtype=np.bool_),
            leaf_edge_start=np.asarray(self.leaf_edge_start, dtype=np.int64),
            leaf_slot_start=leaf_slot_start,
            slot_feature=np.asarray(self.slot_feature, dtype=np.int32),
            slot_local=slot_local,
            slot_zero_fraction=slot_zero_fraction,
            slot_ratio=slot_ratio,
            leaf_table_start=table_start,
            table=table,
            shapley_weight=shapley_weight,
        )


def _category_bitset(categories: Sequence[int]) -> list[int]:
    """LightGBM's category bitset: bit ``c % 32`` of word ``c // 32`` is set for category c."""
    if not categories:
        return []
    words = [0] * (max(categories) // 32 + 1)
    for category in categories:
        words[category // 32] |= 1 << (category % 32)
    return words


def _shapley_weights(max_d: int) -> np.ndarray:
    """``w[d, s] = s! (d - s - 1)! / d! = 1 / (d * C(d - 1, s))`` for ``0 <= s < d <= max_d``."""
    weights = np.zeros((max_d + 1, max_d + 1), dtype=np.float64)
    for d in range(1, max_d + 1):
        for s in range(d):
            weights[d, s] = 1.0 / (d * math.comb(d - 1, s))
    return weights


@numba.njit(cache=True)
def _fill_tables(table, table_start, leaf_slot_start, slot_zero_fraction, leaf_value, weight):
    """``table[start + A] = value_l * P(N \\ A) * Q(A)`` for every subset ``A`` of a leaf's path.

    ``Q(A) = sum_s w(s, d) e_{|A|-s}(z_A)``. The elementary symmetric polynomials of every subset
    come from the subset without its lowest member (``e_m(A) = e_m(A') + z_k e_{m-1}(A')``), so a
    leaf costs ``O(2^d d)``.
    """
    for leaf in range(len(table_start)):
        start = table_start[leaf]
        if start < 0:
            continue
        s0 = leaf_slot_start[leaf]
        d = leaf_slot_start[leaf + 1] - s0
        size = 1 << d
        symmetric = np.zeros((size, d + 1))
        outside = np.ones(size)  # P(N \\ A), the product of z over the unsatisfied features
        symmetric[0, 0] = 1.0
        for k in range(d):
            outside[0] *= slot_zero_fraction[s0 + k]
        for mask in range(1, size):
            low = 0
            while not (mask >> low) & 1:
                low += 1
            previous = mask ^ (1 << low)
            z = slot_zero_fraction[s0 + low]
            symmetric[mask, 0] = 1.0
            for m in range(1, d + 1):
                symmetric[mask, m] = symmetric[previous, m] + z * symmetric[previous, m - 1]
            outside[mask] = 1.0
            for k in range(d):
                if not (mask >> k) & 1:
                    outside[mask] *= slot_zero_fraction[s0 + k]
        for mask in range(size - 1):  # the full set is never looked up
            a = 0
            for k in range(d):
                a += (mask >> k) & 1
            total = 0.0
            for s in range(a + 1):
                total += weight[d, s] * symmetric[mask, a - s]
            table[start + mask] = leaf_value[leaf] * outside[mask] * total


@numba.njit(inline="always")
def _goes_left(
    value,
    node,
    node_threshold,
    node_is_categorical,
    node_missing_type,
    node_default_left,
    node_category_start,
    node_category_words,
    category_bitset,
):
    """LightGBM's ``Tree::Decision``: True if ``value`` goes to the left child of ``node``."""
    if node_is_categorical[node]:
        # CategoricalDecision: NaN and negative categories go right; static_cast<int> truncates.
        if math.isnan(value) or not (-2147483649.0 < value < 2147483648.0):
            return False
        category = int(value)
        if category < 0:
            return False
        word = category >> 5
        if word >= node_category_words[node]:
            return False
        return (category_bitset[node_category_start[node] + word] >> (category & 31)) & 1 == 1
    missing = node_missing_type[node]
    if math.isnan(value) and missing != MISSING_NAN:
        value = 0.0
    if (missing == MISSING_ZERO and -K_ZERO_THRESHOLD <= value <= K_ZERO_THRESHOLD) or (
        missing == MISSING_NAN and math.isnan(value)
    ):
        return node_default_left[node]
    return value <= node_threshold[node]


@numba.njit(inline="always")
def _add_direct_leaf(
    target,
    row,
    miss,
    d,
    s0,
    value,
    slot_row,
    slot_zero_fraction,
    weight,
    symmetric,
    deflated,
):
    """Add one leaf's Shapley values for one row without a table (``O(d^2)``).

    ``miss`` has bit k set when the row fails the path's splits on its k-th distinct feature;
    ``target[slot_row[s0 + k], row]`` is updated (the slot's feature's position among its
    tree's features).
    """
    # e_m(z_A): coefficients of prod_{k in A} (1 + z_k t); outside = P(B)
    outside = 1.0
    a = 0
    symmetric[0] = 1.0
    for k in range(d):
        z = slot_zero_fraction[s0 + k]
        if (miss >> k) & 1:
            outside *= z
        else:
            a += 1
            symmetric[a] = 0.0
            for m in range(a, 0, -1):
                symmetric[m] += z * symmetric[m - 1]
    q_all = 0.0
    if a < d:
        for s in range(a + 1):
            q_all += weight[d, s] * symmetric[a - s]
    for k in range(d):
        z = slot_zero_fraction[s0 + k]
        if (miss >> k) & 1:
            delta = -value * outside * q_all
        else:
            # divide the polynomial by (1 + z_k t): e_m(A without k)
            deflated[0] = 1.0
            for m in range(1, a):
                deflated[m] = symmetric[m] - z * deflated[m - 1]
            q = 0.0
            for s in range(a):
                q += weight[d, s] * deflated[a - 1 - s]
            delta = value * (1.0 - z) * outside * q
        target[slot_row[s0 + k], row] += delta


@numba.njit(parallel=True, cache=True)
def _contributions_kernel(
    X,
    out,
    block_rows,
    tree_node_start,
    tree_leaf_start,
    tree_feature_start,
    tree_feature,
    node_feature,
    node_threshold,
    node_is_categorical,
    node_missing_type,
    node_default_left,
    node_category_start,
    node_category_words,
    category_bitset,
    node_parent,
    node_is_left,
    node_slot,
    leaf_value,
    leaf_parent,
    leaf_is_left,
    leaf_slot_start,
    slot_local,
    slot_zero_fraction,
    slot_ratio,
    leaf_table_start,
    table,
    weight,
):
    n_rows = X.shape[0]
    n_columns = X.shape[1]
    n_trees = len(tree_node_start) - 1
    max_internal = 1
    max_tree_features = 1
    for t in range(n_trees):
        max_internal = max(max_internal, tree_node_start[t + 1] - tree_node_start[t])
        max_tree_features = max(
            max_tree_features, tree_feature_start[t + 1] - tree_feature_start[t]
        )
    max_d = weight.shape[0]
    n_blocks = (n_rows + block_rows - 1) // block_rows
    for block in numba.prange(n_blocks):
        r0 = block * block_rows
        r1 = min(n_rows, r0 + block_rows)
        n_block = r1 - r0
        # the block's values feature-major, so a node's test reads them contiguously
        values = np.empty((n_columns, n_block))
        for i in range(n_block):
            for column in range(n_columns):
                values[column, i] = X[r0 + i, column]
        sums = np.zeros((out.shape[1], n_block))  # contributions of the block, feature-major
        symmetric = np.empty(max_d + 2)
        deflated = np.empty(max_d + 2)
        # decision patterns: each row's, the distinct ones, and an open-addressing index
        pattern = np.empty(n_block, dtype=np.int64)
        which = np.empty(n_block, dtype=np.int64)
        distinct = np.empty(n_block, dtype=np.int64)
        capacity_bits = 1
        while (1 << capacity_bits) < 2 * n_block:
            capacity_bits += 1
        capacity = 1 << capacity_bits
        slot_key = np.empty(capacity, dtype=np.int64)
        slot_value = np.empty(capacity, dtype=np.int64)
        slot_tree = np.full(capacity, -1, dtype=np.int64)  # the tree that filled the slot
        shift = np.uint64(64 - capacity_bits)
        # a pattern's contributions, (tree feature, pattern)
        found = np.empty((max_tree_features, n_block))
        violated_one = np.empty(max_internal, dtype=np.int64)
        # the row-by-row arrays: for trees too large for a 64-bit pattern, or a small block
        by_rows = max_internal > MAX_PATTERN_NODES or n_block < MIN_PATTERN_ROWS
        row_nodes = max_internal if by_rows else 1
        goes_left = np.empty((row_nodes, n_block), dtype=np.bool_)
        violated = np.empty((row_nodes, n_block), dtype=np.int64)
        satisfied = np.empty(n_block, dtype=np.int64)
        penalty = np.empty(n_block)
        for t in range(n_trees):
            n0 = tree_node_start[t]
            n_internal = tree_node_start[t + 1] - n0
            if n_internal == 0:
                continue  # a single-leaf tree only moves the expected value
            if n_internal <= MAX_PATTERN_NODES and n_block >= MIN_PATTERN_ROWS:
                for i in range(n_block):
                    pattern[i] = 0
                for j in range(n_internal):
                    node = n0 + j
                    feature = node_feature[node]
                    bit = np.int64(1) << j
                    for i in range(n_block):
                        if _goes_left(
                            values[feature, i],
                            node,
                            node_threshold,
                            node_is_categorical,
                            node_missing_type,
                            node_default_left,
                            node_category_start,
                            node_category_words,
                            category_bitset,
                        ):
                            pattern[i] |= bit
                n_distinct = 0
                for i in range(n_block):
                    key = pattern[i]
                    h = (np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> shift
                    position = np.int64(h)
                    while True:
                        if slot_tree[position] != t:
                            slot_tree[position] = t
                            slot_key[position] = key
                            slot_value[position] = n_distinct
                            distinct[n_distinct] = key
                            which[i] = n_distinct
                            n_distinct += 1
                            break
                        if slot_key[position] == key:
                            which[i] = slot_value[position]
                            break
                        position = (position + 1) & (capacity - 1)
                f0 = tree_feature_start[t]
                n_tree_features = tree_feature_start[t + 1] - f0
                for q in range(n_distinct):
                    key = distinct[q]
                    for local in range(n_tree_features):
                        found[local, q] = 0.0
                    # parents are numbered before their children
                    for j in range(n_internal):
                        parent = node_parent[n0 + j]
                        if parent < 0:
                            violated_one[j] = 0
                        else:
                            violated_one[j] = violated_one[parent]
                            if ((key >> parent) & 1 == 1) != node_is_left[n0 + j]:
                                violated_one[j] |= np.int64(1) << node_slot[n0 + parent]
                    for leaf in range(tree_leaf_start[t], tree_leaf_start[t + 1]):
                        parent = leaf_parent[leaf]
                        miss = violated_one[parent]
                        if ((key >> parent) & 1 == 1) != leaf_is_left[leaf]:
                            miss |= np.int64(1) << node_slot[n0 + parent]
                        s0 = leaf_slot_start[leaf]
                        d = leaf_slot_start[leaf + 1] - s0
                        start = leaf_table_start[leaf]
                        if start >= 0:
                            sat = ((np.int64(1) << d) - 1) ^ miss
                            lost = table[start + sat]  # table[full] is 0
                            for k in range(d):
                                has = np.float64((sat >> k) & 1)
                                gain = (
                                    slot_ratio[s0 + k] * table[start + (sat ^ (np.int64(1) << k))]
                                )
                                found[slot_local[s0 + k], q] += has * gain - (1.0 - has) * lost
                        else:
                            _add_direct_leaf(
                                found, q, miss, d, s0, leaf_value[leaf], slot_local,
                                slot_zero_fraction, weight, symmetric, deflated,
                            )  # fmt: skip
                for local in range(n_tree_features):
                    feature = tree_feature[f0 + local]
                    for i in range(n_block):
                        sums[feature, i] += found[local, which[i]]
                continue
            # row by row (a tree too large for a pattern, or a block too small to share them),
            # summed per tree in the same order as a pattern's values, so a row gets the same
            # bits either way
            f0 = tree_feature_start[t]
            n_tree_features = tree_feature_start[t + 1] - f0
            for local in range(n_tree_features):
                for i in range(n_block):
                    found[local, i] = 0.0
            for j in range(n_internal):
                node = n0 + j
                feature = node_feature[node]
                for i in range(n_block):
                    goes_left[j, i] = _goes_left(
                        values[feature, i],
                        node,
                        node_threshold,
                        node_is_categorical,
                        node_missing_type,
                        node_default_left,
                        node_category_start,
                        node_category_words,
                        category_bitset,
                    )
                parent = node_parent[node]
                if parent < 0:
                    for i in range(n_block):
                        violated[j, i] = 0
                else:
                    parent_bit = np.int64(1) << node_slot[n0 + parent]
                    is_left = node_is_left[node]
                    for i in range(n_block):
                        violated[j, i] = violated[parent, i]
                        if goes_left[parent, i] != is_left:
                            violated[j, i] |= parent_bit
            for leaf in range(tree_leaf_start[t], tree_leaf_start[t + 1]):
                parent = leaf_parent[leaf]
                is_left = leaf_is_left[leaf]
                parent_bit = np.int64(1) << node_slot[n0 + parent]
                s0 = leaf_slot_start[leaf]
                d = leaf_slot_start[leaf + 1] - s0
                full = (np.int64(1) << d) - 1
                start = leaf_table_start[leaf]
                if start >= 0:
                    for i in range(n_block):
                        miss = violated[parent, i]
                        if goes_left[parent, i] != is_left:
                            miss |= parent_bit
                        satisfied[i] = full ^ miss
                        penalty[i] = table[start + satisfied[i]]
                    for k in range(d):
                        bit = np.int64(1) << k
                        ratio = slot_ratio[s0 + k]
                        local = slot_local[s0 + k]
                        for i in range(n_block):
                            sat = satisfied[i]
                            has = np.float64((sat >> k) & 1)
                            gain = ratio * table[start + (sat ^ bit)]
                            found[local, i] += has * gain - (1.0 - has) * penalty[i]
                else:
                    for i in range(n_block):
                        miss = violated[parent, i]
                        if goes_left[parent, i] != is_left:
                            miss |= parent_bit
                        _add_direct_leaf(
                            found, i, miss, d, s0, leaf_value[leaf], slot_local,
                            slot_zero_fraction, weight, symmetric, deflated,
                        )  # fmt: skip
            for local in range(n_tree_features):
                feature = tree_feature[f0 + local]
                for i in range(n_block):
                    sums[feature, i] += found[local, i]
        for i in range(n_block):
            for feature in range(out.shape[1] - 1):
                out[r0 + i, feature] += sums[feature, i]


def block_rows_for(n_rows: int, most: int, threads: int) -> int:
    """Rows per block for a batch of ``n_rows``: as few blocks as keep each within ``most``
    rows, all of one size but the last, and at least one per thread (the blocks run in parallel)
    while each keeps :data:`MIN_SPLIT_ROWS`. 50,000 rows, 16,384 at most, one thread: 4 blocks
    of 12,500 (not three of 16,384 and one of 848)."""
    blocks = max(1, -(-n_rows // most))
    if blocks < threads:
        blocks = max(blocks, min(threads, n_rows // MIN_SPLIT_ROWS))
    return max(1, -(-n_rows // blocks))


def tree_contributions(
    ensemble: TreeEnsemble,
    X: np.ndarray,
    chunk_rows: int = 65_536,
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> np.ndarray:
    """Exact path-dependent TreeSHAP contributions, as LightGBM's ``predict(pred_contrib=True)``.

    Args:
        ensemble: the parsed model (:meth:`TreeEnsemble.from_lightgbm`).
        X: ``(n, n_features)`` numeric matrix, columns in the model's feature order, categorical
            features as LightGBM's integer codes (NaN for missing; see :func:`lightgbm_matrix`).
        chunk_rows: rows converted to a float64 working copy at a time (bounds extra memory).
        block_rows: most rows explained together tree by tree (:func:`block_rows_for`); the
            values do not depend on it, to the bit.

    Returns:
        ``(n, n_features + 1)`` float64 in raw-score units (log-odds for a binary model): one
        column per feature, then the expected value; each row sums to the row's raw score.
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != ensemble.n_features:
        raise ValueError(
            f"X must be a 2-D matrix with {ensemble.n_features} columns (the model's features), "
            f"got shape {X.shape}"
        )
    if chunk_rows < 1 or block_rows < 1:
        raise ValueError(
            f"chunk_rows and block_rows must be positive, got {chunk_rows}, {block_rows}"
        )
    n_rows = X.shape[0]
    threads = numba.get_num_threads()
    out = np.zeros((n_rows, ensemble.n_features + 1), dtype=np.float64)
    out[:, -1] = ensemble.expected_value
    for start in range(0, n_rows, chunk_rows):
        chunk = np.array(X[start : start + chunk_rows], dtype=np.float64, order="C")
        # LightGBM's dense-matrix reader keeps only |x| > kZeroThreshold (or NaN); the rest is 0.
        chunk[np.abs(chunk) <= K_ZERO_THRESHOLD] = 0.0
        _contributions_kernel(
            chunk,
            out[start : start + len(chunk)],
            block_rows_for(len(chunk), block_rows, threads),
            ensemble.tree_node_start,
            ensemble.tree_leaf_start,
            ensemble.tree_feature_start,
            ensemble.tree_feature,
            ensemble.node_feature,
            ensemble.node_threshold,
            ensemble.node_is_categorical,
            ensemble.node_missing_type,
            ensemble.node_default_left,
            ensemble.node_category_start,
            ensemble.node_category_words,
            ensemble.category_bitset,
            ensemble.node_parent,
            ensemble.node_is_left,
            ensemble.node_slot,
            ensemble.leaf_value,
            ensemble.leaf_parent,
            ensemble.leaf_is_left,
            ensemble.leaf_slot_start,
            ensemble.slot_local,
            ensemble.slot_zero_fraction,
            ensemble.slot_ratio,
            ensemble.leaf_table_start,
            ensemble.table,
            ensemble.shapley_weight,
        )
    return out


_ENSEMBLE_CACHE: weakref.WeakKeyDictionary[lgb.Booster, TreeEnsemble] = weakref.WeakKeyDictionary()


def ensemble_of(booster: lgb.Booster) -> TreeEnsemble:
    """The parsed ensemble of ``booster``, built once per booster object and then reused."""
    ensemble = _ENSEMBLE_CACHE.get(booster)
    if ensemble is None:
        ensemble = TreeEnsemble.from_lightgbm(booster)
        _ENSEMBLE_CACHE[booster] = ensemble
    return ensemble


def fast_pred_contrib(booster: lgb.Booster, X: pd.DataFrame) -> np.ndarray:
    """Drop-in for ``booster.predict(X, pred_contrib=True)`` on a binary model (same values).

    Matches :data:`rollrisk.models.explanations.ContributionKernel`; the parsed model is cached
    per booster, so a scoring job pays the parsing once.
    """
    matrix = lightgbm_matrix(X, booster) if isinstance(X, pd.DataFrame) else np.asarray(X)
    return tree_contributions(ensemble_of(booster), matrix)
