"""Unit tests of the model comparison and the evaluation report writer."""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from rollrisk.models.evaluation import (
    evaluate_models,
    plot_gains,
    plot_reliability,
    plot_score_distributions,
)
from rollrisk.models.training import comparison_metrics
from rollrisk.reports.evaluation import write_evaluation_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny_frame() -> pd.DataFrame:
    """Eight observations; 'good' ranks perfectly, 'flat' not at all; agri_loan has no default."""
    return pd.DataFrame(
        {
            "rolled_to_default": [1, 1, 0, 0, 1, 0, 0, 0],
            "p_good": [0.9, 0.8, 0.3, 0.2, 0.7, 0.1, 0.2, 0.1],
            "p_good_raw": [0.99, 0.95, 0.6, 0.5, 0.9, 0.4, 0.5, 0.4],
            "p_flat": [0.3] * 8,
            "product": [
                "bnpl",
                "bnpl",
                "bnpl",
                "bnpl",
                "cash_loan",
                "cash_loan",
                "agri_loan",
                "agri_loan",
            ],
            "start_bucket": ["M1", "M2", "M1", "M2", "M3", "M1", "M1", "M2"],
        }
    )


def compare_tiny() -> object:
    frame = tiny_frame()
    return evaluate_models(
        frame,
        "rolled_to_default",
        {"lightgbm": "p_good", "lightgbm_uncalibrated": "p_good_raw", "roll_rate_chain": "p_flat"},
        reference_probs={
            "lightgbm": frame["p_good"].to_numpy(),
            "roll_rate_chain": np.linspace(0, 1, 8),
        },
        n_bins=2,
    )


def test_overall_metrics_on_a_tiny_known_frame() -> None:
    comparison = compare_tiny()
    overall = comparison.overall
    assert list(overall.index) == ["lightgbm", "lightgbm_uncalibrated", "roll_rate_chain"]
    assert overall.loc["lightgbm", "auc"] == pytest.approx(1.0)
    assert overall.loc["roll_rate_chain", "auc"] == pytest.approx(0.5)
    assert overall.loc["lightgbm", "ks"] == pytest.approx(1.0)
    labels = tiny_frame()["rolled_to_default"].to_numpy()
    probs = tiny_frame()["p_good"].to_numpy()
    assert overall.loc["lightgbm", "brier"] == pytest.approx(np.mean((probs - labels) ** 2))
    assert overall.loc["lightgbm", "n"] == 8 and overall.loc["lightgbm", "positives"] == 3
    gaps = comparison.gaps().set_index("model")
    assert gaps.loc["roll_rate_chain", "auc_gap"] == pytest.approx(0.5)
    expected_brier_gap = np.mean((probs - labels) ** 2) - np.mean((0.3 - labels) ** 2)
    assert gaps.loc["roll_rate_chain", "brier_gap"] == pytest.approx(expected_brier_gap)


def test_slices_lift_and_stability() -> None:
    comparison = compare_tiny()
    by_slice = comparison.by_slice
    agri = by_slice.loc[
        (by_slice["model"] == "lightgbm") & (by_slice["value"] == "agri_loan")
    ].iloc[0]
    assert math.isnan(agri["auc"])  # a single-class slice is reported, not an error
    assert agri["n"] == 2
    assert set(by_slice["slice"]) == {"product", "start_bucket"}
    lift = comparison.lift["lightgbm"]
    assert lift["bads"].tolist() == [3, 0]  # the perfect ranker puts all defaults in the top half
    assert lift["cumulative_bads_share"].iloc[0] == pytest.approx(1.0)
    stability = comparison.stability.set_index("model")
    assert stability.loc["lightgbm", "psi"] == pytest.approx(0.0, abs=1e-12)
    assert stability.loc["roll_rate_chain", "psi"] > 1.0  # all scores pile into one bin
    # 8 rows are too few to judge (found by an attacker: 25 rows were told `act`)
    assert set(stability["verdict"]) == {"too few"}
    assert "lightgbm_uncalibrated" not in stability.index


def test_a_psi_is_judged_against_the_noise_of_its_sizes() -> None:
    from rollrisk.models.evaluation import _psi_judged
    from rollrisk.models.metrics import population_stability_index

    rng = np.random.default_rng(0)
    reference = rng.uniform(size=5_000)
    same = population_stability_index(reference, rng.uniform(size=2_000))
    assert _psi_judged(same, 2_000) == "stable"
    piled = population_stability_index(reference, np.full(2_000, 0.5))
    assert piled.value > 0.25 and _psi_judged(piled, 2_000) == "act"
    few = rng.uniform(size=60)  # a PSI above 0.25 that 60 rows reach by chance
    noisy = population_stability_index(reference, few)
    assert _psi_judged(noisy, 60) in {"stable", "watch", "within noise"}
    assert _psi_judged(piled, 49) == "too few"


def test_slice_gaps_compare_the_primary_with_each_model_within_each_slice() -> None:
    gaps = compare_tiny().slice_gaps("start_bucket")
    assert set(gaps["model"]) == {"lightgbm_uncalibrated", "roll_rate_chain"}
    chain = gaps[gaps["model"] == "roll_rate_chain"].set_index("value")
    # M1 and M2: the perfect ranker against a flat score; M3 holds one default only
    assert chain.loc["M1", "auc_gap"] == pytest.approx(0.5)
    assert chain.loc["M2", "primary_auc"] == pytest.approx(1.0)
    assert chain.loc["M2", "model_auc"] == pytest.approx(0.5)
    assert math.isnan(chain.loc["M3", "auc_gap"])
    assert chain.loc["M1", "n"] == 4
    labels, probs = np.array([1, 0, 0, 0]), np.array([0.9, 0.3, 0.1, 0.2])
    assert chain.loc["M1", "brier_gap"] == pytest.approx(
        np.mean((probs - labels) ** 2) - np.mean((0.3 - labels) ** 2)
    )
    with pytest.raises(ValueError, match="unknown slice 'segment'"):
        compare_tiny().slice_gaps("segment")


def test_the_per_slice_margins_are_logged_as_metrics() -> None:
    metrics = comparison_metrics(compare_tiny())
    assert metrics["oot_auc_gap_vs_roll_rate_chain.start_bucket.M1"] == pytest.approx(0.5)
    assert metrics["oot_auc_gap_vs_roll_rate_chain"] == pytest.approx(0.5)
    assert "oot_brier_gap_vs_roll_rate_chain.product.bnpl" in metrics
    # an undefined AUC (M3: one default, no other row) is left out, not logged as NaN
    assert "oot_auc_gap_vs_roll_rate_chain.start_bucket.M3" not in metrics


def test_the_report_names_the_slices_where_the_primary_ranks_worse(tmp_path: Path) -> None:
    frame = tiny_frame()
    comparison = evaluate_models(
        frame,
        "rolled_to_default",
        {"lightgbm": "p_good", "roll_rate_chain": "p_flat"},
        primary_model="roll_rate_chain",
    )
    write_evaluation_report(comparison, tmp_path, "Flat primary", {})
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert (
        "**roll_rate_chain** ranks worse (AUC) than **lightgbm** in `M1` (-0.5000); "
        "**lightgbm** in `M2` (-0.5000)." in markdown
    )


def test_evaluate_models_names_missing_columns_and_unknown_models() -> None:
    frame = tiny_frame()
    with pytest.raises(ValueError, match="column\\(s\\) \\['p_missing'\\] not in frame"):
        evaluate_models(frame, "rolled_to_default", {"lightgbm": "p_missing"})
    with pytest.raises(ValueError, match="reference_probs has models \\['xgboost'\\]"):
        evaluate_models(
            frame,
            "rolled_to_default",
            {"lightgbm": "p_good"},
            reference_probs={"xgboost": np.ones(3)},
        )
    with pytest.raises(ValueError, match="prob_cols is empty"):
        evaluate_models(frame, "rolled_to_default", {})


def test_plots_return_figures() -> None:
    comparison = compare_tiny()
    for plot in (plot_reliability, plot_gains, plot_score_distributions):
        figure = plot(comparison)
        assert isinstance(figure, Figure)
        assert len(figure.axes) >= 1
        assert len(figure.axes[0].lines) + len(figure.axes[0].patches) > 0
    with pytest.raises(ValueError, match="unknown model\\(s\\) \\['nope'\\]"):
        plot_gains(comparison, models=["nope"])


def test_report_has_every_section_and_embedded_images(tmp_path: Path) -> None:
    comparison = compare_tiny()
    context = {
        "data": "portfolio runs/demo/portfolio (snapshot 2024-12-31)",
        "split": "out-of-time: train as-of <= 2024-06-30, test 2024-07-31 .. 2024-09-30",
        "as_of_dates": "2024-07-31, 2024-08-31, 2024-09-30",
    }
    html_path = write_evaluation_report(
        comparison, tmp_path / "report", "Roll-to-default evaluation", context
    )
    assert html_path == tmp_path / "report" / "report.html"
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)
    assert headings == [
        "Roll-to-default evaluation",
        "Data, split and dates",
        "Models side by side",
        "Gaps",
        "Gaps by `product`",
        "Gaps by `start_bucket`",
        "Calibration",
        "Lift and gains",
        "Per-slice metrics",
        "Score stability (PSI)",
    ]
    assert "train as-of <= 2024-06-30" in markdown
    assert "**lightgbm** vs **roll_rate_chain**: AUC gap +0.5000" in markdown
    assert "Calibration of **lightgbm** (before -> after)" in markdown
    assert (
        "**lightgbm** ranks no worse than any other model in any `start_bucket` where AUC is "
        "defined" in markdown
    )
    assert "| roll_rate_chain | 4.6043 | too few |" in markdown  # 8 rows: not judged
    for name in ("reliability.png", "gains.png", "score_distributions.png"):
        assert (tmp_path / "report" / name).read_bytes().startswith(PNG_MAGIC)
        assert f"]({name})" in markdown

    page = html_path.read_text(encoding="utf-8")
    for heading in headings[1:]:
        assert heading in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3
    assert all(base64.b64decode(image).startswith(PNG_MAGIC) for image in images)
    assert "http://" not in page and "https://" not in page  # self-contained, no network
    assert "<strong>lightgbm</strong>" in page


def test_report_without_context_or_references(tmp_path: Path) -> None:
    frame = tiny_frame()
    comparison = evaluate_models(frame, "rolled_to_default", {"lightgbm": "p_good"}, slice_cols=())
    write_evaluation_report(comparison, tmp_path, "Single model", {})
    markdown = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "No context was given" in markdown
    assert "No reference scores were given" in markdown
    assert "Only one model was evaluated." in markdown


def test_a_paired_comparison_finds_the_better_model_and_resamples_accounts():
    from rollrisk.models.evaluation import paired_comparison

    rng = np.random.default_rng(1)
    accounts = np.repeat(np.arange(1_000), 4)  # four months an account
    signal = np.repeat(rng.normal(size=1_000), 4) + rng.normal(scale=0.3, size=4_000)
    labels = (signal + rng.normal(size=4_000) > 1).astype(int)
    sharp = 1 / (1 + np.exp(-(signal - 1)))
    blurred = 1 / (1 + np.exp(-(0.3 * signal + rng.normal(scale=0.5, size=4_000) - 1)))
    compared = paired_comparison(labels, sharp, blurred, accounts)
    assert compared.rows == 4_000 and compared.accounts == 1_000
    low, high = compared.interval["auc"]
    assert 0 < low < compared.difference["auc"] < high  # better, beyond the noise
    low, high = compared.interval["brier"]
    assert low < compared.difference["brier"] < high < 0  # a lower Brier score
    # the other way round: the same figures with the sign turned
    reverse = paired_comparison(labels, blurred, sharp, accounts)
    assert reverse.difference["auc"] == pytest.approx(-compared.difference["auc"])
    # the same seed, the same interval: reproducible
    assert paired_comparison(labels, sharp, blurred, accounts).interval == compared.interval
