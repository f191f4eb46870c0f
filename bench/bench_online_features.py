"""Benchmark: one service request's features, the polars query against features/online.py.

What is measured, in-process, on the bodies of ``bench/bench_service.py`` (one delinquent
account with 16 months of history each; its simulated portfolio and model, cached in
``--cache``): for each body in turn, interleaved (A, B, C, D, A, ...) so that a burst of load
from other processes hits every contender alike,

* features, polars query: the contract tables of the request, then the population query and
  ``features_at`` (what ``score_accounts`` ran for every request before);
* features, online: ``population_features`` on the request's accounts (what the service runs);
* whole request, polars query: the contract tables and ``score_accounts`` computing its own
  features (the handler before);
* whole request, online: ``score_requests`` (the handler now).

Median wall and CPU milliseconds over ``--repeats`` rounds; the ratio of each pair. The frames
of the two feature paths are checked equal (within 1e-12) before timing.

Run:
    .venv/bin/python bench/bench_online_features.py --repeats 200
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd
import polars as pl

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # as `rollrisk serve` sets it
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_service import AS_OF, prepare_world, single_account_bodies  # noqa: E402
from harness import interleaved_medians, machine_description  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("runs/bench-service"))
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()

    args.cache.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{args.cache.resolve() / 'mlflow.db'}"
    portfolio, model_uri = prepare_world(args.cache, env)
    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]

    from rollrisk.api import scoring_setup
    from rollrisk.features.observations import ObservationSpec
    from rollrisk.features.online import population_features
    from rollrisk.scoring.core import features_at, population, score_accounts
    from rollrisk.serving.api_models import ScoreRequest
    from rollrisk.serving.request_scoring import request_tables, score_requests
    from rollrisk.storage.registry import load_roll_model

    pl.Config.set_engine_affinity("in-memory")  # as `rollrisk serve` sets it
    setup = scoring_setup(load_roll_model(model_uri), ObservationSpec())
    requests = [ScoreRequest.model_validate_json(body) for body in single_account_bodies(portfolio, 50)]  # fmt: skip
    state = {"i": 0}

    def request() -> ScoreRequest:
        return requests[state["i"] % len(requests)]

    def polars_features() -> pd.DataFrame:
        tables = request_tables(request().accounts)
        people = population(tables.statements, AS_OF, setup.observation)
        return features_at(people, AS_OF, tables.accounts, tables.statements,
                           tables.collection_actions, tables.treatments, setup.feature_set)  # fmt: skip

    def online_features() -> pd.DataFrame:
        return population_features(request().accounts, AS_OF, setup.observation,
                                   setup.feature_set, True, True)  # fmt: skip

    def polars_request() -> object:
        tables = request_tables(request().accounts)
        return score_accounts(tables.accounts, tables.statements, tables.collection_actions,
                              tables.treatments, AS_OF, setup)  # fmt: skip

    def online_request() -> object:
        return score_requests([request()], setup)

    for i in range(len(requests)):  # the same features, and warm caches
        state["i"] = i
        # within 1e-12: polars' windowed float sums of one account alone may take the other
        # summation kernel than in the batch (features/online.py, _Statements.sum)
        pd.testing.assert_frame_equal(online_features(), polars_features(), rtol=1e-12)
        online_request(), polars_request()

    functions = {
        "features, polars query": polars_features,
        "features, online": online_features,
        "whole request, polars query": polars_request,
        "whole request, online": online_request,
    }

    def advancing(function):
        def run() -> object:
            result = function()
            if function is online_request:  # the last of each round: the next body
                state["i"] += 1
            return result

        return run

    medians = interleaved_medians(
        {name: advancing(f) for name, f in functions.items()}, args.repeats
    )
    load = os.getloadavg()
    lines = [
        f"Machine: {machine_description()}; load average (1 / 5 / 15 min) after the runs "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.",
        "",
        f"`bench/bench_online_features.py --repeats {args.repeats}`: {len(requests)} "
        "single-account requests of the service benchmark (2,500 accounts x 16 months "
        f"simulated with seed 5, as-of {AS_OF}), interleaved, median per call:",
        "",
        "| step | wall ms | CPU ms |",
        "|---|---:|---:|",
        *(
            f"| {name} | {wall * 1e3:.2f} | {cpu * 1e3:.2f} |"
            for name, (wall, cpu, _) in medians.items()
        ),
        "",
    ]
    for what in ("features", "whole request"):
        slow, fast = medians[f"{what}, polars query"], medians[f"{what}, online"]
        lines.append(
            f"{what}: online / polars query = {fast[0] / slow[0]:.3f} wall, "
            f"{fast[1] / slow[1]:.3f} CPU ({slow[0] / fast[0]:.1f}x faster wall)."
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
