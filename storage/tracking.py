"""Where MLflow runs go, and the provenance every run records.

Tracking store: ``MLFLOW_TRACKING_URI`` when set, else the embedded SQLite store
``sqlite:///<cwd>/runs/mlflow.db``. For a SQLite store the artifacts live beside the database
in ``mlartifacts/`` (MLflow >= 3.10 has no file store; a SQLite experiment otherwise puts its
artifacts under the *current directory*, wherever that is). The location is given to an
experiment when it is created (``create_experiment(artifact_location=...)``).

Call :func:`configure_tracking` once at a job's entry point; importing this module does nothing.
It checks the store before MLflow touches it, because MLflow itself would quietly create a new
store wherever a mistyped URI points, or retry an unreachable server for minutes:

* a store is created only by a job that writes runs (``train``, the demo, the API's
  ``log_training_run``: ``create=True``), and only the default ``runs/mlflow.db`` or a SQLite
  file in a folder that exists; a missing folder in an explicit URI is a typo until the user
  makes the folder. A new store is announced on stderr;
* every other job (score, serve, monitor, evaluate, promote, report) needs the store to exist;
* a SQLite file must be an MLflow store (not garbage, not another program's database) and
  not locked by another process for longer than :data:`SQLITE_BUSY_SECONDS`;
* an ``http(s)://`` server must answer its ``/health`` within :data:`SERVER_TIMEOUT_SECONDS`;
* any other scheme than MLflow's (``sqlite``, ``http(s)``, ``postgresql``, ``mysql``,
  ``mssql``, ``databricks``) is a typo; database servers are used as they are.

Each failure is a :class:`TrackingStoreError` naming the URI and what to do.
Browse the runs with ``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db``.

:func:`log_training_run` is the one writer of a training run (tags, parameters, metrics,
artifacts; the model itself through :mod:`rollrisk.storage.registry`); :func:`run_record` and
:func:`read_run_parquet` read a run back (``rollrisk promote``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

import pandas as pd

from rollrisk.errors import UserError
from rollrisk.features.currencies import currency_metadata

if TYPE_CHECKING:  # LightGBM is imported only by a job that trains (see storage/registry.py)
    from rollrisk.models.training import TrainingResult
    from rollrisk.storage.registry import LoadedModel

TRACKED_LIBRARIES = (
    "rollrisk",
    "lightgbm",
    "mlflow",
    "scikit-learn",
    "optbinning",
    "pandas",
    "polars",
    "numpy",
    "pandera",
)


SQLITE_BUSY_SECONDS = 10.0  # how long a job waits for another process's lock on the database
SERVER_TIMEOUT_SECONDS = 5.0  # how long a tracking server has to answer /health
DEFAULT_STORE = Path("runs") / "mlflow.db"  # under the current folder (or working_dir)
SERVER_SCHEMES = ("http", "https")
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")  # also with a driver: postgresql+psycopg2
HOSTED_SCHEMES = ("databricks", "databricks-uc", "uc")
SQLITE_HEADER = b"SQLite format 3\x00"
MLFLOW_TABLES = ("experiments", "runs")  # tables every MLflow SQL store has


class TrackingStoreError(UserError):
    """The MLflow store cannot be used: missing, mistyped, unreachable, damaged or locked."""


@dataclass(frozen=True)
class TrackingSetup:
    tracking_uri: str
    artifact_root: Path | None  # None: the tracking server decides


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:"):
        return None
    # sqlite:///relative.db and sqlite:////absolute.db (SQLAlchemy's convention)
    path = unquote(urlparse(uri).path)[1:]
    return Path(path).resolve() if path and path != ":memory:" else None


def load_model(uri: str, tracking_uri: str | None = None) -> LoadedModel:
    """The roll model at ``uri`` (:func:`rollrisk.storage.registry.load_roll_model`), MLflow
    pointed first at the store (``tracking_uri``, else ``MLFLOW_TRACKING_URI``, else
    ``runs/mlflow.db``: :func:`configure_tracking`) when ``uri`` goes through one
    (``models:/``, ``runs:/``); a model folder is read without a store."""
    from rollrisk.storage.registry import load_roll_model, needs_store

    if needs_store(uri):
        configure_tracking(uri=tracking_uri)
    return load_roll_model(uri)


def configure_tracking(
    working_dir: Path | None = None, uri: str | None = None, *, create: bool = False
) -> TrackingSetup:
    """Check the store, then point MLflow (tracking and registry) at it.

    The store is ``uri`` when given, else ``MLFLOW_TRACKING_URI``, else
    ``sqlite:///<working_dir or cwd>/runs/mlflow.db``. ``create`` (jobs that log runs) lets a
    SQLite store that does not exist yet be created: the default one with its ``runs/``
    folder, an explicit one only in a folder that exists. See the module docstring for the
    checks.

    Raises:
        TrackingStoreError: the store is missing (and may not be created here), its URI has
            an unknown scheme, its server does not answer, its database is damaged, not
            MLflow's or locked.
    """
    if uri:
        named = f"tracking URI {uri!r}"
    elif os.environ.get("MLFLOW_TRACKING_URI"):
        uri = os.environ["MLFLOW_TRACKING_URI"]
        named = f"MLFLOW_TRACKING_URI={uri!r}"
    else:
        uri = f"sqlite:///{((working_dir or Path.cwd()) / DEFAULT_STORE).resolve()}"
        named = None
    database = _sqlite_path(uri)
    new = database is not None and not database.exists()
    artifact_root = check_store(uri, named, create=create)

    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if new:  # make the store's tables now, so that the next look finds a store, not nothing
        mlflow.search_experiments(max_results=1)
    return TrackingSetup(tracking_uri=uri, artifact_root=artifact_root)


def check_store(uri: str, named: str | None, *, create: bool) -> Path | None:
    """Check the store at ``uri`` (``named``: how the user gave it, for messages; ``None``:
    the default store) and create a SQLite store's folders when ``create`` allows it.

    Returns the artifact folder of a SQLite store (``mlartifacts/`` beside the database),
    else None. Raises :class:`TrackingStoreError` (see :func:`configure_tracking`).
    """
    scheme = urlparse(uri).scheme.lower()
    base = scheme.split("+")[0]
    label = named or f"the default MLflow store {uri!r}"
    if base == "sqlite":
        return _check_sqlite(uri, label, default=named is None, create=create)
    if base in SERVER_SCHEMES:
        _check_server(uri, label)
        return None
    if base in DATABASE_SCHEMES or base in HOSTED_SCHEMES:
        return None  # used as it is: its own driver reports what is wrong
    if base in ("", "file") or len(base) == 1:  # a bare path, file:, or a Windows drive letter
        raise TrackingStoreError(
            f"{label} is a path, not a store URI (MLflow's folder store is not used here); "
            "a SQLite store is written sqlite:///relative/path/mlflow.db or "
            "sqlite:////absolute/path/mlflow.db"
        )
    known = ("sqlite", *SERVER_SCHEMES, *DATABASE_SCHEMES, *HOSTED_SCHEMES)
    close = difflib.get_close_matches(base, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise TrackingStoreError(
        f"{label}: unknown scheme '{scheme}'{hint}; MLflow stores are sqlite:///path/to/mlflow.db, "
        "http(s)://host:port, postgresql://, mysql://, mssql:// or databricks"
    )


def _check_sqlite(uri: str, label: str, *, default: bool, create: bool) -> Path:
    """The artifact folder of the SQLite store at ``uri`` once it is known to be usable."""
    database = _sqlite_path(uri)
    if database is None:
        raise TrackingStoreError(
            f"{label} names no database file (an in-memory store would forget every run); "
            "write sqlite:///path/to/mlflow.db"
        )
    artifact_root = database.parent / "mlartifacts"
    if database.is_dir():
        raise TrackingStoreError(f"{label}: {database} is a folder, not an MLflow database file")
    if not database.exists():
        if not create:
            where = (
                "; run `rollrisk train` first (it creates this default store), or set "
                "MLFLOW_TRACKING_URI to the store your models are in"
                if default
                else "; check the URI: only `rollrisk train` (and the demo) create a store"
            )
            raise TrackingStoreError(f"{label}: no MLflow store at {database}{where}")
        if not default and not database.parent.is_dir():
            raise TrackingStoreError(
                f"{label}: folder {database.parent} does not exist, so this looks like a typo "
                "and no store is created there; check the URI, or make the folder to start a "
                "new store in it"
            )
        database.parent.mkdir(parents=True, exist_ok=True)
        artifact_root.mkdir(exist_ok=True)
        # a new, empty store is worth a line: runs logged there are not where earlier ones are
        print(f"rollrisk: creating a new MLflow store at {database}", file=sys.stderr)
        return artifact_root
    _check_sqlite_database(database, label, create=create)
    if create:
        artifact_root.mkdir(exist_ok=True)
    return artifact_root


def _check_sqlite_database(database: Path, label: str, *, create: bool) -> None:
    """An existing file is an MLflow SQLite store that this process can read now."""
    with database.open("rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if not header:
        if create:
            return  # an empty file is an empty SQLite database: MLflow makes its tables
        raise TrackingStoreError(f"{label}: {database} is empty, not an MLflow store")
    if header != SQLITE_HEADER:
        raise TrackingStoreError(
            f"{label}: {database} is not a SQLite database (damaged or another kind of file); "
            "restore it from a backup, or point MLFLOW_TRACKING_URI at the right file"
        )
    try:
        connection = sqlite3.connect(
            f"{database.as_uri()}?mode=ro", uri=True, timeout=SQLITE_BUSY_SECONDS
        )
        try:
            tables = {
                name
                for (name,) in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            }
        finally:
            connection.close()
    except sqlite3.OperationalError as error:
        if "locked" in str(error):
            raise TrackingStoreError(
                f"{label}: {database} stayed locked by another process for "
                f"{SQLITE_BUSY_SECONDS:g} s; wait for it to finish (another job or `mlflow ui` "
                "writing to it) and rerun"
            ) from error
        raise TrackingStoreError(f"{label}: cannot read {database}: {error}") from error
    except sqlite3.DatabaseError as error:
        raise TrackingStoreError(
            f"{label}: {database} is damaged ({error}); restore it from a backup"
        ) from error
    if tables and not set(MLFLOW_TABLES) <= tables:
        raise TrackingStoreError(
            f"{label}: {database} is a SQLite database but not an MLflow store (no "
            f"{' or '.join(t for t in MLFLOW_TABLES if t not in tables)} table); "
            "point MLFLOW_TRACKING_URI at the MLflow database"
        )
    if not tables and not create:
        raise TrackingStoreError(f"{label}: {database} holds no MLflow store (no tables)")


def _check_server(uri: str, label: str) -> None:
    """A tracking server answers (any HTTP status counts: authentication and paths are
    MLflow's to report) within :data:`SERVER_TIMEOUT_SECONDS`."""
    health = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(health, timeout=SERVER_TIMEOUT_SECONDS):  # noqa: S310 - http(s) only
            pass
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingStoreError(
            f"{label}: the MLflow tracking server does not answer ({reason}) within "
            f"{SERVER_TIMEOUT_SECONDS:g} s; is it running, and is the address right?"
        ) from error


def ensure_experiment(name: str, setup: TrackingSetup) -> str:
    """The id of experiment ``name``, created with the store's artifact location if new."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        moved = _files_elsewhere(experiment.artifact_location, setup, name)
        if moved is not None:
            print(f"rollrisk: WARNING: {moved}", file=sys.stderr, flush=True)
        return experiment.experiment_id
    location = None
    if setup.artifact_root is not None:
        location = (setup.artifact_root / name).as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def _files_elsewhere(location: str, setup: TrackingSetup, name: str) -> str | None:
    """Why a run of experiment ``name`` would write its files away from the store in use
    (a local store whose experiment records another folder: the store was copied or moved, and
    MLflow writes where the experiment says), or ``None``."""
    if setup.artifact_root is None or not location.startswith("file:"):
        return None
    recorded = Path(unquote(urlparse(location).path))
    here = setup.artifact_root / name
    if recorded.resolve() == here.resolve():
        return None
    return (
        f"experiment {name} of the store {setup.tracking_uri} keeps its files in {recorded}, "
        f"not beside the store ({here}): the store was copied or moved, and this run's files "
        f"(the model among them) are written to {recorded}; to keep a copy's runs apart from "
        "the original's, start a new store (MLFLOW_TRACKING_URI=sqlite:///another.db) instead "
        "of copying one"
    )


def fingerprint_files(root: Path) -> str:
    """sha256 over the portfolio files in ``root`` that the loader reads: each table's file or
    part files (relative path and bytes, in sorted order).

    Other files (notes, the simulator's hidden answers beside the tables) are no model input
    and do not count. Raises ``DataContractError`` when a table is given twice.
    """
    from rollrisk.features.schemas import TABLES
    from rollrisk.storage.loader import find_table_files

    root = Path(root)
    digest = hashlib.sha256()
    files = sorted({path for table in TABLES for path in find_table_files(root, table.name)})
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def git_commit(repo_dir: Path | None = None) -> str:
    """The checked-out commit (``+dirty`` when there are local changes), else ``"unknown"``."""
    where = repo_dir or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return "unknown"
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    dirty = "+dirty" if status.returncode == 0 and status.stdout.strip() else ""
    return commit.stdout.strip() + dirty


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a model's numbers depend on, plus Python."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# --------------------------------------------------------------------------- training runs

# The out-of-time rows are logged with the run, so `rollrisk promote` can score the champion
# on the same rows as the challenger.
OOT_ROWS_ARTIFACT = "evaluation/oot_test.parquet"


@dataclass(frozen=True)
class TrainingRun:
    """Where a logged training run went: its run, its model and, if registered, the version."""

    run_id: str
    model_uri: str  # runs:/<run id>/model (or the store's equivalent)
    model_name: str
    version: str | None  # None: logged, not registered

    @property
    def registered_uri(self) -> str | None:
        """``models:/NAME/VERSION`` when registered."""
        return None if self.version is None else f"models:/{self.model_name}/{self.version}"


def log_training_run(
    result: TrainingResult,
    data: Path | None = None,
    data_fingerprint: str | None = None,
    report_dir: Path | None = None,
    register: bool = True,
    tracking: TrackingSetup | None = None,
    calibration_by_grade: pd.DataFrame | None = None,
    population_dpd: tuple[int, int] | None = None,
) -> TrainingRun:
    """Log one MLflow run of ``result`` (tags, params, metrics, artifacts, the model) into the
    experiment ``result.training.experiment_name``; register the model as a new version of
    ``result.training.model_name`` with the alias ``challenger`` unless ``register`` is False.

    ``data`` is the portfolio folder trained on (tagged with its fingerprint, computed when
    ``data_fingerprint`` is not given); ``report_dir`` a folder logged as the ``report``
    artifacts. ``tracking`` is the store (default: :func:`configure_tracking`'s, which may create
    it: a training run is what a new store is for). ``population_dpd``: the DPD range (min, max)
    of the population trained on, recorded beside the reference months' account counts so that
    ``rollrisk monitor`` compares a book's size on the same range only.
    """
    import mlflow

    from rollrisk.models.monitoring import monitoring_reference, reference_population
    from rollrisk.models.training import LABEL, SPLIT_PARTS, comparison_metrics
    from rollrisk.storage.registry import log_roll_model, register_version

    training, feature_set, model = result.training, result.feature_set, result.model
    if data is not None and data_fingerprint is None:
        data_fingerprint = fingerprint_files(data)
    setup = tracking if tracking is not None else configure_tracking(create=True)
    experiment_id = ensure_experiment(training.experiment_name, setup)
    evidence = result.evaluation_model.calibration_evidence_  # the judged fit's choice
    with (
        mlflow.start_run(experiment_id=experiment_id) as active,
        tempfile.TemporaryDirectory() as scratch,
    ):
        run_id = active.info.run_id
        mlflow.set_tags(
            {
                "feature_set": feature_set.name,
                "feature_set_version": feature_set.version,
                "data_fingerprint": data_fingerprint or "unknown",
                "data_path": str(data) if data is not None else "unknown",
                "git_commit": git_commit(),
                "model_structure": training.structure,
                "calibration_method": model.calibration_evidence_.chosen,
                "ships": str(result.beats_baselines()).lower(),
                **{f"version.{name}": version for name, version in library_versions().items()},
            }
        )
        params = {
            **{f"lightgbm.{k}": v for k, v in model.lightgbm_params().items()},
            **{f"best_iteration.{k}": v for k, v in model.best_iterations_.items()},
            "structure": training.structure,
            "seed": training.seed,
            "calibration.requested": training.calibration.method,
            "calibration.chosen": evidence.chosen,
            "calibration.rule": evidence.rule,
            "calibration.holdout_fraction": training.calibration.holdout_fraction,
            "split.validation_months": training.split.validation_months,
            "split.test_months": training.split.test_months,
            **{f"observation.{k}": v for k, v in result.observation.items()},
            "feature_set": f"{feature_set.name}@{feature_set.version}",
            "monotone_constraints": json.dumps(
                dict(zip(model.feature_columns_, model.monotone_constraints_, strict=True))
            ),
        }
        for part, months in result.split.months.items():
            params[f"split.{part.split(' ')[0]}_as_of"] = (
                f"{months[0]}..{months[-1]}" if months else "none"
            )
        mlflow.log_params(params)
        mlflow.log_metrics(comparison_metrics(result.comparison))
        mlflow.log_metrics(evidence.as_metrics())
        for part in SPLIT_PARTS:
            mlflow.log_metric(f"rows_{part}", len(getattr(result.split, part)))
        if report_dir is not None:
            mlflow.log_artifacts(str(report_dir), artifact_path="report")

        scratch_dir = Path(scratch)
        _log_procedure(result, scratch_dir, calibration_by_grade)
        # how each fit's calibration was chosen: the judged fit's at the top (as before), the
        # deployed model's under "deployment"
        (scratch_dir / "calibration_evidence.json").write_text(
            json.dumps(
                {
                    **evidence.as_dict(),
                    "deployment": model.calibration_evidence_.as_dict(),
                },
                indent=2,
            )
        )
        mlflow.log_artifact(str(scratch_dir / "calibration_evidence.json"))
        if result.tuning_trials:
            pd.DataFrame(result.tuning_trials).to_csv(
                scratch_dir / "tuning_trials.csv", index=False
            )
            mlflow.log_artifact(str(scratch_dir / "tuning_trials.csv"))
        test_columns = ["account_id", "as_of", LABEL, *model.input_columns]
        oot = result.split.test[list(dict.fromkeys(test_columns))].copy()
        oot["as_of"] = pd.to_datetime(oot["as_of"])
        oot_file = scratch_dir / Path(OOT_ROWS_ARTIFACT).name
        oot.to_parquet(oot_file, index=False)
        mlflow.log_artifact(str(oot_file), artifact_path=str(Path(OOT_ROWS_ARTIFACT).parent))

        model_uri = log_roll_model(
            model,
            example_rows=result.split.test,
            reference_scores=result.deployment_scores,  # the deployed model's training scores
            # the monitor's reference: the latest labelled months, whichever part holds them
            reference_features=monitoring_reference(
                [getattr(result.split, part) for part in SPLIT_PARTS], feature_set, training.seed
            ),
            metadata={
                "feature_set": feature_set.name,
                "feature_set_version": feature_set.version,
                "tables": ",".join(result.tables),  # scoring without one of them is refused
                # the currency of its accounts: scoring accounts in another is refused
                **currency_metadata(result.currencies),
                # the as-of months the deployed model learnt from: figures on them are in-sample
                "trained_as_of": result.trained_as_of,
                # the accounts of each reference month (before the reference is sampled): the
                # size the monitor compares today's population with
                "reference_population": json.dumps(
                    reference_population([getattr(result.split, part) for part in SPLIT_PARTS])
                ),
                # ... counted on this DPD range (``population_dpd``: the training set's; a
                # monitor on another range counts other accounts)
                **(
                    {"reference_population_dpd": "{}-{}".format(*population_dpd)}
                    if population_dpd is not None
                    else {}
                ),
                **{f"observation_{k}": v for k, v in result.observation.items()},
            },
        )
        version = register_version(model_uri, training.model_name) if register else None
    return TrainingRun(
        run_id=run_id, model_uri=model_uri, model_name=training.model_name, version=version
    )


# The evaluation fit of the procedure (the deployed model learnt from the out-of-time months,
# so `rollrisk promote` scores the champion's evaluation model on a challenger's rows instead).
EVALUATION_MODEL_ARTIFACT = "evaluation/evaluation_model.json"
CALIBRATION_BY_GRADE_ARTIFACT = "evaluation/calibration_by_grade.csv"


def _log_procedure(
    result: TrainingResult, scratch_dir: Path, calibration_by_grade: pd.DataFrame | None
) -> None:
    """Log what separates the judged fit from the deployed one, into the active run.

    Params ``deployment.*`` (as-of months and fit of the registered model), ``split.*_used``
    (the sizes after a short history shrank them); metrics ``positives_*`` and
    ``rows_deployment_*`` (the data minimums of ``promote``), ``oot_smooth_ece*``, the
    Jeffreys test per risk grade (``oot_grade_*.<grade>``); artifacts: the evaluation model
    (:data:`EVALUATION_MODEL_ARTIFACT`), the grade table and ``evaluation/warnings.json``.
    """
    import mlflow

    from rollrisk.models.training import DEPLOYMENT_PARTS, LABEL

    deployed, deployment = result.model, result.deployment_split
    params: dict[str, object] = {
        "deployment.calibration.chosen": deployed.calibration_evidence_.chosen,
        "deployment.calibration.rule": deployed.calibration_evidence_.rule,
        **{f"deployment.best_iteration.{k}": v for k, v in deployed.best_iterations_.items()},
        **{
            f"evaluation.best_iteration.{k}": v
            for k, v in result.evaluation_model.best_iterations_.items()
        },
        "split.validation_months_used": len(result.split.months["validation"]),
        "split.test_months_used": len(result.split.months["out-of-time test"]),
        "split.embargo_months_used": result.split.embargo_months,
        "split.adapted": bool(result.split.adaptations),
    }
    for part, months in deployment.months.items():
        params[f"deployment.{part.split(' ')[0]}_as_of"] = (
            f"{months[0]}..{months[-1]}" if months else "none"
        )
    mlflow.log_params(params)
    metrics = {
        f"positives_{part}": float(getattr(result.split, part)[LABEL].sum())
        for part in ("train", "test")
    }
    for part in DEPLOYMENT_PARTS:
        frame = getattr(deployment, part)
        metrics[f"rows_deployment_{part}"] = float(len(frame))
        metrics[f"positives_deployment_{part}"] = float(frame[LABEL].sum())
    metrics.update(result.calibration_metrics())
    metrics.update(deployed.calibration_evidence_.as_metrics("deployment_calibration"))
    if calibration_by_grade is not None:
        for row in calibration_by_grade.itertuples(index=False):
            if row.accounts:
                metrics[f"oot_grade_accounts.{row.group}"] = float(row.accounts)
                metrics[f"oot_grade_p_value_under.{row.group}"] = float(row.p_value_under)
                metrics[f"oot_grade_p_value_over.{row.group}"] = float(row.p_value_over)
        grades = scratch_dir / Path(CALIBRATION_BY_GRADE_ARTIFACT).name
        calibration_by_grade.to_csv(grades, index=False)
        mlflow.log_artifact(
            str(grades), artifact_path=str(Path(CALIBRATION_BY_GRADE_ARTIFACT).parent)
        )
    mlflow.log_metrics(metrics)
    evaluation_model = scratch_dir / Path(EVALUATION_MODEL_ARTIFACT).name
    evaluation_model.write_text(json.dumps(result.evaluation_model.to_dict()), encoding="utf-8")
    mlflow.log_artifact(
        str(evaluation_model), artifact_path=str(Path(EVALUATION_MODEL_ARTIFACT).parent)
    )
    warnings = scratch_dir / "warnings.json"
    warnings.write_text(json.dumps(list(result.warnings), indent=2), encoding="utf-8")
    mlflow.log_artifact(str(warnings), artifact_path="evaluation")
    mlflow.set_tag("warnings", str(len(result.warnings)))


def read_run_json(run_id: str, artifact_path: str) -> object | None:
    """A JSON artifact of a run, or ``None`` when it cannot be read (absent, or logged by an
    older version that did not write it)."""
    import mlflow

    with tempfile.TemporaryDirectory() as scratch:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=artifact_path, dst_path=scratch
            )
            return json.loads(Path(path).read_text(encoding="utf-8"))
        except Exception:  # noqa: BLE001 - MLflow raises several types for a missing artifact
            return None


@dataclass(frozen=True)
class RunRecord:
    """The metrics, tags and params a run logged."""

    run_id: str
    metrics: Mapping[str, float]
    tags: Mapping[str, str]
    params: Mapping[str, str] = field(default_factory=dict)


def run_record(run_id: str) -> RunRecord:
    """The metrics, tags and params of run ``run_id``."""
    import mlflow

    run = mlflow.MlflowClient().get_run(run_id)
    return RunRecord(
        run_id=run_id,
        metrics=dict(run.data.metrics),
        tags=dict(run.data.tags),
        params=dict(run.data.params),
    )


def read_run_parquet(run_id: str, artifact_path: str) -> pd.DataFrame | None:
    """A Parquet artifact of a run as a frame, or ``None`` when it cannot be read (absent,
    or logged by an older version that did not write it)."""
    import mlflow

    with tempfile.TemporaryDirectory() as scratch:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=artifact_path, dst_path=scratch
            )
            return pd.read_parquet(path)
        except Exception:  # noqa: BLE001 - MLflow raises several types for a missing artifact
            return None
