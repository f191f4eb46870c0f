"""Treatment economics of the simulator (simulator/rules.py ``TreatmentRules``, engine
``transition``) and how the policy replay books them (agency commission, plan valuation).

Each test would fail if the corresponding economics regressed to "treatments are free": a grace
that collects or cures, a waiver that gives up nothing, an agency paid a flat fee whatever it
collects, a restructure valued as a clean current account.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rollrisk.features.schemas import CHANNELS
from rollrisk.simulator.engine import (
    CH,
    DRV,
    KIND,
    ChunkState,
    draw_accounts,
    make_world,
    monthly_due,
    rule_arrays,
    tiered_actions,
    transition,
    write_portfolio,
)
from rollrisk.simulator.replay import (
    ActionCosts,
    ModelPlan,
    Valuation,
    load_action_costs,
    recovery_valuation,
    replay_to_month,
    restructure_plan_share,
    run_arm,
)
from rollrisk.simulator.rules import DEFAULT_RULES, RESTRUCTURE_REDEFAULT, SimulationRules
from rollrisk.simulator.truth import read_simulation_params
from rollrisk.storage.loader import load_portfolio

N = 20_000


def _book(driver: str, bucket: int, rules: SimulationRules = DEFAULT_RULES, n: int = N):
    """``n`` identical instalment accounts (cash loans) of one driver in one bucket, no shock."""
    arrays = rule_arrays(rules)
    world = make_world(rules, seed=1, months=12, start_month="2024-01")
    accounts, state = draw_accounts(rules, arrays, world, np.random.default_rng(0), 0, n)
    accounts = replace(
        accounts,
        driver=np.full(n, DRV[driver]),
        product=np.full(n, 2, dtype=np.int64),  # cash_loan: a fixed instalment
        frailty=np.zeros(n),
        region=np.zeros(n, dtype=np.int64),
        shock_onset=np.full(n, 10_000),
        shock_end=np.full(n, 10_000),
        holdout=np.zeros(n, dtype=bool),
        term=np.full(n, 12, dtype=np.int64),
        open_month=np.full(n, world.first_month),  # all on the book (none booked later)
    )
    instalment = state.balance / 12
    state = replace(
        state,
        bucket=np.full(n, bucket),
        first_late_day=np.full(n, 10),
        instalment=instalment,
        arrears=instalment * bucket,
    )
    return rules, arrays, world, accounts, state


def _step(rules, arrays, world, accounts, state: ChunkState, month: int, seed: int = 1,
          restructured: np.ndarray | None = None) -> ChunkState:  # fmt: skip
    n = len(state.bucket)
    zero = np.zeros(n)
    now = np.zeros(n, dtype=bool) if restructured is None else restructured
    return transition(rules, accounts, arrays, world, state, zero, zero, now, month,
                      np.random.default_rng(seed))  # fmt: skip


def _treated(state: ChunkState, kind: str, until: int) -> ChunkState:
    n = len(state.bucket)
    return replace(state, treatment=np.full(n, KIND[kind]), treatment_until=np.full(n, until))


def test_a_grace_defers_the_due_freezes_the_bucket_and_pauses_collection():
    rules, arrays, world, accounts, start = _book("capacity_shock", bucket=2)
    due = monthly_due(accounts, arrays, start)
    state = _treated(start, "grace_period", until=2)  # active in months 0 and 1
    for month in (0, 1):
        acted, _ = tiered_actions(rules, accounts, arrays, state, month, np.random.default_rng(0))
        assert len(acted) == 0  # no collection while the grace runs
        before = state
        state = _step(rules, arrays, world, accounts, state, month, seed=month)
        assert (state.last_paid == 0).all()  # nothing is asked or collected
        assert (state.bucket == 2).all()  # no roll, and no push to cure either
        assert state.last_deferred == pytest.approx(due)
        assert state.arrears == pytest.approx(np.minimum(before.arrears + due, state.balance))
        # fees keep accruing (the default rule does not waive a grace's interest)
        assert (state.last_waived == 0).all()
        fee = 1 + rules.delinquency_fee_rate
        assert state.balance == pytest.approx(before.balance * fee)
    # after the grace the deferred dues are still owed and collection resumes
    owed = state.balance > start.arrears + 3 * due  # (arrears never exceed the balance)
    assert owed.mean() > 0.9
    assert state.arrears[owed] == pytest.approx((start.arrears + 2 * due)[owed])
    acted, _ = tiered_actions(rules, accounts, arrays, state, 2, np.random.default_rng(0))
    assert len(acted) == len(state.bucket)
    after = _step(rules, arrays, world, accounts, state, 2)
    cured = after.bucket == 0
    assert 0 < cured.mean() < 1
    # a cure pays everything deferred plus the month's due
    assert after.last_paid[cured] == pytest.approx((state.arrears + due)[cured])


def test_the_grace_rule_can_waive_its_interest_and_the_waived_income_is_counted():
    rules, arrays, world, accounts, state = _book("healthy", bucket=1)
    waiving = replace(rules, treatments=replace(rules.treatments, grace_waives_interest=True))
    state = _treated(state, "grace_period", until=1)
    after = _step(waiving, arrays, world, accounts, state, 0)
    assert after.balance == pytest.approx(state.balance)  # no fee added
    assert after.last_waived == pytest.approx(rules.delinquency_fee_rate * state.balance)


def test_a_first_delinquency_extension_defers_one_due_interest_free():
    rules, arrays, world, accounts, state = _book("forgetful", bucket=1)
    due = monthly_due(accounts, arrays, state)
    state = _treated(state, "first_delinquency_extension", until=1)
    after = _step(rules, arrays, world, accounts, state, 0)
    assert (after.last_paid == 0).all() and (after.bucket == 1).all()
    assert after.last_deferred == pytest.approx(due)
    assert after.last_waived == pytest.approx(rules.delinquency_fee_rate * state.balance)
    # one month only: the next month is an ordinary delinquent month again
    later = _step(rules, arrays, world, accounts, after, 1)
    assert (later.last_deferred == 0).all() and (later.bucket != 1).any()


def test_a_waiver_gives_up_the_fee_rate_times_the_balance_while_active_only():
    rules, arrays, world, accounts, state = _book("capacity_shock", bucket=2)
    state = _treated(state, "interest_waiver", until=1)
    during = _step(rules, arrays, world, accounts, state, 0)
    delinquent = during.bucket >= 1
    expected = rules.delinquency_fee_rate * (state.balance - during.last_paid)
    assert during.last_waived[delinquent] == pytest.approx(expected[delinquent])
    assert during.balance[delinquent] == pytest.approx(
        (state.balance - during.last_paid)[delinquent]
    )
    assert (during.last_waived[~delinquent] == 0).all()  # a cured account owes no fee anyway
    after = _step(rules, arrays, world, accounts, during, 1)
    assert (after.last_waived == 0).all()


def test_a_restructure_lowers_the_instalment_and_collects_only_it():
    rules, arrays, world, accounts, state = _book("capacity_shock", bucket=3)
    due = monthly_due(accounts, arrays, state)
    state = _treated(state, "restructure", until=24)
    now = np.ones(len(state.bucket), dtype=bool)
    after = _step(rules, arrays, world, accounts, state, 0, restructured=now)
    share = rules.treatments.restructure_instalment_share
    assert (after.instalment <= share * due + 1e-9).all()  # a lower instalment
    assert after.last_paid == pytest.approx(np.minimum(after.instalment, state.balance))
    owed = state.balance > state.arrears + due
    assert (after.last_paid[owed] < (state.arrears + due)[owed]).all()  # no forced cure payment
    assert (after.bucket == 0).all() and after.plan.all() and (after.plan_bucket == 3).all()


@pytest.mark.parametrize("driver", ["healthy", "low_willingness"])
def test_a_plan_breaks_at_the_drivers_rate_and_returns_to_its_bucket(driver: str):
    rules, arrays, world, accounts, state = _book(driver, bucket=3)
    state = _treated(state, "restructure", until=24)
    now = np.ones(len(state.bucket), dtype=bool)
    state = _step(rules, arrays, world, accounts, state, 0, restructured=now)
    after = _step(rules, arrays, world, accounts, state, 1, seed=5)
    broken = after.bucket > 0
    rate = RESTRUCTURE_REDEFAULT[driver]
    assert broken.mean() == pytest.approx(rate, abs=4 * np.sqrt(rate / N) + 1e-3)
    assert (after.bucket[broken] == 3).all()  # re-enters collections where it was
    assert not after.plan[broken].any() and after.plan[~broken].all()
    assert (after.treatment_until[broken] == 2).all()  # the plan's treatment ends
    kept = ~broken
    assert after.last_paid[kept] == pytest.approx(state.instalment[kept])


def test_a_legal_filing_acts_only_after_the_courts_delay():
    rules, arrays, world, accounts, state = _book("low_willingness", bucket=4)
    delay = rules.treatments.legal_delay_months
    filed = replace(state, legal=np.ones(N, dtype=bool), legal_month=np.zeros(N, dtype=np.int64))

    def cures(s: ChunkState, month: int) -> float:
        return float((_step(rules, arrays, world, accounts, s, month, seed=9).bucket == 0).mean())

    assert cures(filed, delay - 1) == pytest.approx(cures(state, delay - 1))
    assert cures(filed, delay) > 3 * cures(state, delay) > 0


def test_a_plan_is_never_valued_as_a_clean_current_balance():
    shares = (1.0, 0.9, 0.5, 0.3, 0.2, 0.15, 0.1, 0.05)
    n = 3
    state = replace(
        _book("healthy", bucket=0, n=n)[4],
        balance=np.full(n, 1_000.0),
        bucket=np.zeros(n, dtype=np.int64),
        plan=np.array([False, True, True]),
        plan_bucket=np.array([0, 3, 2]),
    )
    by_rule = Valuation(shares, 12, "test")
    assert by_rule.value(state) == pytest.approx([1_000.0, 300.0, 500.0])
    learned = Valuation(shares, 12, "test", plan_share=0.8)
    assert learned.value(state) == pytest.approx([1_000.0, 800.0, 800.0])


@pytest.fixture(scope="module")
def portfolio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("economics") / "portfolio"
    folder.mkdir()
    write_portfolio(folder, 4_000, 12, seed=11)
    return folder


def test_the_plan_share_is_learned_from_the_plans_that_held_and_broke():
    import datetime as dt

    import polars as pl

    shares = (1.0, 0.9, 0.5, 0.3, 0.2, 0.15, 0.1, 0.05)
    start = dt.datetime(2024, 1, 10)
    treatments = pl.DataFrame(
        {
            "account_id": ["held", "broke", "short", "waiver"],
            "kind": ["restructure", "restructure", "restructure", "interest_waiver"],
            "start_at": [start, start, dt.datetime(2024, 4, 1), start],
        }
    )
    ends = [dt.date(2024, m, 15) for m in range(1, 6)]
    statements = pl.DataFrame(
        {
            "account_id": ["held"] * 5 + ["broke"] * 5 + ["short"] * 5 + ["waiver"] * 5,
            "cycle_end": ends * 4,
            "dpd": [0, 0, 0, 0, 0] + [0, 0, 45, 75, 0] + [0] * 5 + [40] * 5,
        }
    )
    # followed 3 statements: "held" stayed current (1.0), "broke" broke at 45 DPD (M2: 0.5);
    # "short" is followed only 2 statements and the waiver is not a plan
    assert restructure_plan_share(statements, treatments, shares, 3) == pytest.approx(0.75)
    # nobody followed 6 statements: every plan with a later statement counts
    assert restructure_plan_share(statements, treatments, shares, 6) == pytest.approx(
        (1.0 + 0.5 + 1.0) / 3
    )
    assert restructure_plan_share(statements, treatments.head(0), shares, 3) is None


def test_the_portfolio_valuation_carries_a_plan_between_charge_off_and_par(portfolio: Path):
    data = load_portfolio(portfolio)
    valuation = recovery_valuation(data.statements, 6, data.treatments)
    assert valuation.plan_share is not None
    assert valuation.shares[-1] < valuation.plan_share <= 1.0
    assert "restructure plan at" in valuation.method
    assert recovery_valuation(data.statements, 6).plan_share is None


def _agency_plan(n: int) -> ModelPlan:
    counts = np.zeros((n, len(CHANNELS)), dtype=np.int64)
    counts[:, CH["agency_assignment"]] = 1
    no = np.zeros(n, dtype=bool)
    return ModelPlan(counts, no, no, no, no, np.zeros(n, dtype=np.int64))


def test_the_agency_keeps_its_bucket_share_of_the_cash_it_collects(portfolio: Path):
    sim = read_simulation_params(portfolio)
    statements = load_portfolio(portfolio).statements
    ids = [f"A{i:09d}" for i in range(sim.accounts)]
    full = replay_to_month(sim, ids, 6, 1, statements)
    chosen = [full.account_ids[i] for i in np.flatnonzero((full.state.bucket >= 1)
                                                          & (full.state.bucket <= 3))]  # fmt: skip
    replay = replay_to_month(sim, chosen, 6, 1, statements)
    n = len(chosen)
    base = load_action_costs()
    rates = {"M1": 0.1, "M2": 0.2, "M3": 0.3, "M4": 0.4, "M5": 0.5, "M6": 0.6}
    costs = ActionCosts(base.channels, base.treatments, "test", rates)
    result = run_arm(replay, "model_driven", _agency_plan(n), costs, 1, seed=1)
    assigned = ~np.isin(replay.state.treatment, (KIND["grace_period"], KIND["restructure"]))
    rate = np.array([0.0, 0.1, 0.2, 0.3])[replay.state.bucket]
    assert result.recovered.sum() > 0
    expected = np.where(result.agency_assignments > 0, rate * result.recovered, 0.0)
    assert result.agency_commission == pytest.approx(expected)
    assert (result.agency_assignments[assigned] > 0).mean() > 0.9
    book = result.recovered - result.action_cost - result.agency_commission + result.end_value
    assert result.book_value == pytest.approx(book)


def test_a_commission_outside_zero_to_one_or_a_missing_bucket_is_named(tmp_path: Path):
    from rollrisk.errors import UserError

    shipped = (Path(__file__).parents[2] / "conf" / "action_costs.yaml").read_text()
    path = tmp_path / "costs.yaml"
    path.write_text(shipped.replace("  M3: 0.22", "  M3: 1.5"))
    line = shipped.splitlines().index("  M3: 0.22") + 1
    with pytest.raises(
        UserError, match=rf"costs.yaml:{line}: `agency_commission.M3` must be a share in"
    ):
        load_action_costs(path)
    path.write_text(shipped.replace("  M6: 0.30\n", ""))
    with pytest.raises(UserError, match=r"`agency_commission`: unknown none, missing \['M6'\]"):
        load_action_costs(path)


def test_a_cost_error_names_the_line_and_an_unknown_section_is_refused(tmp_path: Path):
    """The costs file's errors named no line ("comma.yaml: `channels.sms` must be a cost >= 0,
    got '0,05'") and a top-level key it does not know (`commission_floor:`, a misspelt
    `treatment:`) was ignored silently."""
    from rollrisk.errors import UserError

    shipped = (Path(__file__).parents[2] / "conf" / "action_costs.yaml").read_text()
    lines = shipped.splitlines()
    path = tmp_path / "comma.yaml"
    path.write_text(shipped.replace("  sms: 0.05", "  sms: '0,05'"))
    with pytest.raises(UserError) as raised:
        load_action_costs(path)
    sms = lines.index("  sms: 0.05") + 1
    assert str(raised.value) == f"{path}:{sms}: `channels.sms` must be a cost >= 0, got '0,05'"
    allowed = "allowed keys: channels, treatments, agency_commission, version"
    path.write_text(shipped + "commission_floor: 0.1\n")
    with pytest.raises(UserError) as raised:
        load_action_costs(path)
    assert str(raised.value) == (
        f"{path}:{len(lines) + 1}: unknown key 'commission_floor' in the costs file; {allowed}"
    )
    path.write_text(shipped.replace("treatments:", "treatment:"))
    with pytest.raises(UserError) as raised:
        load_action_costs(path)
    assert str(raised.value) == (
        f"{path}:{lines.index('treatments:') + 1}: unknown key 'treatment' in the costs file "
        f"(did you mean 'treatments'?); {allowed}"
    )
    path.write_text(shipped.replace("  restructure: 80.0\n", "  restructur: 80.0\n"))
    with pytest.raises(UserError, match=rf"comma.yaml:{lines.index('  restructure: 80.0') + 1}: "):
        load_action_costs(path)


# --- calibrated contact (docs/simulator.md, "Calibration sources") ---------------------------


def _calls(driver: str, calls: int, channel: str = "agent_call"):
    from rollrisk.simulator.engine import action_rows, cycle_end_days

    rules, arrays, world, accounts, state = _book(driver, bucket=2)
    acted = np.arange(N)
    counts = np.zeros((N, len(CHANNELS)), dtype=np.int64)
    counts[:, CH[channel]] = calls
    cycle_end = cycle_end_days(accounts, world, 0)
    return arrays, action_rows(accounts, arrays, state, acted, counts, cycle_end,
                               np.random.default_rng(3))  # fmt: skip


def test_a_dial_reaches_the_right_party_about_a_quarter_of_the_time():
    from rollrisk.simulator.engine import REACHED_CODES

    for driver in ("healthy", "forgetful", "low_willingness"):
        _, rows = _calls(driver, 1)
        reached = np.isin(rows.outcome, REACHED_CODES).mean()
        assert 0.18 < reached < 0.32, driver
    _, rows = _calls("unreachable", 1)
    assert np.isin(rows.outcome, REACHED_CODES).mean() < 0.15


def test_a_call_acts_only_when_it_reaches_and_more_calls_have_diminishing_returns():
    from rollrisk.simulator.engine import REACHED_CODES

    arrays, one = _calls("healthy", 1)
    effect = arrays.channel_cure[DRV["healthy"], CH["agent_call"]]
    reached = np.isin(one.outcome, REACHED_CODES)
    assert one.cure_shift[one.account[reached]] == pytest.approx(effect)
    assert (one.cure_shift[one.account[~reached]] == 0).all()
    p = reached.mean()
    share = {k: (_calls("healthy", k)[1].cure_shift > 0).mean() for k in (1, 2, 4)}
    for k, value in share.items():  # at least one of k dials reached: 1 - (1 - p)^k
        assert value == pytest.approx(1 - (1 - p) ** k, abs=0.015)
    assert share[2] - share[1] > (share[4] - share[2]) / 2 > 0  # each extra call adds less


# --- treatment refusal -------------------------------------------------------------------------


def test_an_offer_is_taken_up_only_when_reached_at_the_drivers_rate_and_always_when_asked():
    from rollrisk.simulator.engine import takes_up
    from rollrisk.simulator.rules import TREATMENT_TAKE_UP

    for driver in ("healthy", "low_willingness"):
        arrays, rows = _calls(driver, 1, channel="sms")  # delivered or not
        accounts = _book(driver, bucket=2)[3]
        offered = np.ones(N, dtype=bool)
        taken = takes_up(accounts, arrays, rows, offered, np.random.default_rng(4))
        asked = ~np.isnat(rows.hardship_at)
        assert not asked.any()  # a message draws no hardship claim
        assert not taken[~rows.reached].any()  # an offer that reached nobody is never taken
        rate = TREATMENT_TAKE_UP[driver]
        assert taken[rows.reached].mean() == pytest.approx(rate, abs=0.02)
        assert not takes_up(accounts, arrays, rows, ~offered, np.random.default_rng(4)).any()
    # a borrower who claimed hardship this month asked for it: always taken up
    arrays, rows = _calls("capacity_shock", 4)
    accounts = _book("capacity_shock", bucket=2)[3]
    asked = ~np.isnat(rows.hardship_at)
    assert asked.sum() > 100
    taken = takes_up(accounts, arrays, rows, np.ones(N, dtype=bool), np.random.default_rng(4))
    assert taken[asked].all()


def test_relief_on_a_hardship_claim_goes_only_to_the_borrowers_who_claim_one():
    from rollrisk.simulator.engine import KIND, ladder_plan, offer_treatments

    for action, kind in (
        ("interest_waiver_on_hardship", "interest_waiver"),
        ("grace_period_on_hardship", "grace_period"),
    ):
        granted = {}
        for driver in ("healthy", "capacity_shock"):
            rules, arrays, _, accounts, state = _book(driver, bucket=1)
            _, rows = _calls(driver, 2)
            on_claim = ladder_plan([[("call", "agent_call"), (action, None)]] * N)
            unasked = ladder_plan([[("call", "agent_call"), (kind, None)]] * N)
            assert on_claim.channel_counts[:, CH["agent_call"]].tolist() == [1] * N
            claimed = ~np.isnat(rows.hardship_at)
            _, got, _, refused = offer_treatments(
                rules, accounts, arrays, on_claim, state, rows, True, 0, np.random.default_rng(5)
            )
            assert ((got == KIND[kind]) == claimed).all(), (action, driver)  # exactly the claims
            assert not refused.any()  # offered only to who asked: never refused
            _, plain, _, _ = offer_treatments(
                rules, accounts, arrays, unasked, state, rows, True, 0, np.random.default_rng(5)
            )
            granted[driver] = ((got >= 0).mean(), (plain >= 0).mean())
        # a healthy borrower seldom claims: relief on a claim reaches far fewer of them than
        # relief offered unasked, and a larger share of shocked borrowers than of healthy ones
        healthy, shocked = granted["healthy"], granted["capacity_shock"]
        assert healthy[0] < healthy[1] / 4, action
        assert shocked[0] > 3 * healthy[0], action
