"""Move the `champion` alias to the `challenger` model version, only if it passes the gates.

A registered model is the deployed fit of a training procedure (refit on every labelled month,
calibrated on the latest); the gates judge the procedure's evaluation fit, on the out-of-time
months its run held out (docs/models.md, "Deployment refit"). The gates (section `promotion:`
of conf/default.yaml) are checked in this order:

  * data: the evaluation rests on at least min_train_rows / min_train_positives training rows
    and min_test_rows / min_test_positives out-of-time rows;
  * calibration: the challenger's out-of-time expected calibration error <= max_ece;
  * stability: the PSI between its training and out-of-time scores <= max_psi;
  * baselines (require_beats_baselines): its own run shows it beats the roll-rate chain and the
    WOE scorecard on out-of-time AUC and Brier score;
  * discrimination: its out-of-time AUC beats the champion's by at least min_auc_gain. The
    champion's evaluation fit (logged with its run) is scored on the challenger's out-of-time
    rows, so the comparison is on the same accounts and months; when it cannot be (another
    feature set, or the champion's fit learnt from those months), the AUC the champion logged
    in its own run is used and the output says so.

With no champion yet, the discrimination gate does not apply. When a gate fails, the champion
alias does not move: the challenger is tagged promotion=refused with the reasons, every
failed gate is printed with its figures, and the exit code is 1, so a pipeline can stop on it.

  rollrisk promote --rollback-to 3

moves the champion back to version 3, which must have been promoted through the gates once
(a production incident is no time to re-run them on data that moved on); both versions are
tagged with the move. A challenger trained on another label than the champion's (default DPD
or window: the two predict different events) is refused unless --new-label is given, and one
rolled back from champion before unless --after-rollback is (the next plain promote would
undo the rollback). `rollrisk train` prints the same gates (all but discrimination), so
its report agrees with this job. Serving loads models:/NAME@champion.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import pandas as pd

from rollrisk.arguments import add_config_argument, load_config_argument
from rollrisk.errors import UserError
from rollrisk.models.promotion import PROMOTED_AT_TAG, CandidateFigures, decide_promotion

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
    parser.add_argument(
        "--rollback-to",
        metavar="VERSION",
        type=_version_number,
        default=None,
        help="move the champion back to an earlier VERSION that was promoted through the gates "
        "once (e.g. when the new champion misbehaves in production); no gate is run again, the "
        "move is tagged on both versions",
    )
    parser.add_argument(
        "--new-label",
        action="store_true",
        help="replace a champion trained on another label (default DPD or window) knowingly: "
        "without it such a challenger is refused, as the two predict different events",
    )
    parser.add_argument(
        "--after-rollback",
        action="store_true",
        help="promote a challenger that was rolled back from champion once (its rolled_back "
        "tag): without it the next promote would undo the rollback without a word",
    )


LABEL_PARAMS = ("default_dpd", "window_months")


def _label_change(challenger: RegisteredVersion, champion: RegisteredVersion | None) -> str | None:
    """How the challenger's label differs from the champion's, from their runs' logged
    ``observation.*`` parameters (None: the same, no champion, or not logged)."""
    from rollrisk.storage.tracking import run_record

    if champion is None:
        return None
    ours = run_record(challenger.run_id).params
    theirs = run_record(champion.run_id).params
    differ = [
        f"{name} {ours[key]} (challenger v{challenger.version}) against {theirs[key]} "
        f"(champion v{champion.version})"
        for name in LABEL_PARAMS
        if (key := f"observation.{name}") in ours and key in theirs and ours[key] != theirs[key]
    ]
    return "; ".join(differ) or None


def _held_back(
    name: str,
    challenger: RegisteredVersion,
    champion: RegisteredVersion | None,
    args: argparse.Namespace,
) -> tuple[list[str], list[str]]:
    """Refusals beyond the gates (``FAIL ...``) and those a flag lets pass (``allowed ...``):
    a challenger trained on another label than the champion's (the two predict different
    events: its AUC against the champion's is measured on the challenger's label only), or one
    rolled back from champion before (promoting it again undoes the rollback)."""
    from rollrisk.storage.registry import version_tags

    refused: list[str] = []
    allowed: list[str] = []
    change = _label_change(challenger, champion)
    if change is not None and not args.new_label:
        refused.append(
            f"FAIL label: the challenger is trained on another label than the champion "
            f"({change}): they predict different events; promote it knowingly with --new-label"
        )
    elif change is not None:
        allowed.append(f"allowed label: another label than the champion's ({change}), --new-label")
    rolled_back = (version_tags(name, challenger.version) or {}).get("rolled_back")
    if rolled_back is not None and not args.after_rollback:
        refused.append(
            f"FAIL rollback: v{challenger.version} was rolled back from champion ({rolled_back}); "
            "promoting it again undoes that rollback: train a new challenger, or promote it "
            "knowingly with --after-rollback"
        )
    elif rolled_back is not None:
        allowed.append(
            f"allowed rollback: v{challenger.version} was rolled back from champion "
            f"({rolled_back}), --after-rollback"
        )
    return refused, allowed


def _count(metrics: Mapping[str, float], name: str) -> int | None:
    value = metrics.get(name)
    return None if value is None else int(value)


def _fitted_until(params: Mapping[str, str]) -> date | None:
    """The latest as-of a run's evaluation fit learnt from: the end of its validation months."""
    span = params.get("split.validation_as_of", "")
    try:
        return date.fromisoformat(span.split("..")[-1])
    except ValueError:
        return None


def _figures(
    challenger: RegisteredVersion, champion: RegisteredVersion | None
) -> tuple[CandidateFigures, CandidateFigures | None, str]:
    """The challenger's evaluation figures as its run logged them; the champion's AUC on the
    challenger's out-of-time rows, from the champion's evaluation fit."""
    from rollrisk.models.metrics import roc_auc
    from rollrisk.models.roll_model import RollModel
    from rollrisk.models.training import BASELINES, LABEL
    from rollrisk.storage.registry import load_roll_model
    from rollrisk.storage.tracking import (
        EVALUATION_MODEL_ARTIFACT,
        OOT_ROWS_ARTIFACT,
        read_run_json,
        read_run_parquet,
        run_record,
    )

    challenger_run = run_record(challenger.run_id)
    ships = challenger_run.tags.get("ships")
    metrics = challenger_run.metrics
    figures = CandidateFigures(
        version=challenger.version,
        auc=float(metrics.get("oot_auc", float("nan"))),
        ece=metrics.get("oot_ece"),
        psi=metrics.get("oot_psi"),
        beats_baselines=None if ships is None else ships == "true",
        baseline_gaps={
            baseline: (
                metrics.get(f"oot_auc_gap_vs_{baseline}"),
                metrics.get(f"oot_brier_gap_vs_{baseline}"),
            )
            for baseline in BASELINES
        },
        train_rows=_count(metrics, "rows_train"),
        train_positives=_count(metrics, "positives_train"),
        test_rows=_count(metrics, "rows_test"),
        test_positives=_count(metrics, "positives_test"),
    )
    if champion is None:
        return figures, None, "the challenger's evaluation figures as its run logged them"

    # A deployed model has learnt from its own run's out-of-time months, so the champion is
    # judged by its run's evaluation fit, on the challenger's rows, if that fit ended before
    # them; a run logged before deployment refits registered its evaluation fit itself.
    champion_run = run_record(champion.run_id)
    logged = float(champion_run.metrics.get("oot_auc", float("nan")))
    rows = read_run_parquet(challenger.run_id, OOT_ROWS_ARTIFACT)
    if rows is None:
        note = "AUCs as logged by each run (the challenger's out-of-time rows were not found)"
        return figures, CandidateFigures(version=champion.version, auc=logged), note
    fitted_until = _fitted_until(champion_run.params)
    first_test = pd.to_datetime(rows["as_of"]).min().date()
    if fitted_until is None or fitted_until >= first_test:
        note = (
            f"the champion's evaluation fit learnt from as-of months up to {fitted_until}, not "
            f"before the challenger's out-of-time months ({first_test} on): AUCs as logged by "
            "each run, on their own out-of-time months"
        )
        return figures, CandidateFigures(version=champion.version, auc=logged), note
    state = read_run_json(champion.run_id, EVALUATION_MODEL_ARTIFACT)
    try:
        if state is not None:
            champion_model = RollModel.from_dict(state)  # type: ignore[arg-type]
        elif "deployment.train_as_of" not in champion_run.params:
            champion_model = load_roll_model(champion.uri).model  # registered = evaluated
        else:
            raise ValueError(f"its run has no {EVALUATION_MODEL_ARTIFACT}")
        champion_auc = roc_auc(rows[LABEL].to_numpy(), champion_model.predict_proba(rows))
    except Exception as error:  # noqa: BLE001 - e.g. the champion needs other features
        note = f"champion could not score the challenger's rows ({error}); its logged AUC is used"
        return figures, CandidateFigures(version=champion.version, auc=logged), note
    note = (
        "AUCs on the challenger's out-of-time rows: its evaluation fit's as logged, the "
        "champion's evaluation fit scored on them"
    )
    return figures, CandidateFigures(version=champion.version, auc=float(champion_auc)), note


def _version_number(text: str) -> str:
    """A registry version as MLflow numbers it (``7``; ``v7`` and ``07`` read as 7): MLflow
    took ``01`` for version 1 while the alias comparisons took it for another."""
    digits = text.strip().removeprefix("v")
    number = int(digits) if digits.isdecimal() else 0  # "²" is a digit, not a decimal
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a version number such as 3, got {text!r}")
    return str(number)


def _roll_back(
    name: str, version: str, champion: RegisteredVersion | None, alias: str, dry_run: bool
) -> int:
    """Move ``alias`` back to ``version``, a version promoted through the gates once (its
    ``promotion`` tag), tagging both versions with the move."""
    from rollrisk.storage.registry import set_alias, tag_version, version_tags

    tags = version_tags(name, version)
    if tags is None:
        raise UserError(f"--rollback-to {version}: model {name!r} has no version {version}")
    # passed the gates once: its latest verdict, the tag a promotion sets, or (a version
    # promoted before that tag existed) having been rolled back from champion
    if tags.get("promotion") != "promoted" and not {PROMOTED_AT_TAG, "rolled_back"} & set(tags):
        state = tags.get("promotion")
        raise UserError(
            f"--rollback-to {version}: {name} v{version} was never promoted through the gates "
            + (f"(its promotion tag is {state!r})" if state else "(it has no promotion tag)")
            + "; a rollback returns to a model that passed them once: promote another version "
            "with `rollrisk promote` instead"
        )
    current = champion.version if champion is not None else None
    if current == version:
        print(f"{name} v{version} is already {alias}; nothing to do")
        return 0
    move = f"{alias} v{current} -> v{version}" if current else f"{alias} (none) -> v{version}"
    if dry_run:
        print(f"dry run: would roll back {name}: {move}")
        return 0
    when = datetime.now(UTC).isoformat(timespec="seconds")
    set_alias(name, alias, version)
    tag_version(name, version, {"rollback": f"{move} at {when}"})
    if current is not None:
        tag_version(name, current, {"rolled_back": f"{move} at {when}"})
    print(
        f"rolled back: models:/{name}@{alias} is now v{version} (was {'v' + current if current else 'none'})"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    from rollrisk.storage.registry import alias_version, set_alias, tag_version
    from rollrisk.storage.tracking import configure_tracking

    config = load_config_argument(args)
    gates = config.promotion
    name = args.model_name or config.training.model_name
    setup = configure_tracking()
    if args.rollback_to is not None:
        version = args.rollback_to
        champion = alias_version(name, gates.to_alias)
        return _roll_back(name, version, champion, gates.to_alias, args.dry_run)
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
    refused, allowed = _held_back(name, challenger, champion, args)
    print(
        f"{name}: {gates.from_alias} v{challenger.version} vs "
        f"{gates.to_alias} {'v' + champion.version if champion else '(none)'} ({note})"
    )
    reasons = [*decision.reasons, *refused, *allowed]
    for reason in reasons:
        print(f"  {reason}")
    promote = decision.promote and not refused
    outcome = "promoted" if promote else "refused"
    if args.dry_run:
        print(f"dry run: would be {outcome}")
        return 0 if promote else EXIT_REFUSED
    tags = {"promotion": outcome, "promotion_reasons": " | ".join(reasons)}
    if promote:
        tags[PROMOTED_AT_TAG] = datetime.now(UTC).isoformat(timespec="seconds")
    tag_version(name, challenger.version, tags)
    if not promote:
        print(
            f"refused: {gates.to_alias} stays at {'v' + champion.version if champion else 'no version'}"
        )
        return EXIT_REFUSED
    set_alias(name, gates.to_alias, challenger.version)
    print(f"promoted: models:/{name}@{gates.to_alias} is now v{challenger.version}")
    return 0
