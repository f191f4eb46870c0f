"""Side-by-side evaluation of several roll-to-default scores on one labelled frame.

:func:`evaluate_models` computes, for every model (a probability column of the frame), the
headline metrics overall and per slice, the lift / gains table, the reliability table and the
PSI of its scores against reference (training) scores. The ``plot_*`` functions draw the
comparison as matplotlib Figures (Agg canvas, no pyplot state, nothing done at import). No I/O:
:mod:`rollrisk.reports.evaluation` writes the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import ArrayLike, NDArray

from rollrisk.models.metrics import (
    HEADLINE_METRICS,
    PSI_ACT_ABOVE,
    PsiResult,
    binary_metrics,
    brier_score,
    lift_table,
    metrics_by_slice,
    population_stability_index,
    reliability_table,
    roc_auc,
)
from rollrisk.models.stats import group_bootstrap_draws


def in_sample_rows(as_of: pd.Series, trained_as_of: str | None) -> tuple[int, pd.Timestamp] | None:
    """How many of the rows dated ``as_of`` are of the as-of months a model learnt from (its
    metadata's ``trained_as_of``, 'first..last'), with the last of those months; None when
    none is, or the model does not record them. Figures on such rows are in-sample."""
    if not trained_as_of or ".." not in trained_as_of:
        return None
    first, last = (pd.Timestamp(end) for end in trained_as_of.split(".."))
    dated = pd.to_datetime(as_of)
    inside = int(((dated >= first) & (dated <= last)).sum())
    return (inside, last) if inside else None


__all__ = [
    "ModelComparison",
    "PairedComparison",
    "paired_comparison",
    "evaluate_models",
    "plot_gains",
    "plot_reliability",
    "plot_score_distributions",
]


@dataclass(frozen=True)
class ModelComparison:
    """Everything a report needs to compare models on one frame.

    ``overall``: one row per model (index = model name) with the columns of
    :func:`~rollrisk.models.metrics.binary_metrics`. ``by_slice``: long table, one row per
    (model, slice, value). ``lift`` / ``reliability``: model -> table. ``stability``: one row per
    model with ``psi`` and ``verdict`` (only models with reference scores), ``psi_results``
    the full PSI breakdowns. ``scores``: the label and every model's probabilities (for plots),
    ``reference_scores``: the reference probabilities given. ``primary_model``: the model the
    others are compared against in :meth:`gaps`.
    """

    label_col: str
    models: tuple[str, ...]
    primary_model: str
    overall: pd.DataFrame
    by_slice: pd.DataFrame
    lift: Mapping[str, pd.DataFrame]
    reliability: Mapping[str, pd.DataFrame]
    stability: pd.DataFrame
    psi_results: Mapping[str, PsiResult]
    scores: pd.DataFrame
    reference_scores: Mapping[str, NDArray[np.float64]] = field(default_factory=dict)
    slice_cols: tuple[str, ...] = ()

    def gaps(self, primary: str | None = None) -> pd.DataFrame:
        """Primary model minus each other model, for AUC, Gini, KS, Brier, log loss and ECE.

        A positive ``auc_gap`` and a negative ``brier_gap`` mean the primary model is better.
        """
        primary = primary or self.primary_model
        if primary not in self.overall.index:
            raise ValueError(f"unknown model {primary!r}; models are {list(self.models)}")
        reference = self.overall.loc[primary]
        rows = []
        for model in self.models:
            if model == primary:
                continue
            other = self.overall.loc[model]
            rows.append(
                {
                    "model": model,
                    "compared_with": primary,
                    **{
                        f"{metric}_gap": float(reference[metric] - other[metric])
                        for metric in HEADLINE_METRICS
                    },
                }
            )
        return pd.DataFrame(rows)

    def slice_gaps(self, slice_col: str, primary: str | None = None) -> pd.DataFrame:
        """:meth:`gaps` within each value of ``slice_col`` (a product, a starting bucket).

        One row per (value, other model): ``value``, ``model``, ``compared_with``, ``n``, the
        two AUCs (``primary_auc``, ``model_auc``), ``auc_gap`` and ``brier_gap`` (primary minus
        the other: a positive AUC gap and a negative Brier gap mean the primary is better in
        that slice). A gap is NaN where a slice has a single class (AUC undefined).
        """
        primary = primary or self.primary_model
        if slice_col not in self.slice_cols:
            raise ValueError(f"unknown slice {slice_col!r}; slices are {list(self.slice_cols)}")
        table = self.by_slice[self.by_slice["slice"] == slice_col]
        mine = table[table["model"] == primary].set_index("value")
        rows = []
        for model in self.models:
            if model == primary:
                continue
            other = table[table["model"] == model].set_index("value")
            for value in mine.index:
                rows.append(
                    {
                        "value": value,
                        "model": model,
                        "compared_with": primary,
                        "n": int(mine.loc[value, "n"]),
                        "primary_auc": float(mine.loc[value, "auc"]),
                        "model_auc": float(other.loc[value, "auc"]),
                        "auc_gap": float(mine.loc[value, "auc"] - other.loc[value, "auc"]),
                        "brier_gap": float(mine.loc[value, "brier"] - other.loc[value, "brier"]),
                    }
                )
        return pd.DataFrame(rows)


# PSI verdicts of an evaluation: as the monitor judges a score PSI, one check at a time
PSI_FALSE_ALARM = 0.01
PSI_MIN_ROWS = 50  # 5 per bin of 10 bins; fewer: too few to judge


def _psi_judged(result: PsiResult, rows: int) -> str:
    """``stable``/``watch``/``act`` as :func:`~rollrisk.models.metrics.psi_verdict`, but
    ``act`` only beyond what sampling noise at these sizes reaches with probability 1%
    (``within noise`` otherwise), and ``too few`` under 50 rows (found by an attacker: 25
    rows were told ``act`` on a PSI of 1.05)."""
    from rollrisk.models.monitoring import judge_stability

    return judge_stability(
        result.value,
        result.table["expected_count"].to_numpy(),
        rows,
        PSI_ACT_ABOVE,
        PSI_FALSE_ALARM,
        PSI_MIN_ROWS,
    ).verdict


def evaluate_models(
    frame: pd.DataFrame,
    label_col: str,
    prob_cols: Mapping[str, str],
    slice_cols: Sequence[str] = ("product", "start_bucket"),
    reference_probs: Mapping[str, NDArray[np.float64]] | None = None,
    primary_model: str | None = None,
    n_bins: int = 10,
) -> ModelComparison:
    """Compare models on ``frame``.

    ``prob_cols`` maps a model name to the column of ``frame`` holding its P(default), e.g.
    ``{"lightgbm": "p_lgbm", "lightgbm_uncalibrated": "p_raw", "roll_rate_chain": "p_chain"}``.
    ``reference_probs`` maps (some) model names to their scores on the reference period
    (training), for PSI. ``primary_model`` defaults to the first model. ``slice_cols`` that
    are not in ``frame`` raise an error (pass ``()`` for none).
    """
    if not prob_cols:
        raise ValueError("prob_cols is empty: give at least one model name -> probability column")
    if isinstance(slice_cols, str):
        raise ValueError("slice_cols must be a sequence of column names, not a single string")
    needed = [label_col, *prob_cols.values(), *slice_cols]
    missing = [column for column in needed if column not in frame.columns]
    if missing:
        raise ValueError(
            f"evaluate_models: column(s) {missing} not in frame (has {list(frame.columns)})"
        )
    models = tuple(prob_cols)
    primary = primary_model or models[0]
    if primary not in prob_cols:
        raise ValueError(f"primary_model {primary!r} is not one of {list(models)}")
    reference_probs = dict(reference_probs or {})
    unknown_references = sorted(set(reference_probs) - set(models))
    if unknown_references:
        raise ValueError(f"reference_probs has models {unknown_references} not in prob_cols")

    labels = frame[label_col].to_numpy()
    overall_rows = {}
    slice_tables = []
    lift: dict[str, pd.DataFrame] = {}
    reliability: dict[str, pd.DataFrame] = {}
    psi_results: dict[str, PsiResult] = {}
    for model, column in prob_cols.items():
        probs = frame[column].to_numpy(dtype=np.float64)
        overall_rows[model] = binary_metrics(labels, probs, n_bins=n_bins)
        if slice_cols:
            table = metrics_by_slice(frame, label_col, column, slice_cols, n_bins=n_bins)
            slice_tables.append(table.loc[table["slice"] != "overall"].assign(model=model))
        lift[model] = lift_table(labels, probs, n_bins=n_bins)
        reliability[model] = reliability_table(labels, probs, n_bins=n_bins)
        if model in reference_probs:
            psi_results[model] = population_stability_index(
                np.asarray(reference_probs[model], dtype=np.float64), probs, n_bins=n_bins
            )

    overall = pd.DataFrame.from_dict(overall_rows, orient="index")
    overall.index.name = "model"
    for column in ("n", "positives"):
        overall[column] = overall[column].astype(np.int64)
    if slice_tables:
        by_slice = pd.concat(slice_tables, ignore_index=True)
        by_slice = by_slice[["model", *[c for c in by_slice.columns if c != "model"]]]
    else:
        by_slice = pd.DataFrame(columns=["model", "slice", "value"])
    stability = pd.DataFrame(
        [
            {"model": model, "psi": result.value, "verdict": _psi_judged(result, len(labels))}
            for model, result in psi_results.items()
        ],
        columns=["model", "psi", "verdict"],
    )
    scores = pd.DataFrame({label_col: labels})
    for model, column in prob_cols.items():
        scores[model] = frame[column].to_numpy(dtype=np.float64)
    return ModelComparison(
        label_col=label_col,
        models=models,
        primary_model=primary,
        overall=overall,
        by_slice=by_slice,
        lift=lift,
        reliability=reliability,
        stability=stability,
        psi_results=psi_results,
        scores=scores,
        reference_scores={m: np.asarray(v, dtype=np.float64) for m, v in reference_probs.items()},
        slice_cols=tuple(slice_cols),
    )


# --------------------------------------------------------------------------- plots


def _new_figure(width: float = 6.4, height: float = 4.8) -> Figure:
    """A Figure on an Agg canvas: no pyplot, no global backend switch, safe in any process."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _selected(comparison: ModelComparison, models: Sequence[str] | None) -> list[str]:
    chosen = list(models) if models is not None else list(comparison.models)
    unknown = [model for model in chosen if model not in comparison.models]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; models are {list(comparison.models)}")
    return chosen


def plot_reliability(comparison: ModelComparison, models: Sequence[str] | None = None) -> Figure:
    """Observed roll rate against mean predicted probability per band, one line per model."""
    figure = _new_figure()
    axes = figure.add_subplot(1, 1, 1)
    upper = 0.0
    for model in _selected(comparison, models):
        table = comparison.reliability[model]
        axes.plot(table["mean_predicted"], table["observed_rate"], marker="o", label=model)
        upper = max(
            upper, float(table["mean_predicted"].max()), float(table["observed_rate"].max())
        )
    upper = min(1.0, upper * 1.05 + 1e-3)
    axes.plot([0, upper], [0, upper], linestyle="--", color="grey", label="perfect calibration")
    axes.set_xlabel("mean predicted P(default) in band")
    axes.set_ylabel("observed roll-to-default rate")
    axes.set_title("Reliability (equal-size probability bands)")
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    return figure


def plot_gains(comparison: ModelComparison, models: Sequence[str] | None = None) -> Figure:
    """Cumulative share of defaults caught against share of accounts worked, riskiest first."""
    figure = _new_figure()
    axes = figure.add_subplot(1, 1, 1)
    for model in _selected(comparison, models):
        table = comparison.lift[model]
        worked = np.r_[0.0, table["n"].cumsum().to_numpy() / table["n"].sum()]
        caught = np.r_[0.0, table["cumulative_bads_share"].to_numpy()]
        axes.plot(worked, caught, marker=".", label=model)
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random order")
    axes.set_xlabel("share of accounts worked (riskiest first)")
    axes.set_ylabel("share of defaults caught")
    axes.set_title("Gains")
    axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    return figure


def plot_score_distributions(
    comparison: ModelComparison, models: Sequence[str] | None = None, n_bins: int = 30
) -> Figure:
    """Per model: score histograms of defaults vs non-defaults, and reference vs current scores."""
    chosen = _selected(comparison, models)
    figure = _new_figure(width=6.4, height=2.6 * len(chosen))
    labels = comparison.scores[comparison.label_col].to_numpy()
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    for row, model in enumerate(chosen):
        probs = comparison.scores[model].to_numpy()
        axes = figure.add_subplot(len(chosen), 1, row + 1)
        axes.hist(probs[labels == 0], bins=edges, density=True, alpha=0.5, label="did not default")
        axes.hist(probs[labels == 1], bins=edges, density=True, alpha=0.5, label="defaulted")
        if model in comparison.reference_scores:
            axes.hist(
                comparison.reference_scores[model],
                bins=edges,
                density=True,
                histtype="step",
                color="black",
                label="reference (training) scores",
            )
        axes.set_title(model, fontsize="small")
        axes.set_ylabel("density")
        axes.legend(fontsize="x-small")
    axes.set_xlabel("predicted P(default)")
    figure.tight_layout()
    return figure


PAIRED_SAMPLES = 500  # resamples of accounts behind a paired comparison's interval


@dataclass(frozen=True)
class PairedComparison:
    """Two models' probabilities on the same rows, compared (:func:`paired_comparison`).

    ``first`` / ``second``: each model's AUC and Brier score; ``difference``: first minus
    second; ``interval``: its 95 % percentile interval over ``samples`` resamples of the
    accounts (paired: both models on each resample's rows). ``rows`` and ``accounts``: what
    was compared."""

    first: dict[str, float]
    second: dict[str, float]
    difference: dict[str, float]
    interval: dict[str, tuple[float, float]]
    rows: int
    accounts: int
    samples: int


def paired_comparison(
    labels: ArrayLike,
    first: ArrayLike,
    second: ArrayLike,
    accounts: ArrayLike,
    samples: int = PAIRED_SAMPLES,
    seed: int = 0,
) -> PairedComparison:
    """AUC and Brier score of two models' probabilities ``first`` and ``second`` on the same
    labelled rows, their difference (first minus second) and its 95 % interval resampling
    ``accounts`` (an account's rows go together: its months are not independent). A draw with
    one outcome only is left out."""
    y = np.asarray(labels, dtype=np.int8)
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)

    def figures(rows: NDArray[np.int64]) -> list[float]:
        if y[rows].min() == y[rows].max():
            return [float("nan"), float("nan")]
        return [
            roc_auc(y[rows], a[rows]) - roc_auc(y[rows], b[rows]),
            brier_score(y[rows], a[rows]) - brier_score(y[rows], b[rows]),
        ]

    draws = group_bootstrap_draws(figures, accounts, samples, seed)
    names = ("auc", "brier")
    low, high = (
        np.percentile(draws, [2.5, 97.5], axis=0) if draws.shape[0] else np.full((2, 2), np.nan)
    )
    whole = figures(np.arange(y.size))
    return PairedComparison(
        first={"auc": roc_auc(y, a), "brier": brier_score(y, a)},
        second={"auc": roc_auc(y, b), "brier": brier_score(y, b)},
        difference=dict(zip(names, whole, strict=True)),
        interval={n: (float(lo), float(hi)) for n, lo, hi in zip(names, low, high, strict=True)},
        rows=int(y.size),
        accounts=int(pd.Series(np.asarray(accounts)).nunique()),
        samples=int(draws.shape[0]),
    )
