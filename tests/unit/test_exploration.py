"""The simulated lender's exploration: hash-assigned persistent arms, logged propensities, arms
acting as the replay makes a ladder act, and as-of dates the replay reproduces."""

from __future__ import annotations

import json
import math
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from rollrisk.cli import main
from rollrisk.conf import DEFAULT_POLICY
from rollrisk.features.schemas import CHANNELS, RECORD_TABLES
from rollrisk.simulator.engine import (
    POLICY_MAX_BUCKET,
    ModelPlan,
    collection_paused,
    ladder_counts,
    ladder_plan,
    write_portfolio,
)
from rollrisk.simulator.exploration import (
    ASSIGNMENTS_TABLE,
    EXPERIMENT_FILE,
    EXPERIMENT_ID,
    Exploration,
    exploration_from_policy,
)
from rollrisk.simulator.replay import month_index, replay_to_month
from rollrisk.simulator.truth import read_simulation_params
from rollrisk.storage.loader import load_portfolio
from rollrisk.strategies.experiments import (
    NOT_RANDOMISED,
    bundle_ladders,
    load_experiments,
    unit_draws,
)
from rollrisk.strategies.policy import STANDARD_QUEUE, load_policy

POLICY = load_policy(DEFAULT_POLICY)
# the explored treatments: every treatment but standard_queue, the control's own collection
ARMS = [
    n for n, t in POLICY.treatments.items() if all(st.action != STANDARD_QUEUE for st in t.steps)
]
MONTHS = 10
SHARE = 0.3


def _simulate(folder: Path, accounts: int, exploration: Exploration | None, **kwargs) -> Path:
    folder.mkdir(parents=True)
    write_portfolio(folder, accounts, MONTHS, seed=4, exploration=exploration, **kwargs)
    return folder


def _read(folder: Path, table: str) -> pl.DataFrame:
    single = folder / f"{table}.parquet"
    return pl.read_parquet(single if single.exists() else folder / table / "*.parquet")


def _only(*names: str, share: float = SHARE) -> Exploration:
    arms = tuple((name, POLICY.treatments[name].steps) for name in names)
    return Exploration(EXPERIMENT_ID, share, arms, "test")


@pytest.fixture(scope="module")
def explored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 accounts x 10 months, 30 % randomised across every treatment of the policy."""
    exploration = exploration_from_policy(POLICY, SHARE)
    return _simulate(tmp_path_factory.mktemp("explore") / "p", 2_000, exploration)


@pytest.fixture(scope="module")
def calls_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Half the accounts in one arm, intensive_calls (three agent calls, no treatment)."""
    return _simulate(
        tmp_path_factory.mktemp("calls") / "p", 1_500, _only("intensive_calls", share=0.5)
    )


def test_share_zero_writes_the_files_of_a_lender_that_never_explores(tmp_path: Path, capsys):
    # the CLI's --explore-share 0 and the library without exploration: the same bytes, and no
    # experiment files
    never = _simulate(tmp_path / "never", 300, None)
    argv = ["simulate", "--accounts", "300", "--months", str(MONTHS), "--seed", "4"]
    assert main([*argv, "--out", str(tmp_path / "zero"), "--explore-share", "0"]) == 0
    files = sorted(p.relative_to(never) for p in never.rglob("*") if p.is_file())
    zero = tmp_path / "zero"
    assert files == sorted(p.relative_to(zero) for p in zero.rglob("*") if p.is_file())
    for name in files:
        assert (never / name).read_bytes() == (zero / name).read_bytes(), name
    assert not (zero / EXPERIMENT_FILE).exists()
    assert "exploration" not in json.loads((zero / "truth" / "params.json").read_text())
    # the exploration's own work (hash draws, eligibility, the log) takes nothing from the
    # simulator's streams: with a share that randomises nobody, every table is unchanged and
    # every eligible account-month is logged in the control arm
    nobody = _simulate(tmp_path / "nobody", 300, _only("intensive_calls", share=1e-12))
    for table in ("accounts", "statements", "collection_actions", "treatments"):
        assert _read(nobody, table).equals(_read(never, table)), table
    log = _read(nobody, ASSIGNMENTS_TABLE)
    assert log.height > 0
    assert set(log["arm"]) == {NOT_RANDOMISED}


def test_propensities_are_those_of_the_logging_mixture(explored: Path):
    log = _read(explored, ASSIGNMENTS_TABLE)
    k = len(ARMS)
    control = log.filter(pl.col("arm") == NOT_RANDOMISED)["propensity"]
    arms = log.filter(pl.col("arm") != NOT_RANDOMISED)["propensity"]
    assert control.len() > 0 and arms.len() > 0
    assert np.allclose(control.to_numpy(), 1 - SHARE)
    assert np.allclose(arms.to_numpy(), SHARE / k)
    # the control and the K arms' bundles exhaust the mixture: their probabilities sum to 1
    exploration = exploration_from_policy(POLICY, SHARE)
    assert exploration is not None
    assert (1 - SHARE) + exploration.propensities().sum() == pytest.approx(1.0)
    # two arms with the same ladder are one bundle: each logs the pair's probability
    twin = Exploration(
        EXPERIMENT_ID,
        0.2,
        (
            ("a", POLICY.treatments["intensive_calls"].steps),
            ("b", POLICY.treatments["intensive_calls"].steps),
            ("c", POLICY.treatments["reminder_only"].steps),
        ),
        "test",
    )
    assert twin.propensities() == pytest.approx([0.2 * 2 / 3, 0.2 * 2 / 3, 0.2 / 3])


def test_randomised_share_and_arms_are_within_binomial_tolerance(explored: Path):
    log = _read(explored, ASSIGNMENTS_TABLE)
    per_account = log.group_by("account_id").agg(pl.col("arm").first())
    n = per_account.height
    assert n > 300
    randomised = per_account.filter(pl.col("arm") != NOT_RANDOMISED)
    sd = math.sqrt(SHARE * (1 - SHARE) / n)
    assert abs(randomised.height / n - SHARE) < 4 * sd
    k = len(ARMS)
    counts = randomised.group_by("arm").len()
    assert set(counts["arm"]) <= set(ARMS)
    expected = randomised.height / k
    tolerance = 4 * math.sqrt(expected * (1 - 1 / k))
    assert (counts["len"] - expected).abs().max() < tolerance


def test_an_account_keeps_its_arm_every_month(explored: Path):
    log = _read(explored, ASSIGNMENTS_TABLE)
    assert log.group_by("account_id").agg(pl.col("arm").n_unique())["arm"].max() == 1
    assert log.select("account_id", "as_of").is_unique().all()
    # and the arm is the product's hash assignment of the account
    exploration = exploration_from_policy(POLICY, SHARE)
    assert exploration is not None
    first = log.group_by("account_id").agg(pl.col("arm").first()).sort("account_id")
    draws = unit_draws(EXPERIMENT_ID, first["account_id"].to_list())
    assert ((first["arm"] != NOT_RANDOMISED).to_numpy() == (draws[:, 0] < SHARE)).all()
    arm_of = exploration.arm_of(first["account_id"].to_list())
    names = np.array([*exploration.arm_names, NOT_RANDOMISED], dtype=object)
    assert (names[arm_of] == first["arm"].to_numpy()).all()


def _month_window(statements: pl.DataFrame, log: pl.DataFrame) -> pl.DataFrame:
    """Each logged decision with its month's cycle end and the next one (the month's actions
    fall between them)."""
    cycles = statements.select(
        "account_id",
        "cycle_end",
        "dpd",
        pl.col("cycle_end").dt.month_end().alias("as_of"),
        pl.col("cycle_end").dt.offset_by("1mo").alias("next_cycle_end"),
    )
    return log.join(cycles, on=["account_id", "as_of"], how="left")


def test_an_arm_gets_its_ladder_instead_of_the_tiered_actions(calls_only: Path):
    log = _read(calls_only, ASSIGNMENTS_TABLE)
    decisions = _month_window(_read(calls_only, "statements"), log)
    # eligible = M1-M3 at the decision: the statement the decision saw is at 1-89 DPD
    assert decisions["cycle_end"].null_count() == 0
    assert decisions["dpd"].is_between(1, 30 * POLICY_MAX_BUCKET - 1).all()
    actions = _read(calls_only, "collection_actions")
    in_month = decisions.join(actions, on="account_id").filter(
        (pl.col("action_at") >= pl.col("cycle_end"))
        & (pl.col("action_at") < pl.col("next_cycle_end"))
    )
    per_decision = in_month.group_by("account_id", "as_of", "arm").agg(
        (pl.col("channel") == "agent_call").sum().alias("agent_calls"),
        (pl.col("channel") != "agent_call").sum().alias("other"),
    )
    arm = per_decision.filter(pl.col("arm") == "intensive_calls")
    assert arm.height > 50
    assert (arm["agent_calls"] == 3).all() and (arm["other"] == 0).all()
    # the control gets the tiered lender's (e.g. SMS and robo calls in M1), so the test can fail
    control = per_decision.filter(pl.col("arm") == NOT_RANDOMISED)
    assert (control["other"] > 0).mean() > 0.5
    # and no treatment: the tiered lender's hardship treatments are not granted to the arm
    treatments = _read(calls_only, "treatments")
    treated = decisions.filter(pl.col("arm") == "intensive_calls").join(treatments, on="account_id")
    in_window = treated.filter(
        (pl.col("start_at") >= pl.col("cycle_end"))
        & (pl.col("start_at") < pl.col("next_cycle_end"))
    )
    assert in_window.is_empty()


def test_an_arm_with_treatments_grants_them_as_the_replay_does(tmp_path: Path):
    folder = _simulate(tmp_path / "grace", 1_500, _only("seasonal_grace", share=0.5))
    log = _read(folder, ASSIGNMENTS_TABLE)
    decisions = _month_window(_read(folder, "statements"), log)
    treatments = _read(folder, "treatments")
    granted = (
        decisions.join(treatments, on="account_id")
        .filter(
            (pl.col("start_at") >= pl.col("cycle_end"))
            & (pl.col("start_at") < pl.col("next_cycle_end") + pl.duration(days=7))
        )
        .filter(pl.col("arm") == "seasonal_grace")
    )
    # a grace offer taken up (a contact reached the borrower) or a restructure after a
    # hardship claim at M2+; never the tiered lender's waiver or extension
    assert granted.height > 10
    assert set(granted["kind"]) <= {"grace_period", "restructure"}
    assert (granted["kind"] == "grace_period").sum() > 0
    # an account on a grace period is paused, so not eligible (not logged) while it runs
    sim = read_simulation_params(folder)
    assert sim.exploration is not None and sim.exploration.arm_names == ("seasonal_grace",)


def test_the_replay_finds_the_state_the_engine_acted_on(explored: Path):
    sim = read_simulation_params(explored)
    assert sim.exploration is not None
    statements = load_portfolio(explored).statements
    log = _read(explored, ASSIGNMENTS_TABLE)
    arms = log.filter(pl.col("arm") != NOT_RANDOMISED)
    late = arms.filter(pl.col("as_of") == arms["as_of"].max())
    as_of = late["as_of"][0]
    month = month_index(sim.start_month, as_of)
    assert month == MONTHS - 1
    ids = late["account_id"].to_list()
    replay = replay_to_month(sim, ids, month, 1, statements)
    # the replayed DPD and balance are the portfolio's statement of that month, so the history
    # before it, explored months included, was reproduced draw for draw
    assert replay.replay_match_share == pytest.approx(1.0)
    # and the state is one the exploration acts on: M1-M3, not paused (never the holdout)
    assert ((replay.state.bucket >= 1) & (replay.state.bucket <= POLICY_MAX_BUCKET)).all()
    assert not collection_paused(replay.state, month).any()
    assert not replay.accounts.holdout.any()
    # the month's actions in the portfolio are the arm's ladder on that replayed state
    exploration = sim.exploration
    names = list(exploration.arm_names)
    plans = ladder_plan([[(s.action, s.channel) for s in steps] for _, steps in exploration.arms])
    arm_rows = np.array([names.index(a) for a in late["arm"].to_list()])
    order = [ids.index(a) for a in replay.account_ids]
    plan = ModelPlan(*(getattr(plans, f.name)[arm_rows[order]] for f in fields(plans)))
    none = np.zeros(0, dtype=np.int64)
    expected = ladder_counts(plan, replay.state, month, none, np.zeros((0, len(CHANNELS))))
    windows = _month_window(statements, late)
    actions = _read(explored, "collection_actions").join(windows, on="account_id")
    actual = actions.filter(
        (pl.col("action_at") >= pl.col("cycle_end"))
        & (pl.col("action_at") < pl.col("next_cycle_end"))
    )
    for i, account in enumerate(replay.account_ids):
        channels = actual.filter(pl.col("account_id") == account)["channel"].to_list()
        got = np.array([channels.count(c) for c in CHANNELS])
        assert (got == expected[i]).all(), account
    # without the lender's exploration the replay drifts from the data: the test can fail
    every = [f"A{i:09d}" for i in range(sim.accounts)]
    blind = replay_to_month(replace(sim, exploration=None), every, month, 1, statements)
    assert blind.replay_match_share < 0.99
    assert replay_to_month(sim, every, month, 1, statements).replay_match_share == pytest.approx(
        1.0
    )


def test_the_log_and_the_experiment_file_are_what_the_product_reads(explored: Path):
    portfolio = load_portfolio(explored)
    assert portfolio.report.rows_rejected == 0
    table = {t.table: t for t in portfolio.report.tables}[ASSIGNMENTS_TABLE]
    assert table.rows_accepted == _read(explored, ASSIGNMENTS_TABLE).height > 0
    assert dict(_read(explored, ASSIGNMENTS_TABLE).schema) == RECORD_TABLES[0].dtypes
    plan = load_experiments(explored / EXPERIMENT_FILE)
    experiment = plan.experiment(EXPERIMENT_ID)
    assert experiment.share == pytest.approx(SHARE)
    assert experiment.eligible == {"start_bucket": frozenset({"M1", "M2", "M3"})}
    log = _read(explored, ASSIGNMENTS_TABLE)
    assert experiment.start == log["as_of"].min() and experiment.end == log["as_of"].max()
    ladders = bundle_ladders(plan, POLICY)

    def key(steps):  # noqa: ANN001, ANN202 - the steps without their file line
        return [(s.action, s.day, s.at, s.channel, s.recipient) for s in steps]

    for arm in experiment.arms:
        assert arm.weight == pytest.approx(1 / len(ARMS))
        assert key(ladders[arm.name]) == key(POLICY.treatments[arm.name].steps)


def test_the_cli_explores_by_default_and_refuses_bad_shares(tmp_path: Path, capsys):
    out = tmp_path / "default"
    assert main(["simulate", "--accounts", "300", "--months", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "experiment_assignments" in printed and "SIM-EXPLORE: 10% randomised" in printed
    params = json.loads((out / "truth" / "params.json").read_text())
    assert params["exploration"]["share"] == pytest.approx(0.10)
    assert set(params["exploration"]["arms"]) == set(ARMS)
    for share, message in (("1", "--explore-share must be at least 0 and below 1"),
                           ("-0.1", "--explore-share must be at least 0 and below 1")):  # fmt: skip
        assert main(["simulate", "--out", str(tmp_path / "bad"), "--explore-share", share]) == 2
        assert message in capsys.readouterr().err
    argv = ["simulate", "--out", str(tmp_path / "bad"), "--explore-share", "0"]
    assert main([*argv, "--exploration-policy", str(DEFAULT_POLICY)]) == 2
    assert "--exploration-policy needs --explore-share above 0" in capsys.readouterr().err
    missing = tmp_path / "nope.yaml"
    assert (
        main(["simulate", "--out", str(tmp_path / "bad"), "--exploration-policy", str(missing)])
        == 2
    )
    assert "nope.yaml" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_a_policy_of_the_standard_queue_only_is_refused_as_exploration(tmp_path: Path, capsys):
    """conf/policy_standard.yaml has no treatment but the control: one line, no traceback."""
    standard = Path(DEFAULT_POLICY).with_name("policy_standard.yaml")
    argv = ["simulate", "--out", str(tmp_path / "p"), "--accounts", "50", "--months", "6",
            "--explore-share", "0.2", "--exploration-policy", str(standard)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "every treatment keeps the account in the standard queue (standard_queue)" in err
    assert "Traceback" not in err
    assert not (tmp_path / "p").exists()
