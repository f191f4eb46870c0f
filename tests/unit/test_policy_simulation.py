"""The policy simulation engine: replay, common random numbers, the arms and their metrics."""

from __future__ import annotations

import json
import math
import re
from dataclasses import fields, is_dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats as scipy_stats

from rollrisk.conf import DEFAULT_COSTS
from rollrisk.errors import UserError
from rollrisk.features.schemas import CHANNELS
from rollrisk.simulator.engine import (
    CH,
    DRV,
    RowDraws,
    action_rows,
    cycle_end_days,
    write_portfolio,
)
from rollrisk.simulator.exploration import Exploration
from rollrisk.simulator.replay import (
    ModelPlan,
    arm_metrics,
    compare_policies,
    load_action_costs,
    model_plan,
    replay_to_month,
    run_arm,
)
from rollrisk.simulator.rules import DEFAULT_RULES
from rollrisk.simulator.truth import SimulatedPortfolio, read_simulation_params
from rollrisk.storage.loader import load_portfolio

MONTHS = 8
AS_OF_MONTH = 5


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("policy_sim") / "portfolio"
    folder.mkdir()
    write_portfolio(folder, 3_000, MONTHS, seed=3)
    return folder


def _delinquent_replay(folder: Path, horizon: int = 3):
    sim = read_simulation_params(folder)
    statements = load_portfolio(folder).statements
    ids = [f"A{i:09d}" for i in range(sim.accounts)]
    replay = replay_to_month(sim, ids, AS_OF_MONTH, horizon, statements)
    delinquent = np.flatnonzero((replay.state.bucket >= 1) & (replay.state.bucket <= 3))
    chosen = [replay.account_ids[i] for i in delinquent]
    return sim, replay_to_month(sim, chosen, AS_OF_MONTH, horizon, statements)


def _plan(n: int, channel: str | None = None) -> ModelPlan:
    counts = np.zeros((n, len(CHANNELS)), dtype=np.int64)
    if channel:
        counts[:, CH[channel]] = 1
    no = np.zeros(n, dtype=bool)
    return ModelPlan(counts, no, no, no, no, np.zeros(n, dtype=np.int64))


def test_replay_reproduces_the_portfolio_state_at_the_as_of(simulated: Path):
    _, replay = _delinquent_replay(simulated)
    assert len(replay.account_ids) > 50
    assert replay.replay_match_share == pytest.approx(1.0)
    assert ((replay.state.bucket >= 1) & (replay.state.bucket <= 3)).all()


def test_a_horizon_past_the_last_month_extends_the_world(simulated: Path):
    sim, replay = _delinquent_replay(simulated, horizon=MONTHS)  # as-of 5 + 8 > 8 months
    assert len(replay.world.macro) == sim.rules.burn_in_months + AS_OF_MONTH + MONTHS
    result = run_arm(replay, "baseline_tiered", _plan(len(replay.account_ids)), load_action_costs(),
                     MONTHS, seed=0)  # fmt: skip
    assert np.isfinite(result.recovered).all()


def test_same_seed_same_outcome_and_identical_actions_give_zero_uplift(simulated: Path):
    _, replay = _delinquent_replay(simulated)
    costs = load_action_costs()
    plan = _plan(len(replay.account_ids), "sms")
    first = run_arm(replay, "model_driven", plan, costs, 3, seed=4)
    again = run_arm(replay, "model_driven", plan, costs, 3, seed=4)
    other = run_arm(replay, "model_driven", plan, costs, 3, seed=5)
    assert np.array_equal(first.recovered, again.recovered)
    assert not np.array_equal(first.recovered, other.recovered)
    # common random numbers: the transition has its own stream, so an account that gets no
    # action under either plan meets the same fate under both (one month: no 90+ actions yet)
    n = len(replay.account_ids)
    untouched = replay.state.bucket == 2
    some = _plan(n, "agent_call")
    some.channel_counts[untouched] = 0
    called = run_arm(replay, "model_driven", some, costs, 1, seed=4)
    ignored = run_arm(replay, "model_driven", _plan(n), costs, 1, seed=4)
    assert untouched.sum() >= 10
    assert np.array_equal(called.recovered[untouched], ignored.recovered[untouched])
    assert np.array_equal(called.defaulted[untouched], ignored.defaulted[untouched])
    assert not np.array_equal(called.recovered[~untouched], ignored.recovered[~untouched])


def test_an_account_left_in_the_standard_queue_meets_the_baseline_s_fate_exactly(simulated: Path):
    # common random numbers per account: over several months (the treated accounts cure, pause
    # or roll differently, so which accounts are delinquent and how many contact rows each month
    # has differ between the arms), an account the policy leaves in the tiered collection draws
    # the same choices, contact outcomes and transitions as under the baseline: with no
    # capacity limit, its figures are the baseline's to the bit
    _, replay = _delinquent_replay(simulated, horizon=4)
    n = len(replay.account_ids)
    queued = np.arange(n) % 3 != 0
    calls = _plan(n, "agent_call")
    plan = replace(
        calls,
        channel_counts=np.where(queued[:, None], 0, calls.channel_counts),  # nothing added
        waiver=~queued,
        standard_queue=queued,
    )
    costs = load_action_costs()
    for seed in range(3):
        model = run_arm(replay, "model_driven", plan, costs, 4, seed)
        base = run_arm(replay, "baseline_tiered", plan, costs, 4, seed)
        for name in ("recovered", "action_cost", "end_value", "contacts", "defaulted"):
            mine, theirs = getattr(model, name), getattr(base, name)
            assert np.array_equal(mine[queued], theirs[queued]), (seed, name)
        # the treated accounts' own figures do move (the check above is not vacuous)
        assert not np.array_equal(model.book_value[~queued], base.book_value[~queued])
        assert not np.array_equal(model.contacts[~queued], base.contacts[~queued])


def test_an_account_s_contact_rows_draw_the_same_whatever_rows_the_others_have(simulated: Path):
    # action_rows with a key: the rows of an (account, channel, rank) get the same outcome,
    # time and promise whether other accounts (or the same account on other channels) have
    # more rows or not; without a key (the data simulator) they shift
    _, replay = _delinquent_replay(simulated)
    n = len(replay.account_ids)
    cycle_end = cycle_end_days(replay.accounts, replay.world, replay.month)
    counts = np.zeros((n, len(CHANNELS)), dtype=np.int64)
    counts[:, CH["sms"]] = 1
    counts[:, CH["agent_call"]] = 2
    more = counts.copy()
    more[::2, CH["robo_call"]] = 3  # other channels, for half the accounts
    more[1::4, CH["agent_call"]] = 4  # a longer run on the same channel: ranks 2, 3 are new

    def rows(counts: np.ndarray, key: int | None) -> dict[tuple[int, int, int], tuple]:
        month = action_rows(replay.accounts, replay.arrays, replay.state, np.arange(n), counts,
                            cycle_end, np.random.default_rng(0), key)  # fmt: skip
        seen: dict[tuple[int, int], int] = {}
        out = {}
        for i, (account, channel) in enumerate(zip(month.account, month.channel, strict=True)):
            rank = seen.get((account, channel), 0)
            seen[(account, channel)] = rank + 1
            out[(int(account), int(channel), rank)] = (
                int(month.outcome[i]), month.action_at[i], str(month.promised_amount[i]),
                str(month.promised_date[i]),
            )  # fmt: skip
        return out

    few, many = rows(counts, 99), rows(more, 99)
    assert len(many) > len(few) == 3 * n
    assert all(many[row] == few[row] for row in few)
    assert rows(counts, 98) != few  # another key, other draws
    plain_few, plain_many = rows(counts, None), rows(more, None)
    assert sum(plain_many[row] != plain_few[row] for row in plain_few) > n


def test_row_draws_depend_on_the_row_not_on_the_rows_before_it():
    account = np.array([7, 7, 9, 12, 12, 12])
    channel = np.array([0, 0, 3, 1, 1, 2])
    rank = np.array([0, 1, 0, 0, 1, 0])
    alone = RowDraws(42, account[3:], channel[3:], rank[3:])
    together = RowDraws(42, account, channel, rank)
    for _ in range(6):  # every field, as action_rows draws them
        assert np.array_equal(alone.random(3), together.random(6)[3:])
    # each call is the next field of every row; another key is another stream
    fresh = RowDraws(42, account, channel, rank)
    assert not np.array_equal(fresh.random(6), fresh.random(6))
    assert not np.array_equal(
        RowDraws(43, account, channel, rank).random(6),
        RowDraws(42, account, channel, rank).random(6),
    )
    with pytest.raises(ValueError, match="one number per row"):
        together.random(5)
    # many rows: uniform on [0, 1), integers in their range (per-row bounds)
    big = 200_000
    rows = RowDraws(5, np.arange(big) // 4, np.arange(big) % 4, np.zeros(big, dtype=int))
    u = rows.random(big)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert scipy_stats.kstest(u, "uniform").pvalue > 1e-3
    low, high = np.arange(big) % 5, np.arange(big) % 5 + 3
    drawn = rows.integers(low, high)
    assert (drawn >= low).all() and (drawn < high).all()
    assert set(np.unique(drawn - low).tolist()) == {0, 1, 2}


def test_reminded_forgetful_borrowers_pay_more_than_ignored_ones(simulated: Path):
    _, replay = _delinquent_replay(simulated)
    costs = load_action_costs()
    n = len(replay.account_ids)
    forgetful = (replay.accounts.driver == DRV["forgetful"]) & (replay.state.bucket == 1)
    assert forgetful.sum() >= 10
    paid = {"sms": 0.0, "none": 0.0}
    for seed in range(20):
        # the month of the reminder: a cure pays the arrears, a stay one due, a roll little
        reminded = run_arm(replay, "model_driven", _plan(n, "sms"), costs, 1, seed)
        ignored = run_arm(replay, "model_driven", _plan(n), costs, 1, seed)
        paid["sms"] += reminded.recovered[forgetful].sum()
        paid["none"] += ignored.recovered[forgetful].sum()
        assert reminded.contacts[forgetful].sum() > 0 == ignored.contacts[forgetful].sum()
    # more cash, but a reminder is no silver bullet (field trials: single-digit relative
    # effects on paying on time, docs/simulator.md)
    assert paid["none"] < paid["sms"] < 1.3 * paid["none"]


def test_compare_policies_reports_a_paired_interval_per_metric(simulated: Path):
    _, replay = _delinquent_replay(simulated)
    n = len(replay.account_ids)
    plan = _plan(n, "agent_call")
    segments = np.where(replay.state.bucket == 1, "forgetful", "general")
    result = compare_policies(replay, plan, load_action_costs(), 2, [0, 1, 2], segments)
    assert result["accounts"] == n and result["seeds"] == [0, 1, 2]
    assert {"recovered", "action_cost", "roll_to_default_rate", "contacts"} <= set(result["uplift"])
    for metric, stats in result["uplift"].items():
        diffs = [
            s["model_driven"][metric] - s["baseline_tiered"][metric] for s in result["per_seed"]
        ]
        assert stats["mean"] == pytest.approx(np.mean(diffs))
        # A 95 % Student-t interval over the seeds' paired differences, computed by scipy.
        if np.std(diffs) > 0:
            expected = scipy_stats.t.interval(
                0.95, len(diffs) - 1, loc=np.mean(diffs), scale=scipy_stats.sem(diffs)
            )
        else:  # every seed gave the same difference: the interval is that point
            expected = (np.mean(diffs), np.mean(diffs))
        assert (stats["ci_low"], stats["ci_high"]) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert set(result["by_segment"]) == {"forgetful", "general"}
    for segment, row in result["by_segment"].items():
        # the segment's interval over accounts and seeds (the page's "where it loses" reads
        # it): around the same mean as the seeds-only one
        both = row["uplift_two_way"]["book_value"]
        seeds_only = row["uplift"]["book_value"]
        assert both["resamples"] == "accounts x seeds", segment
        assert both["mean"] == pytest.approx(seeds_only["mean"], rel=1e-9, abs=1e-6)
        assert both["ci_low"] <= both["mean"] <= both["ci_high"]
    one_call_each = result["per_seed"][0]["model_driven"]
    assert one_call_each["contacts"] >= n  # every M1-M3 account is called in month 0


def test_model_plan_reads_the_scored_ladder_and_counts_compliance_removals():
    actions = [
        json.dumps([
            {"action": "call", "at": "2025-04-01T10:00", "channel": "agent_call", "recipient": "borrower"},
            {"action": "grace_period", "at": "2025-04-02T10:00", "channel": None, "recipient": "borrower"},
            {"action": "restructure_offer", "at": "2025-04-02T10:00", "channel": "sms", "recipient": "borrower"},
        ]),
        json.dumps([
            {"action": "field_visit_with_notice", "at": "2025-04-08T10:00", "channel": "field_visit", "recipient": "borrower"},
            {"action": "legal_referral", "at": "2025-04-15T10:00", "channel": "legal", "recipient": "borrower"},
        ]),
    ]  # fmt: skip
    trails = [
        "[]",
        json.dumps([{"rule": "CMP-X", "action": "a", "change": "removed", "reason": "r"},
                    {"rule": "CMP-Y", "action": "b", "change": "moved to 08:00", "reason": "r"}]),
    ]  # fmt: skip
    plan = model_plan(actions, trails)
    assert plan.channel_counts[0, CH["agent_call"]] == 1 and plan.channel_counts[0, CH["sms"]] == 1
    assert plan.grace.tolist() == [True, False] and plan.restructure_offer.tolist() == [True, False]
    assert plan.channel_counts[1, CH["field_visit"]] == 1
    assert plan.channel_counts[1, CH["notice_letter"]] == 1
    assert plan.channel_counts[1, CH["legal"]] == 1
    assert plan.compliance_blocks.tolist() == [0, 1]


def test_a_standard_queue_decision_is_the_tiered_lender_for_that_account(simulated: Path):
    from rollrisk.simulator.replay import ArmSpec

    queued = json.dumps(
        [{"action": "standard_queue", "at": "2025-04-01T10:00", "channel": None,
          "recipient": "borrower"}]
    )  # fmt: skip
    called = json.dumps(
        [{"action": "call", "at": "2025-04-01T10:00", "channel": "agent_call",
          "recipient": "borrower"}]
    )  # fmt: skip
    plan = model_plan([queued, called], ["[]", "[]"])
    assert plan.queued.tolist() == [True, False]
    assert plan.channel_counts[0].sum() == 0 and plan.channel_counts[1, CH["agent_call"]] == 1

    _, replay = _delinquent_replay(simulated)
    costs = load_action_costs()
    n = len(replay.account_ids)
    # everyone queued: the model-driven arm is the baseline, draw for draw
    everyone = model_plan([queued] * n, ["[]"] * n)
    for seed in (0, 1):
        policy = run_arm(replay, "model_driven", everyone, costs, 3, seed)
        base = run_arm(replay, "baseline_tiered", everyone, costs, 3, seed)
        assert np.array_equal(policy.book_value, base.book_value), seed
        assert np.array_equal(policy.contacts, base.contacts), seed
        assert np.array_equal(policy.treatments_granted, base.treatments_granted), seed
    # some queued, the others called: the same as an arm whose tiered mask is the queued ones
    half = replay.state.bucket == 1
    assert 0 < half.sum() < n
    mixed = model_plan([queued if q else called for q in half], ["[]"] * n)
    by_plan = run_arm(replay, "model_driven", mixed, costs, 3, seed=2)
    by_mask = run_arm(replay, ArmSpec("x", _plan(n, "agent_call"), half), mixed, costs, 3, seed=2)
    assert np.array_equal(by_plan.book_value, by_mask.book_value)
    assert np.array_equal(by_plan.contacts, by_mask.contacts)


def test_steps_added_to_the_standard_queue_act_on_top_of_the_tiered_lender(simulated: Path):
    # a ladder [standard_queue, interest_waiver_on_hardship]: the tiered lender's contacts and
    # relief, plus a waiver for a borrower whose hardship claim the queue granted nothing
    # for. Every draw is the account's own, so an account the added step never fired for meets
    # the baseline's fate to the bit, and only through the waiver can an account differ
    from rollrisk.simulator.engine import ladder_plan
    from rollrisk.simulator.replay import ArmSpec, effective_spec, same_run

    _, replay = _delinquent_replay(simulated, horizon=4)
    n = len(replay.account_ids)
    costs = load_action_costs()
    plus = ladder_plan([[("standard_queue", None), ("interest_waiver_on_hardship", None)]] * n)
    assert plus.queued.all() and plus.plus_steps.all() and not plus.queued_only.any()
    only = ladder_plan([[("standard_queue", None)]] * n)
    assert only.queued_only.all() and not only.plus_steps.any()
    differ = 0
    for seed in range(3):
        model = run_arm(replay, "model_driven", plus, costs, 4, seed)
        base = run_arm(replay, "baseline_tiered", plus, costs, 4, seed)
        moved = (model.book_value != base.book_value) | (model.contacts != base.contacts)
        # the relief the account got differs (a waiver added; or a waiver added that kept the
        # queue from granting its own grace later: the same count, another kind)
        relief = (
            (model.treatments_granted != base.treatments_granted)
            | (model.waived_income != base.waived_income)
            | (model.deferred_due != base.deferred_due)
        )
        assert not (moved & ~relief).any(), seed  # no relief added: the baseline's fate
        assert (model.treatments_granted >= base.treatments_granted).sum() > 0.9 * n
        differ += int(moved.sum())
    assert differ > 0  # the added relief did fire (the check above is not vacuous)
    # an added contact: every account gets the queue's contacts and its ladder's SMS
    sms = ladder_plan([[("standard_queue", None), ("reminder", "sms")]] * n)
    with_sms = run_arm(replay, "model_driven", sms, costs, 1, seed=0)
    base = run_arm(replay, "baseline_tiered", sms, costs, 1, seed=0)
    assert (with_sms.contacts >= base.contacts).all()
    assert with_sms.contacts.sum() > base.contacts.sum()
    # the baseline arm and a reference mixing the plan in keep the plan's added steps apart
    assert not effective_spec("baseline_tiered", plus, n).plus.any()
    everyone = ArmSpec("x", plus, np.ones(n, dtype=bool))
    assert same_run(effective_spec(everyone, plus, n), effective_spec("baseline_tiered", plus, n))
    assert not same_run(
        effective_spec("model_driven", plus, n), effective_spec("baseline_tiered", plus, n)
    )


def test_a_real_portfolio_without_truth_is_refused(tiny_portfolio: Path):
    with pytest.raises(UserError, match="no truth/params.json - this is not a portfolio written"):
        read_simulation_params(tiny_portfolio)


def test_cost_table_errors_name_the_file_and_the_missing_entry(tmp_path: Path):
    path = tmp_path / "costs.yaml"
    path.write_text("channels: {sms: 0.1}\ntreatments: {}\n")
    with pytest.raises(
        UserError, match=r"costs.yaml:1: `channels`: unknown none, missing \['app_push'"
    ):
        load_action_costs(path)


def test_a_cost_written_twice_is_refused_naming_the_line(tmp_path: Path):
    """YAML keeps the last of two equal keys: an `sms:` added below the first was last-wins."""
    shipped = DEFAULT_COSTS.read_text()
    path = tmp_path / "costs.yaml"
    path.write_text(shipped.replace("channels:\n", "channels:\n  sms: 9.0\n", 1))
    line = shipped.splitlines().index("channels:") + 2
    with pytest.raises(
        UserError,
        match=rf"costs.yaml:{line + 1}: duplicate key 'sms' \(already given on line {line}\)",
    ):
        load_action_costs(path)


def test_a_cost_written_as_true_is_refused_not_read_as_one(tmp_path: Path):
    shipped = DEFAULT_COSTS.read_text()
    path = tmp_path / "costs.yaml"
    path.write_text(re.sub(r"(?m)^(\s+sms:) [0-9.]+", r"\1 true", shipped, count=1))
    with pytest.raises(UserError, match=r"`channels.sms` must be a cost >= 0, got True"):
        load_action_costs(path)


def test_metrics_sum_recovery_and_cost_per_arm(simulated: Path):
    _, replay = _delinquent_replay(simulated)
    result = run_arm(replay, "baseline_tiered", _plan(len(replay.account_ids)), load_action_costs(),
                     3, seed=1)  # fmt: skip
    metrics = arm_metrics(result)
    assert metrics["net_recovery"] == pytest.approx(
        metrics["recovered"] - metrics["action_cost"] - metrics["agency_commission"]
    )
    assert metrics["agency_commission"] == pytest.approx(result.agency_commission.sum())
    assert metrics["recovered"] == pytest.approx(result.recovered.sum())
    assert metrics["action_cost"] == pytest.approx(result.action_cost.sum())
    assert metrics["roll_to_default_rate"] == pytest.approx(result.defaulted.mean())
    assert 0.0 < metrics["roll_to_default_rate"] < 1.0  # the replayed book has both outcomes
    assert metrics["action_cost"] > 0 and metrics["contacts"] > 0
    assert metrics["compliance_blocks"] == 0


def test_the_default_event_is_the_observation_settings_default_dpd(simulated: Path):
    _, replay = _delinquent_replay(simulated)
    plan, costs = _plan(len(replay.account_ids)), load_action_costs()

    def defaulted(**default_dpd: int) -> np.ndarray:
        return run_arm(replay, "baseline_tiered", plan, costs, 3, seed=1, **default_dpd).defaulted

    at_90 = defaulted()  # the observation settings' default
    assert np.array_equal(at_90, defaulted(default_dpd=90))
    # a simulated DPD runs 30 * (bucket - 1) + 1..29, so 90+ is M4 or worse: 91+ is the same
    assert np.array_equal(at_90, defaulted(default_dpd=91))
    # the threshold moves only the event, never the paths: a lower one holds every 90+ default
    at_30 = defaulted(default_dpd=30)
    assert (at_30 >= at_90).all() and at_30.sum() > at_90.sum() > 0


def test_the_job_follows_the_scoring_runs_observation_settings_unless_a_flag_says_otherwise():
    import argparse

    from rollrisk.pipelines.simulate_policy import add_arguments, observation_settings
    from rollrisk.storage.config import load_config

    parser = argparse.ArgumentParser()
    add_arguments(parser)

    def settings(manifest: dict, *flags: str):
        args = parser.parse_args(["--scores", "runs/s", "--data", "runs/p", *flags])
        spec, source = observation_settings(args, manifest, load_config(None))
        return (spec.default_dpd, spec.window_months, spec.max_dpd), source

    recorded = {"config": {"observation": {"default_dpd": 60, "window_months": 6,
                                           "min_dpd": 1, "max_dpd": 59}}}  # fmt: skip
    assert settings(recorded) == ((60, 6, 59), "the scoring run runs/s")
    assert settings({}) == ((90, 3, 89), f"config file {load_config(None).source}")
    spec, source = settings(recorded, "--default-dpd", "90", "--window-months", "3")
    assert spec == (90, 3, 59) and source == "the scoring run runs/s, with the flags given"
    with pytest.raises(UserError, match=r"max_dpd \(89\) must be below default_dpd \(30\)"):
        settings({}, "--default-dpd", "30")


# --- book value, references, value ratios and the two-way interval (issue 12) ----------------


def test_books_balance_cash_plus_end_value_minus_costs(simulated: Path):
    from rollrisk.simulator.replay import AT_PAR, Valuation

    _, replay = _delinquent_replay(simulated)
    costs = load_action_costs()
    plan = _plan(len(replay.account_ids), "agent_call")
    at_par = run_arm(replay, "model_driven", plan, costs, 3, seed=1, valuation=AT_PAR)
    assert at_par.end_value == pytest.approx(at_par.end_balance)
    halves = Valuation((1.0, *([0.5] * 7)), 12, "test: half of every delinquent balance")
    valued = run_arm(replay, "model_driven", plan, costs, 3, seed=1, valuation=halves)
    assert np.array_equal(valued.end_balance, at_par.end_balance)  # valuation changes no fate
    assert valued.end_value.sum() < at_par.end_value.sum()
    book = valued.recovered - valued.action_cost - valued.agency_commission + valued.end_value
    assert valued.book_value == pytest.approx(book)
    figures = arm_metrics(valued)
    assert figures["book_value"] == pytest.approx(
        figures["recovered"]
        - figures["action_cost"]
        - figures["agency_commission"]
        + figures["end_value"]
    )
    weight = valued.start_balance
    expected = weight[valued.defaulted].sum() / weight.sum()
    assert figures["roll_to_default_balance_rate"] == pytest.approx(expected)


def test_the_portfolio_recovery_curve_values_current_balances_at_par(simulated: Path):
    from rollrisk.simulator.replay import recovery_valuation

    valuation = recovery_valuation(load_portfolio(simulated).statements, months=6)
    shares = valuation.vector()
    assert shares[0] == 1.0 and ((shares >= 0) & (shares <= 1)).all()
    assert shares[2] > shares[4]  # an M2 balance is worth more than an M4 one
    assert "recovered within 6 months" in valuation.method


def test_a_mixed_arm_of_one_kind_is_that_pure_arm(simulated: Path):
    from rollrisk.simulator.replay import ArmSpec

    _, replay = _delinquent_replay(simulated)
    costs = load_action_costs()
    n = len(replay.account_ids)
    plan = _plan(n, "sms")
    for name, tiered in (("baseline_tiered", True), ("model_driven", False)):
        pure = run_arm(replay, name, plan, costs, 3, seed=2)
        mixed = run_arm(replay, ArmSpec("x", plan, np.full(n, tiered)), plan, costs, 3, seed=2)
        assert np.array_equal(pure.book_value, mixed.book_value), name
        assert np.array_equal(pure.contacts, mixed.contacts), name


def test_an_arm_whose_run_is_another_arms_is_run_once_with_the_same_result(simulated: Path):
    from rollrisk.simulator.replay import AT_PAR, ArmRuns, ArmSpec, _seed_results

    _, replay = _delinquent_replay(simulated)
    costs = load_action_costs()
    n = len(replay.account_ids)
    plan = _plan(n, "sms")
    everyone_queued = replace(_plan(n), standard_queue=np.ones(n, dtype=bool))  # nothing added
    same_plan_copy = replace(plan, grace=plan.grace.copy())  # equal, not the same object
    one_differs = replace(plan, waiver=np.eye(1, n, 0, dtype=bool)[0])  # one account differs
    arms = (
        ("model_driven", "model_driven"),
        ("baseline_tiered", "baseline_tiered"),
        ("all_queued", ArmSpec("all_queued", everyone_queued, np.zeros(n, dtype=bool))),
        ("copy", ArmSpec("copy", same_plan_copy, np.zeros(n, dtype=bool))),
        ("one_differs", ArmSpec("one_differs", one_differs, np.zeros(n, dtype=bool))),
        ("grace", ArmSpec("grace", plan, np.ones(n, dtype=bool), grace_all=True)),
    )
    runs = ArmRuns(replay, plan, costs, 3, 20_260_101, 90, AT_PAR, arms)
    assert runs.same_runs() == {"all_queued": "baseline_tiered", "copy": "model_driven"}
    results = _seed_results(runs, 4)
    for name, arm in arms:  # each the result of its own run
        alone = run_arm(replay, arm, plan, costs, 3, seed=4)
        _same_values(results[name], alone, name)
    assert results["all_queued"] is results["baseline_tiered"]  # made once
    assert results["one_differs"] is not results["copy"]  # one account apart: its own run


def test_a_duplicate_candidate_or_reference_is_run_once_and_reported(simulated: Path):
    from rollrisk.reports.policy_simulation import markdown
    from rollrisk.simulator.replay import ArmSpec, candidate_book_values, two_way_interval

    _, replay = _delinquent_replay(simulated)
    costs = load_action_costs()
    n = len(replay.account_ids)
    nobody, everyone = np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
    calls = ArmSpec("ladder:calls", _plan(n, "agent_call"), nobody)
    candidates = {
        "baseline_tiered": ArmSpec("baseline_tiered", _plan(n), everyone),
        "ladder:calls": calls,
        "ladder:calls_again": replace(calls, name="ladder:calls_again"),
    }
    ticks: list[int] = []

    def progress(items, total):  # noqa: ANN001, ANN202
        ticks.append(total)
        return items

    values = candidate_book_values(replay, candidates, costs, 2, [200, 201], progress=progress)
    assert ticks == [2 * 2]  # two distinct runs on two seeds
    apart = candidate_book_values(replay, dict(list(candidates.items())[:2]), costs, 2, [200, 201])
    assert np.array_equal(values[:2], apart) and np.array_equal(values[2], values[1])

    plan = _plan(n, "sms")
    queued = replace(_plan(n), standard_queue=everyone)  # nothing added to the queue
    references = {"segment_blind": ArmSpec("segment_blind", queued, nobody)}
    result = compare_policies(replay, plan, costs, 2, [0, 1, 2], references=references)
    assert result["same_runs"] == {"segment_blind": "baseline_tiered"}
    blind = result["references"]["segment_blind"]
    assert blind == result["references"]["baseline_tiered"]  # every figure equal
    # the shared resamples give each interval the one it gets alone
    headline = result["uplift_two_way"]["book_value"]
    per_account = np.zeros((n, 3))
    for column, seed in enumerate([0, 1, 2]):
        model = run_arm(replay, "model_driven", plan, costs, 2, seed=seed)
        base = run_arm(replay, "baseline_tiered", plan, costs, 2, seed=seed)
        per_account[:, column] = model.book_value - base.book_value
    assert headline == two_way_interval(per_account, False, result["base_seed"])
    text = markdown(
        {**result, "scores": "s", "data": "d", "as_of": "2025-12-31", "model": {},
         "costs": {"source": "c"}, "simulation": {"seed": 3, "accounts": n, "months": 24,
                                                  "start_month": "2024-01"}}
    )  # fmt: skip
    assert (
        "the same run as another arm, so equal in every figure (the same accounts in the standard "
        "tiered collection and the same ladders for the others; run once): segment-blind (every "
        "account in the fallback segment) = baseline tiered"
    ) in text


def test_baseline_plus_grace_grants_a_grace_to_the_untreated(simulated: Path):
    from rollrisk.simulator.replay import ArmSpec

    _, replay = _delinquent_replay(simulated)
    costs = load_action_costs()
    n = len(replay.account_ids)
    plan = _plan(n)
    base = run_arm(replay, "baseline_tiered", plan, costs, 3, seed=3)
    spec = ArmSpec("baseline_plus_grace", plan, np.ones(n, dtype=bool), grace_all=True)
    grace = run_arm(replay, spec, plan, costs, 3, seed=3)
    # every untreated delinquent account is offered a grace; those reached that month take it
    # up at their driver's rate (engine.takes_up), the others refuse or never hear of it
    offered = grace.treatments_granted.sum() + grace.offers_refused.sum()
    assert offered > base.treatments_granted.sum() + n / 2
    assert grace.offers_refused.sum() > 0 == base.offers_refused.sum()
    assert grace.treatments_granted.sum() > base.treatments_granted.sum() + n / 4
    # a grace defers dues rather than collecting them (they stay owed: see
    # test_treatment_economics.py for the month-by-month rules)
    assert grace.deferred_due.sum() > base.deferred_due.sum() + 0.1 * grace.recovered.sum()


def test_the_oracle_is_chosen_on_its_own_seeds_and_is_no_worse_than_the_baseline_there(
    simulated: Path,
):
    from rollrisk.simulator.replay import ArmSpec, choose_oracle

    _, replay = _delinquent_replay(simulated)
    costs = load_action_costs()
    n = len(replay.account_ids)
    nobody, everyone = np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
    sms, calls = _plan(n, "sms"), _plan(n, "agent_call")
    candidates = {
        "baseline_tiered": ArmSpec("baseline_tiered", sms, everyone),
        "ladder:sms": ArmSpec("ladder:sms", sms, nobody),
        "ladder:calls": ArmSpec("ladder:calls", calls, nobody),
    }
    drivers = [str(d) for d in np.asarray(sorted(DRV, key=DRV.get))[replay.accounts.driver]]
    oracle = choose_oracle(replay, candidates, costs, 2, drivers, [100, 101])
    assert oracle.selection_seeds == [100, 101]
    for driver, cells in oracle.selection_values.items():
        for cell, values in cells.items():
            best = oracle.choice[driver][cell]
            assert values[best] == max(values.values())
            assert values[best] >= values["baseline_tiered"]
    # run on the seeds it was chosen on, the mixed arm keeps (up to the shifted contact draws)
    # the advantage it was chosen for
    oracle_total = sum(
        run_arm(replay, oracle.arm, sms, costs, 2, seed).book_value.sum() for seed in (100, 101)
    )
    base_total = sum(
        run_arm(replay, "baseline_tiered", sms, costs, 2, seed).book_value.sum()
        for seed in (100, 101)
    )
    assert oracle_total >= base_total * 0.995
    # an account the oracle gives the baseline is tiered in the oracle arm, and only those
    chosen = {d: c for d, c in oracle.choice.items()}
    bucket = np.array([f"M{b}" for b in replay.state.bucket])
    expected = np.array(
        [chosen[d][b] == "baseline_tiered" for d, b in zip(drivers, bucket, strict=True)]
    )
    assert np.array_equal(oracle.arm.tiered, expected)


def test_value_captured_is_one_when_the_policy_is_the_oracle(simulated: Path):
    from rollrisk.simulator.replay import ArmSpec

    _, replay = _delinquent_replay(simulated)
    costs = load_action_costs()
    n = len(replay.account_ids)
    plan = _plan(n, "agent_call")
    nobody = np.zeros(n, dtype=bool)
    refs = {
        "oracle": ArmSpec("oracle", plan, nobody),
        "segment_blind": ArmSpec("segment_blind", _plan(n), nobody),
        "oracle_segments": ArmSpec("oracle_segments", plan, nobody),
    }
    drivers = ["a" if i % 2 else "b" for i in range(n)]
    result = compare_policies(replay, plan, costs, 2, [0, 1, 2], references=refs,
                              drivers=drivers)  # fmt: skip
    captured = result["value_captured"]
    assert captured["policy_minus_baseline"] == pytest.approx(captured["oracle_minus_baseline"])
    if captured["overall"] is not None:  # the oracle's gap is beyond its noise
        assert captured["overall"] == pytest.approx(1.0)
    if captured["oracle_minus_baseline"] <= 0:  # the ratio means nothing then
        assert captured["overall"] is None
    assert set(captured["by_true_driver"]) == {"a", "b"}
    segmentation = result["value_of_segmentation"]
    assert segmentation["policy_minus_segment_blind"] == pytest.approx(
        segmentation["oracle_segments_minus_segment_blind"]
    )
    refs_out = result["references"]
    assert refs_out["oracle"]["book_value"] == refs_out["model_driven"]["book_value"]
    # against each reference, the paired account-and-seed gap: none against itself, and the
    # mean gap is the difference of the arms' mean book values
    versus = result["uplift_vs_references"]
    assert set(versus) == set(refs)
    assert versus["oracle"]["mean"] == 0.0 and versus["oracle"]["ci_high"] == 0.0
    gap = (
        refs_out["model_driven"]["book_value"]["mean"]
        - refs_out["segment_blind"]["book_value"]["mean"]
    )
    assert versus["segment_blind"]["mean"] == pytest.approx(gap)
    assert versus["segment_blind"]["ci_low"] <= gap <= versus["segment_blind"]["ci_high"]


def test_value_ratios_from_known_book_values():
    from rollrisk.simulator.replay import _value_ratios

    # 20 copies of 3 accounts: the reference gaps (7 and 8 per copy) are well beyond their noise
    book = {
        "baseline_tiered": np.tile([10.0, 10.0, 10.0], 20),
        "model_driven": np.tile([12.0, 10.0, 11.0], 20),
        "oracle": np.tile([14.0, 10.0, 13.0], 20),
        "segment_blind": np.tile([9.0, 9.0, 9.0], 20),
        "oracle_segments": np.tile([13.0, 11.0, 11.0], 20),
    }
    ratios = _value_ratios(book, ["x", "y", "x"] * 20)
    assert ratios["value_captured"]["overall"] == pytest.approx(3 / 7)
    per = ratios["value_captured"]["by_true_driver"]
    assert per["x"]["value_captured"] == pytest.approx(3 / 7)
    assert per["y"]["value_captured"] is None  # the oracle gains nothing there
    assert ratios["value_of_segmentation"]["value"] == pytest.approx(6 / 8)
    # a reference gap that noise alone could give has no ratio (it would be any number)
    rng = np.random.default_rng(0)
    noisy = {name: values + rng.normal(0.0, 50.0, 60) for name, values in book.items()}
    noisy_ratios = _value_ratios(noisy, ["x", "y", "x"] * 20)
    assert noisy_ratios["value_captured"]["overall"] is None
    assert noisy_ratios["value_of_segmentation"]["value"] is None


def test_the_account_and_seed_interval_is_wider_than_the_seed_only_one_under_heterogeneity():
    from rollrisk.models.stats import t_interval, two_way_bootstrap

    rng = np.random.default_rng(0)
    accounts, seeds = 400, 20
    effect = rng.normal(0.0, 50.0, accounts)  # accounts differ a lot
    values = effect[:, None] + rng.normal(0.0, 5.0, (accounts, seeds))  # seeds little
    low, high = two_way_bootstrap(values, 1_000, seed=1)
    seed_only = t_interval(values.sum(axis=0))
    assert low < values.mean(axis=1).sum() < high
    assert high - low > 3 * (seed_only["ci_high"] - seed_only["ci_low"])
    # no account heterogeneity and no seed noise: a point
    flat = np.full((50, 5), 2.0)
    assert two_way_bootstrap(flat, 200, seed=1, statistic="mean") == pytest.approx((2.0, 2.0))
    nothing = two_way_bootstrap(np.zeros((0, 5)), 10, seed=1)  # no account to resample
    assert np.isnan(nothing).all()


def test_figures_on_shared_resamples_get_each_the_interval_it_gets_alone():
    from rollrisk.models.stats import two_way_bootstrap, two_way_bootstraps

    rng = np.random.default_rng(3)
    figures = [rng.normal(0.0, 10.0, (300, 7)) + rng.normal(0.0, 30.0, 300)[:, None]
               for _ in range(3)]  # fmt: skip
    statistics = ["sum", "mean", "sum"]
    together = two_way_bootstraps(figures, 250, seed=5, statistics=statistics, batch=40)
    alone = [two_way_bootstrap(f, 250, seed=5, statistic=s, batch=40)
             for f, s in zip(figures, statistics, strict=True)]  # fmt: skip
    assert together == alone  # the same draws, so the same bits
    assert together[0] != together[2]  # and each its own figure's
    with pytest.raises(ValueError, match="differ in shape"):
        two_way_bootstraps([figures[0], figures[1][:10]], 10, seed=1)
    with pytest.raises(ValueError, match="2 statistics for 3 matrices"):
        two_way_bootstraps(figures, 10, seed=1, statistics=["sum", "sum"])
    assert two_way_bootstraps([], 10, seed=1) == []


def test_one_label_for_everyone_gives_the_best_single_bundle_per_bucket(simulated: Path):
    from rollrisk.simulator.replay import ArmSpec, candidate_book_values, choose_oracle

    _, replay = _delinquent_replay(simulated)
    costs = load_action_costs()
    n = len(replay.account_ids)
    nobody, everyone = np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
    candidates = {
        "baseline_tiered": ArmSpec("baseline_tiered", _plan(n), everyone),
        "ladder:calls": ArmSpec("ladder:calls", _plan(n, "agent_call"), nobody),
    }
    values = candidate_book_values(replay, candidates, costs, 2, [200, 201])
    buckets = ["M1" if i % 3 else "M2" for i in range(n)]  # the scored bucket, given
    chosen = choose_oracle(replay, candidates, costs, 2, ["any"] * n, [200, 201],
                           values=values, name="best_bundle_per_bucket", buckets=buckets)  # fmt: skip
    assert chosen.arm.name == "best_bundle_per_bucket" and set(chosen.choice) == {"any"}
    for bucket, pick in chosen.choice["any"].items():
        mask = np.asarray(buckets) == bucket
        best = ["baseline_tiered", "ladder:calls"][int(np.argmax(values[:, mask].sum(axis=1)))]
        assert pick == best
        assert (chosen.arm.tiered[mask] == (pick == "baseline_tiered")).all()


def test_uplift_by_true_driver_splits_the_headline(simulated: Path):
    _, replay = _delinquent_replay(simulated)
    n = len(replay.account_ids)
    drivers = ["a" if i % 2 else "b" for i in range(n)]
    result = compare_policies(replay, _plan(n, "sms"), load_action_costs(), 2, [0, 1, 2],
                              drivers=drivers)  # fmt: skip
    parts = result["uplift_by_true_driver"]
    assert sum(p["accounts"] for p in parts.values()) == n
    total = sum(p["book_value"]["mean"] for p in parts.values())
    assert total == pytest.approx(result["headline"]["uplift"]["mean"])
    for part in parts.values():
        assert part["book_value"]["ci_low"] <= part["book_value"]["mean"]
        assert part["book_value"]["mean"] <= part["book_value"]["ci_high"]


def test_a_costs_file_that_is_not_utf8_or_is_a_folder_is_one_clear_error(tmp_path):
    binary = tmp_path / "costs.yaml"
    binary.write_bytes(b"\xff\xfe channels: {}")
    with pytest.raises(UserError, match=r"costs file .*costs\.yaml is not UTF-8"):
        load_action_costs(binary)
    with pytest.raises(UserError, match=r"costs file .* is a folder"):
        load_action_costs(tmp_path)


def _same_values(left: object, right: object, where: str = "replay") -> None:
    """Equal to the bit, field by field (arrays, dataclasses, lists, scalars)."""
    if is_dataclass(left) and not isinstance(left, type):
        assert type(left) is type(right), where
        for f in fields(left):
            _same_values(getattr(left, f.name), getattr(right, f.name), f"{where}.{f.name}")
    elif isinstance(left, np.ndarray):
        assert np.array_equal(left, right, equal_nan=left.dtype.kind == "f"), where
        assert left.dtype == right.dtype, where
    elif isinstance(left, float) and math.isnan(left):
        assert isinstance(right, float) and math.isnan(right), where
    else:
        assert left == right, where


def _chunked_portfolio(tmp_path: Path) -> tuple[Path, SimulatedPortfolio]:
    """A 2,400-account portfolio in 6 chunks of 400, and how it was simulated."""
    folder = tmp_path / "chunked"
    folder.mkdir()
    rules = replace(DEFAULT_RULES, chunk_accounts=400)
    write_portfolio(folder, 2_400, MONTHS, seed=5, rules=rules)
    # the params file holds these rules, which read_simulation_params refuses (not the shipped)
    params = json.loads((folder / "truth" / "params.json").read_text())
    explored = params.get("exploration")
    sim = SimulatedPortfolio(
        5, 2_400, MONTHS, params["start_month"], rules,
        Exploration.from_dict(explored) if explored is not None else None,
    )  # fmt: skip
    return folder, sim


def test_the_chunks_replayed_in_worker_processes_give_the_same_replay(tmp_path: Path):
    """`--workers`: a book of several chunks replayed in spawned processes is the replay one
    process makes, to the bit, in the same account order (a chunk's replay depends only on its
    own random streams)."""
    folder, sim = _chunked_portfolio(tmp_path)
    portfolio = load_portfolio(folder)
    statements = portfolio.statements
    # every 7th account of 5 of the 6 chunks (none of 1,200-1,599), out of order
    numbers = [i for i in range(0, 2_400, 7) if not 1_200 <= i < 1_600]
    ids = [f"A{i:09d}" for i in np.random.default_rng(0).permutation(numbers).tolist()]
    alone = replay_to_month(sim, ids, AS_OF_MONTH, 3, statements)
    chunks_seen = []
    spread = replay_to_month(
        sim, ids, AS_OF_MONTH, 3, statements, workers=lambda chunks: chunks_seen.append(chunks) or 2
    )
    assert chunks_seen == [5]
    assert alone.replay_match_share == pytest.approx(1.0)
    assert sorted(alone.account_ids) == sorted(ids)
    assert alone.last_actions is not None and len(alone.last_actions.account) > 0
    # the month before the as-of's action rows, renumbered to the replay order, are the
    # portfolio's rows of those accounts from that month's cycle end to the as-of's
    log = alone.last_actions
    got = sorted(
        zip([alone.account_ids[i] for i in log.account.tolist()], log.at.tolist(), strict=True)
    )
    month = (pl.col("cycle_end").dt.year() - 2024) * 12 + pl.col("cycle_end").dt.month() - 1
    ends = (
        statements.filter(pl.col("account_id").is_in(ids))
        .filter(month.is_in([AS_OF_MONTH - 1, AS_OF_MONTH]))
        .group_by("account_id")
        .agg(pl.col("cycle_end").min().alias("since"), pl.col("cycle_end").max().alias("until"))
    )
    expected = (
        portfolio.collection_actions.join(ends, on="account_id")
        .filter(
            (pl.col("action_at") >= pl.col("since").cast(pl.Datetime("us")))
            & (pl.col("action_at") < pl.col("until").cast(pl.Datetime("us")))
        )
        .select("account_id", "action_at")
    )
    assert got == sorted(expected.iter_rows())
    _same_values(spread, alone)


def test_the_arms_in_worker_processes_give_the_same_result(simulated: Path):
    """`--workers`: the oracle's runs and the seeds spread over spawned processes give the
    figures one process gives, to the bit (a run depends only on its seed and arm)."""
    from rollrisk.simulator.replay import ArmSpec, candidate_book_values

    _, replay = _delinquent_replay(simulated)
    costs = load_action_costs()
    n = len(replay.account_ids)
    plan = _plan(n, "sms")
    nobody, everyone = np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
    refs = {
        "segment_blind": ArmSpec("segment_blind", _plan(n, "agent_call"), nobody),
        "baseline_plus_grace": ArmSpec("baseline_plus_grace", plan, everyone, grace_all=True),
    }
    alone = compare_policies(replay, plan, costs, 2, [0, 1, 2], references=refs)
    spread = compare_policies(replay, plan, costs, 2, [0, 1, 2], references=refs, workers=2)
    assert json.dumps(spread, sort_keys=True, default=str) == json.dumps(
        alone, sort_keys=True, default=str
    )
    candidates = {"tiered": ArmSpec("tiered", _plan(n), everyone), **refs}
    del candidates["baseline_plus_grace"]  # not a bundle
    values = candidate_book_values(replay, candidates, costs, 2, [200, 201])
    values_spread = candidate_book_values(replay, candidates, costs, 2, [200, 201], workers=2)
    assert np.array_equal(values, values_spread)


def test_the_state_the_simulator_wrote_is_the_replay_to_the_bit(tmp_path: Path):
    """`rollrisk simulate` writes the state of the accounts delinquent at the start of each of
    its last two months (truth/replay_state/): read back, it is what re-simulating the chunks
    gives, field by field and in the same account order (accounts, state, memory and the month
    before's contact rows). A chunk holding an account the stored state lacks (one current at
    the month-end) is re-simulated; a month without stored state re-simulates every chunk."""
    from rollrisk.simulator.replay import read_replay_points
    from rollrisk.simulator.truth import REPLAY_POINT_MONTHS, replay_state_path

    folder, sim = _chunked_portfolio(tmp_path)
    statements = load_portfolio(folder).statements
    assert REPLAY_POINT_MONTHS == 2
    assert sorted(p.name for p in replay_state_path(folder, "2024-01").parent.iterdir()) == [
        "2024-07.npz",
        "2024-08.npz",
    ]
    rng = np.random.default_rng(3)
    shown: list[int] = []  # a progress display (an iterable, not an iterator) of chunks re-run
    for month in (MONTHS - 2, MONTHS - 1):
        cycle = (pl.col("cycle_end").dt.year() - 2024) * 12 + pl.col("cycle_end").dt.month() - 1
        at_month = statements.filter(cycle == month)
        delinquent = at_month.filter(pl.col("dpd") > 0)["account_id"].to_list()
        # current at this month-end and the one before: not stored
        before = statements.filter((cycle == month - 1) & (pl.col("dpd") == 0))["account_id"]
        current = at_month.filter(
            (pl.col("dpd") == 0)
            & (pl.col("account_id") < "A000000400")
            & pl.col("account_id").is_in(before.implode())
        )["account_id"].to_list()
        assert len(delinquent) > 50 and current
        ids = rng.permutation([*delinquent, current[0]]).tolist()
        points = read_replay_points(folder, sim, month)
        assert sorted(points) == list(range(6))
        shown.clear()
        stored = replay_to_month(
            sim, ids, month, 3, statements, points=points,
            progress=lambda items, total: shown.append(total) or list(items),
        )  # fmt: skip
        assert shown == [1]
        replayed = replay_to_month(sim, ids, month, 3, statements)
        # chunk 0 holds the current account: re-simulated; the 5 others read
        assert (stored.chunks, stored.chunks_from_points) == (6, 5)
        assert (replayed.chunks, replayed.chunks_from_points) == (6, 0)
        assert stored.replay_match_share == pytest.approx(1.0)
        assert len(stored.last_actions.account) > 0
        _same_values(replace(stored, chunks_from_points=0), replayed, f"replay at month {month}")
    assert read_replay_points(folder, sim, AS_OF_MONTH) == {}
