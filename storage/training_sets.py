"""Training-set files: a built training set written to Parquet and read back, checked.

Two layouts, read alike by :func:`read_training_set`:

* a **file** (the local build, :func:`write_training_set`): one Parquet file, rows sorted by
  ``as_of, account_id``;
* a **folder** (the Spark build, written by the executors so that no row passes through the
  driver): ``part-NNNNN.parquet``, one per account partition, each sorted the same way, and
  ``manifest.json`` (each part's rows and SHA-256, the columns), written last. The parts are
  written into a staging folder beside the target (:func:`training_parts_staging`,
  :func:`write_training_part`) and the folder is renamed into place by
  :func:`publish_training_parts` once every part is in, so a killed build never leaves a
  partial training set at the target.

The frame's contract is :func:`rollrisk.features.training_set.training_set_schema`; a file is
checked against it when read, so a stale or hand-edited file fails loudly instead of training a
model on the wrong columns.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import polars as pl
from pandera.errors import SchemaError, SchemaErrors

from rollrisk.errors import UserError
from rollrisk.features.observations import ObservationSpec
from rollrisk.features.registry import FEATURE_SET, FeatureSet
from rollrisk.features.training_set import validate_training_set
from rollrisk.storage.atomic_output import MANIFEST, file_sha256, publish_file

TRAINING_PARTS_LAYOUT = "rollrisk-training-set-parts/1"  # the manifest's "layout"
# the observation a training set was built with: a key of the file's Parquet metadata and of
# a folder's manifest
OBSERVATION_KEY = "observation"
OBSERVATION_FIELDS = frozenset(item.name for item in fields(ObservationSpec))
# the portfolio a local build read: {"folder": ..., "fingerprint": sha256 of its files
# (rollrisk.storage.tracking.fingerprint_files)}, a key of the file's Parquet metadata
PORTFOLIO_KEY = "portfolio"
_PART_NAME = re.compile(r"part-\d+\.parquet")


def write_training_set(
    frame: pl.DataFrame,
    path: Path,
    observation: ObservationSpec | None = None,
    portfolio: Mapping[str, str] | None = None,
) -> None:
    """Write ``frame`` to ``path`` (Parquet) next to the target and rename, so a killed run
    never leaves a half file at ``path``; makes the parent folder if needed. A folder of
    parts at ``path`` (an earlier Spark build) is replaced as :func:`publish_training_parts`
    replaces one. ``observation``, the definition the rows were built with, is kept in the
    file's metadata (:data:`OBSERVATION_KEY`), where :func:`check_training_set_observation`
    reads it; ``portfolio`` (its folder and fingerprint) too (:data:`PORTFOLIO_KEY`, read by
    :func:`check_training_set_portfolio`)."""
    path = Path(path)
    check_training_set_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    metadata = {}
    if observation is not None:
        metadata[OBSERVATION_KEY] = json.dumps(asdict(observation))
    if portfolio is not None:
        metadata[PORTFOLIO_KEY] = json.dumps(dict(portfolio))
    metadata = metadata or None
    frame.write_parquet(temporary, metadata=metadata)
    if path.is_dir() and not path.is_symlink():
        _replace(temporary, path)
    else:
        os.replace(temporary, path)


def read_training_set(path: Path, feature_set: FeatureSet = FEATURE_SET) -> pl.DataFrame:
    """A training set written by :func:`write_training_set` (a file) or by
    :func:`publish_training_parts` (a folder of parts: read whole, rows sorted by ``as_of,
    account_id`` as the local build sorts them), checked against the schema of
    ``feature_set``.

    Raises:
        UserError: the file or folder does not exist, a folder is not a complete training set
            (no manifest, a part missing or not the part its manifest lists), or the rows
            break the schema (the message lists how).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"training set {path} does not exist")
    if not path.is_dir() and _PART_NAME.fullmatch(path.name) and _is_parts_folder(path.parent):
        raise UserError(
            f"training set {path} is one part of the Spark training set {path.parent} (a share "
            "of its accounts, without its observation record): give the folder"
        )
    if path.is_dir():
        frame = _read_parts(path)
    else:
        try:
            frame = pl.read_parquet(path)
        except (pl.exceptions.PolarsError, OSError) as error:
            raise UserError(
                f"training set {path} cannot be read as Parquet ({error}); a training set is "
                "the Parquet file (or Spark folder) `rollrisk build-training-set` writes"
            ) from None
    try:
        return validate_training_set(frame, feature_set)
    except (SchemaError, SchemaErrors) as error:
        raise UserError(
            f"training set {path} does not match feature set {feature_set.name} "
            f"v{feature_set.version} (rebuild it with `rollrisk build-training-set`): {error}"
        ) from error


# --------------------------------------------------------------------------- a folder of parts


@dataclass(frozen=True)
class TrainingPart:
    """One written part: its partition, file, rows and checksum."""

    partition: int
    path: Path
    rows: int
    sha256: str


def training_part_name(partition: int) -> str:
    return f"part-{partition:05d}.parquet"


def training_parts_staging(path: Path) -> Path:
    """The staging folder the parts of a training set bound for ``path`` are written into: a
    hidden sibling (same file system, so the publishing rename is atomic), named after the
    driver process. A staging folder left by a killed build is removed and made again."""
    path = Path(path)
    staging = path.with_name(f".{path.name}.{os.getpid()}.parts")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def write_training_part(staging: Path, partition: int, frame: pl.DataFrame) -> TrainingPart:
    """Write one partition's training rows into ``staging`` (runs on an executor): a
    temporary file named after this process, fsync, then a rename, so a part that exists is
    complete and a retried task replaces it with the same rows."""
    final = Path(staging) / training_part_name(partition)
    temporary = final.with_name(f"{final.name}.{os.getpid()}.tmp")
    try:
        frame.write_parquet(temporary, compression="zstd", statistics=True)
        publish_file(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return TrainingPart(partition, final, frame.height, file_sha256(final))


def publish_training_parts(
    staging: Path,
    path: Path,
    parts: Sequence[TrainingPart],
    columns: Sequence[str],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the manifest into ``staging`` (every part of ``parts``, in partition order) and
    rename the folder to ``path``. A file or folder already at ``path`` (an earlier build) is
    moved aside first and removed after: a reader meanwhile finds the old training set, then
    briefly nothing, then the new one, never a mixture.

    Raises:
        RuntimeError: a part of ``parts`` is not in ``staging`` (nothing is published).
    """
    staging, path = Path(staging), Path(path)
    check_training_set_target(path)
    missing = [p.path.name for p in parts if not (staging / p.path.name).is_file()]
    if missing:
        raise RuntimeError(f"{staging}: parts {missing} are missing; nothing was published")
    body = {
        "layout": TRAINING_PARTS_LAYOUT,
        "rows": sum(p.rows for p in parts),
        "columns": list(columns),
        "parts": [
            {"file": p.path.name, "rows": p.rows, "sha256": p.sha256}
            for p in sorted(parts, key=lambda p: p.partition)
        ],
        **dict(extra or {}),
    }
    manifest = staging / MANIFEST
    temporary = manifest.with_name(f"{MANIFEST}.tmp")
    temporary.write_text(json.dumps(body, indent=2, default=str) + "\n")
    publish_file(temporary, manifest)
    for stray in staging.glob("*.tmp"):  # a task attempt killed mid-write
        stray.unlink(missing_ok=True)
    _replace(staging, path)
    return path


def training_set_observation(path: Path) -> ObservationSpec | None:
    """The observation a training set was built with, from its file's metadata or its
    folder's manifest; ``None`` for one written without it (by an earlier rollrisk).

    Raises:
        UserError: the record is there but is not one :func:`write_training_set` writes.
    """
    path = Path(path)
    try:  # the record as text: the file's metadata value, or the manifest's entry
        if path.is_dir():
            entry = json.loads((path / MANIFEST).read_text()).get(OBSERVATION_KEY)
            text = None if entry is None else json.dumps(entry)
        else:
            text = pl.read_parquet_metadata(path).get(OBSERVATION_KEY)
    except (OSError, ValueError, AttributeError, pl.exceptions.PolarsError):
        return None  # unreadable: read_training_set names the problem
    if text is None:
        return None  # written before the record was kept
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict) or set(record) != OBSERVATION_FIELDS:
        raise UserError(
            f"training set {path}: its observation record {text[:200]!r} is not the one "
            f"`rollrisk build-training-set` writes (the keys "
            f"{', '.join(sorted(OBSERVATION_FIELDS))}); rebuild the training set"
        )
    try:
        return ObservationSpec.from_mapping(record, f"training set {path}")
    except UserError as error:
        raise UserError(f"training set {path}: its observation record: {error}") from None


def check_training_set_observation(
    path: Path, observation: ObservationSpec, flag: str = "--training-set"
) -> None:
    """Refuse a training set built with another observation than the job's: its labels
    would be read as the job's definition, the time split's embargo would be the job's
    window (too short a window leaks labels into the validation months) and the report would
    name the wrong default. A training set that records none gets a warning on stderr.

    Raises:
        UserError: naming both definitions and the flags that give the training set's.
    """
    built_with = training_set_observation(path)
    if built_with is None:
        print(
            f"warning: {flag} {path} does not record the observation it was built with (an "
            f"earlier rollrisk wrote it): taken as this job's, {observation.describe()}; "
            "rebuild it with `rollrisk build-training-set` to have it checked",
            file=sys.stderr,
        )
    elif built_with != observation:
        raise UserError(
            f"{flag} {path} was built with {built_with.describe()}, but this job's observation "
            f"(--config and flags) is {observation.describe()}: the labels, the time split's "
            f"embargo and the report would not match the rows; give this job "
            f"{built_with.as_flags()}, or rebuild the training set"
        )


def check_training_set_portfolio(
    path: Path, data: Path, fingerprint: Callable[[Path], str], flag: str = "--training-set"
) -> None:
    """Refuse a training set built from another portfolio than ``data`` (the job's --data):
    the run would record ``data`` as what it learnt from (its tags, its fingerprint, the
    report) while its rows came from the other. ``fingerprint`` is
    :func:`rollrisk.storage.tracking.fingerprint_files`, called only when the training set
    records its portfolio (a local build does; a Spark build and an earlier rollrisk's do not,
    and are not checked).

    Raises:
        UserError: naming both folders and what to do.
    """
    path = Path(path)
    if path.is_dir():
        return
    try:
        text = pl.read_parquet_metadata(path).get(PORTFOLIO_KEY)
        record = json.loads(text) if text else None
    except (OSError, ValueError, pl.exceptions.PolarsError):
        return  # unreadable: read_training_set names the problem
    if not isinstance(record, dict) or "fingerprint" not in record:
        return
    if fingerprint(data) != record["fingerprint"]:
        built_from = record.get("folder", "another portfolio")
        raise UserError(
            f"{flag} {path} was built from the portfolio {built_from}, but --data {data} holds "
            "other files (their fingerprint differs): the run would record --data as what it "
            f"learnt from while its rows came from {built_from}; give --data {built_from}, or "
            "build the training set from this portfolio"
        )


def _is_parts_folder(path: Path) -> bool:
    try:
        return json.loads((path / MANIFEST).read_text()).get("layout") == TRAINING_PARTS_LAYOUT
    except (OSError, ValueError, AttributeError):
        return False


def check_training_set_target(path: Path, flag: str = "--out") -> None:
    """Refuse a target that is a folder holding anything but a training set's parts: a build
    replaces what is at its target, and a folder given by mistake (a runs folder, a copy of
    the data) would be deleted with everything in it. A file, and a folder of an earlier Spark
    build (its manifest names the layout, or it holds nothing but parts and a manifest), are
    replaced.

    Raises:
        UserError: naming the folder and what to give instead.
    """
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        return
    # a broken build's leftovers (parts, a manifest) are a training set's too
    only_parts = all(_PART_NAME.fullmatch(p.name) or p.name == MANIFEST for p in path.iterdir())
    if not _is_parts_folder(path) and not only_parts:
        raise UserError(
            f"{flag} {path} is a folder that is not a training set (no {MANIFEST} of a Spark "
            f"build's parts in it): a build replaces what is at {flag}, so it refuses to delete "
            f"this folder; give a file such as {path / 'training_set.parquet'}, or remove the "
            "folder first"
        )


def _replace(new: Path, path: Path) -> None:
    """Rename ``new`` (a file or folder) to ``path``, whatever is there: a file or folder at
    ``path`` is renamed aside first (rename cannot replace a folder that has files, nor a
    folder by a file) and removed once ``new`` is in place."""
    aside = path.with_name(f".{path.name}.{os.getpid()}.old")
    if path.exists() or path.is_symlink():
        os.replace(path, aside)
    os.replace(new, path)
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside)
    else:
        aside.unlink(missing_ok=True)


def _read_parts(path: Path) -> pl.DataFrame:
    """The rows of a folder of parts, sorted as the local build sorts them; the manifest is
    checked first (every part it lists present with its row count)."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise UserError(
            f"training set {path} is a folder without {MANIFEST}: not a complete training set "
            "(a build killed before publishing leaves none; rebuild it with "
            "`rollrisk build-training-set`)"
        )
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("layout") != TRAINING_PARTS_LAYOUT:
        raise UserError(
            f"{manifest_path}: layout {manifest.get('layout')!r}, expected "
            f"{TRAINING_PARTS_LAYOUT!r} (rebuild it with `rollrisk build-training-set`)"
        )
    files = [path / entry["file"] for entry in manifest["parts"]]
    for entry, file in zip(manifest["parts"], files, strict=True):
        rows = pl.scan_parquet(file).select(pl.len()).collect().item() if file.is_file() else None
        if rows != entry["rows"]:
            found = "missing" if rows is None else f"{rows:,} rows"
            raise UserError(
                f"training set {path}: part {entry['file']} is {found}, its manifest says "
                f"{entry['rows']:,} rows (rebuild it with `rollrisk build-training-set`)"
            )
    if not files:
        raise UserError(f"training set {path}: its manifest lists no part")
    # lazily: the sort reads the parts once, without a concatenated copy beside them
    return pl.scan_parquet(files).sort("as_of", "account_id").collect()
