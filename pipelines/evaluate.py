"""Evaluate any registered roll model on any portfolio and write a readable report.

  rollrisk evaluate --model models:/rollrisk-roll-to-default@champion --data runs/demo/portfolio

The training set is built from --data with the observation settings the model was trained with
(default DPD, window), unless flags override them; the model scores every row and is measured:
AUC, Gini, KS, Brier, log loss, expected calibration error with a reliability plot, a lift /
gains table by decile, and the PSI of its scores against its own training scores (fixed
training bins), overall and per product and starting bucket. Only labelled rows are scored,
so the latest as-of months (whose outcome window is still open) are left out. Use --as-of-from
to evaluate a later period only: rows of the months the model learnt from (its trained_as_of)
are in-sample, and the job warns and the report says how many there are.

Writes report.html (plots embedded), report.md and the PNG plots into --out, with the rows
the data contract rejected (rejects.csv, written when there are any) and their count by table
and account (rejects.json, always);
above --max-reject-rate (default 1%) the job stops. A model is not evaluated on a portfolio
lacking a table it was trained with unless told --allow-missing-table.

  rollrisk evaluate --model models:/rollrisk-roll-to-default@challenger \
      --against models:/rollrisk-roll-to-default@champion --data PORTFOLIO --as-of-from DATE

scores the same rows with both models: their AUC and Brier score and the difference with a
95 % interval resampling accounts (an account's months go together), on screen, in the
report's header and in comparison.json. Both models are loaded before any row is built; rows
of the months either one learnt from are warned about for each.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from rollrisk.arguments import (
    add_data_argument,
    add_missing_table_argument,
    add_training_data_arguments,
    as_of_date,
    load_config_argument,
    training_set_from_arguments,
    with_observation_flags,
)
from rollrisk.errors import RollriskWarning, UserError

if TYPE_CHECKING:
    from rollrisk.features.observations import ObservationSpec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="MLflow model URI, e.g. models:/rollrisk-roll-to-default@champion or runs:/<id>/model",
    )
    add_data_argument(parser)
    add_training_data_arguments(parser)
    parser.add_argument(
        "--as-of-from",
        type=as_of_date,
        metavar="DATE",
        default=None,
        help="evaluate only as-of dates on or after this date (YYYY-MM-DD)",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/evaluate"), help="report folder")
    parser.add_argument(
        "--against",
        metavar="MODEL",
        default=None,
        help="a second model URI (e.g. models:/rollrisk-roll-to-default@champion) scored on the "
        "same rows: its AUC and Brier score beside --model's and the difference with a 95%% "
        "interval resampling accounts, on screen, in the report and in comparison.json",
    )
    add_missing_table_argument(parser)


def run(args: argparse.Namespace) -> int:
    from rollrisk.api import evaluate, load_model
    from rollrisk.arguments import (
        allowed_missing_tables,
        check_output_argument,
        load_portfolio_argument,
    )
    from rollrisk.features.observations import first_statement_month
    from rollrisk.models.metrics import HEADLINE_METRICS
    from rollrisk.models.training import LABEL, incomplete_window_warnings, tables_with_data
    from rollrisk.reports.evaluation import REPORT_FILES, write_evaluation_report
    from rollrisk.scoring.core import (
        check_model_currency,
        check_model_tables,
        named_model,
        trained_tables,
    )
    from rollrisk.storage.registry import observation_of
    from rollrisk.storage.tracking import fingerprint_files

    check_output_argument(args, folder=True)
    # an earlier run's files, before anything can fail: its report (or a comparison with
    # --against) would be read beside this run's rejects, or as this run's
    for name in (*REPORT_FILES, "comparison.json", "rejects.csv", "rejects.json"):
        (Path(args.out) / name).unlink(missing_ok=True)
    config = load_config_argument(args)
    loaded = load_model(args.model)
    # before any row is built: a misspelt --against failed after the whole book was scored
    other = load_model(args.against) if args.against is not None else None
    metadata = loaded.metadata
    # The model's own label definition is the default, so it is judged on what it predicts;
    # flags still win over it.
    trained_for = observation_of(loaded, config.observation_spec())
    spec = with_observation_flags(args, trained_for)
    for name in ("default_dpd", "window_months"):
        given = config.observation.get(name)
        if given is not None and getattr(args, name, None) is None and given != getattr(spec, name):
            print(
                f"[evaluate] warning: the config's observation {name}: {given} is not used: a "
                f"model is evaluated on the label it was trained on ({name} "
                f"{getattr(spec, name)}); give --{name.replace('_', '-')} {given} to measure it "
                "on that label instead",
                file=sys.stderr,
                flush=True,
            )
        if getattr(spec, name) != getattr(trained_for, name):
            print(
                f"[evaluate] warning: the model was trained to predict {trained_for.describe()}; "
                f"it is evaluated here with {name} {getattr(spec, name)} (the flag): its figures "
                "measure it on a question it was not trained to answer",
                file=sys.stderr,
                flush=True,
            )
    rejects = Path(args.out) / "rejects.csv"
    portfolio, accounting = load_portfolio_argument(args, "evaluate", rejects, config)
    accounting.write(Path(args.out) / "rejects.json")
    data_fingerprint = fingerprint_files(args.data)
    frame = training_set_from_arguments(args, portfolio, spec, data_fingerprint)
    # measured on fewer tables than it learnt from, a model would look worse than it is
    trained = trained_tables(metadata)
    evaluated_without = check_model_tables(
        trained,
        tables_with_data(frame, loaded.model.feature_set),
        allowed_missing_tables(args),
        model=args.model,
        feature_set=loaded.model.feature_set,
        where=str(args.training_set or args.data),
    )
    # measured on amounts read in another currency, a model would look worse than it is
    check_model_currency(
        loaded, portfolio.accounts, frame["account_id"].astype(str).unique(),
        f"of {args.data} to evaluate on", "evaluate",
    )  # fmt: skip
    labelled = frame[frame[LABEL].notna()].reset_index(drop=True)
    labelled_as_of = pd.to_datetime(labelled["as_of"])  # every labelled month, for the advice
    frame = labelled
    if args.as_of_from:
        frame = frame[labelled_as_of >= pd.Timestamp(args.as_of_from)].reset_index(drop=True)
    if frame.empty:
        raise UserError(_no_labelled_rows(args, spec, labelled_as_of))
    in_sample = _in_sample_note(frame, metadata.get("trained_as_of"), labelled_as_of)
    if in_sample:
        print(f"[evaluate] WARNING: {in_sample}", file=sys.stderr, flush=True)
    # rows whose feature windows reach back before the statements: train says so of its rows
    for line in incomplete_window_warnings(
        {"evaluated rows": frame},
        first_statement_month(portfolio.statements),
        loaded.model.feature_set,
        consequence="the figures measure the model on truncated histories, which it may not "
        "have been trained on",
    ):
        print(f"[evaluate] warning: {line}", file=sys.stderr, flush=True)
    model_name = named_model(loaded.name, loaded.version)
    as_of = pd.to_datetime(frame["as_of"]).dt.date
    print(
        f"[evaluate] scoring {len(frame):,} rows (as-of {as_of.min()}..{as_of.max()}) with "
        f"{model_name} ({args.model})",
        file=sys.stderr,
        flush=True,
    )
    with warnings.catch_warnings():  # the in-sample warning is printed above, with its advice
        warnings.simplefilter("ignore", RollriskWarning)
        comparison = evaluate(loaded, frame)
    reference = loaded.reference_scores
    context = {
        "model": f"{model_name} ({args.model})",
        "feature set": f"{metadata.get('feature_set', '?')} v{metadata.get('feature_set_version', '?')}",
        "portfolio": str(args.data),
        "data fingerprint (sha256)": data_fingerprint[:16],
        "as-of dates": f"{as_of.min()}..{as_of.max()} ({as_of.nunique()} months, {len(frame)} rows)",
        "label": f"reaches {spec.default_dpd}+ DPD within {spec.window_months} months",
        "tables": f"trained with {', '.join(trained)}"
        + (
            f"; evaluated without {', '.join(evaluated_without)} (--allow-missing-table)"
            if evaluated_without
            else ""
        ),
        "rows rejected by the data contract": f"{accounting.rows_rejected:,} of "
        f"{accounting.rows_read:,} ({accounting.accounts_rejected:,} accounts)",
        "PSI reference": "the model's training scores" if reference is not None else "none logged",
        "in-sample rows": in_sample or "none (no row is of a month the model learnt from)",
    }
    if other is not None:
        context["compared with"] = _compare(
            args, loaded, other, frame, portfolio, model_name, labelled_as_of
        )
    report = write_evaluation_report(
        comparison, args.out, title=f"Evaluation of {args.model}", context=context
    )
    print(comparison.overall[list(HEADLINE_METRICS)].round(4).to_string())
    if len(comparison.stability):
        print(comparison.stability.round(4).to_string(index=False))
    print(f"report: {report.resolve()}")
    return 0


def _compare(
    args: argparse.Namespace,
    loaded: Any,
    other: Any,
    frame: pd.DataFrame,
    portfolio: Any,
    model_name: str,
    labelled_as_of: pd.Series,
) -> str:
    """Score the same rows with ``other`` (the model of ``--against``) and compare the two
    models, paired over the accounts; printed, written to ``comparison.json`` in ``--out``,
    and returned as the report's line. ``labelled_as_of``: every labelled row's as-of, for
    the advice on rows ``other`` learnt from."""
    import json

    from rollrisk.models.evaluation import paired_comparison
    from rollrisk.models.training import LABEL
    from rollrisk.scoring.core import check_model_currency, named_model

    other_name = named_model(other.name, other.version)
    # its training rows flatter it as the evaluated model's flatter that one
    in_sample = _in_sample_note(frame, other.metadata.get("trained_as_of"), labelled_as_of)
    if in_sample:
        print(
            f"[evaluate] WARNING: --against {other_name}: {in_sample}", file=sys.stderr, flush=True
        )
    check_model_currency(
        other, portfolio.accounts, frame["account_id"].astype(str).unique(),
        f"of {args.data} to evaluate on", "evaluate",
    )  # fmt: skip
    for name in ("default_dpd", "window_months"):
        theirs = other.metadata.get(f"observation_{name}")
        ours = loaded.metadata.get(f"observation_{name}")
        if theirs is not None and ours is not None and str(theirs) != str(ours):
            print(
                f"[evaluate] warning: {other_name} was trained with {name} {theirs}, "
                f"{model_name} with {ours}: both are measured on {model_name}'s label",
                file=sys.stderr,
                flush=True,
            )
    try:
        against = other.predict_proba(frame)
    except (KeyError, ValueError) as error:
        raise UserError(
            f"--against {args.against}: {other_name} cannot score these rows (its feature set "
            f"{other.metadata.get('feature_set', '?')} v"
            f"{other.metadata.get('feature_set_version', '?')}, the rows built for "
            f"{model_name}'s): {error}"
        ) from None
    compared = paired_comparison(
        frame[LABEL].to_numpy(),
        loaded.predict_proba(frame),
        against,
        frame["account_id"].astype(str).to_numpy(),
    )
    auc_low, auc_high = compared.interval["auc"]
    brier_low, brier_high = compared.interval["brier"]
    line = (
        f"{other_name} ({args.against}) on the same {compared.rows:,} rows of "
        f"{compared.accounts:,} accounts: AUC {compared.first['auc']:.4f} against "
        f"{compared.second['auc']:.4f}, difference {compared.difference['auc']:+.4f} (95 % "
        f"interval over accounts {auc_low:+.4f} to {auc_high:+.4f}); Brier "
        f"{compared.first['brier']:.4f} against {compared.second['brier']:.4f}, difference "
        f"{compared.difference['brier']:+.4f} ({brier_low:+.4f} to {brier_high:+.4f}); "
        f"{model_name} minus {other_name}, {compared.samples} resamples"
    )
    print(f"[evaluate] compared with {line}", file=sys.stderr, flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    record = {
        "model": args.model,
        "against": args.against,
        "rows": compared.rows,
        "accounts": compared.accounts,
        "resamples": compared.samples,
        "model_figures": compared.first,
        "against_figures": compared.second,
        "difference": compared.difference,
        "interval_95": {name: list(bounds) for name, bounds in compared.interval.items()},
    }
    (Path(args.out) / "comparison.json").write_text(json.dumps(record, indent=2) + "\n")
    return line


def _no_labelled_rows(
    args: argparse.Namespace, spec: ObservationSpec, labelled_as_of: pd.Series
) -> str:
    """Why there is nothing to evaluate: no labelled row at all, or none from --as-of-from."""
    where = args.training_set or args.data
    window = (
        f"a row is labelled once its {spec.window_months}-month outcome window has closed "
        "within the data"
    )
    if labelled_as_of.empty:
        return f"no labelled rows to evaluate in {where} ({window})"
    return (
        f"no labelled rows to evaluate in {where} on or after --as-of-from {args.as_of_from}: "
        f"its labelled as-of months are {labelled_as_of.min().date()}..{labelled_as_of.max().date()} "
        f"({window}); give an earlier --as-of-from, or a later extract"
    )


def _in_sample_note(
    frame: pd.DataFrame, trained_as_of: str | None, labelled_as_of: pd.Series
) -> str | None:
    """What share of ``frame`` is of the as-of months the model learnt from (its metadata's
    ``trained_as_of``, 'first..last'): figures on those rows are in-sample, so optimistic.
    The advice depends on ``labelled_as_of``, the as-of of every labelled row of the
    portfolio: evaluate the months after the training data with --as-of-from when it has
    some, else a later extract is needed (--as-of-from would leave nothing to evaluate)."""
    from rollrisk.models.evaluation import in_sample_rows

    found = in_sample_rows(frame["as_of"], trained_as_of)
    if found is None:
        return None
    inside, last = found
    later = labelled_as_of[labelled_as_of > last]
    if len(later):
        advice = (
            f"evaluate later months with --as-of-from {later.min().date()} ({len(later):,} "
            f"labelled rows, {later.min().date()}..{later.max().date()})"
        )
    else:
        latest = labelled_as_of.max().date() if len(labelled_as_of) else None
        advice = (
            "this portfolio has no labelled months after the model's training data (its "
            f"latest labelled as-of is {latest}), so an out-of-sample evaluation needs a later "
            "extract (--data with months after those)"
        )
    return (
        f"{inside:,} of {len(frame):,} rows are of the months the model learnt from "
        f"({trained_as_of}): on the portfolio it learnt from their figures are in-sample and "
        f"flatter it; {advice}"
    )
