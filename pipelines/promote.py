"""Move the `champion` alias to the `challenger` model version, only if it passes the gates.

The gates (section `promotion:` of conf/default.yaml) are checked in this order:

  * calibration: the challenger's out-of-time expected calibration error <= max_ece;
  * stability: the PSI between its training and out-of-time scores <= max_psi;
  * baselines (require_beats_baselines): its own run shows it beats the roll-rate chain and the
    WOE scorecard on out-of-time AUC and Brier score;
  * discrimination: its out-of-time AUC beats the champion's by at least min_auc_gain. Both
    models are scored on the challenger's own out-of-time rows (logged with its run), so the
    comparison is on the same accounts and months; if the champion cannot score them (another
    feature set), the AUC the champion logged in its own run is used and the report says so.

With no champion yet, the first challenger that passes the calibration and stability gates is
promoted. When a gate fails, nothing changes and every failed gate is printed with its figures;
the exit code is then 1, so a pipeline can stop on it. Serving loads models:/NAME@champion.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rollrisk.errors import UserError
from rollrisk.storage.config import PromotionConfig, load_config

EXIT_REFUSED = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-name", default=None, help="registered model name (config: training.model_name)"
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="YAML config (default: conf/default.yaml)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the gates and print the decision; move no alias",
    )


@dataclass(frozen=True)
class CandidateFigures:
    """What the gates look at for one model version."""

    version: str
    auc: float  # out-of-time AUC on the rows the decision is made on
    ece: float | None = None
    psi: float | None = None
    beats_baselines: bool | None = None  # from the run's `ships` tag


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reasons: tuple[str, ...]


def decide_promotion(
    challenger: CandidateFigures, champion: CandidateFigures | None, gates: PromotionConfig
) -> PromotionDecision:
    """Apply the promotion gates; ``reasons`` explains every gate, passed or failed."""
    reasons: list[str] = []
    passed = True
    if challenger.ece is None or not np.isfinite(challenger.ece):
        passed = False
        reasons.append("FAIL calibration: the challenger's run logged no out-of-time ECE (oot_ece)")
    elif challenger.ece > gates.max_ece:
        passed = False
        reasons.append(
            f"FAIL calibration: out-of-time ECE {challenger.ece:.4f} > max_ece {gates.max_ece:.4f}"
        )
    else:
        reasons.append(
            f"pass calibration: out-of-time ECE {challenger.ece:.4f} <= {gates.max_ece:.4f}"
        )
    if challenger.psi is None or not np.isfinite(challenger.psi):
        passed = False
        reasons.append(
            "FAIL stability: the challenger's run logged no train -> out-of-time PSI (oot_psi)"
        )
    elif challenger.psi > gates.max_psi:
        passed = False
        reasons.append(f"FAIL stability: PSI {challenger.psi:.4f} > max_psi {gates.max_psi:.4f}")
    else:
        reasons.append(f"pass stability: PSI {challenger.psi:.4f} <= {gates.max_psi:.4f}")
    if gates.require_beats_baselines:
        if challenger.beats_baselines:
            reasons.append(
                "pass baselines: beats the roll-rate chain and the scorecard out of time"
            )
        else:
            passed = False
            missing = " (its run has no `ships` tag)" if challenger.beats_baselines is None else ""
            reasons.append(
                "FAIL baselines: does not beat both the roll-rate chain and the WOE scorecard on "
                f"out-of-time AUC and Brier{missing}; see the run's report"
            )
    if champion is None:
        reasons.append("no champion yet: the discrimination gate does not apply")
    else:
        gain = challenger.auc - champion.auc
        verdict = "pass" if gain >= gates.min_auc_gain else "FAIL"
        passed = passed and gain >= gates.min_auc_gain
        reasons.append(
            f"{verdict} discrimination: out-of-time AUC {challenger.auc:.4f} (v{challenger.version}) vs "
            f"{champion.auc:.4f} (champion v{champion.version}), gain {gain:+.4f}, "
            f"needed >= {gates.min_auc_gain:+.4f}"
        )
    return PromotionDecision(promote=passed, reasons=tuple(reasons))


def _alias_version(client, name: str, alias: str):  # noqa: ANN001, ANN202 - MLflow types
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _inputs(model, rows):  # noqa: ANN001, ANN202 - a pyfunc model and a pandas frame
    """The columns the model's signature declares (the logged rows also hold ids and labels)."""
    schema = model.metadata.get_input_schema()
    return rows[schema.input_names()] if schema is not None else rows


def _figures(
    client, name: str, challenger, champion
) -> tuple[CandidateFigures, CandidateFigures | None, str]:  # noqa: ANN001
    """Challenger and champion figures, both AUCs on the challenger's out-of-time rows."""
    import mlflow
    import pandas as pd

    from rollrisk.models.metrics import roc_auc

    challenger_run = client.get_run(challenger.run_id)
    challenger_metrics = challenger_run.data.metrics
    ships = challenger_run.data.tags.get("ships")
    with tempfile.TemporaryDirectory() as scratch:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=challenger.run_id,
                artifact_path="evaluation/oot_test.parquet",
                dst_path=scratch,
            )
            rows = pd.read_parquet(path)
        except Exception:  # noqa: BLE001 - any missing artifact means: fall back to logged AUCs
            rows = None
    note = "AUCs compared on the challenger's out-of-time rows"
    labels = None if rows is None else rows["rolled_to_default"].to_numpy()
    if rows is not None:
        model = mlflow.pyfunc.load_model(f"models:/{name}/{challenger.version}")
        challenger_auc = roc_auc(labels, model.predict(_inputs(model, rows)))
    else:
        challenger_auc = challenger_metrics.get("oot_auc", float("nan"))
        note = "AUCs as logged by each run (the challenger's out-of-time rows were not found)"
    figures = CandidateFigures(
        version=str(challenger.version),
        auc=float(challenger_auc),
        ece=challenger_metrics.get("oot_ece"),
        psi=challenger_metrics.get("oot_psi"),
        beats_baselines=None if ships is None else ships == "true",
    )
    if champion is None:
        return figures, None, note
    champion_auc = None
    if rows is not None:
        try:
            champion_model = mlflow.pyfunc.load_model(f"models:/{name}/{champion.version}")
            champion_auc = roc_auc(labels, champion_model.predict(_inputs(champion_model, rows)))
        except Exception as error:  # noqa: BLE001 - e.g. the champion needs other features
            note = (
                f"champion could not score the challenger's rows ({error}); its logged AUC is used"
            )
    if champion_auc is None:
        champion_auc = client.get_run(champion.run_id).data.metrics.get("oot_auc", float("nan"))
    return figures, CandidateFigures(version=str(champion.version), auc=float(champion_auc)), note


def run(args: argparse.Namespace) -> int:
    from mlflow import MlflowClient

    from rollrisk.storage.tracking import configure_tracking

    config = load_config(args.config)
    gates = config.promotion
    name = args.model_name or config.training.model_name
    setup = configure_tracking()
    client = MlflowClient()
    challenger = _alias_version(client, name, gates.from_alias)
    if challenger is None:
        raise UserError(
            f"model {name!r} has no version with alias {gates.from_alias!r} in {setup.tracking_uri}; "
            "run `rollrisk train` first (or check --model-name and MLFLOW_TRACKING_URI)"
        )
    champion = _alias_version(client, name, gates.to_alias)
    if champion is not None and champion.version == challenger.version:
        print(f"{name} v{challenger.version} is already {gates.to_alias}; nothing to do")
        return 0
    challenger_figures, champion_figures, note = _figures(client, name, challenger, champion)
    decision = decide_promotion(challenger_figures, champion_figures, gates)
    print(
        f"{name}: {gates.from_alias} v{challenger.version} vs "
        f"{gates.to_alias} {'v' + str(champion.version) if champion else '(none)'} ({note})"
    )
    for reason in decision.reasons:
        print(f"  {reason}")
    outcome = "promoted" if decision.promote else "refused"
    if args.dry_run:
        print(f"dry run: would be {outcome}")
        return 0 if decision.promote else EXIT_REFUSED
    client.set_model_version_tag(name, str(challenger.version), "promotion", outcome)
    client.set_model_version_tag(
        name, str(challenger.version), "promotion_reasons", " | ".join(decision.reasons)
    )
    if not decision.promote:
        print(
            f"refused: {gates.to_alias} stays at {'v' + str(champion.version) if champion else 'no version'}"
        )
        return EXIT_REFUSED
    client.set_registered_model_alias(name, gates.to_alias, str(challenger.version))
    print(f"promoted: models:/{name}@{gates.to_alias} is now v{challenger.version}")
    return 0
