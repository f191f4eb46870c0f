"""Check that the accounts scored today still look like the ones the model was trained on.

Compares the population at --as-of (any calendar day: the delinquent accounts `rollrisk score`
would score that day, DPD aged to it) with the model's reference: its latest labelled months
(3 as-of months), logged with it by `rollrisk train`, and scored by the model itself:

  score PSI      the model's scores today against its scores on the reference, on the
                 reference's bins
  feature CSI    each feature's distribution today against the reference (numeric: reference
                 quantile bins; categorical: reference categories plus an "other/unseen" bin;
                 missing values are a bin of their own)
  backtest       once the as-of's performance window has passed in --data (the DPD of the
                 following months is in the statements), realised roll-to-default rate against
                 the mean predicted probability per risk band, with the realised rate's
                 interval at the band's share of the false-alarm rate (below)
  book size      today's delinquent accounts against the reference months' mean (recorded
                 by `rollrisk train` before the reference is sampled): halved or doubled
                 (population_change_act 0.5) alerts, whatever the shares say -- an extract cut
                 short or a portfolio moved changes the count, not the distributions

Verdicts: PSI/CSI under 0.1 stable, 0.1 to the threshold watch, above it act -- but only when
sampling noise could not have produced it: two samples of one population show some PSI by
chance, more the smaller they are, so each value is also compared with what noise alone gives
at the sizes compared (a false-alarm rate of 1% over all checks). Under min_population
delinquent accounts (50) PSI and CSI are reported, not judged ("no verdict"). Thresholds are
in the `monitoring:` section of conf/default.yaml (psi_act, csi_act, false_alarm_rate,
min_population, population_change_act, backtest_tolerance, backtest_min_accounts);
docs/monitoring.md explains them.

Output: OUT/monitor.md (for people) and OUT/monitor.json (for machines; "verdict" is "alert",
"no alert" or "no verdict"). Rows the data contract rejects go to OUT/rejects.csv (written
when there are any) and are counted by table and account under "rejects" in monitor.json.
These files are removed when a run starts: a run that stops on an error, or on the alert of a
book with no delinquent account left (exit 3, nothing to compare), leaves no report, never an
earlier run's.
Exit codes, so a scheduler can alert:
  0  nothing crossed a threshold (also "no verdict": too few accounts to judge, said so)
  3  a threshold was crossed (the alerts are printed and listed in monitor.json)
  2  usage or data error (bad flag, unreadable portfolio, unknown model, rejects above
     --max-reject-rate, a table the model was trained with missing without
     --allow-missing-table), 1 unexpected failure

example:
  rollrisk monitor --model models:/rollrisk-roll-to-default@champion \\
      --data runs/demo/portfolio --as-of 2025-09-30 --out runs/demo/monitor
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import polars as pl

from rollrisk.arguments import (
    add_config_argument,
    add_missing_table_argument,
    add_model_argument,
    add_portfolio_arguments,
)
from rollrisk.conf import DEFAULT_POLICY
from rollrisk.errors import UserError

if TYPE_CHECKING:
    from rollrisk.features.observations import ObservationSpec
    from rollrisk.features.registry import FeatureSet
    from rollrisk.models.monitoring import FeatureStability, PopulationChange, StabilityVerdict
    from rollrisk.models.roll_model import RollModel
    from rollrisk.storage.config import MonitoringConfig
    from rollrisk.storage.loader import Portfolio
    from rollrisk.storage.registry import LoadedModel

EXIT_OK = 0
EXIT_ALERT = 3


class EmptyBook(UserError):
    """No delinquent account today where the model's reference had enough to judge: the
    book's size alert at its extreme (-100%), exit code 3, with no report (nothing to compare)."""

    exit_code = EXIT_ALERT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    add_portfolio_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("runs/monitor"), help="output folder")
    add_config_argument(parser, help="YAML config (monitoring thresholds, observation)")
    parser.add_argument(
        "--policy", type=Path, default=DEFAULT_POLICY, help="policy YAML (its risk bands)"
    )
    add_missing_table_argument(parser)


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
    from rollrisk.arguments import (
        allowed_missing_tables,
        check_output_argument,
        label_settings_not_used,
        load_portfolio_argument,
    )
    from rollrisk.features.dates import check_as_of, default_as_of_choice
    from rollrisk.features.observations import ObservationSpec
    from rollrisk.models.monitoring import backtest, population_band_text
    from rollrisk.scoring.core import (
        check_model_currency,
        check_model_tables,
        tables_present,
        trained_tables,
    )
    from rollrisk.storage.config import load_config
    from rollrisk.storage.registry import (
        load_roll_model,
        model_label,
        needs_store,
        observation_of,
    )
    from rollrisk.storage.tracking import configure_tracking
    from rollrisk.strategies.policy import load_policy

    check_output_argument(args, folder=True)
    # an earlier run's files, before anything can fail: its verdict would be read as this
    # run's when this one ends in an error or the empty book's alert, which write no report
    # (a run that stops before its report makes no folder: the loader makes it for rejects)
    for name in ("rejects.csv", "monitor.json", "monitor.md"):
        (args.out / name).unlink(missing_ok=True)
    config = load_config(args.config)
    thresholds = config.monitoring
    if not Path(args.policy).exists():  # a folder: load_policy says so
        raise UserError(f"{args.policy}: file not found")
    bands = load_policy(args.policy).risk_bands
    if needs_store(args.model):  # a model given by its folder is read without a store
        configure_tracking()
    print(f"[monitor] loading model {args.model}", file=sys.stderr, flush=True)
    loaded = load_roll_model(args.model)
    reference = reference_of(loaded)
    if reference.note:
        print(f"[monitor] note: {reference.note}", file=sys.stderr)
    base = ObservationSpec.from_mapping(config.observation, source=f"config file {config.source}")
    spec = observation_of(loaded, base)
    for line in label_settings_not_used(config.observation, spec):
        print(f"[monitor] warning: {line}", file=sys.stderr, flush=True)
    portfolio, accounting = load_portfolio_argument(
        args, "monitor", args.out / "rejects.csv", config
    )
    # a population scored without a table the model learnt from drifts by construction
    monitored_without = check_model_tables(
        trained_tables(loaded.metadata),
        tables_present(portfolio.collection_actions, portfolio.treatments),
        allowed_missing_tables(args),
        model=args.model,
        feature_set=loaded.model.feature_set,
        where=str(args.data),
        empty=portfolio.empty_tables,
    )
    if args.as_of is not None:  # outside the statement months: refused, as by `score`
        check_as_of(portfolio.statements, args.as_of)
    default = default_as_of_choice(portfolio.statements) if args.as_of is None else None
    as_of = default.as_of if default is not None else args.as_of
    if default is not None and default.note():
        print(f"[monitor] note: {default.note()}", file=sys.stderr)
    current = current_population(portfolio, as_of, spec, loaded.model)
    if current.empty:
        nobody = f"no account of {args.data} is delinquent ({spec.min_dpd}-{spec.max_dpd} DPD) at {as_of}"
        size = _population_size(loaded.metadata, 0, thresholds, spec)
        if not isinstance(size, str) and size.verdict == "act":  # the book emptied: an alert
            raise EmptyBook(
                f"ALERT population size: {size.sentence()}: {nobody}; nothing else to monitor"
            )
        raise UserError(f"{nobody}: nothing to monitor")
    # amounts read in another currency would drift, and alert, for no reason of the model's
    check_model_currency(
        loaded, portfolio.accounts, current["account_id"].astype(str),
        f"of {args.data} to monitor at {as_of}", "monitor",
    )  # fmt: skip

    outcomes = matured_outcomes(portfolio.statements, as_of, spec)
    # the backtest's bands and its `all` row share the run's false-alarm rate too
    backtest_checks = 0 if outcomes is None else len(bands) + 1
    # a feature counted in days to the as-of moves with the day of the month alone, and the
    # reference is month-ends: mid-month its CSI is reported, not judged
    mid_month = (as_of + timedelta(days=1)).day != 1 and bool(reference.months)
    day_counts = frozenset(
        f.name for f in loaded.model.feature_set.features if f.name.startswith("days_since")
    )
    stability = judge_population(
        reference,
        current,
        loaded.model.feature_set,
        thresholds,
        backtest_checks,
        not_judged=day_counts if mid_month else frozenset(),
    )
    if mid_month:
        print(
            f"[monitor] note: {as_of} is not a month-end and the reference is month-ends: "
            f"the CSI of the features counted in days to the as-of ({', '.join(sorted(day_counts))}) "
            "is reported, not judged; monitor at a month-end to judge them",
            file=sys.stderr,
        )
    alerts = list(stability.alerts)
    size = _population_size(loaded.metadata, len(current), thresholds, spec)
    if isinstance(size, str):
        print(f"[monitor] note: {size}", file=sys.stderr)
    else:
        print(f"[monitor] population: {size.sentence()} ({size.verdict})", file=sys.stderr)
        if size.verdict == "act":
            change = thresholds.population_change_act
            alerts.append(
                f"population size: {size.sentence()}, outside {population_band_text(change)} "
                f"of the reference's (monitoring.population_change_act {change}): the book is "
                "not the one the model was checked on; find out whether an extract was cut "
                "short or doubled, a portfolio moved, or delinquency changed"
            )
    if stability.judged is False:
        print(
            f"[monitor] NO VERDICT on score PSI and feature CSI: {len(current):,} delinquent "
            f"accounts at {as_of}, fewer than monitoring.min_population "
            f"({thresholds.min_population}); their figures are reported, not judged",
            file=sys.stderr,
        )

    backtest_table = None
    if outcomes is not None:
        joined = current.merge(outcomes, on="account_id", how="inner")
        backtest_table = backtest(
            joined,
            bands,
            tolerance=thresholds.backtest_tolerance,
            min_accounts=thresholds.backtest_min_accounts,
            confidence=1.0 - stability.level,
        )
        for row in backtest_table.itertuples():
            if row.verdict == "act":
                alerts.append(
                    f"backtest band {row.band}: realised {row.realised_rate:.3f} vs predicted "
                    f"{row.predicted_mean:.3f} (gap beyond {thresholds.backtest_tolerance}, and "
                    f"outside the realised rate's interval {row.ci_lower:.3f}-{row.ci_upper:.3f})"
                )

    in_sample = (
        None
        if backtest_table is None
        else backtest_in_sample_note(loaded.metadata.get("trained_as_of"), as_of)
    )
    if in_sample:
        print(f"[monitor] WARNING: {in_sample}", file=sys.stderr, flush=True)
    verdict = "alert" if alerts else ("no alert" if stability.judged else "no verdict")
    report = {
        "as_of": as_of.isoformat(),
        "model": {"uri": args.model, "name": loaded.name, "version": loaded.version},
        "data": str(args.data),
        "population": len(current),
        # today's delinquent accounts against the reference's per month, or why not compared
        "population_size": {"verdict": "not compared", "reason": size}
        if isinstance(size, str)
        else {
            "today": size.today,
            "reference_mean_per_month": size.reference_mean,
            "reference_months": size.reference_months,
            "ratio": size.ratio,
            "verdict": size.verdict,
        },
        "rejects": accounting.as_dict(),
        "tables": {
            "trained_with": list(trained_tables(loaded.metadata)),
            "monitored_without": list(monitored_without),  # --allow-missing-table
        },
        "verdict": verdict,
        "thresholds": thresholds.model_dump(),
        "reference": {
            "kind": reference.kind,
            "months": reference.months,
            "rows": int(reference.scores.size),
        },
        "noise": {
            "checks": stability.checks,
            "level_per_check": stability.level,
            "judged": stability.judged,
        },
        # mid-month: features counted in days to the as-of, reported and not judged
        "not_judged_mid_month": sorted(day_counts) if mid_month else [],
        "score_psi": {
            **_judgement(stability.score),
            "reference_scores": int(reference.scores.size),
            "bins": _records(stability.score_table),
        },
        "feature_csi": None
        if stability.features is None
        else [
            {**record, **_judgement(stability.feature_verdicts[record["feature"]], "csi")}
            for record in _records(stability.features.summary)
        ],
        "feature_bins": None if stability.features is None else _records(stability.features.bins),
        "backtest": None
        if backtest_table is None
        else {
            "matured_accounts": int(backtest_table["accounts"].iloc[-1]),
            "confidence": 1.0 - stability.level,
            "bands": _records(backtest_table),
        },
        "backtest_in_sample": in_sample,
        "backtest_status": "matured"
        if backtest_table is not None
        else f"not matured: the {spec.window_months}-month window after {as_of} is not in the data",
        "alerts": alerts,
        "exit_code": EXIT_ALERT if alerts else EXIT_OK,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "monitor.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    (args.out / "monitor.md").write_text(render_markdown(report), encoding="utf-8")

    psi = stability.score
    print(
        f"[monitor] {len(current):,} accounts at {as_of}, "
        f"{model_label(str(loaded.name), str(loaded.version), args.model)}: "
        f"score PSI {psi.value:.3f} ({psi.verdict}); verdict: {verdict.upper()}"
    )
    for alert in alerts:
        print(f"  ALERT {alert}")
    if verdict == "no verdict":
        print(
            f"  NO VERDICT: {len(current):,} accounts are too few to tell drift from noise "
            f"(min_population {thresholds.min_population})"
        )
    print(f"  report: {args.out / 'monitor.md'}")
    return EXIT_ALERT if alerts else EXIT_OK


@dataclass(frozen=True)
class Reference:
    """What a model is monitored against: rows of features (None: CSI skipped) and scores.

    ``kind``: ``latest labelled months`` (logged by this version of ``rollrisk train``),
    ``pooled training sample`` (an older model's sample of its whole training period) or
    ``training scores`` (an older model still, with scores only); ``note`` says what an older
    reference means for the figures ("" for the current one).
    """

    features: pd.DataFrame | None
    scores: np.ndarray
    kind: str
    months: list[str]
    note: str


def _population_size(
    metadata: dict[str, Any], today: int, thresholds: MonitoringConfig, spec: ObservationSpec
) -> PopulationChange | str:
    """Today's population against the model's reference months', or why they are not
    compared (not recorded; counted on another DPD range)."""
    from rollrisk.models.monitoring import population_change

    recorded = metadata.get("reference_population")
    counts = (json.loads(recorded) if isinstance(recorded, str) else dict(recorded or {})) or {}
    if not counts:
        return (
            "the model records no reference population size (trained before rollrisk "
            "recorded it): today's number of delinquent accounts is not compared"
        )
    counted_on = metadata.get("reference_population_dpd")
    today_on = f"{spec.min_dpd}-{spec.max_dpd}"
    if counted_on is not None and str(counted_on) != today_on:
        return (
            f"the model's reference counted the accounts at {counted_on} DPD and today's "
            f"population is {today_on} DPD (the config's observation range): their sizes are "
            "not compared, and the PSI and CSI compare two populations; monitor with the "
            f"range the model was trained on (observation.min_dpd / max_dpd: {counted_on})"
        )
    return population_change(
        today, counts, thresholds.population_change_act, thresholds.min_population
    )


def backtest_in_sample_note(trained_as_of: str | None, as_of: date) -> str | None:
    """A warning when ``as_of`` is one of the as-of months the deployed model learnt from
    (its metadata's ``trained_as_of``, 'first..last'): the backtest then compares the model
    with outcomes it was fitted and calibrated on, and passes whatever the model is worth
    (None: not in them, or not recorded)."""
    from rollrisk.models.evaluation import in_sample_rows

    found = in_sample_rows(pd.Series([as_of]), trained_as_of)
    if found is None:
        return None
    last = found[1].date()
    return (
        f"the backtest's as-of {as_of} is one of the months the model learnt from "
        f"({trained_as_of}): on the portfolio it learnt from, this compares the model with "
        "outcomes it was fitted and calibrated on, so its pass says little (on another "
        f"portfolio it does not); monitor an as-of after {last} for an out-of-sample check"
    )


def reference_of(loaded: LoadedModel) -> Reference:
    """The model's monitoring reference, scored by the model itself.

    The scores are computed here, from the reference rows, rather than read from the scores
    logged at training: the PSI then compares the same rows as the CSI, scored by the very
    model (and calibrator) that scores today's population.
    """
    rows = loaded.reference_features
    if rows is None:
        if loaded.reference_scores is None:
            raise UserError(
                f"model {loaded.uri!r} carries no reference (reference_features or "
                "reference_scores): retrain it with this version of `rollrisk train`"
            )
        return Reference(
            None,
            np.asarray(loaded.reference_scores, dtype=np.float64),
            "training scores",
            [],
            "the model carries only its training scores (trained before reference_features "
            "was logged): CSI skipped, and the score PSI compares with the whole training "
            "period, whose oldest months differ from today by construction; retrain it",
        )
    scores = np.asarray(loaded.predict_proba(rows), dtype=np.float64)
    if "as_of" not in rows.columns:
        return Reference(
            rows,
            scores,
            "pooled training sample",
            [],
            "the model carries a sample of its whole training period, not its latest months "
            "(trained before the reference was chosen that way): early months without a full "
            "look-back and a seasoning book make an unchanged portfolio look drifted; retrain it",
        )
    months = sorted({str(pd.Timestamp(value).date()) for value in rows["as_of"]})
    return Reference(rows, scores, "latest labelled months", months, "")


@dataclass(frozen=True)
class PopulationStability:
    """The score PSI and feature CSIs of today's population, judged (:func:`judge_population`)."""

    score: StabilityVerdict
    score_table: pd.DataFrame
    features: FeatureStability | None
    feature_verdicts: dict[str, StabilityVerdict]
    checks: int
    level: float
    judged: bool
    alerts: tuple[str, ...]


def judge_population(
    reference: Reference,
    current: pd.DataFrame,
    feature_set: FeatureSet,
    thresholds: MonitoringConfig,
    other_checks: int = 0,
    not_judged: frozenset[str] = frozenset(),
) -> PopulationStability:
    """PSI of the scores and CSI of every feature, each judged for the sample sizes compared;
    the features of ``not_judged`` get the verdict ``NOT_AT_MONTH_END`` (never an alert).

    The overall false-alarm rate is shared equally among the checks (the score, each feature
    and ``other_checks``, the backtest's rows: Bonferroni), so a population with no change
    raises any alert with at most that probability whatever the number of features;
    ``level`` is each check's share.
    """
    from rollrisk.models.monitoring import (
        NOT_AT_MONTH_END,
        TOO_FEW,
        StabilityVerdict,
        feature_stability,
        judge_stability,
        score_stability,
    )

    features = None
    if reference.features is not None:
        features = feature_stability(reference.features, current, feature_set)
    checks = 1 + (0 if features is None else len(features.summary)) + other_checks
    level = thresholds.false_alarm_rate / checks
    size = len(current)
    psi = score_stability(reference.scores, current["probability"].to_numpy())
    score = judge_stability(
        psi.value,
        psi.table["expected_count"],
        size,
        thresholds.psi_act,
        level,
        thresholds.min_population,
        always_noise=True,  # one check: its noise is always worth reporting
    )
    alerts = []
    if score.alert:
        alerts.append(
            f"score PSI {psi.value:.3f} > {thresholds.psi_act} (sampling noise alone at these "
            f"sizes stays below {score.noise_critical:.3f})"
        )
    verdicts: dict[str, StabilityVerdict] = {}
    if features is not None:
        bins = features.bins.groupby("feature", sort=False)["expected_count"]
        for row in features.summary.itertuples():
            if row.feature in not_judged:
                verdicts[row.feature] = StabilityVerdict(
                    row.csi, NOT_AT_MONTH_END, math.inf, None, None
                )
                continue
            verdict = judge_stability(
                row.csi,
                bins.get_group(row.feature),
                size,
                thresholds.csi_act,
                level,
                thresholds.min_population,
            )
            verdicts[row.feature] = verdict
            if verdict.alert:
                alerts.append(
                    f"feature {row.feature}: CSI {row.csi:.3f} > {thresholds.csi_act} (sampling "
                    f"noise alone at these sizes stays below {verdict.noise_critical:.3f})"
                )
    return PopulationStability(
        score=score,
        score_table=psi.table,
        features=features,
        feature_verdicts=verdicts,
        checks=checks,
        level=level,
        judged=score.verdict != TOO_FEW,
        alerts=tuple(alerts),
    )


def _judgement(verdict: StabilityVerdict, value_key: str = "value") -> dict[str, Any]:
    """A verdict's JSON fields (an infinite threshold, when not judged, becomes None)."""
    return {
        value_key: _json_value(verdict.value),
        "verdict": verdict.verdict,
        "alert_above": _json_value(verdict.threshold),
        "noise_expected": verdict.noise_expected,
        "noise_critical": verdict.noise_critical,
    }


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


def _model_line(model: dict[str, Any]) -> str:
    if str(model["version"]).isdigit():
        return f"Model {model['name']} v{model['version']} (`{model['uri']}`)"
    return f"Model: the unregistered model at `{model['uri']}`"


def render_markdown(report: dict[str, Any]) -> str:
    from rollrisk.models.monitoring import population_band_text

    lines = [
        f"# Monitoring report, as-of {report['as_of']}",
        "",
        _model_line(report["model"]) + ", "
        f"portfolio `{report['data']}`, {report['population']:,} delinquent accounts.",
        "",
        "## Verdict",
        "",
    ]
    reference = report["reference"]
    months = reference["months"]
    compared = (
        f"its latest labelled months, {months[0]} to {months[-1]}" if months else reference["kind"]
    )
    noise = report["noise"]
    if report["alerts"]:
        lines += [f"- **ALERT** {alert}" for alert in report["alerts"]]
        lines += ["", f"Exit code {report['exit_code']} (a threshold was crossed)."]
    elif report["verdict"] == "no verdict":
        lines += [
            f"**No verdict**: {report['population']:,} delinquent accounts are fewer than "
            f"`min_population` ({report['thresholds']['min_population']}), too few to tell drift "
            "from sampling noise. The figures below are reported, not judged (exit code 0).",
        ]
    else:
        lines += ["No threshold crossed (exit code 0)."]
    size = report.get("population_size")
    lines += [
        "",
        "**Population size**: "
        + (
            f"not compared: {size['reason']}."
            if size["verdict"] == "not compared"
            else f"{size['today']:,} delinquent accounts against "
            f"{size['reference_mean_per_month']:,.0f} a month in the reference "
            f"({size['ratio'] - 1:+.0%}; {size['verdict']}, act outside "
            f"{population_band_text(report['thresholds']['population_change_act'])})."
        ),
    ]
    if report.get("not_judged_mid_month"):
        lines += [
            "",
            f"**Not judged**: {report['as_of']} is not a month-end and the reference is "
            "month-ends, so the features counted in days to the as-of ("
            + ", ".join(f"`{name}`" for name in report["not_judged_mid_month"])
            + ") differ by the day of the month alone: their CSI is shown below and never "
            "alerts. Monitor at a month-end to judge them.",
        ]
    lines += [
        "",
        f"Compared with the model's reference: {compared} ({reference['rows']:,} rows). A "
        f"PSI or CSI alerts when it is above its practical threshold and above what sampling "
        f"noise alone gives at these sizes with probability {noise['level_per_check']:.2g} "
        f"(a false-alarm rate of {report['thresholds']['false_alarm_rate']} shared by "
        f"{noise['checks']} checks).",
    ]
    psi = report["score_psi"]
    critical = psi["noise_critical"]
    noise_text = (
        ""
        if critical is None
        else f"; sampling noise alone: {psi['noise_expected']:.4f} on average, above "
        f"{critical:.4f} with probability {noise['level_per_check']:.2g}"
    )
    lines += [
        "",
        "## Score stability (PSI)",
        "",
        f"PSI {psi['value']:.4f}: **{psi['verdict']}** (act above "
        f"{report['thresholds']['psi_act']}{noise_text}); "
        f"{psi['reference_scores']:,} reference scores fix the bins.",
        "",
        "| bin | lower | upper | reference share | today's share | contribution |",
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
        lines.append("Not computed: the model carries no reference feature sample.")
    else:
        lines += [
            "| feature | kind | CSI | verdict | noise above (when judged) | bins emptied today "
            "| missing (reference -> today) | unseen today |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in report["feature_csi"]:
            noise_cell = "" if row["noise_critical"] is None else f"{row['noise_critical']:.4f}"
            lines.append(
                f"| {row['feature']} | {row['kind']} | {row['csi']:.4f} | {row['verdict']} | "
                f"{noise_cell} | {row['empty_bins_actual']} | "
                f"{row['missing_share_expected']:.1%} -> "
                f"{row['missing_share_actual']:.1%} | {row['unseen_share_actual']:.1%} |"
            )
    lines += ["", "## Backtest: realised against predicted roll rate", ""]
    if report["backtest"] is None:
        lines.append(f"Not available: {report['backtest_status']}.")
    else:
        lines += [
            f"{report['backtest']['matured_accounts']:,} accounts with a matured outcome.",
            *(
                ["", f"**In-sample:** {report['backtest_in_sample']}."]
                if report.get("backtest_in_sample")
                else []
            ),
            "",
            f"| band | accounts | rolled | predicted | realised | "
            f"{report['backtest']['confidence']:.2%} interval | verdict |",
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
