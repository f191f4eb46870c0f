"""Champion/challenger experiments: a randomised share of the book gets another treatment ladder.

A lender learns what works from its own tests (issue 13). An experiment file
(``conf/experiments.yaml``) declares, per experiment:

* ``id``, ``description``, ``start`` and ``end`` (as-of dates, both included);
* ``share``: the share of the *eligible* accounts that is randomised, in (0, 1];
* ``eligible``: the strata it runs in, as lists of ``start_bucket``, ``segment`` and
  ``product`` (a key left out = any value);
* ``arms``: each a ``name``, a ``weight`` (> 0; weights are normalised) and either
  ``policy: true`` (the arm keeps the policy's own decision: the champion) or a ``ladder`` of
  steps written as in ``conf/policy.yaml`` (the challenger).

**Assignment is deterministic.** An account's two uniform draws come from the BLAKE2b digest of
``"<experiment id>:<account id>"`` (never Python's ``hash()``, which changes between processes):
the first decides whether the account is randomised (draw < share), the second which arm
(cumulative normalised weights). Neither depends on the as-of date, so an account stays in its
arm for the whole experiment, and on any machine. An eligible account that is not randomised
keeps the policy's decision and is logged with the reserved arm name ``policy``.

**The logged propensity** is the probability that the *logging policy* takes the action bundle
the account actually got, given what is known at the decision. The logging policy is the
mixture: with probability ``1 - share`` the policy's own decision, with probability ``share`` arm
``a`` with probability ``w_a`` (normalised weight). So for the bundle ``b`` the account got,

    propensity = (1 - share) * [policy's bundle = b] + share * sum_a w_a * [arm a's bundle = b]

where an arm with ``policy: true`` has the policy's bundle, and a ladder arm's bundle is the
policy treatment with exactly the same steps if there is one (so that two names for the same
ladder are one action), else the arm's name. The propensity is always in (0, 1]: the bundle an
account got was drawn by the mixture. An off-policy estimator weighs an account's outcome by
1 / propensity (:mod:`rollrisk.strategies.policy_learning`).

Two experiments may not run on the same account at the same as-of: experiments whose dates
overlap must have disjoint strata (checked when the file is read).

The policy chooses, the experiment may replace the choice with an arm's ladder, and compliance
then applies to whatever was chosen: :func:`enforce_assignment` runs
:func:`rollrisk.strategies.compliance.enforce` on every arm, so no arm can break a rule.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from numpy.typing import NDArray

from rollrisk.conf import DEFAULT_EXPERIMENTS
from rollrisk.features.schemas import PRODUCTS
from rollrisk.strategies.compliance import (
    AccountState,
    ContactHistory,
    EffectiveCompliance,
    enforce,
)
from rollrisk.strategies.policy import (
    START_BUCKETS,
    Decision,
    LadderStep,
    PlannedActions,
    Policy,
    PolicyCases,
    PolicyChoices,
    PolicyRuleRef,
    parse_treatment,
    planned_ladders,
    schedule,
)
from rollrisk.strategies.segments import SEGMENTS
from rollrisk.strategies.yaml_config import (
    ConfigError,
    LineDict,
    line_of,
    parse_yaml_with_lines,
    read_yaml_text,
    require_keys,
)

NOT_RANDOMISED = "policy"
"""The arm logged for an eligible account that was not randomised (it keeps the policy's decision);
no arm of a file may take this name."""

ASSIGNMENT_COLUMNS: Mapping[str, pl.DataType] = {
    "account_id": pl.String(),
    "experiment_id": pl.String(),
    "arm": pl.String(),
    "arm_treatment": pl.String(),
    "propensity": pl.Float64(),
}
"""What :func:`assign_experiments` returns per account (nulls outside every experiment)."""

STRATA: Mapping[str, Sequence[str]] = {
    "start_bucket": tuple(START_BUCKETS),
    "segment": tuple(SEGMENTS),
    "product": PRODUCTS,
}


@dataclass(frozen=True)
class Arm:
    """One arm: the policy's own decision (``steps is None``) or a ladder of its own."""

    name: str
    weight: float  # normalised: the arms of an experiment sum to 1
    steps: tuple[LadderStep, ...] | None
    description: str
    line: int | None

    @property
    def follows_policy(self) -> bool:
        return self.steps is None


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    description: str
    start: date
    end: date  # included
    share: float
    eligible: Mapping[str, frozenset[str]]  # stratum -> allowed values (a stratum absent = any)
    arms: tuple[Arm, ...]
    line: int | None

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(f"experiment {self.experiment_id!r} has no arm {name!r}")

    def overlaps(self, other: Experiment) -> bool:
        """Whether an account could be eligible for both on one as-of."""
        if self.end < other.start or other.end < self.start:
            return False
        return all(
            self.eligible.get(key, frozenset(values)) & other.eligible.get(key, frozenset(values))
            for key, values in STRATA.items()
        )


@dataclass(frozen=True)
class ExperimentPlan:
    """The parsed experiment file."""

    source: str
    experiments: tuple[Experiment, ...]

    def active_on(self, as_of: date) -> tuple[Experiment, ...]:
        """The experiments running at ``as_of`` (start and end included)."""
        return tuple(e for e in self.experiments if e.start <= as_of <= e.end)

    def not_running_notes(self, as_of: date) -> tuple[str, ...]:
        """One line per experiment of the file that is not running at ``as_of``: its accounts
        keep the policy's decisions, which a job says rather than doing nothing silently
        (none for a file without experiments, such as the shipped one)."""
        return tuple(
            f"experiment {e.experiment_id} ({self.source}:{e.line}) is not running at "
            f"{as_of} (runs {e.start}..{e.end}): its accounts keep the policy's decisions"
            for e in self.experiments
            if not e.start <= as_of <= e.end
        )

    def experiment(self, experiment_id: str) -> Experiment:
        for experiment in self.experiments:
            if experiment.experiment_id == experiment_id:
                return experiment
        known = ", ".join(e.experiment_id for e in self.experiments) or "none"
        raise KeyError(f"{self.source} has no experiment {experiment_id!r} (known: {known})")


# --- parsing -------------------------------------------------------------------------------------


def load_experiments(path: Path) -> ExperimentPlan:
    """Read and parse an experiment file (see :func:`parse_experiments`)."""
    return parse_experiments(read_yaml_text(path, "experiment file"), str(path))


def parse_experiments(text: str, source: str) -> ExperimentPlan:
    """Parse and validate an experiment file; errors are :class:`ConfigError` with the line."""
    doc = parse_yaml_with_lines(text, source)
    require_keys(doc, source, "the experiment file", ("experiments",), ("version",))
    if "version" in doc and (isinstance(doc["version"], bool) or doc["version"] != 1):
        raise ConfigError(
            source,
            doc.line_of("version"),
            f"version {doc['version']!r}: this rollrisk reads experiment files of version 1",
        )
    node = doc["experiments"]
    if node is None:
        node = []
    if not isinstance(node, list):
        raise ConfigError(
            source, doc.line_of("experiments"), "experiments must be a list (may be empty: [])"
        )
    experiments: list[Experiment] = []
    for index, item in enumerate(node):
        experiment = _parse_experiment(item, source, line_of(node, index))
        for earlier in experiments:
            if experiment.experiment_id == earlier.experiment_id:
                raise ConfigError(
                    source,
                    experiment.line,
                    f"experiment id {experiment.experiment_id!r} is already used on line {earlier.line}",
                )
            if experiment.overlaps(earlier):
                raise ConfigError(
                    source,
                    experiment.line,
                    f"experiment {experiment.experiment_id!r} overlaps {earlier.experiment_id!r} "
                    f"(line {earlier.line}) in dates and strata: an account would be in both; "
                    "make their dates or their eligible strata disjoint",
                )
        experiments.append(experiment)
    return ExperimentPlan(source, tuple(experiments))


def _parse_date(value: Any, source: str, line: int | None, what: str) -> date:
    if isinstance(value, datetime):  # `2025-12-01 00:00:00`: YAML's timestamp, not a date
        raise ConfigError(
            source,
            line,
            f"{what} must be a date YYYY-MM-DD, got a timestamp {value.isoformat(sep=' ')}; "
            f"write {value.date().isoformat()} (an experiment runs on whole as-of days)",
        )
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(
            source, line, f"{what} must be a date YYYY-MM-DD, got {value!r}"
        ) from None


def _parse_experiment(node: Any, source: str, line: int | None) -> Experiment:
    node = require_keys(
        node,
        source,
        "an experiment",
        ("id", "start", "end", "share", "arms"),
        ("description", "eligible"),
        line,
    )
    experiment_id = str(node["id"])
    what = f"experiment {experiment_id!r}"
    start = _parse_date(node["start"], source, node.line_of("start"), f"{what}: start")
    end = _parse_date(node["end"], source, node.line_of("end"), f"{what}: end")
    if end < start:
        raise ConfigError(source, node.line_of("end"), f"{what}: end {end} is before start {start}")
    share = node["share"]
    if not isinstance(share, int | float) or isinstance(share, bool) or not 0 < share <= 1:
        raise ConfigError(
            source,
            node.line_of("share"),
            f"{what}: share (of the eligible accounts randomised) must be in (0, 1], got {share!r}",
        )
    eligible = _parse_eligible(node.get("eligible"), source, node.line_of("eligible"), what)
    arms_node = node["arms"]
    if not isinstance(arms_node, list) or not arms_node:
        raise ConfigError(source, node.line_of("arms"), f"{what}: arms must be a non-empty list")
    parsed = [
        _parse_arm(arm, source, line_of(arms_node, index), what)
        for index, arm in enumerate(arms_node)
    ]
    names = [arm.name for arm in parsed]
    for index, arm in enumerate(parsed):
        if arm.name in names[:index]:
            raise ConfigError(source, arm.line, f"{what}: arm name {arm.name!r} is used twice")
    total = sum(arm.weight for arm in parsed)
    arms = tuple(
        Arm(arm.name, arm.weight / total, arm.steps, arm.description, arm.line) for arm in parsed
    )
    return Experiment(
        experiment_id=experiment_id,
        description=str(node.get("description", "")),
        start=start,
        end=end,
        share=float(share),
        eligible=eligible,
        arms=arms,
        line=node.line,
    )


def _parse_eligible(
    node: Any, source: str, line: int | None, what: str
) -> Mapping[str, frozenset[str]]:
    if node is None:
        return {}
    node = require_keys(node, source, f"{what} eligible", (), tuple(STRATA), line)
    eligible: dict[str, frozenset[str]] = {}
    for key, values in node.items():
        here = line_of(node, key)
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not values:
            raise ConfigError(source, here, f"{what}: eligible {key} must be a non-empty list")
        for index, value in enumerate(values):
            if value not in STRATA[key]:
                raise ConfigError(
                    source,
                    line_of(values, index) or here,
                    f"{what}: unknown {key.replace('_', ' ')} {value!r}; known: "
                    + ", ".join(STRATA[key]),
                )
        eligible[str(key)] = frozenset(str(v) for v in values)
    return eligible


def _parse_arm(node: Any, source: str, line: int | None, what: str) -> Arm:
    node = require_keys(
        node,
        source,
        f"an arm of {what}",
        ("name", "weight"),
        ("policy", "ladder", "description"),
        line,
    )
    name = node["name"]
    if not isinstance(name, str | int) or isinstance(name, bool) or not str(name).strip():
        raise ConfigError(
            source,
            node.line_of("name"),
            f"{what}: an arm's name must be a non-empty text (it is written into every scored "
            f"account's arm column), got {name!r}",
        )
    name = str(name)
    if name == NOT_RANDOMISED:
        raise ConfigError(
            source,
            node.line_of("name"),
            f"{what}: the arm name {NOT_RANDOMISED!r} is reserved for accounts that were not "
            "randomised; name the champion arm otherwise (e.g. champion) and give it policy: true",
        )
    weight = node["weight"]
    if not isinstance(weight, int | float) or isinstance(weight, bool) or not 0 < weight < math.inf:
        raise ConfigError(
            source,
            node.line_of("weight"),
            f"{what}: arm {name!r} weight must be a finite number > 0, got {weight!r}",
        )
    follows = node.get("policy", False)
    if not isinstance(follows, bool):  # 1 and 0 equal True and False, but are no answer
        raise ConfigError(
            source, node.line_of("policy"), f"{what}: arm {name!r} policy must be true or false"
        )
    if follows == ("ladder" in node):
        raise ConfigError(
            source,
            node.line,
            f"{what}: arm {name!r} needs exactly one of policy: true (the policy's own decision) "
            "or a ladder of steps",
        )
    steps = None
    if not follows:
        ladder = LineDict(ladder=node["ladder"])
        ladder.line, ladder.key_lines = node.line, {"ladder": node.line_of("ladder")}
        steps = parse_treatment(f"{name} ({what})", ladder, source, node.line).steps
    return Arm(name, float(weight), steps, str(node.get("description", "")), node.line)


def shipped_example() -> str:
    """The shipped experiment file with its commented example switched on: a realistic, valid
    experiment file (what the docs describe, the tests and the benchmark run)."""
    text = DEFAULT_EXPERIMENTS.read_text(encoding="utf-8")
    example = text.split("# experiments:\n", 1)[1].split("\nversion:", 1)[0]
    body = "\n".join(line[2:] for line in example.splitlines())
    return "version: 1\nexperiments:\n" + body + "\n"


# --- assignment ----------------------------------------------------------------------------------


def unit_draws(experiment_id: str, account_ids: Sequence[str]) -> NDArray[np.float64]:
    """Two uniform draws in [0, 1) per account, (n x 2), from BLAKE2b of ``"<experiment>:<id>"``.

    Stable across processes, machines and library versions (a polars or Python hash is not).
    The digests are the one per-account step (hashlib has no vectorised form); the rest is numpy.
    """
    digests = b"".join(
        hashlib.blake2b(f"{experiment_id}:{account}".encode(), digest_size=16).digest()
        for account in account_ids
    )
    words = np.frombuffer(digests, dtype=">u8").reshape(-1, 2)
    return (words >> np.uint64(11)).astype(np.float64) * 2.0**-53  # 53 bits: exact doubles


def _bundle_names(
    experiment: Experiment, policy: Policy, source: str = "the experiment file"
) -> dict[str, str]:
    """Each ladder arm's bundle: the policy treatment with the same steps, else the arm's name.

    Raises:
        ConfigError: an arm has the name of a policy treatment but another ladder (``source``
            and the arm's line named).
    """
    by_steps = {_steps_key(t.steps): name for name, t in policy.treatments.items()}
    names: dict[str, str] = {}
    for arm in experiment.arms:
        if arm.steps is None:
            continue
        same = by_steps.get(_steps_key(arm.steps))
        if same is None and arm.name in policy.treatments:
            raise ConfigError(
                source,
                arm.line,
                f"experiment {experiment.experiment_id!r}: arm {arm.name!r} has the name of a "
                f"treatment of {Path(policy.source).name} but a different ladder; rename the arm",
            )
        names[arm.name] = same or arm.name
    return names


def arm_bundles(plan: ExperimentPlan, policy: Policy) -> dict[tuple[str, str], str | None]:
    """The bundle each ``(experiment, arm)`` of ``plan`` gives: None for an arm that follows
    the policy (the logging policy's own decision), else the policy treatment with the arm's
    steps, or the arm's name (:func:`_bundle_names`)."""
    bundles: dict[tuple[str, str], str | None] = {}
    for experiment in plan.experiments:
        names = _bundle_names(experiment, policy, plan.source)
        for arm in experiment.arms:
            bundles[experiment.experiment_id, arm.name] = names.get(arm.name)
    return bundles


def bundle_ladders(plan: ExperimentPlan, policy: Policy) -> dict[str, tuple[LadderStep, ...]]:
    """The steps of every bundle an account can get: the policy's treatments and every ladder
    arm's bundle (named as :func:`assign_experiments` names them). Checks the plan against the
    policy, so a job calls it when it loads both.

    Raises:
        ConfigError: an arm named like a policy treatment with another ladder, or two arms of
            one name with different ladders (the file and the arm's line named).
    """
    ladders = {name: treatment.steps for name, treatment in policy.treatments.items()}
    for experiment in plan.experiments:
        for arm_name, bundle in _bundle_names(experiment, policy, plan.source).items():
            arm = experiment.arm(arm_name)
            if (
                bundle in ladders
                and ladders[bundle] != arm.steps
                and bundle not in policy.treatments
            ):
                raise ConfigError(
                    plan.source,
                    arm.line,
                    f"experiment {experiment.experiment_id!r}: bundle {bundle!r} has another "
                    "ladder in an earlier experiment; rename an arm",
                )
            ladders.setdefault(bundle, arm.steps)  # type: ignore[arg-type]
    return ladders


def _steps_key(steps: Sequence[LadderStep]) -> tuple[tuple[Any, ...], ...]:
    return tuple((s.action, s.day, s.at, s.channel, s.recipient) for s in steps)


def assign_experiments(scored: pl.DataFrame, plan: ExperimentPlan, policy: Policy) -> pl.DataFrame:
    """Which experiment and arm each scored account is in, and the logged propensity.

    Args:
        scored: one row per account and decision with ``account_id``, ``as_of`` (date),
            ``start_bucket``, ``segment``, ``product`` and ``treatment`` (the policy's chosen
            treatment, a name in ``policy.treatments``).
        plan: the experiments (:func:`load_experiments`).
        policy: the policy that chose ``treatment`` (its ladders name the bundles).

    Returns:
        One row per input row, in input order, with :data:`ASSIGNMENT_COLUMNS`: the
        ``experiment_id`` the account is eligible for at its as-of, its ``arm``
        (:data:`NOT_RANDOMISED` when it was not randomised), ``arm_treatment`` (the bundle it
        gets: the policy's treatment, or the arm's bundle, see the module docstring) and the
        ``propensity`` of that bundle under the logging mixture. All four are null for an
        account no experiment covers (it gets the policy's decision with certainty).
    """
    missing = [
        c
        for c in ("account_id", "as_of", "start_bucket", "segment", "product", "treatment")
        if c not in scored.columns
    ]
    if missing:
        raise ValueError(f"assign_experiments needs the columns {missing} of the scored accounts")
    n = scored.height
    columns: dict[str, NDArray[Any]] = {
        "experiment_id": np.full(n, None, dtype=object),
        "arm": np.full(n, None, dtype=object),
        "arm_treatment": np.full(n, None, dtype=object),
        "propensity": np.full(n, np.nan),
    }
    as_of = scored["as_of"].cast(pl.Date)
    for experiment in plan.experiments:
        eligible = (as_of >= experiment.start) & (as_of <= experiment.end)
        for key, values in experiment.eligible.items():
            eligible = eligible & scored[key].is_in(sorted(values))
        rows = np.flatnonzero(eligible.fill_null(False).to_numpy())
        if not len(rows):
            continue
        ids = scored["account_id"].gather(rows).to_list()
        policy_bundle = scored["treatment"].gather(rows).to_numpy().astype(object)
        draws = unit_draws(experiment.experiment_id, ids)
        randomised = draws[:, 0] < experiment.share
        weights = np.array([arm.weight for arm in experiment.arms])
        chosen = np.minimum(
            np.searchsorted(np.cumsum(weights), draws[:, 1], side="right"), len(weights) - 1
        )
        bundles = _bundle_names(experiment, policy, plan.source)
        # the bundle each arm gives each account: (accounts x arms)
        arm_bundles = np.stack(
            [
                policy_bundle if arm.follows_policy else np.full(len(rows), bundles[arm.name])
                for arm in experiment.arms
            ],
            axis=1,
        )
        arm_names = np.array([arm.name for arm in experiment.arms], dtype=object)
        taken = np.where(randomised, arm_bundles[np.arange(len(rows)), chosen], policy_bundle)
        propensity = (1 - experiment.share) * (policy_bundle == taken) + experiment.share * (
            (arm_bundles == taken[:, None]) @ weights
        )
        columns["experiment_id"][rows] = experiment.experiment_id
        columns["arm"][rows] = np.where(randomised, arm_names[chosen], NOT_RANDOMISED)
        columns["arm_treatment"][rows] = taken
        columns["propensity"][rows] = propensity
    return pl.DataFrame(
        {"account_id": scored["account_id"], **{k: v.tolist() for k, v in columns.items()}},
        schema=dict(ASSIGNMENT_COLUMNS),
    ).with_columns(pl.col("propensity").fill_nan(None))


@dataclass(frozen=True)
class ExperimentDecisions:
    """What many accounts get once the experiments have replaced some of the policy's choices,
    as columns (one entry per account, in the order of the policy's cases), before compliance.

    ``treatment`` is the bundle each account gets (the policy's treatment, or its arm's bundle);
    ``rule`` the rule that chose it, as the scores' ``policy_rule`` column prints it (the
    policy's ``policy.yaml:LINE rule ID``, or the arm's ``experiments.yaml:LINE rule
    EXPERIMENT/ARM``); ``experiment_id``, ``arm`` and ``propensity`` are those of
    :func:`assign_experiments` (``None`` outside every experiment). ``ladder[i]`` indexes
    ``ladders``: the policy's rules' ladders first, then the active experiments' ladder arms'.
    """

    experiment_id: list[str | None]
    arm: list[str | None]
    propensity: list[float | None]
    treatment: list[str]
    rule: list[str]
    ladders: tuple[tuple[LadderStep, ...], ...]
    ladder: NDArray[np.int64]

    def planned_actions(self, decided_at: datetime) -> PlannedActions:
        """Each account's ladder scheduled from ``decided_at``'s day (what compliance checks)."""
        return planned_ladders(self.ladders, self.ladder, decided_at)


def decide_experiments(
    policy: Policy,
    choices: PolicyChoices,
    cases: PolicyCases,
    as_of: date,
    plan: ExperimentPlan,
) -> ExperimentDecisions:
    """The policy's choices with the arms of the experiments active at ``as_of`` swapped in,
    all accounts at once: the columnar form of :func:`arm_decision` (a test holds them equal).

    Needs the cases the policy chose for (their ``account_id``, ``start_bucket``, ``segment``
    and ``product`` decide eligibility and the hash draws) and its choices. Compliance comes
    after, on :meth:`ExperimentDecisions.planned_actions`, for every arm alike. With no
    experiment active at ``as_of`` nothing is assigned and each account keeps its policy rule,
    treatment and ladder exactly.
    """
    rules = policy.rules
    treatment_of = np.array([policy.treatments[r.treatment].name for r in rules], dtype=object)
    rule_text = np.array([str(PolicyRuleRef(policy.source, r.rule_id, r.line)) for r in rules])
    ladders = [policy.treatments[r.treatment].steps for r in rules]
    treatment = treatment_of[choices.rule]
    rule = rule_text.astype(object)[choices.rule]
    ladder = choices.rule.astype(np.int64, copy=True)
    n = len(ladder)
    active = plan.active_on(as_of)
    if not active:  # no hash, no frame: the policy's decisions as they are
        return ExperimentDecisions(
            [None] * n, [None] * n, [None] * n, treatment.tolist(), rule.tolist(),
            tuple(ladders), ladder,
        )  # fmt: skip
    assignment = assign_experiments(
        pl.DataFrame(
            {
                "account_id": pl.Series(cases.account_id.tolist(), dtype=pl.String),
                "as_of": pl.Series([as_of] * n, dtype=pl.Date),
                "start_bucket": pl.Series(cases.start_bucket.tolist(), dtype=pl.String),
                "segment": pl.Series(cases.segment.tolist(), dtype=pl.String),
                "product": pl.Series(cases.product.tolist(), dtype=pl.String),
                "treatment": pl.Series(treatment.tolist(), dtype=pl.String),
            }
        ),
        plan,
        policy,
    )
    experiment_ids = assignment["experiment_id"].to_numpy().astype(object)
    arms = assignment["arm"].to_numpy().astype(object)
    bundles = assignment["arm_treatment"].to_numpy().astype(object)
    for experiment in active:
        in_experiment = experiment_ids == experiment.experiment_id
        for arm in experiment.arms:
            if arm.steps is None:  # the champion keeps the policy's decision and rule
                continue
            rows = in_experiment & (arms == arm.name)
            ladder[rows] = len(ladders)
            ladders.append(arm.steps)
            rule[rows] = str(
                PolicyRuleRef(plan.source, f"{experiment.experiment_id}/{arm.name}", arm.line)
            )
            treatment[rows] = bundles[rows]
    return ExperimentDecisions(
        experiment_id=experiment_ids.tolist(),
        arm=arms.tolist(),
        propensity=assignment["propensity"].to_list(),
        treatment=treatment.tolist(),
        rule=rule.tolist(),
        ladders=tuple(ladders),
        ladder=ladder,
    )


def arm_decision(
    decision: Decision, assignment: Mapping[str, Any], plan: ExperimentPlan
) -> Decision:
    """The decision an account gets under its assignment (a row of :func:`assign_experiments`).

    Outside every experiment, not randomised, or in an arm that follows the policy: the policy's
    decision unchanged. In a ladder arm: that arm's ladder, scheduled from the decision time,
    with the experiment file's arm as the rule that chose it (``experiments.yaml:LINE rule
    EXPERIMENT/ARM``), so the decision trail says why the account got it.
    """
    experiment_id, arm_name = assignment.get("experiment_id"), assignment.get("arm")
    if experiment_id is None or arm_name in (None, NOT_RANDOMISED):
        return decision
    arm = plan.experiment(str(experiment_id)).arm(str(arm_name))
    if arm.steps is None:
        return decision
    return Decision(
        account_id=decision.account_id,
        decided_at=decision.decided_at,
        treatment=str(assignment["arm_treatment"]),
        actions=schedule(arm.steps, decision.decided_at),
        policy_rule=PolicyRuleRef(plan.source, f"{experiment_id}/{arm.name}", arm.line),
        risk_band=decision.risk_band,
        segment=decision.segment,
        trail=decision.trail,
    )


def enforce_assignment(
    decision: Decision,
    assignment: Mapping[str, Any],
    plan: ExperimentPlan,
    account_state: AccountState,
    contact_history: pd.DataFrame | ContactHistory | None,
    jurisdictions: EffectiveCompliance,
) -> Decision:
    """:func:`arm_decision` then :func:`~rollrisk.strategies.compliance.enforce`: every arm,
    champion or challenger, obeys the same compliance rules, and its trail records each change.

    ``decision`` is the policy's decision *before* compliance (:func:`~rollrisk.strategies.policy.decide`).
    """
    return enforce(
        arm_decision(decision, assignment, plan), account_state, contact_history, jurisdictions
    )


# --- checking a logged-decisions table against its experiment file ------------------------------

PROPENSITY_TOLERANCE = 1e-6
"""How far (absolute) a logged propensity may be from the one the experiment file gives."""


def logging_propensity(
    experiment: Experiment, bundles: Mapping[str, str], policy_bundle: str, bundle: str
) -> float:
    """The probability that the logging mixture of ``experiment`` gives ``bundle`` to an account
    whose policy chose ``policy_bundle`` (the module docstring's formula, the one
    :func:`assign_experiments` logs); ``bundles`` maps each ladder arm to its bundle
    (:func:`_bundle_names`). 0 when no part of the mixture gives ``bundle``."""
    arms = sum(
        arm.weight
        for arm in experiment.arms
        if (policy_bundle if arm.follows_policy else bundles[arm.name]) == bundle
    )
    return (1 - experiment.share) * (policy_bundle == bundle) + experiment.share * arms


def check_logged_decisions(
    logged: pl.DataFrame, plan: ExperimentPlan, policy: Policy, source: str
) -> str | None:
    """Refuse logged decisions that do not come from ``plan`` (the file they say they were
    logged under), one column at a time, in one line naming ``source`` (the table), the column,
    the rows affected and up to 3 examples (account, value found, value expected).

    Checked, on rows with an ``experiment_id`` (a null one: outside every experiment, where the
    policy's decision is certain):

    * ``experiment_id``: an experiment of ``plan``;
    * ``arm`` (when the table has it): an arm of that experiment or :data:`NOT_RANDOMISED`,
      and the row's ``bundle`` the one that arm gives (a ladder arm its bundle, the others the
      row's ``policy_bundle``);
    * ``bundle``: one the experiment's logging mixture can give the account: its
      ``policy_bundle`` (not randomised, or an arm with ``policy: true``) or a ladder arm's
      bundle (:func:`_bundle_names`; the arm's own name is read as its bundle); outside every
      experiment, the ``policy_bundle``;
    * ``propensity``: :func:`logging_propensity` of the row's bundle given its ``policy_bundle``
      (the logging policy's decision for the account: always computable from the file and the
      row), within :data:`PROPENSITY_TOLERANCE`; outside every experiment, 1.

    Rows whose ``bundle``, ``policy_bundle`` or ``propensity`` is null or not a number are left
    to the learner's own checks. Returns None when checked, or, for a table without an
    ``experiment_id`` column (nothing ties its rows to an experiment of the file), the sentence
    saying it was not checked.

    Raises:
        UserError: the first column (in the order above) with rows that do not match the file.
    """
    from rollrisk.errors import UserError

    needed = ("account_id", "bundle", "policy_bundle", "propensity")
    if any(column not in logged.columns for column in needed):
        return None  # the learner names the missing column
    if "experiment_id" not in logged.columns:
        return (
            f"{source} has no experiment_id column: its bundles and propensities are not "
            f"checked against {plan.source}"
        )
    frame = logged.select(
        pl.col("account_id").cast(pl.String),
        pl.col("experiment_id").cast(pl.String),
        *([pl.col("arm").cast(pl.String)] if "arm" in logged.columns else []),
        pl.col("bundle").cast(pl.String),
        pl.col("policy_bundle").cast(pl.String),
        pl.col("propensity").cast(pl.Float64, strict=False),
    )
    known = {e.experiment_id: e for e in plan.experiments}
    names = {e.experiment_id: _bundle_names(e, policy, plan.source) for e in plan.experiments}

    def refuse(
        bad: pl.DataFrame, column: str, what: str, expected: str, shown: str | None = None
    ) -> None:
        # ``shown``: the column whose value each example quotes (default ``column``)
        if not bad.height:
            return
        examples = "; ".join(
            f"account {row['account_id']}: {row[shown or column]!r}, expected {row['_expected']}"
            for row in bad.head(3).iter_rows(named=True)
        )
        raise UserError(
            f"--logged {source}: column {column}: {bad.height:,} row(s) {what} "
            f"(e.g. {examples}); {expected}"
        )

    listed = ", ".join(sorted(known)) or "none"
    refuse(
        frame.filter(
            pl.col("experiment_id").is_not_null() & ~pl.col("experiment_id").is_in(list(known))
        ).with_columns(pl.lit(f"one of {listed}").alias("_expected")),
        "experiment_id",
        f"name an experiment that {plan.source} does not have",
        f"the table must be the one logged under --experiments {plan.source}",
    )
    inside = frame.filter(pl.col("experiment_id").is_not_null())
    if "arm" in frame.columns:
        arms = pl.DataFrame(
            [
                (
                    eid,
                    name,
                    "one of " + ", ".join(sorted([NOT_RANDOMISED, *(a.name for a in e.arms)])),
                )
                for eid, e in known.items()
                for name in (NOT_RANDOMISED, *(a.name for a in e.arms))
            ],
            schema={"experiment_id": pl.String, "arm": pl.String, "_expected": pl.String},
            orient="row",
        )
        bad = inside.join(
            arms, on=["experiment_id", "arm"], how="anti", maintain_order="left"
        ).join(
            arms.select("experiment_id", "_expected").unique("experiment_id"),
            on="experiment_id",
            how="left",
            maintain_order="left",
        )
        refuse(
            bad,
            "arm",
            f"name an arm that their experiment in {plan.source} does not have",
            "an arm renamed, or the table logged under another experiment file",
        )
        # the arm gives one bundle: its ladder's, or the policy's decision (not randomised, or
        # an arm that follows the policy); a row whose bundle is another's was logged wrongly
        gives = pl.DataFrame(
            [
                (eid, name, bundle)
                for eid, e in known.items()
                for name, bundle in (
                    (NOT_RANDOMISED, None),
                    *((a.name, None if a.follows_policy else names[eid][a.name]) for a in e.arms),
                )
            ],
            schema={"experiment_id": pl.String, "arm": pl.String, "_arm_bundle": pl.String},
            orient="row",
        )
        bad = (
            inside.join(gives, on=["experiment_id", "arm"], how="inner", maintain_order="left")
            .with_columns(
                pl.coalesce("_arm_bundle", "policy_bundle").alias("_expected"),
                pl.format("{} (arm {})", pl.col("bundle"), pl.col("arm")).alias("_found"),
            )
            .filter(
                pl.col("bundle").is_not_null()
                & pl.col("_expected").is_not_null()
                & (pl.col("bundle") != pl.col("_expected"))
            )
        )
        refuse(
            bad,
            "bundle",
            "hold a bundle their arm does not give",
            f"an arm gives its ladder's bundle in {plan.source}, the '{NOT_RANDOMISED}' arm and "
            "an arm following the policy give the row's policy_bundle: the arm or bundle column "
            "was logged wrongly",
            shown="_found",
        )
    # one expectation per (experiment, bundle, policy_bundle): the mixture's probability of it
    combos = frame.filter(
        pl.col("bundle").is_not_null() & pl.col("policy_bundle").is_not_null()
    ).unique(["experiment_id", "bundle", "policy_bundle"])
    expected_rows = []
    for experiment_id, bundle, policy_bundle in combos.select(
        "experiment_id", "bundle", "policy_bundle"
    ).iter_rows():
        if experiment_id is None:
            allowed, probability = [policy_bundle], float(bundle == policy_bundle)
        else:
            experiment, bundles = known[experiment_id], names[experiment_id]
            allowed = sorted({policy_bundle, *bundles.values()})
            taken = bundles.get(bundle, bundle)  # a ladder arm's name: its bundle
            probability = logging_propensity(experiment, bundles, policy_bundle, taken)
        expected_rows.append(
            (experiment_id, bundle, policy_bundle, "one of " + ", ".join(allowed), probability)
        )
    expected = pl.DataFrame(
        expected_rows,
        schema={
            "experiment_id": pl.String,
            "bundle": pl.String,
            "policy_bundle": pl.String,
            "_allowed": pl.String,
            "_probability": pl.Float64,
        },
        orient="row",
    )
    joined = frame.join(
        expected,
        on=["experiment_id", "bundle", "policy_bundle"],
        how="inner",
        nulls_equal=True,
        maintain_order="left",
    )
    refuse(
        joined.filter(
            pl.col("experiment_id").is_null() & (pl.col("_probability") <= 0)
        ).with_columns(pl.col("policy_bundle").alias("_expected")),
        "bundle",
        "are outside every experiment (no experiment_id) but hold another bundle than their "
        "policy_bundle",
        "outside an experiment the logging policy's decision is certain: the row's bundle is its "
        "policy_bundle, or its experiment_id was lost",
    )
    refuse(
        joined.filter(
            pl.col("experiment_id").is_not_null() & (pl.col("_probability") <= 0)
        ).with_columns(pl.col("_allowed").alias("_expected")),
        "bundle",
        f"hold a bundle that their experiment in {plan.source} never gives (given the row's "
        "policy_bundle)",
        "an arm renamed, or the table logged under another experiment file",
    )
    refuse(
        joined.filter(
            pl.col("propensity").is_not_null()
            & pl.col("propensity").is_not_nan()  # NaN: the learner's own check says it
            & ((pl.col("propensity") - pl.col("_probability")).abs() > PROPENSITY_TOLERANCE)
        ).with_columns(pl.col("_probability").round(9).cast(pl.String).alias("_expected")),
        "propensity",
        f"differ by more than {PROPENSITY_TOLERANCE:g} from the propensity {plan.source} gives "
        "((1 - share) x [bundle = policy_bundle] + share x the weights of the arms giving the "
        "bundle)",
        "the table's propensities must be the logging policy's probabilities",
    )
    return None
