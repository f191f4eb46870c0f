"""The Python API: the whole flow from a portfolio folder to explained decisions, in a notebook.

    import rollrisk

    portfolio = rollrisk.load_portfolio("runs/demo/portfolio")
    training_set = rollrisk.build_training_set(portfolio)
    result = rollrisk.train(training_set, portfolio)
    result.comparison.overall            # out-of-time AUC, Brier, ... beside the baselines
    scored = rollrisk.score(result, portfolio)
    why = rollrisk.explain(result, portfolio)

Every function is typed, takes library objects (never an argparse namespace) and is what the
`rollrisk` jobs call: ``rollrisk train`` is :func:`train` plus a report and
:func:`log_training_run`, ``rollrisk build-training-set`` is
:func:`build_training_set_with_summary` plus a Parquet file, ``rollrisk score`` runs the same
scoring core as :func:`score`. Settings not given come from the shipped ``conf/default.yaml``
(see :func:`load_config`). Functions that touch MLflow take ``tracking_uri``; when it is not
given they use ``MLFLOW_TRACKING_URI``, else ``sqlite:///runs/mlflow.db`` under the current
folder. The surface and a worked example: docs/api.md.
"""

from __future__ import annotations

import numbers
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
import pandas as pd
import polars as pl
from pandera.errors import SchemaError, SchemaErrors
from tqdm import tqdm

from rollrisk.errors import RollriskWarning, UserError
from rollrisk.features.currencies import currency_counts, currency_metadata
from rollrisk.features.dates import (
    ISO_DATE_PATTERN,
    DateSettings,
    DefaultAsOf,
    check_as_of,
    default_as_of_choice,
)
from rollrisk.features.observations import (
    LABELLED,
    ObservationSpec,
    eligible_as_of_between,
    first_statement_month,
    labelled_through,
    observations,
    overdue_statements,
    overdue_statements_warning,
    short_history_warning,
)
from rollrisk.features.registry import FEATURE_SET, FeatureSet
from rollrisk.features.training_set import (
    TrainingSetBuild,
    nothing_labelled,
    validate_training_set,
)
from rollrisk.features.training_set import build_training_set as build_observations
from rollrisk.models.evaluation import ModelComparison, in_sample_rows
from rollrisk.models.explanations import (
    MAX_PRINCIPAL_REASONS,
    family_contributions,
    reason_codes,
)
from rollrisk.models.roll_model import RollModel
from rollrisk.models.training import (
    LABEL,
    TrainingResult,
    evaluate_probabilities,
    no_progress,
    train_roll_model,
)
from rollrisk.models.training_config import TrainingConfig
from rollrisk.scoring.core import (
    ALLOW_MISSING_TABLE_FLAG,
    ScoringSetup,
    check_currencies,
    check_tables,
    currency_not_checked_warning,
    default_as_of,
    features_at,
    population,
    score_accounts,
    tables_present,
)
from rollrisk.scoring.core import explain as tree_contributions
from rollrisk.scoring.setup import rules_setup
from rollrisk.storage.config import DEFAULT_MAX_REJECT_RATE, RollriskConfig
from rollrisk.storage.config import load_config as read_config_file
from rollrisk.storage.loader import Portfolio, ValidationReport
from rollrisk.storage.loader import load_portfolio as validate_and_load
from rollrisk.storage.registry import (
    UNREGISTERED,
    LoadedModel,
    observation_of,
)
from rollrisk.storage.rejects import MAX_REJECT_RATE_FLAG, account_rejects, check_reject_rate
from rollrisk.storage.tracking import TrainingRun, configure_tracking
from rollrisk.storage.tracking import load_model as load_model_at
from rollrisk.storage.tracking import log_training_run as log_run

if TYPE_CHECKING:
    from rollrisk.scoring.spark_engine import TrainingSetWritten
    from rollrisk.scoring.spark_portfolio import SparkPortfolio

__all__ = [
    "Explanation",
    "LoadedModel",
    "Model",
    "RollriskWarning",
    "build_training_set",
    "build_training_set_with_summary",
    "evaluate",
    "explain",
    "load_config",
    "load_model",
    "load_portfolio",
    "log_training_run",
    "score",
    "scoring_setup",
    "train",
    "training_as_of_dates",
]

Model: TypeAlias = LoadedModel | TrainingResult | RollModel
"""What :func:`score`, :func:`explain` and :func:`evaluate` accept: a model loaded from MLflow
(:func:`load_model`), the result of :func:`train`, or a bare fitted ``RollModel``."""

IN_MEMORY = "(in memory)"  # the URI of a model that was never logged


# --------------------------------------------------------------------------- configuration, data


def load_config(path: Path | str | None = None) -> RollriskConfig:
    """The configuration file at ``path`` (``None``: the shipped ``conf/default.yaml``).

    Returns a :class:`~rollrisk.storage.config.RollriskConfig`: ``.training`` is the
    :class:`~rollrisk.models.training_config.TrainingConfig` :func:`train` takes,
    ``.observation_spec()`` the :class:`~rollrisk.features.observations.ObservationSpec`
    (label and population) the other functions take. Raises ``UserError`` naming the file and
    key of any mistake.
    """
    return read_config_file(None if path is None else Path(path))


def load_portfolio(
    path: Path | str,
    rejects_path: Path | str | None = None,
    dates: DateSettings | None = None,
    max_reject_rate: float | None = DEFAULT_MAX_REJECT_RATE,
) -> Portfolio:
    """Read and validate a portfolio folder (docs/data-contract.md).

    Returns a :class:`~rollrisk.storage.loader.Portfolio`: ``accounts``, ``statements``,
    ``collection_actions`` and ``treatments`` (polars frames of the accepted rows in contract
    dtypes; the optional tables are ``None`` when absent) and ``report`` (rows read, accepted
    and rejected per table, with the main reasons). Rows that break the contract are set
    aside, never silently dropped: they are counted in ``report`` and written to
    ``rejects_path`` when given (a file already there is removed first: no rejected row, no
    file). ``dates`` (:class:`~rollrisk.features.dates.DateSettings`)
    declares a date format besides YYYY-MM-DD, the reporting time zone and the extract date
    (default today: rows dated after it are rejected).

    ``max_reject_rate`` is the jobs' limit (``--max-reject-rate``, default 1%): when more than
    this share of a table's rows or of the accounts is rejected, the portfolio is refused
    rather than returned shrunken; ``None`` returns whatever was accepted (read ``report``).

    Raises ``DataContractError`` when the folder cannot be used, ``UserError`` when the
    rejects pass ``max_reject_rate``.
    """
    if max_reject_rate is not None:
        _check_number("max_reject_rate", max_reject_rate, "a share between 0 and 1", 0.0, 1.0)
    if rejects_path is not None:
        # the loader writes the file only when some row is rejected: a list left by an earlier
        # load would read as this one's (the jobs remove theirs first too)
        Path(rejects_path).unlink(missing_ok=True)
    portfolio = validate_and_load(
        Path(path), rejects_path=None if rejects_path is None else Path(rejects_path), dates=dates
    )
    if max_reject_rate is not None:
        try:
            check_reject_rate(account_rejects(portfolio), max_reject_rate, path)
        except UserError as error:  # the jobs' message, with this function's parameter name
            raise UserError(str(error).replace(MAX_REJECT_RATE_FLAG, "max_reject_rate")) from None
    return portfolio


def _check_number(
    name: str, value: object, expected: str, low: float, high: float, whole: bool = False
) -> None:
    """Raise ``UserError`` unless ``value`` is a number (an ``int`` when ``whole``; never a
    bool or a string, which Python would compare or coerce into a wrong setting: ``True`` is
    a 100% limit) from ``low`` to ``high`` (NaN is not)."""
    kind = numbers.Integral if whole else numbers.Real  # numpy's numbers too
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        raise UserError(f"{name}: expected {expected}, got {value!r}")


def _check_list(name: str, value: object, of: str) -> None:
    """Raise ``UserError`` when ``value``, given for a list of ``of``, is a lone string (which
    Python would read letter by letter: ``"CN"`` as the jurisdictions ``C`` and ``N``)."""
    if isinstance(value, str):
        raise UserError(
            f"{name}: expected a list of {of}, got the string {value!r}; give [{value!r}]"
        )


def _check_numbers_are_numbers(frame: pd.DataFrame, feature_set: FeatureSet) -> None:
    """Raise ``UserError`` naming the numeric features that ``frame`` holds as text: the model
    reads "37" as 37, but a reason then quotes the text's own form ("...: 37.0") in place of
    its worded template, so a frame of feature rows gives other reasons than the scores."""
    texts = [
        spec.name
        for spec in feature_set.features
        if spec.kind == "numeric"
        and spec.name in frame.columns
        and not pd.api.types.is_numeric_dtype(frame[spec.name])
        and pd.api.types.infer_dtype(frame[spec.name], skipna=True)
        not in ("empty", "floating", "integer", "mixed-integer-float", "decimal", "boolean")
    ]
    if texts:
        shown = ", ".join(texts[:5]) + (f" and {len(texts) - 5} more" if len(texts) > 5 else "")
        raise UserError(
            f"data: the numeric feature column(s) {shown} hold text; give them as numbers "
            "(a training set as build_training_set returns it)"
        )


def _observation(observation: ObservationSpec | None) -> ObservationSpec:
    return observation if observation is not None else load_config().observation_spec()


def training_as_of_dates(
    portfolio: Portfolio, observation: ObservationSpec | None = None
) -> list[date]:
    """Every month-end with statements known before it and a complete performance window after
    it (``observation.window_months``): the as-of dates :func:`build_training_set` uses when it
    is given none. Raises ``UserError`` when there is none (the history is too short)."""
    spec = _observation(observation)
    return _training_dates(portfolio, spec, labelled_through(portfolio.statements))


def _training_dates(
    portfolio: Portfolio, spec: ObservationSpec, through: date | None
) -> list[date]:
    """:func:`training_as_of_dates`, the last month a window may reach (``through``,
    :func:`~rollrisk.features.observations.labelled_through`) given."""
    first_known = portfolio.statements["known_at"].min()
    return _some_as_of(eligible_as_of_between(first_known, through, spec), portfolio.report, spec)


def _some_as_of(dates: list[date], report: ValidationReport, spec: ObservationSpec) -> list[date]:
    if not dates:
        raise UserError(
            f"{report.data_dir}: no month-end has both statements known before it "
            f"and a complete {spec.window_months}-month performance window after it; "
            "the history is too short (shorten --window-months or add months)"
        )
    return dates


def build_training_set_with_summary(
    portfolio: Portfolio,
    as_of_dates: Sequence[date] | None = None,
    observation: ObservationSpec | None = None,
    progress: bool = False,
) -> TrainingSetBuild:
    """:func:`build_training_set`, with its per-as-of summary.

    Returns a :class:`~rollrisk.features.training_set.TrainingSetBuild`: ``training_set`` (the
    frame) and ``summary`` (one row per as-of: ``population``, ``labelled``, ``positives``,
    ``roll_rate``, and the observations excluded because their window is incomplete or they
    have no outcome).
    """
    _check_list("as_of_dates", as_of_dates, "month-ends")
    if as_of_dates is not None:
        as_of_dates = list(as_of_dates)  # read once: an iterator is used up by its first reading
        if not as_of_dates:
            raise UserError(
                "as_of_dates: no month-end given (None builds every eligible one, "
                "training_as_of_dates lists them)"
            )
    spec = _observation(observation)
    # the last month an outcome window may reach, found once for the dates and the labels
    through = labelled_through(portfolio.statements)
    if as_of_dates is None:
        dates = _training_dates(portfolio, spec, through)
    else:  # read and checked as score() reads its as-of: a string or a date within the data
        dates = [_as_of(_given(day), portfolio) for day in as_of_dates]
    bar = None
    if progress:
        bar = tqdm(total=len(dates), desc="as-of dates", unit="as-of", file=sys.stderr)
    try:
        built = build_observations(
            portfolio.accounts,
            portfolio.statements,
            dates,
            spec,
            collection_actions=portfolio.collection_actions,
            treatments=portfolio.treatments,
            on_as_of_done=None if bar is None else lambda _: bar.update(),
            last_cycle_end=through,
        )
    finally:
        if bar is not None:
            bar.close()
    return _checked(built)


def write_training_set_on_spark(
    book: SparkPortfolio,
    out: Path,
    as_of_dates: Sequence[date] | None = None,
    observation: ObservationSpec | None = None,
    partitions: int | None = None,
) -> TrainingSetWritten:
    """:func:`build_training_set_with_summary` on Spark, written by the executors: ``book``
    is the portfolio validated there (:func:`rollrisk.scoring.spark_engine.spark_portfolio`);
    the rows are built per account partition (``partitions``, default: two per core, or one
    per 50,000 accounts read when more), are the local build's rows, and are written as a
    folder of parts at ``out`` (read back by
    :func:`rollrisk.storage.training_sets.read_training_set`, sorted as the local build sorts
    them). Returns the path, the row and column counts and the per-as-of summary; no row
    passes through this process."""
    from rollrisk.scoring.spark_engine import write_training_set_with_spark

    spec = _observation(observation)
    if as_of_dates is None:
        months = book.months
        eligible = eligible_as_of_between(months.first_known, months.labelled_through(), spec)
        as_of_dates = _some_as_of(eligible, book.report, spec)
    return write_training_set_with_spark(book, as_of_dates, spec, Path(out), partitions)


def _checked(built: TrainingSetBuild) -> TrainingSetBuild:
    try:
        checked = validate_training_set(built.training_set)
    except (SchemaError, SchemaErrors) as error:  # a bug, not a user error: say so plainly
        raise RuntimeError(f"the built training set breaks its own schema: {error}") from error
    return TrainingSetBuild(training_set=checked, summary=built.summary)


def build_training_set(
    portfolio: Portfolio,
    as_of_dates: Sequence[date] | None = None,
    observation: ObservationSpec | None = None,
    progress: bool = False,
) -> pl.DataFrame:
    """The point-in-time training set of a portfolio: one row per labelled observation.

    An observation is an account in the population at a month-end as-of (DPD in
    ``[observation.min_dpd, observation.max_dpd]``); its label ``rolled_to_default`` is 1 when
    it reaches ``observation.default_dpd`` within ``observation.window_months`` (default: the
    shipped config's ``observation:``). ``as_of_dates`` default to every eligible month-end
    (:func:`training_as_of_dates`); ``progress`` shows a progress bar on stderr.

    Returns a polars frame with ``account_id, as_of, product, start_bucket,
    rolled_to_default`` and one column per feature of the feature set (docs/features.md),
    checked against its schema. Observations without a complete window or without any
    outcome are left out (:func:`build_training_set_with_summary` counts them). Raises
    ``UserError`` when no row is left, saying why, as ``rollrisk build-training-set`` does
    (:func:`build_training_set_with_summary` returns the empty frame and its counts).
    """
    _check_list("as_of_dates", as_of_dates, "month-ends")
    as_of_dates = None if as_of_dates is None else list(as_of_dates)  # read twice below
    built = build_training_set_with_summary(
        portfolio, as_of_dates=as_of_dates, observation=observation, progress=progress
    )
    if built.training_set.height == 0:
        raise UserError(
            nothing_labelled(
                portfolio.report.data_dir,
                None
                if as_of_dates is None
                else [_as_of(_given(d), portfolio) for d in as_of_dates],
                built.summary,
                "the training set is empty",
                as_of_name="as_of_dates",
                window_name="the observation's window_months",
            )
        )
    return built.training_set


# --------------------------------------------------------------------------- training


def train(
    training_set: pl.DataFrame | pd.DataFrame,
    portfolio: Portfolio,
    config: TrainingConfig | None = None,
    observation: ObservationSpec | None = None,
    tune: bool = False,
    progress: Callable[[str], None] | None = None,
    feature_set: FeatureSet = FEATURE_SET,
) -> TrainingResult:
    """Train the roll model and both baselines; measure them on the out-of-time months.

    ``training_set`` is :func:`build_training_set`'s frame (polars or pandas); ``portfolio``
    the portfolio it was built from (the roll-rate chain baseline is estimated from its
    statements); ``config`` the training settings (default: the shipped config's
    ``training:``); ``observation`` the label's definition the training set was built with;
    ``tune`` an Optuna search of LightGBM parameters within ``config.tuning``; ``progress``
    receives a message at each step. Nothing is logged: see :func:`log_training_run`.

    Returns a :class:`~rollrisk.models.training.TrainingResult`: ``model`` (the deployed
    ``RollModel``: refit on every labelled month, calibrated on the latest), ``evaluation_model``
    (the same procedure fitted before the out-of-time months), ``comparison`` (the evaluation
    fit's out-of-time metrics beside the baselines': ``comparison.overall`` has one row per
    model with ``auc, gini, ks, brier, log_loss, ece``; ``comparison.by_slice`` per product and
    starting bucket), ``split`` and ``deployment_split`` (the time splits), ``warnings``,
    ``beats_baselines()`` and ``gaps()``.
    """
    frame = training_set.to_pandas() if isinstance(training_set, pl.DataFrame) else training_set
    spec = _observation(observation)
    check_labels(frame, portfolio, spec)
    return train_roll_model(
        frame,
        portfolio.statements,
        portfolio.accounts,
        feature_set,
        config if config is not None else load_config().training,
        default_dpd=spec.default_dpd,
        window_months=spec.window_months,
        tune=tune,
        progress=progress if progress is not None else no_progress,
    )


def check_labels(
    training_set: pd.DataFrame, portfolio: Portfolio, observation: ObservationSpec
) -> None:
    """Refuse a training set whose rows are not ``observation``'s labelled population of
    ``portfolio``: one observation per (account_id, as_of), each in the population at its
    as-of with the label ``observation`` gives it.

    A training set built with another observation (a 6-month window trained as a 3-month one,
    a default at 60 DPD trained as one at 90) trained without a word: the gap before the
    out-of-time months was sized for the wrong window, so the training labels reached into
    them, and the model recorded a label it was not trained on. A training set of another
    portfolio, or one with repeated rows, passed the same way.

    Raises:
        UserError: naming how many rows differ, one example, and what to pass.
    """
    keys = pl.from_pandas(
        training_set[["account_id", "as_of", "rolled_to_default"]].reset_index(drop=True)
    ).with_columns(pl.col("as_of").cast(pl.Date), pl.col("rolled_to_default").cast(pl.Int8))
    repeated = keys.filter(pl.struct("account_id", "as_of").is_duplicated())
    if repeated.height:
        first = repeated.row(0, named=True)
        raise UserError(
            f"the training set holds {repeated.height:,} rows that repeat an (account_id, "
            f"as_of) pair, e.g. account {first['account_id']!r} at {first['as_of']}: each "
            "observation once (was it concatenated with itself?)"
        )
    dates = sorted(keys["as_of"].unique().to_list())
    expected = (
        observations(portfolio.statements, dates, observation)
        .filter(pl.col("status") == LABELLED)
        .select("account_id", "as_of", pl.col("rolled_to_default").alias("_expected"))
    )
    differ = keys.join(expected, on=["account_id", "as_of"], how="left").filter(
        pl.col("_expected").is_null() | (pl.col("_expected") != pl.col("rolled_to_default"))
    )
    if differ.height:
        first = differ.row(0, named=True)
        found = (
            "is not in its labelled population"
            if first["_expected"] is None
            else f"is labelled {first['_expected']}, the training set says "
            f"{first['rolled_to_default']}"
        )
        raise UserError(
            f"{differ.height:,} of the training set's {keys.height:,} rows are not labelled as "
            f"the observation given labels them (default at {observation.default_dpd} DPD within "
            f"{observation.window_months} months, population {observation.min_dpd}-"
            f"{observation.max_dpd} DPD): e.g. account {first['account_id']!r} at "
            f"{first['as_of']} {found}; pass train() the observation (and the portfolio) the "
            "training set was built with"
        )


def log_training_run(
    result: TrainingResult,
    data: Path | str | None = None,
    report_dir: Path | str | None = None,
    register: bool = True,
    tracking_uri: str | None = None,
) -> TrainingRun:
    """Log a training result to MLflow and register its model, as ``rollrisk train`` does.

    One run in the experiment ``result.training.experiment_name`` with the tags (feature set,
    data fingerprint of ``data``, code version), parameters, out-of-time metrics
    (``oot_auc``, ``oot_brier``, ``oot_ece``, ``oot_psi``, per slice and per baseline) and
    artifacts (``report_dir`` when given, the out-of-time rows, the model). With ``register``
    the model becomes a new version of ``result.training.model_name`` with the alias
    ``challenger``. Returns a :class:`~rollrisk.storage.tracking.TrainingRun`: ``run_id``,
    ``model_uri``, ``version`` (``None`` when not registered) and ``registered_uri``.
    """
    setup = configure_tracking(uri=tracking_uri, create=True)
    return log_run(
        result,
        data=None if data is None else Path(data),
        report_dir=None if report_dir is None else Path(report_dir),
        register=register,
        tracking=setup,
    )


def load_model(uri: str, tracking_uri: str | None = None) -> LoadedModel:
    """Load a roll model from MLflow, as ``rollrisk score`` and ``rollrisk serve`` do.

    ``uri`` is ``models:/NAME@ALIAS`` (e.g. ``models:/rollrisk-roll-to-default@champion``),
    ``models:/NAME/VERSION``, ``runs:/RUN_ID/model`` or a path. Returns a
    :class:`~rollrisk.storage.registry.LoadedModel`: ``model`` (the ``RollModel``), ``name``,
    ``version``, ``metadata`` (feature set, label definition), ``reference_scores`` (its
    training scores) and ``predict_proba(frame)``. Raises ``UserError`` when nothing loads.
    """
    return load_model_at(uri, tracking_uri)


def _as_loaded(model: Model) -> LoadedModel:
    """Any accepted model as a :class:`LoadedModel` (an unlogged one: name and version
    ``unregistered``, and the label definition of its training when known)."""
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, TrainingResult):
        return LoadedModel(
            uri=IN_MEMORY,
            name=UNREGISTERED,
            version=UNREGISTERED,
            model=model.model,
            metadata={
                "feature_set": model.feature_set.name,
                "feature_set_version": model.feature_set.version,
                "tables": ",".join(model.tables),
                **currency_metadata(model.currencies),
                "trained_as_of": model.trained_as_of,
                **{f"observation_{k}": v for k, v in model.observation.items()},
            },
            reference_scores=np.asarray(model.deployment_scores),
        )
    if isinstance(model, RollModel):
        return LoadedModel(
            uri=IN_MEMORY,
            name=UNREGISTERED,
            version=UNREGISTERED,
            model=model,
            metadata={},
            reference_scores=None,
        )
    raise TypeError(
        "expected a model from rollrisk.load_model, a result of rollrisk.train or a RollModel, "
        f"got {type(model).__name__}"
    )


def evaluate(model: Model, training_set: pl.DataFrame | pd.DataFrame) -> ModelComparison:
    """Measure a model on the labelled rows of a training set (as ``rollrisk evaluate``).

    ``training_set`` is :func:`build_training_set`'s frame, e.g. of another portfolio or a
    later period; rows without a label are left out. Returns a
    :class:`~rollrisk.models.evaluation.ModelComparison` for the one model ``roll_model``:
    ``overall`` (AUC, Gini, KS, Brier, log loss, ECE), ``by_slice`` (per product and starting
    bucket), ``lift``, ``reliability`` and, when the model carries its training scores,
    ``stability`` (PSI against them).
    """
    loaded = _as_loaded(model)
    frame = training_set.to_pandas() if isinstance(training_set, pl.DataFrame) else training_set
    frame = frame[frame[LABEL].notna()].reset_index(drop=True)
    if frame.empty:
        raise UserError("no labelled rows to evaluate")
    found = in_sample_rows(frame["as_of"], loaded.metadata.get("trained_as_of"))
    if found is not None:  # `rollrisk evaluate` warns of the same rows
        inside, last = found
        warnings.warn(
            f"{inside:,} of {len(frame):,} rows are of the months the model learnt from (up to "
            f"{last.date()}): their figures are in-sample and flatter it; evaluate rows of "
            "later months for an out-of-sample figure",
            RollriskWarning,
            stacklevel=2,
        )
    return evaluate_probabilities(frame, loaded.predict_proba(frame), loaded.reference_scores)


# --------------------------------------------------------------------------- scoring


def scoring_setup(
    model: Model,
    observation: ObservationSpec | None = None,
    policy: Path | str | None = None,
    segments: Path | str | None = None,
    compliance: Path | str | None = None,
    jurisdictions: Sequence[str] | None = None,
    experiments: Path | str | None = None,
    allow_missing_tables: Sequence[str] = (),
) -> ScoringSetup:
    """Everything :func:`score` needs besides the data, loaded once: the model, the population
    range (``observation``; the label settings come from the model when it knows them), the
    segment rules, the policy, the strictest compliance rules of ``jurisdictions`` and the
    champion/challenger experiments (docs/strategies.md, "Experiments").

    The rule files default to the shipped ``conf/segments.yaml``, ``conf/policy.yaml``,
    ``conf/compliance.yaml`` and ``conf/experiments.yaml`` (no experiment); jurisdictions to
    ``("CN",)``. ``allow_missing_tables``: optional tables the model was trained with that a
    portfolio may lack knowingly (``rollrisk score --allow-missing-table``: their features are
    missing, the reasons quoting them say the table was not given, and the scores move).
    Raises ``UserError`` when a file is missing or a table name is not an optional table; the
    strategy parsers raise theirs naming ``file:line`` (an experiment's arm named like a
    policy treatment with another ladder included).
    """
    _check_list("jurisdictions", jurisdictions, "jurisdiction codes")
    _check_list("allow_missing_tables", allow_missing_tables, "table names")
    # read once: an iterator given here would be used up by the check below
    jurisdictions = None if jurisdictions is None else list(jurisdictions)
    allow_missing_tables = list(allow_missing_tables)
    if jurisdictions is not None and not jurisdictions:
        raise UserError(
            "jurisdictions: expected at least one jurisdiction code (None: the default, CN)"
        )
    try:
        return rules_setup(
            _as_loaded(model),
            _observation(observation),
            policy=policy,
            segments=segments,
            compliance=compliance,
            jurisdictions=jurisdictions,
            experiments=experiments,
            allow_missing_tables=allow_missing_tables,
        )
    except ValueError as error:  # an unknown jurisdiction: as `rollrisk score` reports it
        raise UserError(str(error)) from error


def score(
    model: Model | ScoringSetup,
    portfolio: Portfolio,
    as_of: date | str | None = None,
    observation: ObservationSpec | None = None,
) -> pl.DataFrame:
    """Score every delinquent account of ``portfolio`` at ``as_of``, as ``rollrisk score`` does.

    ``as_of`` (a date, or a string YYYY-MM-DD; any day, each account's DPD aged to it,
    docs/features.md) defaults to the month-end of the latest month with a complete book, as
    the batch's; one outside the months the portfolio has statements for is refused with
    ``UserError``, as by the batch. ``model`` is a model (then the
    shipped rules apply; ``observation`` gives the population range) or a
    :func:`scoring_setup` for other rules. Runs the scoring core the batch, Spark and the
    service share, so an account gets the same row here as in their outputs.

    Returns a polars frame, one row per account in the population, sorted by ``account_id``:
    ``account_id, as_of, product, start_bucket, dpd, probability`` (calibrated, in [0, 1]),
    ``risk_band, exposure, amount_overdue, expected_loss, segment, segment_rule, treatment,
    policy_rule, actions, trail`` (JSON lists), ``experiment_id, arm, propensity`` (null
    outside every running experiment), ``reasons`` (JSON list of at most 4 reasons
    with code, feature, value, contribution and English and Chinese texts), one
    ``family_<family>`` contribution per driver family, ``model_name, model_version``
    (docs/scoring.md). Empty when nobody is delinquent at ``as_of``. Accounts to score in a
    currency the model was not trained on are refused with ``UserError``, as by the batch.
    """
    if isinstance(model, ScoringSetup) and observation is not None:
        raise UserError(
            "score: observation was given with a scoring setup, which holds its own population "
            "range: give it to scoring_setup(model, observation=...) instead"
        )
    choice = default_as_of_choice(portfolio.statements)  # once: the default and the notes
    when = choice.as_of if as_of is None else _as_of(as_of, portfolio)
    setup = model if isinstance(model, ScoringSetup) else scoring_setup(model, observation)
    for text in scoring_warnings(portfolio, when, setup, choice, as_of_given=as_of is not None):
        warnings.warn(text, RollriskWarning, stacklevel=2)
    _check_book(setup, portfolio, when)
    return score_accounts(
        portfolio.accounts,
        portfolio.statements,
        portfolio.collection_actions,
        portfolio.treatments,
        when,
        setup,
    )


def _check_book(setup: ScoringSetup, portfolio: Portfolio, as_of: date) -> None:
    """What the batch refuses before scoring, for :func:`score` and :func:`explain`: a table
    the model was trained with and the portfolio lacks, accounts of the population in a
    currency the model was not trained on (``UserError``)."""
    try:
        check_tables(
            setup,
            tables_present(portfolio.collection_actions, portfolio.treatments),
            "the portfolio",
        )
    except UserError as error:  # the jobs' message, with this API's parameter for the flag
        raise UserError(
            str(error).replace(
                ALLOW_MISSING_TABLE_FLAG, "scoring_setup(model, allow_missing_tables=...):"
            )
        ) from None
    if setup.trained_currencies is not None:
        people = population(portfolio.statements, as_of, setup.observation)["account_id"]
        counts = currency_counts(portfolio.accounts, people, setup.trained_currencies)
        check_currencies(setup, counts, f"of the portfolio to score at {as_of}")


def scoring_warnings(
    portfolio: Portfolio, as_of: date, setup: ScoringSetup, choice: DefaultAsOf, as_of_given: bool
) -> list[str]:
    """The warnings and notes ``rollrisk score`` prints for scoring ``portfolio`` at
    ``as_of`` (``choice``: the portfolio's :func:`default_as_of_choice`): a given as-of in a
    month the default passed over as incomplete, or (none given) which later months were
    passed over; accounts whose latest statement is overdue; a history too short for the
    feature windows; a model that does not record its currency; experiments of the setup not
    running at the as-of."""
    texts = [
        choice.partial_month_warning(as_of) if as_of_given else choice.note(),
        overdue_statements_warning(
            overdue_statements(portfolio.statements, as_of, setup.observation), as_of
        ),
        short_history_warning(
            first_statement_month(portfolio.statements), as_of, setup.feature_set
        ),
        currency_not_checked_warning(setup),
        *setup.experiments.not_running_notes(as_of),
    ]
    return [text for text in texts if text]


def _given(value: object) -> object:
    """An as-of given in a list, where ``None`` cannot mean "the default" as it does for
    :func:`_as_of`: refused."""
    if value is None:
        raise UserError("as_of_dates: expected dates or strings YYYY-MM-DD, got None")
    return value


def _as_of(value: object, portfolio: Portfolio) -> date:
    """The as-of ``value`` given to :func:`score` or :func:`explain` as a date: a ``date``, or
    a string written YYYY-MM-DD (nothing else: a datetime's time of day or a number would be
    read by some rule the user did not choose), checked against the statement months of
    ``portfolio`` (:func:`~rollrisk.features.dates.check_as_of`); ``None``: the default as-of
    of ``portfolio``. Raises ``UserError``."""
    if value is None:
        return default_as_of(portfolio.statements)
    if isinstance(value, str) and re.match(ISO_DATE_PATTERN, value.strip()):
        try:
            value = date.fromisoformat(value.strip())
        except ValueError as error:
            raise UserError(f"as_of: {value!r} is not a date ({error})") from None
    if not isinstance(value, date) or isinstance(value, datetime):
        raise UserError(f"as_of: expected a date or a string YYYY-MM-DD, got {value!r}")
    check_as_of(portfolio.statements, value, name="as_of")
    return value


# --------------------------------------------------------------------------- explanations


@dataclass(frozen=True)
class Explanation:
    """Why a model gave each account its score (exact TreeSHAP, in log-odds).

    ``contributions``: one row per account, ``account_id`` and ``as_of`` (when the input had
    them; a portfolio's as-of), one column per feature of the feature set and
    ``base_value``; a row sums to the model's raw (uncalibrated) log-odds score.
    ``reasons``: the principal reasons, one row per (account, as-of, reason), ``account_id,
    as_of, rank`` (1 = raised the risk most), ``feature, code, family, value, contribution,
    text_en, text_zh`` (only risk-raising features; at most ``max_reasons`` per account).
    ``families``: ``account_id``, ``as_of`` and the contributions summed per driver family
    (what the segment rules read).
    """

    contributions: pd.DataFrame
    reasons: pd.DataFrame
    families: pd.DataFrame


def explain(
    model: Model,
    data: Portfolio | pl.DataFrame | pd.DataFrame,
    as_of: date | str | None = None,
    observation: ObservationSpec | None = None,
    max_reasons: int = 4,
) -> Explanation:
    """Explain a model's scores: per-feature contributions, reason codes, family sums.

    ``data`` is either a portfolio (the accounts in the population at ``as_of``, default the
    latest month-end, as :func:`score` scores them, with ``observation`` giving the population
    range) or a frame of feature rows, such as a training set, holding the model's input
    columns. The same functions as :func:`score` compute the ``reasons`` column, so the reasons
    here are the reasons there. Needs a model with one booster (``structure: single``).
    """
    _check_number(
        "max_reasons",
        max_reasons,
        f"a whole number from 1 to {MAX_PRINCIPAL_REASONS}",
        1,
        MAX_PRINCIPAL_REASONS,
        whole=True,
    )
    for name, given in (("as_of", as_of), ("observation", observation)):
        if given is not None and not isinstance(data, Portfolio):
            raise UserError(
                f"{name}: given with a frame of feature rows, whose rows carry their own as-of "
                "and population; pass a portfolio to explain the accounts delinquent at an as-of"
            )
    loaded = _as_loaded(model)
    feature_set = loaded.model.feature_set
    if isinstance(data, Portfolio):
        when = _as_of(as_of, data)
        spec = observation_of(loaded, _observation(observation))
        # refused as score() refuses them: reasons on a missing table's features, or on
        # amounts read in another currency, would state what is not so
        _check_book(scoring_setup(loaded, spec), data, when)
        people = population(data.statements, when, spec)
        frame = features_at(
            people,
            when,
            data.accounts,
            data.statements,
            data.collection_actions,
            data.treatments,
            feature_set,
        )
    else:
        frame = data.to_pandas() if isinstance(data, pl.DataFrame) else data
        frame = frame.reset_index(drop=True)
        _check_numbers_are_numbers(frame, feature_set)
    contribs = tree_contributions(loaded.model, frame)
    # the keys of each row: the account, and its as-of when the rows span several (a training
    # set): without it a training set's reasons could not be told apart or joined back
    ids = {}
    if "account_id" in frame.columns:
        ids["account_id"] = frame["account_id"].astype(str).to_numpy()
    if isinstance(data, Portfolio):
        ids["as_of"] = np.full(len(frame), when, dtype=object)
    elif "as_of" in frame.columns:  # dates, as score() writes them
        ids["as_of"] = pd.to_datetime(frame["as_of"]).dt.date.to_numpy()
    contributions = pd.DataFrame(contribs, columns=[*feature_set.names, "base_value"])
    reasons = reason_codes(contribs, frame, feature_set, max_reasons=max_reasons)
    families = family_contributions(contribs, feature_set)
    rows = reasons["row"].to_numpy()
    for position, (name, values) in enumerate(ids.items()):
        contributions.insert(position, name, values)
        reasons.insert(position, name, values[rows])
        families.insert(position, name, values)
    return Explanation(
        contributions=contributions,
        reasons=reasons.drop(columns="row"),
        families=families,
    )
