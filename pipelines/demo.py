"""Run the whole flow end to end on a simulated portfolio, as a new user would.

Each stage is the real `rollrisk` subcommand, run as its own process (`python -m rollrisk`,
with this interpreter) with the arguments printed before it runs, so the demo doubles as a
worked example of the CLI:

  1. simulate            a contract-valid portfolio of N accounts x M months ending 2025-12
                         (+ truth/)
  2. validate            the data contract check (zero rejects expected)
  3. build-training-set  point-in-time features and roll-to-default labels, every as-of
  4. train               LightGBM + both baselines, out-of-time report, MLflow challenger
  5. promote             the champion gates (a refusal is reported, and the demo goes on)
  6. score               the delinquent book at the latest month-end: probability, reasons,
                         segment, treatment with its compliance trail
  7. simulate-policy     the scored (model-driven) policy against the tiered baseline, rolled
                         forward on the simulator with the same random draws, 20 seeds
  8. logged-decisions    the simulated lender's own experiment (10 % of its M1-M3 book
                         randomised across action bundles, with propensities) as a table of
                         decisions and their book value, scored with the same model
  9. learn-policy        rules learnt from that experiment (EconML doubly robust, policy tree)
                         and their off-policy estimate against the lender's standard collection;
                         an experiment too small to learn from (learn-policy's exit code 3) is
                         said, and the demo goes on without a learned policy
 10. report              the strategy review page (one self-contained HTML file), with the
                         experiment's readout and the learned policy (when there is one)

Outputs go under --out (default runs/demo). MLflow tracking uses the embedded SQLite store
runs/mlflow.db under the working folder (`mlflow ui --backend-store-uri sqlite:///runs/mlflow.db`
shows the runs, versions and aliases), or the store given with --tracking-uri. The demo does not
follow MLFLOW_TRACKING_URI: it registers models on simulated data and moves the champion alias
of rollrisk-roll-to-default, which in a lender's own registry would replace its champion; it
says so when the variable is set.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rollrisk.errors import NotEnoughEvidence, UserError
from rollrisk.storage.tracking import DEFAULT_STORE

CHAMPION = "models:/rollrisk-roll-to-default@champion"
CHALLENGER = "models:/rollrisk-roll-to-default@challenger"
# what the demo's learned rules may test (fields conf/policy.yaml can test, so learn-policy also
# writes a policy file) and what the outcome model sees besides them
LEARNED_RULE_FEATURES = "start_bucket,risk_band,segment"
LEARNED_MODEL_FEATURES = "probability,dpd,amount_overdue,exposure"
# The simulated history ends here whatever its length (the demo scores the book at 2025-12-31),
# and starts --months before. 36 months by default: the shipped split keeps the latest 13
# months out of the evaluation's training rows (embargoes, validation, test, the last label
# window) and the longest feature window is 12 months, so with 24 months the evaluation's trees
# learnt only from rows whose 12-month windows were cut short,
# and the gates refused the model on 3 of 8 simulated worlds (the demo's among them); with 36,
# on none of 8 (docs/models.md, "The gates across seeds").
LAST_MONTH = "2025-12"
# Below these the simulated experiment logs far too few decisions for learn-policy's
# cross-fitting (measured: 2,000 accounts x 12 months and 4,000 x 8, bundles given to one
# account only), so such a run is refused before the first stage. Above them it depends on the
# seed (4,000 x 12 and 3,000 x 24 with seed 7 learnt a policy; 3,000 x 24 with seed 5 gave a
# bundle to one account): learn-policy then exits NotEnoughEvidence.exit_code, which the demo
# allows, and the report goes without a learned policy.
MIN_MONTHS, MIN_ACCOUNT_MONTHS = 12, 45_000


def first_month(months: int, last: str = LAST_MONTH) -> str:
    """The first of ``months`` calendar months ending with ``last`` (YYYY-MM)."""
    year, month = map(int, last.split("-"))
    index = year * 12 + month - 1 - (months - 1)
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--accounts",
        type=int,
        default=60_000,
        help="accounts to simulate (accounts x months at least 45,000; a small experiment may "
        "still be too small to learn a policy from: the report then goes without one)",
    )
    parser.add_argument(
        "--months",
        type=int,
        default=36,
        help=f"months of history to simulate, ending {LAST_MONTH} (default: 36; at least 12)",
    )
    parser.add_argument("--seed", type=int, default=7, help="simulation seed")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store the demo registers its models in and promotes them to champion "
        "(default: the embedded sqlite:///runs/mlflow.db under the working folder; "
        "MLFLOW_TRACKING_URI is not followed, so that a lender's own registry never gets the "
        "demo's simulated champion)",
    )


@dataclass(frozen=True)
class Stage:
    title: str
    argv: list[str]
    allowed: tuple[int, ...] = (0,)  # exit codes that let the demo go on


def stages(
    args: argparse.Namespace, model_uri: str = CHAMPION, learned: bool = True
) -> list[Stage]:
    """The demo's stages: score and logged-decisions use ``model_uri`` (the challenger stands
    in when there is no champion), and the report shows learn-policy's output when ``learned``
    (not when the experiment was too small to learn from)."""
    portfolio = args.out / "portfolio"
    training_set = args.out / "training_set.parquet"
    scores = args.out / "scores"
    policy_simulation = args.out / "policy_simulation"
    logged = args.out / "logged_decisions.parquet"
    learned_out = args.out / "learned"
    report = args.out / "strategy_report.html"
    return [
        Stage(
            "simulate a portfolio",
            ["simulate", "--accounts", str(args.accounts), "--months", str(args.months),
             "--start-month", first_month(args.months), "--seed", str(args.seed),
             "--out", str(portfolio), "--overwrite"],
        ),
        Stage(
            "validate it against the data contract",
            ["validate", "--data", str(portfolio), "--rejects", str(args.out / "rejects.csv")],
        ),
        Stage(
            "build the point-in-time training set",
            ["build-training-set", "--data", str(portfolio), "--out", str(training_set)],
        ),
        Stage(
            "train LightGBM and both baselines; register a challenger",
            ["train", "--data", str(portfolio), "--training-set", str(training_set),
             "--out", str(args.out / "train")],
        ),
        Stage("promote the challenger if it passes the gates", ["promote"], allowed=(0, 1)),
        Stage(
            "score the delinquent book at the latest month-end",
            ["score", "--model", model_uri, "--data", str(portfolio), "--out", str(scores)],
        ),
        Stage(
            "simulate the model-driven policy against the tiered baseline",
            ["simulate-policy", "--scores", str(scores), "--data", str(portfolio),
             "--out", str(policy_simulation)],
        ),
        Stage(
            "tabulate the lender's logged experiment: decisions, propensities, book value",
            ["logged-decisions", "--model", model_uri, "--data", str(portfolio),
             "--out", str(logged)],
        ),
        Stage(
            "learn a policy from the experiment and estimate it off-policy",
            ["learn-policy", "--logged", str(logged),
             "--experiments", str(portfolio / "experiments.yaml"),
             "--rule-features", LEARNED_RULE_FEATURES, "--model-features", LEARNED_MODEL_FEATURES,
             "--out", str(learned_out)],
            allowed=(0, NotEnoughEvidence.exit_code),  # too small to learn from: no policy
        ),
        Stage(
            "write the strategy review report",
            ["report", "--scores", str(scores), "--data", str(portfolio),
             "--policy-simulation", str(policy_simulation),
             *(["--learned", str(learned_out)] if learned else []), "--out", str(report)],
        ),
    ]  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if args.months < MIN_MONTHS or args.accounts * args.months < MIN_ACCOUNT_MONTHS:
        raise UserError(
            f"the demo needs at least --months {MIN_MONTHS} and --accounts x --months of "
            f"{MIN_ACCOUNT_MONTHS:,} (got {args.accounts:,} x {args.months}): with less, the "
            "simulated lender's experiment logs far too few decisions to learn a policy from; "
            "run the jobs one by one for smaller portfolios"
        )
    if args.tracking_uri is None:  # the embedded store's folder, as train makes it when unset
        (Path.cwd() / DEFAULT_STORE).parent.mkdir(parents=True, exist_ok=True)
    store = args.tracking_uri or f"sqlite:///{(Path.cwd() / DEFAULT_STORE).resolve()}"
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    if saved and saved != store and args.tracking_uri is None:
        print(
            f"note: MLFLOW_TRACKING_URI is set ({saved}); the demo keeps to its own store "
            f"{store}, for it promotes a model trained on simulated data to champion (give "
            "--tracking-uri to choose the store)",
            flush=True,
        )
    os.environ["MLFLOW_TRACKING_URI"] = store  # read by every stage's process
    try:
        return _run_stages(args)
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def _run_stages(args: argparse.Namespace) -> int:
    # what the stages so far decided for the rest: the scoring model (the challenger when the
    # gates refused it), and whether learn-policy learnt a policy for the report to show
    model_uri, learned = CHAMPION, True
    count = len(stages(args))
    started = time.perf_counter()
    for number in range(1, count + 1):
        stage = stages(args, model_uri, learned)[number - 1]
        argv = stage.argv
        if argv[0] == "score" and model_uri == CHALLENGER:
            print(
                "\nnote: the challenger did not pass the promotion gates (see above), so it did "
                "not become the champion (any champion already in the store stays); the demo "
                "scores (and tabulates the experiment) with the challenger it just trained to "
                "show the rest of the flow. A production run scores only a champion.",
                flush=True,
            )
        print(f"\n== [{number}/{count}] {stage.title}", flush=True)
        print(f"$ rollrisk {_quote(argv)}", flush=True)
        stage_started = time.perf_counter()
        code = run_stage(argv)
        if code not in stage.allowed:
            how = f"was killed by signal {-code}" if code < 0 else f"failed with exit code {code}"
            raise UserError(f"stage '{stage.title}' {how}; see its output above")
        if argv[0] == "promote" and code != 0:
            model_uri = CHALLENGER
        if argv[0] == "learn-policy" and code == NotEnoughEvidence.exit_code:
            learned = False
            print(
                "\nnote: the lender's experiment in this simulated portfolio is too small to "
                "learn a policy from (see learn-policy's reason above); the report goes without a "
                "learned policy. A larger portfolio (--accounts, --months) logs more decisions.",
                flush=True,
            )
        print(f"   ({time.perf_counter() - stage_started:.1f} s)", file=sys.stderr)
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s; outputs under {args.out}")
    print(f"  training report:  {args.out / 'train' / 'report.html'}")
    print(f"  scored accounts:  {args.out / 'scores' / 'current'}")
    print(f"  logged decisions: {args.out / 'logged_decisions.parquet'}")
    if learned:
        print(
            f"  learned policy:   {args.out / 'learned'} (policy_learning.md, learned_policy.yaml)"
        )
    else:
        print("  learned policy:   none (the experiment was too small to learn from)")
    print(f"  strategy report:  {args.out / 'strategy_report.html'}")
    return 0


def run_stage(argv: Sequence[str]) -> int:
    """Run ``rollrisk ARGV`` in a child process of this interpreter and return its exit code.

    The child shares this process's standard output and error, so its output streams as it
    comes, and its environment (MLFLOW_TRACKING_URI, ...) and working folder.
    """
    return subprocess.run([sys.executable, "-m", "rollrisk", *argv], check=False).returncode


def _quote(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
