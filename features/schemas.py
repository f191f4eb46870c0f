"""The borrower-history data contract: one pandera schema per input table.

A portfolio is a folder holding these tables (see ``docs/data-contract.md``). ``accounts`` and
``statements`` are required; ``collection_actions`` and ``treatments`` are optional, because a
lender without action logs still gets scores. Those four are the model's inputs (:data:`TABLES`).
``experiment_assignments`` (:data:`RECORD_TABLES`) is an optional record of past experiments: it
is checked like the others but never feeds a feature.

The schemas are the single statement of what a valid row is. Row-level checks (types, ranges,
allowed values, nullability) are evaluated by pandera; the checks that need more than one row or
more than one table (duplicate keys, unknown accounts) are declared in :data:`TABLES` and applied
by :mod:`rollrisk.features.validation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandera.polars as pa
import polars as pl

PRODUCTS: tuple[str, ...] = ("bnpl", "credit_card", "cash_loan", "merchant_loan", "agri_loan")
CHANNELS: tuple[str, ...] = (
    "sms",
    "app_push",
    "robo_call",
    "agent_call",
    "agency_assignment",
    "field_visit",
    "notice_letter",
    "legal",
)
OUTCOMES: tuple[str, ...] = (
    "delivered",
    "no_answer",
    "contacted",
    "promise_to_pay",
    "refused",
    "dispute",
    "hardship_claimed",
    "wrong_number",
    "unreachable",
)
# What a channel is and what an outcome says, for every reader of the action log (features,
# compliance rules, simulator): declared once here, beside the columns they describe.
CALL_CHANNELS: tuple[str, ...] = ("robo_call", "agent_call")
"""Phone calls: what the call caps count."""
MESSAGE_CHANNELS: tuple[str, ...] = ("sms", "app_push", "notice_letter")
"""Written messages: delivered or not, never a conversation."""
REACHED_OUTCOMES: tuple[str, ...] = (
    "contacted",
    "promise_to_pay",
    "refused",
    "dispute",
    "hardship_claimed",
)
"""Outcomes of an attempt that reached the borrower (a conversation, for a call)."""
FAILED_OUTCOMES: tuple[str, ...] = ("no_answer", "wrong_number", "unreachable")
"""Outcomes of an attempt that did not reach the borrower: they document failed contact."""
UNANSWERED_OUTCOMES: tuple[str, ...] = ("no_answer", "unreachable")
"""Failed attempts nobody answered (a wrong number was answered, by someone else)."""
TREATMENT_KINDS: tuple[str, ...] = (
    "grace_period",
    "interest_waiver",
    "restructure",
    "first_delinquency_extension",
)

# Timestamps are naive and read as the lender's reporting time zone (one per portfolio).
TIMESTAMP = pl.Datetime("us")

# ---- value rules shared by the batch and the service ----------------------------------------
# One rule set for every reader of a row: the pandera schemas below and the API's request
# models (serving/api_models.py) are both built from these names, and
# tests/unit/test_api_contract.py proves the two agree. On top of the bounds, every number of
# the contract is finite (NaN, +inf and -inf are not amounts) and never a boolean (True is not
# 1.0 currency units): the row validation's type stage rejects those, the API refuses them.

MAX_AMOUNT = 1e15
"""Largest magnitude of an amount, in currency units: beyond it a value is a units or parsing
error (cents read as units, an overflowed export), and float64 sums of it lose the cents."""
MAX_DPD = 3650
"""Ten years past due: a larger DPD is a data error, not a borrower."""
MAX_ID_LENGTH = 64
"""Longest account or borrower id: real ids are short; a longer one is a broken export (a
whole line read as one field), and the service refuses it the same way."""


@dataclass(frozen=True)
class NumberRule:
    """The values one numeric contract column accepts: a finite number, not a boolean, within
    these bounds. ``bounds`` are keyword arguments both ``pandera.Field`` and
    ``pydantic.Field`` take, so that the two cannot drift apart."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None

    @property
    def bounds(self) -> dict[str, float]:
        named = {"ge": self.ge, "gt": self.gt, "le": self.le}
        return {name: value for name, value in named.items() if value is not None}


AMOUNT_RULE = NumberRule(ge=0, le=MAX_AMOUNT)
"""An amount owed or paid: 0 or more."""
BALANCE_RULE = NumberRule(ge=-MAX_AMOUNT, le=MAX_AMOUNT)
"""A statement balance: negative is a credit balance (the lender owes the borrower, after an
overpayment or a refund); features read a credit as nothing owed (docs/features.md)."""
CREDIT_LIMIT_RULE = NumberRule(gt=0, le=MAX_AMOUNT)
DPD_RULE = NumberRule(ge=0, le=MAX_DPD)
INVISIBLE_RANGES = (
    (0x00, 0x1F),  # C0 controls: NUL, tab, line breaks, ...
    (0x7F, 0x9F),  # DEL and the C1 controls
    (0xAD, 0xAD),  # soft hyphen
    (0x200B, 0x200F),  # zero-width space, joiners, direction marks
    (0x2028, 0x202E),  # line and paragraph separators, direction embeddings
    (0x2060, 0x2064),  # word joiner, invisible operators
    (0xFEFF, 0xFEFF),  # byte-order mark (zero-width no-break space)
)
"""Characters that print as nothing (or break a line): never part of an id."""
INVISIBLE = tuple(chr(code) for low, high in INVISIBLE_RANGES for code in range(low, high + 1))
INVISIBLE_SHOWN = tuple(f"\\u{ord(character):04x}" for character in INVISIBLE)
"""How an error message writes each of :data:`INVISIBLE`: its code, ``\\u0000``."""
_NOT_IN_ID = "".join(f"\\u{low:04x}-\\u{high:04x}" for low, high in INVISIBLE_RANGES)
ID_PATTERN = rf"^[^\s{_NOT_IN_ID}](?:[^{_NOT_IN_ID}]*[^\s{_NOT_IN_ID}])?$"
"""What an id is made of: no control character (NUL, line breaks, tabs), no invisible format
character (zero-width space and joiners, soft hyphen, byte-order mark, direction marks), and no
white space at either end. Such characters make two ids that print alike differ as keys (so an
account sent twice passes as two) or one id that a CSV cannot carry; the regex reads the same in
Python (the service) and in Rust (polars, the batch)."""
ID_WORDS = "printable text (no control or zero-width character, no space at either end)"
REFERENCE_RULE: dict[str, Any] = {"str_length": {"min_value": 1, "max_value": MAX_ID_LENGTH}}
"""pandera's checks of an ``account_id`` that refers to the accounts table: its characters are
checked there once (a row of an id the accounts table lacks or rejected is set aside as such),
not again on every statement row."""
IDENTIFIER_RULE: dict[str, Any] = {**REFERENCE_RULE, "str_matches": ID_PATTERN}
"""pandera's checks of an id column (the API: ``min_length``/``max_length`` and the pattern)."""


class Accounts(pa.DataFrameModel):
    """One row per credit account."""

    account_id: str = pa.Field(nullable=False, **IDENTIFIER_RULE)
    borrower_id: str = pa.Field(nullable=False, **IDENTIFIER_RULE)
    product: str = pa.Field(nullable=False, isin=list(PRODUCTS))
    opened_at: pl.Date = pa.Field(nullable=False)
    credit_limit: float = pa.Field(nullable=False, **CREDIT_LIMIT_RULE.bounds)
    currency: str = pa.Field(nullable=False, str_matches=r"^[A-Z]{3}$")

    class Config:
        strict = False  # extra columns are carried through untouched
        coerce = False  # the loader casts with per-row error reporting before validation


class Statements(pa.DataFrameModel):
    """One row per account per monthly statement cycle."""

    account_id: str = pa.Field(nullable=False, **REFERENCE_RULE)
    cycle_end: pl.Date = pa.Field(nullable=False)
    known_at: TIMESTAMP = pa.Field(nullable=False)  # type: ignore[valid-type]
    amount_due: float = pa.Field(nullable=False, **AMOUNT_RULE.bounds)
    min_due: float = pa.Field(nullable=False, **AMOUNT_RULE.bounds)
    amount_paid: float = pa.Field(nullable=False, **AMOUNT_RULE.bounds)
    balance: float = pa.Field(nullable=False, **BALANCE_RULE.bounds)  # < 0: a credit balance
    dpd: pl.Int64 = pa.Field(nullable=False, **DPD_RULE.bounds)

    @pa.dataframe_check(error="min_due must not exceed amount_due")
    @classmethod
    def min_due_within_amount_due(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("min_due") <= pl.col("amount_due") + 1e-6)

    @pa.dataframe_check(error="known_at must not be before cycle_end")
    @classmethod
    def known_after_cycle_end(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("known_at") >= pl.col("cycle_end").cast(TIMESTAMP))

    class Config:
        strict = False
        coerce = False


PROMISE_RULE = "a promise_to_pay must give promised_amount and promised_date"


class CollectionActions(pa.DataFrameModel):
    """One row per collection action taken on an account, with its outcome."""

    account_id: str = pa.Field(nullable=False, **REFERENCE_RULE)
    action_at: TIMESTAMP = pa.Field(nullable=False)  # type: ignore[valid-type]
    channel: str = pa.Field(nullable=False, isin=list(CHANNELS))
    outcome: str = pa.Field(nullable=False, isin=list(OUTCOMES))
    promised_amount: float = pa.Field(nullable=True, **AMOUNT_RULE.bounds)
    promised_date: pl.Date = pa.Field(nullable=True)

    @pa.dataframe_check(error=PROMISE_RULE)
    @classmethod
    def promise_says_what_and_when(cls, data: pa.PolarsData) -> pl.LazyFrame:
        # a promise without its amount or date was skipped by the promise features, silently
        return data.lazyframe.select(
            (pl.col("outcome") != "promise_to_pay")
            | (pl.col("promised_amount").is_not_null() & pl.col("promised_date").is_not_null())
        )

    class Config:
        strict = False
        coerce = False


PROPENSITY_RULE = NumberRule(gt=0, le=1)
"""A logged propensity: the probability the logging policy took the logged action, in (0, 1]."""


class Treatments(pa.DataFrameModel):
    """One row per hardship or forbearance treatment granted to an account."""

    account_id: str = pa.Field(nullable=False, **REFERENCE_RULE)
    kind: str = pa.Field(nullable=False, isin=list(TREATMENT_KINDS))
    start_at: TIMESTAMP = pa.Field(nullable=False)  # type: ignore[valid-type]
    end_at: TIMESTAMP = pa.Field(nullable=True)  # type: ignore[valid-type]
    known_at: TIMESTAMP = pa.Field(nullable=False)  # type: ignore[valid-type]

    @pa.dataframe_check(error="end_at must not be before start_at")
    @classmethod
    def ends_after_start(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("end_at").is_null() | (pl.col("end_at") >= pl.col("start_at"))
        )

    class Config:
        strict = False
        coerce = False


class ExperimentAssignments(pa.DataFrameModel):
    """One row per account, as-of and experiment: the arm it was in and that arm's propensity
    (``rollrisk.strategies.experiments``; ``arm`` is ``policy`` for an eligible account that was
    not randomised)."""

    account_id: str = pa.Field(nullable=False, **REFERENCE_RULE)
    as_of: pl.Date = pa.Field(nullable=False)
    experiment_id: str = pa.Field(nullable=False, **IDENTIFIER_RULE)
    arm: str = pa.Field(nullable=False, **IDENTIFIER_RULE)
    propensity: float = pa.Field(nullable=False, **PROPENSITY_RULE.bounds)

    class Config:
        strict = False
        coerce = False


@dataclass(frozen=True)
class TableContract:
    """How one table of a portfolio folder is found, typed and checked."""

    name: str
    schema: type[pa.DataFrameModel]
    required: bool
    key: tuple[str, ...]  # columns that identify a row in error messages
    unique: tuple[str, ...] | None  # rows sharing these values are duplicates
    references_accounts: bool  # account_id must exist in the accepted accounts
    # the column that dates a row's event, which may not fall before its account's opened_at
    # (compared as a date; docs/data-contract.md, "Rows dated before the account opened")
    dated_by: str | None = None
    # each account's rows are its history, read whole (the statements): when one of them is
    # rejected (for anything but repeating a kept row exactly) the rest would be scored and
    # trained on with a gap, so they are set aside too (docs/data-contract.md, "An account's
    # statements are kept whole or not at all")
    history: bool = False

    @property
    def dtypes(self) -> dict[str, pl.DataType]:
        """The polars dtype of every contract column, in contract order."""
        return {name: column.dtype.type for name, column in self.schema.to_schema().columns.items()}


TABLES: tuple[TableContract, ...] = (
    TableContract("accounts", Accounts, True, ("account_id",), ("account_id",), False),
    TableContract(
        "statements",
        Statements,
        True,
        ("account_id", "cycle_end"),
        ("account_id", "cycle_end"),
        True,
        dated_by="cycle_end",
        history=True,
    ),
    TableContract(
        "collection_actions",
        CollectionActions,
        False,
        ("account_id", "action_at", "channel"),
        None,
        True,
        dated_by="action_at",
    ),
    TableContract(
        "treatments",
        Treatments,
        False,
        ("account_id", "kind", "start_at"),
        None,
        True,
        dated_by="start_at",
    ),
)
TABLES_BY_NAME: dict[str, TableContract] = {table.name: table for table in TABLES}
"""The model's input tables by name."""

RECORD_TABLES: tuple[TableContract, ...] = (
    TableContract(
        "experiment_assignments",
        ExperimentAssignments,
        False,
        ("account_id", "as_of", "experiment_id"),
        ("account_id", "as_of", "experiment_id"),
        True,
        dated_by="as_of",
    ),
)
"""Optional records a portfolio may carry that are checked like the inputs but feed no feature
(so scoring, training and the service, which walk :data:`TABLES`, do not see them)."""
