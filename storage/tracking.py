"""Where MLflow runs go, and the provenance every run records.

Tracking store: ``MLFLOW_TRACKING_URI`` when set, else the embedded SQLite store
``sqlite:///<cwd>/runs/mlflow.db``. For a SQLite store the artifacts live beside the database
in ``mlartifacts/`` (MLflow >= 3.10 has no file store; a SQLite experiment otherwise puts its
artifacts under the *current directory*, wherever that is). The location is given to an
experiment when it is created (``create_experiment(artifact_location=...)``).

Call :func:`configure_tracking` once at a job's entry point; importing this module does nothing.
Browse the runs with ``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db``.

:func:`log_training_run` is the one writer of a training run (tags, parameters, metrics,
artifacts; the model itself through :mod:`rollrisk.storage.registry`); :func:`run_record` and
:func:`read_run_parquet` read a run back (``rollrisk promote``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

import pandas as pd

if TYPE_CHECKING:  # LightGBM is imported only by a job that trains (see storage/registry.py)
    from rollrisk.models.training import TrainingResult

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


@dataclass(frozen=True)
class TrackingSetup:
    tracking_uri: str
    artifact_root: Path | None  # None: the tracking server decides


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:"):
        return None
    # sqlite:///relative.db and sqlite:////absolute.db (SQLAlchemy's convention)
    path = unquote(urlparse(uri).path)[1:]
    return Path(path).resolve() if path else None


def configure_tracking(working_dir: Path | None = None, uri: str | None = None) -> TrackingSetup:
    """Point MLflow (tracking and registry) at the store and make its folders if needed.

    The store is ``uri`` when given, else ``MLFLOW_TRACKING_URI``, else
    ``sqlite:///<working_dir or cwd>/runs/mlflow.db``.
    """
    import mlflow

    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        runs = (working_dir or Path.cwd()) / "runs"
        uri = f"sqlite:///{(runs / 'mlflow.db').resolve()}"
    database = _sqlite_path(uri)
    artifact_root = None
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
        artifact_root = database.parent / "mlartifacts"
        artifact_root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return TrackingSetup(tracking_uri=uri, artifact_root=artifact_root)


def ensure_experiment(name: str, setup: TrackingSetup) -> str:
    """The id of experiment ``name``, created with the store's artifact location if new."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if setup.artifact_root is not None:
        location = (setup.artifact_root / name).as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


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
) -> TrainingRun:
    """Log one MLflow run of ``result`` (tags, params, metrics, artifacts, the model) into the
    experiment ``result.training.experiment_name``; register the model as a new version of
    ``result.training.model_name`` with the alias ``challenger`` unless ``register`` is False.

    ``data`` is the portfolio folder trained on (tagged with its fingerprint, computed when
    ``data_fingerprint`` is not given); ``report_dir`` a folder logged as the ``report``
    artifacts. ``tracking`` is the store (default: :func:`configure_tracking`'s).
    """
    import mlflow

    from rollrisk.models.monitoring import monitoring_reference
    from rollrisk.models.training import LABEL, PRIMARY, SPLIT_PARTS, comparison_metrics
    from rollrisk.storage.registry import log_roll_model, register_version

    training, feature_set, model = result.training, result.feature_set, result.model
    if data is not None and data_fingerprint is None:
        data_fingerprint = fingerprint_files(data)
    setup = tracking if tracking is not None else configure_tracking()
    experiment_id = ensure_experiment(training.experiment_name, setup)
    evidence = model.calibration_evidence_
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
                "calibration_method": evidence.chosen,
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
        (scratch_dir / "calibration_evidence.json").write_text(
            json.dumps(
                {
                    "chosen": evidence.chosen,
                    "rows": evidence.n_rows,
                    "folds": evidence.n_folds,
                    "uncalibrated": vars(evidence.uncalibrated),
                    **{m: vars(s) for m, s in evidence.by_method.items()},
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
            reference_scores=result.train_scores[PRIMARY],
            # the monitor's reference: the latest labelled months, whichever part holds them
            reference_features=monitoring_reference(
                [getattr(result.split, part) for part in SPLIT_PARTS], feature_set, training.seed
            ),
            metadata={
                "feature_set": feature_set.name,
                "feature_set_version": feature_set.version,
                "tables": ",".join(result.tables),  # scoring without one of them is refused
                **{f"observation_{k}": v for k, v in result.observation.items()},
            },
        )
        version = register_version(model_uri, training.model_name) if register else None
    return TrainingRun(
        run_id=run_id, model_uri=model_uri, model_name=training.model_name, version=version
    )


@dataclass(frozen=True)
class RunRecord:
    """The metrics and tags a run logged."""

    run_id: str
    metrics: Mapping[str, float]
    tags: Mapping[str, str]


def run_record(run_id: str) -> RunRecord:
    """The metrics and tags of run ``run_id``."""
    import mlflow

    run = mlflow.MlflowClient().get_run(run_id)
    return RunRecord(run_id=run_id, metrics=dict(run.data.metrics), tags=dict(run.data.tags))


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
