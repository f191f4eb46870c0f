"""End to end: simulate -> train (real CLI) -> promote refuses a worse model, accepts a better one
-> evaluate the champion -> a fresh process loads models:/NAME@champion. The registered model is
the deployed refit (latest labelled months), the gates read the evaluation fit, and train's
report agrees with promote. MLflow lives in a temporary SQLite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import rollrisk
from rollrisk.cli import main

pytestmark = pytest.mark.slow

MODEL = "rollrisk-e2e"
CONFIG = """
training:
  model_name: {model}
  experiment_name: e2e
  split: {{validation_months: 2, test_months: 2, embargo_months: 1}}
  calibration: {{method: platt}}
  lightgbm: {lightgbm}
promotion:
  min_auc_gain: 0.005
  max_ece: 0.25
  max_psi: 2.0
  require_beats_baselines: false  # the weak model is meant to lose; tested in unit tests
  # 1,200 accounts give a few hundred rows per part: the data minimums are unit-tested
  min_train_rows: 0
  min_train_positives: 0
  min_test_rows: 0
  min_test_positives: 0
"""
WEAK = (
    "{n_estimators: 1, num_leaves: 2, min_child_samples: 20, early_stopping_rounds: 1, n_jobs: 1}"
)
STRONG = "{n_estimators: 60, num_leaves: 7, min_child_samples: 20, learning_rate: 0.1, early_stopping_rounds: 10, n_jobs: 1}"


def _config(tmp_path: Path, name: str, lightgbm: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(CONFIG.format(model=MODEL, lightgbm=lightgbm))
    return path


def _aliases(tracking_uri: str) -> dict[str, str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    return {
        alias: str(version) for alias, version in client.get_registered_model(MODEL).aliases.items()
    }


def _gate_lines(output: str) -> list[str]:
    """The gate lines (``pass ...``, ``FAIL ...``, ``no champion ...``) a job printed."""
    return [
        line.strip()
        for line in output.splitlines()
        if line.strip().startswith(("pass ", "FAIL ", "no champion yet"))
    ]


def _check_deployment(tracking_uri: str, portfolio: Path) -> None:
    """The registered model is the refit on the latest labelled months, not the judged fit:
    its run records both, and the two score the out-of-time rows differently."""
    import numpy as np
    from mlflow import MlflowClient

    from rollrisk.api import build_training_set, load_model, load_portfolio
    from rollrisk.models.roll_model import RollModel
    from rollrisk.storage.tracking import (
        EVALUATION_MODEL_ARTIFACT,
        OOT_ROWS_ARTIFACT,
        read_run_json,
        read_run_parquet,
    )

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    version = client.get_model_version(MODEL, "1")
    params = client.get_run(version.run_id).data.params
    labelled = sorted(
        build_training_set(load_portfolio(portfolio))["as_of"].cast(str).unique().to_list()
    )
    # 15 months of statements, a 3-month window: as-of 2024-01..2024-12 are labelled; the
    # evaluation tests on the last 2 and validates on 2 before an embargo of 1 (the config's)
    assert params["deployment.validation_as_of"] == f"{labelled[-2]}..{labelled[-1]}"
    assert params["deployment.train_as_of"] == f"{labelled[0]}..{labelled[-4]}"
    assert params["split.out-of-time_as_of"] == f"{labelled[-2]}..{labelled[-1]}"
    assert params["split.validation_as_of"] == f"{labelled[-5]}..{labelled[-4]}"
    rows = read_run_parquet(version.run_id, OOT_ROWS_ARTIFACT)
    evaluation = RollModel.from_dict(read_run_json(version.run_id, EVALUATION_MODEL_ARTIFACT))
    deployed = load_model(f"models:/{MODEL}/1", tracking_uri=tracking_uri)
    assert not np.allclose(evaluation.predict_proba(rows), deployed.predict_proba(rows))
    metrics = client.get_run(version.run_id).data.metrics
    assert metrics["rows_deployment_train"] > metrics["rows_train"]
    assert 0.0 <= metrics["oot_smooth_ece"] < 0.25


def test_train_then_promotion_gates_then_fresh_process_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.chdir(tmp_path)
    portfolio = tmp_path / "portfolio"
    assert (
        main(
            [
                "simulate",
                "--accounts",
                "3000",
                "--months",
                "15",
                "--seed",
                "3",
                "--out",
                str(portfolio),
            ]
        )
        == 0
    )
    weak, strong = _config(tmp_path, "weak", WEAK), _config(tmp_path, "strong", STRONG)

    def train(config: Path, out: str) -> None:
        assert (
            main(
                [
                    "train",
                    "--data",
                    str(portfolio),
                    "--config",
                    str(config),
                    "--out",
                    str(tmp_path / out),
                ]
            )
            == 0
        )

    # 1. A weak first model becomes champion: no champion to beat, calibration and PSI pass.
    train(weak, "weak1")
    report = capsys.readouterr().out
    assert "roll_rate_chain" in report and "scorecard" in report and "report:" in report
    assert (tmp_path / "weak1" / "report.html").is_file()
    assert "This run would pass every gate that needs no champion" in report
    trained_gates = _gate_lines(report)
    assert main(["promote", "--config", str(weak)]) == 0
    assert _aliases(tracking_uri) == {"challenger": "1", "champion": "1"}
    promoted = capsys.readouterr().out
    # the same gates with the same figures in train's output and promote's
    assert _gate_lines(promoted) == trained_gates
    assert "no champion yet: the discrimination gate does not apply" in trained_gates
    _check_deployment(tracking_uri, portfolio)

    # 2. A better model is accepted.
    train(strong, "strong")
    # train judges the gates that need no champion, and says the champion exists
    assert (
        "discrimination: not judged by train: `rollrisk promote` scores champion v1 on this "
        "run's out-of-time rows"
    ) in (tmp_path / "strong" / "report.md").read_text()
    identity = json.loads((tmp_path / "strong" / "run.json").read_text())  # the model it describes
    assert identity["registered"] == f"models:/{MODEL}/2" and identity["run_id"]
    assert main(["promote", "--config", str(strong)]) == 0
    out = capsys.readouterr().out
    assert "pass discrimination" in out and "promoted" in out
    assert "the champion's evaluation fit scored on them" in out  # like with like
    assert _aliases(tracking_uri)["champion"] == "2"

    # 3. A worse challenger is refused, with the reason, and the champion stays.
    train(weak, "weak2")
    capsys.readouterr()
    assert main(["promote", "--config", str(weak)]) == 1
    out = capsys.readouterr().out
    assert "FAIL discrimination" in out and "refused" in out
    assert _aliases(tracking_uri) == {"challenger": "3", "champion": "2"}

    # 4. Any registered model evaluates on any portfolio into a report.
    evaluate = ["evaluate", "--model", f"models:/{MODEL}@champion", "--data", str(portfolio)]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert main([*evaluate, "--out", str(tmp_path / "evaluation")]) == 0
    # said once, by the job, not again as the Python API's warning
    assert not [w for w in seen if issubclass(w.category, rollrisk.RollriskWarning)]
    captured = capsys.readouterr()
    assert "report:" in captured.out
    report = (tmp_path / "evaluation" / "report.md").read_text()
    assert "roll_model" in report
    # on the portfolio it learnt from, the figures are in-sample: said on stderr and in the report
    warning = next(line for line in captured.err.splitlines() if "WARNING" in line)
    assert "rows are of the months the model learnt from" in warning
    # no labelled month after the training data here: --as-of-from would leave nothing
    assert "--as-of-from" not in warning
    assert "no labelled months after the model's training data" in warning
    assert "in-sample rows" in report and "flatter it" in report

    # 5. The champion loads and scores raw features in a fresh process.
    example = next((tmp_path / "mlartifacts").rglob("input_example.json"))
    script = (
        "import json, sys, mlflow, pandas as pd\n"
        f"model = mlflow.pyfunc.load_model('models:/{MODEL}@champion')\n"
        "payload = json.load(open(sys.argv[1]))\n"
        "frame = pd.DataFrame(payload['data'], columns=payload['columns'])\n"
        "frame.loc[0, 'dpd_current'] = None  # a missing value in an integer-like column\n"
        "inputs = model.metadata.signature.inputs.inputs\n"
        "assert all(c.required and str(c.type) in ('DataType.double', 'DataType.string') for c in inputs)\n"
        "print(json.dumps([float(p) for p in model.predict(frame)]))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script, str(example)],
        capture_output=True,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri},
        cwd=tmp_path,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    probabilities = json.loads(completed.stdout.strip().splitlines()[-1])
    assert len(probabilities) == 5 and all(0.0 < p < 1.0 for p in probabilities)

    # 6. A rollback returns the champion to a version that passed the gates once, and only to
    #    one: v3 was refused, v9 does not exist.
    capsys.readouterr()
    assert main(["promote", "--config", str(weak), "--rollback-to", "3"]) == 2
    assert "v3 was never promoted through the gates (its promotion tag is 'refused')" in (
        capsys.readouterr().err
    )
    assert main(["promote", "--config", str(weak), "--rollback-to", "9"]) == 2
    assert "has no version 9" in capsys.readouterr().err
    assert main(["promote", "--config", str(weak), "--rollback-to", "1", "--dry-run"]) == 0
    assert "dry run: would roll back" in capsys.readouterr().out
    assert _aliases(tracking_uri)["champion"] == "2"
    assert main(["promote", "--config", str(weak), "--rollback-to", "v1"]) == 0
    assert f"rolled back: models:/{MODEL}@champion is now v1 (was v2)" in capsys.readouterr().out
    assert _aliases(tracking_uri) == {"challenger": "3", "champion": "1"}
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    assert client.get_model_version(MODEL, "1").tags["rollback"].startswith("champion v2 -> v1 at ")
    assert client.get_model_version(MODEL, "2").tags["rolled_back"].startswith("champion v2 -> v1")

    # 7. The version rolled back, challenger again (a nightly `promote` finding it there): the
    #    plain promote undid the rollback without a word; it now says so and refuses.
    client.set_registered_model_alias(MODEL, "challenger", "2")
    capsys.readouterr()
    assert main(["promote", "--config", str(strong)]) == 1
    out = capsys.readouterr().out
    assert "FAIL rollback: v2 was rolled back from champion (champion v2 -> v1 at " in out
    assert _aliases(tracking_uri)["champion"] == "1"
    assert main(["promote", "--config", str(strong), "--after-rollback", "--dry-run"]) == 0
    assert "FAIL rollback" not in capsys.readouterr().out
    # the refusal overwrote v2's promotion tag, and a rollback to v2 (forward again, once v1
    # misbehaves) was refused as "never promoted through the gates"
    assert client.get_model_version(MODEL, "2").tags["promotion"] == "refused"
    assert main(["promote", "--config", str(strong), "--rollback-to", "2", "--dry-run"]) == 0
    assert "dry run: would roll back" in capsys.readouterr().out
    # "01" or " 1" is version 1, the champion: it set the alias to "01" and tagged v1 as
    # rolled back from itself
    assert main(["promote", "--config", str(strong), "--rollback-to", " 01"]) == 0
    assert "v1 is already champion; nothing to do" in capsys.readouterr().out
    assert "rolled_back" not in client.get_model_version(MODEL, "1").tags
    with pytest.raises(SystemExit) as stop:
        main(["promote", "--config", str(strong), "--rollback-to", "one"])
    assert stop.value.code == 2
    assert "expected a version number such as 3, got 'one'" in capsys.readouterr().err

    # 8. A challenger trained on another label (a 2-month window against the champion's 3):
    #    promote compared and replaced across the two without a word; it now refuses.
    assert main(["train", "--data", str(portfolio), "--config", str(strong),
                 "--window-months", "2", "--out", str(tmp_path / "window2")]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["promote", "--config", str(strong), "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "FAIL label: the challenger is trained on another label than the champion " in out
    assert "window_months 2 (challenger v4) against 3 (champion v1)" in out
    main(["promote", "--config", str(strong), "--dry-run", "--new-label"])
    assert "FAIL label" not in capsys.readouterr().out


def test_promote_without_a_challenger_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()  # a store, with no model in it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    assert main(["promote", "--model-name", "nothing-here"]) == 2
    assert "has no version with alias 'challenger'" in capsys.readouterr().err
