"""A small, fast synthetic borrower history for feature tests (not the project simulator).

Vectorised numpy over accounts, one step per month: DPD follows a simple roll/cure chain, the
payment columns follow the DPD, actions and treatments are sprinkled on delinquent months.
Contract-valid (features.schemas) so the loader accepts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from rollrisk.features.schemas import CHANNELS, OUTCOMES, PRODUCTS, TREATMENT_KINDS


@dataclass(frozen=True)
class History:
    accounts: pl.DataFrame
    statements: pl.DataFrame
    collection_actions: pl.DataFrame
    treatments: pl.DataFrame

    def write(self, folder, tables=("accounts", "statements", "collection_actions", "treatments")):
        folder.mkdir(parents=True, exist_ok=True)
        for name in tables:
            getattr(self, name).write_parquet(folder / f"{name}.parquet")
        return folder


def _add_months(year: int, month: int, k: int) -> tuple[int, int]:
    index = year * 12 + month - 1 + k
    return index // 12, index % 12 + 1


def synthetic_history(accounts: int = 300, months: int = 12, seed: int = 0,
                      start: tuple[int, int] = (2023, 1)) -> History:  # fmt: skip
    rng = np.random.default_rng(seed)
    ids = np.array([f"A{i:06d}" for i in range(accounts)])
    products = rng.choice(np.array(PRODUCTS), accounts)
    limits = rng.choice([2_000.0, 10_000.0, 50_000.0], accounts)
    billing_day = rng.integers(1, 29, accounts)
    lag_days = rng.integers(1, 4, accounts)
    riskiness = rng.beta(1.2, 6.0, accounts)
    account_frame = pl.DataFrame(
        {
            "account_id": ids,
            "borrower_id": [f"B{i:06d}" for i in range(accounts)],
            "product": products,
            "opened_at": [date(start[0] - 1, 6, 1)] * accounts,
            "credit_limit": limits,
            "currency": ["CNY"] * accounts,
        }
    )
    dpd = np.zeros(accounts, dtype=np.int64)
    balance = limits * rng.uniform(0.1, 0.9, accounts)
    statement_parts, action_parts, treatment_parts = [], [], []
    for m in range(months):
        year, month = _add_months(*start, m)
        cycle_end = [date(year, month, int(d)) for d in billing_day]
        # delinquent accounts roll (+30) or cure (0); current ones fall behind with riskiness
        u = rng.uniform(size=accounts)
        rolls = np.where(dpd > 0, u < 0.35 + riskiness, u < riskiness * 0.6)
        cures = (dpd > 0) & ~rolls & (rng.uniform(size=accounts) < 0.6)
        dpd = np.where(rolls, np.where(dpd > 0, dpd + 30, rng.integers(1, 29, accounts)), dpd)
        dpd = np.where(cures, 0, dpd)
        amount_due = np.round(balance * rng.uniform(0.05, 0.3, accounts), 2)
        min_due = np.round(amount_due * 0.1, 2)
        paid_kind = rng.uniform(size=accounts)
        amount_paid = np.where(
            dpd > 0,
            np.where(paid_kind < 0.5, 0.0, np.round(min_due * rng.uniform(0.2, 1.05, accounts), 2)),
            np.where(paid_kind < 0.3, min_due, amount_due),
        )
        balance = np.clip(balance + rng.normal(0, 0.05, accounts) * limits, 0, limits * 1.2)
        known_at = [datetime(c.year, c.month, c.day, 6) + timedelta(days=int(k))
                    for c, k in zip(cycle_end, lag_days, strict=True)]  # fmt: skip
        statement_parts.append(
            pl.DataFrame(
                {
                    "account_id": ids,
                    "cycle_end": cycle_end,
                    "known_at": known_at,
                    "amount_due": amount_due,
                    "min_due": min_due,
                    "amount_paid": amount_paid,
                    "balance": np.round(balance, 2),
                    "dpd": dpd,
                }
            )
        )
        acted = np.flatnonzero(dpd > 0)
        for _ in range(2):
            if not acted.size:
                break
            outcome = rng.choice(np.array(OUTCOMES), acted.size)
            promised = outcome == "promise_to_pay"
            when = [datetime(year, month, 1) + timedelta(days=int(d), hours=int(h))
                    for d, h in zip(rng.integers(0, 27, acted.size), rng.integers(8, 20, acted.size), strict=True)]  # fmt: skip
            action_parts.append(
                pl.DataFrame(
                    {
                        "account_id": ids[acted],
                        "action_at": when,
                        "channel": rng.choice(np.array(CHANNELS), acted.size),
                        "outcome": outcome,
                        "promised_amount": np.where(promised, np.round(min_due[acted], 2), np.nan),
                        "promised_date": [
                            w.date() + timedelta(days=7) if p else None
                            for w, p in zip(when, promised, strict=True)
                        ],  # fmt: skip
                    },
                    schema_overrides={"promised_date": pl.Date},
                ).with_columns(pl.col("promised_amount").fill_nan(None))
            )
        treated = acted[rng.uniform(size=acted.size) < 0.05]
        if treated.size:
            start_at = datetime(year, month, 15)
            treatment_parts.append(
                pl.DataFrame(
                    {
                        "account_id": ids[treated],
                        "kind": rng.choice(np.array(TREATMENT_KINDS), treated.size),
                        "start_at": [start_at] * treated.size,
                        "end_at": [start_at + timedelta(days=60)] * treated.size,
                        "known_at": [start_at] * treated.size,
                    }
                )
            )
    return History(
        accounts=account_frame,
        statements=pl.concat(statement_parts).with_columns(
            pl.col("known_at").cast(pl.Datetime("us"))
        ),
        collection_actions=pl.concat(action_parts).with_columns(
            pl.col("action_at").cast(pl.Datetime("us"))
        ),
        treatments=pl.concat(treatment_parts).with_columns(
            pl.col("start_at", "end_at", "known_at").cast(pl.Datetime("us"))
        ),
    )
