"""Score a whole portfolio folder into an atomic, resumable result (the nightly batch).

:func:`score_portfolio` reads and validates the portfolio, finds the population at the as-of,
splits the accounts into partitions (:func:`rollrisk.storage.results.partition_of`), scores
each partition with :func:`rollrisk.scoring.core.score_accounts`, writes it with
:class:`rollrisk.storage.atomic_output.PartitionedRun` and publishes the manifest last. The
local engine does all of it in this process; with :mod:`rollrisk.scoring.spark_engine` Spark's
executors read, validate, score and write, and this process holds only the counts.

Layout and guarantees (docs/scoring.md):

* ``OUT/current`` points at ``OUT/runs/<key>``, where ``<key>`` digests everything that
  determines the output (input files, model version, as-of, rule files, observation range,
  partitions, code version); a run killed at any moment leaves the previous result in place;
* rerunning with the same inputs resumes: finished partitions are kept, the others are
  written with the same bytes;
* accounts in the population = accounts scored, checked before anything is published;
* one run at a time writes into ``OUT`` (it holds ``OUT/.lock``; a second run stops with a
  clear message);
* ``OUT/current/rejects.csv`` (also reached as ``OUT/rejects.csv``, a link through
  ``current``) holds the input rows the data contract set aside, published with the result
  it belongs to (listed in its manifest with a checksum; header only when none).

``rollrisk score`` is a thin wrapper: flags in, progress and timings out.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import polars as pl

from rollrisk.errors import UserError
from rollrisk.features.currencies import combine_currency_counts, currency_counts
from rollrisk.features.dates import (
    DateSettings,
    DefaultAsOf,
    check_as_of,
    check_as_of_within,
    choose_default_as_of,
    default_as_of_choice,
)
from rollrisk.features.observations import (
    first_statement_month,
    overdue_statements,
    overdue_statements_warning,
    short_history_warning,
    statement_timing,
)
from rollrisk.features.validation import REJECT_SCHEMA
from rollrisk.scoring.core import (
    INPUT_TABLES,
    ScoringSetup,
    check_currencies,
    check_tables,
    currency_not_checked_warning,
    population,
    tables_present,
)
from rollrisk.scoring.workers import (
    PartitionInputs,
    ScoringWorkers,
    auto_workers,
    score_partition,
)
from rollrisk.storage.atomic_output import (
    PartitionedRun,
    PartitionFile,
    holds_output_lock,
    staging_path,
)
from rollrisk.storage.config import DEFAULT_MAX_REJECT_RATE
from rollrisk.storage.loader import Portfolio, ValidationReport, load_portfolio
from rollrisk.storage.rejects import RejectAccounting, account_rejects, check_reject_rate
from rollrisk.storage.results import (
    ACCOUNTS_PER_PARTITION,
    PartitionedTables,
    default_partitions,
)
from rollrisk.storage.tracking import fingerprint_files, git_commit

REJECTS_FILE = "rejects.csv"

Engine = Literal["local", "spark"]
# wraps the partitions the local engine writes, as each is written, e.g. in a progress bar:
# (written partitions, how many will be) -> the same
Progress = Callable[[Iterable[PartitionFile], int], Iterable[PartitionFile]]


@dataclass(frozen=True)
class RuleFiles:
    """The files the scores and decisions were configured from: their bytes are part of the
    run's identity (a changed rule is a new run) and their paths are named in the manifest."""

    config: Path | None
    policy: Path
    segments: Path
    compliance: Path
    experiments: Path | None = None  # None: the shipped file, which runs no experiment

    def file_digests(self) -> dict[str, str]:
        """Each rule file's sha256, by its manifest key (for a later job to see the file the
        scores were decided with is still the one at its path: :func:`recorded_rule_file`)."""
        files = {"policy": self.policy, "segments": self.segments, "compliance": self.compliance}
        return {
            key: hashlib.sha256(Path(path).read_bytes()).hexdigest()
            for key, path in files.items()
            if Path(path).is_file()
        }

    def digest(self) -> str:
        """sha256 (16 hex digits) over the bytes of the files that exist, in a fixed order."""
        digest = hashlib.sha256()
        for path in (self.config, self.policy, self.segments, self.compliance, self.experiments):
            if path is not None and Path(path).is_file():
                digest.update(Path(path).read_bytes())
        return digest.hexdigest()[:16]


def recorded_rule_file(
    manifest: Mapping[str, Any], key: str, scores: Path, needed_for: str
) -> Path:
    """The ``key`` file (policy, segments, compliance) a scoring run recorded in its manifest,
    checked to be there and, when the run recorded its sha256, to hold the bytes the scores
    were decided with: a file edited in place since would have a later job describe or replay
    rules the scores never met.

    Raises:
        UserError: the file is not recorded, gone, or changed; naming it, ``scores`` and what
            the job ``needed_for`` it.
    """
    config = manifest.get("config", {})
    recorded = config.get(key)
    if not recorded:
        raise UserError(f"{scores}: the scoring run's manifest records no {key} file; {needed_for}")
    path = Path(recorded)
    if not path.is_file():
        raise UserError(
            f"{scores}: the scores were decided with the {key} file {recorded}, which is not "
            f"there any more; {needed_for} (restore it, or re-score with --{key})"
        )
    expected = config.get("sha256", {}).get(key)  # absent from runs before 2026-12-03
    found = hashlib.sha256(path.read_bytes()).hexdigest()
    if expected is not None and found != expected:
        raise UserError(
            f"{scores}: the {key} file {recorded} has changed since the scores were decided "
            f"(sha256 {expected[:12]}... then, {found[:12]}... now); {needed_for}: restore the "
            "file, or re-score with it"
        )
    return path


@dataclass(frozen=True)
class BatchResult:
    """What a published batch run holds and what it took."""

    as_of: date
    population: int
    scored: int
    partitions: int
    resumed_partitions: int  # already written by an earlier, interrupted run with this identity
    rows_rejected: int
    rejects: RejectAccounting  # by table and by account (storage.rejects)
    # tables the model was trained with that the data lacks, scored without by the user's
    # choice (ScoringSetup.allowed_missing_tables); recorded in the manifest
    scored_without: tuple[str, ...]
    current: Path  # OUT/current
    manifest_path: Path
    stage_seconds: dict[str, float]  # wall time per stage of the run, in order
    step_seconds: dict[str, float]  # inside score_accounts, summed over partitions (local only)
    # processes that scored the partitions (local engine; 1: the job's own), whose steps'
    # wall seconds step_seconds adds up
    workers: int = 1
    # no --as-of given and later months passed over as incomplete: which, and why
    as_of_note: str | None = None
    # accounts per active experiment and arm (arm_counts), as in the manifest
    experiment_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    # what the user must know about these scores (the manifest's "warnings")
    warnings: tuple[str, ...] = ()


@holds_output_lock  # one run at a time per output folder
def score_portfolio(
    data: Path,
    out: Path,
    setup: ScoringSetup,
    *,
    model_uri: str,
    rule_files: RuleFiles,
    jurisdictions: Sequence[str],
    as_of: date | None = None,
    partitions: int | None = None,
    engine: Engine = "local",
    progress: Progress | None = None,
    dates: DateSettings | None = None,
    max_reject_rate: float | None = DEFAULT_MAX_REJECT_RATE,
    workers: int | None = 1,
) -> BatchResult:
    """Score every account of the portfolio folder ``data`` that is delinquent at ``as_of``
    (default: the month-end of its latest month with a complete book,
    :func:`rollrisk.features.dates.default_as_of_choice`) into ``out`` and publish the result.

    ``setup`` is the model and rules (``setup.model_name``/``model_version`` are recorded),
    ``model_uri`` the URI it was loaded from; ``partitions`` defaults to one per
    ``rollrisk.storage.results.ACCOUNTS_PER_PARTITION`` accounts; ``dates`` says how the
    portfolio's dates are read (:func:`rollrisk.storage.loader.load_portfolio`). The run stops
    when the data contract rejects more than ``max_reject_rate`` of a table's rows or of the
    accounts (``None``: no limit); the rejects, by table and account, are in the manifest.

    Raises:
        UserError: another run is writing into ``out`` (``OutputFolderBusy``); rejects above
            ``max_reject_rate`` (:func:`rollrisk.storage.rejects.check_reject_rate`); nothing
            to score at ``as_of``; the portfolio lacks a table the model was
            trained with and ``setup.allowed_missing_tables`` does not name it
            (:func:`rollrisk.scoring.core.check_tables`); accounts to score in a currency
            the model was not trained on (:func:`rollrisk.scoring.core.check_currencies`);
            unusable portfolio files
            (:func:`rollrisk.storage.loader.load_portfolio`); Spark missing for ``engine="spark"``.
        RuntimeError: the number of scored accounts differs from the population (nothing is
            published then).
    """
    if partitions is not None and partitions < 1:
        raise UserError(f"partitions must be at least 1, got {partitions}")
    started = time.perf_counter()
    stage_seconds: dict[str, float] = {}
    step_seconds: dict[str, float] = {}

    def stage(name: str, since: float) -> float:
        now = time.perf_counter()
        stage_seconds[name] = stage_seconds.get(name, 0.0) + now - since
        return now

    out.mkdir(parents=True, exist_ok=True)
    staged_rejects = staging_path(out, REJECTS_FILE)  # published with the result, not before
    with ExitStack() as held:  # the Spark session, while the run needs it
        # the input files' digest (part of the run's identity) is taken while the book is read:
        # hashing lets other threads run, and reading leaves a core idle part of the time
        fingerprint = held.enter_context(ThreadPoolExecutor(max_workers=1)).submit(
            fingerprint_files, data
        )
        if engine == "spark":
            book = _spark_book(held, data, staged_rejects, dates, setup)
        else:
            portfolio = load_portfolio(data, rejects_path=staged_rejects, dates=dates)
            book = _local_book(portfolio, setup, progress, step_seconds)
        rejects = book.rejects
        if max_reject_rate is not None:
            rejects = check_reject_rate(rejects, max_reject_rate, data)
        present = book.present
        scored_without = check_tables(setup, present, str(data), book.empty_tables)
        if as_of is not None:  # outside the statement months: refused, never stamped on stale data
            book.check_as_of(as_of)
        choice = book.default_as_of()  # a given month-end is checked against it too
        default = choice if as_of is None else None
        partial_month = None if as_of is None else choice.partial_month_warning(as_of)
        as_of = default.as_of if default is not None else as_of
        people = book.population(as_of)
        short_history = short_history_warning(book.first_month(), as_of, setup.feature_set)
        overdue = overdue_statements_warning(book.overdue_statements(as_of), as_of)
        if people == 0:
            raise UserError(
                f"no account of {data} is delinquent ({setup.observation.min_dpd}-"
                f"{setup.observation.max_dpd} DPD) at {as_of}: nothing to score"
            )
        # amounts in another currency than the model's would be read on its scale: refused
        # before anything is scored (a model that does not record its currency: a warning)
        if setup.trained_currencies is not None:
            check_currencies(setup, book.currencies(as_of), f"of {data} to score at {as_of}")
        unchecked = currency_not_checked_warning(setup)
        warnings = tuple(
            w for w in (partial_month, overdue, short_history, unchecked) if w is not None
        )
        if partitions is not None and partitions > people:
            # more partitions than accounts: empty files, and a run that crawled (1,000,000
            # partitions of 3,000 accounts ran 10 minutes before it was killed)
            raise UserError(
                f"partitions: {partitions:,} is more than the {people:,} accounts to score at "
                f"{as_of}; give at most {people:,} (or leave it out: one per "
                f"{ACCOUNTS_PER_PARTITION:,} accounts)"
            )
        partitions = partitions or book.default_partitions(people)
        # the installed distribution's version (this module sits below the package's __init__)
        code_version = metadata.version("rollrisk")
        identity = {
            "data": fingerprint.result(),
            "model_uri": model_uri,
            "model_version": setup.model_version,
            "as_of": as_of.isoformat(),
            "config": rule_files.digest(),
            "jurisdictions": sorted(jurisdictions),
            "observation": setup.observation.__dict__,
            "partitions": partitions,
            "code": code_version,
            # how dates were read changes which rows are accepted; the default extract date (the
            # day of the run) is left out, so a run resumed after midnight continues: an extract
            # taken before midnight holds no row dated after either day
            "dates": _dates_identity(book.report.dates, book.report.extract_date_given),
        }
        output = PartitionedRun(out, identity)
        resumed = sum(output.is_done(k) for k in range(partitions))
        if engine == "spark":
            workers = 1
        elif workers is None:  # auto: as many as the accounts left to score are worth
            workers = auto_workers(people * (partitions - resumed) // partitions)
        workers = max(1, min(workers, partitions - resumed))
        mark = stage("read and validate", started)
        files = book.score(as_of, output, partitions, workers)
    mark = stage("features, scores, explanations, decisions, write", mark)

    scored_accounts = sum(f.rows for f in files)
    if scored_accounts != people:  # nothing lost, nothing doubled
        raise RuntimeError(
            f"{people} accounts in the population but {scored_accounts} scored; "
            "the output was not published"
        )
    report = book.report
    experiment_counts = arm_counts(files)
    manifest = {
        "as_of": as_of.isoformat(),
        "model": {"uri": model_uri, "name": setup.model_name, "version": setup.model_version},
        "code": {"rollrisk": code_version, "git_commit": git_commit()},
        "config": {
            "policy": str(rule_files.policy),
            "segments": str(rule_files.segments),
            "compliance": str(rule_files.compliance),
            "experiments": str(rule_files.experiments or setup.experiments.source),
            "jurisdictions": sorted(jurisdictions),
            "observation": setup.observation.__dict__,
            "sha256": rule_files.file_digests(),
        },
        "counts": {
            "population": people,
            "scored": scored_accounts,
            # accounts with a rejected row in any table (rejects.accounts_lost of them lost
            # entirely); rejects has the rows and rates per table and the limit checked
            "rejected_accounts": rejects.accounts_rejected,
            "rejects": rejects.as_dict(),
            # accounts per experiment active at the as-of and arm ("policy": eligible, not
            # randomised); {} when none is active
            "experiments": experiment_counts,
            "input_rows": {
                t.table: {
                    "read": t.rows_read,
                    "accepted": t.rows_accepted,
                    "rejected": t.rows_rejected,
                }
                for t in report.tables
            },
        },
        # which tables the model learnt from, which were there, and which it was scored
        # without because the user allowed it (--allow-missing-table)
        "tables": {
            "trained_with": list(setup.trained_tables),
            "present": list(present),
            "scored_without": list(scored_without),
        },
        "warnings": list(warnings),
        "rejects_file": str(out / REJECTS_FILE) if report.rows_rejected else None,
        "engine": engine,
        # how the portfolio's dates were read (docs/data-contract.md), and the as-of's source
        "dates": {
            "date_format": report.dates.date_format,
            "time_zone": report.dates.time_zone,
            "extract_date": str(report.dates.extract_date),
            "extract_date_given": report.extract_date_given,
            "as_of": "given" if default is None else "latest month with a complete book",
        },
    }
    if not staged_rejects.exists():  # a clean book: a header-only rejects file says so
        pl.DataFrame(schema=REJECT_SCHEMA).write_csv(staged_rejects)
    manifest_path = output.publish(manifest, files, attachments={REJECTS_FILE: staged_rejects})
    stage("publish", mark)
    return BatchResult(
        as_of=as_of,
        population=people,
        scored=scored_accounts,
        partitions=partitions,
        resumed_partitions=resumed,
        rows_rejected=report.rows_rejected,
        rejects=rejects,
        scored_without=scored_without,
        current=out / "current",
        manifest_path=manifest_path,
        stage_seconds=stage_seconds,
        workers=workers,
        step_seconds=step_seconds,
        as_of_note=default.note() if default is not None else None,
        experiment_counts=experiment_counts,
        warnings=warnings,
    )


@dataclass(frozen=True)
class _Book:
    """What a scoring run needs of a validated portfolio, from either engine."""

    report: ValidationReport
    rejects: RejectAccounting
    present: tuple[str, ...]
    empty_tables: tuple[str, ...]
    check_as_of: Callable[[date], None]  # raises UserError outside the statement months
    default_as_of: Callable[[], DefaultAsOf]
    population: Callable[[date], int]  # accounts to score at an as-of
    # delinquent accounts whose next statement is missing (features.observations)
    overdue_statements: Callable[[date], pl.DataFrame]
    first_month: Callable[[], date | None]  # the month (its first day) of the first statement
    # accounts per currency in the population at an as-of, with examples of the currencies
    # the model was not trained on (features.currencies.currency_counts)
    currencies: Callable[[date], pl.DataFrame]
    # as-of, output, partitions, workers (the local engine's processes)
    score: Callable[[date, PartitionedRun, int, int], list[PartitionFile]]
    # the output partitions when --partitions is not given, from the population
    default_partitions: Callable[[int], int] = default_partitions


def _local_book(
    portfolio: Portfolio,
    setup: ScoringSetup,
    progress: Progress | None,
    step_seconds: dict[str, float],
) -> _Book:
    """The portfolio in this process's memory, scored here or in worker processes."""
    found: dict[date, pl.Series] = {}  # the population's account ids, found once per as-of

    def people(as_of: date) -> pl.Series:
        if as_of not in found:
            found[as_of] = population(portfolio.statements, as_of, setup.observation)["account_id"]
        return found[as_of]

    return _Book(
        report=portfolio.report,
        rejects=account_rejects(portfolio),
        present=tables_present(portfolio.collection_actions, portfolio.treatments),
        empty_tables=portfolio.empty_tables,
        check_as_of=lambda as_of: check_as_of(portfolio.statements, as_of),
        default_as_of=lambda: default_as_of_choice(portfolio.statements),
        population=lambda as_of: people(as_of).len(),
        overdue_statements=lambda as_of: overdue_statements(
            portfolio.statements, as_of, setup.observation
        ),
        first_month=lambda: first_statement_month(portfolio.statements),
        currencies=lambda as_of: currency_counts(
            portfolio.accounts, people(as_of), setup.trained_currencies or ()
        ),
        score=lambda as_of, output, partitions, workers: _score_locally(
            portfolio,
            people(as_of),
            as_of,
            setup,
            output,
            partitions,
            progress,
            step_seconds,
            workers,
        ),
    )


def _spark_book(
    held: ExitStack, data: Path, rejects_path: Path, dates: DateSettings | None, setup: ScoringSetup
) -> _Book:
    """The portfolio validated on Spark (the session held by ``held``), scored there."""
    try:
        from rollrisk.scoring import spark_engine
    except ImportError as error:
        raise UserError(
            f"--engine spark needs PySpark and Java 17 ({error}); "
            "install it with `pip install 'rollrisk[spark]'`"
        ) from error
    book = held.enter_context(spark_engine.spark_portfolio(data, rejects_path, dates))
    months = book.months
    accounts_read = book.rejects.accounts_read

    def default() -> DefaultAsOf:
        return choose_default_as_of(months.month_ends(), months.accounts.__getitem__)

    def people(as_of: date) -> int:
        return book.population(
            lambda statements: population(statements, as_of, setup.observation).height
        )

    return _Book(
        report=book.report,
        rejects=book.rejects,
        present=book.present,
        empty_tables=book.empty_tables,
        check_as_of=lambda as_of: check_as_of_within(
            months.first, months.last, as_of, lambda: default().as_of
        ),
        default_as_of=default,
        population=people,
        overdue_statements=lambda as_of: _spark_overdue(book, as_of, setup),
        first_month=lambda: None if months.first is None else months.first.replace(day=1),
        currencies=lambda as_of: _spark_currencies(book, as_of, setup),
        score=lambda as_of, output, partitions, _workers: spark_engine.score_with_spark(
            book, as_of, setup, output, partitions
        ),
        default_partitions=lambda people: spark_default_partitions(people, accounts_read),
    )


def _spark_overdue(book: Any, as_of: date, setup: ScoringSetup) -> pl.DataFrame:
    """:func:`overdue_statements` over the Spark engine's partitions, with the whole book's
    timing (so the accounts found are the local engine's)."""
    parts = book.rows(lambda statements: statement_timing(statements, as_of))
    timing = parts.select(pl.col("latest").max(), pl.col("delay").max())
    return book.rows(
        lambda statements: overdue_statements(statements, as_of, setup.observation, timing)
    ).sort("account_id")


def _spark_currencies(book: Any, as_of: date, setup: ScoringSetup) -> pl.DataFrame:
    """:func:`currency_counts` of the population, per partition on the executors (the
    accounts' currency kept by the validation pass): only the counts per currency and up to 3
    examples of each come back, combined as the local engine counts them."""
    known, observation = setup.trained_currencies or (), setup.observation  # not the model

    def count(statements: pl.DataFrame, accounts: pl.DataFrame) -> pl.DataFrame:
        people = population(statements, as_of, observation)["account_id"]
        return currency_counts(accounts, people, known)

    return combine_currency_counts(book.per_account_partition(count))


def spark_default_partitions(population: int, accounts_read: int) -> int:
    """The Spark engine's output partitions when none are given: one per
    ``ACCOUNTS_PER_PARTITION`` accounts of the population, as the local engine, or one per
    ``ACCOUNTS_PER_PARTITION`` accounts *read* when that is more. A Spark task holds every row
    of its partition's accounts, delinquent or not (the population is known only after
    validation), so sizing by the population alone gave one task the whole book when ~4% of
    it is delinquent: 6.0 GiB in one Python worker at 1,000,000 accounts, 37,717 scored
    (docs/benchmarks.md, "Spark at 1M and 10M accounts")."""
    return max(default_partitions(population), default_partitions(accounts_read))


def arm_counts(files: Sequence[PartitionFile]) -> dict[str, dict[str, int]]:
    """Accounts per experiment and arm in the written partitions (read back, so a resumed
    partition and one Spark wrote count alike): ``{experiment_id: {arm: accounts}}``, sorted."""
    if not files:
        return {}
    counts = (
        pl.scan_parquet([f.path for f in files])
        .select("experiment_id", "arm")
        .filter(pl.col("experiment_id").is_not_null())
        .group_by("experiment_id", "arm")
        .len()
        .sort("experiment_id", "arm")
        .collect()
    )
    out: dict[str, dict[str, int]] = {}
    for experiment_id, arm, accounts in counts.iter_rows():
        out.setdefault(experiment_id, {})[arm] = accounts
    return out


def _dates_identity(dates: DateSettings, extract_date_given: bool) -> dict[str, str | None]:
    return {
        "date_format": dates.date_format,
        "time_zone": dates.time_zone,
        "extract_date": str(dates.extract_date) if extract_date_given else None,
    }


def _score_locally(
    portfolio: Portfolio,
    people: pl.Series,
    as_of: date,
    setup: ScoringSetup,
    output: PartitionedRun,
    partitions: int,
    progress: Progress | None,
    step_seconds: dict[str, float],
    workers: int,
) -> list[PartitionFile]:
    """Score and write each partition not yet written (``people``: the account ids of the
    population at ``as_of``): in this process, in partition order, with one worker (or one
    partition to do); else in ``workers`` worker processes (:mod:`rollrisk.scoring.workers`),
    the partitions handed out as workers free up.

    Either way each partition's file holds the same bytes: a partition is scored alone, by the
    same code, whatever ran beside it.
    """
    files = {k: output.existing_partition(k) for k in range(partitions) if output.is_done(k)}
    pending = [k for k in range(partitions) if k not in files]
    # only the population's rows are cut into partitions: nobody else is scored
    with ExitStack() as held:
        # the workers start first: they bootstrap while the book is cut into partitions
        pool = held.enter_context(ScoringWorkers(setup, workers)) if workers > 1 else None
        tables = PartitionedTables(
            {name: getattr(portfolio, name) for name in INPUT_TABLES}, partitions, keep=people
        )

        def inputs(partition: int) -> PartitionInputs:
            cut = tables.rows(partition)
            return tuple(cut[name] for name in INPUT_TABLES)

        done: Iterable[PartitionFile]
        if pool is not None:
            done = pool.score(pending, inputs, as_of, output, step_seconds)
        else:
            done = _score_here(pending, inputs, as_of, setup, output, step_seconds)
        if progress is not None:  # counted as partitions finish; resumed ones are not counted
            done = progress(done, len(pending))
        for written in done:
            files[written.partition] = written
    return [files[k] for k in range(partitions)]


def _score_here(
    pending: Sequence[int],
    inputs: Callable[[int], PartitionInputs],
    as_of: date,
    setup: ScoringSetup,
    output: PartitionedRun,
    step_seconds: dict[str, float],
) -> Iterator[PartitionFile]:
    for partition in pending:
        yield score_partition(partition, inputs(partition), as_of, setup, output, step_seconds)
