"""The built wheel works on its own: installed non-editable, run from a folder outside the repo.

An editable install reads the YAML defaults straight from the checkout, so it cannot show that
the wheel carries them (it once held none, and every strategy job failed outside the repo).
This test builds the wheel from the checkout, installs it into a fresh virtual environment whose
only other content is the project's already-installed dependencies (linked by a ``.pth`` line,
so nothing is downloaded and the checkout itself is not importable), and runs the whole demo on
a small portfolio from an empty temporary folder. ``make wheel-check`` is the full proof: a
fresh environment with the dependencies installed from the package index and the default demo.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_DEFAULTS = {
    "action_costs.yaml",
    "compliance.yaml",
    "default.yaml",
    "policy.yaml",
    "policy_standard.yaml",
    "segments.yaml",
}

pytestmark = pytest.mark.slow


def _build_wheel(dist: Path) -> Path:
    # from a copy: an in-place build leaves build/lib behind, whose stale modules (files since
    # moved or deleted) a later build would package again
    source = dist.parent / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"))  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "--wheel-dir", str(dist), str(source)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (wheel,) = dist.glob("rollrisk-*.whl")
    return wheel


def _fresh_environment(where: Path, wheel: Path) -> Path:
    venv.EnvBuilder(with_pip=True).create(where)
    python = where / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    # the dependencies, not the project: a plain path line does not run the editable finder
    # that the project's own environment registers in its .pth files
    dependencies = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_rollrisk_dependencies.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return where / "bin"


def test_wheel_carries_the_shipped_defaults_and_runs_the_demo_outside_the_repository(tmp_path):
    wheel = _build_wheel(tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(name).name for name in names if name.startswith("rollrisk/conf/")}
    assert shipped >= SHIPPED_DEFAULTS, f"wheel lacks {SHIPPED_DEFAULTS - shipped}"

    bin_dir = _fresh_environment(tmp_path / "venv", wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "MLFLOW_TRACKING_URI", "VIRTUAL_ENV"}
    }
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"

    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import rollrisk.conf as c; print(c.DEFAULT_POLICY)"],
        cwd=elsewhere, env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    assert Path(where).is_file()
    assert not Path(where).is_relative_to(ROOT), f"defaults read from the checkout: {where}"

    demo = subprocess.run(
        # the smallest demo the size guard lets through (3,000 x 15): every stage still runs
        [str(bin_dir / "rollrisk"), "demo", "--accounts", "3000", "--months", "15",
         "--out", "demo"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    manifest = json.loads((elsewhere / "demo" / "scores" / "current" / "manifest.json").read_text())
    assert manifest["counts"]["scored"] > 0
    assert (elsewhere / "demo" / "strategy_report.html").stat().st_size > 10_000
    assert (elsewhere / "runs" / "mlflow.db").is_file()  # the store follows the working folder
