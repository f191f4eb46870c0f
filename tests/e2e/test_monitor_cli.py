"""`rollrisk monitor` end to end on the session's simulated portfolio and model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from rollrisk.cli import main

pytestmark = pytest.mark.slow  # shares the ~20 s scoring_world; each run loads the model

AMOUNT_COLUMNS = ("amount_due", "min_due", "amount_paid", "balance")
AMOUNT_SHOCK = 20.0
# An out-of-time test month of the model (2024-12), its 3-month window matured (Jan-Mar 2025).
# The model's reference is its latest labelled months (2024-10..2025-01 in this 16-month world):
# the default thresholds hold on the undisturbed portfolio (no more raised csi_act to hide the
# early months' incomplete 12-month windows, which the pooled training reference compared with).
AS_OF = "2024-12-31"


def _statements_paths(portfolio: Path) -> list[Path]:
    paths = sorted((portfolio / "statements").glob("*.parquet"))
    assert paths, f"expected the simulator to write {portfolio / 'statements'}/*.parquet"
    return paths


@pytest.fixture(scope="module")
def drifted_portfolio(scoring_world, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same portfolio with every statement amount multiplied by AMOUNT_SHOCK."""
    folder = tmp_path_factory.mktemp("drift") / "portfolio"
    shutil.copytree(scoring_world.portfolio, folder, ignore=shutil.ignore_patterns("truth"))
    for path in _statements_paths(folder):
        statements = pl.read_parquet(path)
        shocked = statements.with_columns(*(pl.col(c) * AMOUNT_SHOCK for c in AMOUNT_COLUMNS))
        shocked.write_parquet(path)
    return folder


def _monitor(world, data: Path, out: Path, as_of: str, capsys) -> tuple[int, str, dict]:
    code = main(
        ["monitor", "--model", world.model_uri, "--data", str(data), "--as-of", as_of,
         "--out", str(out)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    report = json.loads((out / "monitor.json").read_text())
    return code, printed, report


def test_stable_population_exits_0_with_backtest(scoring_world, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    code, printed, report = _monitor(
        scoring_world, scoring_world.portfolio, tmp_path / "out", AS_OF, capsys
    )
    assert code == 0, report["alerts"]
    assert report["alerts"] == [] and report["verdict"] == "no alert"
    assert "verdict: NO ALERT" in printed
    # compared with the model's latest labelled months, scored by the model itself
    assert report["reference"]["kind"] == "latest labelled months"
    assert report["reference"]["months"][-1] == "2025-01-31"
    assert len(report["reference"]["months"]) == 3
    psi = report["score_psi"]
    assert psi["reference_scores"] == report["reference"]["rows"] > 0
    assert psi["value"] < psi["alert_above"]
    # the noise of these sizes is reported beside the value: ~(10 - 1) x (1/n + 1/m)
    sizes = 1 / report["population"] + 1 / report["reference"]["rows"]
    assert psi["noise_expected"] == pytest.approx(9 * sizes, rel=0.3)
    assert psi["alert_above"] == max(0.25, psi["noise_critical"])
    # the score, each feature and each backtest row share the false-alarm rate
    bands = report["backtest"]["bands"]
    assert report["noise"]["checks"] == 1 + len(report["feature_csi"]) + len(bands)
    assert report["backtest"]["confidence"] == pytest.approx(1 - report["noise"]["level_per_check"])
    assert report["noise"]["level_per_check"] == pytest.approx(0.01 / report["noise"]["checks"])
    assert report["feature_csi"], "the model should carry its reference feature sample"
    assert not [row for row in report["feature_csi"] if row["verdict"] == "act"]
    assert "as_of_month" not in {row["feature"] for row in report["feature_csi"]}
    assert report["backtest_status"] == "matured"
    bands = {row["band"]: row for row in report["backtest"]["bands"]}
    assert bands["all"]["accounts"] == report["population"]
    # The realised roll rate is the one `rollrisk build-training-set` labels for that as-of.
    labelled = tmp_path / "labelled.parquet"
    argv = ["build-training-set", "--data", str(scoring_world.portfolio), "--as-of", AS_OF]
    assert main([*argv, "--out", str(labelled)]) == 0
    labels = pl.read_parquet(labelled)["rolled_to_default"]
    assert bands["all"]["accounts"] == labels.len()
    assert bands["all"]["realised_rate"] == pytest.approx(labels.mean(), abs=1e-9)
    assert 0.0 < labels.mean() < 1.0
    markdown = (tmp_path / "out" / "monitor.md").read_text()
    assert "## Score stability (PSI)" in markdown and "## Backtest" in markdown
    assert "No threshold crossed" in markdown
    assert "its latest labelled months, 2024-10-31 to 2025-01-31" in markdown
    # the book's size against the reference months' (their accounts before sampling)
    size = report["population_size"]
    assert size["today"] == report["population"] and size["reference_months"] == 3
    assert size["verdict"] == "within" and 0.5 < size["ratio"] < 2.0
    assert "**Population size**: " in markdown


def test_recent_as_of_has_no_backtest(scoring_world, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    code, _, report = _monitor(
        scoring_world, scoring_world.portfolio, tmp_path / "out", "2025-03-31", capsys
    )
    assert report["backtest"] is None
    assert report["backtest_status"].startswith("not matured")
    assert "Not available: not matured" in (tmp_path / "out" / "monitor.md").read_text()
    assert code in (0, 3)


def test_drifted_portfolio_exits_3_naming_features(
    scoring_world, drifted_portfolio, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    code, printed, report = _monitor(
        scoring_world, drifted_portfolio, tmp_path / "out", AS_OF, capsys
    )
    assert code == 3 and report["verdict"] == "alert"
    drifted = {row["feature"] for row in report["feature_csi"] if row["verdict"] == "act"}
    assert {"utilisation_current", "utilisation_mean_6m"} <= drifted
    assert "ALERT feature utilisation_current: CSI" in printed
    assert "sampling noise alone at these sizes stays below" in printed
    for row in report["feature_csi"]:
        if row["verdict"] == "act":  # beyond both the practical threshold and the noise
            assert row["csi"] > row["alert_above"] >= max(0.25, row["noise_critical"])
    # features that do not depend on amounts did not move
    steady = {row["feature"]: row["csi"] for row in report["feature_csi"]}
    assert steady["product"] < 0.25
    assert report["exit_code"] == 3
    markdown = (tmp_path / "out" / "monitor.md").read_text()
    assert "**ALERT** feature utilisation_current" in markdown


def test_unknown_config_key_is_a_user_error(scoring_world, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    config = tmp_path / "bad.yaml"
    config.write_text("monitoring:\n  psi_alert: 0.2\n")
    code = main(
        ["monitor", "--model", scoring_world.model_uri, "--data", str(scoring_world.portfolio),
         "--config", str(config), "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert code == 2
    assert "unknown key monitoring.psi_alert" in capsys.readouterr().err


def test_a_mid_month_as_of_monitors_the_accounts_score_scores_that_day(
    scoring_world, tmp_path, monkeypatch, capsys
):
    from rollrisk.storage.atomic_output import read_current

    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    as_of = "2024-12-16"
    code, _, report = _monitor(
        scoring_world, scoring_world.portfolio, tmp_path / "out", as_of, capsys
    )
    assert report["as_of"] == as_of
    # the day counts are reported, not judged: said in both outputs, not only on stderr
    assert "days_since_statement" in report["not_judged_mid_month"]
    assert "**Not judged**: 2024-12-16 is not a month-end" in (
        (tmp_path / "out" / "monitor.md").read_text(encoding="utf-8")
    )
    # the month-end reference fits a mid-month book: billing days spread the accounts over
    # the cycle at every as-of, so days_since_statement and the DPD do not drift by the day
    assert code == 0, report["alerts"]
    argv = ["score", "--model", scoring_world.model_uri, "--data", str(scoring_world.portfolio),
            "--as-of", as_of, "--out", str(tmp_path / "scores")]  # fmt: skip
    assert main(argv) == 0
    _, scores = read_current(tmp_path / "scores")
    assert report["population"] == scores.height > 0
    # the 3 calendar months after December have matured: the backtest labels that day's accounts
    assert report["backtest_status"] == "matured"
    assert {row["band"]: row for row in report["backtest"]["bands"]}["all"]["accounts"] > 0


def test_a_shrunken_book_alerts_with_its_size(scoring_world, tmp_path, monkeypatch, capsys):
    """Found by an attacker: a book cut to 30% of its accounts (56 delinquent against about
    195 a month in the reference) passed with NO ALERT and no word of its size."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    folder = tmp_path / "portfolio"
    shutil.copytree(scoring_world.portfolio, folder, ignore=shutil.ignore_patterns("truth"))
    (accounts_file,) = folder.glob("accounts*.parquet")
    accounts = sorted(pl.read_parquet(accounts_file).get_column("account_id").to_list())
    kept = accounts[: len(accounts) * 3 // 10]
    for path in folder.rglob("*.parquet"):
        table = pl.read_parquet(path)
        if "account_id" in table.columns:
            table.filter(pl.col("account_id").is_in(kept)).write_parquet(path)
    code, printed, report = _monitor(scoring_world, folder, tmp_path / "out", AS_OF, capsys)
    size = report["population_size"]
    assert size["verdict"] == "act" and size["ratio"] < 0.5, size
    assert code == 3 and report["verdict"] == "alert"
    (alert,) = [a for a in report["alerts"] if a.startswith("population size: ")]
    assert f"{size['today']:,} delinquent accounts today against" in alert
    assert "ALERT population size" in printed


def test_a_book_with_no_delinquent_account_left_is_the_size_alert(
    scoring_world, tmp_path, monkeypatch, capsys
):
    """Found by an attacker: every statement current (the extract cut to nothing) ended in
    exit 2, "nothing to monitor", a usage error to a scheduler, not the loudest size alert."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    folder = tmp_path / "portfolio"
    shutil.copytree(scoring_world.portfolio, folder, ignore=shutil.ignore_patterns("truth"))
    for path in _statements_paths(folder):
        pl.read_parquet(path).with_columns(pl.lit(0).cast(pl.Int64).alias("dpd")).write_parquet(
            path
        )
    out = tmp_path / "out"
    out.mkdir()
    # an earlier run's report stayed beside the alert, its "no alert" read as this run's
    (out / "monitor.json").write_text('{"verdict": "no alert", "exit_code": 0}')
    (out / "monitor.md").write_text("no alert")
    code = main(
        ["monitor", "--model", scoring_world.model_uri, "--data", str(folder), "--as-of", AS_OF,
         "--out", str(out)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 3, err
    assert "ALERT population size: 0 delinquent accounts today against" in err and "-100%" in err
    assert not (out / "monitor.json").exists() and not (out / "monitor.md").exists()


def test_a_run_that_stops_before_its_report_makes_no_output_folder(
    scoring_world, tmp_path, monkeypatch, capsys
):
    """A missing --data left an empty --out folder behind."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    out = tmp_path / "out"
    code = main(["monitor", "--model", scoring_world.model_uri, "--data", str(tmp_path / "nosuch"),
                 "--out", str(out)])  # fmt: skip
    assert code == 2 and "nosuch" in capsys.readouterr().err
    assert not out.exists()
    # an earlier run's report is removed before anything can fail (a misspelt model here)
    out.mkdir()
    (out / "monitor.json").write_text('{"verdict": "no alert"}')
    code = main(["monitor", "--model", scoring_world.model_uri + "x", "--data",
                 str(scoring_world.portfolio), "--out", str(out)])  # fmt: skip
    assert code == 2 and not (out / "monitor.json").exists()
