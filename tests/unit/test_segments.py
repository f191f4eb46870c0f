"""Segment rules: loading with line-numbered errors, assignment by precedence, recovery metric."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rollrisk.features.registry import FAMILIES
from rollrisk.strategies.segments import (
    SEGMENTS,
    assign_segments,
    load_segment_rules,
    parse_segment_rules,
    segment_recovery,
)
from rollrisk.strategies.yaml_config import ConfigError, parse_yaml_with_lines

CONF = Path(__file__).resolve().parents[2] / "conf" / "segments.yaml"

SMALL_RULES = """\
fallback: general
precedence: [capacity_shock, unreachable, forgetful]
segments:
  capacity_shock:
    rules:
      - id: CAP
        when:
          - {field: hardship_claims_6m, ge: 1}
  unreachable:
    rules:
      - id: UNR
        when:
          - {top_family: contactability}
          - {family: contactability, gt: 0.2}
  forgetful:
    rules:
      - id: FOR
        when:
          - {field: first_delinquency, eq: 1}
          - {field: risk_above_base, le: 0.0}
"""


def _families(rows: list[dict[str, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(0.0, index=range(len(rows)), columns=list(FAMILIES))
    for i, row in enumerate(rows):
        for family, value in row.items():
            frame.loc[i, family] = value
    return frame


@pytest.mark.parametrize("flag", ["1", "true"])
def test_assignment_follows_precedence_and_falls_back(flag):
    # a 0/1 feature compared with eq may be written 1 or true
    text = SMALL_RULES.replace(
        "{field: first_delinquency, eq: 1}", f"{{field: first_delinquency, eq: {flag}}}"
    )
    rules = parse_segment_rules(text, "small.yaml")
    families = _families(
        [
            {"contactability": 0.9},  # unreachable
            {"contactability": 0.9},  # also claimed hardship: capacity_shock comes first
            {"contactability": 0.1},  # top family, below the threshold
            {"willingness": -0.4},  # first delinquency below the base: forgetful
            {"willingness": 0.4},  # first delinquency but risky: no rule -> fallback
        ]
    )
    state = pd.DataFrame(
        {
            "hardship_claims_6m": [0, 2, 0, 0, 0],
            "first_delinquency": [False, False, False, True, True],
        }
    )
    result = assign_segments(families, state, rules)
    assert list(result["segment"]) == [
        "unreachable",
        "capacity_shock",
        "general",
        "forgetful",
        "general",
    ]
    assert list(result["segment_rule"]) == ["UNR", "CAP", "", "FOR", ""]


def test_a_missing_state_value_never_satisfies_a_rule():
    rules = parse_segment_rules(SMALL_RULES, "small.yaml")
    state = pd.DataFrame(
        {"hardship_claims_6m": [np.nan], "first_delinquency": [None]}, dtype=object
    )
    result = assign_segments(_families([{"payment_capacity": 0.5}]), state, rules)
    assert result.loc[0, "segment"] == "general"


def test_the_shipped_rules_load_and_cover_every_driver_segment():
    rules = load_segment_rules(CONF)
    assert set(rules.precedence) == set(SEGMENTS) - {"general"}
    assert rules.fallback == "general"


def test_the_shipped_rules_segment_typical_accounts():
    rules = load_segment_rules(CONF)
    accounts = [
        # (expected segment, product, bucket, families, evidence)
        (
            "unreachable",
            "credit_card",
            "M2",
            {"contactability": 0.7},
            {"wrong_numbers_6m": 2, "unreachable_6m": 1},
        ),
        ("unreachable", "bnpl", "M3", {"contactability": 0.3}, {"failed_contact_streak": 5}),
        ("seasonal", "agri_loan", "M2", {"product_seasonality": 0.6}, {"hardship_claims_6m": 1}),
        (
            "capacity_shock",
            "cash_loan",
            "M2",
            {"payment_capacity": 0.8},
            {"hardship_claims_6m": 1, "refusals_6m": 1},
        ),
        ("capacity_shock", "bnpl", "M1", {"payment_capacity": 0.4}, {"partial_payments_6m": 5}),
        ("low_willingness", "bnpl", "M2", {"willingness": 0.9}, {"refusals_6m": 1}),
        ("low_willingness", "bnpl", "M1", {"willingness": 0.9}, {"refusals_6m": 2}),
        ("forgetful", "bnpl", "M1", {"willingness": 0.2}, {"refusals_6m": 1}),  # one refusal in M1
        ("general", "cash_loan", "M3", {"delinquency_history": 0.6}, {"failed_contact_streak": 4}),
    ]
    families = _families([families for _, _, _, families, _ in accounts])
    evidence = [
        "wrong_numbers_6m",
        "unreachable_6m",
        "failed_contact_streak",
        "hardship_claims_6m",
        "partial_payments_6m",
        "refusals_6m",
        "promises_broken_6m",
    ]
    state = pd.DataFrame(
        [
            {"product": product, "start_bucket": bucket, **dict.fromkeys(evidence, 0), **facts}
            for _, product, bucket, _, facts in accounts
        ]
    )
    result = assign_segments(families, state, rules)
    assert list(result["segment"]) == [expected for expected, *_ in accounts]


def test_assignment_names_the_state_columns_it_lacks():
    rules = parse_segment_rules(SMALL_RULES, "small.yaml")
    with pytest.raises(ValueError, match=r"state lacks columns \['first_delinquency'\]"):
        assign_segments(_families([{}]), pd.DataFrame({"hardship_claims_6m": [1]}), rules)


@pytest.mark.parametrize(
    ("broken", "line", "message"),
    [
        ("- {top_family: contactability}", 13, "unknown family 'contactabilty'"),
        ("- {field: first_delinquency, eq: 1}", 19, "unknown field 'first_delinquent'"),
        ("- {field: risk_above_base, le: 0.0}", 20, "unknown comparison 'below'"),
        ("precedence: [capacity_shock, unreachable, forgetful]", 2, "unknown segment 'careless'"),
    ],
)
def test_load_errors_name_the_file_and_line(broken, line, message):
    replacements = {
        "unknown family": "- {top_family: contactabilty}",
        "unknown field": "- {field: first_delinquent, eq: 1}",
        "unknown comparison": "- {field: risk_above_base, below: 0.0}",
        "unknown segment": "precedence: [capacity_shock, careless, forgetful]",
    }
    text = SMALL_RULES.replace(broken, next(v for k, v in replacements.items() if k in message))
    assert text != SMALL_RULES
    with pytest.raises(ConfigError) as error:
        parse_segment_rules(text, "conf/segments.yaml")
    assert str(error.value).startswith(f"conf/segments.yaml:{line}: ")
    assert message in str(error.value)


def _refused(condition: str, line: int = 8) -> str:
    """The load error of SMALL_RULES with CAP's condition (line 8) replaced by ``condition``."""
    text = SMALL_RULES.replace("{field: hardship_claims_6m, ge: 1}", condition)
    assert text != SMALL_RULES
    with pytest.raises(ConfigError) as error:
        parse_segment_rules(text, "conf/segments.yaml")
    message = str(error.value)
    assert message.startswith(f"conf/segments.yaml:{line}: segment 'capacity_shock', rule 'CAP': ")
    assert "\n" not in message
    return message


def test_a_bucket_in_the_wrong_case_is_refused():
    message = _refused("{field: start_bucket, eq: m1}")
    assert "start_bucket takes one of M1, M2, M3, got 'm1'" in message
    assert "did you mean 'M1'?" in message


def test_an_empty_operand_is_refused():
    message = _refused("{field: start_bucket, eq: }")
    assert "start_bucket takes one of M1, M2, M3, got nothing" in message


def test_a_product_outside_the_contract_is_refused():
    message = _refused("{field: product, in: [agri_loan, merchant_loans]}")
    assert (
        "product takes one of bnpl, credit_card, cash_loan, merchant_loan, agri_loan, "
        "got 'merchant_loans'"
    ) in message


def test_a_bucket_that_does_not_exist_is_refused():
    assert "start_bucket takes one of M1, M2, M3, got 'M4'" in _refused(
        "{field: start_bucket, ne: M4}"
    )


def test_a_text_where_a_number_is_due_is_refused():
    message = _refused('{field: hardship_claims_6m, eq: "2"}')
    assert "numeric field hardship_claims_6m needs a number, got the text '2'" in message


def test_a_text_bound_on_a_numeric_field_is_refused_before_scoring():
    message = _refused('{field: hardship_claims_6m, ge: "1"}')
    assert "numeric field hardship_claims_6m needs a number, got the text '1'" in message


def test_an_empty_range_is_refused():
    message = _refused("{field: hardship_claims_6m, ge: 4, lt: 2}")
    assert "hardship_claims_6m: the range ge 4, lt 2 holds no value" in message


def test_a_family_share_in_percent_is_refused():
    message = _refused("{family_share: payment_capacity, gt: 20}")
    assert "family_share payment_capacity: a family share is between 0 and 1, got 20" in message


def test_operands_of_the_wrong_kind_are_refused_with_their_line():
    assert "needs a number, got the boolean true" in _refused(
        "{field: hardship_claims_6m, ge: true}"
    )
    assert "needs a finite number, got nan" in _refused("{field: hardship_claims_6m, ge: .nan}")
    assert "family contactability needs a number, got the text 'high'" in _refused(
        "{family: contactability, in: [high]}"
    )
    assert "start_bucket is a label: compare it with eq, ne, in or not_in, not ge" in _refused(
        "{field: start_bucket, ge: M2}"
    )
    assert "a probability is between 0 and 1, got 50" in _refused("{field: probability, gt: 50}")
    assert "field first_delinquency: a 0/1 field is 0 or 1, got 2" in _refused(
        "{field: first_delinquency, eq: 2}"
    )
    assert "the comparisons eq M1, ne M1 hold no value together" in _refused(
        "{field: start_bucket, eq: M1, ne: M1}"
    )
    assert "the range gt 1 holds no value (a family share is between 0 and 1)" in _refused(
        "{family_share: willingness, gt: 1}"
    )
    # a condition written as a block: the line of the comparison at fault
    block = "field: start_bucket\n            in: [M2, M4]"
    assert "got 'M4'" in _refused(block, line=9)


def test_operands_the_subject_can_hold_still_load():
    for condition in (
        "{field: start_bucket, in: [M2, M3]}",
        "{field: product, not_in: [bnpl]}",
        "{field: hardship_claims_6m, ge: 1, le: 1}",
        "{family_share: payment_capacity, ge: 0.5}",
        "{field: probability, gt: 0.4}",
        "{field: first_delinquency, eq: 0}",
        "{field: risk_above_base, gt: -1.5, le: 2}",
    ):
        text = SMALL_RULES.replace("{field: hardship_claims_6m, ge: 1}", condition)
        parse_segment_rules(text, "s.yaml")


def test_the_bucket_vocabulary_is_the_policy_s():
    from rollrisk.strategies.policy import START_BUCKETS
    from rollrisk.strategies.segments import LABEL_FIELDS

    assert LABEL_FIELDS["start_bucket"] == tuple(START_BUCKETS)


def test_a_segment_name_under_segments_is_checked_with_its_line():
    text = SMALL_RULES.replace("  forgetful:\n", "  forgetfull:\n")
    with pytest.raises(ConfigError, match=r"small.yaml:15: unknown segment 'forgetfull'"):
        parse_segment_rules(text, "small.yaml")


def test_fields_are_the_state_columns_and_the_features_of_the_feature_set():
    text = SMALL_RULES.replace(
        "field: hardship_claims_6m, ge: 1", "field: broken_promises_3m, ge: 2"
    )
    assert text != SMALL_RULES
    with pytest.raises(ConfigError, match="unknown field 'broken_promises_3m'"):
        parse_segment_rules(text, "s.yaml")  # not a feature of the default FEATURE_SET
    with pytest.raises(ConfigError, match="unknown field 'first_delinquency'"):
        parse_segment_rules(text, "s.yaml", extra_fields=["broken_promises_3m"])
    rules = parse_segment_rules(
        text, "s.yaml", extra_fields=["broken_promises_3m", "first_delinquency"]
    )
    assert rules.fields == {"broken_promises_3m", "first_delinquency"}


def test_duplicate_rule_ids_and_keys_are_rejected():
    with pytest.raises(ConfigError, match=r"s.yaml:17: rule id 'CAP' is already used on line 6"):
        parse_segment_rules(SMALL_RULES.replace("id: FOR", "id: CAP"), "s.yaml")
    with pytest.raises(ConfigError, match=r"s.yaml:2: duplicate key 'fallback'"):
        parse_segment_rules("fallback: general\nfallback: general\n", "s.yaml")


def test_a_key_may_override_a_merged_one_but_not_be_written_twice():
    """`<<: *defaults` then a key of its own is what a merge is for (it was called a duplicate)."""
    text = "base: &base {a: 1, b: 2}\nuse:\n  <<: *base\n  a: 5\n"
    assert parse_yaml_with_lines(text, "s.yaml")["use"] == {"a": 5, "b": 2}
    with pytest.raises(
        ConfigError, match=r"s.yaml:5: duplicate key 'a' \(already given on line 4\)"
    ):
        parse_yaml_with_lines(text + "  a: 6\n", "s.yaml")


def test_segment_recovery_confusion_and_macro_f1():
    truth = ["capacity", "capacity", "willingness", "willingness", "unreachable", "unreachable"]
    predicted = [
        "capacity_shock",
        "general",
        "low_willingness",
        "low_willingness",
        "unreachable",
        "low_willingness",
    ]
    matrix, macro_f1 = segment_recovery(
        predicted,
        truth,
        label_map={"capacity": "capacity_shock", "willingness": "low_willingness"},
    )
    assert matrix.loc["capacity_shock", "general"] == 1
    assert matrix.loc["unreachable", "low_willingness"] == 1
    assert int(matrix.to_numpy().sum()) == 6
    assert "general" not in matrix.index  # no driver is "general": not a class of the average
    # capacity: P=1 R=.5 F=2/3; willingness: P=2/3 R=1 F=.8; unreachable: P=1 R=.5 F=2/3
    assert macro_f1 == pytest.approx((2 / 3 + 0.8 + 2 / 3) / 3)


def test_segment_recovery_is_one_when_perfect():
    labels = ["seasonal", "forgetful", "seasonal"]
    matrix, macro_f1 = segment_recovery(labels, labels)
    assert macro_f1 == pytest.approx(1.0)
    assert np.trace(matrix.to_numpy()) == 3
