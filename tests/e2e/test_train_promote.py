"""End to end: simulate -> train (real CLI) -> promote refuses a worse model, accepts a better one
-> evaluate the champion -> a fresh process loads models:/NAME@champion. MLflow lives in a
temporary SQLite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
                "1200",
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
    assert main(["promote", "--config", str(weak)]) == 0
    assert _aliases(tracking_uri) == {"challenger": "1", "champion": "1"}

    # 2. A better model is accepted.
    train(strong, "strong")
    assert main(["promote", "--config", str(strong)]) == 0
    out = capsys.readouterr().out
    assert "pass discrimination" in out and "promoted" in out
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
    assert main([*evaluate, "--out", str(tmp_path / "evaluation")]) == 0
    assert "report:" in capsys.readouterr().out
    assert "roll_model" in (tmp_path / "evaluation" / "report.md").read_text()

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


def test_promote_without_a_challenger_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    assert main(["promote", "--model-name", "nothing-here"]) == 2
    assert "has no version with alias 'challenger'" in capsys.readouterr().err
