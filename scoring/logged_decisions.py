"""The logged-decisions table a policy learner needs, built from a portfolio's own history.

``rollrisk learn-policy`` learns from one row per logged decision: which bundle an account
got, with which propensity, what the current policy would have given it, what came of it
(book value over a horizon) and what was known about it at the decision. This module builds
that table from a portfolio that carries the record of its experiments
(``experiment_assignments``: account, as-of, experiment, arm, propensity):

1. **Features, as ``rollrisk score`` gives them.** For each as-of of the record whose horizon
   the portfolio's statements cover, the scoring core (:func:`rollrisk.scoring.core
   .score_accounts`, the function the batch, Spark and the service run) scores the accounts
   with an assignment row at that as-of: probability, risk band, segment, driver-family
   contributions, the policy's treatment. Scoring is per account (the batch partitions the
   book the same way), so scoring only them gives each the row ``rollrisk score`` gives it.
   Only records known by the end of the as-of feed them (the core's point-in-time rule).
2. **The outcome, from observable records only** (:func:`horizon_outcomes`): book value over
   the ``horizon`` statement cycles after the as-of =
   payments received (``amount_paid`` of those statements)
   - action costs (``collection_actions`` rows x the channel's cost, ``treatments`` granted x
   the kind's cost)
   - the agencies' commission (the bucket's rate on the payment of every cycle with an
   ``agency_assignment`` action)
   + the balance still owed at the last statement, valued by a share per bucket that the
   caller estimates from the portfolio's own history (:class:`OutcomeEconomics`).
   Cycle k runs from the day after statement k-1's cycle end to statement k's cycle end;
   cycle 1 starts after the account's latest statement on or before the as-of (the statement
   its DPD at the as-of comes from), so the actions of the cycle the decision acts in are
   counted, as the policy replay counts them (``window_start="as_of"`` counts only actions and
   treatments dated after the as-of). This mirrors
   :attr:`rollrisk.simulator.replay.ArmResult.book_value` step for step; docs/strategies.md
   ("Logged decisions") lists where the two differ.
3. **Every assignment row accounted for**: kept, or set aside with a reason
   (:data:`SET_ASIDE_REASONS`); kept + set aside = the rows of the record, checked.

The arm ``policy`` (eligible, not randomised) got the lender's standard collection: its bundle
is :data:`STANDARD_QUEUE`, which is also every row's ``policy_bundle`` (the logging policy's
decision when an account is not randomised). Other arms are their own bundle.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

import polars as pl

from rollrisk.features.registry import FAMILIES
from rollrisk.features.schemas import CHANNELS, TREATMENT_KINDS
from rollrisk.models.roll_rates import BUCKETS
from rollrisk.scoring.core import ScoringSetup, score_accounts

POLICY_ARM = "policy"  # the record's arm for an eligible account that was not randomised
STANDARD_QUEUE = "standard_queue"  # the bundle of that arm: the lender's standard collection
CHARGED_OFF = len(BUCKETS) - 1  # M7+: the last bucket index
COMMISSION_BUCKETS = BUCKETS[1:CHARGED_OFF]  # M1..M6: where an agency earns a commission

WindowStart = Literal["cycle", "as_of"]

SET_ASIDE_REASONS: dict[str, str] = {
    "horizon_incomplete": "the portfolio's statements end before the horizon does",
    "account_horizon_incomplete": "the account lacks a statement in a month of the horizon",
    "not_scored": "not in the scoring population at the as-of (DPD outside the observation "
    "range, or no statement known by then)",
    "several_experiments": "the account is in more than one experiment at this as-of",
}
"""Why an assignment row did not become a logged decision (the summary counts each)."""

RULE_FEATURES: tuple[str, ...] = (
    "start_bucket",
    "risk_band",
    "segment",
    "product",
    "dpd",
    "amount_overdue",
    *(f"family_{name}" for name in FAMILIES),
)
"""Columns a learned rule may test (the first six are fields conf/policy.yaml can test)."""
MODEL_FEATURES: tuple[str, ...] = ("probability", "exposure", "expected_loss")
"""Further scoring columns for the outcome model only."""
OUTCOME_COLUMNS: tuple[str, ...] = (
    "book_value",
    "recovered",
    "action_cost",
    "agency_commission",
    "end_balance",
    "end_bucket",
    "end_value",
    "horizon_end",
)


@dataclass(frozen=True)
class OutcomeEconomics:
    """What an outcome is worth: unit costs and the valuation of an open balance.

    ``channel_costs`` (one action row) and ``treatment_costs`` (one grant) in currency units,
    ``agency_commission`` the share of a cycle's payment an agency keeps, by the bucket the
    account was in at the cycle's start (M1..M6; none at M0 or M7+), ``value_shares`` the value
    of one unit of balance owed at the horizon's end, by bucket index 0 (M0) .. 7 (M7+), and
    ``plan_share`` that of a balance on a restructure plan in force (current only because it
    was re-aged; ``None``: valued at the share of the start bucket). ``valuation`` says how the
    shares were estimated (recorded in the summary).
    """

    channel_costs: Mapping[str, float]
    treatment_costs: Mapping[str, float]
    agency_commission: Mapping[str, float]
    value_shares: Sequence[float]
    plan_share: float | None = None
    valuation: str = ""

    def __post_init__(self) -> None:
        for name, table, keys in (
            ("channel_costs", self.channel_costs, CHANNELS),
            ("treatment_costs", self.treatment_costs, TREATMENT_KINDS),
            ("agency_commission", self.agency_commission, COMMISSION_BUCKETS),
        ):
            missing = [key for key in keys if key not in table]
            if missing:
                raise ValueError(f"{name} lacks {', '.join(missing)}")
        if len(self.value_shares) != len(BUCKETS):
            raise ValueError(f"value_shares needs one share per bucket {BUCKETS}")


@dataclass(frozen=True)
class LoggedDecisions:
    """The learner's table and the accounting of every assignment row.

    ``decisions``: one row per kept assignment (:func:`build_logged_decisions` lists the
    columns); ``set_aside``: the other rows of the record with ``reason`` (a key of
    :data:`SET_ASIDE_REASONS`) and ``detail``; ``by_as_of``: per as-of of the record, the rows,
    the rows kept and those set aside by reason, and the seconds it took.
    """

    decisions: pl.DataFrame
    set_aside: pl.DataFrame
    by_as_of: list[dict[str, object]] = field(default_factory=list)

    def set_aside_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(SET_ASIDE_REASONS, 0)
        for reason, n in self.set_aside.group_by("reason").len().iter_rows():
            counts[reason] = n
        return counts


def _month(column: str | pl.Expr) -> pl.Expr:
    expr = pl.col(column) if isinstance(column, str) else column
    return expr.dt.year().cast(pl.Int64) * 12 + expr.dt.month().cast(pl.Int64)


def _bucket_index(dpd: pl.Expr) -> pl.Expr:
    """The bucket index of a DPD: 0 current, b for DPD 30(b-1)+1 .. 30b, 7 (M7+) from 181
    (the DPD at which :func:`rollrisk.models.roll_rates.recovery_curve` enters each bucket
    when the valuation shares are estimated)."""
    return pl.when(dpd <= 0).then(0).otherwise(((dpd - 1) // 30 + 1).clip(upper_bound=CHARGED_OFF))


def horizon_outcomes(
    starts: pl.DataFrame,
    statements: pl.DataFrame,
    collection_actions: pl.DataFrame | None,
    treatments: pl.DataFrame | None,
    horizon: int,
    economics: OutcomeEconomics,
    window_start: WindowStart = "cycle",
) -> pl.DataFrame:
    """Book value of each (account, as-of) of ``starts`` over ``horizon`` statement cycles.

    Needs ``starts`` with ``account_id, as_of`` (Date, unique pairs) and the portfolio tables
    in contract columns (the optional ones may be ``None``: no costs from them). Reads only
    statements dated after the account's start statement (its latest on or before the as-of)
    and actions and treatments dated after that statement's cycle end (``window_start=
    "cycle"``) or after the as-of (``"as_of"``), up to the last cycle end of the horizon.

    Returns ``starts``' rows with ``start_cycle_end``, ``horizon_statements`` (statements
    found in the horizon), ``complete`` (``horizon`` statements after the as-of, the last
    within ``horizon`` calendar months of the as-of's month: no month missing) and the
    :data:`OUTCOME_COLUMNS` (null when not complete): ``recovered`` (payments),
    ``action_cost`` (actions and treatments), ``agency_commission``, ``end_balance`` (owed at
    the last statement; a credit counts as 0), ``end_bucket`` (its bucket name), ``end_value``
    (valued by ``economics``) and ``horizon_end`` (the last statement's cycle end).
    """
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 month, got {horizon}")
    keys = starts.select("account_id", pl.col("as_of").cast(pl.Date)).with_row_index("_row")
    history = statements.select("account_id", "cycle_end", "amount_paid", "balance", "dpd").join(
        keys.select("account_id").unique(), on="account_id", how="semi"
    )
    paired = keys.join(history, on="account_id", how="inner")
    start = (
        paired.filter(pl.col("cycle_end") <= pl.col("as_of"))
        .group_by("_row")
        .agg(
            pl.col("cycle_end").max().alias("start_cycle_end"),
            pl.col("dpd").sort_by("cycle_end").last().alias("_start_dpd"),
        )
    )
    cycles = (
        paired.filter(pl.col("cycle_end") > pl.col("as_of"))
        .sort("_row", "cycle_end")
        .with_columns(pl.int_range(1, pl.len() + 1).over("_row").alias("_k"))
        .filter(pl.col("_k") <= horizon)
        .join(start, on="_row", how="left")
        .with_columns(
            # the bucket at the start of each cycle: the previous statement's
            pl.col("dpd").shift(1).over("_row").fill_null(pl.col("_start_dpd")).alias("_dpd0"),
            pl.col("cycle_end")
            .shift(1)
            .over("_row")
            .fill_null(pl.col("start_cycle_end"))
            .alias("_cycle_start"),
        )
    )
    if window_start == "as_of":
        cycles = cycles.with_columns(
            pl.when(pl.col("_k") == 1)
            .then(pl.max_horizontal("_cycle_start", "as_of"))
            .otherwise(pl.col("_cycle_start"))
            .alias("_cycle_start")
        )
    elif window_start != "cycle":
        raise ValueError(f"window_start must be 'cycle' or 'as_of', got {window_start!r}")
    # a start statement may be missing (the account was not scored): the cycle then starts
    # at the as-of, so nothing before the decision is counted
    cycles = cycles.with_columns(pl.col("_cycle_start").fill_null(pl.col("as_of")))
    spans = cycles.select("_row", "account_id", "_k", "_cycle_start", "cycle_end")

    def in_cycle(events: pl.DataFrame, stamp: str) -> pl.DataFrame:
        """Each event (dated by ``stamp``) of a scored account, with the cycle it falls in."""
        day = pl.col(stamp).cast(pl.Date)
        return (
            events.join(spans, on="account_id", how="inner")
            .filter((day > pl.col("_cycle_start")) & (day <= pl.col("cycle_end")))
            .drop("cycle_end")
        )

    channel_cost = pl.DataFrame(
        {"channel": list(CHANNELS), "_cost": [economics.channel_costs[c] for c in CHANNELS]}
    )
    per_cycle = cycles.select("_row", "_k")
    if collection_actions is not None:
        actions = in_cycle(
            collection_actions.select("account_id", "action_at", "channel"), "action_at"
        )
        action_sums = (
            actions.join(channel_cost, on="channel", how="left")
            .group_by("_row", "_k")
            .agg(
                pl.col("_cost").sum().alias("_action_cost"),
                (pl.col("channel") == "agency_assignment").any().alias("_agency"),
            )
        )
        per_cycle = per_cycle.join(action_sums, on=["_row", "_k"], how="left")
    else:
        per_cycle = per_cycle.with_columns(
            pl.lit(None, pl.Float64).alias("_action_cost"),
            pl.lit(None, pl.Boolean).alias("_agency"),
        )
    if treatments is not None:
        kind_cost = pl.DataFrame(
            {
                "kind": list(TREATMENT_KINDS),
                "_cost": [economics.treatment_costs[k] for k in TREATMENT_KINDS],
            }
        )
        granted = in_cycle(treatments.select("account_id", "kind", "start_at"), "start_at")
        treatment_sums = (
            granted.join(kind_cost, on="kind", how="left")
            .group_by("_row", "_k")
            .agg(pl.col("_cost").sum().alias("_treatment_cost"))
        )
        per_cycle = per_cycle.join(treatment_sums, on=["_row", "_k"], how="left")
    else:
        per_cycle = per_cycle.with_columns(pl.lit(None, pl.Float64).alias("_treatment_cost"))

    rates = [0.0, *(economics.agency_commission[b] for b in COMMISSION_BUCKETS), 0.0]
    shares = pl.lit(pl.Series([float(s) for s in economics.value_shares]))
    cycles = cycles.join(per_cycle, on=["_row", "_k"], how="left").with_columns(
        pl.when(pl.col("_agency").fill_null(False))
        .then(
            pl.lit(pl.Series(rates)).gather(_bucket_index(pl.col("_dpd0"))) * pl.col("amount_paid")
        )
        .otherwise(0.0)
        .alias("_commission"),
        (pl.col("_action_cost").fill_null(0.0) + pl.col("_treatment_cost").fill_null(0.0)).alias(
            "_cost"
        ),
    )
    summed = cycles.group_by("_row").agg(
        pl.len().alias("horizon_statements"),
        pl.col("amount_paid").sum().alias("recovered"),
        pl.col("_cost").sum().alias("action_cost"),
        pl.col("_commission").sum().alias("agency_commission"),
        # the last statement of the horizon, by cycle number (not by the rows' order in a group)
        pl.col("cycle_end").sort_by("_k").last().alias("horizon_end"),
        pl.col("balance").sort_by("_k").last().clip(lower_bound=0.0).alias("end_balance"),
        pl.col("dpd").sort_by("_k").last().alias("_end_dpd"),
    )
    out = (
        keys.join(start, on="_row", how="left")
        .join(summed, on="_row", how="left")
        .with_columns(pl.col("horizon_statements").fill_null(0).cast(pl.Int64))
        .with_columns(
            (
                (pl.col("horizon_statements") == horizon)
                & (_month("horizon_end") <= _month("as_of") + horizon)
            )
            .fill_null(False)
            .alias("complete")
        )
    )
    out = _with_plan(out, treatments)
    end_share = shares.gather(_bucket_index(pl.col("_end_dpd")))
    plan_share = (
        shares.gather(_bucket_index(pl.col("_start_dpd")))
        if economics.plan_share is None
        else pl.lit(economics.plan_share)
    )
    share = (
        pl.when(pl.col("_plan") & (pl.col("_end_dpd") == 0)).then(plan_share).otherwise(end_share)
    )
    done = pl.col("complete")
    out = out.with_columns(
        pl.when(done).then(pl.col(c)).alias(c)
        for c in ("recovered", "action_cost", "agency_commission", "end_balance", "horizon_end")
    ).with_columns(
        pl.when(done)
        .then(pl.lit(pl.Series(BUCKETS)).gather(_bucket_index(pl.col("_end_dpd"))))
        .alias("end_bucket"),
        pl.when(done).then(pl.col("end_balance") * share).alias("end_value"),
    )
    out = out.with_columns(
        (
            pl.col("recovered")
            - pl.col("action_cost")
            - pl.col("agency_commission")
            + pl.col("end_value")
        ).alias("book_value")
    )
    return out.sort("_row").select(
        "account_id",
        "as_of",
        "start_cycle_end",
        "horizon_statements",
        "complete",
        *OUTCOME_COLUMNS,
    )


def _with_plan(out: pl.DataFrame, treatments: pl.DataFrame | None) -> pl.DataFrame:
    """``_plan``: a restructure plan is in force at the horizon's end (started on or before
    the last cycle end, not ended by then)."""
    if treatments is None:
        return out.with_columns(pl.lit(False).alias("_plan"))
    plans = treatments.filter(pl.col("kind") == "restructure").select(
        "account_id",
        pl.col("start_at").cast(pl.Date).alias("_plan_start"),
        pl.col("end_at").cast(pl.Date).alias("_plan_end"),
    )
    in_force = (
        out.select("_row", "account_id", "horizon_end")
        .join(plans, on="account_id", how="inner")
        .filter(
            (pl.col("_plan_start") <= pl.col("horizon_end"))
            & (pl.col("_plan_end").is_null() | (pl.col("_plan_end") > pl.col("horizon_end")))
        )
        .select("_row")
        .unique()
        .with_columns(pl.lit(True).alias("_plan"))
    )
    return out.join(in_force, on="_row", how="left").with_columns(pl.col("_plan").fill_null(False))


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------
ASSIGNMENT_COLUMNS = ("account_id", "as_of", "experiment_id", "arm", "propensity")
SET_ASIDE_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "as_of": pl.Date(),
    "experiment_id": pl.String(),
    "arm": pl.String(),
    "propensity": pl.Float64(),
    "reason": pl.String(),
    "detail": pl.String(),
}
# what scoring gives that the table carries (the policy's own treatment renamed, so it is not
# read as the bundle the account got)
SCORED_COLUMNS = (
    *RULE_FEATURES,
    *MODEL_FEATURES,
    "segment_rule",
    "treatment",
    "policy_rule",
    "model_name",
    "model_version",
)
# Progress callback: (as_of, assignment rows at it, rows kept, seconds)
Progress = Callable[[date, int, int, float], None]


def _set_aside(rows: pl.DataFrame, reason: str, detail: str | pl.Expr) -> pl.DataFrame:
    detail_expr = pl.lit(detail) if isinstance(detail, str) else detail
    return rows.select(
        *ASSIGNMENT_COLUMNS, pl.lit(reason).alias("reason"), detail_expr.alias("detail")
    ).cast(SET_ASIDE_SCHEMA)  # type: ignore[arg-type]


def build_logged_decisions(
    accounts: pl.DataFrame,
    statements: pl.DataFrame,
    collection_actions: pl.DataFrame | None,
    treatments: pl.DataFrame | None,
    assignments: pl.DataFrame,
    setup: ScoringSetup,
    economics: OutcomeEconomics,
    horizon: int = 6,
    window_start: WindowStart = "cycle",
    progress: Progress | None = None,
    arm_bundles: Mapping[tuple[str, str], str | None] | None = None,
) -> LoggedDecisions:
    """One logged decision per assignment row that can be scored and followed (module docstring).

    Needs the portfolio tables in contract columns and ``assignments`` with
    ``account_id, as_of, experiment_id, arm, propensity`` (the ``experiment_assignments``
    record). Returns :class:`LoggedDecisions`; its ``decisions`` hold ``account_id, as_of,
    experiment_id, arm``, ``bundle`` (the arm; :data:`STANDARD_QUEUE` for the ``policy`` arm),
    ``policy_bundle`` (:data:`STANDARD_QUEUE`), ``propensity``, the :data:`OUTCOME_COLUMNS`,
    the :data:`RULE_FEATURES` and :data:`MODEL_FEATURES`, and ``segment_rule``,
    ``scored_treatment`` (the scored policy's own treatment), ``policy_rule``, ``model_name``,
    ``model_version``; sorted by as-of and account. ``arm_bundles`` (from the experiment file
    the record was logged under, :func:`rollrisk.strategies.experiments.arm_bundles`) names
    the bundle of an ``(experiment_id, arm)``: None for an arm that follows the policy
    (:data:`STANDARD_QUEUE`); an arm it does not list keeps its name.

    Raises:
        UserError: the scoring core's (a table the model was trained with is absent).
        RuntimeError: kept + set aside differs from the assignment rows (never published).
    """
    record = assignments.select(*ASSIGNMENT_COLUMNS).with_columns(pl.col("as_of").cast(pl.Date))
    last_month = statements["cycle_end"].max()
    last_month = None if last_month is None else _month_number(last_month)  # type: ignore[arg-type]
    kept: list[pl.DataFrame] = []
    aside: list[pl.DataFrame] = [pl.DataFrame(schema=SET_ASIDE_SCHEMA)]
    by_as_of: list[dict[str, object]] = []
    for as_of in sorted(record["as_of"].unique().to_list()):
        started = time.perf_counter()
        rows = record.filter(pl.col("as_of") == as_of)
        here = rows.height
        aside_before = len(aside)
        twice = rows.filter(pl.len().over("account_id") > 1)
        if twice.height:
            named = twice.join(
                twice.group_by("account_id").agg(
                    pl.col("experiment_id").sort().str.join(", ").alias("_in")
                ),
                on="account_id",
            )
            detail = pl.format("in experiments {} at this as-of", pl.col("_in"))
            aside.append(_set_aside(named, "several_experiments", detail))
            rows = rows.join(twice.select("account_id"), on="account_id", how="anti")
        if rows.height and (last_month is None or last_month < _month_number(as_of) + horizon):
            detail = f"the statements end before {horizon} months after {as_of}"
            aside.append(_set_aside(rows, "horizon_incomplete", detail))
            rows = rows.clear()
        decisions = _decisions_at(
            rows, as_of, accounts, statements, collection_actions, treatments, setup,
            economics, horizon, window_start, aside,
        )  # fmt: skip
        if decisions.height:
            kept.append(decisions)
        seconds = time.perf_counter() - started
        reasons: dict[str, int] = {}
        for frame in aside[aside_before:]:
            reason = frame["reason"][0]
            reasons[reason] = reasons.get(reason, 0) + frame.height
        by_as_of.append(
            {
                "as_of": as_of.isoformat(),
                "assignments": here,
                "kept": decisions.height,
                "set_aside": reasons,
                "seconds": round(seconds, 2),
            }
        )
        if progress is not None:
            progress(as_of, here, decisions.height, seconds)
    table = pl.concat(kept, how="vertical") if kept else pl.DataFrame()
    if arm_bundles and table.height:
        # the experiment file names each arm's bundle: a policy-following arm got the logging
        # policy's decision, a ladder arm the policy treatment with its steps (else its name)
        named = pl.DataFrame(
            [(e, a, b) for (e, a), b in arm_bundles.items()],
            schema={"experiment_id": pl.String, "arm": pl.String, "_bundle": pl.String},
            orient="row",
        ).with_columns(
            pl.col("experiment_id").cast(table.schema["experiment_id"]),
            pl.col("arm").cast(table.schema["arm"]),
            pl.col("_bundle").fill_null(STANDARD_QUEUE),
        )
        table = (
            table.join(named, on=["experiment_id", "arm"], how="left", maintain_order="left")
            .with_columns(pl.coalesce("_bundle", "bundle").alias("bundle"))
            .drop("_bundle")
        )
    set_aside = pl.concat(aside, how="vertical").sort("as_of", "account_id", "experiment_id")
    if table.height + set_aside.height != record.height:  # nothing lost, nothing doubled
        raise RuntimeError(
            f"{record.height} assignment rows, but {table.height} kept and "
            f"{set_aside.height} set aside"
        )
    return LoggedDecisions(
        decisions=table.sort("as_of", "account_id") if table.height else table,
        set_aside=set_aside,
        by_as_of=by_as_of,
    )


def _month_number(day: date) -> int:
    return day.year * 12 + day.month


def _known_at_decision(
    statements: pl.DataFrame,
    collection_actions: pl.DataFrame | None,
    treatments: pl.DataFrame | None,
    as_of: date,
) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """The action and treatment records known when the decision was made: before the day after
    each account's decision statement (its latest cycle end on or before ``as_of``).

    A lender decides on a delinquent account when its statement comes out; the actions and
    treatments dated after it, up to the month-end as-of, are that decision's consequences (an
    arm's first calls, its grace period). Features that saw them would depend on the arm the
    account got, which a learner must not condition on (the simulated lender acts 1 to 26 days
    after each cycle end, so most of a month's first contacts fall before the month-end). So
    they are withheld from the features, for every arm alike; the outcome still counts them.
    """
    cutoff = (
        statements.filter(pl.col("cycle_end") <= as_of)
        .group_by("account_id")
        .agg(
            (pl.col("cycle_end").max().cast(pl.Datetime("us")) + pl.duration(days=1)).alias("_cut")
        )
    )

    def before(table: pl.DataFrame | None, stamp: str) -> pl.DataFrame | None:
        if table is None:
            return None
        joined = table.join(cutoff, on="account_id", how="left")
        keep = pl.col("_cut").is_null() | (pl.col(stamp).cast(pl.Datetime("us")) < pl.col("_cut"))
        return joined.filter(keep).drop("_cut")

    return before(collection_actions, "action_at"), before(treatments, "known_at")


def _decisions_at(
    rows: pl.DataFrame,
    as_of: date,
    accounts: pl.DataFrame,
    statements: pl.DataFrame,
    collection_actions: pl.DataFrame | None,
    treatments: pl.DataFrame | None,
    setup: ScoringSetup,
    economics: OutcomeEconomics,
    horizon: int,
    window_start: WindowStart,
    aside: list[pl.DataFrame],
) -> pl.DataFrame:
    """The logged decisions of ``rows`` (one as-of, one row per account); the rows that cannot
    be kept are appended to ``aside``."""
    wanted = rows.select("account_id")

    def only(table: pl.DataFrame | None) -> pl.DataFrame | None:
        return None if table is None else table.join(wanted, on="account_id", how="semi")

    actions_known, treatments_known = _known_at_decision(
        only(statements),  # type: ignore[arg-type]
        only(collection_actions),
        only(treatments),
        as_of,
    )
    scored = (
        score_accounts(
            only(accounts),  # type: ignore[arg-type]
            only(statements),  # type: ignore[arg-type]
            actions_known,
            treatments_known,
            as_of,
            setup,
        )
        if rows.height
        else pl.DataFrame()
    )
    if scored.height:
        scored = scored.select("account_id", *SCORED_COLUMNS).rename(
            {"treatment": "scored_treatment"}
        )
        in_scores = rows.join(scored.select("account_id"), on="account_id", how="semi")
    else:
        in_scores = rows.clear()
    missed = rows.join(in_scores.select("account_id"), on="account_id", how="anti")
    if missed.height:
        aside.append(_set_aside(missed, "not_scored", f"not in the population at {as_of}"))
    if not in_scores.height:
        return pl.DataFrame()
    outcomes = horizon_outcomes(
        in_scores.select("account_id", "as_of"),
        only(statements),  # type: ignore[arg-type]
        only(collection_actions),
        only(treatments),
        horizon,
        economics,
        window_start,
    )
    short = outcomes.filter(~pl.col("complete"))
    if short.height:
        aside.append(
            _set_aside(
                in_scores.join(short.select("account_id", "horizon_statements"), on="account_id"),
                "account_horizon_incomplete",
                pl.format(
                    "{} of {} statements after the as-of within the horizon",
                    pl.col("horizon_statements"),
                    pl.lit(horizon),
                ),
            )
        )
    followed = outcomes.filter(pl.col("complete")).select("account_id", *OUTCOME_COLUMNS)
    return (
        in_scores.join(followed, on="account_id", how="inner")
        .join(scored, on="account_id", how="left")
        .select(
            "account_id",
            "as_of",
            "experiment_id",
            "arm",
            pl.when(pl.col("arm") == POLICY_ARM)
            .then(pl.lit(STANDARD_QUEUE))
            .otherwise(pl.col("arm"))
            .alias("bundle"),
            pl.lit(STANDARD_QUEUE).alias("policy_bundle"),
            "propensity",
            *OUTCOME_COLUMNS,
            *RULE_FEATURES,
            *MODEL_FEATURES,
            "segment_rule",
            "scored_treatment",
            "policy_rule",
            "model_name",
            "model_version",
        )
    )
