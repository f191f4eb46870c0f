"""Does the off-policy estimate cover what the policy really does? (issue 13, item 5)

On a simulated world whose lender explored (``rollrisk simulate``) and whose logged decisions
were built (``rollrisk logged-decisions``), for each policy "give every eligible account bundle
b" (each explored bundle) and, when given, each learned policy file's rules:

* **off-policy estimate**: the mean doubly robust score of the policy minus the logging policy's
  (``standard_queue``, the tiered lender), per decision, on the evaluation half of the accounts
  (the learner's own split), from the logged data only, with the 95 % interval resampling
  accounts (the estimator ``rollrisk learn-policy`` reports);
* **realised**: the same accounts at the same as-of dates replayed by the simulator
  (``simulator.replay``) under that policy and under the tiered lender for the same months, on
  ``--seeds`` random draws each, book value per decision (the replay's), the mean of the
  paired difference.

A run is covered when the realised difference lies in the estimate's interval. The replay reads
the simulator's truth; the estimate never does.

    .venv/bin/python bench/ope_coverage.py --world /tmp/lw60 --seeds 5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from harness import machine_description

from rollrisk.api import load_portfolio
from rollrisk.conf import DEFAULT_POLICY
from rollrisk.models.stats import percentile_bootstrap
from rollrisk.simulator.engine import ladder_plan
from rollrisk.simulator.replay import (
    ArmSpec,
    load_action_costs,
    month_index,
    recovery_valuation,
    replay_to_month,
    run_arm,
)
from rollrisk.simulator.truth import read_simulation_params
from rollrisk.strategies.experiments import bundle_ladders, load_experiments, unit_draws
from rollrisk.strategies.policy import STANDARD_QUEUE, load_policy
from rollrisk.strategies.policy_learning import (
    KEEP_POLICY,
    SPLIT_SALT,
    LearningSettings,
    _encode,
    doubly_robust_scores,
    learn_policy,
    predict_candidates,
)

RULES = ("start_bucket", "risk_band", "segment")
RULE_SETS = {
    "shap": RULES,
    "raw": ("start_bucket", "risk_band", "product", "dpd", "amount_overdue"),
    "bucket": ("start_bucket",),
}
MODEL = ("probability", "dpd", "amount_overdue", "exposure")


def estimates(logged: pl.DataFrame, evaluation: np.ndarray, seed: int) -> tuple[list[str], dict]:
    """Per explored bundle: the off-policy estimate of (everyone b) - (logging policy)."""
    settings = LearningSettings(rule_features=RULES, model_features=MODEL, seed=seed)
    labels = sorted(set(logged["bundle"].to_list()))
    x, _, _ = _encode(logged, (*RULES, *MODEL))
    scores = doubly_robust_scores(
        logged["book_value"].cast(pl.Float64).to_numpy(),
        logged["bundle"].to_numpy().astype(object),
        x,
        logged["propensity"].cast(pl.Float64).to_numpy(),
        labels,
        settings,
        groups=logged["account_id"].to_numpy(),
    )
    keep = scores[:, labels.index(STANDARD_QUEUE)]
    accounts = logged["account_id"].to_numpy()[evaluation]
    codes, account = np.unique(accounts, return_inverse=True)
    out = {}
    for k, bundle in enumerate(labels):
        if bundle == STANDARD_QUEUE:
            continue
        gap = (scores[:, k] - keep)[evaluation]
        per_account = np.bincount(account, weights=gap, minlength=len(codes))
        count = np.bincount(account, minlength=len(codes)).astype(float)

        def statistic(rows: np.ndarray, s=per_account, c=count) -> float:
            return float(s[rows].sum() / c[rows].sum())

        low, high = percentile_bootstrap(statistic, len(codes), 1000, seed)
        out[bundle] = {"estimate": float(gap.mean()), "ci_low": low, "ci_high": high}
    return labels, out


def realised(
    world: Path, choices: dict[str, pl.DataFrame], ladders: dict, seeds: int, horizon: int
) -> dict[str, float]:
    """Per policy (``account_id, as_of, bundle`` per decision): the replayed book value per
    decision minus the tiered lender's, same accounts, months and draws."""
    sim = read_simulation_params(world / "portfolio")
    portfolio = load_portfolio(world / "portfolio")
    valuation = recovery_valuation(portfolio.statements, treatments=portfolio.treatments)
    costs = load_action_costs()
    steps_of = {b: [(s.action, s.channel) for s in steps] for b, steps in ladders.items()}
    steps_of[STANDARD_QUEUE] = [(STANDARD_QUEUE, None)]
    totals = dict.fromkeys(choices, 0.0)
    decisions = 0
    frame = next(iter(choices.values()))
    for as_of in sorted(frame["as_of"].unique().to_list()):
        ids = frame.filter(pl.col("as_of") == as_of)["account_id"].to_list()
        month = month_index(sim.start_month, as_of)
        replay = replay_to_month(sim, ids, month, horizon, portfolio.statements)
        n = len(replay.account_ids)
        order = pl.DataFrame({"account_id": replay.account_ids})
        queue = ladder_plan([steps_of[STANDARD_QUEUE]] * n)
        base = np.zeros(n)
        for seed in range(seeds):
            base += run_arm(replay, "baseline_tiered", queue, costs, horizon, seed,
                            valuation=valuation).book_value  # fmt: skip
        for name, choice in choices.items():
            bundles = order.join(
                choice.filter(pl.col("as_of") == as_of), on="account_id", how="left"
            )["bundle"].to_list()
            plan = ladder_plan([steps_of[b] for b in bundles])
            spec = ArmSpec(name, plan, np.zeros(n, dtype=bool))
            value = np.zeros(n)
            for seed in range(seeds):
                value += run_arm(replay, spec, plan, costs, horizon, seed,
                                 valuation=valuation).book_value  # fmt: skip
            totals[name] += float((value - base).sum() / seeds)
        decisions += n
        print(f"[coverage] replayed {as_of}: {n} decisions", file=sys.stderr, flush=True)
    return {name: total / decisions for name, total in totals.items()}


def learned_runs(logged: pl.DataFrame, ladders: dict, evaluation: np.ndarray) -> dict:
    """The learner's own policies (argmax and safe, three rule sets): each one's off-policy
    estimate of proposed - current on the evaluation half and its choice per decision there."""
    out = {}
    for label, rules in RULE_SETS.items():
        for confidence in (0.0, 0.95):
            settings = LearningSettings(
                rule_features=rules, model_features=MODEL, confidence=confidence
            )
            learned = learn_policy(logged, settings, ladders)
            chosen = predict_candidates(learned, logged.filter(pl.Series(evaluation)))
            frame = logged.filter(pl.Series(evaluation)).select("account_id", "as_of")
            bundle = [STANDARD_QUEUE if c == KEEP_POLICY else c for c in chosen]
            uplift = learned.evaluation.uplift
            name = f"learned {label}, {'safe' if confidence else 'argmax'}"
            out[name] = (
                {"estimate": uplift.value, "ci_low": uplift.ci_low, "ci_high": uplift.ci_high},
                frame.with_columns(pl.Series("bundle", bundle)),
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", type=Path, nargs="+", required=True,
                        help="folders holding portfolio/ and logged.parquet")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=5, help="replay draws per policy")
    parser.add_argument("--horizon", type=int, default=6)
    parser.add_argument("--first-decisions", action="store_true",
                        help="keep each account's first decision in the experiment only")  # fmt: skip
    parser.add_argument("--learned", action="store_true",
                        help="also the learner's policies (argmax and safe, three rule sets)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("runs/bench_ope_coverage"))
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []
    for world in args.world:
        logged = pl.read_parquet(world / "logged.parquet")
        if args.first_decisions:  # each account's first decision in the experiment only
            logged = logged.sort("as_of").unique(["account_id", "experiment_id"], keep="first")
        evaluation = unit_draws(SPLIT_SALT, logged["account_id"].to_list())[:, 0] < 0.5
        labels, estimate = estimates(logged, evaluation, seed=0)
        ladders = bundle_ladders(
            load_experiments(world / "portfolio" / "experiments.yaml"), load_policy(DEFAULT_POLICY)
        )
        frame = logged.filter(pl.Series(evaluation)).select("account_id", "as_of")
        runs = {
            f"everyone {bundle}": (e, frame.with_columns(pl.lit(bundle).alias("bundle")))
            for bundle, e in estimate.items()
        }
        if args.learned:
            runs |= learned_runs(logged, ladders, evaluation)
        truth = realised(world, {name: choice for name, (_, choice) in runs.items()}, ladders,
                         args.seeds, args.horizon)  # fmt: skip
        for name, (e, _) in runs.items():
            covered = e["ci_low"] <= truth[name] <= e["ci_high"]
            # a policy that keeps the logging policy everywhere has nothing to estimate
            degenerate = e["ci_low"] == e["ci_high"] == 0.0 and truth[name] == 0.0
            rows.append({"world": str(world), "policy": name, **e, "realised": truth[name],
                         "covered": covered, "degenerate": degenerate})  # fmt: skip
    lines = [
        f"machine: {machine_description()}; {(time.perf_counter() - started) / 60:.1f} min",
        "",
        "| world | policy | estimate - logging policy [95 %] | realised (replay) | covered |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {Path(r['world']).name} | {r['policy']} | {r['estimate']:+,.0f} "
            f"[{r['ci_low']:+,.0f}, {r['ci_high']:+,.0f}] | {r['realised']:+,.0f} "
            f"| {'(keeps the logging policy)' if r['degenerate'] else 'yes' if r['covered'] else 'NO'} |"
        )
    counted = [r for r in rows if not r["degenerate"]]
    lines.append(
        f"\ncovered in {sum(r['covered'] for r in counted)} of {len(counted)} runs (policies "
        "that keep the logging policy everywhere left out: nothing to estimate)"
    )
    text = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(rows, indent=2))
    (args.out / "summary.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
