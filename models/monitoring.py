"""Is the population the model scores still the one it was trained on, and do its scores hold?

Pure functions (no I/O) behind ``rollrisk monitor``:

* :func:`monitoring_reference`: the population a model is monitored against, chosen when it is
  trained: its latest :data:`REFERENCE_MONTHS` labelled as-of months, not the whole training
  period. A pooled training period differs from any single later as-of by construction (its
  oldest months lack the 12-month look-back of the history features, and a book seasons:
  months on book grow, roll rates move), so against it an unchanged portfolio "drifted";
* :func:`score_stability`: PSI of the score, reference scores against today's, on bins fixed
  by the reference (:func:`rollrisk.models.metrics.population_stability_index`).
* :func:`feature_stability`: CSI of every feature of the feature set, on bins fixed by the
  reference frame: numeric features on the reference's quantile edges, categorical
  features on the reference's categories plus an ``other/unseen`` bin; missing values are a bin
  of their own in both cases, so a feature that starts going missing shows up as drift instead
  of being dropped. Empty bins get a small epsilon share, never removed.
* :func:`backtest`: once the performance window of an as-of has passed, realised roll rate
  against mean predicted probability per risk band, with a Wilson 95% interval
  (:func:`rollrisk.models.stats.calibration_backtest`, bands by the policy's rule
  :func:`rollrisk.models.risk_bands.risk_band`), and a verdict per band.
* :func:`judge_stability`: the verdict on one PSI or CSI, aware of the sample sizes: a value
  above the practical threshold (``act``) alerts only if sampling noise alone would exceed it
  with less than the given probability (:func:`rollrisk.models.stats.stability_noise`), and a
  population smaller than ``min_population`` is reported, never judged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from rollrisk.features.registry import FeatureSet, FeatureSpec
from rollrisk.models.metrics import (
    PSI_STABLE_BELOW,
    PsiResult,
    population_stability_index,
    psi_verdict,
)
from rollrisk.models.risk_bands import RiskBands, risk_band
from rollrisk.models.stats import calibration_backtest, stability_noise

STABILITY_BINS = 10
EPSILON = 1e-4  # share given to an empty bin (as in population_stability_index)
MISSING_BIN = "missing"
UNSEEN_BIN = "other/unseen"
# The reference: a model's latest labelled as-of months (the months just before it is used,
# with the longest look-back its history has), sampled to at most this many rows.
REFERENCE_MONTHS = 3
REFERENCE_SAMPLE_ROWS = 50_000
NOISE_SEED = 0  # the noise simulation's stream: the same inputs always get the same verdict

# Verdicts of a PSI or CSI (judge_stability); only ACT raises an alert.
STABLE, WATCH, ACT, WITHIN_NOISE, TOO_FEW = "stable", "watch", "act", "within noise", "too few"
# a feature counted in days to the as-of, monitored at an as-of that is not a month-end: the
# reference holds month-end rows, so its distribution differs by the day of the month alone
NOT_AT_MONTH_END = "not judged mid-month"

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

    ``summary`` columns: ``feature, kind, csi, verdict, bins``, ``empty_bins_actual`` (bins
    that held reference rows and hold none today), ``missing_share_expected,
    missing_share_actual, unseen_share_actual``, sorted by CSI, highest first. ``bins``
    columns: :data:`BIN_COLUMNS`.
    """

    summary: pd.DataFrame
    bins: pd.DataFrame


def monitoring_reference(
    labelled: Sequence[pd.DataFrame],
    feature_set: FeatureSet,
    seed: int,
    months: int = REFERENCE_MONTHS,
) -> pd.DataFrame:
    """The rows a model is monitored against: its latest ``months`` labelled as-of months.

    ``labelled``: the labelled rows of the training set, in any number of parts (e.g. the
    train, validation and test parts of a split); each needs ``as_of``, ``product``,
    ``start_bucket`` and the feature set's columns. Returns those columns of the rows whose
    as-of is among the ``months`` latest, at most :data:`REFERENCE_SAMPLE_ROWS` of them
    (sampled with ``seed``), sorted by as-of. ``as_of`` is kept: the monitor reports which
    months it compares with, and a sample without it is recognised as an older model's pooled
    training sample.
    """
    columns = list(dict.fromkeys(["as_of", "product", "start_bucket", *feature_set.names]))
    rows = _latest_months(labelled, columns, months)
    if len(rows) > REFERENCE_SAMPLE_ROWS:
        rows = rows.sample(n=REFERENCE_SAMPLE_ROWS, random_state=seed)
    return rows.sort_values("as_of", kind="stable").reset_index(drop=True)


def reference_population(
    labelled: Sequence[pd.DataFrame], months: int = REFERENCE_MONTHS
) -> dict[str, int]:
    """The accounts of each as-of month of :func:`monitoring_reference`, counted before it
    samples them: the population size ``rollrisk monitor`` compares today's with."""
    rows = _latest_months(labelled, ["as_of"], months)
    counts = pd.to_datetime(rows["as_of"]).dt.date.value_counts().sort_index()
    return {str(day): int(count) for day, count in counts.items()}


def _latest_months(
    labelled: Sequence[pd.DataFrame], columns: list[str], months: int
) -> pd.DataFrame:
    """``columns`` of the rows of ``labelled`` whose as-of is among the ``months`` latest."""
    if months < 1:
        raise ValueError(f"months must be at least 1, got {months}")
    parts = [part[columns] for part in labelled if len(part)]
    if not parts:
        raise ValueError("no labelled row to take the monitoring reference from")
    rows = pd.concat(parts, ignore_index=True)
    as_of = pd.to_datetime(rows["as_of"])
    latest = np.sort(as_of.unique())[-months:]
    return rows[as_of.isin(latest).to_numpy()]


@dataclass(frozen=True)
class PopulationChange:
    """Today's population against the reference's accounts per month (:func:`population_change`).

    ``verdict``: ``act`` (alerts) when today's count is below ``1 - change_act`` times the
    reference's mean or above ``1 / (1 - change_act)`` times it (halved or doubled at 0.5);
    ``within`` otherwise; ``not judged`` when the reference's mean is under
    ``min_population`` (too few to tell a change from the month's own noise)."""

    today: int
    reference_mean: float
    reference_months: int
    ratio: float
    verdict: str

    def sentence(self) -> str:
        change = self.ratio - 1.0
        accounts = "account" if self.today == 1 else "accounts"
        return (
            f"{self.today:,} delinquent {accounts} today against {self.reference_mean:,.0f} a month "
            f"in the reference ({self.reference_months} month{'s' * (self.reference_months > 1)}"
            f"): {change:+.0%}"
        )


def population_band(change_act: float) -> tuple[float, float]:
    """The ratios of today's population to the reference's within which its size does not
    alert: ``1 - change_act`` to ``1 / (1 - change_act)`` (halved to doubled at 0.5)."""
    return 1.0 - change_act, 1.0 / (1.0 - change_act)


def population_band_text(change_act: float) -> str:
    """:func:`population_band` in words: ``50%-200%``."""
    low, high = population_band(change_act)
    return f"{low:.0%}-{high:.0%}"


def population_change(
    today: int, reference: dict[str, int], change_act: float, min_population: int
) -> PopulationChange:
    """Judge how far today's delinquent population moved from the reference's per month."""
    mean = sum(reference.values()) / len(reference)
    ratio = today / mean
    low, high = population_band(change_act)
    if mean < min_population:
        verdict = "not judged"
    elif not low <= ratio <= high:
        verdict = "act"
    else:
        verdict = "within"
    return PopulationChange(today, mean, len(reference), ratio, verdict)


def score_stability(
    reference: ArrayLike, current: ArrayLike, n_bins: int = STABILITY_BINS
) -> PsiResult:
    """PSI of the score: ``reference`` (the reference population's scores) fixes the bins."""
    return population_stability_index(reference, current, n_bins=n_bins, epsilon=EPSILON)


@dataclass(frozen=True)
class StabilityVerdict:
    """The verdict on one PSI or CSI (:func:`judge_stability`).

    ``verdict``: one of ``stable``, ``watch``, ``act`` (the only one that alerts), ``within
    noise`` (above ``act`` but no more than sampling noise gives at these sizes) and ``too few``
    (population under ``min_population``: not judged). ``noise_expected`` and ``noise_critical``:
    the mean PSI of two samples of one distribution at these sizes, and the value such noise
    exceeds with probability ``level``; computed when the verdict depends on them (a value
    above ``act``) or when asked, else None.
    """

    value: float
    verdict: str
    threshold: float
    noise_expected: float | None
    noise_critical: float | None

    @property
    def alert(self) -> bool:
        return self.verdict == ACT


def judge_stability(
    value: float,
    reference_counts: ArrayLike,
    current_size: int,
    act: float,
    level: float,
    min_population: int,
    always_noise: bool = False,
) -> StabilityVerdict:
    """Judge a PSI or CSI against the practical threshold and the noise of these sample sizes.

    ``reference_counts``: the reference's rows per bin of this PSI (its total is the reference
    size); ``current_size``: the rows judged; ``act``: the practical threshold (a change this
    large matters); ``level``: the probability with which sampling noise alone may raise the
    alert (the caller divides its overall false-alarm rate among its checks). ``act`` if
    ``value > act`` and ``value >`` the noise's critical value; ``within noise`` if above ``act``
    but not above the noise; else ``watch`` from 0.1, ``stable`` below. ``threshold`` is the
    value above which this check alerts, ``max(act, noise_critical)`` once the noise is known.
    """
    if current_size < min_population:
        return StabilityVerdict(value, TOO_FEW, math.inf, None, None)
    noise = None
    if value > act or always_noise:
        noise = stability_noise(
            reference_counts, current_size, level, epsilon=EPSILON, seed=NOISE_SEED
        )
    threshold = act if noise is None else max(act, noise.critical)
    if value > threshold:
        verdict = ACT
    elif value > act:
        verdict = WITHIN_NOISE
    elif value < PSI_STABLE_BELOW:
        verdict = STABLE
    else:
        verdict = WATCH
    return StabilityVerdict(
        value=value,
        verdict=verdict,
        threshold=threshold,
        noise_expected=None if noise is None else noise.expected,
        noise_critical=None if noise is None else noise.critical,
    )


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
                # bins that held reference rows and hold none today (a bin empty on both
                # sides, the missing one of a feature never missing, is no change)
                "empty_bins_actual": int(
                    ((table["actual_count"] == 0) & (table["expected_count"] > 0)).sum()
                ),
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
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Realised against predicted roll rate per risk band (and overall, last row).

    Needs ``probability`` (calibrated, in [0, 1]) and ``rolled_to_default`` (0/1, the matured
    outcome; rows without one must be removed by the caller). ``bands`` are (name, inclusive
    upper bound) pairs, ascending, the last bound 1.0 (the policy's ``risk_bands``).

    Returns one row per band (in band order, empty bands included) plus ``all``: ``band,
    accounts, rolled, predicted_mean, realised_rate, ci_lower, ci_upper, gap, verdict``.
    ``verdict`` is ``act`` when the predicted mean lies outside the Wilson interval of the
    realised rate at ``confidence`` (two-sided; the monitor gives each band its share of the
    run's false-alarm rate) *and* the gap exceeds ``tolerance`` (small bands cannot raise it: a
    band with fewer than ``min_accounts`` accounts is ``too few``), otherwise ``ok``.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
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
    from scipy.stats import norm  # imported here: scipy is slow to import

    table = calibration_backtest(
        probability,
        outcome.to_numpy(dtype=np.int64),
        band,
        [name for name, _ in bands],
        z=float(norm.ppf(0.5 + confidence / 2)),
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
