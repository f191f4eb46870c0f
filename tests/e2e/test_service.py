"""The scoring service (`rollrisk serve`): same answers as the batch, safe at its boundary.

In-process (FastAPI's TestClient over ASGI): no port is opened, nothing leaves the process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
import time
from datetime import date

import httpx
import polars as pl
import pytest
from fastapi.testclient import TestClient

from rollrisk.cli import main
from rollrisk.features.observations import dpd_at_as_of
from rollrisk.scoring.core import SCORED_SCHEMA, population
from rollrisk.serving.api_models import ScoredAccount, ScoreRequest, ScoreResponse
from rollrisk.serving.app import create_app, shown_model_uri
from rollrisk.serving.request_scoring import (
    batch_key,
    request_body,
    request_tables,
    score_request,
    score_requests,
)
from rollrisk.storage.atomic_output import read_current
from rollrisk.storage.loader import load_portfolio

AS_OF = date(2025, 3, 31)
MID_MONTH = date(2025, 3, 14)  # between billing days: some accounts billed this month, some not
KEY = "test-key-0123456789abcdef"
HEADERS = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def portfolio(scoring_world):
    return load_portfolio(scoring_world.portfolio)


@pytest.fixture
def client(world_setup):
    app = create_app(setup=world_setup, api_key=KEY, model_uri="models:/rollrisk-test@challenger")
    with TestClient(app) as test_client:
        yield test_client


def _body(portfolio, account_ids: list[str], as_of: date = AS_OF) -> dict:
    return request_body(
        portfolio.accounts,
        portfolio.statements,
        portfolio.collection_actions,
        portfolio.treatments,
        account_ids,
        as_of,
    )


def _dpd_at(portfolio, as_of: date) -> pl.DataFrame:
    """Each account's DPD at the as-of, aged from its latest known statement (to pick test
    accounts: current ones and ones past the population's range)."""
    return dpd_at_as_of(portfolio.statements, as_of).rename({"dpd_at_as_of": "dpd"})


@pytest.mark.slow
@pytest.mark.parametrize("as_of", [AS_OF, MID_MONTH], ids=["month-end", "mid-month"])
def test_service_returns_exactly_what_batch_scoring_returns(
    scoring_world, portfolio, client, tmp_path, monkeypatch, as_of
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    argv = ["score", "--model", scoring_world.model_uri, "--data", str(scoring_world.portfolio),
            "--as-of", as_of.isoformat(), "--out", str(tmp_path / "scores")]  # fmt: skip
    assert main(argv) == 0
    _, batch = read_current(tmp_path / "scores")
    assert batch["as_of"].unique().to_list() == [as_of]

    dpd = _dpd_at(portfolio, as_of)
    delinquent = batch["account_id"].sort().to_list()[:40]
    current = dpd.filter(pl.col("dpd") == 0)["account_id"].to_list()[:3]
    defaulted = dpd.filter(pl.col("dpd") >= 90)["account_id"].to_list()[:2]
    assert len(delinquent) == 40 and len(current) == 3 and len(defaulted) == 2
    body = _body(portfolio, delinquent + current + defaulted, as_of=as_of)
    response = client.post("/v1/score", json=body, headers=HEADERS)
    assert response.status_code == 200, response.text
    result = response.json()

    served = {row["account_id"]: row for row in result["scored"]}
    assert sorted(served) == delinquent  # every delinquent account, once
    expected = {row["account_id"]: row for row in batch.iter_rows(named=True)}
    for account_id, row in served.items():
        want = expected[account_id]
        assert set(row) == {*SCORED_SCHEMA, "warnings"}
        assert row["warnings"] == []  # the whole history sent: nothing to warn about
        for column, value in want.items():
            if column in ("actions", "trail", "reasons"):
                assert row[column] == json.loads(value), (account_id, column)
            elif SCORED_SCHEMA[column] == pl.Float64():
                assert row[column] == pytest.approx(value, abs=1e-12), (account_id, column)
            elif column == "as_of":
                assert row[column] == value.isoformat()
            else:
                assert row[column] == value, (account_id, column)

    not_scored = {entry["account_id"]: entry for entry in result["not_scored"]}
    assert sorted(not_scored) == sorted(current + defaulted)  # never silently dropped
    for account_id in current:
        assert not_scored[account_id]["reason"].startswith("current: DPD 0")
    for account_id in defaulted:
        assert not_scored[account_id]["dpd_at_as_of"] >= 90
        assert "above the population's 89" in not_scored[account_id]["reason"]
    assert result["model"] == {"name": "rollrisk-test", "version": "1"}


def test_scored_account_model_has_every_column_of_the_batch_output():
    assert list(ScoredAccount.model_fields) == [*SCORED_SCHEMA, "warnings"]


def test_a_history_cut_short_is_scored_with_a_warning(scoring_world, portfolio, client):
    """A client that sends only an account's latest statements gets a score from a fraction of
    its history (the batch warns of a short extract; the service warns per account)."""
    dpd = _dpd_at(portfolio, AS_OF)
    opened_early = portfolio.accounts.filter(pl.col("opened_at") < date(2024, 1, 1))
    delinquent = dpd.filter(pl.col("dpd").is_between(1, 89)).join(opened_early, on="account_id")
    account_id = delinquent["account_id"].sort()[0]
    body = _body(portfolio, [account_id])
    (account,) = body["accounts"]
    assert account["opened_at"] < account["statements"][0]["cycle_end"][:7]  # opened earlier
    known = [s for s in account["statements"] if s["cycle_end"] <= AS_OF.isoformat()]
    account["statements"] = sorted(known, key=lambda s: s["cycle_end"])[-2:]
    response = client.post("/v1/score", json=body, headers=HEADERS)
    assert response.status_code == 200, response.text
    (row,) = response.json()["scored"]
    (warning,) = row["warnings"]
    assert "hold 2 months of history" in warning and "send them" in warning


def test_an_account_without_a_recent_statement_is_listed_with_the_reason(portfolio, client):
    account_id = portfolio.accounts["account_id"][0]
    body = _body(portfolio, [account_id], as_of=date(2023, 1, 31))  # before any statement
    response = client.post("/v1/score", json=body, headers=HEADERS)
    assert response.status_code == 200, response.text
    assert response.json()["scored"] == []
    [entry] = response.json()["not_scored"]
    assert entry["account_id"] == account_id
    assert entry["dpd_at_as_of"] is None
    assert "no statement known at the as-of" in entry["reason"]


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong-key-0123456789"}, {"X-API-Key": ""}])
def test_requests_without_the_right_key_get_401_before_the_body_is_read(client, headers):
    for method, path, kwargs in (
        ("post", "/v1/score", {"content": b"{not json"}),
        ("get", "/v1/model", {}),
    ):
        response = getattr(client, method)(path, headers=headers, **kwargs)
        assert response.status_code == 401
        assert "X-API-Key" in response.json()["detail"]
    assert client.get("/healthz", headers=headers).status_code == 200  # probes need no key


def _errors(response) -> dict[tuple, str]:
    assert response.status_code == 422, response.text
    return {tuple(error["loc"]): error["msg"] for error in response.json()["detail"]}


def test_malformed_bodies_get_422_with_the_path_of_every_bad_field(portfolio, client):
    body = _body(portfolio, portfolio.accounts["account_id"].to_list()[:2])
    first, second = body["accounts"]
    first["statements"][0]["amount_due"] = "a lot"  # wrong type
    del first["currency"]  # missing field
    second["product"] = "mortgage"  # bad enum
    second["statements"][1]["amount_paid"] = -5.0  # negative amount
    response = client.post("/v1/score", json=body, headers=HEADERS)
    errors = _errors(response)
    assert set(errors) == {
        ("body", "accounts", 0, "statements", 0, "amount_due"),
        ("body", "accounts", 0, "currency"),
        ("body", "accounts", 1, "product"),
        ("body", "accounts", 1, "statements", 1, "amount_paid"),
    }
    assert (
        "expected a number, got text"
        in errors[("body", "accounts", 0, "statements", 0, "amount_due")]
    )
    assert (
        "greater than or equal to 0"
        in errors[("body", "accounts", 1, "statements", 1, "amount_paid")]
    )
    assert "a lot" not in response.text  # values are not echoed back


def test_invalid_json_timezone_and_as_of_are_422(portfolio, client):
    errors = _errors(client.post("/v1/score", content=b"{", headers=HEADERS))
    assert any(loc[0] == "body" for loc in errors)

    body = _body(portfolio, portfolio.accounts["account_id"].to_list()[:1])
    body["as_of"] = "2025-02-30"
    errors = _errors(client.post("/v1/score", json=body, headers=HEADERS))
    assert "valid date" in errors[("body", "as_of")]
    body["as_of"] = "2025-03-17"  # any day of the month is an as-of
    assert client.post("/v1/score", json=body, headers=HEADERS).status_code == 200
    body["accounts"][0]["statements"][0]["known_at"] = "2024-02-01T06:00:00+08:00"
    errors = _errors(client.post("/v1/score", json=body, headers=HEADERS))
    assert "time-zone offset" in errors[("body", "accounts", 0, "statements", 0, "known_at")]


def test_text_that_is_not_a_date_is_described_never_echoed(portfolio, client):
    """Found by an attacker: a note typed into a date field came back in the message ("got
    'secret-borrower-note 13800138000'"), where the docs say values are not echoed; and a
    date given with an offset was told to be a naive timestamp."""
    body = _body(portfolio, portfolio.accounts["account_id"].to_list()[:1])
    account = body["accounts"][0]
    account["statements"][0]["known_at"] = "note 13800138000"
    account["opened_at"] = "13800138000"
    body["as_of"] = "2025-03-31 10:00:00+08:00"
    response = client.post("/v1/score", json=body, headers=HEADERS)
    assert "13800138000" not in response.text and "note" not in response.text
    errors = _errors(response)
    assert (
        "got text of another form (16 characters)"
        in errors[("body", "accounts", 0, "statements", 0, "known_at")]
    )
    assert errors[("body", "as_of")] == (
        "Value error, expected a date written YYYY-MM-DD, got a timestamp with a time-zone offset"
    )
    body = _body(portfolio, portfolio.accounts["account_id"].to_list()[:1])
    body["as_of"] = 20250331
    assert (
        "got a number"
        in _errors(client.post("/v1/score", json=body, headers=HEADERS))[("body", "as_of")]
    )
    body["as_of"] = "2025-03-31"
    body["accounts"][0]["opened_at"] = "1949-12-31"  # the bounds, in words (not a Python repr)
    assert (
        _errors(client.post("/v1/score", json=body, headers=HEADERS))[
            ("body", "accounts", 0, "opened_at")
        ]
        == "Value error, expected a day from 1950-01-01 to 2199-12-31, got 1949-12-31"
    )


def test_request_tables_have_contract_dtypes_and_none_for_absent_tables(portfolio):
    body = _body(portfolio, portfolio.accounts["account_id"].to_list()[:3])
    for account in body["accounts"]:
        account.pop("treatments")
    tables = request_tables(ScoreRequest.model_validate(body).accounts)
    assert tables.treatments is None
    assert tables.collection_actions is not None
    assert tables.statements.schema == portfolio.statements.select(tables.statements.columns).schema
    expected = portfolio.statements.filter(
        pl.col("account_id").is_in(portfolio.accounts["account_id"][:3].implode())
    )
    assert tables.statements.height == expected.height


def test_an_oversized_body_gets_413(world_setup):
    app = create_app(setup=world_setup, api_key=KEY, max_body_bytes=2_000)
    with TestClient(app) as small:
        response = small.post("/v1/score", content=b"x" * 2_001, headers=HEADERS)
        assert response.status_code == 413
        assert "larger than 2000 bytes" in response.json()["detail"]

        def chunks():  # no Content-Length: the limit is enforced while reading
            for _ in range(5):
                yield b"x" * 1_000

        response = small.post("/v1/score", content=chunks(), headers=HEADERS)
        assert response.status_code == 413


def test_readyz_is_false_until_the_model_is_loaded(world_setup):
    release = threading.Event()
    calls = []

    def slow_loader():
        calls.append(time.monotonic())
        assert release.wait(timeout=30)
        return world_setup

    app = create_app(slow_loader, api_key=KEY)
    assert calls == []  # nothing is loaded when the app is built
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {"ready": False, "detail": "model is loading"}
        assert client.get("/v1/model", headers=HEADERS).status_code == 503
        release.set()
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        response = client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["ready"] is True
    assert len(calls) == 1


def test_a_failed_load_is_reported_by_readyz_and_the_callback():
    failures = []

    def broken_loader():
        raise RuntimeError("no such model")

    app = create_app(broken_loader, api_key=KEY, on_load_failure=failures.append)
    with TestClient(app) as client:
        deadline = time.monotonic() + 10
        while not failures and time.monotonic() < deadline:
            time.sleep(0.01)
        response = client.get("/readyz")
    assert failures == ["RuntimeError('no such model')"]  # the reason, for the CLI and the log
    assert response.status_code == 503
    # /readyz needs no key: the kind of failure only (a reason may name the server's paths)
    assert response.json()["detail"] == (
        "model failed to load (RuntimeError); the reason is in the service's log"
    )


def test_a_model_loaded_from_a_path_is_shown_by_its_last_part():
    assert shown_model_uri("models:/rollrisk-test@challenger") == "models:/rollrisk-test@challenger"
    assert shown_model_uri("runs:/0123abcd/model") == "runs:/0123abcd/model"
    assert shown_model_uri("/srv/rollrisk/models/roll-v3") == "roll-v3"
    assert shown_model_uri("file:///srv/rollrisk/models/roll-v3/") == "roll-v3"
    assert shown_model_uri("") == ""


def test_unknown_paths_and_methods_get_404_and_405_as_documented(client):
    assert client.get("/v1/nothing", headers=HEADERS).status_code == 404
    response = client.get("/v1/score", headers=HEADERS)
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
    bad_length = client.post("/v1/score", content=b"{}", headers={**HEADERS, "Content-Length": "x"})
    assert bad_length.status_code == 400
    assert bad_length.json() == {"detail": "Content-Length must be a whole number"}


def test_model_endpoint_names_the_model_and_its_feature_set(client, world_setup):
    response = client.get("/v1/model", headers=HEADERS)
    assert response.status_code == 200
    info = response.json()
    assert (info["name"], info["version"]) == ("rollrisk-test", "1")
    assert info["uri"] == "models:/rollrisk-test@challenger"
    assert info["feature_set"] == world_setup.feature_set.name
    assert [f["name"] for f in info["features"]] == world_setup.feature_set.names
    assert info["observation"]["max_dpd"] == 89


def test_logs_hold_no_borrower_data(portfolio, client, caplog):
    account_id = portfolio.accounts["account_id"][7]
    borrower_id = portfolio.accounts["borrower_id"][7]
    body = _body(portfolio, [account_id])
    with caplog.at_level(logging.DEBUG):
        assert client.post("/v1/score", json=body, headers=HEADERS).status_code == 200
        body["accounts"][0]["product"] = "mortgage"
        assert client.post("/v1/score", json=body, headers=HEADERS).status_code == 422
        client.get(f"/v1/accounts/{account_id}", headers=HEADERS)  # an id in an unknown path
    # the service's records (not the test client's own, which logs the URLs it calls)
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    assert "route=/v1/score status=200" in text and "accounts=1" in text
    assert "status=422" in text and "status=404" in text
    assert account_id not in text and borrower_id not in text


def test_an_empty_api_key_is_refused():
    with pytest.raises(ValueError, match="api_key must not be empty"):
        create_app(lambda: None, api_key="")


def test_serve_refuses_to_start_without_a_key(monkeypatch, capsys):
    monkeypatch.delenv("ROLLRISK_API_KEY", raising=False)
    assert main(["serve", "--port", "8799"]) == 2
    assert "ROLLRISK_API_KEY" in capsys.readouterr().err
    monkeypatch.setenv("ROLLRISK_API_KEY", "short")
    assert main(["serve", "--port", "8799"]) == 2
    assert "use at least 16" in capsys.readouterr().err
    # found by an attacker: 20 blanks passed (a header value's ends are trimmed in transit)
    for blank in (" " * 20, "a-key-of-enough-length "):
        monkeypatch.setenv("ROLLRISK_API_KEY", blank)
        assert main(["serve", "--port", "8799"]) == 2
        assert "white space" in capsys.readouterr().err
    for unsendable in ("ключ" * 5, "abcdefghij\x01klmnopqrst"):  # outside printable ASCII
        monkeypatch.setenv("ROLLRISK_API_KEY", unsendable)
        assert main(["serve", "--port", "8799"]) == 2
        assert "outside printable ASCII" in capsys.readouterr().err


def test_serve_says_when_it_cannot_listen(monkeypatch, capsys):
    """Found by an attacker: a port in use ended `rollrisk serve` with uvicorn's exit code 3,
    which no document names (and which `rollrisk monitor` uses for an alert)."""
    import socket
    import threading

    import rollrisk.arguments
    from rollrisk.errors import UserError

    done = threading.Event()

    def slow_load(args):  # the port is found taken first, whatever the model
        done.wait(timeout=60)
        raise UserError("the test is over")

    monkeypatch.setattr(rollrisk.arguments, "setup_from_arguments", slow_load)
    monkeypatch.setenv("ROLLRISK_API_KEY", "a-key-of-enough-length")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port), "--model", "models:/any@champion"]) == 2
    done.set()
    assert f"could not listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_serve_sets_openmp_before_anything_loads_it():
    """OpenMP reads OMP_NUM_THREADS and OMP_WAIT_POLICY once, when LightGBM or the explanation
    kernel first loads it: building `rollrisk serve`'s parser must load neither, so that
    `run` can set them (spinning OpenMP threads slowed each request by a third)."""
    import subprocess
    import sys

    code = (
        "import argparse, sys; import rollrisk.cli; from rollrisk.pipelines import serve; "
        "serve.add_arguments(argparse.ArgumentParser()); "
        "print(sorted(m for m in ('lightgbm', 'numba') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(world_setup):
    """Property-based requests from the OpenAPI spec, valid and invalid: never a 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    app = create_app(setup=world_setup, api_key=KEY)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    server_errors: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        modes = [GenerationMode.POSITIVE]
        if operation.method.upper() == "POST":  # only a body can be made invalid
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @settings(
                max_examples=25,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case) -> None:
                response = case.call(headers=HEADERS)
                if response.status_code >= 500:
                    server_errors.append(f"{case.method} {case.path}: {response.status_code}")

            call()
    assert server_errors == []


@pytest.mark.slow
def test_valid_but_extreme_histories_are_scored_or_refused_never_a_server_error(
    portfolio, world_setup
):
    """Schemathesis rarely builds a body that passes every rule; this drives the scoring code
    itself with contract-valid extremes (edge DPDs, huge and tiny amounts, distant dates)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    delinquent = _dpd_at(portfolio, AS_OF).filter(pl.col("dpd") > 0)["account_id"][0]
    template = _body(portfolio, [delinquent])
    amounts = st.sampled_from([0.0, 1e-9, 0.01, 1e6, 1e15])
    as_ofs = st.sampled_from(
        ["1950-01-01", "1950-01-31", "2024-02-29", "2025-03-01", "2025-03-14", "2025-03-31",
         "2199-12-31"]
    )  # fmt: skip
    app = create_app(setup=world_setup, api_key=KEY)

    @settings(max_examples=30, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(
        as_of=as_ofs,
        dpd=st.sampled_from([0, 1, 29, 30, 89, 90, 3650]),
        balance=amounts,
        paid=amounts,
        limit=st.sampled_from([1e-9, 1.0, 1e15]),
        opened=st.sampled_from(["1950-01-01", "2025-03-31", "2199-12-31"]),
        drop_history=st.booleans(),
    )
    def post(as_of, dpd, balance, paid, limit, opened, drop_history) -> None:
        body = json.loads(json.dumps(template))
        body["as_of"] = as_of
        account = body["accounts"][0]
        account["credit_limit"] = limit
        account["opened_at"] = opened
        for statement in account["statements"]:
            statement.update(dpd=dpd, balance=balance, amount_paid=paid)
        if drop_history:
            account["collection_actions"] = []
            account["treatments"] = None
        response = client.post("/v1/score", json=body, headers=HEADERS)
        assert response.status_code in (200, 422), response.text

    with TestClient(app) as client:
        post()


def _request(portfolio, account_ids: list[str], as_of: date = AS_OF) -> ScoreRequest:
    return ScoreRequest.model_validate(_body(portfolio, account_ids, as_of))


def test_requests_scored_in_one_batch_get_exactly_what_each_gets_alone(portfolio, world_setup):
    dpd = _dpd_at(portfolio, AS_OF)
    delinquent = dpd.filter(pl.col("dpd").is_between(1, 89))["account_id"].to_list()
    current = dpd.filter(pl.col("dpd") == 0)["account_id"].to_list()
    # one account, several, one with a current account (not scored), one with only current
    groups = [delinquent[:1], delinquent[1:6], [delinquent[6], current[0]], current[1:3]]
    requests = [_request(portfolio, ids) for ids in groups]
    together = score_requests(requests, world_setup)
    alone = [score_request(request, world_setup) for request in requests]
    for batched, single in zip(together, alone, strict=True):
        for key in batched:
            if key != "scored":
                assert batched[key] == single[key], key
        for row_b, row_s in zip(batched["scored"], single["scored"], strict=True):
            assert {k: (v, row_s[k]) for k, v in row_b.items() if row_s[k] != v} == {}, row_b[
                "account_id"
            ]
    assert together == alone
    assert [len(r["scored"]) for r in together] == [1, 5, 1, 0]
    assert [len(r["not_scored"]) for r in together] == [0, 0, 1, 2]


def test_requests_that_cannot_share_a_batch_are_refused_by_the_batch_scorer(portfolio, world_setup):
    ids = portfolio.accounts["account_id"].to_list()
    with pytest.raises(ValueError, match="share as-of and tables"):
        score_requests(
            [_request(portfolio, ids[:1]), _request(portfolio, ids[1:2], date(2025, 2, 28))],
            world_setup,
        )
    with pytest.raises(ValueError, match="is in two requests of a batch"):
        score_requests([_request(portfolio, ids[:2]), _request(portfolio, ids[1:3])], world_setup)


def test_batch_key_separates_requests_with_and_without_an_action_log(portfolio):
    ids = portfolio.accounts["account_id"].to_list()[:2]
    with_log = _body(portfolio, ids)
    without_log = _body(portfolio, ids)
    for account in without_log["accounts"]:
        account.pop("collection_actions")
    keys = {batch_key(ScoreRequest.model_validate(body)) for body in (with_log, without_log)}
    assert keys == {(AS_OF, True, True), (AS_OF, False, True)}


def test_concurrent_http_requests_each_get_their_own_answer(portfolio, world_setup):
    """Twelve requests at once over the ASGI app: the later ones queue behind the first and are
    batched; every response equals that request's answer scored alone."""
    dpd = _dpd_at(portfolio, AS_OF)
    delinquent = dpd.filter(pl.col("dpd").is_between(1, 89))["account_id"].to_list()
    bodies = [_body(portfolio, delinquent[i : i + 2]) for i in range(0, 24, 2)]
    bodies.append(_body(portfolio, delinquent[:2]))  # the first request's accounts again
    app = create_app(setup=world_setup, api_key=KEY)

    async def post_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            return await asyncio.gather(
                *(client.post("/v1/score", json=body, headers=HEADERS) for body in bodies)
            )

    responses = asyncio.run(post_all())
    assert [r.status_code for r in responses] == [200] * len(bodies)
    for body, response in zip(bodies, responses, strict=True):
        alone = score_request(ScoreRequest.model_validate(body), world_setup)
        assert response.json() == json.loads(ScoreResponse.model_validate(alone).model_dump_json())
    batcher = app.state.batcher
    assert batcher.batches < len(bodies)  # some requests were scored together


def test_a_request_without_a_table_the_model_learnt_from_says_so(portfolio, world_setup):
    """Found by an attacker: with `--allow-missing-table` a request without its collection
    actions moved a probability 5x with `warnings: []`, and its reasons read "no contact
    reached the borrower" for a borrower whose contacts were simply not sent."""
    allowing = dataclasses.replace(
        world_setup, allowed_missing_tables=frozenset({"collection_actions", "treatments"})
    )
    app = create_app(setup=allowing, api_key=KEY, model_uri="models:/rollrisk-test@challenger")
    delinquent = population(portfolio.statements, AS_OF, world_setup.observation)["account_id"]
    delinquent = delinquent.to_list()[:30]
    body = _body(portfolio, delinquent)
    with TestClient(app) as client:
        info = client.get("/v1/model", headers=HEADERS).json()
        assert info["allowed_missing_tables"] == ["collection_actions", "treatments"]
        full = client.post("/v1/score", json=body, headers=HEADERS).json()["scored"]
        assert all(row["warnings"] == [] for row in full)
        for account in body["accounts"]:
            account.pop("collection_actions", None)
            account.pop("treatments", None)
        bare = client.post("/v1/score", json=body, headers=HEADERS).json()["scored"]
    assert len(bare) == len(full) == 30
    from_tables = {spec.name for spec in world_setup.feature_set.features
                   if spec.source in ("collection_actions", "treatments")}  # fmt: skip
    quoted = 0
    for row in bare:
        assert row["warnings"] == [
            "scored without its collection_actions and treatments, which the model was trained "
            "with (the service runs with --allow-missing-table): the features from them are "
            "missing, so the probability, segment and treatment can differ from a score with them"
        ]
        for reason in row["reasons"]:
            if reason["feature"] in from_tables:
                quoted += 1
                assert "not known, the " in reason["text_en"], reason
                assert "未知（未提供" in reason["text_zh"], reason
    assert quoted, "no reason quotes a feature of a table left out: nothing was checked"


def test_a_key_given_twice_in_the_body_is_refused(portfolio, client):
    """Found by an attacker: JSON readers keep the last of two equal keys without a word; an
    `as_of` given twice was scored at the second date, and a second `accounts` list was
    answered alone, the first list's accounts never named."""
    body = json.dumps(_body(portfolio, [portfolio.accounts["account_id"][3]]))
    twice = body.replace('{"as_of": ', '{"as_of": "2024-01-31", "as_of": ', 1)
    assert twice != body
    response = client.post(
        "/v1/score", content=twice, headers={**HEADERS, "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["type"] == "duplicate_key"
    assert "key 'as_of' is given twice in one object" in problem["msg"]
    account = json.loads(body)["accounts"][0]
    nested = body.replace('"product": ', '"product": "bnpl", "product": ', 1)
    response = client.post(
        "/v1/score", content=nested, headers={**HEADERS, "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    # where, as a path (found by an attacker: "in one object (account 'A-1')", no place)
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "accounts", 0, "product"], problem
    assert account["account_id"] not in problem["msg"]
    deeper = body.replace('"dpd": ', '"dpd": 0, "dpd": ', 2)  # the first statement's is first
    assert deeper.count('"dpd": 0, "dpd": ') == 2
    response = client.post(
        "/v1/score", content=deeper, headers={**HEADERS, "Content-Type": "application/json"}
    )
    assert response.json()["detail"][0]["loc"] == ["body", "accounts", 0, "statements", 0, "dpd"]
    plain = client.post(
        "/v1/score", content=body, headers={**HEADERS, "Content-Type": "application/json"}
    )
    assert plain.status_code == 200, plain.text


def test_an_account_sent_without_its_latest_statement_is_warned_of(portfolio, client, world_setup):
    """Found by an attacker: a request without the account's latest statement was scored from
    the one before, its DPD aged a month further (M2 instead of M1), with `warnings: []`,
    where the batch warns of the same extract."""
    people = population(portfolio.statements, AS_OF, world_setup.observation)["account_id"]
    for account_id in people.to_list():  # one past due at its two latest statements
        body = _body(portfolio, [account_id])
        statements = body["accounts"][0]["statements"]
        known = sorted(
            (row for row in statements if row["known_at"][:10] <= AS_OF.isoformat()),
            key=lambda row: row["cycle_end"],
        )
        # (and billed early enough that the next statement is due well before the as-of)
        if len(known) >= 2 and known[-2]["dpd"] > 0 and known[-1]["cycle_end"] < "2025-03-15":
            break
    else:
        pytest.fail("no account past due at its two latest statements")
    latest = known[-1]
    full = client.post("/v1/score", json=body, headers=HEADERS).json()["scored"]
    assert [row["warnings"] for row in full] == [[]]
    # the latest known statement and the ones after it (not yet known at the as-of) left out
    statements[:] = [row for row in statements if row["cycle_end"] < latest["cycle_end"]]
    response = client.post("/v1/score", json=body, headers=HEADERS)
    assert response.status_code == 200, response.text
    (row,) = response.json()["scored"]  # scored from the statement before
    (warning,) = row["warnings"]
    assert warning.startswith(f"no statement for {latest['cycle_end'][:7]} was sent"), warning


def test_a_row_dated_after_tomorrow_is_refused(portfolio, client):
    """Found by an attacker: statements, actions and treatments dated up to 2199 were accepted
    (and ignored at the as-of), where the batch rejects a row dated after its extract date."""
    account_id = portfolio.collection_actions["account_id"][0]  # one with actions
    for table, column in [("statements", "known_at"), ("collection_actions", "action_at")]:
        body = _body(portfolio, [account_id])
        rows = body["accounts"][0][table]
        assert rows, table
        rows[-1][column] = "2199-01-01T10:00:00"
        response = client.post("/v1/score", json=body, headers=HEADERS)
        assert response.status_code == 422, response.text
        (problem,) = response.json()["detail"]
        assert problem["type"] == "future_row"
        assert problem["loc"] == ["body", "accounts", 0, table, len(rows) - 1, column]
        assert "got 2199-01-01: a row dated in the future did not happen yet" in problem["msg"]
    body = _body(portfolio, [account_id])  # a promise to pay is for a future day: kept
    assert client.post("/v1/score", json=body, headers=HEADERS).status_code == 200


@pytest.mark.parametrize("content_type", [None, "text/plain"])
def test_a_body_not_sent_as_json_is_told_the_content_type(portfolio, client, content_type):
    """Found by an integrator: a valid JSON object sent without `Content-Type:
    application/json` got only "Input should be a valid dictionary"."""
    body = json.dumps(_body(portfolio, [portfolio.accounts["account_id"][3]])).encode()
    headers = dict(HEADERS) if content_type is None else {**HEADERS, "Content-Type": content_type}
    response = client.post("/v1/score", content=body, headers=headers)
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    shown = content_type or "none"
    assert problem["msg"].endswith(
        f"(the request's Content-Type is {shown}: send the JSON body with "
        "Content-Type: application/json)"
    ), problem
