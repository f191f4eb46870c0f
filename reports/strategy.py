"""The strategy review page of a scoring run: one self-contained HTML page.

For the published result of ``rollrisk score`` it shows what a strategy lead needs to act on:
segment sizes; expected loss (exposure x probability) per segment and risk band; the action
mix the policy chose (and what compliance removed); a SHAP summary (beeswarm) per segment and
the top reason codes per segment; calibration (predicted vs realised roll-to-default per band,
when the outcomes have matured in the portfolio); the segment-recovery figure (simulated
portfolios only, with a bootstrap interval); the policy-simulation comparison against the
baseline tiered policy (from ``rollrisk simulate-policy``, with its interval over seeds); and
a few example accounts with the waterfall of their contributions.

SHAP values are recomputed for a bounded sample of accounts per segment from the scored model
and the portfolio: the scored output stores only family sums and the top 4 reasons.

:func:`build_report` reads nothing: the job (``rollrisk report``) hands it the scores, the
portfolio, the model, the simulator's true drivers and the policy simulation. The page is
assembled with the report kit (:mod:`rollrisk.reports.html`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import polars as pl

from rollrisk.models.stats import calibration_backtest, percentile_bootstrap
from rollrisk.reports.html import Section, figure_png, render_page
from rollrisk.reports.policy_simulation import LABELS, format_metric, format_uplift

if TYPE_CHECKING:
    from rollrisk.models.roll_model import RollModel
    from rollrisk.storage.loader import Portfolio

SECTION_IDS = (
    "summary",
    "segments",
    "expected-loss",
    "action-mix",
    "shap-summary",
    "reason-codes",
    "calibration",
    "segment-recovery",
    "policy-simulation",
    "examples",
)
BAND_ORDER = ("low", "medium", "high")
BOOTSTRAP_SAMPLES = 500
# The simulator's healthy borrowers who fall behind are self-cures: the forgetful segment's job.
DRIVER_TO_SEGMENT = {"healthy": "forgetful"}


# --------------------------------------------------------------------------------------------
# Figures and tables (pure: frames in, numbers or PNG bytes out)
# --------------------------------------------------------------------------------------------
def segment_table(scored: pl.DataFrame) -> pd.DataFrame:
    """Accounts, exposure, expected loss and mean probability per segment."""
    total = scored.height
    table = (
        scored.group_by("segment")
        .agg(
            pl.len().alias("accounts"),
            pl.col("exposure").sum().alias("exposure"),
            pl.col("expected_loss").sum().alias("expected_loss"),
            pl.col("probability").mean().alias("mean_probability"),
        )
        .with_columns((pl.col("accounts") / total).alias("share"))
        .sort("expected_loss", descending=True)
    )
    return table.select(
        "segment", "accounts", "share", "exposure", "expected_loss", "mean_probability"
    ).to_pandas()


def expected_loss_by_band(scored: pl.DataFrame) -> pd.DataFrame:
    """Expected loss per segment (rows) and risk band (columns), with totals."""
    pivot = (
        scored.group_by("segment", "risk_band")
        .agg(pl.col("expected_loss").sum())
        .to_pandas()
        .pivot(index="segment", columns="risk_band", values="expected_loss")
        .fillna(0.0)
    )
    bands = [b for b in BAND_ORDER if b in pivot.columns] + sorted(
        set(pivot.columns) - set(BAND_ORDER)
    )
    pivot = pivot[bands]
    pivot["total"] = pivot.sum(axis=1)
    pivot = pivot.sort_values("total", ascending=False)
    pivot.loc["all segments"] = pivot.sum(axis=0)
    return pivot.reset_index()


def action_mix(scored: pl.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(treatment x segment account counts, planned actions and compliance removals per action)."""
    treatments = (
        scored.group_by("treatment", "segment")
        .len()
        .to_pandas()
        .pivot(index="treatment", columns="segment", values="len")
        .fillna(0)
        .astype(int)
    )
    treatments["all"] = treatments.sum(axis=1)
    treatments = treatments.sort_values("all", ascending=False).reset_index()
    planned: dict[str, int] = {}
    removed: dict[str, int] = {}
    for actions, trail in zip(scored["actions"], scored["trail"], strict=True):
        for step in json.loads(actions):
            planned[step["action"]] = planned.get(step["action"], 0) + 1
        for change in json.loads(trail):
            if change["change"] == "removed":
                name = change["action"].split(" ")[0]
                removed[name] = removed.get(name, 0) + 1
    names = sorted(set(planned) | set(removed), key=lambda n: -planned.get(n, 0))
    steps = pd.DataFrame(
        {
            "action": names,
            "planned (after compliance)": [planned.get(n, 0) for n in names],
            "removed by compliance": [removed.get(n, 0) for n in names],
        }
    )
    return treatments, steps


def top_reasons(scored: pl.DataFrame, per_segment: int = 5) -> pd.DataFrame:
    """The reason codes most often among an account's (up to 4) reasons, per segment."""
    rows = []
    for segment, reasons in zip(scored["segment"], scored["reasons"], strict=True):
        for reason in json.loads(reasons):
            rows.append(
                {
                    "segment": segment,
                    "code": reason["code"],
                    "feature": reason["feature"],
                    "first": reason["rank"] == 1,
                }
            )
    if not rows:
        return pd.DataFrame(columns=["segment", "code", "feature", "accounts", "share", "as_first"])
    frame = pd.DataFrame(rows)
    sizes = scored.group_by("segment").len().to_pandas().set_index("segment")["len"]
    table = (
        frame.groupby(["segment", "code", "feature"])
        .agg(accounts=("first", "size"), as_first=("first", "sum"))
        .reset_index()
    )
    table["share"] = table["accounts"] / table["segment"].map(sizes)
    table = table.sort_values(["segment", "accounts"], ascending=[True, False])
    table = table.groupby("segment").head(per_segment)
    return table[["segment", "code", "feature", "accounts", "share", "as_first"]]


def calibration_by_band(scored: pl.DataFrame, outcomes: pl.DataFrame) -> pd.DataFrame | None:
    """Predicted vs realised roll-to-default per risk band for accounts whose outcome matured.

    ``outcomes``: ``account_id``, ``rolled_to_default`` (null = not matured). None when no
    scored account has a matured outcome.
    """
    joined = scored.join(outcomes, on="account_id", how="left").filter(
        pl.col("rolled_to_default").is_not_null()
    )
    if joined.height == 0:
        return None
    present = set(joined["risk_band"].unique().to_list())
    bands = [b for b in BAND_ORDER if b in present] + sorted(present - set(BAND_ORDER))
    # the Wilson 95 % interval of the realised rate, so small bands are read with care
    table = calibration_backtest(
        joined["probability"].to_numpy(),
        joined["rolled_to_default"].to_numpy(),
        joined["risk_band"].to_numpy(),
        bands,
    )
    table = table.rename(
        columns={
            "group": "risk_band",
            "predicted_mean": "predicted",
            "realised_rate": "realised",
            "ci_lower": "realised_ci_low",
            "ci_upper": "realised_ci_high",
        }
    )
    columns = ["risk_band", "accounts", "predicted", "realised"]
    return table[[*columns, "realised_ci_low", "realised_ci_high"]]


def bootstrap_macro_f1(
    segments: Sequence[str], drivers: Sequence[str], samples: int, seed: int
) -> tuple[float, float, float, pd.DataFrame]:
    """Segment-recovery macro-F1, its 95 % percentile bootstrap interval over accounts, and the
    confusion matrix (rows: true driver, columns: segment)."""
    from rollrisk.strategies.segments import segment_recovery

    predicted = np.asarray(segments, dtype=object)
    truth = np.asarray(drivers, dtype=object)
    matrix, f1 = segment_recovery(predicted, truth, DRIVER_TO_SEGMENT)

    def resampled_f1(pick: np.ndarray) -> float:
        return segment_recovery(predicted[pick], truth[pick], DRIVER_TO_SEGMENT)[1]

    low, high = percentile_bootstrap(resampled_f1, len(predicted), samples, seed)
    return f1, low, high, matrix


@dataclass(frozen=True)
class SegmentShap:
    """Recomputed exact TreeSHAP contributions (log-odds) of a sample of one segment."""

    segment: str
    values: np.ndarray  # (n, p) in feature-set order
    base_value: float
    data: pd.DataFrame  # raw feature values of the same accounts (p columns)
    account_ids: list[str]
    accounts_in_segment: int


def sample_per_segment(scored: pl.DataFrame, size: int, seed: int) -> pl.DataFrame:
    """At most ``size`` accounts per segment, drawn reproducibly."""
    parts = []
    for segment in sorted(scored["segment"].unique().to_list()):
        rows = scored.filter(pl.col("segment") == segment)
        parts.append(rows.sample(n=min(size, rows.height), seed=seed) if rows.height else rows)
    return pl.concat(parts).sort("account_id")


def recompute_contributions(
    sample: pl.DataFrame, portfolio: Portfolio, as_of: date, model: RollModel
) -> tuple[np.ndarray, pd.DataFrame]:
    """Exact TreeSHAP contributions in feature-set order (last column: base value) and the raw
    feature frame, for the accounts of ``sample`` (same order), as scoring computed them."""
    from rollrisk.scoring.core import explain, features_at

    people = sample.select("account_id", pl.col("dpd").alias("dpd_at_as_of"), "start_bucket")
    frame = features_at(
        people, as_of, portfolio.accounts, portfolio.statements,
        portfolio.collection_actions, portfolio.treatments, model.feature_set,
    )  # fmt: skip
    return explain(model, frame), frame


def _png(figure: Any) -> bytes:
    """A figure drawn with pyplot (shap draws there) as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    png = figure_png(figure, dpi=90, tight=True)
    plt.close(figure)
    return png


def _numeric(data: pd.DataFrame) -> pd.DataFrame:
    """Feature values as numbers for colouring (categories as their codes)."""
    out = data.copy()
    for column in out.columns:
        if not pd.api.types.is_numeric_dtype(out[column]):
            out[column] = out[column].astype("category").cat.codes.astype(float)
    return out.astype(float)


def shap_summary_png(shap_values: SegmentShap, max_display: int = 10) -> bytes:
    """shap's beeswarm summary plot of one segment's sample."""
    import matplotlib.pyplot as plt
    import shap

    shap.summary_plot(
        shap_values.values,
        _numeric(shap_values.data),
        feature_names=list(shap_values.data.columns),
        max_display=max_display,
        show=False,
        plot_size=(7.5, 4.5),
        color_bar=True,
    )
    figure = plt.gcf()
    figure.suptitle(
        f"{shap_values.segment}: SHAP values (log-odds), {len(shap_values.account_ids)} of "
        f"{shap_values.accounts_in_segment} accounts",
        fontsize=10,
    )
    return _png(figure)


def waterfall_png(
    values: np.ndarray, base_value: float, data: pd.Series, title: str, max_display: int = 8
) -> bytes:
    """shap's waterfall plot of one account (log-odds, from the base value to its raw score)."""
    import matplotlib.pyplot as plt
    import shap

    explanation = shap.Explanation(
        values=np.asarray(values, dtype=float),
        base_values=float(base_value),
        data=np.array([_short(v) for v in data.to_numpy()], dtype=object),
        feature_names=list(data.index),
    )
    shap.plots.waterfall(explanation, max_display=max_display, show=False)
    figure = plt.gcf()
    figure.set_size_inches(7.5, 4.2)
    figure.suptitle(title, fontsize=10)
    return _png(figure)


def _short(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3) if not math.isnan(value) else "no data"
    return value


def _interval_text(stats: Mapping[str, float], percent: bool = False) -> str:
    if percent:
        return (
            f"{stats['mean'] * 100:+.2f} pp (95 % CI {stats['ci_low'] * 100:+.2f} to "
            f"{stats['ci_high'] * 100:+.2f})"
        )
    return f"{stats['mean']:+,.0f} (95 % CI {stats['ci_low']:+,.0f} to {stats['ci_high']:+,.0f})"


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------
def build_report(
    manifest: Mapping[str, Any],
    scored: pl.DataFrame,
    portfolio: Portfolio,
    model: RollModel,
    *,
    data_dir: Path,
    true_drivers: pl.DataFrame | None,
    policy_simulation: Mapping[str, Any] | None,
    sample_size: int,
    examples: int,
    seed: int,
) -> str:
    """The HTML page (see the module docstring for its sections).

    Needs the manifest and scored accounts of a scoring run (:func:`rollrisk.storage.results.
    read_scores`), the portfolio they were scored from (``data_dir``, named on the page), the
    scoring model, and optionally the simulator's true driver per account (``account_id``,
    ``driver``; None: not a simulated portfolio) and the policy simulation's result.
    ``sample_size`` accounts per segment get their SHAP values recomputed; ``examples``
    accounts get a waterfall; ``seed`` draws the samples and the bootstrap.
    """
    from rollrisk.features.observations import ObservationSpec, observations

    as_of = date.fromisoformat(manifest["as_of"])
    model_info = manifest.get("model", {})
    sections = {sid: Section(sid, title) for sid, title in zip(SECTION_IDS, (
        "Summary", "Segments", "Expected loss by segment and band", "Action mix",
        "SHAP summary per segment", "Top reason codes per segment", "Calibration",
        "Segment recovery (simulated portfolios)", "Policy simulation against the tiered baseline",
        "Example accounts",
    ), strict=True)}  # fmt: skip

    # --- segments and expected loss
    segments = segment_table(scored)
    sections["segments"].table(
        segments,
        {"accounts": "{:,.0f}", "share": "{:.1%}", "exposure": "{:,.0f}",
         "expected_loss": "{:,.0f}", "mean_probability": "{:.1%}"},
    )  # fmt: skip
    sections["segments"].note(
        "Segments come from conf/segments.yaml applied to the SHAP driver families and the raw "
        "evidence; expected loss = exposure (balance at the as-of) x calibrated probability."
    )
    by_band = expected_loss_by_band(scored)
    sections["expected-loss"].table(
        by_band, {c: "{:,.0f}" for c in by_band.columns if c != "segment"}
    )
    counts = scored.group_by("risk_band").len().to_pandas().set_index("risk_band")["len"]
    sections["expected-loss"].note(
        "Accounts per band: "
        + ", ".join(f"{b} {int(counts.get(b, 0)):,}" for b in BAND_ORDER)
        + ". Bands are the policy's (conf/policy.yaml risk_bands)."
    )

    # --- action mix
    treatments, steps = action_mix(scored)
    sections["action-mix"].text("Treatments chosen by the policy, accounts per segment:")
    sections["action-mix"].table(treatments)
    sections["action-mix"].text("Planned actions of the next decision cycle:")
    sections["action-mix"].table(steps)

    # --- reasons
    reasons = top_reasons(scored)
    sections["reason-codes"].table(reasons, {"share": "{:.1%}", "accounts": "{:,.0f}",
                                             "as_first": "{:,.0f}"})  # fmt: skip
    sections["reason-codes"].note(
        "accounts: accounts with the code among their (at most 4) principal reasons; "
        "as_first: accounts for which it is the first reason."
    )

    # --- SHAP per segment and examples
    sample = sample_per_segment(scored, sample_size, seed)
    contribs, frame = recompute_contributions(sample, portfolio, as_of, model)
    names = list(model.feature_set.names)
    data = frame[names]
    sizes = dict(zip(segments["segment"], segments["accounts"], strict=True))
    sample_segments = sample["segment"].to_numpy()
    figures = []
    for segment in segments["segment"]:
        mask = sample_segments == segment
        if mask.sum() < 2:
            continue
        shap_sample = SegmentShap(
            segment, contribs[mask, :-1], float(contribs[mask, -1].mean()),
            data.loc[mask].reset_index(drop=True), sample["account_id"].to_numpy()[mask].tolist(),
            int(sizes[segment]),
        )  # fmt: skip
        figures.append((shap_summary_png(shap_sample), f"SHAP beeswarm, segment {segment}"))
    sections["shap-summary"].raw('<div class="grid">')
    for png, caption in figures:
        sections["shap-summary"].image(png, caption)
    sections["shap-summary"].raw("</div>")
    sections["shap-summary"].note(
        f"Exact TreeSHAP values of model {model_info.get('name')} v{model_info.get('version')} "
        f"recomputed for up to {sample_size} accounts per segment (seed {seed}); a point right of "
        "zero raised the account's roll-to-default log-odds; colour is the feature's value."
    )
    highest = scored.sort("expected_loss", descending=True)
    chosen: list[str] = []
    for segment in segments["segment"]:  # the largest expected loss of each segment first
        ids = highest.filter(pl.col("segment") == segment)["account_id"].to_list()
        sampled = set(sample["account_id"].to_list())
        pick = next((a for a in ids if a in sampled), None)
        if pick and len(chosen) < examples:
            chosen.append(pick)
    positions = {a: i for i, a in enumerate(sample["account_id"].to_list())}
    by_id = {row["account_id"]: row for row in scored.iter_rows(named=True)}
    for account_id in chosen:
        i = positions[account_id]
        row = by_id[account_id]
        title = (
            f"{account_id}: {row['product']}, {row['start_bucket']} ({row['dpd']} DPD), "
            f"p={row['probability']:.1%}, segment {row['segment']}, treatment {row['treatment']}"
        )
        sections["examples"].image(
            waterfall_png(contribs[i, :-1], contribs[i, -1], data.iloc[i], title), title
        )
        texts = [r["text_en"] for r in json.loads(row["reasons"])]
        sections["examples"].note(
            f"Reasons given: {'; '.join(texts) or 'none'}. Expected loss "
            f"{row['expected_loss']:,.0f} CNY. Rule: {row['policy_rule']}."
        )

    # --- calibration
    spec = ObservationSpec.from_mapping(manifest.get("config", {}).get("observation", {}))
    outcomes = observations(portfolio.statements, [as_of], spec).select(
        "account_id", "rolled_to_default"
    )
    calibration = calibration_by_band(scored, outcomes)
    if calibration is None:
        sections["calibration"].text(
            f"The outcomes of the {as_of} population have not matured in this portfolio (the "
            f"{spec.window_months}-month window after the as-of is not covered by its "
            "statements), so calibration cannot be checked yet. See `rollrisk evaluate` for "
            "the out-of-time calibration of the model."
        )
    else:
        sections["calibration"].table(
            calibration,
            {"accounts": "{:,.0f}", "predicted": "{:.1%}", "realised": "{:.1%}",
             "realised_ci_low": "{:.1%}", "realised_ci_high": "{:.1%}"},
        )  # fmt: skip
        sections["calibration"].note(
            f"Realised = reached {spec.default_dpd}+ DPD within {spec.window_months} months "
            "after the as-of (matured accounts only); interval: Wilson 95 %."
        )

    # --- segment recovery (only a simulated portfolio knows its borrowers' drivers)
    recovery_text = "not available (not a simulated portfolio)"
    if true_drivers is not None:
        joined = scored.select("account_id", "segment").join(
            true_drivers.select("account_id", "driver"), on="account_id"
        )
        f1, low, high, matrix = bootstrap_macro_f1(
            joined["segment"].to_list(), joined["driver"].to_list(), BOOTSTRAP_SAMPLES, seed
        )
        recovery_text = f"{f1:.3f} (95 % CI {low:.3f} to {high:.3f})"
        sections["segment-recovery"].text(
            f"Macro-F1 of the segments against the simulator's latent drivers: {recovery_text}, "
            f"over {joined.height:,} scored accounts (percentile bootstrap over accounts, "
            f"{BOOTSTRAP_SAMPLES} resamples; healthy borrowers count as forgetful/self-cure)."
        )
        sections["segment-recovery"].table(matrix.reset_index())
    else:
        sections["segment-recovery"].text(
            "Only a simulated portfolio knows its borrowers' true drivers; this one has no "
            "truth/ folder, so segment recovery cannot be measured."
        )

    # --- policy simulation
    uplift_text = "not run (pass --policy-simulation)"
    if policy_simulation is None:
        sections["policy-simulation"].text(
            "No policy simulation was given. Run `rollrisk simulate-policy` on these scores "
            "(simulated portfolios only) and pass its folder with --policy-simulation."
        )
    else:
        _policy_section(sections["policy-simulation"], policy_simulation)
        u = policy_simulation["uplift"]
        uplift_text = (
            f"net recovery {_interval_text(u['net_recovery'])} CNY, roll-to-default "
            f"{_interval_text(u['roll_to_default_rate'], percent=True)}"
        )

    # --- summary
    summary = sections["summary"]
    total_el = float(scored["expected_loss"].sum())
    kpis = [
        ("accounts scored", f"{scored.height:,}"),
        ("exposure (CNY)", f"{float(scored['exposure'].sum()):,.0f}"),
        ("expected loss (CNY)", f"{total_el:,.0f}"),
        ("mean probability", f"{float(scored['probability'].mean()):.1%}"),
    ]
    summary.kpis(kpis)
    top = segments.iloc[0]
    summary.text(
        f"Largest expected loss: segment {top['segment']} ({top['expected_loss']:,.0f} CNY, "
        f"{top['expected_loss'] / total_el:.0%} of the total, {int(top['accounts']):,} accounts)."
    )
    summary.text(f"Policy simulation, model-driven minus tiered baseline: {uplift_text}.")
    summary.text(f"Segment recovery (macro-F1 against the true drivers): {recovery_text}.")
    subtitle = (
        f"As-of {as_of}; model {model_info.get('name')} v{model_info.get('version')} "
        f"({model_info.get('uri')}); policy {manifest.get('config', {}).get('policy')}; "
        f"portfolio {data_dir}; code {manifest.get('code', {}).get('git_commit')}."
    )
    return render_page("Collections strategy review", list(sections.values()), subtitle)


def _policy_section(section: Section, result: Mapping[str, Any]) -> None:
    arms, uplift = result["arms"], result["uplift"]
    rows = []
    for metric, (label, _) in LABELS.items():
        rows.append(
            {
                "metric": label,
                "model-driven": format_metric(metric, arms["model_driven"][metric]["mean"]),
                "baseline tiered": format_metric(metric, arms["baseline_tiered"][metric]["mean"]),
                "uplift [95 % CI]": format_uplift(metric, uplift[metric]),
            }
        )
    section.text(
        f"{result['accounts']:,} scored accounts rolled forward {result['months']} months on the "
        f"simulator, twice with the same random draws (model-driven decisions vs the baseline "
        f"tiered policy), over {len(result['seeds'])} seeds; mean per policy and the paired "
        "uplift with its 95 % t-interval over seeds."
    )
    section.table(pd.DataFrame(rows))
    segment_rows = [
        {
            "segment": segment,
            "accounts": row["accounts"],
            "net recovery uplift": format_uplift("net_recovery", row["uplift"]["net_recovery"]),
            "roll-to-default uplift": format_uplift(
                "roll_to_default_rate", row["uplift"]["roll_to_default_rate"]
            ),
        }
        for segment, row in sorted(result["by_segment"].items())
    ]
    section.table(pd.DataFrame(segment_rows), {"accounts": "{:,.0f}"})
    bootstrap = result.get("uplift_account_bootstrap")
    if bootstrap:
        section.text(
            "Resampling the accounts as well (percentile bootstrap over accounts of the "
            "seed-averaged uplift): net recovery "
            + _interval_text(bootstrap["net_recovery"])
            + " CNY; roll-to-default "
            + _interval_text(bootstrap["roll_to_default_rate"], percent=True)
            + "."
        )
    section.note(
        "The t-interval covers the simulator's randomness for these accounts (seeds); the "
        "bootstrap also covers which accounts are in the book. Costs: "
        + str(result["costs"]["source"])
        + ". Method and "
        "limits: docs/strategies.md, Policy simulation."
    )
