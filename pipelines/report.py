"""Write the strategy review page of a scoring run: one self-contained HTML page for a strategy
lead who does not code.

For the published result of `rollrisk score` (--scores OUT) it shows: the policy simulation's
headline (book value against the tiered baseline with the account-and-seed interval, the
references up to the oracle, value captured; from --policy-simulation); whether the scoring
model is the champion and what its promotion gates said (read from the MLflow registry, never
written); per segment a definition in English and Chinese written from the segment rules the
scores were decided with, its treatment ladders in words and its value; where the strategy loses
and which compliance rules removed its actions; with --learned (the folder of `rollrisk
learn-policy`), what the lender's experiment showed arm by arm and the policy the data suggests
with its off-policy estimate in money; a sortable, filterable account list; example
accounts with waterfalls in probability terms and reasons in both languages; expected loss per
segment and band, the action mix, calibration, segment recovery (simulated portfolios) and a
SHAP summary per segment for analysts.

SHAP values are recomputed for a bounded sample of accounts per segment (--sample-per-segment)
from the scored model (the manifest's model URI at the version it recorded: a model scored as
models:/NAME@champion is loaded as models:/NAME/VERSION, whatever the alias names since) and
the portfolio (--data): the scored output
stores only family sums and the top 4 reasons. Paths are shown relative to the working folder.

The page embeds its images (PNG, base64), its CSS, its data and one small script (sorting and
filtering the account list); it loads nothing from the network. The HTML is logged to MLflow
(experiment `rollrisk-reports`, tagged with the model version) unless --no-mlflow.

example:
  rollrisk report --scores runs/demo/scores --data runs/demo/portfolio \\
      --policy-simulation runs/demo/policy_simulation --learned runs/demo/learned \\
      --out runs/demo/strategy_report.html
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollrisk.arguments import add_data_argument
from rollrisk.errors import UserError

if TYPE_CHECKING:
    from rollrisk.reports.strategy import LearnedResult

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
        "--learned",
        type=Path,
        default=None,
        help="output folder of `rollrisk learn-policy` (policy_learning.json, learned_rules.yaml): "
        "adds the lender's experiment arm by arm and the learned policy with its off-policy "
        "estimate",
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

    from rollrisk.arguments import check_output_argument, load_portfolio_argument
    from rollrisk.reports.strategy import build_report
    from rollrisk.scoring.batch import recorded_rule_file
    from rollrisk.simulator.truth import read_true_drivers
    from rollrisk.storage.registry import load_roll_model, scored_model_uri
    from rollrisk.storage.results import POLICY_SIMULATION_JSON, read_policy_simulation, read_scores
    from rollrisk.storage.tracking import configure_tracking, ensure_experiment
    from rollrisk.strategies.policy import load_policy
    from rollrisk.strategies.segments import load_segment_rules

    check_output_argument(args, path=args.out or args.scores / "strategy_report.html")
    if args.sample_per_segment < 2:
        raise UserError(f"--sample-per-segment must be at least 2, got {args.sample_per_segment}")
    if args.examples < 1:
        raise UserError(f"--examples must be at least 1 (example accounts), got {args.examples}")
    if not 0 <= args.seed < 2**32:
        raise UserError(f"--seed must be in [0, 2**32), got {args.seed}")
    page = args.out or args.scores / "strategy_report.html"
    if page.is_dir():
        raise UserError(f"--out {page} is a folder: give the page's file name (.html)")
    manifest, scored = read_scores(args.scores)
    policy_simulation = None
    if args.policy_simulation is not None:
        if (
            args.policy_simulation.name == POLICY_SIMULATION_JSON
            and args.policy_simulation.is_file()
        ):
            args.policy_simulation = args.policy_simulation.parent  # the file given: its folder
        policy_simulation = read_policy_simulation(args.policy_simulation)
        if policy_simulation.get("as_of") != manifest["as_of"]:
            raise UserError(
                f"{args.policy_simulation / POLICY_SIMULATION_JSON} simulates scores as of "
                f"{policy_simulation.get('as_of')}, but {args.scores} is as of {manifest['as_of']}"
            )
        simulated_run = policy_simulation.get("scores_run_key")  # absent before 2026-12-01
        simulated_accounts = policy_simulation.get("accounts")
        if simulated_run is None and simulated_accounts not in (None, scored.height):
            raise UserError(
                f"{args.policy_simulation / POLICY_SIMULATION_JSON} rolled "
                f"{simulated_accounts:,} scored accounts forward, but {args.scores} holds "
                f"{scored.height:,}: it simulates other scores; run simulate-policy on these"
            )
        if simulated_run is not None and simulated_run != manifest.get("run_key"):
            raise UserError(
                f"{args.policy_simulation / POLICY_SIMULATION_JSON} simulates other scores "
                f"({policy_simulation.get('scores')}, run {simulated_run}) than {args.scores} "
                f"(run {manifest.get('run_key')}): the page would put one book's strategy "
                "figures beside another's accounts; run simulate-policy on these scores"
            )
    rules = {
        key: recorded_rule_file(
            manifest, key, args.scores, "the page defines the segments and ladders from it"
        )
        for key in ("segments", "policy")
    }
    learned = None if args.learned is None else read_learned(args.learned)
    if learned is not None:
        _check_learned_portfolio(learned, args.learned, manifest, args.scores)
    segment_rules = load_segment_rules(rules["segments"])
    policy = load_policy(rules["policy"])
    tracking = configure_tracking()
    # the version that scored, not the one its alias names today (a promotion moves it)
    given = manifest["model"]["uri"]
    uri = scored_model_uri(given, manifest["model"].get("version"))
    shown = uri if uri == given else f"{uri} (the version that scored; the run was given {given})"
    print(f"[report] loading model {shown}", file=sys.stderr, flush=True)
    loaded = load_roll_model(uri)
    promotion = promotion_status(loaded.name, loaded.version)
    portfolio, _ = load_portfolio_argument(args, "report")
    _check_same_portfolio(manifest, args.scores, args.data)
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
        segment_rules=segment_rules,
        policy=policy,
        promotion=promotion,
        learned=learned,
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
                    "model_promotion": "n/a" if promotion is None else str(promotion["status"]),
                }
            )
            mlflow.log_metric("accounts_scored", scored.height)
            mlflow.log_metric("expected_loss", float(scored["expected_loss"].sum()))
            if policy_simulation is not None:
                for metric in ("net_recovery", "roll_to_default_rate"):
                    stats = policy_simulation["uplift"][metric]
                    for key in ("mean", "ci_low", "ci_high"):
                        mlflow.log_metric(f"uplift_{metric}_{key}", stats[key])
                headline = policy_simulation.get("headline")
                if headline:  # book value with the account-and-seed interval
                    for key in ("mean", "ci_low", "ci_high"):
                        mlflow.log_metric(f"uplift_book_value_{key}", headline["uplift"][key])
                captured = (policy_simulation.get("value_captured") or {}).get("overall")
                if captured is not None:
                    mlflow.log_metric("value_captured", captured)
                mlflow.log_artifact(str(args.policy_simulation / POLICY_SIMULATION_JSON))
            if learned is not None:  # the learned policy's off-policy estimate per decision
                uplift = learned.evaluation["evaluation"]["uplift_vs_current"]
                mlflow.log_metric("learned_uplift_per_decision_mean", uplift["value"])
                for key in ("ci_low", "ci_high"):
                    mlflow.log_metric(f"learned_uplift_per_decision_{key}", uplift[key])
                mlflow.log_artifact(str(learned.folder / "policy_learning.json"))
            mlflow.log_artifact(str(out))
            print(f"[report] logged to MLflow experiment {EXPERIMENT} ({tracking.tracking_uri})")
    return 0


def read_learned(folder: Path) -> LearnedResult:
    """What ``rollrisk learn-policy`` wrote to ``folder``: policy_learning.json and
    learned_rules.yaml (both needed), learned_policy.yaml when there. Raises UserError naming
    the file that is missing or unreadable."""
    import json

    import yaml

    from rollrisk.reports.strategy import LearnedResult

    if not folder.is_dir():
        raise UserError(f"--learned {folder}: no such folder (the --out of rollrisk learn-policy)")
    documents: dict[str, Any] = {}
    for name in ("policy_learning.json", "learned_rules.yaml"):
        path = folder / name
        if not path.is_file():
            raise UserError(
                f"--learned {folder}: {name} is missing (expected the --out folder of "
                "rollrisk learn-policy)"
            )
        try:
            text = path.read_text(encoding="utf-8")
            document = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as error:
            raise UserError(f"{path} cannot be read: {error}") from None
        if not isinstance(document, dict):
            raise UserError(f"{path}: expected a mapping at the top, got {type(document).__name__}")
        documents[name] = document
    evaluation = documents["policy_learning.json"].get("evaluation")
    if not isinstance(evaluation, dict) or "uplift_vs_current" not in evaluation:
        raise UserError(
            f"{folder / 'policy_learning.json'}: no evaluation.uplift_vs_current (the off-policy "
            "estimate); was it written by rollrisk learn-policy?"
        )
    policy_file = folder / "learned_policy.yaml"
    return LearnedResult(
        evaluation=documents["policy_learning.json"],
        rules=documents["learned_rules.yaml"],
        folder=folder,
        policy_file=policy_file if policy_file.is_file() else None,
    )


def promotion_status(name: str, version: str) -> dict[str, Any] | None:
    """What the model registry says about the scoring model: the champion's version, the
    version's aliases and the verdict `rollrisk promote` tagged it with (``promotion``,
    ``reasons``: the gates' lines). Reads only; None for a model not loaded through the
    registry."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from rollrisk.models.promotion import PROMOTED_AT_TAG, PromotionConfig
    from rollrisk.reports.strategy import promotion_state
    from rollrisk.storage.registry import UNREGISTERED, alias_version

    if version == UNREGISTERED:
        return None
    champion = alias_version(name, PromotionConfig().to_alias)
    try:
        found = mlflow.MlflowClient().get_model_version(name, version)
    except MlflowException:
        return None
    tags = dict(found.tags or {})
    record = {
        "name": name,
        "version": str(version),
        "champion_version": None if champion is None else champion.version,
        "aliases": sorted(getattr(found, "aliases", []) or []),
        "promotion": tags.get("promotion"),
        "promoted_at": tags.get(PROMOTED_AT_TAG),
        "reasons": [r.strip() for r in tags.get("promotion_reasons", "").split(" | ") if r.strip()],
    }
    return {**record, "status": promotion_state(record)}


def _check_learned_portfolio(learned: Any, folder: Path, manifest: dict, scores: Path) -> None:
    """Refuse a learn-policy folder whose logged decisions came from another portfolio than
    the scores (learn-policy records the portfolio's fingerprint from logged-decisions'
    summary; scores record theirs): the page would show another book's experiment as this
    lender's. A folder without the fingerprint (a table made otherwise) is not checked."""
    provenance = learned.evaluation.get("provenance") or {}
    learned_from = (provenance.get("logged") or {}).get("data_fingerprint")
    scored_from = (manifest.get("identity") or {}).get("data")
    if learned_from is not None and scored_from is not None and learned_from != scored_from:
        raise UserError(
            f"--learned {folder}: its logged decisions come from another portfolio than "
            f"{scores} was scored from (the fingerprints in its provenance and in the scores' "
            "manifest differ): the page would present another book's experiment as this "
            "lender's; give the learn-policy run of this portfolio"
        )


def _check_same_portfolio(manifest: dict, scores: Path, data: Path) -> None:
    """Refuse a ``--data`` whose files are not those the scores were made from (the scores'
    manifest records their fingerprint): the page would explain the scores with other
    borrowers' histories."""
    from rollrisk.storage.tracking import fingerprint_files

    scored_from = (manifest.get("identity") or {}).get("data")
    if scored_from is None:  # scores published before the manifest kept its identity
        return
    if fingerprint_files(data) != scored_from:
        raise UserError(
            f"{data}: these are not the portfolio files {scores} was scored from (their "
            "fingerprint differs from the one its manifest records): give the portfolio the "
            "scores came from, or re-score this one"
        )
