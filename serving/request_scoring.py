"""Score API requests with the batch code: requests -> contract tables -> score_accounts.

The steps, each a pure function:

1. :func:`request_tables`: the accounts of one or more requests become the four tables of a
   portfolio folder, in the data contract's dtypes (the same columns ``load_portfolio``
   returns). The rows need no second check: the API models
   (:mod:`rollrisk.serving.api_models`) refuse every row the contract's row validation would
   set aside, which ``tests/unit/test_api_contract.py`` proves property by property against
   :func:`rollrisk.features.validation.validate_table` (running pandera on a request's few
   rows cost more than scoring them);
2. :func:`score_requests`: the population and its features from the accounts' own rows
   (:func:`rollrisk.features.online.population_features`, the batch's rules without its polars
   query's fixed cost), then one :func:`rollrisk.scoring.core.score_accounts` call at the
   requests' as-of for all their accounts (the service batches concurrent requests, see
   :mod:`rollrisk.serving.batching`), split back per request, plus a ``not_scored`` entry, with
   its reason, for every requested account outside the population (current, in default
   already, or without a recent statement). :func:`score_request` is the one-request case.

Requests scored together must share a :func:`batch_key` (as-of, and which optional tables they
carry) and have no account in common: then each account's result is exactly what it gets
scored alone, since every step of scoring works account by account.
"""

from __future__ import annotations

import json
import time
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

from rollrisk.features.observations import (
    RECENT_STATEMENT_MONTHS,
    overdue_statements,
    truncated_history_warning,
)
from rollrisk.features.online import covers, dpd_at_as_of, population_features
from rollrisk.features.schemas import TABLES_BY_NAME
from rollrisk.scoring.core import ScoringSetup, score_accounts, tables_present
from rollrisk.serving.api_models import AccountHistory, ScoreRequest

JSON_COLUMNS = ("actions", "trail", "reasons")
OPTIONAL_TABLES = ("collection_actions", "treatments")


@dataclass(frozen=True)
class RequestTables:
    """Accounts of requests as portfolio tables (contract columns and dtypes, request order)."""

    accounts: pl.DataFrame
    statements: pl.DataFrame
    collection_actions: pl.DataFrame | None
    treatments: pl.DataFrame | None


BatchKey = tuple[date, bool, bool]


def batch_key(request: ScoreRequest) -> BatchKey:
    """Requests with the same key can be scored in one call: the same as-of, and the same
    optional tables present (within a request every account sends a table or none does:
    the service's endpoint refuses a mix, so an account's
    ``null`` is never read as ``[]`` because of another account's list)."""
    return (
        request.as_of,
        *(
            any(getattr(a, table) is not None for a in request.accounts)
            for table in OPTIONAL_TABLES
        ),
    )  # type: ignore[return-value]


def request_tables(accounts: Sequence[AccountHistory]) -> RequestTables:
    """The four contract tables of these accounts, in contract dtypes and request order.

    ``collection_actions`` (``treatments``) is None when no account carries the list, as for a
    portfolio folder without that table; an account that sends ``[]`` has none.
    """
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES_BY_NAME}
    has_table = dict.fromkeys(OPTIONAL_TABLES, False)
    for account in accounts:
        rows["accounts"].append(account.model_dump(exclude={"statements", *OPTIONAL_TABLES}))
        for table in ("statements", *OPTIONAL_TABLES):
            items = getattr(account, table)
            if items is None:
                continue
            if table in has_table:
                has_table[table] = True
            rows[table].extend(
                {"account_id": account.account_id, **item.model_dump()} for item in items
            )
    frames = {name: _frame(rows[name], name) for name in rows}
    return RequestTables(
        accounts=frames["accounts"],
        statements=frames["statements"],
        collection_actions=frames["collection_actions"]
        if has_table["collection_actions"]
        else None,
        treatments=frames["treatments"] if has_table["treatments"] else None,
    )


def _frame(rows: list[dict[str, Any]], table: str) -> pl.DataFrame:
    dtypes = TABLES_BY_NAME[table].dtypes
    return pl.DataFrame(
        {name: [row[name] for row in rows] for name in dtypes}, schema=dtypes, strict=True
    )


def not_scored_reason(dpd: int | None, setup: ScoringSetup) -> str:
    """Why an account with this DPD at the as-of is outside the population."""
    spec = setup.observation
    if dpd is None:
        return (
            "no statement known at the as-of that closed in the "
            f"{RECENT_STATEMENT_MONTHS} months before it (not yet billed, or stopped reporting)"
        )
    if dpd < spec.min_dpd:
        return f"current: DPD {dpd} at the as-of is below the population's {spec.min_dpd}"
    if dpd > spec.max_dpd:
        return (
            f"DPD {dpd} at the as-of is above the population's {spec.max_dpd} "
            f"(default is {spec.default_dpd}+ DPD)"
        )
    return "outside the population at the as-of"  # not reached: kept so no account is dropped


def overdue_statement_warnings(
    statements: pl.DataFrame, as_of: date, setup: ScoringSetup
) -> dict[str, str]:
    """Each account of a request that lacks the statement due a month after its latest,
    although that statement would be known by the as-of: its warning (the batch warns of the
    same accounts for the run, :func:`~rollrisk.features.observations.overdue_statements`).
    A request is not a book: each account is judged by its own statements' longest delay from
    cycle end to ``known_at``, so an answer does not depend on the accounts batched with it."""
    missing = overdue_statements(statements, as_of, setup.observation, own_timing=True)
    return {
        account: (
            f"no statement for {due:%Y-%m} was sent, although the one due a month after the "
            f"latest ({last}) would be known by {as_of}: scored from the latest statement, its "
            "DPD aged to the as-of (a cure or payment since then unseen); send the whole history"
        )
        for account, last, due in missing.iter_rows()
    }


def tables_left_out_warning(setup: ScoringSetup, tables: RequestTables) -> str | None:
    """The warning of every account of a request sent without an optional table the model was
    trained with (the service allows it with ``--allow-missing-table``): the features from it
    are missing, so its probability, segment and treatment are not those of a full history
    (the batch records the same choice in its manifest)."""
    present = tables_present(tables.collection_actions, tables.treatments)
    absent = [name for name in setup.trained_tables if name not in present]
    if not absent:
        return None
    names = " and ".join(absent)
    return (
        f"scored without its {names}, which the model was trained with "
        "(the service runs with --allow-missing-table): the features from them are missing, "
        "so the probability, segment and treatment can differ from a score with them"
    )


def score_requests(
    requests: Sequence[ScoreRequest],
    setup: ScoringSetup,
    timings: MutableMapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """The response bodies of ``POST /v1/score`` (see :class:`~rollrisk.serving.api_models.
    ScoreResponse`) for requests scored in one batch call. ``timings``: each step's wall
    seconds are added to it (as :func:`~rollrisk.scoring.core.score_accounts` does).

    Raises:
        ValueError: the requests do not share a :func:`batch_key` or share an account.
    """
    if not requests:
        return []
    keys = {batch_key(request) for request in requests}
    if len(keys) != 1:
        raise ValueError(f"requests scored together must share as-of and tables, got {keys}")
    owner: dict[str, int] = {}
    for index, request in enumerate(requests):
        for account in request.accounts:
            if owner.setdefault(account.account_id, index) != index:
                raise ValueError(f"account {account.account_id!r} is in two requests of a batch")
    as_of = requests[0].as_of
    accounts = [account for request in requests for account in request.accounts]
    started = time.perf_counter()
    tables = request_tables(accounts)
    features = None
    if covers(setup.feature_set):  # else the batch's polars query computes them
        features = population_features(
            accounts,
            as_of,
            setup.observation,
            setup.feature_set,
            with_actions=tables.collection_actions is not None,
            with_treatments=tables.treatments is not None,
        )
    if timings is not None:
        step = "tables, population and features"
        timings[step] = timings.get(step, 0.0) + time.perf_counter() - started
    scored = score_accounts(
        tables.accounts,
        tables.statements,
        tables.collection_actions,
        tables.treatments,
        as_of,
        setup,
        features=features,
        timings=timings,
    )
    records: list[list[dict[str, Any]]] = [[] for _ in requests]
    by_id = {account.account_id: account for account in accounts}
    left_out = tables_left_out_warning(setup, tables)
    overdue = overdue_statement_warnings(tables.statements, as_of, setup)
    for row in scored.iter_rows(named=True):  # sorted by account_id, so each request's are too
        account = by_id[row["account_id"]]
        warning = truncated_history_warning(
            account.opened_at,
            min(statement.cycle_end for statement in account.statements),
            as_of,
            setup.feature_set,
        )
        record = scored_record(row)
        texts = (warning, overdue.get(row["account_id"]), left_out)
        record["warnings"] = [text for text in texts if text]
        records[owner[row["account_id"]]].append(record)
    scored_ids = set(scored["account_id"].to_list())
    missing = [
        sorted(a.account_id for a in request.accounts if a.account_id not in scored_ids)
        for request in requests
    ]
    dpd = {
        account.account_id: dpd_at_as_of(account.statements, as_of)
        for request, left_out in zip(requests, missing, strict=True)
        for account in request.accounts
        if account.account_id in left_out
    }
    model = {"name": setup.model_name, "version": setup.model_version}
    return [
        {
            "as_of": as_of,
            "model": model,
            "scored": records[index],
            "not_scored": [
                {
                    "account_id": account_id,
                    "reason": not_scored_reason(dpd.get(account_id), setup),
                    "dpd_at_as_of": dpd.get(account_id),
                }
                for account_id in missing[index]
            ],
        }
        for index in range(len(requests))
    ]


def score_request(request: ScoreRequest, setup: ScoringSetup) -> dict[str, Any]:
    """The response body of ``POST /v1/score`` for one request (:func:`score_requests`)."""
    return score_requests([request], setup)[0]


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
