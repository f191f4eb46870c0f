"""Scoring results on disk: which partition an account lands in, and reading a published run.

Beside :mod:`rollrisk.storage.atomic_output`, which writes a run's partition files and
publishes them. Both scoring engines (local and Spark) number the partitions with
:func:`partition_of`, so partition ``k`` holds the same accounts whichever engine wrote it;
the jobs that take a scoring run as input (``--scores``: ``simulate-policy``, ``report``)
read it with :func:`read_scores`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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


class PartitionedTables:
    """Tables cut by account partition (:func:`partition_of`) in one pass over each table.

    ``rows(k)`` gathers partition ``k``'s rows of every table, in the table's order (the rows a
    filter on the partition number would give), so a partition costs its own rows, not
    another pass over the whole table. With ``keep`` (account ids), only those accounts' rows
    are kept: a scoring run passes its population, so the accounts it does not score are
    never copied.
    """

    def __init__(
        self,
        tables: Mapping[str, pl.DataFrame | None],
        partitions: int,
        keep: pl.Series | None = None,
    ) -> None:
        self.partitions = partitions
        self._tables: dict[str, pl.DataFrame | None] = {}
        self._rows: dict[str, dict[int, pl.Series]] = {}
        for name, frame in tables.items():
            if frame is not None and keep is not None:
                frame = frame.filter(pl.col("account_id").is_in(keep.implode()))
            self._tables[name] = frame
            if frame is None:
                continue
            # row numbers by partition; a group keeps its rows in the table's order
            groups = (
                frame.select(
                    partition_of(pl.col("account_id"), partitions).alias(PARTITION_COLUMN),
                    pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"),
                )
                .group_by(PARTITION_COLUMN)
                .agg("_row")
            )
            # iterating a list column yields each group's rows as a Series (no Python ints)
            self._rows[name] = dict(
                zip(groups[PARTITION_COLUMN].to_list(), groups["_row"], strict=True)
            )

    def rows(self, partition: int) -> dict[str, pl.DataFrame | None]:
        """Partition ``partition``'s rows of each table (None for an absent table; no rows when
        the partition has none)."""
        cut: dict[str, pl.DataFrame | None] = {}
        for name, frame in self._tables.items():
            if frame is None:
                cut[name] = None
                continue
            rows = self._rows[name].get(partition)
            cut[name] = frame.clear() if rows is None else frame[rows]
        return cut


def read_scores(scores: Path) -> tuple[dict[str, Any], pl.DataFrame]:
    """The manifest and scored accounts of the current run in a ``rollrisk score --out``
    folder, for the jobs that read one (``--scores``).

    Raises:
        UserError: no finished run there, or it scored no account.
    """
    try:
        manifest, scored = read_current(scores)
    except FileNotFoundError as error:
        hint = (
            f"; give the folder above it, {scores.parent} (the --out of `rollrisk score`)"
            if (scores / "manifest.json").is_file()
            else "; run `rollrisk score` first"
        )
        raise UserError(f"--scores: {error}{hint}") from error
    except (pl.exceptions.PolarsError, OSError, ValueError) as error:
        # a partition or the manifest damaged after publishing (truncated, overwritten)
        raise UserError(
            f"--scores {scores}: the published run cannot be read ({error}); score again"
        ) from error
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
        raise UserError(
            f"--policy-simulation: {path} not found: give the --out folder of `rollrisk "
            f"simulate-policy` for these scores (it holds {POLICY_SIMULATION_JSON})"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(
            f"--policy-simulation: {path} cannot be read ({error}); run `rollrisk "
            "simulate-policy` again"
        ) from error
    if not isinstance(document, dict):
        raise UserError(
            f"--policy-simulation: {path} holds no simulation result (a JSON object was "
            f"expected, found {type(document).__name__}); run `rollrisk simulate-policy` again"
        )
    return document
