"""Scoring a portfolio with bad rows or a broken file: rows are set aside or the job stops, never a silent loss."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from rollrisk.cli import main
from rollrisk.storage.atomic_output import read_current

pytestmark = pytest.mark.slow
AS_OF = "2025-03-31"


def _copy(world, tmp_path: Path) -> Path:
    portfolio = tmp_path / "portfolio"
    shutil.copytree(world.portfolio, portfolio)
    return portfolio


def _score(world, portfolio: Path, out: Path) -> int:
    return main(["score", "--model", world.model_uri, "--data", str(portfolio), "--as-of", AS_OF,
                 "--out", str(out)])  # fmt: skip


def test_bad_rows_are_rejected_counted_and_the_rest_scored(scoring_world, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    portfolio = _copy(scoring_world, tmp_path)
    part = sorted((portfolio / "statements").glob("*.parquet"))[0]
    rows = pl.read_parquet(part)
    bad = rows.with_columns(
        pl.when(pl.int_range(pl.len()) < 5)
        .then(-1.0)
        .otherwise("amount_paid")
        .alias("amount_paid"),
        pl.when(pl.int_range(pl.len()).is_between(5, 7))
        .then(pl.lit("NOBODY"))
        .otherwise("account_id")
        .alias("account_id"),
    )
    bad.write_parquet(part)
    # the accounts of the 5 bad amounts lose their other statements too (data-contract.md, "An
    # account's statements are kept whole or not at all")
    affected = bad.head(5)["account_id"].unique().to_list()
    every = pl.read_parquet(portfolio / "statements" / "*.parquet", columns=["account_id"])
    set_aside = every.filter(pl.col("account_id").is_in(affected)).height - 5
    assert set_aside > 0

    assert _score(scoring_world, portfolio, tmp_path / "scores") == 0
    manifest, scored = read_current(tmp_path / "scores")
    statements = manifest["counts"]["input_rows"]["statements"]
    assert statements["rejected"] == 8 + set_aside
    assert statements["read"] == statements["accepted"] + statements["rejected"]
    rejects = pl.read_csv(tmp_path / "scores" / "rejects.csv")
    assert rejects.height == 8 + set_aside
    assert rejects["reasons"].str.starts_with("amount_paid: expected a value >= 0").sum() == 5
    assert rejects["reasons"].str.contains("expected an account listed in accounts").sum() == 3
    assert rejects["reasons"].str.starts_with("incomplete history: ").sum() == set_aside
    assert not scored["account_id"].is_in(affected).any()
    assert manifest["counts"]["rejects"]["accounts_lost"] >= len(affected)
    assert manifest["counts"]["scored"] == manifest["counts"]["population"] == scored.height
    assert json.loads((tmp_path / "scores" / "current" / "manifest.json").read_text())[
        "rejects_file"
    ]


def test_a_truncated_file_stops_the_job_before_anything_is_published(
    scoring_world, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    portfolio = _copy(scoring_world, tmp_path)
    part = sorted((portfolio / "statements").glob("*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:1000])
    assert _score(scoring_world, portfolio, tmp_path / "scores") == 2
    assert f"{part}: cannot read this Parquet file" in capsys.readouterr().err
    assert not (tmp_path / "scores" / "current").exists()
