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

Each rule works on the planned actions of many accounts at once, as columns
(:func:`enforce_all`, what the batch calls for a whole partition); :func:`enforce` is the
same code for one account's decision.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rollrisk.features.schemas import (
    CALL_CHANNELS,
    FAILED_OUTCOMES,
    REACHED_OUTCOMES,
    UNANSWERED_OUTCOMES,
)
from rollrisk.strategies.labels import Labels, common_codes
from rollrisk.strategies.policy import (
    ComplianceChange,
    Decision,
    PlannedActions,
)
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
class Floor:
    """The loosest value a compliance file may give a parameter, and the rule it comes from."""

    value: Any
    rule: str


_CONTACT_HOURS = (
    "contact only between 08:00 and 21:00 local time, unless a jurisdiction allows more"
)
_DOCUMENTED_FAILED = "documented failed contact means at least 3 failed attempts"
# The rules a strategy must never break (docs/strategies.md, "Compliance"), as the loosest
# values a compliance file may set: a file may tighten them, never loosen them; a
# jurisdiction's own line replaces the line of every jurisdiction (None) for that parameter.
# Loosening one is a change to this table, reviewed as code, not an edit of a YAML value.
FLOORS: Mapping[str | None, Mapping[str, Floor]] = {
    None: {  # the default and every jurisdiction
        "contact_window_start": Floor(time(8, 0), _CONTACT_HOURS),
        "contact_window_end": Floor(time(21, 0), _CONTACT_HOURS),
        "legal_min_dpd": Floor(60, "legal action from about 60+ DPD"),
        "min_failed_contacts": Floor(3, _DOCUMENTED_FAILED),
    },
    "CN": {
        "contact_window_end": Floor(
            time(22, 0), "China's 2026 banking association guideline: contact 08:00-22:00"
        ),
        "max_unanswered_dials_per_day_per_channel": Floor(
            6, "China's guideline: at most 6 unanswered dials per day per contact method"
        ),
    },
    "US": {
        "max_calls_per_7_days": Floor(
            7, "Regulation F: above 7 calls in 7 days is presumed harassment"
        ),
        "quiet_days_after_conversation": Floor(
            7, "Regulation F: no call within 7 days after a telephone conversation"
        ),
    },
}


def _looser_than_floor(name: str, value: Any, jurisdiction: str | None) -> Floor | None:
    """The floor ``value`` of parameter ``name`` breaks in ``jurisdiction`` (None: the
    default), or None when it keeps every floor (null, no cap, is the loosest value)."""
    floor = {**FLOORS[None], **FLOORS.get(jurisdiction, {})}.get(name)
    if floor is None:
        return None
    if value is None:
        return floor
    stricter_is_larger = PARAMETERS[name].strictest == "max"
    return floor if (value < floor.value if stricter_is_larger else value > floor.value) else None


def _check_floor(
    name: str, value: Any, jurisdiction: str | None, source: str, line: int | None
) -> None:
    floor = _looser_than_floor(name, value, jurisdiction)
    if floor is None:
        return
    where = "default" if jurisdiction is None else f"jurisdiction {jurisdiction!r}"
    shown = "null (no cap)" if value is None else _shown(value)
    bound = "at least" if PARAMETERS[name].strictest == "max" else "at most"
    raise ConfigError(
        source,
        line,
        f"{where}: {name} {shown} is looser than a rule a strategy must never break "
        f"({floor.rule}): it must be {bound} {_shown(floor.value)}; a compliance file may "
        "tighten the rules, never loosen them",
    )


def _shown(value: Any) -> str:
    return value.strftime("%H:%M") if isinstance(value, time) else repr(value)


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
    for name, value in default.items():
        _check_floor(name, value, None, source, default_node.line_of(name))
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
        if code not in FLOORS and str(code).upper() in FLOORS:  # `cn:` would miss CN's rules
            raise ConfigError(
                source,
                line_of(juris_node, code),
                f"jurisdiction {code!r}: did you mean {str(code).upper()!r}? Codes are matched "
                f"as written, and the rules of {str(code).upper()} apply to that code only",
            )
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
            # a value inherited from the default is held to the jurisdiction's floor too (a
            # cap deleted from the US line leaves the default's null: no cap)
            line = node.line_of(name) if name in node else line_of(juris_node, code)
            _check_floor(name, params[name], str(code), source, line)
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


@dataclass(frozen=True)
class AccountStates:
    """:class:`AccountState` of many accounts as columns (row ``i`` is account ``i`` of the
    :class:`~rollrisk.strategies.policy.PlannedActions` it goes with), and each account's
    decision time."""

    account_id: np.ndarray  # object (str)
    dpd: np.ndarray  # int64
    amount_overdue: np.ndarray  # float64
    first_ever_delinquency: np.ndarray  # bool
    had_first_delinquency_extension: np.ndarray  # bool
    hardship_plan_honoured: np.ndarray  # bool
    decided_at: np.ndarray  # datetime64[us]

    @classmethod
    def of(cls, state: AccountState, decided_at: datetime) -> AccountStates:
        return cls(
            np.array([state.account_id], dtype=object),
            np.array([state.dpd]),
            np.array([state.amount_overdue], dtype=np.float64),
            np.array([state.first_ever_delinquency], dtype=bool),
            np.array([state.had_first_delinquency_extension], dtype=bool),
            np.array([state.hardship_plan_honoured], dtype=bool),
            np.array([decided_at], dtype="datetime64[us]"),
        )


@dataclass(frozen=True)
class ContactHistories:
    """Past contact attempts of many accounts as columns, one row per attempt: ``account`` (the
    account's row), ``at`` (local time, ``datetime64[us]``), ``channel``, ``outcome`` (labels:
    :class:`~rollrisk.strategies.labels.Labels`, or arrays of strings coded here). Rows at or
    after an account's decision time are ignored by :func:`enforce_all`."""

    account: np.ndarray  # int64
    at: np.ndarray  # datetime64[us]
    channel: Labels
    outcome: Labels

    def __post_init__(self) -> None:
        for name in ("channel", "outcome"):
            object.__setattr__(self, name, Labels.of(getattr(self, name)))

    @classmethod
    def of(cls, history: ContactHistory, account: int = 0) -> ContactHistories:
        rows = history.rows
        return cls(
            np.full(len(rows), account, dtype=np.int64),
            np.array([row[0] for row in rows], dtype="datetime64[us]"),
            np.array([row[1] for row in rows], dtype=object),
            np.array([row[2] for row in rows], dtype=object),
        )

    def take(self, rows: np.ndarray) -> ContactHistories:
        return ContactHistories(
            self.account[rows], self.at[rows], self.channel.take(rows), self.outcome.take(rows)
        )

    def is_in(self, column: str, values: Collection[str]) -> np.ndarray:
        return getattr(self, column).isin(values)


@dataclass(frozen=True)
class ComplianceChanges:
    """Each change the rules made, as columns: ``account`` (row), then the fields of
    :class:`~rollrisk.strategies.policy.ComplianceChange`; rows of an account in trail order
    (rule order, then the order of the actions)."""

    account: np.ndarray  # int64
    rule_id: list[str]
    action: list[str]
    change: list[str]
    reason: list[str]
    jurisdictions: list[tuple[str, ...]]

    def of_account(self, account: int) -> tuple[ComplianceChange, ...]:
        return tuple(
            ComplianceChange(
                self.rule_id[i],
                self.action[i],
                self.change[i],
                self.reason[i],
                self.jurisdictions[i],
            )
            for i in np.flatnonzero(self.account == account).tolist()
        )


@dataclass
class _Context:
    """What the rules read besides the plans: the accounts' states and histories (rows before
    each decision), and the parameters."""

    states: AccountStates
    history: ContactHistories
    rules: EffectiveCompliance
    _documented: tuple[np.ndarray, list[str | None]] | None = None

    def failed_contact_documented(self, accounts: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """For each of ``accounts`` (rows): whether recent attempts document that the borrower
        cannot be reached, and the evidence."""
        if self._documented is None:
            days = self.rules.failed_contact_lookback_days
            since = self.states.decided_at - np.timedelta64(days, "D")
            recent = self.history.at >= since[self.history.account]
            n = len(self.states.account_id)
            failed = np.bincount(
                self.history.account[recent & self.history.is_in("outcome", FAILED_OUTCOMES)],
                minlength=n,
            )
            reached = np.bincount(
                self.history.account[recent & self.history.is_in("outcome", REACHED_OUTCOMES)],
                minlength=n,
            )
            documented = (failed >= self.rules.min_failed_contacts) & (reached == 0)
            self._documented = (documented, [None] * n)
            self._counts = (failed, reached)
        documented, evidence = self._documented
        failed, reached = self._counts
        days, needed = self.rules.failed_contact_lookback_days, self.rules.min_failed_contacts
        for account in accounts.tolist():
            if evidence[account] is None:
                evidence[account] = (
                    f"{failed[account]} failed and {reached[account]} successful contact "
                    f"attempts in the last {days} days (needs >= {needed} failed and none successful)"
                )
        return documented[accounts], [str(evidence[a]) for a in accounts.tolist()]


@dataclass(frozen=True)
class _Changed:
    """The changes one rule made: plan rows (positions in the plans it was given), texts."""

    rows: np.ndarray
    change: list[str]
    reason: list[str]


def _binding(rules: EffectiveCompliance, *params: str) -> tuple[str, ...]:
    return tuple(sorted({code for p in params for code in rules.binding.get(p, ())}))


Rule = Callable[[PlannedActions, _Context], tuple[np.ndarray, _Changed]]
"""A rule: ``(plans, context) -> (kept, changed)``: ``kept`` is the plans' rows the rule keeps
(a boolean mask) or, for a rule that moves actions, the new ``at`` of every row."""


def _removed(rows: np.ndarray, reasons: list[str] | str) -> _Changed:
    if isinstance(reasons, str):
        reasons = [reasons] * len(rows)
    return _Changed(rows, ["removed"] * len(rows), reasons)


def _hardship_pause(plans: PlannedActions, ctx: _Context) -> tuple[np.ndarray, _Changed]:
    removed = ctx.states.hardship_plan_honoured[plans.account] & plans.flag("is_collection")
    rows = np.flatnonzero(removed)
    return ~removed, _removed(rows, "collection stops while a signed hardship plan is honoured")


def _third_party(plans: PlannedActions, ctx: _Context) -> tuple[np.ndarray, _Changed]:
    others = np.flatnonzero(~plans.recipient.equals("borrower"))
    locate = (plans.recipient.equals("emergency_contact") & plans.flag("contacts_borrower"))[others]
    documented, evidence = ctx.failed_contact_documented(plans.account[others[locate]])
    kept = np.ones(len(plans), dtype=bool)
    kept[others] = False
    kept[others[locate][documented]] = True
    reasons = iter(evidence)
    texts = [
        f"an emergency contact may only be used to locate an unreachable borrower; {next(reasons)}"
        if by_contact
        else "no contact with unrelated third parties about the debt"
        for by_contact in locate.tolist()
    ]
    removed = ~kept[others]
    return kept, _removed(others[removed], [t for t, r in zip(texts, removed, strict=True) if r])


def _first_delinquency_extension(
    plans: PlannedActions, ctx: _Context
) -> tuple[np.ndarray, _Changed]:
    used = ctx.states.had_first_delinquency_extension[plans.account]
    first = ctx.states.first_ever_delinquency[plans.account]
    removed = plans.action.equals("first_delinquency_extension") & (~first | used)
    rows = np.flatnonzero(removed)
    reasons = [
        "the interest-free extension is only for a first-ever delinquency: "
        + (
            "the account already had its one-time extension"
            if already
            else "this is not the account's first-ever delinquency"
        )
        for already in used[rows].tolist()
    ]
    return ~removed, _removed(rows, reasons)


def _legal_referral(plans: PlannedActions, ctx: _Context) -> tuple[np.ndarray, _Changed]:
    rules, states = ctx.rules, ctx.states
    referrals = np.flatnonzero(plans.action.equals("legal_referral"))
    accounts = plans.account[referrals]
    documented, evidence = ctx.failed_contact_documented(accounts)
    dpd = states.dpd[accounts].tolist()
    amount = states.amount_overdue[accounts].tolist()
    kept = np.ones(len(plans), dtype=bool)
    reasons = []
    for j, row in enumerate(referrals.tolist()):
        failures = []
        if dpd[j] < rules.legal_min_dpd:
            failures.append(f"DPD {dpd[j]} is below {rules.legal_min_dpd}")
        if amount[j] < rules.legal_min_amount_overdue:
            failures.append(
                f"amount overdue {amount[j]:g} is below {rules.legal_min_amount_overdue:g}"
            )
        if not documented[j]:
            failures.append(f"failed contact is not documented: {evidence[j]}")
        if failures:
            kept[row] = False
            reasons.append("legal referral not allowed: " + "; ".join(failures))
    return kept, _removed(np.flatnonzero(~kept), reasons)


def _microseconds(moment: time) -> int:
    return (
        (moment.hour * 60 + moment.minute) * 60 + moment.second
    ) * 1_000_000 + moment.microsecond


def _contact_window(plans: PlannedActions, ctx: _Context) -> tuple[np.ndarray, _Changed]:
    start: time = ctx.rules.contact_window_start
    end: time = ctx.rules.contact_window_end
    day = plans.at.astype("datetime64[D]")
    time_of_day = (plans.at - day).astype(np.int64)
    outside = plans.flag("contacts_borrower") & ~(
        (_microseconds(start) <= time_of_day) & (time_of_day < _microseconds(end))
    )
    rows = np.flatnonzero(outside)
    moved_day = day[rows] + (time_of_day[rows] >= _microseconds(start)).astype("timedelta64[D]")
    moved = moved_day.astype("datetime64[us]") + np.timedelta64(_microseconds(start), "us")
    at = plans.at.copy()
    at[rows] = moved
    reason = f"contact only between {start:%H:%M} and {end:%H:%M} local time"
    changes = [f"moved to {m:%Y-%m-%d %H:%M}" for m in moved.astype(datetime).tolist()]
    return at, _Changed(rows, changes, [reason] * len(rows))


def _stable_order(*keys: np.ndarray) -> np.ndarray:
    """``np.lexsort`` of integer ``keys`` given most significant first: the permutation that
    sorts by the first key, then the next, equal rows keeping their order. When the keys'
    ranges multiplied fit in 63 bits they are packed into one int64 and sorted once (one
    stable sort, about 3x faster than lexsort's pass per key); else lexsort."""
    length = len(keys[0]) if keys else 0
    if any(len(key) != length or key.dtype.kind not in "biu" for key in keys):
        raise ValueError("keys must be integer or boolean arrays of one length")
    if length == 0:
        return np.zeros(0, dtype=np.int64)
    lows = [int(k.min()) for k in keys]
    spans = [int(k.max()) - low + 1 for k, low in zip(keys, lows, strict=True)]
    if math.prod(spans) >= 2**63:
        return np.lexsort(keys[::-1])
    packed = np.zeros(length, dtype=np.int64)
    for key, low, span in zip(keys, lows, spans, strict=True):
        packed = packed * span + (key.astype(np.int64) - low)
    return np.argsort(packed, kind="stable")


def _group_starts(keys: np.ndarray) -> np.ndarray:
    """Where a run of equal keys begins (a boolean per element)."""
    starts = np.ones(len(keys), dtype=bool)
    starts[1:] = keys[1:] != keys[:-1]
    return starts


def _counts_at_or_before(
    event_group: np.ndarray, event_at: np.ndarray, group: np.ndarray, at: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each query ``(group[i], at[i])``: how many events of that group lie at or before
    ``at[i]``, and the position of the latest of them (-1 if none; of events at the same time,
    the last given).

    The events alone are sorted, by (group, time) packed into one integer, and each query is
    looked up in them with a binary search: the queries (often many more than the events, e.g.
    a month's planned calls against the unanswered dials before them) are never sorted. When
    the packed key would not fit in 63 bits, events and queries are sorted together
    (:func:`_merged_counts`), the same result."""
    queries = len(group)
    counts = np.zeros(queries, dtype=np.int64)
    last = np.full(queries, -1, dtype=np.int64)
    if not len(event_group) or not queries:
        return counts, last
    groups = (event_group.astype(np.int64), group.astype(np.int64))
    times = tuple(t.astype("datetime64[us]").astype(np.int64) for t in (event_at, at))
    low_group = min(int(g.min()) for g in groups)
    low_time = min(int(t.min()) for t in times)
    group_span = max(int(g.max()) for g in groups) - low_group + 1
    time_span = max(int(t.max()) for t in times) - low_time + 1
    if group_span * time_span >= 2**63:
        return _merged_counts(event_group, event_at, group, at)
    event_key = (groups[0] - low_group) * time_span + (times[0] - low_time)
    order = np.argsort(event_key, kind="stable")  # equal keys in the order given
    sorted_key = event_key[order]
    query_group = (groups[1] - low_group) * time_span
    upto = np.searchsorted(sorted_key, query_group + (times[1] - low_time), side="right")
    counts[:] = upto - np.searchsorted(sorted_key, query_group, side="left")
    found = counts > 0
    last[found] = order[upto[found] - 1]
    return counts, last


def _merged_counts(
    event_group: np.ndarray, event_at: np.ndarray, group: np.ndarray, at: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_counts_at_or_before` by one sort of events and queries together (events before
    queries at the same time): for keys too wide to pack."""
    n_events = len(event_group)
    groups = np.concatenate([event_group, group]).astype(np.int64)
    times = np.concatenate([event_at, at]).astype("datetime64[us]").astype(np.int64)
    is_query = np.concatenate([np.zeros(n_events, bool), np.ones(len(group), bool)])
    order = _stable_order(groups, times, is_query)
    sorted_groups = groups[order]
    is_event = ~is_query[order]
    position = np.arange(len(order))
    starts = _group_starts(sorted_groups)
    group_start = np.maximum.accumulate(np.where(starts, position, 0))
    seen = np.cumsum(is_event)
    count = seen - (seen[group_start] - is_event[group_start])
    latest = np.maximum.accumulate(np.where(is_event, position, -1))
    latest = np.where(latest >= group_start, latest, -1)
    queries = np.flatnonzero(~is_event)
    counts = np.empty(len(group), dtype=np.int64)
    last = np.empty(len(group), dtype=np.int64)
    counts[order[queries] - n_events] = count[queries]
    last[order[queries] - n_events] = np.where(latest[queries] >= 0, order[latest[queries]], -1)
    return counts, last


def _counts_in_windows(
    event_group: np.ndarray,
    event_at: np.ndarray,
    group: np.ndarray,
    since: np.ndarray,
    upto: np.ndarray,
) -> np.ndarray:
    """For each query ``i``: how many events of ``group[i]`` lie after ``since[i]`` and at or
    before ``upto[i]`` (both ends as one query set: the events are sorted once)."""
    n = len(group)
    counts, _ = _counts_at_or_before(
        event_group,
        event_at,
        np.concatenate([group, group]),
        np.concatenate([upto.astype("datetime64[us]"), since.astype("datetime64[us]")]),
    )
    return counts[:n] - counts[n:]


def _call_positions(plans: PlannedActions) -> tuple[np.ndarray, np.ndarray]:
    """The calls of the plans (rows) and, per account with calls, its calls in plan order:
    a matrix ``(accounts with calls, most calls)`` of indices into the calls, -1 beyond."""
    calls = np.flatnonzero(plans.flag("is_call"))
    account = plans.account[calls]
    starts = _group_starts(account)
    first = np.maximum.accumulate(np.where(starts, np.arange(len(calls)), 0))
    rank = np.arange(len(calls)) - first
    which = np.cumsum(starts) - 1
    grid = np.full((int(starts.sum()), int(rank.max()) + 1 if len(calls) else 0), -1, np.int64)
    grid[which, rank] = np.arange(len(calls))
    return calls, grid


def _capped_in_plan_order(
    grid: np.ndarray,
    count: np.ndarray,
    cap: int,
    counts_against: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """Which calls a cap keeps, taking each account's calls in plan order (``grid`` from
    :func:`_call_positions`): a call is kept while its ``count`` (the past ones, given) plus
    the calls kept before it that ``counts_against(earlier, call)`` stays below ``cap``.
    ``count`` gets the kept earlier calls added (a removed call's trail quotes it)."""
    kept = np.ones(len(count), dtype=bool)
    for k in range(grid.shape[1]):
        live = grid[:, k] >= 0
        this = grid[live, k]
        for j in range(k):
            earlier = grid[live, j]
            count[this] += kept[earlier] & counts_against(earlier, this)
        kept[this] = count[this] < cap
    return kept


def _calls_per_7_days(plans: PlannedActions, ctx: _Context) -> tuple[np.ndarray, _Changed]:
    cap = ctx.rules.max_calls_per_7_days
    kept = np.ones(len(plans), dtype=bool)
    if cap is None:
        return kept, _removed(np.array([], dtype=np.int64), [])
    calls, grid = _call_positions(plans)
    at = plans.at[calls]
    since = at - np.timedelta64(7, "D")
    past = ctx.history.take(ctx.history.is_in("channel", CALL_CHANNELS))
    count = _counts_in_windows(past.account, past.at, plans.account[calls], since, at)

    def in_window(other: np.ndarray, this: np.ndarray) -> np.ndarray:
        return (at[other] > since[this]) & (at[other] <= at[this])

    kept_call = _capped_in_plan_order(grid, count, cap, in_window)
    rows = calls[~kept_call]
    reasons = [
        f"it would be call {c + 1} on this debt within 7 days (cap {cap})"
        for c in count[~kept_call].tolist()
    ]
    kept[rows] = False
    return kept, _removed(rows, reasons)


def _call_after_conversation(plans: PlannedActions, ctx: _Context) -> tuple[np.ndarray, _Changed]:
    days = ctx.rules.quiet_days_after_conversation
    kept = np.ones(len(plans), dtype=bool)
    if not days:
        return kept, _removed(np.array([], dtype=np.int64), [])
    calls = np.flatnonzero(plans.flag("is_call"))
    talks = ctx.history.take(
        ctx.history.is_in("channel", CALL_CHANNELS) & ctx.history.is_in("outcome", REACHED_OUTCOMES)
    )
    at = plans.at[calls]
    _, latest = _counts_at_or_before(talks.account, talks.at, plans.account[calls], at)
    talk_at = talks.at[np.maximum(latest, 0)] if len(talks.at) else at
    blocked = (latest >= 0) & (talk_at > at - np.timedelta64(days, "D"))
    rows = calls[blocked]
    reasons = [
        f"a telephone conversation took place on {t:%Y-%m-%d %H:%M}, less than {days} days before"
        for t in talk_at[blocked].astype(datetime).tolist()
    ]
    kept[rows] = False
    return kept, _removed(rows, reasons)


def _unanswered_dials(plans: PlannedActions, ctx: _Context) -> tuple[np.ndarray, _Changed]:
    cap = ctx.rules.max_unanswered_dials_per_day_per_channel
    kept = np.ones(len(plans), dtype=bool)
    if cap is None:
        return kept, _removed(np.array([], dtype=np.int64), [])
    calls, grid = _call_positions(plans)
    unanswered = ctx.history.take(
        ctx.history.is_in("channel", CALL_CHANNELS)
        & ctx.history.is_in("outcome", UNANSWERED_OUTCOMES)
    )
    channel = plans.channel.take(calls)
    (codes, past_codes), width = common_codes(channel, unanswered.channel)
    width = max(width, 1)
    day = plans.at[calls].astype("datetime64[D]")
    group = plans.account[calls] * width + codes
    past_group = unanswered.account * width + past_codes
    one = np.timedelta64(1, "us")
    # the past dials on the call's day: at or before its last microsecond, not before it
    count = _counts_in_windows(
        past_group,
        unanswered.at,
        group,
        day.astype("datetime64[us]") - one,
        (day + 1).astype("datetime64[us]") - one,
    )

    def same_day_and_channel(other: np.ndarray, this: np.ndarray) -> np.ndarray:
        return (group[other] == group[this]) & (day[other] == day[this])

    kept_call = _capped_in_plan_order(grid, count, cap, same_day_and_channel)
    rows = calls[~kept_call]
    reasons = [
        f"{c} dials via {ch} on {d} may already go unanswered (cap {cap} per day per contact method)"
        for c, ch, d in zip(
            count[~kept_call].tolist(),
            channel.take(~kept_call).tolist(),
            day[~kept_call].astype(object).tolist(),
            strict=True,
        )
    ]
    kept[rows] = False
    return kept, _removed(rows, reasons)


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

# the parameters whose binding jurisdictions a rule's trail entries name (none: a rule of
# every jurisdiction alike)
RULE_PARAMETERS: Mapping[str, tuple[str, ...]] = {
    "CMP-HARDSHIP-PAUSE": (),
    "CMP-THIRD-PARTY": ("min_failed_contacts", "failed_contact_lookback_days"),
    "CMP-FIRST-DELINQUENCY-EXTENSION": (),
    "CMP-LEGAL-REFERRAL": ("legal_min_dpd", "legal_min_amount_overdue", "min_failed_contacts"),
    "CMP-CONTACT-WINDOW": ("contact_window_start", "contact_window_end"),
    "CMP-CALLS-PER-7-DAYS": ("max_calls_per_7_days",),
    "CMP-CALL-AFTER-CONVERSATION": ("quiet_days_after_conversation",),
    "CMP-UNANSWERED-DIALS": ("max_unanswered_dials_per_day_per_channel",),
}


def _time_order(plans: PlannedActions) -> np.ndarray:
    """The permutation putting each account's rows in time order (stable: equal times keep
    their order)."""
    at = plans.at.astype("datetime64[us]").view(np.int64)
    account = plans.account
    # most plans come in that order already (a ladder's steps, the simulator's month): an
    # O(n) check instead of a sort (it gives the same permutation, the identity)
    later = account[1:] > account[:-1]
    if (later | ((account[1:] == account[:-1]) & (at[1:] >= at[:-1]))).all():
        return np.arange(len(account))
    return _stable_order(account, at)


def enforce_all(
    plans: PlannedActions,
    states: AccountStates,
    history: ContactHistories,
    jurisdictions: EffectiveCompliance,
) -> tuple[PlannedActions, ComplianceChanges]:
    """Apply every compliance rule to the policy's plans of many accounts at once.

    Args:
        plans: the planned actions, ``plans.account`` indexing ``states``' rows.
        states: each account's DPD, amount overdue, hardship and delinquency facts, and its
            decision time.
        history: past contact attempts of the same accounts (``history.account`` indexes
            ``states``); rows at or after an account's decision time are ignored.
        jurisdictions: the strictest parameters of the accounts' jurisdictions
            (:meth:`ComplianceConfig.strictest`).

    Returns:
        The actions that obey every rule (each account's in time order) and the changes, one
        per action a rule removed or moved (:class:`ComplianceChanges`, trail order).
    """
    enforced, _, changes = enforce_rows(plans, states, history, jurisdictions)
    return enforced, changes


def enforce_rows(
    plans: PlannedActions,
    states: AccountStates,
    history: ContactHistories,
    jurisdictions: EffectiveCompliance,
) -> tuple[PlannedActions, np.ndarray, ComplianceChanges]:
    """:func:`enforce_all`, also saying where each action that obeys the rules came from: its
    position in ``plans`` (for a caller that keeps more about each planned row than
    :class:`~rollrisk.strategies.policy.PlannedActions` holds, e.g. the policy simulation's
    drawn outcomes)."""
    history = history.take(history.at < states.decided_at[history.account])
    ctx = _Context(states, history, jurisdictions)
    origin = _time_order(plans)
    plans = plans.take(origin)
    # (rule, accounts, rows in the plans the rule saw, action texts, changes, reasons)
    found: list[tuple[int, np.ndarray, np.ndarray, list[str], list[str], list[str]]] = []
    for order, (_, rule) in enumerate(RULES):
        kept, changed = rule(plans, ctx)
        described = plans.describe(changed.rows)
        found.append(
            (order, plans.account[changed.rows], changed.rows, described,
             changed.change, changed.reason)
        )  # fmt: skip
        # a rule that moves actions gives new times: each account in time order again
        if kept.dtype == bool:
            plans, origin = plans.take(kept), origin[kept]
        elif (kept != plans.at).any():
            moved = plans.with_at(kept)
            by_time = _time_order(moved)
            plans, origin = moved.take(by_time), origin[by_time]
    account = np.concatenate([f[1] for f in found]).astype(np.int64)
    rule_order = np.concatenate([np.full(len(f[1]), f[0]) for f in found])
    action_order = np.concatenate([f[2] for f in found])
    trail = np.lexsort((action_order, rule_order, account))
    ids = [rule_id for rule_id, _ in RULES]
    binding = [_binding(jurisdictions, *RULE_PARAMETERS[r]) for r in ids]
    flat = [
        (ids[f[0]], binding[f[0]], text, change, reason)
        for f in found
        for text, change, reason in zip(f[3], f[4], f[5], strict=True)
    ]
    ordered = [flat[i] for i in trail.tolist()]
    return (
        plans,
        origin,
        ComplianceChanges(
            account[trail],
            [o[0] for o in ordered],
            [o[2] for o in ordered],
            [o[3] for o in ordered],
            [o[4] for o in ordered],
            [o[1] for o in ordered],
        ),
    )


def enforce(
    decision: Decision,
    account_state: AccountState,
    contact_history: pd.DataFrame | ContactHistory | None,
    jurisdictions: EffectiveCompliance,
) -> Decision:
    """Apply every compliance rule to a policy decision (:func:`enforce_all` for one account).

    Args:
        decision: what the policy chose (:func:`rollrisk.strategies.policy.decide`).
        account_state: the account's DPD, amount overdue and hardship / delinquency facts.
        contact_history: past collection actions (``collection_actions`` contract columns
            ``action_at``, ``channel``, ``outcome``; optional ``account_id`` filters to this
            account, optional ``recipient`` keeps the borrower's rows). Rows at or after the
            decision time are ignored. A :class:`ContactHistory` of this account's borrower
            contacts may be passed instead.
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
    history = _history_of(decision.account_id, contact_history, decision.decided_at)
    plans, changes = enforce_all(
        PlannedActions.of(decision.actions),
        AccountStates.of(account_state, decision.decided_at),
        ContactHistories.of(history),
        jurisdictions,
    )
    return decision.with_changes(plans.rows_of(0), changes.of_account(0))
