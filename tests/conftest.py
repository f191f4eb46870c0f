"""Shared test fixtures: tiny, hand-made portfolios (tests never download data)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest


def tiny_accounts() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "account_id": ["A1", "A2", "A3"],
            "borrower_id": ["B1", "B2", "B3"],
            "product": ["bnpl", "cash_loan", "agri_loan"],
            "opened_at": [date(2023, 1, 15)] * 3,
            "credit_limit": [2_000.0, 50_000.0, 30_000.0],
            "currency": ["CNY"] * 3,
        }
    )


def tiny_statements() -> pl.DataFrame:
    rows = []
    for account in ("A1", "A2", "A3"):
        for month, dpd in zip((1, 2, 3), (0, 15, 45), strict=True):
            cycle_end = date(2024, month, 20)
            rows.append(
                {
                    "account_id": account,
                    "cycle_end": cycle_end,
                    "known_at": datetime(2024, month, 22, 6, 0),
                    "amount_due": 300.0,
                    "min_due": 30.0,
                    "amount_paid": 30.0 if dpd == 0 else 0.0,
                    "balance": 1_500.0,
                    "dpd": dpd,
                }
            )
    return pl.DataFrame(rows)


def tiny_actions() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "account_id": ["A2", "A2", "A3"],
            "action_at": [
                datetime(2024, 2, 23, 10),
                datetime(2024, 2, 25, 15),
                datetime(2024, 3, 23, 9),
            ],
            "channel": ["sms", "agent_call", "robo_call"],
            "outcome": ["delivered", "promise_to_pay", "no_answer"],
            "promised_amount": [None, 300.0, None],
            "promised_date": [None, date(2024, 3, 5), None],
        }
    )


def tiny_treatments() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "account_id": ["A3"],
            "kind": ["grace_period"],
            "start_at": [datetime(2024, 3, 25)],
            "end_at": [datetime(2024, 4, 25)],
            "known_at": [datetime(2024, 3, 25)],
        }
    )


@pytest.fixture
def tiny_portfolio(tmp_path: Path) -> Path:
    """A clean four-table portfolio folder (Parquet), 3 accounts x 3 months."""
    folder = tmp_path / "portfolio"
    folder.mkdir()
    tiny_accounts().write_parquet(folder / "accounts.parquet")
    tiny_statements().write_parquet(folder / "statements.parquet")
    tiny_actions().write_parquet(folder / "collection_actions.parquet")
    tiny_treatments().write_parquet(folder / "treatments.parquet")
    return folder


TEST_MODEL = "rollrisk-test"
_TRAIN_CONFIG = """
training:
  model_name: rollrisk-test
  experiment_name: tests
  split: {validation_months: 2, test_months: 2, embargo_months: 1}
  calibration: {method: platt}
  lightgbm: {n_estimators: 60, num_leaves: 7, min_child_samples: 20, learning_rate: 0.1, early_stopping_rounds: 10, n_jobs: 1}
"""


@pytest.fixture(scope="session")
def scoring_world(tmp_path_factory: pytest.TempPathFactory):
    """A simulated portfolio and a model trained on it, registered as ``challenger``.

    Built once per test session (about 20 s) and shared by the scoring, serving, Spark and
    monitoring tests. MLFLOW_TRACKING_URI points at the session's own SQLite store.
    """
    from rollrisk.cli import main

    root = tmp_path_factory.mktemp("world")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        portfolio = root / "portfolio"
        argv = [
            "simulate",
            # accounts ever on the (open) book: about 63 % are on it at the start, so the
            # monitoring tests' as-of still has over min_population (50) delinquent accounts
            "--accounts",
            "3500",
            "--months",
            "16",
            "--seed",
            "5",
            "--out",
            str(portfolio),
        ]
        assert main(argv) == 0
        config = root / "train.yaml"
        config.write_text(_TRAIN_CONFIG)
        argv = [
            "train",
            "--data",
            str(portfolio),
            "--config",
            str(config),
            "--out",
            str(root / "train"),
        ]
        assert main(argv) == 0
        yield World(
            root=root,
            tracking_uri=uri,
            portfolio=portfolio,
            model_uri=f"models:/{TEST_MODEL}@challenger",
        )


class World:
    def __init__(self, root: Path, tracking_uri: str, portfolio: Path, model_uri: str) -> None:
        self.root = root
        self.tracking_uri = tracking_uri
        self.portfolio = portfolio
        self.model_uri = model_uri


# --- a book whose accounts are not all in the model's currency (tests of the currency guard)
MIXED_AS_OF = "2025-03-31"


class MixedBook:
    def __init__(self, folder: Path, people: list[str], usd: list[str], hkd: list[str]) -> None:
        self.folder = folder
        self.people = people  # the population at MIXED_AS_OF
        self.usd = usd  # switched to USD, in the population
        self.hkd = hkd


@pytest.fixture(scope="session")
def world_portfolio(scoring_world):
    from rollrisk.storage.loader import load_portfolio

    return load_portfolio(scoring_world.portfolio)


@pytest.fixture(scope="session")
def mixed_book(scoring_world, world_portfolio, tmp_path_factory) -> MixedBook:
    """The world's book with 4 accounts of the population at MIXED_AS_OF in USD, 1 in HKD and 3
    current accounts (outside the population) in USD."""
    import shutil

    from rollrisk.features.observations import ObservationSpec
    from rollrisk.scoring.core import population

    folder = tmp_path_factory.mktemp("mixed") / "portfolio"
    shutil.copytree(scoring_world.portfolio, folder, ignore=shutil.ignore_patterns("truth"))
    people = sorted(
        population(world_portfolio.statements, date.fromisoformat(MIXED_AS_OF), ObservationSpec())[
            "account_id"
        ].to_list()
    )
    outside = sorted(set(world_portfolio.accounts["account_id"]) - set(people))
    usd, hkd = people[10:14], people[20:21]
    (accounts_file,) = folder.glob("accounts.*")
    read = pl.read_parquet if accounts_file.suffix == ".parquet" else pl.read_csv
    accounts = read(accounts_file)
    accounts = accounts.with_columns(
        currency=pl.when(pl.col("account_id").is_in([*usd, *outside[:3]]))
        .then(pl.lit("USD"))
        .when(pl.col("account_id").is_in(hkd))
        .then(pl.lit("HKD"))
        .otherwise(pl.col("currency"))
    )
    if accounts_file.suffix == ".parquet":
        accounts.write_parquet(accounts_file)
    else:
        accounts.write_csv(accounts_file)
    return MixedBook(folder, people, usd, hkd)


@pytest.fixture(scope="session")
def world_setup(scoring_world):
    """The scoring world's model and default rules, loaded as `rollrisk serve` loads them."""
    import argparse

    from rollrisk.arguments import add_scoring_arguments, setup_from_arguments

    parser = argparse.ArgumentParser()
    add_scoring_arguments(parser)
    args = parser.parse_args(["--model", scoring_world.model_uri])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
        _, setup = setup_from_arguments(args)
    return setup


def model_files(world: World, uri: str | None = None) -> Path:
    """The folder of the files of ``world``'s model in the store at ``uri`` (default: the
    world's own). The registry is named too: a job earlier in the same process sets MLflow's
    global one to its own store."""
    from mlflow import MlflowClient

    uri = uri or world.tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name, alias = world.model_uri.removeprefix("models:/").split("@")
    source = client.get_model_version_by_alias(name, alias).source  # models:/m-<id>
    location = client.get_logged_model(source.removeprefix("models:/")).artifact_location
    return Path(location.removeprefix("file://"))
