"""A missing value's reason states what it means ("no hardship treatment on record"), never
the feature's definition: the demo's page showed "Months from the start of the latest known
treatment to the as-of date; missing without any treatment: no data" on 557 of 1,180 accounts,
and its ';' read as a fifth reason."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from rollrisk.features.registry import FEATURE_SET, FeatureSet, current_wording
from rollrisk.models.explanations import reason_codes, reason_text

CAN_BE_MISSING = [spec for spec in FEATURE_SET.features if "missing" in spec.description_en]


def test_every_feature_that_can_be_missing_says_what_a_missing_value_means():
    assert len(CAN_BE_MISSING) >= 30
    for spec in CAN_BE_MISSING:
        assert spec.missing_en and spec.missing_zh, spec.name
        assert reason_text(spec, np.nan) == (spec.missing_en, spec.missing_zh)
        assert "missing" not in spec.missing_en and "为空" not in spec.missing_zh


@pytest.mark.parametrize("value", [np.nan, None, pd.NA, 0.0, 1.0, 3.0, -0.25, 0.5, 120.0])
def test_no_reason_holds_a_semicolon_the_page_would_read_as_two_reasons(value):
    for spec in FEATURE_SET.features:
        for text in reason_text(spec, value):
            assert ";" not in text and "；" not in text, (spec.name, value, text)


@pytest.mark.parametrize("value", [np.inf, -np.inf, 1e308])
def test_a_reason_is_worded_for_an_infinite_or_huge_value(value):
    """An infinite value (a ratio over a vanishing amount, before features made it missing)
    raised OverflowError from the plural rule and stopped a whole scoring run."""
    for spec in FEATURE_SET.features:
        en, zh = reason_text(spec, value)
        assert en and zh, spec.name


def test_the_common_missing_values_read_as_facts():
    spec = FEATURE_SET.spec
    assert reason_text(spec("months_since_last_treatment"), None) == (
        "no hardship treatment on record",
        "从未获得纾困措施",
    )
    assert reason_text(spec("refusal_rate_6m"), np.nan) == (
        "no contact reached the borrower in the last 6 months",
        "近6个月未成功联系到借款人",
    )
    assert reason_text(spec("dpd_trend_12m"), np.nan) == (
        "fewer than 2 statements in the last 12 months (a new or short history)",
        "近12个月账单不足2期(新账户或历史较短)",
    )


def test_a_model_trained_before_the_wording_gets_it_from_today_s_registry():
    """A model records its feature specs; one recorded before this change has no missing
    texts, and scoring words its reasons with current_wording."""
    old = FeatureSet(
        FEATURE_SET.name,
        FEATURE_SET.version,
        tuple(dataclasses.replace(s, missing_en="", missing_zh="") for s in FEATURE_SET.features),
    )
    recorded = FeatureSet(  # as models/roll_model.py reads a model logged before the change
        old.name,
        old.version,
        tuple(
            type(s)(
                **{k: v for k, v in dataclasses.asdict(s).items() if not k.startswith("missing")}
            )
            for s in old.features
        ),
    )
    name = "months_since_last_treatment"
    assert reason_text(recorded.spec(name), None)[0].endswith(": no data")
    worded = current_wording(recorded)
    frame = pd.DataFrame({n: [np.nan] for n in worded.names})
    contributions = np.zeros((1, len(worded.names)))
    contributions[0, worded.names.index(name)] = 0.4
    reasons = reason_codes(contributions, frame, worded)
    assert reasons["text_en"].tolist() == ["no hardship treatment on record"]
    assert reasons["text_zh"].tolist() == ["从未获得纾困措施"]


@pytest.mark.parametrize(
    ("name", "value", "en", "zh"),
    [
        ("dpd_last_minus_mean_6m", -5.0, "5 days fewer past due than the 6-month average",
         "逾期天数比近6个月平均少5天"),
        ("dpd_last_minus_mean_12m", 1.0, "1 day more past due than the 12-month average",
         "逾期天数比近12个月平均多1天"),
        ("paid_to_due_last_minus_mean_6m", -1.15,
         "share of the due paid 115% below its 6-month average", "还款比例比近6个月平均低115%"),
        ("utilisation_last_minus_mean_12m", -0.19, "utilisation 19% below the 12-month average",
         "额度使用率比近12个月平均低19%"),
    ],
)  # fmt: skip
def test_a_difference_against_an_average_reads_by_its_sign(name, value, en, zh):
    """The page read "paid -156% of the due against the 6-month average" and, in Chinese,
    "逾期天数比近6个月平均多-5天" (5 more days, minus)."""
    assert reason_text(FEATURE_SET.spec(name), value) == (en, zh)
