"""The month-end model scored on other days of the month: the evidence behind keeping training
panels monthly while scoring any day (docs/features.md, "Any day of the month").

For one portfolio and its training set (``rollrisk build-training-set`` output, month-end
as-of dates), the evaluation fit is made as the gates judge it (the shipped training settings,
bench/calibration_shift.py's ``fitted``: trained and calibrated before the out-of-time test
months). It then scores, in each test month, the population at the month-end and at the given
days of the month (the same population rule, DPD aged to the day, point-in-time features),
each labelled by the training set's own rule (90+ DPD in the 3 calendar months after the
as-of month), and prints one row per day (calibration_shift's figures: rows, roll rate, mean
predicted, binned and smooth ECE, Brier score, AUC).

    .venv/bin/rollrisk simulate --seed 7 --accounts 60000 --months 24 --out runs/q7
    .venv/bin/rollrisk build-training-set --data runs/q7 --out runs/q7.parquet
    .venv/bin/python bench/mid_month_as_of.py --data runs/q7 --training-set runs/q7.parquet \\
        --days 5 10 15 20 25
"""

from __future__ import annotations

import argparse
from datetime import date

import pandas as pd
import polars as pl
from calibration_shift import WINDOW_MONTHS, figures, fitted

from rollrisk.api import load_portfolio
from rollrisk.features.history import compute_features
from rollrisk.features.observations import LABELLED, ObservationSpec, observations
from rollrisk.models.training import LABEL, embargo_months
from rollrisk.storage.config import load_config


def labelled_rows(portfolio, as_of: date) -> pd.DataFrame:
    """The labelled observations at ``as_of`` with their point-in-time features."""
    observed = observations(portfolio.statements, [as_of], ObservationSpec()).filter(
        pl.col("status") == LABELLED
    )
    features = compute_features(
        observed.select("account_id", "as_of"),
        portfolio.accounts,
        portfolio.statements,
        portfolio.collection_actions,
        portfolio.treatments,
    ).collect()
    joined = observed.select("account_id", "as_of", "start_bucket", LABEL).join(
        features, on=["account_id", "as_of"], how="left"
    )
    return joined.to_pandas()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the portfolio the training set is from")
    parser.add_argument("--training-set", required=True)
    parser.add_argument("--days", type=int, nargs="+", default=[5, 10, 15, 20, 25])
    args = parser.parse_args()
    frame = pd.read_parquet(args.training_set)
    training = load_config().training
    model, split = fitted(frame, embargo=embargo_months(training, WINDOW_MONTHS))
    portfolio = load_portfolio(args.data)
    test_months = [pd.Timestamp(month).date() for month in split.months["out-of-time test"]]
    print(f"evaluation fit: {split.describe()}")
    rows = []
    days: list[int | None] = [*args.days, None]
    for day in days:
        parts = [
            labelled_rows(portfolio, month_end if day is None else month_end.replace(day=day))
            for month_end in test_months
        ]
        scored = pd.concat(parts, ignore_index=True)
        name = "month-end" if day is None else f"day {day}"
        rows.append(figures(name, scored[LABEL].to_numpy(), model.predict_proba(scored)))
    table = pd.DataFrame(rows)
    print(" | ".join(table.columns))
    for row in table.itertuples(index=False):
        print(" | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))


if __name__ == "__main__":
    main()
