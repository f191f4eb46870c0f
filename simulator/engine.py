"""The vectorised portfolio simulator: numpy over the accounts of a chunk, a loop over months.

Every behavioural number comes from :mod:`rollrisk.simulator.rules`. The engine is a
few pure steps over a :class:`ChunkState` (arrays, one entry per account):

1. :func:`statement_columns` - the statement each account gets at this month's cycle end;
2. :func:`tiered_actions` - which channels the baseline tiered policy uses, how often;
3. :func:`action_rows` - one row per action with its driver-dependent outcome and timestamp;
4. :func:`grant_treatments` - first-delinquency extensions and hardship treatments;
5. :func:`transition` - cure / stay / roll, payments and balances for the next month.

:func:`simulate_chunk` loops those over the months of one chunk of accounts and returns its
tables; :func:`write_portfolio` streams the chunks to a portfolio folder. A chunk's random
stream is ``SeedSequence(seed).spawn(...)[1 + chunk]`` (child 0 draws the shared world: macro
cycle and regional shocks), and the chunk size is a fixed rule, so a seed fixes the output.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from rollrisk.features.schemas import (
    CALL_CHANNELS,
    CHANNELS,
    FAILED_OUTCOMES,
    MESSAGE_CHANNELS,
    OUTCOMES,
    PRODUCTS,
    RECORD_TABLES,
    TABLES,
    TREATMENT_KINDS,
)
from rollrisk.simulator.exploration import ASSIGNMENTS_TABLE, EXPERIMENT_FILE, Exploration
from rollrisk.simulator.rules import (
    CALL_OUTCOMES,
    CHARGE_OFF_BUCKET,
    COMMON_CALL_OUTCOMES,
    DRIVERS,
    LEGAL_OUTCOMES,
    MESSAGE_OUTCOMES,
    PARTIAL_CURE,
    PROMISE_KEPT,
    REACHED_OUTCOMES,
    RESTRUCTURE_REDEFAULT,
    TREATMENT_TAKE_UP,
    ActionResponse,
    SimulationRules,
)
from rollrisk.simulator.truth import (
    BORROWERS_FILE,
    PARAMS_FILE,
    REPLAY_POINT_MONTHS,
    TRUTH_FOLDER,
    replay_state_path,
    write_replay_state,
)
from rollrisk.strategies.experiments import NOT_RANDOMISED
from rollrisk.strategies.policy import ACTIONS, STANDARD_QUEUE

US_PER_DAY = 86_400_000_000
US_PER_HOUR = 3_600_000_000
US_PER_MINUTE = 60_000_000
MAX_DPD = 3650
CH = {name: i for i, name in enumerate(CHANNELS)}
OUT = {name: i for i, name in enumerate(OUTCOMES)}
KIND = {name: i for i, name in enumerate(TREATMENT_KINDS)}
DRV = {name: i for i, name in enumerate(DRIVERS)}
REACHED_CODES = np.array([OUT[o] for o in REACHED_OUTCOMES])
TABLE_NAMES = ("accounts", "statements", "collection_actions", "treatments")
POLICY_MAX_BUCKET = 3  # the model-driven policy decides for M1-M3 (its space's start buckets)
TREATMENT_ACTIONS = ("grace_period", "interest_waiver", "first_delinquency_extension")
NEVER_CLOSED = np.iinfo(np.int32).max // 2


# --------------------------------------------------------------------------------------------
# Rules as arrays
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RuleArrays:
    """The rules as numpy tables indexed by product / driver / channel / kind / month of year."""

    product_share: np.ndarray  # each product's share of the book at the start
    booking_rate: np.ndarray  # (product,) accounts booked a month per account on the book
    prepayment_rate: np.ndarray  # (product,) instalment lines paid off early a month
    redraw_share: np.ndarray  # (product,) paid-down instalment lines drawn again
    closure_rate: np.ndarray  # (product,) revolving accounts closed by the borrower a month
    limit_log_low: np.ndarray
    limit_log_high: np.ndarray
    revolving: np.ndarray
    min_due_share: np.ndarray
    min_due_floor: np.ndarray
    base_roll: np.ndarray
    driver_cumulative: np.ndarray  # (product, driver) cumulative mix
    driver_current_roll: np.ndarray
    driver_cure: np.ndarray
    driver_roll: np.ndarray
    driver_season_weight: np.ndarray
    driver_partial: np.ndarray
    driver_recovery: np.ndarray
    driver_limit_factor: np.ndarray
    driver_pays_above_due: np.ndarray
    channel_cure: np.ndarray  # (driver, channel)
    channel_roll: np.ndarray
    treatment_cure: np.ndarray  # (driver, kind)
    treatment_roll: np.ndarray
    plan_redefault: np.ndarray  # (driver,) monthly probability a restructure plan breaks
    take_up: np.ndarray  # (driver,) probability an offered treatment is taken up when reached
    partial_cure: np.ndarray  # (driver,) a stay at M2+ pays one more due of arrears instead
    promise_kept: np.ndarray  # (driver,) a month's promise to pay is kept
    promises: bool  # promises are their own event (promised dates capped at the next cycle end)
    outcome_cumulative: np.ndarray  # (driver, channel, outcome)
    season: np.ndarray  # (product, month of year)
    shock_exposure: np.ndarray  # (product,)
    bucket_cure: np.ndarray  # (bucket 1..6) -> index bucket-1
    bucket_roll: np.ndarray
    channel_first_day: np.ndarray
    channel_last_day: np.ndarray


# a statement is known (known_at) 1-3 days after its cycle end, or, late, 4 to this many days
LATEST_STATEMENT_DAYS = 10


def latest_day_after_cycle_end(rules: SimulationRules) -> int:
    """The most days after a month's cycle end that a row about that month is dated: its
    statement known late, or a collection action on a channel's last day."""
    last_action = max(last for _, last in rules.policy.channel_days.values())
    return max(LATEST_STATEMENT_DAYS, last_action)


def rule_arrays(rules: SimulationRules) -> RuleArrays:
    """Lay the rules out as arrays the engine can index with account-level integer codes."""
    products = [rules.products[p] for p in PRODUCTS]
    drivers = [rules.drivers[d] for d in DRIVERS]
    mix = np.array([p.driver_mix for p in products], dtype=float)
    mix /= mix.sum(axis=1, keepdims=True)
    call = np.array(
        [
            (1 - rules.outcome_noise) * np.array(CALL_OUTCOMES[d])
            + rules.outcome_noise * np.array(COMMON_CALL_OUTCOMES)
            for d in DRIVERS
        ]
    )
    outcome = np.zeros((len(DRIVERS), len(CHANNELS), len(OUTCOMES)))
    for c, channel in enumerate(CHANNELS):
        if channel in MESSAGE_CHANNELS:
            outcome[:, c] = [MESSAGE_OUTCOMES[d] for d in DRIVERS]
        elif channel == "legal":
            outcome[:, c] = LEGAL_OUTCOMES
        elif channel in CALL_CHANNELS:  # dialled: answered or no_answer
            unanswered = np.eye(len(OUTCOMES))[OUTCOMES.index("no_answer")]
            outcome[:, c] = (
                rules.dial_answer_rate * call + (1 - rules.dial_answer_rate) * unanswered
            )
        else:
            outcome[:, c] = call
    outcome /= outcome.sum(axis=2, keepdims=True)
    season = np.zeros((len(PRODUCTS), 12))
    season[PRODUCTS.index("agri_loan")] = rules.world.agri_season
    season[PRODUCTS.index("merchant_loan")] = rules.world.merchant_season
    days = rules.policy.channel_days
    channel_response, treatment_response = rules.responses()

    def shift(driver: str, kind: str) -> ActionResponse:
        return treatment_response[driver].get(kind, ActionResponse(0.0, 0.0))

    return RuleArrays(
        product_share=np.array([p.share for p in products]) / sum(p.share for p in products),
        booking_rate=np.array([p.exit_rate() + rules.book.charge_off_allowance for p in products]),
        prepayment_rate=np.array([p.prepayment_rate for p in products]),
        redraw_share=np.array([p.redraw_share for p in products]),
        closure_rate=np.array([p.closure_rate for p in products]),
        limit_log_low=np.log([p.limit_low for p in products]),
        limit_log_high=np.log([p.limit_high for p in products]),
        revolving=np.array([p.revolving for p in products]),
        min_due_share=np.array([p.min_due_share for p in products]),
        min_due_floor=np.array([p.min_due_floor for p in products]),
        base_roll=np.array([p.base_roll_logit for p in products]),
        driver_cumulative=np.cumsum(mix, axis=1),
        driver_current_roll=np.array([d.current_roll for d in drivers]),
        driver_cure=np.array([d.cure for d in drivers]),
        driver_roll=np.array([d.roll for d in drivers]),
        driver_season_weight=np.array([d.season_weight for d in drivers]),
        driver_partial=np.array([d.partial_payment_probability for d in drivers]),
        driver_recovery=np.array([d.recovery_probability for d in drivers]),
        driver_limit_factor=np.array([d.limit_factor for d in drivers]),
        driver_pays_above_due=np.array([d.pays_above_due for d in drivers]),
        channel_cure=np.array([[channel_response[d][c].cure for c in CHANNELS] for d in DRIVERS]),
        channel_roll=np.array([[channel_response[d][c].roll for c in CHANNELS] for d in DRIVERS]),
        # kinds without a row act through the money only (no logit shift)
        treatment_cure=np.array([[shift(d, k).cure for k in TREATMENT_KINDS] for d in DRIVERS]),
        treatment_roll=np.array([[shift(d, k).roll for k in TREATMENT_KINDS] for d in DRIVERS]),
        plan_redefault=np.array([RESTRUCTURE_REDEFAULT[d] for d in DRIVERS]),
        take_up=np.array([TREATMENT_TAKE_UP[d] for d in DRIVERS]),
        partial_cure=np.array([PARTIAL_CURE[d] for d in DRIVERS]),
        promise_kept=np.array([PROMISE_KEPT[d] for d in DRIVERS]),
        promises=rules.dynamics.promises,
        outcome_cumulative=np.cumsum(outcome, axis=2),
        season=season,
        shock_exposure=np.array(rules.world.shock_exposure, dtype=float),
        bucket_cure=np.array(rules.bucket_cure, dtype=float),
        bucket_roll=np.array(rules.bucket_roll, dtype=float),
        channel_first_day=np.array([days[c][0] for c in CHANNELS]),
        channel_last_day=np.array([days[c][1] for c in CHANNELS]),
    )


# --------------------------------------------------------------------------------------------
# The shared world
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class World:
    """Forces shared by every account. Month index 0 is the first output month."""

    start_month: np.datetime64  # datetime64[M]
    first_month: int  # index of the first simulated month (negative: burn-in)
    macro: np.ndarray  # logit shift per simulated month
    regional_shock: np.ndarray  # (simulated month, region) logit shift
    region_weights: np.ndarray
    shocks: tuple[tuple[int, int, float], ...]  # (month index, region, severity) of each shock
    months: int  # the portfolio's window (a longer draw for a replay's horizon keeps it)
    stress_region: int = -1  # the region a regional stress hits (-1: no regional stress)

    def row(self, month: int) -> int:
        return month - self.first_month


def make_world(rules: SimulationRules, seed: int, months: int, start_month: str) -> World:
    """Draw the macro cycle, the regional shocks and the region sizes from seed child 0."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    w = rules.world
    first = -rules.burn_in_months
    total = months + rules.burn_in_months
    phase = rng.uniform(0, w.macro_period_months)
    noise = np.zeros(total)
    innovations = rng.normal(0, w.macro_noise, total)
    for i in range(1, total):
        noise[i] = w.macro_persistence * noise[i - 1] + innovations[i]
    index = np.arange(first, months)
    macro = w.macro_amplitude * np.sin(2 * np.pi * (index + phase) / w.macro_period_months) + noise
    starts = rng.random((total, w.regions)) < w.shock_probability
    severity = rng.uniform(*w.shock_severity, (total, w.regions)) * starts
    shock = np.zeros((total, w.regions))
    for lag, share in enumerate(w.shock_decay):
        shock[lag:] += share * severity[: total - lag]
    stress = rules.stress
    if stress.kind == "macro":  # added to the drawn cycle: no draw moves
        window = (index >= stress.start_month) & (index < stress.start_month + stress.months)
        macro = macro + stress.macro_shift * window
    rows, regions = np.nonzero(starts)
    shocks = tuple(
        (int(r + first), int(g), round(float(severity[r, g]), 3))
        for r, g in zip(rows, regions, strict=True)
    )
    region_weights = rng.dirichlet(np.full(w.regions, 2.0))
    stress_region = -1
    if stress.kind == "regional":
        stress_region = int(np.argmax(region_weights)) if stress.region < 0 else stress.region
    return World(
        start_month=np.datetime64(start_month, "M"),
        first_month=first,
        macro=macro,
        regional_shock=shock,
        region_weights=region_weights,
        shocks=shocks,
        months=months,
        stress_region=stress_region,
    )


# --------------------------------------------------------------------------------------------
# Accounts and their state
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChunkAccounts:
    """What does not change over the months (observable and latent)."""

    index: np.ndarray  # global account number
    borrower: np.ndarray  # global borrower number
    product: np.ndarray
    driver: np.ndarray
    region: np.ndarray
    limit: np.ndarray
    billing_day: np.ndarray
    opened_days_before_start: np.ndarray  # opened_at = first cycle end of month 0 - this
    open_month: np.ndarray  # month index of the first statement (first_month: on the book)
    frailty: np.ndarray
    shock_onset: np.ndarray  # month index (capacity_shock only; else a large number)
    shock_end: np.ndarray
    holdout: np.ndarray
    term: np.ndarray  # instalment term of each draw (0 for revolving)
    # a regional stress's capacity shock (month index; None or a large number: not hit)
    stress_onset: np.ndarray | None = None
    stress_end: np.ndarray | None = None


def capacity_shock_on(accounts: ChunkAccounts, month: int) -> np.ndarray:
    """Who is in a capacity shock this month: a capacity_shock borrower's own (its onset to
    its end), or a regional stress's (:func:`stressed_accounts`)."""
    on = (month >= accounts.shock_onset) & (month < accounts.shock_end)
    if accounts.stress_onset is not None and accounts.stress_end is not None:
        on |= (month >= accounts.stress_onset) & (month < accounts.stress_end)
    return on


def dynamics_stream(seed: int, chunk: int) -> np.random.Generator:
    """The stream of a chunk's partial cures and promise keeping: ``SeedSequence(seed,
    spawn_key=(1 + chunk, 1))``, a child of the chunk's that nothing else draws from, so these
    events move none of the other draws."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1 + chunk, 1)))


def stressed_accounts(
    rules: SimulationRules, world: World, accounts: ChunkAccounts, seed: int, chunk: int
) -> ChunkAccounts:
    """``accounts`` with a regional stress's capacity shocks (``rules.stress``): of the
    accounts in ``world.stress_region``, ``regional_share`` (one uniform each from the stream
    ``SeedSequence(seed, spawn_key=(1 + chunk, 2))``, drawn only under a regional stress) are
    in a capacity shock from ``start_month`` for ``months`` months. Without a regional stress,
    ``accounts`` unchanged."""
    stress = rules.stress
    if stress.kind != "regional":
        return accounts
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1 + chunk, 2)))
    hit = (accounts.region == world.stress_region) & (
        rng.random(len(accounts.index)) < stress.regional_share
    )
    onset = np.where(hit, stress.start_month, NEVER_CLOSED)
    return replace(
        accounts, stress_onset=onset, stress_end=np.where(hit, onset + stress.months, NEVER_CLOSED)
    )


@dataclass(frozen=True)
class ChunkState:
    """The month-to-month state of every account of a chunk."""

    bucket: np.ndarray  # 0 current, 1..6 = M1..M6, 7+ charged off
    first_late_day: np.ndarray  # d0: DPD = 30 * (bucket - 1) + d0
    balance: np.ndarray
    arrears: np.ndarray
    instalment: np.ndarray  # instalment products and restructure plans: the monthly due
    utilisation: np.ndarray  # revolving: utilisation target
    last_paid: np.ndarray  # paid during the cycle that just closed
    episodes: np.ndarray  # delinquency episodes started so far (burn-in included)
    last_cure: np.ndarray  # month index of the latest cure
    failed_contacts: np.ndarray
    agency: np.ndarray
    legal: np.ndarray
    treatment: np.ndarray  # active treatment kind, -1 none
    treatment_until: np.ndarray  # month index the treatment stops applying at
    plan: np.ndarray  # restructure plan in force (fixed instalment)
    plan_bucket: np.ndarray  # the bucket a plan in force was restructured from (0: no plan)
    legal_month: np.ndarray  # month index of the legal filing (meaningful where ``legal``)
    last_deferred: np.ndarray  # due deferred by a grace / extension in the cycle just closed
    last_waived: np.ndarray  # fee income waived in the cycle just closed
    closed_at: np.ndarray  # month index of a closed account's last statement (balance 0)


def draw_accounts(
    rules: SimulationRules,
    arrays: RuleArrays,
    world: World,
    rng: np.random.Generator,
    first: int,
    n: int,
) -> tuple[ChunkAccounts, ChunkState]:
    """Draw the accounts of one chunk and their state at the start of the burn-in.

    With an open book (``rules.book``), each account also draws its opening month: on the book
    from the start, or booked in a later window month (its state, drawn here, waits frozen
    until then; a booked instalment line starts with its whole draw outstanding).
    """
    later_months = world.months - 1  # the window months an account can be booked in
    booking = rules.book.open_book and later_months > 0
    weights = arrays.product_share * (1.0 + arrays.booking_rate * later_months * booking)
    product = rng.choice(len(PRODUCTS), n, p=weights / weights.sum())
    u = rng.random(n)
    driver = np.minimum(
        (u[:, None] > arrays.driver_cumulative[product]).sum(axis=1), len(DRIVERS) - 1
    )
    region = rng.choice(len(world.region_weights), n, p=world.region_weights)
    frailty = rng.normal(0.0, rules.frailty_sd, n)
    # a few borrowers hold two accounts: the later one copies the borrower's latent traits
    shared = rng.random(n) < rules.shared_borrower_share
    shared[0] = False
    owner = np.maximum.accumulate(np.where(shared, 0, np.arange(n)))
    driver, region, frailty = driver[owner], region[owner], frailty[owner]
    limit = np.exp(rng.uniform(arrays.limit_log_low[product], arrays.limit_log_high[product]))
    limit = np.maximum(np.round(limit * arrays.driver_limit_factor[driver], -2), 500.0)
    onset = rng.integers(*rules.shock_onset_months, n)
    length = rng.integers(*rules.shock_months, n)
    is_shock = driver == DRV["capacity_shock"]
    never = np.iinfo(np.int32).max // 2
    shock_onset = np.where(is_shock, onset, never)
    shock_end = np.where(is_shock, onset + length, never)
    revolving = arrays.revolving[product]
    terms = np.array([rules.products[p].instalment_terms or (0,) for p in PRODUCTS], dtype=object)
    term = np.zeros(n, dtype=np.int64)
    for p, options in enumerate(terms):
        mask = product == p
        term[mask] = rng.choice(np.array(options), mask.sum())
    utilisation = rng.beta(*rules.utilisation_beta, n)
    principal = limit * rng.uniform(0.5, 1.0, n)
    balance = np.where(
        revolving,
        utilisation * limit * rng.uniform(0.7, 1.1, n),
        principal * rng.uniform(0.3, 1.0, n),
    )
    instalment = np.where(revolving, 0.0, principal / np.maximum(term, 1))
    # the draws of the closed cohort, in their order (``open_book=False`` reproduces it)
    billing_day = rng.integers(1, 29, n)
    opened_days_before_start = rng.integers(*rules.opened_days_before_start, n)
    holdout = rng.random(n) < rules.policy.holdout_share
    open_month = np.full(n, world.first_month, dtype=np.int64)
    if booking:
        rate = arrays.booking_rate[product]
        booked = rng.random(n) >= 1.0 / (1.0 + rate * later_months)
        month = rng.integers(1, later_months + 1, n)
        before_first = rng.integers(*rules.book.opened_days_before_first_statement, n)
        open_month = np.where(booked, month, open_month)
        # opened 1-30 days before its first cycle end, counted from the first cycle end of month 0
        month_start = (world.start_month + month).astype("datetime64[D]")
        lead = (world.start_month.astype("datetime64[D]") - month_start).astype(np.int64)
        opened_days_before_start = np.where(booked, lead + before_first, opened_days_before_start)
        balance = np.where(booked & ~revolving, principal, balance)
    accounts = ChunkAccounts(
        index=np.arange(first, first + n),
        borrower=first + owner,
        product=product,
        driver=driver,
        region=region,
        limit=limit,
        billing_day=billing_day,
        opened_days_before_start=opened_days_before_start,
        open_month=open_month,
        frailty=frailty,
        shock_onset=shock_onset,
        shock_end=shock_end,
        holdout=holdout,
        term=term,
    )
    state = ChunkState(
        bucket=np.zeros(n, dtype=np.int64),
        first_late_day=np.zeros(n, dtype=np.int64),
        balance=balance,
        arrears=np.zeros(n),
        instalment=instalment,
        utilisation=utilisation,
        last_paid=np.zeros(n),
        episodes=np.zeros(n, dtype=np.int64),
        last_cure=np.full(n, -10_000),
        failed_contacts=np.zeros(n, dtype=np.int64),
        agency=np.zeros(n, dtype=bool),
        legal=np.zeros(n, dtype=bool),
        treatment=np.full(n, -1),
        treatment_until=np.zeros(n, dtype=np.int64),
        plan=np.zeros(n, dtype=bool),
        plan_bucket=np.zeros(n, dtype=np.int64),
        legal_month=np.zeros(n, dtype=np.int64),
        last_deferred=np.zeros(n),
        last_waived=np.zeros(n),
        closed_at=np.full(n, NEVER_CLOSED, dtype=np.int64),
    )
    return accounts, state


def cycle_end_days(accounts: ChunkAccounts, world: World, month: int) -> np.ndarray:
    """Each account's cycle end of a month, as datetime64[D]."""
    first_day = (world.start_month + month).astype("datetime64[D]")
    return first_day + (accounts.billing_day - 1)


def monthly_due(accounts: ChunkAccounts, arrays: RuleArrays, state: ChunkState) -> np.ndarray:
    """This month's regular due: a share of a revolving balance, else the fixed instalment."""
    product = accounts.product
    revolving_due = np.maximum(
        arrays.min_due_floor[product], arrays.min_due_share[product] * state.balance
    )
    due = np.where(arrays.revolving[product] & ~state.plan, revolving_due, state.instalment)
    return np.minimum(due, state.balance)


def dpd_of(state: ChunkState) -> np.ndarray:
    """Days past due at the cycle end, consistent with the bucket (30-day months)."""
    dpd = 30 * (state.bucket - 1) + state.first_late_day
    return np.where(state.bucket == 0, 0, np.minimum(dpd, MAX_DPD))


# --------------------------------------------------------------------------------------------
# One month
# --------------------------------------------------------------------------------------------
def statement_columns(
    accounts: ChunkAccounts,
    arrays: RuleArrays,
    state: ChunkState,
    cycle_end: np.ndarray,
    rng: np.random.Generator,
    late_probability: float,
) -> dict[str, np.ndarray]:
    """The statement of every account at this cycle end (amounts rounded to the fen)."""
    n = len(state.bucket)
    due = monthly_due(accounts, arrays, state)
    charged_off = state.bucket >= CHARGE_OFF_BUCKET
    instalment_like = ~arrays.revolving[accounts.product] | state.plan
    minimum = np.minimum(state.balance, due + state.arrears)
    amount_due = np.where(charged_off | ~instalment_like, state.balance, minimum)
    amount_due = np.round(amount_due, 2)
    min_due = np.minimum(np.round(np.where(charged_off, state.balance, minimum), 2), amount_due)
    delay = np.where(
        rng.random(n) < late_probability,
        rng.integers(4, LATEST_STATEMENT_DAYS + 1, n),
        rng.integers(1, 4, n),
    )
    known_at = (cycle_end + delay).astype("datetime64[us]") + (
        (6 * 60 + rng.integers(0, 240, n)) * US_PER_MINUTE
    ).astype("timedelta64[us]")
    return {
        "cycle_end": cycle_end,
        "known_at": known_at,
        "amount_due": amount_due,
        "min_due": min_due,
        "amount_paid": np.round(state.last_paid, 2),
        "balance": np.round(state.balance, 2),
        "dpd": dpd_of(state),
    }


def treatment_active(state: ChunkState, month: int) -> np.ndarray:
    return (state.treatment >= 0) & (month < state.treatment_until)


DEFERRING_KINDS = (KIND["grace_period"], KIND["first_delinquency_extension"])
PAUSING_KINDS = (*DEFERRING_KINDS, KIND["restructure"])


def collection_paused(state: ChunkState, month: int) -> np.ndarray:
    """No collection while a grace period, a first-delinquency extension or a restructure plan
    is honoured (a broken plan ends its treatment, and collection resumes)."""
    return treatment_active(state, month) & np.isin(state.treatment, PAUSING_KINDS)


def tiered_actions(
    rules: SimulationRules,
    accounts: ChunkAccounts,
    arrays: RuleArrays,
    state: ChunkState,
    month: int,
    rng: np.random.Generator,
    every_account: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The baseline tiered policy: (accounts acted on, counts per channel) for this month.

    M1: sms + app push (revolving products) + robo calls; M2: sms + agent calls; M3: agent calls,
    agency above ``large_balance``; 90+: agency, agent calls, a field visit with a notice letter
    after failed contacts or for large balances, legal for large balances after failed contacts.
    Holdout accounts get one SMS only. Collection pauses while a grace period, an extension or
    a restructure plan is honoured (:func:`collection_paused`).

    The draws are one per account acted on (the data simulator), or, with ``every_account``,
    one per account of the chunk, acted on or not (the policy replay's arms: an account's draws
    do not depend on which other accounts are delinquent this month).
    """
    policy = rules.policy
    bucket = state.bucket
    stopped = collection_paused(state, month)
    acted = np.flatnonzero((bucket >= 1) & (bucket < CHARGE_OFF_BUCKET) & ~stopped)
    k = bucket[acted]
    n = len(acted)
    size, pick = (len(bucket), acted) if every_account else (n, slice(None))
    counts = np.zeros((n, len(CHANNELS)), dtype=np.int64)
    balance = state.balance[acted]
    failed = state.failed_contacts[acted] >= policy.failed_contacts_for_escalation
    m1, m2, m3, m4 = k == 1, k == 2, k == 3, k >= 4
    counts[:, CH["sms"]] = np.where(m1, 1 + (rng.random(size)[pick] < 0.5), m2)
    counts[:, CH["app_push"]] = (
        m1 & arrays.revolving[accounts.product[acted]] & (rng.random(size)[pick] < 0.8)
    )
    counts[:, CH["robo_call"]] = m1 * (1 + rng.binomial(2, 0.5, size)[pick])
    counts[:, CH["agent_call"]] = (
        m2 * (1 + rng.binomial(3, 0.5, size)[pick])
        + m3 * (2 + rng.binomial(2, 0.5, size)[pick])
        + m4 * rng.binomial(2, 0.5, size)[pick]
    )
    counts[:, CH["agency_assignment"]] = (m3 & (balance > policy.large_balance)) | m4
    visit = (
        m4
        & (failed | (balance > policy.legal_balance))
        & (rng.random(size)[pick] < policy.visit_probability)
    )
    counts[:, CH["field_visit"]] = visit
    counts[:, CH["notice_letter"]] = visit
    counts[:, CH["legal"]] = (
        m4
        & failed
        & (balance > policy.legal_balance)
        & ~state.legal[acted]
        & (rng.random(size)[pick] < policy.legal_probability)
    )
    holdout = accounts.holdout[acted]
    counts[holdout] = 0
    counts[holdout, CH["sms"]] = 1
    return acted, counts


@dataclass(frozen=True)
class MonthActions:
    """The action rows of one month and what they did to the accounts."""

    account: np.ndarray  # chunk-local account position per row
    channel: np.ndarray
    outcome: np.ndarray
    action_at: np.ndarray  # datetime64[us]
    promised_amount: np.ndarray  # NaN when no promise
    promised_date: np.ndarray  # datetime64[D], NaT when no promise
    cure_shift: np.ndarray  # per account (all accounts of the chunk)
    roll_shift: np.ndarray
    hardship_at: np.ndarray  # per account: latest hardship claim (datetime64[us]) or NaT
    reached: np.ndarray  # per account: some contact reached the borrower this month (not legal)
    promised: np.ndarray | None = None  # per account: the month's largest promise, NaN none


_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # 2^64 / the golden ratio: splitmix64's step between fields


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (wrapping): a bijection that scatters
    nearby inputs over all 64 bits."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class RowDraws:
    """Random numbers of a month's contact rows keyed by what the row is, not by where it
    falls: (stream key, account, channel, the row's rank among the account's rows on that
    channel). A row gets the same numbers whatever rows other accounts have, so two policy
    arms that plan the same contacts for an account draw the same outcomes, times and
    promises for it (common random numbers per account; :func:`action_rows` with ``key``).

    Each call (``random``, ``integers``, ``uniform``: the parts of :class:`numpy.random.Generator`
    that :func:`action_rows` uses) is the next field of every row; ``size`` must be the row
    count. Uniforms have 53 random bits (as the generator's)."""

    def __init__(self, key: int, account: np.ndarray, channel: np.ndarray, rank: np.ndarray):
        row = (channel.astype(np.uint64) << np.uint64(32)) | rank.astype(np.uint64)
        self._rows = _mix64(_mix64(np.uint64(key & _MASK64) ^ account.astype(np.uint64)) ^ row)
        self._field = 0

    def random(self, size: int | None = None) -> np.ndarray:
        if size is not None and size != len(self._rows):
            raise ValueError(f"RowDraws draws one number per row ({len(self._rows)}), not {size}")
        self._field += 1
        bits = _mix64(self._rows + np.uint64((self._field * _GOLDEN) & _MASK64))
        return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53

    def integers(self, low: Any, high: Any, size: int | None = None) -> np.ndarray:
        """Integers in ``[low, high)``, elementwise for array bounds."""
        low, high = np.asarray(low), np.asarray(high)
        return (low + np.floor(self.random(size) * (high - low))).astype(np.int64)

    def uniform(self, low: float, high: float, size: int | None = None) -> np.ndarray:
        return low + (high - low) * self.random(size)


def action_rows(
    accounts: ChunkAccounts,
    arrays: RuleArrays,
    state: ChunkState,
    acted: np.ndarray,
    counts: np.ndarray,
    cycle_end: np.ndarray,
    rng: np.random.Generator,
    key: int | None = None,
) -> MonthActions:
    """Expand per-channel counts into rows (np.repeat), draw outcomes and the response shifts.

    The rows' draws (outcome, day and time, promised amount and date) come from ``rng`` in row
    order (the data simulator: a row's numbers depend on the rows before it), or, with
    ``key``, from :class:`RowDraws` keyed by account, channel and rank (the policy replay's
    arms: an account's rows draw the same numbers whatever the other accounts' rows are;
    ``rng`` is then not used)."""
    n_all = len(state.bucket)
    n_channels = len(CHANNELS)
    flat = counts.ravel()
    account = np.repeat(np.repeat(acted, n_channels), flat)
    channel = np.repeat(np.tile(np.arange(n_channels), len(acted)), flat)
    rows = len(account)
    draws: np.random.Generator | RowDraws = rng
    if key is not None:
        # each row's rank among its account's rows on its channel (0, 1, ...)
        rank = np.arange(rows) - np.repeat(np.cumsum(flat) - flat, flat)
        draws = RowDraws(key, accounts.index[account], channel, rank)
    driver = accounts.driver[account]
    cumulative = arrays.outcome_cumulative[driver, channel]
    outcome = np.minimum((draws.random(rows)[:, None] > cumulative).sum(axis=1), len(OUTCOMES) - 1)
    day = draws.integers(arrays.channel_first_day[channel], arrays.channel_last_day[channel] + 1)
    offset = (
        day * US_PER_DAY
        + draws.integers(8, 21, rows) * US_PER_HOUR
        + draws.integers(0, 60, rows) * US_PER_MINUTE
    )
    action_at = cycle_end[account].astype("datetime64[us]") + offset.astype("timedelta64[us]")
    promise = outcome == OUT["promise_to_pay"]
    owed = (state.arrears + monthly_due(accounts, arrays, state))[account]
    promised_amount = np.where(promise, np.round(owed * draws.uniform(0.3, 1.0, rows), 2), np.nan)
    promised_date = np.where(
        promise,
        action_at.astype("datetime64[D]") + draws.integers(3, 15, rows),
        np.datetime64("NaT", "D"),
    )
    if arrays.promises:
        # a kept promise is paid in the cycle it was made in: no date past the next cycle end
        month_start = cycle_end.astype("datetime64[M]")
        next_end = (month_start + 1).astype("datetime64[D]") + (
            cycle_end - month_start.astype("datetime64[D]")
        )
        promised_date = np.minimum(promised_date, next_end[account])
    return _month_actions(
        accounts, arrays, n_all, account, channel, outcome, action_at, promised_amount,
        promised_date,
    )  # fmt: skip


def _month_actions(
    accounts: ChunkAccounts,
    arrays: RuleArrays,
    n_all: int,
    account: np.ndarray,
    channel: np.ndarray,
    outcome: np.ndarray,
    action_at: np.ndarray,
    promised_amount: np.ndarray,
    promised_date: np.ndarray,
) -> MonthActions:
    """The month's rows and what they do to the accounts (no random draw: the same rows give
    the same shifts, claims and reach)."""
    n_channels = len(CHANNELS)
    # a channel acts when it reached the borrower at least once this month; a legal filing acts
    # only after the court's delay (see transition)
    reached = np.isin(outcome, REACHED_CODES) & (channel != CH["legal"])
    used = np.zeros((n_all, n_channels), dtype=bool)
    used[account[reached], channel[reached]] = True
    reach = used.any(axis=1)
    # only an account some channel reached has a shift (the same sum over its channels; the
    # others' rows of zeros are 0): most accounts of a month have none
    touched = np.flatnonzero(reach)
    cure_shift, roll_shift = np.zeros(n_all), np.zeros(n_all)
    touched_used, touched_driver = used[touched], accounts.driver[touched]
    cure_shift[touched] = (touched_used * arrays.channel_cure[touched_driver]).sum(axis=1)
    roll_shift[touched] = (touched_used * arrays.channel_roll[touched_driver]).sum(axis=1)
    hardship = outcome == OUT["hardship_claimed"]
    hardship_us = np.full(n_all, np.iinfo(np.int64).min)
    np.maximum.at(hardship_us, account[hardship], action_at[hardship].astype(np.int64))
    hardship_at = np.where(
        hardship_us == np.iinfo(np.int64).min,
        np.datetime64("NaT", "us"),
        hardship_us.astype("datetime64[us]"),
    )
    promise = outcome == OUT["promise_to_pay"]
    promised = np.full(n_all, np.nan)
    np.fmax.at(promised, account[promise], promised_amount[promise])
    return MonthActions(
        account,
        channel,
        outcome,
        action_at,
        promised_amount,
        promised_date,
        cure_shift,
        roll_shift,
        hardship_at,
        reach,
        promised,
    )


def keep_action_rows(
    accounts: ChunkAccounts, arrays: RuleArrays, actions: MonthActions, keep: np.ndarray
) -> MonthActions:
    """The month's actions with only the rows ``keep`` (a boolean per row): what a policy
    replay's compliance and contact-capacity checks leave. The kept rows keep their drawn
    times and outcomes; the shifts, hardship claims and reach are those of the kept rows."""
    if keep.all():
        return actions
    return _month_actions(
        accounts, arrays, len(actions.cure_shift), actions.account[keep], actions.channel[keep],
        actions.outcome[keep], actions.action_at[keep], actions.promised_amount[keep],
        actions.promised_date[keep],
    )  # fmt: skip


def takes_up(
    accounts: ChunkAccounts,
    arrays: RuleArrays,
    actions: MonthActions,
    offered: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Which ``offered`` treatments the borrowers take up (``TREATMENT_TAKE_UP``): one the
    borrower asked for this month (a hardship claim) always; else only when a contact reached
    them this month, with their driver's probability. Draws one number per account."""
    u = rng.random(len(offered))
    asked = ~np.isnat(actions.hardship_at)
    agrees = actions.reached & (u < arrays.take_up[accounts.driver])
    return offered & (asked | agrees)


def record_contacts(state: ChunkState, actions: MonthActions, month: int) -> ChunkState:
    """Count failed contacts and remember agency assignments and legal filings (and when)."""
    n = len(state.bucket)
    failed_codes = [OUT[o] for o in FAILED_OUTCOMES]
    failed = np.bincount(actions.account[np.isin(actions.outcome, failed_codes)], minlength=n)
    agency = (
        np.bincount(actions.account[actions.channel == CH["agency_assignment"]], minlength=n) > 0
    )
    legal = np.bincount(actions.account[actions.channel == CH["legal"]], minlength=n) > 0
    return replace(
        state,
        failed_contacts=state.failed_contacts + failed,
        agency=state.agency | agency,
        legal=state.legal | legal,
        legal_month=np.where(legal & ~state.legal, month, state.legal_month),
    )


@dataclass(frozen=True)
class MonthTreatments:
    account: np.ndarray
    kind: np.ndarray
    start_at: np.ndarray
    end_at: np.ndarray
    known_at: np.ndarray


def first_delinquency_month(state: ChunkState, previous_bucket: np.ndarray) -> np.ndarray:
    """Accounts in the first month of their first-ever delinquency (M1 now, current at the
    previous statement, one episode): when the lender's one-time extension may be granted."""
    return (state.bucket == 1) & (previous_bucket == 0) & (state.episodes == 1)


def grant_treatments(
    rules: SimulationRules,
    accounts: ChunkAccounts,
    state: ChunkState,
    previous_bucket: np.ndarray,
    actions: MonthActions,
    cycle_end: np.ndarray,
    month: int,
    rng: np.random.Generator,
) -> tuple[ChunkState, MonthTreatments]:
    """The baseline policy's treatments: a one-time extension for a first-ever delinquency, and
    a grace period / interest waiver / restructure after a hardship claim (restructure for M2+
    balances above ``restructure_balance``). ``end_at`` is the planned end."""
    policy = rules.policy
    n = len(state.bucket)
    free = ~treatment_active(state, month)
    first = (
        free
        & first_delinquency_month(state, previous_bucket)
        & ~accounts.holdout
        & (rng.random(n) < policy.first_extension_probability)
    )
    hardship = (
        free
        & ~first
        & ~np.isnat(actions.hardship_at)
        & (rng.random(n) < policy.hardship_grant_probability)
    )
    restructure = hardship & (state.bucket >= 2) & (state.balance > policy.restructure_balance)
    grace = hardship & ~restructure & (rng.random(n) < 0.6)
    kind = np.full(n, -1)
    months = np.zeros(n, dtype=np.int64)
    kind[first] = KIND["first_delinquency_extension"]
    months[first] = 1
    kind[grace] = KIND["grace_period"]
    months[grace] = rng.choice(np.array(policy.grace_months), n)[grace]
    waiver = hardship & ~restructure & ~grace
    kind[waiver] = KIND["interest_waiver"]
    months[waiver] = policy.waiver_months
    kind[restructure] = KIND["restructure"]
    months[restructure] = rng.choice(np.array(policy.restructure_months), n)[restructure]
    granted = np.flatnonzero(kind >= 0)
    decided = np.where(
        first[granted],
        cycle_end[granted].astype("datetime64[us]") + np.timedelta64(2, "D"),
        actions.hardship_at[granted],
    )
    start_at = decided.astype("datetime64[D]").astype("datetime64[us]") + (
        rng.integers(1, 4, len(granted)) * US_PER_DAY
        + rng.integers(9, 18, len(granted)) * US_PER_HOUR
    ).astype("timedelta64[us]")
    end_at = start_at + (30 * months[granted] * US_PER_DAY).astype("timedelta64[us]")
    treatment = np.where(kind >= 0, kind, state.treatment)
    until = np.where(kind >= 0, month + months, state.treatment_until)
    new_state = replace(state, treatment=treatment, treatment_until=until)
    return new_state, MonthTreatments(granted, kind[granted], start_at, end_at, start_at)


# --------------------------------------------------------------------------------------------
# A policy's ladder as a month of simulator inputs (the policy replay and the exploration)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelPlan:
    """Ladders as simulator inputs, one row per account: the contacts a ladder makes in a
    month and the treatments it offers (the policy replay's scored decisions, or the
    exploration's arms)."""

    channel_counts: np.ndarray  # (n, channels) contacts per month of the ladder
    grace: np.ndarray  # bool per account
    waiver: np.ndarray
    extension: np.ndarray
    restructure_offer: np.ndarray
    compliance_blocks: np.ndarray  # actions removed by compliance, per account
    # bool per account: the ladder is ``standard_queue``, the account stays in the lender's
    # tiered collection (it gets the tiered policy's actions and treatments); None (plans built
    # by hand) = nobody
    standard_queue: np.ndarray | None = None
    # bool per account: the ladder grants a grace / a waiver only on a hardship claim made in a
    # contact of the month (an action with ``ActionSpec.relief_on_hardship``); None = nobody
    grace_on_hardship: np.ndarray | None = None
    waiver_on_hardship: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("standard_queue", "grace_on_hardship", "waiver_on_hardship"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.zeros(len(self.grace), dtype=bool))

    @property
    def queued(self) -> np.ndarray:
        """Who stays in the lender's standard tiered collection (bool per account), with or
        without steps added on top of it (:attr:`plus_steps`)."""
        assert self.standard_queue is not None  # set by __post_init__
        return self.standard_queue

    @property
    def plus_steps(self) -> np.ndarray:
        """Who stays in the standard queue with steps of the ladder added on top of it: a
        contact or a relief (bool per account)."""
        assert self.grace_on_hardship is not None and self.waiver_on_hardship is not None
        added = (
            (self.channel_counts.sum(axis=1) > 0) | self.grace | self.waiver | self.extension
            | self.restructure_offer | self.grace_on_hardship | self.waiver_on_hardship
        )  # fmt: skip
        return self.queued & added

    @property
    def queued_only(self) -> np.ndarray:
        """Who stays in the standard queue with nothing added (bool per account)."""
        return self.queued & ~self.plus_steps


def ladder_plan(
    ladders: Sequence[Iterable[tuple[str, str | None]]],
    compliance_blocks: np.ndarray | None = None,
) -> ModelPlan:
    """Translate ladders, each a sequence of ``(action, channel)`` steps, into a plan.

    A contact step counts once on each channel it uses (:data:`~rollrisk.strategies.policy.ACTIONS`,
    ``channels_used``: a field visit also hands over a notice letter); a treatment step
    (``grace_period``, ``interest_waiver``, ``first_delinquency_extension``) sets its flag, as
    does the grace or waiver granted on a hardship claim (``ActionSpec.relief_on_hardship``); a
    ``restructure_offer`` sets its flag and counts its channel. ``compliance_blocks`` (actions
    compliance removed, per ladder) defaults to none.
    """
    n = len(ladders)
    counts = np.zeros((n, len(CHANNELS)), dtype=np.int64)
    flags = {
        name: np.zeros(n, dtype=bool)
        for name in (*TREATMENT_ACTIONS, "restructure_offer", "grace_on", "waiver_on")
    }
    queued = np.zeros(n, dtype=bool)
    for i, steps in enumerate(ladders):
        for action, channel in steps:
            if action == STANDARD_QUEUE:  # the other steps, if any, are added on top of it
                queued[i] = True
                continue
            if action in TREATMENT_ACTIONS:
                flags[action][i] = True
                continue
            relief = ACTIONS[action].relief_on_hardship if action in ACTIONS else None
            if relief is not None:
                flags["grace_on" if relief == "grace_period" else "waiver_on"][i] = True
                continue
            if action == "restructure_offer":
                flags["restructure_offer"][i] = True
            if action not in ACTIONS or not ACTIONS[action].channels:
                raise ValueError(f"ladder action {action!r} has no simulator channel")
            for used in ACTIONS[action].channels_used(channel or None):
                counts[i, CH[used]] += 1
    return ModelPlan(
        counts,
        flags["grace_period"],
        flags["interest_waiver"],
        flags["first_delinquency_extension"],
        flags["restructure_offer"],
        np.zeros(n, dtype=np.int64) if compliance_blocks is None else compliance_blocks,
        queued,
        flags["grace_on"],
        flags["waiver_on"],
    )


def ladder_counts(
    plan: ModelPlan,
    state: ChunkState,
    month: int,
    acted_tiered: np.ndarray,
    counts_tiered: np.ndarray,
) -> np.ndarray:
    """The ladder's contacts (accounts x channels) for accounts in M1-M3 whose collection is
    not stopped; the tiered policy's past M3 (outside the policy's scope)."""
    n = len(state.bucket)
    counts = np.zeros((n, len(CHANNELS)), dtype=np.int64)
    in_scope = (state.bucket >= 1) & (state.bucket <= POLICY_MAX_BUCKET)
    in_scope &= ~collection_paused(state, month)
    counts[in_scope] = plan.channel_counts[in_scope]
    beyond = state.bucket[acted_tiered] > POLICY_MAX_BUCKET
    counts[acted_tiered[beyond]] = counts_tiered[beyond]
    return counts


def mixed_actions(
    plan: ModelPlan,
    tiered: np.ndarray,
    state: ChunkState,
    month: int,
    acted_tiered: np.ndarray,
    counts_tiered: np.ndarray,
    plus: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(accounts acted on, counts per channel): the tiered policy's for ``tiered`` accounts,
    :func:`ladder_counts` for the others; in the form :func:`tiered_actions` returns. ``plus``
    (tiered accounts whose ladder adds steps to the standard queue) get the tiered policy's
    contacts and their ladder's, in M1-M3 while collection is not stopped."""
    counts = ladder_counts(plan, state, month, acted_tiered, counts_tiered)
    if tiered.any():
        added = np.where(plus[:, None], counts, 0) if plus is not None else None
        counts[tiered] = 0
        pick = tiered[acted_tiered]
        counts[acted_tiered[pick]] = counts_tiered[pick]
        if added is not None:
            in_scope = (state.bucket >= 1) & (state.bucket <= POLICY_MAX_BUCKET)
            counts += np.where(in_scope[:, None], added, 0)
    acted = np.flatnonzero(counts.sum(axis=1) > 0)
    return acted, counts[acted]


def offer_treatments(
    rules: SimulationRules,
    accounts: ChunkAccounts,
    arrays: RuleArrays,
    plan: ModelPlan,
    state: ChunkState,
    actions: MonthActions,
    first_month: bool,
    month: int,
    rng: np.random.Generator,
    extension_allowed: np.ndarray | None = None,
) -> tuple[ChunkState, np.ndarray, np.ndarray, np.ndarray]:
    """Grant a ladder's treatments (in its decision's first month) and the restructures its
    offer turned into.

    A grace or waiver offer is taken up only as :func:`takes_up` says (reached this month, the
    driver's take-up; asked for after a hardship claim: always); one the ladder grants on a
    hardship claim (``plan.grace_on_hardship``, ``plan.waiver_on_hardship``) is offered only to
    a borrower who claimed hardship in a contact this month, and so taken up; a restructure needs the
    borrower's hardship claim this month, at M2+ above ``restructure_balance``; the extension
    is the lender's own, for the accounts in ``extension_allowed`` (default: all; the policy
    replay's decisions already passed compliance's first-delinquency rule). Nothing is granted
    on top of an active treatment. Returns the new state, the kind granted per account (-1
    none), who was restructured now and who refused an offer.
    """
    policy = rules.policy
    n = len(state.bucket)
    grace_months = rng.choice(np.array(policy.grace_months), n)
    restructure_months = rng.choice(np.array(policy.restructure_months), n)
    free = ~treatment_active(state, month)
    delinquent = (state.bucket >= 1) & (state.bucket < CHARGE_OFF_BUCKET)
    claimed = ~np.isnat(actions.hardship_at)
    restructure = (
        free
        & plan.restructure_offer
        & delinquent
        & claimed
        & (state.bucket >= 2)
        & (state.balance > policy.restructure_balance)
    )
    grace_offer = (
        free & ~restructure & (plan.grace | plan.grace_on_hardship & claimed)
        & first_month & delinquent
    )  # fmt: skip
    waiver_offer = (
        free & ~restructure & ~grace_offer & (plan.waiver | plan.waiver_on_hardship & claimed)
        & first_month & delinquent
    )  # fmt: skip
    offered = grace_offer | waiver_offer
    taken = takes_up(accounts, arrays, actions, offered, rng)
    grace, waiver = grace_offer & taken, waiver_offer & taken
    extension = free & ~restructure & ~offered & plan.extension & first_month & delinquent
    if extension_allowed is not None:
        extension &= extension_allowed
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
        treatment_until=np.where(kind >= 0, month + months, state.treatment_until),
    )
    return new_state, kind, restructure, offered & ~taken


def merge_states(tiered: np.ndarray, when_tiered: ChunkState, otherwise: ChunkState) -> ChunkState:
    """Per account, the tiered policy's state or the other's."""
    return replace(
        when_tiered,
        **{
            f.name: np.where(tiered, getattr(when_tiered, f.name), getattr(otherwise, f.name))
            for f in fields(when_tiered)
            if isinstance(getattr(when_tiered, f.name), np.ndarray)
        },
    )


def transition(
    rules: SimulationRules,
    accounts: ChunkAccounts,
    arrays: RuleArrays,
    world: World,
    state: ChunkState,
    cure_shift: np.ndarray,
    roll_shift: np.ndarray,
    restructured_now: np.ndarray,
    month: int,
    rng: np.random.Generator,
    promised: np.ndarray | None = None,
    dynamics_rng: np.random.Generator | None = None,
) -> ChunkState:
    """Cure, stay or roll; the payment made during the cycle; next month's balances.

    Partial cures and promises (``rules.dynamics``, docs/simulator.md "Partial cures and
    promises"; their draws, two uniforms per account, come from ``dynamics_rng``: without it,
    neither happens):

    * a delinquent account at M2+ that stays pays, with its driver's ``PARTIAL_CURE``
      probability, one more due of arrears (``arrears / bucket``) and moves back one bucket;
    * an account with a promise this month (``promised``: its largest promised amount, NaN
      none; on a delinquent account that moves) keeps it with its driver's ``PROMISE_KEPT``
      probability: it pays at least the promised amount and cures (at M1, or when the promise
      covers the arrears and the due) or moves back one bucket; a broken promise pays no
      arrears (a cure drawn becomes a stay) and adds ``broken_promise_roll`` to the roll logit.

    Treatments act through the money (``rules.treatments``, docs/simulator.md):

    * grace period and first-delinquency extension (while active, on a delinquent account): no
      payment is asked, the month's due is deferred into the arrears (still owed afterwards,
      ``last_deferred``), the bucket and DPD stay where they are (no push to cure, no roll),
      fees accrue unless the rule waives them (the extension's are waived: ``last_waived``);
    * restructure (``restructured_now``): the arrears are capitalised and the account re-aged
      to current on a plan instalment = min(balance / plan months, share x the due it
      replaces), which it pays this month (nothing more). While the plan is in force the
      account pays the instalment or breaks the plan with the driver's monthly probability
      (``RESTRUCTURE_REDEFAULT``, more during a capacity shock) and re-enters collections at
      the bucket it was restructured from, the plan ended;
    * interest waiver: no fees while active (``last_waived`` = the fee rate x the balance they
      would have been charged on), plus its logit response (``TREATMENT_RESPONSE``);
    * legal: the filing's response (``CHANNEL_RESPONSE["legal"]``) applies once,
      ``legal_delay_months`` after the filing.

    The open book (``rules.book``, docs/simulator.md "An open book"): an account not booked yet
    or already closed does not move (nothing paid, nothing changes). A current account that
    stays current and is not on a plan closes, paying its whole balance (the payment of this
    cycle, ``last_paid``): a revolving account at its product's ``closure_rate``, an instalment
    line prepaid at its ``prepayment_rate`` or paid down (less than one instalment left) and
    not drawn again (``1 - redraw_share``). Its next statement, showing balance 0, is its last
    (``closed_at``).

    Draws a fixed number of random numbers per account whatever the state (common random
    numbers for the policy replay).
    """
    n = len(state.bucket)
    on_book = (month >= accounts.open_month) & (month < state.closed_at)
    treat = rules.treatments
    product, driver = accounts.product, accounts.driver
    bucket = state.bucket
    row = world.row(month)
    month_of_year = int((world.start_month + month).astype(int) % 12)
    shock_on = capacity_shock_on(accounts, month)
    active = treatment_active(state, month)
    kind = np.maximum(state.treatment, 0)
    treat_cure = np.where(active, arrays.treatment_cure[driver, kind], 0.0)
    treat_roll = np.where(active, arrays.treatment_roll[driver, kind], 0.0)
    legal_now = state.legal & (month - state.legal_month == treat.legal_delay_months)
    cure_shift = cure_shift + np.where(legal_now, arrays.channel_cure[driver, CH["legal"]], 0.0)
    roll_shift = roll_shift + np.where(legal_now, arrays.channel_roll[driver, CH["legal"]], 0.0)
    season = arrays.driver_season_weight[driver] * arrays.season[product, month_of_year]
    regional = arrays.shock_exposure[product] * world.regional_shock[row, accounts.region]
    pressure = world.macro[row] + season + regional + accounts.frailty
    recent = (month - state.last_cure) < rules.recency_months

    current_logit = (
        arrays.base_roll[product]
        + arrays.driver_current_roll[driver]
        + rules.shock_current_roll * shock_on
        + rules.recent_delinquency_roll * recent
        + pressure
        + treat_roll
    )
    b = np.clip(bucket, 1, 6) - 1
    cure_logit = (
        arrays.bucket_cure[b]
        + arrays.driver_cure[driver]
        + rules.shock_cure * shock_on
        + rules.macro_cure_factor * (world.macro[row] + season + regional)
        + cure_shift
        + treat_cure
    )
    charged_off = bucket >= CHARGE_OFF_BUCKET
    deferring = active & np.isin(state.treatment, DEFERRING_KINDS) & (bucket >= 1) & ~charged_off
    # partial cures and promises: their own stream, two uniforms per account every month
    dynamics = rules.dynamics
    u_partial, u_keep = dynamics_rng.random((2, n)) if dynamics_rng is not None else np.ones((2, n))
    promised_amount = np.full(n, np.nan) if promised is None else promised
    promising = (
        dynamics.promises
        & (dynamics_rng is not None)
        & ~np.isnan(promised_amount)
        & (bucket >= 1)
        & ~charged_off
        & ~deferring
        & ~restructured_now
    )
    kept = promising & (u_keep < arrays.promise_kept[driver])
    promise_broken = promising & ~kept
    roll_logit = (
        arrays.bucket_roll[b]
        + arrays.driver_roll[driver]
        + rules.shock_roll * shock_on
        + pressure
        + roll_shift
        + treat_roll
        + dynamics.broken_promise_roll * promise_broken
    )
    in_plan = state.plan & active & (bucket == 0) & ~restructured_now
    exp_cure, exp_roll = np.exp(cure_logit), np.exp(roll_logit)
    total = 1.0 + exp_cure + exp_roll
    p_cure = np.where(bucket == 0, 0.0, exp_cure / total)
    p_roll = np.where(bucket == 0, 1.0 / (1.0 + np.exp(-current_logit)), exp_roll / total)
    p_roll = np.where(in_plan, arrays.plan_redefault[driver] + treat.shock_redefault * shock_on,
                      p_roll)  # fmt: skip
    u = rng.random(n)
    moves = ~charged_off & ~deferring
    drawn_cure = moves & ((u < p_cure) | restructured_now)
    roll = moves & ~drawn_cure & (u < p_cure + p_roll)
    due = monthly_due(accounts, arrays, state)
    owed = state.arrears + due
    # a kept promise: at least a partial cure; a cure when there is no bucket to go back to
    # (M1) or the promise covers everything owed
    kept_cure = kept & ((bucket == 1) | (np.nan_to_num(promised_amount) >= owed - 0.005))
    cure = (drawn_cure & ~promise_broken) | kept_cure
    drawn_stay = moves & ~drawn_cure & ~roll & (bucket >= 2) & ~promise_broken
    partial_cure = (
        ~cure
        & (bucket >= 2)
        & (owed > 0.005)  # nothing owed (a balance paid down to 0): nothing to pay back
        & (kept | (drawn_stay & dynamics.partial_cures & (u_partial < arrays.partial_cure[driver])))
    )
    roll &= ~cure & ~partial_cure
    stay = ~charged_off & ~cure & ~roll & ~partial_cure
    broken = in_plan & roll

    plan_months = np.maximum(state.treatment_until - month, 1)
    plan_instalment = np.minimum(
        state.balance / plan_months, treat.restructure_instalment_share * due
    )
    revolving = arrays.revolving[product]
    partial = rng.random(n) < arrays.driver_partial[driver]
    paid_partial = np.where(partial, rng.uniform(0.1, 0.8, n) * due, 0.0)
    above = np.where(shock_on, rules.shock_pays_above_due, arrays.driver_pays_above_due[driver])
    share_above = rng.beta(1.5 * above, 1.5 * (1.0 - above))
    paid_current = np.where(revolving & ~state.plan, due + share_above * (state.balance - due), due)
    recovery = rng.random(n) < arrays.driver_recovery[driver]
    paid_recovery = np.where(
        recovery, rng.uniform(*rules.recovery_payment_share, n) * state.balance, 0.0
    )
    # a partial cure pays the due and one bucket's share of the arrears (at least one due, not
    # all), a kept promise at least its promised amount (less than all it owed: else a cure)
    one_back = due + state.arrears / np.maximum(bucket, 1)
    paid_back = np.where(kept, np.maximum(one_back, np.nan_to_num(promised_amount)), one_back)
    paid = np.select(
        [charged_off, deferring, restructured_now, roll, cure, partial_cure, bucket == 0, stay],
        [paid_recovery, 0.0, plan_instalment, paid_partial, owed, paid_back, paid_current, due],
        0.0,
    )  # fmt: skip
    paid = np.clip(paid, 0.0, state.balance)
    # nothing left to owe (a small balance paid in full, or none left to begin with): the
    # account is current whatever was drawn; it cannot roll or stay past due on a zero balance
    settled = state.balance - paid <= 0.005
    cure = np.where(settled, bucket >= 1, cure)
    roll &= ~settled
    partial_cure &= ~settled
    stay &= ~settled
    broken = in_plan & roll

    new_bucket = np.select(
        [settled, broken, charged_off | roll, cure, partial_cure],
        [0, state.plan_bucket, bucket + 1, 0, bucket - 1],
        bucket,
    )
    new_first_late = np.where((bucket == 0) & roll, rng.integers(1, 30, n), state.first_late_day)
    new_arrears = np.select(
        [cure | settled, broken, roll, partial_cure, deferring, stay],
        [0.0, state.plan_bucket * state.instalment, state.arrears + due - paid,
         np.maximum(owed - paid, 0.0), state.arrears + due, state.arrears],
        0.0,
    )  # fmt: skip
    deferred = np.where(deferring, due, 0.0)

    waives = active & (
        (state.treatment == KIND["interest_waiver"])
        | (deferring & (state.treatment == KIND["grace_period"]) & treat.grace_waives_interest)
        | (
            deferring
            & (state.treatment == KIND["first_delinquency_extension"])
            & treat.extension_waives_interest
        )
    )
    fee_rate = np.where((new_bucket >= 1) & ~charged_off, rules.delinquency_fee_rate, 0.0)
    waived = np.where(waives, fee_rate * (state.balance - paid), 0.0)
    remaining = np.where(
        settled, 0.0, (state.balance - paid) * (1.0 + np.where(waives, 0.0, fee_rate))
    )
    utilisation = np.where(
        shock_on,
        np.minimum(0.98, state.utilisation + rules.shock_utilisation_step),
        state.utilisation,
    )
    target = utilisation * accounts.limit * rng.uniform(0.7, 1.2, n)
    # exits (drawn only on an open book, so the closed cohort's random stream is unchanged)
    opens = rules.book.open_book
    u_exit = rng.random(n) if opens else np.ones(n)
    u_redraw = rng.random(n) if opens else np.zeros(n)
    stays_current = ~state.plan & ~restructured_now & (bucket == 0) & (new_bucket == 0)
    leaves = stays_current & (
        u_exit < np.where(revolving, arrays.closure_rate[product], arrays.prepayment_rate[product])
    )
    spends = revolving & ~state.plan & (bucket == 0) & (new_bucket == 0) & ~leaves
    balance = np.where(
        spends, np.minimum(np.maximum(remaining, target), 1.05 * accounts.limit), remaining
    )
    new_arrears = np.where(
        charged_off | (new_bucket >= CHARGE_OFF_BUCKET), balance, np.minimum(new_arrears, balance)
    )

    # restructure: arrears capitalised into a plan with a fixed instalment; a broken plan ends
    plan = np.where(restructured_now, True, state.plan & active & ~broken & ~settled)
    plan_bucket = np.where(restructured_now, bucket, np.where(plan, state.plan_bucket, 0))
    instalment = np.where(restructured_now, plan_instalment, state.instalment)
    # instalment products: a paid-down line is drawn again, or paid off and closed
    paid_down = ~revolving & ~plan & (new_bucket == 0) & (balance < instalment)
    redraw = paid_down & ~leaves & (u_redraw < arrays.redraw_share[product])
    principal = accounts.limit * rng.uniform(0.5, 1.0, n)
    # only an account current at its last statement closes (one that cures this month pays off
    # its rest next month): a closed account's last two statements are current, so it is never
    # read as delinquent after it closed. Nothing closes in the burn-in (it only warms up the
    # delinquency states), so every account ever on the book has a statement in the window.
    closes = on_book & (month >= 0) & (bucket == 0) & (leaves | (paid_down & ~redraw))
    paid = np.where(closes, paid + balance, paid)  # the payoff: the whole balance, at par
    balance = np.where(redraw, balance + principal, np.where(closes, 0.0, balance))
    new_arrears = np.where(closes, 0.0, new_arrears)
    instalment = np.where(redraw, principal / np.maximum(accounts.term, 1), instalment)
    instalment = np.where((revolving & ~plan) | closes, 0.0, instalment)

    moved = replace(
        state,
        bucket=new_bucket,
        first_late_day=new_first_late,
        balance=balance,
        arrears=new_arrears,
        instalment=instalment,
        utilisation=utilisation,
        last_paid=paid,
        episodes=state.episodes + ((bucket == 0) & roll),
        last_cure=np.where(cure & (bucket >= 1), month, state.last_cure),
        failed_contacts=np.where(cure, 0, state.failed_contacts),
        agency=state.agency & ~cure,
        legal=state.legal & ~cure,
        treatment_until=np.where(broken, month + 1, state.treatment_until),
        plan=plan,
        plan_bucket=plan_bucket,
        last_deferred=deferred,
        last_waived=waived,
        closed_at=np.where(closes, month + 1, state.closed_at),
    )
    if on_book.all():
        return moved
    return _frozen_off_book(state, moved, ~on_book)


def _frozen_off_book(before: ChunkState, moved: ChunkState, off_book: np.ndarray) -> ChunkState:
    """``moved``, except that accounts ``off_book`` (not booked yet, or closed) keep their state
    ``before`` and paid, deferred and waived nothing this cycle."""
    kept = {
        f.name: np.where(off_book, getattr(before, f.name), getattr(moved, f.name))
        for f in fields(ChunkState)
    }
    for name in ("last_paid", "last_deferred", "last_waived"):
        kept[name] = np.where(off_book, 0.0, getattr(moved, name))
    return ChunkState(**kept)


def on_book_at(accounts: ChunkAccounts, state: ChunkState, month: int) -> np.ndarray:
    """Accounts with a statement at ``month``'s cycle end: booked by then, and not closed
    before it (a closed account's last statement, balance 0, is at ``closed_at``)."""
    return (month >= accounts.open_month) & (month <= state.closed_at)


def book_statements(
    columns: dict[str, np.ndarray], accounts: ChunkAccounts, state: ChunkState, month: int
) -> dict[str, np.ndarray]:
    """The statement columns of the accounts on the book at ``month`` (:func:`on_book_at`),
    with their chunk positions under ``_local``."""
    keep = on_book_at(accounts, state, month)
    return {"_local": np.flatnonzero(keep), **{name: v[keep] for name, v in columns.items()}}


# --------------------------------------------------------------------------------------------
# The exploration and one month of a chunk (the data simulator and the replay)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChunkExploration:
    """The exploration for the accounts of one chunk: their persistent arms and the arms'
    plans, and the random stream of the arms' treatment draws (apart from the chunk's own, so
    exploring moves none of the tiered lender's draws)."""

    exploration: Exploration
    arm_of: np.ndarray  # arm index per account, -1 not randomised
    plans: ModelPlan  # one row per arm, then an empty row (arm -1)
    propensity: np.ndarray  # per arm, then the control's (index -1)
    rng: np.random.Generator


def chunk_exploration(
    exploration: Exploration | None, seed: int, chunk: int, accounts: ChunkAccounts
) -> ChunkExploration | None:
    """The exploration of a chunk; its stream is ``SeedSequence(seed, spawn_key=(1 + chunk,
    0))``, a child of the chunk's, which the chunk itself never draws from."""
    if exploration is None:
        return None
    ladders = [[(s.action, s.channel) for s in steps] for _, steps in exploration.arms]
    return ChunkExploration(
        exploration,
        exploration.arm_of(account_ids(accounts.index, "A").to_list()),
        ladder_plan([*ladders, []]),
        np.append(exploration.propensities(), 1.0 - exploration.share),
        np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1 + chunk, 0))),
    )


def exploration_eligible(accounts: ChunkAccounts, state: ChunkState, month: int) -> np.ndarray:
    """Who the exploration may randomise this month: in M1-M3 at the decision (the policy's
    scope), collection not paused by an active treatment, not in the tiered lender's holdout."""
    in_scope = (state.bucket >= 1) & (state.bucket <= POLICY_MAX_BUCKET)
    return in_scope & ~collection_paused(state, month) & ~accounts.holdout


def month_as_of(world: World, month: int) -> np.datetime64:
    """The decision's as-of of a month: its last day, a date whose month
    (:func:`rollrisk.simulator.replay.month_index`) replays to the state the month's actions
    were chosen on."""
    return (world.start_month + month + 1).astype("datetime64[D]") - np.timedelta64(1, "D")


@dataclass(frozen=True)
class MonthAssignments:
    """The exploration's log of one month: one row per eligible account."""

    account: np.ndarray
    arm: np.ndarray  # arm index, -1 the control (the tiered lender)
    propensity: np.ndarray


@dataclass(frozen=True)
class MonthStep:
    """One simulated month of a chunk: the state after it and what it wrote."""

    state: ChunkState
    previous_bucket: np.ndarray  # the bucket at this month's decision
    statement: dict[str, np.ndarray] | None  # None in the burn-in
    actions: MonthActions
    treatments: MonthTreatments | None  # None in the burn-in
    assignments: MonthAssignments | None  # None without exploration or in the burn-in


def simulate_month(
    rules: SimulationRules,
    accounts: ChunkAccounts,
    arrays: RuleArrays,
    world: World,
    state: ChunkState,
    previous_bucket: np.ndarray,
    month: int,
    rng: np.random.Generator,
    explore: ChunkExploration | None = None,
    dynamics: np.random.Generator | None = None,
) -> MonthStep:
    """Statement, actions, treatments and transition of one month (burn-in months: no
    statement, no treatments, no exploration). The data simulator and the policy replay both
    run their months through here, so a replay reproduces the portfolio's history draw for
    draw, exploration included.

    An explored account (eligible and randomised) gets its arm's ladder this month instead of
    the tiered actions and treatments, as the policy replay makes a ladder act: a new decision
    each month, so its treatments are offered every month it is eligible and free (the
    first-delinquency extension only on a first-ever delinquency's first month, the tiered
    lender's rule). The tiered lender still makes its draws for every account, so the other
    accounts' draws do not move.

    ``dynamics`` is the chunk's stream of partial cures and promise keeping
    (:func:`dynamics_stream`; None: neither happens, see :func:`transition`).
    """
    n = len(state.bucket)
    cycle_end = cycle_end_days(accounts, world, month)
    statement = None
    if month >= 0:
        statement = book_statements(
            statement_columns(
                accounts, arrays, state, cycle_end, rng, rules.known_at_late_probability
            ),
            accounts,
            state,
            month,
        )
    acted, counts = tiered_actions(rules, accounts, arrays, state, month, rng)
    explored = np.zeros(n, dtype=bool)
    assignments = None
    if explore is not None and month >= 0:
        eligible = exploration_eligible(accounts, state, month)
        arm = np.where(eligible, explore.arm_of, -1)
        explored = arm >= 0
        plan = _take_plan(explore.plans, arm)
        if explored.any():
            acted, counts = mixed_actions(plan, ~explored, state, month, acted, counts)
        logged = np.flatnonzero(eligible)
        assignments = MonthAssignments(logged, arm[logged], explore.propensity[arm[logged]])
    month_actions = action_rows(accounts, arrays, state, acted, counts, cycle_end, rng)
    state = record_contacts(state, month_actions, month)
    restructured_now = np.zeros(n, dtype=bool)
    granted = None
    if month >= 0:
        before = state
        state, granted = grant_treatments(
            rules, accounts, before, previous_bucket, month_actions, cycle_end, month, rng
        )
        if explored.any() and explore is not None:
            state, granted = _explored_treatments(
                rules, accounts, arrays, explore, plan, explored, before, state, granted,
                previous_bucket, month_actions, cycle_end, month,
            )  # fmt: skip
        restructured_now[granted.account[granted.kind == KIND["restructure"]]] = True
    previous_bucket = state.bucket
    state = transition(
        rules, accounts, arrays, world, state, month_actions.cure_shift,
        month_actions.roll_shift, restructured_now, month, rng, month_actions.promised, dynamics,
    )  # fmt: skip
    return MonthStep(state, previous_bucket, statement, month_actions, granted, assignments)


def _take_plan(plan: ModelPlan, rows: np.ndarray) -> ModelPlan:
    return ModelPlan(*(getattr(plan, f.name)[rows] for f in fields(plan)))


def _explored_treatments(
    rules: SimulationRules,
    accounts: ChunkAccounts,
    arrays: RuleArrays,
    explore: ChunkExploration,
    plan: ModelPlan,
    explored: np.ndarray,
    before: ChunkState,
    tiered_state: ChunkState,
    tiered_granted: MonthTreatments,
    previous_bucket: np.ndarray,
    actions: MonthActions,
    cycle_end: np.ndarray,
    month: int,
) -> tuple[ChunkState, MonthTreatments]:
    """The explored accounts' treatments (their ladder's, :func:`offer_treatments`) in place of
    the tiered ones; dated like the tiered lender's (the lender's own from the cycle end + 2
    days, a restructure, or a grace or waiver granted on a hardship claim, from the claim, then
    1-3 days and office hours)."""
    rng = explore.rng
    first_delinquency = first_delinquency_month(before, previous_bucket)
    arm_state, kind, _, _ = offer_treatments(
        rules, accounts, arrays, plan, before, actions, True, month, rng, first_delinquency
    )
    state = merge_states(~explored, tiered_state, arm_state)
    granted = np.flatnonzero(explored & (kind >= 0))
    on_claim = (kind[granted] == KIND["restructure"]) | (
        (kind[granted] == KIND["grace_period"]) & plan.grace_on_hardship[granted]
        & ~plan.grace[granted]
    ) | (
        (kind[granted] == KIND["interest_waiver"]) & plan.waiver_on_hardship[granted]
        & ~plan.waiver[granted]
    )  # fmt: skip
    decided = np.where(
        on_claim,
        actions.hardship_at[granted],
        cycle_end[granted].astype("datetime64[us]") + np.timedelta64(2, "D"),
    )
    start_at = decided.astype("datetime64[D]").astype("datetime64[us]") + (
        rng.integers(1, 4, len(granted)) * US_PER_DAY
        + rng.integers(9, 18, len(granted)) * US_PER_HOUR
    ).astype("timedelta64[us]")
    months = state.treatment_until[granted] - month
    end_at = start_at + (30 * months * US_PER_DAY).astype("timedelta64[us]")
    keep = ~explored[tiered_granted.account]
    account = np.concatenate([tiered_granted.account[keep], granted])
    order = np.argsort(account, kind="stable")
    return state, MonthTreatments(
        account[order],
        np.concatenate([tiered_granted.kind[keep], kind[granted]])[order],
        np.concatenate([tiered_granted.start_at[keep], start_at])[order],
        np.concatenate([tiered_granted.end_at[keep], end_at])[order],
        np.concatenate([tiered_granted.known_at[keep], start_at])[order],
    )


# --------------------------------------------------------------------------------------------
# A chunk and the whole portfolio
# --------------------------------------------------------------------------------------------
def account_ids(numbers: np.ndarray, prefix: str) -> pl.Series:
    return pl.Series([f"{prefix}{i:09d}" for i in numbers.tolist()], dtype=pl.String)


@dataclass
class LenderMemory:
    """What the lender's records hold of the months run so far that a policy replay needs at
    the start of a month: the first-delinquency extensions granted (the compliance rules'
    one-time rule), the delinquency episodes its data cannot see (started in the burn-in), and
    the month before's action rows (the compliance rules' contact history). The data simulator
    and the replay update it month by month the same way (:meth:`before`, :meth:`after`)."""

    extension: np.ndarray
    episode_base: np.ndarray | None = None
    last_actions: MonthActions | None = None

    @classmethod
    def start(cls, n: int) -> LenderMemory:
        return cls(np.zeros(n, dtype=bool))

    def before(self, month: int, state: ChunkState) -> None:
        if month == 0:  # what the lender's data cannot see: the burn-in's episodes
            self.episode_base = episodes_before_data(state)

    def after(self, step: MonthStep) -> None:
        self.last_actions = step.actions
        if step.treatments is not None:
            granted = step.treatments
            extended = granted.kind == KIND["first_delinquency_extension"]
            self.extension[granted.account[extended]] = True

    def episodes(self, state: ChunkState) -> np.ndarray:
        """The burn-in's episodes (from the state now when no data month has run yet)."""
        return self.episode_base if self.episode_base is not None else episodes_before_data(state)


def episodes_before_data(state: ChunkState) -> np.ndarray:
    """The delinquency episodes the lender's data cannot see at its first month: those started
    in the burn-in, less one still running then (its first statement shows it)."""
    return state.episodes - (state.bucket > 0)


@dataclass(frozen=True)
class ReplayPoint:
    """The state of a chunk's delinquent accounts at the start of a month (before its
    actions), as a policy replay to that month would compute it: the accounts at chunk
    positions ``position``, their state and memory, and the month before's action rows of those
    accounts (``last_account`` indexes ``position``)."""

    month: int
    position: np.ndarray
    accounts: ChunkAccounts
    state: ChunkState
    previous_bucket: np.ndarray
    extension: np.ndarray
    episodes_before_data: np.ndarray
    last_account: np.ndarray
    last_at: np.ndarray
    last_channel: np.ndarray
    last_outcome: np.ndarray


def replay_point(
    month: int,
    accounts: ChunkAccounts,
    state: ChunkState,
    previous_bucket: np.ndarray,
    memory: LenderMemory,
    keep: np.ndarray,
) -> ReplayPoint:
    """The :class:`ReplayPoint` of the chunk's accounts at positions ``keep`` (sorted)."""
    where = np.full(len(state.bucket), -1, dtype=np.int64)
    where[keep] = np.arange(len(keep))
    log = memory.last_actions
    if log is None:  # no month run yet: no contact history
        none = np.zeros(0, dtype=np.int64)
        last = (none, np.zeros(0, dtype="datetime64[us]"), none, none)
    else:
        rows = np.flatnonzero(where[log.account] >= 0)
        last = (where[log.account[rows]], log.action_at[rows], log.channel[rows], log.outcome[rows])
    return ReplayPoint(
        month,
        keep,
        take_rows(accounts, keep),
        take_rows(state, keep),
        previous_bucket[keep],
        memory.extension[keep],
        memory.episodes(state)[keep],
        *last,
    )


_POINT_ARRAYS = ("previous_bucket", "extension", "episodes_before_data")
_POINT_ROWS = ("last_account", "last_at", "last_channel", "last_outcome")


def replay_point_arrays(points: Sequence[tuple[int, ReplayPoint]]) -> dict[str, np.ndarray]:
    """One month's :class:`ReplayPoint` of every chunk (``(chunk, point)``) as flat named
    arrays (``numpy.savez``'s input; no Python object, so reading needs no pickle)."""
    out: dict[str, list[np.ndarray]] = {"chunk": [], "position": [], "row_chunk": []}
    for chunk, point in points:
        out["chunk"].append(np.full(len(point.position), chunk, dtype=np.int64))
        out["position"].append(point.position.astype(np.int64))
        out["row_chunk"].append(np.full(len(point.last_account), chunk, dtype=np.int64))
        for prefix, obj in (("accounts", point.accounts), ("state", point.state)):
            for f in fields(obj):
                value = getattr(obj, f.name)
                if value is not None:
                    out.setdefault(f"{prefix}.{f.name}", []).append(value)
        for name in (*_POINT_ARRAYS, *_POINT_ROWS):
            out.setdefault(name, []).append(getattr(point, name))
    return {name: np.concatenate(parts) for name, parts in out.items() if parts}


def replay_points_from(arrays: Mapping[str, np.ndarray], month: int) -> dict[int, ReplayPoint]:
    """:func:`replay_point_arrays` read back: each chunk's :class:`ReplayPoint`."""
    chunk, row_chunk = arrays["chunk"], arrays["row_chunk"]
    points = {}
    for number in np.unique(chunk).tolist():
        at, rows = chunk == number, row_chunk == number

        def part(prefix: str, kind: type, where: np.ndarray = at) -> Any:
            values = {
                f.name: arrays[f"{prefix}.{f.name}"][where]
                for f in fields(kind)
                if f"{prefix}.{f.name}" in arrays
            }
            return kind(**values)

        points[number] = ReplayPoint(
            month,
            arrays["position"][at],
            part("accounts", ChunkAccounts),
            part("state", ChunkState),
            *(arrays[name][at] for name in _POINT_ARRAYS),
            *(arrays[name][rows] for name in _POINT_ROWS),
        )
    return points


def take_rows(obj: Any, positions: np.ndarray) -> Any:
    """The same dataclass restricted to ``positions`` of every per-account array (a field
    that is None stays None)."""
    return replace(
        obj,
        **{
            f.name: getattr(obj, f.name)[positions]
            for f in fields(obj)
            if getattr(obj, f.name) is not None
        },
    )


def simulate_chunk(
    rules: SimulationRules,
    world: World,
    seed: int,
    chunk: int,
    n_accounts: int,
    months: int,
    exploration: Exploration | None = None,
    checkpoints: Sequence[int] = (),
    points: list[ReplayPoint] | None = None,
) -> dict[str, pl.DataFrame]:
    """Simulate accounts ``chunk * chunk_accounts ...`` over ``months`` months.

    Returns the frames ``accounts``, ``statements``, ``collection_actions``, ``treatments`` (data
    contract columns, sorted by account and time) and ``truth`` (latent traits per account);
    with an ``exploration``, also ``experiment_assignments`` (its log, by account and as-of).
    At the start of each month of ``checkpoints`` the state of the accounts delinquent then or
    the month before (the ones a scoring run at that month-end can score) is appended to ``points``
    (:class:`ReplayPoint`: what the policy replay would compute for them).
    """
    arrays = rule_arrays(rules)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1 + chunk,)))
    first = chunk * rules.chunk_accounts
    accounts, state = draw_accounts(rules, arrays, world, rng, first, n_accounts)
    accounts = stressed_accounts(rules, world, accounts, seed, chunk)
    dynamics = dynamics_stream(seed, chunk)
    explore = chunk_exploration(exploration, seed, chunk, accounts)
    statements: list[dict[str, np.ndarray]] = []
    actions: list[MonthActions] = []
    treatments: list[MonthTreatments] = []
    assignments: list[tuple[int, MonthAssignments]] = []
    previous_bucket = state.bucket
    memory = LenderMemory.start(n_accounts)
    for month in range(world.first_month, months):
        memory.before(month, state)
        if month in checkpoints and points is not None:
            # delinquent now or the month before: a statement known after the month-end leaves
            # the scoring run the one before, so an account cured since may still be scored
            delinquent = np.flatnonzero((state.bucket > 0) | (previous_bucket > 0))
            points.append(replay_point(month, accounts, state, previous_bucket, memory, delinquent))
        step = simulate_month(
            rules, accounts, arrays, world, state, previous_bucket, month, rng, explore, dynamics
        )
        memory.after(step)
        if step.statement is not None and step.treatments is not None:
            statements.append(step.statement)
            actions.append(step.actions)
            treatments.append(step.treatments)
        if step.assignments is not None:
            assignments.append((month, step.assignments))
        state, previous_bucket = step.state, step.previous_bucket
    frames = _chunk_frames(accounts, world, statements, actions, treatments, months)
    if explore is not None:
        frames[ASSIGNMENTS_TABLE] = _assignment_frame(accounts, world, explore, assignments)
    return frames


def _assignment_frame(
    accounts: ChunkAccounts,
    world: World,
    explore: ChunkExploration,
    assignments: list[tuple[int, MonthAssignments]],
) -> pl.DataFrame:
    """The exploration's log (data contract ``experiment_assignments``), by account and as-of."""
    names = np.array([*explore.exploration.arm_names, NOT_RANDOMISED], dtype=object)
    ids = account_ids(accounts.index, "A")
    account = np.concatenate([a.account for _, a in assignments] or [np.zeros(0, np.int64)])
    as_of = np.concatenate(
        [np.full(len(a.account), month_as_of(world, m)) for m, a in assignments]
        or [np.zeros(0, "datetime64[D]")]
    )
    arm = np.concatenate([a.arm for _, a in assignments] or [np.zeros(0, np.int64)])
    propensity = np.concatenate([a.propensity for _, a in assignments] or [np.zeros(0)])
    return pl.DataFrame(
        {
            "account_id": ids.gather(account),
            "as_of": as_of,
            "experiment_id": pl.Series(
                [explore.exploration.experiment_id] * len(account), dtype=pl.String
            ),
            "arm": pl.Series(names[arm].tolist(), dtype=pl.String),
            "propensity": propensity,
        }
    ).sort("account_id", "as_of")


def _chunk_frames(
    accounts: ChunkAccounts,
    world: World,
    statements: list[dict[str, np.ndarray]],
    actions: list[MonthActions],
    treatments: list[MonthTreatments],
    months: int,
) -> dict[str, pl.DataFrame]:
    n = len(accounts.index)
    ids = account_ids(accounts.index, "A")
    first_cycle_end = cycle_end_days(accounts, world, 0)
    accounts_frame = pl.DataFrame(
        {
            "account_id": ids,
            "borrower_id": account_ids(accounts.borrower, "B"),
            "product": pl.Series(np.array(PRODUCTS)[accounts.product], dtype=pl.String),
            "opened_at": first_cycle_end - accounts.opened_days_before_start,
            "credit_limit": accounts.limit.astype(np.float64),
            "currency": pl.Series(["CNY"] * n, dtype=pl.String),
        }
    )
    local = np.concatenate([s["_local"] for s in statements])
    statements_frame = pl.DataFrame(
        {
            "account_id": ids.gather(local),
            **{
                name: np.concatenate([s[name] for s in statements])
                for name in statements[0]
                if name != "_local"
            },
        }
    ).with_columns(pl.col("dpd").cast(pl.Int64))
    action_account = np.concatenate([a.account for a in actions])
    actions_frame = pl.DataFrame(
        {
            "account_id": ids.gather(action_account),
            "action_at": np.concatenate([a.action_at for a in actions]),
            "channel": pl.Series(
                np.array(CHANNELS)[np.concatenate([a.channel for a in actions])], dtype=pl.String
            ),
            "outcome": pl.Series(
                np.array(OUTCOMES)[np.concatenate([a.outcome for a in actions])], dtype=pl.String
            ),
            "promised_amount": np.concatenate([a.promised_amount for a in actions]),
            "promised_date": np.concatenate([a.promised_date for a in actions]),
        },
        nan_to_null=True,
    )
    treatment_account = np.concatenate([t.account for t in treatments])
    treatments_frame = pl.DataFrame(
        {
            "account_id": ids.gather(treatment_account),
            "kind": pl.Series(
                np.array(TREATMENT_KINDS)[np.concatenate([t.kind for t in treatments])],
                dtype=pl.String,
            ),
            "start_at": np.concatenate([t.start_at for t in treatments]),
            "end_at": np.concatenate([t.end_at for t in treatments]),
            "known_at": np.concatenate([t.known_at for t in treatments]),
        }
    )
    is_shock = accounts.driver == DRV["capacity_shock"]
    onset = np.where(is_shock, accounts.shock_onset, 0)
    end = np.where(is_shock, accounts.shock_end, 0)
    truth = pl.DataFrame(
        {
            "account_id": ids,
            "borrower_id": accounts_frame["borrower_id"],
            "product": accounts_frame["product"],
            "driver": pl.Series(np.array(DRIVERS)[accounts.driver], dtype=pl.String),
            "region": pl.Series(
                [f"region_{r:02d}" for r in accounts.region.tolist()], dtype=pl.String
            ),
            "capacity_shock_onset": (world.start_month + onset).astype("datetime64[D]"),
            "capacity_shock_end": (world.start_month + end).astype("datetime64[D]"),
            "frailty": accounts.frailty,
            "billing_day": accounts.billing_day,
            "holdout": accounts.holdout,
        }
    ).with_columns(
        pl.when(pl.col("driver") == "capacity_shock").then(pl.col(c)).otherwise(None).alias(c)
        for c in ("capacity_shock_onset", "capacity_shock_end")
    )
    return {
        "accounts": accounts_frame,
        "statements": statements_frame.sort("account_id", "cycle_end"),
        "collection_actions": actions_frame.sort("account_id", "action_at", "channel"),
        "treatments": treatments_frame.sort("account_id", "start_at"),
        "truth": truth,
    }


def contract_frame(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """Cast to the data contract's dtypes, in contract column order."""
    dtypes = {t.name: t for t in (*TABLES, *RECORD_TABLES)}[table].dtypes
    return frame.select(pl.col(name).cast(dtype) for name, dtype in dtypes.items())


@dataclass(frozen=True)
class SimulationSummary:
    accounts: int
    months: int
    rows: dict[str, int]
    seconds: float


def output_paths(out_dir: Path) -> list[Path]:
    """Everything the simulator writes (also what ``--overwrite`` removes)."""
    paths = [out_dir / TRUTH_FOLDER, out_dir / EXPERIMENT_FILE]
    for table in (*TABLE_NAMES, ASSIGNMENTS_TABLE):
        paths += [out_dir / table, out_dir / f"{table}.parquet", out_dir / f"{table}.csv"]
    return paths


def write_portfolio(
    out_dir: Path,
    n_accounts: int,
    months: int,
    seed: int,
    start_month: str = "2024-01",
    file_format: str = "parquet",
    rules: SimulationRules | None = None,
    progress: Callable[[Iterable[int], int], Iterable[int]] | None = None,
    exploration: Exploration | None = None,
) -> SimulationSummary:
    """Simulate ``n_accounts`` x ``months`` and write a portfolio folder plus ``truth/``.

    ``out_dir`` must exist and hold none of :func:`output_paths`. Tables are written one part
    per chunk of ``rules.chunk_accounts`` accounts (``accounts`` as one file). With an
    ``exploration`` the lender runs its experiment (:mod:`rollrisk.simulator.exploration`): its
    log is the table ``experiment_assignments``, its definition ``experiments.yaml`` (the
    product's experiment-file format) and its settings ``truth/params.json``'s
    ``exploration``; without, none of the three is written.
    """
    rules = rules or SimulationRules()
    started = time.perf_counter()
    world = make_world(rules, seed, months, start_month)
    chunks = range((n_accounts + rules.chunk_accounts - 1) // rules.chunk_accounts)
    tables = (*TABLE_NAMES, ASSIGNMENTS_TABLE) if exploration is not None else TABLE_NAMES
    for table in tables[1:]:
        (out_dir / table).mkdir(parents=True)
    (out_dir / TRUTH_FOLDER).mkdir()
    rows = dict.fromkeys(tables, 0)
    accounts_parts: list[pl.DataFrame] = []
    truth_parts: list[pl.DataFrame] = []
    # the policy replay's starting points: the last REPLAY_POINT_MONTHS month-ends
    checkpoints = tuple(m for m in range(months - REPLAY_POINT_MONTHS, months) if m >= 0)
    points: dict[int, list[tuple[int, ReplayPoint]]] = {m: [] for m in checkpoints}
    iterator = progress(chunks, len(chunks)) if progress else chunks
    for chunk in iterator:
        size = min(rules.chunk_accounts, n_accounts - chunk * rules.chunk_accounts)
        found: list[ReplayPoint] = []
        frames = simulate_chunk(
            rules, world, seed, chunk, size, months, exploration, checkpoints, found
        )
        for point in found:
            points[point.month].append((chunk, point))
        for table in tables[1:]:
            frame = contract_frame(frames[table], table)
            _write(frame, out_dir / table / f"part-{chunk:05d}", file_format)
            rows[table] += frame.height
        accounts_parts.append(contract_frame(frames["accounts"], "accounts"))
        truth_parts.append(frames["truth"])
    accounts = pl.concat(accounts_parts)
    rows["accounts"] = accounts.height
    _write(accounts, out_dir / "accounts", file_format)
    pl.concat(truth_parts).write_parquet(out_dir / TRUTH_FOLDER / BORROWERS_FILE)
    for month, found_points in points.items():
        path = replay_state_path(out_dir, str(world.start_month + month))
        path.parent.mkdir(exist_ok=True)
        write_replay_state(path, replay_point_arrays(found_points))
    params = {
        "seed": seed,
        "accounts": n_accounts,
        "months": months,
        "start_month": start_month,
        "rules": rules.to_dict(),
        "world": {
            "macro_logit_by_month": {
                str(world.start_month + m): round(float(world.macro[world.row(m)]), 4)
                for m in range(world.first_month, months)
            },
            "regional_shocks": [
                {"month": str(world.start_month + m), "region": f"region_{g:02d}", "severity": s}
                for m, g, s in world.shocks
            ],
            # the stress scenario as drawn (rules.stress holds its settings)
            "stress": {
                "kind": rules.stress.kind,
                **(
                    {
                        "first_month": str(world.start_month + rules.stress.start_month),
                        "last_month": str(
                            world.start_month + rules.stress.start_month + rules.stress.months - 1
                        ),
                    }
                    if rules.stress.kind != "none"
                    else {}
                ),
                **(
                    {"region": f"region_{world.stress_region:02d}"}
                    if rules.stress.kind == "regional"
                    else {}
                ),
            },
        },
    }
    if exploration is not None:
        params["exploration"] = exploration.to_dict()
        start, end = month_as_of(world, 0), month_as_of(world, months - 1)
        (out_dir / EXPERIMENT_FILE).write_text(
            exploration.experiment_file(start.item(), end.item()), encoding="utf-8"
        )
    (out_dir / TRUTH_FOLDER / PARAMS_FILE).write_text(json.dumps(params, indent=2, default=str))
    return SimulationSummary(n_accounts, months, rows, time.perf_counter() - started)


def _write(frame: pl.DataFrame, stem: Path, file_format: str) -> None:
    if file_format == "csv":
        frame.write_csv(stem.with_suffix(".csv"))
    else:
        frame.write_parquet(stem.with_suffix(".parquet"))
