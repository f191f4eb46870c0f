"""The response tables kept against circularity: drawn from a seed, recorded, replayed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rollrisk.errors import UserError
from rollrisk.features.schemas import CHANNELS, TREATMENT_KINDS
from rollrisk.simulator.engine import DRV, rule_arrays, write_portfolio
from rollrisk.simulator.replay import replay_to_month, with_responses
from rollrisk.simulator.rules import (
    CHANNEL_RESPONSE,
    DRIVERS,
    RESPONSE_DRAW_SEED,
    RESPONSE_SCALES,
    RESPONSE_TABLES,
    TREATMENT_RESPONSE,
    SimulationRules,
    response_tables,
)
from rollrisk.simulator.truth import read_simulation_params
from rollrisk.storage.loader import load_portfolio


@pytest.mark.parametrize("k", [1, 2, 3])
def test_the_written_factors_are_the_seeded_draw_nobody_picked_them(k: int):
    drawn = np.round(
        np.random.default_rng(RESPONSE_DRAW_SEED + k).uniform(
            0.5, 1.5, (len(DRIVERS), len(CHANNELS) + len(TREATMENT_KINDS))
        ),
        2,
    )
    written = np.array([RESPONSE_SCALES[f"scaled-{k}"][d] for d in DRIVERS])
    np.testing.assert_array_equal(written, drawn)


def test_a_scaled_table_scales_every_effect_of_the_primary_one_by_its_own_factor():
    channel, treatment = response_tables("scaled-2")
    factors = RESPONSE_SCALES["scaled-2"]
    for d in DRIVERS:
        for i, c in enumerate(CHANNELS):
            assert channel[d][c].cure == pytest.approx(CHANNEL_RESPONSE[d][c].cure * factors[d][i])
            assert channel[d][c].roll == pytest.approx(CHANNEL_RESPONSE[d][c].roll * factors[d][i])
        assert set(treatment[d]) == set(TREATMENT_RESPONSE[d])  # kinds with a logit shift
        for kind, response in TREATMENT_RESPONSE[d].items():
            f = factors[d][len(CHANNELS) + TREATMENT_KINDS.index(kind)]
            assert treatment[d][kind].cure == pytest.approx(response.cure * f)
            assert treatment[d][kind].roll == pytest.approx(response.roll * f)
    assert response_tables("primary") == (CHANNEL_RESPONSE, TREATMENT_RESPONSE)
    # a scaled table is a different table: most effects moved by more than rounding
    moved = sum(
        abs(channel[d][c].cure - CHANNEL_RESPONSE[d][c].cure) > 0.01
        for d in DRIVERS
        for c in CHANNELS
    )
    assert moved > len(DRIVERS) * len(CHANNELS) / 2


def test_an_unknown_table_is_refused_when_the_rules_are_made():
    with pytest.raises(ValueError, match="unknown response table 'bold'"):
        SimulationRules(response_table="bold")


def test_a_portfolio_records_its_table_and_the_replay_reads_it_back(tmp_path: Path):
    primary, scaled = tmp_path / "primary", tmp_path / "scaled"
    for folder, table in ((primary, "primary"), (scaled, "scaled-1")):
        folder.mkdir()
        write_portfolio(folder, 1_500, 8, seed=5, rules=SimulationRules(response_table=table))
    params = json.loads((scaled / "truth" / "params.json").read_text())
    assert params["rules"]["response_table"] == "scaled-1"
    sim = read_simulation_params(scaled)
    assert sim.rules.response_table == "scaled-1"
    # the borrowers responded otherwise, so the statements differ
    a = load_portfolio(primary).statements.sort("account_id", "cycle_end")
    b = load_portfolio(scaled).statements.sort("account_id", "cycle_end")
    # (the row counts may differ too: on the open book, accounts close by how they pay)
    both = a.join(b, on=["account_id", "cycle_end"], suffix="_scaled")
    assert both.height > 0.9 * a.height
    assert not both["dpd"].equals(both["dpd_scaled"])
    # ... and the replay of the scaled portfolio reproduces it (its own table, not primary)
    ids = [f"A{i:09d}" for i in range(sim.accounts)]
    replay = replay_to_month(sim, ids, 5, 2, b)
    assert replay.replay_match_share == pytest.approx(1.0)


def test_an_edited_table_name_in_params_is_refused(tmp_path: Path):
    write_portfolio(tmp_path, 200, 3, seed=1)
    path = tmp_path / "truth" / "params.json"
    params = json.loads(path.read_text())
    params["rules"]["response_table"] = "optimistic"
    path.write_text(json.dumps(params))
    with pytest.raises(UserError, match="response table 'optimistic' is unknown"):
        read_simulation_params(tmp_path)


def test_the_horizon_can_follow_another_table_with_the_history_unchanged(tmp_path: Path):
    write_portfolio(tmp_path, 600, 6, seed=2)
    sim = read_simulation_params(tmp_path)
    ids = [f"A{i:09d}" for i in range(sim.accounts)]
    replay = replay_to_month(sim, ids, 4, 2, load_portfolio(tmp_path).statements)
    other = with_responses(replay, "scaled-3")
    assert with_responses(replay, "primary") is replay
    assert other.rules.response_table == "scaled-3"
    assert other.state is replay.state and other.world is replay.world
    expected = rule_arrays(replace(sim.rules, response_table="scaled-3"))
    np.testing.assert_array_equal(other.arrays.channel_cure, expected.channel_cure)
    sms = CHANNELS.index("sms")
    forgetful = DRV["forgetful"]
    assert other.arrays.channel_cure[forgetful, sms] == pytest.approx(
        replay.arrays.channel_cure[forgetful, sms] * RESPONSE_SCALES["scaled-3"]["forgetful"][0]
    )


@pytest.mark.parametrize("command", ["simulate", "simulate-policy"])
def test_every_table_name_is_offered_by_the_cli(command: str, capsys: pytest.CaptureFixture):
    from rollrisk.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--response-table {" + ",".join(RESPONSE_TABLES) + "}" in text
