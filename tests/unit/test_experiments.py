"""Experiments: parsing with file:line errors, deterministic assignment, the logged propensity,
every arm through compliance, and the optional experiment_assignments table of the contract."""

from __future__ import annotations

import hashlib
import math
from datetime import date, datetime, time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from rollrisk.conf import DEFAULT_COMPLIANCE, DEFAULT_EXPERIMENTS, DEFAULT_POLICY
from rollrisk.storage.loader import validate_portfolio
from rollrisk.strategies.compliance import (
    AccountState,
    AccountStates,
    ContactHistories,
    enforce_all,
    load_compliance,
)
from rollrisk.strategies.experiments import (
    NOT_RANDOMISED,
    ExperimentPlan,
    assign_experiments,
    decide_experiments,
    enforce_assignment,
    load_experiments,
    parse_experiments,
    shipped_example,
    unit_draws,
)
from rollrisk.strategies.policy import PolicyCase, PolicyCases, choose, decide, load_policy
from rollrisk.strategies.yaml_config import ConfigError
from tests.conftest import tiny_accounts, tiny_statements

EXPERIMENT = """\
version: 1
experiments:
  - id: EXP-A
    description: test
    start: 2026-01-01
    end: 2026-06-30
    share: 0.3
    eligible:
      start_bucket: [M1, M2]
    arms:
      - name: champion
        weight: 2
        policy: true
      - name: night_calls
        weight: 1
        ladder:
          - {day: 0, action: call, channel: agent_call, at: "23:30"}
          - {day: 0, action: call, channel: agent_call, at: "23:40"}
          - {day: 0, action: call, channel: agent_call, at: "23:50"}
          - {day: 1, action: call, channel: agent_call, at: "10:00"}
      - name: same_as_reminder_only
        weight: 1
        ladder:
          - {day: 0, action: reminder, channel: app_push, at: "10:00"}
          - {day: 2, action: reminder, channel: sms, at: "10:00"}
"""


def _scored(n: int, as_of: date = date(2026, 3, 31), seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "account_id": [f"ACC{i:06d}" for i in range(n)],
            "as_of": [as_of] * n,
            "start_bucket": rng.choice(["M1", "M2", "M3"], n),
            "segment": rng.choice(["general", "forgetful"], n),
            "product": ["bnpl"] * n,
            "treatment": rng.choice(["reminder_only", "reminder_then_call"], n),
        }
    )


def test_the_shipped_file_runs_no_experiment_and_its_example_is_valid() -> None:
    assert load_experiments(DEFAULT_EXPERIMENTS).experiments == ()
    example = parse_experiments(shipped_example(), "example")
    assert [e.experiment_id for e in example.experiments] == ["EXP-2026-H1-EARLY"]
    assert [a.name for a in example.experiments[0].arms] == [
        "champion",
        "early_agent_call",
        "grace_then_reminder",
    ]


@pytest.mark.parametrize(
    ("edit", "line", "message"),
    [
        (
            ("share: 0.3", "share: 1.5"),
            7,
            "share (of the eligible accounts randomised) must be in (0, 1]",
        ),
        (("start_bucket: [M1, M2]", "start_bucket: [M1, M7]"), 9, "unknown start bucket 'M7'"),
        (("name: champion", "name: policy"), 11, "the arm name 'policy' is reserved"),
        (
            ('action: call, channel: agent_call, at: "23:30"', "action: cal"),
            17,
            "unknown action 'cal'",
        ),
        (("end: 2026-06-30", "end: 2025-06-30"), 6, "end 2025-06-30 is before start 2026-01-01"),
        (
            ("        policy: true", "        policy: true\n        ladder: []"),
            11,
            "exactly one of policy: true",
        ),
        (("weight: 2", "weight: 0"), 12, "weight must be a finite number > 0"),
        # an infinite weight made every other arm's share 0 and every propensity null
        (("weight: 2", "weight: .inf"), 12, "weight must be a finite number > 0"),
        (("name: champion", 'name: ""'), 11, "an arm's name must be a non-empty text"),
        (("name: champion", "name: [a, b]"), 11, "an arm's name must be a non-empty text"),
        (("policy: true", "policy: 1"), 13, "policy must be true or false"),
        (("version: 1", "version: 2"), 1, "reads experiment files of version 1"),
    ],
)
def test_a_bad_experiment_is_reported_with_file_and_line(edit, line, message) -> None:
    text = EXPERIMENT.replace(*edit)
    with pytest.raises(ConfigError) as raised:
        parse_experiments(text, "exp.yaml")
    assert raised.value.line == line
    assert str(raised.value).startswith(f"exp.yaml:{line}: ")
    assert message in str(raised.value)


@pytest.mark.parametrize("key", ["start", "end"])
def test_a_timestamp_for_an_experiment_date_is_refused_with_file_and_line(key) -> None:
    """`start: 2025-12-01 00:00:00` is a YAML timestamp: it loaded as a datetime and the
    comparison with the end date crashed (TypeError: can't compare datetime to date)."""
    written = {"start": "2026-01-01", "end": "2026-06-30"}[key]
    text = EXPERIMENT.replace(f"{key}: {written}", f"{key}: {written} 00:00:00")
    with pytest.raises(ConfigError) as raised:
        parse_experiments(text, "exp.yaml")
    line = {"start": 5, "end": 6}[key]
    assert str(raised.value) == (
        f"exp.yaml:{line}: experiment 'EXP-A': {key} must be a date YYYY-MM-DD, got a "
        f"timestamp {written} 00:00:00; write {written} (an experiment runs on whole as-of days)"
    )


def test_two_experiments_on_the_same_accounts_and_dates_are_refused() -> None:
    second = (
        EXPERIMENT.split("experiments:\n")[1]
        .replace("EXP-A", "EXP-B")
        .replace("start: 2026-01-01", "start: 2026-06-01")
    )
    with pytest.raises(ConfigError, match=r"exp.yaml:26: experiment 'EXP-B' overlaps 'EXP-A'"):
        parse_experiments(EXPERIMENT + second, "exp.yaml")
    # disjoint strata may run at once
    disjoint = second.replace("start_bucket: [M1, M2]", "start_bucket: [M3]")
    assert len(parse_experiments(EXPERIMENT + disjoint, "exp.yaml").experiments) == 2


def test_assignment_is_a_stable_hash_and_keeps_an_account_in_its_arm() -> None:
    plan = parse_experiments(EXPERIMENT, "exp.yaml")
    policy = load_policy(DEFAULT_POLICY)
    scored = _scored(3000)
    first = assign_experiments(scored, plan, policy)
    # another as-of of the same experiment, rows shuffled, a different policy choice: same arms
    later = scored.with_columns(
        pl.lit(date(2026, 5, 31)).alias("as_of"), pl.lit("intensive_calls").alias("treatment")
    ).reverse()
    second = assign_experiments(later, plan, policy).reverse()
    eligible = scored["start_bucket"].is_in(["M1", "M2"])
    assert first["arm"].is_null().to_list() == (~eligible).to_list()
    assert (first["arm"] == second["arm"]).fill_null(True).all()
    # a fixed digest, so a change of hashing (and so of every running experiment) is seen
    assert unit_draws("EXP-A", ["ACC000000"])[0].tolist() == pytest.approx(
        [0.6039841643939444, 0.14731207306397642], abs=1e-15
    )
    word = int.from_bytes(hashlib.blake2b(b"EXP-A:ACC000000", digest_size=16).digest()[:8], "big")
    assert unit_draws("EXP-A", ["ACC000000"])[0, 0] == (word >> 11) * 2.0**-53
    # outside the dates: nobody is in the experiment
    outside = assign_experiments(_scored(50, as_of=date(2026, 7, 1)), plan, policy)
    assert outside["experiment_id"].is_null().all()


def test_shares_and_propensities_follow_the_declared_mixture() -> None:
    plan = parse_experiments(EXPERIMENT, "exp.yaml")
    policy = load_policy(DEFAULT_POLICY)
    scored = _scored(40_000, seed=1)
    assigned = assign_experiments(scored, plan, policy).with_columns(scored["treatment"])
    inside = assigned.filter(pl.col("experiment_id").is_not_null())
    randomised = inside.filter(pl.col("arm") != NOT_RANDOMISED)
    assert randomised.height / inside.height == pytest.approx(0.3, abs=0.01)
    shares = randomised["arm"].value_counts(normalize=True).sort("arm")
    assert shares["proportion"].to_list() == pytest.approx([0.5, 0.25, 0.25], abs=0.015)
    # the arm whose ladder is reminder_only's takes the bundle name reminder_only
    same = randomised.filter(pl.col("arm") == "same_as_reminder_only")
    assert set(same["arm_treatment"]) == {"reminder_only"}
    expected = {
        # policy gave reminder_only: policy (0.7) + champion (0.3 * 0.5) + the same ladder (0.3 * 0.25)
        ("reminder_only", "reminder_only"): 0.7 + 0.15 + 0.075,
        # policy gave reminder_then_call, account got it: policy + champion
        ("reminder_then_call", "reminder_then_call"): 0.7 + 0.15,
        # an account that got the night calls
        ("reminder_only", "night_calls"): 0.075,
        ("reminder_then_call", "night_calls"): 0.075,
        ("reminder_then_call", "reminder_only"): 0.075,
    }
    for (chosen, taken), propensity in expected.items():
        rows = inside.filter((pl.col("treatment") == chosen) & (pl.col("arm_treatment") == taken))
        assert rows.height > 0
        assert rows["propensity"].to_numpy() == pytest.approx(propensity)
    assert assigned.filter(pl.col("experiment_id").is_null())["propensity"].is_null().all()


def test_every_arm_goes_through_compliance() -> None:
    plan = parse_experiments(EXPERIMENT, "exp.yaml")
    policy = load_policy(DEFAULT_POLICY)
    compliance = load_compliance(DEFAULT_COMPLIANCE).strictest([])
    scored = _scored(400)
    assigned = assign_experiments(scored, plan, policy)
    night = assigned.filter(pl.col("arm") == "night_calls").row(0, named=True)
    decided_at = datetime.combine(date(2026, 4, 1), time(8, 0))
    decision = decide(
        policy,
        PolicyCase(night["account_id"], decided_at, "M1", 0.5, "general", "bnpl", 10, 500.0),
    )
    state = AccountState(night["account_id"], 10, 500.0, first_ever_delinquency=False)
    enforced = enforce_assignment(decision, night, plan, state, None, compliance)
    assert enforced.treatment == "night_calls"
    assert str(enforced.policy_rule) == "exp.yaml:14 rule EXP-A/night_calls"
    # the contact window moves the night calls in, the weekly cap removes what is too many
    assert {change.rule_id for change in enforced.trail} >= {"CMP-CONTACT-WINDOW"}
    window = (compliance.contact_window_start, compliance.contact_window_end)
    assert all(window[0] <= a.at.time() < window[1] for a in enforced.actions)
    # not randomised: the policy's decision, enforced the same way
    kept = assigned.filter(pl.col("arm") == NOT_RANDOMISED).row(0, named=True)
    same = enforce_assignment(decision, kept, plan, state, None, compliance)
    assert same.treatment == decision.treatment and same.policy_rule == decision.policy_rule


def test_experiment_assignments_are_checked_like_the_other_tables(tmp_path: Path) -> None:
    folder = tmp_path / "portfolio"
    folder.mkdir()
    tiny_accounts().write_parquet(folder / "accounts.parquet")
    tiny_statements().write_parquet(folder / "statements.parquet")
    pl.DataFrame(
        {
            "account_id": ["A1", "A2", "A3", "A9", "A1"],
            "as_of": ["2024-03-31", "2024-03-31", "2024-03-31", "2024-03-31", "2024-03-31"],
            "experiment_id": ["E1"] * 5,
            "arm": ["champion", "policy", "calls", "calls", "calls"],
            "propensity": ["0.5", "0", "1.2", "0.1", "0.2"],
        }
    ).write_csv(folder / "experiment_assignments.csv")
    portfolio = validate_portfolio(folder, dates=None)
    table = {t.table: t for t in portfolio.report.tables}["experiment_assignments"]
    # A1's two rows give two arms for one decision: which is right nothing says, neither kept
    assert (table.rows_read, table.rows_accepted, table.rows_rejected) == (5, 0, 5)
    assert portfolio.experiment_assignments is None  # no row accepted: as if absent
    reasons = " | ".join(r for t in portfolio.report.tables for r, _ in t.top_reasons)
    for reason in (
        "account_id: expected an account listed in accounts",
        "conflicting duplicate (account_id, as_of, experiment_id): same key as an earlier row",
        "conflicting duplicate (account_id, as_of, experiment_id): another row repeats this key "
        "with other values, and which is right nothing says, so neither is kept, see an "
        "earlier row",
        "propensity: expected a value <= 1",
        "propensity: expected a value > 0",
    ):
        assert reason in reasons
    # absent: nothing to say, no feature depends on it
    (folder / "experiment_assignments.csv").unlink()
    absent = validate_portfolio(folder)
    assert absent.experiment_assignments is None
    lines = absent.report.summary().splitlines()[1:]  # the first names the (tmp) folder
    assert not any("experiment_assignments" in line for line in lines)


# --- the columnar path the scoring core takes ---------------------------------------------------

# the night-calls arm with eight calls on its first day: more than US Regulation F's 7 calls in
# 7 days, so compliance must cut it (CMP-CALLS-PER-7-DAYS) whatever arm asked for it
CALL_CAP_EXPERIMENT = EXPERIMENT.replace(
    """          - {day: 1, action: call, channel: agent_call, at: "10:00"}
""",
    "".join(
        f'          - {{day: 1, action: call, channel: agent_call, at: "{hour}:00"}}\n'
        for hour in range(10, 18)
    ),
)
DECIDED_AT = datetime.combine(date(2026, 4, 1), time(8, 0))


def _cases(n: int, seed: int = 0) -> PolicyCases:
    rng = np.random.default_rng(seed)
    dpd = rng.integers(1, 90, n)
    return PolicyCases(
        account_id=np.array([f"ACC{i:06d}" for i in range(n)], dtype=object),
        decided_at=DECIDED_AT,
        start_bucket=np.array(["M1", "M2", "M3"], dtype=object)[np.minimum(dpd // 30, 2)],
        probability=rng.uniform(0, 1, n),
        segment=rng.choice(["general", "forgetful", "low_willingness"], n).astype(object),
        product=rng.choice(["bnpl", "credit_card", "cash_loan"], n).astype(object),
        dpd=dpd,
        amount_overdue=rng.uniform(50, 3000, n),
    )


def _states(cases: PolicyCases) -> AccountStates:
    n = len(cases.account_id)
    return AccountStates(
        account_id=cases.account_id,
        dpd=cases.dpd,
        amount_overdue=cases.amount_overdue,
        first_ever_delinquency=np.zeros(n, dtype=bool),
        had_first_delinquency_extension=np.zeros(n, dtype=bool),
        hardship_plan_honoured=np.zeros(n, dtype=bool),
        decided_at=np.full(n, np.datetime64(DECIDED_AT, "us")),
    )


def _no_history() -> ContactHistories:
    return ContactHistories(
        np.array([], dtype=np.int64),
        np.array([], dtype="datetime64[us]"),
        np.array([], dtype=object),
        np.array([], dtype=object),
    )


def test_the_columnar_arms_are_the_per_account_arms_through_compliance() -> None:
    """decide_experiments + enforce_all (what scoring runs) = decide + enforce_assignment (the
    per-account reference) for every account: treatment, rule, actions, trail, arm, propensity;
    and a challenger ladder that breaks the US call cap is cut, with the trail saying so."""
    plan = parse_experiments(CALL_CAP_EXPERIMENT, "exp.yaml")
    policy = load_policy(DEFAULT_POLICY)
    compliance = load_compliance(DEFAULT_COMPLIANCE).strictest(["US"])
    cases = _cases(600)
    choices = choose(policy, cases)
    chosen = decide_experiments(policy, choices, cases, date(2026, 3, 31), plan)
    plans, changes = enforce_all(
        chosen.planned_actions(DECIDED_AT), _states(cases), _no_history(), compliance
    )
    assignment = pl.DataFrame(
        {
            "experiment_id": chosen.experiment_id,
            "arm": chosen.arm,
            "arm_treatment": chosen.treatment,
            "propensity": chosen.propensity,
        },
        schema={"experiment_id": pl.String, "arm": pl.String, "arm_treatment": pl.String,
                "propensity": pl.Float64},
    )  # fmt: skip
    assert set(chosen.arm) >= {None, NOT_RANDOMISED, "champion", "night_calls"}
    cut = 0
    for i in range(len(cases.account_id)):
        case = cases.case(i)
        reference = enforce_assignment(
            decide(policy, case),
            assignment.row(i, named=True),
            plan,
            AccountState(case.account_id, case.dpd, case.amount_overdue, False),
            None,
            compliance,
        )
        assert chosen.treatment[i] == reference.treatment
        assert chosen.rule[i] == str(reference.policy_rule)
        assert plans.rows_of(i) == reference.actions
        assert changes.of_account(i) == reference.trail
        if chosen.arm[i] == "night_calls":
            assert chosen.rule[i] == "exp.yaml:14 rule EXP-A/night_calls"
            calls = [a for a in reference.actions if a.action == "call"]
            assert len(calls) == 7  # 4 + 8 asked for in two days; the cap keeps 7 in 7 days
            assert "CMP-CALLS-PER-7-DAYS" in {c.rule_id for c in reference.trail}
            cut += 1
    assert cut > 0


def test_arm_shares_and_propensities_hold_on_the_scoring_path() -> None:
    """Through decide_experiments: the randomised share of the eligible accounts is the file's
    share, the arms split it by weight (binomial tolerance, 4.5 standard errors), each arm's
    accounts get its ladder, and the propensity is the documented mixture's."""
    plan = parse_experiments(EXPERIMENT, "exp.yaml")
    policy = load_policy(DEFAULT_POLICY)
    cases = _cases(30_000, seed=3)
    choices = choose(policy, cases)
    chosen = decide_experiments(policy, choices, cases, date(2026, 3, 31), plan)
    arm = np.array(chosen.arm, dtype=object)
    eligible = np.isin(cases.start_bucket, ["M1", "M2"])
    assert (arm != None).tolist() == eligible.tolist()  # noqa: E711 - elementwise
    randomised = eligible & (arm != NOT_RANDOMISED)

    def within(hits: int, trials: int, p: float) -> bool:
        return abs(hits / trials - p) <= 4.5 * math.sqrt(p * (1 - p) / trials)

    assert within(int(randomised.sum()), int(eligible.sum()), 0.3)
    for name, weight in (("champion", 0.5), ("night_calls", 0.25), ("same_as_reminder_only", 0.25)):
        assert within(int((arm == name).sum()), int(randomised.sum()), weight)
    policy_treatment = np.array([policy.rules[r].treatment for r in choices.rule], dtype=object)
    treatment = np.array(chosen.treatment, dtype=object)
    propensity = np.array([np.nan if p is None else p for p in chosen.propensity])
    night = arm == "night_calls"
    assert set(treatment[night]) == {"night_calls"}
    assert propensity[night] == pytest.approx(0.3 * 0.25)
    # the champion and the not-randomised keep the policy's treatment: 0.7 + 0.3 * 0.5, and
    # + 0.3 * 0.25 more when the policy's treatment is the ladder of same_as_reminder_only
    kept = np.isin(arm, ["champion", NOT_RANDOMISED])
    assert (treatment[kept] == policy_treatment[kept]).all()
    extra = np.where(policy_treatment[kept] == "reminder_only", 0.075, 0.0)
    assert propensity[kept] == pytest.approx(0.85 + extra)
    assert np.isnan(propensity[~eligible]).all()


def test_an_experiment_outside_its_dates_changes_no_decision() -> None:
    plan = parse_experiments(CALL_CAP_EXPERIMENT, "exp.yaml")
    policy = load_policy(DEFAULT_POLICY)
    cases = _cases(2_000, seed=5)
    choices = choose(policy, cases)
    none = decide_experiments(policy, choices, cases, date(2026, 7, 1), ExperimentPlan("x", ()))
    for as_of in (date(2025, 12, 31), date(2026, 7, 1)):  # the day before start, after end
        outside = decide_experiments(policy, choices, cases, as_of, plan)
        assert outside.experiment_id == outside.arm == outside.propensity == [None] * 2_000
        assert outside.treatment == none.treatment and outside.rule == none.rule
        mine, policys = (
            outside.planned_actions(DECIDED_AT),
            choices.planned_actions(policy, DECIDED_AT),
        )
        for column in ("account", "action", "at", "channel", "recipient"):
            assert getattr(mine, column).tolist() == getattr(policys, column).tolist()
    inside = decide_experiments(policy, choices, cases, date(2026, 1, 1), plan)  # start included
    assert any(inside.arm)


def test_an_experiment_not_running_at_the_as_of_is_named_in_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped example (2026-01-01..2026-06-30) scored at 2025-12-31 assigned nothing and
    said nothing; `rollrisk score` now names each experiment not running at the as-of."""
    from types import SimpleNamespace

    import rollrisk.arguments
    import rollrisk.scoring.batch
    from rollrisk.cli import main

    path = tmp_path / "experiments.yaml"
    path.write_text(shipped_example())
    plan = load_experiments(path)
    running = parse_experiments(EXPERIMENT, "exp.yaml")
    assert running.not_running_notes(date(2026, 1, 1)) == ()  # start included
    assert running.not_running_notes(date(2026, 6, 30)) == ()  # end included
    assert load_experiments(DEFAULT_EXPERIMENTS).not_running_notes(date(2025, 12, 31)) == ()

    def score_with(experiments: ExperimentPlan, as_of: date) -> str:
        setup = SimpleNamespace(experiments=experiments, model_name="m", model_version="3")
        result = SimpleNamespace(
            rejects=SimpleNamespace(lines=lambda: []),
            as_of_note=None,
            warnings=(),
            resumed_partitions=0,
            partitions=1,
            scored=10,
            as_of=as_of,
            experiment_counts={},
            scored_without=(),
            stage_seconds={},
            step_seconds={},
            workers=1,
            current=tmp_path / "out" / "current",
            manifest_path=tmp_path / "out" / "manifest.json",
        )
        monkeypatch.setattr(rollrisk.arguments, "setup_from_arguments", lambda args: (None, setup))
        monkeypatch.setattr(rollrisk.scoring.batch, "score_portfolio", lambda *a, **k: result)
        argv = ["score", "--model", "models:/m@champion", "--data", str(tmp_path / "book")]
        argv += ["--out", str(tmp_path / "out"), "--experiments", str(path)]
        assert main(argv) == 0
        return capsys.readouterr().err

    err = score_with(plan, date(2025, 12, 31))
    line = plan.experiments[0].line
    assert (
        f"[score] note: experiment EXP-2026-H1-EARLY ({path}:{line}) is not running at "
        "2025-12-31 (runs 2026-01-01..2026-06-30): its accounts keep the policy's decisions"
    ) in err.splitlines()
    assert "[score] note" not in score_with(plan, date(2026, 3, 31))
    # the shipped file holds no experiment (its example is a comment): nothing is said
    shipped = load_experiments(DEFAULT_EXPERIMENTS)
    assert "[score] note" not in score_with(shipped, date(2025, 12, 31))
