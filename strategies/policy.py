"""The strategy policy: from an account's risk, segment and state to a ladder of collection actions.

Strategy teams edit ``conf/policy.yaml``. A policy declares

* ``risk_bands``: upper bounds of the calibrated roll-to-default probability per band;
* ``space``: the values of ``start_bucket``, ``segment`` and ``product`` every account can have;
  together with the bands and the DPD range of each bucket this is the set of *reachable*
  combinations that the rules must cover;
* ``treatments``: named ladders of actions, each step an action on a day offset from the
  decision (and a local time of day, a channel and a recipient where they apply);
* ``rules``: ``when`` an account matches (lists of buckets, bands, segments, products; half-open
  ``[ge, lt)`` ranges of ``dpd`` and ``amount_overdue``), give it ``treatment``. The matching
  rule with the lowest ``precedence`` wins.

The policy is validated when it is parsed, and every problem is reported as ``file:line``:
unknown keys, actions, channels, segments, products, buckets, bands or treatments; a reachable
combination no rule covers; two rules with the same precedence whose regions overlap on a
reachable combination but that give different treatments; a rule no reachable account can match.

The policy chooses; :func:`rollrisk.strategies.compliance.enforce` then applies the compliance rules,
and every :class:`Decision` carries the policy rule that fired and each compliance change.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from rollrisk.features.schemas import PRODUCTS
from rollrisk.models.risk_bands import risk_band
from rollrisk.strategies.labels import Labels
from rollrisk.strategies.segments import SEGMENTS
from rollrisk.strategies.yaml_config import (
    ConfigError,
    LineDict,
    line_of,
    parse_time_of_day,
    parse_yaml_with_lines,
    read_yaml_text,
    require_keys,
)


@dataclass(frozen=True)
class ActionSpec:
    """What an action is, for the compliance rules, and which channels it goes through.

    This is the one action -> channel map: the policy checks a ladder step's channel against
    ``channels`` and the policy simulation turns a scored step into the channels of the action
    log with :meth:`channels_used`.
    """

    name: str
    contacts_borrower: bool  # reaches a person: contact window and third-party rules apply
    is_call: bool  # a phone call: frequency caps apply
    is_collection: bool  # pressure to pay: paused while a hardship plan is honoured
    channels: tuple[str, ...]  # the channels a step may name (the first is the default); () = none
    description: str
    # Used by every step besides the channel it names: the visit hands over the notice letter.
    companion_channels: tuple[str, ...] = ()
    # A relief granted only to a borrower who states a hardship in a contact of the month: the
    # treatment it grants then (``grace_period`` or ``interest_waiver``); None for the others.
    relief_on_hardship: str | None = None

    def channels_used(self, channel: str | None = None) -> tuple[str, ...]:
        """The channels of :data:`~rollrisk.features.schemas.CHANNELS` one step of this action
        uses: the step's ``channel`` (default: the first allowed), then the companions; () for
        an action without a channel (a treatment). Raises ``ValueError`` for a channel the
        action cannot use."""
        if not self.channels:
            return ()
        chosen = self.channels[0] if channel is None else channel
        if chosen not in self.channels:
            raise ValueError(
                f"action {self.name!r} cannot use channel {chosen!r}; allowed: "
                + ", ".join(self.channels)
            )
        return (chosen, *self.companion_channels)


STANDARD_QUEUE = "standard_queue"
"""The action (and the usual treatment name) that leaves an account in the lender's standard
tiered collection: ``ladder: [{day: 0, action: standard_queue}]``."""

ACTIONS: Mapping[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec(
            "reminder", True, False, True, ("sms", "app_push"), "automatic SMS or app reminder"
        ),
        ActionSpec(
            "call", True, True, True, ("agent_call", "robo_call"), "phone call by an agent or robot"
        ),
        ActionSpec(
            "restructure_offer",
            True,
            False,
            False,
            ("sms", "app_push", "agent_call"),
            "offer to restructure into instalments",
        ),
        ActionSpec("grace_period", False, False, False, (), "grace period on the amount due"),
        ActionSpec(
            "interest_waiver",
            False,
            False,
            False,
            (),
            "waive the interest of the delinquent period",
        ),
        # The same relief granted only to a borrower who states a hardship in one of the
        # month's contacts (the lender's hardship review: a borrower who asks gets it, one who
        # does not is never given relief unasked). The step contacts no one itself: the ladder's
        # contacts (a call, a restructure offer by call) are where a claim can be made.
        ActionSpec(
            "grace_period_on_hardship",
            False,
            False,
            False,
            (),
            "grace period on the amount due, granted when the borrower states a hardship",
            relief_on_hardship="grace_period",
        ),
        ActionSpec(
            "interest_waiver_on_hardship",
            False,
            False,
            False,
            (),
            "waive the interest of the delinquent period, granted when the borrower states a "
            "hardship",
            relief_on_hardship="interest_waiver",
        ),
        ActionSpec(
            "first_delinquency_extension",
            False,
            False,
            False,
            (),
            "one-time interest-free extension for a first-ever delinquency",
        ),
        ActionSpec(
            "agency_assignment",
            False,
            False,
            True,
            ("agency_assignment",),
            "assign to a licensed collection agency",
        ),
        # On-site visit with a notice letter (DOMAIN.md, 上门发通告函): one step is a visit and
        # the letter handed over at it, two rows of the action log, as the simulator's baseline
        # records them and the cost table prices them.
        ActionSpec(
            "field_visit_with_notice",
            True,
            False,
            True,
            ("field_visit",),
            "on-site visit with a notice letter, confirmed in advance",
            companion_channels=("notice_letter",),
        ),
        ActionSpec("legal_referral", False, False, True, ("legal",), "refer for legal action"),
        # The lender's business-as-usual collection (the tiered queue by bucket: its SMS, calls,
        # agency and its own relief), as a choice a policy can make for an account. The step
        # itself contacts no one, so compliance has nothing to check on it; the queue is the
        # lender's own process. Once, on day 0; other steps of its ladder are added on top of
        # the queue (parse_treatment).
        ActionSpec(
            STANDARD_QUEUE,
            False,
            False,
            False,
            (),
            "the account stays in the lender's standard tiered collection; this policy plans "
            "no ladder of its own",
        ),
    )
}
RECIPIENTS: tuple[str, ...] = ("borrower", "emergency_contact", "third_party")
START_BUCKETS: Mapping[str, tuple[int, int]] = {"M1": (1, 30), "M2": (30, 60), "M3": (60, 90)}
"""Each starting bucket and its half-open DPD range ``[low, high)``."""
DEFAULT_TIME_OF_DAY = time(10, 0)

Recipient = Literal["borrower", "emergency_contact", "third_party"]


@dataclass(frozen=True)
class PlannedAction:
    """One step of a decision, scheduled in the borrower's local time."""

    action: str
    at: datetime
    channel: str | None = None
    recipient: Recipient = "borrower"

    def describe(self) -> str:
        return describe_action(self.action, self.at, self.channel, self.recipient)


def describe_action(action: str, at: datetime, channel: str | None, recipient: str) -> str:
    """How a planned action reads in a compliance trail: ``call via agent_call at 2026-01-01 10:00``."""
    via = f" via {channel}" if channel else ""
    to = f" to {recipient}" if recipient != "borrower" else ""
    return f"{action}{via}{to} at {at:%Y-%m-%d %H:%M}"


@dataclass(frozen=True)
class PlannedActions:
    """The planned actions of many accounts as columns, one row per action, the rows of an
    account together (what :func:`rollrisk.strategies.compliance.enforce_all` works on).

    ``account`` is the account's row in the accounts the plans belong to; ``at`` is local time
    as ``datetime64[us]``; ``action``, ``channel`` (``None`` for an action without one) and
    ``recipient`` are :class:`~rollrisk.strategies.labels.Labels` (given as arrays or lists of
    strings, they are coded once here: the rules ask their questions of a few names, not of
    every row's string).
    """

    account: np.ndarray  # int64
    action: Labels
    at: np.ndarray  # datetime64[us]
    channel: Labels
    recipient: Labels

    def __post_init__(self) -> None:
        for name in ("action", "channel", "recipient"):
            object.__setattr__(self, name, Labels.of(getattr(self, name)))

    def __len__(self) -> int:
        return len(self.account)

    def take(self, rows: np.ndarray) -> PlannedActions:
        """The given rows (a boolean mask or positions), in that order."""
        return PlannedActions(
            self.account[rows],
            self.action.take(rows),
            self.at[rows],
            self.channel.take(rows),
            self.recipient.take(rows),
        )

    def with_at(self, at: np.ndarray) -> PlannedActions:
        return replace(self, at=at)

    def flag(self, attribute: str) -> np.ndarray:
        """A boolean :class:`ActionSpec` attribute (``is_call``, ...) of each row's action."""
        return self.action.where(lambda name: bool(getattr(ACTIONS[name], attribute)))

    def _labels_of(self, rows: np.ndarray) -> tuple[list[Any], list[Any], list[Any]]:
        """The action, channel and recipient of the given rows (positions), as lists."""
        return (
            self.action.values(rows).tolist(),
            self.channel.values(rows).tolist(),
            self.recipient.values(rows).tolist(),
        )

    def describe(self, rows: np.ndarray) -> list[str]:
        """:meth:`PlannedAction.describe` of the given rows (positions)."""
        cache: dict[tuple[Any, ...], str] = {}
        out = []
        action, channel, recipient = self._labels_of(rows)
        for j, i in enumerate(rows.tolist()):
            key = (action[j], self.at[i], channel[j], recipient[j])
            if key not in cache:
                cache[key] = describe_action(
                    key[0], self.at[i].astype(datetime), key[2], str(key[3])
                )
            out.append(cache[key])
        return out

    def rows_of(self, account: int) -> tuple[PlannedAction, ...]:
        """The rows of one account as :class:`PlannedAction` (in row order)."""
        rows = np.flatnonzero(self.account == account)
        action, channel, recipient = self._labels_of(rows)
        return tuple(
            PlannedAction(str(action[j]), self.at[i].astype(datetime), channel[j], recipient[j])
            for j, i in enumerate(rows.tolist())
        )

    @classmethod
    def of(cls, actions: Sequence[PlannedAction], account: int = 0) -> PlannedActions:
        """The actions of one account."""
        return cls(
            np.full(len(actions), account, dtype=np.int64),
            np.array([a.action for a in actions], dtype=object),
            np.array([a.at for a in actions], dtype="datetime64[us]"),
            np.array([a.channel for a in actions], dtype=object),
            np.array([a.recipient for a in actions], dtype=object),
        )


@dataclass(frozen=True)
class PolicyRuleRef:
    """Which policy rule chose a treatment: file, rule id and line.

    Printed (the scores' ``policy_rule`` column, the service's answers) as the policy file's
    name, not its path: ``policy.yaml:128 rule POL-STANDARD``. The path would publish where the
    server or the package is installed, and make the same decision read differently on two
    machines; the scoring manifest records which policy file was used.
    """

    source: str
    rule_id: str
    line: int | None

    def __str__(self) -> str:
        return f"{Path(self.source).name}:{self.line} rule {self.rule_id}"


@dataclass(frozen=True)
class ComplianceChange:
    """One change a compliance rule made to a decision, and why."""

    rule_id: str
    action: str  # the planned action as the policy chose it (PlannedAction.describe())
    change: str  # "removed" or "moved to ..."
    reason: str
    jurisdictions: tuple[str, ...] = ()  # whose parameter was the binding (strictest) one


@dataclass(frozen=True)
class Decision:
    """A treatment for one account, with its trail."""

    account_id: str
    decided_at: datetime
    treatment: str
    actions: tuple[PlannedAction, ...]
    policy_rule: PolicyRuleRef
    risk_band: str = ""
    segment: str = ""
    trail: tuple[ComplianceChange, ...] = field(default=())

    def with_changes(
        self, actions: Sequence[PlannedAction], changes: Sequence[ComplianceChange]
    ) -> Decision:
        return replace(self, actions=tuple(actions), trail=self.trail + tuple(changes))


@dataclass(frozen=True)
class LadderStep:
    action: str
    day: int
    at: time
    channel: str | None
    recipient: Recipient
    line: int | None


@dataclass(frozen=True)
class Treatment:
    name: str
    steps: tuple[LadderStep, ...]
    description: str
    line: int | None
    # what a page for people shows instead of the code, in English and Chinese ("" when the
    # file gives none: the page then falls back to its own names, or the code)
    label: str = ""
    label_zh: str = ""

    @property
    def keeps_standard_queue(self) -> bool:
        """Whether this treatment leaves the account in the lender's tiered collection (its
        ladder has the ``standard_queue`` step, alone or with steps added on top)."""
        return any(step.action == STANDARD_QUEUE for step in self.steps)

    @property
    def is_standard_queue(self) -> bool:
        """Whether this treatment is the lender's tiered collection and nothing else (its
        ladder is the ``standard_queue`` step alone)."""
        return self.keeps_standard_queue and len(self.steps) == 1


@dataclass(frozen=True)
class Interval:
    """Half-open ``[low, high)``."""

    low: float = 0.0
    high: float = math.inf

    def intersect(self, other: Interval) -> Interval | None:
        low, high = max(self.low, other.low), min(self.high, other.high)
        return Interval(low, high) if low < high else None

    def __str__(self) -> str:
        return f"[{self.low:g}, {self.high:g})"


@dataclass(frozen=True)
class PolicyRule:
    rule_id: str
    precedence: int
    start_buckets: frozenset[str]
    risk_bands: frozenset[str]
    segments: frozenset[str]
    products: frozenset[str]
    dpd: Interval
    amount_overdue: Interval
    treatment: str
    line: int | None

    def matches(
        self, bucket: str, band: str, segment: str, product: str, dpd: float, amount: float
    ) -> bool:
        return (
            bucket in self.start_buckets
            and band in self.risk_bands
            and segment in self.segments
            and product in self.products
            and self.dpd.low <= dpd < self.dpd.high
            and self.amount_overdue.low <= amount < self.amount_overdue.high
        )


@dataclass(frozen=True)
class Policy:
    source: str
    name: str
    risk_bands: tuple[tuple[str, float], ...]  # (band, inclusive upper bound), ascending
    start_buckets: tuple[str, ...]
    segments: tuple[str, ...]
    products: tuple[str, ...]
    treatments: Mapping[str, Treatment]
    rules: tuple[PolicyRule, ...]  # sorted by precedence, then file order

    def risk_band(self, probability: float) -> str:
        """The band of a calibrated probability, by the one rule monitoring also uses."""
        return risk_band(probability, self.risk_bands)


@dataclass(frozen=True)
class PolicyCase:
    """What the policy decides on, for one account at one decision time."""

    account_id: str
    decided_at: datetime
    start_bucket: str
    probability: float
    segment: str
    product: str
    dpd: int
    amount_overdue: float


def schedule(steps: Sequence[LadderStep], decided_at: datetime) -> tuple[PlannedAction, ...]:
    """A ladder's steps as planned actions: each on its day offset from the decision's day, at
    its local time of day (what :func:`decide` and an experiment's arms both plan)."""
    day0 = decided_at.date()
    return tuple(
        PlannedAction(
            action=step.action,
            at=datetime.combine(day0 + timedelta(days=step.day), step.at),
            channel=step.channel,
            recipient=step.recipient,
        )
        for step in steps
    )


@dataclass(frozen=True)
class PolicyCases:
    """What the policy decides on, for many accounts at one decision time, as columns (the
    fields of :class:`PolicyCase`, one array each)."""

    account_id: np.ndarray  # object (str)
    decided_at: datetime
    start_bucket: np.ndarray  # object (str)
    probability: np.ndarray  # float64
    segment: np.ndarray  # object (str)
    product: np.ndarray  # object (str)
    dpd: np.ndarray  # int64
    amount_overdue: np.ndarray  # float64

    def case(self, i: int) -> PolicyCase:
        return PolicyCase(
            str(self.account_id[i]),
            self.decided_at,
            str(self.start_bucket[i]),
            float(self.probability[i]),
            str(self.segment[i]),
            str(self.product[i]),
            int(self.dpd[i]),
            float(self.amount_overdue[i]),
        )


@dataclass(frozen=True)
class PolicyChoices:
    """The policy's choice for each of many accounts: the risk band and the index of the rule
    that fired in :attr:`Policy.rules` (its treatment is that rule's)."""

    risk_band: np.ndarray  # object (str)
    rule: np.ndarray  # int64, index into policy.rules

    def planned_actions(self, policy: Policy, decided_at: datetime) -> PlannedActions:
        """Each account's ladder (the treatment of its rule) scheduled from ``decided_at``'s
        day, as :func:`decide` schedules it, the rows of an account in ladder order."""
        ladders = [policy.treatments[rule.treatment].steps for rule in policy.rules]
        return planned_ladders(ladders, self.rule, decided_at)


def planned_ladders(
    ladders: Sequence[Sequence[LadderStep]], ladder: np.ndarray, decided_at: datetime
) -> PlannedActions:
    """Account ``i``'s ladder ``ladders[ladder[i]]`` scheduled from ``decided_at``'s day, as
    :func:`schedule` schedules one, for all accounts at once; the rows of an account together,
    in ladder order (the policy's rules' ladders, or an experiment's arms' besides them)."""
    per_ladder = np.array([len(s) for s in ladders], dtype=np.int64)
    counts = per_ladder[ladder]
    account = np.repeat(np.arange(len(ladder), dtype=np.int64), counts)
    # row r of an account is step (r - the account's first row) of its ladder
    first = np.repeat(np.cumsum(counts) - counts, counts)
    step = np.arange(len(account), dtype=np.int64) - first
    flat = [s for steps in ladders for s in steps]
    offset = (np.cumsum(per_ladder) - per_ladder)[ladder[account]] + step
    day0 = datetime.combine(decided_at.date(), time(0))
    at_of = np.array(
        [day0 + timedelta(days=s.day, hours=s.at.hour, minutes=s.at.minute,
                          seconds=s.at.second, microseconds=s.at.microsecond)
         for s in flat],
        dtype="datetime64[us]",
    )  # fmt: skip
    # each ladder step is a code: the labels of row r are those of step offset[r]
    return PlannedActions(
        account,
        Labels(offset, [s.action for s in flat]),
        at_of[offset] if len(flat) else np.array([], dtype="datetime64[us]"),
        Labels(offset, [s.channel for s in flat]),
        Labels(offset, [s.recipient for s in flat]),
    )


def choose(policy: Policy, cases: PolicyCases) -> PolicyChoices:
    """The band and the rule the policy gives each of ``cases`` (before compliance): the
    matching rule with the lowest precedence, all accounts at once.

    Raises:
        ValueError: a probability outside [0, 1] (no band holds it), or an account no rule
            matches (the first such account is named).
    """
    probability = np.asarray(cases.probability, dtype=np.float64)
    outside = ~((probability >= 0.0) & (probability <= 1.0))
    if outside.any():  # the same refusal as risk_band, for the first such account
        policy.risk_band(float(probability[np.argmax(outside)]))
    uppers = np.array([upper for _, upper in policy.risk_bands], dtype=np.float64)
    # the first band whose inclusive upper bound is >= the probability (risk_band's rule)
    band_index = np.minimum(np.searchsorted(uppers, probability, side="left"), len(uppers) - 1)
    band = np.array([name for name, _ in policy.risk_bands], dtype=object)[band_index]
    dpd = np.asarray(cases.dpd, dtype=np.float64)
    amount = np.asarray(cases.amount_overdue, dtype=np.float64)
    # each label column as codes once; a rule's set of labels is then a lookup by code
    labels = {
        "start_buckets": pd.factorize(np.asarray(cases.start_bucket, dtype=object)),
        "risk_bands": pd.factorize(band),
        "segments": pd.factorize(np.asarray(cases.segment, dtype=object)),
        "products": pd.factorize(np.asarray(cases.product, dtype=object)),
    }

    def among(field: str, allowed: frozenset[str]) -> np.ndarray:
        codes, names = labels[field]
        return np.array([name in allowed for name in names] + [False], dtype=bool)[codes]

    fired = np.full(len(probability), -1, dtype=np.int64)
    open_rows = np.ones(len(probability), dtype=bool)
    for index, rule in enumerate(policy.rules):  # already in precedence order
        if not open_rows.any():
            break
        holds = (
            open_rows
            & among("start_buckets", rule.start_buckets)
            & among("risk_bands", rule.risk_bands)
            & among("segments", rule.segments)
            & among("products", rule.products)
            & (rule.dpd.low <= dpd)
            & (dpd < rule.dpd.high)
            & (rule.amount_overdue.low <= amount)
            & (amount < rule.amount_overdue.high)
        )
        fired[holds] = index
        open_rows &= ~holds
    if open_rows.any():
        case = cases.case(int(np.argmax(open_rows)))
        raise ValueError(
            f"no rule of {policy.source} matches account {case.account_id}: start_bucket="
            f"{case.start_bucket}, risk_band={band[np.argmax(open_rows)]}, segment={case.segment}, "
            f"product={case.product}, dpd={case.dpd}, amount_overdue={case.amount_overdue}; the "
            f"policy covers start buckets {list(policy.start_buckets)}, segments "
            f"{list(policy.segments)}, products {list(policy.products)}"
        )
    return PolicyChoices(band, fired)


def decide(policy: Policy, case: PolicyCase) -> Decision:
    """The treatment the policy gives ``case`` (before compliance; see ``compliance.enforce``):
    :func:`choose` for one account."""
    cases = PolicyCases(
        np.array([case.account_id], dtype=object),
        case.decided_at,
        np.array([case.start_bucket], dtype=object),
        np.array([case.probability], dtype=np.float64),
        np.array([case.segment], dtype=object),
        np.array([case.product], dtype=object),
        np.array([case.dpd]),
        np.array([case.amount_overdue], dtype=np.float64),
    )
    choice = choose(policy, cases)
    rule = policy.rules[int(choice.rule[0])]
    return Decision(
        account_id=case.account_id,
        decided_at=case.decided_at,
        treatment=policy.treatments[rule.treatment].name,
        actions=choice.planned_actions(policy, case.decided_at).rows_of(0),
        policy_rule=PolicyRuleRef(policy.source, rule.rule_id, rule.line),
        risk_band=str(choice.risk_band[0]),
        segment=case.segment,
    )


# --- parsing and validation -------------------------------------------------------------------


def load_policy(path: Path) -> Policy:
    """Read and parse a policy file (see :func:`parse_policy`)."""
    return parse_policy(read_yaml_text(path, "policy file"), str(path))


def parse_policy(text: str, source: str) -> Policy:
    """Parse and validate a policy from YAML text; errors are :class:`ConfigError` with the line."""
    doc = parse_yaml_with_lines(text, source)
    require_keys(
        doc,
        source,
        "the policy file",
        ("name", "risk_bands", "space", "treatments", "rules"),
        ("version", "description"),
    )

    bands = _parse_bands(doc["risk_bands"], source, doc.line_of("risk_bands"))
    space = require_keys(
        doc["space"],
        source,
        "space",
        ("start_bucket", "segment", "product"),
        (),
        doc.line_of("space"),
    )
    buckets = _parse_names(space, "start_bucket", START_BUCKETS, source)
    segments = _parse_names(space, "segment", SEGMENTS, source)
    products = _parse_names(space, "product", PRODUCTS, source)

    treatments_node = doc["treatments"]
    if not isinstance(treatments_node, dict) or not treatments_node:
        raise ConfigError(
            source,
            doc.line_of("treatments"),
            "treatments must map each treatment name to its ladder",
        )
    treatments = {
        str(name): parse_treatment(str(name), node, source, line_of(treatments_node, name))
        for name, node in treatments_node.items()
    }

    rules_node = doc["rules"]
    if not isinstance(rules_node, list) or not rules_node:
        raise ConfigError(source, doc.line_of("rules"), "rules must be a non-empty list")
    space_values = {
        "start_bucket": buckets,
        "risk_band": tuple(b for b, _ in bands),
        "segment": segments,
        "product": products,
    }
    rules: list[PolicyRule] = []
    seen: dict[str, int | None] = {}
    for index, node in enumerate(rules_node):
        rule = _parse_rule(node, source, line_of(rules_node, index), space_values, treatments)
        if rule.rule_id in seen:
            raise ConfigError(
                source,
                rule.line,
                f"rule id {rule.rule_id!r} is already used on line {seen[rule.rule_id]}",
            )
        seen[rule.rule_id] = rule.line
        rules.append(rule)
    ordered = tuple(sorted(rules, key=lambda r: r.precedence))  # stable: file order breaks ties

    policy = Policy(
        source=source,
        name=str(doc["name"]),
        risk_bands=bands,
        start_buckets=buckets,
        segments=segments,
        products=products,
        treatments=treatments,
        rules=ordered,
    )
    _check_rules_reachable(policy)
    _check_no_conflicts(policy)
    _check_coverage(policy, doc.line_of("rules"))
    return policy


def _parse_bands(node: Any, source: str, line: int | None) -> tuple[tuple[str, float], ...]:
    if not isinstance(node, dict) or not node:
        raise ConfigError(
            source,
            line,
            "risk_bands must map each band to its upper probability bound, e.g. {low: 0.15, medium: 0.4, high: 1.0}",
        )
    bands: list[tuple[str, float]] = []
    for name, upper in node.items():
        here = line_of(node, name)
        if not isinstance(upper, int | float) or isinstance(upper, bool) or not 0 < upper <= 1:
            raise ConfigError(
                source,
                here,
                f"risk band {name!r}: the upper bound must be a probability in (0, 1], got {upper!r}",
            )
        if bands and upper <= bands[-1][1]:
            raise ConfigError(
                source,
                here,
                f"risk band {name!r}: upper bounds must increase, {upper} follows {bands[-1][1]}",
            )
        bands.append((str(name), float(upper)))
    if bands[-1][1] != 1.0:
        raise ConfigError(
            source,
            line_of(node, bands[-1][0]),
            f"the last risk band ({bands[-1][0]!r}) must end at 1.0 so every probability has a band",
        )
    return tuple(bands)


def _parse_names(
    space: LineDict, key: str, known: Sequence[str] | Mapping[str, Any], source: str
) -> tuple[str, ...]:
    values = space[key]
    if not isinstance(values, list) or not values:
        raise ConfigError(source, space.line_of(key), f"space.{key} must be a non-empty list")
    for index, value in enumerate(values):
        if value not in known:
            raise ConfigError(
                source,
                line_of(values, index),
                f"unknown {key.replace('_', ' ')} {value!r} in space; known: {', '.join(known)}",
            )
    return tuple(str(v) for v in values)


def parse_treatment(name: str, node: Any, source: str, line: int | None) -> Treatment:
    """A treatment ``{ladder: [steps], description, label, label_zh}`` of a policy (or an
    experiment's arm); ``label`` / ``label_zh``, its name in English and Chinese on the review
    page, come together or not at all."""
    node = require_keys(
        node, source, f"treatment {name!r}", ("ladder",), ("description", "label", "label_zh"), line
    )
    labels = [node.get(key) for key in ("label", "label_zh")]
    if any(labels) and not all(isinstance(text, str) and text.strip() for text in labels):
        raise ConfigError(
            source,
            line,
            f"treatment {name!r}: give label and label_zh together, each a non-empty text "
            "(its name in English and Chinese, shown on the review page)",
        )
    ladder = node["ladder"]
    if not isinstance(ladder, list):
        raise ConfigError(
            source,
            node.line_of("ladder"),
            f"treatment {name!r}: ladder must be a list of steps (may be empty)",
        )
    steps: list[LadderStep] = []
    for index, step in enumerate(ladder):
        here = line_of(ladder, index)
        step = require_keys(
            step,
            source,
            f"a step of treatment {name!r}",
            ("action", "day"),
            ("at", "channel", "recipient"),
            here,
        )
        action = step["action"]
        if action not in ACTIONS:
            raise ConfigError(
                source,
                here,
                f"treatment {name!r}: unknown action {action!r}; known actions: {', '.join(ACTIONS)}",
            )
        day = step["day"]
        if not isinstance(day, int) or isinstance(day, bool) or day < 0:
            raise ConfigError(
                source,
                here,
                f"treatment {name!r}: day must be a whole number of days >= 0, got {day!r}",
            )
        if steps and day < steps[-1].day:
            raise ConfigError(
                source,
                here,
                f"treatment {name!r}: the ladder must be in day order, day {day} follows day {steps[-1].day}",
            )
        spec = ACTIONS[action]
        channel = step.get("channel", spec.channels[0] if spec.channels else None)
        if channel is not None and channel not in spec.channels:
            allowed = ", ".join(spec.channels) or "none"
            raise ConfigError(
                source,
                here,
                f"treatment {name!r}: action {action!r} cannot use channel {channel!r}; allowed: {allowed}",
            )
        recipient = step.get("recipient", "borrower")
        if recipient not in ("borrower", "emergency_contact"):
            raise ConfigError(
                source,
                here,
                f"treatment {name!r}: recipient {recipient!r} is not allowed; a policy may only contact the borrower, or an emergency contact to locate an unreachable borrower",
            )
        if recipient == "emergency_contact" and not spec.contacts_borrower:
            raise ConfigError(
                source,
                here,
                f"treatment {name!r}: only contact actions may go to an emergency contact, not {action!r}",
            )
        at = parse_time_of_day(step.get("at", "10:00"), source, here)
        steps.append(LadderStep(str(action), day, at, channel, recipient, here))
    _check_standard_queue(name, steps, source)
    return Treatment(
        name,
        tuple(steps),
        str(node.get("description", "")),
        line,
        label=str(node.get("label") or "").strip(),
        label_zh=str(node.get("label_zh") or "").strip(),
    )


def _check_standard_queue(name: str, steps: Sequence[LadderStep], source: str) -> None:
    """``standard_queue`` hands the account to the lender's tiered collection from the decision
    on: once, on day 0. Other steps in its ladder are added on top of that collection (its
    contacts and relief stay; e.g. a restructure offer and relief on a hardship claim)."""
    queued = [step for step in steps if step.action == STANDARD_QUEUE]
    if len(queued) > 1:
        raise ConfigError(
            source,
            queued[1].line,
            f"treatment {name!r}: {STANDARD_QUEUE} appears {len(queued)} times; the account "
            "is in the lender's standard collection once, from day 0",
        )
    if queued and queued[0].day != 0:
        raise ConfigError(
            source,
            queued[0].line,
            f"treatment {name!r}: {STANDARD_QUEUE} starts at the decision, day 0, got day "
            f"{queued[0].day}",
        )


def _parse_interval(node: Any, source: str, line: int | None, what: str) -> Interval:
    node = require_keys(node, source, what, (), ("ge", "lt"), line)
    low, high = node.get("ge", 0), node.get("lt", math.inf)
    for bound in (low, high):
        if not isinstance(bound, int | float) or isinstance(bound, bool):
            raise ConfigError(source, line, f"{what}: bounds must be numbers, got {bound!r}")
    if not low < high:
        raise ConfigError(source, line, f"{what}: the range [ge, lt) is empty ({low} >= {high})")
    return Interval(float(low), float(high))


def _parse_rule(
    node: Any,
    source: str,
    line: int | None,
    space: Mapping[str, tuple[str, ...]],
    treatments: Mapping[str, Treatment],
) -> PolicyRule:
    node = require_keys(
        node, source, "a rule", ("id", "precedence", "when", "treatment"), ("description",), line
    )
    rule_id = str(node["id"])
    precedence = node["precedence"]
    if not isinstance(precedence, int) or isinstance(precedence, bool):
        raise ConfigError(
            source,
            node.line_of("precedence"),
            f"rule {rule_id!r}: precedence must be a whole number, got {precedence!r}",
        )
    treatment = node["treatment"]
    if treatment not in treatments:
        raise ConfigError(
            source,
            node.line_of("treatment"),
            f"rule {rule_id!r}: unknown treatment {treatment!r}; defined: {', '.join(treatments)}",
        )
    when = node["when"]
    if when is None:
        when = LineDict()
    when = require_keys(
        when,
        source,
        f"rule {rule_id!r} when",
        (),
        (*space, "dpd", "amount_overdue"),
        node.line_of("when"),
    )
    chosen: dict[str, frozenset[str]] = {}
    for key, values in space.items():
        given = when.get(key, "any")
        if given == "any":
            chosen[key] = frozenset(values)
            continue
        given = [given] if isinstance(given, str) else given
        if not isinstance(given, list) or not given:
            raise ConfigError(
                source,
                when.line_of(key),
                f"rule {rule_id!r}: {key} must be a list of values or 'any'",
            )
        for index, value in enumerate(given):
            if value not in values:
                raise ConfigError(
                    source,
                    line_of(given, index) or when.line_of(key),
                    f"rule {rule_id!r}: unknown {key.replace('_', ' ')} {value!r}; the policy's space allows: {', '.join(values)}",
                )
        chosen[key] = frozenset(str(v) for v in given)
    dpd = _parse_interval(when.get("dpd", {}), source, when.line_of("dpd"), f"rule {rule_id!r} dpd")
    amount = _parse_interval(
        when.get("amount_overdue", {}),
        source,
        when.line_of("amount_overdue"),
        f"rule {rule_id!r} amount_overdue",
    )
    return PolicyRule(
        rule_id=rule_id,
        precedence=precedence,
        start_buckets=chosen["start_bucket"],
        risk_bands=chosen["risk_band"],
        segments=chosen["segment"],
        products=chosen["product"],
        dpd=dpd,
        amount_overdue=amount,
        treatment=str(treatment),
        line=node.line,
    )


def _reachable_dpd(rule: PolicyRule, bucket: str) -> Interval | None:
    low, high = START_BUCKETS[bucket]
    return rule.dpd.intersect(Interval(low, high))


def check_segments_in_space(policy: Policy, segments: Sequence[str], segments_source: str) -> None:
    """Refuse a policy whose ``space.segment`` lacks a segment the segment rules can assign
    (``segments``: their segments and fallback, from ``segments_source``): every account of it
    would match no rule, and scoring stopped mid-run with a traceback.

    Raises:
        ConfigError: naming the policy file, the segments missing and where they come from.
    """
    missing = [segment for segment in segments if segment not in policy.segments]
    if missing:
        raise ConfigError(
            policy.source,
            None,
            f"space.segment lacks {', '.join(map(repr, missing))}, which {segments_source} "
            "assigns: an account in it would match no rule of this policy; add it to "
            "space.segment (the coverage check then asks for a rule that covers it)",
        )


def _check_rules_reachable(policy: Policy) -> None:
    for rule in policy.rules:
        if not any(
            _reachable_dpd(rule, bucket)
            for bucket in rule.start_buckets & set(policy.start_buckets)
        ):
            raise ConfigError(
                policy.source,
                rule.line,
                f"rule {rule.rule_id!r} can never fire: its dpd range {rule.dpd} lies outside the DPD range of its start buckets "
                + ", ".join(
                    f"{b} {Interval(*START_BUCKETS[b])}" for b in sorted(rule.start_buckets)
                ),
            )


def _check_no_conflicts(policy: Policy) -> None:
    rules = sorted(policy.rules, key=lambda r: r.line or 0)
    for first, second in itertools.combinations(rules, 2):
        if first.precedence != second.precedence or first.treatment == second.treatment:
            continue
        common = {
            "start_bucket": first.start_buckets & second.start_buckets,
            "risk_band": first.risk_bands & second.risk_bands,
            "segment": first.segments & second.segments,
            "product": first.products & second.products,
        }
        amount = first.amount_overdue.intersect(second.amount_overdue)
        if not all(common.values()) or amount is None:
            continue
        dpd = first.dpd.intersect(second.dpd)
        buckets = sorted(
            b for b in common["start_bucket"] if dpd and dpd.intersect(Interval(*START_BUCKETS[b]))
        )
        if not buckets:
            continue
        example = ", ".join(
            f"{key}={sorted(values)[0]}" for key, values in common.items() if key != "start_bucket"
        )
        raise ConfigError(
            policy.source,
            second.line,
            f"rules {first.rule_id!r} (line {first.line}) and {second.rule_id!r} have the same precedence "
            f"{first.precedence} and overlap (e.g. start_bucket={buckets[0]}, {example}, dpd in {dpd}, "
            f"amount_overdue in {amount}) but give different treatments ({first.treatment!r} vs "
            f"{second.treatment!r}); change a precedence or narrow a rule",
        )


def _breakpoints(intervals: Sequence[Interval], low: float, high: float) -> list[Interval]:
    points = sorted({low, high, *(p for i in intervals for p in (i.low, i.high) if low < p < high)})
    return [Interval(a, b) for a, b in itertools.pairwise(points)]


def _check_coverage(policy: Policy, rules_line: int | None) -> None:
    amount_cells = _breakpoints([r.amount_overdue for r in policy.rules], 0.0, math.inf)
    # Bucket boundaries are breakpoints too, so no DPD cell straddles two buckets.
    bucket_edges = [Interval(*START_BUCKETS[b]) for b in policy.start_buckets]
    dpd_cells = _breakpoints([r.dpd for r in policy.rules] + bucket_edges, 1.0, 90.0)
    bands = [b for b, _ in policy.risk_bands]
    gaps: list[str] = []
    count = 0
    # the rules that decide some combination (the first matching one in precedence order,
    # as the policy decides), and for every other rule the ones that took its combinations
    deciding: set[int] = set()
    taken_by: dict[int, set[int]] = {}
    hits = [0] * len(policy.rules)  # combinations each rule matches, of ``cells``
    cells = 0
    for bucket in policy.start_buckets:
        bucket_range = Interval(*START_BUCKETS[bucket])
        for dpd in (c for c in dpd_cells if c.intersect(bucket_range)):
            for band, segment, product, amount in itertools.product(
                bands, policy.segments, policy.products, amount_cells
            ):
                matching = [
                    index
                    for index, rule in enumerate(policy.rules)
                    if rule.matches(bucket, band, segment, product, dpd.low, amount.low)
                ]
                cells += 1
                for index in matching:
                    hits[index] += 1
                if matching:
                    deciding.add(matching[0])
                    for index in matching[1:]:
                        taken_by.setdefault(index, set()).add(matching[0])
                    continue
                count += 1
                if len(gaps) < 3:
                    gaps.append(
                        f"start_bucket={bucket}, risk_band={band}, segment={segment}, product={product}, "
                        f"dpd in {dpd}, amount_overdue in {amount}"
                    )
    if count:
        raise ConfigError(
            policy.source,
            rules_line,
            f"{count} reachable combination(s) are covered by no rule, e.g. "
            + "; ".join(gaps)
            + ". Add a rule (a catch-all with a high precedence number is the usual fix)",
        )
    for index, rule in enumerate(policy.rules):
        # a catch-all (it matches every combination) may stand behind rules that cover all:
        # a safety net for combinations a later edit leaves uncovered
        if index in deciding or hits[index] == cells:
            continue
        # only reached on a combination a rule with a lower precedence number decides first
        first = sorted(
            (policy.rules[i] for i in taken_by.get(index, ())), key=lambda r: r.line or 0
        )
        named = ", ".join(
            f"{r.rule_id!r} (precedence {r.precedence}, line {r.line})" for r in first
        )
        raise ConfigError(
            policy.source,
            rule.line,
            f"rule {rule.rule_id!r} (precedence {rule.precedence}) can never decide: every "
            f"account it matches is decided first by {named}; give it a lower precedence "
            "number than the rule it should win over, or remove it",
        )
