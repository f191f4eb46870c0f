"""Calibration report of the simulator: the figures quoted in docs/simulator.md.

Simulates a portfolio (default: the demo's 20,000 accounts x 24 months, seed 7) and prints, as
markdown: the roll-rate matrix (counts and balance-weighted), recovery curves after 90 and 180
DPD, driver footprints in the action outcomes, the volume of delinquent observations, and a
learnability check: a LightGBM on simple point-in-time features for "reaches 90+ DPD within 3
months" of accounts at 1-89 DPD, trained on early months and tested out of time on the last ones.

    .venv/bin/python bench/simulator_calibration.py [--accounts 20000 --months 24 --seed 7]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import polars as pl
from sklearn.metrics import roc_auc_score

from rollrisk.models.roll_rates import BUCKETS, recovery_curve, roll_rate_matrix
from rollrisk.simulator.engine import write_portfolio

FAILED = ["no_answer", "wrong_number", "unreachable"]
FEATURES = [
    "dpd", "utilisation", "paid_to_min_due", "delinquent_months_12", "max_dpd_12",
    "utilisation_change_3", "paid_to_min_due_3", "failed_contacts_3", "promises_3",
    "refusals_3", "hardship_claims_3", "contacts_3", "actions_3", "treatments_so_far",
    "credit_limit", "product_code",
]  # fmt: skip


def markdown_matrix(matrix: pl.DataFrame, value: str) -> str:
    wide = {(r["from_bucket"], r["to_bucket"]): r[value] for r in matrix.iter_rows(named=True)}
    counts = dict(matrix.group_by("from_bucket").agg(pl.col("accounts").sum()).iter_rows())
    lines = ["| from \\ to | " + " | ".join(BUCKETS) + " | n |", "|---" * (len(BUCKETS) + 2) + "|"]
    for source in BUCKETS:
        if source not in counts:
            continue
        cells = [f"{wide[source, t]:.1%}" if (source, t) in wide else "" for t in BUCKETS]
        lines.append(f"| {source} | " + " | ".join(cells) + f" | {counts[source]:,} |")
    return "\n".join(lines)


def point_in_time_frame(folder: Path) -> pl.DataFrame:
    """One row per statement at 1-89 DPD: simple features from the past, label from the future."""
    key = "account_id"
    statements = pl.read_parquet(folder / "statements" / "*.parquet")
    accounts = pl.read_parquet(folder / "accounts.parquet")
    actions = pl.read_parquet(folder / "collection_actions" / "*.parquet")
    treatments = pl.read_parquet(folder / "treatments" / "*.parquet")
    frame = (
        statements.join(accounts.select(key, "product", "credit_limit"), on=key)
        .sort(key, "cycle_end")
        .with_columns(
            (pl.col("balance") / pl.col("credit_limit")).alias("utilisation"),
            (pl.col("amount_paid") / (pl.col("min_due").shift(1).over(key) + 1)).alias(
                "paid_to_min_due"
            ),
            (pl.col("dpd") > 0).cast(pl.Int32).alias("_late"),
            pl.col("product").cast(pl.Categorical).to_physical().alias("product_code"),
        )
        .with_columns(
            pl.col("_late").rolling_sum(12, min_samples=1).over(key).alias("delinquent_months_12"),
            pl.col("dpd").rolling_max(12, min_samples=1).over(key).alias("max_dpd_12"),
            (pl.col("utilisation") - pl.col("utilisation").shift(3).over(key)).alias(
                "utilisation_change_3"
            ),
            pl.col("paid_to_min_due")
            .rolling_mean(3, min_samples=1)
            .over(key)
            .alias("paid_to_min_due_3"),
            pl.max_horizontal(pl.col("dpd").shift(-h).over(key) for h in (1, 2, 3)).alias(
                "_future"
            ),
            pl.col("dpd").shift(-3).over(key).is_not_null().alias("_observed"),
        )
    )
    window = (
        frame.select(key, "cycle_end")
        .join(actions.with_columns(pl.col("action_at").dt.date().alias("_day")), on=key)
        .filter(
            (pl.col("_day") <= pl.col("cycle_end"))
            & (pl.col("_day") > pl.col("cycle_end") - pl.duration(days=91))
        )
        .group_by(key, "cycle_end")
        .agg(
            pl.col("outcome").is_in(FAILED).sum().alias("failed_contacts_3"),
            (pl.col("outcome") == "promise_to_pay").sum().alias("promises_3"),
            (pl.col("outcome") == "refused").sum().alias("refusals_3"),
            (pl.col("outcome") == "hardship_claimed").sum().alias("hardship_claims_3"),
            (pl.col("outcome") == "contacted").sum().alias("contacts_3"),
            pl.len().alias("actions_3"),
        )
    )
    granted = (
        frame.select(key, "cycle_end")
        .join(treatments, on=key)
        .filter(pl.col("known_at").dt.date() <= pl.col("cycle_end"))
        .group_by(key, "cycle_end")
        .agg(pl.len().alias("treatments_so_far"))
    )
    counts = [
        c
        for c in FEATURES
        if c.endswith("_3")
        and c.split("_")[0] in ("failed", "promises", "refusals", "hardship", "contacts", "actions")
    ]
    return (
        frame.join(window, on=[key, "cycle_end"], how="left")
        .join(granted, on=[key, "cycle_end"], how="left")
        .with_columns(pl.col([*counts, "treatments_so_far"]).fill_null(0))
        .filter(pl.col("dpd").is_between(1, 89) & pl.col("_observed"))
        .with_columns((pl.col("_future") >= 90).cast(pl.Int8).alias("rolled_to_default"))
    )


def learnability(folder: Path, test_months: int = 3) -> list[str]:
    frame = point_in_time_frame(folder)
    months = sorted(frame["cycle_end"].dt.strftime("%Y-%m").unique())
    test_from = months[-test_months]
    frame = frame.with_columns(pl.col("cycle_end").dt.strftime("%Y-%m").alias("_month"))
    train = frame.filter(pl.col("_month") < test_from)
    test = frame.filter(pl.col("_month") >= test_from)
    model = lgb.LGBMClassifier(
        n_estimators=300, learning_rate=0.05, min_child_samples=100, verbose=-1
    )
    model.fit(train.select(FEATURES).to_pandas(), train["rolled_to_default"].to_numpy())
    score = model.predict_proba(test.select(FEATURES).to_pandas())[:, 1]
    label = test["rolled_to_default"].to_numpy()
    lines = [
        f"observations (1-89 DPD with 3 months ahead): {frame.height:,}, "
        f"train {train.height:,} (as-of < {test_from}), out-of-time test {test.height:,} "
        f"(as-of {test_from}..{months[-1]}), default rate {frame['rolled_to_default'].mean():.1%}",
        "",
        "| slice | test rows | default rate | AUC LightGBM | AUC DPD alone |",
        "|---|---|---|---|---|",
        f"| all | {len(label):,} | {label.mean():.1%} | {roc_auc_score(label, score):.3f} | "
        f"{roc_auc_score(label, test['dpd'].to_numpy()):.3f} |",
    ]
    dpd = test["dpd"].to_numpy()
    for name, low, high in (("M1", 1, 29), ("M2", 30, 59), ("M3", 60, 89)):
        mask = (dpd >= low) & (dpd <= high)
        lines.append(
            f"| {name} | {mask.sum():,} | {label[mask].mean():.1%} | "
            f"{roc_auc_score(label[mask], score[mask]):.3f} | {roc_auc_score(label[mask], dpd[mask]):.3f} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="simulator_calibration_") as tmp:
        folder = Path(tmp) / "portfolio"
        folder.mkdir()
        started = time.perf_counter()
        summary = write_portfolio(folder, args.accounts, args.months, args.seed)
        print(f"portfolio: {args.accounts:,} accounts x {args.months} months, seed {args.seed}, "
              f"{summary.seconds:.1f} s; rows {summary.rows}")  # fmt: skip
        statements = pl.read_parquet(folder / "statements" / "*.parquet")
        delinquent = statements.filter(pl.col("dpd") > 0).height
        print(f"delinquent account-months: {delinquent:,} of {statements.height:,}\n")
        matrix = roll_rate_matrix(statements)
        print("### Roll rates, share of accounts\n")
        print(markdown_matrix(matrix, "count_rate"))
        print("\n### Roll rates, share of balance\n")
        print(markdown_matrix(matrix, "balance_rate"))
        print("\n### Recovery: cumulative amount paid / balance at entry\n")
        print("| months after | from 90 DPD | accounts | from 180 DPD | accounts |")
        print("|---|---|---|---|---|")
        at_90, at_180 = recovery_curve(statements, 90, 12), recovery_curve(statements, 180, 12)
        for r90, r180 in zip(
            at_90.iter_rows(named=True), at_180.iter_rows(named=True), strict=True
        ):
            print(f"| {r90['months_after']} | {r90['recovered_share']:.1%} | {r90['accounts']:,} | "
                  f"{r180['recovered_share']:.1%} | {r180['accounts']:,} |")  # fmt: skip
        truth = pl.read_parquet(folder / "truth" / "borrowers.parquet")
        actions = pl.read_parquet(folder / "collection_actions" / "*.parquet")
        footprint = (
            actions.join(truth.select("account_id", "driver"), on="account_id")
            .group_by("driver")
            .agg(
                pl.len().alias("actions"),
                pl.col("outcome").is_in(FAILED).mean().alias("failed"),
                (pl.col("outcome") == "refused").mean().alias("refused"),
                (pl.col("outcome") == "promise_to_pay").mean().alias("promise"),
                (pl.col("outcome") == "hardship_claimed").mean().alias("hardship"),
            )
            .join(truth.group_by("driver").len("accounts"), on="driver")
            .sort("driver")
        )
        print("\n### Driver footprints in the action outcomes\n")
        print(
            "| driver | accounts | actions | failed contact | refused | promise to pay | hardship claimed |"
        )
        print("|---|---|---|---|---|---|---|")
        for r in footprint.iter_rows(named=True):
            print(f"| {r['driver']} | {r['accounts']:,} | {r['actions']:,} | {r['failed']:.1%} | "
                  f"{r['refused']:.1%} | {r['promise']:.1%} | {r['hardship']:.1%} |")  # fmt: skip
        print("\n### Learnability: LightGBM, roll to 90+ DPD within 3 months\n")
        print("\n".join(learnability(folder)))
        print(f"\n({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
