"""Unit tests of rollrisk.models.metrics: cross-checked against sklearn and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from rollrisk.models.metrics import (
    METRIC_COLUMNS,
    binary_metrics,
    brier_score,
    expected_calibration_error,
    gini,
    ks_statistic,
    lift_table,
    log_loss,
    metrics_by_slice,
    population_stability_index,
    psi_verdict,
    reliability_table,
    roc_auc,
)


@pytest.fixture
def random_scores() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    probs = rng.beta(2, 5, size=2_000)
    labels = (rng.random(2_000) < probs).astype(int)
    # rounded so that there are many ties, which is where hand-rolled AUCs usually go wrong
    return labels, np.round(probs, 2)


def test_roc_auc_matches_sklearn_with_ties(random_scores: tuple[np.ndarray, np.ndarray]) -> None:
    labels, probs = random_scores
    assert roc_auc(labels, probs) == pytest.approx(skm.roc_auc_score(labels, probs), abs=1e-12)
    assert gini(labels, probs) == pytest.approx(2 * skm.roc_auc_score(labels, probs) - 1, abs=1e-12)


def test_roc_auc_on_hand_computed_example() -> None:
    # pairs (bad, good): (0.8,0.1) (0.8,0.4) (0.4,0.1) win, (0.4,0.4) tie -> (3 + 0.5) / 4
    assert roc_auc([1, 1, 0, 0], [0.8, 0.4, 0.1, 0.4]) == pytest.approx(0.875)


def test_brier_and_log_loss_match_sklearn(random_scores: tuple[np.ndarray, np.ndarray]) -> None:
    labels, probs = random_scores
    assert brier_score(labels, probs) == pytest.approx(
        skm.brier_score_loss(labels, probs), abs=1e-12
    )
    clipped = np.clip(probs, 1e-15, 1 - 1e-15)
    assert log_loss(labels, probs) == pytest.approx(skm.log_loss(labels, clipped), abs=1e-10)


def test_log_loss_clips_certain_wrong_predictions() -> None:
    value = log_loss([1, 0], [0.0, 1.0])
    assert math.isfinite(value)
    assert value == pytest.approx(-math.log(1e-15), rel=1e-4)  # 1 - 1e-15 is inexact in float


def test_ks_statistic_hand_computed() -> None:
    # goods 0.1 0.2 0.3 0.6, bads 0.4 0.5 0.7 0.8: at t=0.3 F_good=3/4, F_bad=0 -> 0.75
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.6, 0.4, 0.5, 0.7, 0.8]
    assert ks_statistic(labels, scores) == pytest.approx(0.75)


def test_ks_statistic_does_not_split_tied_scores() -> None:
    # every score identical: the distributions are the same, so KS must be 0, not 0.5
    assert ks_statistic([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3]) == pytest.approx(0.0)


def test_ks_statistic_matches_roc_curve_definition(
    random_scores: tuple[np.ndarray, np.ndarray],
) -> None:
    labels, probs = random_scores
    false_positive_rate, true_positive_rate, _ = skm.roc_curve(labels, probs)
    assert ks_statistic(labels, probs) == pytest.approx(
        np.max(true_positive_rate - false_positive_rate), abs=1e-12
    )


def test_reliability_table_and_ece_on_hand_example() -> None:
    labels = [0, 0, 1, 1]
    probs = [0.1, 0.1, 0.9, 0.7]
    table = reliability_table(labels, probs, n_bins=2)
    assert list(table.columns) == [
        "bin",
        "lower",
        "upper",
        "n",
        "mean_predicted",
        "observed_rate",
        "gap",
    ]
    assert table["n"].tolist() == [2, 2]
    assert table["mean_predicted"].tolist() == pytest.approx([0.1, 0.8])
    assert table["observed_rate"].tolist() == pytest.approx([0.0, 1.0])
    # ECE = 0.5 * |0 - 0.1| + 0.5 * |1 - 0.8|
    assert expected_calibration_error(labels, probs, n_bins=2) == pytest.approx(0.15)


def test_ece_is_small_for_calibrated_and_large_for_shifted_probabilities() -> None:
    rng = np.random.default_rng(3)
    probs = rng.uniform(0.05, 0.6, size=20_000)
    labels = (rng.random(probs.size) < probs).astype(int)
    assert expected_calibration_error(labels, probs) < 0.02
    assert expected_calibration_error(labels, np.clip(probs + 0.2, 0, 1)) > 0.15


def test_lift_table_on_hand_example() -> None:
    labels = [1, 1, 0, 1, 0, 0, 0, 0, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
    table = lift_table(labels, scores, n_bins=5)
    assert table["decile"].tolist() == [1, 2, 3, 4, 5]
    assert table["bads"].tolist() == [2, 1, 0, 0, 0]
    assert table["bad_rate"].tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0, 0.0])
    assert table["cumulative_bads_share"].tolist() == pytest.approx([2 / 3, 1.0, 1.0, 1.0, 1.0])
    assert table["lift"].iloc[0] == pytest.approx(1.0 / 0.3)
    assert table["cumulative_lift"].tolist() == pytest.approx(
        [1 / 0.3, 0.75 / 0.3, 0.5 / 0.3, 0.375 / 0.3, 1.0]
    )
    assert table["max_score"].iloc[0] == pytest.approx(0.9)


def test_psi_hand_computed_with_fixed_edges() -> None:
    expected = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], dtype=float)
    actual = np.array([1, 1, 1, 2, 6, 7, 8, 9, 10, 10], dtype=float)
    result = population_stability_index(expected, actual, n_bins=2)
    # one inner edge at the median 5.5: expected 50/50, actual 40/60
    assert result.bin_edges.tolist() == [-np.inf, 5.5, np.inf]
    assert result.table["expected_share"].tolist() == pytest.approx([0.5, 0.5])
    assert result.table["actual_share"].tolist() == pytest.approx([0.4, 0.6])
    hand = (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.6 - 0.5) * math.log(0.6 / 0.5)
    assert result.value == pytest.approx(hand)
    assert result.verdict == "stable"


def test_psi_keeps_an_empty_bin_with_epsilon() -> None:
    expected = np.arange(100, dtype=float)
    actual = np.full(50, 10.0)  # everything in the lowest bins: most actual bins are empty
    result = population_stability_index(expected, actual, n_bins=10, epsilon=1e-4)
    assert len(result.table) == 10
    empty = result.table["actual_count"] == 0
    assert empty.sum() == 9
    assert np.allclose(result.table.loc[empty, "actual_share"], 1e-4)
    assert result.value > 1.0
    assert result.verdict == "act"


def test_psi_reuses_training_edges_and_dedupes_ties() -> None:
    training = np.r_[np.zeros(80), np.linspace(0.1, 1.0, 20)]  # 80% ties at 0
    first = population_stability_index(training, training, n_bins=10)
    assert first.value == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.diff(first.bin_edges) > 0)
    assert first.bin_edges[0] == -np.inf and first.bin_edges[-1] == np.inf
    later = np.linspace(0.0, 2.0, 50)  # values above the training max still land in the last bin
    second = population_stability_index(training, later, bin_edges=first.bin_edges)
    assert second.bin_edges.tolist() == first.bin_edges.tolist()
    assert second.table["actual_count"].sum() == 50


def test_psi_rejects_edges_that_do_not_cover_the_line() -> None:
    with pytest.raises(ValueError, match="start at -inf and end at \\+inf"):
        population_stability_index([1.0, 2.0], [1.0], bin_edges=[0.0, 1.5, 3.0])


@pytest.mark.parametrize(
    ("value", "verdict"),
    [(0.0, "stable"), (0.099, "stable"), (0.1, "watch"), (0.25, "watch"), (0.26, "act")],
)
def test_psi_verdict_thresholds(value: float, verdict: str) -> None:
    assert psi_verdict(value) == verdict


def test_binary_metrics_keys_and_values() -> None:
    labels = [1, 1, 0, 0]
    probs = [0.8, 0.4, 0.1, 0.4]
    result = binary_metrics(labels, probs, n_bins=2)
    assert set(result) == {
        "auc",
        "gini",
        "ks",
        "brier",
        "log_loss",
        "ece",
        "n",
        "positives",
        "base_rate",
        "mean_predicted",
    }
    assert tuple(result) == METRIC_COLUMNS  # the declared list is what the function returns
    assert result["auc"] == pytest.approx(0.875)
    assert result["gini"] == pytest.approx(0.75)
    assert result["n"] == 4 and result["positives"] == 2
    assert result["base_rate"] == pytest.approx(0.5)
    assert result["brier"] == pytest.approx(np.mean([0.04, 0.36, 0.01, 0.16]))


def test_metrics_by_slice_handles_single_class_slices() -> None:
    frame = pd.DataFrame(
        {
            "label": [1, 0, 1, 0, 0, 0],
            "prob": [0.9, 0.2, 0.7, 0.4, 0.1, 0.3],
            "product": ["bnpl", "bnpl", "bnpl", "bnpl", "agri_loan", "agri_loan"],
        }
    )
    table = metrics_by_slice(frame, "label", "prob", ["product"])
    assert table[["slice", "value"]].values.tolist() == [
        ["overall", "all"],
        ["product", "agri_loan"],
        ["product", "bnpl"],
    ]
    agri = table.loc[table["value"] == "agri_loan"].iloc[0]
    assert math.isnan(agri["auc"]) and math.isnan(agri["ks"])
    assert agri["brier"] == pytest.approx((0.01 + 0.09) / 2)
    bnpl = table.loc[table["value"] == "bnpl"].iloc[0]
    assert bnpl["auc"] == pytest.approx(1.0)
    assert table.loc[0, "n"] == 6


def test_length_mismatch_is_reported() -> None:
    with pytest.raises(ValueError, match="length mismatch: y_true has 3 values but y_score has 2"):
        roc_auc([0, 1, 0], [0.1, 0.2])


def test_non_binary_labels_are_reported() -> None:
    with pytest.raises(ValueError, match="must be binary \\(0/1\\), found other values: 2"):
        brier_score([0, 1, 2], [0.1, 0.2, 0.3])


def test_probabilities_out_of_range_are_reported() -> None:
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        log_loss([0, 1], [0.5, 1.5])


def test_auc_with_a_single_class_is_reported() -> None:
    with pytest.raises(ValueError, match="needs both classes"):
        roc_auc([0, 0, 0], [0.1, 0.2, 0.3])


def test_metrics_by_slice_names_missing_columns() -> None:
    frame = pd.DataFrame({"label": [0, 1], "prob": [0.2, 0.6]})
    with pytest.raises(ValueError, match="column\\(s\\) \\['start_bucket'\\] not in frame"):
        metrics_by_slice(frame, "label", "prob", ["start_bucket"])
