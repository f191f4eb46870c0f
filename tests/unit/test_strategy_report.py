"""The strategy review page's tables and words (pure functions over scored accounts and the
shipped segment rules and policy)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from scipy import stats as scipy_stats

from rollrisk.features.registry import FEATURE_SET, definition_label, format_reason
from rollrisk.models.explanations import reason_text
from rollrisk.reports.html import Section
from rollrisk.reports.strategy import (
    ACCOUNT_COLUMNS,
    LADDER_WORDS,
    _no_learned_policy,
    _worse_off_summary,
    _worse_off_types,
    account_rows,
    action_mix,
    calibration_by_band,
    compliance_removals,
    expected_loss_by_band,
    grouped_reasons,
    ladder_words,
    probability_steps,
    segment_definitions,
    shown_path,
    top_reasons,
)
from rollrisk.strategies.policy import ACTIONS, load_policy
from rollrisk.strategies.segments import load_segment_rules


def _scored() -> pl.DataFrame:
    reason = lambda code, rank: {"code": code, "feature": code.lower(), "rank": rank}  # noqa: E731
    return pl.DataFrame(
        {
            "account_id": ["A1", "A2", "A3", "A4"],
            "segment": ["forgetful", "forgetful", "low_willingness", "low_willingness"],
            "risk_band": ["low", "low", "high", "medium"],
            "probability": [0.1, 0.2, 0.8, 0.4],
            "exposure": [1_000.0, 2_000.0, 10_000.0, 5_000.0],
            "expected_loss": [100.0, 400.0, 8_000.0, 2_000.0],
            "treatment": ["reminder_only", "reminder_only", "escalate_agency", "escalate_agency"],
            "actions": [
                json.dumps([{"action": "reminder"}]),
                json.dumps([{"action": "reminder"}]),
                json.dumps([{"action": "call"}, {"action": "agency_assignment"}]),
                json.dumps([{"action": "call"}]),
            ],
            "trail": [
                "[]",
                "[]",
                json.dumps(
                    [
                        {
                            "action": "legal_referral via legal at 2025-04-01 10:00",
                            "change": "removed",
                        }
                    ]
                ),  # fmt: skip
                json.dumps([{"action": "call via agent_call", "change": "moved to 08:00"}]),
            ],
            "reasons": [
                json.dumps([reason("RR-1", 1)]),
                json.dumps([reason("RR-1", 1), reason("RR-2", 2)]),
                json.dumps([reason("RR-2", 1)]),
                "[]",
            ],
        }
    )


def test_expected_loss_is_split_by_segment_and_band_with_totals():
    table = expected_loss_by_band(_scored()).set_index("segment")
    assert table.loc["low_willingness", "high"] == pytest.approx(8_000.0)
    assert table.loc["low_willingness", "medium"] == pytest.approx(2_000.0)
    assert table.loc["forgetful", "total"] == pytest.approx(500.0)
    assert table.loc["all segments", "total"] == pytest.approx(10_500.0)
    assert list(table.columns) == ["low", "medium", "high", "total"]


def test_action_mix_counts_planned_actions_and_compliance_removals_only():
    treatments, steps = action_mix(_scored())
    assert treatments.set_index("treatment").loc["escalate_agency", "all"] == 2
    steps = steps.set_index("action")
    assert steps.loc["reminder", "planned (after compliance)"] == 2
    assert steps.loc["legal_referral", "removed by compliance"] == 1
    assert steps.loc["call", "removed by compliance"] == 0  # a move is not a removal


def test_top_reasons_share_is_over_the_segment_accounts():
    table = top_reasons(_scored()).set_index(["segment", "code"])
    assert table.loc[("forgetful", "RR-1"), "share"] == pytest.approx(1.0)
    assert table.loc[("forgetful", "RR-2"), "as_first"] == 0
    assert table.loc[("low_willingness", "RR-2"), "share"] == pytest.approx(0.5)


def test_calibration_uses_matured_outcomes_only_and_says_none_when_nothing_matured():
    outcomes = pl.DataFrame(
        {"account_id": ["A1", "A2", "A3", "A4"], "rolled_to_default": [0, 1, 1, None]},
        schema={"account_id": pl.String, "rolled_to_default": pl.Int8},
    )
    table = calibration_by_band(_scored(), outcomes).set_index("risk_band")
    assert table.loc["low", "accounts"] == 2 and table.loc["low", "realised"] == pytest.approx(0.5)
    assert table.loc["low", "predicted"] == pytest.approx(0.15)
    assert "medium" not in table.index  # A4 has not matured
    assert table.loc["all", "accounts"] == 3
    # The Wilson bounds are the roots in p of (realised - p)^2 = z^2 p (1 - p) / n (the score
    # test inverted): solved here independently of the report's closed form.
    z = scipy_stats.norm.ppf(0.975)
    for band, rolled, n in (("low", 1, 2), ("high", 1, 1), ("all", 2, 3)):
        p_hat = rolled / n
        roots = sorted(np.roots([1 + z * z / n, -(2 * p_hat + z * z / n), p_hat * p_hat]).real)
        bounds = table.loc[band, ["realised_ci_low", "realised_ci_high"]].to_list()
        assert bounds == pytest.approx(roots, abs=1e-6), band
    nothing = outcomes.with_columns(pl.lit(None, dtype=pl.Int8).alias("rolled_to_default"))
    assert calibration_by_band(_scored(), nothing) is None


# --- the page's words: segment definitions, ladders, reasons, waterfalls, paths --------------
CONF = Path(__file__).resolve().parents[2] / "conf"
CJK = re.compile(r"[\u4e00-\u9fff]")


def test_every_segment_in_the_yaml_is_defined_in_english_and_chinese_from_its_rules():
    rules = load_segment_rules(CONF / "segments.yaml")
    definitions = segment_definitions(rules, FEATURE_SET)
    # read independently of the parser: a segment added to the YAML must get its texts
    document = yaml.safe_load((CONF / "segments.yaml").read_text(encoding="utf-8"))
    expected = set(document["segments"]) | {document["fallback"]}
    assert set(definitions) == expected
    for segment, (en, zh) in definitions.items():
        assert en and CJK.search(zh), segment
        for rule in document["segments"].get(segment, {}).get("rules", []):
            assert rule["id"] in en and rule["id"] in zh, (segment, rule["id"])
    en, zh = definitions["low_willingness"]
    # thresholds and buckets in words, features by their registry description
    assert "is at least 2 (rule SEG-WIL-2)" in en and "not M1 (1-29 days past due)" in en
    assert "refused to pay" in en and "不少于2" in zh and "不是M1(逾期1-29天)" in zh
    assert "unless an earlier segment" in en and "优先级更高" in zh
    assert "farm loan" in definitions["seasonal"][0] and "农业贷款" in definitions["seasonal"][1]


def test_every_treatment_ladder_of_the_policy_reads_in_both_languages():
    policy = load_policy(CONF / "policy.yaml")
    for name, treatment in policy.treatments.items():
        en, zh = ladder_words(treatment)
        assert en.startswith("day ") and CJK.search(zh), name
    # every action the policy knows and every channel an action may use has its words, so a
    # new action or channel without them fails here
    for action, spec in ACTIONS.items():
        assert action in LADDER_WORDS and CJK.search(LADDER_WORDS[action][1]), action
        for channel in spec.channels:
            assert channel in LADDER_WORDS and CJK.search(LADDER_WORDS[channel][1]), channel
    en, zh = ladder_words(policy.treatments["reminder_only"])
    assert en == "day 0, 10:00: reminder by app notification; day 2, 10:00: reminder by SMS"
    assert zh == "第0天10:00:App推送提醒;第2天10:00:短信提醒"
    # the standard queue alone, and with a step added on top of it
    from rollrisk.strategies.policy import parse_policy

    text = (
        (CONF / "policy.yaml")
        .read_text()
        .replace(
            "  standard_queue:\n",
            "  queue_plus:\n    ladder:\n      - {day: 0, action: standard_queue}\n"
            "      - {day: 0, action: interest_waiver_on_hardship}\n  standard_queue:\n",
        )
    )
    plus = parse_policy(text, "p.yaml")
    alone_en, _ = ladder_words(plus.treatments["standard_queue"])
    plus_en, plus_zh = ladder_words(plus.treatments["queue_plus"])
    assert "plans nothing else" in alone_en and "plans nothing else" not in plus_en
    assert "this policy adds; day 0: waive the interest" in plus_en  # a treatment: no time
    assert "if the borrower states a hardship" in plus_en and "本策略另加" in plus_zh


def _reason(rank: int, feature: str, value: float) -> dict:
    spec = FEATURE_SET.spec(feature)
    en, zh = reason_text(spec, value)
    return {"rank": rank, "feature": feature, "value": str(value), "text_en": en, "text_zh": zh}


def test_dpd_reasons_are_one_reason_and_plurals_agree():
    reasons = [
        _reason(1, "dpd_current", 12.0),
        _reason(2, "refusals_6m", 1.0),
        _reason(3, "dpd_max_6m", 45.0),
        _reason(4, "dpd_max_3m", 30.0),
    ]
    grouped = grouped_reasons(reasons, 12)
    assert grouped == [
        ("12 days past due now (up to 45 in the last 6 months)", "当前逾期12天(近6个月最高45天)"),
        ("refused to pay once in the last 6 months", "近6个月拒绝还款1次"),
    ]
    # the worst is no worse than now: nothing to add; one day is singular
    assert grouped_reasons([_reason(2, "dpd_max_3m", 1.0)], 1) == [
        ("1 day past due now", "当前逾期1天")
    ]
    assert grouped_reasons([], 5) == []
    refusals = FEATURE_SET.spec("refusals_6m").reason_en
    assert format_reason(refusals, 2.0) == "refused to pay 2 times in the last 6 months"
    broken = FEATURE_SET.spec("promises_broken_6m").reason_en
    assert format_reason(broken, 1.0) == "1 broken promise to pay in the last 6 months"
    assert format_reason(broken, 3.0) == "3 broken promises to pay in the last 6 months"
    episodes = FEATURE_SET.spec("delinquency_episodes_12m").reason_en
    assert format_reason(episodes, 1.0).startswith("1 separate delinquency ")
    for spec in FEATURE_SET.features:  # no template reads "1 ...s" or "1 times"
        if spec.kind == "numeric":
            text = format_reason(spec.reason_en, 1.0)
            assert "1 times" not in text and not re.search(r"\b1 \w+(s|ies)\b", text), text


def test_probability_waterfall_starts_at_the_base_rate_and_ends_at_the_probability():
    base = -2.0
    steps = probability_steps(
        base, {"willingness": 0.5, "exposure": -1.5, "contactability": 0.1}, 0.2
    )
    assert [s[0] for s in steps] == ["exposure", "willingness", "contactability", "calibration"]
    assert steps[0][1] == pytest.approx(1 / (1 + np.exp(2.0)))
    for (_, _, after), (_, before, _) in zip(steps, steps[1:], strict=False):
        assert after == pytest.approx(before)  # a chain, no gap
    assert steps[-2][2] == pytest.approx(1 / (1 + np.exp(-(base + 0.5 - 1.5 + 0.1))))
    assert steps[-1][2] == pytest.approx(0.2)


def test_paths_are_shown_relative_to_the_working_folder(tmp_path):
    inside = tmp_path / "runs" / "demo" / "portfolio"
    assert shown_path(inside, base=tmp_path) == "runs/demo/portfolio"
    assert not shown_path("/etc/passwd", base=tmp_path).startswith("/")
    assert shown_path("models:/rollrisk@champion") == "models:/rollrisk@champion"
    from rollrisk.conf import shipped

    # a shipped default outside the working folder (an installed wheel) is named as such
    assert shown_path(shipped("policy.yaml"), base=tmp_path) == "policy.yaml (shipped default)"


def test_compliance_removals_name_the_rule_per_segment():
    table = compliance_removals(_scored()).set_index(["segment", "rule"])
    assert list(table.index) == [("low_willingness", "?")]  # the fixture's trail names no rule
    scored = _scored().with_columns(
        pl.Series(
            "trail",
            [json.dumps([{"rule": "CMP-X", "action": "call via agent_call", "change": "removed",
                          "reason": "too many calls"}])] * 4,
        )
    )  # fmt: skip
    table = compliance_removals(scored).set_index(["segment", "rule"])
    assert table.loc[("forgetful", "CMP-X"), "removed"] == 2
    assert table.loc[("forgetful", "CMP-X"), "accounts"] == 2
    assert table.loc[("low_willingness", "CMP-X"), "reason"] == "too many calls"


def test_account_rows_are_bounded_largest_expected_loss_first_with_grouped_reasons():
    rows, total = account_rows(_scored().with_columns(pl.lit(7).alias("dpd"),
                                                      pl.lit("M1").alias("start_bucket"),
                                                      pl.lit("bnpl").alias("product")), 2)  # fmt: skip
    assert total == 4 and [r[0] for r in rows] == ["A3", "A4"]
    assert len(rows[0]) == len(ACCOUNT_COLUMNS)
    column = [name for name, _ in ACCOUNT_COLUMNS].index("removed by compliance 被合规移除")
    assert rows[0][column] == "?"  # the rule of the compliance removal
    # names, not codes: what the list shows is what its filter searches
    names = [name.split(" ")[0] for name, _ in ACCOUNT_COLUMNS]
    row = dict(zip(names, rows[0], strict=True))
    assert row["segment"] == "unwilling to pay 还款意愿低"
    assert row["treatment"] == "call, then collection agency 电话后转外部催收机构"
    assert row["product"] == "buy now, pay later 先买后付"


def test_reasons_of_older_scores_are_written_again_with_correct_plurals():
    stored = {"rank": 1, "feature": "refusals_6m", "value": "1.0",
              "text_en": "refused to pay 1 times in the last 6 months", "text_zh": "近6个月拒绝还款1次"}  # fmt: skip
    assert grouped_reasons([stored], 40) == [(stored["text_en"], stored["text_zh"])]
    assert grouped_reasons([stored], 40, FEATURE_SET) == [
        ("refused to pay once in the last 6 months", "近6个月拒绝还款1次")
    ]
    product = {"rank": 1, "feature": "product", "value": "bnpl", "text_en": "x", "text_zh": "y"}
    assert grouped_reasons([product], 3, FEATURE_SET) == [
        reason_text(FEATURE_SET.spec("product"), "bnpl")
    ]


def test_a_model_trained_before_the_plural_fix_is_worded_with_todays_registry():
    from dataclasses import replace

    from rollrisk.features.registry import FeatureSet
    from rollrisk.reports.strategy import current_wording

    old = replace(FEATURE_SET.spec("refusals_6m"), reason_en="refused to pay {value:.0f} times")
    private = replace(FEATURE_SET.spec("disputes_6m"), name="custom_feature")  # not in registry
    stored = FeatureSet("rollrisk-behaviour", "1.0.0", (old, private))
    worded = current_wording(stored)
    assert worded.spec("refusals_6m") == FEATURE_SET.spec("refusals_6m")
    assert worded.spec("custom_feature") == private and worded.names == stored.names
    reason = {"rank": 1, "feature": "refusals_6m", "value": "1.0", "text_en": "", "text_zh": ""}
    assert grouped_reasons([reason], 40, worded)[0][0].startswith("refused to pay once")


def _simulation(**extra) -> dict:
    stats = {"mean": -100.0, "ci_low": -300.0, "ci_high": 100.0}
    return {"uplift": {"net_recovery": stats}, "months": 3, "accounts": 10, "seeds": [1, 2],
            "uplift_account_bootstrap": {"net_recovery": stats}, **extra}  # fmt: skip


def test_headline_is_book_value_with_a_verdict_and_falls_back_to_net_cash_saying_so():
    from rollrisk.reports.strategy import _headline, _references

    old = Section("summary", "Summary")
    tiles = _headline(old, _simulation())
    assert tiles == [("uplift, net recovery (CNY) 净回收差额(元)", "-100")]
    assert "net cash only, not book value" in old.render()
    stats = {"mean": -50.0, "ci_low": -90.0, "ci_high": 20.0}
    new = _simulation(
        headline={"metric": "book_value", "model_driven": 950.0, "baseline_tiered": 1000.0,
                  "uplift": stats, "monte_carlo_interval": {**stats, "ci_low": -60.0}},
        references={name: {"book_value": {"mean": value}} for name, value in (
            ("model_driven", 950.0), ("baseline_tiered", 1000.0),
            ("baseline_plus_grace", 1200.0), ("oracle", 1500.0))},
        value_captured={"overall": -0.1, "policy_minus_baseline": -50.0,
                        "oracle_minus_baseline": 500.0, "by_true_driver": {}},
        uplift_vs_references={"oracle": {"mean": -550.0, "ci_low": -700.0, "ci_high": -400.0},
                              "baseline_plus_grace": {"mean": -250.0, "ci_low": -400.0, "ci_high": -100.0},
                              "best_bundle_per_bucket": {"mean": -20.0, "ci_low": -200.0, "ci_high": 150.0},
                              "segment_blind": {"mean": 30.0, "ci_low": -10.0, "ci_high": 70.0}},
    )  # fmt: skip
    section = Section("summary", "Summary")
    tiles = dict(_headline(section, new))
    _references(section, new)
    page = section.render()
    assert tiles["book value difference vs baseline (CNY) 相对基准的账面价值差额(元)"] == "-50"
    assert (
        tiles["value captured (0 = baseline, 100% = oracle) 价值捕获率(0=基准，100%=理想参照)"]
        == "-10%"
    )
    assert "not shown to be better than the tiered baseline" in page
    # a simple control that beats the shipped policy beyond noise is named as better, one ahead
    # within noise as about as good (the demo's page called a tie "better"); the oracle is
    # not a control, and one behind is not named
    assert (
        "A simpler reference does better (the policy under review minus it, CNY): baseline plus a "
        "grace period for all -250 [-400, -100]." in page
    )
    assert (
        "A simpler reference does about as well (the reference ahead on average, within noise; "
        "the policy under review minus it, CNY): best single action bundle per bucket, no segments -20 [-200, +150]."
        in page
    )
    assert "更简单的参照方案表现更好" in page and "更简单的参照方案表现相当" in page
    assert "every account in the fallback segment +30" not in page
    assert "These figures come from the simulator" in page and "以上数字来自模拟器" in page
    assert "Monte Carlo t-interval over seeds" in page and "net cash only" not in page
    # each reference's gap carries its account-and-seed interval (the baseline's is the headline)
    assert "-550 (95 % CI -700 to -400)" in page and "-50 (95 % CI -90 to +20)" in page
    assert "- agency commission +" in page
    assert "one and the same simulation" not in page  # no arm was another's run
    # an arm that was another's run is said so, in both languages
    same = Section("summary", "Summary")
    _references(
        same,
        {**new, "same_runs": {"segment_blind": "baseline_tiered", "oracle": "not_shown"},
         "references": {**new["references"], "segment_blind": {"book_value": {"mean": 1000.0}}}},
    )  # fmt: skip
    said = same.render()
    assert (
        "they are one and the same simulation (same ladders, every account in the fallback "
        "segment = tiered baseline (no model))" in said
    )
    assert (
        "因此是同一次模拟（相同处置流程、所有账户归入默认客群 = 分层催收基准策略(不用模型)）"
        in said
    )
    assert "not_shown" not in said  # only arms the table shows


def _interval(mean: float, low: float, high: float) -> dict[str, float]:
    return {"mean": mean, "ci_low": low, "ci_high": high}


def test_a_true_type_worse_off_is_named_with_the_accounts_the_policy_misplaced():
    by_driver = {
        "forgetful": {
            "accounts": 3580,
            "book_value": _interval(-151_000, -213_000, -93_000),
            "by_decision": {
                "own_ladder": {
                    "accounts": 243,
                    "book_value": _interval(-151_000, -215_000, -100_000),
                    "segments": {"capacity_shock": 200, "low_willingness": 43},
                },
                "standard_queue": {"accounts": 3337, "book_value": _interval(0.0, 0.0, 0.0)},
            },
        },
        "seasonal": {"accounts": 482, "book_value": _interval(-41_000, -263_000, 112_000)},
    }
    section = Section("where-it-loses", "Where the strategy loses")
    _worse_off_types(section, by_driver)
    html = "".join(section.parts)
    # the significantly worse type is named in both languages, with its misplaced accounts,
    # the loss as a positive amount lower, with its interval, in both
    assert "whose true type is forgetful (3,580 accounts)" in html and "遗忘型" in html
    assert "book value 151,000 CNY lower (95 % interval: 93,000 to 213,000 lower)" in html
    assert "低 151,000 元(95%区间:低 93,000 至 213,000 元)" in html
    assert (
        "On the 243 of them the policy gave a ladder of its own (or steps added to the standard "
        "queue) it is 151,000 CNY lower" in html
    )
    assert "(hit by a hardship (capacity shock): 200; unwilling to pay: 43)" in html
    assert "(还款能力受冲击:200;还款意愿低:43)" in html
    assert "243 个账户低 151,000 元" in html
    # the standard-queue part is not significantly negative: no capacity sentence
    assert "contact capacity" not in html and "-151,000" not in html
    # a type whose interval crosses zero is not called worse off
    assert "seasonal income" not in html
    calm = Section("where-it-loses", "Where the strategy loses")
    _worse_off_types(calm, {"seasonal": by_driver["seasonal"]})
    assert "No true borrower type is significantly worse off" in "".join(calm.parts)


def test_the_summary_warns_when_a_true_type_is_worse_off():
    worse = {"accounts": 900, "book_value": _interval(-600_000, -890_000, -340_000)}
    calm = {"accounts": 480, "book_value": _interval(-41_000, -263_000, 112_000)}
    section = Section("summary", "Summary")
    _worse_off_summary(section, {"healthy": worse, "seasonal": calm})
    html = "".join(section.parts)
    assert "1 true borrower type(s) end with a significantly lower book value" in html
    assert "healthy (a one-off slip) (600,000 CNY lower)" in html
    assert "健康型(偶然逾期)(低 600,000 元)" in html and "seasonal" not in html
    quiet = Section("summary", "Summary")
    _worse_off_summary(quiet, {"seasonal": calm})
    assert quiet.parts == []


def test_a_page_without_a_learned_policy_says_so_and_when_that_is_in_both_languages():
    """The demo reports without --learned when learn-policy found the experiment too small
    (exit code 3): the summary says no learned policy is shown, and why there may be none."""
    section = Section("summary", "Summary")
    _no_learned_policy(section)
    html = "".join(section.parts)
    assert "No policy learnt from the lender&#x27;s experiment is shown" in html
    assert "too small to learn from (exit code 3" in html
    assert '<p class="zh">本页未展示从我司实验中学习的策略' in html and "退出码 3" in html


def test_a_ratio_to_a_gap_within_noise_says_why_it_is_n_a():
    """The demo's page showed 'value of segmentation: n/a' and per-type 'n/a' with no word of
    why; each n/a now says the reference gap is within sampling noise (English and Chinese)."""
    from rollrisk.reports.strategy import _references

    result = {
        "headline": {"metric": "book_value", "uplift": {"mean": 10.0, "ci_low": 1.0, "ci_high": 20.0}},
        "references": {"baseline_tiered": {"book_value": {"mean": 100.0}}},
        "value_captured": {
            "overall": None, "policy_minus_baseline": 10.0, "oracle_minus_baseline": 12.0,
            "by_true_driver": {
                "forgetful": {"accounts": 15, "policy_minus_baseline": 7.0,
                              "oracle_minus_baseline": 6.0, "value_captured": None},
                "healthy": {"accounts": 90, "policy_minus_baseline": 3.0,
                            "oracle_minus_baseline": 6.0, "value_captured": 0.5},
            },
        },
        "value_of_segmentation": {
            "value": None, "policy_minus_segment_blind": -5.0,
            "oracle_segments_minus_segment_blind": -19678.0,
        },
    }  # fmt: skip
    section = Section("s", "S")
    _references(section, result)
    page = "".join(section.parts)
    assert "n/a: for that type the oracle does not beat the baseline by more than" in page
    assert "抽样噪声" in page
    assert (
        "segment-blind): n/a. The true segments fed into the policy under review do not beat"
        in page
    )
    assert "-19,678 CNY" in page
    result["value_of_segmentation"]["value"] = 0.7
    for row in result["value_captured"]["by_true_driver"].values():
        row["value_captured"] = 0.5
    section = Section("s", "S")
    _references(section, result)
    page = "".join(section.parts)
    assert "sampling noise" not in page and "segment-blind): 70%." in page


def test_the_headline_says_how_much_of_the_difference_is_cash_and_how_much_valuation():
    """The demo's +607,655 was read as money collected: +105,847 of it was net recovery (its
    interval across zero) and +614,584 balances on restructure plans valued at 80 %."""
    from rollrisk.reports.strategy import _sources

    section = Section("summary", "Summary")
    _sources(
        section,
        {
            "months": 6,
            "uplift": {
                "net_recovery": {"mean": 105_847.0, "ci_low": 5_333.0, "ci_high": 206_361.0},
                "end_value": {"mean": 501_808.0, "ci_low": 1.0, "ci_high": 2.0},
                "open_plan_balance": {"mean": 614_584.0, "ci_low": 1.0, "ci_high": 2.0},
            },
            "uplift_account_bootstrap": {
                "net_recovery": {"mean": 105_847.0, "ci_low": -103_913.0, "ci_high": 256_805.0}
            },
            "valuation": {"plan_share": 0.8},
        },
    )
    page = html.unescape(section.render())
    assert (
        "cash collected net of costs (net recovery) +105,847 CNY [-103,913, +256,805; 95 % CI "
        "resampling accounts]; the value of the balances still owed at the end of the 6 months "
        "+501,808 CNY, of it 614,584 CNY more of balances on restructure plans than under the "
        "baseline, valued at 80% of their amount (this portfolio's own plans); each 10 points "
        "less on that valuation takes 61,458 CNY off the difference." in page
    )
    assert "净回收)+105,847元[-103,913, +256,805；95%置信区间，重抽账户]" in page
    assert "按其金额的80%估值" in page and "差额减少61,458元" in page
    # the interval over accounts and seeds, when the result has it, is the one shown (the
    # page's headline resamples both; the accounts-only one is narrower)
    both = Section("summary", "Summary")
    _sources(
        both,
        {
            "months": 6,
            "uplift": {
                "net_recovery": {"mean": 10.0, "ci_low": 5.0, "ci_high": 15.0},
                "end_value": {"mean": 3.0},
                "open_plan_balance": {"mean": -4_725.0},
            },
            "uplift_account_bootstrap": {
                "net_recovery": {"mean": 10.0, "ci_low": 1.0, "ci_high": 19.0}
            },
            "uplift_two_way": {"net_recovery": {"mean": 10.0, "ci_low": -7.0, "ci_high": 27.0}},
            "valuation": {"plan_share": 0.8},
        },
    )
    text = html.unescape(both.render())
    assert "+10 CNY [-7, +27; 95 % CI resampling accounts and seeds]" in text
    # fewer plan balances than the baseline: a lower valuation adds, said without "-473 off"
    assert "4,725 CNY less of balances on restructure plans than under the baseline" in text
    assert "each 10 points less on that valuation adds 472 CNY to the difference" in text
    assert "比基准少4,725元" in text and "差额增加472元" in text
    assert "-4" not in text.split("Where the difference comes from")[1].split("valued at")[0]
    # a simulation without the plan share (older) says the rest without it
    quiet = Section("summary", "Summary")
    _sources(quiet, {"months": 6, "uplift": {"net_recovery": {"mean": 1.0, "ci_low": 0.0,
             "ci_high": 2.0}, "end_value": {"mean": 3.0}}})  # fmt: skip
    assert "restructure" not in quiet.render() and "+3 CNY." in quiet.render()


def test_where_it_loses_names_what_the_policy_costs_even_where_it_gains():
    """The demo's section said only "No segment does worse": 47 % more agent calls, 627 of
    them never made for want of agents and 16 more disputes went unsaid."""
    from rollrisk.reports.strategy import _costs_even_where_it_gains

    def arm(**figures):
        return {name: {"mean": value} for name, value in figures.items()}

    result = {"arms": {
        "model_driven": arm(agent_calls=4886, calls_dropped_for_capacity=627, disputes=126,
                            offers_refused=119, waived_income=66_506),
        "baseline_tiered": arm(agent_calls=3315, calls_dropped_for_capacity=0, disputes=110,
                               offers_refused=0, waived_income=49_409),
    }}  # fmt: skip
    section = Section("where-it-loses", "Where the strategy loses")
    _costs_even_where_it_gains(section, result)
    page = html.unescape(section.render())
    assert (
        "What the policy costs against the baseline, gain or not (mean per simulation seed): "
        "agent calls 4,886 against 3,315 (+47%); 627 planned calls not made for want of agents; "
        "disputes (the complaint proxy) 126 against 110; treatment offers refused 119 against 0; "
        "fees waived +17,097 CNY (already in the book value)." in page
    )
    assert "人工外呼4,886次，基准为3,315次(+47%)" in page and "因坐席人力不足" in page
    quiet = Section("where-it-loses", "Where the strategy loses")
    _costs_even_where_it_gains(quiet, {"arms": {}})
    assert "costs" not in quiet.render()


def test_the_summary_says_when_nearly_every_account_gets_the_same_treatment():
    from rollrisk.conf import DEFAULT_POLICY
    from rollrisk.reports.strategy import _what_the_policy_does
    from rollrisk.strategies.policy import load_policy

    scored = pl.DataFrame(
        {"treatment": ["queue_hardship_waiver"] * 1109 + ["hardship_waiver_restructure"] * 71}
    )
    section = Section("summary", "Summary")
    _what_the_policy_does(section, scored, load_policy(DEFAULT_POLICY))
    page = html.unescape(section.render())
    assert (
        "What the policy does: 1,109 of the 1,180 accounts (94%) get the same treatment, standard "
        "collection + hardship review (interest waiver) (" in page
    )
    assert "71 get 1 other treatment." in page
    assert "1,180个账户中1,109个(94%)获得同一处置：常规催收+困难审核（减免利息）(" in page
    assert "其余71个账户获得另外1种处置" in page and "queue" not in page


def test_the_commonest_reasons_name_facts_not_definitions():
    """The page's table listed "Months from the start of the latest known treatment to the
    as-of date; missing without any treatment" where the accounts' reasons said "no hardship
    treatment on record"; and 'refusal rate' for accounts no contact had reached."""
    from rollrisk.reports.strategy import top_reason_facts

    def reasons(*pairs):
        return json.dumps(
            [{"rank": i + 1, "feature": f, "value": v} for i, (f, v) in enumerate(pairs)]
        )

    scored = pl.DataFrame({
        "segment": ["forgetful"] * 3,
        "reasons": [
            reasons(("months_since_last_treatment", ""), ("refusal_rate_6m", "")),
            reasons(("months_since_last_treatment", ""), ("refusal_rate_6m", "0.5")),
            reasons(("dpd_current", "7.0"), ("dpd_max_3m", "7.0")),
        ],
    })  # fmt: skip
    table = top_reason_facts(scored, FEATURE_SET).set_index("reason")
    assert table.loc["no hardship treatment on record", "accounts"] == 2
    assert table.loc["no hardship treatment on record", "原因"] == "从未获得纾困措施"
    assert table.loc["no contact reached the borrower in the last 6 months", "accounts"] == 1
    refusal = FEATURE_SET.spec("refusal_rate_6m").description_en
    label = table.index[table.index.str.startswith(refusal[0].lower() + refusal[1:20])]
    assert len(label) == 1 and ";" not in label[0] and "missing" not in label[0]
    assert all(not text[:1].isupper() for text in table.index)  # one case for every fact
    assert table.loc["days past due now, or at worst in recent months", "accounts"] == 1
    assert not any(";" in text or "；" in text for text in [*table.index, *table["原因"]])


def test_each_value_of_a_flag_is_a_fact_named_as_its_reasons_name_it():
    """Found by a new user: the table listed "1 when a treatment known at the as-of has started
    and not ended by then, else 0" for accounts whose reasons said "no hardship treatment is
    running": a reader could not tell which way the fact went."""
    from rollrisk.reports.strategy import top_reason_facts

    scored = pl.DataFrame({
        "segment": ["capacity_shock"] * 4,
        "reasons": [json.dumps([{"rank": 1, "feature": "treatment_active", "value": v}])
                    for v in ("0.0", "-0.0", "1.0", "0")],
    })  # fmt: skip
    table = top_reason_facts(scored, FEATURE_SET).set_index("reason")
    assert table.loc["no hardship treatment is running", "accounts"] == 3
    assert table.loc["no hardship treatment is running", "原因"] == "当前无纾困措施"
    assert table.loc["a hardship treatment is running", "accounts"] == 1
    assert len(table) == 2


def test_the_commonest_reasons_of_a_run_scored_without_a_table_say_it_was_not_given():
    """A book scored with --allow-missing-table collection_actions words its reasons on the
    missing action features "not known, the collection actions were not given"; the page's
    table of commonest reasons labelled the same fact "no contact reached the borrower in the
    last 6 months", what it states when the table is there."""
    from rollrisk.reports.strategy import report_wording, top_reason_facts

    scored = pl.DataFrame({
        "segment": ["unreachable"] * 2,
        "reasons": [json.dumps([{"rank": 1, "feature": "refusal_rate_6m", "value": ""}])] * 2,
    })  # fmt: skip
    without = {"tables": {"scored_without": ["collection_actions"]}}
    table = top_reason_facts(scored, report_wording(without, FEATURE_SET))
    label = definition_label(FEATURE_SET.spec("refusal_rate_6m").description_en)
    assert table["reason"].tolist() == [
        f"{label}: not known, the collection actions were not given"
    ]
    assert table["原因"].iloc[0].endswith("：未知（未提供催收记录）")
    # a run with every table (or a manifest from before the key): what the value states
    for manifest in ({"tables": {"scored_without": []}}, {}):
        table = top_reason_facts(scored, report_wording(manifest, FEATURE_SET))
        assert table["reason"].tolist() == ["no contact reached the borrower in the last 6 months"]


def test_a_value_of_segmentation_within_noise_says_so_on_its_tile():
    from rollrisk.reports.strategy import _headline

    stats = {"mean": 607_655.0, "ci_low": 281_251.0, "ci_high": 899_876.0}
    result = _simulation(
        headline={"metric": "book_value", "model_driven": 2.0, "baseline_tiered": 1.0,
                  "uplift": stats},
        value_of_segmentation={"value": 0.22},
        uplift_vs_references={"segment_blind": {"mean": 38_812.0, "ci_low": -90_641.0,
                                                "ci_high": 154_763.0}},
    )  # fmt: skip
    tiles = dict(_headline(Section("summary", "Summary"), result))
    assert tiles["value of segmentation 客群分层的价值"] == "22%, within noise 在噪声范围内"


def test_the_summary_sets_the_lender_s_experiment_beside_the_simulated_gain():
    """The demo's summary headlined +607,655 simulated while the lender's experiment found no
    arm better than its standard collection, and 'hardship support' worse; the ladder the
    policy gives most was never an arm."""
    from types import SimpleNamespace

    from rollrisk.reports.strategy import _experiment_beside_simulation

    def arm(bundle, gap, low, high):
        return {"bundle": bundle, "versus_control": gap, "ci_low": low, "ci_high": high}

    arms = [arm("hardship_support", -6414, -10191, -2266),
            arm("hardship_waiver_restructure", -2072, -7519, 4198)]  # fmt: skip
    learned = SimpleNamespace(evaluation={"experiment_readout": {"arms": arms}})
    scored = pl.DataFrame({"treatment": ["queue_hardship_waiver"] * 9 + ["hardship_support"]})
    section = Section("summary", "Summary")
    _experiment_beside_simulation(section, learned, scored)
    page = html.unescape(section.render())
    assert (
        "The lender's own experiment (real decisions, 2 arms): 0 did significantly better than "
        "its standard collection, 1 significantly worse; the treatment the policy gives most "
        "(standard collection + hardship review (interest waiver)) was not one of them. The "
        "simulated gain above is not confirmed by real decisions." in page
    )
    assert "最常用的处置(常规催收+困难审核（减免利息）)不在实验组之中" in page
    assert "上述模拟收益未得到真实决策的证实" in page
    tested = Section("summary", "Summary")
    scored = pl.DataFrame({"treatment": ["hardship_waiver_restructure"] * 3})
    _experiment_beside_simulation(tested, learned, scored)
    assert (
        "(interest waiver and restructure offer) was one: -2,072 [-7,519, +4,198] CNY per decision against the control"
        in (html.unescape(tested.render()))
    )
    quiet = Section("summary", "Summary")
    _experiment_beside_simulation(quiet, SimpleNamespace(evaluation={}), scored)
    assert "experiment" not in quiet.render()


def test_the_approval_box_speaks_both_languages_and_explains_a_first_champion():
    """The page put "is the champion" beside "no champion yet: the discrimination gate does not
    apply", in English only, and a lead read it as a contradiction."""
    from rollrisk.reports.strategy import _promotion

    first = {"name": "m", "version": "1", "champion_version": "1", "promotion": "promoted",
             "reasons": ["pass data: ...", "no champion yet: the discrimination gate does not apply"]}  # fmt: skip
    section = Section("model", "Model")
    assert _promotion(section, first) == "champion"
    page = html.unescape(section.render())
    assert "Model m v1 is the champion (the model approved for production). When it was " in page
    assert "模型m v1为冠军模型(已批准用于生产)。晋升时尚无可比较的前任冠军模型" in page
    refused = {**first, "champion_version": None, "promotion": "refused", "reasons": ["FAIL x"]}
    section = Section("model", "Model")
    assert _promotion(section, refused) == "refused by the promotion gates"
    page = html.unescape(section.render())
    assert "模型m v1不是冠军模型：未通过晋升门槛(冠军：none)" in page
    assert "no earlier champion" not in page
    # promoted, then replaced by a later champion: the page said it "has not been through
    # `rollrisk promote`" beside the gates' pass lines
    replaced = {**first, "champion_version": "2", "promotion": "promoted"}
    section = Section("model", "Model")
    assert _promotion(section, replaced) == "promoted once, no longer the champion"
    page = html.unescape(section.render())
    assert "Model m v1 is no longer the champion (champion: v2): it passed its promotion" in page
    assert "模型m v1已不再是冠军模型(冠军：v2)" in page and "has not been through" not in page
    # the latest verdict wins: promoted once, refused when promoted again after a rollback
    again = {**replaced, "promotion": "refused", "promoted_at": "2026-12-01"}
    assert _promotion(Section("model", "Model"), again) == "refused by the promotion gates"


def test_a_reference_that_scores_as_well_by_planning_the_impossible_says_so():
    """The best bundle per bucket tied with the policy (-13,044 [-689,397, +614,452]) while
    compliance blocked 1,318 of its actions (the policy's: 13) and 1,658 of its contacts were
    dropped for capacity (627)."""
    from rollrisk.reports.strategy import _verdict

    def arm(blocks, calls, visits):
        return {"compliance_blocks": {"mean": blocks}, "calls_dropped_for_capacity":
                {"mean": calls}, "visits_dropped_for_capacity": {"mean": visits}}  # fmt: skip

    result = {
        "references": {"model_driven": arm(13, 627, 0), "best_bundle_per_bucket": arm(1318, 27, 1631)},
        "uplift_vs_references": {"best_bundle_per_bucket": {"mean": -13_044.0,
                                 "ci_low": -689_397.0, "ci_high": 614_452.0}},
    }  # fmt: skip
    en, zh = _verdict({"mean": 607_655.0, "ci_low": 281_251.0, "ci_high": 899_876.0}, result)
    assert (
        "best single action bundle per bucket, no segments (1,318 compliance blocks against the "
        "policy's 13; 1,658 contacts dropped for capacity against 627) -13,044 [-689,397, "
        "+614,452]." in en
    )
    assert "(合规拦截1,318次，拟上线策略13次；因人力上限未执行的联系1,658次，拟上线策略627次)" in zh
