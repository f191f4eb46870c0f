"""Benchmark: latency and throughput of ``rollrisk serve`` on loopback, one account per request.

What is measured: ``rollrisk serve`` runs in a child process on 127.0.0.1 (one uvicorn worker,
``--threads 1``), twice: as it ships (concurrent requests batched) and with
``--max-batch-accounts 1`` (each request scored alone, the reference); this script sends
``POST /v1/score`` requests, each with ONE delinquent account and its full history (16 months
of statements, actions, treatments; about 4 KB of JSON), answered with probability, 4 reason
codes, segment, treatment and compliance trail.

Load is open-loop at a fixed rate (request i is due at t0 + i/rate, whether or not earlier ones
have returned), so a server slower than the rate builds a queue and the latencies show it;
latency is measured from the moment a request was due to its last response byte (no
coordinated omission). Each run sends ``rate x --seconds`` requests; at most ``--max-in-flight``
are open at once, and every request has a 30 s timeout, so a run is bounded. Reported per rate:
p50 and p99 latency and achieved throughput (requests completed / time from the first due
request to the last response), each the median of ``--runs`` runs, and the requests per batch
the server logged (debug log, kept in ``--cache``).

Reference measured in the same run: the in-process cost of the same work without HTTP
(the handler's ``score_requests`` on the same bodies, sequentially, in this process), so the
ratio shows what HTTP, JSON and queueing add. To compare two checkouts (say ``main`` and a
branch) on a shared machine, run this script from each in turn, alternating, with the same
``--cache`` (the same model and bodies).

The model is the tests' small one (2,500 accounts x 16 months simulated with seed 5; LightGBM
60 trees, 7 leaves), trained once into ``--cache``; or pass ``--model-uri`` with
``MLFLOW_TRACKING_URI`` set. Only loopback is used.

Run:
    .venv/bin/python bench/bench_service.py              # rates 10, 100, 150 req/s, 3 x 10 s
    .venv/bin/python bench/bench_service.py --rates 100 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import polars as pl

# as `rollrisk serve` sets it, before LightGBM loads OpenMP (for the in-process reference)
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import machine_description  # noqa: E402

MODEL_NAME = "rollrisk-bench-service"
TRAIN_CONFIG = f"""
training:
  model_name: {MODEL_NAME}
  experiment_name: bench-service
  split: {{validation_months: 2, test_months: 2, embargo_months: 1}}
  calibration: {{method: platt}}
  lightgbm: {{n_estimators: 60, num_leaves: 7, min_child_samples: 20, learning_rate: 0.1, early_stopping_rounds: 10, n_jobs: 1}}
"""
AS_OF = date(2025, 3, 31)
HOST = "127.0.0.1"


BATCH_LINE = re.compile(rb"batch of (\d+) request")
SCORE_LINE = re.compile(rb"route=/v1/score status=200 latency_ms=([0-9.]+)")


def server_log(log: Path, start: int) -> tuple[list[int], list[float]]:
    """Requests per batch, and each score request's latency as the server measured it (from
    reading its headers to sending the answer), in the log written after byte ``start``."""
    with log.open("rb") as source:
        source.seek(start)
        text = source.read()
    return (
        [int(m.group(1)) for m in BATCH_LINE.finditer(text)],
        [float(m.group(1)) for m in SCORE_LINE.finditer(text)],
    )


@dataclass(frozen=True)
class RunResult:
    rate: float
    sent: int
    ok: int
    p50_ms: float
    p99_ms: float
    throughput: float


def _rollrisk(*argv: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "rollrisk.cli", *argv], check=True, env=env,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def prepare_world(cache: Path, env: dict[str, str]) -> tuple[Path, str]:
    """The simulated portfolio and a model registered on it (built once, cached)."""
    portfolio = cache / "portfolio"
    uri = f"models:/{MODEL_NAME}@challenger"
    if not (cache / "_built").exists():
        print("[bench] simulating 2,500 accounts x 16 months and training", file=sys.stderr)
        _rollrisk("simulate", "--accounts", "2500", "--months", "16", "--seed", "5",
                  "--out", str(portfolio), "--overwrite", env=env)  # fmt: skip
        config = cache / "train.yaml"
        config.write_text(TRAIN_CONFIG)
        _rollrisk("train", "--data", str(portfolio), "--config", str(config),
                  "--out", str(cache / "train"), env=env)  # fmt: skip
        (cache / "_built").write_text("ok\n")
    return portfolio, uri


def single_account_bodies(portfolio_dir: Path, count: int) -> list[bytes]:
    """JSON bodies of one delinquent account each (distinct accounts, cycled if fewer)."""
    from rollrisk.features.observations import ObservationSpec
    from rollrisk.scoring.core import population
    from rollrisk.serving.request_scoring import request_body
    from rollrisk.storage.loader import load_portfolio

    portfolio = load_portfolio(portfolio_dir)
    ids = population(portfolio.statements, AS_OF, ObservationSpec())["account_id"].to_list()
    bodies = []
    for i in range(min(count, len(ids))):
        body = request_body(portfolio.accounts, portfolio.statements,
                            portfolio.collection_actions, portfolio.treatments, [ids[i]], AS_OF)  # fmt: skip
        bodies.append(json.dumps(body).encode())
    return bodies


def in_process_reference(
    bodies: list[bytes], model_uri: str, repeats: int
) -> tuple[float, dict[str, float], str]:
    """Median milliseconds of scoring one body without HTTP (the handler's code: parse, then
    ``score_requests``, step by step),
    the mean milliseconds of each step, and what the model is (trees, leaves)."""
    from rollrisk.api import scoring_setup
    from rollrisk.features.observations import ObservationSpec
    from rollrisk.serving.api_models import ScoreRequest
    from rollrisk.serving.request_scoring import score_requests
    from rollrisk.storage.registry import load_roll_model

    pl.Config.set_engine_affinity("in-memory")  # as `rollrisk serve` sets it

    setup = scoring_setup(load_roll_model(model_uri), ObservationSpec())
    gc.freeze()  # as the service does once its model is loaded
    booster = next(iter(setup.model.boosters_.values()))
    leaves = max(tree["num_leaves"] for tree in booster.dump_model()["tree_info"])
    model = f"`{model_uri}` ({booster.num_trees()} trees, at most {leaves} leaves)"
    totals: list[float] = []
    steps: dict[str, float] = {}
    for i in range(repeats + 5):
        timings: dict[str, float] = {}
        started = time.perf_counter()
        request = ScoreRequest.model_validate_json(bodies[i % len(bodies)])
        parsed = time.perf_counter()
        score_requests([request], setup, timings=timings)
        if i >= 5:  # the first calls compile and warm caches
            totals.append(time.perf_counter() - started)
            timings = {"parse JSON (pydantic)": parsed - started, **timings}
            for name, seconds in timings.items():
                steps[name] = steps.get(name, 0.0) + seconds * 1e3 / repeats
    return statistics.median(totals) * 1e3, steps, model


def _p99(values: list[float]) -> float:
    if len(values) < 2:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start_server(
    model_uri: str,
    port: int,
    env: dict[str, str],
    extra: list[str],
    log: Path,
    python: str = sys.executable,
) -> subprocess.Popen:
    """`rollrisk serve` in a child process, its log (debug: one line per batch) into ``log``;
    ``python``: the interpreter (and so the rollrisk checkout) that serves."""
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [python, "-m", "rollrisk.cli", "serve", "--model", model_uri,
             "--host", HOST, "--port", str(port), "--log-level", "debug", *extra],
            env=env, stderr=sink,
        )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"rollrisk serve exited with {server.returncode}")
        try:
            if httpx.get(f"http://{HOST}:{port}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.terminate()
    raise RuntimeError("rollrisk serve was not ready within 180 s")


async def open_loop(
    url: str, key: str, bodies: list[bytes], rate: float, total: int, max_in_flight: int
) -> RunResult:
    """Send ``total`` requests due at a fixed ``rate``; latency from due time to response."""
    latencies: list[float] = []
    ok = 0
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    gate = asyncio.Semaphore(max_in_flight)
    last_done = 0.0
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        started = time.perf_counter()

        async def one(i: int, due: float) -> None:
            nonlocal ok, last_done
            async with gate:
                try:
                    response = await client.post(url, content=bodies[i % len(bodies)],
                                                 headers=headers)  # fmt: skip
                    good = response.status_code == 200 and len(response.json()["scored"]) == 1
                except httpx.HTTPError:
                    good = False
            now = time.perf_counter()
            last_done = max(last_done, now)
            if good:
                ok += 1
                latencies.append(now - due)

        tasks = []
        for i in range(total):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
    latencies.sort()
    quantile = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else [float("nan")] * 99  # fmt: skip
    return RunResult(
        rate=rate,
        sent=total,
        ok=ok,
        p50_ms=statistics.median(latencies) * 1e3 if latencies else float("nan"),
        p99_ms=quantile[98] * 1e3,
        throughput=ok / (last_done - started) if last_done > started else float("nan"),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("runs/bench-service"))
    parser.add_argument(
        "--model-uri", default=None, help="use this model (MLFLOW_TRACKING_URI set)"
    )
    parser.add_argument(
        "--rates", default="10,100,150", help="requests per second, comma-separated"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="schedule length of each run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/bench-service/benchmarks-service.md"),
        help="where to write the figures (a Markdown section to paste into docs/benchmarks.md)",
    )
    parser.add_argument(
        "--reference-python",
        default=None,
        help="also serve with this interpreter (another checkout's venv, e.g. main's), "
        "measured run by run in turn with this checkout's server (interleaved)",
    )
    parser.add_argument(
        "--skip-one-at-a-time",
        action="store_true",
        help="leave out the one-request-at-a-time server (it only queues at 100 req/s)",
    )
    args = parser.parse_args()

    args.cache.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if args.model_uri is None:
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{args.cache.resolve() / 'mlflow.db'}"
        portfolio, model_uri = prepare_world(args.cache, env)
    else:
        portfolio, model_uri = args.cache / "portfolio", args.model_uri
    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    key = secrets.token_urlsafe(24)
    env["ROLLRISK_API_KEY"] = key
    env.setdefault("OMP_NUM_THREADS", "1")
    rates = [float(r) for r in args.rates.split(",")]
    bodies = single_account_bodies(portfolio, 200)
    print(f"[bench] {len(bodies)} distinct single-account bodies, "
          f"median {statistics.median(len(b) for b in bodies):,.0f} bytes", file=sys.stderr)  # fmt: skip

    # name: (interpreter, serve flags, offered rates)
    configs: dict[str, tuple[str, list[str], list[float]]] = {
        "batched (default)": (sys.executable, [], rates),
    }
    if args.reference_python:
        configs[f"batched (default), reference: `{args.reference_python}`"] = (
            args.reference_python,
            [],
            rates,
        )
    if not args.skip_one_at_a_time:
        configs["one request at a time (`--max-batch-accounts 1`)"] = (
            sys.executable,
            ["--max-batch-accounts", "1"],
            [rate for rate in rates if rate <= 100],  # beyond, it only queues longer
        )
    load_before = os.getloadavg()
    results: dict[tuple[str, float], list[RunResult]] = {}
    sizes: dict[tuple[str, float], list[int]] = {}
    inside: dict[tuple[str, float], list[float]] = {}  # server-side p99 of each run
    servers: dict[str, tuple[subprocess.Popen, str, Path]] = {}
    try:
        for index, (name, (python, extra, _)) in enumerate(configs.items()):
            port = free_port()
            log = args.cache / f"server-{index}.log"
            server = start_server(model_uri, port, env, extra, log, python)
            url = f"http://{HOST}:{port}/v1/score"
            servers[name] = (server, url, log)
            asyncio.run(open_loop(url, key, bodies, 20, 40, args.max_in_flight))  # warm-up
        # run by run, each server in turn: a burst of load from other jobs hits all alike
        for run in range(args.runs):
            for name, (_, _, config_rates) in configs.items():
                _, url, log = servers[name]
                for rate in config_rates:
                    total = max(2, round(rate * args.seconds))
                    start = log.stat().st_size
                    result = asyncio.run(
                        open_loop(url, key, bodies, rate, total, args.max_in_flight)
                    )
                    results.setdefault((name, rate), []).append(result)
                    batches, latencies = server_log(log, start)
                    sizes.setdefault((name, rate), []).extend(batches)
                    inside.setdefault((name, rate), []).append(_p99(latencies))
                    print(f"[bench] {name}, run {run + 1}, rate {rate:g}/s: ok "
                          f"{result.ok}/{result.sent}, p50 {result.p50_ms:.1f} ms, "
                          f"p99 {result.p99_ms:.1f} ms, {result.throughput:.1f} req/s",
                          file=sys.stderr)  # fmt: skip
    finally:
        for server, _, _ in servers.values():
            server.terminate()
            server.wait(timeout=30)
    reference_ms, steps, model = in_process_reference(bodies, model_uri, repeats=60)

    load = os.getloadavg()
    lines = [
        "## Online service (`rollrisk serve`), single-account requests on loopback",
        "",
        f"Machine: {machine_description()}; load average (1 / 5 / 15 min) before the runs "
        f"{load_before[0]:.1f} / {load_before[1]:.1f} / {load_before[2]:.1f}, after "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}. The load generator runs on the same "
        "2 cores as the server.",
        "",
        "Setup: `rollrisk serve` as it ships (one uvicorn worker, `--threads 1`; it sets the "
        f"polars in-memory engine and passive OpenMP waiting itself); model {model}; "
        f"each request one delinquent account with 16 months of history "
        f"(~{statistics.median(len(b) for b in bodies) / 1000:.1f} KB JSON) at as-of {AS_OF}, "
        "answered with probability, reason codes, segment, treatment and trail. Open-loop "
        f"load, {args.seconds:g} s schedule per run, median of {args.runs} runs; latency from "
        'the moment a request was due (queueing included); "inside the server" is the '
        "latency the service logs for each request (from reading it to answering), so the "
        "difference is the client's and the network stack's share.",
        "",
        "| server | offered rate (req/s) | requests per run | p50 latency (ms) | p99 latency (ms) | p99 of each run (ms) | p99 inside the server (ms) | achieved throughput (req/s) | requests per batch (mean, max) | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, rate), runs in results.items():
        batch = sizes.get((name, rate)) or [0]
        lines.append(
            f"| {name} | {rate:g} | {runs[0].sent} "
            f"| {statistics.median(r.p50_ms for r in runs):.1f} "
            f"| {statistics.median(r.p99_ms for r in runs):.1f} "
            f"| {' / '.join(f'{r.p99_ms:.0f}' for r in runs)} "
            f"| {statistics.median(inside[(name, rate)]):.1f} "
            f"| {statistics.median(r.throughput for r in runs):.1f} "
            f"| {statistics.mean(batch):.2f}, {max(batch)} "
            f"| {sum(r.sent - r.ok for r in runs)} |"
        )
    default = next(iter(configs))
    for (name, rate), runs in results.items():
        if name.startswith("batched (default), reference") and (default, rate) in results:
            ours = results[(default, rate)]
            lines.append(
                f"\nAt {rate:g} req/s, this checkout / the reference, medians of the runs taken "
                f"in turn: p50 {statistics.median(r.p50_ms for r in ours):.1f} / "
                f"{statistics.median(r.p50_ms for r in runs):.1f} ms, p99 "
                f"{statistics.median(r.p99_ms for r in ours):.1f} / "
                f"{statistics.median(r.p99_ms for r in runs):.1f} ms, throughput "
                f"{statistics.median(r.throughput for r in ours):.1f} / "
                f"{statistics.median(r.throughput for r in runs):.1f} req/s."
            )
    lowest = min(rates)
    target_met = (
        100.0 in rates and statistics.median(r.p99_ms for r in results[(default, 100.0)]) < 50
    )
    p50_low = statistics.median(r.p50_ms for r in results[(default, lowest)])
    lines += [
        "",
        f"Reference in the same run: the same bodies scored in-process without HTTP "
        f"(parsed and `score_requests`, one after the other): median "
        f"{reference_ms:.1f} ms per account; "
        f"p50 over HTTP at {lowest:g} req/s is {p50_low / reference_ms:.2f}x that "
        "(HTTP, JSON, the hop to the scoring thread, and an idle-then-busy machine).",
        "",
        "Where one request's time goes (in-process, one account per call, mean ms per step; "
        "the steps of `score_requests` and `score_accounts` as they report them):",
        "",
        "| step | ms |",
        "|---|---:|",
        *(f"| {name} | {ms:.1f} |" for name, ms in steps.items()),
        "",
        f"Target p99 < 50 ms at 100 req/s (batched server): {'met' if target_met else 'NOT met'}. "
        "Scoring one request alone is mostly fixed cost, so a server that scores requests one "
        f"at a time tops out near 1 / {reference_ms:.0f} ms = {1e3 / reference_ms:.0f} req/s; "
        "offered more, requests queue and the latency is the queue's. The batched server "
        "scores the requests that queued during a batch in the next one, paying that fixed "
        "cost once per batch.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
