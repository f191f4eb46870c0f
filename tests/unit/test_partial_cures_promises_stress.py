"""Partial cures, promises kept or broken, and the stress scenarios of the simulator
(simulator/rules.py ``PARTIAL_CURE``, ``PROMISE_KEPT``, ``DynamicsRules``, ``StressRules``;
engine ``transition``, ``stressed_accounts``; docs/simulator.md "Partial cures and promises",
"Stress scenarios").

The rates are checked with common random numbers: the same accounts and draws with the event
switched off and on, so the accounts the event could touch are known exactly and its rate is
compared with the rule within a binomial tolerance (4 standard errors).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from rollrisk.cli import main
from rollrisk.simulator.engine import (
    DRV,
    ChunkState,
    draw_accounts,
    make_world,
    monthly_due,
    rule_arrays,
    transition,
)
from rollrisk.simulator.replay import replay_to_month
from rollrisk.simulator.rules import (
    DEFAULT_RULES,
    PARTIAL_CURE,
    PROMISE_KEPT,
    DynamicsRules,
    SimulationRules,
    StressRules,
)
from rollrisk.simulator.truth import read_simulation_params
from rollrisk.storage.loader import load_portfolio

N = 20_000
OFF = replace(DEFAULT_RULES, dynamics=DynamicsRules(partial_cures=False, promises=False))


def _book(driver: str, bucket: int, rules: SimulationRules = DEFAULT_RULES):
    """``N`` identical cash-loan accounts of one driver in one bucket, no capacity shock."""
    arrays = rule_arrays(rules)
    world = make_world(rules, seed=1, months=12, start_month="2024-01")
    accounts, state = draw_accounts(rules, arrays, world, np.random.default_rng(0), 0, N)
    accounts = replace(
        accounts,
        driver=np.full(N, DRV[driver]),
        product=np.full(N, 2, dtype=np.int64),
        frailty=np.zeros(N),
        region=np.zeros(N, dtype=np.int64),
        shock_onset=np.full(N, 10_000),
        shock_end=np.full(N, 10_000),
        holdout=np.zeros(N, dtype=bool),
        term=np.full(N, 12, dtype=np.int64),
        open_month=np.full(N, world.first_month),
    )
    instalment = state.balance / 12
    state = replace(
        state,
        bucket=np.full(N, bucket),
        first_late_day=np.full(N, 10),
        instalment=instalment,
        arrears=instalment * bucket,
    )
    return arrays, world, accounts, state


def _step(rules, arrays, world, accounts, state: ChunkState, promised=None) -> ChunkState:
    zero = np.zeros(N)
    return transition(
        rules, accounts, arrays, world, state, zero, zero, np.zeros(N, dtype=bool), 3,
        np.random.default_rng(5), promised, np.random.default_rng(6),
    )  # fmt: skip


def _within(observed: float, p: float, n: int) -> bool:
    return abs(observed - p) <= 4 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("driver", ["healthy", "capacity_shock", "low_willingness", "forgetful"])
def test_a_stay_at_m2_plus_partially_cures_at_the_drivers_rate(driver: str):
    arrays, world, accounts, start = _book(driver, bucket=3)
    without = _step(OFF, arrays, world, accounts, start)
    with_ = _step(DEFAULT_RULES, arrays, world, accounts, start)
    stayed = without.bucket == 3
    assert stayed.sum() > 1_000
    back = with_.bucket[stayed] == 2
    assert _within(back.mean(), PARTIAL_CURE[driver], int(stayed.sum()))
    # only the stays can move back; a cure or a roll is the same draw either way
    assert (with_.bucket[~stayed] == without.bucket[~stayed]).all()
    # the statements agree: DPD 30 less, one due plus a third of the arrears paid, the rest owed
    due = monthly_due(accounts, arrays, start)
    moved = np.flatnonzero(stayed)[back]
    expected = due[moved] + start.arrears[moved] / 3
    assert np.allclose(with_.last_paid[moved], expected)
    assert np.allclose(with_.arrears[moved], start.arrears[moved] * 2 / 3)
    assert (with_.first_late_day[moved] == start.first_late_day[moved]).all()


def test_m1_has_no_partial_cure_and_off_gives_back_the_earlier_draws():
    arrays, world, accounts, start = _book("healthy", bucket=1)
    without = _step(OFF, arrays, world, accounts, start)
    with_ = _step(DEFAULT_RULES, arrays, world, accounts, start)
    assert (with_.bucket == without.bucket).all()
    assert np.allclose(with_.last_paid, without.last_paid)


@pytest.mark.parametrize("driver", ["healthy", "low_willingness", "unreachable", "forgetful"])
def test_a_promise_is_kept_at_the_drivers_rate_and_a_kept_one_pays_what_it_promised(driver: str):
    arrays, world, accounts, start = _book(driver, bucket=2)
    owed = start.arrears + monthly_due(accounts, arrays, start)
    promised = np.round(0.5 * owed, 2)  # 1.5 dues: more than the due a stay pays
    after = _step(DEFAULT_RULES, arrays, world, accounts, start, promised)
    kept = after.last_paid >= promised - 0.005
    assert _within(kept.mean(), PROMISE_KEPT[driver], N)
    # kept: at least a partial cure; broken: no cure and no partial cure
    assert (after.bucket[kept] <= 1).all()
    assert (after.bucket[~kept] >= 2).all()


def test_a_broken_promise_raises_the_roll_rate():
    arrays, world, accounts, start = _book("low_willingness", bucket=2)
    owed = start.arrears + monthly_due(accounts, arrays, start)
    plain = _step(DEFAULT_RULES, arrays, world, accounts, start)
    promised = _step(DEFAULT_RULES, arrays, world, accounts, start, np.round(0.5 * owed, 2))
    broken = promised.last_paid < 0.5 * owed - 0.005
    assert broken.sum() > 5_000
    # the same accounts without a promise roll less often (+0.3 on the roll logit, assumption)
    assert (promised.bucket[broken] == 3).mean() > (plain.bucket[broken] == 3).mean() + 0.02


# --------------------------------------------------------------------------------------------
# Written portfolios: the payment of a kept promise by its date, and the stress flag
# --------------------------------------------------------------------------------------------
def _simulate(out: Path, *extra: str, accounts: int = 3_000) -> Path:
    assert main(["simulate", "--accounts", str(accounts), "--months", "12", "--seed", "11",
                 "--out", str(out), *extra]) == 0  # fmt: skip
    return out


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _simulate(tmp_path_factory.mktemp("plain") / "p")


def test_a_kept_promise_is_paid_on_the_statement_closing_by_its_date(plain: Path):
    """Every promise is dated by the next cycle end, and the statement that closes then shows
    the promised amount paid at least as often as the drivers keep their promises (less the
    promises an event of the month overrides: a treatment granted, a restructure)."""
    portfolio = load_portfolio(plain)
    promises = portfolio.collection_actions.filter(
        pl.col("outcome") == "promise_to_pay"
    ).with_row_index("promise")
    statements = portfolio.statements.select("account_id", "cycle_end", "amount_paid")
    after = (
        promises.with_columns(pl.col("action_at").dt.date().alias("made"))
        .join(statements, on="account_id")
        .filter(pl.col("cycle_end") >= pl.col("made"))
        .sort("cycle_end")
        .group_by("promise", maintain_order=True)
        .first()
    )
    assert after.height > 300
    assert (after["promised_date"] <= after["cycle_end"]).all()  # by the next statement
    drivers = pl.read_parquet(
        plain / "truth" / "borrowers.parquet", columns=["account_id", "driver"]
    )
    treated = portfolio.treatments.select("account_id").unique()
    shown = (
        after.join(drivers, on="account_id")
        .join(treated, on="account_id", how="anti")  # no treatment ever: nothing overrides
        .with_columns((pl.col("amount_paid") >= pl.col("promised_amount") - 0.005).alias("paid"))
        .group_by("driver")
        .agg(pl.col("paid").mean(), pl.len())
    )
    for driver, paid, n in shown.iter_rows():
        if n >= 50:
            # broken promises can still show a regular due at least as large as the promise
            assert paid >= PROMISE_KEPT[driver] - 4 * math.sqrt(
                PROMISE_KEPT[driver] * (1 - PROMISE_KEPT[driver]) / n
            ), (driver, paid, n)


def _data_files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*.parquet")) + sorted(folder.rglob("*.yaml"))
    }


def test_stress_none_writes_the_same_bytes(plain: Path, tmp_path: Path):
    none = _simulate(tmp_path / "none", "--stress", "none")
    assert _data_files(none) == _data_files(plain)
    assert (none / "truth" / "params.json").read_bytes() == (
        plain / "truth" / "params.json"
    ).read_bytes()


@pytest.mark.parametrize("kind", ["regional", "macro"])
def test_a_stress_changes_nothing_before_it_and_raises_delinquency_in_it(
    kind: str, plain: Path, tmp_path: Path
):
    stressed = _simulate(tmp_path / kind, "--stress", kind, "--stress-start", "5",
                         "--stress-months", "4")  # fmt: skip
    start = np.datetime64("2024-06")  # window month 5
    columns = ["account_id", "cycle_end", "dpd", "balance", "amount_paid"]
    base = pl.read_parquet(plain / "statements").select(columns)
    hit = pl.read_parquet(stressed / "statements").select(columns)
    before = pl.col("cycle_end") < pl.lit(start.astype("datetime64[D]").item())
    assert base.filter(before).equals(hit.filter(before))  # up to its first month, the same
    params = read_simulation_params(stressed)
    assert params.rules.stress == StressRules(kind, start_month=5, months=4)
    if kind == "regional":
        region = int(np.argmax(make_world(params.rules, 11, 12, "2024-01").region_weights))
        truth = pl.read_parquet(stressed / "truth" / "borrowers.parquet")
        ids = truth.filter(pl.col("region") == f"region_{region:02d}").select("account_id")
        base, hit = base.join(ids, on="account_id"), hit.join(ids, on="account_id")
    window = pl.col("cycle_end").is_between(
        pl.lit((start + 1).astype("datetime64[D]").item()),
        pl.lit((start + 4).astype("datetime64[D]").item() + np.timedelta64(27, "D").item()),
    )
    late = (pl.col("dpd") > 0).mean()
    assert hit.filter(window).select(late).item() > base.filter(window).select(late).item() + 0.01


@pytest.mark.parametrize("kind", ["regional", "macro"])
def test_the_replay_reproduces_a_stressed_portfolio(kind: str, tmp_path: Path):
    stressed = _simulate(tmp_path / kind, "--stress", kind, "--stress-start", "3",
                         accounts=1_500)  # fmt: skip
    sim = read_simulation_params(stressed)
    statements = pl.read_parquet(stressed / "statements")
    ids = statements.filter(pl.col("dpd").is_between(1, 89))["account_id"].unique().sort()
    replay = replay_to_month(sim, ids.to_list(), 8, 3, statements=statements)
    assert replay.replay_match_share == pytest.approx(1.0)
