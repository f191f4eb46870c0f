"""End to end on short histories: six monthly statements per account and no action logs.

With the shipped defaults, ``train`` shrinks the split to what the history holds and says so,
warns that its feature windows are not complete, and registers a challenger; ``promote``
judges it by the same gates ``train`` printed and refuses a model evaluated on too little;
``score`` runs with the challenger named (``--model``, the one flag). Five months is too
short for any out-of-time split: ``train`` refuses in one line naming the smallest history
that works.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rollrisk.cli import main
from rollrisk.storage.atomic_output import read_current

pytestmark = pytest.mark.slow

MODEL = "rollrisk-roll-to-default"  # the shipped default name: nothing is configured


def _portfolio(root: Path, months: int, accounts: int) -> Path:
    """A simulated portfolio of accounts and statements only (the action logs removed)."""
    portfolio = root / f"portfolio_{months}m"
    argv = ["simulate", "--accounts", str(accounts), "--months", str(months), "--seed", "21",
            "--out", str(portfolio)]  # fmt: skip
    assert main(argv) == 0
    for optional in ("collection_actions", "treatments"):
        for path in portfolio.glob(f"{optional}*"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return portfolio


def _gate_lines(output: str) -> list[str]:
    return [
        line.strip()
        for line in output.splitlines()
        if line.strip().startswith(("pass ", "FAIL ", "no champion yet"))
    ]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri


def test_six_months_without_action_logs_train_promote_and_score(
    tmp_path: Path, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow import MlflowClient

    portfolio = _portfolio(tmp_path, months=6, accounts=16_000)
    capsys.readouterr()

    # train, shipped defaults: 3 labelled as-of dates (January..March; April's window needs
    # July), so the 3 | 3 split with a 2-month embargo shrinks to 1 | 1 | 1 without one
    assert main(["train", "--data", str(portfolio), "--out", str(tmp_path / "train")]) == 0
    captured = capsys.readouterr()
    trained = captured.out + captured.err
    assert (
        "short history: the history has 3 labelled as-of dates (2024-01-31 .. 2024-03-31) and "
        "the configured split needs 11: validation 3 -> 1 month(s), test 3 -> 1 month(s), "
        "embargo 2 -> 0 month(s)"
    ) in trained
    assert "the out-of-time figures are somewhat optimistic" in trained
    assert "feature windows not yet complete in the deployed model's training rows" in trained
    assert "12-month windows 100%" in trained and "statements start in 2024-01" in trained
    assert "no collection_actions in the training data" in trained
    assert "This run would be REFUSED by `rollrisk promote`" in trained
    assert "warning: small or thin training data:" in captured.err
    trained_gates = _gate_lines(captured.out)
    assert any(
        line.startswith("FAIL data: the evaluation rests on too little") for line in trained_gates
    )
    report = (tmp_path / "train" / "report.md").read_text(encoding="utf-8")
    assert "## Promotion gates" in report and "short history" in report

    client = MlflowClient(tracking_uri=store, registry_uri=store)
    version = client.get_model_version_by_alias(MODEL, "challenger")
    params = client.get_run(version.run_id).data.params
    assert params["split.train_as_of"] == "2024-01-31..2024-01-31"
    assert params["split.validation_as_of"] == "2024-02-29..2024-02-29"
    assert params["split.out-of-time_as_of"] == "2024-03-31..2024-03-31"
    assert params["split.embargo_months_used"] == "0"
    # the deployed model: the same procedure shifted forward, on every labelled month
    assert params["deployment.train_as_of"] == "2024-01-31..2024-02-29"
    assert params["deployment.validation_as_of"] == "2024-03-31..2024-03-31"

    # promote, defaults: the same gates, with the same figures; a refusal on the data minimum
    assert main(["promote"]) == 1
    promoted = capsys.readouterr().out
    assert _gate_lines(promoted) == trained_gates
    (data_gate,) = [line for line in _gate_lines(promoted) if "data:" in line]
    assert "training rows < 2000" in data_gate
    assert "refused: champion stays at no version" in promoted

    # evaluate: its rows' windows are as short, and it says so as train does (it did not)
    argv = ["evaluate", "--model", f"models:/{MODEL}@challenger", "--data", str(portfolio)]
    assert main([*argv, "--out", str(tmp_path / "evaluation")]) == 0
    err = capsys.readouterr().err
    assert "feature windows not yet complete in the evaluated rows (" in err
    assert "the figures measure the model on truncated histories" in err

    # score: the one flag names the challenger, since no model passed the gates
    out = tmp_path / "scores"
    argv = ["score", "--data", str(portfolio), "--out", str(out),
            "--model", f"models:/{MODEL}@challenger"]  # fmt: skip
    assert main(argv) == 0
    manifest, scored = read_current(out)
    assert manifest["model"]["version"] == str(version.version)
    assert scored.height == manifest["counts"]["population"] > 100
    assert scored["probability"].is_between(0, 1).all()


def test_five_months_are_refused_in_one_line_naming_what_would_work(
    tmp_path: Path, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    portfolio = _portfolio(tmp_path, months=5, accounts=3_000)
    capsys.readouterr()
    assert main(["train", "--data", str(portfolio), "--out", str(tmp_path / "train")]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("rollrisk train: error:")]
    assert "an out-of-time split needs at least 3 labelled as-of dates" in line
    assert "got 2 (2024-01-31 .. 2024-02-29)" in line and "window_months" in line
    assert "Traceback" not in err
