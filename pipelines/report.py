"""Write the strategy review report of a scoring run: one self-contained HTML page.

For the published result of `rollrisk score` (--scores OUT) it shows what a strategy lead needs
to act on: segment sizes; expected loss (exposure x probability) per segment and risk band; the
action mix the policy chose (and what compliance removed); a SHAP summary (beeswarm) per segment
and the top reason codes per segment; calibration (predicted vs realised roll-to-default per
band, when the outcomes have matured in the portfolio); the segment-recovery figure (simulated
portfolios only, with a bootstrap interval); the policy-simulation comparison against the
baseline tiered policy (from `rollrisk simulate-policy`, with its interval over seeds); and a
few example accounts with the waterfall of their contributions.

SHAP values are recomputed for a bounded sample of accounts per segment (--sample-per-segment)
from the scored model (the manifest's model URI) and the portfolio (--data): the scored output
stores only family sums and the top 4 reasons.

The page embeds its images (PNG, base64) and its CSS; it loads nothing from the network.
The HTML is logged to MLflow (experiment `rollrisk-reports`, tagged with the model version).

example:
  rollrisk report --scores runs/demo/scores --data runs/demo/portfolio \\
      --policy-simulation runs/demo/policy_simulation --out runs/demo/strategy_report.html
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rollrisk.arguments import add_data_argument
from rollrisk.errors import UserError

EXPERIMENT = "rollrisk-reports"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scores", type=Path, required=True, help="output folder of `rollrisk score`"
    )
    add_data_argument(
        parser, help="the portfolio that was scored (for SHAP values and realised outcomes)"
    )
    parser.add_argument(
        "--policy-simulation",
        type=Path,
        default=None,
        help="output folder of `rollrisk simulate-policy` for these scores",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="HTML file (default: SCORES/strategy_report.html)"
    )
    parser.add_argument(
        "--sample-per-segment",
        type=int,
        default=300,
        help="accounts per segment whose SHAP values are recomputed for the plots",
    )
    parser.add_argument("--examples", type=int, default=5, help="example accounts (waterfalls)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples and bootstrap")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the report to MLflow")


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")

    from rollrisk.arguments import load_portfolio_argument
    from rollrisk.reports.strategy import build_report
    from rollrisk.simulator.truth import read_true_drivers
    from rollrisk.storage.registry import load_roll_model
    from rollrisk.storage.results import POLICY_SIMULATION_JSON, read_policy_simulation, read_scores
    from rollrisk.storage.tracking import configure_tracking, ensure_experiment

    if args.sample_per_segment < 2:
        raise UserError(f"--sample-per-segment must be at least 2, got {args.sample_per_segment}")
    manifest, scored = read_scores(args.scores)
    policy_simulation = None
    if args.policy_simulation is not None:
        policy_simulation = read_policy_simulation(args.policy_simulation)
        if policy_simulation.get("as_of") != manifest["as_of"]:
            raise UserError(
                f"{args.policy_simulation / POLICY_SIMULATION_JSON} simulates scores as of "
                f"{policy_simulation.get('as_of')}, but {args.scores} is as of {manifest['as_of']}"
            )
    tracking = configure_tracking()
    uri = manifest["model"]["uri"]
    print(f"[report] loading model {uri}", file=sys.stderr, flush=True)
    loaded = load_roll_model(uri)
    portfolio, _ = load_portfolio_argument(args, "report")
    page = build_report(
        manifest,
        scored,
        portfolio,
        loaded.model,
        data_dir=args.data,
        true_drivers=read_true_drivers(args.data),
        policy_simulation=policy_simulation,
        sample_size=args.sample_per_segment,
        examples=args.examples,
        seed=args.seed,
    )
    out = args.out or args.scores / "strategy_report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    print(f"[report] written: {out} ({len(page) / 1e6:.1f} MB)")
    if not args.no_mlflow:
        import mlflow

        experiment_id = ensure_experiment(EXPERIMENT, tracking)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"report {manifest['as_of']}"):
            mlflow.set_tags(
                {
                    "model_name": manifest["model"].get("name"),
                    "model_version": manifest["model"].get("version"),
                    "model_uri": uri,
                    "as_of": manifest["as_of"],
                    "scores": str(args.scores),
                }
            )
            mlflow.log_metric("accounts_scored", scored.height)
            mlflow.log_metric("expected_loss", float(scored["expected_loss"].sum()))
            if policy_simulation is not None:
                for metric in ("net_recovery", "roll_to_default_rate"):
                    stats = policy_simulation["uplift"][metric]
                    for key in ("mean", "ci_low", "ci_high"):
                        mlflow.log_metric(f"uplift_{metric}_{key}", stats[key])
                mlflow.log_artifact(str(args.policy_simulation / POLICY_SIMULATION_JSON))
            mlflow.log_artifact(str(out))
            print(f"[report] logged to MLflow experiment {EXPERIMENT} ({tracking.tracking_uri})")
    return 0
