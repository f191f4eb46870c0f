"""Benchmark: exact TreeSHAP contributions, rollrisk's kernel against shap.TreeExplainer.

Measures, in one run on the same rows of the same model:

* ``shap.TreeExplainer(booster).shap_values(X)`` (for LightGBM it calls ``pred_contrib``),
* LightGBM's ``booster.predict(X, pred_contrib=True)`` directly,
* :func:`rollrisk.models.treeshap.tree_contributions` (model parsing timed separately),

each the median of ``--repeats`` runs with the same number of threads, then checks that the
values agree (max absolute difference on every contribution and on the expected value) and that
every row adds up to the raw score. It also times small batches (the online service's case) and
reports the numba compile time of a cold cache in a separate process.

The model is the project's champion when ``--model-uri`` is given (e.g.
``models:/rollrisk-roll-to-default@champion``), otherwise a synthetic stand-in: 300 trees of up
to 63 leaves trained on synthetic credit-like data (40 features with missing values and one
categorical). The last line is::

    explanation speedup vs shap.TreeExplainer: R x, max abs diff D

Run: ``.venv/bin/python bench/bench_explain.py [--quick] [--rows N] [--repeats K]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numba
import numpy as np
import pandas as pd
import shap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import interleaved_medians  # noqa: E402

from rollrisk.models.treeshap import TreeEnsemble, lightgbm_matrix, tree_contributions

PRODUCTS = ("bnpl", "credit_card", "cash_loan", "merchant_loan", "agri_loan")


def synthetic_credit_frame(n_rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Credit-like features (amounts, counts, ratios, days, a product category) and a label.

    40 columns: 1 categorical ``product``, 13 amounts (log-normal), 13 counts (Poisson), 13
    ratios in [0, 1]; about a third of the numeric columns have 5-30% missing values.
    """
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray | pd.Categorical] = {
        "product": pd.Categorical(rng.choice(PRODUCTS, n_rows), categories=PRODUCTS)
    }
    latent = rng.normal(size=n_rows)
    for i in range(13):
        columns[f"amount_{i}"] = np.round(np.exp(rng.normal(7 + 0.3 * latent, 1.0)), 2)
        columns[f"count_{i}"] = rng.poisson(np.exp(0.5 + 0.4 * latent * (i % 3 == 0))).astype(float)
        columns[f"ratio_{i}"] = np.clip(rng.beta(2, 5, n_rows) + 0.1 * latent, 0, 1)
    frame = pd.DataFrame(columns)
    for j, name in enumerate(frame.columns[1:]):
        if j % 3 == 0:
            frame.loc[rng.random(n_rows) < 0.05 + 0.25 * rng.random(), name] = np.nan
    product_effect = frame["product"].cat.codes.to_numpy() * 0.2
    logit = (
        -1.0
        + 0.8 * latent
        + product_effect
        + 0.5 * frame["ratio_0"].fillna(0.3)
        + 0.2 * np.log1p(frame["count_0"].fillna(1))
    )
    label = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame, label


def synthetic_booster(n_train: int, n_trees: int = 300, num_leaves: int = 63) -> lgb.Booster:
    """A stand-in for the champion: ``n_trees`` trees of ``num_leaves`` leaves, depth unbounded."""
    frame, label = synthetic_credit_frame(n_train, seed=7)
    params = {
        "objective": "binary",
        "num_leaves": num_leaves,
        "learning_rate": 0.05,
        "min_data_in_leaf": 20,
        "feature_fraction": 0.8,
        "verbose": -1,
        "seed": 7,
    }
    return lgb.train(params, lgb.Dataset(frame, label), num_boost_round=n_trees)


def load_champion_booster(
    model_uri: str,
) -> tuple[lgb.Booster, Callable[[pd.DataFrame], pd.DataFrame] | None]:
    """The LightGBM Booster inside an MLflow model, and the model's own input encoder if any.

    Handles the project's pyfunc (a ``RollModelPyfunc`` holding a ``RollModel`` in ``model_``,
    whose ``boosters_`` maps "all" or each start bucket to a Booster; the first is taken), the
    lightgbm flavour, and anything exposing ``booster_``.
    """
    import mlflow

    try:
        model = mlflow.lightgbm.load_model(model_uri)
    except Exception:  # not saved with the lightgbm flavour: look inside the pyfunc
        model = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    model = getattr(model, "model_", model)
    encoder = getattr(model, "encode", None)
    boosters = getattr(model, "boosters_", None)
    if isinstance(boosters, dict) and boosters:
        model = boosters.get("all", next(iter(boosters.values())))
    model = getattr(model, "booster_", model)
    if not isinstance(model, lgb.Booster):
        raise SystemExit(
            f"{model_uri} does not hold a LightGBM Booster (found {type(model).__name__})"
        )
    return model, encoder


def rows_like_model(booster: lgb.Booster, n_rows: int, seed: int) -> np.ndarray:
    """Rows drawn from the ranges the booster saw at training (``feature_infos``), 10% missing.

    A fallback for ``--model-uri`` without ``--rows-from``: it exercises every split, but a
    real portfolio (``--rows-from``) gives the figure that matters.
    """
    rng = np.random.default_rng(seed)
    infos = booster.dump_model(num_iteration=0)["feature_infos"]
    matrix = np.empty((n_rows, booster.num_feature()), dtype=np.float64)
    for j, name in enumerate(booster.feature_name()):
        info = infos.get(name, {})
        if info.get("values"):
            matrix[:, j] = rng.choice(np.asarray(info["values"], dtype=np.float64), n_rows)
        else:
            low, high = float(info.get("min_value", 0.0)), float(info.get("max_value", 1.0))
            matrix[:, j] = rng.uniform(low, high, n_rows)
        matrix[rng.random(n_rows) < 0.1, j] = np.nan
    return matrix


def median_seconds(function: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def shap_contributions(booster: lgb.Booster, X: np.ndarray) -> np.ndarray:
    """shap's values with its expected value appended, shaped like ``pred_contrib``."""
    explainer = shap.TreeExplainer(booster)
    values = explainer.shap_values(X)
    if isinstance(values, list):  # older shap: one array per class for binary models
        values = values[-1]
    expected = np.ravel(explainer.expected_value)[-1]
    return np.column_stack([values, np.full(len(X), expected)])


def cold_compile_seconds() -> float:
    """Wall time of import + first call with an empty numba cache, in a fresh process."""
    code = (
        "import time, numpy as np, lightgbm as lgb; t = time.perf_counter();"
        "from rollrisk.models.treeshap import TreeEnsemble, tree_contributions;"
        "b = lgb.train({'objective': 'binary', 'num_leaves': 4, 'verbose': -1},"
        " lgb.Dataset(np.arange(200.0).reshape(100, 2), np.arange(100) % 2), 2);"
        "e = TreeEnsemble.from_lightgbm(b);"
        "tree_contributions(e, np.zeros((3, 2))); tree_contributions(e, np.zeros((300, 2)));"
        "print(time.perf_counter() - t)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
    return float(done.stdout.strip().splitlines()[-1])


def machine_description(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [
                line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")
            ]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}, {os.cpu_count()} logical cores, {threads} threads used, load avg {load:.2f}; "
        f"python {platform.python_version()}, lightgbm {lgb.__version__}, shap {shap.__version__}, "
        f"numba {numba.__version__}, numpy {np.__version__}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller model training and batch (< 5 min)"
    )
    parser.add_argument(
        "--model-uri", help="MLflow model URI of a LightGBM model (default: synthetic)"
    )
    parser.add_argument(
        "--rows-from", help="Parquet file with the model's feature columns to explain"
    )
    parser.add_argument(
        "--rows", type=int, help="rows explained per run (default 20000, quick 5000)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per measurement (median taken)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for all")
    parser.add_argument(
        "--no-cold-compile", action="store_true", help="skip the cold-cache JIT timing"
    )
    args = parser.parse_args(argv)
    n_rows = args.rows or (5_000 if args.quick else 20_000)
    numba.set_num_threads(args.threads)

    encoder = None
    if args.model_uri:
        booster, encoder = load_champion_booster(args.model_uri)
        source = args.model_uri
    else:
        booster = synthetic_booster(n_train=20_000 if args.quick else 50_000)
        source = "synthetic credit-like model"
    booster.params["num_threads"] = args.threads
    if args.rows_from:
        frame = pd.read_parquet(args.rows_from).head(n_rows)
        if encoder is not None:
            frame = encoder(frame)
        X = lightgbm_matrix(frame[booster.feature_name()], booster)
    elif args.model_uri:
        X = rows_like_model(booster, n_rows, seed=11)
    else:
        frame, _ = synthetic_credit_frame(n_rows, seed=11)
        X = lightgbm_matrix(frame, booster)

    parse_seconds, ensemble = median_seconds(lambda: TreeEnsemble.from_lightgbm(booster), 1)
    tree_contributions(ensemble, X[:10])  # load (or compile) the kernel outside the timings
    leaves = np.diff(ensemble.tree_leaf_start)
    print(f"machine: {machine_description(args.threads)}")
    print(
        f"model: {source}; {ensemble.n_trees} trees, leaves per tree max {leaves.max()} "
        f"mean {leaves.mean():.1f}, max depth {ensemble.max_depth}, {ensemble.n_features} features"
    )
    print(f"rows: {len(X)}, {100 * np.isnan(X).mean():.1f}% missing cells; repeats {args.repeats}")
    print(f"model parsing + subset tables: {parse_seconds:.2f} s (once per model)")

    measured = interleaved_medians(
        {
            "ours": lambda: tree_contributions(ensemble, X),
            "shap": lambda: shap_contributions(booster, X),
            "lightgbm": lambda: booster.predict(X, pred_contrib=True, num_threads=args.threads),
        },
        args.repeats,
    )
    ours_seconds, ours_cpu, ours = measured["ours"]
    shap_seconds, shap_cpu, reference = measured["shap"]
    lgb_seconds, lgb_cpu, lightgbm_values = measured["lightgbm"]
    raw = booster.predict(X, raw_score=True, num_threads=args.threads)
    max_diff = float(np.abs(ours - reference).max())
    max_diff_lightgbm = float(np.abs(ours - lightgbm_values).max())
    additivity = float(np.abs(ours.sum(axis=1) - raw).max())
    for name, seconds, cpu in (
        ("shap.TreeExplainer", shap_seconds, shap_cpu),
        ("lightgbm pred_contrib", lgb_seconds, lgb_cpu),
        ("rollrisk treeshap", ours_seconds, ours_cpu),
    ):
        print(
            f"{name:>22}: {len(X) / seconds:10.0f} rows/s  {1e6 * seconds / len(X):8.1f} us/row  "
            f"({seconds:.3f} s median wall; {1e6 * cpu / len(X):8.1f} us CPU/row)"
        )
    print(f"max abs diff vs lightgbm pred_contrib: {max_diff_lightgbm:.3g}")
    print(f"max additivity error (row sum - raw score): {additivity:.3g}")

    print("small batches (online service), median per call:")
    for batch in (b for b in (1, 10, 100, 1000) if b <= len(X)):
        subset = X[:batch]
        small = interleaved_medians(
            {
                "ours": lambda s=subset: tree_contributions(ensemble, s),
                "lightgbm": lambda s=subset: booster.predict(
                    s, pred_contrib=True, num_threads=args.threads
                ),
            },
            5,
        )
        ours_small, lgb_small = small["ours"][0], small["lightgbm"][0]
        print(
            f"  batch {batch:>5}: rollrisk {1e3 * ours_small:8.2f} ms, lightgbm "
            f"{1e3 * lgb_small:8.2f} ms, ratio {lgb_small / ours_small:5.1f} x"
        )
    if not args.no_cold_compile:
        print(
            f"numba compile with a cold cache (import + first call): {cold_compile_seconds():.1f} s"
        )
    if max_diff > 1e-9 or additivity > 1e-9:
        print("WARNING: values differ by more than 1e-9")
    print(f"speedup in CPU time vs shap.TreeExplainer: {shap_cpu / ours_cpu:.1f} x")
    print(
        f"explanation speedup vs shap.TreeExplainer: {shap_seconds / ours_seconds:.1f} x, "
        f"max abs diff {max_diff:.2g}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
