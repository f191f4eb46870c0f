"""Serve scores over HTTP: the same results as `rollrisk score`, for the accounts of a request.

Starts the scoring service (FastAPI on uvicorn) on --host:--port. The model and rules are
loaded once, at start-up, from the same flags as `rollrisk score`; until they are loaded
GET /readyz answers 503, and if loading fails the server stops with the error.

Endpoints (details and examples in docs/service.md; the OpenAPI spec is at /openapi.json):
  GET  /healthz     the process is alive
  GET  /readyz      the model is loaded
  GET  /v1/model    model name, version, feature set            (needs the API key)
  POST /v1/score    accounts with their history -> scores,      (needs the API key)
                    reasons, segment, treatment; and the accounts not scored, with why

The model URI is resolved once: after `rollrisk promote` moves the alias, restart the service
(until then it serves the version it loaded; /readyz and /v1/model name it).

Clients send the API key in the X-API-Key header. The key is read from the environment
variable ROLLRISK_API_KEY (never from a flag, which would show in the process list); the
service refuses to start without one. Logs hold request ids, status, latency and counts only.

Requests that arrive while others are being scored wait and are then scored together in one
call (at most --max-batch-accounts accounts), which is how one process keeps up with 100
requests/s: each request still gets exactly what it would get alone.

example:
  export ROLLRISK_API_KEY=$(python -c "import secrets; print(secrets.token_urlsafe(24))")
  rollrisk serve --model models:/rollrisk-roll-to-default@champion --port 8000
  curl -s localhost:8000/readyz
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

from rollrisk.arguments import add_scoring_arguments
from rollrisk.errors import UserError

if TYPE_CHECKING:
    from rollrisk.scoring.core import ScoringSetup

API_KEY_VARIABLE = "ROLLRISK_API_KEY"
MIN_KEY_LENGTH = 16
DEFAULT_MAX_BODY_BYTES = 1_048_576


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_scoring_arguments(parser)  # --model, --config, --policy, ... as for `rollrisk score`
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help="larger request bodies are refused with 413",
    )
    parser.add_argument(
        "--max-batch-accounts",
        type=int,
        default=1_000,
        help="requests that arrive while others are being scored are scored together, up to "
        "this many accounts per call (each still gets exactly its own answer); 1 scores every "
        "request alone, which caps throughput near 1 / (time to score one request)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="OpenMP threads per request (LightGBM); a request scores a few rows, for which "
        "one thread is fastest: concurrency comes from serving requests side by side",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="level of the service's log (request id, status, latency, counts)",
    )


def api_key_from_environment() -> str:
    key = os.environ.get(API_KEY_VARIABLE, "")
    if not key:
        raise UserError(
            f"set the API key clients must send (header X-API-Key) in the environment variable "
            f"{API_KEY_VARIABLE}, e.g. export {API_KEY_VARIABLE}=$(python -c "
            '"import secrets; print(secrets.token_urlsafe(24))")'
        )
    if key != key.strip():
        # HTTP clients and proxies trim a header value's ends: such a key could never match,
        # and a key of blanks only is no secret
        raise UserError(
            f"{API_KEY_VARIABLE} starts or ends with white space (a header value's ends are "
            "trimmed in transit, so no client could send it): set it without"
        )
    if not (key.isascii() and key.isprintable()):
        # a header value is ASCII text in practice (clients refuse or re-encode the rest)
        raise UserError(
            f"{API_KEY_VARIABLE} holds characters a client cannot send in a header (outside "
            "printable ASCII): use letters, digits and punctuation, e.g. secrets.token_urlsafe"
        )
    if len(key) < MIN_KEY_LENGTH:
        raise UserError(
            f"{API_KEY_VARIABLE} is {len(key)} characters long; use at least {MIN_KEY_LENGTH}"
        )
    return key


def run(args: argparse.Namespace) -> int:
    api_key = api_key_from_environment()
    if args.max_body_bytes <= 0:
        raise UserError(f"--max-body-bytes must be positive, got {args.max_body_bytes}")
    if not 1 <= args.port <= 65_535:
        raise UserError(f"--port must be between 1 and 65535, got {args.port}")
    if args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    if args.max_batch_accounts < 1:
        raise UserError(f"--max-batch-accounts must be at least 1, got {args.max_batch_accounts}")
    # before LightGBM and the explanation kernel load OpenMP, which reads these once:
    # LightGBM's threads per call, and idle OpenMP threads sleep at once instead of spinning
    # (spinning kernel threads held the second core while polars computed the next request's
    # features: a 0.3 ms query took 2.5 ms, and a request 19 ms instead of 13)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")

    import polars as pl
    import uvicorn

    # a request's tables hold a few hundred rows: polars' in-memory engine runs the feature
    # query on them in half the time of the default streaming engine (which pays off on the
    # millions of rows of a batch run, not here)
    pl.Config.set_engine_affinity("in-memory")

    from rollrisk.arguments import jurisdictions_of, setup_from_arguments
    from rollrisk.serving.app import create_app

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    failure: list[str] = []

    def load() -> ScoringSetup:
        print(f"[serve] loading model {args.model}", file=sys.stderr, flush=True)
        _, setup = setup_from_arguments(args)
        return setup

    def stop(message: str) -> None:
        failure.append(message)
        server.should_exit = True

    app = create_app(
        load,
        api_key=api_key,
        model_uri=args.model,
        jurisdictions=jurisdictions_of(args),
        max_body_bytes=args.max_body_bytes,
        max_batch_accounts=args.max_batch_accounts,
        on_load_failure=stop,
    )
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,  # our own request log carries no client data; see serving/app.py
        server_header=False,
    )
    server = uvicorn.Server(config)
    try:
        server.run()
    except SystemExit as stopped:  # uvicorn exits (code 3) when it cannot listen
        if server.started:
            raise
        raise UserError(
            f"the service could not listen on {args.host}:{args.port} (the reason is in the "
            "log line above, e.g. the port is in use by another process)"
        ) from stopped
    if failure:
        raise UserError(f"the service stopped: {failure[0]}")
    return 0
