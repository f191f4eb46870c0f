"""Small synthetic training-set frames for model tests (no portfolio, no simulator needed).

Columns follow the training-set interface (``docs/models.md``): ``account_id``, ``as_of``
(month-ends), ``product``, ``start_bucket``, ``rolled_to_default`` and one column per feature of
:data:`TEST_FEATURE_SET`. The label depends on the features through a known logistic link, so a
model trained on a few hundred rows must rank better than chance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rollrisk.features.registry import FeatureSet, FeatureSpec
from rollrisk.features.schemas import PRODUCTS


def _spec(name: str, direction: int, kind: str = "numeric") -> FeatureSpec:
    return FeatureSpec(
        name=name,
        family="delinquency_history",
        window_months=None,
        description_en=name,
        description_zh=name,
        reason_en=name + " {value}",
        reason_zh=name + " {value}",
        direction=direction,  # type: ignore[arg-type]
        kind=kind,  # type: ignore[arg-type]
    )


TEST_FEATURE_SET = FeatureSet(
    name="test_roll_features",
    version="0.0.1",
    features=(
        _spec("dpd_current", +1),
        _spec("max_dpd_6m", +1),
        _spec("payment_ratio_3m", -1),
        _spec("broken_promises_90d", +1),
        _spec("months_on_book", 0),
        _spec("last_outcome", 0, kind="categorical"),
    ),
)
OUTCOMES = ("contacted", "no_answer", "promise_to_pay")


def make_training_frame(
    n_accounts: int = 150, n_months: int = 6, seed: int = 0, signal: float = 1.0
) -> pd.DataFrame:
    """One row per account per month-end; about a third of the rows roll to default."""
    rng = np.random.default_rng(seed)
    month_ends = pd.date_range("2025-01-31", periods=n_months, freq="ME").date
    rows = n_accounts * n_months
    account = np.repeat([f"A{i:05d}" for i in range(n_accounts)], n_months)
    as_of = np.tile(month_ends, n_accounts)
    product = np.repeat(rng.choice(PRODUCTS, size=n_accounts), n_months)
    dpd = rng.integers(1, 90, size=rows)
    bucket = np.where(dpd < 30, "M1", np.where(dpd < 60, "M2", "M3"))
    max_dpd = dpd + rng.integers(0, 30, size=rows)
    payment_ratio = rng.uniform(0, 1, size=rows)
    broken = rng.poisson(0.7, size=rows)
    months_on_book = rng.integers(1, 60, size=rows).astype(float)
    months_on_book[rng.uniform(size=rows) < 0.05] = np.nan  # a missing-able feature
    outcome = rng.choice(OUTCOMES, size=rows)
    logit = (
        signal * (0.04 * (dpd - 45) + 1.5 * (0.5 - payment_ratio) + 0.5 * (broken - 0.7))
        + np.where(product == "agri_loan", 0.5, 0.0)
        - 0.7
    )
    label = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return pd.DataFrame(
        {
            "account_id": account,
            "as_of": as_of,
            "product": product,
            "start_bucket": bucket,
            "rolled_to_default": label,
            "dpd_current": dpd.astype(np.int64),
            "max_dpd_6m": max_dpd.astype(np.int64),
            "payment_ratio_3m": payment_ratio,
            "broken_promises_90d": broken.astype(np.int64),
            "months_on_book": months_on_book,
            "last_outcome": outcome,
        }
    )


def split_frames(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Train on the early months; split the last two between early stopping and calibration."""
    months = sorted(frame["as_of"].unique())
    train = frame[frame["as_of"].isin(months[:-2])]
    late = frame[frame["as_of"].isin(months[-2:])]
    calibration_accounts = late["account_id"].drop_duplicates().iloc[::2]
    in_calibration = late["account_id"].isin(calibration_accounts)
    return {"train": train, "valid": late[~in_calibration], "calibration": late[in_calibration]}
