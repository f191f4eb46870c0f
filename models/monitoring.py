"""Is the population the model scores still the one it was trained on, and do its scores hold?

Pure functions (no I/O) behind ``rollrisk monitor``:

* :func:`score_stability`: PSI of the score, training scores against today's, on bins fixed by
  the training scores (:func:`rollrisk.models.metrics.population_stability_index`).
* :func:`feature_stability`: CSI of every feature of the feature set, on bins fixed by the
  reference (training) frame: numeric features on the reference's quantile edges, categorical
  features on the reference's categories plus an ``other/unseen`` bin; missing values are a bin
  of their own in both cases, so a feature that starts going missing shows up as drift instead
  of being dropped. Empty bins get a small epsilon share, never removed.
* :func:`backtest`: once the performance window of an as-of has passed, realised roll rate
  against mean predicted probability per risk band, with a Wilson 95% interval
  (:func:`rollrisk.models.stats.calibration_backtest`, bands by the policy's rule
  :func:`rollrisk.models.risk_bands.risk_band`), and a verdict per band.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from rollrisk.features.registry import FeatureSet, FeatureSpec
from rollrisk.models.metrics import PsiResult, population_stability_index, psi_verdict
from rollrisk.models.risk_bands import RiskBands, risk_band
from rollrisk.models.stats import calibration_backtest

STABILITY_BINS = 10
EPSILON = 1e-4  # share given to an empty bin (as in population_stability_index)
MISSING_BIN = "missing"
UNSEEN_BIN = "other/unseen"

BIN_COLUMNS = (
    "feature",
    "bin",
    "label",
    "expected_count",
    "actual_count",
    "expected_share",
    "actual_share",
    "contribution",
)


@dataclass(frozen=True)
class FeatureStability:
    """CSI per feature (``summary``) and the bins behind each value (``bins``).

    ``summary`` columns: ``feature, kind, csi, verdict, bins, empty_bins_actual,
    missing_share_expected, missing_share_actual, unseen_share_actual``, sorted by CSI, highest
    first. ``bins`` columns: :data:`BIN_COLUMNS`.
    """

    summary: pd.DataFrame
    bins: pd.DataFrame


def score_stability(
    reference: ArrayLike, current: ArrayLike, n_bins: int = STABILITY_BINS
) -> PsiResult:
    """PSI of the score: ``reference`` (training-period scores) fixes the bins."""
    return population_stability_index(reference, current, n_bins=n_bins, epsilon=EPSILON)


def numeric_bin_edges(reference: ArrayLike, n_bins: int = STABILITY_BINS) -> NDArray[np.float64]:
    """Inner edges: the reference's non-missing quantiles at 1/n_bins, ... (ties merged)."""
    values = np.asarray(reference, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.empty(0, dtype=np.float64)
    return np.unique(np.quantile(values, np.linspace(0.0, 1.0, n_bins + 1)[1:-1]))


def _numeric_bins(
    values: pd.Series, inner_edges: NDArray[np.float64]
) -> tuple[NDArray[np.int64], list[str]]:
    """Bin index per value (right-closed bins; the last index is the missing bin) and labels."""
    array = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    index = np.searchsorted(inner_edges, array, side="left").astype(np.int64)
    index[~np.isfinite(array)] = inner_edges.size + 1
    edges = np.r_[-np.inf, inner_edges, np.inf]
    labels = [f"({edges[i]:.6g}, {edges[i + 1]:.6g}]" for i in range(edges.size - 1)]
    return index, [*labels, MISSING_BIN]


def _categorical_bins(
    values: pd.Series, categories: Sequence[str]
) -> tuple[NDArray[np.int64], list[str]]:
    """Bin index per value: a reference category, then ``other/unseen``, then ``missing``."""
    position = {category: i for i, category in enumerate(categories)}
    missing = values.isna().to_numpy()
    text = values.astype(object).where(~missing, None)
    index = np.array(
        [position.get(str(v), len(categories)) if v is not None else 0 for v in text],
        dtype=np.int64,
    )
    index[missing] = len(categories) + 1
    return index, [*categories, UNSEEN_BIN, MISSING_BIN]


def stability_bins(
    feature: str,
    expected_index: NDArray[np.int64],
    actual_index: NDArray[np.int64],
    labels: Sequence[str],
    epsilon: float = EPSILON,
) -> pd.DataFrame:
    """The PSI table of two binned samples (every bin kept; empty ones get ``epsilon``)."""
    n_bins = len(labels)
    expected_counts = np.bincount(expected_index, minlength=n_bins)
    actual_counts = np.bincount(actual_index, minlength=n_bins)
    expected_share = np.maximum(expected_counts / max(expected_index.size, 1), epsilon)
    actual_share = np.maximum(actual_counts / max(actual_index.size, 1), epsilon)
    return pd.DataFrame(
        {
            "feature": feature,
            "bin": np.arange(1, n_bins + 1),
            "label": list(labels),
            "expected_count": expected_counts.astype(np.int64),
            "actual_count": actual_counts.astype(np.int64),
            "expected_share": expected_share,
            "actual_share": actual_share,
            "contribution": (actual_share - expected_share) * np.log(actual_share / expected_share),
        }
    )


def characteristic_stability(
    spec: FeatureSpec,
    reference: pd.Series,
    current: pd.Series,
    n_bins: int = STABILITY_BINS,
) -> pd.DataFrame:
    """The CSI bin table of one feature (sum its ``contribution`` for the CSI)."""
    if spec.kind == "categorical":
        categories = sorted({str(v) for v in reference.dropna().astype(object)})
        expected, labels = _categorical_bins(reference, categories)
        actual, _ = _categorical_bins(current, categories)
    else:
        edges = numeric_bin_edges(pd.to_numeric(reference, errors="coerce"), n_bins)
        expected, labels = _numeric_bins(reference, edges)
        actual, _ = _numeric_bins(current, edges)
    return stability_bins(spec.name, expected, actual, labels)


def feature_stability(
    reference_frame: pd.DataFrame,
    current_frame: pd.DataFrame,
    feature_set: FeatureSet,
    n_bins: int = STABILITY_BINS,
) -> FeatureStability:
    """CSI of each feature of ``feature_set`` (see the module docstring).

    Calendar features (``source="as_of"``, e.g. the as-of month) are left out: one as-of has a
    single value of them, so against a training population of many months they always "drift".
    Needs every feature column in both frames; raises ``ValueError`` naming the missing ones.
    """
    for name, frame in (("reference", reference_frame), ("current", current_frame)):
        missing = [f for f in feature_set.names if f not in frame.columns]
        if missing:
            raise ValueError(f"the {name} frame lacks feature column(s) {missing}")
        if len(frame) == 0:
            raise ValueError(f"the {name} frame is empty: CSI needs rows on both sides")
    tables, rows = [], []
    for spec in feature_set.features:
        if spec.source == "as_of":
            continue  # a calendar feature has one value per as-of: comparing it says nothing
        table = characteristic_stability(
            spec, reference_frame[spec.name], current_frame[spec.name], n_bins
        )
        csi = float(table["contribution"].sum())
        missing_row = table[table["label"] == MISSING_BIN].iloc[0]
        unseen = table[table["label"] == UNSEEN_BIN]
        rows.append(
            {
                "feature": spec.name,
                "kind": spec.kind,
                "csi": csi,
                "verdict": psi_verdict(csi),
                "bins": len(table),
                "empty_bins_actual": int((table["actual_count"] == 0).sum()),
                "missing_share_expected": missing_row["expected_count"] / len(reference_frame),
                "missing_share_actual": missing_row["actual_count"] / len(current_frame),
                "unseen_share_actual": (
                    float(unseen["actual_count"].iloc[0]) / len(current_frame)
                    if len(unseen)
                    else 0.0
                ),
            }
        )
        tables.append(table)
    summary = (
        pd.DataFrame(rows).sort_values("csi", ascending=False, kind="stable").reset_index(drop=True)
    )
    return FeatureStability(summary=summary, bins=pd.concat(tables, ignore_index=True))


def backtest(
    scored_with_outcomes: pd.DataFrame,
    bands: RiskBands,
    tolerance: float = 0.05,
    min_accounts: int = 30,
) -> pd.DataFrame:
    """Realised against predicted roll rate per risk band (and overall, last row).

    Needs ``probability`` (calibrated, in [0, 1]) and ``rolled_to_default`` (0/1, the matured
    outcome; rows without one must be removed by the caller). ``bands`` are (name, inclusive
    upper bound) pairs, ascending, the last bound 1.0 (the policy's ``risk_bands``).

    Returns one row per band (in band order, empty bands included) plus ``all``: ``band,
    accounts, rolled, predicted_mean, realised_rate, ci_lower, ci_upper, gap, verdict``.
    ``verdict`` is ``act`` when the predicted mean lies outside the Wilson 95% interval of the
    realised rate *and* the gap exceeds ``tolerance`` (small bands cannot raise it: a band with
    fewer than ``min_accounts`` accounts is ``too few``), otherwise ``ok``.
    """
    missing = [c for c in ("probability", "rolled_to_default") if c not in scored_with_outcomes]
    if missing:
        raise ValueError(f"backtest needs column(s) {missing}")
    outcome = scored_with_outcomes["rolled_to_default"]
    if outcome.isna().any():
        raise ValueError(
            f"{int(outcome.isna().sum())} rows have no matured outcome; drop them first"
        )
    probability = scored_with_outcomes["probability"].to_numpy(dtype=np.float64)
    band = [risk_band(p, bands) for p in probability]
    table = calibration_backtest(
        probability, outcome.to_numpy(dtype=np.int64), band, [name for name, _ in bands]
    )
    outside = (table["predicted_mean"] < table["ci_lower"]) | (
        table["predicted_mean"] > table["ci_upper"]
    )
    table["verdict"] = np.where(
        table["accounts"] < min_accounts,
        "too few",
        np.where(outside & (table["gap"].abs() > tolerance), "act", "ok"),
    )
    return table.rename(columns={"group": "band"})
