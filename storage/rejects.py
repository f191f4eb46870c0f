"""What the data contract set aside, counted by rows and by accounts, and the limit a job stops at.

Every job that reads a portfolio prints this account and records it (the score manifest,
``monitor.json``, ``rejects.json`` beside the training and evaluation reports), and stops
before doing anything when the rejects pass the limit the user sets (``--max-reject-rate``, or
``data.max_reject_rate`` in the config; default 1%,
:data:`rollrisk.storage.config.DEFAULT_MAX_REJECT_RATE`). A few bad rows are set aside and the
job goes on; a book that lost a noticeable share of itself is not scored, trained or monitored
as if whole.

Definitions (also in docs/data-contract.md, "Rejected rows and accounts"):

* **row reject rate** of a table: rows rejected / rows read; overall: summed over the tables;
* **accounts read**: every account id met in any table, in an accepted or a rejected row;
* **rejected account**: an account id with at least one rejected row in any table (a row
  without an id is counted as a row only);
* **lost account**: an account of which nothing usable is left: its ``accounts`` row was
  rejected (or it was never listed there), or it had statements and every one was rejected;
* **account reject rate**: rejected accounts / accounts read;
* **knock-on rejects**: rejected rows of the other tables whose account's own ``accounts`` row
  was rejected (every row of such an account goes with it): that row's reason is their root
  cause.

A job stops when any table's row reject rate, or the account reject rate, is above the limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl

from rollrisk.errors import UserError
from rollrisk.features.validation import KNOCK_ON_REASON
from rollrisk.storage.loader import OTHER_REASONS, Portfolio

MAX_REJECT_RATE_FLAG = "--max-reject-rate"
ACCOUNTS = "accounts"
STATEMENTS = "statements"


@dataclass(frozen=True)
class TableRejects:
    """One table's rows: read, rejected, and how many of the rejected are knock-ons."""

    table: str
    rows_read: int
    rows_rejected: int
    knock_on: int  # rows of accounts whose own row in `accounts` was rejected
    top_reasons: tuple[tuple[str, int], ...]

    @property
    def rate(self) -> float:
        return self.rows_rejected / self.rows_read if self.rows_read else 0.0


@dataclass(frozen=True)
class RejectAccounting:
    """Rows and accounts a portfolio's validation set aside (see the module docstring)."""

    tables: tuple[TableRejects, ...]
    accounts_read: int
    accounts_rejected: int
    accounts_lost: int
    rejected_without_id: int  # rejected rows whose account_id was missing
    max_reject_rate: float | None = None  # the limit the job checked them against, if any

    @property
    def rows_read(self) -> int:
        return sum(t.rows_read for t in self.tables)

    @property
    def rows_rejected(self) -> int:
        return sum(t.rows_rejected for t in self.tables)

    @property
    def row_rate(self) -> float:
        return self.rows_rejected / self.rows_read if self.rows_read else 0.0

    @property
    def account_rate(self) -> float:
        return self.accounts_rejected / self.accounts_read if self.accounts_read else 0.0

    def table(self, name: str) -> TableRejects | None:
        return next((t for t in self.tables if t.table == name), None)

    def over(self, max_rate: float) -> list[str]:
        """The rates above ``max_rate``, each in words with its counts (empty: within it)."""
        found = [
            f"{t.table} {t.rate:.2%} of rows ({t.rows_rejected:,} of {t.rows_read:,})"
            for t in self.tables
            if t.rate > max_rate
        ]
        if self.account_rate > max_rate:
            found.append(
                f"accounts with a rejected row {self.account_rate:.2%} "
                f"({self.accounts_rejected:,} of {self.accounts_read:,}, "
                f"{self.accounts_lost:,} lost entirely)"
            )
        return found

    def accounts_line(self) -> str:
        """The rejects by account, in one line."""
        return (
            f"accounts: {self.accounts_rejected:,} of {self.accounts_read:,} have a rejected row "
            f"({self.account_rate:.2%}), {self.accounts_lost:,} of them lost entirely"
            + (
                f"; {self.rejected_without_id:,} rejected rows carry no account_id"
                if self.rejected_without_id
                else ""
            )
        )

    def lines(self) -> list[str]:
        """What was set aside, for a job's log: one line per table with rejects, then accounts."""
        if not self.rows_rejected:
            return [
                f"rejects: none ({self.rows_read:,} rows read, {self.accounts_read:,} accounts)"
            ]
        lines = [
            f"rejects: {self.rows_rejected:,} of {self.rows_read:,} rows ({self.row_rate:.2%}); "
            f"{self.accounts_rejected:,} of {self.accounts_read:,} accounts have a rejected row "
            f"({self.account_rate:.2%}), {self.accounts_lost:,} of them lost entirely"
        ]
        for t in self.tables:
            if not t.rows_rejected:
                continue
            knock_on = (
                f", {t.knock_on:,} of them because their account was rejected" if t.knock_on else ""
            )
            lines.append(
                f"  {t.table}: {t.rows_rejected:,} of {t.rows_read:,} rows ({t.rate:.2%}){knock_on}"
            )
            shown = [kind for kind in t.top_reasons if kind[0] != OTHER_REASONS][:3]
            rest = sum(count for _, count in t.top_reasons) - sum(count for _, count in shown)
            lines.extend(f"      {count:>8,} x {reason}" for reason, count in shown)
            if rest:  # the counts add up to every reason given
                lines.append(f"      {rest:>8,} x {OTHER_REASONS}")
        if self.rejected_without_id:
            lines.append(f"  {self.rejected_without_id:,} rejected rows carry no account_id")
        return lines

    def as_dict(self) -> dict[str, Any]:
        """The figures for a manifest (JSON): per table and overall, rows and accounts, and
        the limit they were checked against."""
        record: dict[str, Any] = {
            "rows_read": self.rows_read,
            "rows_rejected": self.rows_rejected,
            "row_reject_rate": round(self.row_rate, 6),
            "accounts_read": self.accounts_read,
            "accounts_rejected": self.accounts_rejected,
            "accounts_lost": self.accounts_lost,
            "account_reject_rate": round(self.account_rate, 6),
            "rejected_rows_without_account_id": self.rejected_without_id,
            "tables": {
                t.table: {
                    "rows_read": t.rows_read,
                    "rows_rejected": t.rows_rejected,
                    "reject_rate": round(t.rate, 6),
                    "knock_on": t.knock_on,
                }
                for t in self.tables
            },
        }
        if self.max_reject_rate is not None:
            record["max_reject_rate"] = self.max_reject_rate
        return record

    def write(self, path: Path) -> None:
        """Write :meth:`as_dict` as JSON to ``path`` (a job's record beside its output)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")


def account_rejects(portfolio: Portfolio) -> RejectAccounting:
    """Count what the validation of ``portfolio`` set aside, by table and by account.

    Reads the portfolio's report (rows per table, top reasons), its accepted tables (which
    accounts survived) and ``portfolio.rejected_accounts`` (the table and account id of every
    rejected row).
    """
    report = portfolio.report
    rejected = portfolio.rejected_accounts
    with_id = rejected.filter(pl.col("account_id").is_not_null())
    accepted = portfolio.accounts["account_id"].cast(pl.String)

    def rejected_in(table: str) -> pl.Series:
        return with_id.filter(pl.col("table") == table)["account_id"].unique()

    rejected_ids = with_id["account_id"].unique()
    # accounts whose own row was rejected (and no duplicate of it kept): their rows in the
    # other tables are knock-ons, rejected for that reason alone
    own_row = rejected_in(ACCOUNTS)
    dropped = own_row.filter(~own_row.is_in(accepted.implode()))
    knock_on_of = dict(
        with_id.filter(
            (pl.col("table") != ACCOUNTS) & pl.col("account_id").is_in(dropped.implode())
        )
        .group_by("table")
        .len()
        .iter_rows()
    )
    # listed accounts that had statements, all of them rejected: no history is left of them
    statements_rejected = rejected_in(STATEMENTS)
    listed = statements_rejected.filter(statements_rejected.is_in(accepted.implode()))
    # which of them kept a statement: the statements' ids are looked up in the few listed ones
    # (a set of the book's ids, built to test none, took 2 s at 1,000,000 accounts)
    kept = portfolio.statements["account_id"]
    kept = kept.filter(kept.is_in(listed.implode())) if listed.len() else listed
    no_history = listed.filter(~listed.is_in(kept.implode()))
    if rejected_ids.len():
        seen = pl.concat([accepted, rejected_ids]).unique()
        lost = pl.concat([seen.filter(~seen.is_in(accepted.implode())), no_history]).unique()
    else:  # a clean book (most nights): the accepted accounts, unique by the contract's key
        seen, lost = accepted, rejected_ids  # (two passes over 1,000,000 ids: about 1 s)
    return RejectAccounting(
        tables=tuple(
            TableRejects(
                table=t.table,
                rows_read=t.rows_read,
                rows_rejected=t.rows_rejected,
                knock_on=int(knock_on_of.get(t.table, 0)),
                top_reasons=t.top_reasons,
            )
            for t in report.tables
        ),
        accounts_read=seen.len(),
        accounts_rejected=rejected_ids.len(),
        accounts_lost=lost.len(),
        rejected_without_id=rejected.height - with_id.height,
    )


def check_reject_rate(
    accounting: RejectAccounting, max_rate: float, data: Path | str, hint: str | None = None
) -> RejectAccounting:
    """Stop a job whose portfolio ``data`` lost more than ``max_rate`` of a table's rows or of
    its accounts to the data contract; else return ``accounting`` with the limit recorded.

    Raises:
        UserError: one line naming each rate above the limit with its counts, the root cause
            (the rejected ``accounts`` rows when other tables' rejects are their knock-ons,
            else each table's most frequent reason), where to see the rows (``hint``, default
            ``rollrisk validate``) and the flag that raises the limit.
    """
    over = accounting.over(max_rate)
    if not over:
        return replace(accounting, max_reject_rate=max_rate)
    see = hint or f"`rollrisk validate --data {data}` lists every rejected row"
    raise UserError(
        f"{data}: too much of the portfolio was rejected by the data contract: "
        f"{'; '.join(over)}, above the limit of {max_rate:.2%} ({MAX_REJECT_RATE_FLAG}); "
        f"{_cause(accounting)}; {see}; fix the data, or raise {MAX_REJECT_RATE_FLAG} to go on "
        "without those rows"
    )


def _cause(accounting: RejectAccounting) -> str:
    """The root cause of the rejects in words: the rejected accounts and what followed from
    them first, then each other table's main reason."""
    parts: list[str] = []
    accounts = accounting.table(ACCOUNTS)
    knock_ons = [t for t in accounting.tables if t.knock_on]
    if accounts is not None and accounts.rows_rejected:
        followed = ", ".join(f"{t.knock_on:,} {t.table} rows" for t in knock_ons)
        parts.append(
            f"root cause: {accounts.rows_rejected:,} accounts rows rejected "
            f"({_reasons(accounts.top_reasons)})"
            + (f", and with them {followed} as knock-ons" if followed else "")
        )
    for t in accounting.tables:
        if t.table == ACCOUNTS or t.rows_rejected <= t.knock_on:
            continue
        own = _own_reasons(t)
        if own:
            parts.append(f"{t.table}: {t.rows_rejected - t.knock_on:,} rows ({own})")
    return "; ".join(parts) if parts else "no reason recorded"


def _own_reasons(table: TableRejects) -> str:
    """A table's main reasons, less the knock-on one when it has knock-ons (the root cause
    names that already)."""
    own = [
        (reason, count)
        for reason, count in table.top_reasons
        if not (table.knock_on and reason.startswith(KNOCK_ON_REASON))
    ]
    return _reasons(own)


def _reasons(reasons: Iterable[tuple[str, int]], limit: int = 2) -> str:
    shown = list(reasons)[:limit]
    return ", ".join(f"{count:,} x {reason}" for reason, count in shown)
