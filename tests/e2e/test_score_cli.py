"""`rollrisk score` end to end on a simulated portfolio with a registered model."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from rollrisk.cli import main
from rollrisk.features.observations import ObservationSpec, observations
from rollrisk.storage.atomic_output import read_current
from rollrisk.storage.loader import load_portfolio

pytestmark = pytest.mark.slow
AS_OF = "2025-03-31"


def _score(world, out: Path, *extra: str) -> int:
    return main(
        ["score", "--model", world.model_uri, "--data", str(world.portfolio), "--as-of", AS_OF,
         "--out", str(out), *extra]
    )  # fmt: skip


def test_every_delinquent_account_is_scored_once_with_reasons_and_a_decision(
    scoring_world, tmp_path, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    assert _score(scoring_world, tmp_path / "scores", "--partitions", "3") == 0
    manifest, scored = read_current(tmp_path / "scores")

    portfolio = load_portfolio(scoring_world.portfolio)
    expected = observations(
        portfolio.statements, [pl.Series([AS_OF]).str.to_date().item()], ObservationSpec()
    )
    assert sorted(scored["account_id"]) == sorted(expected["account_id"])  # nothing lost or doubled
    assert scored["account_id"].n_unique() == scored.height
    assert manifest["counts"]["population"] == manifest["counts"]["scored"] == scored.height
    assert manifest["model"]["version"] == "1"
    assert len(manifest["partitions"]) == 3

    assert scored["probability"].is_between(0, 1).all()
    assert (scored["expected_loss"] - scored["exposure"] * scored["probability"]).abs().max() < 1e-9
    for text in scored["reasons"]:
        reasons = json.loads(text)
        assert len(reasons) <= 4
        assert all(r["contribution"] > 0 for r in reasons)
        assert [r["rank"] for r in reasons] == list(range(1, len(reasons) + 1))
        assert all(r["text_en"] and r["text_zh"] for r in reasons)
    assert set(scored["segment"]) <= {
        "capacity_shock", "low_willingness", "unreachable", "forgetful", "seasonal", "general"
    }  # fmt: skip
    assert scored["policy_rule"].str.contains("rule POL-").all()
    for actions in scored["actions"]:
        for action in json.loads(actions):
            hour = int(action["at"][11:13])
            if action["action"] in ("reminder", "call"):
                assert 8 <= hour < 21  # the contact window held


def test_same_inputs_same_bytes_and_a_rerun_reuses_the_result(
    scoring_world, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    assert _score(scoring_world, tmp_path / "a") == 0
    assert _score(scoring_world, tmp_path / "b") == 0
    first, _ = read_current(tmp_path / "a")
    second, _ = read_current(tmp_path / "b")
    assert first["run_key"] == second["run_key"]
    assert [p["sha256"] for p in first["partitions"]] == [p["sha256"] for p in second["partitions"]]
    capsys.readouterr()
    assert _score(scoring_world, tmp_path / "a") == 0
    assert "resumed: 1 of 1 partitions were already written" in capsys.readouterr().err


def test_workers_write_the_same_bytes_as_one_process(scoring_world, tmp_path, monkeypatch):
    """Partitions scored in worker processes are the partitions scored in this process: the
    same run key, the same files, byte for byte (one worker per partition and fewer)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    runs = {}
    for workers in ("1", "2", "4"):
        out = tmp_path / f"workers-{workers}"
        assert _score(scoring_world, out, "--partitions", "4", "--workers", workers) == 0
        runs[workers], _ = read_current(out)
    digests = {w: [p["sha256"] for p in m["partitions"]] for w, m in runs.items()}
    assert len(digests["1"]) == 4
    assert digests["2"] == digests["1"] and digests["4"] == digests["1"]
    assert {m["run_key"] for m in runs.values()} == {runs["1"]["run_key"]}


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_workers_must_be_a_positive_number_or_auto(scoring_world, tmp_path, value, capsys):
    with pytest.raises(SystemExit) as stop:
        _score(scoring_world, tmp_path / "scores", "--workers", value)
    assert stop.value.code == 2
    assert "expected a whole number of at least 1 or auto" in capsys.readouterr().err


def test_workers_with_the_spark_engine_are_refused(scoring_world, tmp_path, capsys):
    assert _score(scoring_world, tmp_path / "scores", "--engine", "spark", "--workers", "2") == 2
    assert "the worker processes are the local engine's" in capsys.readouterr().err
    assert not (tmp_path / "scores").exists()


def test_the_spark_engine_without_pyspark_is_one_line_naming_the_extra(
    scoring_world, tmp_path, monkeypatch, capsys
):
    import sys

    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    # `import pyspark` fails as where the extra is not installed (this venv has it)
    for name in [n for n in sys.modules if n == "pyspark" or n.startswith("pyspark.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pyspark", None)
    assert _score(scoring_world, tmp_path / "scores", "--engine", "spark") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "ModuleNotFoundError" not in err
    assert "rollrisk score: error: --engine spark needs PySpark" in err
    assert "pip install 'rollrisk[spark]'" in err
    assert "loading model" not in err  # refused first (found by an attacker: after 8-13 s)
    assert not (tmp_path / "scores").exists()


def test_a_model_folder_is_named_as_unregistered_and_a_missing_one_as_no_folder(
    scoring_world, tmp_path, monkeypatch, capsys
):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    client = MlflowClient(tracking_uri=scoring_world.tracking_uri)
    name, alias = scoring_world.model_uri.removeprefix("models:/").split("@")
    source = client.get_model_version_by_alias(name, alias).source  # models:/m-<id>
    location = client.get_logged_model(source.removeprefix("models:/")).artifact_location
    folder = location.removeprefix("file://")
    argv = ["score", "--data", str(scoring_world.portfolio), "--as-of", AS_OF]
    capsys.readouterr()
    assert main([*argv, "--model", folder, "--out", str(tmp_path / "scores")]) == 0
    out = capsys.readouterr().out
    assert f"with the unregistered model at {folder}" in out and "vunregistered" not in out

    missing = tmp_path / "nonexistent_model_dir"
    assert main([*argv, "--model", str(missing), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert f"no model folder at {missing} (a model folder holds the MLmodel file" in err
    assert "sqlite" not in err and not (tmp_path / "x").exists()


def test_a_model_logged_with_other_library_versions_is_scored_with_a_warning_naming_them(
    scoring_world, tmp_path, monkeypatch, capsys
):
    import shutil
    from importlib.metadata import version

    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    client = MlflowClient(tracking_uri=scoring_world.tracking_uri)
    name, alias = scoring_world.model_uri.removeprefix("models:/").split("@")
    source = client.get_model_version_by_alias(name, alias).source
    location = client.get_logged_model(source.removeprefix("models:/")).artifact_location
    folder = tmp_path / "model"
    shutil.copytree(location.removeprefix("file://"), folder)
    argv = ["score", "--data", str(scoring_world.portfolio), "--as-of", AS_OF]
    capsys.readouterr()
    assert main([*argv, "--model", str(folder), "--out", str(tmp_path / "same")]) == 0
    assert "was logged with" not in capsys.readouterr().err  # the versions it was logged with

    requirements = folder / "requirements.txt"
    pinned = requirements.read_text()
    assert f"lightgbm=={version('lightgbm')}" in pinned
    requirements.write_text(pinned.replace(f"lightgbm=={version('lightgbm')}", "lightgbm==3.0.0"))
    assert main([*argv, "--model", str(folder), "--out", str(tmp_path / "other")]) == 0
    err = capsys.readouterr().err
    assert (
        f"rollrisk score: warning: {folder}: the model was logged with lightgbm 3.0.0, and this "
        f"environment has {version('lightgbm')}: its scores may differ" in err
    )
    assert "polars" not in err  # only what differs


def test_environment_mismatches_name_each_pinned_package_and_the_python_version(tmp_path):
    import platform
    from importlib.metadata import version

    from rollrisk.storage.registry import environment_mismatches

    (tmp_path / "requirements.txt").write_text(
        f"polars=={version('polars')}\nnumpy==0.1\nno-such-package-rollrisk==1.0\n"
        "pandas>=2\n-r other.txt\n"
    )
    found = environment_mismatches(tmp_path, {"python_function": {"python_version": "3.8.10"}})
    assert found == [
        f"the model was logged with numpy 0.1, and this environment has {version('numpy')}: "
        "its scores may differ from those it was validated with (install numpy==0.1, or "
        "retrain)",
        "the model was logged with no-such-package-rollrisk 1.0, and this environment has no "
        "no-such-package-rollrisk: its scores may differ from those it was validated with "
        "(install no-such-package-rollrisk==1.0, or retrain)",
        f"the model was logged with Python 3.8.10, and this is Python "
        f"{platform.python_version()}: it may not load or score alike",
    ]
    running = platform.python_version()
    (tmp_path / "requirements.txt").unlink()  # a model logged without pins: nothing compared
    assert environment_mismatches(tmp_path, {"python_function": {"python_version": running}}) == []


def test_missing_alias_is_a_clear_error(scoring_world, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    code = main(
        ["score", "--model", "models:/rollrisk-test@champion", "--data", str(scoring_world.portfolio),
         "--out", str(tmp_path / "x")]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot load model 'models:/rollrisk-test@champion'" in err
    assert "`rollrisk promote` makes it `champion`" in err
    assert not (tmp_path / "x" / "current").exists()


def test_the_plan_is_reported_against_a_capacity_and_a_plan_over_it_warns(
    scoring_world, tmp_path, monkeypatch, capsys
):
    from rollrisk.strategies.capacity import planned_load

    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    tight = tmp_path / "capacity.yaml"
    tight.write_text(
        "agent_calls_per_day: 0\nfield_visits_per_month: 0\nworking_days_per_month: 22\n"
        "auto_margin: 0.1\nauto_lookback_months: 6\n"
    )
    capsys.readouterr()
    assert _score(scoring_world, tmp_path / "scores", "--capacity", str(tight)) == 0
    out, err = capsys.readouterr()
    _, scored = read_current(tmp_path / "scores")
    load = planned_load(scored["actions"].to_list())
    assert load.agent_calls > 0  # the ladders call: a capacity of 0 must warn
    assert f"makes {load.agent_calls:,}, capacity 0" in err
    assert "WARNING: agent calls a month" in err and "EXCEEDS" in err
    assert "contact capacity: 0 agent calls a day" in out


def test_a_config_s_label_settings_the_model_does_not_use_are_named(
    scoring_world, tmp_path, monkeypatch, capsys
):
    """The model predicts the label it was trained on (90+ DPD within 3 months): a config asking
    score for 60+ DPD within 6 months was dropped without a word."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    config = tmp_path / "sixty.yaml"
    config.write_text("observation:\n  default_dpd: 60\n  max_dpd: 59\n  window_months: 6\n")
    assert _score(scoring_world, tmp_path / "scores", "--config", str(config)) == 0
    err = capsys.readouterr().err
    assert (
        "warning: the config's observation default_dpd: 60 is not used: the model predicts the "
        "label it was trained on (default_dpd 90); to score that label, train a model with "
        "default_dpd 60" in err
    )
    assert "observation window_months: 6 is not used" in err and "(window_months 3)" in err
    assert "max_dpd" not in err  # the population range is the config's: 1-59 DPD
    manifest, scored = read_current(tmp_path / "scores")
    assert manifest["counts"]["scored"] == scored.height > 0
    assert scored["dpd"].max() <= 59
    # the config that agrees with the model says nothing
    config.write_text("observation:\n  default_dpd: 90\n  window_months: 3\n")
    assert _score(scoring_world, tmp_path / "again", "--config", str(config)) == 0
    assert "is not used" not in capsys.readouterr().err


def test_a_population_past_the_model_s_default_is_named_as_cut():
    from rollrisk.arguments import label_settings_not_used

    used = ObservationSpec(default_dpd=60, max_dpd=59)  # a 60+ DPD model
    (line,) = label_settings_not_used({"max_dpd": 89}, used)
    assert line == (
        "the config's observation max_dpd: 89 is not used: the population ends below the "
        "model's default of 60 DPD (max_dpd 59)"
    )
    assert label_settings_not_used({"min_dpd": 1, "max_dpd": 59}, used) == []


def test_more_partitions_than_accounts_is_refused(scoring_world, tmp_path, monkeypatch, capsys):
    """Found by an attacker: --partitions 1000000 on a 3,000-account book ran 10 minutes."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    assert _score(scoring_world, tmp_path / "scores", "--partitions", "1000000") == 2
    err = capsys.readouterr().err
    assert "partitions: 1,000,000 is more than the" in err and "accounts to score" in err
