"""The hidden ``truth/`` of a simulated portfolio: the one place that reads it.

``rollrisk simulate`` writes, beside the contract tables, what a real lender never knows:
``truth/borrowers.parquet`` (each borrower's latent driver and traits) and ``truth/params.json``
(the seed, the size, the response rules and the lender's exploration). Only evaluation code may
use it (the policy replay that needs the rules, segment recovery against the true drivers); no
model input, segment or decision ever sees it. ``tests/unit/test_architecture.py`` checks that no module outside the
simulator names the folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from rollrisk.errors import UserError
from rollrisk.simulator.exploration import Exploration
from rollrisk.simulator.rules import (
    PRIMARY_RESPONSES,
    RESPONSE_TABLES,
    SimulationRules,
    StressRules,
)

TRUTH_FOLDER = "truth"
BORROWERS_FILE = "borrowers.parquet"
PARAMS_FILE = "params.json"
# the simulator's state of the delinquent accounts at the start of each of the last months, so
# that `simulate-policy` at those month-ends need not re-simulate the book (truth/replay_state/)
REPLAY_FOLDER = "replay_state"
REPLAY_POINT_MONTHS = 2


@dataclass(frozen=True)
class SimulatedPortfolio:
    """What ``truth/params.json`` says about how a portfolio was simulated."""

    seed: int
    accounts: int
    months: int
    start_month: str
    rules: SimulationRules
    exploration: Exploration | None = None  # the lender's experiment (None: it never explored)


def read_simulation_params(data_dir: Path) -> SimulatedPortfolio:
    """The seed, size and rules of a simulated portfolio; refuses a portfolio without truth/."""
    params_path = Path(data_dir) / TRUTH_FOLDER / PARAMS_FILE
    if not Path(data_dir).is_dir():
        raise UserError(f"--data {data_dir}: no such folder")
    if not params_path.is_file():
        raise UserError(
            f"{data_dir}: no truth/params.json - this is not a portfolio written by "
            "`rollrisk simulate`, so the borrowers' response to a policy is unknown and a "
            "policy cannot be simulated on it (run it on a simulated portfolio)"
        )
    try:
        params = json.loads(params_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(
            f"{params_path} cannot be read ({error}): the simulation's settings are lost, so "
            "the portfolio cannot be replayed; simulate it again"
        ) from error
    if not isinstance(params, dict):
        raise UserError(f"{params_path} holds no simulation settings (a JSON object expected)")
    table = (params.get("rules") or {}).get("response_table", PRIMARY_RESPONSES)
    if table not in RESPONSE_TABLES:
        raise UserError(
            f"{params_path}: response table {table!r} is unknown to this version "
            f"(known: {', '.join(RESPONSE_TABLES)}); replay would not reproduce it"
        )
    try:  # the stress scenario is a setting of the run (absent: written before it existed)
        stress = StressRules(**((params.get("rules") or {}).get("stress") or {}))
    except (TypeError, ValueError) as error:
        raise UserError(
            f"{params_path}: the stress scenario cannot be read ({error}); replay would not "
            "reproduce the portfolio's history"
        ) from error
    rules = SimulationRules(response_table=table, stress=stress)
    expected = json.loads(json.dumps(rules.to_dict(), default=str))
    if params.get("rules") != expected:
        raise UserError(
            f"{params_path}: the portfolio was simulated with rules that differ from this "
            "version's simulator/rules.py; replay would not reproduce it"
        )
    exploration = params.get("exploration")
    try:
        explored = Exploration.from_dict(exploration) if exploration is not None else None
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(
            f"{params_path}: `exploration` cannot be read ({error}); replay would not "
            "reproduce the portfolio's history"
        ) from error
    return SimulatedPortfolio(
        int(params["seed"]),
        int(params["accounts"]),
        int(params["months"]),
        str(params["start_month"]),
        rules,
        explored,
    )


def read_true_drivers(data_dir: Path) -> pl.DataFrame | None:
    """``account_id, driver``: the latent driver the simulator gave each borrower of the
    portfolio in ``data_dir`` (``truth/borrowers.parquet``), for evaluations against the truth
    such as segment recovery; None when ``data_dir`` is not a simulated portfolio."""
    path = Path(data_dir) / TRUTH_FOLDER / BORROWERS_FILE
    if not path.is_file():
        return None
    return pl.read_parquet(path, columns=["account_id", "driver"])


def replay_state_path(data_dir: Path, month: str) -> Path:
    """Where ``rollrisk simulate`` writes the state at the start of ``month`` (``YYYY-MM``)."""
    return Path(data_dir) / TRUTH_FOLDER / REPLAY_FOLDER / f"{month}.npz"


def write_replay_state(path: Path, arrays: dict[str, Any]) -> None:
    """``arrays`` as a compressed ``.npz`` that ``numpy.load`` reads, byte for byte the same
    for the same arrays (``numpy.savez_compressed`` stamps each member with the clock, and a
    simulation with the same seed writes the same bytes)."""
    import zipfile

    import numpy as np

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_DEFLATED
            # the fastest level, 8 s -> 2.5 s for a 2.65M-account book (22.5 -> 24.8 MB); the
            # member's setting is public from Python 3.13, private before
            level = "compress_level" if hasattr(member, "compress_level") else "_compresslevel"
            setattr(member, level, 1)
            with archive.open(member, "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asanyarray(array), allow_pickle=False)


def read_replay_state(data_dir: Path, month: str) -> dict[str, Any] | None:
    """The arrays of :func:`replay_state_path` (no pickle is read), or None when the portfolio
    has none for that month (simulated before they were written, or an earlier month)."""
    import zipfile

    import numpy as np

    path = replay_state_path(data_dir, month)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise UserError(
            f"{path} cannot be read ({error}): remove it and the replay re-simulates the "
            "history up to the as-of instead (slower, the same result)"
        ) from error
