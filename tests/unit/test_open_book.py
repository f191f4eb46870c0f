"""The open book of the simulator (simulator/rules.py ``BookRules``, ``ProductRules`` exits):
accounts booked during the window, instalment lines paid off or prepaid, revolving accounts
closed; the data written for them, the population they enter and the replay that sees them.

Each test would fail if the book went back to a closed cohort (everyone from the first month,
nobody leaving) or if the open book leaked: a statement before an account opened or after it
closed, a closed account acted on or observed as delinquent, a prepayment not counted as cash.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from rollrisk.features.observations import ObservationSpec, eligible_as_of_dates, observations
from rollrisk.features.schemas import CHANNELS, PRODUCTS
from rollrisk.simulator.engine import (
    DRV,
    draw_accounts,
    make_world,
    rule_arrays,
    transition,
    write_portfolio,
)
from rollrisk.simulator.replay import ModelPlan, load_action_costs, replay_to_month, run_arm
from rollrisk.simulator.rules import DEFAULT_RULES, BookRules, SimulationRules
from rollrisk.simulator.truth import read_simulation_params
from rollrisk.storage.loader import load_portfolio

ACCOUNTS, MONTHS, SEED = 12_000, 24, 3
# The active book (accounts open and not charged off) stays within this share of its size in
# the window's first month (docs/simulator.md, "An open book"; 60,000 x 24 on seeds 7, 11, 12,
# 13: between 0 % and +6 %).
BOOK_BAND = 0.10


def _read(folder: Path, table: str) -> pl.DataFrame:
    single = folder / f"{table}.parquet"
    return pl.read_parquet(single if single.exists() else folder / table / "*.parquet")


@pytest.fixture(scope="module")
def portfolio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("open_book") / "portfolio"
    folder.mkdir()
    write_portfolio(folder, ACCOUNTS, MONTHS, seed=SEED)
    return folder


@pytest.fixture(scope="module")
def spans(portfolio: Path) -> pl.DataFrame:
    """Per account: opened_at, product, first and last statement, their count, the last one's
    balance and DPD."""
    statements = _read(portfolio, "statements").sort("account_id", "cycle_end")
    per_account = statements.group_by("account_id").agg(
        pl.col("cycle_end").first().alias("first_end"),
        pl.col("cycle_end").last().alias("last_end"),
        pl.len().alias("statements"),
        pl.col("amount_paid").first().alias("first_paid"),
        pl.col("balance").last().alias("last_balance"),
        pl.col("dpd").last().alias("last_dpd"),
    )
    accounts = _read(portfolio, "accounts").select("account_id", "product", "opened_at")
    return accounts.join(per_account, on="account_id", how="left")


def test_every_account_is_on_the_book_for_an_unbroken_run_of_months(spans: pl.DataFrame):
    # --accounts counts the accounts ever on the book in the window: each has a statement
    assert spans.height == ACCOUNTS
    assert spans["statements"].null_count() == 0
    months = (
        (spans["last_end"].dt.year() - spans["first_end"].dt.year()) * 12
        + spans["last_end"].dt.month()
        - spans["first_end"].dt.month()
    )
    assert (spans["statements"] == months + 1).all()  # no gap between opening and closing


def test_booked_accounts_have_no_statement_before_they_open(spans: pl.DataFrame):
    start = spans["first_end"].min().replace(day=1)
    booked = spans.filter(pl.col("first_end").dt.month_start() > start)
    # the book opens: a good share of the accounts is booked inside the window
    assert 0.2 < booked.height / spans.height < 0.6
    lead = (booked["first_end"] - booked["opened_at"]).dt.total_days()
    assert lead.min() >= 1 and lead.max() <= 30  # opened in the cycle its first statement closes
    assert (booked["first_paid"] == 0).all()  # nothing paid before the first statement
    on_book_from_start = spans.filter(pl.col("first_end").dt.month_start() == start)
    assert ((on_book_from_start["first_end"] - on_book_from_start["opened_at"]).dt.total_days()
            >= DEFAULT_RULES.opened_days_before_start[0]).all()  # fmt: skip


def test_closed_accounts_end_current_at_zero_and_nothing_happens_after(
    portfolio: Path, spans: pl.DataFrame
):
    end = spans["last_end"].max()
    closed = spans.filter(pl.col("last_end") < end.replace(day=1))
    assert closed.height > 0.1 * spans.height
    assert (closed["last_balance"] == 0).all() and (closed["last_dpd"] == 0).all()
    # both kinds of exit happen: instalment lines paid off / prepaid, revolving accounts closed
    revolving = closed["product"].is_in(["bnpl", "credit_card"])
    assert revolving.sum() > 0 and (~revolving).sum() > 0
    for table, column in (("collection_actions", "action_at"), ("treatments", "start_at")):
        rows = _read(portfolio, table).join(closed, on="account_id")
        after = rows.filter(pl.col(column).cast(pl.Date) > pl.col("last_end"))
        assert after.is_empty(), table


def test_a_closed_account_is_never_in_a_later_delinquent_population(
    portfolio: Path, spans: pl.DataFrame
):
    statements = _read(portfolio, "statements")
    spec = ObservationSpec()
    observed = observations(statements, eligible_as_of_dates(statements, spec), spec)
    end = spans["last_end"].max()
    closed = spans.filter(pl.col("last_end") < end.replace(day=1)).select("account_id", "last_end")
    later = observed.join(closed, on="account_id").filter(pl.col("as_of") > pl.col("last_end"))
    assert later.is_empty()
    # and the accounts booked later do enter it once they are delinquent
    start = spans["first_end"].min().replace(day=1)
    booked = spans.filter(pl.col("first_end").dt.month_start() > start).select("account_id")
    assert observed.join(booked, on="account_id").height > 0


def test_the_active_book_stays_within_its_band(portfolio: Path):
    statements = _read(portfolio, "statements")
    active = (
        statements.filter(pl.col("dpd") < 180)
        .group_by(pl.col("cycle_end").dt.month_start().alias("month"))
        .len()
        .sort("month")["len"]
        .to_numpy()
    )
    assert len(active) == MONTHS
    assert np.abs(active / active[0] - 1.0).max() <= BOOK_BAND


def test_the_closed_cohort_is_still_there_when_the_book_is_shut(tmp_path: Path):
    rules = replace(DEFAULT_RULES, book=BookRules(open_book=False))
    write_portfolio(tmp_path, 400, 6, seed=3, rules=rules)
    counts = _read(tmp_path, "statements").group_by("account_id").len()["len"]
    assert counts.len() == 400 and (counts == 6).all()


def _current_instalment_lines(rules: SimulationRules, n: int = 10_000):
    arrays = rule_arrays(rules)
    world = make_world(rules, seed=1, months=12, start_month="2024-01")
    accounts, state = draw_accounts(rules, arrays, world, np.random.default_rng(0), 0, n)
    accounts = replace(
        accounts,
        product=np.full(n, PRODUCTS.index("cash_loan")),
        driver=np.full(n, DRV["healthy"]),
        term=np.full(n, 12, dtype=np.int64),
        open_month=np.full(n, world.first_month),
    )
    state = replace(state, instalment=state.balance / 12)  # 12 instalments to go: not paid down
    return arrays, world, accounts, state


def _step(rules, arrays, world, accounts, state, month: int):  # noqa: ANN001, ANN202
    zero = np.zeros(len(state.bucket))
    return transition(
        rules, accounts, arrays, world, state, zero, zero, zero.astype(bool), month,
        np.random.default_rng(abs(month)),
    )  # fmt: skip


def test_a_prepayment_pays_the_whole_balance_and_the_account_stops():
    products = dict(DEFAULT_RULES.products)
    products["cash_loan"] = replace(products["cash_loan"], prepayment_rate=0.3)
    rules = replace(DEFAULT_RULES, products=products)
    arrays, world, accounts, state = _current_instalment_lines(rules)
    after = _step(rules, arrays, world, accounts, state, 0)
    closed = after.closed_at == 1
    stayed = (after.bucket == 0) & ~closed
    # the share of current lines that prepay is the rule's rate (binomial sd about 0.005)
    assert closed.sum() / (after.bucket == 0).sum() == pytest.approx(0.3, abs=0.02)
    np.testing.assert_allclose(after.last_paid[closed], state.balance[closed], rtol=1e-12)
    assert (after.balance[closed] == 0).all()
    np.testing.assert_allclose(after.last_paid[stayed], state.instalment[stayed], rtol=1e-12)
    # a closed account does not move again: nothing paid, nothing owed, no roll
    later = _step(rules, arrays, world, accounts, after, 1)
    assert (later.last_paid[closed] == 0).all() and (later.bucket[closed] == 0).all()
    assert (later.balance[closed] == 0).all()


def test_nothing_moves_before_an_account_is_booked_and_nothing_closes_in_the_burn_in():
    rules = DEFAULT_RULES
    arrays, world, accounts, state = _current_instalment_lines(rules)
    accounts = replace(accounts, open_month=np.full(len(state.bucket), 5))
    after = _step(rules, arrays, world, accounts, state, 4)
    np.testing.assert_array_equal(after.balance, state.balance)
    assert (after.last_paid == 0).all() and (after.bucket == 0).all()
    products = dict(rules.products)
    products["cash_loan"] = replace(products["cash_loan"], prepayment_rate=1.0)
    prepaying = replace(rules, products=products)
    arrays, world, accounts, state = _current_instalment_lines(prepaying)
    burn_in = _step(prepaying, arrays, world, accounts, state, world.first_month)
    assert (burn_in.closed_at > MONTHS).all()


def test_the_replay_sees_the_same_book_and_counts_a_prepayment_as_cash_at_par(portfolio: Path):
    sim = read_simulation_params(portfolio)
    statements = load_portfolio(portfolio).statements
    month = 12
    ids = [f"A{i:09d}" for i in range(sim.accounts)]
    replay = replay_to_month(sim, ids, month, 2, statements)
    assert replay.replay_match_share == pytest.approx(1.0)
    cycle = statements.filter(pl.col("cycle_end").dt.month_start() == pl.date(2025, 1, 1))
    on_book = {a for a, flag in zip(replay.account_ids, replay.on_book, strict=True) if flag}
    assert on_book == set(cycle["account_id"].to_list())  # not booked yet / closed: off it

    # every current instalment line on the book prepays in the horizon's first month
    products = {name: replace(p, prepayment_rate=1.0) for name, p in sim.rules.products.items()}
    rules = replace(sim.rules, products=products)
    current = (replay.state.bucket == 0) & ~replay.state.plan & replay.on_book
    chosen = [a for a, keep in zip(replay.account_ids, current, strict=True) if keep]
    sub = replay_to_month(sim, chosen, month, 1, statements)
    sub = replace(sub, rules=rules, arrays=rule_arrays(rules))
    n = len(chosen)
    no = np.zeros(n, dtype=bool)
    unused = ModelPlan(np.zeros((n, len(CHANNELS)), dtype=np.int64), no, no, no, no, no.astype(int))
    result = run_arm(sub, "baseline_tiered", unused, load_action_costs(), 1, seed=1)
    instalment = ~sub.arrays.revolving[sub.accounts.product]
    closed = instalment & (result.end_balance == 0)
    assert closed.sum() > 0.9 * instalment.sum()
    # the prepaid balance is cash collected, at par, and nothing is left to value
    np.testing.assert_allclose(result.recovered[closed], sub.state.balance[closed], rtol=1e-9)
    assert (result.end_value[closed] == 0).all()
