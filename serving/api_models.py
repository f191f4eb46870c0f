"""Request and response models of the scoring API: the data contract's rows, as JSON.

A request carries, for each account, its recent history in the shape of the data contract
(``docs/data-contract.md``); the service turns it into the same tables a portfolio folder
holds and scores them with the batch code (:func:`rollrisk.scoring.core.score_accounts`), so
both return the same thing. The models refuse every row the loader's row validation would set
aside (``tests/unit/test_api_contract.py`` proves it), which is what spares a request pandera.

The value rules are the contract's own, read from :mod:`rollrisk.features.schemas` (one rule
set for the batch and the service): every number finite and never a boolean, amounts within
their bounds (``balance`` may be negative: a credit balance), ids at most ``MAX_ID_LENGTH``
characters. On top of them the models add what a JSON boundary needs: timestamps must be naive
(the contract's reporting time zone) and dates before 2200, so that no request can reach the
scoring code with a value it cannot represent; none before the contract's earliest date
(:data:`rollrisk.features.dates.EARLIEST`, 1950-01-01), as in the batch.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NaiveDatetime,
    model_validator,
)

from rollrisk.features.dates import EARLIEST, ISO_DATE_PATTERN, ISO_NAIVE_TIMESTAMP_PATTERN
from rollrisk.features.schemas import (
    AMOUNT_RULE,
    BALANCE_RULE,
    CHANNELS,
    CREDIT_LIMIT_RULE,
    DPD_RULE,
    ID_PATTERN,
    ID_WORDS,
    INVISIBLE,
    INVISIBLE_SHOWN,
    MAX_ID_LENGTH,
    OUTCOMES,
    PRODUCTS,
    PROMISE_RULE,
    TABLES_BY_NAME,
    TREATMENT_KINDS,
)
from rollrisk.features.validation import COPY_DAYS

# The contract's enumerations, declared once in features/schemas.py (Literal[tuple] spreads it).
Product = Literal[PRODUCTS]  # type: ignore[valid-type]
Channel = Literal[CHANNELS]  # type: ignore[valid-type]
Outcome = Literal[OUTCOMES]  # type: ignore[valid-type]
TreatmentKind = Literal[TREATMENT_KINDS]  # type: ignore[valid-type]

MAX_ACCOUNTS_PER_REQUEST = 1_000
MAX_ROWS_PER_ACCOUNT = 2_000
LATEST = date(2199, 12, 31)


_UTC_OFFSET = re.compile(r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)$")


def _json_kind(value: object) -> str:
    """What a JSON value is, in words: a message names the kind, never the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"text of another form ({len(str(value))} characters)"


def _written_as(pattern: str, words: str, naive: bool):
    """A date or timestamp as the contract writes it: text in the contract's form (or a
    ``date``/``datetime`` from a Python caller). Pydantic would also read a number as seconds
    since 1970, which the batch refuses; one rule set means the service refuses it too.

    The message describes what was sent, never quotes it: text that is not a date may be
    anything a client's form put in the field (a note, a phone number)."""
    compiled = re.compile(pattern)

    def check(value: object) -> object:
        if isinstance(value, date):
            return value
        if isinstance(value, str) and _UTC_OFFSET.search(value):
            raise ValueError(
                "expected a naive timestamp in the lender's reporting time zone, got one with "
                "a time-zone offset"
                if naive
                else f"expected {words}, got a timestamp with a time-zone offset"
            )
        if not isinstance(value, str) or not compiled.match(value.replace("T", " ", 1)):
            raise ValueError(f"expected {words}, got {_json_kind(value)}")
        return value

    return BeforeValidator(check)


def _within_dates(value: date) -> date:
    day = value.date() if isinstance(value, datetime) else value
    if not EARLIEST <= day <= LATEST:
        raise ValueError(f"expected a day from {EARLIEST} to {LATEST}, got {day}")
    return value


Day = Annotated[
    date,
    _written_as(ISO_DATE_PATTERN, "a date written YYYY-MM-DD", naive=False),
    AfterValidator(_within_dates),
]
Timestamp = Annotated[
    NaiveDatetime,
    _written_as(
        ISO_NAIVE_TIMESTAMP_PATTERN,
        "a timestamp written YYYY-MM-DD[ HH:MM:SS[.ffffff]]",
        naive=True,
    ),
    AfterValidator(_within_dates),
    Field(description="naive ISO timestamp in the lender's reporting time zone, no offset"),
]


def _a_json_number(value: object) -> object:
    """A contract number is a JSON number: never a boolean (pydantic would read ``true`` as
    1.0) and never text (pydantic would read ``"51"``, ``" 12 "`` or ``"1e3"`` as numbers: a
    client that sends amounts as text has a serialisation bug the service should not hide)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got a boolean ({str(value).lower()})")
    if isinstance(value, str):
        raise ValueError("expected a number, got text (a JSON string)")
    return value


_SHOWN = str.maketrans(dict(zip(INVISIBLE, INVISIBLE_SHOWN, strict=True)))


def _an_identifier(value: str) -> str:
    if not re.fullmatch(ID_PATTERN, value):
        # the message names the characters, never the id (the service echoes no values)
        found = sorted({c.translate(_SHOWN) for c in value if c in INVISIBLE}) or [
            "white space at an end"
        ]
        raise ValueError(f"expected {ID_WORDS}, got {', '.join(found)}")
    return value


JsonNumber = BeforeValidator(_a_json_number)
Amount = Annotated[float, JsonNumber, Field(**AMOUNT_RULE.bounds)]
Balance = Annotated[
    float,
    JsonNumber,
    Field(**BALANCE_RULE.bounds, description="negative: a credit balance (the lender owes)"),
]
CreditLimit = Annotated[float, JsonNumber, Field(**CREDIT_LIMIT_RULE.bounds)]
DaysPastDue = Annotated[int, JsonNumber, Field(**DPD_RULE.bounds)]
Identifier = Annotated[
    str, Field(min_length=1, max_length=MAX_ID_LENGTH), AfterValidator(_an_identifier)
]


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Statement(_Row):
    cycle_end: Day
    known_at: Timestamp
    amount_due: Amount
    min_due: Amount
    amount_paid: Amount
    balance: Balance
    dpd: DaysPastDue

    @model_validator(mode="after")
    def _consistent(self) -> Statement:
        if self.min_due > self.amount_due + 1e-6:
            raise ValueError("min_due must not exceed amount_due")
        if self.known_at < datetime.combine(self.cycle_end, datetime.min.time()):
            raise ValueError("known_at must not be before cycle_end")
        return self


class CollectionAction(_Row):
    action_at: Timestamp
    channel: Channel
    outcome: Outcome
    promised_amount: Amount | None = None
    promised_date: Day | None = None

    @model_validator(mode="after")
    def _promise_complete(self) -> CollectionAction:
        if self.outcome == "promise_to_pay" and (
            self.promised_amount is None or self.promised_date is None
        ):
            raise ValueError(PROMISE_RULE)
        return self


class Treatment(_Row):
    kind: TreatmentKind
    start_at: Timestamp
    end_at: Timestamp | None = None
    known_at: Timestamp

    @model_validator(mode="after")
    def _ordered(self) -> Treatment:
        if self.end_at is not None and self.end_at < self.start_at:
            raise ValueError("end_at must not be before start_at")
        return self


class AccountHistory(_Row):
    account_id: Identifier
    borrower_id: Identifier
    product: Product
    opened_at: Day
    credit_limit: CreditLimit
    currency: str = Field(pattern=r"^[A-Z]{3}$", examples=["CNY"])
    statements: list[Statement] = Field(min_length=1, max_length=MAX_ROWS_PER_ACCOUNT)
    collection_actions: list[CollectionAction] | None = Field(
        default=None,
        max_length=MAX_ROWS_PER_ACCOUNT,
        description="omit (null) when the lender keeps no action log; [] when there were none",
    )
    treatments: list[Treatment] | None = Field(default=None, max_length=MAX_ROWS_PER_ACCOUNT)

    @model_validator(mode="after")
    def _unique_cycles(self) -> AccountHistory:
        cycles = [s.cycle_end for s in self.statements]
        if len(cycles) != len(set(cycles)):
            raise ValueError("statements: two statements share a cycle_end")
        return self

    @model_validator(mode="after")
    def _no_month_skipped(self) -> AccountHistory:
        """The batch's rule (``TableContract.history``): one statement a month from the first
        to the last; a month missing is a wrong history, not a shorter one."""
        months = sorted({s.cycle_end.year * 12 + s.cycle_end.month for s in self.statements})
        for before, after in zip(months, months[1:], strict=False):
            if after - before > 1:
                year, month = divmod(before, 12)  # before + 1 month, as (year, month)
                raise ValueError(
                    f"statements: no statement in {year:04d}-{month + 1:02d}: one a month is "
                    "expected from the first cycle_end to the last (a month missing is a wrong "
                    "history, not a shorter one)"
                )
        return self

    @model_validator(mode="after")
    def _no_statement_twice(self) -> AccountHistory:
        """The batch's rule (``features.validation.COPY_DAYS``): the same figures under two
        cycle_end dates less than 28 days apart are one statement sent twice, which every
        feature counting months would count twice; a statement with nothing due, paid or past
        due (a dormant account) is never one. Looked for, as the batch does, only in an account
        holding two statements in some calendar month."""
        months = [(s.cycle_end.year, s.cycle_end.month) for s in self.statements]
        if len(months) == len(set(months)):
            return self
        last: dict[tuple, date] = {}
        for statement in sorted(self.statements, key=lambda s: s.cycle_end):
            figures = statement.model_dump(exclude={"cycle_end", "known_at"})
            if figures["amount_due"] == 0 and figures["amount_paid"] == 0 and figures["dpd"] == 0:
                continue
            key = tuple(sorted(figures.items()))
            day = statement.cycle_end
            if key in last and (day - last[key]).days < COPY_DAYS:
                raise ValueError(
                    f"statements: the same figures under two cycle_end dates less than "
                    f"{COPY_DAYS} days apart ({last[key]} and {day}): one statement sent again "
                    "with a shifted date would be counted twice"
                )
            last[key] = day
        return self

    @model_validator(mode="after")
    def _nothing_before_opening(self) -> AccountHistory:
        """The batch's rule (``TableContract.dated_by``): no row is dated before its account
        opened; the same declaration names the column compared in each table."""
        for table, rows in (
            ("statements", self.statements),
            ("collection_actions", self.collection_actions or ()),
            ("treatments", self.treatments or ()),
        ):
            column = TABLES_BY_NAME[table].dated_by
            for row in rows:
                value = getattr(row, column)
                day = value.date() if isinstance(value, datetime) else value
                if day < self.opened_at:
                    raise ValueError(
                        f"{table}: {column} {value} is before the account's opened_at "
                        f"{self.opened_at}"
                    )
        return self


class ScoreRequest(_Row):
    as_of: Day = Field(
        description="observation date, any calendar day; only history known by its end is "
        "used and each account's DPD is aged to it from its latest statement (docs/scoring.md)"
    )
    accounts: list[AccountHistory] = Field(min_length=1, max_length=MAX_ACCOUNTS_PER_REQUEST)

    @model_validator(mode="after")
    def _unique_accounts(self) -> ScoreRequest:
        ids = [a.account_id for a in self.accounts]
        if len(ids) != len(set(ids)):
            raise ValueError("accounts: an account_id appears twice")
        return self


# ---- responses ---------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ReasonCode(_Out):
    rank: int = Field(description="1 = the feature that raised the risk most")
    code: str
    feature: str
    family: str
    value: str = Field(description="the account's value of the feature, as text")
    contribution: float = Field(description="log-odds added by the feature (always > 0)")
    text_en: str
    text_zh: str


class PlannedAction(_Out):
    action: str
    at: str = Field(description="local time YYYY-MM-DDTHH:MM")
    channel: str | None
    recipient: str


class ComplianceChange(_Out):
    rule: str
    action: str = Field(description="the action as the policy planned it")
    change: str = Field(description='"removed" or "moved to ..."')
    reason: str
    jurisdictions: list[str]


class ScoredAccount(_Out):
    """One row of the batch output (``SCORED_SCHEMA``), with its JSON columns parsed, and the
    account's warnings (the batch's are the run's, in its manifest)."""

    account_id: str
    as_of: date
    product: str
    start_bucket: str = Field(description="M1 (1-29 DPD), M2 (30-59) or M3 (60-89)")
    dpd: int
    probability: float = Field(description="calibrated probability of rolling to default")
    risk_band: str
    exposure: float = Field(description="balance at the as-of")
    amount_overdue: float
    expected_loss: float = Field(description="exposure x probability")
    segment: str
    segment_rule: str
    treatment: str
    policy_rule: str
    actions: list[PlannedAction]
    trail: list[ComplianceChange] = Field(
        description="every compliance rule that changed the policy's (or the arm's) plan"
    )
    experiment_id: str | None = Field(
        description="the champion/challenger experiment the account is in at the as-of "
        "(null: none; docs/strategies.md, Experiments)"
    )
    arm: str | None = Field(
        description='its arm; "policy": eligible but not randomised (the policy\'s decision)'
    )
    propensity: float | None = Field(
        description="the probability that the logging policy (policy and experiment mixture) "
        "gives the treatment the account got, in (0, 1]; null outside every experiment"
    )
    reasons: list[ReasonCode] = Field(description="at most 4 principal reasons")
    family_delinquency_history: float
    family_payment_capacity: float
    family_willingness: float
    family_contactability: float
    family_treatment_history: float
    family_exposure: float
    family_product_seasonality: float
    model_name: str
    model_version: str
    warnings: list[str] = Field(
        default_factory=list,
        description="what makes this score less reliable than the model's figures: a history "
        "cut short (statements sent start after the account opened, too late for the feature "
        "windows); an optional table the model learnt from left out of the request "
        "(allowed by `--allow-missing-table`); [] when none",
    )


class NotScored(_Out):
    account_id: str
    reason: str
    dpd_at_as_of: int | None = Field(
        description="DPD at the as-of: that of the latest statement known then, aged to the "
        "as-of day when in arrears (null: no statement recent enough)"
    )


class ModelRef(_Out):
    name: str
    version: str


class ScoreResponse(_Out):
    as_of: date
    model: ModelRef
    scored: list[ScoredAccount] = Field(description="accounts in the population, by account_id")
    not_scored: list[NotScored] = Field(
        description="requested accounts outside the population at the as-of, with the reason"
    )


class FeatureInfo(_Out):
    name: str
    family: str
    kind: str
    direction: int


class ObservationInfo(_Out):
    min_dpd: int
    max_dpd: int
    default_dpd: int
    window_months: int


class ExperimentInfo(_Out):
    id: str
    start: date
    end: date = Field(description="included")
    share: float = Field(description="share of the eligible accounts randomised")
    arms: list[str]


class ModelInfo(_Out):
    uri: str
    name: str
    version: str
    feature_set: str
    feature_set_version: str
    features: list[FeatureInfo]
    observation: ObservationInfo
    jurisdictions: list[str]
    experiments_file: str = Field(description="the experiment file's name")
    experiments: list[ExperimentInfo] = Field(
        description="the file's experiments (each runs on the as-of dates from start to end)"
    )
    trained_tables: list[str] = Field(description="the portfolio tables the model learnt from")
    allowed_missing_tables: list[str] = Field(
        description="optional tables the model learnt from that a request may leave out "
        "(`--allow-missing-table`); each account scored without one carries a warning"
    )


class Health(_Out):
    status: Literal["ok"]


class Readiness(_Out):
    ready: bool
    detail: str
