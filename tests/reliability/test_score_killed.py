"""A scoring run killed mid-way leaves the previous result intact and resumes where it stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rollrisk.cli import main
from rollrisk.storage.atomic_output import read_current

pytestmark = pytest.mark.slow
PARTITIONS = "40"


def _argv(world, out: Path, as_of: str) -> list[str]:
    return ["score", "--model", world.model_uri, "--data", str(world.portfolio), "--as-of", as_of,
            "--out", str(out), "--partitions", PARTITIONS]  # fmt: skip


def test_kill_then_resume(scoring_world, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    out = tmp_path / "scores"
    assert main(_argv(scoring_world, out, "2025-02-28")) == 0
    previous, previous_rows = read_current(out)

    env = {**os.environ, "MLFLOW_TRACKING_URI": scoring_world.tracking_uri}
    process = subprocess.Popen(
        [sys.executable, "-m", "rollrisk.cli", *_argv(scoring_world, out, "2025-03-31")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    run_dirs = lambda: [d for d in (out / "runs").iterdir() if d.name != previous["run_key"]]  # noqa: E731
    while time.monotonic() < deadline and not any(
        list(d.glob("part-*.parquet")) for d in run_dirs()
    ):
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"

    [killed_dir] = run_dirs()
    written = len(list(killed_dir.glob("part-*.parquet")))
    assert 0 < written < int(PARTITIONS)
    assert not (killed_dir / "manifest.json").exists()
    still, still_rows = read_current(out)  # readers still see the complete previous result
    assert still == previous and still_rows.equals(previous_rows)

    capsys.readouterr()
    assert main(_argv(scoring_world, out, "2025-03-31")) == 0
    assert (
        f"resumed: {written} of {PARTITIONS} partitions were already written"
        in capsys.readouterr().err
    )
    resumed, resumed_rows = read_current(out)
    assert resumed["as_of"] == "2025-03-31"

    clean = tmp_path / "clean"
    assert main(_argv(scoring_world, clean, "2025-03-31")) == 0
    fresh, fresh_rows = read_current(clean)
    assert [p["sha256"] for p in resumed["partitions"]] == [
        p["sha256"] for p in fresh["partitions"]
    ]
    assert resumed_rows.equals(fresh_rows)
    assert resumed["counts"]["scored"] == resumed["counts"]["population"] == resumed_rows.height
