"""One model, one currency: amounts are in the account's currency, so a model is never applied
to accounts in another one, nor trained on a mix (docs/data-contract.md, `currency`).

The scoring world's book is all CNY; the tests switch a few accounts to USD and HKD."""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rollrisk.cli import main
from rollrisk.serving.app import create_app
from rollrisk.serving.request_scoring import request_body
from rollrisk.storage.atomic_output import read_current
from rollrisk.storage.loader import load_portfolio
from tests.conftest import MIXED_AS_OF, model_files

pytestmark = pytest.mark.slow
AS_OF = MIXED_AS_OF  # the as-of of the mixed book (tests/conftest.py)
KEY = "test-key-0123456789abcdef"


def _score(model: str, data: Path, out: Path, *extra: str) -> int:
    return main(
        ["score", "--model", model, "--data", str(data), "--as-of", AS_OF, "--out", str(out),
         *extra]
    )  # fmt: skip


def test_score_refuses_accounts_in_another_currency_before_scoring(
    scoring_world, mixed_book, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    out = tmp_path / "scores"
    assert _score(scoring_world.model_uri, mixed_book.folder, out) == 2
    err = capsys.readouterr().err
    usd = ", ".join(mixed_book.usd[:3])
    assert (
        f"rollrisk score: error: model rollrisk-test v1 was trained on accounts in CNY, but 5 of "
        f"the {len(mixed_book.people):,} accounts of {mixed_book.folder} to score at {AS_OF} are "
        f"in other currencies: USD (4 accounts, e.g. {usd}, ...), HKD (1 account, e.g. "
        f"{mixed_book.hkd[0]}); their amounts (balances, dues, payments, limits) would be read "
        "as CNY and the scores would be wrong: score them with a model trained on their "
        "currency, or convert their amounts to CNY first"
    ) in err
    assert "Traceback" not in err
    assert not out.exists()  # refused before scoring: nothing written, nothing published


def test_the_python_api_refuses_the_same_accounts(scoring_world, mixed_book, monkeypatch):
    from rollrisk.api import load_model, load_portfolio, score
    from rollrisk.errors import UserError

    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    model = load_model(scoring_world.model_uri)
    assert model.metadata["currency"] == "CNY"  # what train recorded
    with pytest.raises(UserError, match=r"but 5 of the [\d,]+ accounts of the portfolio"):
        score(model, load_portfolio(mixed_book.folder), as_of=AS_OF)


def test_train_refuses_a_training_set_mixing_currencies_before_fitting(
    mixed_book, tmp_path, monkeypatch, capsys
):
    from rollrisk.api import build_training_set
    from rollrisk.features.currencies import currency_counts

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    argv = ["train", "--data", str(mixed_book.folder), "--out", str(tmp_path / "train")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    # the accounts of the training set the job built, per currency, most first
    portfolio = load_portfolio(mixed_book.folder)
    ids = build_training_set(portfolio)["account_id"].unique()
    counts = currency_counts(portfolio.accounts, ids)
    assert counts["currency"][0] == "CNY" and set(counts["currency"]) == {"CNY", "USD", "HKD"}
    listed = ", ".join(
        f"{code} ({n:,} account{'s' if n != 1 else ''})"
        for code, n in counts.select("currency", "accounts").iter_rows()
    )
    assert (
        f"rollrisk train: error: the training set's accounts hold 3 currencies: {listed}; the "
        "amount features (balances, dues, payments, limits, overdue amounts) are in each "
        "account's currency, so one model would learn them on mixed scales: train one model "
        "per currency (a portfolio folder each), or convert the amounts to one currency first"
    ) in err
    assert re.search(rf"training set: \d+ rows, {len(ids)} accounts", err)
    assert "training LightGBM" not in err and "Traceback" not in err  # nothing was fitted


def test_the_service_refuses_an_account_in_another_currency_with_422(
    world_setup, world_portfolio, mixed_book
):
    portfolio = world_portfolio
    ids = mixed_book.people[:3]
    body = request_body(
        portfolio.accounts,
        portfolio.statements,
        portfolio.collection_actions,
        portfolio.treatments,
        ids,
        date.fromisoformat(AS_OF),
    )
    app = create_app(setup=world_setup, api_key=KEY, model_uri="models:/rollrisk-test@challenger")
    with TestClient(app) as client:
        assert client.post("/v1/score", json=body, headers={"X-API-Key": KEY}).status_code == 200
        body["accounts"][1]["currency"] = "USD"
        response = client.post("/v1/score", json=body, headers={"X-API-Key": KEY})
    assert response.status_code == 422, response.text
    account = body["accounts"][1]["account_id"]
    assert response.json()["detail"] == [
        {
            "loc": ["body", "accounts", 1, "currency"],
            "msg": f"account {account} is in USD, but model rollrisk-test v1 was trained on "
            "accounts in CNY: its amounts (balances, dues, payments, limits) would be read as "
            "CNY and its score would be wrong; score it with a model trained on USD, or "
            "convert its amounts to CNY first",
            "type": "currency_mismatch",
        }
    ]


def test_a_model_that_does_not_record_its_currency_scores_with_one_warning(
    scoring_world, mixed_book, tmp_path, monkeypatch, capsys
):
    """A model logged before the currency was recorded: scored as before (the mixed book too,
    it cannot be checked), with a warning that the check was skipped."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    old = tmp_path / "old-model"
    shutil.copytree(model_files(scoring_world), old)
    described = (old / "MLmodel").read_text()
    assert "  currency: CNY\n" in described
    (old / "MLmodel").write_text(described.replace("  currency: CNY\n", ""))

    assert _score(str(old), mixed_book.folder, tmp_path / "scores") == 0
    err = capsys.readouterr().err
    warning = (
        "WARNING: the unregistered model does not record the currency of its training accounts "
        "(logged before rollrisk recorded it), so the accounts' currency was not checked "
        "against it; retrain it to have it checked"
    )
    assert err.count(warning) == 1
    manifest, scored = read_current(tmp_path / "scores")
    assert manifest["warnings"] == [warning.removeprefix("WARNING: ")]
    assert scored.height == len(mixed_book.people)


@pytest.mark.parametrize("command", ["monitor", "evaluate"])
def test_monitor_and_evaluate_refuse_accounts_in_another_currency(
    command, scoring_world, mixed_book, tmp_path, monkeypatch, capsys
):
    """Measured or monitored on amounts read in another currency, a model would look worse, or
    drift and alert, for no reason of its own."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    out = tmp_path / command
    argv = [command, "--model", scoring_world.model_uri, "--data", str(mixed_book.folder),
            "--out", str(out)]  # fmt: skip
    if command == "monitor":
        argv += ["--as-of", AS_OF]
    assert main(argv) == 2
    err = capsys.readouterr().err
    where = f"to monitor at {AS_OF}" if command == "monitor" else "to evaluate on"
    assert re.search(
        rf"rollrisk {command}: error: model rollrisk-test v1 was trained on accounts in CNY, "
        rf"but \d+ of the [\d,]+ accounts of {re.escape(str(mixed_book.folder))} {where} are in "
        r"other currencies: ",
        err,
    ), err
    assert "HKD (1 account, e.g. " in err and "USD (" in err
    assert "Traceback" not in err
    assert not (out / "report.html").exists()


def test_monitor_of_a_book_in_the_models_currency_is_not_refused(
    scoring_world, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    argv = ["monitor", "--model", scoring_world.model_uri, "--data",
            str(scoring_world.portfolio), "--as-of", AS_OF, "--out", str(tmp_path / "m")]  # fmt: skip
    main(argv)
    err = capsys.readouterr().err
    assert "currencies" not in err and "currency" not in err
