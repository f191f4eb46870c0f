"""The plain A/B readout of a logged experiment (strategies/experiment_readout.py)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from rollrisk.errors import UserError
from rollrisk.strategies.experiment_readout import arm_readout, readout_markdown


def _logged(seed: int, effect: float, accounts: int = 3000, months: int = 4) -> pl.DataFrame:
    """Accounts assigned once (control 80 %, arms a and b 10 % each), several decisions each;
    an account's level is shared by its decisions (correlated rows); arm b adds ``effect``."""
    rng = np.random.default_rng(seed)
    group = rng.choice(np.array(["queue", "a", "b"]), accounts, p=[0.8, 0.1, 0.1])
    level = rng.normal(1000.0, 300.0, accounts)
    rows = []
    for i in range(accounts):
        for _ in range(months):
            y = level[i] + rng.normal(0.0, 50.0) + (effect if group[i] == "b" else 0.0)
            rows.append((f"A{i:05d}", group[i], "queue", y))
    return pl.DataFrame(
        rows, schema=["account_id", "bundle", "policy_bundle", "book_value"], orient="row"
    )


def test_a_real_effect_is_found():
    control, arms = arm_readout(_logged(1, effect=150.0), samples=400)
    by = {a.bundle: a for a in arms}
    assert (
        control.bundle == "queue" and control.accounts + by["a"].accounts + by["b"].accounts == 3000
    )
    assert by["b"].significant and by["b"].ci_low < 150.0 < by["b"].ci_high
    # the null arm: its interval's coverage is checked over seeds below
    assert by["a"].ci_low < by["a"].versus_control < by["a"].ci_high
    assert [a.bundle for a in arms] == ["b", "a"]  # best mean first


def test_the_interval_resamples_accounts_not_decisions():
    # the same accounts with 4 decisions or 16 each: an account-level interval barely narrows
    # (the account's level dominates), a decision-level one would halve
    _, four = arm_readout(_logged(2, effect=0.0, months=4), samples=400)
    _, sixteen = arm_readout(_logged(2, effect=0.0, months=16), samples=400)
    width = {a.bundle: a.ci_high - a.ci_low for a in four}
    width16 = {a.bundle: a.ci_high - a.ci_low for a in sixteen}
    assert width16["a"] > 0.8 * width["a"]


def test_coverage_of_a_null_arm_over_seeds():
    covered = sum(
        arm.ci_low <= 0.0 <= arm.ci_high
        for seed in range(20)
        for arm in arm_readout(
            _logged(100 + seed, effect=0.0, accounts=1500, months=2), samples=300
        )[1]
    )
    assert covered >= 36  # of 40 intervals at 95 %


def test_a_table_without_a_control_or_a_column_is_refused():
    logged = _logged(3, effect=0.0, accounts=50, months=1)
    with pytest.raises(UserError, match="no control"):
        arm_readout(logged.filter(pl.col("bundle") != "queue"))
    with pytest.raises(UserError, match="book_value"):
        arm_readout(logged.drop("book_value"))


def test_markdown_marks_significant_arms():
    control, arms = arm_readout(_logged(1, effect=150.0), samples=200)
    text = "\n".join(readout_markdown(control, arms, "book_value"))
    assert "| queue (control) |" in text and "| b |" in text and "*" in text


def test_a_tiny_arm_still_gets_an_interval(monkeypatch):
    # 2 accounts in arm "a" beside a large control: the arm and the control are resampled
    # apart, so every resample holds 2 arm draws (a draw from the pooled accounts loses the
    # arm in about one resample of seven) and the interval is always a number
    from rollrisk.strategies import experiment_readout

    arm_draws: list[int] = []
    gap = experiment_readout._gap

    def counting_gap(pick, sums, counts, in_arm):  # noqa: ANN001, ANN202
        arm_draws.append(int(in_arm[pick].sum()))
        return gap(pick, sums, counts, in_arm)

    monkeypatch.setattr(experiment_readout, "_gap", counting_gap)
    logged = _logged(4, effect=0.0, accounts=400, months=2)
    tiny = pl.concat(
        [
            logged.filter(pl.col("bundle") == "queue"),
            pl.DataFrame(
                [("T1", "a", "queue", 900.0), ("T2", "a", "queue", 1300.0)],
                schema=logged.schema,
                orient="row",
            ),
        ]
    )
    _, arms = arm_readout(tiny, samples=300)
    assert len(arm_draws) == 300 and set(arm_draws) == {2}
    (arm,) = arms
    assert arm.accounts == 2 and np.isfinite([arm.ci_low, arm.ci_high]).all()
    assert arm.ci_low <= arm.versus_control <= arm.ci_high


def test_the_detectable_gap_follows_from_the_interval():
    from rollrisk.strategies.experiment_readout import ArmReadout

    arm = ArmReadout("a", 400, 100, 1000.0, 0.0, -10.0, 10.0)
    # standard error 20 / (2 x 1.95996) = 5.1021; (1.95996 + 0.84162) x 5.1021 = 14.294
    assert arm.detectable_gap == pytest.approx(14.294, abs=1e-3)
    # a gap half that size needs four times the accounts
    assert arm.accounts_needed(arm.detectable_gap / 2) == pytest.approx(400.0)
    assert arm.to_dict()["detectable_gap"] == arm.detectable_gap


def test_the_detectable_gap_matches_the_design_and_is_found_four_times_in_five():
    # _logged's accounts: a level with sd 300 and 2 decisions with noise sd 50, so an account's
    # mean outcome has variance 300^2 + 50^2 / 2; the detectable gap of arm b against the control
    # is (1.95996 + 0.84162) x sqrt(var / n_b + var / n_control), whatever the bootstrap says
    variance = 300.0**2 + 50.0**2 / 2
    detectable, analytic = [], []
    for seed in range(8):
        control, arms = arm_readout(
            _logged(500 + seed, effect=0.0, accounts=1500, months=2), samples=300
        )
        b = {a.bundle: a for a in arms}["b"]
        detectable.append(b.detectable_gap)
        analytic.append(2.80158 * np.sqrt(variance / b.accounts + variance / control.accounts))
    assert np.mean(detectable) == pytest.approx(np.mean(analytic), rel=0.10)
    # and a true gap of that size is significant in about 80 % of draws (40 draws: 32 expected,
    # sd 2.5; a gap misjudged by a third would give about 50 % or 97 %)
    gap = float(np.mean(detectable))
    found = sum(
        {a.bundle: a for a in arm_readout(
            _logged(600 + seed, effect=gap, accounts=1500, months=2), samples=300
        )[1]}["b"].ci_low > 0
        for seed in range(40)
    )  # fmt: skip
    assert 24 <= found <= 38, found
