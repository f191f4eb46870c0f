"""Feature registry consistency and hand-computed feature values on a one-account history."""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from pandera.errors import SchemaErrors

from rollrisk.features import history
from rollrisk.features.history import compute_features
from rollrisk.features.observations import ObservationSpec, eligible_as_of_dates
from rollrisk.features.registry import FAMILIES, FEATURE_SET, format_reason, is_flag
from rollrisk.features.training_set import (
    LEADING_COLUMNS,
    build_training_set,
    feature_columns,
    validate_training_set,
)
from tests.feature_history import synthetic_history

AS_OF = date(2024, 6, 30)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "features.md"
PROTECTED = ("age", "sex", "gender", "marital", "ethnic", "race", "region", "province", "city",
             "birth", "religion", "nationality")  # fmt: skip


# -- the registry ------------------------------------------------------------------------------


def test_every_registered_feature_has_exactly_one_expression_under_its_source():
    declared: dict[str, str] = {}
    for source, features in history.SOURCES.items():
        for name in features:
            assert name not in declared, f"{name} declared twice"
            declared[name] = source
    assert sorted(declared) == sorted(FEATURE_SET.names)
    for spec in FEATURE_SET.features:
        assert declared[spec.name] == spec.source, spec.name


def test_registry_entries_are_complete_and_speak_both_languages():
    assert len(set(FEATURE_SET.names)) == len(FEATURE_SET.names)
    assert FEATURE_SET.name and re.fullmatch(r"\d+\.\d+\.\d+", FEATURE_SET.version)
    assert {spec.family for spec in FEATURE_SET.features} == set(FAMILIES)
    cjk = re.compile(r"[\u4e00-\u9fff]")
    for spec in FEATURE_SET.features:
        assert spec.direction in (-1, 0, 1)
        assert spec.description_en.endswith(".") and cjk.search(spec.description_zh), spec.name
        value = "cash_loan" if spec.kind == "categorical" else 1.0 if is_flag(spec) else 3.0
        assert format_reason(spec.reason_en, value) and cjk.search(
            format_reason(spec.reason_zh, value)
        )
    assert FEATURE_SET.spec("dpd_current").direction == 1
    assert FEATURE_SET.spec("product").kind == "categorical"


def test_no_protected_attribute_is_a_feature():
    for name in FEATURE_SET.names:
        words = name.split("_")
        assert not any(word.startswith(p) for word in words for p in PROTECTED), name


def test_documentation_lists_every_feature_with_its_family():
    text = DOCS.read_text(encoding="utf-8")
    for spec in FEATURE_SET.features:
        row = next(
            (line for line in text.splitlines() if line.startswith(f"| `{spec.name}` |")), None
        )
        assert row is not None, f"{spec.name} missing from docs/features.md"
        assert spec.family in row


# -- hand-computed values ----------------------------------------------------------------------


def _ts(*args: int) -> datetime:
    return datetime(*args)


def one_account_portfolio() -> dict[str, pl.DataFrame]:
    accounts = pl.DataFrame(
        {
            "account_id": ["X", "Y"],
            "borrower_id": ["BX", "BY"],
            "product": ["cash_loan", "bnpl"],
            "opened_at": [date(2023, 6, 15), date(2024, 1, 1)],
            "credit_limit": [1_000.0, 500.0],
            "currency": ["CNY", "CNY"],
        }
    )
    # month: (dpd, amount_due, min_due, amount_paid, balance); July is published after the as-of
    x = {1: (0, 100, 10, 100, 500), 2: (15, 100, 10, 0, 600), 3: (0, 100, 10, 110, 600),
         4: (0, 100, 10, 10, 700), 5: (12, 100, 10, 5, 800), 6: (42, 200, 20, 0, 900),
         7: (72, 200, 20, 0, 950)}  # fmt: skip
    rows = [("X", m, *v) for m, v in x.items()] + [("Y", 6, 20, 50, 5, 0, 100)]
    statements = pl.DataFrame(
        {
            "account_id": [r[0] for r in rows],
            "cycle_end": [date(2024, r[1], 10) for r in rows],
            "known_at": [_ts(2024, r[1], 12, 6) for r in rows],
            "amount_due": [float(r[3]) for r in rows],
            "min_due": [float(r[4]) for r in rows],
            "amount_paid": [float(r[5]) for r in rows],
            "balance": [float(r[6]) for r in rows],
            "dpd": [r[2] for r in rows],
        }
    ).with_columns(pl.col("known_at").cast(pl.Datetime("us")))
    actions = pl.DataFrame(
        {
            "account_id": ["X"] * 8,
            "action_at": [
                _ts(2024, 1, 15, 9),
                _ts(2024, 4, 2, 10),
                _ts(2024, 5, 20, 10),
                _ts(2024, 6, 20, 10),
                _ts(2024, 6, 25, 9),
                _ts(2024, 6, 28, 9),
                _ts(2024, 6, 29, 9),
                _ts(2024, 7, 2, 9),
            ],  # fmt: skip
            "channel": ["agent_call"] * 8,
            "outcome": [
                "refused",
                "promise_to_pay",
                "promise_to_pay",
                "promise_to_pay",
                "no_answer",
                "wrong_number",
                "no_answer",
                "refused",
            ],  # fmt: skip
            "promised_amount": [None, 8.0, 50.0, 30.0, None, None, None, None],
            "promised_date": [
                None,
                date(2024, 4, 5),
                date(2024, 5, 25),
                date(2024, 7, 5),
                None,
                None,
                None,
                None,
            ],  # fmt: skip
        }
    ).with_columns(pl.col("action_at").cast(pl.Datetime("us")))
    treatments = pl.DataFrame(
        {
            "account_id": ["X", "X", "X"],
            "kind": ["grace_period", "restructure", "interest_waiver"],
            "start_at": [_ts(2024, 3, 1), _ts(2024, 6, 15), _ts(2024, 7, 5)],
            "end_at": [_ts(2024, 4, 1), None, None],
            "known_at": [_ts(2024, 3, 1), _ts(2024, 6, 15), _ts(2024, 7, 5)],
        }
    ).with_columns(pl.col("start_at", "end_at", "known_at").cast(pl.Datetime("us")))
    return {"accounts": accounts, "statements": statements, "collection_actions": actions,
            "treatments": treatments}  # fmt: skip


def features_of(tables: dict[str, pl.DataFrame | None], account: str = "X") -> dict[str, object]:
    keys = pl.DataFrame({"account_id": ["X", "Y"], "as_of": [AS_OF, AS_OF]})
    frame = compute_features(
        keys,
        tables["accounts"],
        tables["statements"],
        tables.get("collection_actions"),
        tables.get("treatments"),
    ).collect()
    return frame.filter(pl.col("account_id") == account).row(0, named=True)


def test_delinquency_history_features_by_hand():
    f = features_of(one_account_portfolio())
    expected = {
        "dpd_current": 42, "dpd_max_3m": 42, "dpd_max_6m": 42, "dpd_max_12m": 42,
        "months_in_m1_3m": 1, "months_in_m2_3m": 1, "months_in_m3_3m": 0,
        "months_in_m1_6m": 2, "months_in_m1_12m": 2, "months_delinquent_12m": 3,
        "consecutive_delinquent_months": 2, "roll_count_12m": 3, "cure_count_12m": 1,
        "delinquency_episodes_12m": 2, "months_since_previous_delinquency": 4,
        "first_delinquency": 0,
    }  # fmt: skip
    assert {k: f[k] for k in expected} == pytest.approx(expected)


def test_payment_and_exposure_features_by_hand():
    f = features_of(one_account_portfolio())
    balances = np.array([500, 600, 600, 700, 800, 900]) / 1_000
    slope = np.polyfit(np.arange(-5, 1), balances, 1)[0]
    expected = {
        "paid_to_due_ratio_last": 0.0, "paid_to_due_ratio_3m": 15 / 400,
        "paid_to_due_ratio_6m": 225 / 700, "paid_to_min_due_ratio_3m": 15 / 40,
        "min_due_only_streak": 0, "min_due_only_months_6m": 1, "partial_payments_6m": 1,
        "zero_payments_3m": 1, "utilisation_current": 0.9, "utilisation_mean_6m": 4.1 / 6,
        "utilisation_trend_6m": slope, "balance_current": 900, "amount_overdue": 200,
        "overdue_to_limit_ratio": 0.2, "credit_limit": 1_000, "days_since_statement": 20,
        "months_on_book": 12, "as_of_month": 6,
    }  # fmt: skip
    assert {k: f[k] for k in expected} == pytest.approx(expected, rel=1e-9)
    assert f["product"] == "cash_loan"


def test_willingness_contactability_and_treatment_features_by_hand():
    f = features_of(one_account_portfolio())
    expected = {
        "promises_made_3m": 3, "promises_kept_6m": 1, "promises_broken_6m": 1,
        "promise_keep_rate_6m": 0.5, "refusals_6m": 1, "disputes_6m": 0,
        "hardship_claims_6m": 0, "actions_3m": 6, "contact_rate_3m": 0.5,
        "no_answers_3m": 2, "wrong_numbers_6m": 1, "unreachable_6m": 0,
        "failed_contact_streak": 3, "days_since_last_contact": 10 + 14 / 24,
        "grace_periods_12m": 1, "interest_waivers_12m": 0, "restructures_ever": 1,
        "extensions_ever": 0, "treatment_active": 1, "months_since_last_treatment": 0,
    }  # fmt: skip
    assert {k: f[k] for k in expected} == pytest.approx(expected, rel=1e-9)


def test_dynamics_features_by_hand():
    # account X at 2024-06-30 knows the statements of January..June (July is published later)
    f = features_of(one_account_portfolio())
    dpd = np.array([0, 15, 0, 0, 12, 42], dtype=float)
    paid_to_due = np.array([100, 0, 110, 10, 5, 0]) / np.array([100, 100, 100, 100, 100, 200])
    utilisation = np.array([500, 600, 600, 700, 800, 900]) / 1_000
    months = np.arange(-5, 1)

    def slope(values: np.ndarray, window: int) -> float:
        return float(np.polyfit(months[-window:], values[-window:], 1)[0])

    expected = {
        "dpd_change_last": 30, "dpd_last_minus_mean_6m": 42 - dpd.mean(),
        "dpd_last_minus_mean_12m": 42 - dpd.mean(), "dpd_trend_3m": slope(dpd, 3),
        "dpd_trend_6m": slope(dpd, 6), "dpd_trend_12m": slope(dpd, 6),
        "dpd_volatility_6m": dpd.std(ddof=1), "dpd_volatility_12m": dpd.std(ddof=1),
        "months_since_last_cure": 3,  # March: back from M1 to current
        "months_since_last_payment": 1,  # May paid 5, June nothing
        "months_since_last_full_payment": 3,  # March paid 110 of 100
        "paid_to_due_ratio_12m": 225 / 700, "paid_to_due_change_last": 0 - 0.05,
        "paid_to_due_last_minus_mean_6m": 0 - paid_to_due.mean(),
        "paid_to_due_trend_6m": slope(paid_to_due, 6),
        "paid_to_due_volatility_6m": paid_to_due.std(ddof=1),
        "overdue_to_due_ratio": 1.0, "utilisation_change_last": 0.1,
        "utilisation_last_minus_mean_12m": 0.9 - utilisation.mean(),
        "utilisation_trend_3m": slope(utilisation, 3),
        "utilisation_trend_12m": slope(utilisation, 6),
        "utilisation_volatility_6m": utilisation.std(ddof=1),
        "utilisation_volatility_12m": utilisation.std(ddof=1),
        # actions up to June 30: refused (Jan), promises (Apr, May, Jun 20), no answer x2,
        # wrong number; the April promise was kept, May's broken (promised May 25)
        "days_since_last_promise": 10 + 14 / 24, "days_since_last_broken_promise": 36,
        "promise_keep_rate_12m": 0.5, "contact_rate_6m": 4 / 7, "no_answer_rate_3m": 2 / 6,
        "promise_rate_6m": 3 / 4, "refusal_rate_6m": 1 / 4,
    }  # fmt: skip
    assert {k: f[k] for k in expected} == pytest.approx(expected, rel=1e-9)
    assert f["days_since_last_hardship_claim"] is None  # never claimed


def test_dynamics_need_their_events_and_two_statements():
    # account Y: one statement (June), no action: no previous month, no spread, no event
    f = features_of(one_account_portfolio(), account="Y")
    for name in ("dpd_change_last", "dpd_trend_3m", "dpd_volatility_6m",
                 "utilisation_change_last", "paid_to_due_trend_6m", "months_since_last_cure",
                 "months_since_last_full_payment", "days_since_last_promise",
                 "days_since_last_broken_promise", "promise_keep_rate_12m", "contact_rate_6m",
                 "promise_rate_6m", "refusal_rate_6m", "no_answer_rate_3m"):  # fmt: skip
        assert f[name] is None, name
    assert f["dpd_last_minus_mean_6m"] == pytest.approx(0.0)
    assert f["months_since_last_payment"] is None  # nothing paid in its known history
    assert f["overdue_to_due_ratio"] == pytest.approx(1.0)  # 50 due, nothing paid


def test_account_without_actions_has_zero_counts_and_missing_rates():
    f = features_of(one_account_portfolio(), account="Y")
    assert f["actions_3m"] == 0 and f["promises_broken_6m"] == 0 and f["treatment_active"] == 0
    assert f["contact_rate_3m"] is None and f["days_since_last_contact"] is None
    assert f["promise_keep_rate_6m"] is None and f["months_since_last_treatment"] is None
    assert f["first_delinquency"] == 1 and f["months_since_previous_delinquency"] is None


def test_missing_optional_tables_leave_their_features_missing_not_failing():
    tables = one_account_portfolio()
    f = features_of({"accounts": tables["accounts"], "statements": tables["statements"]})
    for spec in FEATURE_SET.features:
        if spec.source in ("collection_actions", "treatments"):
            assert f[spec.name] is None, spec.name
        else:
            assert f[spec.name] is not None or spec.name in (
                "months_since_previous_delinquency",
            ), spec.name
    assert f["dpd_current"] == 42


def test_feature_dtypes_are_float_except_categoricals():
    keys = pl.DataFrame({"account_id": ["X"], "as_of": [AS_OF]})
    t = one_account_portfolio()
    frame = compute_features(keys, t["accounts"], t["statements"]).collect()
    assert frame.columns == ["account_id", "as_of", *FEATURE_SET.names]
    for spec in FEATURE_SET.features:
        expected = pl.String if spec.kind == "categorical" else pl.Float64
        assert frame.schema[spec.name] == expected, spec.name


# -- training sets -----------------------------------------------------------------------------


def test_training_set_has_the_interface_columns_and_passes_its_schema():
    h = synthetic_history(accounts=150, months=8, seed=5)
    spec = ObservationSpec()
    built = build_training_set(
        h.accounts, h.statements, eligible_as_of_dates(h.statements, spec), spec,
        h.collection_actions, h.treatments,
    )  # fmt: skip
    frame = built.training_set
    assert frame.columns == [*LEADING_COLUMNS, *feature_columns()]
    assert frame.height > 0 and frame["rolled_to_default"].dtype == pl.Int8
    validate_training_set(frame)
    assert built.summary["labelled"].sum() == frame.height
    assert built.summary["positives"].sum() == frame["rolled_to_default"].sum()


def test_six_months_of_statements_without_action_logs_still_builds():
    h = synthetic_history(accounts=200, months=6, seed=8)
    spec = ObservationSpec()
    dates = eligible_as_of_dates(h.statements, spec)
    assert len(dates) == 3
    frame = build_training_set(h.accounts, h.statements, dates, spec).training_set
    validate_training_set(frame)
    assert frame.height > 0
    assert frame["promises_broken_6m"].null_count() == frame.height
    assert frame["dpd_max_12m"].null_count() == 0  # a 12-month window over 6 months of data


def test_training_set_schema_rejects_a_bad_label_and_a_missing_feature():
    h = synthetic_history(accounts=100, months=6, seed=2)
    spec = ObservationSpec()
    frame = build_training_set(
        h.accounts, h.statements, eligible_as_of_dates(h.statements, spec), spec
    ).training_set
    bad_label = frame.with_columns(pl.lit(2, dtype=pl.Int8).alias("rolled_to_default"))
    with pytest.raises(SchemaErrors, match="rolled_to_default"):
        validate_training_set(bad_label)
    with pytest.raises(SchemaErrors, match="dpd_current"):
        validate_training_set(frame.drop("dpd_current"))


# -- credit balances (issue 14) ------------------------------------------------------------------


def _with_balances(tables: dict[str, pl.DataFrame], balances: dict[int, float]):
    """``tables`` with X's balance of the given statement months replaced, nothing due then."""
    month = pl.col("cycle_end").dt.month()
    changed = (pl.col("account_id") == "X") & month.is_in(list(balances))
    replaced = month.replace_strict(balances, default=None, return_dtype=pl.Float64)
    statements = tables["statements"].with_columns(
        pl.when(changed).then(replaced).otherwise("balance").alias("balance"),
        *(pl.when(changed).then(0.0).otherwise(c).alias(c) for c in ("amount_due", "min_due")),
    )
    return {**tables, "statements": statements}


def test_a_credit_balance_reads_as_nothing_owed_in_every_feature():
    """A negative balance (a credit, after an overpayment or a refund) with nothing due gives
    the features of a zero balance: no negative utilisation that would lower the risk below
    that of an account owing nothing, no negative exposure, no division blow-up."""
    base = one_account_portfolio()
    credit = features_of(_with_balances(base, {5: -300.0, 6: -1_200.0}))
    zero = features_of(_with_balances(base, {5: 0.0, 6: 0.0}))
    assert credit.keys() == zero.keys()
    for name, value in zero.items():
        if isinstance(value, float):
            assert credit[name] == pytest.approx(value, rel=1e-12), name
        else:
            assert credit[name] == value, name
    balances = np.array([500, 600, 600, 700, 0, 0]) / 1_000
    expected = {
        "utilisation_current": 0.0,
        "utilisation_mean_6m": balances.mean(),
        "utilisation_trend_6m": np.polyfit(np.arange(-5, 1), balances, 1)[0],
        "balance_current": 0.0,
        "amount_overdue": 0.0,  # nothing due, so nothing overdue (amount_paid is 0)
        "overdue_to_limit_ratio": 0.0,
        "zero_payments_3m": 0,  # a month with nothing due is not a missed payment
    }
    assert {k: credit[k] for k in expected} == pytest.approx(expected, rel=1e-9)
    assert credit["paid_to_due_ratio_last"] is None  # nothing was due: no ratio, not inf
    assert all(math.isfinite(value) for value in credit.values() if isinstance(value, float))


def test_the_statement_rows_one_sort_key_orders_as_observation_then_cycle_end():
    """The statement rows are sorted on one integer made of the observation number and the
    day: it must order as the two columns at their extremes (the largest UInt32 number, days
    before 1970 and far after), where a signed 64-bit product overflowed."""
    rng = np.random.default_rng(5)
    observations = pl.Series(
        [0, 1, 2**31 - 1, 2**31, 2**32 - 1, *rng.integers(0, 2**32, 200)], dtype=pl.UInt32
    )
    days = pl.Series(rng.integers(-200_000, 200_000, observations.len()), dtype=pl.Int32)
    frame = pl.DataFrame(
        {"_observation": observations, "cycle_end": days.cast(pl.Date)}
    ).with_columns(history._OBSERVATION_THEN_CYCLE_END.alias("key"))
    assert frame["key"].n_unique() == frame.unique(["_observation", "cycle_end"]).height
    assert frame.sort("key").drop("key").equals(frame.sort("_observation", "cycle_end").drop("key"))
