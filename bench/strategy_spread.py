"""The strategy figures' spread: held-out portfolio seeds x as-of months x response tables.

One demo figure (seed 7, one as-of, the primary response table) says little about a policy. This
runs the whole flow the demo runs (simulate, build the training set, train, promote, score,
simulate-policy) on each portfolio seed and response table, in its own folder with its own
MLflow store, scores three consecutive month-ends (the latest three, none of them in the
training labels), and prints every run's book-value figures beside the references and a
summary: how many runs the shipped policy beats the baseline and every segment-blind control
with the account-and-seed interval above zero, value captured and value of segmentation, and
true-driver groups significantly worse off than under the baseline.

Nothing here tunes anything: the policy, segments and ladders are the shipped defaults, and the
seeds default to 11, 12, 13 (the demo's seed 7 is where earlier sessions looked at figures).
``--policy LABEL=FILE`` scores and simulates another policy file beside the shipped one on the
same worlds, models and as-ofs (e.g. one proposed by ``simulate-policy --propose-policy`` on a
tuning world: report it here, on worlds it was not tuned on).

    .venv/bin/python bench/strategy_spread.py                      # 3 seeds x 2 tables x 3 as-ofs
    .venv/bin/python bench/strategy_spread.py --seeds 11 --tables primary --as-ofs 1 --accounts 20000
    .venv/bin/python bench/strategy_spread.py --policy tuned=runs/tune/proposed.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from harness import machine_description

SEGMENT_BLIND = ("segment_blind", "best_bundle_per_bucket", "baseline_plus_grace")
CHAMPION = "models:/rollrisk-roll-to-default@champion"
CHALLENGER = "models:/rollrisk-roll-to-default@challenger"


def month_ends(start_month: str, months: int, count: int) -> list[str]:
    """The last ``count`` month-ends of a portfolio of ``months`` months from ``start_month``."""
    year, month = map(int, start_month.split("-"))
    ends = []
    for offset in range(months - count, months):
        y, m = divmod(month - 1 + offset + 1, 12)
        ends.append((date(year + y, m + 1, 1) - timedelta(days=1)).isoformat())
    return ends


def rollrisk(argv: list[str], cwd: Path, log: Path, allowed: tuple[int, ...] = (0,)) -> int:
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{cwd / 'mlflow.db'}")
    with log.open("a") as out:
        out.write(f"$ rollrisk {' '.join(argv)}\n")
        out.flush()
        code = subprocess.run(
            [sys.executable, "-m", "rollrisk", *argv], cwd=cwd, env=env, stdout=out, stderr=out
        ).returncode
    if code not in allowed:
        raise RuntimeError(f"rollrisk {' '.join(argv)} failed ({code}); see {log}")
    return code


def world(
    args: argparse.Namespace,
    seed: int,
    table: str,
    policies: dict[str, Path | None] | None = None,
    folder_name: str | None = None,
) -> list[dict]:
    """Simulate, train and score one world; one simulate-policy result per as-of and policy.

    ``policies`` maps a label to a policy file scored and simulated on the same world (default:
    the shipped policy, labelled ``shipped``).
    """
    folder = (args.out / (folder_name or f"seed-{seed}-{table}")).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "log.txt"
    log.write_text("")
    rollrisk(["simulate", "--accounts", str(args.accounts), "--months", str(args.months),
              "--seed", str(seed), "--response-table", table, "--out", "portfolio",
              "--overwrite"], folder, log)  # fmt: skip
    rollrisk(["build-training-set", "--data", "portfolio", "--out", "training_set.parquet"],
             folder, log)  # fmt: skip
    rollrisk(["train", "--data", "portfolio", "--training-set", "training_set.parquet",
              "--out", "train"], folder, log)  # fmt: skip
    promoted = rollrisk(["promote"], folder, log, allowed=(0, 1)) == 0
    results = []
    for label, policy in (policies or {"shipped": None}).items():
        extra = [] if policy is None else ["--policy", str(Path(policy).resolve())]
        for as_of in month_ends(args.start_month, args.months, args.as_ofs):
            scores, sim = f"scores-{label}-{as_of}", f"policy-{label}-{as_of}"
            rollrisk(["score", "--model", CHAMPION if promoted else CHALLENGER, "--data",
                      "portfolio", "--as-of", as_of, "--out", scores, *extra], folder, log)  # fmt: skip
            rollrisk(["simulate-policy", "--scores", scores, "--data", "portfolio", "--out",
                      sim, "--seeds", str(args.policy_seeds)], folder, log)  # fmt: skip
            result = json.loads((folder / sim / "policy_simulation.json").read_text())
            results.append({"seed": seed, "table": table, "as_of": as_of, "label": label,
                            "champion": promoted, **summarise(result)})  # fmt: skip
    return results


def summarise(result: dict) -> dict:
    headline = result["headline"]
    refs = result.get("references", {})
    versus = result.get("uplift_vs_references", {})
    blind = {name: versus[name] for name in SEGMENT_BLIND if name in versus}
    by_driver = result.get("uplift_by_true_driver", {})
    book = {name: row["book_value"]["mean"] for name, row in refs.items()}
    return {
        "accounts": result["accounts"],
        "policy": headline["model_driven"],
        "baseline": headline["baseline_tiered"],
        "uplift": headline["uplift"],
        "uplift_share": headline["uplift"]["mean"] / abs(headline["baseline_tiered"]),
        "book": book,
        "versus": versus,
        "beats_baseline": headline["uplift"]["ci_low"] > 0,
        "beats_every_blind": bool(blind) and all(v["ci_low"] > 0 for v in blind.values()),
        "worse_drivers": sorted(
            d for d, row in by_driver.items() if row["book_value"]["ci_high"] < 0
        ),  # fmt: skip
        "value_captured": (result.get("value_captured") or {}).get("overall"),
        "value_of_segmentation": (result.get("value_of_segmentation") or {}).get("value"),
    }


def fmt(value: float | None, spec: str = "+,.0f") -> str:
    return "-" if value is None else format(value, spec)


def report(rows: list[dict], seconds: float) -> str:
    lines = [
        f"machine: {machine_description()}; {seconds / 60:.1f} min in all",
        "",
        "| policy | seed | table | as-of | champion | accounts | policy - baseline (95 %, accounts x seeds) "
        "| % of baseline | - seg.-blind | - best bundle/bucket | - baseline+grace | - oracle "
        "| value captured | value of segm. | drivers worse off |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        u = r["uplift"]
        cols = []
        for name in (*SEGMENT_BLIND, "oracle"):
            v = r["versus"].get(name)
            cols.append("-" if v is None else f"{v['mean']:+,.0f} [{v['ci_low']:+,.0f}, "
                        f"{v['ci_high']:+,.0f}]")  # fmt: skip
        lines.append(
            f"| {r.get('label', 'shipped')} | {r['seed']} | {r['table']} | {r['as_of']} | {'yes' if r['champion'] else 'no'} "
            f"| {r['accounts']:,} | {u['mean']:+,.0f} [{u['ci_low']:+,.0f}, {u['ci_high']:+,.0f}] "
            f"| {r['uplift_share']:+.2%} | "
            + " | ".join(cols)
            + f" | {fmt(r['value_captured'], '.2f')} | {fmt(r['value_of_segmentation'], '.2f')} "
            f"| {', '.join(r['worse_drivers']) or 'none'} |"
        )
    for label in dict.fromkeys(r.get("label", "shipped") for r in rows):
        lines += [
            "",
            f"**{label}**",
            *summary_lines([r for r in rows if r.get("label", "shipped") == label]),
        ]
    return "\n".join(lines)


def summary_lines(rows: list[dict]) -> list[str]:
    """The counts and medians over ``rows`` (one policy's runs)."""
    lines: list[str] = []
    shares = [r["uplift_share"] for r in rows]
    captured = [r["value_captured"] for r in rows if r["value_captured"] is not None]
    segmentation = [
        r["value_of_segmentation"] for r in rows if r["value_of_segmentation"] is not None
    ]
    lines += [
        f"- runs: {len(rows)}; policy beats the baseline (interval above 0) in "
        f"{sum(r['beats_baseline'] for r in rows)}, beats every segment-blind control in "
        f"{sum(r['beats_every_blind'] for r in rows)}; a true-driver group significantly worse "
        f"off than under the baseline in {sum(bool(r['worse_drivers']) for r in rows)}",
        f"- uplift as a share of the baseline's book value: median {statistics.median(shares):+.2%}"
        f", min {min(shares):+.2%}, max {max(shares):+.2%}",
    ]
    if captured:
        lines.append(f"- value captured: median {statistics.median(captured):.2f}, "
                     f"min {min(captured):.2f}, max {max(captured):.2f} ({len(captured)} runs "
                     "where the oracle beats the baseline)")  # fmt: skip
    if segmentation:
        lines.append(f"- value of segmentation: median {statistics.median(segmentation):.2f}, "
                     f"min {min(segmentation):.2f}, max {max(segmentation):.2f}")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    parser.add_argument("--tables", nargs="+", default=["primary", "scaled-1"],
                        help="response tables the worlds are simulated under")  # fmt: skip
    parser.add_argument("--as-ofs", type=int, default=3, help="latest month-ends scored")
    parser.add_argument("--accounts", type=int, default=60_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--start-month", default="2024-01")
    parser.add_argument("--policy-seeds", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_strategy_spread"))
    parser.add_argument("--policy", action="append", default=[], metavar="LABEL=FILE",
                        help="another policy file to score and simulate beside the shipped one "
                        "(repeatable)")  # fmt: skip
    args = parser.parse_args()
    policies: dict[str, Path | None] = {"shipped": None}
    for given in args.policy:
        label, sep, file = given.partition("=")
        if (
            not sep
            or not re.fullmatch(r"[A-Za-z0-9_.-]+", label)
            or not Path(file).is_file()
            or label in policies
        ):
            parser.error(
                f"--policy {given}: expected a new LABEL=FILE (LABEL of letters, digits, _ . -; "
                "it names folders) with an existing FILE"
            )
        policies[label] = Path(file)
    started = time.perf_counter()
    rows: list[dict] = []
    for table in args.tables:
        for seed in args.seeds:
            print(f"[spread] seed {seed}, table {table} ...", file=sys.stderr, flush=True)
            rows += world(args, seed, table, policies)
    text = report(rows, time.perf_counter() - started)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(rows, indent=2, default=str))
    (args.out / "summary.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
