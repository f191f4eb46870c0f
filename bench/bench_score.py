"""Benchmark: ``rollrisk score`` end to end on ~1,000,000 delinquent accounts.

What is timed: one ``rollrisk score`` run in a fresh child process (read and validate the
portfolio, point-in-time features, calibrated probability, exact TreeSHAP reason codes, segment,
treatment with compliance, partitioned atomic write). Wall time, CPU seconds (user + system,
all threads) and peak RSS come from ``os.wait4`` on that child (as in ``bench/harness.py``); the per-stage breakdown is the one
``rollrisk score`` prints (features, probability, explanations, reasons,
segments, decisions, assemble, write, summed over partitions).

How the 1,000,000-account portfolio is built (cached under ``--cache``; honest note): the
simulator leaves only ~3.4 % of accounts delinquent at an as-of, so one simulation of ~30M
accounts would be needed. Two constructions:

* ``--book distinct`` (the default since 2026-12-03, late): independently simulated worlds of
  ``--world-accounts`` (default 1,000,000) x 24 months, seeds 1000, 1001, ...; the accounts
  delinquent at each world's last month-end are taken with their full histories (all four
  tables), ids prefixed ``wNNN-``, until ``--accounts`` exist (about 30 worlds, ~15-20 min to
  build on 2 cores, resumable). No two accounts share a history.
* ``--book copies`` (the book of every figure before 2026-12-03, late): one base portfolio
  (``--base-accounts``, default 100,000 x 24 months) is simulated and copies of its delinquent
  accounts' histories are written with new ids (``<id>-cNNNN``) until ``--accounts`` exist.
  Every copy has the same features, score and explanation, and this flatters the job: the
  explanation kernel works once per distinct decision pattern of a partition and the reasons
  are worded and encoded once per distinct (feature, value), so on copies both cost about a
  third of what they cost on distinct accounts (measured: docs/benchmarks.md, "The distinct
  book"). Features, probability, segments and decisions do the same work on either.

Either portfolio holds only delinquent accounts (a real one would also hold ~28x as many
current accounts, which cost a read and a filter but are not scored).

The model is trained with ``conf/default.yaml`` (1000 trees max, early stopping) on a separate
simulated portfolio (``--train-accounts`` x 24 months, seed 11), or taken from ``--model-uri``.

Run:
    .venv/bin/python bench/bench_score.py                       # 1,000,000 distinct accounts, 1 run, fast kernel
    .venv/bin/python bench/bench_score.py --book copies --repeats 3   # the earlier copied book
    .venv/bin/python bench/bench_score.py --accounts 100000 --repeats 3
    .venv/bin/python bench/bench_score.py --kernel lightgbm      # LightGBM pred_contrib kernel
    .venv/bin/python bench/bench_score.py --accounts 100000 --experiment-share 0.1
        # the shipped example experiment (conf/experiments.yaml), running on the as-of, open to
        # every bucket, randomising 10% of the book: what the experiments cost
With ``--accounts`` below 1,000,000 the last lines also give a linear extrapolation to
1,000,000, labelled as such.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import TreeMemoryPeak, machine_description  # noqa: E402

TABLES = ("accounts", "statements", "collection_actions", "treatments")
TARGET = 1_000_000
MODEL_NAME = "rollrisk-bench-score"
COPIES_PER_PART = 10


def _python() -> str:
    return sys.executable


def _rollrisk(*argv: str, env: dict[str, str]) -> None:
    subprocess.run([_python(), "-m", "rollrisk.cli", *argv], check=True, env=env)


def build_portfolio(
    cache: Path, accounts: int, base_accounts: int, env: dict[str, str]
) -> tuple[Path, date]:
    """The re-keyed portfolio with ``accounts`` delinquent accounts, and its as-of (cached)."""
    from rollrisk.features.observations import ObservationSpec
    from rollrisk.scoring.core import default_as_of, population
    from rollrisk.storage.loader import load_portfolio

    base = cache / f"base-{base_accounts}"
    if not (base / "accounts.parquet").exists() and not (base / "accounts").exists():
        print(f"[bench] simulating the base portfolio ({base_accounts:,} x 24)", file=sys.stderr)
        _rollrisk("simulate", "--accounts", str(base_accounts), "--months", "24", "--seed", "7",
                  "--out", str(base), "--overwrite", env=env)  # fmt: skip
    target = cache / f"portfolio-{accounts}"
    done = target / "_built"
    if done.exists():
        return target, date.fromisoformat(done.read_text().strip())
    shutil.rmtree(target, ignore_errors=True)
    source = load_portfolio(base)
    as_of = default_as_of(source.statements)
    delinquent = population(source.statements, as_of, ObservationSpec())["account_id"]
    tables = {
        name: None
        if frame is None
        else frame.filter(pl.col("account_id").is_in(delinquent.implode()))
        for name, frame in {
            "accounts": source.accounts,
            "statements": source.statements,
            "collection_actions": source.collection_actions,
            "treatments": source.treatments,
        }.items()
    }
    copies = -(-accounts // delinquent.len())
    print(
        f"[bench] {delinquent.len():,} delinquent of {source.accounts.height:,} at {as_of}; "
        f"writing {copies} re-keyed copies",
        file=sys.stderr,
    )
    kept_ids = delinquent.sort()
    for start in range(0, copies, COPIES_PER_PART):
        stop = min(copies, start + COPIES_PER_PART)
        for name, frame in tables.items():
            if frame is None:
                continue
            parts = []
            for copy in range(start, stop):
                # the last copy is cut so the population is exactly ``accounts``
                keep = accounts - copy * kept_ids.len()
                piece = frame
                if keep < kept_ids.len():
                    piece = frame.filter(pl.col("account_id").is_in(kept_ids.head(keep).implode()))
                suffix = f"-c{copy:04d}"
                renamed = piece.with_columns(pl.col("account_id") + suffix)
                if "borrower_id" in renamed.columns:
                    renamed = renamed.with_columns(pl.col("borrower_id") + suffix)
                parts.append(renamed)
            folder = target / name
            folder.mkdir(parents=True, exist_ok=True)
            pl.concat(parts).write_parquet(folder / f"part-{start // COPIES_PER_PART:05d}.parquet")
    done.write_text(as_of.isoformat())
    return target, as_of


WORLD_SEED = 1000  # world k of the distinct book is simulated with seed WORLD_SEED + k
WORLDS_AT_ONCE = 2  # simulations run side by side (each uses about one core)


def build_distinct_portfolio(
    cache: Path, accounts: int, world_accounts: int, env: dict[str, str]
) -> tuple[Path, date]:
    """A portfolio of ``accounts`` delinquent accounts no two of which share a history
    (cached): the accounts delinquent at the as-of of independently simulated worlds
    (``world_accounts`` x 24 months each, seeds ``WORLD_SEED + k``), with their full histories
    in all four tables, their ids prefixed ``wNNN-``, until ``accounts`` are reached (the last
    world's cut by sorted id). A world is about 3.4 % delinquent at its last month-end, so
    1,000,000 take about 30 worlds of 1,000,000 accounts (about 15 min at two simulations at
    once). A killed build resumes at the first world not written."""
    from rollrisk.features.observations import ObservationSpec
    from rollrisk.scoring.core import default_as_of, population

    target = cache / f"distinct-{accounts}"
    done = target / "_built"
    if done.exists():
        return target, date.fromisoformat(done.read_text().strip())
    target.mkdir(parents=True, exist_ok=True)

    def marker(world: int) -> Path:
        return target / f"_world-{world:03d}"

    def simulate(world: int) -> subprocess.Popen[bytes]:
        folder = cache / f"world-{world:03d}"
        shutil.rmtree(folder, ignore_errors=True)
        return subprocess.Popen(
            [_python(), "-m", "rollrisk.cli", "simulate", "--accounts", str(world_accounts),
             "--months", "24", "--seed", str(WORLD_SEED + world), "--out", str(folder)],
            env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip

    def extract(world: int, wanted: int) -> tuple[int, date]:
        """The world's delinquent accounts (at most ``wanted``) written; the world removed."""
        folder = cache / f"world-{world:03d}"
        frames = {name: _read_table(folder, name) for name in TABLES}
        as_of = default_as_of(frames["statements"])
        people = population(frames["statements"], as_of, ObservationSpec())["account_id"]
        chosen = people.sort().head(wanted)
        ids = chosen.implode()
        prefix = f"w{world:03d}-"
        for name, frame in frames.items():
            renamed = [c for c in ("account_id", "borrower_id") if c in frame.columns]
            kept = frame.filter(pl.col("account_id").is_in(ids)).with_columns(
                (pl.lit(prefix) + pl.col(c)).alias(c) for c in renamed
            )
            (target / name).mkdir(exist_ok=True)
            kept.write_parquet(target / name / f"part-{world:05d}.parquet")
        shutil.rmtree(folder)
        marker(world).write_text(f"{chosen.len()} {as_of.isoformat()}")
        return chosen.len(), as_of

    total, world, as_ofs = 0, 0, set()
    while total < accounts:
        if marker(world).exists():
            count, day = marker(world).read_text().split()
            total, world = total + int(count), world + 1
            as_ofs.add(date.fromisoformat(day))
            continue
        batch = list(range(world, world + WORLDS_AT_ONCE))
        print(
            f"[bench] {total:,} of {accounts:,} delinquent accounts; simulating worlds "
            f"{batch[0]}-{batch[-1]} ({world_accounts:,} accounts x 24 months each)",
            file=sys.stderr,
            flush=True,
        )
        running = [simulate(k) for k in batch]
        for process in running:
            if process.wait() != 0:
                raise RuntimeError(f"simulating a world failed: {process.args}")
        for k in batch:
            if total >= accounts:  # the first world of the batch was enough
                shutil.rmtree(cache / f"world-{k:03d}", ignore_errors=True)
                continue
            count, day = extract(k, accounts - total)
            total, world = total + count, k + 1
            as_ofs.add(day)
    if len(as_ofs) != 1:
        raise RuntimeError(f"the worlds' as-of dates differ: {sorted(as_ofs)}")
    (as_of,) = as_ofs
    done.write_text(as_of.isoformat())
    return target, as_of


def _read_table(folder: Path, name: str) -> pl.DataFrame:
    """A table of a simulated folder as the simulator wrote it (contract dtypes)."""
    single = folder / f"{name}.parquet"
    return pl.read_parquet(single if single.exists() else folder / name / "*.parquet")


def experiment_file(cache: Path, as_of: date, share: float) -> Path:
    """The shipped example experiment (three arms, weights 2:1:1) running on ``as_of``, open to
    every bucket (its ``eligible`` dropped) and randomising ``share`` of the book."""
    from rollrisk.strategies.experiments import parse_experiments, shipped_example

    text = re.sub(r"start: .*", f"start: {as_of.isoformat()}", shipped_example())
    text = re.sub(r"end: .*", f"end: {as_of.isoformat()}", text)
    text = re.sub(r"share: .*", f"share: {share}", text)
    text = re.sub(r"\n +eligible:\n +start_bucket: .*", "", text)
    path = cache / f"experiments-{share}.yaml"
    path.write_text(text)
    parse_experiments(text, str(path))  # the bench fails here, not in the child, if it is wrong
    return path


def train_model(cache: Path, train_accounts: int, env: dict[str, str]) -> str:
    """Register a model trained with conf/default.yaml on its own simulated portfolio (cached)."""
    marker = cache / f"model-{train_accounts}.uri"
    if marker.exists():
        return marker.read_text().strip()
    portfolio = cache / f"train-portfolio-{train_accounts}"
    _rollrisk("simulate", "--accounts", str(train_accounts), "--months", "24", "--seed", "11",
              "--out", str(portfolio), "--overwrite", env=env)  # fmt: skip
    config = cache / "train.yaml"
    default = Path(__file__).resolve().parent.parent / "conf" / "default.yaml"
    config.write_text(
        default.read_text().replace("rollrisk-roll-to-default   #", f"{MODEL_NAME}   #", 1)
    )
    _rollrisk("train", "--data", str(portfolio), "--config", str(config),
              "--out", str(cache / "train-report"), env=env)  # fmt: skip
    uri = f"models:/{MODEL_NAME}@challenger"
    marker.write_text(uri)
    return uri


# The child process: `rollrisk score` itself; with --kernel lightgbm, LightGBM's pred_contrib
# replaces the default (fast) kernel in the setup the job builds (the CLI has no flag for it),
# nothing else.
CHILD = """
import dataclasses, sys
from rollrisk.cli import main
if sys.argv[1] == "lightgbm":
    import rollrisk.scoring.setup as setup_module
    from rollrisk.models.explanations import lightgbm_pred_contrib as kernel
    original = setup_module.rules_setup
    setup_module.rules_setup = lambda *a, **k: dataclasses.replace(original(*a, **k), kernel=kernel)
sys.exit(main(sys.argv[2:]))
"""


def measured_score(
    argv: list[str], kernel: str, env: dict[str, str], log: Path
) -> tuple[float, float, str, float, float]:
    """Wall seconds, peak RSS (GiB) of the largest process, stdout, CPU seconds (user +
    system, all threads, the worker processes included) and the peak of the summed PSS (GiB)
    of the job with its workers, of one ``rollrisk score`` child process. On a shared machine
    the CPU seconds move less with other jobs' load than the wall time does."""
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(
            [_python(), "-c", CHILD, kernel, "score", *argv], env=env, stdout=out
        )
        memory = TreeMemoryPeak(process.pid)
        _, status, usage = os.wait4(process.pid, 0)
        tree_gib = memory.stop()
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"rollrisk score failed; see {log}")
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, usage.ru_maxrss / 2**20, log.read_text(), cpu, tree_gib


# "  stage   12.3 s" lines of `rollrisk score`; steps inside score_accounts are indented 4
STAGE_LINE = re.compile(r"^(?P<indent>\s{2,4})(?P<name>[a-z][a-z ,]+?)\s+(?P<seconds>[\d.]+) s$")


def stages_of(stdout: str) -> dict[str, float]:
    return {
        ("  - " if len(m["indent"]) == 4 else "") + m["name"]: float(m["seconds"])
        for line in stdout.splitlines()
        if (m := STAGE_LINE.match(line))
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=TARGET, help="delinquent accounts to score")
    parser.add_argument(
        "--book",
        choices=("distinct", "copies"),
        default="distinct",
        help="distinct: the delinquent accounts of independently simulated worlds, no two "
        "alike (the default); copies: re-keyed copies of one world's delinquent accounts, the "
        "book of the figures before 2026-12-03 (late), which flatters the explanations and "
        "the reasons (identical rows share their work)",
    )
    parser.add_argument(
        "--world-accounts",
        type=int,
        default=1_000_000,
        help="--book distinct: accounts of each simulated world",
    )
    parser.add_argument(
        "--base-accounts",
        type=int,
        default=100_000,
        help="--book copies: simulated accounts re-keyed into the portfolio",
    )
    parser.add_argument(
        "--train-accounts", type=int, default=20_000, help="accounts of the training portfolio"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("runs/bench-score"),
        help="cache folder (portfolios, MLflow store)",
    )
    parser.add_argument(
        "--model-uri", default=None, help="score with this model instead of training one"
    )
    parser.add_argument(
        "--kernel",
        choices=("lightgbm", "fast"),
        default="fast",
        help="contribution kernel: fast (rollrisk.models.treeshap, the default) or LightGBM pred_contrib",
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs (median reported)")
    parser.add_argument(
        "--experiment-share",
        type=float,
        default=None,
        metavar="SHARE",
        help="score with the shipped example experiment active on the as-of for every bucket, "
        "randomising this share of the book (default: no experiment)",
    )
    args = parser.parse_args()

    cache = args.cache.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{cache / 'mlflow.db'}")
    if args.book == "distinct":
        portfolio, as_of = build_distinct_portfolio(cache, args.accounts, args.world_accounts, env)
    else:
        portfolio, as_of = build_portfolio(cache, args.accounts, args.base_accounts, env)
    uri = args.model_uri or train_model(cache, args.train_accounts, env)

    runs = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(dir=cache) as out:
            argv = ["--model", uri, "--data", str(portfolio), "--as-of", as_of.isoformat(),
                    "--out", out]  # fmt: skip
            if args.experiment_share is not None:
                argv += ["--experiments", str(experiment_file(cache, as_of, args.experiment_share))]
            seconds, rss, stdout, cpu, tree = measured_score(
                argv, args.kernel, env, cache / f"score-{repeat}.log"
            )
        runs.append((seconds, rss, stages_of(stdout), cpu, tree))
        print(
            f"run {repeat + 1}: {seconds:.1f} s, CPU {cpu:.1f} s, peak RSS {rss:.2f} GiB "
            f"(largest process), peak PSS {tree:.2f} GiB (job and workers summed), "
            f"load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )

    median_seconds = statistics.median(r[0] for r in runs)
    median_rss = statistics.median(r[1] for r in runs)
    names = list(runs[0][2])
    print(f"machine: {machine_description()}; load average {os.getloadavg()[0]:.1f}")
    print(
        f"portfolio: {portfolio} ({args.accounts:,} delinquent accounts at {as_of}); model {uri}; kernel {args.kernel}"
    )
    if args.experiment_share is not None:
        print(
            f"experiment: the shipped example, {args.experiment_share:.0%} of the book randomised"
        )
    print(f"runs: {', '.join(f'{r[0]:.1f}' for r in runs)} s")
    print(f"{'stage':<52} {'median s':>9} {'share':>7}")
    for name in names:
        seconds = statistics.median(r[2].get(name, 0.0) for r in runs)
        print(f"  {name:<50} {seconds:9.1f} {seconds / median_seconds:7.1%}")
    median_cpu = statistics.median(r[3] for r in runs)
    median_tree = statistics.median(r[4] for r in runs)
    print(
        f"end to end (child wall time): {median_seconds:.1f} s, CPU {median_cpu:.1f} s, "
        f"peak RSS {median_rss:.2f} GiB (largest process), peak PSS {median_tree:.2f} GiB "
        "(job and workers summed)"
    )
    if args.accounts != TARGET:
        scale = TARGET / args.accounts
        print(
            f"EXTRAPOLATED (linear, x{scale:g}) to {TARGET:,} accounts: ~{median_seconds * scale / 60:.1f} min "
            "(not measured; peak memory does not scale linearly: scoring runs one partition at a time)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
