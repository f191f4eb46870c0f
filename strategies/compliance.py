"""Compliance rules, enforced on every decision after the policy has chosen it.

A strategy may choose anything; what reaches a borrower must obey the rules in
``conf/compliance.yaml`` (sources in ``docs/strategies.md`` and ``DOMAIN.md``, "Rules a strategy
must never break"). Each jurisdiction sets its parameters over a ``default``; an account under
several jurisdictions gets the strictest value of each parameter
(:meth:`ComplianceConfig.strictest`: contact windows intersect, caps take the minimum,
thresholds the maximum).

:func:`enforce` applies the rules in this order, each recording what it changed and why:

==================================  ==========================================================
``CMP-HARDSHIP-PAUSE``              no collection action while a hardship plan is honoured
``CMP-THIRD-PARTY``                 never an unrelated third party; an emergency contact only
                                    to locate a borrower with documented failed contact
``CMP-FIRST-DELINQUENCY-EXTENSION`` the one-time extension only for a first-ever delinquency
``CMP-LEGAL-REFERRAL``              legal referral only from a DPD and amount, after
                                    documented failed contact
``CMP-CONTACT-WINDOW``              contacts only inside the local contact window (moved in)
``CMP-CALLS-PER-7-DAYS``            at most N calls per debt in any 7 consecutive days
``CMP-CALL-AFTER-CONVERSATION``     no call within N days after a telephone conversation
``CMP-UNANSWERED-DIALS``            at most N unanswered dials per day per contact method
==================================  ==========================================================

Times are the borrower's local time; contact history timestamps are read in the same zone.
Planned calls are counted against the caps as if they could all go unanswered, so a plan can
never exceed a cap whatever the outcomes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from rollrisk.features.schemas import (
    CALL_CHANNELS,
    FAILED_OUTCOMES,
    REACHED_OUTCOMES,
    UNANSWERED_OUTCOMES,
)
from rollrisk.strategies.policy import ACTIONS, ComplianceChange, Decision, PlannedAction
from rollrisk.strategies.yaml_config import (
    ConfigError,
    line_of,
    parse_time_of_day,
    parse_yaml_with_lines,
    read_yaml_text,
    require_keys,
)


@dataclass(frozen=True)
class Parameter:
    """A compliance parameter: its kind and how the strictest of several values is chosen."""

    kind: str  # "time", "count" (int >= 0 or null = no cap), "number" (>= 0)
    strictest: str  # "max" or "min" (over non-null values)
    description: str


PARAMETERS: Mapping[str, Parameter] = {
    "contact_window_start": Parameter(
        "time", "max", "earliest local time of day a contact may happen"
    ),
    "contact_window_end": Parameter(
        "time", "min", "local time of day from which contact stops (exclusive)"
    ),
    "max_calls_per_7_days": Parameter(
        "count", "min", "calls per debt in any 7 consecutive days (null: no cap)"
    ),
    "quiet_days_after_conversation": Parameter(
        "count", "max", "days without a call after a telephone conversation (null: none)"
    ),
    "max_unanswered_dials_per_day_per_channel": Parameter(
        "count", "min", "unanswered dials per day per contact method (null: no cap)"
    ),
    "legal_min_dpd": Parameter("count", "max", "lowest DPD from which legal referral is allowed"),
    "legal_min_amount_overdue": Parameter(
        "number", "max", "lowest amount overdue from which legal referral is allowed"
    ),
    "min_failed_contacts": Parameter(
        "count", "max", "failed contact attempts that document a borrower as unreachable"
    ),
    "failed_contact_lookback_days": Parameter(
        "count", "min", "days the failed attempts (and no success) are looked for in"
    ),
}


@dataclass(frozen=True)
class EffectiveCompliance:
    """The strictest parameters over an account's jurisdictions, with who set each one."""

    jurisdictions: tuple[str, ...]
    binding: Mapping[str, tuple[str, ...]]  # parameter -> jurisdictions whose value is binding
    contact_window_start: time
    contact_window_end: time
    max_calls_per_7_days: int | None
    quiet_days_after_conversation: int | None
    max_unanswered_dials_per_day_per_channel: int | None
    legal_min_dpd: int
    legal_min_amount_overdue: float
    min_failed_contacts: int
    failed_contact_lookback_days: int


@dataclass(frozen=True)
class ComplianceConfig:
    """The parsed ``conf/compliance.yaml``."""

    source: str
    default: Mapping[str, Any]
    jurisdictions: Mapping[str, Mapping[str, Any]]  # code -> parameters (default merged in)
    citations: Mapping[str, str]  # code -> the regulation it follows

    def strictest(self, codes: Sequence[str]) -> EffectiveCompliance:
        """The strictest combination of the given jurisdictions (the default when none)."""
        unknown = [code for code in codes if code not in self.jurisdictions]
        if unknown:
            raise ValueError(
                f"unknown jurisdiction(s) {unknown}; {self.source} defines {sorted(self.jurisdictions)}"
            )
        sets = {code: self.jurisdictions[code] for code in codes} or {"default": self.default}
        values: dict[str, Any] = {}
        binding: dict[str, tuple[str, ...]] = {}
        for name, parameter in PARAMETERS.items():
            given = {
                code: params[name] for code, params in sets.items() if params[name] is not None
            }
            if not given:
                values[name], binding[name] = None, ()
                continue
            chosen = max(given.values()) if parameter.strictest == "max" else min(given.values())
            values[name] = chosen
            binding[name] = tuple(code for code, value in given.items() if value == chosen)
        if values["contact_window_start"] >= values["contact_window_end"]:
            raise ValueError(f"jurisdictions {list(codes)} leave no common contact window")
        return EffectiveCompliance(tuple(sets), binding, **values)


def load_compliance(path: Path) -> ComplianceConfig:
    """Read and parse a compliance file (see :func:`parse_compliance`)."""
    return parse_compliance(read_yaml_text(path, "compliance file"), str(path))


def parse_compliance(text: str, source: str) -> ComplianceConfig:
    """Parse and validate compliance parameters; errors are :class:`ConfigError` with the line."""
    doc = parse_yaml_with_lines(text, source)
    require_keys(doc, source, "the compliance file", ("default", "jurisdictions"), ("version",))
    default_node = require_keys(
        doc["default"], source, "default", PARAMETERS, (), doc.line_of("default")
    )
    default = {
        name: _parse_parameter(name, default_node[name], source, default_node.line_of(name))
        for name in PARAMETERS
    }
    juris_node = doc["jurisdictions"]
    if not isinstance(juris_node, dict):
        raise ConfigError(
            source,
            doc.line_of("jurisdictions"),
            "jurisdictions must map a code (CN, US, ...) to its parameters",
        )
    jurisdictions: dict[str, dict[str, Any]] = {}
    citations: dict[str, str] = {}
    for code, node in juris_node.items():
        node = require_keys(
            node,
            source,
            f"jurisdiction {code!r}",
            ("source",),
            PARAMETERS,
            line_of(juris_node, code),
        )
        params = dict(default)
        for name in PARAMETERS:
            if name in node:
                params[name] = _parse_parameter(name, node[name], source, node.line_of(name))
        if params["contact_window_start"] >= params["contact_window_end"]:
            raise ConfigError(
                source,
                line_of(juris_node, code),
                f"jurisdiction {code!r}: the contact window must start before it ends",
            )
        jurisdictions[str(code)] = params
        citations[str(code)] = str(node["source"])
    if default["contact_window_start"] >= default["contact_window_end"]:
        raise ConfigError(
            source, doc.line_of("default"), "default: the contact window must start before it ends"
        )
    return ComplianceConfig(source, default, jurisdictions, citations)


def _parse_parameter(name: str, value: Any, source: str, line: int | None) -> Any:
    kind = PARAMETERS[name].kind
    if kind == "time":
        return parse_time_of_day(value, source, line)
    if value is None and name in (
        "max_calls_per_7_days",
        "quiet_days_after_conversation",
        "max_unanswered_dials_per_day_per_channel",
    ):
        return None
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "count" and not (is_number and float(value).is_integer() and value >= 0):
        raise ConfigError(source, line, f"{name} must be a whole number >= 0, got {value!r}")
    if kind == "number" and not (is_number and value >= 0):
        raise ConfigError(source, line, f"{name} must be a number >= 0, got {value!r}")
    return int(value) if kind == "count" else float(value)


# --- enforcement ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountState:
    """What the compliance rules need to know about the account at the decision time."""

    account_id: str
    dpd: int
    amount_overdue: float
    first_ever_delinquency: bool
    had_first_delinquency_extension: bool = False
    hardship_plan_honoured: bool = False


@dataclass(frozen=True)
class ContactHistory:
    """One account's past contact attempts with the borrower: ``(action_at, channel, outcome)``.

    The rules only count and filter these rows, so a plain tuple serves them; it spares the
    batch a pandas frame per account (which cost tens of milliseconds each). Build it with
    :meth:`from_frame`, or directly from already-filtered rows of one account.
    """

    rows: tuple[tuple[datetime, Any, Any], ...] = ()

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> ContactHistory:
        """From a frame with ``action_at``, ``channel``, ``outcome`` (other columns ignored)."""
        return cls(
            tuple(
                zip(
                    frame["action_at"].tolist(),
                    frame["channel"].tolist(),
                    frame["outcome"].tolist(),
                    strict=True,
                )
            )
        )

    def before(self, moment: datetime) -> ContactHistory:
        """The rows strictly before ``moment``."""
        return ContactHistory(tuple(row for row in self.rows if row[0] < moment))

    def times(
        self, channels: Collection[str], outcomes: Collection[str] | None = None
    ) -> list[Any]:
        """``action_at`` of the rows on one of ``channels`` (and with one of ``outcomes``)."""
        return [
            at
            for at, channel, outcome in self.rows
            if channel in channels and (outcomes is None or outcome in outcomes)
        ]


@dataclass(frozen=True)
class _Context:
    decision: Decision
    state: AccountState
    history: ContactHistory  # this account's actions before the decision
    rules: EffectiveCompliance

    def failed_contact_documented(self) -> tuple[bool, str]:
        """Whether recent attempts document that the borrower cannot be reached, and the evidence."""
        days = self.rules.failed_contact_lookback_days
        since = self.decision.decided_at - timedelta(days=days)
        recent = [outcome for at, _, outcome in self.history.rows if at >= since]
        failed = sum(outcome in FAILED_OUTCOMES for outcome in recent)
        reached = sum(outcome in REACHED_OUTCOMES for outcome in recent)
        needed = self.rules.min_failed_contacts
        evidence = f"{failed} failed and {reached} successful contact attempts in the last {days} days (needs >= {needed} failed and none successful)"
        return failed >= needed and reached == 0, evidence


def _history_of(
    account_id: str, contact_history: pd.DataFrame | ContactHistory | None, decided_at: datetime
) -> ContactHistory:
    columns = ["action_at", "channel", "outcome"]
    if isinstance(contact_history, ContactHistory):
        return contact_history.before(decided_at)
    if contact_history is None or contact_history.empty:
        return ContactHistory()
    missing = [c for c in columns if c not in contact_history.columns]
    if missing:
        raise ValueError(f"contact history lacks columns {missing} (collection_actions contract)")
    history = contact_history
    if "account_id" in history.columns:
        history = history[history["account_id"] == account_id]
    if "recipient" in history.columns:  # an emergency contact's answers say nothing of the borrower
        history = history[history["recipient"].fillna("borrower") == "borrower"]
    history = history.assign(action_at=pd.to_datetime(history["action_at"]))
    return ContactHistory.from_frame(
        history[history["action_at"] < pd.Timestamp(decided_at)][columns].sort_values("action_at")
    )


def _change(
    rule_id: str,
    action: PlannedAction,
    change: str,
    reason: str,
    rules: EffectiveCompliance,
    *params: str,
) -> ComplianceChange:
    binding = sorted({code for p in params for code in rules.binding.get(p, ())})
    return ComplianceChange(rule_id, action.describe(), change, reason, tuple(binding))


Rule = Callable[[list[PlannedAction], _Context], tuple[list[PlannedAction], list[ComplianceChange]]]


def _hardship_pause(
    actions: list[PlannedAction], ctx: _Context
) -> tuple[list[PlannedAction], list[ComplianceChange]]:
    if not ctx.state.hardship_plan_honoured:
        return actions, []
    kept, changes = [], []
    for action in actions:
        if ACTIONS[action.action].is_collection:
            changes.append(
                ComplianceChange(
                    "CMP-HARDSHIP-PAUSE",
                    action.describe(),
                    "removed",
                    "collection stops while a signed hardship plan is honoured",
                )
            )
        else:
            kept.append(action)
    return kept, changes


def _third_party(
    actions: list[PlannedAction], ctx: _Context
) -> tuple[list[PlannedAction], list[ComplianceChange]]:
    kept, changes = [], []
    documented: tuple[bool, str] | None = None
    for action in actions:
        if action.recipient == "borrower":
            kept.append(action)
            continue
        if action.recipient == "emergency_contact" and ACTIONS[action.action].contacts_borrower:
            documented = documented or ctx.failed_contact_documented()
            if documented[0]:
                kept.append(action)
                continue
            reason = f"an emergency contact may only be used to locate an unreachable borrower; {documented[1]}"
        else:
            reason = "no contact with unrelated third parties about the debt"
        changes.append(
            _change(
                "CMP-THIRD-PARTY",
                action,
                "removed",
                reason,
                ctx.rules,
                "min_failed_contacts",
                "failed_contact_lookback_days",
            )
        )
    return kept, changes


def _first_delinquency_extension(
    actions: list[PlannedAction], ctx: _Context
) -> tuple[list[PlannedAction], list[ComplianceChange]]:
    kept, changes = [], []
    for action in actions:
        if action.action == "first_delinquency_extension" and (
            not ctx.state.first_ever_delinquency or ctx.state.had_first_delinquency_extension
        ):
            why = (
                "the account already had its one-time extension"
                if ctx.state.had_first_delinquency_extension
                else "this is not the account's first-ever delinquency"
            )
            changes.append(
                ComplianceChange(
                    "CMP-FIRST-DELINQUENCY-EXTENSION",
                    action.describe(),
                    "removed",
                    f"the interest-free extension is only for a first-ever delinquency: {why}",
                )
            )
        else:
            kept.append(action)
    return kept, changes


def _legal_referral(
    actions: list[PlannedAction], ctx: _Context
) -> tuple[list[PlannedAction], list[ComplianceChange]]:
    kept, changes = [], []
    for action in actions:
        if action.action != "legal_referral":
            kept.append(action)
            continue
        rules, state = ctx.rules, ctx.state
        failures = []
        if state.dpd < rules.legal_min_dpd:
            failures.append(f"DPD {state.dpd} is below {rules.legal_min_dpd}")
        if state.amount_overdue < rules.legal_min_amount_overdue:
            failures.append(
                f"amount overdue {state.amount_overdue:g} is below {rules.legal_min_amount_overdue:g}"
            )
        documented, evidence = ctx.failed_contact_documented()
        if not documented:
            failures.append(f"failed contact is not documented: {evidence}")
        if failures:
            changes.append(
                _change(
                    "CMP-LEGAL-REFERRAL",
                    action,
                    "removed",
                    "legal referral not allowed: " + "; ".join(failures),
                    rules,
                    "legal_min_dpd",
                    "legal_min_amount_overdue",
                    "min_failed_contacts",
                )
            )
        else:
            kept.append(action)
    return kept, changes


def _contact_window(
    actions: list[PlannedAction], ctx: _Context
) -> tuple[list[PlannedAction], list[ComplianceChange]]:
    start: time = ctx.rules.contact_window_start
    end: time = ctx.rules.contact_window_end
    kept, changes = [], []
    for action in actions:
        at = action.at
        if not ACTIONS[action.action].contacts_borrower or start <= at.time() < end:
            kept.append(action)
            continue
        day = at.date() if at.time() < start else at.date() + timedelta(days=1)
        moved = PlannedAction(
            action.action, datetime.combine(day, start), action.channel, action.recipient
        )
        kept.append(moved)
        changes.append(
            _change(
                "CMP-CONTACT-WINDOW",
                action,
                f"moved to {moved.at:%Y-%m-%d %H:%M}",
                f"contact only between {start:%H:%M} and {end:%H:%M} local time",
                ctx.rules,
                "contact_window_start",
                "contact_window_end",
            )
        )
    kept.sort(key=lambda a: a.at)
    return kept, changes


def _calls_per_7_days(
    actions: list[PlannedAction], ctx: _Context
) -> tuple[list[PlannedAction], list[ComplianceChange]]:
    cap = ctx.rules.max_calls_per_7_days
    if cap is None:
        return actions, []
    past = ctx.history.times(CALL_CHANNELS)
    kept, changes, planned = [], [], []
    for action in actions:
        if not ACTIONS[action.action].is_call:
            kept.append(action)
            continue
        since = action.at - timedelta(days=7)
        count = sum(since < t <= action.at for t in past) + sum(
            since < t <= action.at for t in planned
        )
        if count >= cap:
            changes.append(
                _change(
                    "CMP-CALLS-PER-7-DAYS",
                    action,
                    "removed",
                    f"it would be call {count + 1} on this debt within 7 days (cap {cap})",
                    ctx.rules,
                    "max_calls_per_7_days",
                )
            )
        else:
            kept.append(action)
            planned.append(action.at)
    return kept, changes


def _call_after_conversation(
    actions: list[PlannedAction], ctx: _Context
) -> tuple[list[PlannedAction], list[ComplianceChange]]:
    days = ctx.rules.quiet_days_after_conversation
    if not days:
        return actions, []
    talks = ctx.history.times(CALL_CHANNELS, REACHED_OUTCOMES)
    kept, changes = [], []
    for action in actions:
        recent = (
            [t for t in talks if t <= action.at < t + timedelta(days=days)]
            if ACTIONS[action.action].is_call
            else []
        )
        if recent:
            changes.append(
                _change(
                    "CMP-CALL-AFTER-CONVERSATION",
                    action,
                    "removed",
                    f"a telephone conversation took place on {max(recent):%Y-%m-%d %H:%M}, less than {days} days before",
                    ctx.rules,
                    "quiet_days_after_conversation",
                )
            )
        else:
            kept.append(action)
    return kept, changes


def _unanswered_dials(
    actions: list[PlannedAction], ctx: _Context
) -> tuple[list[PlannedAction], list[ComplianceChange]]:
    cap = ctx.rules.max_unanswered_dials_per_day_per_channel
    if cap is None:
        return actions, []
    past: Counter[tuple[Any, str]] = Counter(
        (at.date(), channel)
        for at, channel, outcome in ctx.history.rows
        if channel in CALL_CHANNELS and outcome in UNANSWERED_OUTCOMES
    )
    planned: dict[tuple[Any, str], int] = {}
    kept, changes = [], []
    for action in actions:
        if not ACTIONS[action.action].is_call:
            kept.append(action)
            continue
        key = (action.at.date(), str(action.channel))
        count = past.get(key, 0) + planned.get(key, 0)
        if count >= cap:
            changes.append(
                _change(
                    "CMP-UNANSWERED-DIALS",
                    action,
                    "removed",
                    f"{count} dials via {action.channel} on {key[0]} may already go unanswered (cap {cap} per day per contact method)",
                    ctx.rules,
                    "max_unanswered_dials_per_day_per_channel",
                )
            )
        else:
            kept.append(action)
            planned[key] = planned.get(key, 0) + 1
    return kept, changes


RULES: tuple[tuple[str, Rule], ...] = (
    ("CMP-HARDSHIP-PAUSE", _hardship_pause),
    ("CMP-THIRD-PARTY", _third_party),
    ("CMP-FIRST-DELINQUENCY-EXTENSION", _first_delinquency_extension),
    ("CMP-LEGAL-REFERRAL", _legal_referral),
    ("CMP-CONTACT-WINDOW", _contact_window),
    ("CMP-CALLS-PER-7-DAYS", _calls_per_7_days),
    ("CMP-CALL-AFTER-CONVERSATION", _call_after_conversation),
    ("CMP-UNANSWERED-DIALS", _unanswered_dials),
)
"""Every compliance rule, in the order :func:`enforce` applies them."""


def enforce(
    decision: Decision,
    account_state: AccountState,
    contact_history: pd.DataFrame | ContactHistory | None,
    jurisdictions: EffectiveCompliance,
) -> Decision:
    """Apply every compliance rule to a policy decision.

    Args:
        decision: what the policy chose (:func:`rollrisk.strategies.policy.decide`).
        account_state: the account's DPD, amount overdue and hardship / delinquency facts.
        contact_history: past collection actions (``collection_actions`` contract columns
            ``action_at``, ``channel``, ``outcome``; optional ``account_id`` filters to this
            account, optional ``recipient`` keeps the borrower's rows). Rows at or after the
            decision time are ignored. A :class:`ContactHistory` of this account's borrower
            contacts may be passed instead (the batch does, to avoid a frame per account).
        jurisdictions: the strictest parameters of the account's jurisdictions
            (:meth:`ComplianceConfig.strictest`).

    Returns:
        A new decision whose actions obey every rule and whose trail adds one
        :class:`ComplianceChange` per action a rule removed or moved.
    """
    if account_state.account_id != decision.account_id:
        raise ValueError(
            f"account state is for {account_state.account_id} but the decision for {decision.account_id}"
        )
    ctx = _Context(
        decision,
        account_state,
        _history_of(decision.account_id, contact_history, decision.decided_at),
        jurisdictions,
    )
    actions = sorted(decision.actions, key=lambda a: a.at)
    changes: list[ComplianceChange] = []
    for _, rule in RULES:
        actions, new = rule(actions, ctx)
        changes.extend(new)
    return decision.with_changes(actions, changes)
