"""Exact per-account explanations of the roll model: TreeSHAP contributions, reason codes, families.

* :func:`contributions` returns the exact TreeSHAP contributions of a LightGBM model, in
  log-odds, one column per feature plus a last column holding the base value (expected raw
  score), so that each row sums to the model's raw score. It runs in chunks so a portfolio of
  millions of accounts never holds one giant intermediate. The kernel that computes a chunk is an
  argument: LightGBM's own ``pred_contrib`` by default, and a faster exact kernel can be swapped
  in without touching callers.
* :func:`reason_codes` turns the contributions of each account into at most four principal
  reasons (US Regulation B practice), the features that raised its risk most, each with a stable
  code and a short text in English and Chinese that quotes the account's own value.
* :func:`family_contributions` sums the contributions per driver family (payment capacity,
  willingness, contactability, ...): the input of the segment rules in
  :mod:`rollrisk.strategies.segments`.

Protected attributes (age, sex, marital status, ethnicity, region and their proxies) must never
be model inputs; every function here refuses a feature set that names one.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import lightgbm as lgb
import numba
import numpy as np
import pandas as pd

from rollrisk.features.registry import (
    FAMILIES,
    FeatureSet,
    FeatureSpec,
    definition_label,
    format_reason,
)

MAX_PRINCIPAL_REASONS = 4

# A feature whose name contains one of these words (as a whole ``_``-separated word) is a
# protected attribute or a proxy of one. Whole words, so ``average_payment`` is not "age"; a
# feature about account seniority must say so without the bare word (``months_on_book``).
PROTECTED_WORDS: frozenset[str] = frozenset(
    {
        "age",
        "birth",
        "birthday",
        "sex",
        "gender",
        "marital",
        "married",
        "ethnicity",
        "ethnic",
        "race",
        "religion",
        "region",
        "province",
        "city",
        "postcode",
        "postal",
        "zip",
        "zipcode",
        "nationality",
    }
)

ContributionKernel = Callable[[lgb.Booster, pd.DataFrame | np.ndarray], np.ndarray]
"""Computes exact TreeSHAP contributions of one chunk: ``(booster, X) -> (n, p + 1)`` float64,
columns in ``X``'s order followed by the base value. ``X`` is a chunk of the model's input frame,
or of its float64 matrix (scoring passes the matrix: both built-in kernels take either)."""

REASON_COLUMNS: tuple[str, ...] = (
    "row",
    "rank",
    "feature",
    "code",
    "family",
    "value",
    "contribution",
    "text_en",
    "text_zh",
)


def lightgbm_pred_contrib(booster: lgb.Booster, X: pd.DataFrame) -> np.ndarray:
    """LightGBM's own exact TreeSHAP (``predict(pred_contrib=True)``), in raw-score units."""
    return np.asarray(booster.predict(X, pred_contrib=True), dtype=np.float64)


def assert_no_protected_features(feature_names: Sequence[str]) -> None:
    """Raise ``ValueError`` if any feature name contains a protected word (see PROTECTED_WORDS)."""
    offending = _protected(tuple(feature_names))
    if offending:
        raise ValueError(
            "protected attributes must never be model inputs or reasons, but these features "
            f"name one: {', '.join(offending)} (protected words: {', '.join(sorted(PROTECTED_WORDS))})"
        )


@functools.lru_cache(maxsize=64)
def _protected(feature_names: tuple[str, ...]) -> list[str]:
    """The names holding a protected word (cached: every scoring call checks the same names)."""
    return sorted(
        name
        for name in feature_names
        if PROTECTED_WORDS.intersection(re.split(r"[^a-z0-9]+", name.lower()))
    )


def contributions(
    booster_or_model: lgb.Booster | Any,
    X: pd.DataFrame | np.ndarray,
    chunk_rows: int = 50_000,
    kernel: ContributionKernel | None = None,
) -> np.ndarray:
    """Exact TreeSHAP contributions (log-odds) of a binary LightGBM model, chunk by chunk.

    Args:
        booster_or_model: a ``lightgbm.Booster`` or anything with a fitted ``booster_``
            (``LGBMClassifier`` or a project wrapper).
        X: the model's input frame; its columns must be the booster's features in order
            (categorical features as pandas ``category``, exactly as at training); or that
            frame as the float64 matrix LightGBM predicts from (categories as their codes, see
            :func:`rollrisk.models.lightgbm_input.lightgbm_matrix`), one column per feature.
        chunk_rows: rows per kernel call; bounds the memory of one call.
        kernel: the function that explains one chunk (see :data:`ContributionKernel`); by
            default the project's exact fast kernel
            (:func:`rollrisk.models.treeshap.fast_pred_contrib`, the same values as
            LightGBM's ``pred_contrib`` to within 1e-9, which the tests keep as the oracle).

    Returns:
        ``(len(X), n_features + 1)`` float64: one column per feature in ``X``'s order, then the
        base value. Each row sums to the raw score (log-odds) of that row.
    """
    if kernel is None:
        from rollrisk.models.treeshap import fast_pred_contrib as kernel
    booster = _booster_of(booster_or_model)
    expected = list(booster.feature_name())
    if isinstance(X, pd.DataFrame):
        if list(X.columns) != expected:
            raise ValueError(
                "X must hold exactly the model's features in the model's order; "
                f"model: {expected}, X: {list(X.columns)}"
            )
    elif X.ndim != 2 or X.shape[1] != len(expected):
        raise ValueError(
            f"a matrix X must have one column per model feature ({len(expected)}), "
            f"got shape {X.shape}"
        )
    assert_no_protected_features(expected)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    width = len(expected) + 1
    out = np.empty((len(X), width), dtype=np.float64)
    for start in range(0, len(X), chunk_rows):
        chunk = (
            X.iloc[start : start + chunk_rows]
            if isinstance(X, pd.DataFrame)
            else X[start : start + chunk_rows]
        )
        values = np.asarray(kernel(booster, chunk), dtype=np.float64)
        if values.shape != (len(chunk), width):
            raise ValueError(
                f"contribution kernel returned shape {values.shape}, expected "
                f"{(len(chunk), width)}; only binary (single raw score) models are supported"
            )
        out[start : start + len(chunk)] = values
    return out


def _booster_of(model: Any) -> lgb.Booster:
    if isinstance(model, lgb.Booster):
        return model
    booster = getattr(model, "booster_", None)
    if isinstance(booster, lgb.Booster):
        return booster
    raise TypeError(
        f"expected a lightgbm.Booster or a fitted model with a booster_, got {type(model).__name__}"
    )


def reason_code(spec: FeatureSpec) -> str:
    """The stable reason code of a feature: its registry ``code`` if it declares one, else
    ``RR-`` and six hex digits derived from the feature name (stable across versions and
    orderings of the feature set, changes only if the feature is renamed)."""
    explicit = getattr(spec, "code", None)
    if explicit:
        return str(explicit)
    return "RR-" + hashlib.sha256(spec.name.encode("utf-8")).hexdigest()[:6].upper()


def _feature_contributions(contribs: np.ndarray, feature_set: FeatureSet) -> np.ndarray:
    """The per-feature block of ``contribs`` (dropping the base-value column when present)."""
    n_features = len(feature_set.features)
    contribs = np.asarray(contribs, dtype=np.float64)
    if contribs.ndim != 2 or contribs.shape[1] not in (n_features, n_features + 1):
        raise ValueError(
            f"contributions must have {n_features} columns (one per feature of "
            f"{feature_set.name} v{feature_set.version}) or {n_features + 1} (with the base "
            f"value last), got shape {contribs.shape}"
        )
    return contribs[:, :n_features]


@functools.lru_cache(maxsize=64)
def _check_feature_set(feature_set: FeatureSet) -> None:
    """No protected input, no two features with one reason code (checked once per feature set:
    a raise is not cached, so a bad set fails every call)."""
    assert_no_protected_features(feature_set.names)
    codes: dict[str, str] = {}
    for spec in feature_set.features:
        code = reason_code(spec)
        if code in codes:
            raise ValueError(
                f"features {codes[code]!r} and {spec.name!r} share the reason code {code}; "
                "give one of them an explicit code"
            )
        codes[code] = spec.name


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    try:
        return bool(isinstance(value, float | np.floating) and math.isnan(value))
    except TypeError:
        return False


def _is_zero(value: Any) -> bool:
    return isinstance(value, float | np.floating) and value == 0.0


def reason_text(spec: FeatureSpec, value: Any) -> tuple[str, str]:
    """English and Chinese reason text for one feature and the account's own value.

    The registry templates are formatted with ``value`` by
    :func:`~rollrisk.features.registry.format_reason` (a 0/1 feature's text states the fact
    its value states: :func:`~rollrisk.features.registry.flag_reason`). A missing value, or a
    value the template cannot format (a category label under ``{value:.0f}``, a flag that is
    neither 0 nor 1), falls back to the feature's description with the value quoted as text,
    so a reason is never lost or garbled. A missing value is worded by the feature's
    ``missing_en`` / ``missing_zh`` (what it states: "no hardship treatment on record"), else
    "<label>: no data". :func:`reason_codes` words every reason here.
    """
    if _is_missing(value):
        if spec.missing_en and spec.missing_zh:
            return spec.missing_en, spec.missing_zh
        return (
            f"{definition_label(spec.description_en)}: no data",
            f"{definition_label(spec.description_zh)}：无数据",
        )
    if isinstance(value, np.generic):
        value = value.item()
    texts = []
    for template, description, colon in (
        (spec.reason_en, spec.description_en, ": "),
        (spec.reason_zh, spec.description_zh, "："),
    ):
        try:
            texts.append(format_reason(template, value))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError):
            texts.append(f"{definition_label(description)}{colon}{value}")
    return texts[0], texts[1]


def reason_codes(
    contribs: np.ndarray,
    X_raw: pd.DataFrame,
    feature_set: FeatureSet,
    max_reasons: int = MAX_PRINCIPAL_REASONS,
) -> pd.DataFrame:
    """The principal reasons of each account: the features that raised its risk most.

    Args:
        contribs: ``(n, p)`` or ``(n, p + 1)`` contributions from :func:`contributions`, columns
            in ``feature_set`` order (a trailing base-value column is ignored).
        X_raw: ``n`` rows holding at least every feature of ``feature_set`` as the account's
            own, human-readable values (categoricals as their labels); row ``i`` belongs to
            ``contribs[i]``.
        feature_set: the registry entries that give each feature's code, family and texts.
        max_reasons: at most this many reasons per account (4 by Regulation B practice).

    Returns:
        A long frame, one row per (account, reason), ordered by account then rank, with columns
        ``row`` (the index label of ``X_raw``), ``rank`` (1 = largest), ``feature``, ``code``,
        ``family``, ``value`` (as text), ``contribution`` (log-odds, always > 0), ``text_en``
        and ``text_zh``. Only risk-increasing features are reasons: an account with fewer
        positive contributions gets fewer rows, one with none gets no row.
    """
    if not 1 <= max_reasons <= MAX_PRINCIPAL_REASONS:
        raise ValueError(
            f"max_reasons must be between 1 and {MAX_PRINCIPAL_REASONS} (principal factors), "
            f"got {max_reasons}"
        )
    _check_feature_set(feature_set)
    per_feature = _feature_contributions(contribs, feature_set)
    if len(X_raw) != len(per_feature):
        raise ValueError(
            f"X_raw has {len(X_raw)} rows but contributions have {len(per_feature)}; "
            "they must describe the same accounts in the same order"
        )
    missing = [name for name in feature_set.names if name not in X_raw.columns]
    if missing:
        raise ValueError(f"X_raw lacks feature columns {missing}")

    n_rows, n_features = per_feature.shape
    k = min(max_reasons, n_features)
    # Largest first; ties keep feature-set order (as a stable sort), so the output is
    # deterministic. Only risk-increasing features count.
    order, counts = _largest_positive(per_feature, k)
    rows = np.repeat(np.arange(n_rows), counts)
    ranks = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    features = order[rows, ranks]

    specs = feature_set.features
    codes = [reason_code(spec) for spec in specs]
    values = np.empty(len(rows), dtype=object)
    texts_en = np.empty(len(rows), dtype=object)
    texts_zh = np.empty(len(rows), dtype=object)
    # feature by feature, each distinct value formatted once (most reasons repeat: counts,
    # category labels); only the columns some reason quotes are read
    for feature in np.unique(features).tolist():
        quoting = np.flatnonzero(features == feature)  # in row order
        spec = specs[feature]
        own = X_raw[spec.name].to_numpy(dtype=object)[rows[quoting]]
        # equal values share a text, the first one's (a dict's notion of equal: 0.0 == -0.0)
        value_codes, distinct = pd.factorize(own, use_na_sentinel=True)
        found = value_codes >= 0
        texts = [reason_text(spec, value) for value in distinct]
        en = np.array([t[0] for t in texts] + [None], dtype=object)
        zh = np.array([t[1] for t in texts] + [None], dtype=object)
        missing_en, missing_zh = reason_text(spec, None)
        en[-1], zh[-1] = missing_en, missing_zh
        texts_en[quoting] = en[value_codes]  # code -1: the missing text, last
        texts_zh[quoting] = zh[value_codes]
        shown = np.array([str(value) for value in distinct] + [""], dtype=object)[value_codes]
        # ... but each row shows its own value: a zero's sign is lost by the sharing
        zero = found & np.array([_is_zero(v) for v in distinct] + [False], dtype=bool)[value_codes]
        if zero.any():
            negative = np.signbit(own[zero].astype(np.float64))
            shown[zero] = np.where(negative, str(-0.0), str(0.0)).astype(object)
        values[quoting] = shown
        if not found.all():  # values factorize counts as missing that reason_text may not
            for j in np.flatnonzero(~found).tolist():
                if not _is_missing(own[j]):
                    texts_en[quoting[j]], texts_zh[quoting[j]] = reason_text(spec, own[j])
                    values[quoting[j]] = str(own[j])

    # the text columns stay Python strings (object): converting each to pandas' Arrow-backed
    # string type and back, as a JSON encoder reads them, cost more than the rest of this step
    names = np.array([spec.name for spec in specs], dtype=object)[features]
    return pd.DataFrame(
        {
            "row": X_raw.index.to_numpy()[rows],
            "rank": (ranks + 1).astype(np.int64),
            "feature": pd.Series(names, dtype=object),
            "code": pd.Series(np.array(codes, dtype=object)[features], dtype=object),
            "family": pd.Series(
                np.array([spec.family for spec in specs], dtype=object)[features], dtype=object
            ),
            "value": pd.Series(values, dtype=object),
            "contribution": per_feature[rows, features],
            "text_en": pd.Series(texts_en, dtype=object),
            "text_zh": pd.Series(texts_zh, dtype=object),
        },
        columns=list(REASON_COLUMNS),
    )


@numba.njit(cache=True)
def _largest_positive(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's (at most) ``k`` largest positive values: their columns, largest first, a tie
    in column order (the first ``k`` of a stable descending sort that are positive), and how
    many there are. One pass over the row keeping ``k`` in order, instead of sorting it."""
    n_rows, n_columns = values.shape
    order = np.zeros((n_rows, k), dtype=np.int64)
    counts = np.zeros(n_rows, dtype=np.int64)
    for i in range(n_rows):
        kept = 0
        for j in range(n_columns):
            value = values[i, j]
            if not value > 0.0:  # zero, negative or NaN
                continue
            position = kept  # after every kept value at least as large
            while position > 0 and values[i, order[i, position - 1]] < value:
                position -= 1
            if position >= k:
                continue
            for m in range(min(kept, k - 1), position, -1):
                order[i, m] = order[i, m - 1]
            order[i, position] = j
            kept = min(kept + 1, k)
        counts[i] = kept
    return order, counts


def family_contributions(
    contribs: np.ndarray,
    feature_set: FeatureSet,
    index: pd.Index | None = None,
) -> pd.DataFrame:
    """Contributions summed per driver family (log-odds), one column per family.

    Columns are every family of the registry in registry order (a family with no feature in the
    set is all zeros, so downstream rules can always name it), then any family the registry does
    not list. The base value is excluded: each row sums to the raw score minus the base value.
    """
    _check_feature_set(feature_set)
    per_feature = _feature_contributions(contribs, feature_set)
    families = list(FAMILIES) + sorted(
        {spec.family for spec in feature_set.features} - set(FAMILIES)
    )
    summed = np.zeros((per_feature.shape[0], len(families)), dtype=np.float64)
    # column by column, in feature-set order: each row's sums then do not depend on how many
    # rows are summed with it (a matrix product's blocking does), so an account gets the same
    # values scored alone, in a service batch or in a nightly partition
    for i, spec in enumerate(feature_set.features):
        summed[:, families.index(spec.family)] += per_feature[:, i]
    return pd.DataFrame(summed, columns=families, index=index)
