"""Check that the accounts scored today still look like the ones the model was trained on.

Compares the population at --as-of (the delinquent accounts `rollrisk score` would score) with
the model's training population:

  score PSI      the model's scores today against its training scores, on the training bins
  feature CSI    each feature's distribution today against a training sample the model carries
                 (numeric: training quantile bins; categorical: training categories plus an
                 "other/unseen" bin; missing values are a bin of their own)
  backtest       once the as-of's performance window has passed in --data (the DPD of the
                 following months is in the statements), realised roll-to-default rate against
                 the mean predicted probability per risk band, with a 95% interval

Verdicts: PSI/CSI under 0.1 stable, 0.1-0.25 watch, above the threshold act. Thresholds are
in the `monitoring:` section of conf/default.yaml (psi_act, csi_act, backtest_tolerance).

Output: OUT/monitor.md (for people) and OUT/monitor.json (for machines).
Exit codes, so a scheduler can alert:
  0  nothing crossed a threshold
  3  a threshold was crossed (the alerts are printed and listed in monitor.json)
  2  usage or data error (bad flag, unreadable portfolio, unknown model), 1 unexpected failure

example:
  rollrisk monitor --model models:/rollrisk-roll-to-default@champion \\
      --data runs/demo/portfolio --as-of 2025-09-30 --out runs/demo/monitor
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import polars as pl

from rollrisk.arguments import add_config_argument, add_model_argument, add_portfolio_arguments
from rollrisk.conf import DEFAULT_POLICY
from rollrisk.errors import UserError

if TYPE_CHECKING:
    from rollrisk.features.observations import ObservationSpec
    from rollrisk.models.roll_model import RollModel
    from rollrisk.storage.loader import Portfolio

EXIT_OK = 0
EXIT_ALERT = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    add_portfolio_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("runs/monitor"), help="output folder")
    add_config_argument(parser, help="YAML config (monitoring thresholds, observation)")
    parser.add_argument(
        "--policy", type=Path, default=DEFAULT_POLICY, help="policy YAML (its risk bands)"
    )


def current_population(
    portfolio: Portfolio, as_of: date, spec: ObservationSpec, model: RollModel
) -> pd.DataFrame:
    """Features, ``dpd_at_as_of``, ``start_bucket`` and ``probability`` of today's population."""
    from rollrisk.scoring.core import features_at, population

    people = population(portfolio.statements, as_of, spec).sort("account_id")
    if people.height == 0:
        return pd.DataFrame()
    features = features_at(
        people, as_of, portfolio.accounts, portfolio.statements,
        portfolio.collection_actions, portfolio.treatments, model.feature_set,
    )  # fmt: skip
    return features.assign(probability=model.predict_proba(features))


def matured_outcomes(
    statements: pl.DataFrame, as_of: date, spec: ObservationSpec
) -> pd.DataFrame | None:
    """``account_id, rolled_to_default`` once the window after ``as_of`` has passed, else None."""
    from rollrisk.features.observations import LABELLED, observations

    observed = observations(statements, [as_of], spec)
    labelled = observed.filter(pl.col("status") == LABELLED)
    if labelled.height == 0:
        return None
    return labelled.select("account_id", "rolled_to_default").to_pandas()


def run(args: argparse.Namespace) -> int:
    from rollrisk.features.observations import ObservationSpec
    from rollrisk.models.monitoring import backtest, feature_stability, score_stability
    from rollrisk.scoring.core import default_as_of
    from rollrisk.storage.config import load_config
    from rollrisk.storage.loader import load_portfolio
    from rollrisk.storage.registry import load_roll_model, observation_of
    from rollrisk.storage.tracking import configure_tracking
    from rollrisk.strategies.policy import load_policy

    config = load_config(args.config)
    thresholds = config.monitoring
    if not Path(args.policy).is_file():
        raise UserError(f"{args.policy}: file not found")
    bands = load_policy(args.policy).risk_bands
    configure_tracking()
    print(f"[monitor] loading model {args.model}", file=sys.stderr, flush=True)
    loaded = load_roll_model(args.model)
    if loaded.reference_scores is None:
        raise UserError(
            f"model {args.model!r} carries no training scores (reference_scores): retrain it "
            "with this version of `rollrisk train`"
        )
    base = ObservationSpec.from_mapping(config.observation, source=f"config file {config.source}")
    spec = observation_of(loaded, base)
    print(f"[monitor] loading portfolio {args.data}", file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    portfolio = load_portfolio(args.data, rejects_path=args.out / "rejects.csv")
    as_of = args.as_of or default_as_of(portfolio.statements)
    current = current_population(portfolio, as_of, spec, loaded.model)
    if current.empty:
        raise UserError(
            f"no account of {args.data} is delinquent ({spec.min_dpd}-{spec.max_dpd} DPD) at "
            f"{as_of}: nothing to monitor"
        )

    alerts: list[str] = []
    psi = score_stability(loaded.reference_scores, current["probability"].to_numpy())
    if psi.value > thresholds.psi_act:
        alerts.append(f"score PSI {psi.value:.3f} > {thresholds.psi_act}")

    stability = None
    if loaded.reference_features is not None:
        stability = feature_stability(loaded.reference_features, current, loaded.model.feature_set)
        for row in stability.summary.itertuples():
            if row.csi > thresholds.csi_act:
                alerts.append(f"feature {row.feature}: CSI {row.csi:.3f} > {thresholds.csi_act}")
    else:
        print(
            "[monitor] the model carries no training feature sample (trained before "
            "reference_features was logged): CSI skipped",
            file=sys.stderr,
        )

    outcomes = matured_outcomes(portfolio.statements, as_of, spec)
    backtest_table = None
    if outcomes is not None:
        joined = current.merge(outcomes, on="account_id", how="inner")
        backtest_table = backtest(
            joined,
            bands,
            tolerance=thresholds.backtest_tolerance,
            min_accounts=thresholds.backtest_min_accounts,
        )
        for row in backtest_table.itertuples():
            if row.verdict == "act":
                alerts.append(
                    f"backtest band {row.band}: realised {row.realised_rate:.3f} vs predicted "
                    f"{row.predicted_mean:.3f} (gap beyond {thresholds.backtest_tolerance})"
                )

    report = {
        "as_of": as_of.isoformat(),
        "model": {"uri": args.model, "name": loaded.name, "version": loaded.version},
        "data": str(args.data),
        "population": len(current),
        "thresholds": thresholds.model_dump(),
        "score_psi": {
            "value": psi.value,
            "verdict": _verdict(psi.value, thresholds.psi_act),
            "reference_scores": int(np.asarray(loaded.reference_scores).size),
            "bins": _records(psi.table),
        },
        "feature_csi": None
        if stability is None
        else [
            {**record, "verdict": _verdict(record["csi"], thresholds.csi_act)}
            for record in _records(stability.summary)
        ],
        "feature_bins": None if stability is None else _records(stability.bins),
        "backtest": None
        if backtest_table is None
        else {
            "matured_accounts": int(backtest_table["accounts"].iloc[-1]),
            "bands": _records(backtest_table),
        },
        "backtest_status": "matured"
        if backtest_table is not None
        else f"not matured: the {spec.window_months}-month window after {as_of} is not in the data",
        "alerts": alerts,
        "exit_code": EXIT_ALERT if alerts else EXIT_OK,
    }
    (args.out / "monitor.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    (args.out / "monitor.md").write_text(render_markdown(report), encoding="utf-8")

    print(
        f"[monitor] {len(current):,} accounts at {as_of}, {loaded.name} v{loaded.version}: "
        f"score PSI {psi.value:.3f} ({report['score_psi']['verdict']})"
    )
    for alert in alerts:
        print(f"  ALERT {alert}")
    print(f"  report: {args.out / 'monitor.md'}")
    return EXIT_ALERT if alerts else EXIT_OK


def _verdict(value: float, act_above: float) -> str:
    """'stable' under 0.1, 'act' above the configured threshold, 'watch' between."""
    if value > act_above:
        return "act"
    return "stable" if value < 0.1 else "watch"


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe records: infinities and NaN become None."""
    records = frame.to_dict("records")
    return [{key: _json_value(value) for key, value in record.items()} for record in records]


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Monitoring report, as-of {report['as_of']}",
        "",
        f"Model {report['model']['name']} v{report['model']['version']} (`{report['model']['uri']}`), "
        f"portfolio `{report['data']}`, {report['population']:,} delinquent accounts.",
        "",
        "## Verdict",
        "",
    ]
    if report["alerts"]:
        lines += [f"- **ALERT** {alert}" for alert in report["alerts"]]
        lines += ["", f"Exit code {report['exit_code']} (a threshold was crossed)."]
    else:
        lines += ["No threshold crossed (exit code 0)."]
    psi = report["score_psi"]
    lines += [
        "",
        "## Score stability (PSI)",
        "",
        f"PSI {psi['value']:.4f}: **{psi['verdict']}** (act above {report['thresholds']['psi_act']}); "
        f"{psi['reference_scores']:,} training scores fix the bins.",
        "",
        "| bin | lower | upper | training share | today's share | contribution |",
        "|---|---|---|---|---|---|",
    ]
    for row in psi["bins"]:
        lower = "-inf" if row["lower_edge"] is None else f"{row['lower_edge']:.4f}"
        upper = "+inf" if row["upper_edge"] is None else f"{row['upper_edge']:.4f}"
        lines.append(
            f"| {row['bin']} | {lower} | {upper} | {row['expected_share']:.4f} | "
            f"{row['actual_share']:.4f} | {row['contribution']:.4f} |"
        )
    lines += ["", "## Feature stability (CSI)", ""]
    if report["feature_csi"] is None:
        lines.append("Not computed: the model carries no training feature sample.")
    else:
        lines += [
            "| feature | kind | CSI | verdict | empty bins today | missing (train -> today) | unseen today |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in report["feature_csi"]:
            lines.append(
                f"| {row['feature']} | {row['kind']} | {row['csi']:.4f} | {row['verdict']} | "
                f"{row['empty_bins_actual']} | {row['missing_share_expected']:.1%} -> "
                f"{row['missing_share_actual']:.1%} | {row['unseen_share_actual']:.1%} |"
            )
    lines += ["", "## Backtest: realised against predicted roll rate", ""]
    if report["backtest"] is None:
        lines.append(f"Not available: {report['backtest_status']}.")
    else:
        lines += [
            f"{report['backtest']['matured_accounts']:,} accounts with a matured outcome.",
            "",
            "| band | accounts | rolled | predicted | realised | 95% interval | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in report["backtest"]["bands"]:
            if not row["accounts"]:
                lines.append(f"| {row['band']} | 0 | 0 | | | | {row['verdict']} |")
                continue
            lines.append(
                f"| {row['band']} | {row['accounts']:,} | {row['rolled']:,} | "
                f"{row['predicted_mean']:.3f} | {row['realised_rate']:.3f} | "
                f"{row['ci_lower']:.3f}-{row['ci_upper']:.3f} | {row['verdict']} |"
            )
    return "\n".join(lines) + "\n"
