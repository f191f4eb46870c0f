"""The portfolio simulator: determinism, data contract, driver footprints, calibration."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from rollrisk.features.schemas import TABLES
from rollrisk.models.roll_rates import (
    dpd_bucket,
    recovery_curve,
    recovery_curves,
    roll_rate_matrix,
)
from rollrisk.simulator.engine import (
    CH,
    DRV,
    KIND,
    ChunkState,
    draw_accounts,
    make_world,
    rule_arrays,
    transition,
    write_portfolio,
)
from rollrisk.simulator.rules import DEFAULT_RULES, SimulationRules
from rollrisk.storage.loader import load_portfolio

FAILED = ["no_answer", "wrong_number", "unreachable"]


def _simulate(folder: Path, accounts: int, months: int, seed: int, **kwargs) -> Path:
    folder.mkdir(parents=True)
    write_portfolio(folder, accounts, months, seed, **kwargs)
    return folder


def _read(folder: Path, table: str) -> pl.DataFrame:
    single = folder / f"{table}.parquet"
    return pl.read_parquet(single if single.exists() else folder / table / "*.parquet")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """500 accounts x 12 months; chunk size lowered to 200 so several parts are written."""
    rules = replace(DEFAULT_RULES, chunk_accounts=200)
    return _simulate(tmp_path_factory.mktemp("sim") / "p", 500, 12, seed=11, rules=rules)


@pytest.fixture(scope="module")
def medium(tmp_path_factory) -> Path:
    """6,000 accounts x 24 months: enough delinquency for rates and footprints."""
    return _simulate(tmp_path_factory.mktemp("sim") / "p", 6_000, 24, seed=3)


def test_layout_has_one_part_per_chunk_and_truth(small: Path):
    for table in ("statements", "collection_actions", "treatments"):
        parts = sorted(p.name for p in (small / table).iterdir())
        assert parts == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert (small / "accounts.parquet").exists()
    truth = pl.read_parquet(small / "truth" / "borrowers.parquet")
    assert truth.height == 500
    assert {"account_id", "borrower_id", "driver", "region", "capacity_shock_onset"} <= set(
        truth.columns
    )
    assert (small / "truth" / "params.json").read_text().count('"seed": 11') == 1


def test_same_seed_same_bytes_different_seed_different_data(tmp_path: Path):
    first = _simulate(tmp_path / "a", 300, 6, seed=5)
    second = _simulate(tmp_path / "b", 300, 6, seed=5)
    other = _simulate(tmp_path / "c", 300, 6, seed=6)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    # the four tables, truth/borrowers.parquet and params.json, and the replay's state at the
    # last two month-ends (truth/replay_state/)
    assert len(files) == 8
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert not _read(first, "statements").equals(_read(other, "statements"))


def test_output_for_an_account_does_not_depend_on_the_portfolio_size(tmp_path: Path):
    rules = replace(DEFAULT_RULES, chunk_accounts=100)
    few = _read(_simulate(tmp_path / "few", 100, 6, seed=9, rules=rules), "statements")
    many = _read(_simulate(tmp_path / "many", 250, 6, seed=9, rules=rules), "statements")
    assert many.join(few, on="account_id", how="semi").equals(few)


def test_every_table_meets_the_data_contract(small: Path):
    accounts = _read(small, "accounts")
    for table in TABLES:
        frame = _read(small, table.name)
        assert dict(frame.schema) == table.dtypes, table.name
        table.schema.validate(frame)
        if table.unique:
            assert frame.select(table.unique).is_unique().all(), table.name
        if table.references_accounts:
            assert frame.join(accounts, on="account_id", how="anti").is_empty(), table.name


def test_the_validating_loader_accepts_every_row(small: Path):
    portfolio = load_portfolio(small)
    assert portfolio.report.ok
    assert portfolio.report.rows_rejected == 0
    # every row written is read back; no longer 500 x 12: on the open book accounts are booked
    # and closed inside the window (tests/unit/test_open_book.py checks who has which months)
    assert portfolio.statements.height == _read(small, "statements").height


def test_region_and_driver_stay_in_truth(small: Path):
    assert not {"region", "driver"} & set(_read(small, "accounts").columns)
    truth = pl.read_parquet(small / "truth" / "borrowers.parquet")
    onset_known = truth["capacity_shock_onset"].is_not_null()
    assert (onset_known == (truth["driver"] == "capacity_shock")).all()


def test_statements_are_internally_consistent(medium: Path):
    statements = _read(medium, "statements")
    assert (statements["min_due"] <= statements["amount_due"] + 1e-9).all()
    # past due means something is owed: no delinquent statement shows a zero balance (an
    # account that pays its whole balance is current; one with nothing left cannot roll)
    delinquent = statements.filter(pl.col("dpd") > 0)
    assert delinquent.height > 1_000
    assert (delinquent["balance"] > 0).all()
    assert (delinquent["min_due"] > 0).all()
    delay = (statements["known_at"].dt.date() - statements["cycle_end"]).dt.total_days()
    assert delay.min() >= 1
    assert delay.max() <= 10
    assert (delay <= 3).mean() > 0.9
    # DPD moves by whole months: it is 0, stays, grows by 30, or falls by 30 (a partial cure)
    step = (
        statements.sort("account_id", "cycle_end")
        .select(
            (pl.col("dpd") - pl.col("dpd").shift(1).over("account_id")).alias("step"),
            pl.col("dpd").shift(1).over("account_id").alias("before"),
            pl.col("min_due").shift(1).over("account_id").alias("owed_before"),
            "dpd",
            "amount_paid",
        )
        .drop_nulls()
    )
    moving = step.filter((pl.col("dpd") > 0) & (pl.col("before") > 0))
    assert set(moving["step"].unique().to_list()) <= {-30, 0, 30}
    # a partial cure paid part of what the previous statement said was owed: some, not all
    back = moving.filter(pl.col("step") == -30)
    assert back.height > 0
    assert (back["amount_paid"] > 0).all()
    assert (back["amount_paid"] < back["owed_before"] + 0.01).all()
    cycle_days = statements.group_by("account_id").agg(pl.col("cycle_end").dt.day().n_unique())
    assert (cycle_days["cycle_end"] == 1).all()  # one billing day per account


def test_actions_happen_in_contact_hours_and_promises_are_complete(medium: Path):
    actions = _read(medium, "collection_actions")
    hours = actions["action_at"].dt.hour()
    assert hours.min() >= 8
    assert hours.max() <= 20
    promises = actions.filter(pl.col("outcome") == "promise_to_pay")
    assert promises.height > 100
    assert promises["promised_amount"].is_not_null().all()
    assert (promises["promised_date"] > promises["action_at"].dt.date()).all()
    others = actions.filter(pl.col("outcome") != "promise_to_pay")
    assert others["promised_amount"].is_null().all()


def test_unreachable_borrowers_leave_failed_contacts(medium: Path):
    truth = pl.read_parquet(medium / "truth" / "borrowers.parquet")
    shares = (
        _read(medium, "collection_actions")
        .join(truth.select("account_id", "driver"), on="account_id")
        .group_by("driver")
        .agg(
            pl.col("outcome").is_in(FAILED).mean().alias("failed"),
            (pl.col("outcome") == "hardship_claimed").mean().alias("hardship"),
            (pl.col("outcome") == "refused").mean().alias("refused"),
        )
    )
    share = {row["driver"]: row for row in shares.iter_rows(named=True)}
    # (a dial reaches nobody 60 % of the time whoever is called, so the gap is below 2x)
    assert share["unreachable"]["failed"] > 1.6 * share["healthy"]["failed"]
    assert share["capacity_shock"]["hardship"] > 3 * share["healthy"]["hardship"]
    assert share["low_willingness"]["refused"] > 3 * share["healthy"]["refused"]
    # noisy footprints: no driver is identified by a single outcome
    assert 0.05 < share["healthy"]["failed"] < 0.5


def _identical_accounts(driver: str, bucket: int, n: int = 20_000):
    rules = DEFAULT_RULES
    arrays = rule_arrays(rules)
    world = make_world(rules, seed=1, months=3, start_month="2024-01")
    accounts, state = draw_accounts(rules, arrays, world, np.random.default_rng(0), 0, n)
    accounts = replace(
        accounts,
        driver=np.full(n, DRV[driver]),
        product=np.zeros(n, dtype=np.int64),
        frailty=np.zeros(n),
        region=np.zeros(n, dtype=np.int64),
        shock_onset=np.full(n, -100),
        shock_end=np.full(n, 100),
        open_month=np.full(n, world.first_month),  # all on the book (none booked later)
    )
    state = replace(state, bucket=np.full(n, bucket), first_late_day=np.full(n, 10))
    return rules, arrays, world, accounts, state


def _cure_rate(driver: str, channels: tuple[str, ...] = (), treatment: str | None = None) -> float:
    rules, arrays, world, accounts, state = _identical_accounts(driver, bucket=1)
    n = len(state.bucket)
    cure = np.zeros(n)
    roll = np.zeros(n)
    for channel in channels:
        cure += arrays.channel_cure[DRV[driver], CH[channel]]
        roll += arrays.channel_roll[DRV[driver], CH[channel]]
    if treatment is not None:
        state = replace(state, treatment=np.full(n, KIND[treatment]), treatment_until=np.full(n, 5))
    after: ChunkState = transition(
        rules,
        accounts,
        arrays,
        world,
        state,
        cure,
        roll,
        np.zeros(n, bool),
        0,
        np.random.default_rng(1),
    )
    return float((after.bucket == 0).mean())


def test_a_reminder_cures_the_forgetful_but_not_a_capacity_shock():
    forgetful_gain = _cure_rate("forgetful", ("sms",)) - _cure_rate("forgetful")
    shock_gain = _cure_rate("capacity_shock", ("sms",)) - _cure_rate("capacity_shock")
    assert forgetful_gain > 0.1
    assert abs(shock_gain) < 0.02


def test_a_waiver_helps_a_capacity_shock_and_escalation_moves_the_unwilling():
    # (a grace or a restructure acts through the money, not the cure logit:
    # tests/unit/test_treatment_economics.py)
    assert (
        _cure_rate("capacity_shock", treatment="interest_waiver")
        > _cure_rate("capacity_shock") + 0.1
    )
    unwilling = _cure_rate("low_willingness")
    escalated = _cure_rate("low_willingness", ("agency_assignment", "field_visit", "legal"))
    assert escalated > unwilling + 0.15
    assert _cure_rate("low_willingness", ("sms",)) == pytest.approx(unwilling, abs=0.02)


def test_forgetful_accounts_cure_from_m1_more_than_the_unwilling(medium: Path):
    truth = pl.read_parquet(medium / "truth" / "borrowers.parquet").select("account_id", "driver")
    pairs = (
        _read(medium, "statements")
        .sort("account_id", "cycle_end")
        .with_columns(pl.col("dpd").shift(-1).over("account_id").alias("next_dpd"))
        .filter(pl.col("dpd").is_between(1, 29) & pl.col("next_dpd").is_not_null())
        .join(truth, on="account_id")
        .group_by("driver")
        .agg((pl.col("next_dpd") == 0).mean().alias("cure"))
    )
    cure = dict(pairs.iter_rows())
    assert cure["forgetful"] > cure["low_willingness"] + 0.2
    assert cure["forgetful"] > cure["unreachable"] + 0.2


def test_roll_rates_and_recovery_are_in_the_field_ranges(medium: Path):
    statements = _read(medium, "statements")
    matrix = roll_rate_matrix(statements)
    rate = {
        (r["from_bucket"], r["to_bucket"]): r["count_rate"] for r in matrix.iter_rows(named=True)
    }
    assert 0.02 <= rate["M0", "M1"] <= 0.06
    assert 0.15 <= rate["M1", "M2"] <= 0.35
    assert 0.40 <= rate["M1", "M0"] <= 0.70
    assert 0.35 <= rate["M2", "M3"] <= 0.60
    assert 0.55 <= rate["M3", "M4"] <= 0.80
    at_90 = recovery_curve(statements, 90, 12)
    at_180 = recovery_curve(statements, 180, 12)
    assert at_90["recovered_share"].max() < 0.5
    assert 0.03 < at_180["recovered_share"][11] < 0.2
    assert statements.filter(pl.col("dpd") > 0).height > 5_000


def test_treatments_follow_hardship_claims_and_first_delinquencies(medium: Path):
    treatments = _read(medium, "treatments")
    kinds = set(treatments["kind"].unique())
    assert kinds == {
        "grace_period",
        "interest_waiver",
        "restructure",
        "first_delinquency_extension",
    }
    assert (treatments["end_at"] >= treatments["start_at"]).all()
    hardship = _read(medium, "collection_actions").filter(pl.col("outcome") == "hardship_claimed")
    relief = treatments.filter(pl.col("kind") != "first_delinquency_extension")
    assert relief.join(hardship, on="account_id", how="anti").is_empty()


def test_holdout_accounts_get_only_reminders(medium: Path):
    holdout = pl.read_parquet(medium / "truth" / "borrowers.parquet").filter("holdout")
    assert 0.03 < holdout.height / 6_000 < 0.07
    channels = _read(medium, "collection_actions").join(holdout, on="account_id", how="semi")
    assert set(channels["channel"].unique()) == {"sms"}


def test_roll_rate_matrix_on_a_hand_made_history():
    statements = pl.DataFrame(
        {
            "account_id": ["A"] * 4 + ["B"] * 3,
            "cycle_end": [date(2024, m, 5) for m in (1, 2, 3, 4)]
            + [date(2024, m, 9) for m in (1, 2, 4)],
            "dpd": [0, 12, 42, 0, 0, 0, 3],
            "balance": [100.0, 200.0, 300.0, 400.0, 10.0, 30.0, 50.0],
        }
    )
    matrix = roll_rate_matrix(statements)
    rows = {(r["from_bucket"], r["to_bucket"]): r for r in matrix.iter_rows(named=True)}
    # B's February -> April is not a month-over-month pair
    assert set(rows) == {("M0", "M1"), ("M0", "M0"), ("M1", "M2"), ("M2", "M0")}
    assert rows["M0", "M1"]["count_rate"] == pytest.approx(0.5)
    assert rows["M0", "M1"]["balance_rate"] == pytest.approx(100 / 110)
    assert rows["M2", "M0"]["accounts"] == 1


def _recovery_by_definition(rows: list[dict], entry_dpd: int, horizon: int) -> list[tuple]:
    """The recovery curve account by account, as its docstring defines it."""
    by_account: dict[str, list[dict]] = {}
    for row in rows:
        by_account.setdefault(row["account_id"], []).append(row)
    curve = []
    for h in range(1, horizon + 1):
        paid = at_entry = 0.0
        accounts = 0
        for history in by_account.values():
            history = sorted(history, key=lambda r: r["cycle_end"])
            entry = next(
                (
                    i
                    for i, r in enumerate(history)
                    if r["dpd"] is not None and r["dpd"] >= entry_dpd
                ),
                None,
            )
            if entry is None or not (history[entry]["balance"] or 0) > 0:
                continue
            if len(history) - 1 - entry < h:  # not observed h months after the entry
                continue
            accounts += 1
            at_entry += history[entry]["balance"]
            paid += sum(r["amount_paid"] or 0.0 for r in history[entry + 1 : entry + 1 + h])
        curve.append((h, accounts, at_entry, paid / at_entry if at_entry else None))
    return curve


def test_recovery_curves_follow_their_definition_on_a_hand_made_history():
    # rows out of order; A enters 30 at its 2nd statement and pays 3 times; B enters with no
    # positive balance (left out); C enters late (seen 1 month); D has a missing DPD and
    # payment; E never reaches 30
    rows = [
        {"account_id": "A", "cycle_end": date(2024, 3, 5), "dpd": 65, "balance": 310.0, "amount_paid": 5.0},
        {"account_id": "A", "cycle_end": date(2024, 1, 5), "dpd": 0, "balance": 100.0, "amount_paid": 50.0},
        {"account_id": "A", "cycle_end": date(2024, 2, 5), "dpd": 35, "balance": 300.0, "amount_paid": 0.0},
        {"account_id": "A", "cycle_end": date(2024, 4, 5), "dpd": 0, "balance": 90.0, "amount_paid": 220.0},
        {"account_id": "A", "cycle_end": date(2024, 5, 5), "dpd": 31, "balance": 95.0, "amount_paid": 1.0},
        {"account_id": "B", "cycle_end": date(2024, 1, 9), "dpd": 40, "balance": -5.0, "amount_paid": 9.0},
        {"account_id": "B", "cycle_end": date(2024, 2, 9), "dpd": 70, "balance": 20.0, "amount_paid": 9.0},
        {"account_id": "C", "cycle_end": date(2024, 4, 1), "dpd": 0, "balance": 500.0, "amount_paid": 0.0},
        {"account_id": "C", "cycle_end": date(2024, 5, 1), "dpd": 33, "balance": 520.0, "amount_paid": 0.0},
        {"account_id": "C", "cycle_end": date(2024, 6, 1), "dpd": 63, "balance": 540.0, "amount_paid": 40.0},
        {"account_id": "D", "cycle_end": date(2024, 1, 2), "dpd": None, "balance": 80.0, "amount_paid": None},
        {"account_id": "D", "cycle_end": date(2024, 2, 2), "dpd": 30, "balance": 80.0, "amount_paid": None},
        {"account_id": "D", "cycle_end": date(2024, 3, 2), "dpd": 60, "balance": 85.0, "amount_paid": 7.0},
        {"account_id": "E", "cycle_end": date(2024, 1, 3), "dpd": 12, "balance": 60.0, "amount_paid": 60.0},
    ]  # fmt: skip
    statements = pl.DataFrame(rows)
    curves = recovery_curves(statements, (1, 30, 60, 400), 4)
    for entry in (1, 30, 60, 400):
        expected = _recovery_by_definition(rows, entry, 4)
        got = curves[entry]
        assert got.columns == ["months_after", "accounts", "balance_at_entry", "recovered_share"]
        assert got["months_after"].to_list() == [h for h, *_ in expected]
        assert got["accounts"].to_list() == [n for _, n, *_ in expected]
        assert got["balance_at_entry"].to_list() == pytest.approx([b for *_, b, _ in expected])
        shares = got["recovered_share"].to_list()
        for share, (*_, want) in zip(shares, expected, strict=True):
            assert (share is None) == (want is None)
            if want is not None:
                assert share == pytest.approx(want, rel=1e-12)
    # A, C and D enter at 30 (B's balance is not positive); after 1 month A paid 5, C 40, D 7
    first = curves[30].row(0, named=True)
    assert first["accounts"] == 3
    assert first["recovered_share"] == pytest.approx(52.0 / 900.0)
    assert curves[400]["accounts"].to_list() == [0] * 4
    assert recovery_curve(statements, 30, 4).equals(curves[30])
    # rows already in account order (a portfolio's usual order) skip the sort: the same curves
    in_order = recovery_curves(statements.sort("account_id", "cycle_end"), (1, 30, 60, 400), 4)
    assert all(in_order[entry].equals(curves[entry]) for entry in (1, 30, 60, 400))


def test_rules_are_frozen_and_serialisable():
    rules = SimulationRules()
    with pytest.raises(AttributeError):
        rules.frailty_sd = 0.0  # type: ignore[misc]
    params = rules.to_dict()
    assert params["channel_response"]["forgetful"]["sms"]["cure"] > 0
    assert params["drivers_order"][0] == "healthy"


def test_dpd_bucket_boundaries():
    dpd = pl.Series("dpd", [0, 1, 29, 30, 59, 60, 89, 90, 179, 180, 3650])
    buckets = pl.select(dpd_bucket(pl.lit(dpd))).to_series().to_list()
    assert buckets == ["M0", "M1", "M1", "M2", "M2", "M3", "M3", "M4", "M6", "M7+", "M7+"]
