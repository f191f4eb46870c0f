"""A 0/1 (flag) feature's reason states the fact its value states, in English and Chinese,
whichever path words it: the per-account text, the batch's columnar reasons and their JSON, and
the strategy report's re-wording of stored scores."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from rollrisk.features.registry import (
    FEATURE_SET,
    FeatureSet,
    flag_reason,
    format_reason,
    is_flag,
)
from rollrisk.models.explanations import reason_code, reason_codes, reason_text
from rollrisk.reports.strategy import current_wording, grouped_reasons
from rollrisk.scoring.core import _reasons_json

MISSING = {
    "first_delinquency": ("not known whether this is the first delinquency", "是否首次逾期未知"),
    "treatment_active": (
        "not known whether a hardship treatment is running (no treatment record)",
        "是否有纾困措施执行中未知(无纾困记录)",
    ),
}

# feature -> {value: (English, Chinese)}
EXPECTED = {
    "first_delinquency": {
        1.0: ("first delinquency on record", "历史首次逾期"),
        0.0: ("not the first delinquency on record", "非历史首次逾期"),
    },
    "treatment_active": {
        1.0: ("a hardship treatment is running", "纾困措施执行中"),
        0.0: ("no hardship treatment is running", "当前无纾困措施"),
    },
}
CASES = [(name, value) for name, texts in EXPECTED.items() for value in texts]


def test_every_0_1_feature_of_the_registry_is_worded_as_a_flag():
    # a feature defined as "1 when ..., else 0" is a flag, and only those are
    defined_as_flag = {
        spec.name for spec in FEATURE_SET.features if spec.description_en.endswith(", else 0.")
    }
    assert {spec.name for spec in FEATURE_SET.features if is_flag(spec)} == defined_as_flag
    assert defined_as_flag == set(EXPECTED)
    for spec in FEATURE_SET.features:  # no template quotes a 0/1 value as a number
        assert "flag {value" not in spec.reason_en and "标记{value" not in spec.reason_zh
        assert is_flag(spec) == spec.reason_zh.startswith("{flag:"), spec.name


@pytest.mark.parametrize(("name", "value"), CASES)
def test_a_flag_reason_states_the_fact_of_the_value(name, value):
    spec = FEATURE_SET.spec(name)
    en, zh = EXPECTED[name][value]
    assert format_reason(spec.reason_en, value) == en
    assert format_reason(spec.reason_zh, value) == zh
    negative_zero = (-0.0,) if value == 0 else ()
    for same in (
        value,
        int(value),
        np.float64(value),
        np.int64(value),
        bool(value),
        *negative_zero,
    ):
        assert reason_text(spec, same) == (en, zh), repr(same)
    assert not re.search(r"\d|flag|标记", en + zh)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_missing_or_impossible_flag_value_says_so_without_the_text_of_0_or_1(name):
    spec = FEATURE_SET.spec(name)
    for missing in (None, float("nan"), np.float64("nan"), pd.NA):
        en, zh = reason_text(spec, missing)
        assert (en, zh) == MISSING[name]
    with pytest.raises(ValueError, match="neither 0 nor 1"):
        format_reason(spec.reason_en, 0.5)
    assert reason_text(spec, 0.5)[0].endswith(": 0.5")  # never the text of 0 or 1
    assert reason_text(spec, "cash_loan")[1].endswith("：cash_loan")


def test_flag_reason_builds_one_mark_and_refuses_texts_that_would_break_it():
    template = flag_reason("yes it is", "no it is not")
    assert format_reason(template, 1.0) == "yes it is"
    assert format_reason(template, 0.0) == "no it is not"
    assert format_reason("(" + template + ")", 0) == "(no it is not)"
    for bad in ("", "a|b", "{value}", "a}"):
        with pytest.raises(ValueError):
            flag_reason(bad, "no")
        with pytest.raises(ValueError):
            flag_reason("yes", bad)


def _batch(values: dict[str, list[float]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The batch's columnar reasons for one flag feature per account, its value given."""
    names = FEATURE_SET.names
    rows = [(name, value) for name, own in values.items() for value in own]
    contribs = np.zeros((len(rows), len(names)))
    X_raw = pd.DataFrame([dict.fromkeys(names, 0.0)] * len(rows))
    for i, (name, value) in enumerate(rows):
        contribs[i, names.index(name)] = 0.7  # the one risk-raising feature: the one reason
        X_raw.loc[i, name] = value
    return reason_codes(contribs, X_raw, FEATURE_SET), X_raw


def test_batch_reasons_word_each_flag_value_as_the_per_account_text():
    own = [0.0, 1.0, 0.0, -0.0, np.nan, 1.0]
    reasons, X_raw = _batch(dict.fromkeys(EXPECTED, own))
    assert len(reasons) == len(X_raw)  # one reason per account
    for _, reason in reasons.iterrows():
        spec = FEATURE_SET.spec(reason["feature"])
        value = X_raw.loc[reason["row"], spec.name]
        assert (reason["text_en"], reason["text_zh"]) == reason_text(spec, value)
        assert reason["code"] == reason_code(spec)  # codes do not embed the text
        if not np.isnan(value):
            assert (reason["text_en"], reason["text_zh"]) == EXPECTED[spec.name][abs(value)]
    # the scored accounts' JSON carries the same texts
    for text, (_, reason) in zip(
        _reasons_json(reasons.assign(row=np.arange(len(reasons))), len(reasons)),
        reasons.iterrows(),
        strict=True,
    ):
        (stored,) = json.loads(text)
        assert (stored["text_en"], stored["text_zh"]) == (reason["text_en"], reason["text_zh"])


@pytest.mark.parametrize(("name", "value"), CASES)
def test_the_report_words_stored_flag_reasons_from_the_registry(name, value):
    # scores written with the old template ("... (flag 0)") read right on the page
    stored = {"rank": 1, "feature": name, "value": str(value),
              "text_en": "a hardship treatment is running (flag 0)", "text_zh": "纾困措施执行中(标记0)"}  # fmt: skip
    assert grouped_reasons([stored], 10, FEATURE_SET) == [EXPECTED[name][value]]
    reasons, _ = _batch({name: [value]})
    batch = reasons.iloc[0].to_dict()
    assert grouped_reasons([batch], 10, FEATURE_SET) == [(batch["text_en"], batch["text_zh"])]
    # a model trained with the old template is worded with today's registry on the page
    spec = FEATURE_SET.spec(name)
    old = replace(spec, reason_en="old (flag {value:.0f})", reason_zh="旧(标记{value:.0f})")
    worded = current_wording(FeatureSet(FEATURE_SET.name, "1.0.0", (old,)))
    assert grouped_reasons([stored], 10, worded) == [EXPECTED[name][value]]


def test_a_model_s_feature_set_is_reworded_but_never_recomputed():
    """Scoring words reasons with current_wording(model.feature_set): only the texts come from
    today's registry; a feature's family, direction, kind and source stay the model's, and a
    feature the registry no longer has, or has in another family, keeps the model's words."""
    spec = FEATURE_SET.spec("treatment_active")
    old = replace(spec, reason_en="old (flag {value:.0f})", direction=-1, source="statements")
    moved = replace(FEATURE_SET.spec("first_delinquency"), family="exposure", reason_en="kept")
    gone = replace(spec, name="a_feature_since_removed", reason_en="its own")
    worded = current_wording(FeatureSet(FEATURE_SET.name, "1.0.0", (old, moved, gone)))
    now, kept, own = worded.features
    assert (now.reason_en, now.reason_zh) == (spec.reason_en, spec.reason_zh)
    assert (now.direction, now.source, now.family, now.kind) == (
        -1,
        "statements",
        spec.family,
        spec.kind,
    )
    assert kept.reason_en == "kept" and own.reason_en == "its own"
    assert format_reason(now.reason_en, 0.0) == "no hardship treatment is running"


def test_reasons_json_is_the_text_json_dumps_writes_for_awkward_strings():
    # each field is written by the encoder json.dumps uses for a string: quotes, backslashes,
    # control characters, non-ASCII and the Unicode line separators come out the same bytes;
    # a row without a reason (every other row, and the last) gets []
    awkward = [
        "plain",
        'a "quoted" \\ value',
        "tab\tnew\nline\x01",
        "逾期天数：12",
        "sep\u2028\u2029",
        "",
    ]
    rows = []
    for i, text in enumerate(awkward):
        for rank in (1, 2):
            rows.append({"row": 2 * i + 1, "rank": rank, "code": f"RR-{i}{text[:1]}",
                         "feature": f"f{rank}", "family": text, "value": text + str(rank),
                         "contribution": 0.1234567890123456 * rank, "text_en": text,
                         "text_zh": text + "中"})  # fmt: skip
    long = pd.DataFrame(rows)
    n_rows = 2 * len(awkward) + 2
    written = _reasons_json(long, n_rows)
    expected = [
        json.dumps(
            [
                {
                    **{k: r[k] for k in ("rank", "code", "feature", "family", "value")},
                    "contribution": round(r["contribution"], 12),
                    "text_en": r["text_en"],
                    "text_zh": r["text_zh"],
                }
                for r in rows
                if r["row"] == i
            ],
            ensure_ascii=False,
        )  # fmt: skip
        for i in range(n_rows)
    ]
    assert written == expected
    assert written[0] == written[-1] == "[]"


@pytest.mark.parametrize(
    ("value", "en"),
    [(-0.03, "days past due changing by +0.0 a month over 6 months"),
     (-0.0, "days past due changing by +0.0 a month over 6 months"),
     (-0.3, "days past due changing by -0.3 a month over 6 months"),
     (0.04, "days past due changing by +0.0 a month over 6 months")],
)  # fmt: skip
def test_a_value_rounding_to_zero_never_reads_minus_zero(value, en):
    """Found by a new user: a reason read "days past due changing by -0.0 a month"."""
    spec = FEATURE_SET.spec("dpd_trend_6m")
    assert format_reason(spec.reason_en, value) == en
    for name in FEATURE_SET.names:  # no shipped template is left unformattable by the option
        spec = FEATURE_SET.spec(name)
        if spec.kind == "numeric" and not spec.reason_en.startswith("{flag:"):
            assert "-0" not in format_reason(spec.reason_en, -1e-9)
            format_reason(spec.reason_zh, 2.0)
