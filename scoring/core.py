"""Score delinquent accounts at an as-of date: probability, reasons, segment, treatment.

One function, :func:`score_accounts`, serves the nightly batch (``rollrisk score``), the
Spark engine (inside each partition) and the online service, so all of them return the same
thing for the same accounts. It is pure: portfolio tables in, one row per scored account out.

Steps, for the population at the as-of (accounts whose DPD lies in the observation range):

1. point-in-time features (:func:`rollrisk.features.history.compute_features`);
2. calibrated probability of rolling to default, and its risk band;
3. exact TreeSHAP contributions (log-odds) of the trees, reason codes (at most 4, English and
   Chinese) and driver-family sums;
4. the segment (``conf/segments.yaml``), the policy's treatment (``conf/policy.yaml``), the
   arm of an experiment active at the as-of in its place for the accounts it randomised
   (``conf/experiments.yaml``, with the arm and its logged propensity), and the compliance
   rules (``conf/compliance.yaml``) applied to whatever was chosen, with the trail of all;
5. expected loss = exposure (balance at the as-of) x probability.
"""

from __future__ import annotations

import json
import time as clock
from collections.abc import Callable, Collection, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from rollrisk.errors import UserError
from rollrisk.features.currencies import (
    currency_counts,
    currency_not_recorded_warning,
    foreign_currencies_message,
    recorded_currencies,
)
from rollrisk.features.dates import default_as_of_choice
from rollrisk.features.history import compute_features, feature_engine
from rollrisk.features.observations import ObservationSpec, population_lazy
from rollrisk.features.registry import FAMILIES, FeatureSet, current_wording
from rollrisk.features.schemas import TABLES
from rollrisk.models.explanations import (
    ContributionKernel,
    contributions,
    family_contributions,
    reason_codes,
)
from rollrisk.models.roll_model import RollModel
from rollrisk.strategies.compliance import (
    AccountStates,
    ComplianceChanges,
    ContactHistories,
    EffectiveCompliance,
    enforce_all,
)
from rollrisk.strategies.experiments import ExperimentPlan, decide_experiments
from rollrisk.strategies.labels import Labels
from rollrisk.strategies.policy import PlannedActions, Policy, PolicyCases, choose
from rollrisk.strategies.segments import SegmentRules, assign_segments

EXPOSURE_FEATURE = "balance_current"
OVERDUE_FEATURE = "amount_overdue"
DECISION_TIME = time(8, 0)  # decisions are taken on the morning after the as-of
HARDSHIP_KINDS = ("restructure", "grace_period")
# the portfolio tables score_accounts takes, in the order of its first four arguments
INPUT_TABLES: tuple[str, ...] = tuple(table.name for table in TABLES)
OPTIONAL_TABLES: tuple[str, ...] = tuple(table.name for table in TABLES if not table.required)
# the flag that lets a job score without a table the model was trained with (the message of
# the refusal names it; rollrisk.arguments declares it)
ALLOW_MISSING_TABLE_FLAG = "--allow-missing-table"

# The scored-account table: one row per account in the population at the as-of.
SCORED_SCHEMA: dict[str, pl.DataType] = {
    "account_id": pl.String(),
    "as_of": pl.Date(),
    "product": pl.String(),
    "start_bucket": pl.String(),
    "dpd": pl.Int64(),
    "probability": pl.Float64(),
    "risk_band": pl.String(),
    "exposure": pl.Float64(),
    "amount_overdue": pl.Float64(),
    "expected_loss": pl.Float64(),
    "segment": pl.String(),
    "segment_rule": pl.String(),
    "treatment": pl.String(),
    "policy_rule": pl.String(),
    "actions": pl.String(),  # JSON list of {action, at, channel, recipient}
    "trail": pl.String(),  # JSON list of compliance changes
    # the experiment the account is in at the as-of, its arm ("policy": eligible but not
    # randomised) and the logged propensity of the treatment it got; null outside every
    # experiment (always present, so the table's schema does not depend on the experiment file)
    "experiment_id": pl.String(),
    "arm": pl.String(),
    "propensity": pl.Float64(),
    "reasons": pl.String(),  # JSON list of {rank, code, feature, family, value, contribution, text_en, text_zh}
    **{f"family_{name}": pl.Float64() for name in FAMILIES},
    "model_name": pl.String(),
    "model_version": pl.String(),
}


@dataclass(frozen=True)
class ScoringSetup:
    """Everything that turns features into a decision, loaded once per job or service."""

    model: RollModel
    model_name: str
    model_version: str
    observation: ObservationSpec
    segment_rules: SegmentRules
    policy: Policy
    compliance: EffectiveCompliance
    # champion/challenger experiments (conf/experiments.yaml); none: every decision the policy's
    experiments: ExperimentPlan = ExperimentPlan("experiments.yaml", ())
    kernel: ContributionKernel | None = None  # None: the default exact (fast) kernel
    # the portfolio tables the model was trained with (see :func:`trained_tables`), and the
    # ones of them the user agreed to score without (the job records that agreement)
    trained_tables: tuple[str, ...] = INPUT_TABLES
    allowed_missing_tables: frozenset[str] = frozenset()
    # the currency of the accounts the model was trained on (its metadata ``currency``,
    # :func:`rollrisk.features.currencies.recorded_currencies`); None: a model logged before
    # rollrisk recorded it, whose accounts' currency is not checked
    trained_currencies: tuple[str, ...] | None = None

    @property
    def feature_set(self) -> FeatureSet:
        return self.model.feature_set


def check_currencies(setup: ScoringSetup, counts: pl.DataFrame, where: str) -> None:
    """Refuse accounts in a currency the model was not trained on: their amounts would be read
    on another scale, and nothing in the scores would show it. ``counts`` is
    :func:`rollrisk.features.currencies.currency_counts` of the accounts to score, with
    ``known=setup.trained_currencies``; ``where`` names them in the message. A model that does
    not record its currency is not checked (the batch warns, see
    :func:`currency_not_checked_warning`).

    Raises:
        UserError: an account in another currency; the message names the model's currency,
            the others with their counts and up to 3 account ids each, and what to do.
    """
    if setup.trained_currencies is None:
        return
    refusal = foreign_currencies_message(
        counts, setup.trained_currencies, model_label(setup), where
    )
    if refusal is not None:
        raise UserError(refusal)


def currency_not_checked_warning(setup: ScoringSetup) -> str | None:
    """The warning of a run whose model does not record its currency (logged before rollrisk
    did), or ``None``."""
    if setup.trained_currencies is not None:
        return None
    return currency_not_recorded_warning(model_label(setup))


def model_label(setup: ScoringSetup) -> str:
    """``model NAME vVERSION``, or ``the unregistered model`` (one loaded from a folder)."""
    return named_model(setup.model_name, setup.model_version)


def check_model_currency(
    loaded: Any, accounts: pl.DataFrame, account_ids: Any, where: str, job: str
) -> None:
    """:func:`check_currencies` for a job reading accounts with a loaded model (``evaluate``,
    ``monitor``; ``loaded``: a :class:`~rollrisk.storage.registry.LoadedModel`): refuse the
    accounts ``account_ids`` (``where`` names them) in a currency it was not trained on, and
    warn (prefixed ``[job]``) when the model does not record its currency.

    Raises:
        UserError: an account in another currency (the message as ``score``'s).
    """
    import sys

    model = named_model(loaded.name, loaded.version)
    trained = recorded_currencies(loaded.metadata)
    if trained is None:
        print(f"[{job}] WARNING: {currency_not_recorded_warning(model)}", file=sys.stderr)
        return
    counts = currency_counts(accounts, account_ids, known=trained)
    refusal = foreign_currencies_message(counts, trained, model, where)
    if refusal is not None:
        raise UserError(refusal)


def named_model(name: str, version: str) -> str:
    """:func:`model_label` of a model's registered ``name`` and ``version``."""
    if version.isdigit():
        return f"model {name} v{version}"
    return "the unregistered model"


def trained_tables(metadata: Mapping[str, Any]) -> tuple[str, ...]:
    """The portfolio tables a model was trained with, from its logged metadata (``tables``,
    comma-separated, written by ``rollrisk train``).

    A model logged before rollrisk recorded them counts as trained with every table: the
    strict reading, under which scoring without an optional table is refused unless the user
    opts in, rather than silently scored on fewer inputs than the model learnt from.
    """
    recorded = metadata.get("tables")
    if not recorded:
        return INPUT_TABLES
    names = {name.strip() for name in str(recorded).split(",")}
    return tuple(table for table in INPUT_TABLES if table in names)


def check_tables(
    setup: ScoringSetup, present: Collection[str], where: str, empty: Collection[str] = ()
) -> tuple[str, ...]:
    """:func:`check_model_tables` for the model and the opt-in of ``setup``."""
    return check_model_tables(
        setup.trained_tables,
        present,
        setup.allowed_missing_tables,
        model=f"{setup.model_name} v{setup.model_version}",
        feature_set=setup.feature_set,
        where=where,
        empty=empty,
    )


def check_model_tables(
    trained: Collection[str],
    present: Collection[str],
    allowed: Collection[str],
    *,
    model: str,
    feature_set: FeatureSet,
    where: str,
    empty: Collection[str] = (),
) -> tuple[str, ...]:
    """The tables the model was trained with (``trained``) that ``present`` lacks and the
    user allowed (``allowed``), in contract order; ``model`` and ``where`` name the model and
    the data (a folder, "the request") in the message. ``empty`` names the tables whose files
    are there but hold no accepted row (the loader gives them as absent, see
    :attr:`rollrisk.storage.loader.Portfolio.empty_tables`): the message says so.

    Without such a table the features learnt from it are missing and the scores move (issue
    14 measured probabilities moved by up to 0.25, 55 of 139 treatments changed and three
    segments gone), so scoring on fewer tables is an explicit choice, never a silent one.

    Raises:
        UserError: a table the model was trained with is absent and was not allowed; the
            message names the table and the flag that allows it.
    """
    missing = [table for table in INPUT_TABLES if table in trained and table not in present]
    refused = [table for table in missing if table not in allowed]
    if refused:
        left_out = sum(spec.source in refused for spec in feature_set.features)
        flags = " ".join(f"{ALLOW_MISSING_TABLE_FLAG} {table}" for table in refused)
        them = "them" if len(refused) > 1 else "it"
        trained_with = ", ".join(table for table in INPUT_TABLES if table in trained)
        lacks = " and no ".join(
            f"{table} (present but empty: no accepted row)" if table in empty else table
            for table in refused
        )
        raise UserError(
            f"model {model} was trained with {trained_with}, but {where} has no "
            f"{lacks}: the model's {left_out} features from {them} would "
            f"be missing and the scores would move; provide {them}, or score without {them} "
            f"knowingly with {flags}"
        )
    return tuple(missing)


def tables_present(
    collection_actions: pl.DataFrame | None, treatments: pl.DataFrame | None
) -> tuple[str, ...]:
    """The portfolio tables at hand, given the optional ones (``None``: absent)."""
    given = {"collection_actions": collection_actions, "treatments": treatments}
    return tuple(name for name in INPUT_TABLES if given.get(name, True) is not None)


def population(statements: pl.DataFrame, as_of: date, spec: ObservationSpec) -> pl.DataFrame:
    """``account_id``, ``dpd_at_as_of``, ``start_bucket`` of the accounts to score at ``as_of``."""
    return _population_query(statements, as_of, spec).collect()


def default_as_of(statements: pl.DataFrame) -> date:
    """The as-of a job looks at when it is given none: the month-end of the latest month with
    a complete book (:func:`rollrisk.features.dates.default_as_of_choice`, which also says
    which later months it passed over), never the month of one stray or future-dated row.

    Raises:
        UserError: there is no statement.
    """
    return default_as_of_choice(statements).as_of


def _population_query(
    statements: pl.DataFrame | pl.LazyFrame, as_of: date, spec: ObservationSpec
) -> pl.LazyFrame:
    observed = population_lazy(statements, [as_of], spec)
    return observed.select("account_id", "dpd_at_as_of", "start_bucket").sort("account_id")


def score_accounts(
    accounts: pl.DataFrame,
    statements: pl.DataFrame,
    collection_actions: pl.DataFrame | None,
    treatments: pl.DataFrame | None,
    as_of: date,
    setup: ScoringSetup,
    timings: MutableMapping[str, float] | None = None,
    features: pd.DataFrame | None = None,
) -> pl.DataFrame:
    """Score every account of the population at ``as_of`` (see the module docstring).

    Needs the portfolio tables in contract columns. Returns :data:`SCORED_SCHEMA`, one row per
    account, sorted by ``account_id``; an empty frame when nobody is delinquent. Raises
    ``UserError`` when a table the model was trained with is ``None`` and not allowed
    (:func:`check_tables`). ``timings``,
    when given, has each step's wall seconds added to it (features, probability, explanations,
    reasons, segments, decisions, assemble), so a job can report where its time goes.
    ``features``: the population and its features as :func:`features_at` returns them,
    computed by the caller (the service's per-request path,
    :func:`rollrisk.features.online.population_features`); the tables then serve the
    decisions only.
    """
    # the last guard: every path to a score (batch, Spark, service, Python API) passes here
    absent = check_tables(setup, tables_present(collection_actions, treatments), "the data")
    mark = clock.perf_counter()

    def step(name: str) -> None:
        nonlocal mark
        now = clock.perf_counter()
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + now - mark
        mark = now

    # the population and its features in one query (one polars run: on a service request's
    # few rows, each run costs more in fixed overhead than in work)
    if features is None:
        people = _population_query(statements, as_of, setup.observation)
        features = features_at(
            people, as_of, accounts, statements, collection_actions, treatments, setup.feature_set
        )
    frame = features
    if len(frame) == 0:
        return pl.DataFrame(schema=SCORED_SCHEMA)
    step("features")
    model = setup.model
    matrix = model.matrix(frame)  # once, for the probability and the explanations
    probability = model.predict_proba(frame, matrix=matrix)
    step("probability")
    feature_contribs = explain(model, frame, setup.kernel, matrix=matrix)
    step("explanations")

    families = family_contributions(feature_contribs, setup.feature_set, index=frame.index)
    # only the columns the segment rules read (a copy of the whole frame costs more)
    read = sorted(setup.segment_rules.fields & set(frame.columns))
    state = frame[read].assign(probability=probability)
    segments = assign_segments(families, state, setup.segment_rules)
    step("segments")
    # worded with today's registry: a text fixed since the model was trained reaches it; a
    # table scored without says it was not given
    wording = current_wording(setup.feature_set, absent_tables=absent)
    reasons = _reasons_json(reason_codes(feature_contribs, frame, wording), len(frame))
    step("reasons")

    exposure = frame[EXPOSURE_FEATURE].fillna(0.0).to_numpy(dtype=np.float64)
    overdue = frame[OVERDUE_FEATURE].fillna(0.0).to_numpy(dtype=np.float64)
    decisions = _decide_all(
        frame, probability, segments["segment"].to_numpy(), overdue, as_of, setup,
        collection_actions, treatments,
    )  # fmt: skip
    step("decisions")
    scored = pl.DataFrame(
        {
            "account_id": frame["account_id"].astype(str).to_list(),
            "as_of": [as_of] * len(frame),
            "product": frame["product"].astype(str).to_list(),
            "start_bucket": frame["start_bucket"].astype(str).to_list(),
            "dpd": frame["dpd_at_as_of"].astype("int64").to_list(),
            "probability": probability,
            "risk_band": decisions.risk_band,
            "exposure": exposure,
            "amount_overdue": overdue,
            "expected_loss": exposure * probability,
            "segment": segments["segment"].astype(str).to_list(),
            "segment_rule": segments["segment_rule"].astype(str).to_list(),
            "treatment": decisions.treatment,
            "policy_rule": decisions.policy_rule,
            "actions": decisions.actions,
            "trail": decisions.trail,
            "experiment_id": decisions.experiment_id,
            "arm": decisions.arm,
            "propensity": decisions.propensity,
            "reasons": reasons,
            **{f"family_{name}": families[name].to_numpy() for name in FAMILIES},
            "model_name": [setup.model_name] * len(frame),
            "model_version": [setup.model_version] * len(frame),
        },
        schema=SCORED_SCHEMA,
    )
    step("assemble")
    return scored


def features_at(
    people: pl.DataFrame | pl.LazyFrame,
    as_of: date,
    accounts: pl.DataFrame,
    statements: pl.DataFrame,
    collection_actions: pl.DataFrame | None,
    treatments: pl.DataFrame | None,
    feature_set: FeatureSet,
) -> pd.DataFrame:
    """Point-in-time features of ``people`` at ``as_of``, in ``people``'s order (pandas).

    ``people`` holds ``account_id``, ``dpd_at_as_of`` and ``start_bucket`` (as
    :func:`population` returns them); they are carried into the result.
    """
    people = people.lazy()
    keys = people.select("account_id", pl.lit(as_of).alias("as_of"))
    features = compute_features(
        keys, accounts, statements, collection_actions, treatments, feature_set
    )
    joined = people.join(features, on="account_id", how="left", maintain_order="left").collect(
        engine=feature_engine(statements)
    )
    # column by column through numpy: the same frame as ``to_pandas()`` in half its time, which
    # matters on a service request's few rows
    return pd.DataFrame({name: joined[name].to_numpy() for name in joined.columns})


def explain(
    model: RollModel,
    frame: pd.DataFrame,
    kernel: ContributionKernel | None = None,
    matrix: np.ndarray | None = None,
) -> np.ndarray:
    """Exact TreeSHAP contributions (log-odds) of ``frame``'s rows in feature-set order, the
    base value last; the starting bucket's share is attributed to ``dpd_current``.
    ``matrix`` is ``model.matrix(frame)`` when the caller has it already."""
    booster = _single_booster(model)
    columns = list(booster.feature_name())
    if columns != list(model.feature_columns_):
        raise ValueError(
            f"the booster's features {columns} are not the model's {model.feature_columns_}"
        )
    if matrix is None:
        matrix = model.matrix(frame)
    contribs = contributions(booster, matrix, kernel=kernel)
    return _by_feature_set(contribs, columns, model.feature_set)


def warm_up(setup: ScoringSetup) -> None:
    """Do the one-off work of the default explanation kernel now (its per-leaf tables and the
    compiled code), so that a service's first request is as fast as the next ones."""
    if setup.kernel is not None:
        return
    from rollrisk.models.treeshap import ensemble_of, tree_contributions

    booster = _single_booster(setup.model)
    tree_contributions(ensemble_of(booster), np.full((1, booster.num_feature()), np.nan))


def _single_booster(model: RollModel) -> Any:
    boosters = getattr(model, "boosters_", {})
    if len(boosters) != 1:
        raise ValueError(
            "scoring explains one LightGBM booster; this model has "
            f"{len(boosters)} (structure={model.structure!r}); train with structure: single"
        )
    return next(iter(boosters.values()))


def _by_feature_set(
    contribs: np.ndarray, columns: list[str], feature_set: FeatureSet
) -> np.ndarray:
    """Contribution columns in feature-set order (model-only inputs such as the bucket ordinal
    are folded into the family of the feature they encode when the set has one)."""
    position = {name: i for i, name in enumerate(columns)}
    out = np.zeros((contribs.shape[0], len(feature_set.features) + 1), dtype=np.float64)
    for j, name in enumerate(feature_set.names):
        if name in position:
            out[:, j] += contribs[:, position[name]]
    extra = [name for name in columns if name not in set(feature_set.names)]
    if extra and "dpd_current" in feature_set.names:
        # the starting bucket is a coarse view of the current DPD: attribute it there
        target = feature_set.names.index("dpd_current")
        for name in extra:
            out[:, target] += contribs[:, position[name]]
    out[:, -1] = contribs[:, -1]
    return out


# a str as a JSON string, as json.dumps(..., ensure_ascii=False) writes one inside an object
# (the C encoder where Python has it)
JSON_STRING: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]


def _reasons_json(long: pd.DataFrame, n_rows: int) -> list[str]:
    """Each row's reasons (``long`` from :func:`reason_codes`, rows ``0..n_rows-1``) as a JSON
    list of {rank, code, feature, family, value, contribution, text_en, text_zh}."""
    # the fields but rank and contribution are those of the (feature, value) quoted: each
    # distinct one is encoded once
    quoted = long["feature"].to_numpy(dtype=object) + "\x00" + long["value"].to_numpy(dtype=object)
    which, _ = pd.factorize(quoted)
    firsts = np.unique(which, return_index=True)[1]  # each code's first row
    column = {
        name: long[name].to_numpy(dtype=object)[firsts].tolist()
        for name in ("code", "feature", "family", "value", "text_en", "text_zh")
    }
    # each field a JSON string written by the encoder json.dumps(..., ensure_ascii=False)
    # uses for a string, so the text is the same as json.dumps of the object, without building
    # one per reason (32,506 distinct reasons of 34,374 accounts: 2.2 -> 0.3 s)
    text = JSON_STRING
    middle = [
        f'"code": {text(code)}, "feature": {text(feature)}, "family": {text(family)}, '
        f'"value": {text(value)}, "contribution": '
        for code, feature, family, value in zip(
            column["code"], column["feature"], column["family"], column["value"], strict=True
        )
    ]
    tail = [
        f', "text_en": {text(en)}, "text_zh": {text(zh)}}}'
        for en, zh in zip(column["text_en"], column["text_zh"], strict=True)
    ]
    which_series = pl.Series(which, dtype=pl.UInt32)
    # each reason's object, then each row's list joined by polars (rows without a reason: [])
    listed = (
        pl.DataFrame(
            {
                "row": long["row"].to_numpy(),
                "rank": long["rank"].to_numpy(),
                "middle": pl.Series(middle, dtype=pl.String).gather(which_series),
                "contribution": pl.Series(
                    rounded_json_numbers(long["contribution"].to_numpy(np.float64)),
                    dtype=pl.String,
                ),
                "tail": pl.Series(tail, dtype=pl.String).gather(which_series),
            }
        )
        .select(
            "row",
            pl.concat_str(
                pl.lit('{"rank": '), pl.col("rank"), pl.lit(", "), "middle", "contribution", "tail"
            ).alias("reason"),
        )
        .group_by("row", maintain_order=True)
        .agg(pl.col("reason").str.join(", "))
    )
    every_row = pl.DataFrame({"row": pl.arange(0, n_rows, eager=True).cast(listed["row"].dtype)})
    return (
        every_row.join(listed, on="row", how="left", maintain_order="left")
        .select(pl.concat_str(pl.lit("["), pl.col("reason").fill_null(""), pl.lit("]")))
        .to_series()
        .to_list()
    )


def rounded_json_numbers(values: np.ndarray) -> np.ndarray:
    """``json.dumps(round(v, 12))`` of each value, as text (object array).

    A value whose rounding is in ``[1e-4, 1e3)`` (nearly every reason's contribution) is done
    without a Python call: its product with ``10**12`` is rounded half-to-even on the exact
    binary value, as ``round`` rounds (the product's rounding error recovered exactly by
    Dekker's two-product), then written as the decimal of that integer over ``10**12``
    without trailing zeros. With at most 15 significant digits that decimal is the shortest
    text naming the rounded float, which is what ``repr`` writes. The others (smaller values,
    written in exponent form; negative, non-finite) go through Python.
    """
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = v * 1e12
        error = _two_product_error(v, 1e12, scaled)  # v * 1e12 = scaled + error, exactly
        nearest = np.rint(scaled)  # half to even
        off = scaled - nearest  # exact
        # a tie in the float product that is no tie in the exact one rounds away
        away = (np.abs(off) == 0.5) & (error != 0) & (np.sign(error) == np.sign(off))
        units = nearest + np.where(away, np.sign(off), 0.0)
        fast = (units >= 1e8) & (units < 1e15)
    out = np.empty(len(v), dtype=object)
    parts = pl.DataFrame({"units": units[fast].astype(np.int64)}).select(
        (pl.col("units") // 10**12).cast(pl.String).alias("whole"),
        (pl.col("units") % 10**12)
        .cast(pl.String)
        .str.zfill(12)
        .str.strip_chars_end("0")
        .alias("fraction"),
    )
    out[fast] = (
        parts.select(
            pl.concat_str(
                "whole",
                pl.lit("."),
                pl.when(pl.col("fraction") == "").then(pl.lit("0")).otherwise("fraction"),
            )
        )
        .to_series()
        .to_numpy()
    )
    slow = np.flatnonzero(~fast)
    out[slow] = [json.dumps(round(c, 12)) for c in v[slow].tolist()]
    return out


def _two_product_error(a: np.ndarray, b: float, product: np.ndarray) -> np.ndarray:
    """``a * b - product`` exactly, where ``product`` is the float product (Dekker)."""

    def split(x: np.ndarray | float) -> tuple[Any, Any]:
        scaled = 134_217_729.0 * x  # 2**27 + 1
        high = scaled - (scaled - x)
        return high, x - high

    a_high, a_low = split(a)
    b_high, b_low = split(b)
    return ((a_high * b_high - product) + a_high * b_low + a_low * b_high) + a_low * b_low


@dataclass(frozen=True)
class DecisionColumns:
    """The decision columns of the scored-account table, one entry per account."""

    risk_band: list[str]
    treatment: list[str]
    policy_rule: list[str]
    actions: list[str]  # JSON, see SCORED_SCHEMA
    trail: list[str]  # JSON
    experiment_id: list[str | None]
    arm: list[str | None]
    propensity: list[float | None]


@dataclass(frozen=True)
class DecisionFacts:
    """What the compliance rules read about the accounts besides the decision itself: each
    account's state (DPD, amount overdue, first delinquency, extension used, hardship plan,
    decision time) and its past contacts. The same whatever segment or policy decides, so a
    caller that decides the same accounts many times (the policy simulation's references)
    gathers them once (:func:`decision_facts`)."""

    as_of: date
    states: AccountStates
    histories: ContactHistories


def decision_facts(
    frame: pd.DataFrame,
    overdue: np.ndarray,
    as_of: date,
    collection_actions: pl.DataFrame | None,
    treatments: pl.DataFrame | None,
) -> DecisionFacts:
    """The :class:`DecisionFacts` of ``frame``'s accounts (in its order) at ``as_of``."""
    decided_at = datetime.combine(as_of + timedelta(days=1), DECISION_TIME)
    account_ids = frame["account_id"].astype(str).to_numpy(dtype=object)
    ids = pd.Series(account_ids, dtype=object)
    states = AccountStates(
        account_id=account_ids,
        dpd=frame["dpd_at_as_of"].astype("int64").to_numpy(),
        amount_overdue=np.asarray(overdue, dtype=np.float64),
        first_ever_delinquency=frame["first_delinquency"].fillna(0).to_numpy() >= 1,
        had_first_delinquency_extension=ids.isin(
            _extension_used(treatments, decided_at)
        ).to_numpy(),
        hardship_plan_honoured=ids.isin(_hardship_plans(treatments, decided_at)).to_numpy(),
        decided_at=np.full(len(account_ids), np.datetime64(decided_at, "us")),
    )
    return DecisionFacts(as_of, states, _histories(collection_actions, account_ids, decided_at))


def _decide_all(
    frame: pd.DataFrame,
    probability: np.ndarray,
    segments: np.ndarray,
    overdue: np.ndarray,
    as_of: date,
    setup: ScoringSetup,
    collection_actions: pl.DataFrame | None,
    treatments: pl.DataFrame | None,
    facts: DecisionFacts | None = None,
) -> DecisionColumns:
    """The policy's treatment of every account, or its experiment arm's, after the compliance
    rules, all accounts at once (:func:`~rollrisk.strategies.policy.choose`, then
    :func:`~rollrisk.strategies.experiments.decide_experiments`, then
    :func:`~rollrisk.strategies.compliance.enforce_all` on every arm alike). ``facts``: the
    accounts' :func:`decision_facts`, when the caller has them already."""
    decided_at = datetime.combine(as_of + timedelta(days=1), DECISION_TIME)
    if facts is None:
        facts = decision_facts(frame, overdue, as_of, collection_actions, treatments)
    elif facts.as_of != as_of or len(facts.states.account_id) != len(frame):
        raise ValueError(
            f"decision facts of {len(facts.states.account_id)} accounts at {facts.as_of} "
            f"given for {len(frame)} accounts at {as_of}"
        )
    states = facts.states
    account_ids = states.account_id
    n = len(account_ids)
    cases = PolicyCases(
        account_id=account_ids,
        decided_at=decided_at,
        start_bucket=frame["start_bucket"].astype(str).to_numpy(dtype=object),
        probability=np.clip(np.asarray(probability, dtype=np.float64), 0.0, 1.0),
        segment=np.asarray([str(segment) for segment in segments], dtype=object),
        product=frame["product"].astype(str).to_numpy(dtype=object),
        dpd=states.dpd,
        amount_overdue=states.amount_overdue,
    )
    policy = setup.policy
    choices = choose(policy, cases)
    chosen = decide_experiments(policy, choices, cases, as_of, setup.experiments)
    plans, changes = enforce_all(
        chosen.planned_actions(decided_at), states, facts.histories, setup.compliance
    )
    return DecisionColumns(
        risk_band=[str(band) for band in choices.risk_band],
        treatment=chosen.treatment,
        policy_rule=chosen.rule,
        actions=_actions_json(plans, n),
        trail=_trail_json(changes, n),
        experiment_id=chosen.experiment_id,
        arm=chosen.arm,
        propensity=chosen.propensity,
    )


def _histories(
    actions: pl.DataFrame | None, account_ids: np.ndarray, decided_at: datetime
) -> ContactHistories:
    """The scored accounts' past actions (only those before the decision), ``account`` being
    the account's position in ``account_ids``."""
    if actions is None:
        return ContactHistories(
            np.array([], dtype=np.int64),
            np.array([], dtype="datetime64[us]"),
            np.array([], dtype=object),
            np.array([], dtype=object),
        )
    positions = pl.DataFrame(
        {
            "account_id": pl.Series(account_ids.tolist(), dtype=pl.String),
            "account": np.arange(len(account_ids), dtype=np.int64),
        }
    )
    recent = (
        actions.lazy()
        .filter(pl.col("action_at") < decided_at)
        .join(positions.lazy(), on="account_id", how="inner")
        .select("account", pl.col("action_at").cast(pl.Datetime("us")), "channel", "outcome")
        .collect()
    )
    return ContactHistories(
        recent["account"].to_numpy(),
        recent["action_at"].to_numpy(),
        # coded by polars (Labels.of), not as a Python string per action
        Labels.of(recent["channel"]),
        Labels.of(recent["outcome"]),
    )


def _hardship_plans(treatments: pl.DataFrame | None, decided_at: datetime) -> set[str]:
    """Accounts under a hardship plan (restructure or grace) known and running at the decision."""
    if treatments is None:
        return set()
    running = treatments.filter(
        pl.col("kind").is_in(HARDSHIP_KINDS)
        & (pl.col("known_at") <= decided_at)
        & (pl.col("start_at") <= decided_at)
        & (pl.col("end_at").is_null() | (pl.col("end_at") > decided_at))
    )
    return set(running["account_id"].to_list())


def _extension_used(treatments: pl.DataFrame | None, decided_at: datetime) -> set[str]:
    if treatments is None:
        return set()
    used = treatments.filter(
        (pl.col("kind") == "first_delinquency_extension") & (pl.col("known_at") <= decided_at)
    )
    return set(used["account_id"].to_list())


def _actions_json(plans: PlannedActions, n_accounts: int) -> list[str]:
    """Each account's planned actions as a JSON list of {action, at, channel, recipient}."""
    step_text: dict[tuple[Any, ...], str] = {}
    texts = []
    for action, at, channel, recipient in zip(
        plans.action.tolist(), plans.at.astype(datetime).tolist(),
        plans.channel.tolist(), plans.recipient.tolist(), strict=True,
    ):  # fmt: skip
        key = (action, at, channel, recipient)
        if key not in step_text:
            step_text[key] = json.dumps(
                {
                    "action": action,
                    "at": at.isoformat(timespec="minutes"),
                    "channel": channel,
                    "recipient": recipient,
                }
            )
        texts.append(step_text[key])
    bounds = np.searchsorted(plans.account, np.arange(n_accounts + 1)).tolist()
    return ["[" + ", ".join(texts[bounds[i] : bounds[i + 1]]) + "]" for i in range(n_accounts)]


def _trail_json(changes: ComplianceChanges, n_accounts: int) -> list[str]:
    """Each account's compliance changes as a JSON list of {rule, action, change, reason,
    jurisdictions} (``[]`` when the rules changed nothing)."""
    encoded: dict[tuple[Any, ...], str] = {}  # many changes repeat word for word
    texts = []
    for change in zip(
        changes.rule_id, changes.action, changes.change, changes.reason,
        changes.jurisdictions, strict=True,
    ):  # fmt: skip
        if change not in encoded:
            rule, action, what, reason, jurisdictions = change
            encoded[change] = json.dumps(
                {
                    "rule": rule,
                    "action": action,
                    "change": what,
                    "reason": reason,
                    "jurisdictions": list(jurisdictions),
                },
                ensure_ascii=False,
            )
        texts.append(encoded[change])
    bounds = np.searchsorted(changes.account, np.arange(n_accounts + 1)).tolist()
    return ["[" + ", ".join(texts[bounds[i] : bounds[i + 1]]) + "]" for i in range(n_accounts)]
