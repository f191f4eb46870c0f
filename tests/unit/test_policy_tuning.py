"""strategies/tuning.py: the segment x bucket choice behind `simulate-policy --propose-policy`,
and the policy file it writes."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from scipy import stats

from rollrisk.conf import DEFAULT_POLICY
from rollrisk.strategies.policy import parse_policy
from rollrisk.strategies.tuning import BASELINE, CellChoice, choose_cells, proposed_policy_text

NAMES = ["treatment:reminder_only", "treatment:hardship_support", BASELINE]


def _values(n: int, gains: dict[int, tuple[float, float]], seed: int = 0) -> np.ndarray:
    """(3 x n) book values: the baseline N(1000, 300); candidate k = baseline + N(mean, sd)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(1000, 300, n)
    rows = [base + rng.normal(*gains.get(k, (0.0, 50.0)), n) for k in range(2)]
    return np.vstack([*rows, base])


def test_a_clear_gain_is_chosen_and_noise_is_not():
    n = 400
    values = np.hstack([_values(n, {1: (80.0, 100.0)}), _values(n, {0: (2.0, 100.0)}, seed=1)])
    segments = ["capacity_shock"] * n + ["forgetful"] * n
    cells = {c.segment: c for c in choose_cells(values, NAMES, segments, ["M2"] * (2 * n))}
    assert cells["capacity_shock"].chosen == "treatment:hardship_support"
    assert cells["capacity_shock"].gain == pytest.approx(
        values[1, :n].mean() - values[2, :n].mean()
    )
    assert 0 < cells["capacity_shock"].lower < cells["capacity_shock"].gain
    # a mean gain of 2 CNY with a standard error of 5 is noise: the baseline stays
    assert cells["forgetful"].chosen == BASELINE and cells["forgetful"].gain == 0.0
    assert cells["forgetful"].accounts == n


def test_the_bound_is_bonferroni_over_every_cell_and_candidate():
    # one cell, gains with a known mean and standard error: chosen exactly when the bound,
    # at z for 0.05 / (cells x candidates), is above 0
    n = 100
    gain = np.full(n, 10.0)
    gain[::2] += 40.0
    gain[1::2] -= 40.0  # mean 10, sd ~40.2, se ~4.02
    base = np.zeros(n)
    values = np.vstack([base + gain, base - 5.0, base])
    se = gain.std(ddof=1) / np.sqrt(n)
    z2 = stats.t.ppf(1 - 0.05 / 2, n - 1)  # Student-t, n - 1 degrees of freedom
    [cell] = choose_cells(values, NAMES, ["forgetful"] * n, ["M1"] * n)
    assert cell.lower == pytest.approx(10.0 - z2 * se)
    assert (cell.chosen == NAMES[0]) == (10.0 - z2 * se > 0)
    # the same gains in a world of 40 cells (80 pairs): the bound is wider
    many = choose_cells(
        np.hstack([values] * 40), NAMES, [f"s{k}" for k in range(40) for _ in range(n)],
        ["M1"] * (40 * n),
    )  # fmt: skip
    z80 = stats.t.ppf(1 - 0.05 / 80, n - 1)
    assert z80 > z2
    for c in many:
        assert (c.chosen == NAMES[0]) == (10.0 - z80 * se > 0)


def test_the_highest_bound_wins_not_the_highest_mean():
    # candidate 0: mean +60, very noisy; candidate 1: mean +40, steady
    n = 300
    rng = np.random.default_rng(3)
    base = rng.normal(0, 1, n)
    values = np.vstack([base + rng.normal(60, 900, n), base + rng.normal(40, 20, n), base])
    [cell] = choose_cells(values, NAMES, ["general"] * n, ["M3"] * n)
    assert cell.best_mean == NAMES[0] and cell.chosen == NAMES[1]
    assert cell.best_bound == NAMES[1] and cell.best_bound_lower == cell.lower


def test_a_small_cell_keeps_the_baseline_and_shows_its_near_miss():
    # 20 accounts, a steady +50: bounded above 0, but below the 30 accounts a cell needs
    n = 20
    base = np.linspace(0, 100, n)
    values = np.vstack([base + 50 + np.linspace(-1, 1, n), base - 10, base])
    [cell] = choose_cells(values, NAMES, ["seasonal"] * n, ["M2"] * n)
    assert cell.chosen == BASELINE and (cell.gain, cell.lower) == (0.0, 0.0)
    assert cell.best_bound == NAMES[0] and cell.best_bound_lower > 40
    [cell] = choose_cells(values, NAMES, ["seasonal"] * n, ["M2"] * n, min_accounts=20)
    assert cell.chosen == NAMES[0]
    # one account: no bound at all (None, which JSON can hold; -inf it cannot)
    [cell] = choose_cells(values[:, :1], NAMES, ["seasonal"], ["M2"], min_accounts=1)
    assert cell.chosen == BASELINE and cell.best_bound is None and cell.best_bound_lower is None


def test_with_the_baseline_alone_every_cell_keeps_it():
    cells = choose_cells(np.zeros((1, 4)), [BASELINE], ["a", "a", "b", "b"], ["M1"] * 4)
    assert [(c.segment, c.chosen, c.accounts) for c in cells] == [
        ("a", BASELINE, 2), ("b", BASELINE, 2)
    ]  # fmt: skip


def test_choose_cells_refuses_what_it_cannot_use():
    with pytest.raises(ValueError, match="baseline_tiered"):
        choose_cells(np.zeros((2, 3)), NAMES[:2], ["a"] * 3, ["M1"] * 3)
    with pytest.raises(ValueError, match="candidates x accounts"):
        choose_cells(np.zeros((3, 4)), NAMES, ["a"] * 3, ["M1"] * 3)
    with pytest.raises(ValueError, match="NaN or infinite"):
        choose_cells(np.array([[1.0, np.nan, 2.0]] * 3), NAMES, ["a"] * 3, ["M1"] * 3)
    with pytest.raises(ValueError, match="confidence"):
        choose_cells(np.zeros((3, 3)), NAMES, ["a"] * 3, ["M1"] * 3, confidence=1.0)


def test_the_proposed_file_is_a_policy_that_gives_each_cell_its_choice():
    cells = [
        CellChoice("capacity_shock", "M2", 500, "treatment:hardship_support", 80.0, 30.0,
                   "treatment:hardship_support", 80.0, "treatment:hardship_support", 30.0),
        CellChoice("capacity_shock", "M3", 200, "treatment:hardship_support", 50.0, 5.0,
                   "treatment:hardship_support", 50.0, "treatment:hardship_support", 5.0),
        CellChoice("forgetful", "M1", 900, "treatment:reminder_only", 12.0, 1.0,
                   "treatment:reminder_only", 12.0, "treatment:reminder_only", 1.0),
        CellChoice("general", "M1", 3000, BASELINE, 0.0, 0.0, "treatment:reminder_only", 3.0,
                   "treatment:reminder_only", -2.0),
    ]  # fmt: skip
    text = proposed_policy_text(cells, DEFAULT_POLICY.read_text(), {"tuned on": "world 31"})
    assert "#   tuned on: world 31" in text
    policy = parse_policy(text, "proposed")
    document = yaml.safe_load(text)
    rules = {rule["id"]: rule for rule in document["rules"]}
    assert set(rules) == {
        "TUNED-CAPACITY-SHOCK-HARDSHIP-SUPPORT", "TUNED-FORGETFUL-REMINDER-ONLY", "TUNED-BASELINE"
    }  # fmt: skip
    assert rules["TUNED-CAPACITY-SHOCK-HARDSHIP-SUPPORT"]["when"] == {
        "segment": ["capacity_shock"], "start_bucket": ["M2", "M3"]
    }  # fmt: skip
    assert (
        "M2: 500 accounts, +80 CNY per account (lower bound +30)"
        in (rules["TUNED-CAPACITY-SHOCK-HARDSHIP-SUPPORT"]["description"])
    )
    assert rules["TUNED-BASELINE"]["treatment"] == "standard_queue"
    # every treatment of the source file is kept (the oracle's candidates next time)
    source = yaml.safe_load(DEFAULT_POLICY.read_text())
    assert set(document["treatments"]) == set(source["treatments"])
    assert set(policy.treatments) == set(source["treatments"])


def test_a_candidate_that_is_not_a_treatment_is_refused():
    cell = CellChoice("general", "M1", 10, "treatment:nope", 1.0, 0.5, "treatment:nope", 1.0,
                      "treatment:nope", 0.5)  # fmt: skip
    with pytest.raises(ValueError, match="treatment:nope"):
        proposed_policy_text([cell], DEFAULT_POLICY.read_text(), {})


def test_rule_ids_stay_unique_when_two_treatment_names_spell_alike():
    source = yaml.safe_load(DEFAULT_POLICY.read_text())
    source["treatments"]["skip-trace"] = source["treatments"]["skip_trace"]
    cells = [
        CellChoice("unreachable", b, 100, f"treatment:{t}", 9.0, 1.0, f"treatment:{t}", 9.0,
                   f"treatment:{t}", 1.0)
        for b, t in (("M1", "skip_trace"), ("M2", "skip-trace"))
    ]  # fmt: skip
    text = proposed_policy_text(cells, yaml.safe_dump(source, sort_keys=False), {})
    ids = [rule["id"] for rule in yaml.safe_load(text)["rules"]]
    assert len(ids) == len(set(ids)) == 3


def test_cells_split_by_risk_band_keep_a_treatment_only_where_it_pays():
    # one segment x bucket whose treatment pays on the risky accounts and costs on the safe
    # ones: pooled, one choice goes to both; split by band, the high band departs alone
    n = 400
    risky = _values(n, {1: (150.0, 100.0)})
    safe = _values(n, {1: (-120.0, 100.0)}, seed=1)
    values = np.hstack([risky, safe])
    segments, buckets = ["capacity_shock"] * (2 * n), ["M2"] * (2 * n)
    bands = ["high"] * n + ["low"] * n
    [pooled] = choose_cells(values, NAMES, segments, buckets)
    assert pooled.band is None and pooled.accounts == 2 * n
    split = {c.band: c for c in choose_cells(values, NAMES, segments, buckets, bands=bands)}
    assert set(split) == {"high", "low"} and split["high"].accounts == n
    assert split["high"].chosen == "treatment:hardship_support"
    assert split["low"].chosen == BASELINE
    # the file tests the band: the rule gives the treatment to the high band only
    text = proposed_policy_text(list(split.values()), DEFAULT_POLICY.read_text(), {})
    document = yaml.safe_load(text)
    [rule] = [r for r in document["rules"] if r["id"] != "TUNED-BASELINE"]
    assert rule["id"] == "TUNED-CAPACITY-SHOCK-HARDSHIP-SUPPORT-HIGH"
    assert rule["when"] == {
        "segment": ["capacity_shock"], "start_bucket": ["M2"], "risk_band": ["high"]
    }  # fmt: skip
    assert "x risk band" in document["description"]
    with pytest.raises(ValueError, match="one risk band per account"):
        choose_cells(values, NAMES, segments, buckets, bands=bands[:-1])


def test_the_proposal_table_says_why_a_cell_kept_the_baseline():
    from dataclasses import asdict

    from rollrisk.reports.policy_simulation import proposal_lines

    cells = [
        CellChoice("capacity_shock", "M2", 500, "treatment:hardship_support", 80.0, 30.0,
                   "treatment:hardship_support", 80.0, "treatment:hardship_support", 30.0),
        # a positive bound that did not depart: the cell was under the minimum
        CellChoice("unreachable", "M2", 2, BASELINE, 0.0, 0.0, "treatment:skip_trace", 90.0,
                   "treatment:skip_trace", 27.0),
        CellChoice("seasonal", "M1", 1, BASELINE, 0.0, 0.0, "treatment:reminder_only", 5.0,
                   None, None),
        CellChoice("general", "M1", 3000, BASELINE, 0.0, 0.0, "treatment:reminder_only", 3.0,
                   "treatment:reminder_only", -2.0),
    ]  # fmt: skip
    text = "\n".join(proposal_lines({"file": "p.yaml", "cells": [asdict(c) for c in cells]}))
    assert "| capacity_shock | M2 | 500 | treatment:hardship_support | +80 (+30) |" in text
    assert "best bound: treatment:skip_trace +27; kept: too few accounts to depart" in text
    assert "| seasonal | M1 | 1 | baseline_tiered | - (no bound: 1 account) |" in text
    assert (
        "| general | M1 | 3,000 | baseline_tiered | - (best bound: treatment:reminder_only -2) |"
        in text
    )
    assert "inf" not in text


def test_blind_first_makes_each_segment_earn_its_rule_against_the_bucket_s_blind_choice():
    # M2, three segments: reminders pay for everyone a little (+100 for two segments, +150 for
    # the third) and hardship support pays a lot for one segment only (capacity_shock +400).
    # Blind first: the bucket gets reminders; capacity_shock departs to hardship support (over
    # reminders, not only over the baseline); a segment the reminders cost (seasonal: -200)
    # departs back to the baseline; the forgetful, no better off with anything else, keep
    # the bucket's choice and get no rule of their own
    from datetime import datetime

    from rollrisk.strategies.policy import PolicyCase, decide
    from rollrisk.strategies.tuning import EVERY_SEGMENT

    n = 600
    parts = {
        "capacity_shock": _values(n, {0: (100.0, 80.0), 1: (400.0, 80.0)}, seed=1),
        "forgetful": _values(n, {0: (150.0, 80.0), 1: (-50.0, 80.0)}, seed=2),
        "general": _values(n, {0: (100.0, 80.0), 1: (0.0, 80.0)}, seed=3),
        "seasonal": _values(n // 2, {0: (-200.0, 80.0), 1: (-300.0, 80.0)}, seed=4),
    }
    values = np.hstack(list(parts.values()))
    segments = [s for s, v in parts.items() for _ in range(v.shape[1])]
    cells = choose_cells(values, NAMES, segments, ["M2"] * len(segments), blind_first=True)
    blind, *per_segment = cells
    assert (blind.segment, blind.chosen, blind.versus) == (EVERY_SEGMENT, NAMES[0], BASELINE)
    assert blind.accounts == len(segments) and blind.lower > 0
    by = {c.segment: c for c in per_segment}
    assert all(c.versus == NAMES[0] for c in per_segment)
    assert by["capacity_shock"].chosen == NAMES[1]
    assert by["capacity_shock"].gain == pytest.approx(
        values[1, :n].mean() - values[0, :n].mean()
    )  # measured over the blind choice, not over the baseline
    assert by["seasonal"].chosen == BASELINE and by["seasonal"].lower > 0
    assert by["forgetful"].chosen == NAMES[0] and by["forgetful"].gain == 0.0
    assert by["general"].chosen == NAMES[0]
    # without blind_first the same values give every segment its own rule against the baseline
    plain = {c.segment: c for c in choose_cells(values, NAMES, segments, ["M2"] * len(segments))}
    assert EVERY_SEGMENT not in plain and plain["general"].chosen == NAMES[0]
    # the file: a bucket rule for every segment, segment rules that win over it
    text = proposed_policy_text(cells, DEFAULT_POLICY.read_text(), {})
    policy = parse_policy(text, "proposed.yaml")
    rules = {r.rule_id: r for r in policy.rules}
    assert rules["TUNED-BUCKET-REMINDER-ONLY"].precedence == 50
    described = {r["id"]: r["description"] for r in yaml.safe_load(text)["rules"]}
    assert "over reminder_only" in described["TUNED-CAPACITY-SHOCK-HARDSHIP-SUPPORT"]
    assert "for every segment" in described["TUNED-BUCKET-REMINDER-ONLY"]
    expected = {
        "capacity_shock": "hardship_support",
        "forgetful": "reminder_only",
        "general": "reminder_only",
        "seasonal": "standard_queue",
        "unreachable": "reminder_only",  # no account on the tuning world: the bucket's choice
    }
    for segment, treatment in expected.items():
        case = PolicyCase("a", datetime(2026, 1, 31), "M2", 0.3, segment, "cash_loan", 40, 2000.0)
        assert decide(policy, case).treatment == treatment, segment


def test_the_proposal_table_shows_what_each_cell_is_measured_against():
    from dataclasses import asdict

    from rollrisk.reports.policy_simulation import proposal_lines
    from rollrisk.strategies.tuning import EVERY_SEGMENT

    reminder, support = NAMES[0], NAMES[1]
    cells = [
        CellChoice(EVERY_SEGMENT, "M2", 900, reminder, 120.0, 80.0, reminder, 120.0, reminder,
                   80.0),
        CellChoice("capacity_shock", "M2", 300, support, 300.0, 200.0, support, 300.0, support,
                   200.0, None, reminder),
        CellChoice("forgetful", "M2", 600, reminder, 0.0, 0.0, support, -10.0, support, -60.0,
                   None, reminder),
    ]  # fmt: skip
    text = "\n".join(proposal_lines({"file": "p.yaml", "cells": [asdict(c) for c in cells]}))
    assert "first the segment-blind choice" in text and "| against |" in text
    assert f"| (every segment) | M2 | 900 | {reminder} | baseline_tiered | +120 (+80) |" in text
    assert f"| capacity_shock | M2 | 300 | {support} | {reminder} | +300 (+200) |" in text
    assert (
        f"| forgetful | M2 | 600 | {reminder} | {reminder} | - (best bound: {support} -60) |"
        in text
    )
    plain = "\n".join(proposal_lines({"file": "p.yaml", "cells": [asdict(cells[1])]}))
    assert "against" not in plain
