"""Scoring results on disk: which partition an account lands in, and reading a published run.

Beside :mod:`rollrisk.storage.atomic_output`, which writes a run's partition files and
publishes them. Both scoring engines (local and Spark) number the partitions with
:func:`partition_of`, so partition ``k`` holds the same accounts whichever engine wrote it;
the jobs that take a scoring run as input (``--scores``: ``simulate-policy``, ``report``)
read it with :func:`read_scores`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from rollrisk.errors import UserError
from rollrisk.storage.atomic_output import read_current

ACCOUNTS_PER_PARTITION = 50_000
PARTITION_COLUMN = "_partition"
PARTITION_HASH_SEED = 20_240_101  # part of the layout: changing it moves every account
POLICY_SIMULATION_JSON = "policy_simulation.json"


def default_partitions(accounts: int) -> int:
    """One partition per ``ACCOUNTS_PER_PARTITION`` accounts (rounded up), at least one."""
    return max(1, -(-accounts // ACCOUNTS_PER_PARTITION))


def partition_of(account_id: pl.Expr, partitions: int) -> pl.Expr:
    """A stable partition number from the account id (same id, same partition, every run)."""
    return (account_id.hash(seed=PARTITION_HASH_SEED) % partitions).cast(pl.Int32)


def split_tables(
    tables: dict[str, pl.DataFrame | None], partitions: int
) -> dict[str, pl.DataFrame | None]:
    """Each table (it needs ``account_id``) with the column ``PARTITION_COLUMN`` added;
    absent (None) tables stay None."""
    return {
        name: None
        if frame is None
        else frame.with_columns(
            partition_of(pl.col("account_id"), partitions).alias(PARTITION_COLUMN)
        )
        for name, frame in tables.items()
    }


def partition_rows(frame: pl.DataFrame | None, partition: int) -> pl.DataFrame | None:
    """The rows of one partition of a table from :func:`split_tables`, without the partition
    column (None stays None)."""
    if frame is None:
        return None
    return frame.filter(pl.col(PARTITION_COLUMN) == partition).drop(PARTITION_COLUMN)


def read_scores(scores: Path) -> tuple[dict[str, Any], pl.DataFrame]:
    """The manifest and scored accounts of the current run in a ``rollrisk score --out``
    folder, for the jobs that read one (``--scores``).

    Raises:
        UserError: no finished run there, or it scored no account.
    """
    try:
        manifest, scored = read_current(scores)
    except FileNotFoundError as error:
        raise UserError(f"--scores: {error}; run `rollrisk score` first") from error
    if scored.height == 0:
        raise UserError(f"{scores}: the scoring run has no scored accounts")
    return manifest, scored


def read_policy_simulation(folder: Path) -> dict[str, Any]:
    """The result of ``rollrisk simulate-policy --out folder``.

    Raises:
        UserError: there is no result in ``folder``.
    """
    path = Path(folder) / POLICY_SIMULATION_JSON
    if not path.is_file():
        raise UserError(f"--policy-simulation: {path} not found; run `rollrisk simulate-policy`")
    return json.loads(path.read_text())
