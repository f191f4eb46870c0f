"""`rollrisk demo` runs each stage as its own `python -m rollrisk` process and stops at the
first stage that fails (the whole demo runs in tests/e2e/test_wheel_install.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rollrisk.cli import main
from rollrisk.pipelines import demo


def test_python_m_rollrisk_is_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "rollrisk", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("rollrisk ")


def test_an_allowed_exit_code_goes_on_and_a_failing_stage_stops_the_demo(
    tmp_path, monkeypatch, capfd
):
    missing = str(tmp_path / "no-such-portfolio")
    planned = [
        demo.Stage("a refusal the demo accepts", ["validate", "--data", missing], allowed=(0, 2)),
        demo.Stage("a stage that fails", ["validate", "--data", missing]),
        demo.Stage("a stage after the failure", ["validate", "--data", missing]),
    ]
    monkeypatch.setattr(demo, "stages", lambda args, *state: planned)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    out, err = capfd.readouterr()
    assert (
        "== [1/3] a refusal the demo accepts" in out
        and f"$ rollrisk validate --data {missing}" in out
    )
    assert "== [2/3] a stage that fails" in out and "[3/3]" not in out
    assert "no-such-portfolio" in err  # the stage's own error, streamed from its process
    assert "stage 'a stage that fails' failed with exit code 2; see its output above" in err


def test_the_demo_learns_from_the_lender_s_experiment_and_shows_it_on_the_page(tmp_path):
    import argparse

    args = argparse.Namespace(accounts=3000, months=24, seed=7, out=tmp_path / "demo")
    planned = {stage.argv[0]: stage.argv for stage in demo.stages(args)}
    order = list(planned)
    assert order[-4:] == ["simulate-policy", "logged-decisions", "learn-policy", "report"]

    def value(argv, flag):
        return argv[argv.index(flag) + 1]

    # the table learn-policy reads is the one logged-decisions writes, from the scored model
    assert value(planned["learn-policy"], "--logged") == value(planned["logged-decisions"], "--out")
    assert value(planned["logged-decisions"], "--model") == value(planned["score"], "--model")
    assert value(planned["learn-policy"], "--experiments").endswith("experiments.yaml")
    # and the page shows what learn-policy wrote
    assert value(planned["report"], "--learned") == value(planned["learn-policy"], "--out")


def test_without_a_champion_both_model_stages_use_the_challenger(tmp_path, monkeypatch, capsys):
    ran: list[list[str]] = []

    def fake_stage(argv):
        ran.append(list(argv))
        return 1 if argv[0] == "promote" else 0  # the gates refuse

    monkeypatch.setattr(demo, "run_stage", fake_stage)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    models = {argv[0]: argv[argv.index("--model") + 1] for argv in ran if "--model" in argv}
    assert models == {"score": demo.CHALLENGER, "logged-decisions": demo.CHALLENGER}
    out = capsys.readouterr().out
    assert "learned policy:" in out and "logged decisions:" in out


def test_an_experiment_too_small_to_learn_from_gives_a_report_without_a_learned_policy(
    tmp_path, monkeypatch, capsys
):
    """3,000 accounts x 24 months, seed 5, passed the size guard and stopped at learn-policy
    (a bundle given to one account): its exit code 3 now lets the demo go on, and the report
    is written without --learned."""
    ran: list[list[str]] = []

    def fake_stage(argv):
        ran.append(list(argv))
        return 3 if argv[0] == "learn-policy" else 0  # not enough logged evidence

    monkeypatch.setattr(demo, "run_stage", fake_stage)
    argv = ["demo", "--accounts", "3000", "--months", "24", "--seed", "5",
            "--out", str(tmp_path / "demo")]  # fmt: skip
    assert main(argv) == 0
    assert [a[0] for a in ran][-2:] == ["learn-policy", "report"]
    report = ran[-1]
    assert "--learned" not in report and report[report.index("--out") + 1].endswith(
        "strategy_report.html"
    )
    out = capsys.readouterr().out
    assert "too small to learn a policy from" in out
    assert "the report goes without a learned policy" in out
    assert "learned policy:   none (the experiment was too small to learn from)" in out
    # any other failure of learn-policy still stops the demo before its report
    ran.clear()
    failing = {"learn-policy": 2}
    monkeypatch.setattr(demo, "run_stage", lambda a: ran.append(list(a)) or failing.get(a[0], 0))
    assert main(argv) == 2
    assert ran[-1][0] == "learn-policy"


def test_the_history_ends_at_the_same_month_whatever_its_length(tmp_path):
    import argparse

    assert demo.first_month(36) == "2023-01" and demo.first_month(24) == "2024-01"
    assert demo.first_month(1) == demo.LAST_MONTH == "2025-12"
    assert demo.first_month(13, "2025-01") == "2024-01"
    for months, start in ((36, "2023-01"), (24, "2024-01"), (48, "2022-01")):
        args = argparse.Namespace(accounts=3000, months=months, seed=7, out=tmp_path / "demo")
        simulate = demo.stages(args)[0].argv
        assert simulate[simulate.index("--start-month") + 1] == start
        assert simulate[simulate.index("--months") + 1] == str(months)


@pytest.mark.parametrize(("flags", "got"), [(["--months", "6"], "got 60,000 x 6"),
                                            (["--accounts", "1000"], "got 1,000 x 36")])  # fmt: skip
def test_a_demo_too_small_to_finish_is_refused_before_its_first_stage(
    tmp_path, monkeypatch, capsys, flags, got
):
    ran: list[list[str]] = []
    monkeypatch.setattr(demo, "run_stage", lambda argv: ran.append(list(argv)) or 0)
    assert main(["demo", "--out", str(tmp_path / "demo"), *flags]) == 2
    err = capsys.readouterr().err
    assert "the demo needs at least --months 12 and --accounts x --months of 45,000" in err
    assert f"({got})" in err
    assert ran == []


def test_the_demo_keeps_to_its_own_store_whatever_mlflow_tracking_uri_says(
    tmp_path, monkeypatch, capsys
):
    """With MLFLOW_TRACKING_URI set (a lender's own registry), the demo registered its models
    there and moved the champion alias of rollrisk-roll-to-default to a model of simulated
    data. It now keeps to runs/mlflow.db under the working folder, says so, and takes another
    store only from --tracking-uri."""
    seen: list[str | None] = []

    def fake_stage(argv):
        seen.append(os.environ.get("MLFLOW_TRACKING_URI"))
        return 0

    monkeypatch.setattr(demo, "run_stage", fake_stage)
    monkeypatch.chdir(tmp_path)
    production = "sqlite:////lender/registry/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", production)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    own = f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"
    assert seen and set(seen) == {own}
    # its folder made, as train makes it when nothing is set: with the variable set, train
    # took a missing folder for a typo and the demo stopped at stage 4
    assert (tmp_path / "runs").is_dir()
    out = capsys.readouterr().out
    assert (
        f"note: MLFLOW_TRACKING_URI is set ({production}); the demo keeps to its own store" in out
    )
    assert os.environ["MLFLOW_TRACKING_URI"] == production  # restored for the caller
    seen.clear()
    chosen = f"sqlite:///{tmp_path / 'chosen.db'}"
    assert main(["demo", "--out", str(tmp_path / "demo"), "--tracking-uri", chosen]) == 0
    assert set(seen) == {chosen} and "note: MLFLOW_TRACKING_URI" not in capsys.readouterr().out
