"""Learn a collection policy from logged experiments and estimate its value before any rollout.

Reads a table of logged decisions (Parquet or CSV), one row per account and decision, with:
  account_id      the account
  bundle          the action bundle it got: a treatment of --policy or an arm bundle of --experiments
  policy_bundle   the treatment the current policy chose for it (what it would have got)
  propensity      the logged probability of `bundle` under the logging policy, in (0, 1]
                  (rollrisk.strategies.experiments: (1 - share) x [policy's] + share x arm weights)
  book_value      the outcome per account over the horizon (another column with --outcome)
  experiment_id   (optional) the experiment of --experiments the decision was logged in
                  (null: outside every experiment)
  arm             (optional) its arm there (`policy`: eligible, not randomised)
  and the feature columns named by --rule-features and --model-features (text = categories).

Checked against --experiments, before anything is learnt (a table with an experiment_id column;
rollrisk.strategies.experiments.check_logged_decisions): every experiment_id is an experiment of
the file; every arm one of its arms or `policy`; every bundle one its logging mixture can give
the account (its policy_bundle, or a ladder arm's bundle); every propensity within 1e-6
(absolute) of (1 - share) x [bundle = policy_bundle] + share x the weights of the arms giving
the bundle, computed from the file and the row's policy_bundle (the logging policy's decision);
outside every experiment, bundle = policy_bundle and propensity 1. A mismatch is refused (exit 2)
in one line: the table, the column, the rows affected, up to 3 examples (account, value found,
value expected). A table without experiment_id ties no row to an experiment: it is not checked
against the file, and a note on stderr says so.

Learns with EconML (doubly robust scores with the logged propensities, cross-fitted LightGBM
outcome model; a shallow PolicyTree on a learning half of the accounts), labels each leaf
safely (--confidence: it leaves the current policy only for a candidate whose gain has a lower
confidence bound above 0, bounded on learning accounts the tree's splits never saw, with at least
--min-explored explored accounts there), moves leaves off capacity-using bundles greedily when
--max-contact-share is set (the gap to the LP relaxation is reported), and estimates the
proposed policy's value per decision on the other half, with a 95% bootstrap interval over
accounts, beside the current policy's and the difference. Where the experiments are too small
for any bound to clear 0, the proposal keeps the current policy everywhere and its rules say
why (explored accounts, nearest alternative's estimate and lower bound).

Writes to --out:
  learned_rules.yaml     the rules (if/then on the rule features), the bundles, the evidence
                         (per rule and candidate: estimated gain, lower bound, explored accounts)
                         and the provenance (below)
  learned_policy.yaml    when every rule feature is one conf/policy.yaml can test (start_bucket,
                         risk_band, segment, product, dpd, amount_overdue): the learned rules over
                         the current policy's rules, with --policy's treatments, a file
                         `rollrisk score --policy` loads; review, commit. When the logging
                         policy gave every decision one bundle (the lender's control, its
                         standard collection: standard_queue) and --policy's rules reaching the
                         logged accounts give other treatments too, the current policy is one
                         rule giving that bundle and every learned rule names its treatment;
                         otherwise it is --policy's rules (they must give the logged
                         policy_bundle values)
  policy_learning.json   the off-policy estimate, the capacity outcome and the settings
  policy_learning.md     the same for people, and the experiment's plain readout per arm
Provenance: both YAML files open with comment lines (and learned_rules.yaml and the JSON hold a
provenance record) naming the date, the rollrisk version, the logged table with its SHA-256,
the decisions, as-of range, experiments and models learnt from, the experiment and policy
files with their SHA-256, and the off-policy estimate with its interval.

Exit codes:
  0  a policy was learnt (one that keeps the current policy everywhere included: its rules say
     why), and the files above written
  3  not enough logged evidence to learn a policy: the experiment is too small (no decision
     explored, a bundle given to one account, a cross-fitting fold fitted without some bundle,
     too few decisions to fit, label and evaluate the tree); the reason in one line, nothing
     written, and an earlier run's files above removed from --out, so that none is taken for
     this run's
  2  usage or data error (bad flag, unreadable or invalid table, EconML not installed),
     1 unexpected failure

Where logged data comes from: `rollrisk logged-decisions` builds the table from a portfolio's
experiment record (the experiment_assignments table), scoring each decision at its as-of and
measuring its book value over the horizon; docs/strategies.md says what the table must hold.
Needs the `learn` extra: pip install 'rollrisk[learn]'.

example:
  rollrisk learn-policy --logged runs/history/logged_decisions.parquet \\
      --experiments runs/history/experiments.yaml \\
      --rule-features start_bucket,segment --model-features probability,dpd \\
      --max-contact-share 0.3 --out runs/learned
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from rollrisk import __version__
from rollrisk.conf import DEFAULT_EXPERIMENTS, DEFAULT_POLICY, shown_path
from rollrisk.errors import NotEnoughEvidence, UserError
from rollrisk.storage.atomic_output import file_sha256, publish_file
from rollrisk.strategies.experiment_readout import arm_readout, readout_markdown
from rollrisk.strategies.experiments import (
    bundle_ladders,
    check_logged_decisions,
    load_experiments,
)
from rollrisk.strategies.policy import Policy, load_policy
from rollrisk.strategies.policy_learning import (
    POLICY_FIELDS,
    LearningSettings,
    check_logged,
    evaluation_document,
    evaluation_markdown,
    first_decisions,
    learn_policy,
    learned_policy_text,
    policy_fields_only,
    tree_rules_document,
)
from rollrisk.strategies.yaml_config import read_yaml_text

# what a run writes to --out (the policy file only when the rules test policy fields)
RULES_FILE, POLICY_FILE = "learned_rules.yaml", "learned_policy.yaml"
ESTIMATE_FILE, SUMMARY_FILE = "policy_learning.json", "policy_learning.md"
OUTPUTS = (RULES_FILE, POLICY_FILE, ESTIMATE_FILE, SUMMARY_FILE)


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--logged", type=Path, required=True, help="logged decisions, .parquet or .csv"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs") / "learn_policy", help="output folder"
    )
    parser.add_argument(
        "--rule-features",
        type=_names,
        default="start_bucket,segment",
        help="comma-separated columns the rules may test (policy fields give a policy file)",
    )
    parser.add_argument(
        "--model-features",
        type=_names,
        default="",
        help="comma-separated extra columns for the outcome model only (e.g. SHAP families)",
    )
    parser.add_argument("--outcome", default="book_value", help="outcome column per decision")
    parser.add_argument(
        "--policy",
        type=Path,
        default=DEFAULT_POLICY,
        help="the policy whose treatments hold the bundles' ladders, and the current policy "
        "when its rules give the logged policy_bundle values; when the logged decisions all "
        "got one bundle (e.g. standard_queue) and the rules reaching the logged accounts give "
        "others too, that bundle is the current policy (docs/strategies.md)",
    )
    parser.add_argument(
        "--experiments",
        type=Path,
        default=DEFAULT_EXPERIMENTS,
        help="the experiment file the data was logged under (its arms' ladders); a table with "
        "an experiment_id column is checked against it: experiments, arms, bundles and "
        "propensities (within 1e-6) must be the file's",
    )
    parser.add_argument("--max-depth", type=int, default=3, help="depth of the policy tree")
    parser.add_argument(
        "--min-leaf-share",
        type=float,
        default=0.02,
        help="smallest leaf, as a share of the decisions the tree's splits are fitted on",
    )
    parser.add_argument(
        "--max-contact-share",
        type=float,
        default=None,
        help="most decisions that may get an agent call or field visit (share; default: no cap)",
    )
    parser.add_argument(
        "--evaluation-share",
        type=float,
        default=0.5,
        help="share of accounts held out for the off-policy estimate",
    )
    parser.add_argument(
        "--confidence",
        type=float,
        default=0.95,
        help="safe leaf labels: a leaf leaves the current policy only for a candidate whose gain "
        "over it has a lower confidence bound above 0 at this family-wise confidence (one-sided, "
        "account-clustered, Bonferroni over the leaves and candidates), labelled on learning "
        "accounts the tree's splits never saw; 0 = the argmax of the mean scores (no bound)",
    )
    parser.add_argument(
        "--min-explored",
        type=int,
        default=30,
        help="with --confidence > 0: a candidate needs at least this many explored accounts in "
        "a leaf (labelling part) to be given there",
    )
    parser.add_argument(
        "--label-share",
        type=float,
        default=0.5,
        help="with --confidence > 0: share of the learning accounts held from the tree's splits "
        "to label its leaves",
    )
    parser.add_argument("--folds", type=int, default=3, help="cross-fitting folds (at least 2)")
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        help="bootstrap resamples of the estimate's interval (at least 200)",
    )
    parser.add_argument(
        "--decisions",
        choices=("first", "all"),
        default="first",
        help="which logged decisions to learn from: first (the default), each account's first "
        "decision in each experiment, the one its arm was randomised for (later decisions of a "
        "persistent arm are shaped by the arm's earlier months, which biases the estimate); "
        "all, every logged decision",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--threads", type=int, default=1, help="LightGBM threads")


def _read_logged(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise UserError(f"--logged {path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq", ".parq"):
            return pl.read_parquet(path)
        if suffix == ".csv":
            return pl.read_csv(path, infer_schema_length=None)
    except (pl.exceptions.PolarsError, OSError) as error:
        raise UserError(f"--logged {path} cannot be read: {error}") from None
    raise UserError(f"--logged {path}: expected a .parquet or .csv file")


def _summary_path(logged: Path) -> Path:
    """Where ``rollrisk logged-decisions`` writes the summary of the table ``logged``."""
    return logged.with_name(logged.name + ".summary.json")


def _logged_summary(logged: Path) -> dict[str, Any]:
    """The summary ``rollrisk logged-decisions`` wrote beside the table (``OUT.summary.json``);
    empty when there is none or it cannot be read (a table made otherwise)."""
    try:
        summary = json.loads(_summary_path(logged).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def _check_risk_bands(logged: Path, policy: Policy) -> None:
    """Refuse a ``--policy`` whose risk bands are not those the table's ``risk_band`` column was
    scored with (``rollrisk logged-decisions`` records them in ``OUT.summary.json``): a learned
    rule on ``risk_band: [medium]`` would be written into a file where medium means other
    accounts. A table without that summary is not checked."""
    scored_with = _logged_summary(logged).get("scored_with")
    if not isinstance(scored_with, dict) or not isinstance(scored_with.get("risk_bands"), dict):
        return
    logged_bands = {str(k): float(v) for k, v in scored_with["risk_bands"].items()}
    bands = {name: float(bound) for name, bound in policy.risk_bands}
    if logged_bands != bands:

        def shown(b: Mapping[str, float]) -> str:
            return ", ".join(f"{k} <= {v:g}" for k, v in b.items())

        raise UserError(
            f"--logged {logged}: its risk_band column was scored with the bands of "
            f"{scored_with.get('policy')} ({shown(logged_bands)}; {_summary_path(logged)}), --policy "
            f"{policy.source} has {shown(bands)}: a learned rule on a band would mean other "
            "accounts; pass the policy the table was scored with"
        )


def _check_decisions_logged_once(logged: pl.DataFrame, path: Path) -> None:
    """Refuse a table that logs one decision twice (the same account at the same as-of, or,
    without an as_of column, in the same experiment): both copies would be counted, and the
    estimate's interval, which resamples accounts, would be too narrow."""
    # an account is in at most one experiment at an as-of: with as_of, the experiment is no
    # part of the key (the same decision logged inside and outside an experiment is twice)
    keys = [c for c in ("account_id", "experiment_id", "as_of") if c in logged.columns]
    if "as_of" in keys and "experiment_id" in keys:
        keys.remove("experiment_id")
    if "account_id" not in keys:
        return  # the learner names the missing column
    repeated = (
        logged.with_row_index("_row")
        .filter(pl.len().over(keys) > 1)
        .group_by(keys, maintain_order=True)
        .agg(pl.col("_row") + 1)  # data rows counted from 1
    )
    if repeated.height:
        first = repeated.row(0, named=True)
        where = ", ".join(f"{k} {first[k]}" for k in keys)
        raise UserError(
            f"--logged {path}: {repeated.height:,} decisions are logged more than once (the "
            f"same {', '.join(keys)}); the first: {where} (data rows "
            f"{', '.join(map(str, first['_row'][:5]))}); a decision is logged once: remove the "
            "copies"
        )


def provenance(
    args: argparse.Namespace, logged: pl.DataFrame, used: int, evaluation: Mapping[str, Any]
) -> dict[str, Any]:
    """Where a learned policy came from: the input files (with their digests), the decisions
    and as-of dates learnt from, the scoring models, the version, and the off-policy estimate,
    so a reviewer holding only the policy file can trace it (written into every output)."""

    def distinct(column: str) -> list[str]:
        if column not in logged.columns:
            return []
        return sorted(str(v) for v in logged[column].drop_nulls().unique().to_list())

    models = []
    if {"model_name", "model_version"} <= set(logged.columns):
        pairs = logged.select("model_name", "model_version").drop_nulls().unique()
        models = sorted(f"{name} v{version}" for name, version in pairs.iter_rows())
    as_of = logged["as_of"].drop_nulls() if "as_of" in logged.columns else pl.Series([])
    uplift = evaluation["uplift_vs_current"]
    return {
        "learned_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rollrisk_version": __version__,
        "logged": {
            "file": shown_path(args.logged),
            "sha256": file_sha256(args.logged),
            "rows": logged.height,
            "decisions_used": used,
            "decisions": args.decisions,
            "as_of_first": str(as_of.min()) if len(as_of) else None,
            "as_of_last": str(as_of.max()) if len(as_of) else None,
            "experiments": distinct("experiment_id"),
            "models": models,
            # the portfolio the table was built from (logged-decisions' summary; None when
            # the table has none)
            "data_fingerprint": _logged_summary(args.logged).get("data_fingerprint"),
        },
        "experiments_file": {
            "file": shown_path(args.experiments),
            "sha256": file_sha256(args.experiments),
        },
        "policy_file": {"file": shown_path(args.policy), "sha256": file_sha256(args.policy)},
        "estimate": {
            "decisions": evaluation["decisions"],
            "proposed_minus_current_per_decision": uplift,
        },
    }


def provenance_comment(record: Mapping[str, Any]) -> str:
    """The provenance as comment lines for the head of a YAML file."""
    logged, estimate = record["logged"], record["estimate"]
    uplift = estimate["proposed_minus_current_per_decision"]
    as_of = (
        f"as-of {logged['as_of_first']} to {logged['as_of_last']}"
        if logged["as_of_first"]
        else "no as-of column"
    )
    lines = [
        f"Learned {record['learned_at']} by rollrisk {record['rollrisk_version']} from "
        f"{logged['file']} (sha256 {logged['sha256'][:16]}): {logged['decisions_used']:,} "
        f"{logged['decisions']} decisions of {logged['rows']:,} rows, {as_of}",
        f"experiments {', '.join(logged['experiments']) or '(not named in the table)'}; "
        f"scored by {', '.join(logged['models']) or '(no model named in the table)'}",
        f"experiment file {record['experiments_file']['file']} (sha256 "
        f"{record['experiments_file']['sha256'][:16]}), policy file "
        f"{record['policy_file']['file']} (sha256 {record['policy_file']['sha256'][:16]})",
        f"off-policy estimate on {estimate['decisions']:,} held-out decisions: proposed - "
        f"current {uplift['value']:+,.2f} per decision (95% CI {uplift['ci_low']:+,.2f} to "
        f"{uplift['ci_high']:+,.2f}); policy_learning.json and .md say how it was obtained",
    ]
    return "".join(f"# {line}\n" for line in lines)


def _write(out: Path, name: str, text: str) -> Path:
    final = out / name
    staged = out / f".{name}.{os.getpid()}.tmp"
    staged.write_text(text, encoding="utf-8")
    publish_file(staged, final)
    return final


def run(args: argparse.Namespace) -> int:
    shares = {
        "--evaluation-share": args.evaluation_share,
        "--min-leaf-share": args.min_leaf_share,
        "--max-contact-share": args.max_contact_share,
        "--label-share": args.label_share,
    }
    for flag, value in shares.items():
        if value is not None and not 0 < value < 1:
            raise UserError(f"{flag} must be a share strictly between 0 and 1, got {value}")
    if not 0 <= args.confidence < 1:
        raise UserError(
            f"--confidence must be in [0, 1) (0 = argmax labels), got {args.confidence}"
        )
    least = {
        "--min-explored": (args.min_explored, 1, "a candidate needs an explored account"),
        "--folds": (args.folds, 2, "cross-fitting fits on some folds and scores the others"),
        "--bootstrap": (args.bootstrap, 200, "fewer put a 95% interval's ends on a few draws"),
        "--max-depth": (args.max_depth, 1, "a tree of depth 0 has no rule"),
        "--threads": (args.threads, 1, "LightGBM needs a thread"),
    }
    for flag, (value, minimum, why) in least.items():
        if value < minimum:
            raise UserError(f"{flag} must be at least {minimum}, got {value} ({why})")
    if not args.rule_features:
        raise UserError("--rule-features names no column")
    if not 0 <= args.seed < 2**32:
        raise UserError(f"--seed must be in [0, 2**32), got {args.seed}")
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} is a file: expected a folder for the learned policy")
    started = time.perf_counter()
    policy = load_policy(args.policy)
    _check_risk_bands(args.logged, policy)
    plan = load_experiments(args.experiments)
    ladders = bundle_ladders(plan, policy)
    logged = _read_logged(args.logged)
    settings = LearningSettings(
        rule_features=args.rule_features,
        model_features=args.model_features,
        outcome=args.outcome,
        max_depth=args.max_depth,
        min_leaf_share=args.min_leaf_share,
        evaluation_share=args.evaluation_share,
        folds=args.folds,
        max_contact_share=args.max_contact_share,
        bootstrap_samples=args.bootstrap,
        seed=args.seed,
        threads=args.threads,
        confidence=args.confidence,
        min_explored=args.min_explored,
        label_share=args.label_share,
    )
    _check_decisions_logged_once(logged, args.logged)
    unchecked = check_logged_decisions(logged, plan, policy, str(args.logged))
    # the table's columns and values checked before a line of progress (and its rows numbered
    # as the file has them, before the first decisions are picked)
    check_logged(logged, settings, ladders)
    if unchecked:
        print(f"[learn-policy] note: {unchecked}", file=sys.stderr)
    read = logged
    if args.decisions == "first":
        every = logged.height
        logged = first_decisions(logged)
        print(
            f"[learn-policy] {logged.height:,} first decisions of accounts in their experiment "
            f"kept of {every:,} (--decisions all keeps every one)",
            file=sys.stderr,
        )
    print(
        f"[learn-policy] {logged.height:,} logged decisions from {args.logged}; learning ...",
        file=sys.stderr,
    )
    try:
        learned = learn_policy(logged, settings, ladders)
    except NotEnoughEvidence:
        # no policy this time (exit code 3): an earlier run's files would be taken for this one's
        earlier = [args.out / name for name in OUTPUTS if (args.out / name).is_file()]
        for path in earlier:
            path.unlink()
        if earlier:
            print(
                "[learn-policy] no policy learnt: an earlier run's "
                f"{', '.join(p.name for p in earlier)} removed from {args.out}",
                file=sys.stderr,
            )
        raise
    args.out.mkdir(parents=True, exist_ok=True)
    document = evaluation_document(learned)
    origin = provenance(args, read, logged.height, document["evaluation"])
    header = provenance_comment(origin)
    written = [
        _write(
            args.out,
            RULES_FILE,
            header
            + yaml.safe_dump(
                {**tree_rules_document(learned, ladders), "provenance": origin},
                sort_keys=False,
                allow_unicode=True,
            ),
        )
    ]
    if policy_fields_only(learned):
        text = learned_policy_text(
            learned,
            read_yaml_text(args.policy, "policy file"),
            args.policy.name,
            ladders,
            name=f"learned-from-{args.logged.stem}",
        )
        written.append(_write(args.out, POLICY_FILE, header + text))
    else:
        stale = args.out / POLICY_FILE
        removed = f" (an earlier run's {POLICY_FILE} there is removed)" if stale.exists() else ""
        stale.unlink(missing_ok=True)
        untestable = [f for f in settings.rule_features if f not in POLICY_FIELDS]
        print(
            "[learn-policy] the rules test features conf/policy.yaml cannot "
            f"({', '.join(untestable)}): {RULES_FILE} only{removed}",
            file=sys.stderr,
        )
    # what the experiment showed arm by arm, before any model (randomised groups compared);
    # a table where no decision kept the logging policy's own has no control to compare with
    has_control = bool((logged["bundle"] == logged["policy_bundle"]).any())
    readout = arm_readout(logged, settings.outcome, seed=settings.seed) if has_control else None
    document["experiment_readout"] = (
        None
        if readout is None
        else {"control": readout[0].to_dict(), "arms": [arm.to_dict() for arm in readout[1]]}
    )
    document["logged"] = str(args.logged)
    document["decisions"] = args.decisions
    document["seconds"] = round(time.perf_counter() - started, 1)
    document["provenance"] = origin
    written.append(_write(args.out, ESTIMATE_FILE, json.dumps(document, indent=2) + "\n"))
    summary = "\n".join(
        [
            evaluation_markdown(learned).rstrip("\n"),
            "",
            "## What the experiment showed",
            "",
            *(
                readout_markdown(*readout, settings.outcome)
                if readout is not None
                else ["No decision kept the logging policy's own: no control to compare with."]
            ),
            "",
        ]
    )
    written.append(_write(args.out, SUMMARY_FILE, summary))
    print(summary)
    for path in written:
        print(f"[learn-policy] wrote {path}", file=sys.stderr)
    return 0
