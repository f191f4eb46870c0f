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

from rollrisk.conf import shown_path
from rollrisk.simulator.replay import BOOTSTRAP_SAMPLES
from rollrisk.strategies.tuning import EVERY_SEGMENT

# metric of compare_policies -> (label, format of a value)
LABELS: dict[str, tuple[str, str]] = {
    "book_value": ("book value (CNY)", "{:,.0f}"),
    "recovered": ("cash collected (CNY)", "{:,.0f}"),
    "action_cost": ("action and treatment cost (CNY)", "{:,.0f}"),
    "agency_commission": ("agency commission (CNY)", "{:,.0f}"),
    "net_recovery": ("net recovery (CNY)", "{:,.0f}"),
    "end_balance": ("balance open at the end (CNY)", "{:,.0f}"),
    "end_value": ("value of the open balance (CNY)", "{:,.0f}"),
    "waived_income": ("fees waived (CNY, already in the book value)", "{:,.0f}"),
    "deferred_due": ("dues deferred (CNY, still owed)", "{:,.0f}"),
    "plans_broken": ("restructure plans broken", "{:,.0f}"),
    "open_plan_balance": ("balance on restructure plans at the end (CNY)", "{:,.0f}"),
    "roll_to_default_rate": ("roll-to-default rate (accounts)", "{:.2%}"),
    "roll_to_default_balance_rate": ("roll-to-default rate (balance-weighted)", "{:.2%}"),
    "contacts": ("contacts made", "{:,.0f}"),
    "agency_assignments": ("agency assignments", "{:,.0f}"),
    "legal_filings": ("legal filings", "{:,.0f}"),
    "disputes": ("disputes (complaint proxy)", "{:,.0f}"),
    "pressure_on_capacity_shock": ("pressure contacts on capacity shocks", "{:,.0f}"),
    "treatments_granted": ("treatments granted", "{:,.0f}"),
    "offers_refused": ("treatment offers refused", "{:,.0f}"),
    # a mean per seed: 0.1 block is not "0"
    "compliance_blocks": ("compliance blocks", "{:,.1f}"),
    "agent_calls": ("agent calls made", "{:,.0f}"),
    "field_visits": ("field visits made", "{:,.0f}"),
    "calls_dropped_for_capacity": ("agent calls dropped for capacity", "{:,.0f}"),
    "visits_dropped_for_capacity": ("field visits dropped for capacity", "{:,.0f}"),
}


RATE_METRICS = ("roll_to_default_rate", "roll_to_default_balance_rate")
REFERENCE_NAMES: dict[str, str] = {
    "model_driven": "model-driven policy (the scoring run's policy file)",
    "baseline_tiered": "baseline tiered",
    "baseline_plus_grace": "baseline plus grace for all",
    "segment_blind": "segment-blind (every account in the fallback segment)",
    "oracle_segments": "the same policy fed the true drivers as segments",
    "best_bundle_per_bucket": "best single bundle per bucket (segment-blind)",
    "oracle": "oracle (best bundle per true driver x bucket)",
}


def signed(value: float) -> str:
    """A CNY amount with its sign, whole: ``+1,234``, ``-56``, and ``0`` for what rounds to zero
    (never ``-0`` or ``+0``)."""
    text = f"{value:+,.0f}"
    return "0" if text in ("+0", "-0") else text


def format_ratio(value: float | None) -> str:
    """A share of a reference gap (value captured, value of segmentation), or why there is none."""
    return (
        "n/a (the reference does not beat the comparison beyond its noise)"
        if value is None
        else f"{value:.2f}"
    )


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
    if metric in RATE_METRICS:
        return (
            f"{stats['mean'] * 100:+.2f} pp [{stats['ci_low'] * 100:+.2f}, "
            f"{stats['ci_high'] * 100:+.2f}]"
        )
    return f"{signed(stats['mean'])} [{signed(stats['ci_low'])}, {signed(stats['ci_high'])}]"


def _dropped(row: Mapping[str, Any]) -> str:
    """Calls + visits dropped for capacity in one arm's row (``n/a`` in older results)."""
    if "calls_dropped_for_capacity" not in row:
        return "n/a"
    calls = row["calls_dropped_for_capacity"]["mean"]
    visits = row["visits_dropped_for_capacity"]["mean"]
    return f"{calls + visits:,.0f} ({calls:,.0f} + {visits:,.0f})"


def constraint_lines(result: Mapping[str, Any]) -> list[str]:
    """What every arm was held to: the compliance rules (blocks per rule and arm) and the
    contact capacity, in words (results of older versions: the note that the baseline was
    not checked)."""
    constraints = result.get("constraints") or {}
    compliance, capacity = constraints.get("compliance"), constraints.get("capacity")
    if not compliance and not capacity:
        return [
            "Baseline compliance blocks are not counted: the baseline tiered policy is the "
            "simulator's, and is not run through the compliance engine (its contacts are not "
            "planned actions with times the rules could check)."
        ]
    lines = []
    if compliance:
        jurisdictions = ", ".join(compliance["jurisdictions"]) or "default"
        lines.append(
            "Every arm's contacts and first-delinquency extensions go through the compliance "
            f"rules of the scoring run ({jurisdictions}) every month, planned at the cycle end "
            "with the previous month's contacts as history; compliance blocks = those made when "
            "the arm's decision was taken (the scored decisions of the model-driven accounts, a "
            "reference's own plan) + the replay's. The replay's blocks by rule (mean per seed; "
            "the decision-time blocks are in the arm's total only):"
        )
        for arm, rules in compliance["blocks_by_rule"].items():
            biting = {rule: count for rule, count in rules.items() if count > 0}
            text = ", ".join(f"{rule} {count:,.1f}" for rule, count in biting.items())
            lines.append(f"- {REFERENCE_NAMES.get(arm, arm)}: {text or 'none'}")
    if capacity:
        lines += [
            "",
            f"Contact capacity, enforced in every arm every month: "
            f"{capacity['agent_calls_per_day']:,} agent calls a day "
            f"({capacity['agent_calls_per_month']:,} a month of "
            f"{capacity['working_days_per_month']} working days) and "
            f"{capacity['field_visits_per_month']:,} field visits a month for these "
            f"{capacity['accounts']:,} accounts; beyond it calls and visits are not made "
            f"(highest balance served first). Sized: {capacity['sizing']}.",
        ]
        load = constraints.get("scored_plan_load")
        if load:
            verdict = "within" if load["within_capacity"] else "**EXCEEDS**"
            lines.append(
                f"The scored plan (one month of its ladders) makes {load['agent_calls']:,} "
                f"agent calls and {load['field_visits']:,} field visits: {verdict} the "
                "capacity (the policy is told the capacity, it does not re-plan for it)."
            )
    return lines


SEGMENT_UPLIFT_NOTE = (
    "Per segment: model-driven minus baseline tiered on the segment's accounts, mean over seeds "
    "[95 % t-interval over seeds: Monte Carlo error only, these accounts held fixed]. An "
    "interval of zero width means the two arms did exactly the same to those accounts on every "
    "seed (for example, a segment left in the standard queue with nothing added), not that the "
    "figure is certain."
)


def markdown(result: Mapping[str, Any]) -> str:
    """The comparison as a Markdown report (``policy_simulation.md``, also printed by the job).

    Reads the layout documented in docs/strategies.md ("Policy simulation"); the headline,
    references and value ratios are shown when present (results of older versions lack them).
    """
    arms, uplift = result["arms"], result["uplift"]
    lines = [
        "# Policy simulation: model-driven policy vs baseline tiered policy",
        "",
        f"- scores: `{shown_path(result['scores'])}` (as-of {result['as_of']}, model "
        f"{result['model'].get('name')} v{result['model'].get('version')})",
        f"- portfolio: `{shown_path(result['data'])}` (simulated: seed {result['simulation']['seed']}, "
        f"{result['simulation']['accounts']:,} accounts x {result['simulation']['months']} "
        f"months from {result['simulation']['start_month']})",
        f"- {result['accounts']:,} scored accounts rolled forward {result['months']} months; "
        f"{len(result['seeds'])} seeds (base seed {result['base_seed']}); replayed state matches "
        f"the portfolio's as-of statements for {result['replay_match_share']:.1%} of them",
        f"- costs: `{shown_path(result['costs']['source'])}`",
    ]
    simulation = result["simulation"]
    if "horizon_response_table" in simulation:
        history, horizon = simulation["response_table"], simulation["horizon_response_table"]
        lines.append(
            f"- borrowers respond by the `{horizon}` response table"
            + (
                ""
                if horizon == history
                else f" in the horizon (history simulated under `{history}`)"
            )
        )
    if result.get("policy"):
        rules = f"- policy file: `{shown_path(result['policy'])}`"
        if result.get("compliance"):
            rules += f"; compliance file: `{shown_path(result['compliance'])}`"
        lines.append(rules)
    if "decision" in result:
        lines.append(f"- policy: {result['decision']}")
    if "valuation" in result:
        shares = ", ".join(f"{b} {v:.0%}" for b, v in result["valuation"]["shares"].items())
        lines.append(
            "- book value = cash collected - action and treatment costs - agency commission + "
            f"{result['valuation']['method']}: {shares}"
        )
    same = result.get("same_runs") or {}
    if same:
        pairs = "; ".join(
            f"{REFERENCE_NAMES.get(name, name)} = {REFERENCE_NAMES.get(other, other)}"
            for name, other in same.items()
        )
        lines.append(
            "- the same run as another arm, so equal in every figure (the same accounts in the "
            f"standard tiered collection and the same ladders for the others; run once): {pairs}"
        )
    headline = result.get("headline")
    if headline:
        interval, monte_carlo = headline["uplift"], headline["monte_carlo_interval"]
        lines += [
            "",
            "## Headline: book value",
            "",
            f"Model-driven {format_metric('book_value', headline['model_driven'])} CNY vs "
            f"baseline tiered {format_metric('book_value', headline['baseline_tiered'])} CNY: "
            f"uplift **{format_uplift('book_value', interval)}** (95 % interval resampling "
            f"accounts and seeds together, {interval['samples']:,} resamples). Monte Carlo "
            f"error only (t-interval over the seeds, these accounts held fixed): "
            f"{format_uplift('book_value', monte_carlo)}.",
        ]
    if "references" in result:
        lines += [
            "",
            "## References (same accounts, same random draws)",
            "",
            "| arm | book value | model-driven minus this arm (95 %, accounts and seeds) | "
            "net recovery | roll-to-default (accounts) | roll-to-default (balance) | "
            "compliance blocks | contacts dropped for capacity (calls + visits) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        versus = result.get("uplift_vs_references", {})
        for name, row in result["references"].items():
            label = REFERENCE_NAMES.get(name, name)
            if name in versus:
                gap = format_uplift("book_value", versus[name])
            elif name == "baseline_tiered" and headline:
                gap = format_uplift("book_value", headline["uplift"])
            else:
                gap = "-"
            lines.append(
                f"| {label} | {format_metric('book_value', row['book_value']['mean'])} | {gap} | "
                f"{format_metric('net_recovery', row['net_recovery']['mean'])} | "
                f"{format_metric('roll_to_default_rate', row['roll_to_default_rate']['mean'])} | "
                + format_metric(
                    "roll_to_default_balance_rate", row["roll_to_default_balance_rate"]["mean"]
                )
                + f" | {format_metric('compliance_blocks', row['compliance_blocks']['mean'])} | "
                + _dropped(row)
                + " |"
            )
        lines.append("")
        captured = result.get("value_captured")
        if captured:
            lines.append(
                f"- value captured = (V_policy - V_baseline) / (V_oracle - V_baseline) = "
                f"**{format_ratio(captured['overall'])}** "
                f"({captured['policy_minus_baseline']:+,.0f} of "
                f"{captured['oracle_minus_baseline']:+,.0f} CNY)"
            )
            for driver, row in captured["by_true_driver"].items():
                lines.append(
                    f"  - true driver {driver} ({row['accounts']:,} "
                    f"account{'' if row['accounts'] == 1 else 's'}): "
                    f"{format_ratio(row['value_captured'])} "
                    f"({row['policy_minus_baseline']:+,.0f} of "
                    f"{row['oracle_minus_baseline']:+,.0f} CNY)"
                )
        by_driver = result.get("uplift_by_true_driver")
        if by_driver:
            lines.append(
                "- book-value uplift per true driver (95 % interval over accounts and seeds), "
                "and on its accounts the policy gave a ladder of its own (or steps added to the "
                "standard queue) / left in the standard queue with nothing added:"
            )
            for driver, row in by_driver.items():
                pieces = []
                for name, part in (row.get("by_decision") or {}).items():
                    label = f"{name.replace('_', ' ')} {part['accounts']:,}"
                    if name == "own_ladder" and part.get("segments"):  # the segments acted on
                        label += (
                            f" ({', '.join(f'{k} {c:,}' for k, c in part['segments'].items())})"
                        )
                    pieces.append(f"{label}: {format_uplift('book_value', part['book_value'])}")
                split = "; ".join(pieces)
                lines.append(
                    f"  - {driver} ({row['accounts']:,}) "
                    f"{format_uplift('book_value', row['book_value'])}"
                    + (f" ({split})" if split else "")
                )
        segmentation = result.get("value_of_segmentation")
        if segmentation:
            lines.append(
                "- value of segmentation = (V_policy - V_segment-blind) / "
                "(V_oracle-segments - V_segment-blind) = "
                f"**{format_ratio(segmentation['value'])}** "
                f"({segmentation['policy_minus_segment_blind']:+,.0f} of "
                f"{segmentation['oracle_segments_minus_segment_blind']:+,.0f} CNY)"
            )
        oracle = result.get("oracle")
        if oracle:
            lines.append(
                f"- the oracle's bundles were chosen on seeds {oracle['selection_seeds'][0]}-"
                f"{oracle['selection_seeds'][-1]}, apart from the reported ones: "
                + "; ".join(
                    f"{driver}: " + ", ".join(f"{b} {c}" for b, c in cells.items())
                    for driver, cells in oracle["choice"].items()
                )
            )
            if oracle.get("best_bundle_per_bucket"):
                lines.append(
                    "- the best single bundle per bucket (no truth, same seeds): "
                    + ", ".join(f"{b} {c}" for b, c in oracle["best_bundle_per_bucket"].items())
                )
    lines += [
        "",
        "## Model-driven vs baseline, every figure",
        "",
        "Per policy: mean over seeds. Uplift: model-driven - baseline, paired by seed, "
        "mean [95 % t-interval over seeds: Monte Carlo error only].",
        "",
        "| metric | model-driven | baseline tiered | uplift [95 % CI] |",
        "|---|---|---|---|",
    ]
    for metric, (label, _) in LABELS.items():
        if metric not in arms["model_driven"]:
            continue  # a result of an older version
        model = arms["model_driven"][metric]["mean"]
        base = arms["baseline_tiered"][metric]["mean"]
        lines.append(
            f"| {label} | {format_metric(metric, model)} | {format_metric(metric, base)} | "
            f"{format_uplift(metric, uplift[metric])} |"
        )
    lines += ["", *constraint_lines(result), ""]
    if "uplift_two_way" in result:
        lines += ["Uplift resampling accounts and seeds together (the honest interval):", ""]
        for metric, stats in result["uplift_two_way"].items():
            lines.append(f"- {LABELS[metric][0]}: {format_uplift(metric, stats)}")
        lines.append("")
    lines += [
        "Uplift resampling accounts only (seed-averaged uplift per account, percentile "
        f"bootstrap, {BOOTSTRAP_SAMPLES:,} resamples):",
        "",
    ]
    for metric, stats in result["uplift_account_bootstrap"].items():
        lines.append(f"- {LABELS[metric][0]}: {format_uplift(metric, stats)}")
    lines += [
        "",
        "## Uplift by segment",
        "",
        SEGMENT_UPLIFT_NOTE,
        "",
        "| segment | accounts | book value | recovered | action cost | net recovery | "
        "roll-to-default |",
        "|---|---|---|---|---|---|---|",
    ]
    for segment, row in sorted(result["by_segment"].items()):
        u = row["uplift"]
        book = format_uplift("book_value", u["book_value"]) if "book_value" in u else "n/a"
        lines.append(
            f"| {segment} | {row['accounts']:,} | {book} | "
            f"{format_uplift('recovered', u['recovered'])} | "
            f"{format_uplift('action_cost', u['action_cost'])} | "
            f"{format_uplift('net_recovery', u['net_recovery'])} | "
            f"{format_uplift('roll_to_default_rate', u['roll_to_default_rate'])} |"
        )
    return "\n".join(lines + proposal_lines(result.get("proposal"))) + "\n"


def proposal_lines(proposal: Mapping[str, Any] | None) -> list[str]:
    """``--propose-policy``: each segment x bucket cell's choice and its evidence."""
    if not proposal:
        return []
    by_band = any(c.get("band") for c in proposal["cells"])
    blind = any(c["segment"] == EVERY_SEGMENT for c in proposal["cells"])
    split = " x risk band" if by_band else ""
    how = (
        f"Per start bucket{split}, first the segment-blind choice (segment "
        "`(every segment)`: the treatment whose mean gain over the tiered baseline per account "
        "has the highest lower confidence bound, all segments pooled, if above 0, else the "
        f"baseline); then per scored segment x start bucket{split}, the candidate (the baseline "
        "included) whose gain over that choice has the highest lower bound, if above 0, else "
        "the bucket's choice (column `against`)."
        if blind
        else f"Per scored segment x start bucket{split}: the treatment whose mean gain over the "
        "tiered baseline per account has the highest lower confidence bound on the selection "
        "seeds, if above 0, else the baseline."
    )
    lines = [
        "",
        f"## Proposed policy ({proposal['file']}), tuned on this world",
        "",
        how + " Evaluate it on other worlds before adopting it.",
        "",
        f"| segment | bucket |{' band |' if by_band else ''} accounts | chosen | "
        f"{'against | ' if blind else ''}gain per account (lower bound) | highest mean gain |",
        f"|---|---|{'---|' if by_band else ''}---|---|{'---|' if blind else ''}---|---|",
    ]
    for c in proposal["cells"]:
        bound = c.get("best_bound_lower")
        versus = c.get("versus", "baseline_tiered")
        if c["chosen"] != versus:
            evidence = f"{c['gain']:+,.0f} ({c['lower']:+,.0f})"
        elif bound is None:  # one account: no spread, no bound
            evidence = f"- (no bound: {c['accounts']} account)"
        elif bound > 0:  # a bound above 0 that did not depart: the cell was too small
            evidence = (
                f"- (best bound: {c['best_bound']} {bound:+,.0f}; kept: too few accounts to "
                "depart, --propose-min-accounts)"
            )
        else:  # a cell that kept what it is measured against: its near miss, the best bound
            evidence = f"- (best bound: {c['best_bound']} {bound:+,.0f})"
        band = f" {c.get('band')} |" if by_band else ""
        against = f" {versus} |" if blind else ""
        lines.append(
            f"| {c['segment']} | {c['bucket']} |{band} {c['accounts']:,} | {c['chosen']} |"
            f"{against} {evidence} "
            f"| {c['best_mean']} {c['best_mean_gain']:+,.0f} |"
        )
    return lines
