"""Portfolio roll rates and recovery curves: the classic collections view, as pure polars.

The roll-rate matrix is the share of accounts (and of balances) moving from each delinquency
bucket to each bucket between two consecutive monthly statements; chaining it gives a Markov
estimate of reaching default (the roll-rate-chain baseline model). Buckets follow the data
contract's DPD: M0 current, M1 1-29, M2 30-59, M3 60-89, M4 90-119, M5 120-149, M6 150-179,
M7+ 180 and more.
"""

from __future__ import annotations

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
    accounts. Amounts paid include fees, so the share is of the balance at entry.
    """
    ordered = statements.select("account_id", "cycle_end", "dpd", "balance", "amount_paid").sort(
        "account_id", "cycle_end"
    )
    ordered = ordered.with_columns(pl.int_range(pl.len()).over("account_id").alias("_i"))
    entries = (
        ordered.filter(pl.col("dpd") >= entry_dpd)
        .group_by("account_id")
        .agg(
            pl.col("_i").min().alias("_entry"), pl.col("balance").sort_by("_i").first().alias("_b0")
        )
        .filter(pl.col("_b0") > 0)
    )
    last = ordered.group_by("account_id").agg(pl.col("_i").max().alias("_last"))
    after = (
        ordered.join(entries, on="account_id")
        .filter(pl.col("_i") > pl.col("_entry"))
        .with_columns((pl.col("_i") - pl.col("_entry")).alias("months_after"))
        .filter(pl.col("months_after") <= horizon_months)
    )
    rows = []
    observed = entries.join(last, on="account_id").with_columns(
        (pl.col("_last") - pl.col("_entry")).alias("_seen")
    )
    for h in range(1, horizon_months + 1):
        cohort = observed.filter(pl.col("_seen") >= h)
        paid = (
            after.join(cohort.select("account_id"), on="account_id")
            .filter(pl.col("months_after") <= h)["amount_paid"]
            .sum()
        )
        balance = cohort["_b0"].sum()
        rows.append(
            {
                "months_after": h,
                "accounts": cohort.height,
                "balance_at_entry": float(balance),
                "recovered_share": float(paid / balance) if balance else None,
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
