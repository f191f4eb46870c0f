"""Observations, labels and eligibility on tiny hand-made histories.

(The out-of-time split is tested where training makes it, through
``rollrisk.models.training.split_training_set``, in test_training_jobs.py.)
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta

import polars as pl
import pytest

from rollrisk.errors import UserError
from rollrisk.features.dates import default_as_of_choice
from rollrisk.features.observations import (
    INCOMPLETE_WINDOW,
    LABELLED,
    NO_OUTCOME,
    ObservationSpec,
    check_as_of_dates,
    combine_summaries,
    dpd_at_as_of,
    eligible_as_of_dates,
    labelled_through,
    observation_summary,
    observations,
    partial_months_note,
    recent_statement_cutoff,
)


def statements_of(rows: dict[str, list[tuple[date, int]]], lag_days: int = 2) -> pl.DataFrame:
    """Statements for {account: [(cycle_end, dpd), ...]}, each known ``lag_days`` later."""
    records = [
        {
            "account_id": account,
            "cycle_end": cycle_end,
            "known_at": datetime.combine(cycle_end, datetime.min.time()) + timedelta(days=lag_days),
            "amount_due": 100.0,
            "min_due": 10.0,
            "amount_paid": 0.0,
            "balance": 1_000.0,
            "dpd": dpd,
        }
        for account, history in rows.items()
        for cycle_end, dpd in history
    ]
    return pl.DataFrame(records).with_columns(pl.col("known_at").cast(pl.Datetime("us")))


def monthly(
    dpds: list[int], day: int = 20, start: tuple[int, int] = (2024, 1)
) -> list[tuple[date, int]]:
    out = []
    for i, dpd in enumerate(dpds):
        index = start[0] * 12 + start[1] - 1 + i
        out.append((date(index // 12, index % 12 + 1, day), dpd))
    return out


# -- the spec ----------------------------------------------------------------------------------


def test_spec_defaults_are_the_collections_population_and_90_in_3_months():
    spec = ObservationSpec()
    assert (spec.default_dpd, spec.window_months, spec.min_dpd, spec.max_dpd) == (90, 3, 1, 89)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"window_months": 0}, "window_months must be between 1 and 36, got 0"),
        ({"min_dpd": 40, "max_dpd": 20}, "min_dpd (40) must not exceed max_dpd (20)"),
        ({"default_dpd": 30}, "max_dpd (89) must be below default_dpd (30)"),
        ({"default_dpd": "90"}, "default_dpd must be a whole number, got '90'"),
        ({"min_dpd": -1}, "min_dpd must be >= 0, got -1"),
    ],
)
def test_spec_rejects_inconsistent_settings_with_a_clear_message(values, message):
    with pytest.raises(UserError) as error:
        ObservationSpec(**values)
    assert message in str(error.value)


def test_spec_from_config_mapping_rejects_unknown_keys_and_flags_override():
    with pytest.raises(UserError, match="unknown key\\(s\\) in section 'observation': window"):
        ObservationSpec.from_mapping({"window": 6}, source="conf/x.yaml")
    spec = ObservationSpec.from_mapping({"default_dpd": 60, "max_dpd": 59})
    assert spec.with_overrides(window_months=6, min_dpd=None).window_months == 6
    assert spec.with_overrides(window_months=6).default_dpd == 60


def test_as_of_dates_must_be_month_ends():
    with pytest.raises(UserError, match="must be month-ends .* got 2024-03-30"):
        check_as_of_dates([date(2024, 3, 31), date(2024, 3, 30)])
    assert check_as_of_dates([date(2024, 4, 30), date(2024, 2, 29), date(2024, 4, 30)]) == [
        date(2024, 2, 29),
        date(2024, 4, 30),
    ]


# -- population and labels ---------------------------------------------------------------------


def test_population_is_dpd_range_at_as_of_with_its_bucket():
    statements = statements_of(
        {
            "current": monthly([0, 0, 0, 0, 0, 0]),
            "m1": monthly([0, 0, 15, 45, 75, 105]),
            "m2": monthly([0, 15, 45, 0, 0, 0]),
            "m3": monthly([15, 45, 75, 0, 0, 0]),
            "defaulted": monthly([45, 75, 105, 135, 165, 195]),
        }
    )
    observed = observations(statements, [date(2024, 3, 31)], ObservationSpec())
    assert dict(zip(observed["account_id"], observed["start_bucket"], strict=True)) == {
        "m1": "M1",
        "m2": "M2",
        "m3": "M3",
    }
    labels = dict(zip(observed["account_id"], observed["rolled_to_default"], strict=True))
    assert labels == {"m1": 1, "m2": 0, "m3": 0}  # m1 reaches 105 in June = 3rd month after March
    assert set(observed["status"]) == {LABELLED}


def test_label_counts_only_the_window_months_after_the_as_of():
    statements = statements_of({"late": monthly([15, 45, 0, 0, 0, 0, 95])})  # 90+ in July
    at_january = observations(statements, [date(2024, 1, 31)], ObservationSpec())
    assert at_january["rolled_to_default"].to_list() == [0]  # Feb..Apr: no default
    six_months = observations(statements, [date(2024, 1, 31)], ObservationSpec(window_months=6))
    assert six_months["rolled_to_default"].to_list() == [1]  # Feb..Jul: July counts


def test_default_threshold_is_configurable():
    statements = statements_of({"a": monthly([10, 40, 0, 0])})
    as_of = [date(2024, 1, 31)]
    assert observations(statements, as_of, ObservationSpec())["rolled_to_default"].to_list() == [0]
    cards = ObservationSpec(default_dpd=30, max_dpd=29)
    assert observations(statements, as_of, cards)["rolled_to_default"].to_list() == [1]


def test_a_statement_not_yet_known_at_the_as_of_does_not_set_the_dpd():
    # cycle ends on the 30th, published 3 days later: at 2024-04-30 the April statement is unknown
    statements = statements_of({"a": monthly([0, 0, 10, 40, 70, 100, 130], day=28)}, lag_days=3)
    observed = observations(statements, [date(2024, 4, 30)], ObservationSpec())
    # March's statement aged to the as-of (10 + 33 days), not April's 40
    assert observed["dpd_at_as_of"].to_list() == [43]


# -- DPD at the as-of, on any day -----------------------------------------------------------


def dpd_on(statements: pl.DataFrame, as_of: date) -> dict[str, int]:
    return dict(dpd_at_as_of(statements, as_of).iter_rows())


def test_arrears_age_from_a_billing_day_before_the_as_of_day():
    # billed on the 5th with 35 DPD, published on the 7th: on the 15th it is 10 days older
    statements = statements_of({"a": monthly([0, 5, 35], day=5)})
    assert dpd_on(statements, date(2024, 3, 15)) == {"a": 45}
    observed = observations(statements, [date(2024, 3, 15)], ObservationSpec())
    assert observed.select("dpd_at_as_of", "start_bucket").row(0) == (45, "M2")
    # before its March statement is known (the 6th), February's is aged instead
    assert dpd_on(statements, date(2024, 3, 6)) == {"a": 5 + 30}  # Feb 5 -> Mar 6: 30 days


def test_a_billing_day_after_the_as_of_day_reads_last_months_statement_aged():
    # billed on the 20th: on 15 March the March statement has not closed; February's 35 DPD
    # has aged 24 days (2024 is a leap year)
    statements = statements_of({"a": monthly([0, 35, 65], day=20)})
    assert dpd_on(statements, date(2024, 3, 15)) == {"a": 59}
    # on the same day, an account billed on the 5th is read from its March statement
    both = pl.concat([statements, statements_of({"b": monthly([0, 35, 65], day=5)})])
    assert dpd_on(both, date(2024, 3, 15)) == {"a": 59, "b": 75}
    observed = observations(both, [date(2024, 3, 15)], ObservationSpec())
    assert observed["account_id"].to_list() == ["a", "b"]  # both delinquent on the 15th
    assert observed["start_bucket"].to_list() == ["M2", "M3"]


def test_a_payment_known_by_the_as_of_cures_and_a_current_statement_is_not_aged():
    # 35 DPD in February, the March statement (5th, published on the 7th) shows it paid
    statements = statements_of({"a": monthly([0, 35, 0], day=5)})
    assert dpd_on(statements, date(2024, 3, 6)) == {"a": 65}  # the payment is not known yet
    assert dpd_on(statements, date(2024, 3, 7)) == {"a": 0}  # known by the end of the 7th
    assert dpd_on(statements, date(2024, 3, 28)) == {"a": 0}  # current: never aged
    assert observations(statements, [date(2024, 3, 28)], ObservationSpec()).height == 0


def test_an_account_not_billed_this_month_yet_is_read_from_the_month_before_last():
    # billed on the 28th and published 5 days later: on 3 March February's statement is not
    # known, January's (35 DPD) is, 35 days old; it is recent enough (after 4 January)
    statements = statements_of({"a": monthly([35, 65, 95], day=28)}, lag_days=5)
    assert recent_statement_cutoff(date(2024, 3, 3)) == date(2024, 1, 4)
    assert dpd_on(statements, date(2024, 3, 3)) == {"a": 70}
    observed = observations(statements, [date(2024, 3, 3)], ObservationSpec())
    assert observed.select("dpd_at_as_of", "start_bucket").row(0) == (70, "M3")
    # a statement older than the two months is stale: the account has stopped reporting
    stale = statements_of({"a": monthly([35], day=20, start=(2023, 12))})
    assert dpd_on(stale, date(2024, 2, 19)) == {"a": 35 + 61}  # cut off on 20 December
    assert dpd_on(stale, date(2024, 2, 20)) == {}


@pytest.mark.parametrize("year", [2023, 2024])
def test_at_month_ends_recent_statements_are_those_of_the_as_of_month_and_the_one_before(year):
    for month in range(1, 13):
        month_end = date(year, month, calendar.monthrange(year, month)[1])
        before = date(year - (month == 1), (month - 2) % 12 + 1, 1)
        assert recent_statement_cutoff(month_end) == before, month_end


def test_incomplete_window_and_no_outcome_are_excluded_and_counted():
    statements = statements_of(
        {
            "reporting": monthly([0, 0, 15, 45, 75, 0]),
            "stopped": monthly([0, 0, 15]),  # no statement after March
        }
    )
    spec = ObservationSpec()
    observed = observations(statements, [date(2024, 3, 31), date(2024, 4, 30)], spec)
    status = {(a, d): s for a, d, s in observed.select("account_id", "as_of", "status").iter_rows()}
    assert status[("reporting", date(2024, 3, 31))] == LABELLED
    assert status[("stopped", date(2024, 3, 31))] == NO_OUTCOME
    assert status[("reporting", date(2024, 4, 30))] == INCOMPLETE_WINDOW  # data ends in June
    assert status[("stopped", date(2024, 4, 30))] == INCOMPLETE_WINDOW
    assert observed.filter(pl.col("status") != LABELLED)["rolled_to_default"].null_count() == 3
    summary = observation_summary(observed)
    march = summary.filter(pl.col("as_of") == date(2024, 3, 31)).row(0, named=True)
    assert march["population"] == 2
    assert march["labelled"] == 1
    assert march["excluded_no_outcome"] == 1
    april = summary.filter(pl.col("as_of") == date(2024, 4, 30)).row(0, named=True)
    assert april["excluded_incomplete_window"] == 2
    assert april["labelled"] == 0


def test_account_that_stopped_reporting_long_ago_is_not_in_the_population():
    statements = statements_of({"old": monthly([15]), "anchor": monthly([0, 0, 0, 0, 0, 0, 0])})
    observed = observations(statements, [date(2024, 3, 31)], ObservationSpec())
    assert observed.height == 0  # 'old' last reported in January: stale by March


def test_eligible_as_of_dates_need_history_before_and_a_complete_window_after():
    statements = statements_of({"a": monthly([0] * 6, start=(2024, 1))})  # Jan..Jun 2024
    assert eligible_as_of_dates(statements, ObservationSpec()) == [
        date(2024, 1, 31),
        date(2024, 2, 29),
        date(2024, 3, 31),
    ]
    assert eligible_as_of_dates(statements, ObservationSpec(window_months=6)) == []


def test_summaries_of_disjoint_accounts_add_up_to_the_summary_of_all():
    """What the Spark engine does with its partitions' summaries: counts add, the roll rate
    is recomputed from the sums (not averaged)."""
    histories = {
        "rolls": monthly([0, 15, 45, 95, 120, 0]),
        "cures": monthly([0, 15, 0, 0, 0, 0]),
        "stopped": monthly([0, 0, 15]),
        "late": monthly([0, 0, 0, 45, 75, 95]),
    }
    dates = [date(2024, 2, 29), date(2024, 3, 31), date(2024, 4, 30)]
    spec = ObservationSpec()
    statements = statements_of(histories)
    whole = observation_summary(observations(statements, dates, spec))
    last = statements["cycle_end"].max()  # a part's windows are judged by the whole book's end
    parts = [
        observation_summary(observations(statements_of(dict([item])), dates, spec, last))
        for item in histories.items()
    ]
    combined = combine_summaries(parts)
    assert combined.select(whole.columns).rows() == whole.rows()
    alone = observations(statements_of({"stopped": histories["stopped"]}), dates, spec)
    assert alone["status"].to_list() == [INCOMPLETE_WINDOW] * 2  # its own end is March
    assert whole["roll_rate"].drop_nulls().len() > 0 and whole["positives"].sum() > 0
    assert combine_summaries([]).height == 0


def test_a_model_of_a_lower_default_narrows_the_shipped_range_below_it():
    """A 60+ DPD model applied with the shipped 1-89 range stopped every job on 'max_dpd (89)
    must be below default_dpd (60)'; its population now ends at 59."""
    from types import SimpleNamespace

    from rollrisk.storage.registry import observation_of

    sixty = SimpleNamespace(
        metadata={"observation_default_dpd": "60", "observation_window_months": "6"}
    )
    assert observation_of(sixty, ObservationSpec()) == ObservationSpec(
        default_dpd=60, window_months=6, min_dpd=1, max_dpd=59
    )
    # a range already below the model's default is kept; a model without a record keeps base
    base = ObservationSpec(min_dpd=5, max_dpd=29, default_dpd=30)
    assert observation_of(sixty, base) == ObservationSpec(
        default_dpd=60, window_months=6, min_dpd=5, max_dpd=29
    )
    assert observation_of(SimpleNamespace(metadata={}), base) == base


def test_outcome_windows_stop_at_the_last_complete_month_not_a_partial_one():
    """An extract taken before its last month's cycles closed (half the accounts without
    that month's statement) labelled outcomes from windows reaching that month as if they
    were complete: labels flipped from 1 to 0 and the roll rate read low, with no row set
    aside. Windows now end at the latest month with a complete book: the as-of whose window
    reaches the partial month is excluded, the earlier ones are labelled as on the whole
    book."""
    from tests.feature_history import synthetic_history

    history = synthetic_history(accounts=400, months=12, seed=6)
    statements = history.statements
    last = statements["cycle_end"].max()
    month = pl.col("cycle_end").dt.month_start() == last.replace(day=1)
    kept = pl.col("account_id").str.slice(-1).cast(pl.Int32) % 2 == 0
    partial = statements.filter(~month | kept)
    spec = ObservationSpec(window_months=3)

    assert labelled_through(statements).month == last.month
    assert labelled_through(partial) < last.replace(day=1)
    assert eligible_as_of_dates(partial, spec) == eligible_as_of_dates(statements, spec)[:-1]
    reaching = eligible_as_of_dates(statements, spec)[-1]  # its window ends in the last month
    cut = observations(partial, [reaching], spec)
    assert cut.height and (cut["status"] == "incomplete_window").all()
    earlier = eligible_as_of_dates(statements, spec)[-2]
    assert observations(partial, [earlier], spec).equals(observations(statements, [earlier], spec))
    # the jobs say so (build-training-set, train)
    note = partial_months_note(default_as_of_choice(partial))
    assert note is not None and "later months hold statements of too few accounts" in note
    assert f"{last:%Y-%m} (" in note
    assert partial_months_note(default_as_of_choice(statements)) is None
