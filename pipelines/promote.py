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
from typing import TYPE_CHECKING

from rollrisk.arguments import add_config_argument, load_config_argument
from rollrisk.errors import UserError
from rollrisk.models.promotion import CandidateFigures, decide_promotion

if TYPE_CHECKING:
    from rollrisk.storage.registry import RegisteredVersion

EXIT_REFUSED = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-name", default=None, help="registered model name (config: training.model_name)"
    )
    add_config_argument(parser)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the gates and print the decision; move no alias",
    )


def _figures(
    challenger: RegisteredVersion, champion: RegisteredVersion | None
) -> tuple[CandidateFigures, CandidateFigures | None, str]:
    """Challenger and champion figures, both AUCs on the challenger's out-of-time rows."""
    from rollrisk.models.metrics import roc_auc
    from rollrisk.models.training import LABEL
    from rollrisk.storage.registry import load_roll_model
    from rollrisk.storage.tracking import OOT_ROWS_ARTIFACT, read_run_parquet, run_record

    challenger_run = run_record(challenger.run_id)
    ships = challenger_run.tags.get("ships")
    # absent when the run was logged by a version that did not keep them: use the logged AUCs
    rows = read_run_parquet(challenger.run_id, OOT_ROWS_ARTIFACT)
    note = "AUCs compared on the challenger's out-of-time rows"
    labels = None if rows is None else rows[LABEL].to_numpy()
    if rows is not None:
        challenger_auc = roc_auc(labels, load_roll_model(challenger.uri).predict_proba(rows))
    else:
        challenger_auc = challenger_run.metrics.get("oot_auc", float("nan"))
        note = "AUCs as logged by each run (the challenger's out-of-time rows were not found)"
    figures = CandidateFigures(
        version=challenger.version,
        auc=float(challenger_auc),
        ece=challenger_run.metrics.get("oot_ece"),
        psi=challenger_run.metrics.get("oot_psi"),
        beats_baselines=None if ships is None else ships == "true",
    )
    if champion is None:
        return figures, None, note
    champion_auc = None
    if rows is not None:
        try:
            champion_auc = roc_auc(labels, load_roll_model(champion.uri).predict_proba(rows))
        except Exception as error:  # noqa: BLE001 - e.g. the champion needs other features
            note = (
                f"champion could not score the challenger's rows ({error}); its logged AUC is used"
            )
    if champion_auc is None:
        champion_auc = run_record(champion.run_id).metrics.get("oot_auc", float("nan"))
    return figures, CandidateFigures(version=champion.version, auc=float(champion_auc)), note


def run(args: argparse.Namespace) -> int:
    from rollrisk.storage.registry import alias_version, set_alias, tag_version
    from rollrisk.storage.tracking import configure_tracking

    config = load_config_argument(args)
    gates = config.promotion
    name = args.model_name or config.training.model_name
    setup = configure_tracking()
    challenger = alias_version(name, gates.from_alias)
    if challenger is None:
        raise UserError(
            f"model {name!r} has no version with alias {gates.from_alias!r} in {setup.tracking_uri}; "
            "run `rollrisk train` first (or check --model-name and MLFLOW_TRACKING_URI)"
        )
    champion = alias_version(name, gates.to_alias)
    if champion is not None and champion.version == challenger.version:
        print(f"{name} v{challenger.version} is already {gates.to_alias}; nothing to do")
        return 0
    challenger_figures, champion_figures, note = _figures(challenger, champion)
    decision = decide_promotion(challenger_figures, champion_figures, gates)
    print(
        f"{name}: {gates.from_alias} v{challenger.version} vs "
        f"{gates.to_alias} {'v' + champion.version if champion else '(none)'} ({note})"
    )
    for reason in decision.reasons:
        print(f"  {reason}")
    outcome = "promoted" if decision.promote else "refused"
    if args.dry_run:
        print(f"dry run: would be {outcome}")
        return 0 if decision.promote else EXIT_REFUSED
    tag_version(
        name,
        challenger.version,
        {"promotion": outcome, "promotion_reasons": " | ".join(decision.reasons)},
    )
    if not decision.promote:
        print(
            f"refused: {gates.to_alias} stays at {'v' + champion.version if champion else 'no version'}"
        )
        return EXIT_REFUSED
    set_alias(name, gates.to_alias, challenger.version)
    print(f"promoted: models:/{name}@{gates.to_alias} is now v{challenger.version}")
    return 0
