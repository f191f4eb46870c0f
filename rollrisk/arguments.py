"""Command-line argument groups shared by several jobs, and the readers of what they parse.

A flag that two jobs take is declared once, here, with one help text and one default, so that
``rollrisk train --default-dpd 30`` and ``rollrisk build-training-set --default-dpd 30`` mean
the same thing. Each ``add_*`` function declares a group on a job's parser; the function
beside it turns the parsed namespace into the library's typed objects. Only jobs
(``rollrisk.pipelines``) import this module: the Python API (:mod:`rollrisk.api`) never needs
an argparse object.

Importing this module loads no model code (``rollrisk serve`` sets OpenMP's settings before
LightGBM is loaded): the readers import the library when they run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from rollrisk.conf import (
    DEFAULT_CAPACITY,
    DEFAULT_COMPLIANCE,
    DEFAULT_EXPERIMENTS,
    DEFAULT_POLICY,
    DEFAULT_SEGMENTS,
)
from rollrisk.errors import UserError
from rollrisk.storage.config import DEFAULT_JURISDICTIONS, DEFAULT_MAX_REJECT_RATE, DataConfig
from rollrisk.storage.registry import DEFAULT_MODEL_URI

if TYPE_CHECKING:
    import pandas as pd

    from rollrisk.features.dates import DateSettings
    from rollrisk.features.observations import ObservationSpec
    from rollrisk.scoring.core import ScoringSetup
    from rollrisk.storage.config import RollriskConfig
    from rollrisk.storage.loader import Portfolio
    from rollrisk.storage.registry import LoadedModel
    from rollrisk.storage.rejects import RejectAccounting

OBSERVATION_FLAGS = ("default_dpd", "window_months", "min_dpd", "max_dpd")


def as_of_date(text: str) -> date:
    """An argparse ``type``: a date written YYYY-MM-DD."""
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from error


# --------------------------------------------------------------------------- data and config


def workers_count(text: str) -> int | None:
    """``--workers``: a positive number, or ``auto`` (None: decided by the run's size)."""
    if text == "auto":
        return None
    return _at_least_one(text, " or auto")


def positive_count(text: str) -> int:
    """A whole number of at least 1 (``--partitions``)."""
    return _at_least_one(text, "")


def _at_least_one(text: str, other: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of at least 1{other}, got {text!r}"
        )
    return number


def add_data_argument(
    parser: argparse.ArgumentParser,
    help: str = "portfolio folder (see docs/data-contract.md)",  # noqa: A002 - argparse's name
) -> None:
    """``--data``: the portfolio folder a job reads (required), and how its dates are read
    (:func:`add_date_arguments`)."""
    parser.add_argument("--data", type=Path, required=True, help=help)
    add_date_arguments(parser)
    add_reject_rate_argument(parser)


def add_date_arguments(parser: argparse.ArgumentParser) -> None:
    """``--date-format``, ``--timezone`` and ``--extract-date``: how a portfolio's dates are
    read (docs/data-contract.md, "Dates and time zones"); read with :func:`date_settings`."""
    group = parser.add_argument_group("portfolio dates (docs/data-contract.md)")
    group.add_argument(
        "--date-format",
        type=_date_format,
        default=None,
        metavar="FORMAT",
        help="the strftime format the files write dates in, read besides YYYY-MM-DD, e.g. "
        "%%d/%%m/%%Y (timestamps: that date, optionally followed by HH:MM:SS); default: "
        "YYYY-MM-DD only, never guessed from the values",
    )
    group.add_argument(
        "--timezone",
        type=_time_zone,
        default=None,
        metavar="ZONE",
        help="the portfolio's reporting time zone (IANA name, e.g. Asia/Shanghai): "
        "time-zone-aware timestamps and UTC offsets are converted to it; default: none, and "
        "such timestamps are refused",
    )
    group.add_argument(
        "--extract-date",
        type=as_of_date,
        default=None,
        metavar="YYYY-MM-DD",
        help="the day the data was extracted: rows dated after it are rejected (default: today)",
    )


def _date_format(text: str) -> str:
    from rollrisk.features.dates import check_date_format

    try:
        return check_date_format(text)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _time_zone(text: str) -> str:
    from rollrisk.features.dates import check_time_zone

    try:
        return check_time_zone(text)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def date_settings(args: argparse.Namespace) -> DateSettings:
    """The :class:`~rollrisk.features.dates.DateSettings` of the flags of
    :func:`add_date_arguments` (the defaults for a job without them)."""
    from rollrisk.features.dates import DateSettings

    return DateSettings(
        date_format=getattr(args, "date_format", None),
        time_zone=getattr(args, "timezone", None),
        extract_date=getattr(args, "extract_date", None),
    )


def check_output_argument(
    args: argparse.Namespace, flag: str = "--out", path: Path | None = None, folder: bool = False
) -> None:
    """Refuse, before the job creates or removes anything, an output that is the ``--data``
    folder, lies inside it or holds it (:func:`~rollrisk.storage.atomic_output.check_output_outside_data`),
    or that cannot be written where it is: a file where the output is a ``folder``, or a file
    among the folders above it: ``path`` when given (a default the job derives), else the
    value of ``flag``.

    Raises ``UserError`` naming the paths. Every job that takes ``--data`` and writes a file
    or folder calls this first, once per output.
    """
    from rollrisk.storage.atomic_output import check_output_outside_data

    target = path if path is not None else getattr(args, flag.removeprefix("--").replace("-", "_"))
    if target is None:
        return
    target = Path(target)
    if folder and target.exists() and not target.is_dir():
        raise UserError(
            f"{flag} {target} exists and is not a folder: give a folder to write the job's "
            "results into (it is created if missing)"
        )
    above = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
    if above is not None:
        raise UserError(
            f"{flag} {target}: {above} is a file, not a folder, so nothing can be written there"
        )
    check_output_outside_data(args.data, target, flag)


def add_reject_rate_argument(parser: argparse.ArgumentParser) -> None:
    """``--max-reject-rate``: the share of a table's rows, or of the accounts, that the data
    contract may set aside before the job stops; read with :func:`max_reject_rate`."""
    group = parser.add_argument_group("rejected rows (docs/data-contract.md)")
    group.add_argument(
        "--max-reject-rate",  # named in storage.rejects' refusal (a test checks they agree)
        type=_rate,
        default=None,
        metavar="RATE",
        help="stop, before doing anything, when more than this share of a table's rows or of "
        "the accounts is rejected by the data contract, e.g. 0.05 for 5%%; 0: stop at the "
        f"first reject (config: data.max_reject_rate, default {DEFAULT_MAX_REJECT_RATE:g})",
    )


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = float("nan")
    if not 0.0 <= rate <= 1.0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {text!r}")
    return rate


def max_reject_rate(args: argparse.Namespace, config: RollriskConfig | None = None) -> float:
    """``--max-reject-rate`` when given, else the config's ``data.max_reject_rate``."""
    given = getattr(args, "max_reject_rate", None)
    if given is not None:
        return float(given)
    return (config.data if config is not None else DataConfig()).max_reject_rate


def load_portfolio_argument(
    args: argparse.Namespace,
    job: str,
    rejects_path: Path | None = None,
    config: RollriskConfig | None = None,
) -> tuple[Portfolio, RejectAccounting]:
    """Read and validate the portfolio ``--data`` names, as every job does: with the date
    settings of the flags, the rejected rows written to ``rejects_path`` (when given), what
    was set aside and what is absent printed on stderr (prefixed ``[job]``), and a stop when
    the rejects pass the limit (:func:`max_reject_rate` of ``config``).

    Returns the portfolio and its :class:`~rollrisk.storage.rejects.RejectAccounting` (with
    the limit), for the job to record. Raises ``UserError`` (unusable files, too many rejects).
    """
    import sys

    from rollrisk.api import load_portfolio
    from rollrisk.storage.rejects import account_rejects

    if not args.data.is_dir():
        raise UserError(f"--data {args.data}: not a folder (expected a portfolio folder)")
    print(f"[{job}] loading portfolio {args.data}", file=sys.stderr, flush=True)
    portfolio = load_portfolio(  # the limit is checked below, with the job's own hint
        args.data, rejects_path=rejects_path, dates=date_settings(args), max_reject_rate=None
    )
    accounting = account_rejects(portfolio)
    return portfolio, report_rejects(
        args, job, accounting, portfolio.report.absent_optional, rejects_path, config
    )


def report_rejects(
    args: argparse.Namespace,
    job: str,
    accounting: RejectAccounting,
    absent: Sequence[str],
    rejects_path: Path | None = None,
    config: RollriskConfig | None = None,
) -> RejectAccounting:
    """Say on stderr (prefixed ``[job]``) what validation set aside and which optional tables
    are ``absent``, and stop when the rejects pass the limit (:func:`max_reject_rate`):
    :func:`load_portfolio_argument` after reading, or a job that validated on Spark.

    Raises ``UserError`` (too many rejects)."""
    import sys

    from rollrisk.storage.rejects import check_reject_rate

    limit = max_reject_rate(args, config)
    for line in accounting.lines():
        print(f"[{job}] {line}", file=sys.stderr)
    if accounting.rows_rejected and rejects_path is not None:
        print(f"[{job}] rejected rows written to {rejects_path}", file=sys.stderr)
    for table in absent:
        print(
            f"[{job}] no {table} table (optional): the features computed from it are left missing",
            file=sys.stderr,
        )
    listed = f"the rejected rows are listed in {rejects_path}" if rejects_path else None
    return check_reject_rate(accounting, limit, args.data, hint=listed)


def add_portfolio_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data`` and ``--as-of``, as every job that looks at a population at one date takes them."""
    add_data_argument(parser)
    parser.add_argument(
        "--as-of",
        type=as_of_date,
        default=None,
        help="observation date YYYY-MM-DD, any day within the months the portfolio has "
        "statements for: history known by the end of that day is used and each account's DPD "
        "is aged to it from its latest statement (docs/scoring.md) (default: the month-end of "
        "the latest month with a complete book, see docs/data-contract.md)",
    )


def add_config_argument(
    parser: argparse.ArgumentParser,
    help: str = "YAML config (default: the shipped conf/default.yaml)",  # noqa: A002 - argparse's name
) -> None:
    """``--config``: the YAML configuration file, read with :func:`load_config_argument`."""
    parser.add_argument("--config", type=Path, default=None, help=help)


def add_capacity_argument(
    parser: argparse.ArgumentParser,
    default: Path | None = DEFAULT_CAPACITY,
    help: str = "contact capacity YAML (conf/capacity.yaml)",  # noqa: A002 - argparse's name
) -> None:
    """``--capacity``: the contact capacity file (agent calls a day, field visits a month;
    :mod:`rollrisk.strategies.capacity`), shared by ``score`` and ``simulate-policy``."""
    parser.add_argument("--capacity", type=Path, default=default, help=help)


def load_config_argument(args: argparse.Namespace) -> RollriskConfig:
    """The configuration ``--config`` names (the shipped default when not given)."""
    from rollrisk.storage.config import load_config

    return load_config(getattr(args, "config", None))


# --------------------------------------------------------------------------- observations


def add_observation_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that define an observation (who is in the population, what default is),
    for every command that builds observations; read with :func:`observation_spec`."""
    group = parser.add_argument_group("observation (override the config's `observation:`)")
    group.add_argument("--default-dpd", type=int, default=None, metavar="N",
                       help="DPD at or above which an account has defaulted (config default 90)")  # fmt: skip
    group.add_argument("--window-months", type=int, default=None, metavar="N",
                       help="performance window after the as-of month, in months (config default 3)")  # fmt: skip
    group.add_argument("--min-dpd", type=int, default=None, metavar="N",
                       help="lowest DPD at the as-of to be in the population (config default 1)")  # fmt: skip
    group.add_argument("--max-dpd", type=int, default=None, metavar="N",
                       help="highest DPD at the as-of to be in the population (config default 89)")  # fmt: skip


def observation_spec(args: argparse.Namespace, config: RollriskConfig) -> ObservationSpec:
    """The config's ``observation:`` section, overridden by any observation flag given."""
    return with_observation_flags(args, config.observation_spec())


def with_observation_flags(args: argparse.Namespace, spec: ObservationSpec) -> ObservationSpec:
    """``spec`` with the observation flags that were given (a job without them: unchanged)."""
    return spec.with_overrides(**{name: getattr(args, name, None) for name in OBSERVATION_FLAGS})


# --------------------------------------------------------------------------- training data


def add_training_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--training-set`` and the observation flags: how `train` and `evaluate`
    get their labelled observations; read with :func:`training_set_from_arguments`."""
    add_config_argument(parser)
    parser.add_argument(
        "--training-set",
        type=Path,
        default=None,
        help="a training set already built by `rollrisk build-training-set` (a Parquet file, "
        "or the folder of parts --engine spark writes); default: build it from --data",
    )
    add_observation_arguments(parser)


def training_set_from_arguments(
    args: argparse.Namespace,
    portfolio: Portfolio,
    observation: ObservationSpec,
    data_fingerprint: str | None = None,
) -> pd.DataFrame:
    """The training set as a pandas frame: read from ``--training-set`` (checked against its
    schema, and against ``observation`` and ``--data`` when it records the observation it was
    built with and the portfolio it was built from), else
    built from ``portfolio`` with ``observation`` at every eligible as-of (or the ``--as-of``
    dates of a job that has them), with a progress bar on stderr. ``data_fingerprint``: the
    job's own fingerprint of ``--data`` when it took one (not read again)."""
    from rollrisk.api import build_training_set
    from rollrisk.storage.tracking import fingerprint_files
    from rollrisk.storage.training_sets import (
        check_training_set_observation,
        check_training_set_portfolio,
        read_training_set,
    )

    path = getattr(args, "training_set", None)
    if path is not None:
        frame = read_training_set(path).to_pandas()
        check_training_set_observation(path, observation)
        if getattr(args, "data", None) is not None:
            fingerprint = (
                fingerprint_files if data_fingerprint is None else (lambda _: data_fingerprint)
            )
            check_training_set_portfolio(path, args.data, fingerprint)
        return frame
    built = build_training_set(
        portfolio,
        as_of_dates=getattr(args, "as_of", None),
        observation=observation,
        progress=True,
    )
    return built.to_pandas()


# --------------------------------------------------------------------------- model and rules


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """``--model``: the MLflow model URI of the roll model (default: the champion)."""
    parser.add_argument("--model", default=DEFAULT_MODEL_URI, help="MLflow model URI")


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that choose the model and the rules turning its scores into decisions.

    Shared by ``rollrisk score`` and ``rollrisk serve`` so that batch and service are set up
    from the same flags, with the same defaults; read back with :func:`setup_from_arguments`.
    """
    add_model_argument(parser)
    add_config_argument(parser, help="YAML config (observation range)")
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="strategy policy YAML")
    parser.add_argument(
        "--segments", type=Path, default=DEFAULT_SEGMENTS, help="segment rules YAML"
    )
    parser.add_argument(
        "--compliance", type=Path, default=DEFAULT_COMPLIANCE, help="compliance rules YAML"
    )
    parser.add_argument(
        "--jurisdiction",
        action="append",
        default=None,
        help="jurisdiction code(s) whose strictest rules apply; repeatable "
        f"(default: {', '.join(DEFAULT_JURISDICTIONS)})",
    )
    parser.add_argument(
        "--experiments",
        type=Path,
        default=DEFAULT_EXPERIMENTS,
        metavar="FILE",
        help="champion/challenger experiment YAML: accounts an experiment active at the as-of "
        "randomises get its arm's ladder (through the same compliance rules), and the output "
        'records experiment_id, arm and propensity (docs/strategies.md, "Experiments"; '
        "default: the shipped file, which runs none)",
    )
    add_missing_table_argument(parser)


def add_missing_table_argument(parser: argparse.ArgumentParser) -> None:
    """``--allow-missing-table``: score without an optional table the model was trained with.

    Without it, a job whose data lacks such a table refuses (the features learnt from it would
    be missing and the scores would move); with it, the job goes on and records the choice
    (the score manifest, monitor.json, the service's ``/v1/model``). Read with
    :func:`allowed_missing_tables`.
    """
    from rollrisk.features.schemas import TABLES  # not scoring.core: that loads LightGBM

    optional = [table.name for table in TABLES if not table.required]
    parser.add_argument(
        "--allow-missing-table",  # named in scoring.core's refusal (a test checks they agree)
        action="append",
        choices=optional,
        default=None,
        metavar="TABLE",
        help="score even though the data lacks this table the model was trained with "
        f"({' or '.join(optional)}; repeatable): its features are left missing and "
        "the scores move, so without this flag the job refuses; the choice is recorded",
    )


def allowed_missing_tables(args: argparse.Namespace) -> frozenset[str]:
    """The tables ``--allow-missing-table`` names (none when the job has no such flag)."""
    return frozenset(getattr(args, "allow_missing_table", None) or ())


def jurisdictions_of(args: argparse.Namespace) -> list[str]:
    """The ``--jurisdiction`` codes given, or the default ones."""
    return list(args.jurisdiction or DEFAULT_JURISDICTIONS)


def setup_from_arguments(args: argparse.Namespace) -> tuple[LoadedModel, ScoringSetup]:
    """Load the model and rules named by the flags of :func:`add_scoring_arguments`
    (MLflow's store: ``MLFLOW_TRACKING_URI``, else ``runs/mlflow.db``)."""
    # not through rollrisk.api, which imports the training and evaluation code (1.1 s)
    from rollrisk.scoring.setup import rules_setup
    from rollrisk.storage.tracking import load_model

    config = load_config_argument(args)
    loaded = load_model(args.model)
    try:
        setup = rules_setup(
            loaded,
            observation=config.observation_spec(),
            policy=args.policy,
            segments=args.segments,
            compliance=args.compliance,
            jurisdictions=jurisdictions_of(args),
            experiments=getattr(args, "experiments", None),
        )
    except ValueError as error:
        raise UserError(str(error)) from error
    for line in label_settings_not_used(config.observation, setup.observation):
        print(f"warning: {line}", file=sys.stderr)
    return loaded, replace(setup, allowed_missing_tables=allowed_missing_tables(args))


def label_settings_not_used(given: dict, used: ObservationSpec) -> list[str]:
    """What a config's ``observation:`` section sets and a scoring job does not use: a model
    predicts the label it was trained on (``default_dpd``, ``window_months``), whatever the
    config says, and the population ends below that default (``max_dpd``)."""
    lines = [
        f"the config's observation {name}: {given[name]} is not used: the model predicts the "
        f"label it was trained on ({name} {getattr(used, name)}); to score that label, train a "
        f"model with {name} {given[name]}"
        for name in ("default_dpd", "window_months")
        if name in given and given[name] != getattr(used, name)
    ]
    if "max_dpd" in given and given["max_dpd"] != used.max_dpd:
        lines.append(
            f"the config's observation max_dpd: {given['max_dpd']} is not used: the population "
            f"ends below the model's default of {used.default_dpd} DPD (max_dpd {used.max_dpd})"
        )
    return lines
