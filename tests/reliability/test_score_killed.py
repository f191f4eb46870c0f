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


def _argv(world, out: Path, as_of: str, *extra: str) -> list[str]:
    return ["score", "--model", world.model_uri, "--data", str(world.portfolio), "--as-of", as_of,
            "--out", str(out), "--partitions", PARTITIONS, *extra]  # fmt: skip


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(child) for child in path.read_text().split()} if path.exists() else set()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("workers", ["1", "2"])
def test_kill_then_resume(scoring_world, tmp_path, monkeypatch, capsys, workers):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", scoring_world.tracking_uri)
    out = tmp_path / "scores"
    assert main(_argv(scoring_world, out, "2025-02-28")) == 0
    previous, previous_rows = read_current(out)

    env = {**os.environ, "MLFLOW_TRACKING_URI": scoring_world.tracking_uri}
    process = subprocess.Popen(
        [sys.executable, "-m", "rollrisk.cli",
         *_argv(scoring_world, out, "2025-03-31", "--workers", workers)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    run_dirs = lambda: [d for d in (out / "runs").iterdir() if d.name != previous["run_key"]]  # noqa: E731
    while time.monotonic() < deadline and not any(
        list(d.glob("part-*.parquet")) for d in run_dirs()
    ):
        time.sleep(0.01)
    spawned = _children(process.pid)  # the scoring workers, with --workers 2
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    if workers != "1" and sys.platform == "linux":  # they die with the run, writing nothing more
        assert spawned, "the run scored without starting its workers"
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in spawned) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in spawned), "a worker outlived the killed run"

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
