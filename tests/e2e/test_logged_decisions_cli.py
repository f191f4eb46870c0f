"""`rollrisk logged-decisions` end to end: a simulated portfolio, a registered model and a
hand-written experiment record (accounts, as-of dates and arms chosen here, so the accounting
of every row is known)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import date

import numpy as np
import polars as pl
import pytest

from rollrisk.api import load_model, load_portfolio, score, scoring_setup
from rollrisk.cli import main
from rollrisk.features.registry import FAMILIES
from rollrisk.features.schemas import CHANNELS, TREATMENT_KINDS
from rollrisk.models.roll_rates import BUCKETS
from rollrisk.scoring.logged_decisions import (
    COMMISSION_BUCKETS,
    STANDARD_QUEUE,
    OutcomeEconomics,
    build_logged_decisions,
)

pytestmark = pytest.mark.slow
ARMS = ("policy", "grace_first", "early_agent_call")
PROPENSITY = {"policy": 0.9, "grace_first": 0.05, "early_agent_call": 0.05}
FLAT = OutcomeEconomics(  # unit costs of 0 and every balance at par: the money alone
    channel_costs=dict.fromkeys(CHANNELS, 0.0),
    treatment_costs=dict.fromkeys(TREATMENT_KINDS, 0.0),
    agency_commission=dict.fromkeys(COMMISSION_BUCKETS, 0.0),
    value_shares=(1.0,) * len(BUCKETS),
)


def _month_ends(statements: pl.DataFrame) -> list[date]:
    ends = statements.select(pl.col("cycle_end").dt.month_end().unique().sort())["cycle_end"]
    return ends.to_list()


def _record(statements: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    """Assignments at two as-of dates with a full horizon and one without; the counts of what
    each reason must set aside."""
    ends = _month_ends(statements)
    rng = np.random.default_rng(13)
    rows, expected = [], {"several_experiments": 2, "horizon_incomplete": 0, "late": 0}
    for as_of in (ends[3], ends[5], ends[-1]):
        month = statements.filter(pl.col("cycle_end").dt.month_end() == as_of)
        delinquent = month.filter(pl.col("dpd").is_between(1, 89))["account_id"].sort()[:60]
        current = month.filter(pl.col("dpd") == 0)["account_id"].sort()[:5]  # never scored
        for account in [*delinquent, *current]:
            arm = str(rng.choice(ARMS))
            rows.append((account, as_of, "EXP-A", arm, PROPENSITY[arm]))
        if as_of == ends[-1]:
            expected["horizon_incomplete"] = len(delinquent) + len(current)
        else:
            expected["late"] += len(current)
    first = rows[0]
    rows.append((first[0], first[1], "EXP-B", "policy", 1.0))  # a second experiment, same as-of
    rows.append((first[0], first[1], "EXP-C", "policy", 0.0))  # the contract rejects it
    record = pl.DataFrame(
        rows,
        schema={
            "account_id": pl.String,
            "as_of": pl.Date,
            "experiment_id": pl.String,
            "arm": pl.String,
            "propensity": pl.Float64,
        },  # fmt: skip
        orient="row",
    )
    return record, expected


# a copy of the simulated portfolio without its truth and without the simulated lender's
# experiment record (and the experiment file beside it)
WITHOUT_RECORD = shutil.ignore_patterns("truth", "experiment_assignments*", "experiments.yaml")


@pytest.fixture(scope="module")
def logged_portfolio(scoring_world, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("logged") / "portfolio"
    # the simulated lender's own record is left out: this test writes a hand-made one
    shutil.copytree(scoring_world.portfolio, folder, ignore=WITHOUT_RECORD)
    statements = load_portfolio(folder).statements
    record, expected = _record(statements)
    record.write_parquet(folder / "experiment_assignments.parquet")
    return folder, record, expected


def test_every_assignment_row_is_kept_or_set_aside_and_features_are_the_scores(
    scoring_world, logged_portfolio, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    folder, record, expected = logged_portfolio
    out = tmp_path / "logged.parquet"
    argv = ["logged-decisions", "--model", scoring_world.model_uri, "--data", str(folder),
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    table = pl.read_parquet(out)
    summary = json.loads((tmp_path / "logged.parquet.summary.json").read_text())
    set_aside = pl.read_csv(tmp_path / "logged.parquet.set_aside.csv", try_parse_dates=True)

    counts = summary["assignments"]
    # the row with propensity 0 is the data contract's reject, not a decision
    assert counts["rows_read"] == record.height and counts["rejected_by_contract"] == 1
    assert summary["rejects_file"] == str(tmp_path / "logged.parquet.rejects.csv")
    record = record.filter(pl.col("propensity") > 0)
    assert counts["rows"] == record.height
    assert counts["kept"] == table.height
    assert counts["kept"] + sum(counts["set_aside"].values()) == record.height
    assert set_aside.height == sum(counts["set_aside"].values())
    assert counts["set_aside"]["several_experiments"] == expected["several_experiments"]
    twice = set_aside.filter(pl.col("reason") == "several_experiments")
    assert (twice["detail"] == "in experiments EXP-A, EXP-B at this as-of").all()
    assert counts["set_aside"]["horizon_incomplete"] == expected["horizon_incomplete"]
    # the current accounts are not in the population: not scored, never silently dropped
    assert counts["set_aside"]["not_scored"] >= expected["late"]
    assert f"{record.height:,} assignment rows: {table.height:,} kept" in err
    # one row per (account, as-of); nothing kept that was set aside
    assert table.select("account_id", "as_of").is_duplicated().sum() == 0
    kept_keys = table.select("account_id", "as_of", "experiment_id")
    aside_keys = set_aside.select("account_id", "as_of", "experiment_id")
    assert kept_keys.join(aside_keys, on=["account_id", "as_of", "experiment_id"]).height == 0

    # bundles: the policy arm got the standard queue, which is every row's policy bundle
    policy_rows = table.filter(pl.col("arm") == "policy")
    assert (policy_rows["bundle"] == STANDARD_QUEUE).all()
    assert (table.filter(pl.col("arm") != "policy")["bundle"] == table.filter(
        pl.col("arm") != "policy")["arm"]).all()  # fmt: skip
    assert (table["policy_bundle"] == STANDARD_QUEUE).all()
    parts = table["recovered"] - table["action_cost"] - table["agency_commission"]
    assert ((parts + table["end_value"]) - table["book_value"]).abs().max() < 1e-6
    for column in ("start_bucket", "risk_band", "segment", "product", "dpd", "amount_overdue",
                   "probability", *(f"family_{f}" for f in FAMILIES)):  # fmt: skip
        assert column in table.columns and table[column].null_count() == 0, column

    # the features are what `rollrisk score` gives these accounts at that as-of from the records
    # known at the decision: actions and treatments dated after the account's latest statement
    # on or before the as-of are the decision's consequences, withheld (some are, here)
    setup = scoring_setup(load_model(scoring_world.model_uri))
    portfolio = load_portfolio(folder)
    withheld = 0
    for as_of in table["as_of"].unique().to_list():
        ours = table.filter(pl.col("as_of") == as_of).sort("account_id")
        decided = (
            portfolio.statements.filter(pl.col("cycle_end") <= as_of)
            .group_by("account_id")
            .agg(pl.col("cycle_end").max().alias("decided"))
        )
        actions = portfolio.collection_actions.join(decided, on="account_id", how="left")
        late = pl.col("action_at").dt.date() > pl.col("decided")
        withheld += actions.filter(late & (pl.col("action_at").dt.date() <= as_of)).height
        treatments = portfolio.treatments.join(decided, on="account_id", how="left")
        known = replace(
            portfolio,
            collection_actions=actions.filter(late.not_() | pl.col("decided").is_null()).drop(
                "decided"
            ),
            treatments=treatments.filter(
                (pl.col("known_at").dt.date() <= pl.col("decided")) | pl.col("decided").is_null()
            ).drop("decided"),
        )
        theirs = score(setup, known, as_of).join(
            ours.select("account_id"), on="account_id", how="semi"
        ).sort("account_id")  # fmt: skip
        assert theirs["account_id"].to_list() == ours["account_id"].to_list()
        assert (ours["probability"] - theirs["probability"]).abs().max() < 1e-9
        assert ours["segment"].to_list() == theirs["segment"].to_list()
        assert ours["risk_band"].to_list() == theirs["risk_band"].to_list()
        assert ours["scored_treatment"].to_list() == theirs["treatment"].to_list()
        for family in FAMILIES:
            gap = (ours[f"family_{family}"] - theirs[f"family_{family}"]).abs().max()
            assert gap < 1e-9, family
    assert withheld > 0  # the test data holds contacts made after a decision statement
    assert summary["valuation"]["shares"]["M0"] == pytest.approx(1.0)
    assert [entry["as_of"] for entry in summary["by_as_of"]] == sorted(
        {str(d) for d in record["as_of"].to_list()}
    )


def test_features_see_nothing_after_the_as_of_and_the_outcome_only_what_follows(
    scoring_world, logged_portfolio, monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    folder, record, _ = logged_portfolio
    portfolio = load_portfolio(folder)
    setup = scoring_setup(load_model(scoring_world.model_uri))
    as_of = sorted(set(record["as_of"].to_list()))[0]
    one = record.filter(pl.col("as_of") == as_of, pl.col("experiment_id") == "EXP-A")

    def build(statements: pl.DataFrame) -> pl.DataFrame:
        return build_logged_decisions(
            portfolio.accounts, statements, portfolio.collection_actions, portfolio.treatments,
            one, setup, FLAT, horizon=6,
        ).decisions.sort("account_id")  # fmt: skip

    base = build(portfolio.statements)
    later = pl.col("cycle_end") > as_of
    future = portfolio.statements.with_columns(
        pl.when(later).then(pl.col("amount_paid") + 100.0).otherwise(pl.col("amount_paid"))
    )
    moved = build(future)
    features = ["probability", "segment", "risk_band", "dpd", *(f"family_{f}" for f in FAMILIES)]
    assert moved.select(features).equals(base.select(features))  # the future moves no feature
    # ... and the outcome is the money of the 6 statements after the as-of: +100 each
    assert ((moved["recovered"] - base["recovered"]) - 600.0).abs().max() < 1e-6
    past = portfolio.statements.with_columns(
        pl.when(pl.col("cycle_end") < as_of.replace(day=1))
        .then(pl.col("amount_paid") + 100.0)
        .otherwise(pl.col("amount_paid"))
    )
    # payments before the as-of's month feed features (they may move), never the outcome
    assert build(past)["recovered"].equals(base["recovered"])


def test_a_portfolio_without_an_experiment_record_is_refused(
    scoring_world, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    portfolio = tmp_path / "portfolio"
    shutil.copytree(scoring_world.portfolio, portfolio, ignore=WITHOUT_RECORD)
    argv = ["logged-decisions", "--model", scoring_world.model_uri,
            "--data", str(portfolio), "--out", str(tmp_path / "logged.parquet")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no experiment_assignments table" in err
    assert "account_id, as_of, experiment_id, arm, propensity" in err
    assert not (tmp_path / "logged.parquet").exists()


def test_the_experiment_file_names_the_arms_bundles_and_leaves_the_scores_alone(
    scoring_world, logged_portfolio, tmp_path, monkeypatch
) -> None:
    """A lender's own file: an arm that follows the policy got the logging policy's decision,
    an arm whose ladder is a policy treatment's got that treatment. The rows' bundles are
    named so (learn-policy refused the table with the arms' names), and the scores are the
    policy's own (the file's arms were assigned anew at each as-of)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    folder, _, _ = logged_portfolio
    experiments = tmp_path / "experiments.yaml"
    experiments.write_text(
        "version: 1\n"
        "experiments:\n"
        "  - id: EXP-A\n"
        "    start: 2000-01-01\n"
        "    end: 2099-12-31\n"
        "    share: 0.5\n"
        "    arms:\n"
        "      - {name: early_agent_call, weight: 2, policy: true}\n"
        "      - name: grace_first\n"
        "        weight: 1\n"
        "        ladder:\n"  # conf/policy.yaml's intensive_calls
        '          - {day: 0, action: call, channel: agent_call, at: "09:30"}\n'
        '          - {day: 1, action: call, channel: agent_call, at: "18:00"}\n'
        '          - {day: 3, action: call, channel: agent_call, at: "10:00"}\n',
        encoding="utf-8",
    )
    base = ["logged-decisions", "--model", scoring_world.model_uri, "--data", str(folder)]
    assert main([*base, "--out", str(tmp_path / "plain.parquet")]) == 0
    assert (
        main([*base, "--experiments", str(experiments), "--out", str(tmp_path / "x.parquet")]) == 0
    )
    plain = pl.read_parquet(tmp_path / "plain.parquet")
    named = pl.read_parquet(tmp_path / "x.parquet")

    bundle = dict(zip(named["arm"], named["bundle"], strict=True))
    assert bundle == {
        "policy": STANDARD_QUEUE,
        "early_agent_call": STANDARD_QUEUE,
        "grace_first": "intensive_calls",
    }
    assert named.drop("bundle").equals(plain.drop("bundle"))  # the scores as without the file
    summary = json.loads((tmp_path / "x.parquet.summary.json").read_text())
    assert summary["scored_with"]["experiments"] == str(experiments)
    assert summary["scored_with"]["risk_bands"] == {"low": 0.15, "medium": 0.45, "high": 1.0}


def test_a_run_that_keeps_nothing_leaves_no_earlier_table_behind(
    scoring_world, logged_portfolio, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    folder, _, _ = logged_portfolio
    out = tmp_path / "logged.parquet"
    base = ["logged-decisions", "--model", scoring_world.model_uri, "--data", str(folder)]
    assert main([*base, "--out", str(out)]) == 0
    assert main([*base, "--horizon", "100", "--out", str(out)]) == 2  # nothing kept

    assert not out.exists() and not (tmp_path / "logged.parquet.summary.json").exists()
    assert (tmp_path / "logged.parquet.set_aside.csv").exists()  # why, for every row
    assert not list(tmp_path.glob(".*.tmp"))
    folder_out = tmp_path / "a_folder.parquet"
    folder_out.mkdir()
    assert main([*base, "--out", str(folder_out)]) == 2  # refused before any work
    assert not list(tmp_path.glob(".*.tmp"))
