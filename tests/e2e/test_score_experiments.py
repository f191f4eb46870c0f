"""`rollrisk score` and `rollrisk serve` with a champion/challenger experiment file: arms in the
output and the manifest, the same arm for an account in batch, service and across as-ofs,
nothing changed by an experiment that is not running, and a bad file refused in one line."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from rollrisk.cli import main
from rollrisk.serving.app import create_app
from rollrisk.serving.request_scoring import request_body
from rollrisk.storage.atomic_output import read_current
from rollrisk.storage.loader import load_portfolio
from rollrisk.strategies.experiments import NOT_RANDOMISED, parse_experiments

pytestmark = pytest.mark.slow
AS_OF = "2025-03-31"
EARLIER = "2025-02-28"
KEY = "test-key-0123456789abcdef"

EXPERIMENTS = """\
version: 1
experiments:
  - id: EXP-T
    description: half of M1-M2 across the policy and two challengers
    start: 2025-01-01
    end: 2025-06-30
    share: 0.5
    eligible:
      start_bucket: [M1, M2]
    arms:
      - name: champion
        weight: 2
        policy: true
      - name: early_agent_call
        weight: 1
        ladder:
          - {day: 0, action: call, channel: agent_call, at: "10:00"}
          - {day: 3, action: reminder, channel: sms, at: "10:00"}
      - name: night_reminders
        weight: 1
        ladder:
          - {day: 0, action: reminder, channel: sms, at: "23:30"}
          - {day: 1, action: reminder, channel: sms, at: "10:00"}
"""
OLD_COLUMNS_OF_POLICY_ACCOUNTS = ("treatment", "policy_rule", "actions", "trail", "probability")


def _score(world, out: Path, *extra: str, as_of: str = AS_OF) -> int:
    return main(
        ["score", "--model", world.model_uri, "--data", str(world.portfolio), "--as-of", as_of,
         "--out", str(out), *extra]
    )  # fmt: skip


@pytest.fixture(scope="module")
def experiment_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("experiments") / "exp.yaml"
    path.write_text(EXPERIMENTS)
    return path


@pytest.fixture(scope="module")
def scored(scoring_world, experiment_file, tmp_path_factory):
    """The world scored at AS_OF without and with the experiment, and at EARLIER with it."""
    root = tmp_path_factory.mktemp("scores")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
        assert _score(scoring_world, root / "plain", "--partitions", "2") == 0
        argv = ("--partitions", "2", "--experiments", str(experiment_file))
        assert _score(scoring_world, root / "exp", *argv) == 0
        assert _score(scoring_world, root / "earlier", *argv, as_of=EARLIER) == 0
    return {name: read_current(root / name) for name in ("plain", "exp", "earlier")}


def test_an_active_experiment_assigns_arms_records_them_and_keeps_the_rest(scored):
    _, plain = scored["plain"]
    manifest, exp = scored["exp"]
    assert exp.columns == plain.columns  # the schema does not depend on the experiment file
    assert (
        plain.select("experiment_id", "arm", "propensity").null_count().row(0)
        == (plain.height,) * 3
    )
    eligible = exp["start_bucket"].is_in(["M1", "M2"])
    assert (exp["experiment_id"].is_not_null() == eligible).all()
    assert set(exp["arm"].drop_nulls()) == {
        NOT_RANDOMISED, "champion", "early_agent_call", "night_reminders"
    }  # fmt: skip
    # the manifest names the file and counts what the output holds
    counts = exp.drop_nulls("arm").group_by("arm").len()
    assert manifest["counts"]["experiments"] == {"EXP-T": dict(counts.iter_rows())}
    assert manifest["config"]["experiments"].endswith("exp.yaml")
    assert manifest["counts"]["population"] == exp.height == plain.height

    joined = exp.join(plain, on="account_id", suffix="_plain")
    # outside the experiment, not randomised, or in the champion arm: the policy's decision
    kept = joined.filter(
        pl.col("arm").is_null() | pl.col("arm").is_in([NOT_RANDOMISED, "champion"])
    )
    for column in OLD_COLUMNS_OF_POLICY_ACCOUNTS:
        assert kept[column].equals(kept[f"{column}_plain"], check_names=False), column
    # a challenger: its ladder, the experiment's rule, compliance applied (no contact after
    # 22:00 in CN: the night reminder is moved to 08:00 and the trail says so)
    night = joined.filter(pl.col("arm") == "night_reminders")
    assert night.height > 0
    assert (night["policy_rule"] == "exp.yaml:19 rule EXP-T/night_reminders").all()
    assert (night["treatment"] == "night_reminders").all()
    assert (night["probability"] == night["probability_plain"]).all()
    for actions, trail in zip(night["actions"], night["trail"], strict=True):
        hours = [int(a["at"][11:13]) for a in json.loads(actions)]
        assert all(8 <= hour < 22 for hour in hours)
        if json.loads(actions):  # a hardship plan may stop every contact: then no window move
            assert "CMP-CONTACT-WINDOW" in {change["rule"] for change in json.loads(trail)}
    # propensities: a challenger's ladder is no policy treatment here, so 0.5 x 1/4
    assert night["propensity"].to_list() == pytest.approx([0.125] * night.height)
    champion = joined.filter(pl.col("arm").is_in([NOT_RANDOMISED, "champion"]))
    assert champion["propensity"].to_list() == pytest.approx([0.5 + 0.5 * 0.5] * champion.height)


def test_an_account_keeps_its_arm_across_as_ofs(scored):
    _, now = scored["exp"]
    _, earlier = scored["earlier"]
    both = now.join(earlier, on="account_id", suffix="_earlier").drop_nulls(["arm", "arm_earlier"])
    assert both.height > 0
    assert (both["arm"] == both["arm_earlier"]).all()


def test_an_experiment_outside_its_dates_changes_not_a_byte(
    scoring_world, scored, tmp_path, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    later = tmp_path / "later.yaml"
    later.write_text(EXPERIMENTS.replace("2025-01-01", "2025-04-01"))  # starts after the as-of
    assert (
        _score(scoring_world, tmp_path / "out", "--partitions", "2", "--experiments", str(later))
        == 0
    )
    manifest, _ = read_current(tmp_path / "out")
    plain, _ = scored["plain"]
    assert manifest["run_key"] != plain["run_key"]  # another file is another run ...
    sums = [p["sha256"] for p in manifest["partitions"]]
    assert sums == [p["sha256"] for p in plain["partitions"]]  # ... with the same bytes
    assert manifest["counts"]["experiments"] == plain["counts"]["experiments"] == {}


def test_the_service_gives_an_account_the_arm_the_batch_gave_it(
    scored, world_setup_with_experiment, scoring_world
):
    _, batch = scored["exp"]
    portfolio = load_portfolio(scoring_world.portfolio)
    chosen = (
        batch.filter(pl.col("arm").is_not_null()).group_by("arm").head(3)["account_id"].to_list()
    )
    body = request_body(
        portfolio.accounts, portfolio.statements, portfolio.collection_actions,
        portfolio.treatments, chosen, date.fromisoformat(AS_OF),
    )  # fmt: skip
    app = create_app(setup=world_setup_with_experiment, api_key=KEY)
    with TestClient(app) as client:
        response = client.post("/v1/score", json=body, headers={"X-API-Key": KEY})
        info = client.get("/v1/model", headers={"X-API-Key": KEY}).json()
    assert response.status_code == 200, response.text
    served = {row["account_id"]: row for row in response.json()["scored"]}
    assert sorted(served) == sorted(chosen)
    for row in batch.filter(pl.col("account_id").is_in(chosen)).iter_rows(named=True):
        answer = served[row["account_id"]]
        for column in ("experiment_id", "arm", "treatment", "policy_rule"):
            assert answer[column] == row[column], column
        assert answer["propensity"] == pytest.approx(row["propensity"])
        assert answer["actions"] == json.loads(row["actions"])
        assert answer["trail"] == json.loads(row["trail"])
    assert info["experiments_file"] == "exp.yaml"
    assert [e["id"] for e in info["experiments"]] == ["EXP-T"]


@pytest.fixture
def world_setup_with_experiment(scoring_world, experiment_file):
    import argparse

    from rollrisk.arguments import add_scoring_arguments, setup_from_arguments

    parser = argparse.ArgumentParser()
    add_scoring_arguments(parser)
    args = parser.parse_args(
        ["--model", scoring_world.model_uri, "--experiments", str(experiment_file)]
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
        _, setup = setup_from_arguments(args)
    assert setup.experiments == replace(
        setup.experiments, experiments=parse_experiments(EXPERIMENTS, "x").experiments
    )
    return setup


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (EXPERIMENTS.replace("share: 0.5", "share: 1.5"), "bad.yaml:7: "),
        (EXPERIMENTS.replace("[M1, M2]", "[M1, M7]"), "bad.yaml:9: "),
        (EXPERIMENTS.replace("weight: 1\n", "weight: 0\n", 1), "bad.yaml:15: "),
        ("version: 1\nexperiments: {a: 1}\n", "bad.yaml:2: experiments must be a list"),
        # an arm named like a policy treatment but with another ladder
        (
            EXPERIMENTS.replace("early_agent_call", "reminder_only"),
            "bad.yaml:14: experiment 'EXP-T': arm 'reminder_only' has the name of a treatment",
        ),
    ],
    ids=["share", "bucket", "weight", "not-a-list", "treatment-name"],
)
def test_a_bad_experiment_file_stops_the_job_in_one_line(
    scoring_world, tmp_path, monkeypatch, capsys, text, expected
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    capsys.readouterr()
    assert _score(scoring_world, tmp_path / "out", "--experiments", str(bad)) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("[score]")]
    assert len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "out" / "current").exists()


def test_a_missing_experiment_file_is_named(scoring_world, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    capsys.readouterr()
    assert _score(scoring_world, tmp_path / "out", "--experiments", str(tmp_path / "no.yaml")) == 2
    assert f"{tmp_path / 'no.yaml'}: file not found" in capsys.readouterr().err
