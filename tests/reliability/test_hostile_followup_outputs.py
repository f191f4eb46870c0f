"""Hostile follow-up (issue 14): outputs named inside the portfolio, and an --as-of outside
the months the portfolio has statements for.

Every variant drives the real CLI and must end in exit 2 with one line ``rollrisk CMD:
error: ...`` naming the cause, no traceback, and the portfolio folder byte-identical
afterwards (every file hashed before and after). A refused run also leaves no output folder
behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import rollrisk
from rollrisk.cli import main
from rollrisk.errors import UserError
from rollrisk.features.observations import ObservationSpec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def portfolio(scoring_world, tmp_path_factory) -> Path:
    """A copy of the world's portfolio: a bug that writes into it must not spoil the others'."""
    copy = tmp_path_factory.mktemp("followup") / "portfolio"
    shutil.copytree(scoring_world.portfolio, copy)
    return copy


@pytest.fixture(autouse=True)
def _store(scoring_world, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)


def _hashes(folder: Path) -> dict[str, str]:
    """Every file and link under ``folder``: its sha256 or link target (and nothing else)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_symlink():
            found[name] = "-> " + os.readlink(path)
        elif path.is_file():
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[name] = "folder"
    return found


def _refused(argv: list[str], portfolio: Path, capsys, *words: str) -> str:
    """Run ``argv``: exit 2, one error line holding ``words``, no traceback, and the
    portfolio unchanged. Returns the error line."""
    before = _hashes(portfolio)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith(f"rollrisk {argv[0]}: ")]
    assert len(errors) == 1, err
    assert errors[0].startswith(f"rollrisk {argv[0]}: error: ")
    for word in words:
        assert word in errors[0], errors[0]
    assert _hashes(portfolio) == before
    return errors[0]


def _months(portfolio: Path) -> tuple[str, str]:
    """The first and the latest month (YYYY-MM) with a statement."""
    cycle_end = pl.read_parquet(portfolio / "statements").get_column("cycle_end")
    return f"{cycle_end.min():%Y-%m}", f"{cycle_end.max():%Y-%m}"


# --------------------------------------------------------------------------- outputs inside --data


def test_validate_rejects_named_as_a_table_is_refused(portfolio, capsys):
    target = next(p for p in portfolio.iterdir() if p.name.startswith("accounts"))
    _refused(["validate", "--data", str(portfolio), "--rejects", str(target)], portfolio, capsys,
             "--rejects", "inside the portfolio folder", str(portfolio))  # fmt: skip


def test_validate_rejects_as_the_portfolio_folder_is_refused(portfolio, capsys):
    _refused(["validate", "--data", str(portfolio), "--rejects", str(portfolio)], portfolio,
             capsys, "is the portfolio folder")  # fmt: skip


def test_training_set_over_the_accounts_table_is_refused(portfolio, capsys, tmp_path):
    target = portfolio / "accounts.parquet"
    _refused(["build-training-set", "--data", str(portfolio), "--out", str(target)], portfolio,
             capsys, "--out", "inside the portfolio folder")  # fmt: skip


def test_training_set_spelled_through_dotdot_is_refused(portfolio, capsys):
    target = portfolio / ".." / portfolio.name / "training.parquet"
    _refused(["build-training-set", "--data", str(portfolio), "--out", str(target)], portfolio,
             capsys, "inside the portfolio folder")  # fmt: skip


def test_train_report_into_the_portfolio_is_refused(scoring_world, portfolio, capsys):
    _refused(["train", "--data", str(portfolio), "--out", str(portfolio)], portfolio, capsys,
             "is the portfolio folder")  # fmt: skip


def test_evaluate_report_inside_the_portfolio_is_refused(scoring_world, portfolio, capsys):
    _refused(["evaluate", "--model", scoring_world.model_uri, "--data", str(portfolio),
              "--out", str(portfolio / "evaluate")], portfolio, capsys,
             "inside the portfolio folder")  # fmt: skip
    assert not (portfolio / "evaluate").exists()


def test_score_into_a_table_folder_is_refused_and_leaves_no_lock(scoring_world, portfolio, capsys):
    _refused(["score", "--model", scoring_world.model_uri, "--data", str(portfolio),
              "--out", str(portfolio / "statements")], portfolio, capsys,
             "inside the portfolio folder")  # fmt: skip
    assert not (portfolio / "statements" / ".lock").exists()


def test_score_into_a_parent_of_the_portfolio_is_refused(scoring_world, portfolio, capsys):
    _refused(["score", "--model", scoring_world.model_uri, "--data", str(portfolio),
              "--out", str(portfolio.parent)], portfolio, capsys,
             "holds the portfolio folder")  # fmt: skip


def test_score_into_a_link_to_the_portfolio_is_refused(scoring_world, portfolio, capsys, tmp_path):
    link = tmp_path / "looks-elsewhere"
    link.symlink_to(portfolio, target_is_directory=True)
    _refused(["score", "--model", scoring_world.model_uri, "--data", str(portfolio),
              "--out", str(link)], portfolio, capsys, "is the portfolio folder")  # fmt: skip


def test_monitor_into_the_portfolio_is_refused(scoring_world, portfolio, capsys):
    _refused(["monitor", "--model", scoring_world.model_uri, "--data", str(portfolio),
              "--out", str(portfolio / "monitor")], portfolio, capsys,
             "inside the portfolio folder")  # fmt: skip
    assert not (portfolio / "monitor").exists()


def test_simulate_policy_into_the_portfolio_is_refused(portfolio, capsys, tmp_path):
    _refused(["simulate-policy", "--data", str(portfolio), "--scores", str(tmp_path / "scores"),
              "--out", str(portfolio / "policy")], portfolio, capsys,
             "inside the portfolio folder")  # fmt: skip


def test_report_into_the_portfolio_is_refused(portfolio, capsys, tmp_path):
    _refused(["report", "--data", str(portfolio), "--scores", str(tmp_path / "scores"),
              "--out", str(portfolio / "report.html")], portfolio, capsys,
             "inside the portfolio folder")  # fmt: skip


# --------------------------------------------------------------------------- --as-of outside the data


def test_score_as_of_after_the_latest_month_is_refused(scoring_world, portfolio, capsys, tmp_path):
    _, latest = _months(portfolio)
    out = tmp_path / "scores"
    _refused(["score", "--model", scoring_world.model_uri, "--data", str(portfolio),
              "--as-of", "2099-12-31", "--out", str(out)], portfolio, capsys,
             f"latest month with statements, {latest}", "the default would be")  # fmt: skip
    assert not out.exists()  # the folder the failed run made is gone, lock and all


def test_score_as_of_the_month_after_the_data_is_refused(
    scoring_world, portfolio, capsys, tmp_path
):
    _, latest = _months(portfolio)
    year, month = map(int, latest.split("-"))
    following = f"{year + month // 12}-{month % 12 + 1:02d}-15"
    _refused(["score", "--model", scoring_world.model_uri, "--data", str(portfolio),
              "--as-of", following, "--out", str(tmp_path / "scores")], portfolio, capsys,
             following, latest)  # fmt: skip
    assert not (tmp_path / "scores").exists()


def test_score_as_of_before_the_first_month_is_refused(scoring_world, portfolio, capsys, tmp_path):
    first, _ = _months(portfolio)
    _refused(["score", "--model", scoring_world.model_uri, "--data", str(portfolio),
              "--as-of", "1900-01-31", "--out", str(tmp_path / "scores")], portfolio, capsys,
             f"first month with statements, {first}", f"give an as-of from {first}-01 on")  # fmt: skip
    assert not (tmp_path / "scores").exists()


def test_score_as_of_before_any_statement_is_known_is_refused_without_a_traceback(
    scoring_world, portfolio, capsys, tmp_path
):
    """Found by a new user: the first day of the first month (no statement known yet) raised
    a polars error from the overdue-statement check."""
    first, _ = _months(portfolio)
    _refused(["score", "--model", scoring_world.model_uri, "--data", str(portfolio),
              "--as-of", f"{first}-01", "--out", str(tmp_path / "scores")], portfolio, capsys,
             f"at {first}-01: nothing to score")  # fmt: skip
    assert not (tmp_path / "scores").exists()


def test_monitor_as_of_after_the_latest_month_is_refused(
    scoring_world, portfolio, capsys, tmp_path
):
    _, latest = _months(portfolio)
    _refused(["monitor", "--model", scoring_world.model_uri, "--data", str(portfolio),
              "--as-of", "2099-12-31", "--out", str(tmp_path / "monitor")], portfolio, capsys,
             latest)  # fmt: skip


# --------------------------------------------------------------------------- the Python API's as-of


@pytest.fixture(scope="module")
def api_world(scoring_world):
    """The world's model and portfolio as the Python API loads them."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
        model = rollrisk.load_model(scoring_world.model_uri)
    return model, rollrisk.load_portfolio(scoring_world.portfolio)


def test_api_score_reads_an_iso_string_as_the_date(api_world):
    model, data = api_world
    by_default = rollrisk.score(model, data)
    as_of = by_default["as_of"][0]
    assert by_default.height > 0
    assert_frame_equal(rollrisk.score(model, data, as_of=as_of.isoformat()), by_default)


@pytest.mark.parametrize(
    ("as_of", "words"),
    [
        ("2025/06/30", "expected a date or a string YYYY-MM-DD"),
        ("2025-02-30", "is not a date"),
        (20250630, "expected a date or a string YYYY-MM-DD"),
        (datetime(2025, 6, 30, 12), "expected a date or a string YYYY-MM-DD"),
        (date(1900, 1, 31), "as_of 1900-01-31 is before the portfolio's first month"),
        ("2099-12-31", "as_of 2099-12-31 is after the portfolio's latest month"),
    ],
)
def test_api_score_refuses_an_as_of_it_cannot_use(api_world, as_of, words):
    model, data = api_world
    with pytest.raises(UserError, match=words):
        rollrisk.score(model, data, as_of=as_of)


def test_api_explain_refuses_an_as_of_after_the_data(api_world):
    model, data = api_world
    with pytest.raises(UserError, match="after the portfolio's latest month"):
        rollrisk.explain(model, data, as_of=date(2099, 12, 31))


def test_api_score_warns_as_the_batch_does_and_refuses_two_population_ranges(api_world):
    """rollrisk.score printed none of the batch's warnings (a history too short for the
    feature windows, a month passed over, overdue statements), and with a scoring setup it
    ignored a population range given beside it."""
    model, data = api_world
    early = data.statements["cycle_end"].min()
    as_of = date(early.year + (early.month + 1) // 12, (early.month + 1) % 12 + 1, 1)
    as_of = date.fromordinal(as_of.toordinal() - 1)  # the month-end two months in
    with pytest.warns(rollrisk.RollriskWarning, match="feature windows hold 2 months"):
        rollrisk.score(model, data, as_of=as_of)
    setup = rollrisk.scoring_setup(model)
    with pytest.raises(UserError, match=r"give it to scoring_setup\(model, observation"):
        rollrisk.score(setup, data, observation=ObservationSpec(min_dpd=31))


def test_api_explain_refuses_a_missing_table_as_score_does(api_world):
    """explain() on a portfolio without the collection actions the model was trained with
    explained it: 190 of 512 reasons changed to facts that were not so ("no collection attempt
    in the last 3 months"); score() refused the same portfolio."""
    model, data = api_world
    without = dataclasses.replace(data, collection_actions=None)
    for call in (rollrisk.score, rollrisk.explain):
        with pytest.raises(UserError, match="has no collection_actions") as refused:
            call(model, without)
        # the way round is named as this API takes it, not as the CLI's flag
        assert "scoring_setup(model, allow_missing_tables=...)" in str(refused.value)
        assert "--allow-missing-table" not in str(refused.value)
    allowed = rollrisk.scoring_setup(model, allow_missing_tables=["collection_actions"])
    scored = rollrisk.score(allowed, without)
    assert (
        scored.height and scored["reasons"].str.contains("collection actions were not given").any()
    )


def test_api_explain_keys_a_training_sets_rows_by_account_and_as_of(api_world):
    """explain() on a training set gave no as-of and its reasons no row key: an account's
    reasons at two as-of dates could not be told apart, and a join on account_id multiplied
    rows (a helper's (account_id, rank) repeated up to 13 times)."""
    model, data = api_world
    dates = rollrisk.training_as_of_dates(data)[-2:]
    rows = rollrisk.build_training_set(data, as_of_dates=dates)
    explained = rollrisk.explain(model, rows)
    keys = explained.contributions[["account_id", "as_of"]]
    assert (
        list(keys.itertuples(index=False, name=None)) == rows.select("account_id", "as_of").rows()
    )
    assert not explained.reasons.duplicated(["account_id", "as_of", "rank"]).any()
    assert set(explained.reasons["as_of"]) == set(dates)
    assert list(explained.families.columns[:2]) == ["account_id", "as_of"]
    on_book = rollrisk.explain(model, data, as_of=dates[-1])
    assert set(on_book.reasons["as_of"]) == {dates[-1]}
