"""Write a model comparison as a Markdown report and a self-contained HTML report.

Called by the evaluate job with a :class:`~rollrisk.models.evaluation.ModelComparison`; writes
into ``out_dir``: ``reliability.png``, ``gains.png``, ``score_distributions.png``, ``report.md``
(images linked as files) and ``report.html`` (images embedded as base64 data URIs, no external
resource, so it can be mailed or attached to an MLflow run as one file).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rollrisk.models.evaluation import (
    ModelComparison,
    plot_gains,
    plot_reliability,
    plot_score_distributions,
)
from rollrisk.models.metrics import HEADLINE_METRICS
from rollrisk.reports.html import Section, figure_png, render_page, slug

UNCALIBRATED_SUFFIX = "_uncalibrated"
# the overall table: the quality metrics in their reporting order, then the sample
HEADLINE_COLUMNS = (*HEADLINE_METRICS, "mean_predicted", "base_rate", "n", "positives")
# the per-slice table keeps the figures that stay readable on a small slice
SLICE_COLUMNS = (
    "model",
    "value",
    "n",
    "positives",
    "base_rate",
    "mean_predicted",
    "auc",
    "ks",
    "brier",
    "ece",
)

__all__ = ["write_evaluation_report"]


@dataclass(frozen=True)
class _Image:
    file_name: str
    png: bytes
    caption: str


@dataclass(frozen=True)
class _Section:
    heading: str
    blocks: Sequence[str | pd.DataFrame | _Image]
    level: int = 2


def _format_value(value: object) -> str:
    if isinstance(value, float | np.floating):
        if np.isnan(value):
            return "n/a"
        if np.isinf(value):
            return "-inf" if value < 0 else "+inf"
        return f"{value:.4f}"
    return str(value)


def _markdown_table(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(str(column) for column in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = [
        "| " + " | ".join(_format_value(value) for value in row) + " |"
        for row in table.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])


def _png(figure: Figure) -> bytes:
    return figure_png(figure, dpi=100)


def _signed(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:+.4f}"


def _gap_sentences(comparison: ModelComparison) -> list[str]:
    gaps = comparison.gaps()
    primary = comparison.primary_model
    overall = comparison.overall
    sentences = []
    for row in gaps.itertuples(index=False):
        sentences.append(
            f"**{primary}** vs **{row.model}**: AUC gap {_signed(row.auc_gap)} "
            f"({_format_value(overall.loc[primary, 'auc'])} vs {_format_value(overall.loc[row.model, 'auc'])}), "
            f"Brier gap {_signed(row.brier_gap)} "
            f"({_format_value(overall.loc[primary, 'brier'])} vs {_format_value(overall.loc[row.model, 'brier'])}; "
            "lower Brier is better)."
        )
    return sentences


def _slice_gap_blocks(comparison: ModelComparison, slice_col: str) -> list[str | pd.DataFrame]:
    """The primary model's AUC and Brier margin over each other model within each slice, and
    where it is behind (the per-bucket goal: never worse than a baseline in any bucket)."""
    gaps = comparison.slice_gaps(slice_col)
    # the primary's own uncalibrated scores are the same model, not a rival
    gaps = gaps[~gaps["model"].str.endswith(UNCALIBRATED_SUFFIX)]
    primary = comparison.primary_model
    behind = gaps[gaps["auc_gap"] < 0]
    verdict = (
        f"**{primary}** ranks no worse than any other model in any `{slice_col}` where AUC "
        "is defined (AUC gap >= 0)."
        if len(behind) == 0
        else f"**{primary}** ranks worse (AUC) than "
        + "; ".join(
            f"**{row.model}** in `{row.value}` ({_signed(row.auc_gap)})"
            for row in behind.itertuples(index=False)
        )
        + "."
    )
    return [
        f"AUC and Brier of **{primary}** minus each other model's within each `{slice_col}` "
        "(AUC gap > 0 and Brier gap < 0: the primary is better there).",
        gaps.drop(columns="compared_with").rename(columns={"primary_auc": f"{primary}_auc"}),
        verdict,
    ]


def _calibration_sentences(comparison: ModelComparison) -> list[str]:
    overall = comparison.overall
    sentences = []
    for model in comparison.models:
        raw = f"{model}{UNCALIBRATED_SUFFIX}"
        if raw not in overall.index:
            continue
        sentences.append(
            f"Calibration of **{model}** (before -> after): ECE {_format_value(overall.loc[raw, 'ece'])} -> "
            f"{_format_value(overall.loc[model, 'ece'])}, Brier {_format_value(overall.loc[raw, 'brier'])} -> "
            f"{_format_value(overall.loc[model, 'brier'])}, log loss {_format_value(overall.loc[raw, 'log_loss'])} -> "
            f"{_format_value(overall.loc[model, 'log_loss'])}, mean predicted "
            f"{_format_value(overall.loc[raw, 'mean_predicted'])} -> {_format_value(overall.loc[model, 'mean_predicted'])} "
            f"(observed rate {_format_value(overall.loc[model, 'base_rate'])})."
        )
    if not sentences:
        sentences.append(
            "No uncalibrated/calibrated pair was given (a model `X` with a model "
            f"`X{UNCALIBRATED_SUFFIX}`), so only each model's own calibration is shown."
        )
    return sentences


def _calibration_table(
    comparison: ModelComparison, smooth_ece: Mapping[str, float] | None
) -> pd.DataFrame | None:
    """Binned and smooth ECE per model, beside the mean predicted and observed rates."""
    if not smooth_ece:
        return None
    overall = comparison.overall
    return pd.DataFrame(
        {
            "model": list(comparison.models),
            "ece (10 quantile bins)": [float(overall.loc[m, "ece"]) for m in comparison.models],
            "smooth ece (kernel)": [
                float(smooth_ece.get(m, float("nan"))) for m in comparison.models
            ],
            "mean_predicted": [float(overall.loc[m, "mean_predicted"]) for m in comparison.models],
            "base_rate": [float(overall.loc[m, "base_rate"]) for m in comparison.models],
        }
    )


def _grade_blocks(calibration_by_grade: pd.DataFrame | None) -> list[str | pd.DataFrame]:
    if calibration_by_grade is None:
        return []
    verdicts = calibration_by_grade.set_index("group")["verdict"]
    failing = [str(g) for g, v in verdicts.items() if v in ("underestimates", "overestimates")]
    summary = (
        "every grade is consistent with its predicted rate"
        if not failing
        else f"grade(s) {', '.join(failing)} differ significantly from their predicted rate"
    )
    return [
        "Calibration per risk grade (the policy's risk bands), out of time: the Jeffreys test "
        "banks use to back-test PD grades. `p_value_under` is the Jeffreys posterior "
        "Beta(rolled + 1/2, accounts - rolled + 1/2) at the grade's mean prediction (small: the "
        "realised rate is above it, the model underestimates); `p_value_over` its complement; "
        "each side is tested at 2.5 %, and the interval is the 95 % Jeffreys interval of the "
        f"realised rate. Verdict: {summary}.",
        calibration_by_grade,
    ]


def _build_sections(
    comparison: ModelComparison,
    context: Mapping[str, str],
    smooth_ece: Mapping[str, float] | None = None,
    calibration_by_grade: pd.DataFrame | None = None,
    gates: Sequence[str] | None = None,
) -> list[_Section]:
    primary = comparison.primary_model
    overall = comparison.overall.reset_index()[["model", *HEADLINE_COLUMNS]]
    context_table = pd.DataFrame(
        {"item": list(context.keys()), "value": [str(v) for v in context.values()]}
    )
    sections = [
        _Section(
            "Data, split and dates",
            [
                context_table
                if len(context_table)
                else "No context was given (data, split and as-of dates are unknown).",
                f"Label: `{comparison.label_col}`; {int(comparison.overall['n'].iloc[0])} observations, "
                f"{int(comparison.overall['positives'].iloc[0])} rolled to default "
                f"(base rate {_format_value(float(comparison.overall['base_rate'].iloc[0]))}).",
            ],
        ),
        _Section(
            "Models side by side",
            [
                f"Primary model: **{primary}**. AUC, Gini and KS: higher is better; Brier, log loss "
                "and ECE: lower is better.",
                overall,
            ],
        ),
        _Section("Gaps", _gap_sentences(comparison) or ["Only one model was evaluated."], level=3),
    ]
    for slice_col in comparison.slice_cols if len(comparison.models) > 1 else ():
        sections.append(
            _Section(f"Gaps by `{slice_col}`", _slice_gap_blocks(comparison, slice_col), level=3)
        )
    if gates:
        sections.append(
            _Section(
                "Promotion gates",
                [
                    "The gates of `rollrisk promote` that need no champion, on these "
                    "out-of-time figures (`promote` adds the comparison with the champion):",
                    gates[0],
                    "\n".join(f"* {line}" for line in gates[1:]),
                ],
            )
        )
    calibration_table = _calibration_table(comparison, smooth_ece)
    reliability_blocks: list[str | pd.DataFrame | _Image] = [
        *_calibration_sentences(comparison),
        *(
            [
                "Binned ECE (10 bins of equal size) beside the smooth ECE (kernel-smoothed "
                "residuals, no bin edges; docs/evaluation.md):",
                calibration_table,
            ]
            if calibration_table is not None
            else []
        ),
        *_grade_blocks(calibration_by_grade),
        _Image("reliability.png", _png(plot_reliability(comparison)), "Reliability of every model"),
    ]
    for model in comparison.models:
        reliability_blocks.append(f"Reliability bands of **{model}**:")
        reliability_blocks.append(comparison.reliability[model])
    sections.append(_Section("Calibration", reliability_blocks))

    top = pd.DataFrame(
        [
            {
                "model": model,
                "top_decile_bad_rate": float(comparison.lift[model]["bad_rate"].iloc[0]),
                "top_decile_lift": float(comparison.lift[model]["lift"].iloc[0]),
                "defaults_caught_in_top_30pct": float(
                    comparison.lift[model]["cumulative_bads_share"].iloc[
                        min(2, len(comparison.lift[model]) - 1)
                    ]
                ),
            }
            for model in comparison.models
        ]
    )
    lift_blocks: list[str | pd.DataFrame | _Image] = [
        "Decile 1 holds the riskiest accounts by each model's score.",
        top,
        _Image(
            "gains.png",
            _png(plot_gains(comparison)),
            "Gains: defaults caught by share of accounts worked",
        ),
    ]
    for model in comparison.models:
        lift_blocks.append(f"Lift table of **{model}**:")
        lift_blocks.append(comparison.lift[model])
    sections.append(_Section("Lift and gains", lift_blocks))

    slice_blocks: list[str | pd.DataFrame | _Image] = []
    if comparison.slice_cols:
        slice_blocks.append(
            "A slice with a single class has AUC and KS n/a (undefined), not an error."
        )
        for slice_col in comparison.slice_cols:
            table = comparison.by_slice.loc[comparison.by_slice["slice"] == slice_col]
            table = table.sort_values(["value", "model"], kind="stable")[list(SLICE_COLUMNS)]
            slice_blocks.append(f"By `{slice_col}`:")
            slice_blocks.append(table)
    else:
        slice_blocks.append("No slice columns were requested.")
    sections.append(_Section("Per-slice metrics", slice_blocks))

    stability_blocks: list[str | pd.DataFrame | _Image] = [
        "PSI between each model's reference (training) scores and these scores, on fixed bins "
        "from the reference quantiles (epsilon for empty bins). Verdict: stable < 0.1 <= watch "
        "<= 0.25 < act, where act also needs the PSI above what sampling noise at these sizes "
        "reaches with probability 1% (else within noise); under 50 rows: too few to judge."
    ]
    if len(comparison.stability):
        stability_blocks.append(comparison.stability)
    else:
        stability_blocks.append("No reference scores were given, so PSI was not computed.")
    stability_blocks.append(
        _Image(
            "score_distributions.png",
            _png(plot_score_distributions(comparison)),
            "Score distributions by outcome (and reference scores)",
        )
    )
    sections.append(_Section("Score stability (PSI)", stability_blocks))
    return sections


def _render_markdown(title: str, sections: Sequence[_Section]) -> str:
    parts = [f"# {title}", ""]
    for section in sections:
        parts += ["#" * section.level + f" {section.heading}", ""]
        for block in section.blocks:
            if isinstance(block, pd.DataFrame):
                parts.append(_markdown_table(block))
            elif isinstance(block, _Image):
                parts.append(f"![{block.caption}]({block.file_name})")
            else:
                parts.append(block)
            parts.append("")
    return "\n".join(parts)


def _render_html(title: str, sections: Sequence[_Section]) -> str:
    """The same sections as the Markdown, as one self-contained page of the report kit."""
    page = []
    for section in sections:
        part = Section(slug(section.heading), section.heading, level=section.level)
        for block in section.blocks:
            if isinstance(block, pd.DataFrame):
                part.table(block, default=_format_value)
            elif isinstance(block, _Image):
                part.image(block.png, block.caption)
            else:
                part.markdown(block)
        page.append(part)
    return render_page(title, page)


# every file write_evaluation_report writes (the plots' names are those of its sections)
REPORT_FILES = (
    "report.html",
    "report.md",
    "reliability.png",
    "gains.png",
    "score_distributions.png",
)


def write_evaluation_report(
    comparison: ModelComparison,
    out_dir: Path,
    title: str,
    context: Mapping[str, str],
    smooth_ece: Mapping[str, float] | None = None,
    calibration_by_grade: pd.DataFrame | None = None,
    gates: Sequence[str] | None = None,
) -> Path:
    """Write the PNG plots, ``report.md`` and ``report.html`` into ``out_dir``; return the HTML path.

    ``context`` is shown first as an item/value table and should state the data (portfolio,
    snapshot), the split (e.g. out-of-time: train as-of <= 2024-06, test 2024-07..09) and the
    as-of dates; the caller passes calibrated and uncalibrated scores as separate models
    (``"lightgbm"`` and ``"lightgbm_uncalibrated"``) to get the before/after comparison.
    ``smooth_ece`` (per model), ``calibration_by_grade`` (a
    :func:`~rollrisk.models.stats.jeffreys_test` table) and ``gates`` (a verdict line, then one
    line per promotion gate) add to the calibration section and a "Promotion gates" section.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = _build_sections(comparison, context, smooth_ece, calibration_by_grade, gates)
    for section in sections:
        for block in section.blocks:
            if isinstance(block, _Image):
                (out_dir / block.file_name).write_bytes(block.png)
    (out_dir / "report.md").write_text(_render_markdown(title, sections), encoding="utf-8")
    html_path = out_dir / "report.html"
    html_path.write_text(_render_html(title, sections), encoding="utf-8")
    return html_path
