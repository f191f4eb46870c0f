"""Portfolio roll rates and recovery curves: the classic collections view (polars; numpy for
the curves).

The roll-rate matrix is the share of accounts (and of balances) moving from each delinquency
bucket to each bucket between two consecutive monthly statements; chaining it gives a Markov
estimate of reaching default (the roll-rate-chain baseline model). Buckets follow the data
contract's DPD: M0 current, M1 1-29, M2 30-59, M3 60-89, M4 90-119, M5 120-149, M6 150-179,
M7+ 180 and more.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

BUCKETS: tuple[str, ...] = ("M0", "M1", "M2", "M3", "M4", "M5", "M6", "M7+")


def dpd_bucket(dpd: pl.Expr) -> pl.Expr:
    """The bucket label of a DPD expression (M0 for 0, M7+ from 180)."""
    index = pl.when(dpd <= 0).then(0).otherwise((dpd // 30 + 1).clip(upper_bound=7))
    return pl.lit(pl.Series(BUCKETS)).gather(index)


def _consecutive_months(statements: pl.DataFrame) -> pl.DataFrame:
    """Pairs (this statement, the next one a calendar month later) of each account."""
    month = pl.col("cycle_end").dt.year() * 12 + pl.col("cycle_end").dt.month()
    return (
        statements.select("account_id", "cycle_end", "dpd", "balance")
        .sort("account_id", "cycle_end")
        .with_columns(
            dpd_bucket(pl.col("dpd")).alias("from_bucket"),
            month.alias("_month"),
        )
        .with_columns(
            pl.col("from_bucket").shift(-1).over("account_id").alias("to_bucket"),
            pl.col("_month").shift(-1).over("account_id").alias("_next_month"),
        )
        .filter(pl.col("_next_month") == pl.col("_month") + 1)
    )


def roll_rate_matrix(statements: pl.DataFrame) -> pl.DataFrame:
    """Month-over-month bucket transitions, by count and by balance.

    Needs ``account_id``, ``cycle_end`` (Date), ``dpd`` and ``balance``. Returns one row per
    (from_bucket, to_bucket) observed, with ``accounts`` (transitions counted), ``balance`` (sum
    of the from-month balance owed: a credit balance counts as 0), ``count_rate`` and ``balance_rate`` (shares within the
    from_bucket), sorted by bucket order. Statements without a next-month statement are left out.
    """
    order = {b: i for i, b in enumerate(BUCKETS)}
    pairs = _consecutive_months(statements)
    return (
        pairs.group_by("from_bucket", "to_bucket")
        .agg(
            pl.len().alias("accounts"),
            # a credit (negative balance) owes nothing: it must not cancel balances that roll
            pl.col("balance").clip(lower_bound=0).sum().alias("balance"),
        )
        .with_columns(
            (pl.col("accounts") / pl.col("accounts").sum().over("from_bucket")).alias("count_rate"),
            (pl.col("balance") / pl.col("balance").sum().over("from_bucket")).alias("balance_rate"),
        )
        .with_columns(
            pl.col("from_bucket").replace_strict(order).alias("_f"),
            pl.col("to_bucket").replace_strict(order).alias("_t"),
        )
        .sort("_f", "_t")
        .drop("_f", "_t")
        .with_columns(pl.col("accounts").cast(pl.Int64))
    )


def recovery_curve(
    statements: pl.DataFrame, entry_dpd: int, horizon_months: int = 12
) -> pl.DataFrame:
    """Cumulative share of the balance recovered after an account first reaches ``entry_dpd``.

    Needs ``account_id``, ``cycle_end``, ``dpd``, ``balance``, ``amount_paid``. For each account
    whose DPD first reaches ``entry_dpd`` at a statement (the entry), sums ``amount_paid`` of the
    following statements. Returns ``months_after`` 1..horizon, ``accounts`` (entries observed
    that long), ``balance_at_entry`` and ``recovered_share`` = paid / balance at entry over those
    accounts. Amounts paid include fees, so the share is of the balance at entry. An entry
    whose balance is not positive is left out.
    """
    return recovery_curves(statements, (entry_dpd,), horizon_months)[entry_dpd]


def recovery_curves(
    statements: pl.DataFrame, entry_dpds: Sequence[int], horizon_months: int = 12
) -> dict[int, pl.DataFrame]:
    """:func:`recovery_curve` of each DPD of ``entry_dpds``, the statements sorted once.

    One pass per entry over arrays of the sorted statements: an account's entry is its first
    statement at or past the DPD, and its payment ``m`` months later the row ``m`` places
    further (rows are one account's statements in ``cycle_end`` order, as the curve counts
    months after the entry).
    """
    ordered = statements.select(
        "account_id",
        "cycle_end",
        pl.col("dpd").fill_null(-1),  # a missing DPD reaches no entry
        pl.col("balance").cast(pl.Float64),
        pl.col("amount_paid").cast(pl.Float64).fill_null(0.0),  # as a sum skips it
    )
    if not _in_account_order(ordered):  # a portfolio usually is (the sort is the cost here)
        ordered = ordered.sort("account_id", "cycle_end")
    # sorted: an account's first row is where the id changes (no hash of every id)
    first_row = (
        ordered.select(pl.col("account_id").ne_missing(pl.col("account_id").shift(1)))
        .to_series()
        .to_numpy()
    )
    starts = np.flatnonzero(first_row)
    account = np.cumsum(first_row) - 1
    # each account's last row (global index)
    last = np.append(starts[1:], ordered.height) - 1
    dpd = ordered["dpd"].to_numpy()
    balance = ordered["balance"].to_numpy()
    paid = ordered["amount_paid"].to_numpy()
    return {
        entry: _curve(entry, dpd, balance, paid, account, last, horizon_months)
        for entry in entry_dpds
    }


def _in_account_order(frame: pl.DataFrame) -> bool:
    """Rows sorted by ``account_id``, then ``cycle_end`` (nulls first, as ``sort`` puts them)."""
    if frame.height < 2:
        return True
    if frame["account_id"].null_count() or frame["cycle_end"].null_count():
        return False  # the sort decides where nulls go
    account, cycle = pl.col("account_id"), pl.col("cycle_end")
    later = (account > account.shift(1)) | (
        (account == account.shift(1)) & (cycle >= cycle.shift(1))
    )
    return bool(frame.select(later.slice(1).all()).item())


def _curve(
    entry_dpd: int,
    dpd: np.ndarray,
    balance: np.ndarray,
    paid: np.ndarray,
    account: np.ndarray,
    last: np.ndarray,
    horizon_months: int,
) -> pl.DataFrame:
    reached = np.flatnonzero(dpd >= entry_dpd)
    # the first row of each account at or past the DPD (rows are sorted by account)
    _, first = np.unique(account[reached], return_index=True)
    entry = reached[first]
    entry = entry[balance[entry] > 0]  # NaN (no balance) is not > 0
    seen = last[account[entry]] - entry  # statements observed after the entry
    paid_by = np.zeros((len(entry), horizon_months))
    for m in range(1, horizon_months + 1):
        observed = seen >= m
        paid_by[observed, m - 1] = paid[entry[observed] + m]
    paid_within = np.cumsum(paid_by, axis=1)
    rows = []
    for h in range(1, horizon_months + 1):
        cohort = seen >= h
        recovered = float(paid_within[cohort, h - 1].sum())
        at_entry = float(balance[entry[cohort]].sum())
        rows.append(
            {
                "months_after": h,
                "accounts": int(cohort.sum()),
                "balance_at_entry": at_entry,
                "recovered_share": recovered / at_entry if at_entry else None,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "months_after": pl.Int64,
            "accounts": pl.Int64,
            "balance_at_entry": pl.Float64,
            "recovered_share": pl.Float64,
        },
    )
