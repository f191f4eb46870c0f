"""The policy simulation's figures in words: metric labels, their formats, the Markdown report.

``rollrisk simulate-policy`` writes and prints :func:`markdown`; the strategy review page
(:mod:`rollrisk.reports.strategy`) quotes the same figures with the same labels and formats.
The result it reads is the dictionary of :func:`rollrisk.simulator.replay.compare_policies`
with the job's context (scores, portfolio, costs) around it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rollrisk.simulator.replay import BOOTSTRAP_SAMPLES

# metric of compare_policies -> (label, format of a value)
LABELS: dict[str, tuple[str, str]] = {
    "recovered": ("recovered amount (CNY)", "{:,.0f}"),
    "action_cost": ("action cost (CNY)", "{:,.0f}"),
    "net_recovery": ("net recovery (CNY)", "{:,.0f}"),
    "roll_to_default_rate": ("roll-to-default rate", "{:.2%}"),
    "contacts": ("contacts made", "{:,.0f}"),
    "agency_assignments": ("agency assignments", "{:,.0f}"),
    "legal_filings": ("legal filings", "{:,.0f}"),
    "disputes": ("disputes (complaint proxy)", "{:,.0f}"),
    "pressure_on_capacity_shock": ("pressure contacts on capacity shocks", "{:,.0f}"),
    "treatments_granted": ("treatments granted", "{:,.0f}"),
    "compliance_blocks": ("compliance blocks", "{:,.0f}"),
}


def format_metric(metric: str, value: float | None) -> str:
    """One value of ``metric`` in its format (``n/a`` when missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return LABELS[metric][1].format(value)


def format_uplift(metric: str, stats: Mapping[str, float]) -> str:
    """An uplift ``mean [ci_low, ci_high]`` with signs (a rate in percentage points); the mean
    alone when there is no interval."""
    if math.isnan(stats["ci_low"]):
        return format_metric(metric, stats["mean"])
    if metric == "roll_to_default_rate":
        return (
            f"{stats['mean'] * 100:+.2f} pp [{stats['ci_low'] * 100:+.2f}, "
            f"{stats['ci_high'] * 100:+.2f}]"
        )
    return f"{stats['mean']:+,.0f} [{stats['ci_low']:+,.0f}, {stats['ci_high']:+,.0f}]"


def markdown(result: Mapping[str, Any]) -> str:
    """The comparison as a Markdown report (``policy_simulation.md``, also printed by the job)."""
    arms, uplift = result["arms"], result["uplift"]
    lines = [
        "# Policy simulation: model-driven policy vs baseline tiered policy",
        "",
        f"- scores: `{result['scores']}` (as-of {result['as_of']}, model "
        f"{result['model']['name']} v{result['model']['version']})",
        f"- portfolio: `{result['data']}` (simulated: seed {result['simulation']['seed']}, "
        f"{result['simulation']['accounts']:,} accounts x {result['simulation']['months']} "
        f"months from {result['simulation']['start_month']})",
        f"- {result['accounts']:,} scored accounts rolled forward {result['months']} months; "
        f"{len(result['seeds'])} seeds (base seed {result['base_seed']}); replayed state matches "
        f"the portfolio's as-of statements for {result['replay_match_share']:.1%} of them",
        f"- costs: `{result['costs']['source']}`",
        "",
        "Per policy: mean over seeds. Uplift: model-driven - baseline, paired by seed, "
        "mean [95 % t-interval].",
        "",
        "| metric | model-driven | baseline tiered | uplift [95 % CI] |",
        "|---|---|---|---|",
    ]
    for metric, (label, _) in LABELS.items():
        model = arms["model_driven"][metric]["mean"]
        base = arms["baseline_tiered"][metric]["mean"]
        lines.append(
            f"| {label} | {format_metric(metric, model)} | {format_metric(metric, base)} | "
            f"{format_uplift(metric, uplift[metric])} |"
        )
    lines += [
        "",
        "Baseline compliance blocks are not counted: the baseline is not run through the "
        "compliance engine.",
        "",
        "The t-interval covers the simulator's randomness for these accounts. Resampling the "
        "accounts too (seed-averaged uplift per account, percentile bootstrap, "
        f"{BOOTSTRAP_SAMPLES:,} resamples) gives:",
        "",
    ]
    for metric, stats in result["uplift_account_bootstrap"].items():
        lines.append(f"- {LABELS[metric][0]}: {format_uplift(metric, stats)}")
    lines += [
        "",
        "## Uplift by segment",
        "",
        "| segment | accounts | recovered | action cost | net recovery | roll-to-default |",
        "|---|---|---|---|---|---|",
    ]
    for segment, row in sorted(result["by_segment"].items()):
        u = row["uplift"]
        lines.append(
            f"| {segment} | {row['accounts']:,} | {format_uplift('recovered', u['recovered'])} | "
            f"{format_uplift('action_cost', u['action_cost'])} | "
            f"{format_uplift('net_recovery', u['net_recovery'])} | "
            f"{format_uplift('roll_to_default_rate', u['roll_to_default_rate'])} |"
        )
    return "\n".join(lines) + "\n"
