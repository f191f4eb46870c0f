"""`rollrisk evaluate`: its advice on in-sample rows is one the user can follow."""

from __future__ import annotations

import re

import pytest

from rollrisk.cli import main

pytestmark = pytest.mark.slow


def test_the_in_sample_advice_can_be_followed(scoring_world, tmp_path, monkeypatch, capsys):
    """On the portfolio the model learnt from, evaluate warns that the rows are in-sample; it
    suggests --as-of-from only where that leaves labelled rows, and says plainly when the
    portfolio has no labelled month after the training data."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    argv = ["evaluate", "--model", scoring_world.model_uri, "--data", str(scoring_world.portfolio)]
    assert main([*argv, "--out", str(tmp_path / "all")]) == 0
    warning = next(
        line for line in capsys.readouterr().err.splitlines() if "[evaluate] WARNING" in line
    )
    assert "rows are of the months the model learnt from" in warning
    suggested = re.search(r"--as-of-from (\d{4}-\d{2}-\d{2})", warning)
    if suggested is None:
        assert "no labelled months after the model's training data" in warning
        assert "needs a later extract" in warning
    else:  # the advice, followed, evaluates something
        assert main([*argv, "--as-of-from", suggested[1], "--out", str(tmp_path / "later")]) == 0


def test_a_label_other_than_the_models_is_said(scoring_world, tmp_path, monkeypatch, capsys):
    """A config's window was ignored without a word (the model's own label is used), and a
    flag's was honoured without saying the model answers another question."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    config = tmp_path / "six.yaml"
    config.write_text("observation:\n  window_months: 6\n")
    argv = ["evaluate", "--model", scoring_world.model_uri, "--data", str(scoring_world.portfolio)]
    assert main([*argv, "--config", str(config), "--out", str(tmp_path / "config")]) == 0
    err = capsys.readouterr().err
    assert (
        "[evaluate] warning: the config's observation window_months: 6 is not used: a model is "
        "evaluated on the label it was trained on (window_months 3); give --window-months 6 to "
        "measure it on that label instead"
    ) in err
    assert "a question it was not trained to answer" not in err
    assert main([*argv, "--window-months", "6", "--out", str(tmp_path / "flag")]) == 0
    err = capsys.readouterr().err
    assert "is evaluated here with window_months 6 (the flag)" in err
    assert "is not used" not in err


def test_two_models_are_compared_on_the_same_rows(scoring_world, tmp_path, monkeypatch, capsys):
    """A data scientist compared a challenger with the champion by two runs and a hand-made
    diff; --against scores the same rows with both and gives the paired difference."""
    import json

    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    out = tmp_path / "paired"
    argv = ["evaluate", "--model", scoring_world.model_uri, "--data", str(scoring_world.portfolio),
            "--against", scoring_world.model_uri, "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "[evaluate] compared with model rollrisk-test v1" in err
    # the model compared against learnt from these rows too: said of it as of --model
    assert "[evaluate] WARNING: --against model rollrisk-test v1: " in err
    assert "rows are of the months the model learnt from" in err
    record = json.loads((out / "comparison.json").read_text())
    # a model against itself: the same figures, a difference of exactly 0 on every resample
    assert record["model_figures"] == record["against_figures"]
    assert record["difference"] == {"auc": 0.0, "brier": 0.0}
    assert record["interval_95"] == {"auc": [0.0, 0.0], "brier": [0.0, 0.0]}
    assert record["resamples"] == 500 and record["accounts"] <= record["rows"]
    assert "compared with" in (out / "report.md").read_text()
    # the same folder evaluated again without --against: the comparison was left beside a
    # report that no longer holds it
    assert main(argv[:-4] + ["--out", str(out)]) == 0
    assert not (out / "comparison.json").exists()
    assert "compared with" not in (out / "report.md").read_text()


def test_a_model_to_compare_against_that_does_not_load_stops_before_any_row_is_scored(
    scoring_world, tmp_path, monkeypatch, capsys
):
    """A misspelt --against alias failed only after the whole book was built and scored."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    argv = ["evaluate", "--model", scoring_world.model_uri, "--data", str(scoring_world.portfolio),
            "--against", "models:/rollrisk-test@champ", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot load model 'models:/rollrisk-test@champ'" in err
    assert "[evaluate] scoring" not in err
