"""The online scoring service: FastAPI over the batch scoring code.

:func:`create_app` builds the application; nothing happens at import. The model and the
strategy rules are loaded once, by a background thread the lifespan handler starts, so the
process answers ``/healthz`` at once and ``/readyz`` turns ready only when the model is there
(an orchestrator sends traffic only then). Endpoints (see ``docs/service.md``):

* ``GET /healthz``: the process is alive;
* ``GET /readyz``: 200 once the model is loaded, 503 before (or if loading failed);
* ``GET /v1/model``: model name, version, feature set, observation range, jurisdictions,
  experiments;
* ``POST /v1/score``: one or many accounts with their history -> exactly what
  ``rollrisk score`` returns for them, plus the requested accounts that are not scored, with
  the reason.

Every ``/v1/`` request needs the API key in the ``X-API-Key`` header (401 otherwise, checked
before the body is read); bodies larger than the limit get 413; a malformed body gets 422 with
the path of every bad field, a body the JSON parser cannot read at all (nested deeper than it
recurses, not UTF-8) included. Logs carry the request id, route, status, latency and counts
only: never a value from a request, since requests hold borrower data.

The API docs (``/docs``: Swagger UI, ``/redoc``: ReDoc) are served with their scripts and styles
from the service itself (the assets ``fastapi-offline`` installs, under ``/docs/assets/``): a
service on a network without internet access still shows them, and the pages name no other
host. No answer carries a path of the server's file system (the policy rule is named by its
file's name, a model loaded from a path by the path's last part, and a failed load's reason
goes to the log, not to the unauthenticated ``/readyz``).
"""

from __future__ import annotations

import gc
import hmac
import json
import logging
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Security
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from rollrisk.errors import UserError
from rollrisk.features.currencies import foreign_account_message
from rollrisk.features.dates import DATED_BY_EXTRACT
from rollrisk.scoring.core import (
    ScoringSetup,
    check_tables,
    currency_not_checked_warning,
    model_label,
    warm_up,
)
from rollrisk.serving.api_models import (
    Health,
    ModelInfo,
    Readiness,
    ScoreRequest,
    ScoreResponse,
)
from rollrisk.serving.batching import Batcher
from rollrisk.serving.request_scoring import OPTIONAL_TABLES, batch_key, score_requests

API_KEY_HEADER = "X-API-Key"
REQUEST_ID_HEADER = "X-Request-ID"
MAX_BODY_BYTES = 1_048_576  # 1 MiB: a few hundred accounts with a year of history
MAX_BATCH_ACCOUNTS = 1_000  # concurrent requests scored together hold at most this many
PROTECTED_PREFIX = "/v1/"
DOCS_ASSETS = "/docs/assets"  # Swagger UI's and ReDoc's scripts, styles and icon, served here
ROUTES = (
    "/healthz",
    "/readyz",
    "/v1/model",
    "/v1/score",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
)

log = logging.getLogger("rollrisk.serving")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class _ModelSlot:
    """What the service has loaded; written once by the loader thread, then only read."""

    setup: ScoringSetup | None = None
    error: str | None = None
    error_kind: str = ""


def create_app(
    setup_loader: Callable[[], ScoringSetup] | None = None,
    *,
    setup: ScoringSetup | None = None,
    api_key: str,
    model_uri: str = "",
    jurisdictions: Sequence[str] = (),
    max_body_bytes: int = MAX_BODY_BYTES,
    max_batch_accounts: int = MAX_BATCH_ACCOUNTS,
    on_load_failure: Callable[[str], None] | None = None,
) -> FastAPI:
    """The scoring service.

    Args:
        setup_loader: loads the model and rules (slow: MLflow); run once, in a background
            thread started at start-up. Give either this or ``setup``.
        setup: an already loaded setup (tests, notebooks): the service is ready at start-up.
        api_key: the key clients send in ``X-API-Key``; must not be empty.
        model_uri, jurisdictions: reported by ``GET /v1/model``.
        max_body_bytes: larger request bodies are refused with 413.
        max_batch_accounts: concurrent score requests are scored together, up to this many
            accounts per call (:mod:`rollrisk.serving.batching`); 1 scores each request alone.
        on_load_failure: called with the error message if ``setup_loader`` raises (the CLI
            uses it to stop the server: a service that cannot load its model must not linger).
    """
    if (setup_loader is None) == (setup is None):
        raise ValueError("give exactly one of setup_loader and setup")
    if not api_key:
        raise ValueError("api_key must not be empty")
    if max_body_bytes <= 0:
        raise ValueError(f"max_body_bytes must be positive, got {max_body_bytes}")
    if max_batch_accounts <= 0:
        raise ValueError(f"max_batch_accounts must be positive, got {max_batch_accounts}")
    slot = _ModelSlot(setup=setup)

    def score_batch(requests: Sequence[ScoreRequest]) -> list[dict[str, Any]]:
        assert slot.setup is not None  # submitted only once ready
        return score_requests(requests, slot.setup)

    batcher: Batcher[ScoreRequest, dict[str, Any]] = Batcher(
        score_batch,
        key_of=batch_key,
        ids_of=lambda request: [account.account_id for account in request.accounts],
        max_size=max_batch_accounts,
    )

    def load() -> None:
        assert setup_loader is not None
        try:
            loaded = setup_loader()
            warm_up(loaded)  # ready only once the first request costs no more than the next
            # the libraries and the model are loaded for good: keep the garbage collector from
            # walking their millions of objects again (a full collection stalled requests by
            # tens of milliseconds)
            gc.freeze()
            slot.setup = loaded
        except Exception as error:  # reported by the log, /readyz and the callback, not raised
            slot.error = str(error) if isinstance(error, UserError) else repr(error)
            slot.error_kind = type(error).__name__
            log.error("model failed to load: %s", slot.error)
            if on_load_failure is not None:
                on_load_failure(slot.error)
        else:
            log.info("model %s v%s loaded", slot.setup.model_name, slot.setup.model_version)
            unchecked = currency_not_checked_warning(slot.setup)
            if unchecked is not None:
                log.warning("%s", unchecked)
            for table in sorted(slot.setup.allowed_missing_tables & set(slot.setup.trained_tables)):
                log.warning(
                    "requests without %s are scored although the model was trained with it "
                    "(--allow-missing-table)",
                    table,
                )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if slot.setup is None:
            threading.Thread(target=load, name="rollrisk-model-loader", daemon=True).start()
        yield
        batcher.close()

    # FastAPI's own /docs loads Swagger UI from a CDN: blank on a network without internet
    # access. FastAPIOffline serves the same pages with the assets its package ships.
    app = FastAPIOffline(
        title="rollrisk scoring service",
        version="1",
        description=(
            "Roll-to-default probability, reason codes, segment and treatment for delinquent "
            "accounts: the same results as the nightly `rollrisk score` batch."
        ),
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
        # no online validator badge: the page would call a public host with the spec's URL
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.batcher = batcher  # its counters: batches scored, largest batch
    # documents the key in the OpenAPI spec; the check itself is done by the middleware
    # below, before the body is read (so a caller without a key learns nothing about it)
    key_in_spec = Security(APIKeyHeader(name=API_KEY_HEADER, auto_error=False))

    def ready_setup() -> ScoringSetup:
        if slot.setup is None:
            raise HTTPException(503, detail=_not_ready_detail(slot))
        return slot.setup

    @app.get("/healthz", response_model=Health, tags=["operations"])
    def healthz() -> dict[str, str]:
        """The process is alive (says nothing about the model)."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "model not loaded (yet)"}},
        tags=["operations"],
    )
    def readyz() -> JSONResponse:
        """Ready to score: the model and rules are loaded."""
        if slot.setup is None:
            return JSONResponse({"ready": False, "detail": _not_ready_detail(slot)}, 503)
        ready = slot.setup
        return JSONResponse(
            {"ready": True, "detail": f"model {ready.model_name} v{ready.model_version} loaded"}
        )

    @app.get(
        "/v1/model",
        response_model=ModelInfo,
        responses=_ERROR_RESPONSES,
        dependencies=[key_in_spec],
        tags=["scoring"],
    )
    def model_info() -> dict[str, Any]:
        """The model behind the scores: name, version, feature set and observation range."""
        ready = ready_setup()
        feature_set = ready.feature_set
        observation = ready.observation
        return {
            "uri": shown_model_uri(model_uri),
            "name": ready.model_name,
            "version": ready.model_version,
            "feature_set": feature_set.name,
            "feature_set_version": feature_set.version,
            "features": [
                {"name": f.name, "family": f.family, "kind": f.kind, "direction": f.direction}
                for f in feature_set.features
            ],
            "observation": {
                "min_dpd": observation.min_dpd,
                "max_dpd": observation.max_dpd,
                "default_dpd": observation.default_dpd,
                "window_months": observation.window_months,
            },
            "jurisdictions": list(jurisdictions),
            "experiments_file": Path(ready.experiments.source).name,
            "experiments": [
                {
                    "id": e.experiment_id,
                    "start": e.start,
                    "end": e.end,
                    "share": e.share,
                    "arms": [arm.name for arm in e.arms],
                }
                for e in ready.experiments.experiments
            ],
            "trained_tables": list(ready.trained_tables),
            "allowed_missing_tables": [
                table for table in ready.trained_tables if table in ready.allowed_missing_tables
            ],
        }

    @app.post(
        "/v1/score",
        response_model=ScoreResponse,
        responses=_ERROR_RESPONSES,
        dependencies=[key_in_spec],
        tags=["scoring"],
    )
    async def score(body: ScoreRequest, request: Request) -> dict[str, Any] | JSONResponse:
        """Score accounts at an as-of date, as the nightly batch would.

        Accounts in the population (DPD 1-89 at the as-of, by default) are in ``scored``,
        sorted by ``account_id``; the others are in ``not_scored`` with the reason.
        """
        problem = (
            _duplicate_key_problem(await request.body())  # read already: FastAPI keeps it
            or _future_as_of_problem(body)
            or _future_row_problem(body)
            or _mixed_tables_problem(body)
            or _missing_table_problem(ready_setup(), body)
        )
        if problem is not None:
            return JSONResponse({"detail": [problem]}, status_code=422)
        problems = _currency_problems(ready_setup(), body)
        if problems:
            return JSONResponse({"detail": problems}, status_code=422)
        # scored on the batcher's thread, together with concurrent requests: the event loop
        # stays free for /healthz, /readyz and reading the next requests
        result = await batcher.submit(body)
        request.state.counts = {
            "accounts": len(body.accounts),
            "scored": len(result["scored"]),
            "not_scored": len(result["not_scored"]),
        }
        return result

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # the path and message of every bad field (pydantic's `input`, the value, is left out)
        problems = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in error.errors()
        ]
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            # FastAPI reads a body as JSON only when it says so: any other body arrives as text
            # or bytes, and the one problem pydantic names is "a valid dictionary"
            for problem in problems:
                if problem["loc"] == ["body"]:
                    shown = media or "none"
                    problem["msg"] += (
                        f" (the request's Content-Type is {shown}: send the JSON body with "
                        "Content-Type: application/json)"
                    )
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def unreadable_body(request: Request, error: StarletteHTTPException) -> Response:
        # FastAPI answers 400 when parsing the body raises anything but a JSON syntax error:
        # a body nested deeper than the parser recurses (RecursionError), bytes that are not
        # UTF-8. Both are malformed bodies, 422 as documented, like invalid JSON.
        if error.status_code == 400 and error.__cause__ is not None:
            problem = {"loc": ["body"], "msg": _UNREADABLE_BODY, "type": "json_invalid"}
            return JSONResponse({"detail": [problem]}, status_code=422)
        return await http_exception_handler(request, error)

    app.add_middleware(_Guard, api_key=api_key, max_body_bytes=max_body_bytes)
    return app


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong API key (header X-API-Key)"},
    413: {"description": "request body larger than the service's limit"},
    422: {"description": "malformed request: `detail` lists the path and reason of each problem"},
    503: {"description": "the model is not loaded (yet)"},
}


def _future_as_of_problem(request: ScoreRequest) -> dict[str, Any] | None:
    """A 422 problem for an as-of after tomorrow (the server's date, plus a day's grace for a
    client ahead of its time zone): the batch rejects rows dated after its extract date, and
    a history shifted into the future was scored as if it had happened."""
    latest = date.today() + timedelta(days=1)
    if request.as_of <= latest:
        return None
    return {
        "loc": ["body", "as_of"],
        "msg": f"as_of: expected a day on or before {latest} (the server's today, plus a day "
        f"for time zones), got {request.as_of}: an as-of in the future scores a history that "
        "has not happened",
        "type": "future_as_of",
    }


class _DuplicateKey(ValueError):
    pass


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey
    return obj


class _Twice(dict):  # type: ignore[type-arg]
    """A JSON object as read, with the first key it was given twice (None: none)."""

    twice: str | None = None


def _mark_duplicate_keys(pairs: list[tuple[str, Any]]) -> _Twice:
    obj = _Twice()
    for key, value in pairs:
        if key in obj and obj.twice is None:
            obj.twice = key
        obj[key] = value
    return obj


def _first_duplicate(value: Any, path: list[str | int]) -> tuple[list[str | int], str] | None:
    """The path of the first object (in document order) that holds a key twice, and the key."""
    if isinstance(value, _Twice):
        if value.twice is not None:
            return path, value.twice
        children: Iterable[tuple[str | int, Any]] = value.items()
    elif isinstance(value, list):
        children = enumerate(value)
    else:
        return None
    for key, child in children:
        found = _first_duplicate(child, [*path, key])
        if found is not None:
            return found
    return None


def _duplicate_key_problem(raw: bytes) -> dict[str, Any] | None:
    """A 422 problem when a JSON object of the body gives a key twice, at that object's path.
    JSON parsers keep the last one without a word: an ``as_of`` given twice was scored at the
    second date, and a second ``accounts`` list answered for its accounts only, the first
    list's never named. A body without one is read once; one with one is read again to find
    where (a key's later value replaces its place in the object, so the walk is in order)."""
    try:
        json.loads(raw, object_pairs_hook=_refuse_duplicate_keys)
    except _DuplicateKey:
        found = _first_duplicate(json.loads(raw, object_pairs_hook=_mark_duplicate_keys), [])
        assert found is not None  # the same bytes, read with a hook that marks what raised
        path, key = found
        return {
            "loc": ["body", *path, key],
            "msg": f"key {key!r} is given twice in one object: give each key once (a JSON "
            "reader keeps one of the two silently)",
            "type": "duplicate_key",
        }
    except ValueError:  # not JSON: the body was validated already, so not reached
        return None
    return None


def _future_row_problem(request: ScoreRequest) -> dict[str, Any] | None:
    """A 422 problem for the first row dated after tomorrow (the server's date, plus a day for
    time zones) in a column that says when something happened or became known
    (:data:`~rollrisk.features.dates.DATED_BY_EXTRACT`, as the batch rejects rows dated after
    its extract date): such a row, ignored at the as-of, was accepted without a word."""
    latest = date.today() + timedelta(days=1)
    for index, account in enumerate(request.accounts):
        tables = {"accounts": [account], **{t: getattr(account, t) or () for t in _DATED_ROWS}}
        for table, rows in tables.items():
            for position, row in enumerate(rows):
                for column in DATED_BY_EXTRACT[table]:
                    value = getattr(row, column)
                    day = value.date() if isinstance(value, datetime) else value
                    if day is None or day <= latest:
                        continue
                    where = ["body", "accounts", index]
                    if table != "accounts":
                        where += [table, position]
                    return {
                        "loc": [*where, column],
                        "msg": f"{column}: expected a day on or before {latest} (the server's "
                        f"today, plus a day for time zones), got {day}: a row dated in the "
                        "future did not happen yet (the batch rejects it after its extract date)",
                        "type": "future_row",
                    }
    return None


_DATED_ROWS = ("statements", "collection_actions", "treatments")


def _mixed_tables_problem(request: ScoreRequest) -> dict[str, Any] | None:
    """A 422 problem when an optional table is sent for some accounts and null for others: the
    null was scored as no rows, its contact features made up, where alone it is refused."""
    for table in OPTIONAL_TABLES:
        without = [a.account_id for a in request.accounts if getattr(a, table) is None]
        if without and len(without) < len(request.accounts):
            shown = ", ".join(without[:5]) + (" ..." if len(without) > 5 else "")
            return {
                "loc": ["body", "accounts"],
                "msg": f"accounts: {table} is sent for some accounts and null for {shown}: send "
                "it for every account of the request ([] for one without rows) or for none",
                "type": "mixed_tables",
            }
    return None


def _missing_table_problem(setup: ScoringSetup, request: ScoreRequest) -> dict[str, Any] | None:
    """A 422 problem when no account of ``request`` carries a table the model was trained
    with and the service was not started with ``--allow-missing-table`` for it (the batch
    refuses the same folder: :func:`rollrisk.scoring.core.check_tables`)."""
    carried = {
        table
        for table in OPTIONAL_TABLES
        if any(getattr(account, table) is not None for account in request.accounts)
    }
    try:
        check_tables(setup, {"accounts", "statements", *carried}, "the request")
    except UserError as error:
        absent = [t for t in setup.trained_tables if t in OPTIONAL_TABLES and t not in carried]
        return {
            "loc": ["body", "accounts", 0, absent[0]],
            "msg": f"{error} (send [] for an account without rows in it)",
            "type": "missing_table",
        }
    return None


def _currency_problems(setup: ScoringSetup, request: ScoreRequest) -> list[dict[str, Any]]:
    """A 422 problem for each account of ``request`` in a currency the model was not trained
    on (its amounts would be read on the model's scale; the batch refuses the same accounts:
    :func:`rollrisk.scoring.core.check_currencies`). None for a model that does not record its
    currency (logged before rollrisk did: the service says so in its log at start-up)."""
    trained = setup.trained_currencies
    if trained is None:
        return []
    model = model_label(setup)
    return [
        {
            "loc": ["body", "accounts", index, "currency"],
            "msg": foreign_account_message(account.account_id, account.currency, trained, model),
            "type": "currency_mismatch",
        }
        for index, account in enumerate(request.accounts)
        if account.currency not in trained
    ]


_UNREADABLE_BODY = (
    "the body cannot be read as JSON: nested deeper than the parser allows, or not UTF-8"
)


def _not_ready_detail(slot: _ModelSlot) -> str:
    # /readyz needs no key: the reason (which may name the server's paths or store) is in the
    # service's log and, from `rollrisk serve`, on its stderr as it exits
    if slot.error is not None:
        return f"model failed to load ({slot.error_kind}); the reason is in the service's log"
    return "model is loading"


def shown_model_uri(uri: str) -> str:
    """The model URI as ``/v1/model`` shows it: a registry or run URI as it is; a model loaded
    from a file system path by the path's last part only (the server's folders stay private)."""
    if uri.startswith(("models:/", "runs:/")) or not uri:
        return uri
    return PurePosixPath(uri.removeprefix("file://")).name or uri


class _Guard:
    """Outermost ASGI layer: request id, API key, body size limit, safe logging.

    Pure ASGI (not ``BaseHTTPMiddleware``) so it can refuse a request from its headers before
    any of the body is read, and count the bytes of a body sent without ``Content-Length``.
    """

    def __init__(self, app: ASGIApp, api_key: str, max_body_bytes: int) -> None:
        self.app = app
        self.api_key = api_key.encode()
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = uuid.uuid4().hex[:16]
        path = scope["path"]
        # an unknown path may hold an account id; the docs' asset names hold nothing
        known = path in ROUTES or path.startswith(DOCS_ASSETS + "/")
        route = path if known else "<other>"
        status = {"code": 0}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        (REQUEST_ID_HEADER.lower().encode(), request_id.encode()),
                    ],
                }
            await send(message)

        headers = dict(scope["headers"])
        scope.setdefault("state", {})  # shared with the handler's request.state (counts)
        try:
            refusal = self._refusal(path, headers)
            if refusal is not None:
                code, detail = refusal
                await _send_json(send_with_id, code, {"detail": detail})
            else:
                await self.app(scope, self._limited(receive), send_with_id)
        except Exception as error:  # logged without its message: it may quote request values
            frames = "".join(traceback.format_tb(error.__traceback__)[-3:])
            log.error(
                "request_id=%s route=%s unhandled %s at\n%s",
                request_id,
                route,
                type(error).__name__,
                frames,
            )
            if status["code"] == 0:
                await _send_json(
                    send_with_id, 500, {"detail": "internal error", "request_id": request_id}
                )
        counts = scope.get("state", {}).get("counts", {})
        log.info(
            "request_id=%s method=%s route=%s status=%d latency_ms=%.1f%s",
            request_id,
            scope["method"],
            route,
            status["code"],
            (time.perf_counter() - started) * 1e3,
            "".join(f" {name}={value}" for name, value in counts.items()),
        )

    def _refusal(self, path: str, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        if path.startswith(PROTECTED_PREFIX):
            given = headers.get(API_KEY_HEADER.lower().encode(), b"")
            if not hmac.compare_digest(given, self.api_key):
                return 401, f"missing or wrong API key (send it in the {API_KEY_HEADER} header)"
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return 400, "Content-Length must be a whole number"
            if int(length) > self.max_body_bytes:
                return 413, f"request body larger than {self.max_body_bytes} bytes"
        return None

    def _limited(self, receive: Receive) -> Receive:
        """``receive`` that refuses a body growing past the limit (chunked uploads)."""
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise HTTPException(
                        413, detail=f"request body larger than {self.max_body_bytes} bytes"
                    )
            return message

        return limited


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    content = JSONResponse(body, status_code=status)
    await send({"type": "http.response.start", "status": status, "headers": content.raw_headers})
    await send({"type": "http.response.body", "body": content.body})
