"""Where MLflow runs go, and the provenance every run records.

Tracking store: ``MLFLOW_TRACKING_URI`` when set, else the embedded SQLite store
``sqlite:///<cwd>/runs/mlflow.db``. For a SQLite store the artifacts live beside the database
in ``mlartifacts/`` (MLflow >= 3.10 has no file store; a SQLite experiment otherwise puts its
artifacts under the *current directory*, wherever that is). The location is given to an
experiment when it is created (``create_experiment(artifact_location=...)``).

Call :func:`configure_tracking` once at a job's entry point; importing this module does nothing.
Browse the runs with ``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db``.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd

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


def configure_tracking(working_dir: Path | None = None) -> TrackingSetup:
    """Point MLflow (tracking and registry) at the store and make its folders if needed."""
    import mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI")
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


def fingerprint_files(root: Path, exclude: Iterable[str] = ("truth",)) -> str:
    """sha256 over every file under ``root`` (relative path and bytes, in sorted order).

    ``truth/`` (the simulator's hidden answers) is excluded: it is never a model input.
    """
    excluded = set(exclude)
    digest = hashlib.sha256()
    files = sorted(
        path
        for path in Path(root).rglob("*")
        if path.is_file() and not (set(path.relative_to(root).parts) & excluded)
    )
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def fingerprint_frame(frame: pd.DataFrame) -> str:
    """sha256 of a frame's column names and row hashes (order-sensitive)."""
    digest = hashlib.sha256()
    digest.update("\0".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
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
