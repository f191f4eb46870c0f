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
2. **Arms, common random numbers.** From that state every scored account is rolled forward
   ``months`` months under each arm: the model-driven policy's scored decision (its
   ``actions`` after compliance), the simulator's baseline tiered policy
   (:func:`~rollrisk.simulator.engine.tiered_actions` and
   :func:`~rollrisk.simulator.engine.grant_treatments`), and the references (5.). Every arm
   uses the same random streams per (seed, month, purpose), and every draw is the account's
   own: the tiered lender's choices and the transition draw a fixed number per account of the
   replay (acted on or not), the contact rows' outcomes, times and promises are keyed by
   account, channel and rank (:class:`~rollrisk.simulator.engine.RowDraws`). So an account
   planned the same contacts and treatments in two arms meets the same fate in both, to the
   bit, whatever the other accounts get; the one link between accounts is the contact
   capacity they share (see :func:`run_arm`).
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
   baseline. Treatments are taken up when granted (no refusal model); what they do to the
   money (deferred dues, waived fees, plan instalments and re-defaults) is the engine's
   ``transition``, the same for every arm and for the data simulator. How a ladder acts
   (:func:`~rollrisk.simulator.engine.ladder_plan`, ``ladder_counts``, ``offer_treatments``)
   is the engine's too, shared with the simulated lender's exploration.
4. **Baseline arm.** The simulator's tiered policy, with its 5 % holdout switched off (the
   baseline proper), including its first-delinquency extensions and hardship treatments.
   **Constraints, every arm alike** (:func:`with_constraints`): each month's action rows go
   through the scoring run's compliance rules (:func:`_compliant_rows`, the batch's
   :func:`~rollrisk.strategies.compliance.enforce_rows` on the simulator's state) and the
   contact capacity (:func:`_within_capacity`); what they remove is not made, and counted.

5. **References** (:class:`ArmSpec`): any mix, per account, of the scored ladder of a plan and
   the tiered baseline, optionally with a grace for all; the job builds the baseline plus
   grace, segment-blind and oracle-segment arms (plans re-decided by the batch's own decision
   step, :func:`plan_for_segments`) and the oracle (:func:`choose_oracle`, on selection seeds
   kept apart from the reported ones).

Metrics per arm and seed: **book value** (cash collected - action and treatment costs - the
agencies' commission + the balance open at the end valued by :class:`Valuation`: its bucket,
a restructure plan never at par), cash collected (``recovered``: payments made in the
horizon), action cost and agency commission (``conf/action_costs.yaml``), net recovery, the
balance open at the end and its value, fees waived and dues deferred (shown, already in the
cash and the end value), restructure plans broken and the balance on plans at the end, roll-to-default rate by count and
balance-weighted (a cycle end at DPD >= ``default_dpd`` within the horizon, the observation
settings' default as in the training labels: 90+ unless the user chose otherwise), contacts
made, agency assignments, legal filings, disputes (a contact outcome ``dispute``; the simulator
has no complaint channel, so disputes are the complaint proxy), pressure contacts on borrowers
in an active capacity shock (calls, agency, visits, letters, legal: what draws complaints and
does not help them), treatments granted, compliance blocks (actions the compliance rules
removed: every arm's replayed rows and extensions, plus the scored decision's own), agent
calls and field visits made and those dropped for capacity. Uplift = model-driven - baseline,
paired by seed: a Student-t interval over the seeds (Monte Carlo error only) and the headline
interval resampling accounts and seeds together (:func:`rollrisk.models.stats.two_way_bootstrap`);
value captured and value of segmentation against the references (docs/strategies.md).
"""

from __future__ import annotations

import copy
import difflib
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from rollrisk.conf import DEFAULT_COSTS
from rollrisk.errors import UserError
from rollrisk.features.observations import ObservationSpec
from rollrisk.features.registry import FEATURE_SET, FeatureSet
from rollrisk.features.schemas import CHANNELS, OUTCOMES, TREATMENT_KINDS
from rollrisk.models.stats import percentile_bootstrap, t_interval, two_way_bootstraps

# the batch's own decision step and decision serialisers: a re-decided arm must follow exactly
# the rules the scored decisions followed (private names, imported on purpose)
from rollrisk.scoring.core import (
    HARDSHIP_KINDS,
    DecisionFacts,
    _decide_all,
    decision_facts,
    features_at,
)
from rollrisk.simulator.engine import (
    CH,
    KIND,
    ChunkAccounts,
    ChunkState,
    LenderMemory,
    ModelPlan,
    MonthActions,
    ReplayPoint,
    RuleArrays,
    World,
    action_rows,
    capacity_shock_on,
    chunk_exploration,
    cycle_end_days,
    dpd_of,
    draw_accounts,
    dynamics_stream,
    first_delinquency_month,
    grant_treatments,
    keep_action_rows,
    ladder_plan,
    make_world,
    merge_states,
    mixed_actions,
    offer_treatments,
    on_book_at,
    record_contacts,
    replay_point,
    replay_points_from,
    rule_arrays,
    simulate_month,
    stressed_accounts,
    take_rows,
    takes_up,
    tiered_actions,
    transition,
    treatment_active,
)
from rollrisk.simulator.rules import CHARGE_OFF_BUCKET, SimulationRules
from rollrisk.simulator.truth import SimulatedPortfolio, read_replay_state
from rollrisk.strategies.capacity import ContactCapacity
from rollrisk.strategies.compliance import (
    RULES,
    AccountStates,
    ContactHistories,
    EffectiveCompliance,
    enforce_rows,
)
from rollrisk.strategies.experiments import ExperimentPlan
from rollrisk.strategies.labels import Labels
from rollrisk.strategies.policy import ACTIONS, Interval, PlannedActions, Policy, PolicyRule
from rollrisk.strategies.yaml_config import (
    ConfigError,
    line_of,
    parse_yaml_with_lines,
    read_yaml_text,
)

DEFAULT_BASE_SEED = 20_260_101
# The roll-to-default event is the observation settings' (as in the training labels: some
# cycle end within the horizon at DPD >= default_dpd); the job passes the user's.
DEFAULT_OBSERVATION = ObservationSpec()
CONTACT_CHANNELS = ("sms", "app_push", "robo_call", "agent_call", "field_visit", "notice_letter")
PRESSURE_CHANNELS = (
    "robo_call",
    "agent_call",
    "agency_assignment",
    "field_visit",
    "notice_letter",
    "legal",
)
ARMS = ("model_driven", "baseline_tiered")
BOOTSTRAP_SAMPLES = 1_000
BOOTSTRAP_METRICS = ("book_value", "recovered", "net_recovery", "roll_to_default_rate")
METRICS = (
    "book_value",
    "recovered",
    "action_cost",
    "agency_commission",
    "net_recovery",
    "end_balance",
    "end_value",
    "waived_income",
    "deferred_due",
    "plans_broken",
    "open_plan_balance",
    "roll_to_default_rate",
    "roll_to_default_balance_rate",
    "contacts",
    "agency_assignments",
    "legal_filings",
    "disputes",
    "pressure_on_capacity_shock",
    "treatments_granted",
    "offers_refused",
    "compliance_blocks",
    "agent_calls",
    "field_visits",
    "calls_dropped_for_capacity",
    "visits_dropped_for_capacity",
)
SEGMENT_METRICS = (
    "book_value",
    "recovered",
    "action_cost",
    "agency_commission",
    "net_recovery",
    "roll_to_default_rate",
)
COMMISSION_BUCKETS = tuple(f"M{b}" for b in range(1, CHARGE_OFF_BUCKET))  # M1..M6
# The action a row of each channel is, for the compliance rules: the first action of ACTIONS
# that uses the channel (sms -> reminder, agent_call -> call, notice_letter -> the visit it is
# handed over at, legal -> legal_referral). Every replayed row goes to the borrower.
ACTION_OF_CHANNEL = np.array(
    [
        next(
            name
            for name, spec in ACTIONS.items()
            if channel in (*spec.channels, *spec.companion_channels)
        )
        for channel in CHANNELS
    ],
    dtype=object,
)
CHANNEL_NAMES = np.array(CHANNELS, dtype=object)
OUTCOME_NAMES = np.array(OUTCOMES, dtype=object)
HARDSHIP_CODES = [KIND[k] for k in HARDSHIP_KINDS]


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActionCosts:
    """Cost (CNY) of one action row per channel and of one granted treatment per kind, and the
    agency's commission: the share of the cash collected in a month the account is assigned to
    an agency, by the bucket it was in that month (M1..M6)."""

    channels: Mapping[str, float]
    treatments: Mapping[str, float]
    source: str
    agency_commission: Mapping[str, float]

    def channel_vector(self) -> np.ndarray:
        return np.array([self.channels[c] for c in CHANNELS], dtype=float)

    def treatment_vector(self) -> np.ndarray:
        return np.array([self.treatments[k] for k in TREATMENT_KINDS], dtype=float)

    def commission_vector(self) -> np.ndarray:
        """Commission rate by bucket index 0..CHARGE_OFF_BUCKET (0 where no agency works)."""
        rates = np.zeros(CHARGE_OFF_BUCKET + 1)
        for b, name in enumerate(COMMISSION_BUCKETS, start=1):
            rates[b] = self.agency_commission[name]
        return rates


COST_TABLES = ("channels", "treatments", "agency_commission")
"""The sections of ``conf/action_costs.yaml`` (beside an optional ``version``)."""


def load_action_costs(path: Path = DEFAULT_COSTS) -> ActionCosts:
    """Read ``conf/action_costs.yaml``: every channel and treatment kind needs a cost >= 0, and
    ``agency_commission`` a rate in [0, 1] for every bucket M1..M6.

    Raises:
        UserError: the file cannot be read (:func:`read_yaml_text`); otherwise a
            :class:`ConfigError` starting ``file:line:``: not valid YAML, a key written twice,
            a top-level key other than the sections and ``version`` (a misspelt section was
            ignored), a section missing, an entry unknown or missing, or a value out of range.
    """
    text = read_yaml_text(path, "costs file")  # a folder, a missing file, non-UTF-8: one line
    source = str(path)
    # the strategy files' parser: a syntax error in one line naming the line, and a cost
    # written twice (`sms: 0.05` ... `sms: 0.5`) refused rather than the last one kept
    raw = parse_yaml_with_lines(text, source, empty_ok=True)
    if not raw:
        raise ConfigError(
            source, 1, "expected a mapping with `channels`, `treatments` and `agency_commission`"
        )
    allowed = (*COST_TABLES, "version")
    for key in raw:
        if key not in allowed:  # `commission_floor:` or `treatment:` was silently ignored
            close = difflib.get_close_matches(str(key), COST_TABLES, n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                source,
                raw.line_of(key),
                f"unknown key {key!r} in the costs file{hint}; allowed keys: {', '.join(allowed)}",
            )
    tables: dict[str, dict[str, float]] = {}
    for key, names, what, upper in (
        ("channels", CHANNELS, "a cost >= 0", math.inf),
        ("treatments", TREATMENT_KINDS, "a cost >= 0", math.inf),
        ("agency_commission", COMMISSION_BUCKETS, "a share in [0, 1]", 1.0),
    ):
        table = raw.get(key)
        if not isinstance(table, dict):
            raise ConfigError(
                source, raw.line_of(key), f"`{key}` must map each of {', '.join(names)} to {what}"
            )
        unknown = sorted(set(table) - set(names))
        missing = [n for n in names if n not in table]
        if unknown or missing:
            raise ConfigError(
                source,
                line_of(table, unknown[0]) if unknown else raw.line_of(key),
                f"`{key}`: unknown {unknown or 'none'}, missing {missing or 'none'}",
            )
        for name, value in table.items():
            if (
                isinstance(value, bool)  # YAML's `true` is no cost of 1 CNY
                or not isinstance(value, int | float)
                or math.isnan(value)
                or not 0 <= value <= upper
            ):
                raise ConfigError(
                    source, line_of(table, name), f"`{key}.{name}` must be {what}, got {value!r}"
                )
        tables[key] = {n: float(table[n]) for n in names}
    return ActionCosts(
        tables["channels"], tables["treatments"], source, tables["agency_commission"]
    )


def model_plan(actions_json: Sequence[str], trails_json: Sequence[str]) -> ModelPlan:
    """Translate the scored ``actions`` and ``trail`` JSON columns (see scoring/core.py) with
    the simulator's one ladder translation (:func:`~rollrisk.simulator.engine.ladder_plan`),
    counting the actions compliance removed."""
    # parsed once per distinct text: most accounts of a treatment share their actions' text
    # (and an empty trail), and a re-decided book of 100,000 accounts was otherwise 16 % of the
    # job's time in json.loads (py-spy, docs/benchmarks.md)
    steps: dict[str, list[tuple[str, str | None]]] = {}
    removed: dict[str, int] = {}
    for text in dict.fromkeys(actions_json):
        steps[text] = [(step["action"], step.get("channel") or None) for step in json.loads(text)]
    for trail in dict.fromkeys(trails_json):
        removed[trail] = sum(1 for c in json.loads(trail) if c["change"] == "removed")
    ladders = [steps[text] for text in actions_json]
    blocks = np.array([removed[trail] for trail in trails_json], dtype=np.int64)
    if len(blocks) != len(ladders):
        raise ValueError("actions and trails must have one entry per scored account")
    try:
        return ladder_plan(ladders, blocks)
    except ValueError as error:
        raise ValueError(f"scored decisions: {error}") from error


# --------------------------------------------------------------------------------------------
# Replay to the as-of
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContactLog:
    """One month's action rows (``account`` in replay order; channel and outcome codes): the
    contact history the compliance rules read when the next month is planned."""

    account: np.ndarray  # int64
    at: np.ndarray  # datetime64[us]
    channel: np.ndarray  # code into CHANNELS
    outcome: np.ndarray  # code into OUTCOMES

    @classmethod
    def of(cls, actions: MonthActions) -> ContactLog:
        return cls(actions.account, actions.action_at, actions.channel, actions.outcome)

    @classmethod
    def empty(cls) -> ContactLog:
        nothing = np.zeros(0, dtype=np.int64)
        return cls(nothing, np.zeros(0, dtype="datetime64[us]"), nothing, nothing)


@dataclass(frozen=True)
class Replay:
    """The simulator state of the scored accounts at the as-of month (replay order), and the
    constraints every arm rolled forward from it works under.

    ``compliance`` (the scoring run's rules, :func:`with_constraints`) is enforced on every
    arm's contacts and first-delinquency extensions every month; ``capacity`` caps every arm's
    agent calls and field visits every month. None: not enforced (the library's default; the
    job sets both).
    """

    rules: SimulationRules
    arrays: RuleArrays
    world: World
    accounts: ChunkAccounts
    state: ChunkState
    previous_bucket: np.ndarray
    month: int  # month index of the as-of (0 = the portfolio's first month)
    account_ids: list[str]
    replay_match_share: float  # accounts on the book whose replayed statement matches the data
    # per account: on the book at the as-of (booked, not closed: it has a statement that month);
    # a scored account always is, since scoring reads its statement
    on_book: np.ndarray | None = None
    # the lender's action rows of the month before the as-of: the compliance history at month 0
    last_actions: ContactLog | None = None
    # a first-delinquency extension was granted before the as-of (the one-time rule's memory)
    extension_used: np.ndarray | None = None
    # episodes before the data's first month: the lender's "first-ever delinquency" is the
    # first episode its data shows, as the batch's `first_delinquency` feature reads it
    episodes_before_data: np.ndarray | None = None
    compliance: EffectiveCompliance | None = None
    capacity: ContactCapacity | None = None
    chunks: int = 0  # the simulator's chunks holding the accounts
    chunks_from_points: int = 0  # of those, read from the state the simulator wrote


def with_constraints(
    replay: Replay,
    compliance: EffectiveCompliance | None,
    capacity: ContactCapacity | None,
) -> Replay:
    """The same replay with every arm held to ``compliance`` and ``capacity`` (see
    :func:`run_arm`)."""
    return replace(replay, compliance=compliance, capacity=capacity)


def with_responses(replay: Replay, table: str) -> Replay:
    """The same replayed state, rolled forward under the response table ``table``.

    The history up to the as-of stays what it was (the portfolio's own table); only the
    borrowers' responses in the horizon change. This asks how a policy written from one set of
    beliefs fares when the borrowers respond otherwise (docs/simulator.md, "Response tables").
    """
    if table == replay.rules.response_table:
        return replay
    rules = replace(replay.rules, response_table=table)
    return replace(replay, rules=rules, arrays=rule_arrays(rules))


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
    progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
    workers: int | Callable[[int], int] = 1,
    points: Mapping[int, ReplayPoint] | None = None,
) -> Replay:
    """Re-simulate the chunks holding ``account_ids`` up to (not including) ``month``'s actions.

    Runs the months through :func:`rollrisk.simulator.engine.simulate_month` as
    :func:`~rollrisk.simulator.engine.simulate_chunk` does (same random streams, the lender's
    exploration of ``sim`` included), so the state equals the one that wrote the portfolio. When
    ``statements`` is given, the replayed DPD and balance at ``month`` are compared with the
    portfolio's statements of that month, for the accounts on the book then (an account not
    booked yet or already closed has no statement to compare; ``Replay.on_book`` says which).
    A chunk's replay depends on its own random streams only: ``workers`` > 1 replays the chunks
    in that many spawned processes (:func:`rollrisk.scoring.workers.spawn_pool`), the same
    replay; ``workers`` may be a function of the number of chunks to replay.

    ``points`` (chunk -> :class:`~rollrisk.simulator.engine.ReplayPoint` at ``month``, which
    ``rollrisk simulate`` writes for the delinquent accounts of its last month-ends:
    :func:`read_replay_points`) serves every chunk whose accounts it all holds without
    re-simulating it: the same state, memory and contact history the replay would compute
    (a test checks it array for array); the other chunks are replayed.
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
    kept = [np.flatnonzero(chunk_of == chunk) for chunk in chunks]  # positions in account_ids
    jobs = [
        (chunk, numbers[positions] - chunk * rules.chunk_accounts)
        for chunk, positions in zip(chunks, kept, strict=True)
    ]
    context = _ReplayContext(sim, arrays, world, month)
    stored = {chunk: point for chunk, point in (points or {}).items() if point.month == month}
    served = {
        index
        for index, (chunk, local) in enumerate(jobs)
        if chunk in stored and np.isin(local, stored[chunk].position).all()
    }
    to_replay = [job for index, job in enumerate(jobs) if index not in served]
    if callable(workers):
        workers = workers(len(to_replay))
    workers = max(1, min(workers, len(to_replay)))
    accounts_parts, state_parts, previous_parts, order = [], [], [], []
    extension_parts: list[np.ndarray] = []
    base_parts: list[np.ndarray] = []
    log_parts: list[ContactLog] = []
    offset = 0
    with shared_runs(context, workers, "replaying a chunk") as run:
        replayed = run(_replay_chunk, to_replay)
        replayed = iter(progress(replayed, len(to_replay)) if progress and to_replay else replayed)
        done = (
            _from_point(stored[job[0]], job[1]) if index in served else next(replayed)
            for index, job in enumerate(jobs)
        )
        for positions, part in zip(kept, done, strict=True):
            accounts_parts.append(part.accounts)
            state_parts.append(part.state)
            previous_parts.append(part.previous_bucket)
            extension_parts.append(part.extension)
            base_parts.append(part.episodes_before_data)
            # the month before the as-of, its rows renumbered to the replay order
            log = part.last_actions
            log_parts.append(ContactLog(offset + log.account, log.at, log.channel, log.outcome))
            offset += len(positions)
            order.append(positions)
    positions = np.concatenate(order) if order else np.zeros(0, dtype=np.int64)
    accounts = _concat(accounts_parts)
    state = _concat(state_parts)
    ids = [account_ids[i] for i in positions.tolist()]
    on_book = on_book_at(accounts, state, month)
    match = _replay_match(accounts, state, world, month, ids, statements, on_book)
    last_actions = (
        ContactLog(*(np.concatenate([getattr(p, f.name) for p in log_parts])
                     for f in fields(ContactLog)))
        if log_parts
        else ContactLog.empty()
    )  # fmt: skip
    return Replay(
        rules,
        arrays,
        world,
        accounts,
        state,
        np.concatenate(previous_parts),
        month,
        ids,
        match,
        on_book,
        last_actions=last_actions,
        extension_used=(
            np.concatenate(extension_parts) if extension_parts else np.zeros(0, dtype=bool)
        ),
        episodes_before_data=(
            np.concatenate(base_parts) if base_parts else np.zeros(0, dtype=np.int64)
        ),
        chunks=len(jobs),
        chunks_from_points=len(served),
    )


@dataclass(frozen=True)
class _ReplayContext:
    """What every chunk's replay shares (sent once to each worker process)."""

    sim: SimulatedPortfolio
    arrays: RuleArrays
    world: World
    month: int


@dataclass(frozen=True)
class _ChunkReplay:
    """One chunk replayed to the month: its kept accounts (``local`` order) and their state."""

    accounts: ChunkAccounts
    state: ChunkState
    previous_bucket: np.ndarray
    extension: np.ndarray
    episodes_before_data: np.ndarray
    last_actions: ContactLog  # the month before's rows, ``account`` = index into local


def _replay_chunk(context: _ReplayContext, job: tuple[int, np.ndarray]) -> _ChunkReplay:
    """Re-simulate chunk ``job[0]`` as :func:`~rollrisk.simulator.engine.simulate_chunk` does
    and keep the accounts at chunk positions ``job[1]``."""
    chunk, local = job
    sim, arrays, world, month = context.sim, context.arrays, context.world, context.month
    rules = sim.rules
    size = min(rules.chunk_accounts, sim.accounts - chunk * rules.chunk_accounts)
    rng = np.random.default_rng(np.random.SeedSequence(sim.seed, spawn_key=(1 + chunk,)))
    first = chunk * rules.chunk_accounts
    accounts, state = draw_accounts(rules, arrays, world, rng, first, size)
    accounts = stressed_accounts(rules, world, accounts, sim.seed, chunk)
    dynamics = dynamics_stream(sim.seed, chunk)
    explore = chunk_exploration(sim.exploration, sim.seed, chunk, accounts)
    previous_bucket = state.bucket
    # the compliance rules' memory of the history, whoever acted (the tiered lender or an
    # explored arm): the month's rows and the first-delinquency extensions granted
    memory = LenderMemory.start(size)
    for m in range(world.first_month, month):
        memory.before(m, state)
        step = simulate_month(
            rules, accounts, arrays, world, state, previous_bucket, m, rng, explore, dynamics
        )
        state, previous_bucket = step.state, step.previous_bucket
        memory.after(step)
    return _from_point(replay_point(month, accounts, state, previous_bucket, memory, local), None)


def _from_point(point: ReplayPoint, local: np.ndarray | None) -> _ChunkReplay:
    """The replay of ``point``'s accounts at chunk positions ``local`` (all of them, in its
    order, when None)."""
    at = np.arange(len(point.position)) if local is None else np.searchsorted(point.position, local)
    where = np.full(len(point.position), -1, dtype=np.int64)
    where[at] = np.arange(len(at))
    rows = np.flatnonzero(where[point.last_account] >= 0)
    return _ChunkReplay(
        take_rows(point.accounts, at),
        take_rows(point.state, at),
        point.previous_bucket[at],
        point.extension[at],
        point.episodes_before_data[at],
        ContactLog(
            where[point.last_account[rows]],
            point.last_at[rows],
            point.last_channel[rows],
            point.last_outcome[rows],
        ),
    )


def read_replay_points(
    data_dir: Path, sim: SimulatedPortfolio, month: int
) -> dict[int, ReplayPoint]:
    """The state ``rollrisk simulate`` wrote for the start of ``month`` (chunk -> point),
    empty when it wrote none for that month."""
    label = str(np.datetime64(sim.start_month, "M") + month)
    arrays = read_replay_state(data_dir, label)
    return replay_points_from(arrays, month) if arrays is not None else {}


def _replay_match(
    accounts: ChunkAccounts,
    state: ChunkState,
    world: World,
    month: int,
    ids: list[str],
    statements: pl.DataFrame | None,
    on_book: np.ndarray,
) -> float:
    if statements is None or not on_book.any():
        return math.nan
    cycle_end = cycle_end_days(accounts, world, month)
    replayed = (
        pl.DataFrame(
            {
                "account_id": ids,
                "cycle_end": cycle_end,
                "_dpd": dpd_of(state),
                "_balance": np.round(state.balance, 2),
            }
        )
        .filter(pl.Series(on_book))
        .with_columns(pl.col("cycle_end").cast(pl.Date))
    )
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
# --------------------------------------------------------------------------------------------
# Arms: the model-driven policy, the baseline, and the references
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArmSpec:
    """Who is treated how in one arm (replay order).

    ``tiered`` accounts get the simulator's baseline tiered policy (with its own treatments);
    the others get ``plan``'s scored ladder, except those whose decision is ``standard_queue``
    (``plan.queued``), which :func:`run_arm` gives the tiered policy too. ``grace_all`` adds, to the tiered accounts, a grace
    period at the first month for every delinquent account the baseline did not treat then
    ("baseline plus grace for all").
    """

    name: str
    plan: ModelPlan
    tiered: np.ndarray  # bool per account
    grace_all: bool = False
    # bool per account, set by effective_spec: tiered accounts of the plan whose ladder adds
    # steps to the standard queue (ModelPlan.plus_steps): the tiered policy and those steps
    plus: np.ndarray | None = None


@dataclass(frozen=True)
class Valuation:
    """The value at the horizon's end of one CNY of balance still open, per bucket (0..7+).

    Bucket 0 (current) is carried at par (1.0): a performing loan is booked at its balance.
    Delinquent buckets are valued by the simulator's own recovery curve: the share of the
    balance recovered within ``months`` months after an account first reaches the bucket's
    DPD on the simulated portfolio (:func:`rollrisk.models.roll_rates.recovery_curve`),
    capped at 1.

    A balance on a restructure plan in force is current only because it was re-aged: it is
    never carried at par. It is valued at ``plan_share`` (learned from the portfolio's own
    plans, :func:`restructure_plan_share`), or, when that is None, at the share of the bucket
    the plan was restructured from (as if it had not been re-aged).
    """

    shares: tuple[float, ...]  # index = bucket (0 current .. CHARGE_OFF_BUCKET charged off)
    months: int
    method: str
    plan_share: float | None = None

    def vector(self) -> np.ndarray:
        return np.asarray(self.shares, dtype=float)

    def value(self, state: ChunkState) -> np.ndarray:
        """The value of every account's open balance (a credit counts as 0)."""
        shares = self.vector()
        balance = np.maximum(state.balance, 0.0)
        share = shares[np.clip(state.bucket, 0, len(shares) - 1)]
        plan_rule = shares[np.clip(state.plan_bucket, 0, len(shares) - 1)]
        plan = plan_rule if self.plan_share is None else np.full(len(share), self.plan_share)
        return balance * np.where(state.plan & (state.bucket == 0), plan, share)


AT_PAR = Valuation(
    tuple([1.0] * (CHARGE_OFF_BUCKET + 1)), 0, "every open balance at par (no recovery curve)"
)


def recovery_valuation(
    statements: pl.DataFrame, months: int = 12, treatments: pl.DataFrame | None = None
) -> Valuation:
    """The book's valuation of open balances from the portfolio's own recovery curves.

    Needs the statements' ``account_id, cycle_end, dpd, balance, amount_paid``. For bucket b
    (M1..M6, and M7+ for charged-off balances) the share is the cumulative recovered share
    ``months`` months after first reaching DPD ``30 * (b - 1) + 1``; when no account was
    observed that long, the longest observed horizon's share; 0 when the bucket never occurs.
    With ``treatments``, balances on a restructure plan are valued by the portfolio's own plans
    (:func:`restructure_plan_share`); without, by the bucket they were restructured from.
    """
    from rollrisk.models.roll_rates import recovery_curves

    entries = {bucket: 30 * (bucket - 1) + 1 for bucket in range(1, CHARGE_OFF_BUCKET + 1)}
    curves = recovery_curves(statements, tuple(entries.values()), months)  # one sort
    shares = [1.0]
    for entry in entries.values():
        curve = curves[entry].drop_nulls("recovered_share").filter(pl.col("accounts") > 0)
        share = float(curve["recovered_share"][-1]) if curve.height else 0.0
        shares.append(min(max(share, 0.0), 1.0))
    plan_share = (
        restructure_plan_share(statements, treatments, shares, months)
        if treatments is not None
        else None
    )
    plans = (
        "the bucket it was restructured from"
        if plan_share is None
        else f"{plan_share:.0%} (this portfolio's plans over {months} months)"
    )
    return Valuation(
        tuple(shares),
        months,
        f"open balance x share recovered within {months} months after first reaching the "
        f"bucket's DPD on this simulated portfolio (M0 at par; a restructure plan at {plans})",
        plan_share,
    )


def restructure_plan_share(
    statements: pl.DataFrame,
    treatments: pl.DataFrame,
    shares: Sequence[float],
    months: int = 12,
) -> float | None:
    """The value of one CNY on a restructure plan, from the portfolio's own plans.

    For each ``restructure`` row of ``treatments`` followed by ``months`` statements: 1.0 when
    every one of them is current (the plan held), else ``shares`` of the bucket of the first
    delinquent one (the plan broke there). The mean over those plans; over the plans with
    any later statement when none is followed that long; None when there is no plan.
    """
    plans = treatments.filter(pl.col("kind") == "restructure").select(
        "account_id",
        pl.col("start_at").cast(pl.Date).alias("_start"),
        pl.int_range(pl.len()).alias("_plan"),
    )
    after = (
        plans.join(statements.select("account_id", "cycle_end", "dpd"), on="account_id")
        .filter(pl.col("cycle_end") > pl.col("_start"))
        .sort("_plan", "cycle_end")
        .with_columns(pl.int_range(pl.len()).over("_plan").alias("_k"))
        .filter(pl.col("_k") < months)
    )
    if after.is_empty():
        return None
    per_plan = after.group_by("_plan").agg(
        pl.len().alias("followed"),
        pl.col("dpd").filter(pl.col("dpd") > 0).first().alias("broke_at"),
    )
    full = per_plan.filter(pl.col("followed") == months)
    chosen = full if full.height else per_plan
    vector = np.asarray(shares, dtype=float)
    broke = chosen["broke_at"].to_numpy(allow_copy=True)
    value = np.ones(len(broke))
    bad = ~np.isnan(broke.astype(float))
    buckets = np.minimum(1 + (broke[bad].astype(np.int64) - 1) // 30, CHARGE_OFF_BUCKET)
    value[bad] = vector[buckets]
    return float(value.mean())


@dataclass(frozen=True)
class ArmResult:
    """Per-account outcomes of one arm over the horizon (replay order).

    Book value = ``recovered - action_cost - agency_commission + end_value``: the cash
    collected, minus what the actions and treatments cost and the agencies' commission on the
    cash they collected, plus the open balance at the horizon's end valued by
    :class:`Valuation` (its bucket; a restructure plan never at par).

    ``waived_income`` (fees an interest waiver or an interest-free extension gave up) and
    ``deferred_due`` (dues a grace or an extension moved later) are shown beside it, not
    subtracted: the simulated balances never carried the waived fees and still owe the
    deferred dues, so both are already in the cash and the end value (subtracting them again
    would count them twice).
    """

    recovered: np.ndarray
    action_cost: np.ndarray
    agency_commission: np.ndarray  # share of the cash collected in months under an agency
    waived_income: np.ndarray
    deferred_due: np.ndarray
    plans_broken: np.ndarray  # restructure plans that broke within the horizon
    open_plan_balance: np.ndarray  # balance on a restructure plan in force at the end
    end_balance: np.ndarray  # balance owed at the horizon's end (a credit counts as 0)
    end_value: np.ndarray  # end_balance valued by the Valuation
    start_balance: np.ndarray  # balance owed at the as-of (the weight of roll-to-default)
    defaulted: np.ndarray  # bool: reached default_dpd within the horizon
    contacts: np.ndarray
    agency_assignments: np.ndarray
    legal_filings: np.ndarray
    disputes: np.ndarray
    pressure_on_capacity_shock: np.ndarray
    treatments_granted: np.ndarray
    offers_refused: np.ndarray  # treatments offered unasked and not taken up
    # actions compliance removed: the scored decision's (model-driven accounts) and every
    # month's contacts and extensions in the replay (all arms)
    compliance_blocks: np.ndarray
    agent_calls: np.ndarray  # agent calls made (after compliance and capacity)
    field_visits: np.ndarray
    calls_dropped_for_capacity: np.ndarray  # agent calls planned beyond the month's capacity
    visits_dropped_for_capacity: np.ndarray
    # the replay's compliance blocks by rule id (the scored decision's are in its trail)
    blocks_by_rule: Mapping[str, int] = field(default_factory=dict)

    @property
    def book_value(self) -> np.ndarray:
        return self.recovered - self.action_cost - self.agency_commission + self.end_value


# ``compare_policies``' "draws": every draw of an arm is the account's own (RowDraws for the
# contact rows, the tiered choices for every account); results without it drew rows in order
OWN_DRAWS = "each account its own"


def _streams(base_seed: int, seed: int, step: int) -> tuple[tuple[np.random.Generator, ...], int]:
    """Five independent streams (actions, treatments, transition, the references' extra
    treatments, partial cures and promise keeping) for one seed and month, and the key of the
    contact rows' draws (:class:`~rollrisk.simulator.engine.RowDraws`), from a sixth child; the
    first four streams are those of earlier versions (a SeedSequence's children do not depend
    on how many are spawned)."""
    children = np.random.SeedSequence(base_seed, spawn_key=(seed, step)).spawn(6)
    streams = tuple(np.random.default_rng(child) for child in children[:5])
    return streams, int(children[5].generate_state(1, np.uint64)[0])


def effective_spec(arm: str | ArmSpec, plan: ModelPlan, accounts: int) -> ArmSpec:
    """The arm as :func:`run_arm` runs it: a named arm (:data:`ARMS`) as its :class:`ArmSpec`
    with ``plan``, and every account whose decision is ``standard_queue`` tiered."""
    if isinstance(arm, str):
        if arm not in ARMS:
            raise ValueError(f"arm must be one of {ARMS} or an ArmSpec, got {arm!r}")
        arm = ArmSpec(arm, plan, np.full(accounts, arm == "baseline_tiered"))
    # an account whose decision is standard_queue stays in the lender's tiered collection: it
    # is a tiered account of this arm, whatever the arm's mix says for the others; one whose
    # ladder adds steps to the queue gets them too, where the arm gives it the plan
    tiered = np.asarray(arm.tiered, dtype=bool)
    return replace(arm, tiered=tiered | arm.plan.queued, plus=arm.plan.plus_steps & ~tiered)


def same_run(left: ArmSpec, right: ArmSpec) -> bool:
    """Whether :func:`run_arm` computes exactly the same thing for two effective specs
    (:func:`effective_spec`), and so gives the same result on every seed: the same tiered
    accounts, the same grace-for-all, and either every account tiered (the plan then changes
    nothing) or the same plan for every account in every field."""
    if left.grace_all != right.grace_all or not np.array_equal(left.tiered, right.tiered):
        return False
    if not np.array_equal(_plus(left), _plus(right)):
        return False
    return bool(left.tiered.all() and not _plus(left).any()) or (
        same_plan(left.plan, right.plan) == 1.0
    )


def _plus(spec: ArmSpec) -> np.ndarray:
    return spec.plus if spec.plus is not None else np.zeros(len(spec.tiered), dtype=bool)


def run_arm(
    replay: Replay,
    arm: str | ArmSpec,
    plan: ModelPlan,
    costs: ActionCosts,
    horizon: int,
    seed: int,
    base_seed: int = DEFAULT_BASE_SEED,
    default_dpd: int = DEFAULT_OBSERVATION.default_dpd,
    valuation: Valuation = AT_PAR,
) -> ArmResult:
    """Roll the scored accounts forward ``horizon`` months under one arm (see module docstring).

    ``arm`` is ``"model_driven"`` (``plan`` for everyone), ``"baseline_tiered"`` (the tiered
    policy for everyone) or an :class:`ArmSpec` mixing the two per account (``plan`` is then
    ignored); an account whose scored decision is ``standard_queue`` (``plan.queued``) gets
    the tiered policy in any arm, exactly as a tiered account of a mix. Every arm draws from
    the same streams per (seed, month, purpose), each draw the account's own: the baseline's
    choices, the treatments' draws and the transition's uniforms per account of the replay,
    the contact rows' numbers keyed by account, channel and rank (``RowDraws``), so an
    account treated alike in two arms has the same fate in both unless the shared contact
    capacity cuts its calls or visits in one of them (the capacity serves the highest balances
    first). An account has rolled to default when a cycle end in the horizon shows
    ``default_dpd`` or more days past due (the training label's rule, on the replayed
    statements). The open balance at the end is valued by ``valuation``.
    """
    n = len(replay.account_ids)
    spec = effective_spec(arm, plan, n)
    plus = _plus(spec)
    tiered_any, model_any = bool(spec.tiered.any()), bool((~spec.tiered).any())
    plus_any = bool(plus.any())
    rules, arrays, world = replay.rules, replay.arrays, replay.world
    accounts = replace(replay.accounts, holdout=np.zeros(n, dtype=bool))
    state, previous_bucket = replay.state, replay.previous_bucket
    channel_cost = costs.channel_vector()
    treatment_cost = costs.treatment_vector()
    commission_rate = costs.commission_vector()
    contact_codes = [CH[c] for c in CONTACT_CHANNELS]
    pressure_codes = [CH[c] for c in PRESSURE_CHANNELS]
    totals = {
        name: np.zeros(n)
        for name in ("recovered", "action_cost", "agency_commission", "waived_income",
                     "deferred_due")
    }  # fmt: skip
    counters = {
        name: np.zeros(n, dtype=np.int64)
        for name in (
            "contacts", "agency_assignments", "legal_filings", "disputes",
            "pressure_on_capacity_shock", "treatments_granted", "offers_refused",
            "plans_broken", "agent_calls", "field_visits", "calls_dropped_for_capacity",
            "visits_dropped_for_capacity",
        )
    }  # fmt: skip
    defaulted = np.zeros(n, dtype=bool)
    replay_blocks = np.zeros(n, dtype=np.int64)
    blocks_by_rule = {rule_id: 0 for rule_id, _ in RULES}
    history = replay.last_actions or ContactLog.empty()
    extension_used = (
        replay.extension_used.copy()
        if replay.extension_used is not None
        else np.zeros(n, dtype=bool)
    )
    for step in range(horizon):
        month = replay.month + step
        streams, rows_key = _streams(base_seed, seed, step)
        actions_rng, treatment_rng, transition_rng, extra_rng, dynamics_rng = streams
        cycle_end = cycle_end_days(accounts, world, month)
        # the baseline's draws come first in every arm, so both kinds see the same stream
        acted_t, counts_t = tiered_actions(
            rules, accounts, arrays, state, month, actions_rng, every_account=True
        )
        if model_any or plus_any:
            acted, counts = mixed_actions(
                spec.plan, spec.tiered, state, month, acted_t, counts_t, plus if plus_any else None
            )
        else:
            acted, counts = acted_t, counts_t
        # the rows' draws are keyed by account (RowDraws): an account planned the same contacts
        # in two arms draws the same outcomes in both, whatever the other accounts' rows are
        month_actions = action_rows(
            accounts, arrays, state, acted, counts, cycle_end, actions_rng, rows_key
        )
        # what the rules and the team allow of the rows planned (their outcomes already drawn,
        # so an account's kept rows have the fate they would have had)
        if replay.compliance is not None:
            keep, blocked, by_rule = _compliant_rows(
                replay, state, month_actions, history, extension_used, cycle_end, month
            )
            replay_blocks += blocked
            for rule_id, count in by_rule.items():
                blocks_by_rule[rule_id] += count
            month_actions = keep_action_rows(accounts, arrays, month_actions, keep)
        if replay.capacity is not None:
            keep, dropped_calls, dropped_visits = _within_capacity(
                replay.capacity, month_actions, state.balance
            )
            counters["calls_dropped_for_capacity"] += dropped_calls
            counters["visits_dropped_for_capacity"] += dropped_visits
            month_actions = keep_action_rows(accounts, arrays, month_actions, keep)
        history = ContactLog.of(month_actions)
        state = record_contacts(state, month_actions, month)
        kind = np.full(n, -1)
        restructured_now = np.zeros(n, dtype=bool)
        before = state
        if tiered_any:
            # grant_treatments draws per account, then the granted rows' dates (a number per
            # granted treatment, so they shift with the other accounts' grants; run_arm reads
            # no date, only the kinds and months)
            rng = copy.deepcopy(treatment_rng) if model_any or plus_any else treatment_rng
            tiered_state, granted = grant_treatments(
                rules, accounts, before, previous_bucket, month_actions, cycle_end, month, rng
            )
            kind[granted.account] = granted.kind
            state = tiered_state
        if model_any or plus_any:
            # the policy decides every month: a ladder's treatments are offered every month the
            # account is delinquent and free of one (as the simulated lender's arms are), the
            # first-delinquency extension after the first month only on a first-ever
            # delinquency's first month (the scored decision already passed compliance's rule).
            # A ladder added to the standard queue offers its own after the queue's: only to an
            # account the queue granted nothing this month (its state is the queue's)
            first_delinquency = first_delinquency_month(before, previous_bucket)
            offered_on = merge_states(plus, tiered_state, before) if plus_any else before
            model_state, model_kind, model_restructured, refused = offer_treatments(
                rules, replay.accounts, arrays, spec.plan, offered_on, month_actions, True,
                month, treatment_rng, first_delinquency | (step == 0),
            )  # fmt: skip
            counters["offers_refused"] += refused & (~spec.tiered | plus)
            own = ~spec.tiered | (plus & (model_kind >= 0))
            if tiered_any:
                state = merge_states(~own, tiered_state, model_state)
                kind = np.where(own, model_kind, kind)
            else:
                state, kind = model_state, model_kind
            restructured_now = np.where(own, model_restructured, False)
        restructured_now |= spec.tiered & (kind == KIND["restructure"])
        if spec.grace_all and step == 0:
            state, kind, refused = _grace_for_all(
                replay, spec.tiered, state, kind, month_actions, month, extra_rng
            )
            counters["offers_refused"] += refused
        extension = kind == KIND["first_delinquency_extension"]
        if replay.compliance is not None and extension.any():
            refused_extension, rule_id = _extensions_refused(
                replay, before, extension, extension_used, cycle_end, month
            )
            if refused_extension.any():
                kind = np.where(refused_extension, -1, kind)
                state = replace(
                    state,
                    treatment=np.where(refused_extension, before.treatment, state.treatment),
                    treatment_until=np.where(
                        refused_extension, before.treatment_until, state.treatment_until
                    ),
                )
                replay_blocks += refused_extension
                blocks_by_rule[rule_id] += int(refused_extension.sum())
        extension_used |= kind == KIND["first_delinquency_extension"]
        row_account, row_channel = month_actions.account, month_actions.channel
        np.add.at(totals["action_cost"], row_account, channel_cost[row_channel])
        totals["action_cost"] += np.where(kind >= 0, treatment_cost[np.maximum(kind, 0)], 0.0)
        counters["treatments_granted"] += kind >= 0
        for name, mask in (
            ("contacts", np.isin(row_channel, contact_codes)),
            ("agency_assignments", row_channel == CH["agency_assignment"]),
            ("legal_filings", row_channel == CH["legal"]),
            ("disputes", month_actions.outcome == OUTCOMES.index("dispute")),
            ("agent_calls", row_channel == CH["agent_call"]),
            ("field_visits", row_channel == CH["field_visit"]),
        ):
            counters[name] += np.bincount(row_account[mask], minlength=n)
        shock_on = capacity_shock_on(accounts, month)
        pressure = np.isin(row_channel, pressure_codes) & shock_on[row_account]
        counters["pressure_on_capacity_shock"] += np.bincount(row_account[pressure], minlength=n)
        previous_bucket = state.bucket
        assigned = np.bincount(row_account[row_channel == CH["agency_assignment"]], minlength=n)
        bucket_before, in_plan = state.bucket, state.plan & (state.bucket == 0)
        state = transition(
            rules, accounts, arrays, world, state, month_actions.cure_shift,
            month_actions.roll_shift, restructured_now, month, transition_rng,
            month_actions.promised, dynamics_rng,
        )  # fmt: skip
        totals["recovered"] += state.last_paid
        # the agency keeps its share of what is collected in a month the account is assigned
        rate = commission_rate[np.clip(bucket_before, 0, CHARGE_OFF_BUCKET)]
        totals["agency_commission"] += np.where(assigned > 0, rate * state.last_paid, 0.0)
        totals["waived_income"] += state.last_waived
        totals["deferred_due"] += state.last_deferred
        counters["plans_broken"] += in_plan & (state.bucket > 0)
        defaulted |= dpd_of(state) >= default_dpd
    blocks = np.where(spec.tiered & ~plus, 0, spec.plan.compliance_blocks) + replay_blocks
    end_balance = np.maximum(state.balance, 0.0)
    return ArmResult(
        recovered=totals["recovered"],
        action_cost=totals["action_cost"],
        agency_commission=totals["agency_commission"],
        waived_income=totals["waived_income"],
        deferred_due=totals["deferred_due"],
        open_plan_balance=np.where(state.plan & (state.bucket == 0), end_balance, 0.0),
        end_balance=end_balance,
        end_value=valuation.value(state),
        start_balance=np.maximum(replay.state.balance, 0.0),
        defaulted=defaulted,
        compliance_blocks=blocks,
        blocks_by_rule=blocks_by_rule if replay.compliance is not None else {},
        **counters,
    )


def _compliant_rows(
    replay: Replay,
    state: ChunkState,
    actions: MonthActions,
    history: ContactLog,
    extension_used: np.ndarray,
    cycle_end: np.ndarray,
    month: int,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Which of the month's rows obey the compliance rules (a boolean per row), the rows
    removed per account and per rule id.

    The month's contacts are planned at the cycle end (the decision time) and checked by
    :func:`rollrisk.strategies.compliance.enforce_rows`, the batch's own rules, with the
    simulator's state: DPD, arrears as the amount overdue, the first-ever delinquency (the
    first episode the lender's data shows, as the batch's feature), the one-time extension's
    use, a grace period or restructure plan in force as the hardship plan honoured (the
    batch's ``HARDSHIP_KINDS``), and the previous month's rows (after their own checks) as the
    contact history. Each row is the action its channel stands for
    (:data:`ACTION_OF_CHANNEL`), to the borrower, at its drawn time. A row the contact window
    would move keeps its drawn time and outcome (the simulator draws 08:00-20:59, inside
    every shipped window, so none moves).
    """
    assert replay.compliance is not None
    n = len(state.bucket)
    # the simulator's channel and outcome codes are the labels' codes: no string per row
    plans = PlannedActions(
        actions.account.astype(np.int64),
        Labels(actions.channel, ACTION_OF_CHANNEL),
        actions.action_at,
        Labels(actions.channel, CHANNEL_NAMES),
        Labels(np.zeros(len(actions.account), dtype=np.int8), ["borrower"]),
    )
    _, origin, changes = enforce_rows(
        plans,
        _account_states(replay, state, extension_used, cycle_end, month),
        ContactHistories(
            history.account.astype(np.int64),
            history.at,
            Labels(history.channel, CHANNEL_NAMES),
            Labels(history.outcome, OUTCOME_NAMES),
        ),
        replay.compliance,
    )
    keep = np.zeros(len(plans), dtype=bool)
    keep[origin] = True
    # a rule that only moves a contact (the contact window) keeps it: the replay's drawn times
    # lie inside every shipped window, and a moved row keeps its drawn outcome
    removed = np.array([change == "removed" for change in changes.change], dtype=bool)
    blocked = np.bincount(changes.account[removed], minlength=n)
    by_rule: dict[str, int] = {}
    for rule_id, was_removed in zip(changes.rule_id, removed.tolist(), strict=True):
        if was_removed:
            by_rule[rule_id] = by_rule.get(rule_id, 0) + 1
    return keep, blocked, by_rule


def _account_states(
    replay: Replay,
    state: ChunkState,
    extension_used: np.ndarray,
    cycle_end: np.ndarray,
    month: int,
) -> AccountStates:
    """The compliance rules' view of every account at the month's cycle end (see
    :func:`_compliant_rows`)."""
    hardship = treatment_active(state, month) & np.isin(state.treatment, HARDSHIP_CODES)
    before = 0 if replay.episodes_before_data is None else replay.episodes_before_data
    return AccountStates(
        account_id=np.asarray(replay.account_ids, dtype=object),
        dpd=dpd_of(state).astype(np.int64),
        amount_overdue=np.maximum(state.arrears, 0.0).astype(np.float64),
        first_ever_delinquency=state.episodes - before == 1,
        had_first_delinquency_extension=extension_used.copy(),
        hardship_plan_honoured=hardship,
        decided_at=cycle_end.astype("datetime64[us]"),
    )


def _extensions_refused(
    replay: Replay,
    state: ChunkState,
    granted: np.ndarray,
    extension_used: np.ndarray,
    cycle_end: np.ndarray,
    month: int,
) -> tuple[np.ndarray, str]:
    """Which of the first-delinquency extensions ``granted`` this month the one-time rule
    refuses (``CMP-FIRST-DELINQUENCY-EXTENSION`` through ``enforce_rows``; ``state`` is the
    state before the month's treatments), and that rule's id."""
    assert replay.compliance is not None
    accounts = np.flatnonzero(granted)
    at = cycle_end[accounts].astype("datetime64[us]") + np.timedelta64(2, "D")
    plans = PlannedActions(
        accounts.astype(np.int64),
        np.full(len(accounts), "first_delinquency_extension", dtype=object),
        at,
        np.full(len(accounts), None, dtype=object),
        np.full(len(accounts), "borrower", dtype=object),
    )
    _, origin, changes = enforce_rows(
        plans,
        _account_states(replay, state, extension_used, cycle_end, month),
        ContactHistories(
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype="datetime64[us]"),
            np.zeros(0, dtype=object),
            np.zeros(0, dtype=object),
        ),
        replay.compliance,
    )
    refused = np.zeros(len(granted), dtype=bool)
    refused[accounts] = True
    refused[accounts[origin]] = False
    rule_id = changes.rule_id[0] if changes.rule_id else "CMP-FIRST-DELINQUENCY-EXTENSION"
    return refused, rule_id


def _within_capacity(
    capacity: ContactCapacity, actions: MonthActions, balance: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which of the month's rows the team can make (a boolean per row), and the agent calls
    and field visits dropped per account.

    The month has ``agent_calls_per_month`` agent calls and ``field_visits_per_month`` visits.
    Accounts are served by balance at the month's start, highest first (ties: replay order),
    each account's rows in time order; the rows past the capacity are not made. A visit not
    made takes its notice letter with it (the letter is handed over at the visit): the
    account's latest letters, one per visit dropped.
    """
    n = len(balance)
    keep = np.ones(len(actions.account), dtype=bool)
    calls = int((actions.channel == CH["agent_call"]).sum())
    visits = int((actions.channel == CH["field_visit"]).sum())
    if calls <= capacity.agent_calls_per_month and visits <= capacity.field_visits_per_month:
        nothing = np.zeros(n, dtype=np.int64)
        return keep, nothing, nothing  # within capacity: every row is made
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((np.arange(n), -balance))] = np.arange(n)
    dropped = {}
    for channel, available in (
        ("agent_call", capacity.agent_calls_per_month),
        ("field_visit", capacity.field_visits_per_month),
    ):
        rows = np.flatnonzero(actions.channel == CH[channel])
        served = rows[np.lexsort((actions.action_at[rows], rank[actions.account[rows]]))]
        beyond = served[available:]
        keep[beyond] = False
        dropped[channel] = np.bincount(actions.account[beyond], minlength=n)
    visits_dropped = dropped["field_visit"]
    if visits_dropped.any():
        letters = np.flatnonzero(actions.channel == CH["notice_letter"])
        # each account's letters, latest first; drop the first ``visits_dropped`` of them
        latest_first = letters[
            np.lexsort((-actions.action_at[letters].astype(np.int64), actions.account[letters]))
        ]
        owner = actions.account[latest_first]
        starts = np.r_[True, owner[1:] != owner[:-1]] if len(owner) else np.zeros(0, bool)
        first = np.maximum.accumulate(np.where(starts, np.arange(len(owner)), 0))
        within = np.arange(len(owner)) - first
        keep[latest_first[within < visits_dropped[owner]]] = False
    return keep, dropped["agent_call"], visits_dropped


def _grace_for_all(
    replay: Replay,
    tiered: np.ndarray,
    state: ChunkState,
    kind: np.ndarray,
    actions: MonthActions,
    month: int,
    rng: np.random.Generator,
) -> tuple[ChunkState, np.ndarray, np.ndarray]:
    """A grace period (months drawn like the simulator's) offered to every delinquent tiered
    account without an active treatment and not treated by the baseline this month, taken up
    as :func:`~rollrisk.simulator.engine.takes_up` says. Returns the state, the kinds and who
    refused the offer."""
    n = len(state.bucket)
    months = rng.choice(np.array(replay.rules.policy.grace_months), n)
    delinquent = (state.bucket >= 1) & (state.bucket < CHARGE_OFF_BUCKET)
    # the treatment granted this month is already in state: an untreated account is one whose
    # kind is -1 and whose earlier treatment (if any) has run out
    offered = tiered & delinquent & (kind < 0) & ~treatment_active(state, month)
    grace = takes_up(replay.accounts, replay.arrays, actions, offered, rng)
    kind = np.where(grace, KIND["grace_period"], kind)
    new_state = replace(
        state,
        treatment=np.where(grace, KIND["grace_period"], state.treatment),
        treatment_until=np.where(grace, month + months, state.treatment_until),
    )
    return new_state, kind, offered & ~grace


def arm_metrics(result: ArmResult, mask: np.ndarray | None = None) -> dict[str, float]:
    """The portfolio figures of one arm (over ``mask`` accounts when given)."""
    keep = np.ones(len(result.recovered), dtype=bool) if mask is None else mask
    count = int(keep.sum())
    recovered = float(result.recovered[keep].sum())
    cost = float(result.action_cost[keep].sum())
    commission = float(result.agency_commission[keep].sum())
    end_value = float(result.end_value[keep].sum())
    weight = float(result.start_balance[keep].sum())
    return {
        "book_value": recovered - cost - commission + end_value,
        "recovered": recovered,
        "action_cost": cost,
        "agency_commission": commission,
        "net_recovery": recovered - cost - commission,
        "end_balance": float(result.end_balance[keep].sum()),
        "end_value": end_value,
        "waived_income": float(result.waived_income[keep].sum()),
        "deferred_due": float(result.deferred_due[keep].sum()),
        "plans_broken": float(result.plans_broken[keep].sum()),
        "open_plan_balance": float(result.open_plan_balance[keep].sum()),
        "roll_to_default_rate": float(result.defaulted[keep].mean()) if count else math.nan,
        "roll_to_default_balance_rate": (
            float(result.start_balance[keep][result.defaulted[keep]].sum() / weight)
            if weight > 0
            else math.nan
        ),
        "contacts": float(result.contacts[keep].sum()),
        "agency_assignments": float(result.agency_assignments[keep].sum()),
        "legal_filings": float(result.legal_filings[keep].sum()),
        "disputes": float(result.disputes[keep].sum()),
        "pressure_on_capacity_shock": float(result.pressure_on_capacity_shock[keep].sum()),
        "treatments_granted": float(result.treatments_granted[keep].sum()),
        "offers_refused": float(result.offers_refused[keep].sum()),
        "compliance_blocks": float(result.compliance_blocks[keep].sum()),
        "agent_calls": float(result.agent_calls[keep].sum()),
        "field_visits": float(result.field_visits[keep].sum()),
        "calls_dropped_for_capacity": float(result.calls_dropped_for_capacity[keep].sum()),
        "visits_dropped_for_capacity": float(result.visits_dropped_for_capacity[keep].sum()),
    }


def select_plans(plans: Sequence[ModelPlan], choice: np.ndarray) -> ModelPlan:
    """Per account, the row of ``plans[choice[i]]``."""
    rows = np.arange(len(choice))
    return replace(
        plans[0],
        **{
            f.name: np.stack([getattr(p, f.name) for p in plans])[choice, rows]
            for f in fields(plans[0])
        },
    )


@dataclass(frozen=True)
class OracleChoice:
    """The oracle arm and how it was chosen (see :func:`choose_oracle`)."""

    arm: ArmSpec
    choice: dict[str, dict[str, str]]  # true driver -> start bucket -> candidate
    selection_seeds: list[int]
    candidates: list[str]
    # mean book value per candidate on the selection seeds, by driver and bucket: lets a test
    # (and a reader) check that the choice is the best there
    selection_values: dict[str, dict[str, dict[str, float]]]


def candidate_book_values(
    replay: Replay,
    candidates: Mapping[str, ArmSpec],
    costs: ActionCosts,
    horizon: int,
    selection_seeds: Sequence[int],
    base_seed: int = DEFAULT_BASE_SEED,
    default_dpd: int = DEFAULT_OBSERVATION.default_dpd,
    valuation: Valuation = AT_PAR,
    progress: Callable[[Iterable[int], int], Iterable[int]] | None = None,
    workers: int = 1,
) -> np.ndarray:
    """(candidates x accounts): each account's book value under each candidate bundle, mean
    over ``selection_seeds`` (to be kept apart from the seeds a result reports). ``progress``
    wraps the runs (one per seed and distinct candidate: one whose run is another's is run once,
    :attr:`ArmRuns.runs_as`), as :func:`replay_to_month`'s does its chunks;
    ``workers`` > 1 runs them in that many processes (:func:`shared_runs`), with the same result."""
    for name, spec in candidates.items():
        if spec.grace_all:
            raise ValueError(f"candidate {name} has grace_all; not a bundle")
    runs = ArmRuns(
        replay, None, costs, horizon, base_seed, default_dpd, valuation, tuple(candidates.items())
    )
    # a candidate whose run is another's (the same computation) is run once
    distinct = [k for k, source in enumerate(runs.runs_as) if source == k]
    jobs = [(seed, k) for seed in selection_seeds for k in distinct]
    totals = np.zeros((len(candidates), len(replay.account_ids)))
    with shared_runs(runs, workers, "running an arm") as run:
        done = run(_book_value_of, jobs)
        for (_, k), book_value in zip(
            jobs, progress(done, len(jobs)) if progress else done, strict=True
        ):
            totals[k] += book_value
    totals = totals[list(runs.runs_as)]
    return totals / max(len(selection_seeds), 1)


@dataclass(frozen=True)
class ArmRuns:
    """What every run of an arm on one replay shares (sent once to each worker process): the
    replay, the settings and the arms run, by name (a job names a seed, and an arm by index)."""

    replay: Replay
    plan: ModelPlan | None  # the model-driven plan (for the named arms of ARMS)
    costs: ActionCosts
    horizon: int
    base_seed: int
    default_dpd: int
    valuation: Valuation
    arms: tuple[tuple[str, str | ArmSpec], ...] = ()
    # per arm: the first arm whose run is the very same computation (itself if none), so that
    # each distinct run is made once per seed (e.g. a segment-blind control whose every
    # account is in the standard queue is the tiered baseline's run)
    runs_as: tuple[int, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        n = len(self.replay.account_ids)
        specs = [
            None
            if isinstance(arm, str) and self.plan is None
            else effective_spec(arm, self.plan, n)  # type: ignore[arg-type]
            for _, arm in self.arms
        ]  # a named arm without the plan cannot run: never the same as another

        def same(j: int, k: int) -> bool:
            left, right = specs[j], specs[k]
            return left is not None and right is not None and same_run(left, right)

        first = [next((j for j in range(k) if same(j, k)), k) for k in range(len(specs))]
        object.__setattr__(self, "runs_as", tuple(first))

    def same_runs(self) -> dict[str, str]:
        """Each arm whose run is another's (name -> that arm's name)."""
        return {
            name: self.arms[source][0]
            for (name, _), source in zip(self.arms, self.runs_as, strict=True)
            if self.arms[source][0] != name
        }

    def run(self, seed: int, arm: str | ArmSpec) -> ArmResult:
        plan = arm.plan if isinstance(arm, ArmSpec) else self.plan
        assert plan is not None, "a named arm needs the model-driven plan"
        return run_arm(
            self.replay, arm, plan, self.costs, self.horizon, seed, self.base_seed,
            self.default_dpd, self.valuation,
        )  # fmt: skip


def _book_value_of(runs: ArmRuns, job: tuple[int, int]) -> np.ndarray:
    seed, arm = job
    return runs.run(seed, runs.arms[arm][1]).book_value


def _seed_results(runs: ArmRuns, seed: int) -> dict[str, ArmResult]:
    made: dict[int, ArmResult] = {}
    results = {}
    for (name, _), source in zip(runs.arms, runs.runs_as, strict=True):
        if source not in made:
            made[source] = runs.run(seed, runs.arms[source][1])
        results[name] = made[source]
    return results


_SHARED: Any = None  # a worker process's copy of what its jobs share (shared_runs)


def _keep_shared(shared: Any) -> None:
    global _SHARED
    _SHARED = shared


def _in_worker(task: tuple[Callable[[Any, Any], Any], Any]) -> Any:
    assert _SHARED is not None, "the worker was not started by shared_runs"
    function, job = task
    return function(_SHARED, job)


@contextmanager
def shared_runs(
    shared: Any, workers: int, doing: str
) -> Iterator[Callable[[Callable[[Any, Any], Any], Sequence[Any]], Iterator[Any]]]:
    """``run(function, jobs)``: ``function(shared, job)`` for each job, results in the jobs'
    order (lazily). With ``workers`` > 1 the jobs run in that many spawned processes
    (:func:`rollrisk.scoring.workers.spawn_pool`), each given ``shared`` once; a job that
    depends only on ``shared`` and itself (a chunk's replay, an arm's run on a seed) gives the
    same result as in this process. ``doing`` names the job in the error a dead worker gives."""
    if workers <= 1:
        yield lambda function, jobs: (function(shared, job) for job in jobs)
        return
    from rollrisk.scoring.workers import spawn_pool

    pool = spawn_pool(workers, _keep_shared, (shared,))
    try:
        yield lambda function, jobs: _from_workers(
            pool.map(_in_worker, [(function, job) for job in jobs]), doing
        )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _from_workers(results: Iterable[Any], doing: str) -> Iterator[Any]:
    """``results`` of worker processes, a dead worker said in words (not a bare
    ``BrokenProcessPool``)."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        yield from results
    except BrokenProcessPool as error:
        raise RuntimeError(
            f"a simulate-policy worker process died while {doing} (killed, or out of memory?); "
            "with less memory, run with fewer workers (--workers 1 runs in this process)"
        ) from error


def choose_oracle(
    replay: Replay,
    candidates: Mapping[str, ArmSpec],
    costs: ActionCosts,
    horizon: int,
    drivers: Sequence[str],
    selection_seeds: Sequence[int],
    base_seed: int = DEFAULT_BASE_SEED,
    default_dpd: int = DEFAULT_OBSERVATION.default_dpd,
    valuation: Valuation = AT_PAR,
    values: np.ndarray | None = None,
    name: str = "oracle",
    buckets: Sequence[str] | None = None,
) -> OracleChoice:
    """The oracle: the best candidate bundle per (true driver x start bucket) by book value.

    Every candidate (a pure arm: one ladder for everyone, or the tiered baseline) is run on
    ``selection_seeds`` (:func:`candidate_book_values`; pass its result as ``values`` to reuse
    it), which must be kept apart from the seeds the result reports, so the oracle is never
    tuned on the draws it is judged on. The cells' bucket is ``buckets`` (the job passes the
    scored start bucket, the one the policy decides on), else the replayed bucket at the as-of. Candidates with ``grace_all`` are not allowed (a grace for all is a
    reference, not a bundle). With the same label for every account in ``drivers`` it is the
    segment-blind "best single bundle per bucket".
    """
    names = list(candidates)
    if not names:
        raise ValueError("the oracle needs at least one candidate")
    labels = np.asarray(drivers)
    bucket = (
        np.asarray(buckets)
        if buckets is not None
        else np.array([f"M{b}" for b in replay.state.bucket])
    )
    totals = (
        candidate_book_values(
            replay, candidates, costs, horizon, selection_seeds, base_seed, default_dpd, valuation
        )
        if values is None
        else values
    )
    choice = np.zeros(len(labels), dtype=np.int64)
    table: dict[str, dict[str, str]] = {}
    cells: dict[str, dict[str, dict[str, float]]] = {}
    for driver in sorted(set(labels.tolist())):
        for cell in sorted(set(bucket[labels == driver].tolist())):
            mask = (labels == driver) & (bucket == cell)
            cell_values = totals[:, mask].sum(axis=1)
            best = int(np.argmax(cell_values))  # ties: the first candidate (listed order)
            choice[mask] = best
            table.setdefault(driver, {})[cell] = names[best]
            cells.setdefault(driver, {})[cell] = {
                k: float(v) for k, v in zip(names, cell_values, strict=True)
            }
    specs = [candidates[name] for name in names]
    arm = ArmSpec(
        name,
        select_plans([s.plan for s in specs], choice),
        np.array([specs[c].tiered[i] for i, c in enumerate(choice)], dtype=bool),
    )
    return OracleChoice(arm, table, [int(s) for s in selection_seeds], names, cells)


def _ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or None when the reference gap is not positive (the ratio
    then means nothing: the reference does no better than the baseline)."""
    return numerator / denominator if denominator > 0 else None


def _gap_ratio(numerator: float, gap_per_account: np.ndarray) -> float | None:
    """``numerator`` over the reference gap (the sum of ``gap_per_account``), or None unless the
    gap is positive beyond its sampling noise (above 1.96 standard errors over accounts): a
    ratio to a gap that noise alone could give means nothing (a few thousand CNY of gap made a
    value of segmentation of -10,000 % on the demo)."""
    gap = float(gap_per_account.sum())
    n = len(gap_per_account)
    if n < 2:
        return _ratio(numerator, gap)
    noise = 1.96 * float(gap_per_account.std(ddof=1)) * math.sqrt(n)
    return numerator / gap if gap > noise else None


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
    valuation: Valuation = AT_PAR,
    references: Mapping[str, ArmSpec] | None = None,
    drivers: Sequence[str] | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Both arms (and the references) on every seed; figures, uplift and their intervals.

    ``workers`` > 1 runs the seeds in that many processes (:func:`shared_runs`): the same result.

    ``default_dpd`` defines the roll-to-default event and ``valuation`` the value of the
    balance still open at the end (see :func:`run_arm`).

    ``segments`` (replay order) adds the uplift per segment. ``uplift_account_bootstrap`` adds a
    second interval for the main figures: the seed-averaged per-account uplift resampled over
    accounts. ``uplift_two_way`` resamples accounts and seeds together (the headline interval,
    :func:`rollrisk.models.stats.two_way_bootstrap`), where the t-interval covers only the
    simulator's randomness for these accounts (Monte Carlo error).

    ``references`` (name -> arm) are run on the same accounts and draws; their figures go to
    ``references``, and ``uplift_vs_references`` gives the model-driven arm's book value minus
    each reference's with the account-and-seed interval. With the names ``oracle``, ``segment_blind`` and ``oracle_segments``
    present, ``value_captured`` and ``value_of_segmentation`` are added; with ``drivers``
    (each account's true driver, replay order) value captured is also given per driver, and
    ``uplift_by_true_driver`` the book-value uplift of each driver's accounts with its
    account-and-seed interval, and split by what the policy decided (``by_decision``: the
    accounts it gave a ladder of its own, and those it left in the standard queue, each with
    its interval and the scored segments of its accounts).
    """
    n = len(replay.account_ids)
    refs = dict(references or {})
    per_seed: list[dict[str, Any]] = []
    two_way = {name: np.zeros((n, len(seeds))) for name in BOOTSTRAP_METRICS}
    account_book = {arm: np.zeros(n) for arm in (*ARMS, *refs)}
    # model-driven minus each reference, per account and seed (the same two-way interval)
    versus = {name: np.zeros((n, len(seeds))) for name in refs}
    by_segment: dict[str, list[dict[str, float]]] = {}
    # the replay's compliance blocks per arm and rule, mean over the seeds
    blocks_by_rule: dict[str, dict[str, float]] = {}
    labels = np.asarray(segments) if segments is not None else None
    arms_run = (*((arm, arm) for arm in ARMS), *refs.items())
    runs = ArmRuns(replay, plan, costs, horizon, base_seed, default_dpd, valuation, arms_run)
    with shared_runs(runs, workers, "running an arm") as run:
        done = run(_seed_results, seeds)
        every_seed = progress(done, len(seeds)) if progress else done
        for column, (seed, results) in enumerate(zip(seeds, every_seed, strict=True)):
            per_seed.append({"seed": int(seed), **{a: arm_metrics(r) for a, r in results.items()}})
            for arm, result in results.items():
                account_book[arm] += result.book_value
                by_rule = blocks_by_rule.setdefault(arm, {})
                for rule_id, count in result.blocks_by_rule.items():
                    by_rule[rule_id] = by_rule.get(rule_id, 0.0) + count / len(seeds)
            model_arm, base_arm = results["model_driven"], results["baseline_tiered"]
            for name in refs:
                versus[name][:, column] = model_arm.book_value - results[name].book_value
            two_way["book_value"][:, column] = model_arm.book_value - base_arm.book_value
            two_way["recovered"][:, column] = model_arm.recovered - base_arm.recovered
            two_way["net_recovery"][:, column] = _net(model_arm) - _net(base_arm)
            two_way["roll_to_default_rate"][:, column] = model_arm.defaulted.astype(float) - (
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
            # simulation noise only: these accounts held fixed
            "uplift": {m: t_interval([r[m] for r in rows]) for m in SEGMENT_METRICS},
            # the headline's interval, resampling the segment's accounts and the seeds: what
            # says whether a segment is worse off
            "uplift_two_way": {
                m: two_way_interval(two_way[m][labels == segment], False, base_seed)
                for m in ("book_value", "net_recovery")
            },
        }
        for segment, rows in by_segment.items()
    }
    # every account-and-seed interval of the whole book on the same resamples, drawn once
    intervals = two_way_intervals(
        {
            **{name: (values, name == "roll_to_default_rate") for name, values in two_way.items()},
            **{f"versus {name}": (values, False) for name, values in versus.items()},
        },
        base_seed,
    )
    uplift_two_way = {name: intervals[name] for name in two_way}
    result: dict[str, Any] = {
        "accounts": n,
        # how the arms draw (run_arm): every draw the account's own, so an account treated
        # alike in two arms has the same fate (older results: rows drawn in order)
        "draws": OWN_DRAWS,
        "months": horizon,
        "seeds": [int(s) for s in seeds],
        "base_seed": base_seed,
        "replay_match_share": replay.replay_match_share,
        # where the scored accounts' state at the as-of came from: the simulator's chunks
        # holding them, and how many were read from the state `simulate` wrote
        "replay_chunks": {"chunks": replay.chunks, "from_stored_state": replay.chunks_from_points},
        "valuation": {
            "shares": {
                f"M{b}" if b < CHARGE_OFF_BUCKET else f"M{b}+": s
                for b, s in enumerate(valuation.shares)
            },
            "months": valuation.months,
            "method": valuation.method,
            # a CNY on a restructure plan at the end (None: valued by the bucket it left)
            "plan_share": valuation.plan_share,
        },  # fmt: skip
        "headline": {
            "metric": "book_value",
            "model_driven": arms["model_driven"]["book_value"]["mean"],
            "baseline_tiered": arms["baseline_tiered"]["book_value"]["mean"],
            "uplift": uplift_two_way["book_value"],
            "monte_carlo_interval": uplift["book_value"],
        },
        "arms": arms,
        "uplift": uplift,
        "uplift_two_way": uplift_two_way,
        "uplift_account_bootstrap": {
            name: account_bootstrap(values.mean(axis=1), name == "roll_to_default_rate", base_seed)
            for name, values in two_way.items()
        },
        "by_segment": segment_table,
        "per_seed": per_seed,
        # arms whose run is another's (the same computation: run once, every figure equal)
        "same_runs": runs.same_runs(),
        "constraints": {
            "compliance": (
                {
                    "jurisdictions": list(replay.compliance.jurisdictions),
                    "blocks_by_rule": blocks_by_rule,
                }
                if replay.compliance is not None
                else None
            ),
            "capacity": replay.capacity.as_dict() if replay.capacity is not None else None,
        },
    }
    if refs:
        result["references"] = {
            name: {m: t_interval([s[name][m] for s in per_seed]) for m in METRICS}
            for name in (*ARMS, *refs)
        }
        result["uplift_vs_references"] = {name: intervals[f"versus {name}"] for name in versus}
        result |= _value_ratios(
            {arm: values / len(seeds) for arm, values in account_book.items()}, drivers
        )
    if drivers is not None:
        # is any true-driver group worse off than under the baseline? the book-value uplift of
        # each group, with the headline's account-and-seed interval, and split by what the
        # policy decided: the accounts it gave a ladder of its own or steps on top of the
        # standard queue (where a wrong segment costs) and those it left in the standard queue
        # with nothing added (any difference there is the others' use of the shared contact
        # capacity)
        drivers_of = np.asarray(drivers)
        decided = {"own_ladder": ~plan.queued_only, "standard_queue": plan.queued_only}
        by_driver: dict[str, Any] = {}
        for driver in sorted(set(drivers_of.tolist())):
            group = drivers_of == driver
            parts: dict[str, Any] = {}
            for name, mask in decided.items():
                part = group & mask
                if not part.any():  # nothing to split (no interval: NaN is not JSON)
                    continue
                parts[name] = {
                    "accounts": int(part.sum()),
                    "book_value": two_way_interval(two_way["book_value"][part], False, base_seed),
                }
                if labels is not None:  # the scored segments the part's accounts were in
                    names, counts = np.unique(labels[part], return_counts=True)
                    parts[name]["segments"] = {
                        str(k): int(c) for k, c in zip(names, counts, strict=True)
                    }
            by_driver[driver] = {
                "accounts": int(group.sum()),
                "book_value": two_way_interval(two_way["book_value"][group], False, base_seed),
                "by_decision": parts,
            }
        result["uplift_by_true_driver"] = by_driver
    return result


def _net(result: ArmResult) -> np.ndarray:
    """Per account: cash collected minus action and treatment costs and agency commission."""
    return result.recovered - result.action_cost - result.agency_commission


def _value_ratios(
    account_book: Mapping[str, np.ndarray], drivers: Sequence[str] | None
) -> dict[str, Any]:
    """Value captured (overall and per true driver) and value of segmentation, from the
    seed-averaged book value per account of each arm."""
    out: dict[str, Any] = {}

    def total(arm: str, mask: np.ndarray | None = None) -> float:
        values = account_book[arm]
        return float(values.sum() if mask is None else values[mask].sum())

    if "oracle" in account_book:
        gap = total("oracle") - total("baseline_tiered")
        gain = total("model_driven") - total("baseline_tiered")
        per_driver: dict[str, Any] = {}
        if drivers is not None:
            labels = np.asarray(drivers)
            for driver in sorted(set(labels.tolist())):
                mask = labels == driver
                d_gap = total("oracle", mask) - total("baseline_tiered", mask)
                d_gain = total("model_driven", mask) - total("baseline_tiered", mask)
                per_driver[driver] = {
                    "accounts": int(mask.sum()),
                    "policy_minus_baseline": d_gain,
                    "oracle_minus_baseline": d_gap,
                    "value_captured": _gap_ratio(
                        d_gain, (account_book["oracle"] - account_book["baseline_tiered"])[mask]
                    ),
                }
        out["value_captured"] = {
            "overall": _gap_ratio(gain, account_book["oracle"] - account_book["baseline_tiered"]),
            "policy_minus_baseline": gain,
            "oracle_minus_baseline": gap,
            "by_true_driver": per_driver,
        }
    if "segment_blind" in account_book and "oracle_segments" in account_book:
        gap = total("oracle_segments") - total("segment_blind")
        gain = total("model_driven") - total("segment_blind")
        out["value_of_segmentation"] = {
            "value": _gap_ratio(
                gain, account_book["oracle_segments"] - account_book["segment_blind"]
            ),
            "policy_minus_segment_blind": gain,
            "oracle_segments_minus_segment_blind": gap,
        }
    return out


def two_way_interval(values: np.ndarray, rate: bool, seed: int) -> dict[str, float]:
    """Total (or, for a rate, mean over accounts) of the seed-averaged per-account values, with
    the 95 % interval resampling accounts and seeds together."""
    return two_way_intervals({"figure": (values, rate)}, seed)["figure"]


def two_way_intervals(
    figures: Mapping[str, tuple[np.ndarray, bool]], seed: int
) -> dict[str, dict[str, float]]:
    """:func:`two_way_interval` of each named (accounts x seeds values, is a rate) figure of the
    same accounts and seeds, all on the same resamples (drawn once:
    :func:`rollrisk.models.stats.two_way_bootstraps`); each the same as alone."""
    names = list(figures)
    matrices = [np.asarray(figures[name][0], dtype=np.float64) for name in names]
    rates = [figures[name][1] for name in names]
    bounds = two_way_bootstraps(
        matrices, BOOTSTRAP_SAMPLES, seed, ["mean" if rate else "sum" for rate in rates]
    )
    out = {}
    for name, values, rate, (low, high) in zip(names, matrices, rates, bounds, strict=True):
        n = values.shape[0]
        per_account = values.mean(axis=1) if values.size else np.zeros(n)
        out[name] = {
            "mean": float(per_account.mean() if rate else per_account.sum()) if n else math.nan,
            "ci_low": low,
            "ci_high": high,
            "samples": BOOTSTRAP_SAMPLES,
            "resamples": "accounts x seeds",
        }
    return out


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


# --------------------------------------------------------------------------------------------
# Re-deciding the scored accounts under other segments (segment-blind, oracle segments)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecisionInputs:
    """What the batch decided on, per scored account (replay order), to decide again under
    other segments with the same policy and the same compliance rules."""

    frame: pd.DataFrame  # account_id, first_delinquency, start_bucket, product, dpd_at_as_of
    probability: np.ndarray
    overdue: np.ndarray
    as_of: date
    policy: Policy
    compliance: EffectiveCompliance
    collection_actions: pl.DataFrame | None
    treatments: pl.DataFrame | None
    # gathered once, for every re-decision (the facts do not depend on the segments)
    facts: DecisionFacts | None = None


@dataclass(frozen=True)
class _RuleSetup:
    """The parts of a scoring setup the batch's decision step reads."""

    policy: Policy
    compliance: EffectiveCompliance
    # the replay evaluates the policy itself: no experiment replaces its decisions
    experiments: ExperimentPlan = ExperimentPlan("experiments.yaml", ())


def decision_inputs(
    scored: pl.DataFrame,
    accounts: pl.DataFrame,
    statements: pl.DataFrame,
    collection_actions: pl.DataFrame | None,
    treatments: pl.DataFrame | None,
    as_of: date,
    policy: Policy,
    compliance: EffectiveCompliance,
) -> DecisionInputs:
    """The decision inputs of the ``scored`` rows (replay order): their scored columns, and
    the one feature the compliance rules read that the scores do not carry
    (``first_delinquency``, computed point-in-time as the batch does)."""
    only = FeatureSet(
        FEATURE_SET.name, FEATURE_SET.version, (FEATURE_SET.spec("first_delinquency"),)
    )
    people = scored.select(
        "account_id", pl.col("dpd").alias("dpd_at_as_of"), "start_bucket", "product"
    )
    frame = features_at(people, as_of, accounts, statements, collection_actions, treatments, only)
    overdue = scored["amount_overdue"].to_numpy()
    return DecisionInputs(
        frame,
        scored["probability"].to_numpy(),
        overdue,
        as_of,
        policy,
        compliance,
        collection_actions,
        treatments,
        decision_facts(frame, overdue, as_of, collection_actions, treatments),
    )


def plan_for_segments(inputs: DecisionInputs, segments: Sequence[str]) -> ModelPlan:
    """The plan the shipped policy gives every account when its segment is ``segments[i]``,
    after the same compliance rules as the batch (the batch's own decision step, so the same
    segments give the scored decisions back; the job checks that)."""
    return _plan_of(inputs, inputs.policy, segments)


def plan_for_treatment(inputs: DecisionInputs, treatment: str) -> ModelPlan:
    """The plan every account gets when the policy gives it ``treatment``: the policy with one
    rule giving it to everyone, then the same compliance rules as the batch (an extension to a
    borrower who had one is removed, a call moved into the window...). One of the oracle's
    candidate bundles: the choices a policy file (and the policy learner) has."""
    policy = inputs.policy
    if treatment not in policy.treatments:
        raise ValueError(f"{policy.source} has no treatment {treatment!r}")
    everyone = PolicyRule(
        rule_id=f"EVERYONE-{treatment}",
        precedence=0,
        start_buckets=frozenset(policy.start_buckets),
        risk_bands=frozenset(band for band, _ in policy.risk_bands),
        segments=frozenset(policy.segments),
        products=frozenset(policy.products),
        dpd=Interval(),
        amount_overdue=Interval(),
        treatment=treatment,
        line=None,
    )
    # the segment does not matter to a rule for everyone; any segment of the space will do
    segments = [policy.segments[0]] * len(inputs.probability)
    return _plan_of(inputs, replace(policy, rules=(everyone,)), segments)


def _plan_of(inputs: DecisionInputs, policy: Policy, segments: Sequence[str]) -> ModelPlan:
    """The batch's own decision step (policy, then compliance) as a plan."""
    decisions = _decide_all(
        inputs.frame,
        inputs.probability,
        np.asarray(segments),
        inputs.overdue,
        inputs.as_of,
        _RuleSetup(policy, inputs.compliance),  # type: ignore[arg-type]
        inputs.collection_actions,
        inputs.treatments,
        inputs.facts,
    )
    return model_plan(decisions.actions, decisions.trail)


def same_plan(left: ModelPlan, right: ModelPlan) -> float:
    """The share of accounts whose plans are identical (every field)."""
    same = np.ones(len(left.grace), dtype=bool)
    for f in fields(left):
        a, b = getattr(left, f.name), getattr(right, f.name)
        same &= (a == b).all(axis=1) if a.ndim == 2 else a == b
    return float(same.mean()) if len(same) else 1.0
