"""The policy replay's constraints: every arm (the tiered baseline included) obeys the
compliance rules and the contact capacity, month by month."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from rollrisk.conf import DEFAULT_POLICY
from rollrisk.features.schemas import CHANNELS, OUTCOMES
from rollrisk.simulator.engine import CH, write_portfolio
from rollrisk.simulator.exploration import ASSIGNMENTS_TABLE, exploration_from_policy
from rollrisk.simulator.replay import (
    ModelPlan,
    Replay,
    load_action_costs,
    replay_to_month,
    run_arm,
    with_constraints,
)
from rollrisk.simulator.truth import read_simulation_params
from rollrisk.storage.loader import load_portfolio
from rollrisk.strategies.capacity import ContactCapacity
from rollrisk.strategies.compliance import EffectiveCompliance, parse_compliance
from rollrisk.strategies.experiments import NOT_RANDOMISED
from rollrisk.strategies.policy import load_policy

MONTHS = 8
AS_OF_MONTH = 5


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Replay:
    """The accounts at M1-M3 at the as-of of a small simulated portfolio."""
    folder = tmp_path_factory.mktemp("constraints") / "portfolio"
    folder.mkdir()
    write_portfolio(folder, 3_000, MONTHS, seed=5)
    sim = read_simulation_params(folder)
    statements = load_portfolio(folder).statements
    ids = [f"A{i:09d}" for i in range(sim.accounts)]
    every = replay_to_month(sim, ids, AS_OF_MONTH, 3, statements)
    delinquent = np.flatnonzero((every.state.bucket >= 1) & (every.state.bucket <= 3))
    chosen = [every.account_ids[i] for i in delinquent]
    return replay_to_month(sim, chosen, AS_OF_MONTH, 3, statements)


def _compliance(**overrides: object) -> EffectiveCompliance:
    values: dict[str, object] = {
        "contact_window_start": '"08:00"',
        "contact_window_end": '"21:00"',
        "max_calls_per_7_days": "null",
        "quiet_days_after_conversation": "null",
        "max_unanswered_dials_per_day_per_channel": "null",
        "legal_min_dpd": 60,
        "legal_min_amount_overdue": 500,
        "min_failed_contacts": 3,
        "failed_contact_lookback_days": 30,
    } | overrides
    text = "default:\n" + "".join(f"  {k}: {v}\n" for k, v in values.items())
    return parse_compliance(text + "jurisdictions: {}\n", "test-compliance.yaml").strictest([])


def _capacity(calls_a_month: int, visits_a_month: int) -> ContactCapacity:
    return ContactCapacity(calls_a_month, visits_a_month, 1, 0, "test")


def _plan(n: int, *channels: str) -> ModelPlan:
    counts = np.zeros((n, len(CHANNELS)), dtype=np.int64)
    for channel in channels:
        counts[:, CH[channel]] += 1
    no = np.zeros(n, dtype=bool)
    return ModelPlan(counts, no, no, no, no, np.zeros(n, dtype=np.int64))


def test_the_replay_keeps_the_month_before_the_as_of_as_contact_history(replay: Replay):
    log = replay.last_actions
    assert log is not None and len(log.account) > 0
    assert log.account.max() < len(replay.account_ids)
    # the lender's rows of the month before: before the as-of month's cycle end
    assert replay.extension_used is not None and replay.episodes_before_data is not None


def test_the_baseline_goes_through_the_compliance_rules(replay: Replay):
    """A rule that forbids every call removes every call the tiered baseline makes, and the
    removals are counted as the baseline's compliance blocks, account by account."""
    n = len(replay.account_ids)
    costs, plan = load_action_costs(), _plan(n)
    free = run_arm(replay, "baseline_tiered", plan, costs, 1, seed=2)
    no_calls = with_constraints(replay, _compliance(max_calls_per_7_days=0), None)
    held = run_arm(no_calls, "baseline_tiered", plan, costs, 1, seed=2)
    assert free.agent_calls.sum() > 0
    assert held.agent_calls.sum() == 0
    # month 0 draws the same rows in both runs: the calls removed are exactly the blocks
    removed = free.contacts - held.contacts
    assert removed.sum() > free.agent_calls.sum()  # robo calls too
    assert np.array_equal(held.compliance_blocks, removed)
    assert held.blocks_by_rule["CMP-CALLS-PER-7-DAYS"] == removed.sum()
    assert free.compliance_blocks.sum() == 0  # no rules given: nothing checked


def test_a_legal_filing_without_documented_failed_contact_is_blocked_in_every_arm(
    replay: Replay,
):
    """The baseline files legal after 3+ failed contacts since the last cure; the rule wants
    them in the last 30 days and no contact that reached the borrower there. With the bar
    out of reach, no arm files anything, and what the arms tried is counted."""
    n = len(replay.account_ids)
    costs = load_action_costs()
    out_of_reach = with_constraints(replay, _compliance(legal_min_dpd=10_000), None)
    for arm, plan in (("baseline_tiered", _plan(n)), ("model_driven", _plan(n, "legal"))):
        free = run_arm(replay, arm, plan, costs, 3, seed=1)
        held = run_arm(out_of_reach, arm, plan, costs, 3, seed=1)
        assert held.legal_filings.sum() == 0
        if arm == "model_driven":  # a legal filing planned for everyone, every month
            assert free.legal_filings.sum() > 0
        if free.legal_filings.sum():
            assert held.blocks_by_rule["CMP-LEGAL-REFERRAL"] > 0


def test_rules_that_block_nothing_leave_every_draw_as_it_was(replay: Replay):
    """Compliance and capacity that bind nowhere change no figure: the checks keep the rows
    drawn, they do not draw again."""
    n = len(replay.account_ids)
    # looser than any compliance file may be (parse_compliance refuses it): built directly
    lenient = replace(
        _compliance(), legal_min_dpd=0, legal_min_amount_overdue=0.0, min_failed_contacts=0,
        failed_contact_lookback_days=0,
    )  # fmt: skip
    held = with_constraints(replay, lenient, _capacity(10**9, 10**9))
    costs = load_action_costs()
    for arm in ("baseline_tiered", "model_driven"):
        plan = _plan(n, "agent_call", "field_visit", "notice_letter")
        free = run_arm(replay, arm, plan, costs, 3, seed=3)
        same = run_arm(held, arm, plan, costs, 3, seed=3)
        assert np.allclose(free.book_value, same.book_value, atol=1e-6)
        assert same.compliance_blocks.sum() == 0
        assert same.calls_dropped_for_capacity.sum() == 0


def test_calls_and_visits_beyond_capacity_are_not_made_highest_balance_first(replay: Replay):
    n = len(replay.account_ids)
    costs = load_action_costs()
    plan = _plan(n, "agent_call", "agent_call", "field_visit", "notice_letter")
    free = run_arm(replay, "model_driven", plan, costs, 1, seed=0)
    calls, visits = 25, 7
    capped = with_constraints(replay, None, _capacity(calls, visits))
    held = run_arm(capped, "model_driven", plan, costs, 1, seed=0)
    assert free.agent_calls.sum() > calls and free.field_visits.sum() > visits
    assert held.agent_calls.sum() == calls
    assert held.field_visits.sum() == visits
    assert held.agent_calls.sum() + held.calls_dropped_for_capacity.sum() == free.agent_calls.sum()
    assert held.field_visits.sum() + held.visits_dropped_for_capacity.sum() == (
        free.field_visits.sum()
    )
    # a visit not made takes its notice letter: contacts = calls + visits + letters
    assert held.contacts.sum() == calls + 2 * visits
    # served by balance at the start: nobody dropped holds more than anybody served
    balance = replay.state.balance
    served = balance[held.agent_calls > 0]
    dropped = balance[(held.calls_dropped_for_capacity > 0) & (held.agent_calls == 0)]
    assert served.min() >= dropped.max()


@pytest.mark.parametrize("arm", ["baseline_tiered", "model_driven"])
def test_no_arm_exceeds_the_capacity_in_any_month(replay: Replay, arm: str):
    n = len(replay.account_ids)
    costs = load_action_costs()
    plan = _plan(n, "agent_call", "agent_call", "agent_call")
    months, calls = 3, 10
    capped = with_constraints(replay, _compliance(), _capacity(calls, 0))
    held = run_arm(capped, arm, plan, costs, months, seed=6)
    assert held.agent_calls.sum() <= months * calls
    assert held.field_visits.sum() == 0
    assert held.calls_dropped_for_capacity.sum() > 0


# --------------------------------------------------------------------------------------------
# Since the merge with main: the history the rules read comes from the shared month step (the
# lender's exploration included), and a standard_queue decision is held like the baseline
# --------------------------------------------------------------------------------------------
EXPLORE_MONTHS = 8
EXPLORE_AS_OF = 6


@pytest.fixture(scope="module")
def explored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 accounts x 8 months whose lender randomises 30 % of its M1-M3 book across every
    treatment of the shipped policy (docs/simulator.md, the lender's exploration)."""
    folder = tmp_path_factory.mktemp("explored") / "portfolio"
    folder.mkdir()
    exploration = exploration_from_policy(load_policy(DEFAULT_POLICY), 0.3)
    write_portfolio(folder, 2_000, EXPLORE_MONTHS, seed=4, exploration=exploration)
    return folder


def _table(folder: Path, name: str) -> pl.DataFrame:
    single = folder / f"{name}.parquet"
    return pl.read_parquet(single if single.exists() else folder / name / "*.parquet")


def _statement_of(statements: pl.DataFrame, as_of: object) -> pl.DataFrame:
    """Each account's statement of the month ending ``as_of`` and the next cycle end."""
    return statements.filter(pl.col("cycle_end").dt.month_end() == as_of).select(
        "account_id", "cycle_end", pl.col("cycle_end").dt.offset_by("1mo").alias("next_cycle_end")
    )


def test_the_rules_memory_is_the_portfolios_own_history_explored_arms_included(explored: Path):
    """The contact history a replayed arm starts from (the month before the as-of) and the
    one-time extension's memory are what the portfolio recorded, row for row, for accounts
    the tiered lender worked and for those its exploration gave an arm's ladder."""
    sim = read_simulation_params(explored)
    assert sim.exploration is not None
    portfolio = load_portfolio(explored)
    ids = [f"A{i:09d}" for i in range(sim.accounts)]
    replay = replay_to_month(sim, ids, EXPLORE_AS_OF, 1, portfolio.statements)
    assert replay.replay_match_share == pytest.approx(1.0)
    start = np.datetime64(sim.start_month, "M")
    month_end = {
        m: (start + m + 1).astype("datetime64[D]") - 1 for m in (EXPLORE_AS_OF - 1, EXPLORE_AS_OF)
    }
    # the month before the as-of: the portfolio's rows between its cycle end and the next
    before = _statement_of(portfolio.statements, month_end[EXPLORE_AS_OF - 1].item())
    recorded = (
        portfolio.collection_actions.join(before, on="account_id")
        .filter(
            (pl.col("action_at") >= pl.col("cycle_end"))
            & (pl.col("action_at") < pl.col("next_cycle_end"))
        )
        .select("account_id", "action_at", "channel", "outcome")
        .sort(pl.all())
    )
    log = replay.last_actions
    assert log is not None
    replayed = pl.DataFrame(
        {
            "account_id": np.asarray(replay.account_ids, dtype=object)[log.account].tolist(),
            "action_at": log.at,
            "channel": np.asarray(CHANNELS, dtype=object)[log.channel].tolist(),
            "outcome": np.asarray(OUTCOMES, dtype=object)[log.outcome].tolist(),
        }
    ).sort(pl.all())
    assert recorded.height > 0
    assert replayed.equals(recorded.cast(replayed.schema))
    # the explored accounts of that month are in it with their arm's rows
    assignments = _table(explored, ASSIGNMENTS_TABLE).filter(
        (pl.col("as_of") == month_end[EXPLORE_AS_OF - 1].item()) & (pl.col("arm") != NOT_RANDOMISED)
    )
    explored_ids = set(assignments["account_id"].to_list())
    assert explored_ids and explored_ids & set(replayed["account_id"].to_list())
    # the one-time extension: granted before the as-of's cycle end, by the tiered lender or
    # by an arm (first_delinquency_relief)
    at_as_of = _statement_of(portfolio.statements, month_end[EXPLORE_AS_OF].item())
    extended = (
        portfolio.treatments.filter(pl.col("kind") == "first_delinquency_extension")
        .join(at_as_of, on="account_id")
        .filter(pl.col("start_at") < pl.col("cycle_end"))
    )
    expected = set(extended["account_id"].to_list())
    assert replay.extension_used is not None
    on_book = set(at_as_of["account_id"].to_list())
    used = {a for a, u in zip(replay.account_ids, replay.extension_used, strict=True) if u}
    assert used & on_book == expected
    relief = set(
        _table(explored, ASSIGNMENTS_TABLE)
        .filter(pl.col("arm") == "first_delinquency_relief")["account_id"]
        .to_list()
    )
    assert expected & relief  # an arm's extension counts as used, as the tiered lender's


def test_a_standard_queue_decision_is_held_to_the_rules_and_the_capacity_as_the_baseline(
    replay: Replay,
):
    """An account left in the lender's standard queue gets the tiered lender's rows, and those
    rows go through the same compliance rules and capacity: a model-driven arm where everyone
    is queued is the baseline arm, blocks and drops included; half queued, the queued half's
    calls are removed as the baseline's are."""
    n = len(replay.account_ids)
    costs = load_action_costs()
    held = with_constraints(replay, _compliance(max_calls_per_7_days=0), _capacity(10**9, 3))
    base = run_arm(held, "baseline_tiered", _plan(n), costs, 3, seed=4)
    queued = replace(_plan(n), standard_queue=np.ones(n, dtype=bool))  # nothing added
    everyone = run_arm(held, "model_driven", queued, costs, 3, seed=4)
    assert base.compliance_blocks.sum() > 0 and base.visits_dropped_for_capacity.sum() > 0
    for name in ("book_value", "compliance_blocks", "agent_calls", "field_visits",
                 "visits_dropped_for_capacity", "contacts"):  # fmt: skip
        assert np.allclose(getattr(everyone, name), getattr(base, name)), name
    assert everyone.blocks_by_rule == base.blocks_by_rule
    even = np.arange(n) % 2 == 0  # queued; the others called
    calls = _plan(n, "agent_call").channel_counts
    half = replace(queued, channel_counts=np.where(even[:, None], 0, calls), standard_queue=even)
    mixed = run_arm(held, "model_driven", half, costs, 3, seed=4)
    free = run_arm(replay, "model_driven", half, costs, 3, seed=4)
    assert free.agent_calls[::2].sum() > 0  # the queued accounts' tiered calls, unchecked
    assert mixed.agent_calls.sum() == 0  # no call passes, queued or on the ladder
    assert mixed.compliance_blocks[::2].sum() > 0
