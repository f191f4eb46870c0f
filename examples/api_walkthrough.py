"""The worked example of docs/api.md: from a portfolio folder to explained scores, in Python.

    .venv/bin/rollrisk simulate --accounts 2000 --months 15 --out runs/example/portfolio
    .venv/bin/python examples/api_walkthrough.py --data runs/example/portfolio \\
        --work runs/example/api

Each step is one call of the public API (``import rollrisk``), the same code the `rollrisk`
jobs run. The MLflow store is ``WORK/mlflow.db``; everything else it writes goes to WORK too:

    WORK/training_set.parquet  the point-in-time training set
    WORK/metrics.csv           out-of-time metrics of the model and both baselines
    WORK/scores.parquet        every delinquent account at the latest month-end, scored
    WORK/reasons.csv           their principal reasons (one row per account and reason)

``--config`` takes a YAML file like conf/default.yaml (a small portfolio needs a shorter
split than the default's, e.g. ``training: {split: {validation_months: 2, test_months: 2}}``).
tests/e2e/test_api_walkthrough.py runs this script on a small simulated portfolio.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import rollrisk


def walkthrough(data: Path, work: Path, config_path: Path | None = None) -> None:
    """Run the example on the portfolio folder ``data``, writing into ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{(work / 'mlflow.db').resolve()}"

    # 1. Settings: the training section and the label's definition ("observation").
    config = rollrisk.load_config(config_path)
    observation = config.observation_spec()

    # 2. The portfolio, checked against the data contract (bad rows are set aside, counted).
    portfolio = rollrisk.load_portfolio(data)
    print(portfolio.report.summary())

    # 3. The point-in-time training set: one row per delinquent account and month-end.
    training_set = rollrisk.build_training_set(portfolio, observation=observation)
    training_set.write_parquet(work / "training_set.parquet")
    print(f"training set: {training_set.height} rows, {training_set['as_of'].n_unique()} as-of")

    # 4. Train LightGBM and both baselines; compare them on the out-of-time months.
    result = rollrisk.train(training_set, portfolio, config.training, observation=observation)
    metrics = result.comparison.overall[["auc", "gini", "ks", "brier", "log_loss", "ece"]]
    metrics.to_csv(work / "metrics.csv")
    print(metrics.round(4).to_string())
    print("beats both baselines:", result.beats_baselines())

    # 5. Log the run to MLflow and register the model (alias `challenger`), then load it back
    #    the way `rollrisk score` and `rollrisk serve` do.
    run = rollrisk.log_training_run(result, data=data, tracking_uri=tracking_uri)
    print(f"MLflow run {run.run_id}; registered {run.registered_uri}")
    model = rollrisk.load_model(run.registered_uri, tracking_uri=tracking_uri)

    # 6. Score the delinquent book at the latest month-end: probability, risk band, reasons,
    #    segment and treatment, as the nightly batch writes them.
    scored = rollrisk.score(model, portfolio)
    scored.write_parquet(work / "scores.parquet")
    as_of = scored["as_of"][0]
    print(f"scored {scored.height} accounts at {as_of}")
    print(scored.group_by("risk_band").len().sort("risk_band"))

    # 7. Why: each account's principal reasons (and the per-feature contributions behind them).
    explanation = rollrisk.explain(model, portfolio, as_of=as_of)
    explanation.reasons.to_csv(work / "reasons.csv", index=False)
    riskiest = scored.sort("probability", descending=True).row(0, named=True)
    print(f"riskiest account {riskiest['account_id']}: p = {riskiest['probability']:.3f}")
    for reason in json.loads(riskiest["reasons"]):
        print(f"  {reason['rank']}. {reason['code']}: {reason['text_en']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="portfolio folder")
    parser.add_argument("--work", type=Path, required=True, help="folder for the outputs")
    parser.add_argument("--config", type=Path, default=None, help="YAML config")
    args = parser.parse_args(argv)
    walkthrough(args.data, args.work, args.config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
