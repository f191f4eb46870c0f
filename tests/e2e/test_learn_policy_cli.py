"""`rollrisk learn-policy` end to end on a logged experiment whose best policy is known."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from rollrisk.cli import main
from rollrisk.errors import NotEnoughEvidence
from rollrisk.strategies.experiments import shipped_example
from rollrisk.strategies.policy import load_policy

ARM_MEANS = {  # book value by segment and bundle: the arms win, each in one segment
    "forgetful": {"reminder_only": 100.0, "early_agent_call": 135.0, "grace_then_reminder": 95.0},
    "capacity_shock": {
        "reminder_only": 100.0,
        "early_agent_call": 90.0,
        "grace_then_reminder": 140.0,
    },
}


def _logged(
    path: Path, n: int = 6000, seed: int = 5, share: float = 0.5, experiment: str | None = None
) -> Path:
    # n: 3000 before the safe labels (a leaf then held < 30 explored accounts to label it)
    # experiment: the experiment_id and arm columns of that experiment of shipped_example()
    # (its arms and weights are these; its share is 0.10)
    rng = np.random.default_rng(seed)
    segment = rng.choice(["forgetful", "capacity_shock"], n)
    bucket = rng.choice(["M1", "M2"], n)
    # arms: champion (weight 2, the policy's reminder_only), two challengers (weight 1 each)
    arm = rng.choice(
        ["reminder_only", "early_agent_call", "grace_then_reminder"], n, p=[0.5, 0.25, 0.25]
    )
    randomised = rng.random(n) < share
    bundle = np.where(randomised, arm, "reminder_only")
    propensity = np.where(bundle == "reminder_only", 1 - share + share * 0.5, share * 0.25)
    mean = np.array([ARM_MEANS[s][b] for s, b in zip(segment, bundle, strict=True)])
    logged = {}
    if experiment is not None:
        logged["experiment_id"] = [experiment] * n
        logged["arm"] = np.where(
            randomised, np.where(arm == "reminder_only", "champion", arm), "policy"
        )
    pl.DataFrame(
        {
            "account_id": [f"L{i:05d}" for i in range(n)],
            **logged,
            "bundle": bundle,
            "policy_bundle": "reminder_only",
            "propensity": propensity,
            "book_value": mean + rng.normal(0, 40, n),
            "segment": segment,
            "start_bucket": bucket,
            "probability": rng.random(n),
        }
    ).write_csv(path)
    return path


@pytest.mark.slow
def test_learn_policy_writes_a_loadable_policy_and_an_estimate_with_its_interval(
    tmp_path: Path, capsys
) -> None:
    logged = _logged(tmp_path / "logged.csv")
    experiments = tmp_path / "experiments.yaml"
    experiments.write_text(shipped_example(), encoding="utf-8")
    out = tmp_path / "learned"
    code = main(
        [
            "learn-policy",
            "--logged", str(logged),
            "--experiments", str(experiments),
            "--model-features", "probability",
            "--max-depth", "2",
            "--folds", "2",
            "--bootstrap", "300",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "| proposed (learned rules) |" in printed
    policy = load_policy(out / "learned_policy.yaml")
    learned_rules = [rule for rule in policy.rules if rule.rule_id.startswith("LRN-")]
    # the logging policy gave reminder_only to everyone, and the shipped file's rules give other
    # treatments: every leaf writes its rule, a keeping one with reminder_only (LRN-LOGGED below)
    given = {(tuple(sorted(r.segments)), r.treatment) for r in learned_rules}
    assert {g for g in given if g[1] != "reminder_only"} == {
        (("forgetful",), "early_agent_call"),
        (("capacity_shock",), "grace_then_reminder"),
    }
    assert [(r.rule_id, r.treatment) for r in policy.rules if r.precedence > 1] == [
        ("LRN-LOGGED", "reminder_only")
    ]
    result = json.loads((out / "policy_learning.json").read_text())
    proposed = result["evaluation"]["proposed_policy"]
    assert proposed["ci_low"] < proposed["value"] < proposed["ci_high"]
    # the truth on average: (135 + 140) / 2; the current policy: 100
    assert proposed["ci_low"] - 5 < 137.5 < proposed["ci_high"] + 5
    assert result["evaluation"]["uplift_vs_current"]["ci_low"] > 0
    assert (out / "learned_rules.yaml").exists() and (out / "policy_learning.md").exists()
    # the files say where they came from: a reviewer holding only the policy file can trace it
    origin = result["provenance"]
    assert origin["logged"]["sha256"] == hashlib.sha256(logged.read_bytes()).hexdigest()
    assert (origin["logged"]["rows"], origin["logged"]["decisions_used"]) == (6000, 6000)
    assert (
        origin["experiments_file"]["sha256"] == hashlib.sha256(experiments.read_bytes()).hexdigest()
    )
    uplift = result["evaluation"]["uplift_vs_current"]
    assert origin["estimate"]["proposed_minus_current_per_decision"] == uplift
    header = (out / "learned_policy.yaml").read_text().splitlines()[:4]
    assert header[0].startswith("# Learned ") and origin["logged"]["sha256"][:16] in header[0]
    assert "6,000 first decisions of 6,000 rows" in header[0]
    assert f"{uplift['value']:+,.2f} per decision" in header[3]
    rules = yaml.safe_load((out / "learned_rules.yaml").read_text())
    assert rules["provenance"] == origin


def test_learn_policy_names_the_bundle_it_has_no_ladder_for(tmp_path: Path, capsys) -> None:
    logged = _logged(tmp_path / "logged.csv", n=200)
    code = main(["learn-policy", "--logged", str(logged), "--out", str(tmp_path / "o")])
    assert code != 0
    err = capsys.readouterr().err
    assert "has no ladder in the policy or experiment files given" in err
    assert "'early_agent_call'" in err or "'grace_then_reminder'" in err


@pytest.mark.slow
def test_learnt_from_the_lenders_standard_queue_control_the_file_stands_on_its_own(
    tmp_path: Path, capsys
) -> None:
    # the lender's control arm is its standard tiered collection: policy_bundle standard_queue
    logged = _logged(tmp_path / "logged.csv")
    control = pl.read_csv(logged).with_columns(
        pl.col("bundle").str.replace("^reminder_only$", "standard_queue"),
        pl.lit("standard_queue").alias("policy_bundle"),
    )
    control.write_csv(logged)
    experiments = tmp_path / "experiments.yaml"
    experiments.write_text(shipped_example(), encoding="utf-8")
    out = tmp_path / "learned"
    code = main(
        [
            "learn-policy",
            "--logged", str(logged),
            "--experiments", str(experiments),
            "--max-depth", "2",
            "--folds", "2",
            "--bootstrap", "200",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    policy = load_policy(out / "learned_policy.yaml")
    # every rule names a treatment of the file; below the learned rules, the lender's queue
    assert all(rule.treatment in policy.treatments for rule in policy.rules)
    assert policy.rules[-1].rule_id == "LRN-LOGGED"
    assert policy.rules[-1].treatment == "standard_queue"
    # the model-driven rules of conf/policy.yaml did not log these decisions: none is kept
    assert all(rule.rule_id.startswith("LRN-") for rule in policy.rules)
    given = {(tuple(sorted(r.segments)), r.treatment) for r in policy.rules if r.precedence == 1}
    assert given == {
        (("forgetful",), "early_agent_call"),
        (("capacity_shock",), "grace_then_reminder"),
    }


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--confidence", "1"], "--confidence must be in [0, 1) (0 = argmax labels), got 1.0"),
        (["--min-explored", "0"], "--min-explored must be at least 1, got 0"),
        (["--label-share", "1.5"], "--label-share must be a share strictly between 0 and 1"),
        (["--folds", "1"], "--folds must be at least 2, got 1 (cross-fitting"),
        (["--bootstrap", "1"], "--bootstrap must be at least 200, got 1"),
        (["--bootstrap", "0"], "--bootstrap must be at least 200, got 0"),
        (["--max-depth", "0"], "--max-depth must be at least 1, got 0"),
        (["--threads", "0"], "--threads must be at least 1, got 0"),
        # numpy's seeds: a traceback before
        (["--seed", "-1"], "--seed must be in [0, 2**32), got -1"),
        (["--seed", str(2**32)], "--seed must be in [0, 2**32)"),
    ],
)
def test_learn_policy_refuses_settings_out_of_range(
    tmp_path: Path, capsys, flags: list[str], message: str
) -> None:
    logged = _logged(tmp_path / "logged.csv", n=200)
    code = main(["learn-policy", "--logged", str(logged), "--out", str(tmp_path / "o"), *flags])
    assert code == 2
    assert message in capsys.readouterr().err


def test_learn_policy_refuses_a_decision_logged_twice(tmp_path: Path, capsys) -> None:
    """A copied row would count one decision twice (and narrow the interval): refused, naming
    the decision and its rows."""
    logged = _logged(tmp_path / "logged.csv", n=200)
    frame = pl.read_csv(logged)
    pl.concat([frame, frame.slice(7, 3)]).write_csv(logged)
    code = main(["learn-policy", "--logged", str(logged), "--out", str(tmp_path / "o"),
                 "--decisions", "all"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "3 decisions are logged more than once (the same account_id)" in err
    assert "the first: account_id L00007 (data rows 8, 201)" in err
    assert not (tmp_path / "o").exists()


def test_rules_a_policy_file_cannot_test_remove_an_earlier_learned_policy(
    tmp_path: Path, capsys
) -> None:
    """Re-run into the same --out with rules on a column conf/policy.yaml cannot test: the
    earlier run's learned_policy.yaml would be taken for this run's; it is removed."""
    logged = _logged(tmp_path / "logged.csv", n=1500)
    out = tmp_path / "o"
    out.mkdir()
    (out / "learned_policy.yaml").write_text("name: earlier-run\n", encoding="utf-8")
    experiments = tmp_path / "experiments.yaml"
    experiments.write_text(shipped_example(), encoding="utf-8")
    code = main(["learn-policy", "--logged", str(logged), "--out", str(out),
                 "--experiments", str(experiments),
                 "--rule-features", "start_bucket,probability", "--model-features", "segment",
                 "--bootstrap", "200"])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert "an earlier run's learned_policy.yaml there is removed" in err
    # the feature a policy file cannot test is named, not every rule feature
    assert "conf/policy.yaml cannot (probability): learned_rules.yaml only" in err
    assert sorted(p.name for p in out.iterdir()) == [
        "learned_rules.yaml", "policy_learning.json", "policy_learning.md",
    ]  # fmt: skip


def test_a_bundle_given_to_one_account_is_named_not_a_traceback(tmp_path: Path, capsys) -> None:
    """The demo on 8 months: 220 first decisions, four bundles given to 1 account, and
    EconML stopped with 'crossfit folds contain training splits that don't contain all
    treatments' (exit 1, a traceback)."""
    logged = _logged(tmp_path / "logged.csv", n=400)
    frame = pl.read_csv(logged)
    rare = frame.head(1).with_columns(
        account_id=pl.lit("R") + pl.col("account_id"), bundle=pl.lit("early_agent_call")
    )
    frame = pl.concat([frame.filter(pl.col("bundle") != "early_agent_call"), rare])
    frame.write_csv(logged)
    experiments = tmp_path / "experiments.yaml"
    experiments.write_text(shipped_example(), encoding="utf-8")
    code = main(["learn-policy", "--logged", str(logged), "--out", str(tmp_path / "o"),
                 "--experiments", str(experiments), "--bootstrap", "200"])  # fmt: skip
    assert code == NotEnoughEvidence.exit_code == 3  # not enough evidence, not a usage error
    err = capsys.readouterr().err
    assert "too few for 3-fold cross-fitting: early_agent_call was given to one account" in err
    assert "early_agent_call: 1," in err


@pytest.mark.parametrize(
    ("decisions", "seed", "reason"),
    [
        (40, 5, "too few decisions to learn and to evaluate"),  # folds fill, the halves do not
        (12, 1, "no logged decision took another bundle"),  # none of the 12 randomised away
    ],
)
def test_an_experiment_too_small_to_learn_from_exits_3_and_leaves_no_policy(
    tmp_path: Path, capsys, decisions: int, seed: int, reason: str
) -> None:
    """Not enough logged evidence is its own exit code (3, the demo goes on without a policy),
    with its reason in one line; an earlier run's files in --out are removed, so that no
    learned_policy.yaml is taken for this run's."""
    logged = _logged(tmp_path / "logged.csv", n=decisions, seed=seed)
    experiments = tmp_path / "experiments.yaml"
    experiments.write_text(shipped_example(), encoding="utf-8")
    out = tmp_path / "o"
    out.mkdir()
    earlier = ["learned_policy.yaml", "learned_rules.yaml", "policy_learning.json",
               "policy_learning.md"]  # fmt: skip
    for name in earlier:
        (out / name).write_text("from an earlier run\n", encoding="utf-8")
    (out / "notes.txt").write_text("the user's own\n", encoding="utf-8")
    code = main(["learn-policy", "--logged", str(logged), "--out", str(out),
                 "--experiments", str(experiments), "--bootstrap", "200"])  # fmt: skip
    assert code == 3
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("rollrisk learn-policy: error: ")
    assert reason in errors[0]
    assert "an earlier run's learned_rules.yaml, learned_policy.yaml" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


SHIPPED_EXPERIMENT = "EXP-2026-H1-EARLY"  # shipped_example()'s: share 0.10, weights 2:1:1


def _refused(tmp_path: Path, capsys, frame: pl.DataFrame) -> str:
    logged = tmp_path / "logged.csv"
    frame.write_csv(logged)
    experiments = tmp_path / "experiments.yaml"
    experiments.write_text(shipped_example(), encoding="utf-8")
    code = main(["learn-policy", "--logged", str(logged), "--out", str(tmp_path / "o"),
                 "--experiments", str(experiments), "--bootstrap", "200"])  # fmt: skip
    assert code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert f"--logged {logged}: " in errors[0] and str(experiments) in errors[0]
    assert not (tmp_path / "o").exists()
    return errors[0]


def test_a_table_logged_under_the_experiment_file_passes_its_checks(tmp_path: Path) -> None:
    """The consistent table (share 0.10: propensities 0.95 for the policy's reminder_only,
    0.025 for each challenger) is not refused; a row outside every experiment (null
    experiment_id) kept the policy's bundle with propensity 1."""
    from rollrisk.conf import DEFAULT_POLICY
    from rollrisk.strategies.experiments import check_logged_decisions, parse_experiments

    frame = pl.read_csv(
        _logged(tmp_path / "logged.csv", n=400, share=0.10, experiment=SHIPPED_EXPERIMENT)
    )
    outside = _outside_every_experiment(frame, "reminder_only")
    plan = parse_experiments(shipped_example(), "experiments.yaml")
    policy = load_policy(DEFAULT_POLICY)
    assert check_logged_decisions(pl.concat([frame, outside]), plan, policy, "t.csv") is None
    without = frame.drop("experiment_id")
    assert "no experiment_id column" in check_logged_decisions(without, plan, policy, "t.csv")


def test_an_experiment_the_file_does_not_have_is_refused(tmp_path: Path, capsys) -> None:
    """A table from another experiment file was learnt from as if it were this one's."""
    frame = pl.read_csv(
        _logged(tmp_path / "logged.csv", n=400, share=0.10, experiment=SHIPPED_EXPERIMENT)
    )
    frame = frame.with_columns(
        experiment_id=pl.when(pl.int_range(pl.len()) < 5)
        .then(pl.lit("EXP-2025-OTHER"))
        .otherwise("experiment_id")
    )
    error = _refused(tmp_path, capsys, frame)
    assert "column experiment_id: 5 row(s) name an experiment that" in error
    assert (
        "account L00000: 'EXP-2025-OTHER', expected one of EXP-2026-H1-EARLY; "
        "account L00001: 'EXP-2025-OTHER'" in error
    )
    assert "L00003" not in error  # up to 3 examples


def test_a_bundle_or_arm_the_experiment_does_not_have_is_refused(tmp_path: Path, capsys) -> None:
    """A treatment of the policy the experiment never gives (it has a ladder, so it was learnt
    from as an explored bundle), and an arm renamed, are refused naming what was expected."""
    frame = pl.read_csv(
        _logged(tmp_path / "logged.csv", n=400, share=0.10, experiment=SHIPPED_EXPERIMENT)
    )
    challenger = pl.col("bundle") == "grace_then_reminder"
    moved = frame.with_columns(
        bundle=pl.when(challenger).then(pl.lit("seasonal_grace")).otherwise("bundle"),
        arm=pl.when(challenger).then(pl.lit("seasonal_grace")).otherwise("arm"),
    )
    error = _refused(tmp_path, capsys, moved.drop("arm"))
    count = frame.filter(challenger).height
    assert f"column bundle: {count:,} row(s) hold a bundle that their experiment in" in error
    assert (
        "'seasonal_grace', expected one of early_agent_call, grace_then_reminder, reminder_only"
        in error
    )
    error = _refused(tmp_path, capsys, moved)
    assert f"column arm: {count:,} row(s) name an arm that their experiment in" in error
    assert "'seasonal_grace', expected one of champion, early_agent_call" in error


def test_a_bundle_its_arm_does_not_give_is_refused(tmp_path: Path, capsys) -> None:
    """Arms swapped in the log (every bundle and propensity still one the experiment can
    give): the rows learnt from would be credited to the wrong arm's readout."""
    frame = pl.read_csv(
        _logged(tmp_path / "logged.csv", n=400, share=0.10, experiment=SHIPPED_EXPERIMENT)
    )
    swapped = frame.with_columns(
        arm=pl.when(pl.col("arm") == "early_agent_call")
        .then(pl.lit("grace_then_reminder"))
        .when(pl.col("arm") == "grace_then_reminder")
        .then(pl.lit("early_agent_call"))
        .otherwise("arm")
    )
    count = frame.filter(pl.col("arm").is_in(["early_agent_call", "grace_then_reminder"])).height
    assert count > 0
    error = _refused(tmp_path, capsys, swapped)
    assert f"column bundle: {count:,} row(s) hold a bundle their arm does not give" in error
    assert "(arm grace_then_reminder)', expected grace_then_reminder" in error or (
        "(arm early_agent_call)', expected early_agent_call" in error
    )
    # a row outside the randomised share logged with a ladder arm's bundle: also refused
    moved = frame.with_columns(
        bundle=pl.when(pl.int_range(pl.len()) == pl.col("arm").eq("policy").arg_true().first())
        .then(pl.lit("early_agent_call"))
        .otherwise("bundle")
    )
    error = _refused(tmp_path, capsys, moved)
    assert "column bundle: 1 row(s) hold a bundle their arm does not give" in error
    assert "'early_agent_call (arm policy)', expected reminder_only" in error


def test_propensities_other_than_the_experiment_file_s_are_refused(tmp_path: Path, capsys) -> None:
    """Logged at share 0.5 but the file says 0.10: every propensity is off (0.75 for 0.95,
    0.125 for 0.025), and the doubly robust weights with them."""
    frame = pl.read_csv(_logged(tmp_path / "logged.csv", n=400, experiment=SHIPPED_EXPERIMENT))
    error = _refused(tmp_path, capsys, frame)
    assert "column propensity: 400 row(s) differ by more than 1e-06 from the propensity" in error
    assert "account L00000: 0.75, expected 0.95" in error or "0.125, expected 0.025" in error


def test_a_decision_logged_inside_and_outside_an_experiment_is_refused(
    tmp_path: Path, capsys
) -> None:
    """The same account and as-of with and without an experiment_id is one decision twice (an
    account is in at most one experiment at an as-of): it was counted twice."""
    frame = pl.read_csv(_logged(tmp_path / "logged.csv", n=200, experiment="EXP-EARLY-CALL"))
    frame = frame.with_columns(pl.lit("2025-06-30").alias("as_of"))
    copies = frame.filter(pl.col("arm") == "policy").head(5)
    copies = copies.with_columns(
        pl.lit(None, pl.String).alias("experiment_id"), pl.lit(None, pl.String).alias("arm")
    )
    pl.concat([frame, copies]).write_csv(tmp_path / "twice.csv")
    code = main(["learn-policy", "--logged", str(tmp_path / "twice.csv"),
                 "--out", str(tmp_path / "o")])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "5 decisions are logged more than once (the same account_id, as_of)" in err
    assert not (tmp_path / "o").exists()


def test_learn_policy_refuses_an_out_that_is_a_file_before_learning(tmp_path: Path, capsys) -> None:
    logged = _logged(tmp_path / "logged.csv", n=200)
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    code = main(["learn-policy", "--logged", str(logged), "--out", str(tmp_path / "afile")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--out" in err and "is a file: expected a folder" in err
    assert "learning ..." not in err


def test_a_policy_with_other_risk_bands_than_the_table_was_scored_with_is_refused(
    tmp_path: Path, capsys
) -> None:
    """logged-decisions records the bands its risk_band column was scored with: rules on a
    band would be written into a policy file where the band means other accounts."""
    logged = _logged(tmp_path / "logged.csv", n=200)
    summary = tmp_path / "logged.csv.summary.json"
    summary.write_text(
        json.dumps(
            {
                "scored_with": {
                    "policy": "bands.yaml",
                    "risk_bands": {"low": 0.03, "medium": 0.1, "high": 1.0},
                }
            }
        ),
        encoding="utf-8",
    )
    code = main(["learn-policy", "--logged", str(logged), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "scored with the bands of bands.yaml (low <= 0.03, medium <= 0.1, high <= 1;" in err
    assert "has low <= 0.15, medium <= 0.45, high <= 1" in err
    assert not (tmp_path / "o").exists()


def test_rows_outside_every_experiment_and_nan_propensities_are_named_for_what_they_are(
    tmp_path: Path,
) -> None:
    """A row with no experiment_id but another bundle than its policy_bundle was said to hold
    "a bundle that their experiment never gives"; a NaN propensity was said to "differ by more
    than 1e-06" (it is left to the learner's own check, which names it)."""
    from rollrisk.conf import DEFAULT_POLICY
    from rollrisk.errors import UserError
    from rollrisk.strategies.experiments import check_logged_decisions, parse_experiments

    frame = pl.read_csv(
        _logged(tmp_path / "logged.csv", n=400, share=0.10, experiment=SHIPPED_EXPERIMENT)
    )
    plan = parse_experiments(shipped_example(), "experiments.yaml")
    policy = load_policy(DEFAULT_POLICY)
    outside = _outside_every_experiment(frame, "early_agent_call")
    with pytest.raises(UserError, match="are outside every experiment .* but hold another bundle"):
        check_logged_decisions(pl.concat([frame, outside]), plan, policy, "t.csv")
    nan = frame.with_columns(
        propensity=pl.when(pl.int_range(pl.len()) == 3)
        .then(float("nan"))
        .otherwise(pl.col("propensity"))
    )
    assert check_logged_decisions(nan, plan, policy, "t.csv") is None


def _outside_every_experiment(frame: pl.DataFrame, bundle: str) -> pl.DataFrame:
    """One logged row outside every experiment (null experiment and arm), given ``bundle``
    with propensity 1."""
    return frame.head(1).with_columns(
        account_id=pl.lit("OUT1"),
        experiment_id=pl.lit(None, pl.String),
        arm=pl.lit(None, pl.String),
        bundle=pl.lit(bundle),
        propensity=pl.lit(1.0),
    )


def test_a_table_that_is_not_logged_decisions_is_refused_before_any_progress(
    tmp_path: Path, capsys
) -> None:
    """Found by a new user: given a training set, learn-policy printed how many first
    decisions it kept and "learning ..." before saying the columns were missing."""
    logged = tmp_path / "training_set.csv"
    pl.DataFrame(
        {"account_id": ["A1", "A2"], "as_of": ["2025-01-31"] * 2, "label": [0, 1]}
    ).write_csv(logged)
    code = main(["learn-policy", "--logged", str(logged), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "lack the column(s)" in err
    assert "[learn-policy]" not in err  # no progress line before the refusal
    assert not (tmp_path / "o").exists()
