"""Hostile jobs (issue 14): a book without action logs, a table missing at scoring time, and
rejects above the limit.

Each variant drives the real CLI in-process (``rollrisk.cli.main``) on copies of the scoring
world's simulated portfolio, and checks a clear outcome: exit 2 with one ``rollrisk CMD:
error:`` line naming what is wrong and how to go on, and nothing published (the previous
result unchanged); or exit 0 with what was left out or set aside said on stderr and recorded
in the job's manifest.

* a portfolio of accounts and statements alone goes build-training-set -> train -> promote ->
  score, every job saying what it left out, the model recording the tables it learnt from;
* a model trained with a table is not scored, monitored or served on data without it, unless
  ``--allow-missing-table`` names it, and then the score manifest records that choice;
* rejects are printed by table and by account and recorded; above ``--max-reject-rate``
  (default 1%, or the config's ``data.max_reject_rate``) every job stops naming the counts and
  the root cause of knock-on rejects.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from rollrisk.cli import main
from rollrisk.features.registry import FEATURE_SET
from rollrisk.storage.atomic_output import read_current

pytestmark = pytest.mark.slow
AS_OF = "2025-03-31"
OPTIONAL = ("collection_actions", "treatments")
KEY = "test-key-0123456789abcdef"
BARE_CONFIG = """
training:
  model_name: rollrisk-bare
  experiment_name: tests-bare
  split: {validation_months: 2, test_months: 2, embargo_months: 1}
  calibration: {method: platt}
  lightgbm: {n_estimators: 60, num_leaves: 7, min_child_samples: 20, learning_rate: 0.1, early_stopping_rounds: 10, n_jobs: 1}
promotion:
  max_ece: 0.99
  max_psi: 10.0
  require_beats_baselines: false
  min_train_rows: 0
  min_train_positives: 0
  min_test_rows: 0
  min_test_positives: 0
"""


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    @property
    def error_line(self) -> str:
        """The one line a refusing job prints, checked to be the whole of its complaint."""
        assert "Traceback" not in self.err, self.err
        lines = [line for line in self.err.splitlines() if ": error: " in line]
        assert len(lines) == 1, self.err
        return lines[0]


def run(*argv: str) -> Run:
    """``rollrisk ARGV`` in this process, its exit code and what it printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return Run(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def world(scoring_world):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
        yield scoring_world


def _copy(world, folder: Path, without: tuple[str, ...] = ()) -> Path:
    shutil.copytree(world.portfolio, folder, ignore=shutil.ignore_patterns("truth", *without))
    return folder


def _score(world, data: Path, out: Path, *flags: str, model: str | None = None) -> Run:
    return run("score", "--model", model or world.model_uri, "--data", str(data),
               "--as-of", AS_OF, "--out", str(out), *flags)  # fmt: skip


def _accounts_read(data: Path) -> int:
    """The accounts listed in ``data`` (each also in the other tables' ids): the denominator
    of the account reject rate. Read, not assumed: the simulated book is open, ``--accounts``
    counts every account ever on it, and that count is the world's to choose."""
    return pl.read_parquet(data / "accounts.parquet").height


def _bad_accounts(data: Path, share: float) -> int:
    """Give ``share`` of the accounts a non-positive credit limit; returns how many."""
    path = data / "accounts.parquet"
    accounts = pl.read_parquet(path)
    count = round(accounts.height * share)
    accounts.with_columns(
        pl.when(pl.int_range(pl.len()) < count)
        .then(-1.0)
        .otherwise("credit_limit")
        .alias("credit_limit")
    ).write_parquet(path)
    return count


def _bad_statements(data: Path, count: int) -> set[str]:
    """Give ``count`` statement rows of the first part, of as many accounts, a negative DPD;
    returns those accounts. Validation sets aside each of them whole (all its statements:
    docs/data-contract.md, "An account's statements are kept whole or not at all")."""
    part = sorted((data / "statements").glob("*.parquet"))[0]
    rows = pl.read_parquet(part)
    hit = rows.with_row_index("_n").group_by("account_id", maintain_order=True).first().head(count)
    bad = pl.int_range(pl.len()).is_in(hit["_n"].implode())
    rows.with_columns(pl.when(bad).then(-3).otherwise("dpd").alias("dpd")).write_parquet(part)
    return set(hit["account_id"])


def _statements_of(data: Path, accounts: set[str]) -> int:
    """How many statement rows ``accounts`` have in ``data`` (all set aside when one is bad)."""
    rows = pl.read_parquet(data / "statements" / "*.parquet", columns=["account_id"])
    return rows.filter(pl.col("account_id").is_in(sorted(accounts))).height


# -- a book of accounts and statements alone ------------------------------------------------


@dataclass(frozen=True)
class BareFlow:
    data: Path
    set_aside: int  # the statement rows of the 4 accounts with a bad one
    training_set: Path
    built: Run
    trained: Run
    train_out: Path
    promoted: Run


@pytest.fixture(scope="module")
def bare(world, tmp_path_factory) -> BareFlow:
    """build-training-set -> train -> promote on the portfolio without its optional tables
    (and with 4 statement rows bad, of 4 accounts: their statements set aside and said, not a
    stop)."""
    root = tmp_path_factory.mktemp("bare")
    data = _copy(world, root / "portfolio", without=OPTIONAL)
    set_aside = _statements_of(data, _bad_statements(data, 4))
    config = root / "bare.yaml"
    config.write_text(BARE_CONFIG)
    training_set = root / "training_set.parquet"
    built = run("build-training-set", "--data", str(data), "--out", str(training_set))
    train_out = root / "train"
    trained = run("train", "--data", str(data), "--training-set", str(training_set),
                  "--config", str(config), "--out", str(train_out))  # fmt: skip
    promoted = run("promote", "--model-name", "rollrisk-bare", "--config", str(config))
    return BareFlow(data, set_aside, training_set, built, trained, train_out, promoted)


def test_build_training_set_without_action_logs_says_what_it_left_out(bare: BareFlow) -> None:
    from rollrisk.features.registry import FEATURE_SET

    assert bare.built.code == 0, bare.built.err
    for table in OPTIONAL:
        assert f"no {table} table (optional): the features computed from it are left missing" in (
            bare.built.err
        )
    frame = pl.read_parquet(bare.training_set)
    assert frame.height > 500
    for spec in FEATURE_SET.features:
        column = frame[spec.name]
        if spec.source in OPTIONAL:
            assert column.null_count() == frame.height, spec.name
        elif spec.source == "statements":
            assert column.null_count() < frame.height, spec.name
    # the 4 bad rows and their accounts' other statements: set aside, counted, listed beside
    # the training set
    assert bare.set_aside > 4
    assert f"[build-training-set] rejects: {bare.set_aside} of" in bare.built.err
    rejects = pl.read_csv(bare.training_set.with_name("training_set.rejects.csv"))
    assert rejects.height == bare.set_aside
    assert rejects["reasons"].str.starts_with("dpd:").sum() == 4
    assert rejects["reasons"].str.starts_with("incomplete history: ").sum() == bare.set_aside - 4


def test_train_without_action_logs_trains_says_so_and_records_its_tables(
    world, bare: BareFlow
) -> None:
    from rollrisk.api import load_model

    assert bare.trained.code == 0, bare.trained.err
    assert "Traceback" not in bare.trained.err
    for table in ("collection_actions", "treatments"):
        count = sum(FEATURE_SET.spec(name).source == table for name in FEATURE_SET.names)
        assert f"no {table} in the training data: its {count} features are left missing" in (
            bare.trained.err
        )
    # train prints its rejects and records them with the report (logged to MLflow with it)
    assert f"[train] rejects: {bare.set_aside} of" in bare.trained.err
    read = _accounts_read(bare.data)
    assert (
        f"4 of {read:,} accounts have a rejected row ({4 / read:.2%}), 4 of them lost entirely"
        in (bare.trained.err)
    )
    record = json.loads((bare.train_out / "rejects.json").read_text())
    assert record["rows_rejected"] == bare.set_aside and record["accounts_rejected"] == 4
    assert record["tables"]["statements"]["rows_rejected"] == bare.set_aside
    assert record["max_reject_rate"] == pytest.approx(0.01)
    assert pl.read_csv(bare.train_out / "rejects.csv").height == bare.set_aside
    loaded = load_model("models:/rollrisk-bare@challenger")
    assert loaded.metadata["tables"] == "accounts,statements"


def test_promote_and_score_a_model_trained_without_action_logs(
    world, bare: BareFlow, tmp_path: Path
) -> None:
    assert bare.promoted.code == 0, bare.promoted.out + bare.promoted.err
    scored = _score(world, bare.data, tmp_path / "scores", model="models:/rollrisk-bare@champion")
    assert scored.code == 0, scored.err
    manifest, frame = read_current(tmp_path / "scores")
    assert manifest["tables"] == {
        "trained_with": ["accounts", "statements"],
        "present": ["accounts", "statements"],
        "scored_without": [],
    }
    assert frame.height == manifest["counts"]["population"] > 20
    assert frame["probability"].is_between(0, 1).all()
    assert manifest["counts"]["rejects"]["rows_rejected"] == bare.set_aside


def test_evaluate_monitor_and_serve_a_model_trained_without_action_logs(
    world, bare: BareFlow, tmp_path: Path
) -> None:
    from rollrisk.arguments import add_scoring_arguments, setup_from_arguments
    from rollrisk.serving.app import create_app
    from rollrisk.serving.request_scoring import request_body
    from rollrisk.storage.loader import load_portfolio

    model = "models:/rollrisk-bare@champion"
    evaluated = run("evaluate", "--model", model, "--data", str(bare.data),
                    "--out", str(tmp_path / "evaluate"))  # fmt: skip
    assert evaluated.code == 0, evaluated.err
    report = (tmp_path / "evaluate" / "report.md").read_text()
    assert "trained with accounts, statements" in report and "evaluated without" not in report
    monitored = run("monitor", "--model", model, "--data", str(bare.data), "--as-of", AS_OF,
                    "--out", str(tmp_path / "monitor"))  # fmt: skip
    assert monitored.code in (0, 3), monitored.err  # a verdict either way
    record = json.loads((tmp_path / "monitor" / "monitor.json").read_text())
    assert record["tables"] == {"trained_with": ["accounts", "statements"], "monitored_without": []}
    # the service: requests without action logs or treatments, as the lender has none
    portfolio = load_portfolio(bare.data)
    # accounts with a history (the first few were set aside whole for their bad statement)
    ids = portfolio.statements["account_id"].unique(maintain_order=True).head(3).to_list()
    body = request_body(portfolio.accounts, portfolio.statements, None, None, ids,
                        date.fromisoformat(AS_OF))  # fmt: skip
    parser = argparse.ArgumentParser()
    add_scoring_arguments(parser)
    _, setup = setup_from_arguments(parser.parse_args(["--model", model]))
    with TestClient(create_app(setup=setup, api_key=KEY)) as client:
        response = client.post("/v1/score", json=body, headers={"X-API-Key": KEY})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert len(answer["scored"]) + len(answer["not_scored"]) == 3


# -- a table missing at scoring time --------------------------------------------------------


def test_scoring_without_a_table_the_model_learnt_from_is_refused(world, tmp_path: Path) -> None:
    data = _copy(world, tmp_path / "portfolio", without=OPTIONAL)
    refused = _score(world, data, tmp_path / "scores")
    assert refused.code == 2
    line = refused.error_line
    assert line.startswith("rollrisk score: error: model rollrisk-test v")
    assert f"{data} has no collection_actions and no treatments" in line
    assert "the model's 28 features from them would be missing" in line  # 22 + 6
    assert "--allow-missing-table collection_actions --allow-missing-table treatments" in line
    assert not (tmp_path / "scores" / "current").exists()


def test_the_opt_in_scores_and_is_recorded_in_the_manifest(world, tmp_path: Path) -> None:
    data = _copy(world, tmp_path / "portfolio", without=OPTIONAL)
    allowed = _score(world, data, tmp_path / "scores", "--allow-missing-table",
                     "collection_actions", "--allow-missing-table", "treatments")  # fmt: skip
    assert allowed.code == 0, allowed.err
    for table in OPTIONAL:
        assert f"WARNING: scored without {table}, which the model was trained with" in (allowed.err)
    manifest, frame = read_current(tmp_path / "scores")
    assert manifest["tables"]["trained_with"] == [
        "accounts",
        "statements",
        "collection_actions",
        "treatments",
    ]
    assert manifest["tables"]["scored_without"] == list(OPTIONAL)
    assert frame.height == manifest["counts"]["scored"] > 0


def test_allowing_one_table_does_not_allow_the_other(world, tmp_path: Path) -> None:
    data = _copy(world, tmp_path / "portfolio", without=("treatments",))
    refused = _score(world, data, tmp_path / "scores", "--allow-missing-table",
                     "collection_actions")  # fmt: skip
    assert refused.code == 2
    line = refused.error_line
    assert "has no treatments:" in line and "collection_actions:" not in line
    assert line.endswith("--allow-missing-table treatments")


def test_monitoring_without_a_table_is_refused_and_the_opt_in_recorded(
    world, tmp_path: Path
) -> None:
    data = _copy(world, tmp_path / "portfolio", without=("collection_actions",))
    argv = ["monitor", "--model", world.model_uri, "--data", str(data), "--as-of", AS_OF,
            "--out", str(tmp_path / "monitor")]  # fmt: skip
    refused = run(*argv)
    assert refused.code == 2
    assert "has no collection_actions" in refused.error_line
    allowed = run(*argv, "--allow-missing-table", "collection_actions")
    assert allowed.code in (0, 3), allowed.err  # a verdict either way, never a crash
    report = json.loads((tmp_path / "monitor" / "monitor.json").read_text())
    assert report["tables"]["monitored_without"] == ["collection_actions"]
    assert report["rejects"]["rows_rejected"] == 0


def test_the_service_refuses_a_request_without_a_table_the_model_learnt_from(world) -> None:
    from rollrisk.arguments import add_scoring_arguments, setup_from_arguments
    from rollrisk.serving.app import create_app
    from rollrisk.serving.request_scoring import request_body
    from rollrisk.storage.loader import load_portfolio

    portfolio = load_portfolio(world.portfolio)
    # accounts with a history (the first few were set aside whole for their bad statement)
    ids = portfolio.statements["account_id"].unique(maintain_order=True).head(3).to_list()
    body = request_body(portfolio.accounts, portfolio.statements, None, portfolio.treatments,
                        ids, date.fromisoformat(AS_OF))  # fmt: skip
    parser = argparse.ArgumentParser()
    add_scoring_arguments(parser)
    headers = {"X-API-Key": KEY}
    for flags, status in (([], 422), (["--allow-missing-table", "collection_actions"], 200)):
        _, setup = setup_from_arguments(parser.parse_args(["--model", world.model_uri, *flags]))
        with TestClient(create_app(setup=setup, api_key=KEY)) as client:
            response = client.post("/v1/score", json=body, headers=headers)
        assert response.status_code == status, response.text
        if status == 422:
            (problem,) = response.json()["detail"]
            assert problem["type"] == "missing_table"
            assert problem["loc"] == ["body", "accounts", 0, "collection_actions"]
            assert "--allow-missing-table collection_actions" in problem["msg"]


# -- rejects: printed, recorded, and a stop above the limit -----------------------------------


@pytest.fixture(scope="module")
def published(world, tmp_path_factory) -> Path:
    """A clean result in an output folder, to check a stopped run leaves it as it was."""
    out = tmp_path_factory.mktemp("published") / "scores"
    assert _score(world, world.portfolio, out).code == 0
    return out


def test_three_percent_of_accounts_rejected_stops_the_score_naming_counts_and_cause(
    world, published: Path, tmp_path: Path
) -> None:
    data = _copy(world, tmp_path / "portfolio")
    bad = _bad_accounts(data, 0.03)
    before = (published / "current").resolve()
    manifest_before = (before / "manifest.json").read_bytes()
    stopped = _score(world, data, published)
    assert stopped.code == 2
    line = stopped.error_line
    read = _accounts_read(data)
    assert f"accounts 3.00% of rows ({bad} of {read:,})" in line
    assert f"accounts with a rejected row 3.00% ({bad} of {read:,}, {bad} lost entirely)" in line
    assert "above the limit of 1.00% (--max-reject-rate)" in line
    assert f"root cause: {bad} accounts rows rejected ({bad} x credit_limit: expected a value > 0)" in line  # fmt: skip
    assert "statements rows" in line and "as knock-ons" in line
    assert "raise --max-reject-rate" in line
    # nothing published: the previous result stands, byte for byte
    assert (published / "current").resolve() == before
    assert (before / "manifest.json").read_bytes() == manifest_before


def test_a_raised_limit_runs_and_the_manifest_records_rows_and_accounts(
    world, tmp_path: Path
) -> None:
    data = _copy(world, tmp_path / "portfolio")
    bad = _bad_accounts(data, 0.03)
    scored = _score(world, data, tmp_path / "scores", "--max-reject-rate", "0.05")
    assert scored.code == 0, scored.err
    read = _accounts_read(data)
    assert f"[score]   accounts: {bad} of {read:,} rows (3.00%)" in scored.err
    manifest, frame = read_current(tmp_path / "scores")
    counts = manifest["counts"]
    rejects = counts["rejects"]
    assert counts["rejected_accounts"] == rejects["accounts_rejected"] == bad
    assert rejects["accounts_lost"] == bad and rejects["accounts_read"] == read
    assert rejects["max_reject_rate"] == pytest.approx(0.05)
    statements = rejects["tables"]["statements"]
    assert statements["rows_rejected"] == statements["knock_on"] > 0
    assert statements["rows_rejected"] == counts["input_rows"]["statements"]["rejected"]
    assert rejects["rows_rejected"] == sum(t["rejected"] for t in counts["input_rows"].values())
    # no account whose row was rejected is scored
    bad_ids = set(pl.read_parquet(world.portfolio / "accounts.parquet")["account_id"].head(bad))
    assert not bad_ids & set(frame["account_id"])


def test_the_config_sets_the_limit_and_the_flag_overrides_it(world, tmp_path: Path) -> None:
    data = _copy(world, tmp_path / "portfolio")
    _bad_accounts(data, 0.03)
    config = tmp_path / "lenient.yaml"
    config.write_text("data:\n  max_reject_rate: 0.05\n")
    lenient = _score(world, data, tmp_path / "a", "--config", str(config))
    assert lenient.code == 0, lenient.err
    assert read_current(tmp_path / "a")[0]["counts"]["rejects"]["max_reject_rate"] == 0.05
    strict = _score(
        world, data, tmp_path / "b", "--config", str(config), "--max-reject-rate", "0.02"
    )
    assert strict.code == 2
    assert "above the limit of 2.00%" in strict.error_line


def test_every_job_stops_above_the_limit_before_doing_anything(world, tmp_path: Path) -> None:
    data = _copy(world, tmp_path / "portfolio")
    bad = _bad_accounts(data, 0.03)
    jobs = {
        "build-training-set": ["--out", str(tmp_path / "ts.parquet")],
        "train": ["--out", str(tmp_path / "train"), "--no-register"],
        "evaluate": ["--model", world.model_uri, "--out", str(tmp_path / "evaluate")],
        "monitor": ["--model", world.model_uri, "--out", str(tmp_path / "monitor")],
    }
    for job, flags in jobs.items():
        stopped = run(job, "--data", str(data), *flags)
        assert stopped.code == 2, (job, stopped.err)
        line = stopped.error_line
        assert line.startswith(f"rollrisk {job}: error: {data}: too much of the portfolio"), line
        assert f"root cause: {bad} accounts rows rejected" in line
    assert not (tmp_path / "ts.parquet").exists()
    # the rows are listed where the job said: beside its output
    assert pl.read_csv(tmp_path / "train" / "rejects.csv").height > bad
    assert not (tmp_path / "monitor" / "monitor.json").exists()


def test_validate_exit_codes_and_the_limit_it_reports(world, tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.csv"
    clean = run("validate", "--data", str(world.portfolio), "--rejects", str(rejects))
    assert clean.code == 0 and "OK: no rejects" in clean.out
    few = _copy(world, tmp_path / "few")
    _bad_statements(few, 3)
    within = run("validate", "--data", str(few), "--rejects", str(rejects))
    assert within.code == 1
    read = _accounts_read(few)
    assert (
        f"accounts: 3 of {read:,} have a rejected row ({3 / read:.2%}), 3 of them lost entirely"
        in (within.out)
    )
    assert "within the reject limit of 1.00%" in within.out
    many = _copy(world, tmp_path / "many")
    _bad_accounts(many, 0.03)
    above = run("validate", "--data", str(many), "--rejects", str(rejects))
    assert above.code == 1
    assert "ABOVE the reject limit of 1.00% (--max-reject-rate): every other job stops" in (
        above.out
    )
    raised = run("validate", "--data", str(many), "--rejects", str(rejects),
                 "--max-reject-rate", "0.05")  # fmt: skip
    assert raised.code == 1 and "within the reject limit of 5.00%" in raised.out
    assert pl.read_csv(rejects).height == raised_rows(many)


def raised_rows(data: Path) -> int:
    """Rows of ``data`` that validate rejects: the bad accounts and all their rows."""
    from rollrisk.storage.loader import load_portfolio

    return load_portfolio(data).report.rows_rejected


def test_a_bad_limit_is_a_usage_error(world, tmp_path: Path) -> None:
    for value in ("1.5", "-0.01", "lots"):
        with pytest.raises(SystemExit) as usage:
            run("score", "--data", str(world.portfolio), "--max-reject-rate", value)
        assert usage.value.code == 2
    config = tmp_path / "typo.yaml"
    config.write_text("data:\n  max_reject_rates: 0.05\n")
    typo = _score(world, world.portfolio, tmp_path / "scores", "--config", str(config))
    assert typo.code == 2
    assert "unknown key data.max_reject_rates" in typo.error_line
