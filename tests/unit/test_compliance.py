"""Every compliance rule blocks what it must and allows what it may, and says why in the trail."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rollrisk.strategies.compliance import (
    RULES,
    AccountState,
    enforce,
    load_compliance,
    parse_compliance,
)
from rollrisk.strategies.policy import Decision, PlannedAction, PolicyRuleRef
from rollrisk.strategies.yaml_config import ConfigError

CONF = Path(__file__).resolve().parents[2] / "conf" / "compliance.yaml"
NOW = datetime(2026, 3, 31, 9, 0)  # the decision time (local)


@pytest.fixture(scope="module")
def config():
    return load_compliance(CONF)


@pytest.fixture(scope="module")
def cn_us(config):
    return config.strictest(["CN", "US"])


def _decision(*actions: PlannedAction) -> Decision:
    return Decision(
        account_id="a1",
        decided_at=NOW,
        treatment="test",
        actions=actions,
        policy_rule=PolicyRuleRef("conf/policy.yaml", "POL-TEST", 7),
    )


def _state(**overrides) -> AccountState:
    values = {
        "account_id": "a1",
        "dpd": 75,
        "amount_overdue": 3000.0,
        "first_ever_delinquency": True,
    }
    values.update(overrides)
    return AccountState(**values)


def _at(days: float = 0, hour: int = 10, minute: int = 0) -> datetime:
    return datetime.combine(NOW.date(), time(hour, minute)) + timedelta(days=days)


def _history(*rows: tuple[datetime, str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": ["a1"] * len(rows),
            "action_at": [r[0] for r in rows],
            "channel": [r[1] for r in rows],
            "outcome": [r[2] for r in rows],
        }
    )


def _failed_contacts(n: int) -> list[tuple[datetime, str, str]]:
    return [(NOW - timedelta(days=2 + i), "agent_call", "no_answer") for i in range(n)]


def _actions(decision: Decision) -> list[str]:
    return [a.action for a in decision.actions]


def _rules_in_trail(decision: Decision) -> list[str]:
    return [change.rule_id for change in decision.trail]


# --- strictest jurisdiction ---------------------------------------------------------------------


def test_the_strictest_jurisdiction_applies(config, cn_us):
    assert (cn_us.contact_window_start, cn_us.contact_window_end) == (time(8), time(21))
    assert config.strictest(["CN"]).contact_window_end == time(22)
    assert cn_us.max_calls_per_7_days == 7  # only the US caps calls per debt
    assert cn_us.max_unanswered_dials_per_day_per_channel == 6  # only China caps dials
    assert cn_us.binding["contact_window_end"] == ("US",)
    default = config.strictest([])
    assert default.jurisdictions == ("default",)
    assert (default.contact_window_start, default.contact_window_end) == (time(8), time(21))
    with pytest.raises(ValueError, match=r"unknown jurisdiction\(s\) \['XX'\]"):
        config.strictest(["CN", "XX"])


def test_caps_take_the_minimum_and_thresholds_the_maximum():
    text = CONF.read_text().replace(
        "max_calls_per_7_days: 7", "max_calls_per_7_days: 7\n    legal_min_dpd: 90"
    )
    text = text.replace(
        "    max_unanswered_dials_per_day_per_channel: 6",
        "    max_unanswered_dials_per_day_per_channel: 6\n    max_calls_per_7_days: 5",
    )
    config = parse_compliance(text, "c.yaml")
    merged = config.strictest(["CN", "US"])
    assert merged.max_calls_per_7_days == 5
    assert merged.binding["max_calls_per_7_days"] == ("CN",)
    assert merged.legal_min_dpd == 90


def test_compliance_file_errors_name_the_file_and_line():
    text = CONF.read_text().replace("    max_calls_per_7_days: 7", "    max_calls_per_week: 7")
    with pytest.raises(
        ConfigError, match=r"^conf/compliance.yaml:\d+: unknown key 'max_calls_per_week'"
    ):
        parse_compliance(text, "conf/compliance.yaml")
    bad = CONF.read_text().replace('contact_window_end: "22:00"', 'contact_window_end: "07:00"')
    with pytest.raises(
        ConfigError, match="jurisdiction 'CN': the contact window must start before it ends"
    ):
        parse_compliance(bad, "c.yaml")


def _line_of(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


@pytest.mark.parametrize(
    ("written", "edited", "where", "words"),
    [
        ("legal_min_dpd: 60", "legal_min_dpd: 6", "legal_min_dpd: 6",
         "default: legal_min_dpd 6 is looser than a rule a strategy must never break "
         "(legal action from about 60+ DPD): it must be at least 60"),
        ("min_failed_contacts: 3", "min_failed_contacts: 0", "min_failed_contacts: 0",
         "default: min_failed_contacts 0 is looser"),
        ('contact_window_start: "08:00"', 'contact_window_start: "07:00"', "contact_window_start",
         "default: contact_window_start 07:00 is looser"),
        ('    contact_window_end: "22:00"', '    contact_window_end: "23:30"', '"23:30"',
         "jurisdiction 'CN': contact_window_end 23:30 is looser than a rule a strategy must never "
         "break (China's 2026 banking association guideline: contact 08:00-22:00): it must be at "
         "most 22:00"),
        ("    quiet_days_after_conversation: 7", "    quiet_days_after_conversation: 0",
         "quiet_days_after_conversation: 0", "jurisdiction 'US': quiet_days_after_conversation 0"),
        # deleted: the US inherits the default's null, no cap; the line named is the US's own
        ("    max_calls_per_7_days: 7\n", "", "  US:",
         "jurisdiction 'US': max_calls_per_7_days null (no cap) is looser"),
    ],
)  # fmt: skip
def test_a_compliance_file_may_tighten_the_rules_never_loosen_them(written, edited, where, words):
    """Found by an attacker: a legal referral from 6 DPD, "0 failed contacts" as documented
    failed contact and the US call cap deleted all loaded without a word, and decided so."""
    text = CONF.read_text()
    assert written in text
    loose = text.replace(written, edited, 1)
    with pytest.raises(ConfigError) as refused:
        parse_compliance(loose, "c.yaml")
    assert str(refused.value).startswith(f"c.yaml:{_line_of(loose, where)}: {words}")
    assert str(refused.value).endswith("a compliance file may tighten the rules, never loosen them")


def test_a_tighter_value_than_every_rule_is_kept():
    text = CONF.read_text().replace("legal_min_dpd: 60", "legal_min_dpd: 90")
    text = text.replace('    contact_window_end: "22:00"', '    contact_window_end: "20:00"')
    config = parse_compliance(text, "c.yaml")
    assert config.default["legal_min_dpd"] == 90
    assert config.jurisdictions["CN"]["contact_window_end"] == time(20, 0)


@pytest.mark.parametrize("value", ["8", "15", "8.5"])
def test_a_time_of_day_written_as_a_bare_number_is_refused(value):
    """`contact_window_start: 8` was read as 8 minutes after midnight: the window opened at
    00:08 and a 07:30 call went out unmoved."""
    text = CONF.read_text().replace(
        'contact_window_start: "08:00"', f"contact_window_start: {value}"
    )
    line = _line_of(text, "contact_window_start")
    with pytest.raises(
        ConfigError,
        match=rf'^c.yaml:{line}: a time of day must be "HH:MM" .*got the number {value}$',
    ):
        parse_compliance(text, "c.yaml")


def test_an_unquoted_clock_time_still_reads_as_the_time_written():
    text = CONF.read_text().replace('contact_window_start: "08:00"', "contact_window_start: 8:30")
    assert parse_compliance(text, "c.yaml").default["contact_window_start"] == time(8, 30)


def test_the_trail_keeps_the_policy_rule_and_adds_each_change(cn_us):
    decision = _decision(
        PlannedAction("call", _at(0, 22), "agent_call"),
        PlannedAction("legal_referral", _at(1)),
    )
    result = enforce(decision, _state(dpd=30), None, cn_us)
    assert result.policy_rule == decision.policy_rule
    assert _rules_in_trail(result) == ["CMP-LEGAL-REFERRAL", "CMP-CONTACT-WINDOW"]
    window = result.trail[1]
    assert window.action == "call via agent_call at 2026-03-31 22:00"
    assert window.change == "moved to 2026-04-01 08:00"
    assert window.jurisdictions == ("CN", "US")
    assert decision.actions[0].at == _at(0, 22)  # the input decision is not modified


# --- every rule of the engine, each on a case of its own ----------------------------------------

# rule id -> (plan, account, contact history, jurisdictions): a case where that rule, and no
# other, removes or moves an action. Keyed by the engine's ids, checked against RULES below: a
# rule added to the engine without a case here fails the suite.
RULE_CASES: dict[str, tuple[Decision, AccountState, pd.DataFrame | None, list[str]]] = {
    "CMP-HARDSHIP-PAUSE": (
        _decision(PlannedAction("call", _at(0, 10), "agent_call")),
        _state(hardship_plan_honoured=True),
        None,
        ["CN", "US"],
    ),
    "CMP-THIRD-PARTY": (
        _decision(PlannedAction("call", _at(0, 10), "agent_call", recipient="third_party")),
        _state(),
        _history(*_failed_contacts(5)),
        ["CN", "US"],
    ),
    "CMP-FIRST-DELINQUENCY-EXTENSION": (
        _decision(PlannedAction("first_delinquency_extension", _at(0))),
        _state(first_ever_delinquency=False),
        None,
        ["CN", "US"],
    ),
    "CMP-LEGAL-REFERRAL": (
        _decision(PlannedAction("legal_referral", _at(1))),
        _state(dpd=59),
        _history(*_failed_contacts(3)),
        ["CN", "US"],
    ),
    "CMP-CONTACT-WINDOW": (
        _decision(PlannedAction("call", _at(0, 22), "agent_call")),
        _state(),
        None,
        ["CN", "US"],
    ),
    "CMP-CALLS-PER-7-DAYS": (
        _decision(*[PlannedAction("call", _at(0, h), "agent_call") for h in (10, 15)]),
        _state(),
        _history(*[(NOW - timedelta(days=d, hours=1), "robo_call", "no_answer") for d in range(6)]),
        ["CN", "US"],
    ),
    "CMP-CALL-AFTER-CONVERSATION": (
        _decision(PlannedAction("call", _at(0, 10), "agent_call")),
        _state(),
        _history((NOW - timedelta(days=3), "agent_call", "promise_to_pay")),
        ["CN", "US"],
    ),
    "CMP-UNANSWERED-DIALS": (
        _decision(*[PlannedAction("call", _at(0, h), "agent_call") for h in (10, 11)]),
        _state(),
        _history(
            *[(_at(0, 8) + timedelta(minutes=5 * i), "agent_call", "no_answer") for i in range(5)]
        ),
        ["CN"],
    ),
}


def test_every_rule_the_engine_applies_has_a_case_in_its_order():
    assert list(RULE_CASES) == [rule_id for rule_id, _ in RULES]


@pytest.mark.parametrize("rule_id", list(RULE_CASES))
def test_each_rule_acts_alone_on_its_own_case(rule_id, config):
    decision, state, history, jurisdictions = RULE_CASES[rule_id]
    result = enforce(decision, state, history, config.strictest(jurisdictions))
    trail = _rules_in_trail(result)
    assert trail and set(trail) == {rule_id}
    assert len(result.actions) + sum(c.change == "removed" for c in result.trail) == len(
        decision.actions
    )


# --- one test per rule: blocks what it must, allows what it may ---------------------------------


def test_contact_window_moves_contacts_into_the_window(cn_us):
    decision = _decision(
        PlannedAction("reminder", _at(0, 7, 30), "sms"),  # before opening: same day 08:00
        PlannedAction("call", _at(1, 21, 0), "agent_call"),  # at closing: next day 08:00
        PlannedAction("call", _at(2, 20, 59), "agent_call"),  # inside: kept as is
        PlannedAction("grace_period", _at(3, 23, 0)),  # not a contact: the window does not apply
    )
    result = enforce(decision, _state(), None, cn_us)
    assert [(a.action, a.at) for a in result.actions] == [
        ("reminder", _at(0, 8)),
        ("call", _at(2, 8)),
        ("call", _at(2, 20, 59)),
        ("grace_period", _at(3, 23)),
    ]
    assert _rules_in_trail(result) == ["CMP-CONTACT-WINDOW"] * 2


def test_contact_window_of_china_alone_allows_until_22(config):
    result = enforce(
        _decision(PlannedAction("call", _at(0, 21, 30), "agent_call")),
        _state(),
        None,
        config.strictest(["CN"]),
    )
    assert result.actions[0].at == _at(0, 21, 30)
    assert result.trail == ()


def test_calls_per_7_days_blocks_the_eighth_call_on_a_debt(cn_us):
    # 6 unanswered calls on 6 different days in the past week (no conversation, under the CN cap)
    history = _history(
        *[(NOW - timedelta(days=d, hours=1), "robo_call", "no_answer") for d in range(6)]
    )
    decision = _decision(
        PlannedAction("call", _at(0, 10), "agent_call"),  # 7th in 7 days: allowed
        PlannedAction("call", _at(0, 15), "agent_call"),  # 8th: blocked
        PlannedAction("call", _at(7, 10), "agent_call"),  # a week later the window has moved on
    )
    result = enforce(decision, _state(), history, cn_us)
    assert [a.at for a in result.actions] == [_at(0, 10), _at(7, 10)]
    assert _rules_in_trail(result) == ["CMP-CALLS-PER-7-DAYS"]
    assert "call 8 on this debt within 7 days (cap 7)" in result.trail[0].reason
    assert result.trail[0].jurisdictions == ("US",)


def test_calls_per_7_days_does_not_apply_where_no_jurisdiction_caps_it(config):
    history = _history(
        *[(NOW - timedelta(days=d, hours=1), "robo_call", "no_answer") for d in range(6)]
    )
    decision = _decision(*[PlannedAction("call", _at(0, h), "agent_call") for h in (10, 12, 14)])
    result = enforce(decision, _state(), history, config.strictest(["CN"]))
    assert len(result.actions) == 3


def test_call_after_conversation_is_blocked_for_7_days(cn_us):
    talked = NOW - timedelta(days=3)
    history = _history(
        (talked, "agent_call", "promise_to_pay"), (NOW - timedelta(days=1), "sms", "delivered")
    )
    decision = _decision(
        PlannedAction("call", _at(0, 10), "agent_call"),  # 3 days after: blocked
        PlannedAction("reminder", _at(0, 11), "sms"),  # not a call: allowed
        PlannedAction("call", _at(3, 20), "robo_call"),  # 6 days 11 hours after: blocked
        PlannedAction("call", _at(4, 10), "robo_call"),  # 7 days and 1 hour after: allowed
    )
    result = enforce(decision, _state(), history, cn_us)
    assert [(a.action, a.at) for a in result.actions] == [
        ("reminder", _at(0, 11)),
        ("call", _at(4, 10)),
    ]
    assert _rules_in_trail(result) == ["CMP-CALL-AFTER-CONVERSATION"] * 2
    assert "2026-03-28 09:00" in result.trail[0].reason


def test_a_call_that_was_not_answered_is_not_a_conversation(cn_us):
    history = _history((NOW - timedelta(days=1), "agent_call", "no_answer"))
    result = enforce(
        _decision(PlannedAction("call", _at(0, 10), "agent_call")), _state(), history, cn_us
    )
    assert _actions(result) == ["call"]


def test_unanswered_dials_are_capped_per_day_per_contact_method(config):
    cn = config.strictest(["CN"])
    morning = _at(0, 8, 0)
    # 5 unanswered agent calls earlier today, and one robo call
    history = _history(
        *[(morning + timedelta(minutes=5 * i), "agent_call", "no_answer") for i in range(5)],
        (morning, "robo_call", "no_answer"),
    )
    decision = _decision(
        PlannedAction("call", _at(0, 10), "agent_call"),  # 6th unanswered agent dial: allowed
        PlannedAction("call", _at(0, 11), "agent_call"),  # 7th: blocked
        PlannedAction("call", _at(0, 12), "robo_call"),  # another contact method: allowed
        PlannedAction("call", _at(1, 10), "agent_call"),  # another day: allowed
    )
    result = enforce(decision, _state(), history, cn)
    assert [(a.channel, a.at) for a in result.actions] == [
        ("agent_call", _at(0, 10)),
        ("robo_call", _at(0, 12)),
        ("agent_call", _at(1, 10)),
    ]
    assert _rules_in_trail(result) == ["CMP-UNANSWERED-DIALS"]
    assert result.trail[0].jurisdictions == ("CN",)


def test_third_parties_are_never_contacted(cn_us):
    decision = _decision(
        PlannedAction("call", _at(0, 10), "agent_call", recipient="third_party"),
        PlannedAction("call", _at(0, 11), "agent_call"),
    )
    result = enforce(decision, _state(), _history(*_failed_contacts(5)), cn_us)
    assert [a.recipient for a in result.actions] == ["borrower"]
    assert _rules_in_trail(result) == ["CMP-THIRD-PARTY"]
    assert "unrelated third parties" in result.trail[0].reason


def test_an_emergency_contact_only_to_locate_an_unreachable_borrower(cn_us):
    call = PlannedAction("call", _at(0, 10), "agent_call", recipient="emergency_contact")
    reachable = enforce(_decision(call), _state(), _history(*_failed_contacts(2)), cn_us)
    assert reachable.actions == ()
    assert "2 failed and 0 successful" in reachable.trail[0].reason

    answered = _history(*_failed_contacts(4), (NOW - timedelta(days=1), "sms", "contacted"))
    assert enforce(_decision(call), _state(), answered, cn_us).actions == ()

    unreachable = enforce(_decision(call), _state(), _history(*_failed_contacts(3)), cn_us)
    assert unreachable.actions == (call,)
    assert unreachable.trail == ()


def test_hardship_plan_pauses_collection_but_not_help(cn_us):
    decision = _decision(
        PlannedAction("reminder", _at(0, 10), "sms"),
        PlannedAction("call", _at(0, 11), "agent_call"),
        PlannedAction("agency_assignment", _at(1)),
        PlannedAction("field_visit_with_notice", _at(2), "field_visit"),
        PlannedAction("legal_referral", _at(3)),
        PlannedAction("interest_waiver", _at(0)),
        PlannedAction("restructure_offer", _at(0, 12), "sms"),
    )
    paused = enforce(decision, _state(hardship_plan_honoured=True), None, cn_us)
    assert _actions(paused) == ["interest_waiver", "restructure_offer"]
    assert _rules_in_trail(paused) == ["CMP-HARDSHIP-PAUSE"] * 5

    not_in_plan = enforce(
        decision, _state(hardship_plan_honoured=False), _history(*_failed_contacts(3)), cn_us
    )
    assert len(not_in_plan.actions) == 7


def test_legal_referral_needs_dpd_amount_and_documented_failed_contact(cn_us):
    referral = _decision(PlannedAction("legal_referral", _at(1)))
    documented = _history(*_failed_contacts(3))

    allowed = enforce(referral, _state(dpd=60, amount_overdue=500.0), documented, cn_us)
    assert _actions(allowed) == ["legal_referral"]

    for state, history, why in [
        (_state(dpd=59), documented, "DPD 59 is below 60"),
        (_state(amount_overdue=499.0), documented, "amount overdue 499 is below 500"),
        (_state(), _history(*_failed_contacts(2)), "failed contact is not documented"),
        (_state(), None, "0 failed and 0 successful"),
    ]:
        blocked = enforce(referral, state, history, cn_us)
        assert blocked.actions == ()
        assert _rules_in_trail(blocked) == ["CMP-LEGAL-REFERRAL"]
        assert why in blocked.trail[0].reason


def test_old_failed_contacts_do_not_document_an_unreachable_borrower(cn_us):
    stale = _history(
        *[(NOW - timedelta(days=40 + i), "agent_call", "wrong_number") for i in range(5)]
    )
    blocked = enforce(_decision(PlannedAction("legal_referral", _at(1))), _state(), stale, cn_us)
    assert blocked.actions == ()


def test_future_history_rows_are_ignored(cn_us):
    future = _history(
        *[(NOW + timedelta(hours=1 + i), "agent_call", "no_answer") for i in range(5)]
    )
    blocked = enforce(_decision(PlannedAction("legal_referral", _at(1))), _state(), future, cn_us)
    assert blocked.actions == ()


def test_other_accounts_history_is_ignored(cn_us):
    other = _history(*_failed_contacts(5)).assign(account_id="someone-else")
    blocked = enforce(_decision(PlannedAction("legal_referral", _at(1))), _state(), other, cn_us)
    assert blocked.actions == ()


def test_first_delinquency_extension_only_once_for_a_first_ever_delinquency(cn_us):
    extension = _decision(PlannedAction("first_delinquency_extension", _at(0)))
    allowed = enforce(extension, _state(first_ever_delinquency=True), None, cn_us)
    assert _actions(allowed) == ["first_delinquency_extension"]

    repeat = enforce(extension, _state(first_ever_delinquency=False), None, cn_us)
    assert repeat.actions == ()
    assert "not the account's first-ever delinquency" in repeat.trail[0].reason

    second = enforce(extension, _state(had_first_delinquency_extension=True), None, cn_us)
    assert second.actions == ()
    assert "already had its one-time extension" in second.trail[0].reason


def test_state_for_another_account_is_refused(cn_us):
    with pytest.raises(ValueError, match="account state is for b2 but the decision for a1"):
        enforce(_decision(), _state(account_id="b2"), None, cn_us)


# --- the shipped policy and compliance together -------------------------------------------------


def test_a_policy_then_compliance_keeps_the_whole_trail(cn_us):
    # the hand-written policy: its rule for a big M3 balance of low willingness files legal
    from rollrisk.conf import HANDWRITTEN_POLICY
    from rollrisk.strategies.policy import PolicyCase, decide, load_policy

    policy = load_policy(HANDWRITTEN_POLICY)
    case = PolicyCase(
        account_id="a1",
        decided_at=NOW,
        start_bucket="M3",
        probability=0.8,
        segment="low_willingness",
        product="cash_loan",
        dpd=75,
        amount_overdue=8000.0,
    )
    chosen = decide(policy, case)
    assert chosen.policy_rule.rule_id == "POL-WIL-M3-BIG"
    assert "legal_referral" in _actions(chosen)

    reached_last_week = _history((NOW - timedelta(days=6), "agent_call", "refused"))
    final = enforce(chosen, _state(dpd=75, amount_overdue=8000.0), reached_last_week, cn_us)
    assert "legal_referral" not in _actions(final)  # the borrower was reached: not documented
    assert final.policy_rule.rule_id == "POL-WIL-M3-BIG"
    assert _rules_in_trail(final) == ["CMP-LEGAL-REFERRAL"]


# --- invariants over random plans and histories -------------------------------------------------

CONTACTS = [
    ("reminder", "sms"),
    ("call", "agent_call"),
    ("call", "robo_call"),
    ("field_visit_with_notice", "field_visit"),
    ("legal_referral", "legal"),
    ("grace_period", None),
]
OUTCOMES = ["no_answer", "contacted", "promise_to_pay", "wrong_number", "delivered", "unreachable"]


def test_no_plan_and_history_can_break_a_rule(cn_us):
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    # Dense plans and histories (a few days, mostly calls) so that the caps are really tested.
    planned = st.lists(
        st.tuples(
            st.sampled_from([*CONTACTS, ("call", "agent_call"), ("call", "agent_call")]),
            st.integers(0, 2),  # day
            st.integers(0, 23 * 60 + 59),  # minute of the day
            st.sampled_from(["borrower", "borrower", "emergency_contact", "third_party"]),
        ),
        min_size=12,
        max_size=30,
    )
    past = st.lists(
        st.tuples(
            st.integers(1, 4 * 24 * 60),  # minutes before the decision
            st.sampled_from(["agent_call", "agent_call", "robo_call", "sms"]),
            st.sampled_from(["no_answer", "no_answer", "no_answer", *OUTCOMES]),
        ),
        max_size=12,
    )

    @hypothesis.settings(max_examples=100, deadline=None, derandomize=True)
    @hypothesis.given(planned, past, st.booleans())
    def check(plan, history_rows, hardship):
        actions = [
            PlannedAction(
                action,
                _at(day, 0) + timedelta(minutes=minute),
                channel,
                recipient if action in ("reminder", "call") else "borrower",
            )
            for (action, channel), day, minute, recipient in plan
        ]
        history = _history(
            *[
                (NOW - timedelta(minutes=m), channel, outcome)
                for m, channel, outcome in history_rows
            ]
        )
        result = enforce(
            _decision(*actions), _state(hardship_plan_honoured=hardship), history, cn_us
        )
        calls = [a for a in result.actions if a.action == "call"]
        past_calls = [
            NOW - timedelta(minutes=m)
            for m, c, _ in history_rows
            if c in ("agent_call", "robo_call")
        ]
        for action in result.actions:
            assert action.recipient != "third_party"
            if action.action in ("reminder", "call", "field_visit_with_notice"):
                assert time(8) <= action.at.time() < time(21)
                assert not hardship
        for call in calls:
            window = [
                t
                for t in past_calls + [c.at for c in calls]
                if call.at - timedelta(days=7) < t <= call.at
            ]
            assert len(window) <= 7
            same_day = [
                c for c in calls if c.channel == call.channel and c.at.date() == call.at.date()
            ]
            assert len(same_day) <= 6
        assert len(result.actions) + sum(c.change == "removed" for c in result.trail) == len(
            actions
        )

    check()


def test_many_accounts_at_once_get_what_each_gets_alone(cn_us):
    """enforce_all over many accounts (the batch) gives every account exactly the decision
    enforce gives it alone: no account's plan or history leaks into another's."""
    import random

    import numpy as np

    from rollrisk.strategies.compliance import AccountStates, ContactHistories, enforce_all
    from rollrisk.strategies.policy import PlannedActions

    rng = random.Random(5)
    decisions, states, histories = [], [], []
    for i in range(120):
        actions = [
            PlannedAction(action, _at(rng.randint(0, 2), 0) + timedelta(minutes=rng.randint(0, 1439)),
                          channel, rng.choice(["borrower", "emergency_contact"])
                          if action == "call" else "borrower")
            for action, channel in rng.choices(CONTACTS, k=rng.randint(0, 10))
        ]  # fmt: skip
        decisions.append(
            Decision(f"a{i}", NOW, "test", tuple(actions), PolicyRuleRef("p.yaml", "R", 1))
        )
        states.append(
            AccountState(f"a{i}", rng.randint(1, 89), rng.choice([100.0, 800.0]),
                         rng.random() < 0.5, rng.random() < 0.3, rng.random() < 0.2)
        )  # fmt: skip
        histories.append(
            [
                (NOW - timedelta(minutes=rng.randint(-60, 3 * 24 * 60)),
                 rng.choice(["agent_call", "robo_call"]), rng.choice(OUTCOMES))
                for _ in range(rng.randint(0, 12))
            ]
        )  # fmt: skip
    plans = [PlannedActions.of(d.actions, account=i) for i, d in enumerate(decisions)]
    history = [ContactHistories.of(_contacts(rows), account=i) for i, rows in enumerate(histories)]
    one_state = [AccountStates.of(s, NOW) for s in states]
    kept, changes = enforce_all(
        PlannedActions(*(np.concatenate([getattr(p, f) for p in plans]) for f in
                         ("account", "action", "at", "channel", "recipient"))),
        AccountStates(*(np.concatenate([getattr(s, f) for s in one_state]) for f in
                        ("account_id", "dpd", "amount_overdue", "first_ever_delinquency",
                         "had_first_delinquency_extension", "hardship_plan_honoured",
                         "decided_at"))),
        ContactHistories(*(np.concatenate([getattr(h, f) for h in history]) for f in
                           ("account", "at", "channel", "outcome"))),
        cn_us,
    )  # fmt: skip
    rules_fired = set()
    for i, decision in enumerate(decisions):
        alone = enforce(decision, states[i], _contacts(histories[i]), cn_us)
        assert kept.rows_of(i) == alone.actions, decision.account_id
        assert changes.of_account(i) == alone.trail, decision.account_id
        rules_fired |= {change.rule_id for change in alone.trail}
    # the cases really exercise the rules that read other rows (caps, history)
    assert {"CMP-CALLS-PER-7-DAYS", "CMP-CALL-AFTER-CONVERSATION", "CMP-THIRD-PARTY"} <= rules_fired
    # the same plans and histories given as codes into name tables that repeat names (as the
    # simulator gives them: its channel codes, each channel's action): the same result
    from rollrisk.strategies.labels import Labels

    def recoded(column: np.ndarray) -> Labels:
        names = sorted(set(column.tolist()), key=str)
        doubled = [name for name in names for _ in range(2)]  # every name twice
        codes = np.array([2 * names.index(v) + i % 2 for i, v in enumerate(column.tolist())])
        return Labels(codes, doubled)

    together = [np.concatenate([getattr(p, f) for p in plans]) for f in
                ("account", "action", "at", "channel", "recipient")]  # fmt: skip
    past = [np.concatenate([getattr(h, f) for h in history]) for f in
            ("account", "at", "channel", "outcome")]  # fmt: skip
    coded_kept, coded_changes = enforce_all(
        PlannedActions(together[0], recoded(together[1]), together[2], recoded(together[3]),
                       recoded(together[4])),
        AccountStates(*(np.concatenate([getattr(s, f) for s in one_state]) for f in
                        ("account_id", "dpd", "amount_overdue", "first_ever_delinquency",
                         "had_first_delinquency_extension", "hardship_plan_honoured",
                         "decided_at"))),
        ContactHistories(past[0], past[1], recoded(past[2]), recoded(past[3])),
        cn_us,
    )  # fmt: skip
    for i in range(len(decisions)):
        assert coded_kept.rows_of(i) == kept.rows_of(i)
        assert coded_changes.of_account(i) == changes.of_account(i)


def _contacts(rows):
    from rollrisk.strategies.compliance import ContactHistory

    return ContactHistory(tuple(rows))


def test_enforce_rows_says_which_planned_rows_obey_the_rules(config):
    """The policy replay keeps per-row facts (drawn outcomes) beside the plan: enforce_rows
    must say, for every action it keeps, which planned row it was."""
    from rollrisk.strategies.compliance import (
        AccountStates,
        ContactHistories,
        ContactHistory,
        enforce_rows,
    )
    from rollrisk.strategies.policy import PlannedActions

    # 9 calls an hour apart, planned latest first, then a legal referral the DPD does not allow
    calls = [PlannedAction("call", _at(hour=20 - k), "agent_call") for k in range(9)]
    plans = PlannedActions.of((*calls, PlannedAction("legal_referral", _at(hour=11), "legal")))
    kept, origin, changes = enforce_rows(
        plans,
        AccountStates.of(_state(dpd=20), NOW),
        ContactHistories.of(ContactHistory()),
        config.strictest(["US"]),
    )
    assert len(origin) == len(kept) == 7  # the US cap: 7 calls in 7 days
    again = plans.take(origin)
    assert (again.at == kept.at).all() and again.action.tolist() == kept.action.tolist()
    # the earliest 7 calls are kept: rows 8, 7, ..., 2 of the plan (planned latest first)
    assert sorted(origin.tolist()) == [2, 3, 4, 5, 6, 7, 8]
    assert sorted(set(changes.rule_id)) == ["CMP-CALLS-PER-7-DAYS", "CMP-LEGAL-REFERRAL"]


def test_the_standard_queue_passes_every_rule_unchanged(cn_us):
    # the step hands the account to the lender's own tiered queue and contacts no one: no
    # window, cap, third-party or hardship rule has anything to act on, at any hour
    decision = _decision(PlannedAction("standard_queue", _at(0, 3)))
    for state, history in (
        (_state(), None),
        (_state(hardship_plan_honoured=True, dpd=80), _history(*_failed_contacts(9))),
        (_state(first_ever_delinquency=False, had_first_delinquency_extension=True), None),
    ):
        kept = enforce(decision, state, history, cn_us)
        assert kept.actions == decision.actions and kept.trail == ()


def test_the_packed_sort_is_lexsort():
    """The rules' sorts (rows by account then time, events before queries) pack the keys into
    one integer when they fit: the permutation must be lexsort's, ties in input order, and
    lexsort's own when they do not fit."""
    from rollrisk.strategies.compliance import _stable_order

    rng = np.random.default_rng(7)
    for size, spread in ((0, 1), (1, 1), (500, 3), (20_000, 10**6), (20_000, 2**40)):
        account = rng.integers(-5, 50, size)  # many ties, negative values
        at = rng.integers(0, spread, size)
        flag = rng.integers(0, 2, size).astype(bool)
        expected = np.lexsort((flag, at, account))
        assert np.array_equal(_stable_order(account, at, flag), expected)
        assert np.array_equal(_stable_order(account, at), np.lexsort((at, account)))
    # ranges too wide to pack (the product exceeds 63 bits): lexsort itself
    wide = np.array([2**62, -(2**62), 0, 5, 5], dtype=np.int64)
    other = np.array([3, 1, 2, 1, 0], dtype=np.int64)
    assert np.array_equal(_stable_order(wide, other), np.lexsort((other, wide)))
    # what it cannot pack it refuses, not sorts wrongly: fractions, keys of two lengths
    with pytest.raises(ValueError, match="integer or boolean arrays of one length"):
        _stable_order(np.array([0.5, 0.2]), np.array([1, 2]))
    with pytest.raises(ValueError, match="integer or boolean arrays of one length"):
        _stable_order(np.array([1, 2, 3]), np.array([1]))


def test_counts_at_or_before_are_a_plain_count_however_the_keys_are_sorted():
    """The rules' "how many past events of this account (or account and channel) at or before
    this time, and the latest" by binary search over the sorted events: equal to counting
    event by event, with many ties of group and time, negative groups, no events, no queries,
    and keys too wide to pack into one integer (the merged sort)."""
    from rollrisk.strategies.compliance import _counts_at_or_before, _merged_counts

    def plain(event_group, event_at, group, at):
        counts, last = [], []
        for g, t in zip(group.tolist(), at.tolist(), strict=True):
            hits = [
                i
                for i, (eg, et) in enumerate(
                    zip(event_group.tolist(), event_at.tolist(), strict=True)
                )
                if eg == g and et <= t
            ]
            counts.append(len(hits))
            # the latest in time; of equal times, the last given
            last.append(max(hits, key=lambda i: (event_at[i], i)) if hits else -1)
        return np.array(counts, dtype=np.int64), np.array(last, dtype=np.int64)

    rng = np.random.default_rng(11)
    base = np.datetime64("2025-11-30T00:00:00", "us")
    for events, queries, groups, spread in (
        (0, 5, 3, 10),
        (6, 0, 3, 10),
        (1, 1, 1, 1),
        (300, 200, 4, 5),
        (400, 300, 40, 10**9),
    ):
        event_group = rng.integers(-3, groups, events)
        event_at = base + rng.integers(0, spread, events).astype("timedelta64[us]")
        group = rng.integers(-4, groups + 1, queries)
        at = base + rng.integers(-1, spread + 1, queries).astype("timedelta64[us]")
        expected = plain(event_group, event_at, group, at)
        for counted in (_counts_at_or_before(event_group, event_at, group, at),
                        _merged_counts(event_group, event_at, group, at)):  # fmt: skip
            assert np.array_equal(counted[0], expected[0])
            assert np.array_equal(counted[1], expected[1])
    # groups so far apart that group x time does not fit in 63 bits: the merged path
    event_group = np.array([0, 2**40, 2**40], dtype=np.int64)
    event_at = np.array(["2000-01-01", "2090-01-01", "2090-01-02"], dtype="datetime64[us]")
    group = np.array([2**40, 0, 5], dtype=np.int64)
    at = np.array(["2090-01-01", "2090-01-01", "2090-01-01"], dtype="datetime64[us]")
    counts, last = _counts_at_or_before(event_group, event_at, group, at)
    assert counts.tolist() == [1, 1, 0] and last.tolist() == [1, 0, -1]


def test_a_known_jurisdiction_in_lower_case_is_named():
    text = CONF.read_text().replace("  CN:\n", "  cn:\n")
    with pytest.raises(ConfigError, match=r"^c.yaml:\d+: jurisdiction 'cn': did you mean 'CN'\?"):
        parse_compliance(text, "c.yaml")
