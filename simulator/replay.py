"""Run a scored collection policy forward on the simulator, against the baseline tiered policy.

This is the strategy testbed: it is the ONLY job besides the segment-recovery evaluation that
reads a simulated portfolio's hidden ``truth/`` (the seed and the rules in ``params.json``), and
it does so because the borrowers' response to a policy can only be measured where their latent
drivers are known. Models and features never see it.

Method (see docs/strategies.md, "Policy simulation"):

1. **Replay.** The portfolio is re-simulated from its seed with the simulator's own step
   functions (:mod:`rollrisk.simulator.engine`) up to the as-of month of the scores, which
   gives each scored account's exact simulator state (bucket, balances, active treatment, failed
   contacts, latent driver). The replayed DPD and balance are checked against the portfolio's
   statements of that month (``replay_match_share``).
2. **Two arms, common random numbers.** From that state every scored account is rolled forward
   ``months`` months twice: once with the model-driven policy's scored decision (its
   ``actions`` after compliance), once with the simulator's baseline tiered policy
   (:func:`~rollrisk.simulator.engine.tiered_actions` and
   :func:`~rollrisk.simulator.engine.grant_treatments`). Both arms use the same random
   streams per (seed, month, purpose); the transition step draws a fixed number of uniforms per
   account, so an account whose actions are the same in both arms has the same fate in both.
3. **Model-driven arm.** Month 0 applies the scored ladder: contacts by the channels the
   policy declares for each action (:meth:`rollrisk.strategies.policy.ActionSpec.channels_used`:
   ``reminder`` -> its channel, ``call`` -> agent/robo call, ``restructure_offer`` -> its
   channel, ``agency_assignment``, ``field_visit_with_notice`` -> a field visit and a notice
   letter, ``legal_referral`` -> legal) and treatments (``grace_period`` for a month count drawn
   like the simulator's grace, ``interest_waiver`` for ``waiver_months``,
   ``first_delinquency_extension`` for one month; a ``restructure_offer`` becomes a restructure
   when the borrower claims hardship that month, at M2+ above ``restructure_balance``, as in the
   simulator). Later months repeat the ladder's contacts while the account stays in M1-M3; an
   account that rolls past M3 (outside the policy's scope) gets the baseline's 90+ actions in
   both arms. Collection stops while a grace period or restructure plan is honoured, as in the
   baseline. Treatments are taken up when granted (no refusal model).
4. **Baseline arm.** The simulator's tiered policy, with its 5 % holdout switched off (the
   baseline proper), including its first-delinquency extensions and hardship treatments.

Metrics per arm and seed: recovered amount (payments made in the horizon), action cost
(``conf/action_costs.yaml``), net recovery, roll-to-default rate (a cycle end at DPD >=
``default_dpd`` within the horizon, the observation settings' default as in the training
labels: 90+ unless the user chose otherwise), contacts made, agency assignments, legal filings, disputes (a contact outcome
``dispute``; the simulator has no complaint channel, so disputes are the complaint proxy),
pressure contacts on borrowers in an active capacity shock (calls, agency, visits, letters,
legal: what draws complaints and does not help them), treatments granted, and compliance blocks
(actions the compliance rules removed from the scored decisions; the baseline is not run
through the compliance engine, so it has none counted). Uplift = model-driven - baseline, paired
by seed, with a two-sided 95 % Student-t interval over the seeds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from rollrisk.conf import DEFAULT_COSTS
from rollrisk.errors import UserError
from rollrisk.features.observations import ObservationSpec
from rollrisk.features.schemas import CHANNELS, OUTCOMES, TREATMENT_KINDS
from rollrisk.models.stats import percentile_bootstrap, t_interval
from rollrisk.simulator.engine import (
    CH,
    DRV,
    KIND,
    ChunkAccounts,
    ChunkState,
    MonthActions,
    RuleArrays,
    World,
    action_rows,
    cycle_end_days,
    dpd_of,
    draw_accounts,
    grant_treatments,
    make_world,
    record_contacts,
    rule_arrays,
    statement_columns,
    tiered_actions,
    transition,
    treatment_active,
)
from rollrisk.simulator.rules import CHARGE_OFF_BUCKET, SimulationRules
from rollrisk.simulator.truth import SimulatedPortfolio
from rollrisk.strategies.policy import ACTIONS

DEFAULT_BASE_SEED = 20_260_101
# The roll-to-default event is the observation settings' (as in the training labels: some
# cycle end within the horizon at DPD >= default_dpd); the job passes the user's.
DEFAULT_OBSERVATION = ObservationSpec()
POLICY_MAX_BUCKET = 3  # the model-driven policy decides for M1-M3
CONTACT_CHANNELS = ("sms", "app_push", "robo_call", "agent_call", "field_visit", "notice_letter")
PRESSURE_CHANNELS = (
    "robo_call",
    "agent_call",
    "agency_assignment",
    "field_visit",
    "notice_letter",
    "legal",
)
TREATMENT_ACTIONS = ("grace_period", "interest_waiver", "first_delinquency_extension")
ARMS = ("model_driven", "baseline_tiered")
BOOTSTRAP_SAMPLES = 1_000
BOOTSTRAP_METRICS = ("recovered", "net_recovery", "roll_to_default_rate")
METRICS = (
    "recovered",
    "action_cost",
    "net_recovery",
    "roll_to_default_rate",
    "contacts",
    "agency_assignments",
    "legal_filings",
    "disputes",
    "pressure_on_capacity_shock",
    "treatments_granted",
    "compliance_blocks",
)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActionCosts:
    """Cost (CNY) of one action row per channel and of one granted treatment per kind."""

    channels: Mapping[str, float]
    treatments: Mapping[str, float]
    source: str

    def channel_vector(self) -> np.ndarray:
        return np.array([self.channels[c] for c in CHANNELS], dtype=float)

    def treatment_vector(self) -> np.ndarray:
        return np.array([self.treatments[k] for k in TREATMENT_KINDS], dtype=float)


def load_action_costs(path: Path = DEFAULT_COSTS) -> ActionCosts:
    """Read ``conf/action_costs.yaml``: every channel and treatment kind needs a cost >= 0."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise UserError(f"{path}: cannot read the action cost table ({error})") from error
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping with `channels` and `treatments`")
    tables: dict[str, dict[str, float]] = {}
    for key, names in (("channels", CHANNELS), ("treatments", TREATMENT_KINDS)):
        table = raw.get(key)
        if not isinstance(table, dict):
            raise UserError(f"{path}: `{key}` must map each of {', '.join(names)} to a cost")
        unknown = sorted(set(table) - set(names))
        missing = [n for n in names if n not in table]
        if unknown or missing:
            raise UserError(
                f"{path}: `{key}`: unknown {unknown or 'none'}, missing {missing or 'none'}"
            )
        for name, value in table.items():
            if not isinstance(value, int | float) or value < 0 or math.isnan(value):
                raise UserError(f"{path}: `{key}.{name}` must be a cost >= 0, got {value!r}")
        tables[key] = {n: float(v) for n, v in table.items()}
    return ActionCosts(tables["channels"], tables["treatments"], str(path))


@dataclass(frozen=True)
class ModelPlan:
    """The scored decisions as simulator inputs (one row per scored account, replay order)."""

    channel_counts: np.ndarray  # (n, channels) contacts per month of the ladder
    grace: np.ndarray  # bool per account
    waiver: np.ndarray
    extension: np.ndarray
    restructure_offer: np.ndarray
    compliance_blocks: np.ndarray  # actions removed by compliance, per account


def model_plan(actions_json: Sequence[str], trails_json: Sequence[str]) -> ModelPlan:
    """Translate the scored ``actions`` and ``trail`` JSON columns (see scoring/core.py)."""
    n = len(actions_json)
    counts = np.zeros((n, len(CHANNELS)), dtype=np.int64)
    flags = {name: np.zeros(n, dtype=bool) for name in (*TREATMENT_ACTIONS, "restructure_offer")}
    blocks = np.zeros(n, dtype=np.int64)
    for i, (text, trail) in enumerate(zip(actions_json, trails_json, strict=True)):
        for step in json.loads(text):
            action = step["action"]
            if action in TREATMENT_ACTIONS:
                flags[action][i] = True
                continue
            if action == "restructure_offer":
                flags["restructure_offer"][i] = True
            if action not in ACTIONS or not ACTIONS[action].channels:
                raise ValueError(f"scored action {action!r} has no simulator channel")
            for channel in ACTIONS[action].channels_used(step.get("channel") or None):
                counts[i, CH[channel]] += 1
        blocks[i] = sum(1 for change in json.loads(trail) if change["change"] == "removed")
    return ModelPlan(
        counts,
        flags["grace_period"],
        flags["interest_waiver"],
        flags["first_delinquency_extension"],
        flags["restructure_offer"],
        blocks,
    )


# --------------------------------------------------------------------------------------------
# Replay to the as-of
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Replay:
    """The simulator state of the scored accounts at the as-of month (replay order)."""

    rules: SimulationRules
    arrays: RuleArrays
    world: World
    accounts: ChunkAccounts
    state: ChunkState
    previous_bucket: np.ndarray
    month: int  # month index of the as-of (0 = the portfolio's first month)
    account_ids: list[str]
    replay_match_share: float  # scored accounts whose replayed statement matches the data


def _take(obj: Any, positions: np.ndarray) -> Any:
    """The same dataclass restricted to ``positions`` of every per-account array."""
    return replace(
        obj,
        **{
            f.name: getattr(obj, f.name)[positions]
            for f in fields(obj)
            if isinstance(getattr(obj, f.name), np.ndarray)
        },
    )


def _concat(parts: Sequence[Any]) -> Any:
    first = parts[0]
    return replace(
        first,
        **{
            f.name: np.concatenate([getattr(p, f.name) for p in parts])
            for f in fields(first)
            if isinstance(getattr(first, f.name), np.ndarray)
        },
    )


def extended_world(sim: SimulatedPortfolio, months_needed: int) -> World:
    """The portfolio's world, continued past its last month when the horizon needs it.

    The months of the portfolio are drawn exactly as the simulator drew them; the months after
    it come from a longer draw of the same seed (an unknown future, shared by both arms).
    """
    world = make_world(sim.rules, sim.seed, sim.months, sim.start_month)
    if months_needed <= sim.months:
        return world
    longer = make_world(sim.rules, sim.seed, months_needed, sim.start_month)
    keep = len(world.macro)
    return replace(
        world,
        macro=np.concatenate([world.macro, longer.macro[keep:]]),
        regional_shock=np.concatenate([world.regional_shock, longer.regional_shock[keep:]]),
    )


def month_index(start_month: str, as_of: Any) -> int:
    start = np.datetime64(start_month, "M")
    return int((np.datetime64(str(as_of), "M") - start).astype(int))


def replay_to_month(
    sim: SimulatedPortfolio,
    account_ids: Sequence[str],
    month: int,
    horizon: int,
    statements: pl.DataFrame | None = None,
    progress: Callable[[Iterable[int], int], Iterable[int]] | None = None,
) -> Replay:
    """Re-simulate the chunks holding ``account_ids`` up to (not including) ``month``'s actions.

    Mirrors the loop of :func:`rollrisk.simulator.engine.simulate_chunk` step for step (same
    random stream, same calls), so the state equals the one that wrote the portfolio. When
    ``statements`` is given, the replayed DPD and balance at ``month`` are compared with the
    portfolio's statements of that month.
    """
    if not 0 <= month < sim.months:
        raise UserError(
            f"the as-of month (index {month}) is outside the simulated window "
            f"({sim.start_month}, {sim.months} months)"
        )
    rules = sim.rules
    arrays = rule_arrays(rules)
    world = extended_world(sim, month + horizon)
    try:
        numbers = np.array([int(a.removeprefix("A")) for a in account_ids], dtype=np.int64)
    except ValueError as error:
        raise UserError(
            f"scored account ids are not ids of this simulated portfolio (A + 9 digits): {error}"
        ) from error
    if len(numbers) and (numbers.min() < 0 or numbers.max() >= sim.accounts):
        raise UserError("scored account ids are not accounts of this simulated portfolio")
    chunk_of = numbers // rules.chunk_accounts
    chunks = sorted(set(chunk_of.tolist()))
    accounts_parts, state_parts, previous_parts, order = [], [], [], []
    iterator = progress(chunks, len(chunks)) if progress else chunks
    for chunk in iterator:
        size = min(rules.chunk_accounts, sim.accounts - chunk * rules.chunk_accounts)
        rng = np.random.default_rng(np.random.SeedSequence(sim.seed, spawn_key=(1 + chunk,)))
        first = chunk * rules.chunk_accounts
        accounts, state = draw_accounts(rules, arrays, world, rng, first, size)
        previous_bucket = state.bucket
        for m in range(world.first_month, month):
            cycle_end = cycle_end_days(accounts, world, m)
            if m >= 0:
                statement_columns(
                    accounts, arrays, state, cycle_end, rng, rules.known_at_late_probability
                )
            acted, counts = tiered_actions(rules, accounts, arrays, state, m, rng)
            month_actions = action_rows(accounts, arrays, state, acted, counts, cycle_end, rng)
            state = record_contacts(state, month_actions)
            restructured_now = np.zeros(size, dtype=bool)
            if m >= 0:
                state, granted = grant_treatments(
                    rules, accounts, state, previous_bucket, month_actions, cycle_end, m, rng
                )
                restructured_now[granted.account[granted.kind == KIND["restructure"]]] = True
            previous_bucket = state.bucket
            state = transition(
                rules, accounts, arrays, world, state, month_actions.cure_shift,
                month_actions.roll_shift, restructured_now, m, rng,
            )  # fmt: skip
        positions = np.flatnonzero(chunk_of == chunk)
        local = numbers[positions] - first
        accounts_parts.append(_take(accounts, local))
        state_parts.append(_take(state, local))
        previous_parts.append(previous_bucket[local])
        order.append(positions)
    positions = np.concatenate(order) if order else np.zeros(0, dtype=np.int64)
    accounts = _concat(accounts_parts)
    state = _concat(state_parts)
    ids = [account_ids[i] for i in positions.tolist()]
    match = _replay_match(accounts, state, world, month, ids, statements)
    return Replay(
        rules, arrays, world, accounts, state, np.concatenate(previous_parts), month, ids, match
    )


def _replay_match(
    accounts: ChunkAccounts,
    state: ChunkState,
    world: World,
    month: int,
    ids: list[str],
    statements: pl.DataFrame | None,
) -> float:
    if statements is None or not ids:
        return math.nan
    cycle_end = cycle_end_days(accounts, world, month)
    replayed = pl.DataFrame(
        {
            "account_id": ids,
            "cycle_end": cycle_end,
            "_dpd": dpd_of(state),
            "_balance": np.round(state.balance, 2),
        }
    ).with_columns(pl.col("cycle_end").cast(pl.Date))
    joined = replayed.join(
        statements.select("account_id", "cycle_end", "dpd", "balance"),
        on=["account_id", "cycle_end"],
        how="left",
    )
    same = (joined["dpd"] == joined["_dpd"]) & (
        (joined["balance"] - joined["_balance"]).abs() < 0.02
    )
    return float(same.fill_null(False).mean())


# --------------------------------------------------------------------------------------------
# The two arms
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArmResult:
    """Per-account outcomes of one arm over the horizon (replay order)."""

    recovered: np.ndarray
    action_cost: np.ndarray
    defaulted: np.ndarray  # bool: reached default_dpd within the horizon
    contacts: np.ndarray
    agency_assignments: np.ndarray
    legal_filings: np.ndarray
    disputes: np.ndarray
    pressure_on_capacity_shock: np.ndarray
    treatments_granted: np.ndarray
    compliance_blocks: np.ndarray


def _streams(base_seed: int, seed: int, step: int) -> tuple[np.random.Generator, ...]:
    """Three independent streams (actions, treatments, transition) for one seed and month."""
    children = np.random.SeedSequence(base_seed, spawn_key=(seed, step)).spawn(3)
    return tuple(np.random.default_rng(child) for child in children)


def _collection_stopped(state: ChunkState, month: int) -> np.ndarray:
    """As in the baseline: no collection while a grace period or restructure plan is honoured."""
    return (
        treatment_active(state, month)
        & np.isin(state.treatment, (KIND["grace_period"], KIND["restructure"]))
        & (state.bucket <= 1)
    )


def _model_actions(
    replay: Replay,
    accounts: ChunkAccounts,
    plan: ModelPlan,
    state: ChunkState,
    month: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """The scored ladder's contacts for accounts in M1-M3; the baseline's past M3."""
    n = len(state.bucket)
    counts = np.zeros((n, len(CHANNELS)), dtype=np.int64)
    in_scope = (state.bucket >= 1) & (state.bucket <= POLICY_MAX_BUCKET)
    in_scope &= ~_collection_stopped(state, month)
    counts[in_scope] = plan.channel_counts[in_scope]
    acted_tiered, counts_tiered = tiered_actions(
        replay.rules, accounts, replay.arrays, state, month, rng
    )
    beyond = state.bucket[acted_tiered] > POLICY_MAX_BUCKET
    counts[acted_tiered[beyond]] = counts_tiered[beyond]
    acted = np.flatnonzero(counts.sum(axis=1) > 0)
    return acted, counts[acted]


def _model_treatments(
    replay: Replay,
    plan: ModelPlan,
    state: ChunkState,
    actions: MonthActions,
    step: int,
    month: int,
    rng: np.random.Generator,
) -> tuple[ChunkState, np.ndarray, np.ndarray]:
    """Grant the scored treatments (month 0) and restructures the offer turned into.

    Returns the new state, the kind granted per account (-1 none) and who was restructured now.
    """
    policy = replay.rules.policy
    n = len(state.bucket)
    grace_months = rng.choice(np.array(policy.grace_months), n)
    restructure_months = rng.choice(np.array(policy.restructure_months), n)
    free = ~treatment_active(state, month)
    delinquent = (state.bucket >= 1) & (state.bucket < CHARGE_OFF_BUCKET)
    first_month = step == 0
    restructure = (
        free
        & plan.restructure_offer
        & delinquent
        & ~np.isnat(actions.hardship_at)
        & (state.bucket >= 2)
        & (state.balance > policy.restructure_balance)
    )
    grace = free & ~restructure & plan.grace & first_month & delinquent
    waiver = free & ~restructure & ~grace & plan.waiver & first_month & delinquent
    extension = free & ~restructure & ~grace & ~waiver & plan.extension & first_month & delinquent
    kind = np.full(n, -1)
    months = np.zeros(n, dtype=np.int64)
    for mask, name, length in (
        (extension, "first_delinquency_extension", np.ones(n, dtype=np.int64)),
        (waiver, "interest_waiver", np.full(n, policy.waiver_months)),
        (grace, "grace_period", grace_months),
        (restructure, "restructure", restructure_months),
    ):
        kind[mask] = KIND[name]
        months[mask] = length[mask]
    new_state = replace(
        state,
        treatment=np.where(kind >= 0, kind, state.treatment),
        treatment_until=np.where(kind >= 0, month + 1 + months, state.treatment_until),
    )
    return new_state, kind, restructure


def run_arm(
    replay: Replay,
    arm: str,
    plan: ModelPlan,
    costs: ActionCosts,
    horizon: int,
    seed: int,
    base_seed: int = DEFAULT_BASE_SEED,
    default_dpd: int = DEFAULT_OBSERVATION.default_dpd,
) -> ArmResult:
    """Roll the scored accounts forward ``horizon`` months under one arm (see module docstring).

    An account has rolled to default when a cycle end in the horizon shows ``default_dpd`` or
    more days past due (the training label's rule, on the replayed statements).
    """
    if arm not in ARMS:
        raise ValueError(f"arm must be one of {ARMS}, got {arm!r}")
    rules, arrays, world = replay.rules, replay.arrays, replay.world
    accounts = replace(replay.accounts, holdout=np.zeros(len(replay.account_ids), dtype=bool))
    state, previous_bucket = replay.state, replay.previous_bucket
    n = len(state.bucket)
    channel_cost = costs.channel_vector()
    treatment_cost = costs.treatment_vector()
    contact_codes = [CH[c] for c in CONTACT_CHANNELS]
    pressure_codes = [CH[c] for c in PRESSURE_CHANNELS]
    totals = {name: np.zeros(n) for name in ("recovered", "action_cost")}
    counters = {
        name: np.zeros(n, dtype=np.int64)
        for name in (
            "contacts", "agency_assignments", "legal_filings", "disputes",
            "pressure_on_capacity_shock", "treatments_granted",
        )
    }  # fmt: skip
    defaulted = np.zeros(n, dtype=bool)
    for step in range(horizon):
        month = replay.month + step
        actions_rng, treatment_rng, transition_rng = _streams(base_seed, seed, step)
        cycle_end = cycle_end_days(accounts, world, month)
        if arm == "baseline_tiered":
            acted, counts = tiered_actions(rules, accounts, arrays, state, month, actions_rng)
        else:
            acted, counts = _model_actions(replay, accounts, plan, state, month, actions_rng)
        month_actions = action_rows(accounts, arrays, state, acted, counts, cycle_end, actions_rng)
        state = record_contacts(state, month_actions)
        if arm == "baseline_tiered":
            state, granted = grant_treatments(
                rules, accounts, state, previous_bucket, month_actions, cycle_end, month,
                treatment_rng,
            )  # fmt: skip
            kind = np.full(n, -1)
            kind[granted.account] = granted.kind
            restructured_now = kind == KIND["restructure"]
        else:
            state, kind, restructured_now = _model_treatments(
                replay, plan, state, month_actions, step, month, treatment_rng
            )
        row_account, row_channel = month_actions.account, month_actions.channel
        np.add.at(totals["action_cost"], row_account, channel_cost[row_channel])
        totals["action_cost"] += np.where(kind >= 0, treatment_cost[np.maximum(kind, 0)], 0.0)
        counters["treatments_granted"] += kind >= 0
        for name, mask in (
            ("contacts", np.isin(row_channel, contact_codes)),
            ("agency_assignments", row_channel == CH["agency_assignment"]),
            ("legal_filings", row_channel == CH["legal"]),
            ("disputes", month_actions.outcome == OUTCOMES.index("dispute")),
        ):
            counters[name] += np.bincount(row_account[mask], minlength=n)
        shock_on = (
            (accounts.driver == DRV["capacity_shock"])
            & (month >= accounts.shock_onset)
            & (month < accounts.shock_end)
        )
        pressure = np.isin(row_channel, pressure_codes) & shock_on[row_account]
        counters["pressure_on_capacity_shock"] += np.bincount(row_account[pressure], minlength=n)
        previous_bucket = state.bucket
        state = transition(
            rules, accounts, arrays, world, state, month_actions.cure_shift,
            month_actions.roll_shift, restructured_now, month, transition_rng,
        )  # fmt: skip
        totals["recovered"] += state.last_paid
        defaulted |= dpd_of(state) >= default_dpd
    blocks = plan.compliance_blocks if arm == "model_driven" else np.zeros(n, dtype=np.int64)
    return ArmResult(
        recovered=totals["recovered"],
        action_cost=totals["action_cost"],
        defaulted=defaulted,
        compliance_blocks=blocks,
        **counters,
    )


def arm_metrics(result: ArmResult, mask: np.ndarray | None = None) -> dict[str, float]:
    """The portfolio figures of one arm (over ``mask`` accounts when given)."""
    keep = np.ones(len(result.recovered), dtype=bool) if mask is None else mask
    count = int(keep.sum())
    recovered = float(result.recovered[keep].sum())
    cost = float(result.action_cost[keep].sum())
    return {
        "recovered": recovered,
        "action_cost": cost,
        "net_recovery": recovered - cost,
        "roll_to_default_rate": float(result.defaulted[keep].mean()) if count else math.nan,
        "contacts": float(result.contacts[keep].sum()),
        "agency_assignments": float(result.agency_assignments[keep].sum()),
        "legal_filings": float(result.legal_filings[keep].sum()),
        "disputes": float(result.disputes[keep].sum()),
        "pressure_on_capacity_shock": float(result.pressure_on_capacity_shock[keep].sum()),
        "treatments_granted": float(result.treatments_granted[keep].sum()),
        "compliance_blocks": float(result.compliance_blocks[keep].sum()),
    }


def compare_policies(
    replay: Replay,
    plan: ModelPlan,
    costs: ActionCosts,
    horizon: int,
    seeds: Sequence[int],
    segments: Sequence[str] | None = None,
    base_seed: int = DEFAULT_BASE_SEED,
    progress: Callable[[Iterable[int], int], Iterable[int]] | None = None,
    default_dpd: int = DEFAULT_OBSERVATION.default_dpd,
) -> dict[str, Any]:
    """Both arms on every seed; per-arm figures and the paired uplift with its 95 % t-interval.

    ``default_dpd`` defines the roll-to-default event (see :func:`run_arm`).

    ``segments`` (replay order) adds the uplift per segment. ``uplift_account_bootstrap`` adds a
    second interval for the main figures: the seed-averaged per-account uplift resampled over
    accounts (which accounts happen to be in the book), where the t-interval covers only the
    simulator's randomness for these accounts.
    """
    per_seed: list[dict[str, Any]] = []
    account_uplift = {name: np.zeros(len(replay.account_ids)) for name in BOOTSTRAP_METRICS}
    by_segment: dict[str, list[dict[str, float]]] = {}
    labels = np.asarray(segments) if segments is not None else None
    iterator = progress(seeds, len(seeds)) if progress else seeds
    for seed in iterator:
        results = {
            arm: run_arm(replay, arm, plan, costs, horizon, seed, base_seed, default_dpd)
            for arm in ARMS
        }
        per_seed.append({"seed": int(seed), **{a: arm_metrics(r) for a, r in results.items()}})
        model_arm, base_arm = results["model_driven"], results["baseline_tiered"]
        account_uplift["recovered"] += model_arm.recovered - base_arm.recovered
        account_uplift["net_recovery"] += (model_arm.recovered - model_arm.action_cost) - (
            base_arm.recovered - base_arm.action_cost
        )
        account_uplift["roll_to_default_rate"] += model_arm.defaulted.astype(float) - (
            base_arm.defaulted.astype(float)
        )
        if labels is not None:
            for segment in sorted(set(labels.tolist())):
                mask = labels == segment
                model = arm_metrics(results["model_driven"], mask)
                base = arm_metrics(results["baseline_tiered"], mask)
                by_segment.setdefault(segment, []).append(
                    {m: model[m] - base[m] for m in METRICS} | {"accounts": float(mask.sum())}
                )
    arms = {arm: {m: t_interval([s[arm][m] for s in per_seed]) for m in METRICS} for arm in ARMS}
    uplift = {
        m: t_interval([s["model_driven"][m] - s["baseline_tiered"][m] for s in per_seed])
        for m in METRICS
    }
    segment_table = {
        segment: {
            "accounts": int(rows[0]["accounts"]),
            "uplift": {
                m: t_interval([r[m] for r in rows])
                for m in ("recovered", "action_cost", "net_recovery", "roll_to_default_rate")
            },
        }
        for segment, rows in by_segment.items()
    }
    return {
        "accounts": len(replay.account_ids),
        "months": horizon,
        "seeds": [int(s) for s in seeds],
        "base_seed": base_seed,
        "replay_match_share": replay.replay_match_share,
        "arms": arms,
        "uplift": uplift,
        "uplift_account_bootstrap": {
            name: account_bootstrap(values / len(seeds), name == "roll_to_default_rate", base_seed)
            for name, values in account_uplift.items()
        },
        "by_segment": segment_table,
        "per_seed": per_seed,
    }


def account_bootstrap(
    per_account: np.ndarray, rate: bool, seed: int, samples: int = BOOTSTRAP_SAMPLES
) -> dict[str, float]:
    """Total (or, for a rate, mean) of per-account values and its 95 % percentile bootstrap
    interval over accounts."""
    statistic = np.mean if rate else np.sum
    n = len(per_account)
    low, high = percentile_bootstrap(lambda pick: statistic(per_account[pick]), n, samples, seed)
    return {
        "mean": float(statistic(per_account)) if n else math.nan,
        "ci_low": low,
        "ci_high": high,
        "samples": samples,
    }
