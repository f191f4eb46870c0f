"""Score one API request with the batch code: request -> contract tables -> score_accounts.

The steps, each a pure function:

1. :func:`request_tables`: the request's accounts become the four tables of a portfolio
   folder, in the data contract's dtypes (the same columns ``load_portfolio`` returns);
2. :func:`validate_request_tables`: the rows go through the loader's row validation
   (:func:`rollrisk.features.validation.validate_table`), so a row the contract would set
   aside in a batch is refused here, naming the account, the table and the reason;
3. :func:`score_request`: :func:`rollrisk.models.scoring.score_accounts` at the request's
   as-of, plus a ``not_scored`` entry, with its reason, for every requested account outside the
   population (current, in default already, or without a recent statement).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import polars as pl

from rollrisk.features.observations import MAX_STATEMENT_AGE_MONTHS
from rollrisk.features.schemas import TABLES_BY_NAME
from rollrisk.features.validation import FILE_COLUMN, ROW_COLUMN, validate_table
from rollrisk.models.scoring import ScoringSetup, score_accounts
from rollrisk.serving.api_models import ScoreRequest

REQUEST_SOURCE = "request"  # the "file" every reject of a request names
JSON_COLUMNS = ("actions", "trail", "reasons")


@dataclass(frozen=True)
class RequestTables:
    """A request as portfolio tables, and where each row came from in the request body.

    ``locations[table][i]`` is the JSON path (after ``body``) of row ``i`` of ``table``.
    """

    accounts: pl.DataFrame
    statements: pl.DataFrame
    collection_actions: pl.DataFrame | None
    treatments: pl.DataFrame | None
    locations: dict[str, list[tuple[str | int, ...]]]


@dataclass(frozen=True)
class ContractProblem:
    """A request row that the data contract rejects."""

    location: tuple[str | int, ...]  # JSON path inside the body
    account_id: str
    table: str
    reason: str


class ContractViolation(ValueError):
    """Some rows of a request break the data contract (the service answers 422)."""

    def __init__(self, problems: list[ContractProblem]) -> None:
        super().__init__(f"{len(problems)} request row(s) break the data contract")
        self.problems = problems


def request_tables(request: ScoreRequest) -> RequestTables:
    """The four contract tables of a request, in contract dtypes and request order.

    ``collection_actions`` (``treatments``) is None when no account of the request carries the
    list, as for a portfolio folder without that table; an account that sends ``[]`` has none.
    """
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES_BY_NAME}
    locations: dict[str, list[tuple[str | int, ...]]] = {name: [] for name in TABLES_BY_NAME}
    has_table = {"collection_actions": False, "treatments": False}
    for i, account in enumerate(request.accounts):
        rows["accounts"].append(
            account.model_dump(exclude={"statements", "collection_actions", "treatments"})
        )
        locations["accounts"].append(("accounts", i))
        for table in ("statements", "collection_actions", "treatments"):
            items = getattr(account, table)
            if items is None:
                continue
            has_table[table] = True
            for j, item in enumerate(items):
                rows[table].append({"account_id": account.account_id, **item.model_dump()})
                locations[table].append(("accounts", i, table, j))

    frames = {name: _frame(rows[name], name) for name in rows}
    return RequestTables(
        accounts=frames["accounts"],
        statements=frames["statements"],
        collection_actions=frames["collection_actions"]
        if has_table["collection_actions"]
        else None,
        treatments=frames["treatments"] if has_table["treatments"] else None,
        locations=locations,
    )


def _frame(rows: list[dict[str, Any]], table: str) -> pl.DataFrame:
    dtypes = TABLES_BY_NAME[table].dtypes
    return pl.DataFrame(
        {name: [row[name] for row in rows] for name in dtypes}, schema=dtypes, strict=True
    )


def validate_request_tables(tables: RequestTables) -> RequestTables:
    """Run every table through the loader's row validation; raise if any row is rejected.

    Raises:
        ContractViolation: listing, for every rejected row, its path in the request, its
            account, its table and the contract's reason.
    """
    problems: list[ContractProblem] = []
    accepted: dict[str, pl.DataFrame | None] = {}
    known_accounts: pl.Series | None = None
    for name in ("accounts", "statements", "collection_actions", "treatments"):
        frame: pl.DataFrame | None = getattr(tables, name)
        if frame is None or frame.height == 0:  # no row, nothing to reject (saves ~5 ms)
            accepted[name] = frame
            continue
        contract = TABLES_BY_NAME[name]
        raw = frame.with_columns(
            pl.lit(0, dtype=pl.Int32).alias(FILE_COLUMN),
            pl.int_range(pl.len(), dtype=pl.Int64).alias(ROW_COLUMN),
        )
        outcome = validate_table(
            raw,
            contract,
            [REQUEST_SOURCE],
            known_accounts=known_accounts if contract.references_accounts else None,
        )
        for row, reasons in outcome.rejects.select("row", "reasons").iter_rows():
            problems.append(
                ContractProblem(
                    location=tables.locations[name][row],
                    account_id=str(frame["account_id"][row]),
                    table=name,
                    reason=reasons,
                )
            )
        accepted[name] = outcome.accepted
        if name == "accounts":
            known_accounts = outcome.accepted["account_id"]
    if problems:
        raise ContractViolation(problems)
    return RequestTables(
        accounts=accepted["accounts"],  # type: ignore[arg-type]
        statements=accepted["statements"],  # type: ignore[arg-type]
        collection_actions=accepted["collection_actions"],
        treatments=accepted["treatments"],
        locations=tables.locations,
    )


def latest_known_dpd(statements: pl.DataFrame, as_of: date) -> dict[str, int]:
    """DPD of each account's latest statement known at the end of ``as_of``, among the
    statements recent enough for the account to be observed (the rule of
    :func:`rollrisk.features.observations.observations`)."""
    end_of_day = pl.lit(as_of + timedelta(days=1)).cast(pl.Datetime("us"))
    month = pl.col("cycle_end").dt.year() * 12 + pl.col("cycle_end").dt.month()
    as_of_month = as_of.year * 12 + as_of.month
    recent = statements.filter(
        (pl.col("known_at") < end_of_day)
        & month.is_between(as_of_month - MAX_STATEMENT_AGE_MONTHS, as_of_month)
    )
    latest = recent.group_by("account_id").agg(pl.col("dpd").sort_by("cycle_end").last())
    return dict(latest.iter_rows())


def not_scored_reason(dpd: int | None, setup: ScoringSetup) -> str:
    """Why an account with this DPD at the as-of is outside the population."""
    spec = setup.observation
    if dpd is None:
        return (
            "no statement known at the as-of from its month or the month before "
            "(not yet billed, or stopped reporting)"
        )
    if dpd < spec.min_dpd:
        return f"current: DPD {dpd} at the as-of is below the population's {spec.min_dpd}"
    if dpd > spec.max_dpd:
        return (
            f"DPD {dpd} at the as-of is above the population's {spec.max_dpd} "
            f"(default is {spec.default_dpd}+ DPD)"
        )
    return "outside the population at the as-of"  # not reached: kept so no account is dropped


def score_request(request: ScoreRequest, setup: ScoringSetup) -> dict[str, Any]:
    """The response body of ``POST /v1/score`` (see :class:`~rollrisk.serving.api_models.
    ScoreResponse`): batch scoring of the request's accounts at its as-of.

    Raises:
        ContractViolation: when a row of the request breaks the data contract.
    """
    tables = validate_request_tables(request_tables(request))
    scored = score_accounts(
        tables.accounts,
        tables.statements,
        tables.collection_actions,
        tables.treatments,
        request.as_of,
        setup,
    )
    scored_ids = set(scored["account_id"].to_list())
    missing = sorted(a.account_id for a in request.accounts if a.account_id not in scored_ids)
    dpd = latest_known_dpd(tables.statements, request.as_of) if missing else {}
    return {
        "as_of": request.as_of,
        "model": {"name": setup.model_name, "version": setup.model_version},
        "scored": [scored_record(row) for row in scored.iter_rows(named=True)],
        "not_scored": [
            {
                "account_id": account_id,
                "reason": not_scored_reason(dpd.get(account_id), setup),
                "dpd_at_as_of": dpd.get(account_id),
            }
            for account_id in missing
        ],
    }


def scored_record(row: dict[str, Any]) -> dict[str, Any]:
    """A row of ``SCORED_SCHEMA`` with its JSON text columns parsed into lists."""
    return {
        name: json.loads(value) if name in JSON_COLUMNS else value for name, value in row.items()
    }


def request_body(
    accounts: pl.DataFrame,
    statements: pl.DataFrame,
    collection_actions: pl.DataFrame | None,
    treatments: pl.DataFrame | None,
    account_ids: list[str],
    as_of: date,
) -> dict[str, Any]:
    """The JSON body of a score request for some accounts of a portfolio (contract tables).

    The inverse of :func:`request_tables`; used by the tests, the benchmark and the docs'
    examples. Every row of the accounts is sent, as a batch job would read it.
    """
    wanted = pl.Series(account_ids, dtype=pl.String).implode()

    def rows_by_account(frame: pl.DataFrame | None, table: str) -> dict[str, list[dict]] | None:
        if frame is None:
            return None
        columns = [c for c in TABLES_BY_NAME[table].dtypes if c != "account_id"]
        grouped: dict[str, list[dict]] = {}
        for row in frame.filter(pl.col("account_id").is_in(wanted)).iter_rows(named=True):
            grouped.setdefault(row["account_id"], []).append(
                {c: _json_value(row[c]) for c in columns}
            )
        return grouped

    statements_of = rows_by_account(statements, "statements") or {}
    actions_of = rows_by_account(collection_actions, "collection_actions")
    treatments_of = rows_by_account(treatments, "treatments")
    body_accounts = []
    header = list(TABLES_BY_NAME["accounts"].dtypes)
    for row in accounts.filter(pl.col("account_id").is_in(wanted)).iter_rows(named=True):
        account_id = row["account_id"]
        entry = {c: _json_value(row[c]) for c in header}
        entry["statements"] = statements_of.get(account_id, [])
        if actions_of is not None:
            entry["collection_actions"] = actions_of.get(account_id, [])
        if treatments_of is not None:
            entry["treatments"] = treatments_of.get(account_id, [])
        body_accounts.append(entry)
    return {"as_of": as_of.isoformat(), "accounts": body_accounts}


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value
