"""Point-in-time correctness as a property (hypothesis).

For a random as-of and a random rewrite of the future (records whose ``known_at`` /
``action_at`` is after the as-of are deleted, perturbed, or joined by invented ones), every
feature of every observation at that as-of, and the population itself, must be unchanged.
Labels must depend only on statements after the as-of.

The same property run on a deliberately leaky feature (the latest statement that *closed* by the
as-of, ignoring when it was published) must fail: that shows the property can catch a peek.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import cache

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from rollrisk.features.history import compute_features
from rollrisk.features.observations import ObservationSpec, eligible_as_of_dates, observations
from tests.feature_history import History, synthetic_history

SPEC = ObservationSpec()
FUTURE_MUTATIONS = ("keep", "delete", "perturb", "invent")


@cache
def base_history() -> History:
    history = synthetic_history(accounts=80, months=9, seed=11)
    # publish statements 1-5 days after the cycle ends, so at many month-ends the latest closed
    # statement is not yet known: the case a careless feature gets wrong
    lag = pl.int_range(pl.len()).mod(5) + 1
    statements = history.statements.with_columns(
        (pl.col("cycle_end").cast(pl.Datetime("us")) + pl.duration(days=lag, hours=7)).alias(
            "known_at"
        )
    )
    return History(history.accounts, statements, history.collection_actions, history.treatments)


def as_of_dates() -> list[date]:
    return eligible_as_of_dates(base_history().statements, SPEC)


def _end_of(as_of: date) -> datetime:
    return datetime.combine(as_of + timedelta(days=1), datetime.min.time())


def _mutate(
    frame: pl.DataFrame, future: pl.Expr, how: str, seed: int, time_column: str
) -> pl.DataFrame:
    """Delete or perturb the rows selected by ``future``; other rows stay as they are."""
    rng = np.random.default_rng(seed)
    if how == "keep":
        return frame
    if how == "delete":
        drop = pl.Series(rng.uniform(size=frame.height) < 0.7)
        return frame.filter(~(future & pl.lit(drop)))
    if how == "perturb":
        noise = pl.Series(rng.uniform(0.0, 3.0, size=frame.height))
        changes = []
        for name, dtype in frame.schema.items():
            if name in ("account_id", time_column, "cycle_end", "known_at", "action_at"):
                continue  # keys and "when known" stay: the record must remain in the future
            if dtype == pl.Float64:
                changed = pl.col(name) * pl.lit(noise) + 7.0
            elif dtype == pl.Int64:
                changed = pl.col(name) + 31 * pl.lit(noise).cast(pl.Int64) + 1
            elif dtype == pl.String:
                changed = pl.col(name).shuffle(seed=seed)
            elif dtype == pl.Datetime("us"):
                changed = pl.col(name) - pl.duration(days=400)  # even an end/start "in the past"
            elif dtype == pl.Date:
                changed = pl.col(name) - pl.duration(days=60)
            else:
                continue
            changes.append(pl.when(future).then(changed).otherwise(pl.col(name)).alias(name))
        return frame.with_columns(changes)
    raise ValueError(f"unknown mutation {how!r}")


def _invent_future(
    frame: pl.DataFrame, as_of: date, time_columns: tuple[str, ...], seed: int
) -> pl.DataFrame:
    """Add copies of random rows, made known just after the as-of."""
    invented = frame.sample(n=min(frame.height, 40), seed=seed, with_replacement=True)
    shift = (pl.lit(_end_of(as_of)) + pl.duration(hours=1)).cast(pl.Datetime("us"))
    moved = invented.with_columns(shift.alias(column) for column in time_columns)
    if "cycle_end" in moved.columns:
        # a statement for the as-of month that will be published later (same key is fine here)
        moved = moved.with_columns(pl.lit(as_of).alias("cycle_end"))
    return pl.concat([frame, moved])


def mutate_future(history: History, as_of: date, plan: dict[str, str], seed: int) -> History:
    end = _end_of(as_of)
    tables = {}
    for name, time_column in (
        ("statements", "known_at"),
        ("collection_actions", "action_at"),
        ("treatments", "known_at"),
    ):
        frame: pl.DataFrame = getattr(history, name)
        future = pl.col(time_column) >= pl.lit(end)
        how = plan[name]
        if how == "invent":
            tables[name] = _invent_future(
                frame,
                as_of,
                (time_column,) if name != "treatments" else ("known_at", "start_at"),
                seed,
            )
        else:
            tables[name] = _mutate(frame, future, how, seed, time_column)
    return History(
        history.accounts, tables["statements"], tables["collection_actions"], tables["treatments"]
    )


def features_at(history: History, keys: pl.DataFrame, extra=None) -> pl.DataFrame:
    features = compute_features(
        keys, history.accounts, history.statements, history.collection_actions, history.treatments
    ).collect()
    if extra is not None:
        features = features.join(extra(history, keys), on=["account_id", "as_of"], how="left")
    return features.sort("account_id", "as_of")


def population_at(history: History, as_of: date) -> pl.DataFrame:
    return observations(history.statements, [as_of], SPEC).select(
        "account_id", "as_of", "dpd_at_as_of", "start_bucket"
    )


plans = st.fixed_dictionaries(
    {
        name: st.sampled_from(FUTURE_MUTATIONS)
        for name in ("statements", "collection_actions", "treatments")
    }
)


def check_point_in_time(
    as_of_index: int, plan: dict[str, str], seed: int, extra=None, day: int | None = None
) -> None:
    """``day``: the as-of is that day of the month of the chosen month-end (mid-month)."""
    dates = as_of_dates()
    as_of = dates[as_of_index % len(dates)]
    if day is not None:
        as_of = as_of.replace(day=day)
    base = base_history()
    population = population_at(base, as_of)
    keys = population.select("account_id", "as_of")
    mutated = mutate_future(base, as_of, plan, seed)
    assert_frame_equal(population_at(mutated, as_of), population)
    assert_frame_equal(
        features_at(mutated, keys, extra),
        features_at(base, keys, extra),
        check_exact=False,
        rel_tol=1e-9,
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(as_of_index=st.integers(0, 50), plan=plans, seed=st.integers(0, 2**31 - 1))
def test_features_do_not_move_when_the_future_changes(as_of_index, plan, seed):
    check_point_in_time(as_of_index, plan, seed)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    as_of_index=st.integers(0, 50), day=st.integers(1, 28), plan=plans,
    seed=st.integers(0, 2**31 - 1),
)  # fmt: skip
def test_features_do_not_move_when_the_future_changes_on_any_day_of_the_month(
    as_of_index, day, plan, seed
):
    # mid-month, statements of the as-of month are partly known: billing days before the
    # as-of day published by then, later ones not yet; the DPD at the as-of is aged
    check_point_in_time(as_of_index, plan, seed, day=day)


def latest_closed_statement_dpd(history: History, keys: pl.DataFrame) -> pl.DataFrame:
    """DELIBERATELY LEAKY: the DPD of the latest statement that closed by the as-of, ignoring
    ``known_at``: it sees a statement printed before the as-of but published after it."""
    return (
        keys.join(history.statements, on="account_id")
        .filter(pl.col("cycle_end") <= pl.col("as_of"))
        .group_by("account_id", "as_of")
        .agg(pl.col("dpd").sort_by("cycle_end").last().cast(pl.Float64).alias("leaky_dpd"))
    )


@pytest.mark.parametrize("mid_month", [False, True], ids=["month-end", "mid-month"])
def test_the_property_catches_a_feature_that_peeks_past_its_as_of(mid_month):
    # no shrinking: the first counterexample is enough, and its message names the column
    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        as_of_index=st.integers(0, 50), day=st.integers(1, 28) if mid_month else st.none(),
        plan=plans, seed=st.integers(0, 2**31 - 1),
    )  # fmt: skip
    def property_with_leaky_feature(as_of_index, day, plan, seed):
        check_point_in_time(as_of_index, plan, seed, extra=latest_closed_statement_dpd, day=day)

    with pytest.raises(AssertionError, match="leaky_dpd"):
        property_with_leaky_feature()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(as_of_index=st.integers(0, 50), seed=st.integers(0, 2**31 - 1))
def test_labels_use_only_the_window_after_the_as_of(as_of_index, seed):
    dates = as_of_dates()
    as_of = dates[as_of_index % len(dates)]
    base = base_history()
    window_end = pl.lit(as_of).dt.offset_by(f"{SPEC.window_months}mo").dt.month_end()
    # rewrite everything the label must not see: payments of the past and DPD beyond the window
    rng = np.random.default_rng(seed)
    noise = pl.Series(rng.uniform(0, 5, size=base.statements.height))
    mutated = base.statements.with_columns(
        pl.when(pl.col("cycle_end") > window_end)
        .then(pl.col("dpd") + 100)
        .otherwise(pl.col("dpd"))
        .alias("dpd"),
        (pl.col("amount_paid") * pl.lit(noise)).alias("amount_paid"),
    )
    before = observations(base.statements, [as_of], SPEC)
    after = observations(mutated, [as_of], SPEC)
    assert_frame_equal(after, before)


def test_labels_do_move_when_the_window_changes():
    # the counterpart: pushing DPD inside the window past default flips labels to 1
    as_of = as_of_dates()[0]
    base = base_history().statements
    window_end = pl.lit(as_of).dt.offset_by(f"{SPEC.window_months}mo").dt.month_end()
    inside = (pl.col("cycle_end") > pl.lit(as_of)) & (pl.col("cycle_end") <= window_end)
    pushed = base.with_columns(
        pl.when(inside).then(pl.lit(200)).otherwise(pl.col("dpd")).alias("dpd")
    )
    labels = observations(pushed, [as_of], SPEC)["rolled_to_default"]
    assert labels.len() > 0
    assert labels.to_list() == [1] * labels.len()
