"""`rollrisk demo` runs each stage as its own `python -m rollrisk` process and stops at the
first stage that fails (the whole demo runs in tests/e2e/test_wheel_install.py)."""

from __future__ import annotations

import subprocess
import sys

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
    monkeypatch.setattr(demo, "stages", lambda args, model_uri=demo.CHAMPION: planned)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    out, err = capfd.readouterr()
    assert (
        "== [1/3] a refusal the demo accepts" in out
        and f"$ rollrisk validate --data {missing}" in out
    )
    assert "== [2/3] a stage that fails" in out and "[3/3]" not in out
    assert "no-such-portfolio" in err  # the stage's own error, streamed from its process
    assert "stage 'a stage that fails' failed with exit code 2; see its output above" in err
