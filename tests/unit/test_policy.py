"""The strategy policy: validation on load (file:line), coverage, conflicts, and decisions."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from rollrisk.conf import HANDWRITTEN_POLICY, STANDARD_POLICY
from rollrisk.features.schemas import CHANNELS
from rollrisk.strategies.policy import ACTIONS, PolicyCase, decide, load_policy, parse_policy
from rollrisk.strategies.yaml_config import ConfigError

CONF = Path(__file__).resolve().parents[2] / "conf" / "policy.yaml"

# Line numbers matter: the tests below assert them.
POLICY = """\
name: tiny
risk_bands: {low: 0.2, high: 1.0}
space:
  start_bucket: [M1, M2]
  segment: [forgetful, general]
  product: [bnpl, cash_loan]
treatments:
  nudge:
    ladder:
      - {day: 0, action: reminder, channel: sms, at: "09:00"}
  press:
    ladder:
      - {day: 0, action: call, channel: agent_call}
      - {day: 4, action: agency_assignment}
rules:
  - id: R-FORGETFUL
    precedence: 10
    when: {segment: [forgetful], start_bucket: [M1], risk_band: [low]}
    treatment: nudge
  - id: R-BIG
    precedence: 20
    when: {amount_overdue: {ge: 1000}}
    treatment: press
  - id: R-REST
    precedence: 100
    when: {}
    treatment: nudge
"""


def _case(**overrides) -> PolicyCase:
    values = {
        "account_id": "a1",
        "decided_at": datetime(2026, 3, 31),
        "start_bucket": "M1",
        "probability": 0.1,
        "segment": "forgetful",
        "product": "bnpl",
        "dpd": 5,
        "amount_overdue": 2000.0,
    }
    values.update(overrides)
    return PolicyCase(**values)


def test_the_lowest_precedence_matching_rule_fires_and_is_in_the_trail():
    policy = parse_policy(POLICY, "conf/tiny.yaml")
    decision = decide(policy, _case())
    assert decision.treatment == "nudge"
    assert decision.policy_rule.rule_id == "R-FORGETFUL"
    assert str(decision.policy_rule) == "tiny.yaml:16 rule R-FORGETFUL"  # the name, never a path
    assert decision.risk_band == "low"

    pressed = decide(policy, _case(probability=0.7))  # high band: R-FORGETFUL no longer matches
    assert pressed.policy_rule.rule_id == "R-BIG"
    assert [(a.action, a.at) for a in pressed.actions] == [
        ("call", datetime(2026, 3, 31, 10, 0)),  # default time of day
        ("agency_assignment", datetime(2026, 4, 4, 10, 0)),
    ]
    assert (
        decide(policy, _case(probability=0.7, amount_overdue=999.0)).policy_rule.rule_id == "R-REST"
    )


def test_risk_bands_use_inclusive_upper_bounds():
    policy = parse_policy(POLICY, "p.yaml")
    assert policy.risk_band(0.2) == "low"
    assert policy.risk_band(0.2000001) == "high"
    assert policy.risk_band(1.0) == "high"
    with pytest.raises(ValueError, match=r"within \[0, 1\]"):
        policy.risk_band(1.5)


def test_each_action_declares_the_channels_a_step_uses():
    # a field visit hands over the notice letter: two channels, whichever the step names
    assert ACTIONS["field_visit_with_notice"].channels_used() == ("field_visit", "notice_letter")
    assert ACTIONS["field_visit_with_notice"].channels_used("field_visit") == (
        "field_visit",
        "notice_letter",
    )
    assert ACTIONS["call"].channels_used() == ("agent_call",)
    assert ACTIONS["reminder"].channels_used("app_push") == ("app_push",)
    assert ACTIONS["grace_period"].channels_used() == ()
    with pytest.raises(ValueError, match="action 'call' cannot use channel 'sms'; allowed: "):
        ACTIONS["call"].channels_used("sms")
    for spec in ACTIONS.values():
        assert set(spec.channels) | set(spec.companion_channels) <= set(CHANNELS), spec.name


def test_an_account_outside_the_declared_space_is_refused_with_its_values():
    policy = parse_policy(POLICY, "p.yaml")
    with pytest.raises(ValueError, match="no rule of p.yaml matches account a1: start_bucket=M3"):
        decide(policy, _case(start_bucket="M3", dpd=70))


def test_the_shipped_policy_is_valid_and_decides():
    policy = load_policy(CONF)
    case = _case(segment="capacity_shock", product="cash_loan", probability=0.3)
    m2 = {"start_bucket": "M2", "dpd": 40}
    decision = decide(policy, replace(case, **m2))
    assert decision.policy_rule.rule_id == "POL-CAP-M2"
    assert [a.action for a in decision.actions] == ["interest_waiver", "restructure_offer"]
    # every other account: the standard queue plus a hardship review (M1 and M3 capacity
    # shocks too: there the ladder of their own did not beat the segment-blind choice)
    others = [("capacity_shock", {}), ("capacity_shock", {"start_bucket": "M3", "dpd": 70})]
    others += [(s, m2) for s in ("general", "forgetful", "seasonal", "unreachable")]
    others += [("low_willingness", {})]
    for segment, where in others:
        other = decide(policy, _case(segment=segment, product="agri_loan", **where))
        assert (other.policy_rule.rule_id, other.treatment) == (
            "POL-REVIEW", "queue_hardship_waiver"
        ), (segment, where)  # fmt: skip
        assert [a.action for a in other.actions] == [
            "standard_queue", "restructure_offer", "interest_waiver_on_hardship"
        ]  # fmt: skip
    # the shipped policy keeps every ladder of the hand-written one it replaced (the oracle's
    # candidates and the simulated lender's experiment arms are the treatments); the ladders it
    # adds keep the standard queue, which the simulated lender does not explore, so its
    # experiment (and every simulated history) is the same
    handwritten = load_policy(HANDWRITTEN_POLICY)

    def ladders(p):  # noqa: ANN001, ANN202 - the steps without their line numbers
        return {
            name: [(s.action, s.day, s.at, s.channel, s.recipient) for s in t.steps]
            for name, t in p.treatments.items()
        }

    added = set(policy.treatments) - set(handwritten.treatments)
    assert added and all(policy.treatments[name].keeps_standard_queue for name in added)
    kept = {k: v for k, v in ladders(policy).items() if k not in added}
    assert kept == ladders(handwritten)
    assert [t for t in policy.treatments if t not in added] == list(handwritten.treatments)
    from rollrisk.simulator.exploration import exploration_from_policy

    def arms(p):  # noqa: ANN001, ANN202 - the experiment's arms, steps without line numbers
        explore = exploration_from_policy(p, 0.1, source="p")
        return [
            (n, [(s.action, s.day, s.at, s.channel) for s in steps]) for n, steps in explore.arms
        ]

    assert arms(policy) == arms(handwritten)


def test_the_handwritten_policy_is_valid_and_decides():
    policy = load_policy(HANDWRITTEN_POLICY)
    case = _case(segment="capacity_shock", product="cash_loan", probability=0.3)
    decision = decide(policy, case)
    assert decision.policy_rule.rule_id == "POL-CAP-LOW"
    assert "grace_period" in [a.action for a in decision.actions]
    big = _case(segment="low_willingness", start_bucket="M3", dpd=75, amount_overdue=8000.0)
    assert "legal_referral" in [a.action for a in decide(policy, big).actions]


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("action: agency_assignment", "action: agency", 14, "unknown action 'agency'"),
        (
            "segment: [forgetful], start",
            "segment: [forgetfull], start",
            18,
            "unknown segment 'forgetfull'",
        ),
        (
            "  segment: [forgetful, general]",
            "  segment: [forgetful, lazy]",
            5,
            "unknown segment 'lazy'",
        ),
        ("product: [bnpl, cash_loan]", "product: [bnpl, payday]", 6, "unknown product 'payday'"),
        ("treatment: press", "treatment: pressure", 23, "unknown treatment 'pressure'"),
        ("channel: sms", "channel: fax", 10, "cannot use channel 'fax'"),
        ("precedence: 20", "precedance: 20", 21, "unknown key 'precedance'"),
        ("risk_band: [low]}", "risk_band: [lo]}", 18, "unknown risk band 'lo'"),
        ("{day: 4, action", "{day: -1, action", 14, "day must be a whole number"),
        ('at: "09:00"', 'at: "9 am"', 10, "time of day must be HH:MM"),
    ],
)
def test_load_errors_name_the_file_and_line(old, new, line, message):
    text = POLICY.replace(old, new, 1)
    assert text != POLICY
    with pytest.raises(ConfigError) as error:
        parse_policy(text, "conf/policy.yaml")
    assert str(error.value).startswith(f"conf/policy.yaml:{line}: "), str(error.value)
    assert message in str(error.value)


def test_a_gap_in_coverage_is_rejected_with_an_example():
    text = POLICY.replace("    when: {}\n", "    when: {start_bucket: [M1]}\n")
    with pytest.raises(ConfigError) as error:
        parse_policy(text, "p.yaml")
    message = str(error.value)
    assert message.startswith("p.yaml:15: ")
    assert "covered by no rule" in message
    assert "start_bucket=M2, risk_band=low, segment=forgetful, product=bnpl" in message
    assert "amount_overdue in [0, 1000)" in message  # the big-amount rule still covers >= 1000


def test_a_dpd_gap_inside_a_bucket_is_a_coverage_gap():
    text = POLICY.replace("    when: {}\n", "    when: {dpd: {ge: 1, lt: 45}}\n")
    with pytest.raises(ConfigError, match=r"start_bucket=M2, .* dpd in \[45, 60\)"):
        parse_policy(text, "p.yaml")


def test_conflicting_rules_at_the_same_precedence_are_rejected():
    text = POLICY.replace("precedence: 20", "precedence: 10")
    with pytest.raises(ConfigError) as error:
        parse_policy(text, "p.yaml")
    message = str(error.value)
    assert message.startswith("p.yaml:20: ")
    assert "'R-FORGETFUL' (line 16) and 'R-BIG' have the same precedence 10" in message
    assert "('nudge' vs 'press')" in message


def test_same_precedence_is_fine_when_regions_do_not_overlap_or_treatments_agree():
    disjoint = POLICY.replace("precedence: 20", "precedence: 10").replace(
        "when: {amount_overdue: {ge: 1000}}",
        "when: {amount_overdue: {ge: 1000}, risk_band: [high]}",
    )
    parse_policy(disjoint, "p.yaml")
    same_treatment = POLICY.replace("precedence: 20", "precedence: 10").replace(
        "treatment: press", "treatment: nudge"
    )
    parse_policy(same_treatment, "p.yaml")


def test_overlap_only_outside_a_buckets_dpd_range_is_not_a_conflict():
    text = (
        POLICY.replace(
            "when: {segment: [forgetful], start_bucket: [M1], risk_band: [low]}",
            "when: {start_bucket: [M1], dpd: {ge: 1, lt: 30}}",
        )
        .replace(
            "when: {amount_overdue: {ge: 1000}}\n    treatment: press",
            "when: {start_bucket: [M1, M2], dpd: {ge: 30, lt: 60}}\n    treatment: press",
        )
        .replace("precedence: 20", "precedence: 10")
    )
    policy = parse_policy(text, "p.yaml")
    assert decide(policy, _case(start_bucket="M2", dpd=40)).treatment == "press"


def test_a_rule_that_can_never_fire_is_rejected():
    text = POLICY.replace(
        "when: {amount_overdue: {ge: 1000}}", "when: {start_bucket: [M1], dpd: {ge: 60}}"
    )
    with pytest.raises(ConfigError, match=r"p.yaml:20: rule 'R-BIG' can never fire"):
        parse_policy(text, "p.yaml")


def test_a_policy_may_not_plan_contact_with_third_parties():
    text = POLICY.replace(
        "{day: 0, action: call, channel: agent_call}",
        "{day: 0, action: call, channel: agent_call, recipient: third_party}",
    )
    with pytest.raises(ConfigError, match=r"p.yaml:13: .*recipient 'third_party' is not allowed"):
        parse_policy(text, "p.yaml")


def test_yaml_syntax_errors_carry_the_line():
    with pytest.raises(ConfigError, match=r"p.yaml:4: not valid YAML"):
        parse_policy("name: x\nrisk_bands:\n  low: 1.0\n   high: 2\n", "p.yaml")


def test_the_standard_queue_is_a_ladder_of_its_own_or_the_base_of_one():
    assert ACTIONS["standard_queue"].channels_used() == ()
    spec = ACTIONS["standard_queue"]
    assert not (spec.contacts_borrower or spec.is_call or spec.is_collection)
    alone = POLICY.replace(
        "  press:\n", "  queue:\n    ladder:\n      - {day: 0, action: standard_queue}\n  press:\n"
    )
    assert parse_policy(alone, "p.yaml").treatments["queue"].steps[0].action == "standard_queue"
    # steps added on top of the queue: the queue's collection plus those steps
    plus = alone.replace(
        "      - {day: 0, action: standard_queue}\n",
        "      - {day: 0, action: standard_queue}\n      - {day: 2, action: reminder}\n",
    )
    queue_plus = parse_policy(plus, "p.yaml").treatments["queue"]
    assert [s.action for s in queue_plus.steps] == ["standard_queue", "reminder"]
    assert queue_plus.keeps_standard_queue and not queue_plus.is_standard_queue
    assert parse_policy(alone, "p.yaml").treatments["queue"].is_standard_queue
    # the queue twice: the error names the second
    twice = alone.replace(
        "      - {day: 0, action: standard_queue}\n",
        "      - {day: 0, action: standard_queue}\n      - {day: 0, action: standard_queue}\n",
    )
    with pytest.raises(
        ConfigError, match=r"^p\.yaml:14: treatment 'queue': standard_queue appears 2 times"
    ):
        parse_policy(twice, "p.yaml")
    late = alone.replace("{day: 0, action: standard_queue}", "{day: 3, action: standard_queue}")
    with pytest.raises(
        ConfigError, match=r"^p\.yaml:13: .*starts at the decision, day 0, got day 3"
    ):
        parse_policy(late, "p.yaml")


def test_the_baseline_as_a_policy_file_queues_every_account():
    policy = load_policy(STANDARD_POLICY)
    shipped = load_policy(CONF)
    assert policy.risk_bands == shipped.risk_bands and policy.segments == shipped.segments
    assert policy.products == shipped.products and policy.start_buckets == shipped.start_buckets
    for case in (
        _case(),
        _case(
            start_bucket="M3", dpd=80, probability=0.9, segment="unreachable", amount_overdue=9e5
        ),
        _case(start_bucket="M2", dpd=31, segment="capacity_shock", product="agri_loan"),
    ):
        decision = decide(policy, case)
        assert decision.treatment == "standard_queue"
        assert [a.action for a in decision.actions] == ["standard_queue"]
    # the shipped policy holds the same treatment (the control arm of the lender's experiments)
    for treatment in (shipped.treatments["standard_queue"], policy.treatments["standard_queue"]):
        assert [(s.action, s.day) for s in treatment.steps] == [("standard_queue", 0)]


def test_a_treatment_named_in_the_policy_file_is_shown_by_that_name():
    """A strategy team adding a treatment names it in the file; the review page showed the
    code of any treatment its own table did not know."""
    from rollrisk.reports.strategy import treatment_names

    labelled = POLICY.replace(
        "  nudge:\n    ladder:",
        "  nudge:\n    label: gentle nudge\n    label_zh: 温和提醒\n    ladder:",
    )
    policy = parse_policy(labelled, "p.yaml")
    assert policy.treatments["nudge"].label == "gentle nudge"
    names = treatment_names(policy)
    assert names["nudge"] == ("gentle nudge", "温和提醒")
    assert names["queue_hardship_waiver"][1] == "常规催收+困难审核（减免利息）"  # the page's own
    assert "press" not in names  # no name anywhere: the page shows the code
    # the shipped policy names every one of its treatments
    assert all(t.label and t.label_zh for t in load_policy(CONF).treatments.values())


def test_a_label_without_its_chinese_is_refused():
    half = POLICY.replace("  nudge:\n    ladder:", "  nudge:\n    label: gentle nudge\n    ladder:")
    with pytest.raises(ConfigError, match="give label and label_zh together"):
        parse_policy(half, "p.yaml")


def test_a_rule_every_account_of_which_an_earlier_rule_takes_is_refused():
    """Found by an attacker: a rule appended after the catch-all (precedence 110 behind
    POL-REVIEW's 100) loaded and never decided; moving POL-REVIEW to precedence 5 silently took
    the capacity-shock M2 ladder away. The docs promised a load error for such a rule."""
    text = CONF.read_text()
    appended = text + (
        "  - id: POL-WIL-ESCALATE\n    precedence: 110\n"
        "    when: {segment: [low_willingness], start_bucket: [M2, M3]}\n"
        "    treatment: queue_hardship_waiver\n"
    )
    with pytest.raises(ConfigError) as refused:
        parse_policy(appended, "p.yaml")
    line = len(text.splitlines()) + 1
    assert str(refused.value) == (
        f"p.yaml:{line}: rule 'POL-WIL-ESCALATE' (precedence 110) can never decide: every account "
        "it matches is decided first by 'POL-REVIEW' (precedence 100, line 181); give it a lower "
        "precedence number than the rule it should win over, or remove it"
    )
    reordered = text.replace("    precedence: 100\n    when: {}", "    precedence: 5\n    when: {}")
    assert reordered != text
    with pytest.raises(ConfigError, match=r"rule 'POL-CAP-M2' \(precedence 10\) can never decide"):
        parse_policy(reordered, "p.yaml")


def test_a_catch_all_behind_rules_that_cover_everything_is_kept_as_a_safety_net():
    # the proposals simulate-policy writes end with one (docs/policy_proposed_seed31.yaml)
    text = (
        CONF.read_text()
        + "  - id: NET\n    precedence: 999\n    when: {}\n    treatment: standard_queue\n"
    )
    assert parse_policy(text, "p.yaml").rules[-1].rule_id == "NET"


def test_a_policy_without_a_segment_the_segment_rules_assign_is_refused():
    """A space.segment without the fallback `general` loaded; scoring then stopped mid-run with
    a traceback on the first account in that segment."""
    from rollrisk.conf import DEFAULT_SEGMENTS
    from rollrisk.strategies.policy import check_segments_in_space
    from rollrisk.strategies.segments import load_segment_rules

    rules = load_segment_rules(DEFAULT_SEGMENTS)
    text = CONF.read_text()
    narrowed = text.replace("forgetful, seasonal, general]", "forgetful, seasonal]")
    assert narrowed != text
    policy = parse_policy(narrowed, "p.yaml")
    assigned = (*rules.precedence, rules.fallback)
    with pytest.raises(
        ConfigError, match=r"^p.yaml: space.segment lacks 'general', which s.yaml assigns"
    ):
        check_segments_in_space(policy, assigned, "s.yaml")
    check_segments_in_space(parse_policy(text, "p.yaml"), assigned, "s.yaml")
