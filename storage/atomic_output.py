"""Partitioned Parquet output that becomes visible atomically and resumes after a kill.

Layout under an output folder ``OUT``::

    OUT/current -> runs/<key>            symlink, swapped atomically when a run completes
    OUT/runs/<key>/part-00000.parquet    one file per partition
    OUT/runs/<key>/manifest.json         written last: counts, checksums, identity

``<key>`` is a digest of everything that determines the output (input fingerprint, model
version, as-of, configuration), so the same inputs always land in the same folder:

* a partition file appears only by ``os.replace`` of a finished temporary file, so a file
  that exists is complete; a killed run leaves at most a stray ``*.tmp``;
* a rerun with the same key skips partitions already written (resume) and produces the same
  bytes for the others (deterministic writers);
* readers follow ``OUT/current``, which always points at a run with a manifest, or does not
  exist: a run killed at any moment leaves either nothing or the complete previous result.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

MANIFEST = "manifest.json"
CURRENT = "current"


def identity_key(identity: Mapping[str, Any]) -> str:
    """A short, stable digest of a run's identity (JSON with sorted keys)."""
    canonical = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class PartitionFile:
    partition: int
    path: Path
    rows: int
    sha256: str


class PartitionedRun:
    """One run's partitioned output; see the module docstring for the guarantees."""

    def __init__(self, out_dir: Path, identity: Mapping[str, Any]) -> None:
        self.out_dir = Path(out_dir)
        self.identity = dict(identity)
        self.key = identity_key(self.identity)
        self.run_dir = self.out_dir / "runs" / self.key

    def partition_path(self, partition: int) -> Path:
        return self.run_dir / f"part-{partition:05d}.parquet"

    def is_done(self, partition: int) -> bool:
        return self.partition_path(partition).is_file()

    @property
    def is_published(self) -> bool:
        return (self.run_dir / MANIFEST).is_file() and self.current_target() == self.run_dir

    def current_target(self) -> Path | None:
        link = self.out_dir / CURRENT
        return (self.out_dir / os.readlink(link)) if link.is_symlink() else None

    def write_partition(self, partition: int, frame: pl.DataFrame) -> PartitionFile:
        """Write one partition: a temporary file first, then an atomic rename."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        final = self.partition_path(partition)
        temporary = final.with_suffix(".parquet.tmp")
        frame.write_parquet(temporary, compression="zstd", statistics=True)
        _fsync(temporary)
        os.replace(temporary, final)
        return PartitionFile(partition, final, frame.height, file_sha256(final))

    def existing_partition(self, partition: int) -> PartitionFile:
        path = self.partition_path(partition)
        rows = pl.scan_parquet(path).select(pl.len()).collect().item()
        return PartitionFile(partition, path, rows, file_sha256(path))

    def publish(self, manifest: Mapping[str, Any], partitions: list[PartitionFile]) -> Path:
        """Write the manifest, then point ``OUT/current`` at this run in one atomic step."""
        body = {
            **manifest,
            "run_key": self.key,
            "identity": self.identity,
            "partitions": [
                {"file": p.path.name, "rows": p.rows, "sha256": p.sha256}
                for p in sorted(partitions, key=lambda p: p.partition)
            ],
        }
        manifest_path = self.run_dir / MANIFEST
        temporary = manifest_path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(body, indent=2, sort_keys=True, default=str) + "\n")
        _fsync(temporary)
        os.replace(temporary, manifest_path)
        link = self.out_dir / CURRENT
        staged_link = self.out_dir / f".{CURRENT}.{self.key}.tmp"
        if staged_link.is_symlink() or staged_link.exists():
            staged_link.unlink()
        staged_link.symlink_to(Path("runs") / self.key)
        os.replace(staged_link, link)  # rename(2) over the old link is atomic
        return manifest_path


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def read_current(out_dir: Path) -> tuple[dict[str, Any], pl.DataFrame]:
    """The manifest and all rows of the published result in ``out_dir``."""
    current = Path(out_dir) / CURRENT
    if not (current / MANIFEST).is_file():
        raise FileNotFoundError(f"{out_dir}: no published result ({CURRENT}/{MANIFEST} missing)")
    manifest = json.loads((current / MANIFEST).read_text())
    files = [current / entry["file"] for entry in manifest["partitions"]]
    frame = pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()
    return manifest, frame
