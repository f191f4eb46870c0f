"""Measures of a roll-to-default score: discrimination, calibration, lift and stability.

Pure functions on arrays and frames (numpy / pandas, no I/O). Labels are 0/1 with 1 = the
account rolled to default (a "bad"); scores and probabilities are higher = riskier. Every
function validates its inputs and raises :class:`ValueError` with a message that says what was
expected (lengths, label values, probability range). Definitions and formulas are in
``docs/evaluation.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata

LOG_LOSS_CLIP = 1e-15
PSI_STABLE_BELOW = 0.1
PSI_ACT_ABOVE = 0.25

__all__ = [
    "HEADLINE_METRICS",
    "METRIC_COLUMNS",
    "PsiResult",
    "binary_metrics",
    "brier_score",
    "expected_calibration_error",
    "gini",
    "ks_statistic",
    "lift_table",
    "log_loss",
    "metrics_by_slice",
    "population_stability_index",
    "psi_verdict",
    "reliability_table",
    "roc_auc",
    "smooth_calibration_error",
]


# --------------------------------------------------------------------------- input checks


def _as_labels(y_true: ArrayLike, name: str = "y_true") -> NDArray[np.int8]:
    labels = np.asarray(y_true)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {labels.shape}")
    if labels.size == 0:
        raise ValueError(f"{name} is empty: at least one observation is needed")
    if labels.dtype.kind == "f" and np.isnan(labels).any():
        raise ValueError(f"{name} contains missing values; labels must be 0 or 1")
    unexpected = np.setdiff1d(np.unique(labels), [0, 1])
    if unexpected.size:
        shown = ", ".join(repr(value) for value in unexpected[:5].tolist())
        raise ValueError(f"{name} must be binary (0/1), found other values: {shown}")
    return labels.astype(np.int8)


def _as_scores(y_score: ArrayLike, n: int, name: str) -> NDArray[np.float64]:
    scores = np.asarray(y_score, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {scores.shape}")
    if scores.size != n:
        raise ValueError(f"length mismatch: y_true has {n} values but {name} has {scores.size}")
    if not np.isfinite(scores).all():
        raise ValueError(
            f"{name} contains {int((~np.isfinite(scores)).sum())} missing or infinite values"
        )
    return scores


def _as_probabilities(y_prob: ArrayLike, n: int, name: str = "y_prob") -> NDArray[np.float64]:
    probs = _as_scores(y_prob, n, name)
    if probs.min() < 0.0 or probs.max() > 1.0:
        raise ValueError(
            f"{name} must be probabilities in [0, 1], got range [{probs.min():.4g}, {probs.max():.4g}]"
        )
    return probs


def _both_classes(labels: NDArray[np.int8], what: str) -> None:
    positives = int(labels.sum())
    if positives == 0 or positives == labels.size:
        raise ValueError(
            f"{what} needs both classes in y_true, got {positives} positives out of {labels.size}"
        )


# --------------------------------------------------------------------------- discrimination


def roc_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the ROC curve: P(score of a random bad > score of a random good), ties count 1/2.

    Computed from the Mann-Whitney rank sum (average ranks for ties).
    """
    labels = _as_labels(y_true)
    scores = _as_scores(y_score, labels.size, "y_score")
    _both_classes(labels, "roc_auc")
    ranks = rankdata(scores)  # average ranks, so tied pairs contribute 1/2
    positives = labels == 1
    n_pos = int(positives.sum())
    n_neg = labels.size - n_pos
    rank_sum = float(ranks[positives].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def gini(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Gini coefficient (accuracy ratio) = 2 * AUC - 1."""
    return 2.0 * roc_auc(y_true, y_score) - 1.0


def ks_statistic(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Kolmogorov-Smirnov statistic: max over thresholds t of |F_bad(t) - F_good(t)|.

    ``F_bad(t)`` and ``F_good(t)`` are the shares of bads and goods with score <= t; thresholds
    are the distinct score values, so tied scores are never split.
    """
    labels = _as_labels(y_true)
    scores = _as_scores(y_score, labels.size, "y_score")
    _both_classes(labels, "ks_statistic")
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    cumulative_bads = np.cumsum(sorted_labels) / sorted_labels.sum()
    cumulative_goods = np.cumsum(1 - sorted_labels) / (sorted_labels.size - sorted_labels.sum())
    # evaluate only at the last position of each distinct score (the step of the ECDF)
    last_of_value = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    return float(np.max(np.abs(cumulative_bads[last_of_value] - cumulative_goods[last_of_value])))


# --------------------------------------------------------------------------- calibration


def brier_score(y_true: ArrayLike, y_prob: ArrayLike) -> float:
    """Mean squared error of the predicted probability: mean((p - y)^2)."""
    labels = _as_labels(y_true)
    probs = _as_probabilities(y_prob, labels.size)
    return float(np.mean((probs - labels) ** 2))


def log_loss(y_true: ArrayLike, y_prob: ArrayLike, clip: float = LOG_LOSS_CLIP) -> float:
    """Mean negative log-likelihood; probabilities are clipped to [clip, 1 - clip]."""
    labels = _as_labels(y_true)
    probs = np.clip(_as_probabilities(y_prob, labels.size), clip, 1.0 - clip)
    return float(-np.mean(labels * np.log(probs) + (1 - labels) * np.log(1.0 - probs)))


def _probability_bins(
    probs: NDArray[np.float64], n_bins: int, strategy: str
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Bin index per probability and the bin edges (outer edges 0 and 1)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    if strategy == "quantile":
        inner = np.unique(np.quantile(probs, np.linspace(0.0, 1.0, n_bins + 1)[1:-1]))
    elif strategy == "uniform":
        inner = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    else:
        raise ValueError(f"strategy must be 'quantile' or 'uniform', got {strategy!r}")
    # right-closed intervals (lo, hi]; the first bin also holds its lower edge
    index = np.searchsorted(inner, probs, side="left")
    edges = np.r_[0.0, inner, 1.0]
    return index, edges


def reliability_table(
    y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 10, strategy: str = "quantile"
) -> pd.DataFrame:
    """Predicted vs observed roll rate per probability band (empty bands are left out).

    Returns columns ``bin`` (1 = lowest probabilities), ``lower``, ``upper`` (band edges),
    ``n``, ``mean_predicted``, ``observed_rate`` and ``gap`` (observed - predicted).
    ``strategy="quantile"`` makes bands of equal size, ``"uniform"`` of equal width on [0, 1].
    """
    labels = _as_labels(y_true)
    probs = _as_probabilities(y_prob, labels.size)
    index, edges = _probability_bins(probs, n_bins, strategy)
    frame = pd.DataFrame({"bin": index + 1, "label": labels, "prob": probs})
    table = (
        frame.groupby("bin", sort=True)
        .agg(n=("label", "size"), mean_predicted=("prob", "mean"), observed_rate=("label", "mean"))
        .reset_index()
    )
    table.insert(1, "lower", edges[table["bin"].to_numpy() - 1])
    table.insert(2, "upper", edges[table["bin"].to_numpy()])
    table["n"] = table["n"].astype(np.int64)
    table["gap"] = table["observed_rate"] - table["mean_predicted"]
    return table


def expected_calibration_error(
    y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 10, strategy: str = "quantile"
) -> float:
    """ECE = sum over bands b of (n_b / N) * |observed_rate_b - mean_predicted_b|.

    The bands of :func:`reliability_table`; computed as ``sum_b |sum_{i in b} (y_i - p_i)| / N``
    (the same value) without building the table: the calibration choice bootstraps it
    hundreds of times (:mod:`rollrisk.models.calibration`).
    """
    labels = _as_labels(y_true)
    probs = _as_probabilities(y_prob, labels.size)
    index, _ = _probability_bins(probs, n_bins, strategy)
    residual = np.bincount(index, weights=labels - probs)
    return float(np.abs(residual).sum() / labels.size)


SMOOTH_ECE_GRID = 1001  # nodes of [0, 1] the kernel smoothing is evaluated on (step 0.001)


def _reflected_smoothing(mass: NDArray[np.float64], sigma: float) -> NDArray[np.float64]:
    """``mass`` on the nodes of [0, 1] smoothed by a Gaussian of width ``sigma`` reflected at 0
    and 1 (``K(t, s) = g(t - s) + g(t + s) + g(t - (2 - s))``, so no mass leaks outside
    [0, 1]): a convolution of the mass and its two mirror images, read on [0, 1]."""
    nodes = mass.size
    step = 1.0 / (nodes - 1)
    extended = np.zeros(3 * nodes - 2)
    index = np.arange(nodes)
    origin = nodes - 1  # position of node 0 in the extended array
    np.add.at(extended, origin + index, mass)
    np.add.at(extended, origin - index, mass)  # mirror image about 0
    np.add.at(extended, origin + 2 * (nodes - 1) - index, mass)  # mirror image about 1
    reach = int(min(np.ceil(8.0 * sigma / step), 2 * nodes))
    offsets = np.arange(-reach, reach + 1) * step
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2) / (sigma * np.sqrt(2.0 * np.pi))
    smoothed = np.convolve(extended, kernel, mode="same")
    return smoothed[origin : origin + nodes]


def smooth_calibration_error(
    y_true: ArrayLike, y_prob: ArrayLike, bandwidth: float | None = None
) -> float:
    """Smooth ECE (Blasiok and Nakkiran, 2023): the calibration error with kernel smoothing
    in place of bins, so no choice of bin edges can hide or create a gap.

    ``smECE_s = integral over t in [0, 1] of | (1/N) sum_i K_s(t, p_i) (y_i - p_i) | dt``, with
    ``K_s`` a Gaussian kernel of width ``s`` reflected at 0 and 1: the smoothed residual
    (observed minus predicted) weighted by the smoothed density of the predictions. A constant
    miscalibration ``d`` gives ``|d|``, as the binned ECE does. ``bandwidth=None`` uses the
    paper's self-tuning width, the fixed point ``smECE_s = s`` (found by bisection; the error
    decreases as the width grows), so a larger miscalibration is read at a coarser scale.
    Predictions are placed on a grid of step 0.001 first.
    """
    labels = _as_labels(y_true)
    probs = _as_probabilities(y_prob, labels.size)
    if bandwidth is not None and not bandwidth > 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    grid = np.linspace(0.0, 1.0, SMOOTH_ECE_GRID)
    nodes = np.rint(probs * (SMOOTH_ECE_GRID - 1)).astype(np.intp)
    residual = np.bincount(nodes, weights=labels - probs, minlength=SMOOTH_ECE_GRID) / labels.size
    step = grid[1] - grid[0]

    def error_at(sigma: float) -> float:
        return float(np.sum(np.abs(_reflected_smoothing(residual, sigma))) * step)

    if bandwidth is not None:
        return error_at(bandwidth)
    low, high = 1e-3, 1.0  # at s = 1e-3 (the grid step) the error exceeds s unless it is ~0
    if error_at(low) <= low:
        return error_at(low)
    for _ in range(30):  # the width to within 1e-9
        middle = 0.5 * (low + high)
        if error_at(middle) > middle:
            low = middle
        else:
            high = middle
    return error_at(high)


# --------------------------------------------------------------------------- lift and gains


def lift_table(y_true: ArrayLike, y_score: ArrayLike, n_bins: int = 10) -> pd.DataFrame:
    """Lift and gains by score band; band 1 holds the riskiest (highest-score) accounts.

    Accounts are ordered by score, highest first, and cut into ``n_bins`` groups of equal size
    (sizes differ by at most one; tied scores on a cut are split in a stable order). Columns:
    ``decile``, ``n``, ``min_score``, ``max_score``, ``bads``, ``bad_rate``,
    ``cumulative_bads_share`` (gains: share of all bads caught in bands 1..k), ``lift``
    (bad rate / overall bad rate) and ``cumulative_lift`` (bad rate of bands 1..k / overall).
    """
    labels = _as_labels(y_true)
    scores = _as_scores(y_score, labels.size, "y_score")
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    n_bins = min(n_bins, labels.size)
    order = np.argsort(-scores, kind="stable")
    rows = []
    for decile, positions in enumerate(np.array_split(order, n_bins), start=1):
        band_labels = labels[positions]
        band_scores = scores[positions]
        rows.append(
            {
                "decile": decile,
                "n": int(band_labels.size),
                "min_score": float(band_scores.min()),
                "max_score": float(band_scores.max()),
                "bads": int(band_labels.sum()),
            }
        )
    table = pd.DataFrame(rows)
    total_bads = int(labels.sum())
    base_rate = total_bads / labels.size
    table["bad_rate"] = table["bads"] / table["n"]
    cumulative_bads = table["bads"].cumsum()
    cumulative_n = table["n"].cumsum()
    with np.errstate(divide="ignore", invalid="ignore"):
        table["cumulative_bads_share"] = cumulative_bads / total_bads if total_bads else np.nan
        table["lift"] = table["bad_rate"] / base_rate if base_rate else np.nan
        table["cumulative_lift"] = (
            (cumulative_bads / cumulative_n) / base_rate if base_rate else np.nan
        )
    return table


# --------------------------------------------------------------------------- stability


@dataclass(frozen=True)
class PsiResult:
    """Population stability index with its per-bin breakdown.

    ``bin_edges`` (outer edges -inf and +inf) can be passed back to
    :func:`population_stability_index` to score a later period against the same bins.
    """

    value: float
    table: pd.DataFrame
    bin_edges: NDArray[np.float64]

    @property
    def verdict(self) -> str:
        return psi_verdict(self.value)


def psi_verdict(value: float) -> str:
    """'stable' below 0.1, 'watch' from 0.1 to 0.25, 'act' above 0.25."""
    if not np.isfinite(value):
        raise ValueError(f"PSI must be a finite number, got {value!r}")
    if value < PSI_STABLE_BELOW:
        return "stable"
    if value <= PSI_ACT_ABOVE:
        return "watch"
    return "act"


def _finite_values(values: ArrayLike, name: str) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: PSI needs at least one value on each side")
    if not np.isfinite(array).all():
        raise ValueError(
            f"{name} contains {int((~np.isfinite(array)).sum())} missing or infinite values"
        )
    return array


def population_stability_index(
    expected: ArrayLike,
    actual: ArrayLike,
    n_bins: int = 10,
    epsilon: float = 1e-4,
    bin_edges: ArrayLike | None = None,
) -> PsiResult:
    """PSI = sum over bins of (actual_share - expected_share) * ln(actual_share / expected_share).

    The bins are FIXED by ``expected`` (the training / reference distribution): inner edges are
    its quantiles at 1/n_bins, 2/n_bins, ... (duplicates removed, so a heavily tied score gets
    fewer bins) and the outer edges are -inf and +inf, so every actual value falls in a bin.
    Bins are right-closed, (lower, upper]. A bin that is empty on either side gets share
    ``epsilon`` instead of 0, so it is never dropped and its drift still counts. Pass
    ``bin_edges`` (e.g. ``training_result.bin_edges``) to reuse the training bins; ``expected``
    then only supplies the expected shares.
    """
    expected_values = _finite_values(expected, "expected")
    actual_values = _finite_values(actual, "actual")
    if epsilon <= 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    if bin_edges is None:
        if n_bins < 1:
            raise ValueError(f"n_bins must be at least 1, got {n_bins}")
        quantiles = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
        inner = np.unique(np.quantile(expected_values, quantiles))
        edges = np.r_[-np.inf, inner, np.inf]
    else:
        edges = np.asarray(bin_edges, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2:
            raise ValueError("bin_edges must be a 1-D array with at least two edges")
        if np.any(np.diff(edges) <= 0):
            raise ValueError("bin_edges must be strictly increasing")
        if edges[0] != -np.inf or edges[-1] != np.inf:
            raise ValueError(
                "bin_edges must start at -inf and end at +inf so no value falls outside"
            )
    inner_edges = edges[1:-1]
    n_total_bins = edges.size - 1
    expected_counts = np.bincount(
        np.searchsorted(inner_edges, expected_values, side="left"), minlength=n_total_bins
    )
    actual_counts = np.bincount(
        np.searchsorted(inner_edges, actual_values, side="left"), minlength=n_total_bins
    )
    expected_share = np.maximum(expected_counts / expected_values.size, epsilon)
    actual_share = np.maximum(actual_counts / actual_values.size, epsilon)
    contribution = (actual_share - expected_share) * np.log(actual_share / expected_share)
    table = pd.DataFrame(
        {
            "bin": np.arange(1, n_total_bins + 1),
            "lower_edge": edges[:-1],
            "upper_edge": edges[1:],
            "expected_count": expected_counts.astype(np.int64),
            "actual_count": actual_counts.astype(np.int64),
            "expected_share": expected_share,
            "actual_share": actual_share,
            "contribution": contribution,
        }
    )
    return PsiResult(value=float(contribution.sum()), table=table, bin_edges=edges)


# --------------------------------------------------------------------------- summaries


HEADLINE_METRICS: tuple[str, ...] = ("auc", "gini", "ks", "brier", "log_loss", "ece")
"""The quality metrics of one probability column, in reporting order (ranking, then
calibration): every table, gap and log of model quality uses this list."""
METRIC_COLUMNS: tuple[str, ...] = (
    "n",
    "positives",
    "base_rate",
    "mean_predicted",
    *HEADLINE_METRICS,
)
"""The columns of a metrics table: the sample, then :data:`HEADLINE_METRICS`."""


def binary_metrics(y_true: ArrayLike, y_prob: ArrayLike, n_bins: int = 10) -> dict[str, float]:
    """All headline metrics of one probability column.

    Keys: auc, gini, ks, brier, log_loss, ece, n, positives, base_rate, mean_predicted.
    When ``y_true`` holds a single class, auc, gini and ks are NaN (they are undefined) while
    the calibration metrics are still computed.
    """
    labels = _as_labels(y_true)
    probs = _as_probabilities(y_prob, labels.size)
    positives = int(labels.sum())
    has_both_classes = 0 < positives < labels.size
    auc = roc_auc(labels, probs) if has_both_classes else float("nan")
    return {
        "n": float(labels.size),
        "positives": float(positives),
        "base_rate": positives / labels.size,
        "mean_predicted": float(probs.mean()),
        "auc": auc,
        "gini": 2.0 * auc - 1.0,
        "ks": ks_statistic(labels, probs) if has_both_classes else float("nan"),
        "brier": brier_score(labels, probs),
        "log_loss": log_loss(labels, probs),
        "ece": expected_calibration_error(labels, probs, n_bins=n_bins),
    }


def metrics_by_slice(
    frame: pd.DataFrame,
    label_col: str,
    prob_col: str,
    slice_cols: Sequence[str],
    n_bins: int = 10,
) -> pd.DataFrame:
    """Headline metrics overall and for each value of each slice column.

    Needs columns ``label_col`` (0/1), ``prob_col`` (probabilities) and every ``slice_cols``.
    Returns one row ``slice="overall", value="all"`` then one row per (slice column, value),
    values sorted, with the columns of :func:`binary_metrics`. A slice with a single class gets
    NaN auc / gini / ks instead of an error; rows with a missing slice value form the value
    ``"(missing)"``.
    """
    if isinstance(slice_cols, str):
        raise ValueError("slice_cols must be a sequence of column names, not a single string")
    missing = [
        column for column in (label_col, prob_col, *slice_cols) if column not in frame.columns
    ]
    if missing:
        raise ValueError(
            f"metrics_by_slice: column(s) {missing} not in frame (has {list(frame.columns)})"
        )
    labels = frame[label_col].to_numpy()
    probs = frame[prob_col].to_numpy(dtype=np.float64)
    rows = [{"slice": "overall", "value": "all", **binary_metrics(labels, probs, n_bins)}]
    for column in slice_cols:
        values = frame[column].astype("object").where(frame[column].notna(), "(missing)")
        for value in sorted(values.unique(), key=str):
            mask = (values == value).to_numpy()
            rows.append(
                {
                    "slice": column,
                    "value": str(value),
                    **binary_metrics(labels[mask], probs[mask], n_bins),
                }
            )
    table = pd.DataFrame(rows)
    table["n"] = table["n"].astype(np.int64)
    table["positives"] = table["positives"].astype(np.int64)
    return table[["slice", "value", *METRIC_COLUMNS]]
