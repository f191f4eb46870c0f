"""The service's per-request features (features/online.py) equal the batch's polars query.

For generated histories, :func:`population_features` must return exactly the frame that
:func:`rollrisk.scoring.core.features_at` returns on the same accounts' tables: the same
population, every feature to the last bit, the same dtypes. Two sources of histories:
hypothesis-drawn accounts around every rule's edges (DPD bucket bounds, zero dues, credit
balances, payments just around the minimum, statements published after the as-of, several
statements in one month, promises before, on and after a statement, treatments running,
ended or not yet known, absent and empty optional tables), scored several at a time as the
service batches them; and the tests' synthetic portfolio at every month-end.

The batch query is held to what that equality presumes: an account's features are the same
bits computed alone and among 1,500 other accounts, before, amid or after them, and the two ways
the query adds a statement window (picked columns, or in rows) give the same bits.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import cache

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from rollrisk.features import history as history_module
from rollrisk.features.history import KEY, compute_features
from rollrisk.features.observations import ObservationSpec, eligible_as_of_dates
from rollrisk.features.online import ONLINE_FEATURES, covers, population_features
from rollrisk.features.registry import FEATURE_SET, FeatureSet
from rollrisk.features.schemas import OUTCOMES, PRODUCTS, TREATMENT_KINDS
from rollrisk.scoring.core import features_at, population
from rollrisk.serving.api_models import AccountHistory, ScoreRequest
from rollrisk.serving.request_scoring import request_body, request_tables
from tests.feature_history import History, synthetic_history

SPEC = ObservationSpec()
AS_OF = date(2024, 6, 30)


def batch_frame(accounts: list[AccountHistory], as_of: date) -> pd.DataFrame:
    """What the batch computes for these accounts: the polars query of ``score_accounts``."""
    tables = request_tables(accounts)
    people = population(tables.statements, as_of, SPEC)
    return features_at(people, as_of, tables.accounts, tables.statements,
                       tables.collection_actions, tables.treatments, FEATURE_SET)  # fmt: skip


def online_frame(accounts: list[AccountHistory], as_of: date) -> pd.DataFrame:
    tables = request_tables(accounts)
    return population_features(accounts, as_of, SPEC, FEATURE_SET,
                               with_actions=tables.collection_actions is not None,
                               with_treatments=tables.treatments is not None)  # fmt: skip


def assert_same(accounts: list[AccountHistory], as_of: date) -> pd.DataFrame:
    """The online frame of ``accounts`` equals the batch query's, bit for bit. Windowed float
    sums, means, slopes and standard deviations included: both add in the statements' order
    (history.py, "Statement window sums"), never by polars' own ``sum``, whose kernel
    (compensated or plain) and whose variance (Welford or two-pass) depend on the shape of the
    whole query."""
    expected = batch_frame(accounts, as_of)
    got = online_frame(accounts, as_of)
    # check_exact: floats bit for bit (NaN where the batch has a missing value)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    return got


def test_the_online_features_are_the_registry_s():
    assert covers(FEATURE_SET)
    assert set(FEATURE_SET.names) == ONLINE_FEATURES


def test_a_feature_set_it_does_not_cover_is_refused_with_the_missing_names():
    extra = FeatureSet("x", "0", (*FEATURE_SET.features, FEATURE_SET.features[0].__class__(
        name="new_feature", family="exposure", window_months=None, description_en="",
        description_zh="", reason_en="", reason_zh="")))  # fmt: skip
    assert not covers(extra)
    with pytest.raises(ValueError, match=r"\['new_feature'\]"):
        population_features([], AS_OF, SPEC, extra, True, True)


# --- hypothesis: accounts drawn around every rule's edges -------------------------------------

MONTH_ENDS = [date(2024, m, 28) for m in range(1, 7)]
amounts = st.sampled_from([0.0, 0.01, 49.99, 50.0, 54.99, 55.0, 100.0, 1234.56, 1e6])
balances = st.sampled_from([-250.0, 0.0, 0.01, 480.5, 999.99, 1000.0, 2500.0, 7e5])


@st.composite
def statement_rows(draw, opened: date) -> list[dict]:
    months = draw(st.integers(1, 16))
    first = (2024 * 12 + 6 - months) if draw(st.booleans()) else (2024 * 12 + 7 - months)
    rows = []
    for k in range(months):
        index = first + k
        for day in draw(st.sampled_from([(20,), (5,), (3, 27)])):  # two cycles in one month too
            cycle_end = date(index // 12, index % 12 + 1, day)
            if cycle_end < opened:
                continue
            due = draw(amounts)
            rows.append({
                "cycle_end": cycle_end.isoformat(),
                # published the same day up to after the as-of (unknown then)
                "known_at": (datetime.combine(cycle_end, datetime.min.time())
                             + timedelta(days=draw(st.sampled_from([0, 2, 12, 45])),
                                         hours=6)).isoformat(),
                "amount_due": due,
                "min_due": min(draw(st.sampled_from([0.0, 50.0, 100.0, due])), due),
                "amount_paid": draw(amounts),
                "balance": draw(balances),
                "dpd": draw(st.sampled_from([0, 1, 15, 29, 30, 59, 60, 89, 90, 120])),
            })  # fmt: skip
    return rows


@st.composite
def action_rows(draw, opened: date) -> list[dict] | None:
    if draw(st.integers(0, 5)) == 0:
        return None  # the table absent for this account
    rows = []
    for _ in range(draw(st.integers(0, 12))):
        at = datetime(2023, 10, 1) + timedelta(days=draw(st.integers(0, 300)),
                                                hours=draw(st.sampled_from([0, 9, 23])))  # fmt: skip
        if at.date() < opened:
            continue
        outcome = draw(st.sampled_from(OUTCOMES))
        promise = outcome == "promise_to_pay"
        rows.append({
            "action_at": at.isoformat(),
            "channel": "agent_call",
            "outcome": outcome,
            # a promise gives its amount and date (the contract rejects it otherwise)
            "promised_amount": draw(amounts) if promise else None,
            "promised_date": (at.date() + timedelta(days=draw(st.integers(0, 40)))).isoformat()
            if promise else None,
        })  # fmt: skip
    return rows


@st.composite
def treatment_rows(draw, opened: date) -> list[dict] | None:
    if draw(st.integers(0, 4)) == 0:
        return None
    rows = []
    for _ in range(draw(st.integers(0, 3))):
        start = datetime(2023, 6, 1) + timedelta(days=draw(st.integers(0, 420)))
        if start.date() < opened:
            continue
        rows.append({
            "kind": draw(st.sampled_from(TREATMENT_KINDS)),
            "start_at": start.isoformat(),
            "end_at": draw(st.sampled_from([None, (start + timedelta(days=30)).isoformat(),
                                            (start + timedelta(days=400)).isoformat()])),
            "known_at": (start - timedelta(days=draw(st.sampled_from([0, 1])))).isoformat(),
        })  # fmt: skip
    return rows


@st.composite
def account(draw, number: int) -> dict:
    opened = draw(st.sampled_from([date(2020, 1, 15), date(2024, 2, 10)]))
    statements = draw(statement_rows(opened))
    if not statements:
        statements = [{"cycle_end": "2024-06-20", "known_at": "2024-06-22T06:00:00",
                       "amount_due": 100.0, "min_due": 50.0, "amount_paid": 0.0,
                       "balance": 900.0, "dpd": 10}]  # fmt: skip
    return {
        "account_id": f"A-{number}", "borrower_id": f"B-{number}",
        "product": draw(st.sampled_from(PRODUCTS)), "opened_at": opened.isoformat(),
        "credit_limit": draw(st.sampled_from([0.01, 1000.0, 20000.0])), "currency": "CNY",
        "statements": statements,
        "collection_actions": draw(action_rows(opened)),
        "treatments": draw(treatment_rows(opened)),
    }  # fmt: skip


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(
    bodies=st.integers(1, 5).flatmap(lambda n: st.tuples(*(account(i) for i in range(n)))),
    as_of=st.sampled_from([date(2024, 5, 31), date(2024, 6, 10), date(2024, 6, 21), AS_OF]),
    drop=st.sampled_from([(), ("collection_actions",), ("treatments",)]),
)
def test_online_features_equal_the_batch_query_on_edge_histories(bodies, as_of, drop):
    for body in bodies:
        for table in drop:
            body[table] = None
    request = ScoreRequest.model_validate({"as_of": as_of.isoformat(), "accounts": list(bodies)})
    assert_same(list(request.accounts), as_of)


@pytest.mark.parametrize("engine", ["streaming", "in-memory"])
def test_a_ratio_has_the_same_bits_on_every_engine(engine, monkeypatch):
    """Found by the test above on a CI machine: (54.99 - 49.99) / 54.99, the overdue-to-due
    ratio of the second of two accounts, came out of the streaming plan through polars'
    reciprocal and one bit off the service's. Every feature now divides one way
    (history._divide), so each engine gives the service's bits."""

    def body(number: int, paid: float) -> dict:
        return {"account_id": f"A-{number}", "borrower_id": f"B-{number}", "product": PRODUCTS[0],
                "opened_at": "2020-01-15", "credit_limit": 1000.0, "currency": "CNY",
                "statements": [{"cycle_end": f"2024-0{month}-20",
                                "known_at": f"2024-0{month}-20T06:00:00", "amount_due": due,
                                "min_due": 0.0, "amount_paid": paid if month == 5 else 0.0,
                                "balance": -250.0, "dpd": dpd}
                               for month, due, dpd in [(5, 54.99, 1), (6, 0.0, 0), (7, 0.0, 0)]]}  # fmt: skip

    monkeypatch.setattr("rollrisk.scoring.core.feature_engine", lambda statements: engine)
    as_of = date(2024, 5, 31)
    for bodies in ([body(0, 0.0), body(1, 49.99)], [body(1, 49.99)]):
        request = ScoreRequest.model_validate({"as_of": as_of.isoformat(), "accounts": bodies})
        got = assert_same(list(request.accounts), as_of)
        assert got["overdue_to_due_ratio"].iloc[-1] == pytest.approx(5.0 / 54.99, rel=1e-12)


def test_a_ratio_over_a_vanishing_amount_is_missing_in_the_batch_and_the_service():
    """Found by an attacker: a credit limit of 1e-310 (above 0, as the contract asks) has no
    finite reciprocal, so the utilisation came out infinite; its reason text then raised
    OverflowError, a 500 from the service and the whole `rollrisk score` run stopped. A ratio
    that is not finite is missing, in both, bit for bit."""
    statements = [{"cycle_end": f"2024-0{month}-20", "known_at": f"2024-0{month}-20T06:00:00",
                   "amount_due": due, "min_due": due, "amount_paid": 0.0, "balance": 800.0,
                   "dpd": dpd}
                  for month, due, dpd in [(4, 5e-324, 0), (5, 5e-324, 25), (6, 100.0, 56)]]  # fmt: skip
    body = {"account_id": "A-tiny", "borrower_id": "B-tiny", "product": PRODUCTS[0],
            "opened_at": "2020-01-15", "credit_limit": 1e-310, "currency": "CNY",
            "statements": statements}  # fmt: skip
    as_of = date(2024, 6, 30)
    request = ScoreRequest.model_validate({"as_of": as_of.isoformat(), "accounts": [body]})
    got = assert_same(list(request.accounts), as_of)
    numbers = got.select_dtypes("number").to_numpy(dtype=np.float64)
    assert not np.isinf(numbers).any(), got.columns[np.isinf(numbers).any(axis=0)].tolist()
    assert np.isnan(got["overdue_to_limit_ratio"].iloc[0])  # 1e-310: no finite ratio
    assert got["paid_to_due_ratio_last"].iloc[0] == 0.0  # the latest due, 100, is fine


# --- the tests' synthetic portfolio at every month-end ------------------------------------------


@pytest.mark.parametrize("seed", [3, 17])
def test_online_features_equal_the_batch_query_on_a_synthetic_portfolio(seed):
    history = synthetic_history(accounts=80, months=14, seed=seed)
    ids = history.accounts["account_id"].to_list()
    scored = 0
    for as_of in eligible_as_of_dates(history.statements, SPEC):
        body = request_body(history.accounts, history.statements, history.collection_actions,
                            history.treatments, ids, as_of)  # fmt: skip
        accounts = list(ScoreRequest.model_validate(body).accounts)
        scored += len(assert_same(accounts, as_of))
        # one account at a time (a service request) gives each account the same row
        alone = pd.concat([online_frame([a], as_of) for a in accounts], ignore_index=True)
        pd.testing.assert_frame_equal(
            alone.sort_values("account_id", ignore_index=True),
            online_frame(accounts, as_of),
            check_exact=True,
            check_dtype=False,  # one-row frames concatenated may type the ids as object
        )
    assert scored >= 50  # the population is not empty: the comparison compared something


def test_the_population_rule_is_the_batch_s_on_accounts_outside_it():
    """Accounts current, in default or silent for two months are left out by both paths."""
    history = synthetic_history(accounts=80, months=8, seed=9)
    as_of = eligible_as_of_dates(history.statements, SPEC)[-1]
    body = request_body(history.accounts, history.statements, history.collection_actions,
                        history.treatments, history.accounts["account_id"].to_list(), as_of)  # fmt: skip
    accounts = list(ScoreRequest.model_validate(body).accounts)
    got = assert_same(accounts, as_of)
    assert 0 < len(got) < len(accounts)
    assert pl.Series(got["start_bucket"]).is_in(["M1", "M2", "M3"]).all()


# --- the batch query: an observation's row is its own, alone or among many ----------------------
# The service batches requests and the batch job scores the whole book, so the polars query must
# give an account the same features, to the last bit, whatever other accounts share the query
# and wherever it sorts among them (polars' own float sums do not: they add a group's values in
# blocks that depend on the group's place in the frame).

TABLES = ("accounts", "statements", "collection_actions", "treatments")


@cache
def crowd() -> History:
    """1,500 other accounts over 16 months (2023-03 .. 2024-06) to place accounts among."""
    return synthetic_history(accounts=1500, months=16, seed=23, start=(2023, 3))


def tables_of(accounts: list[AccountHistory]) -> dict[str, pl.DataFrame | None]:
    tables = request_tables(accounts)
    return {name: getattr(tables, name) for name in TABLES}


def batch_features(tables: dict[str, pl.DataFrame | None], keys: pl.DataFrame) -> pl.DataFrame:
    """``compute_features`` on these tables for these keys, sorted by key."""
    return (
        compute_features(
            keys,
            tables["accounts"],
            tables["statements"],
            tables["collection_actions"],
            tables["treatments"],
        )  # fmt: skip
        .collect()
        .sort(KEY)
    )


def in_bits(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with each Float64 column as its values' 64 bits (a missing value None): equal
    frames are then equal to the last bit, -0.0 apart from 0.0."""
    columns = []
    for column in frame.get_columns():
        if column.dtype == pl.Float64:
            bits = column.fill_null(0.0).to_numpy().view(np.int64).tolist()
            missing = column.is_null().to_list()
            column = pl.Series(column.name, [None if m else b for b, m in zip(bits, missing, strict=True)],
                               dtype=pl.Int64)  # fmt: skip
        columns.append(column)
    return pl.DataFrame(columns)


def among_the_crowd(accounts: list[AccountHistory], prefix: str) -> dict[str, pl.DataFrame]:
    """The crowd's tables with the accounts' rows added, ``prefix`` before their ids, the rows
    of every table shuffled."""
    theirs = tables_of(accounts)
    return {
        name: pl.concat(
            [getattr(crowd(), name), theirs[name].with_columns(pl.format("{}{}", pl.lit(prefix), "account_id").alias("account_id"))],
            how="vertical_relaxed",
        ).sample(fraction=1.0, shuffle=True, seed=len(prefix))
        for name in TABLES
    }  # fmt: skip


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(
    bodies=st.integers(1, 3).flatmap(lambda n: st.tuples(*(account(i) for i in range(n)))),
    as_of=st.sampled_from([date(2024, 5, 31), date(2024, 6, 10), AS_OF]),
)
def test_an_account_s_batch_features_are_the_same_alone_and_among_many(bodies, as_of):
    """Each account alone, then all of them placed before, amid and after 1,500 others (their
    ids sort them there) and computed with every observation of the crowd: the same bits in
    every feature. The drawn histories include months with two statements, so both ways the
    query adds a window (picked and in rows, features/history.py) are taken; alone, an account
    takes the small input's plan (every window in rows), among the crowd the large input's."""
    for body in bodies:
        for table in ("collection_actions", "treatments"):
            body[table] = body[table] or []  # the crowd has both tables: so do they
    request = ScoreRequest.model_validate({"as_of": as_of.isoformat(), "accounts": list(bodies)})
    accounts = list(request.accounts)
    alone = pl.concat(
        batch_features(tables_of([a]), pl.DataFrame({"account_id": [a.account_id], "as_of": [as_of]}))
        for a in accounts
    )  # fmt: skip
    crowd_ids = crowd().accounts["account_id"]
    for prefix in ("0", f"{crowd_ids[750]}-", "Z"):  # before, amid and after the crowd's ids
        tables = among_the_crowd(accounts, prefix)
        keys = tables["accounts"].select("account_id", pl.lit(as_of).alias("as_of"))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(history_module, "IN_ROWS_BELOW", 0)  # the picks, as on a large book
            together = (
                batch_features(tables, keys)
                .filter(pl.col("account_id").str.starts_with(prefix))
                .with_columns(pl.col("account_id").str.strip_prefix(prefix))
            )
        assert_frame_equal(in_bits(together), in_bits(alone))


def test_a_window_picked_adds_up_to_the_same_bits_as_in_rows(monkeypatch):
    """The query adds a statement window from picked columns, or by ``cum_sum`` over the rows
    for an observation with more statements in its widest window than are picked: on monthly
    statements, where picks cover every window, taking every observation in rows gives the
    same bits."""
    history = synthetic_history(accounts=300, months=16, seed=4)
    keys = history.accounts.join(
        pl.DataFrame({"as_of": eligible_as_of_dates(history.statements, SPEC)}), how="cross"
    ).select(KEY)
    tables = {name: getattr(history, name) for name in TABLES}
    with monkeypatch.context() as patch:
        patch.setattr(history_module, "IN_ROWS_BELOW", 0)  # the picks' plan, a large input's
        picked = batch_features(tables, keys)
        patch.setattr(history_module, "_CROWDED", pl.col("_window_statements") >= 0)
        assert_frame_equal(in_bits(batch_features(tables, keys)), in_bits(picked))
    # the plan a small input takes (a service request): every window in rows
    monkeypatch.setattr(history_module, "IN_ROWS_BELOW", tables["statements"].height + 1)
    assert_frame_equal(in_bits(batch_features(tables, keys)), in_bits(picked))
