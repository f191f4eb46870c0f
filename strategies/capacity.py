"""Contact capacity: the agent calls a day and field visits a month the collection team can make.

A strategy may plan any number of calls and visits; a team of agents and field collectors can
make only so many. ``conf/capacity.yaml`` says how many, for the accounts a run decides for
(``rollrisk score``: the scored accounts) or rolls forward (``rollrisk simulate-policy``: the
same scored accounts). Each number is either given (a lender knows its team) or ``auto``:

    auto = (1 + auto_margin) x (the busiest calendar month's agent calls (field visits) per
           account at 1-179 DPD in the portfolio's own collection log, over the
           auto_lookback_months up to the as-of) x (the accounts the run covers)

that is, the team as the lender staffs it today for its own tiered policy, scaled to the
accounts at hand, plus a margin: sized from the data's action log, never from the simulator's
response tables or truth. Calls per month = ``agent_calls_per_day x working_days_per_month``.

``score`` reports the plan's agent calls and visits (one month of every ladder) against the
capacity and warns when the plan exceeds it (:func:`planned_load`); it does not re-plan (no
optimiser here: ``learn-policy --max-contact-share`` is the one that chooses under a capacity).
``simulate-policy`` enforces it in every arm, every month (docs/strategies.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from rollrisk.strategies.yaml_config import (
    ConfigError,
    parse_yaml_with_lines,
    read_yaml_text,
    require_keys,
)

AUTO = "auto"
DELINQUENT_DPD = (1, 180)  # [low, high): delinquent and not charged off (no actions after)


@dataclass(frozen=True)
class CapacitySettings:
    """The parsed ``conf/capacity.yaml``; a number is None where the file says ``auto``."""

    source: str
    agent_calls_per_day: int | None
    field_visits_per_month: int | None
    working_days_per_month: int
    auto_margin: float
    auto_lookback_months: int

    @property
    def needs_log(self) -> bool:
        """Whether a number is ``auto`` (sized from the collection log)."""
        return self.agent_calls_per_day is None or self.field_visits_per_month is None


@dataclass(frozen=True)
class ObservedVolume:
    """The lender's busiest month in its collection log: agent calls and field visits per
    delinquent account (1-179 DPD), each in its own busiest calendar month."""

    calls_per_account: float
    calls_month: str  # YYYY-MM, "" when the log has none
    visits_per_account: float
    visits_month: str
    months: int  # calendar months looked at


@dataclass(frozen=True)
class ContactCapacity:
    """The capacity a run works within, and how it was sized (printed and written)."""

    agent_calls_per_day: int
    field_visits_per_month: int
    working_days_per_month: int
    accounts: int  # the accounts it serves
    sizing: str

    @property
    def agent_calls_per_month(self) -> int:
        return self.agent_calls_per_day * self.working_days_per_month

    def as_dict(self) -> dict[str, object]:
        return {
            "agent_calls_per_day": self.agent_calls_per_day,
            "agent_calls_per_month": self.agent_calls_per_month,
            "field_visits_per_month": self.field_visits_per_month,
            "working_days_per_month": self.working_days_per_month,
            "accounts": self.accounts,
            "sizing": self.sizing,
        }


def load_capacity(path: Path) -> CapacitySettings:
    """Read and parse a capacity file (see :func:`parse_capacity`)."""
    return parse_capacity(read_yaml_text(path, "capacity file"), str(path))


def parse_capacity(text: str, source: str) -> CapacitySettings:
    """Parse ``conf/capacity.yaml``; errors are :class:`ConfigError` with the file and line."""
    doc = parse_yaml_with_lines(text, source)
    keys = (
        "agent_calls_per_day",
        "field_visits_per_month",
        "working_days_per_month",
        "auto_margin",
        "auto_lookback_months",
    )
    require_keys(doc, source, "the capacity file", keys, ("version",))

    def whole(key: str, allow_auto: bool, low: int) -> int | None:
        value = doc[key]
        if allow_auto and value == AUTO:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            expected = f"a whole number >= {low}" + (f" or {AUTO!r}" if allow_auto else "")
            raise ConfigError(source, doc.line_of(key), f"{key} must be {expected}, got {value!r}")
        return int(value)

    # a share added on top of the log's busiest month (docs: `1 + auto_margin`, 1.10): an
    # `auto_margin: 10` meant as 10 % multiplied the capacity by 11 and hid every over-capacity
    # WARNING, so more than 1 (doubling the observed volume) is refused
    margin = doc["auto_margin"]
    number = isinstance(margin, int | float) and not isinstance(margin, bool)
    if not number or not 0 <= margin <= 1:
        percent = ""
        if number and 1 < margin <= 100:  # a percentage written as one: 10 for 10 %
            percent = (
                f"; {margin!r} would multiply the capacity by {1 + margin:g}: write "
                f"{margin / 100:g} for {margin:g} %"
            )
        raise ConfigError(
            source,
            doc.line_of("auto_margin"),
            "auto_margin must be a share in [0, 1] added to the busiest month's volume (0.10 "
            f"for 10 %), got {margin!r}{percent}",
        )
    return CapacitySettings(
        source,
        whole("agent_calls_per_day", True, 0),
        whole("field_visits_per_month", True, 0),
        int(whole("working_days_per_month", False, 1) or 1),
        float(margin),
        int(whole("auto_lookback_months", False, 1) or 1),
    )


def observed_volume(
    statements: pl.DataFrame, actions: pl.DataFrame | None, as_of: date, months: int
) -> ObservedVolume:
    """The lender's busiest month of agent calls and of field visits per delinquent account.

    Needs ``statements``' ``account_id, cycle_end, dpd`` and ``actions``' ``account_id,
    action_at, channel``. For each of the ``months`` calendar months up to the as-of's (actions
    after the as-of are not counted): the rows of the channel in the month over the accounts
    with a cycle end at 1-179 DPD in the month; the largest of those shares.
    """
    last = pl.date(as_of.year, as_of.month, 1)
    window = pl.col("_month").is_between(last.dt.offset_by(f"-{months - 1}mo"), last)
    low, high = DELINQUENT_DPD
    delinquent = (
        statements.lazy()
        .filter((pl.col("dpd") >= low) & (pl.col("dpd") < high))
        .with_columns(pl.col("cycle_end").cast(pl.Date).dt.truncate("1mo").alias("_month"))
        .filter(window)
        .group_by("_month")
        .agg(pl.col("account_id").n_unique().alias("_accounts"))
        .collect()
    )

    def busiest(channel: str) -> tuple[float, str]:
        if actions is None or delinquent.is_empty():
            return 0.0, ""
        rows = (
            actions.lazy()
            .filter(
                (pl.col("channel") == channel)
                & (pl.col("action_at").cast(pl.Date) <= pl.lit(as_of))
            )
            .with_columns(pl.col("action_at").cast(pl.Date).dt.truncate("1mo").alias("_month"))
            .filter(window)
            .group_by("_month")
            .agg(pl.len().alias("_rows"))
            .collect()
        )
        per = (
            delinquent.join(rows, on="_month", how="left")
            .with_columns((pl.col("_rows").fill_null(0) / pl.col("_accounts")).alias("_share"))
            .sort("_share", "_month", descending=[True, False])
        )
        return float(per["_share"][0]), per["_month"][0].strftime("%Y-%m")

    calls, calls_month = busiest("agent_call")
    visits, visits_month = busiest("field_visit")
    return ObservedVolume(calls, calls_month, visits, visits_month, months)


def size_capacity(
    settings: CapacitySettings, accounts: int, observed: ObservedVolume | None
) -> ContactCapacity:
    """The capacity for ``accounts`` accounts: the file's numbers, ``auto`` ones from
    ``observed`` (needed then; see the module docstring)."""
    parts = []
    calls, visits = settings.agent_calls_per_day, settings.field_visits_per_month
    if settings.needs_log and observed is None:
        raise ValueError(f"{settings.source}: an `auto` capacity needs the collection log")
    scale = (1 + settings.auto_margin) * accounts
    if calls is None:
        assert observed is not None
        monthly = observed.calls_per_account * scale
        calls = math.ceil(monthly / settings.working_days_per_month)
        parts.append(
            f"agent calls auto: {observed.calls_per_account:.3f} per delinquent account in the "
            f"busiest month of the log ({observed.calls_month or 'none'}, last "
            f"{observed.months} months) x {accounts:,} accounts x {1 + settings.auto_margin:.2f}"
            f" / {settings.working_days_per_month} working days"
        )
    else:
        parts.append(f"agent calls from {settings.source}")
    if visits is None:
        assert observed is not None
        visits = math.ceil(observed.visits_per_account * scale)
        parts.append(
            f"field visits auto: {observed.visits_per_account:.3f} per delinquent account in "
            f"the busiest month ({observed.visits_month or 'none'}) x {accounts:,} accounts x "
            f"{1 + settings.auto_margin:.2f}"
        )
    else:
        parts.append(f"field visits from {settings.source}")
    return ContactCapacity(
        int(calls), int(visits), settings.working_days_per_month, accounts, "; ".join(parts)
    )


def capacity_for_book(
    settings: CapacitySettings,
    statements: pl.DataFrame | None,
    actions: pl.DataFrame | None,
    as_of: date,
    accounts: int,
) -> ContactCapacity:
    """The capacity ``settings`` give ``accounts`` accounts of a book at ``as_of``: its
    ``auto`` numbers sized from the book's ``statements`` and collection log ``actions``
    (:func:`observed_volume`; needed only then)."""
    observed = None
    if settings.needs_log:
        if statements is None:
            raise ValueError(f"{settings.source}: an `auto` capacity needs the statements")
        observed = observed_volume(statements, actions, as_of, settings.auto_lookback_months)
    return size_capacity(settings, accounts, observed)


@dataclass(frozen=True)
class PlannedLoad:
    """One month of the decisions' ladders: the agent calls and field visits they plan."""

    agent_calls: int
    field_visits: int
    accounts: int


def planned_load(actions_json: Sequence[str]) -> PlannedLoad:
    """Count the planned agent calls (any step via ``agent_call``) and field visits (a
    ``field_visit_with_notice`` step) in the scored ``actions`` JSON column (after
    compliance)."""
    calls = visits = 0
    for text in actions_json:
        for step in json.loads(text):
            if step.get("channel") == "agent_call":
                calls += 1
            elif step["action"] == "field_visit_with_notice":
                visits += 1
    return PlannedLoad(calls, visits, len(actions_json))


def load_lines(load: PlannedLoad, capacity: ContactCapacity) -> list[str]:
    """The plan against the capacity, one line each; a line starting ``WARNING`` when the plan
    exceeds it (the plan is not changed: no optimiser here)."""
    lines = []
    for what, planned, available in (
        ("agent calls a month", load.agent_calls, capacity.agent_calls_per_month),
        ("field visits a month", load.field_visits, capacity.field_visits_per_month),
    ):
        text = (
            f"{what}: the plan for {load.accounts:,} accounts makes {planned:,}, capacity "
            f"{available:,}"
        )
        if planned > available:
            text = (
                f"WARNING: {text}: the plan EXCEEDS the capacity by {planned - available:,} "
                f"({planned / max(available, 1):.1f}x); the team cannot make them all (the "
                "policy simulation drops the excess, highest balance served first)"
            )
        lines.append(text)
    return lines
