"""The currency of the amounts: one model, one currency.

Every amount of the data contract (limits, balances, dues, payments, promised amounts) is in
the account's own currency (``accounts.currency``, ISO 4217), and so is every amount feature.
A model learns those amounts on one scale: a model trained on a CNY book reads a USD balance
as a balance about 7 times smaller, and a training set mixing currencies mixes scales in one
feature. Nothing in the scores would show it, so:

* ``rollrisk train`` refuses a training set whose accounts hold more than one currency
  (:func:`mixed_currencies_message`) and records the one it trained on in the model's metadata
  (:data:`CURRENCY_METADATA`);
* scoring (the batch on either engine, the service, the Python API) refuses accounts in a
  currency the model was not trained on (:func:`foreign_currencies_message`), and so do
  ``rollrisk evaluate`` and ``rollrisk monitor`` (``scoring.core.check_model_currency``): a model
  measured on misread amounts would look worse, or drift, for no reason of its own.

The counts are columnar (one semi-join and one group-by): negligible beside scoring.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

import pandas as pd
import polars as pl

CURRENCY_METADATA = "currency"  # the model's logged metadata: its accounts' currency
EXAMPLES = 3  # account ids quoted per foreign currency
COUNTS_SCHEMA: dict[str, pl.DataType] = {
    "currency": pl.String(),
    "accounts": pl.Int64(),
    "examples": pl.List(pl.String()),
}


def currency_metadata(currencies: Collection[str]) -> dict[str, str]:
    """The model metadata entry recording ``currencies`` (read back by
    :func:`recorded_currencies`); empty when they are not known."""
    return {CURRENCY_METADATA: ",".join(currencies)} if currencies else {}


def recorded_currencies(metadata: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The currencies a model was trained on, from its logged metadata (comma-separated), or
    ``None`` for a model logged before rollrisk recorded them (the check is then skipped)."""
    recorded = metadata.get(CURRENCY_METADATA)
    if not recorded:
        return None
    return tuple(sorted({code.strip() for code in str(recorded).split(",") if code.strip()}))


def currency_counts(
    accounts: pl.DataFrame | pd.DataFrame,
    account_ids: pl.Series | Iterable[str] | None = None,
    known: Collection[str] = (),
    examples: int = EXAMPLES,
) -> pl.DataFrame:
    """Accounts per currency among ``account_ids`` (``None``: every account of ``accounts``):
    ``currency``, ``accounts`` and ``examples``, the first ``examples`` account ids in sort
    order of each currency not in ``known`` (empty for the known ones), sorted by accounts
    (most first), then currency. Ids not in ``accounts`` are not counted."""
    frame = accounts if isinstance(accounts, pl.DataFrame) else pl.from_pandas(accounts)
    rows = frame.lazy().select(pl.col("account_id").cast(pl.String), "currency")
    if account_ids is not None:
        ids = account_ids if isinstance(account_ids, pl.Series) else pl.Series(list(account_ids))
        wanted = pl.LazyFrame({"account_id": ids.cast(pl.String)})
        rows = rows.join(wanted, on="account_id", how="semi")
    foreign = ~pl.col("currency").is_in(list(known))
    counts = (
        rows.group_by("currency")
        .agg(
            pl.len().cast(pl.Int64).alias("accounts"),
            pl.col("account_id").filter(foreign).bottom_k(examples).sort().alias("examples"),
        )
        .collect()
    )
    return _ordered(counts)


def combine_currency_counts(
    parts: Iterable[pl.DataFrame], examples: int = EXAMPLES
) -> pl.DataFrame:
    """:func:`currency_counts` of disjoint sets of accounts (Spark's partitions), as one: the
    counts added, the examples the first ``examples`` of all in sort order (so the same as
    :func:`currency_counts` over the union)."""
    frame = pl.concat([pl.DataFrame(schema=COUNTS_SCHEMA), *parts], how="vertical_relaxed")
    combined = frame.group_by("currency").agg(
        pl.col("accounts").sum(),
        pl.col("examples").explode().drop_nulls().bottom_k(examples).sort().alias("examples"),
    )
    return _ordered(combined)


def _ordered(counts: pl.DataFrame) -> pl.DataFrame:
    ordered = counts.cast(COUNTS_SCHEMA).select(*COUNTS_SCHEMA)  # type: ignore[arg-type]
    return ordered.sort(["accounts", "currency"], descending=[True, False])


def _listed(counts: pl.DataFrame, with_examples: bool) -> str:
    parts = []
    for currency, accounts, shown in counts.iter_rows():
        part = f"{currency} ({accounts:,} account{'s' if accounts != 1 else ''}"
        if with_examples and shown:
            more = ", ..." if accounts > len(shown) else ""
            part += ", e.g. " + ", ".join(shown) + more
        parts.append(part + ")")
    return ", ".join(parts)


def mixed_currencies_message(counts: pl.DataFrame, what: str = "the training set") -> str | None:
    """The refusal of a training set whose accounts hold more than one currency (``counts``:
    :func:`currency_counts` of its accounts), or ``None`` when they hold one (or none)."""
    if counts.height <= 1:
        return None
    return (
        f"{what}'s accounts hold {counts.height} currencies: {_listed(counts, False)}; the "
        "amount features (balances, dues, payments, limits, overdue amounts) are in each "
        "account's currency, so one model would learn them on mixed scales: train one model "
        "per currency (a portfolio folder each), or convert the amounts to one currency first"
    )


def foreign_currencies_message(
    counts: pl.DataFrame, trained: Collection[str], model: str, where: str
) -> str | None:
    """The refusal of accounts in a currency the model was not trained on (``counts``:
    :func:`currency_counts` of the accounts to score with ``known=trained``), or ``None`` when
    there is none. ``model`` (``model NAME vVERSION``) and ``where`` name the model and the
    accounts in the message."""
    foreign = counts.filter(~pl.col("currency").is_in(list(trained)))
    if foreign.is_empty():
        return None
    total = int(counts["accounts"].sum())
    other = int(foreign["accounts"].sum())
    model_currency = "/".join(sorted(trained))
    return (
        f"{model} was trained on accounts in {model_currency}, but {other:,} of the "
        f"{total:,} accounts {where} are in other currencies: {_listed(foreign, True)}; their "
        f"amounts (balances, dues, payments, limits) would be read as {model_currency} and the "
        f"scores would be wrong: score them with a model trained on their currency, or convert "
        f"their amounts to {model_currency} first"
    )


def foreign_account_message(
    account_id: str, currency: str, trained: Collection[str], model: str
) -> str:
    """The refusal of one account in a currency the model was not trained on (the service);
    ``model``: ``model NAME vVERSION``."""
    model_currency = "/".join(sorted(trained))
    return (
        f"account {account_id} is in {currency}, but {model} was trained on accounts in "
        f"{model_currency}: its amounts (balances, dues, payments, limits) would be read as "
        f"{model_currency} and its score would be wrong; score it with a model trained on "
        f"{currency}, or convert its amounts to {model_currency} first"
    )


def currency_not_recorded_warning(model: str) -> str:
    """The warning of a run whose model (``model`` names it) does not record its currency."""
    return (
        f"{model} does not record the currency of its training accounts (logged before "
        "rollrisk recorded it), so the accounts' currency was not checked against it; "
        "retrain it to have it checked"
    )
