"""Training sets: observations, labels and point-in-time features in one frame.

``build_training_set`` is pure (frames in, frame out, no I/O). Its output has one row per
labelled observation and exactly these columns, in this order (the interface to ``models/``):

    account_id, as_of, product, start_bucket, rolled_to_default, <features of the feature set>

``product`` is both an identifying column and a categorical feature of the feature set; it
appears once, in third position. Feature columns are Float64 (missing allowed) except
categorical ones, which are String. :func:`training_set_schema` is the pandera contract of that
frame; ``TrainingSet`` checks the leading columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

import pandera.polars as pa
import polars as pl

from rollrisk.features.history import compute_features, feature_engine
from rollrisk.features.observations import (
    BUCKET_NAMES,
    LABELLED,
    ObservationSpec,
    check_as_of_dates,
    labelled_through,
    observation_summary,
    observations,
)
from rollrisk.features.registry import FEATURE_SET, FeatureSet
from rollrisk.features.schemas import PRODUCTS

LEADING_COLUMNS: tuple[str, ...] = (
    "account_id",
    "as_of",
    "product",
    "start_bucket",
    "rolled_to_default",
)


class TrainingSet(pa.DataFrameModel):
    """The identifying and label columns of a training set (features: see training_set_schema)."""

    account_id: str = pa.Field(nullable=False)
    as_of: pl.Date = pa.Field(nullable=False)
    product: str = pa.Field(nullable=False, isin=list(PRODUCTS))
    start_bucket: str = pa.Field(nullable=False, isin=list(BUCKET_NAMES))
    rolled_to_default: pl.Int8 = pa.Field(nullable=False, isin=[0, 1])

    @pa.dataframe_check(error="as_of must be a month-end")
    @classmethod
    def as_of_is_month_end(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("as_of") == pl.col("as_of").dt.month_end())

    @pa.dataframe_check(error="(account_id, as_of) must be unique")
    @classmethod
    def one_row_per_observation(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(~pl.struct("account_id", "as_of").is_duplicated())

    class Config:
        strict = False


def feature_columns(feature_set: FeatureSet = FEATURE_SET) -> list[str]:
    """Feature columns after the leading ones (``product`` is already a leading column)."""
    return [name for name in feature_set.names if name not in LEADING_COLUMNS]


def training_set_schema(feature_set: FeatureSet = FEATURE_SET) -> pa.DataFrameSchema:
    """The full contract: leading columns, then every feature with its dtype, nothing else."""
    leading = TrainingSet.to_schema()
    columns = dict(leading.columns)
    for name in feature_columns(feature_set):
        dtype = pl.String if feature_set.spec(name).kind == "categorical" else pl.Float64
        columns[name] = pa.Column(dtype, nullable=True)
    return pa.DataFrameSchema(
        columns=columns,
        checks=leading.checks,
        strict=True,
        ordered=True,
        name=f"TrainingSet[{feature_set.name} v{feature_set.version}]",
    )


@dataclass(frozen=True)
class TrainingSetBuild:
    """A built training set and, per as-of, who was observed and who was left out and why."""

    training_set: pl.DataFrame
    summary: pl.DataFrame  # as_of, population, labelled, positives, exclusions, roll_rate


def nothing_labelled(
    data: object,
    as_of_dates: Sequence[date] | None,
    summary: pl.DataFrame,
    outcome: str,
    *,
    as_of_name: str,
    window_name: str,
) -> str:
    """Why an empty training set of the portfolio ``data`` is refused, from the build's
    per-as-of ``summary`` (:attr:`TrainingSetBuild.summary`): ``as_of_dates`` the dates asked
    for (None: every eligible month-end), ``outcome`` what was (not) done, and the names the
    caller gives the dates and the window (``--as-of``, ``--window-months`` on the command
    line)."""
    totals = (
        summary.select(
            pl.col("population", "excluded_incomplete_window", "excluded_no_outcome").sum()
        ).row(0, named=True)
        if summary.height
        else {"population": 0}
    )
    if not totals["population"]:
        why = "no account is in the population (DPD in range on a statement known then)"
    else:
        why = (
            f"{totals['excluded_incomplete_window']:,} observations lack a complete performance "
            f"window and {totals['excluded_no_outcome']:,} have no statement in it"
        )
    dates = (
        f"{as_of_name} {', '.join(d.isoformat() for d in as_of_dates)}"
        if as_of_dates
        else "any eligible month-end"
    )
    return (
        f"no labelled observation at {dates} in {data}: {why}; {outcome}. Pick month-ends "
        f"inside the data with the whole performance window after them (omit {as_of_name} to "
        f"use every eligible one), or check {window_name} and the DPD range"
    )


def build_training_set(
    accounts: pl.DataFrame,
    statements: pl.DataFrame,
    as_of_dates: Sequence[date],
    spec: ObservationSpec,
    collection_actions: pl.DataFrame | None = None,
    treatments: pl.DataFrame | None = None,
    feature_set: FeatureSet = FEATURE_SET,
    on_as_of_done: Callable[[date], None] | None = None,
    last_cycle_end: date | None = None,
) -> TrainingSetBuild:
    """Observations at each as-of, their roll-to-default label and point-in-time features.

    Needs the portfolio tables in contract columns (``collection_actions`` and ``treatments``
    may be ``None``: their features are then missing). Observations without a complete
    performance window or without any outcome are excluded and counted in ``summary``.
    As-of dates are processed one at a time (bounded memory); ``on_as_of_done`` is called
    after each, for progress reporting. ``last_cycle_end``: the whole portfolio's
    :func:`~rollrisk.features.observations.labelled_through` when the tables are one
    partition of it (see :func:`~rollrisk.features.observations.observations`). Inputs are
    not modified.
    """
    dates = check_as_of_dates(as_of_dates)
    if last_cycle_end is None:  # found once, not once per as-of
        last_cycle_end = labelled_through(statements)
    frames: list[pl.DataFrame] = []
    summaries: list[pl.DataFrame] = []
    product = accounts.select("account_id", "product")
    for as_of in dates:
        observed = observations(statements, [as_of], spec, last_cycle_end)
        summaries.append(observation_summary(observed))
        labelled = observed.filter(pl.col("status") == LABELLED)
        features = compute_features(
            labelled.select("account_id", "as_of"),
            accounts,
            statements,
            collection_actions,
            treatments,
            feature_set,
        )
        frames.append(
            labelled.lazy()
            .join(product.lazy(), on="account_id", how="left")
            .join(features.drop("product", strict=False), on=["account_id", "as_of"], how="left")
            .select(*LEADING_COLUMNS, *feature_columns(feature_set))
            .collect(engine=feature_engine(statements))
        )
        if on_as_of_done is not None:
            on_as_of_done(as_of)
    empty = pl.DataFrame(schema=_empty_schema(feature_set))
    training_set = pl.concat([empty, *frames], how="vertical_relaxed").sort("as_of", "account_id")
    summary = (
        pl.concat(summaries)
        if summaries
        else observation_summary(
            pl.DataFrame(
                schema={"as_of": pl.Date, "status": pl.String, "rolled_to_default": pl.Int8}
            )
        )
    )
    return TrainingSetBuild(training_set=training_set, summary=summary)


def _empty_schema(feature_set: FeatureSet) -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {
        "account_id": pl.String(),
        "as_of": pl.Date(),
        "product": pl.String(),
        "start_bucket": pl.String(),
        "rolled_to_default": pl.Int8(),
    }
    for name in feature_columns(feature_set):
        kind = feature_set.spec(name).kind
        schema[name] = pl.String() if kind == "categorical" else pl.Float64()
    return schema


def validate_training_set(
    frame: pl.DataFrame, feature_set: FeatureSet = FEATURE_SET
) -> pl.DataFrame:
    """Check a training set against its schema; raises pandera's SchemaErrors listing all failures."""
    return training_set_schema(feature_set).validate(frame, lazy=True)
