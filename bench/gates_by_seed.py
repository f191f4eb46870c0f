"""The promotion gates across simulator seeds, and why a seed fails: the demo's flow (simulate,
build-training-set, train, promote --dry-run) per seed, with the simulator's macro logit over the
validation and test months' outcome windows beside the out-of-time calibration.

Per seed, in ``ROOT/seed<S>-<ACCOUNTS>x<MONTHS>-from<START>`` (reused when its training report
exists); the history ends 2025-12 as the demo's does unless ``--start-month`` says otherwise:

    rollrisk simulate --accounts N --months M --seed S [--start-month YYYY-MM] --out portfolio
    rollrisk build-training-set --data portfolio --out training_set.parquet
    rollrisk train --data portfolio --training-set training_set.parquet --out train
    rollrisk promote --dry-run

each with the shipped configuration and its own MLflow store (``runs/mlflow.db`` in the seed's
folder). Printed as Markdown: the split, the evaluation fit's out-of-time ECE calibrated and
raw, mean predicted against the realised rate, the AUC margin over the WOE scorecard (overall
and per starting bucket), the gates' verdict, and, from ``truth/params.json`` (evaluation code:
the models never read it), the mean macro logit of the months in which the validation as-of
dates' labels were decided against the test as-of dates'. The macro logit is added to every
account's monthly roll logit (docs/simulator.md): a shift of +0.3 moves a 0.2 roll rate to
about 0.25.

    nice .venv/bin/python bench/gates_by_seed.py --seeds 7 11 12 13 14 --root runs/gates
    nice .venv/bin/python bench/gates_by_seed.py --seeds 7 11 12 13 14 --months 36 \\
        --root runs/gates
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from harness import machine_description

from rollrisk.pipelines.demo import first_month

ROLLRISK = [sys.executable, "-m", "rollrisk.cli"]


def month_plus(month: str, k: int) -> str:
    year, number = map(int, month.split("-"))
    index = year * 12 + number - 1 + k
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def months_of(span: str) -> list[str]:
    """'2025-02-28..2025-04-30' -> ['2025-02', '2025-03', '2025-04']."""
    first, last = (part[:7] for part in span.split(".."))
    out = [first]
    while out[-1] < last:
        out.append(month_plus(out[-1], 1))
    return out


def outcome_months(as_of_months: list[str], window: int) -> list[str]:
    """The months in which the labels of these as-of months are decided."""
    return sorted({month_plus(m, k) for m in as_of_months for k in range(1, window + 1)})


def run_seed(folder: Path, seed: int, args: argparse.Namespace) -> float:
    if (folder / "train" / "report.md").exists():
        return 0.0
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    simulate = ["simulate", "--accounts", str(args.accounts), "--months", str(args.months),
                "--start-month", args.start_month, "--seed", str(seed), "--out", "portfolio",
                "--overwrite"]  # fmt: skip
    # each seed its own store (runs/mlflow.db in its folder), never one set in the environment
    environment = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    steps = [
        simulate,
        ["build-training-set", "--data", "portfolio", "--out", "training_set.parquet"],
        [
            "train",
            "--data",
            "portfolio",
            "--training-set",
            "training_set.parquet",
            "--out",
            "train",
        ],
    ]
    with open(folder / "log.txt", "w") as log:
        for step in steps:
            print(f"seed {seed}: rollrisk {step[0]}", file=sys.stderr, flush=True)
            subprocess.run(
                [*ROLLRISK, *step], cwd=folder, stdout=log, stderr=log, check=True, env=environment
            )
        # exit code 1 = refused: the verdict is read from the output
        subprocess.run(
            [*ROLLRISK, "promote", "--dry-run"], cwd=folder, stdout=log, stderr=log, env=environment
        )
    return time.perf_counter() - started


def figures(folder: Path, window: int) -> dict[str, str]:
    report = (folder / "train" / "report.md").read_text()
    log = (folder / "log.txt").read_text()
    macro = json.loads((folder / "portfolio" / "truth" / "params.json").read_text())["world"][
        "macro_logit_by_month"
    ]

    def field(name: str) -> str:
        found = re.search(rf"\| {re.escape(name)} \| ([^|(]+)", report)
        return found.group(1).strip()

    def model_row(name: str) -> list[str]:
        return re.search(rf"^\| {name} \| (.*) \|$", report, re.M).group(1).split(" | ")

    validation, test = (
        field("evaluation: validation as-of"),
        field("evaluation: out-of-time test as-of"),
    )

    def mean_macro(span: str) -> float:
        months = outcome_months(months_of(span), window)
        return sum(macro[m] for m in months) / len(months)

    calibrated, raw = model_row("lightgbm"), model_row("lightgbm_uncalibrated")
    buckets = dict(
        re.findall(
            r"^\| (M\d) \| scorecard \| \d+ \| [\d.]+ \| [\d.]+ \| ([-+\d.]+) \|", report, re.M
        )
    )
    verdict = "refused" if "would be refused" in log else "passes"
    fails = sorted(set(re.findall(r"FAIL (\w+)", log)))
    return {
        "validation as-of": validation,
        "test as-of": test,
        "macro: validation labels": f"{mean_macro(validation):+.3f}",
        "macro: test labels": f"{mean_macro(test):+.3f}",
        "shift": f"{mean_macro(test) - mean_macro(validation):+.3f}",
        "ECE calibrated / raw": f"{calibrated[5]} / {raw[5]}",
        "mean predicted calibrated / raw / realised": f"{calibrated[6]} / {raw[6]} / {calibrated[7]}",
        "AUC margin over scorecard": re.search(
            r"\*\*lightgbm\*\* vs \*\*scorecard\*\*: AUC gap (\S+)", report
        ).group(1),
        "margin M1 / M2 / M3": " / ".join(f"{float(buckets[b]):+.4f}" for b in ("M1", "M2", "M3")),
        "gates": verdict + (": " + ", ".join(fails) if fails else ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 12, 13, 14])
    parser.add_argument("--accounts", type=int, default=60_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument(
        "--start-month",
        default=None,
        help="simulate's --start-month (default: the demo's, so the history ends 2025-12)",
    )
    parser.add_argument("--window", type=int, default=3, help="the label's window (months)")
    parser.add_argument("--root", type=Path, required=True)
    args = parser.parse_args()
    args.start_month = args.start_month or first_month(args.months)
    print(machine_description())
    rows = []
    for seed in args.seeds:
        # the settings in the name: a folder is reused only for the same world
        folder = args.root / f"seed{seed}-{args.accounts}x{args.months}-from{args.start_month}"
        seconds = run_seed(folder.resolve(), seed, args)
        rows.append({"seed": str(seed), **figures(folder, args.window)})
        if seconds:
            print(f"seed {seed}: {seconds:.0f} s", file=sys.stderr, flush=True)
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(row[c] for c in columns) + " |")
    margins = [float(r["AUC margin over scorecard"]) for r in rows]
    print(f"\nmean AUC margin over the scorecard: {sum(margins) / len(margins):+.4f} over seeds "
          f"{', '.join(r['seed'] for r in rows)}; refused: "
          f"{sum(r['gates'].startswith('refused') for r in rows)} of {len(rows)}")  # fmt: skip


if __name__ == "__main__":
    main()
