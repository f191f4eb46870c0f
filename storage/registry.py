"""The MLflow model registry: the one module that logs a roll model, moves aliases and loads it.

* :func:`log_roll_model` logs a fitted :class:`~rollrisk.models.roll_model.RollModel` as an
  MLflow pyfunc (JSON artifacts, a signature with every input required, pinned requirements)
  into the active run; :func:`register_version` registers it and gives it an alias
  (``rollrisk train``: ``challenger``);
* :func:`alias_version`, :func:`set_alias` and :func:`tag_version` read and move aliases
  (``rollrisk promote``: ``challenger`` -> ``champion``);
* :func:`load_roll_model` loads the model behind any model URI with its name, version,
  metadata and the reference data logged with it. ``score``, ``serve``, ``monitor``,
  ``evaluate``, ``promote``, the report and :func:`rollrisk.api.load_model` all load here, so
  a URI means the same model everywhere.

Point MLflow at the store first (:func:`rollrisk.storage.tracking.configure_tracking`).
"""

from __future__ import annotations

import json
import pickle
import platform
import re
import sys
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import polars as pl

from rollrisk.errors import RollriskWarning, UserError
from rollrisk.features.observations import ObservationSpec

if TYPE_CHECKING:  # imported when a model is loaded: LightGBM brings OpenMP, which reads its
    # settings once, when loaded; `rollrisk serve` sets them first (see pipelines/serve.py)
    from rollrisk.models.roll_model import RollModel

DEFAULT_MODEL_URI = "models:/rollrisk-roll-to-default@champion"
CHALLENGER = "challenger"  # the alias `rollrisk train` gives a new version
UNREGISTERED = "unregistered"  # name and version of a model not loaded through the registry


def model_label(name: str, version: str, uri: str) -> str:
    """How a job names the model it used: ``NAME vN`` for a registry version, else the
    unregistered model at its URI (never "unregistered vunregistered")."""
    return f"{name} v{version}" if version.isdigit() else f"the unregistered model at {uri}"


_ALIAS = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")
_VERSION = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")
# any registry URI MLflow can resolve: NAME@ALIAS or NAME/SUFFIX (a version, stage or latest)
_REGISTRY_URI = re.compile(r"^models:/[^/@]+(@[^/@]+|/[^/@]+)$")
ACCEPTED_MODEL_URIS = (
    "models:/NAME@ALIAS (e.g. models:/rollrisk-roll-to-default@champion), models:/NAME/VERSION, "
    "runs:/RUN_ID/model or a model folder"
)


@dataclass(frozen=True)
class LoadedModel:
    """A roll model and what was logged with it.

    ``reference_scores``: its probabilities on its training rows (numpy), the PSI reference;
    ``reference_features``: a sample of its training features (pandas), the CSI reference;
    ``metadata``: the logged metadata (``feature_set``, ``observation_default_dpd``, ...).
    """

    uri: str
    name: str
    version: str
    model: RollModel
    metadata: dict[str, Any]
    reference_scores: Any  # training-period scores (numpy array) or None
    reference_features: Any = None  # sample of training features (pandas) or None

    def predict_proba(self, frame: pd.DataFrame | pl.DataFrame) -> np.ndarray:
        """Calibrated roll-to-default probabilities of ``frame``'s rows (pandas, or polars as
        :func:`rollrisk.api.build_training_set` returns it), exactly as the logged pyfunc
        computes them: the model's input columns (extra columns are ignored), integer columns
        fed as float64 (see :mod:`rollrisk.models.pyfunc`)."""
        from rollrisk.models.pyfunc import as_signature_frame

        if isinstance(frame, pl.DataFrame):  # as train and evaluate take a training set
            frame = frame.to_pandas()
        inputs = as_signature_frame(frame, self.model.input_columns)
        return np.asarray(self.model.predict_proba(inputs), dtype=np.float64)


# URIs resolved through the tracking store (or its server); any other is a folder of files
STORE_SCHEMES = ("models", "runs", "mlflow-artifacts")


def needs_store(uri: str) -> bool:
    """Whether loading the model at ``uri`` goes through the MLflow store (``models:/``,
    ``runs:/``): a model given by its folder (a path, ``file://``) is read without one."""
    return uri.split(":", 1)[0].lower() in STORE_SCHEMES if ":" in uri else False


def load_roll_model(uri: str) -> LoadedModel:
    """Load the RollModel behind an MLflow URI, with its registered name and version.

    ``models:/NAME@ALIAS`` and ``models:/NAME/VERSION`` resolve through the registry;
    other URIs (``runs:/...``, a path) are loaded as they are, with version ``unregistered``.

    Raises:
        UserError: a ``models:`` URI of neither form (the message lists the accepted ones);
            the URI names no model in the store; the model's files are missing from the
            artifact store or damaged (truncated, overwritten); not a rollrisk roll model.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    if uri.lower().startswith("models:") and not _REGISTRY_URI.match(uri):
        # MLflow's own words for this are taken as "files missing", which sends users looking
        raise UserError(f"model URI {uri!r} is malformed: expected {ACCEPTED_MODEL_URIS}")
    name, version = UNREGISTERED, UNREGISTERED
    store = mlflow.get_tracking_uri()
    if match := _ALIAS.match(uri):
        name = match["name"]
        try:
            found = mlflow.MlflowClient().get_model_version_by_alias(name, match["alias"])
        except MlflowException as error:
            raise UserError(
                f"cannot load model {uri!r} from {store}: {_first_line(error)} (is there a "
                "registered model with that alias? `rollrisk train` registers a `challenger`; "
                "`rollrisk promote` makes it `champion`)"
            ) from error
        version = str(found.version)
    elif match := _VERSION.match(uri):
        name, version = match["name"], match["version"]
        try:
            mlflow.MlflowClient().get_model_version(name, version)
        except MlflowException as error:
            raise UserError(
                f"cannot load model {uri!r} from {store}: {_first_line(error)}"
            ) from error
    folder = model_folder_of(uri)
    if folder is not None:  # a path: the store plays no part, the folder must be one
        _check_model_folder(uri, folder)
    try:
        # downloaded here, so that the requirements the model was logged with are read from
        # its files: MLflow's own check of them scans every installed package (1.5 s a load)
        local = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=uri) if folder is None else folder
        )
        pyfunc = mlflow.pyfunc.load_model(str(local), suppress_warnings=True)
        python_model = pyfunc.unwrap_python_model()
    except (MlflowException, OSError) as error:
        source = f" from {store}" if needs_store(uri) else ""
        raise UserError(
            f"cannot load model {uri!r}{_where(name, version)}{source}: the model's files "
            f"are missing or unreadable ({_first_line(error)})"
        ) from error
    except _DAMAGED as error:
        raise UserError(
            f"cannot load model {uri!r}{_where(name, version)}: its files are damaged "
            f"(truncated or overwritten?): {type(error).__name__}: {_first_line(error)}; "
            "retrain, or restore the artifact store from a backup"
        ) from error
    for mismatch in environment_mismatches(local, pyfunc.metadata.flavors):
        warnings.warn(f"{uri}: {mismatch}", RollriskWarning, stacklevel=2)
    model = getattr(python_model, "model_", None)
    from rollrisk.models.roll_model import RollModel

    if not isinstance(model, RollModel):
        raise UserError(f"{uri!r} is not a rollrisk roll model (no RollModel inside)")
    return LoadedModel(
        uri=uri,
        name=name,
        version=version,
        model=model,
        metadata=dict(pyfunc.metadata.metadata or {}),
        reference_scores=getattr(python_model, "reference_scores_", None),
        reference_features=getattr(python_model, "reference_features_", None),
    )


def environment_mismatches(model_folder: Path, flavors: Mapping[str, Any]) -> list[str]:
    """What differs between this environment and the one the model at ``model_folder`` was
    logged from: each pinned requirement (its ``requirements.txt``, ``name==version``) whose
    package is missing or at another version, and another Python minor version. A model
    logged without a pin, or a line of another form, is not compared."""
    found: list[str] = []
    requirements = model_folder / "requirements.txt"
    lines = requirements.read_text().splitlines() if requirements.is_file() else []
    for line in lines:
        name, equals, version = line.strip().partition("==")
        if not equals or not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            continue
        try:
            installed = installed_version(name)
        except PackageNotFoundError:
            installed = None
        if installed != version.strip():
            found.append(
                f"the model was logged with {name} {version.strip()}, and this environment "
                f"has {installed or 'no ' + name}: its scores may differ from those it was "
                f"validated with (install {name}=={version.strip()}, or retrain)"
            )
    logged_python = str(flavors.get("python_function", {}).get("python_version", ""))
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if logged_python and ".".join(logged_python.split(".")[:2]) != running:
        found.append(
            f"the model was logged with Python {logged_python}, and this is Python "
            f"{platform.python_version()}: it may not load or score alike"
        )
    return found


MODEL_FILE = "MLmodel"  # what makes a folder a model folder: MLflow's description of it
_MODEL_FOLDER = (
    f"a model folder holds the {MODEL_FILE} file and the files MLflow logged beside it (the "
    "`artifacts` folder of a logged model)"
)


def model_folder_of(uri: str) -> Path | None:
    """The local folder a model URI names (a path, or ``file://``), or None for a URI read
    through the store (``models:/``, ``runs:/``) or from a remote artifact location."""
    if needs_store(uri):
        return None
    if uri.lower().startswith("file:"):
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        return Path(url2pathname(urlparse(uri).path))
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    # a scheme is letters, digits, +-. then `:` (s3://, gs://, https://); a path has none
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]+", scheme) and "://" in uri:
        return None
    return Path(uri)


def recorded_model_uri(uri: str) -> str:
    """``uri`` as a run records it: a model folder given by a relative path made absolute, so
    that a job reading the record from another folder (``rollrisk report``) finds the same
    model; any other URI as it is."""
    folder = model_folder_of(uri)
    if folder is None or uri.lower().startswith("file:") or folder.is_absolute():
        return uri
    return str(folder.resolve())


def scored_model_uri(uri: str, version: str | None) -> str:
    """The URI of the model version a run recorded (``uri`` as given to it, ``version`` the
    one it loaded): an alias URI (``models:/NAME@champion``) becomes ``models:/NAME/VERSION``,
    for the alias may have moved since (a promotion); any other URI as it is."""
    match = _ALIAS.match(uri)
    if match is None or not version or not version.isdigit():
        return uri
    return f"models:/{match['name']}/{version}"


def _check_model_folder(uri: str, folder: Path) -> None:
    """Refuse a model path that is no folder, or a folder without ``MLmodel``: MLflow's own
    message for these ("No such artifact") reads as a damaged store."""
    registered = (
        "or a registered model: models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/model"
    )
    if not folder.exists():
        raise UserError(
            f"cannot load model {uri!r}: no model folder at {folder} ({_MODEL_FOLDER}); give "
            f"a model folder, {registered}"
        )
    if folder.is_dir() and (folder / MODEL_FILE).is_file():
        return
    inside = (
        next(
            (
                p.parent
                for depth in ("*", "*/*")  # a parent given for the folder
                for p in sorted(folder.glob(f"{depth}/{MODEL_FILE}"))
            ),
            None,
        )
        if folder.is_dir()
        else None
    )
    hint = f"; the model folder inside it is {inside}" if inside is not None else ""
    raise UserError(
        f"cannot load model {uri!r}: {folder} is not a model folder (no {MODEL_FILE} file "
        f"{'in it' if folder.is_dir() else 'there: it is a file'}; {_MODEL_FOLDER}){hint}; "
        f"give a model folder, {registered}"
    )


# What reading a model's files raises when the bytes are not what was written: JSON and
# Parquet decoders raise ValueError (pyarrow's ArrowInvalid is one), a cut pickle
# UnpicklingError or EOFError, a JSON object missing a field KeyError.
_DAMAGED: tuple[type[Exception], ...] = (ValueError, EOFError, pickle.UnpicklingError, KeyError)


def _where(name: str, version: str) -> str:
    """`` (version V of NAME, files at LOCATION)`` for a registered model, else ``""``."""
    if version == UNREGISTERED:
        return ""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        source = client.get_model_version(name, version).source
        # MLflow 3: the version's source is a logged model, models:/m-<id>, which knows
        # where its files are
        if source.startswith("models:/m-"):
            source = client.get_logged_model(source.removeprefix("models:/")).artifact_location
    except MlflowException:
        return f" (version {version} of {name})"
    return f" (version {version} of {name}, files at {source})"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def observation_of(loaded: LoadedModel, base: ObservationSpec) -> ObservationSpec:
    """The observation settings a model was trained with (its label), over ``base``'s range.

    A model records its label (``default_dpd``, ``window_months``), not its population's DPD
    range: when its default is at or below ``base``'s range (a 60+ DPD model against the
    shipped 1-89), the range ends just below the default, as a population must (an account
    already in default cannot roll to it); without this, every job applying such a model
    stopped on ``max_dpd (89) must be below default_dpd (60)``, flags or not."""
    overrides: dict[str, int] = {}
    for name in ("default_dpd", "window_months"):
        value = loaded.metadata.get(f"observation_{name}")
        if value is not None:
            overrides[name] = int(value)
    default = overrides.get("default_dpd", base.default_dpd)
    if base.max_dpd >= default:
        overrides["max_dpd"] = default - 1
        overrides["min_dpd"] = min(base.min_dpd, default - 1)
    return base.with_overrides(**overrides)


# --------------------------------------------------------------------------- logging


def log_roll_model(
    model: RollModel,
    example_rows: pd.DataFrame,
    reference_scores: np.ndarray,
    reference_features: pd.DataFrame,
    metadata: Mapping[str, Any],
) -> str:
    """Log ``model`` as the pyfunc ``model`` of the active MLflow run; returns its model URI.

    It travels as JSON (:meth:`RollModel.to_dict`, no pickle of our classes) with its
    reference scores (rounded to 6 decimals) and reference features, a signature inferred from
    ``example_rows`` (at least the model's input columns; its first five rows are the input
    example) with every input required, and ``metadata`` (string-keyed, e.g. the feature set
    and the label's definition). Needs an active run (``mlflow.start_run``).
    """
    import mlflow
    from mlflow.models import infer_signature

    from rollrisk.models.pyfunc import (
        MODEL_ARTIFACT,
        REFERENCE_FEATURES_ARTIFACT,
        REFERENCE_SCORES_ARTIFACT,
        RollModelPyfunc,
        as_signature_frame,
    )

    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        model_json = scratch_dir / "roll_model.json"
        model_json.write_text(json.dumps(model.to_dict()), encoding="utf-8")
        reference_json = scratch_dir / "reference_scores.json"
        reference_json.write_text(
            json.dumps(np.asarray(reference_scores).round(6).tolist()), encoding="utf-8"
        )
        reference_parquet = scratch_dir / "reference_features.parquet"
        reference_features.to_parquet(reference_parquet, index=False)
        example = as_signature_frame(example_rows.head(5), model.input_columns)
        signature = _all_inputs_required(infer_signature(example, model.predict_proba(example)))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=RollModelPyfunc(),
            artifacts={
                MODEL_ARTIFACT: str(model_json),
                REFERENCE_SCORES_ARTIFACT: str(reference_json),
                REFERENCE_FEATURES_ARTIFACT: str(reference_parquet),
            },
            signature=signature,
            input_example=example,
            # Declared rather than inferred: inference spawns a subprocess that re-imports
            # everything (seconds per run). rollrisk itself must be installed where it loads.
            pip_requirements=model_requirements(),
            metadata=dict(metadata),
        )
    return str(info.model_uri)


def _all_inputs_required(signature: Any) -> Any:
    """The inferred signature with every input column required: inference marks a column
    optional when the example rows happen to be all missing there, but the model needs every
    column (a missing *value* is NaN in a double column and is fine)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    inputs = Schema(
        [ColSpec(column.type, column.name, required=True) for column in signature.inputs.inputs]
    )
    return ModelSignature(inputs=inputs, outputs=signature.outputs)


def model_requirements() -> list[str]:
    """Pinned third-party requirements of the logged model (the libraries predict imports)."""
    names = (
        "mlflow",
        "cloudpickle",
        "lightgbm",
        "numpy",
        "pandas",
        "polars",
        "pandera",
        "scikit-learn",
        "pyarrow",
    )
    return [f"{name}=={installed_version(name)}" for name in names]


# --------------------------------------------------------------------------- versions and aliases


@dataclass(frozen=True)
class RegisteredVersion:
    """One version of a registered model and the run that logged it."""

    name: str
    version: str
    run_id: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def register_version(model_uri: str, name: str, alias: str | None = CHALLENGER) -> str:
    """Register the model at ``model_uri`` as a new version of ``name`` and point ``alias``
    at it (``None``: no alias); returns the version."""
    import mlflow

    registered = mlflow.register_model(model_uri, name)
    version = str(registered.version)
    if alias is not None:
        set_alias(name, alias, version)
    return version


def alias_version(name: str, alias: str) -> RegisteredVersion | None:
    """The version of ``name`` that ``alias`` points at, or ``None`` (no such model or alias)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        found = mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return RegisteredVersion(name=name, version=str(found.version), run_id=str(found.run_id))


def version_tags(name: str, version: str) -> dict[str, str] | None:
    """The tags of version ``version`` of model ``name``, or ``None`` when there is no such
    version."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        found = mlflow.MlflowClient().get_model_version(name, str(version))
    except MlflowException:
        return None
    return dict(found.tags or {})


def set_alias(name: str, alias: str, version: str) -> None:
    """Point ``alias`` of model ``name`` at ``version`` (moved from any other version)."""
    import mlflow

    mlflow.MlflowClient().set_registered_model_alias(name, alias, str(version))


def tag_version(name: str, version: str, tags: Mapping[str, str]) -> None:
    """Set tags on one model version (e.g. the promotion decision and its reasons)."""
    import mlflow

    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)
