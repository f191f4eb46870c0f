"""The strategy review page of a scoring run: one self-contained HTML page for a strategy lead
who does not code.

For the published result of ``rollrisk score`` it shows, in this order: the headline of the
policy simulation (book value against the tiered baseline with the account-and-seed interval,
the references up to the oracle, value captured and value of segmentation; a simulation from
before book value falls back to its net recovery and says so); whether the scoring model is the
champion and what its promotion gates said; per segment a plain-language definition in English
and Chinese written from the segment rules, its treatment ladders in words, its accounts and its
value against the baseline; where the strategy loses and which compliance rules removed the
actions it planned there; given the output of ``rollrisk learn-policy``, what the lender's
experiment showed arm by arm and the learned rules beside the current decision with their
off-policy estimate in money; a sortable, filterable list of the scored accounts (embedded JSON,
one small inline script); example accounts with waterfalls in probability terms and their
reasons (one per underlying fact, in both languages); the most common reasons per segment;
expected loss per segment and risk band; the action mix; calibration; the simulation's detail;
segment recovery; and, for analysts, a SHAP beeswarm per segment (log-odds).

SHAP values are recomputed for a bounded sample of accounts per segment from the scored model
and the portfolio: the scored output stores only family sums and the top 4 reasons.

:func:`build_report` reads nothing: the job (``rollrisk report``) hands it the scores, the
portfolio, the model, the segment rules and policy the scores were decided with, the simulator's
true drivers, the policy simulation and the model's promotion status. Every path on the page is
shown relative to the working folder. The page is assembled with the report kit
(:mod:`rollrisk.reports.html`).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import polars as pl

from rollrisk.conf import shown_path
from rollrisk.features.registry import FeatureSet, current_wording, definition_label, is_flag
from rollrisk.models.explanations import reason_text
from rollrisk.models.stats import calibration_backtest, percentile_bootstrap
from rollrisk.reports.html import Section, data_table, escape, figure_png, render_page
from rollrisk.reports.policy_simulation import (
    LABELS,
    SEGMENT_UPLIFT_NOTE,
    format_metric,
    format_uplift,
    signed,
)
from rollrisk.simulator.replay import OWN_DRAWS
from rollrisk.strategies.experiment_readout import (
    DESIGN_GAP_SHARE,
    ArmReadout,
    experiment_size,
)
from rollrisk.strategies.policy import ACTIONS, STANDARD_QUEUE

if TYPE_CHECKING:
    from rollrisk.models.roll_model import RollModel
    from rollrisk.storage.loader import Portfolio
    from rollrisk.strategies.policy import Policy, Treatment
    from rollrisk.strategies.segments import Condition, SegmentRules

SECTION_IDS = (
    "summary",
    "promotion",
    "segments",
    "where-it-loses",
    "accounts",
    "examples",
    "reason-codes",
    "expected-loss",
    "action-mix",
    "calibration",
    "policy-simulation",
    "segment-recovery",
    "shap-summary",
)
SECTION_TITLES = (
    "Summary 摘要",
    "Is the scoring model approved? 评分模型是否获批?",
    "Segments: who they are, what the policy does to them, what it is worth "
    "客群：是谁、如何处置、价值几何",
    "Where the strategy loses, and why 策略在哪里失利、原因",
    "Accounts to review 待复核账户",
    "Example accounts: why the model thinks they are risky 账户示例：模型为何判断其高风险",
    "Most common reasons per segment 各客群最常见的风险原因",
    "Expected loss by segment and risk band 按客群与风险等级的预期损失",
    "Action mix 处置动作构成",
    "Calibration: do the probabilities hold? 校准：预测概率是否可靠?",
    "Policy simulation in detail 策略模拟详情",
    "Segment recovery (simulated portfolios) 客群识别准确度(仅模拟组合)",
    "SHAP summary per segment (for analysts) 各客群SHAP汇总(供分析人员)",
)
# the account list embeds at most this many accounts (largest expected loss first)
ACCOUNT_LIMIT = 5_000
BAND_ORDER = ("low", "medium", "high")
BOOTSTRAP_SAMPLES = 500
# The simulator's healthy borrowers who fall behind are self-cures: the forgetful segment's job.
DRIVER_TO_SEGMENT = {"healthy": "forgetful"}


# --------------------------------------------------------------------------------------------
# Figures and tables (pure: frames in, numbers or PNG bytes out)
# --------------------------------------------------------------------------------------------
def segment_table(scored: pl.DataFrame) -> pd.DataFrame:
    """Accounts, exposure, expected loss and mean probability per segment."""
    total = scored.height
    table = (
        scored.group_by("segment")
        .agg(
            pl.len().alias("accounts"),
            pl.col("exposure").sum().alias("exposure"),
            pl.col("expected_loss").sum().alias("expected_loss"),
            pl.col("probability").mean().alias("mean_probability"),
        )
        .with_columns((pl.col("accounts") / total).alias("share"))
        .sort("expected_loss", descending=True)
    )
    return table.select(
        "segment", "accounts", "share", "exposure", "expected_loss", "mean_probability"
    ).to_pandas()


def expected_loss_by_band(scored: pl.DataFrame) -> pd.DataFrame:
    """Expected loss per segment (rows) and risk band (columns), with totals."""
    pivot = (
        scored.group_by("segment", "risk_band")
        .agg(pl.col("expected_loss").sum())
        .to_pandas()
        .pivot(index="segment", columns="risk_band", values="expected_loss")
        .fillna(0.0)
    )
    bands = [b for b in BAND_ORDER if b in pivot.columns] + sorted(
        set(pivot.columns) - set(BAND_ORDER)
    )
    pivot = pivot[bands]
    pivot["total"] = pivot.sum(axis=1)
    pivot = pivot.sort_values("total", ascending=False)
    pivot.loc["all segments"] = pivot.sum(axis=0)
    return pivot.reset_index()


def action_mix(scored: pl.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(treatment x segment account counts, planned actions and compliance removals per action)."""
    treatments = (
        scored.group_by("treatment", "segment")
        .len()
        .to_pandas()
        .pivot(index="treatment", columns="segment", values="len")
        .fillna(0)
        .astype(int)
    )
    treatments["all"] = treatments.sum(axis=1)
    treatments = treatments.sort_values("all", ascending=False).reset_index()
    planned: dict[str, int] = {}
    removed: dict[str, int] = {}
    for actions, trail in zip(scored["actions"], scored["trail"], strict=True):
        for step in json.loads(actions):
            planned[step["action"]] = planned.get(step["action"], 0) + 1
        for change in json.loads(trail):
            if change["change"] == "removed":
                name = change["action"].split(" ")[0]
                removed[name] = removed.get(name, 0) + 1
    names = sorted(set(planned) | set(removed), key=lambda n: -planned.get(n, 0))
    steps = pd.DataFrame(
        {
            "action": names,
            "planned (after compliance)": [planned.get(n, 0) for n in names],
            "removed by compliance": [removed.get(n, 0) for n in names],
        }
    )
    return treatments, steps


def top_reasons(scored: pl.DataFrame, per_segment: int = 5) -> pd.DataFrame:
    """The reason codes most often among an account's (up to 4) reasons, per segment."""
    rows = []
    for segment, reasons in zip(scored["segment"], scored["reasons"], strict=True):
        for reason in json.loads(reasons):
            rows.append(
                {
                    "segment": segment,
                    "code": reason["code"],
                    "feature": reason["feature"],
                    "first": reason["rank"] == 1,
                }
            )
    if not rows:
        return pd.DataFrame(columns=["segment", "code", "feature", "accounts", "share", "as_first"])
    frame = pd.DataFrame(rows)
    sizes = scored.group_by("segment").len().to_pandas().set_index("segment")["len"]
    table = (
        frame.groupby(["segment", "code", "feature"])
        .agg(accounts=("first", "size"), as_first=("first", "sum"))
        .reset_index()
    )
    table["share"] = table["accounts"] / table["segment"].map(sizes)
    table = table.sort_values(["segment", "accounts"], ascending=[True, False])
    table = table.groupby("segment").head(per_segment)
    return table[["segment", "code", "feature", "accounts", "share", "as_first"]]


def calibration_by_band(scored: pl.DataFrame, outcomes: pl.DataFrame) -> pd.DataFrame | None:
    """Predicted vs realised roll-to-default per risk band for accounts whose outcome matured.

    ``outcomes``: ``account_id``, ``rolled_to_default`` (null = not matured). None when no
    scored account has a matured outcome.
    """
    joined = scored.join(outcomes, on="account_id", how="left").filter(
        pl.col("rolled_to_default").is_not_null()
    )
    if joined.height == 0:
        return None
    present = set(joined["risk_band"].unique().to_list())
    bands = [b for b in BAND_ORDER if b in present] + sorted(present - set(BAND_ORDER))
    # the Wilson 95 % interval of the realised rate, so small bands are read with care
    table = calibration_backtest(
        joined["probability"].to_numpy(),
        joined["rolled_to_default"].to_numpy(),
        joined["risk_band"].to_numpy(),
        bands,
    )
    table = table.rename(
        columns={
            "group": "risk_band",
            "predicted_mean": "predicted",
            "realised_rate": "realised",
            "ci_lower": "realised_ci_low",
            "ci_upper": "realised_ci_high",
        }
    )
    columns = ["risk_band", "accounts", "predicted", "realised"]
    return table[[*columns, "realised_ci_low", "realised_ci_high"]]


def bootstrap_macro_f1(
    segments: Sequence[str], drivers: Sequence[str], samples: int, seed: int
) -> tuple[float, float, float, pd.DataFrame]:
    """Segment-recovery macro-F1, its 95 % percentile bootstrap interval over accounts, and the
    confusion matrix (rows: true driver, columns: segment)."""
    from rollrisk.strategies.segments import segment_recovery

    predicted = np.asarray(segments, dtype=object)
    truth = np.asarray(drivers, dtype=object)
    matrix, f1 = segment_recovery(predicted, truth, DRIVER_TO_SEGMENT)

    def resampled_f1(pick: np.ndarray) -> float:
        return segment_recovery(predicted[pick], truth[pick], DRIVER_TO_SEGMENT)[1]

    low, high = percentile_bootstrap(resampled_f1, len(predicted), samples, seed)
    return f1, low, high, matrix


@dataclass(frozen=True)
class SegmentShap:
    """Recomputed exact TreeSHAP contributions (log-odds) of a sample of one segment."""

    segment: str
    values: np.ndarray  # (n, p) in feature-set order
    base_value: float
    data: pd.DataFrame  # raw feature values of the same accounts (p columns)
    account_ids: list[str]
    accounts_in_segment: int


def sample_per_segment(scored: pl.DataFrame, size: int, seed: int) -> pl.DataFrame:
    """At most ``size`` accounts per segment, drawn reproducibly."""
    parts = []
    for segment in sorted(scored["segment"].unique().to_list()):
        rows = scored.filter(pl.col("segment") == segment)
        parts.append(rows.sample(n=min(size, rows.height), seed=seed) if rows.height else rows)
    return pl.concat(parts).sort("account_id")


def recompute_contributions(
    sample: pl.DataFrame, portfolio: Portfolio, as_of: date, model: RollModel
) -> tuple[np.ndarray, pd.DataFrame]:
    """Exact TreeSHAP contributions in feature-set order (last column: base value) and the raw
    feature frame, for the accounts of ``sample`` (same order), as scoring computed them."""
    from rollrisk.scoring.core import explain, features_at

    people = sample.select("account_id", pl.col("dpd").alias("dpd_at_as_of"), "start_bucket")
    frame = features_at(
        people, as_of, portfolio.accounts, portfolio.statements,
        portfolio.collection_actions, portfolio.treatments, model.feature_set,
    )  # fmt: skip
    return explain(model, frame), frame


def _png(figure: Any) -> bytes:
    """A figure drawn with pyplot (shap draws there) as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    png = figure_png(figure, dpi=90, tight=True)
    plt.close(figure)
    return png


def _numeric(data: pd.DataFrame) -> pd.DataFrame:
    """Feature values as numbers for colouring (categories as their codes)."""
    out = data.copy()
    for column in out.columns:
        if not pd.api.types.is_numeric_dtype(out[column]):
            out[column] = out[column].astype("category").cat.codes.astype(float)
    return out.astype(float)


def shap_summary_png(shap_values: SegmentShap, max_display: int = 10) -> bytes:
    """shap's beeswarm summary plot of one segment's sample."""
    import matplotlib.pyplot as plt
    import shap

    shap.summary_plot(
        shap_values.values,
        _numeric(shap_values.data),
        feature_names=list(shap_values.data.columns),
        max_display=max_display,
        show=False,
        plot_size=(7.5, 4.5),
        color_bar=True,
    )
    figure = plt.gcf()
    figure.suptitle(
        f"{shap_values.segment}: SHAP values (log-odds), {len(shap_values.account_ids)} of "
        f"{_accounts(shap_values.accounts_in_segment)}",
        fontsize=10,
    )
    return _png(figure)


def waterfall_png(
    values: np.ndarray, base_value: float, data: pd.Series, title: str, max_display: int = 8
) -> bytes:
    """shap's waterfall plot of one account (log-odds, from the base value to its raw score)."""
    import matplotlib.pyplot as plt
    import shap

    explanation = shap.Explanation(
        values=np.asarray(values, dtype=float),
        base_values=float(base_value),
        data=np.array([_short(v) for v in data.to_numpy()], dtype=object),
        feature_names=list(data.index),
    )
    shap.plots.waterfall(explanation, max_display=max_display, show=False)
    figure = plt.gcf()
    figure.set_size_inches(7.5, 4.2)
    figure.suptitle(title, fontsize=10)
    return _png(figure)


def _short(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3) if not math.isnan(value) else "no data"
    return value


def _mid_sentence(text: str) -> str:
    """A definition's English as it reads inside a sentence: its first letter in lower case,
    unless the word is an acronym ("Utilisation ..." -> "utilisation ...", "DPD" kept)."""
    return text[0].lower() + text[1:] if text[1:2].islower() else text


def _zh_interval(stats: Mapping[str, float], percent: bool = False) -> str:
    """A difference in CNY (``percent``: a rate's, in percentage points) with its 95 %
    interval, in Chinese (see :func:`_interval_text`)."""
    if percent:
        return (
            f"{stats['mean'] * 100:+.2f}个百分点（95%置信区间{stats['ci_low'] * 100:+.2f}至"
            f"{stats['ci_high'] * 100:+.2f}个百分点）"
        )
    return (
        f"{stats['mean']:+,.0f}元（95%置信区间{stats['ci_low']:+,.0f}至{stats['ci_high']:+,.0f}元）"
    )


def _accounts(n: int) -> str:
    """``1 account``, ``2,345 accounts``."""
    return f"{n:,} account" + ("" if n == 1 else "s")


def _interval_text(stats: Mapping[str, float], percent: bool = False) -> str:
    if percent:
        return (
            f"{stats['mean'] * 100:+.2f} pp (95 % CI {stats['ci_low'] * 100:+.2f} to "
            f"{stats['ci_high'] * 100:+.2f})"
        )
    return (
        f"{signed(stats['mean'])} (95 % CI {signed(stats['ci_low'])} to {signed(stats['ci_high'])})"
    )


# --------------------------------------------------------------------------------------------
# Words for a strategy lead: segments, ladders and reasons in English and Chinese
# --------------------------------------------------------------------------------------------
SEGMENT_NAMES: dict[str, tuple[str, str]] = {
    "unreachable": ("unreachable", "失联"),
    "seasonal": ("seasonal income", "季节性收入"),
    "capacity_shock": ("hit by a hardship (capacity shock)", "还款能力受冲击"),
    "low_willingness": ("unwilling to pay", "还款意愿低"),
    "forgetful": ("forgot to pay (early, no other evidence)", "遗忘型早期逾期"),
    "general": ("general (no driver evidence)", "一般(无明确驱动因素)"),
}
# the simulator's hidden borrower types (true drivers): shown only for simulated portfolios
DRIVER_NAMES: dict[str, tuple[str, str]] = {
    "healthy": ("healthy (a one-off slip)", "健康型(偶然逾期)"),
    "forgetful": ("forgetful", "遗忘型"),
    "capacity_shock": ("hit by a hardship", "还款能力受冲击"),
    "low_willingness": ("unwilling to pay", "还款意愿低"),
    "unreachable": ("unreachable", "失联"),
    "seasonal": ("seasonal income", "季节性收入"),
}
FAMILY_NAMES: dict[str, tuple[str, str]] = {
    "delinquency_history": ("delinquency history", "逾期历史"),
    "payment_capacity": ("ability to pay", "还款能力"),
    "willingness": ("willingness to pay", "还款意愿"),
    "contactability": ("being reachable", "可联系性"),
    "treatment_history": ("past relief treatments", "既往纾困措施"),
    "exposure": ("size of the debt", "欠款规模"),
    "product_seasonality": ("product and season", "产品与季节"),
}
PRODUCT_NAMES: dict[str, tuple[str, str]] = {
    "credit_card": ("credit card", "信用卡"),
    "cash_loan": ("cash loan", "现金贷"),
    "bnpl": ("buy now, pay later", "先买后付"),
    "merchant_loan": ("merchant loan", "商户贷"),
    "agri_loan": ("farm loan", "农业贷款"),
}
BUCKET_NAMES: dict[str, tuple[str, str]] = {
    "M1": ("M1 (1-29 days past due)", "M1(逾期1-29天)"),
    "M2": ("M2 (30-59 days past due)", "M2(逾期30-59天)"),
    "M3": ("M3 (60-89 days past due)", "M3(逾期60-89天)"),
}
# the segment rules' subjects that are not features of the registry
FIELD_NAMES: dict[str, tuple[str, str]] = {
    "product": ("the product", "产品"),
    "start_bucket": ("the delinquency bucket at the as-of date", "观察日的逾期阶段"),
    "probability": ("the roll-to-default probability", "滚动至违约的概率"),
    "risk_above_base": (
        "the model's total risk above the average account",
        "模型风险高于平均水平的幅度",
    ),
    # what a learned rule may test besides (rollrisk learn-policy): the policy's own fields
    # and the scored account's figures
    "risk_band": ("the risk band", "风险等级"),
    "segment": ("the segment", "客群"),
    "dpd": ("days past due at the as-of date", "观察日逾期天数"),
    "amount_overdue": ("the amount overdue (CNY)", "逾期金额(元)"),
    "exposure": ("the balance owed (CNY)", "欠款余额(元)"),
}
BAND_NAMES: dict[str, tuple[str, str]] = {
    "low": ("low", "低"),
    "medium": ("medium", "中"),
    "high": ("high", "高"),
}
# comparison -> (English, Chinese) words before the operand
OPERATOR_WORDS: dict[str, tuple[str, str]] = {
    "ge": ("at least", "不少于"),
    "gt": ("more than", "大于"),
    "le": ("at most", "不超过"),
    "lt": ("less than", "小于"),
    "eq": ("", "为"),
    "ne": ("not", "不是"),
    "in": ("one of", "为以下之一:"),
    "not_in": ("none of", "不属于:"),
}
# The ladder's terms in words: the policy's actions (strategies.policy.ACTIONS) and the
# contract's channels, English as the ladder sentence reads it and Chinese. One table of
# words, not a second action -> channel map: ACTIONS stays the one place that says which
# channels an action uses.
# the standard queue with steps added on top of it (the steps follow in the ladder sentence)
QUEUE_PLUS_WORDS = (
    "stays in the lender's standard collection (the usual reminders, calls and relief by "
    "bucket), and this policy adds",
    "保留在常规分层催收流程中(按逾期阶段的常规提醒、电话和纾困),本策略另加",
)
LADDER_WORDS: dict[str, tuple[str, str]] = {
    "reminder": ("reminder", "提醒"),
    "call": ("call", "电话"),
    "restructure_offer": ("offer to restructure into instalments", "提供分期重组方案"),
    "grace_period": ("grace period on the amount due", "应还款宽限期"),
    "interest_waiver": ("waive the interest of the delinquent period", "减免逾期期间利息"),
    "grace_period_on_hardship": (
        "grace period on the amount due, if the borrower states a hardship",
        "借款人说明经济困难时给予应还款宽限期",
    ),
    "interest_waiver_on_hardship": (
        "waive the interest of the delinquent period, if the borrower states a hardship",
        "借款人说明经济困难时减免逾期期间利息",
    ),
    "first_delinquency_extension": (
        "one-time interest-free extension (first-ever delinquency only)",
        "首次逾期一次性免息展期",
    ),
    "agency_assignment": ("hand to a collection agency", "委托外部催收机构"),
    "field_visit_with_notice": ("field visit, announced by letter", "提前书面通知后上门拜访"),
    "legal_referral": ("refer to legal action", "转交法律程序"),
    "standard_queue": (
        "stays in the lender's standard collection (the usual reminders, calls and relief by "
        "bucket); this policy plans nothing else",
        "保留在常规分层催收流程中(按逾期阶段的常规提醒、电话和纾困);本策略不另行安排",
    ),
    # channels
    "sms": ("by SMS", "短信"),
    "app_push": ("by app notification", "App推送"),
    "robo_call": ("by automated call", "智能语音外呼"),
    "agent_call": ("by an agent", "人工坐席"),
    "notice_letter": ("by letter", "信函"),
    "field_visit": ("in person", "上门"),
    "legal": ("through the courts", "法院"),
    # agency_assignment is an action and its own channel: the action's words say it all
}
# actions whose words already say their channel ("field visit" is in person, "legal action"
# goes through the courts): the ladder does not repeat it
ACTIONS_SAYING_THEIR_CHANNEL = frozenset({"field_visit_with_notice", "legal_referral"})
COMPLIANCE_NAMES: dict[str, tuple[str, str]] = {
    "CMP-HARDSHIP-PAUSE": (
        "pressure paused while a hardship claim or relief is running",
        "借款人报告困难或纾困措施执行期间暂停施压",
    ),
    "CMP-THIRD-PARTY": ("limits on contacting third parties", "限制联系第三方"),
    "CMP-FIRST-DELINQUENCY-EXTENSION": (
        "the interest-free extension is only for a first-ever delinquency",
        "免息展期仅限历史首次逾期",
    ),
    "CMP-LEGAL-REFERRAL": ("conditions before a legal referral", "转交法律程序的前提条件"),
    "CMP-CONTACT-WINDOW": ("contact only within permitted hours", "仅在允许的时段内联系"),
    "CMP-CALLS-PER-7-DAYS": ("at most so many calls in 7 days", "7天内通话次数上限"),
    "CMP-CALL-AFTER-CONVERSATION": (
        "no new call right after a conversation",
        "通话后一段时间内不得再次致电",
    ),
    "CMP-UNANSWERED-DIALS": ("limit on unanswered dials", "未接通拨打次数上限"),
}
STEP_NAMES: dict[str, tuple[str, str]] = {
    "calibration": (
        "calibration (model score to calibrated probability)",
        "校准(模型分数到校准概率)",
    ),
}
# The policy's treatments (conf/policy.yaml, docs/policy_candidates_v4.yaml) by name: the page
# shows these, the code only where a reader looks it up in the policy file.
TREATMENT_NAMES: dict[str, tuple[str, str]] = {
    "standard_queue": ("standard collection", "常规催收"),
    "queue_hardship_waiver": (
        "standard collection + hardship review (interest waiver)",
        "常规催收+困难审核（减免利息）",
    ),
    "queue_hardship_grace": (
        "standard collection + hardship review (grace period)",
        "常规催收+困难审核（宽限期）",
    ),
    "hardship_review_waiver": ("hardship review (interest waiver)", "困难审核（减免利息）"),
    "hardship_review_grace": ("hardship review (grace period)", "困难审核（宽限期）"),
    "hardship_waiver_restructure": (
        "interest waiver and restructure offer",
        "减免利息并提供重组方案",
    ),
    "hardship_support": (
        "hardship support (call, grace, restructure)",
        "困难帮扶（电话、宽限、重组）",
    ),
    "reminder_only": ("reminders only", "仅提醒"),
    "reminder_then_call": ("reminder, then calls", "先提醒后电话"),
    "first_delinquency_relief": (
        "first-delinquency relief (interest-free extension)",
        "首次逾期纾困（免息展期）",
    ),
    "seasonal_grace": ("seasonal grace period", "季节性宽限"),
    "intensive_calls": ("intensive agent calls", "密集人工电话"),
    "escalate_agency": ("call, then collection agency", "电话后转外部催收机构"),
    "skip_trace": ("locate the borrower (skip trace)", "查找失联借款人"),
    "visit_then_legal": ("field visit, then legal action", "上门拜访后转法律程序"),
    "agency_then_legal": ("collection agency, then legal action", "外部催收机构后转法律程序"),
    "first_delinquency_extension": ("interest-free extension", "免息展期"),
    "grace_period": ("grace period", "宽限期"),
    "interest_waiver": ("interest waiver", "减免利息"),
    "restructure": ("restructure offer", "重组方案"),
}


def treatment_names(policy: Policy | None) -> dict[str, tuple[str, str]]:
    """Each treatment's name in English and Chinese: the policy file's own (``label``,
    ``label_zh``), else :data:`TREATMENT_NAMES` (the shipped treatments and the candidates'),
    else none (the page shows the code)."""
    names = dict(TREATMENT_NAMES)
    if policy is not None:
        names.update(
            {code: (t.label, t.label_zh) for code, t in policy.treatments.items() if t.label}
        )
    return names


# Features that restate one fact: the account's days past due now and at its worst. A page
# shows them as one reason.
DPD_FEATURES = ("dpd_current", "dpd_max_3m", "dpd_max_6m", "dpd_max_12m")


def _words(table: Mapping[str, tuple[str, str]], key: str) -> tuple[str, str]:
    """(English, Chinese) words of ``key``; the key itself in both when it has none yet."""
    return table.get(key, (key.replace("_", " "), key))


def _name(table: Mapping[str, tuple[str, str]], key: str) -> str:
    """``key`` by its name in English and Chinese, ``"cash loan 现金贷"``: what a cell or a
    sentence shows instead of the code."""
    en, zh = _words(table, key)
    return en if en == zh else zh_punctuation(f"{en} {zh}")


# A code shown beside its name, small and grey, where a reader looks it up in a config file
# (a segment in conf/segments.yaml, a treatment in conf/policy.yaml, a compliance rule): table
# cells are escaped text, so the code travels between these two marks and the finished page
# turns it into <code class="note"> (:func:`finish_page`).
CODE_MARKS = ("\ue000", "\ue001")


def _code(code: str) -> str:
    """``code`` marked to be shown small and grey (see :data:`CODE_MARKS`)."""
    return f"{CODE_MARKS[0]}{code}{CODE_MARKS[1]}"


def _named_code(table: Mapping[str, tuple[str, str]], key: str) -> str:
    """``key``'s name in English and Chinese with the code itself small and grey after it."""
    return f"{_name(table, key)} {_code(key)}"


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _operand(name: str, value: Any) -> tuple[str, str]:
    """A condition's operand in words (products and buckets by name; lists joined)."""
    table = {
        "product": PRODUCT_NAMES,
        "start_bucket": BUCKET_NAMES,
        "risk_band": BAND_NAMES,
        "segment": SEGMENT_NAMES,
    }.get(name)
    values = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
    if table is None:
        texts = [(_number(v), _number(v)) for v in values]
    else:
        texts = [_words(table, str(v)) for v in values]
    return ", ".join(t[0] for t in texts), "、".join(t[1] for t in texts)


def condition_words(condition: Condition, feature_set: FeatureSet) -> tuple[str, str]:
    """One condition of a segment rule in plain English and Chinese.

    Features are named by the registry's descriptions (``description_en`` / ``_zh``), driver
    families and the other fields by the page's own words, thresholds in words ("at least 1").
    """
    parts_en, parts_zh = [], []
    if condition.subject in ("family", "family_share"):
        family_en, family_zh = _words(FAMILY_NAMES, str(condition.name))
        for op, operand in condition.tests:
            op_en, op_zh = OPERATOR_WORDS.get(op, (op, op))
            if condition.subject == "family":
                parts_en.append(
                    f"what the model sees in the {family_en} raises the risk by {op_en} "
                    f"{_number(operand)} (SHAP, log-odds)"
                )
                parts_zh.append(
                    f"模型认为{family_zh}因素使风险上升{op_zh}{_number(operand)}(SHAP对数几率)"
                )
            else:
                parts_en.append(
                    f"the {family_en} makes up {op_en} {operand:.0%} of what raises the risk"
                )
                parts_zh.append(f"{family_zh}在风险上升因素中的占比{op_zh}{operand:.0%}")
        return " and ".join(parts_en), "且".join(parts_zh)
    if condition.subject == "top_family":
        names = [_words(FAMILY_NAMES, str(f)) for f in condition.name]
        return (
            "the strongest risk driver is the " + " or the ".join(n[0] for n in names),
            "最主要的风险因素为" + "或".join(n[1] for n in names),
        )
    name = str(condition.name)
    if name in FIELD_NAMES:
        label_en, label_zh = FIELD_NAMES[name]
    elif name in feature_set.names:
        spec = feature_set.spec(name)
        label_en = _mid_sentence(spec.description_en.rstrip(" ."))
        label_zh = spec.description_zh.rstrip(" 。.")
    else:
        label_en, label_zh = name.replace("_", " "), name
    for op, operand in condition.tests:
        op_en, op_zh = OPERATOR_WORDS.get(op, (op, op))
        value_en, value_zh = _operand(name, operand)
        verb = "is " + (op_en + " " if op_en else "")
        parts_en.append(f"{label_en} {verb}{value_en}")
        parts_zh.append(f"{label_zh}{op_zh}{value_zh}")
    return " and ".join(parts_en), "且".join(parts_zh)


def segment_definitions(rules: SegmentRules, feature_set: FeatureSet) -> dict[str, tuple[str, str]]:
    """Every segment of ``rules`` (the fallback too) defined in plain English and Chinese,
    generated from its rules: a segment claims an account when any of its rules holds, a rule
    holds when all its conditions hold, and earlier segments in precedence claim first."""
    definitions: dict[str, tuple[str, str]] = {}
    for position, segment in enumerate(rules.precedence):
        own = [r for r in rules.rules if r.segment == segment]
        texts = [[condition_words(c, feature_set) for c in rule.conditions] for rule in own]
        rule_en = [" and ".join(t[0] for t in conds) for conds in texts]
        rule_zh = ["且".join(t[1] for t in conds) for conds in texts]
        earlier = rules.precedence[:position]
        en = "An account is in this segment when " + "; or when ".join(
            f"{text} (rule {rule.rule_id})" for text, rule in zip(rule_en, own, strict=True)
        )
        zh = (
            "满足以下任一条件的账户归入此客群:" if len(own) > 1 else "满足以下条件的账户归入此客群:"
        ) + ";或".join(
            f"{text}(规则{rule.rule_id})" for text, rule in zip(rule_zh, own, strict=True)
        )
        if earlier:
            names = [_words(SEGMENT_NAMES, s) for s in earlier]
            en += ", unless an earlier segment (" + ", ".join(n[0] for n in names) + ") claimed it"
            zh += ",且未被优先级更高的客群(" + "、".join(n[1] for n in names) + ")认领"
        definitions[segment] = (en + ".", zh + "。")
    definitions[rules.fallback] = (
        "Every account that no other segment claims: no driver evidence; the policy's rules "
        "for this segment (below) say what it gets.",
        "不属于任何其他客群的账户:没有明确的驱动因素证据;其处置方案见下方策略规则。",
    )
    return definitions


def _all_standard_queue(scored: pl.DataFrame, segment: str, policy: Policy) -> bool:
    """Whether every scored account of ``segment`` got a treatment whose ladder is the lender's
    standard queue (the baseline's collection)."""
    treatments = set(scored.filter(pl.col("segment") == segment)["treatment"].to_list())
    return bool(treatments) and all(
        t in policy.treatments and policy.treatments[t].is_standard_queue for t in treatments
    )


def ladder_words(treatment: Treatment) -> tuple[str, str]:
    """A treatment's ladder in words: ``day 0, 10:00: reminder by SMS; ...`` and in Chinese."""
    en, zh = [], []
    for step in treatment.steps:
        action_en, action_zh = _words(LADDER_WORDS, step.action)
        if step.action == STANDARD_QUEUE:  # the lender's queue, not a step at a time of day
            if len(treatment.steps) > 1:  # steps added on top of the queue
                action_en, action_zh = QUEUE_PLUS_WORDS
            en.append(f"day {step.day}: the account {action_en}")
            zh.append(f"第{step.day}天起:账户{action_zh}")
            continue
        channel_en, channel_zh = ("", "")
        if (
            step.channel
            and step.channel != step.action
            and step.action not in ACTIONS_SAYING_THEIR_CHANNEL
        ):
            channel_en, channel_zh = _words(LADDER_WORDS, step.channel)
        to_contact = getattr(step, "recipient", "borrower") == "emergency_contact"
        # a treatment (no channel: a grace, a waiver, an extension) is granted, not made at a
        # time of day
        if step.action in ACTIONS and not ACTIONS[step.action].channels:
            en.append(f"day {step.day}: {action_en}")
            zh.append(f"第{step.day}天:{action_zh}")
            continue
        en.append(
            f"day {step.day}, {step.at:%H:%M}: {action_en}"
            + (f" {channel_en}" if channel_en else "")
            + (" (to the emergency contact, only to locate the borrower)" if to_contact else "")
        )
        zh.append(
            f"第{step.day}天{step.at:%H:%M}:"
            + (f"{channel_zh}" if channel_zh else "")
            + action_zh
            + ("(联系紧急联系人,仅用于寻找借款人)" if to_contact else "")
        )
    return "; ".join(en), ";".join(zh)


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def grouped_reasons(
    reasons: Sequence[Mapping[str, Any]], dpd_now: int, feature_set: FeatureSet | None = None
) -> list[tuple[str, str]]:
    """An account's reasons as (English, Chinese) texts, one per underlying fact, in rank order.

    The days-past-due features (now, worst in 3, 6, 12 months) restate one fact: they become
    one reason "x days past due now (up to y in the last n months)" at the rank of the first
    of them. Every other reason is the registry's text for its value, written again from
    ``feature_set`` when given (so scores written before the plurals were fixed read
    "once", not "1 times": :func:`rollrisk.features.registry.format_reason`), else the text
    stored with the scores.
    """
    out: list[tuple[str, str]] = []
    dpd_slot: int | None = None
    worst: tuple[int, int] | None = None  # (days, window months)
    for reason in sorted(reasons, key=lambda r: r.get("rank", 0)):
        feature = reason.get("feature")
        if feature in DPD_FEATURES:
            if dpd_slot is None:
                dpd_slot = len(out)
                out.append(("", ""))
            if feature != "dpd_current":
                try:
                    days = round(float(reason.get("value", "nan")))
                except ValueError:
                    continue
                window = int(str(feature).split("_")[-1].rstrip("m"))
                if worst is None or days > worst[0]:
                    worst = (days, window)
            continue
        texts = (str(reason.get("text_en", "")), str(reason.get("text_zh", "")))
        if feature_set is not None and feature in feature_set.names and reason.get("value"):
            value: Any = reason["value"]
            with contextlib.suppress(ValueError):  # a category label stays as it is
                value = float(value)
            texts = reason_text(feature_set.spec(str(feature)), value)
        out.append(texts)
    if dpd_slot is not None:
        en, zh = f"{_days(dpd_now)} past due now", f"当前逾期{dpd_now}天"
        if worst is not None and worst[0] > dpd_now:
            en += f" (up to {worst[0]} in the last {worst[1]} months)"
            zh += f"(近{worst[1]}个月最高{worst[0]}天)"
        out[dpd_slot] = (en, zh)
    return out


# --------------------------------------------------------------------------------------------
# Chinese punctuation, column headers in both languages, the finished page
# --------------------------------------------------------------------------------------------
# a Chinese character or a full-width punctuation mark
_ZH_CHARACTER = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")
ZH_PUNCTUATION = {",": "，", ":": "：", ";": "；", "?": "？", "(": "（", ")": "）", ".": "。"}


def zh_punctuation(text: str) -> str:
    """``text`` with full-width punctuation wherever it is Chinese: an ASCII ``, : ; ?`` next
    to a Chinese character becomes ``，：；？`` (the spaces after it dropped), a pair of
    parentheses with a Chinese character on either side of either of them becomes ``（）``
    and a full stop after a Chinese character that ends a sentence ``。``. English text and
    figures are left alone: ``1,109``, ``[+281,251, +899,876]``, ``10:00``, ``(95 % CI ...)``.

    The one place the page's Chinese gets its punctuation: the page's words, the registry's
    descriptions and reasons alike (:func:`finish_page`, :func:`account_rows`).
    """
    chars = list(text)

    def chinese(i: int) -> bool:
        return 0 <= i < len(chars) and bool(_ZH_CHARACTER.match(chars[i]))

    opened: list[int] = []
    for i, char in enumerate(chars):
        if char == "(":
            opened.append(i)
        elif char == ")" and opened:
            j = opened.pop()
            if chinese(j - 1) or chinese(j + 1) or chinese(i - 1) or chinese(i + 1):
                chars[j], chars[i] = ZH_PUNCTUATION["("], ZH_PUNCTUATION[")"]
    for i, char in enumerate(chars):
        if char in (",", ":", ";", "?") and (chinese(i - 1) or chinese(i + 1)):
            chars[i] = ZH_PUNCTUATION[char]
        elif char == "." and chinese(i - 1) and (i + 1 == len(chars) or chars[i + 1].isspace()):
            chars[i] = ZH_PUNCTUATION["."]
        else:
            continue
        k = i + 1  # no space between full-width punctuation and the Chinese text after it
        while k < len(chars) and chars[k] == " ":
            k += 1
        if k > i + 1 and chinese(k):
            chars[i + 1 : k] = [""] * (k - i - 1)
    return "".join(chars)


# the simulation's metric labels (rollrisk.reports.policy_simulation.LABELS) in Chinese
METRIC_LABELS_ZH: dict[str, str] = {
    "book value (CNY)": "账面价值（元）",
    "cash collected (CNY)": "现金回收（元）",
    "action and treatment cost (CNY)": "催收动作与处置成本（元）",
    "agency commission (CNY)": "外部催收佣金（元）",
    "net recovery (CNY)": "净回收（元）",
    "balance open at the end (CNY)": "期末未结余额（元）",
    "value of the open balance (CNY)": "未结余额的估值（元）",
    "fees waived (CNY, already in the book value)": "减免费用（元，已计入账面价值）",
    "dues deferred (CNY, still owed)": "延期应还款（元，仍需偿还）",
    "restructure plans broken": "违约的重组分期",
    "balance on restructure plans at the end (CNY)": "期末重组分期余额（元）",
    "roll-to-default rate (accounts)": "滚动至违约率（按账户）",
    "roll-to-default rate (balance-weighted)": "滚动至违约率（按余额加权）",
    "contacts made": "联系次数",
    "agency assignments": "委外次数",
    "legal filings": "法律诉讼数",
    "disputes (complaint proxy)": "异议（投诉指标）",
    "pressure contacts on capacity shocks": "对还款能力受冲击者的施压联系",
    "treatments granted": "给予的纾困措施",
    "treatment offers refused": "被拒绝的纾困方案",
    "compliance blocks": "合规拦截",
    "agent calls made": "人工外呼次数",
    "field visits made": "上门拜访次数",
    "agent calls dropped for capacity": "因人力上限未拨打的人工外呼",
    "field visits dropped for capacity": "因人力上限未进行的上门拜访",
}


# what the page's tables call their columns in Chinese (a column named with Chinese already,
# "原因", "方案", is left as it is)
COLUMN_ZH: dict[str, str] = {
    "segment": "客群",
    "accounts": "账户数",
    "share": "占比",
    "exposure (CNY)": "风险敞口（元）",
    "expected loss (CNY)": "预期损失（元）",
    "mean probability": "平均违约概率",
    "treatment": "处置",
    "ladder (English)": "处置阶梯（英文）",
    "ladder (Chinese)": "处置阶梯（中文）",
    "arm": "方案",
    "vs baseline (CNY)": "相对基准（元）",
    "policy under review minus this arm, 95 % CI over accounts and seeds (CNY)": (
        "拟上线策略减去该方案，按账户和种子的95%置信区间（元）"
    ),
    "true driver (simulator)": "真实逾期原因（模拟器）",
    "policy - baseline": "策略 - 基准",
    "oracle - baseline": "理想参照 - 基准",
    "value captured": "价值捕获率",
    "compliance rule": "合规规则",
    "what it requires (English)": "规则要求（英文）",
    "what it requires (Chinese)": "规则要求（中文）",
    "actions removed": "被移除的动作数",
    "share of segment": "占客群比例",
    "removed": "被移除的动作",
    "example reason (the rule's own words)": "示例原因（规则原文）",
    "what it does (English)": "处置内容（英文）",
    "what it does (Chinese)": "处置内容（中文）",
    "decisions": "决策数",
    "book value per decision (CNY)": "每次决策的账面价值（元）",
    "gap to the control per decision (CNY) [95 % CI]": "每次决策相对对照组的差额（元）[95%置信区间]",
    "95 % CI": "95%置信区间",
    "rule": "规则",
    "when (English)": "条件（英文）",
    "when (Chinese)": "条件（中文）",
    "the data suggests (English)": "建议处置（英文）",
    "the data suggests (Chinese)": "建议处置（中文）",
    "est. gain per decision (CNY)": "每次决策的估计收益（元）",
    "gain's lower bound (CNY)": "收益下界（元）",
    "decisions learnt from": "学习所用决策数",
    "accounts today": "今日账户数",
    "low": "低",
    "medium": "中",
    "high": "高",
    "total": "合计",
    "all": "合计",
    "action": "处置动作",
    "planned (after compliance)": "计划数（合规后）",
    "removed by compliance": "被合规移除",
    "reason": "原因",
    "as first reason": "作为首要原因",
    "step": "步骤",
    "from": "起点",
    "to": "终点",
    "change (pp)": "变化（百分点）",
    "risk band": "风险等级",
    "predicted": "预测违约率",
    "realised": "实际违约率",
    "realised, 95 % CI low": "实际违约率95%区间下限",
    "realised, 95 % CI high": "实际违约率95%区间上限",
    "true driver": "真实逾期原因",
    "metric": "指标",
    "policy under review (model-driven)": "拟上线策略（模型驱动）",
    "tiered baseline": "分层催收基准",
    "difference [95 % CI, seeds only]": "差额[95%置信区间，仅随机种子]",
    "DPD": "逾期天数",
    "probability": "违约概率",
    "account": "账户",
    "bucket": "逾期阶段",
    "product": "产品",
    "reason (English)": "原因（英文）",
    "reason (Chinese)": "原因（中文）",
    "low risk (CNY)": "低风险（元）",
    "medium risk (CNY)": "中风险（元）",
    "high risk (CNY)": "高风险（元）",
    "total (CNY)": "合计（元）",
}


def bilingual_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every column named in English and Chinese (:data:`COLUMN_ZH`): a name
    that already holds Chinese stays, one without a Chinese name gets its English twice (a
    test finds it)."""
    return frame.rename(
        columns=lambda c: str(c) if _ZH_CHARACTER.search(str(c)) else _column(str(c))
    )


def _column(english: str) -> str:
    zh = COLUMN_ZH.get(english) or METRIC_LABELS_ZH.get(english)
    return f"{english} {zh}" if zh else english


def _table(section: Section, frame: pd.DataFrame, formats: Mapping[str, str] | None = None) -> None:
    """``frame`` as a table of ``section`` whose column headers read in both languages."""
    formats = {
        _column(k) if not _ZH_CHARACTER.search(k) else k: v for k, v in (formats or {}).items()
    }
    section.table(bilingual_columns(frame), formats)


def _say(section: Section, en: str, zh: str, *, note: bool = False) -> None:
    """One statement in English and then in Chinese (the page's pattern: a paragraph each)."""
    en_css, zh_css = ("note", "note zh") if note else ("", "zh")
    section.raw(
        (f'<p class="{en_css}">' if en_css else "<p>")
        + f'{escape(en)}</p><p class="{zh_css}">{escape(zh)}</p>'
    )


_MARKUP = re.compile(r"(<script\b.*?</script>|<style\b.*?</style>|<[^>]*>|&[#\w]+;)", re.S)


def finish_page(page: str) -> str:
    """The rendered page with its Chinese punctuation made full-width in every piece of text
    (:func:`zh_punctuation`; markup, scripts and entities left alone), the marked codes shown
    small and grey (:data:`CODE_MARKS`)."""
    parts = _MARKUP.split(page)
    page = "".join(p if i % 2 else zh_punctuation(p) for i, p in enumerate(parts))
    return re.sub(
        f"{CODE_MARKS[0]}([^{CODE_MARKS[1]}]*){CODE_MARKS[1]}",
        r'<code class="note">\1</code>',
        page,
    )


# --------------------------------------------------------------------------------------------
# Probability waterfalls, the losing segments, the account list, the headline
# --------------------------------------------------------------------------------------------
def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def probability_steps(
    base_value: float, family_contributions: Mapping[str, float], probability: float
) -> list[tuple[str, float, float]]:
    """An account's waterfall in probability terms: ``(step, before, after)`` rows.

    Starts at the base rate (the model's average raw score as a probability), adds each driver
    family's summed contribution in log-odds, largest effect first, and shows the step each
    makes in probability; a last ``calibration`` step goes from the model's raw probability
    to the calibrated ``probability`` the policy used, so the chain ends at the account's
    probability. Steps in log-odds are not additive in probability: each step is measured
    where the chain stands, so the order is stated on the page.
    """
    steps = []
    running = float(base_value)
    before = _sigmoid(running)
    ordered = sorted(family_contributions.items(), key=lambda kv: -abs(kv[1]))
    for family, value in ordered:
        running += float(value)
        after = _sigmoid(running)
        steps.append((family, before, after))
        before = after
    steps.append(("calibration", before, float(probability)))
    return steps


def probability_waterfall_png(steps: Sequence[tuple[str, float, float]], title: str) -> bytes:
    """The waterfall of :func:`probability_steps` as horizontal bars (percentage points)."""
    import matplotlib.pyplot as plt

    labels = ["base rate (average account)"] + [
        FAMILY_NAMES.get(name, (name,))[0] if name != "calibration" else "calibration"
        for name, _, _ in steps
    ] + ["this account"]  # fmt: skip
    figure, axis = plt.subplots(figsize=(7.5, 0.45 * len(labels) + 1.2))
    start = steps[0][1] * 100
    end = steps[-1][2] * 100
    axis.barh(0, start, color="#8aa1bd")
    axis.text(start, 0, f" {start:.1f}%", va="center", fontsize=8)
    for row, (_, before, after) in enumerate(steps, start=1):
        low, high = sorted((before * 100, after * 100))
        colour = "#c0563f" if after > before else "#3f8f5a"
        axis.barh(row, max(high - low, 0.05), left=low, color=colour)
        axis.text(high, row, f" {(after - before) * 100:+.1f} pp", va="center", fontsize=8)
    axis.barh(len(labels) - 1, end, color="#1d2733")
    axis.text(end, len(labels) - 1, f" {end:.1f}%", va="center", fontsize=8)
    axis.set_yticks(range(len(labels)), labels, fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel("probability of rolling to default (%)")
    axis.set_xlim(0, min(100, max(start, end, *(max(b, a) * 100 for _, b, a in steps)) * 1.25 + 5))
    figure.suptitle(title, fontsize=9)
    return _png(figure)


def compliance_removals(scored: pl.DataFrame) -> pd.DataFrame:
    """Per segment and compliance rule: planned actions the rule removed and the accounts
    they belong to (from the decision trails), with a sample of the rule's own reason."""
    rows = []
    for segment, account, trail in zip(
        scored["segment"], scored["account_id"], scored["trail"], strict=True
    ):
        for change in json.loads(trail):
            if change.get("change") == "removed":
                rows.append(
                    {
                        "segment": segment,
                        "rule": change.get("rule", "?"),
                        "account_id": account,
                        "action": str(change.get("action", "")).split(" ")[0],
                        "reason": change.get("reason", ""),
                    }
                )
    if not rows:
        return pd.DataFrame(columns=["segment", "rule", "removed", "accounts", "actions", "reason"])
    frame = pd.DataFrame(rows)
    return (
        frame.groupby(["segment", "rule"])
        .agg(
            removed=("action", "size"),
            accounts=("account_id", "nunique"),
            actions=("action", lambda a: ", ".join(sorted(set(a)))),
            reason=("reason", "first"),
        )
        .reset_index()
        .sort_values(["segment", "removed"], ascending=[True, False])
    )


ACCOUNT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("account 账户", "text"),
    ("segment 客群", "text"),
    ("bucket 逾期阶段", "text"),
    ("DPD 逾期天数", "int"),
    ("probability 违约概率", "pct"),
    ("exposure (CNY) 风险敞口（元）", "int"),
    ("expected loss (CNY) 预期损失（元）", "int"),
    ("treatment 处置", "text"),
    ("removed by compliance 被合规移除", "long"),
    ("product 产品", "text"),
    ("reasons (English) 原因（英文）", "long"),
    ("reasons (Chinese) 原因（中文）", "long"),
)
"""The account list's columns, what a collections lead reads first on the left (the long
reason texts last, so that the figures are not pushed out of a narrow window). Segments,
treatments, compliance rules and products are shown by name (English and Chinese), which is
also what the list's filter searches."""


def account_rows(
    scored: pl.DataFrame,
    limit: int,
    feature_set: FeatureSet | None = None,
    names: Mapping[str, tuple[str, str]] = TREATMENT_NAMES,
) -> tuple[list[list[Any]], int]:
    """The account list's rows (columns of :data:`ACCOUNT_COLUMNS`), largest expected loss
    first, at most ``limit`` of them; and how many accounts there were."""
    ordered = scored.sort("expected_loss", descending=True).head(limit)
    out = []
    for row in ordered.iter_rows(named=True):
        reasons = grouped_reasons(json.loads(row["reasons"]), int(row["dpd"]), feature_set)
        removed = sorted(
            {c.get("rule", "?") for c in json.loads(row["trail"]) if c.get("change") == "removed"}
        )
        out.append([
            row["account_id"], _name(SEGMENT_NAMES, row["segment"]), row["start_bucket"],
            int(row["dpd"]), round(float(row["probability"]), 4),
            round(float(row["exposure"]), 2), round(float(row["expected_loss"]), 2),
            _name(names, row["treatment"]),
            "; ".join(_name(COMPLIANCE_NAMES, rule) for rule in removed),
            _name(PRODUCT_NAMES, row["product"]),
            "; ".join(r[0] for r in reasons), zh_punctuation("；".join(r[1] for r in reasons)),
        ])  # fmt: skip
    return out, scored.height


MISSING_FACT = ":missing"  # a reason on a missing value counts apart from the feature's others


def top_reason_facts(
    scored: pl.DataFrame, feature_set: FeatureSet, per_segment: int = 5
) -> pd.DataFrame:
    """The underlying facts most often among an account's reasons, per segment, named in
    English and Chinese (the days-past-due features count as one fact; a feature's missing
    value, "no hardship treatment on record", is a fact apart from its values; each value of a
    0/1 feature is a fact of its own, named as its reasons name it, "no hardship treatment is
    running"; any other value's fact is named by the first clause of the feature's
    definition)."""
    flags = {spec.name for spec in feature_set.features if is_flag(spec)}
    rows = []
    for segment, reasons in zip(scored["segment"], scored["reasons"], strict=True):
        seen: set[str] = set()
        for reason in sorted(json.loads(reasons), key=lambda r: r.get("rank", 0)):
            fact = "dpd" if reason["feature"] in DPD_FEATURES else reason["feature"]
            if reason.get("value") == "":  # a missing value is a fact of its own
                fact += MISSING_FACT
            elif fact in flags:  # so is each value of a flag: its reasons say opposite things
                fact += f"={abs(float(reason['value'])):g}"
            if fact not in seen:
                rows.append({"segment": segment, "fact": fact, "first": not seen})
                seen.add(fact)
    columns = ["segment", "reason", "原因", "accounts", "share", "as first reason"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    sizes = scored.group_by("segment").len().to_pandas().set_index("segment")["len"]
    table = (
        frame.groupby(["segment", "fact"])
        .agg(accounts=("first", "size"), as_first=("first", "sum"))
        .reset_index()
    )
    table["share"] = table["accounts"] / table["segment"].map(sizes)
    table = table.sort_values(["segment", "accounts"], ascending=[True, False])
    table = table.groupby("segment").head(per_segment)

    def label(fact: str) -> tuple[str, str]:
        if fact == "dpd":
            return ("days past due now, or at worst in recent months", "当前或近期最高逾期天数")
        name, _, flag = fact.removesuffix(MISSING_FACT).partition("=")
        if name not in feature_set.names:
            return name, name
        spec = feature_set.spec(name)
        if fact.endswith(MISSING_FACT):  # what the missing value states
            return reason_text(spec, None)
        if flag:  # what the flag's value states
            return reason_text(spec, float(flag))
        # in lower case as the facts worded from reasons ("Utilisation")
        return _mid_sentence(definition_label(spec.description_en)), definition_label(
            spec.description_zh
        )

    labels = [label(f) for f in table["fact"]]
    table["reason"] = [t[0] for t in labels]
    table["原因"] = [t[1] for t in labels]
    table["as first reason"] = table["as_first"]
    return table[columns]


# --------------------------------------------------------------------------------------------
# Paths, the model's promotion status, the policy simulation's headline
# --------------------------------------------------------------------------------------------
def _signed(value: float | None, unit: str = "CNY") -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:+,.0f} {unit}"


def _ratio_text(value: float | None) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.0%}"
    )


REFERENCE_NAMES: dict[str, tuple[str, str]] = {
    "model_driven": ("policy under review (model-driven)", "拟上线策略(模型驱动)"),
    "baseline_tiered": ("tiered baseline (no model)", "分层催收基准策略(不用模型)"),
    "segment_blind": (
        "same ladders, every account in the fallback segment",
        "相同处置流程、所有账户归入默认客群",
    ),
    "baseline_plus_grace": ("baseline plus a grace period for all", "基准策略加全员宽限期"),
    "best_bundle_per_bucket": (
        "best single action bundle per bucket, no segments",
        "每个逾期阶段的最佳单一处置组合(不分客群)",
    ),
    "oracle": ("oracle: knows each true driver", "理想参照(已知每个账户的真实逾期原因)"),
    "oracle_segments": (
        "the same policy fed the true drivers as segments",
        "同一策略改用真实逾期原因作为客群",
    ),
}


METRIC_ZH: dict[str, tuple[str, str]] = {
    "book_value": ("book value", "账面价值"),
    "net_recovery": ("net recovery", "净回收"),
}


def headline_metric(result: Mapping[str, Any]) -> str:
    """The metric the simulation headlines: ``book_value`` when it reports one, else today's
    ``net_recovery`` (three months of cash)."""
    return str(result.get("headline", {}).get("metric", "net_recovery"))


def _headline(section: Section, result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The policy simulation's headline into ``section``; returns the KPI tiles."""
    headline = result.get("headline")
    if headline is None:  # a simulation from before book value: three months of cash
        u = result["uplift"]["net_recovery"]
        boot = result.get("uplift_account_bootstrap", {}).get("net_recovery")
        section.markdown(
            f"**Shipped policy vs tiered baseline: {_interval_text(u)} CNY net recovery** over "
            f"{result['months']} months ({result['accounts']:,} accounts, "
            f"{len(result['seeds'])} simulation seeds)."
        )
        section.raw(
            '<p class="zh">'
            + escape(
                f"拟上线策略相对分层催收基准的净回收：{_zh_interval(u)}，"
                f"{result['months']}个月（{result['accounts']:,}个账户，{len(result['seeds'])}个随机种子）。"
            )
            + "</p>"
        )
        if boot:
            _say(
                section,
                "Resampling the accounts as well as the seeds: " + _interval_text(boot) + " CNY.",
                "同时对账户和随机种子重抽样：" + _zh_interval(boot) + "。",
            )
        section.raw(
            '<div class="box warn">This simulation reports net cash only, not book value '
            "(balance left open at the end is not valued) and has no references (oracle, "
            "segment-blind). Re-run rollrisk simulate-policy with a version that reports "
            'them.<p class="zh">此模拟只报告净现金，没有账面价值（期末未结余额未估值），也没有参照方案'
            "（理想参照、不分客群）。请用能报告这些内容的版本重新运行 rollrisk simulate-policy。</p></div>"
        )
        return [("uplift, net recovery (CNY) 净回收差额(元)", f"{u['mean']:+,.0f}")]
    uplift = headline["uplift"]
    monte_carlo = headline.get("monte_carlo_interval")
    section.markdown(
        f"**Book value: policy under review {headline['model_driven']:,.0f} CNY vs tiered baseline "
        f"{headline['baseline_tiered']:,.0f} CNY; difference {_interval_text(uplift)} CNY** "
        f"(interval resamples accounts and simulation seeds together), over "
        f"{result['months']} months, {result['accounts']:,} accounts. The policy under review is "
        "the policy file this scoring run decided with, named at the top of the page."
    )
    section.raw(
        '<p class="zh"><strong>'
        + escape(
            f"账面价值：拟上线策略{headline['model_driven']:,.0f}元，分层催收基准"
            f"{headline['baseline_tiered']:,.0f}元；差额{_zh_interval(uplift)}"
        )
        + "</strong>"
        + escape(
            f"（区间同时对账户和模拟随机种子重抽样），{result['months']}个月，"
            f"{result['accounts']:,}个账户。拟上线策略即本次评分所用的策略文件，见页首。"
        )
        + "</p>"
    )
    simulation = result.get("simulation") or {}
    history, horizon = simulation.get("response_table"), simulation.get("horizon_response_table")
    if horizon is not None and horizon != history:
        section.raw(
            '<div class="box warn">'
            + escape(
                f"A what-if: in these {result['months']} months the borrowers respond by the "
                f"'{horizon}' response table, not the '{history}' table their history was "
                "simulated with (simulate-policy --response-table): the figures ask how the "
                "policy fares if borrowers respond otherwise than expected."
            )
            + '<p class="zh">'
            + escape(
                f"假设情景：这{result['months']}个月内借款人按“{horizon}”响应表反应，而非其历史"
                f"模拟所用的“{history}”响应表(simulate-policy --response-table)：这些数字回答的是"
                "借款人反应与预期不同时策略的表现。"
            )
            + "</p></div>"
        )
    verdict_en, verdict_zh = _verdict(uplift, result)
    section.raw(
        f'<div class="box{"" if uplift["ci_low"] > 0 else " warn"}">{escape(verdict_en)}'
        f'<p class="zh">{escape(verdict_zh)}</p></div>'
    )
    _sources(section, result)
    section.raw(
        '<div class="box warn">These figures come from the simulator and the treatment effects '
        "it assumes, not from the lender's own borrowers. The evidence from real decisions is the "
        "lender's experiment (its section below, when it was given): pilot a policy as an "
        "experiment arm before rolling it out."
        '<p class="zh">以上数字来自模拟器及其假设的处置效果，而非我司真实借款人的表现。真实决策的证据是'
        "我司实验(见下方相应章节，若已提供)：策略全面上线前，应先作为实验组进行试点。</p></div>"
    )
    if monte_carlo:
        _say(
            section,
            "Simulation noise alone (Monte Carlo t-interval over seeds, accounts held fixed): "
            + _interval_text(monte_carlo)
            + " CNY. It is narrower because it ignores which accounts happen to be in the book.",
            "仅含模拟噪声的区间（蒙特卡洛t区间，仅对随机种子，账户固定）："
            + _zh_interval(monte_carlo)
            + "。它更窄，因为它忽略了账户构成本身的偶然性。",
            note=True,
        )
    valued = (result.get("valuation") or {}).get("method") or (
        "the value of the balance still open at the end, valued by the simulator's recovery "
        "curve for its bucket"
    )
    _say(
        section,
        "Book value = cash collected - action and treatment costs - agency commission + "
        f"{valued} (docs/strategies.md, Policy simulation).",
        "账面价值 = 现金回收 - 催收动作与处置成本 - 外部催收佣金 + "
        + _valuation_zh(result.get("valuation") or {})
        + "（详见 docs/strategies.md 的 Policy simulation 一节）。",
        note=True,
    )
    tiles = [
        (
            "book value difference vs baseline (CNY) 相对基准的账面价值差额(元)",
            f"{uplift['mean']:+,.0f}",
        )
    ]
    captured = result.get("value_captured")
    if captured:
        tiles.append(
            (
                "value captured (0 = baseline, 100% = oracle) 价值捕获率(0=基准，100%=理想参照)",
                _ratio_text(captured.get("overall")),
            )
        )
    segmentation = result.get("value_of_segmentation")
    if segmentation:
        blind = (result.get("uplift_vs_references") or {}).get("segment_blind")
        noise = blind is not None and blind["ci_low"] <= 0 <= blind["ci_high"]
        tiles.append(
            (
                "value of segmentation 客群分层的价值",
                _ratio_text(segmentation.get("value"))
                + (", within noise 在噪声范围内" if noise else ""),
            )
        )
    return tiles


def _verdict(uplift: Mapping[str, float], result: Mapping[str, Any]) -> tuple[str, str]:
    """The headline in one plain sentence, English and Chinese: better, worse or not shown to
    differ, and the simple references that do better (the whole interval of the proposed
    policy's difference from them below zero) or as well (the interval across zero, the
    reference ahead on average): a difference within noise is never called "better"."""
    if uplift["ci_low"] > 0:
        en = (
            "The policy under review is worth more than the tiered baseline on this simulated book."
        )
        zh = "在本模拟组合上，拟上线策略的账面价值高于分层催收基准策略。"
    elif uplift["ci_high"] < 0:
        en = (
            "The policy under review is worth LESS than the tiered baseline on this simulated book."
        )
        zh = "在本模拟组合上，拟上线策略的账面价值低于分层催收基准策略。"
    else:
        en = (
            "The policy under review is not shown to be better than the tiered baseline: the "
            "interval includes zero."
        )
        zh = "未能证明拟上线策略优于分层催收基准策略：置信区间包含零。"
    differences = result.get("uplift_vs_references") or {}
    references = result.get("references") or {}
    better, level = [], []
    for name, difference in differences.items():
        if name in ("oracle", "oracle_segments") or difference.get("mean", 0.0) >= 0:
            continue
        words = _words(REFERENCE_NAMES, name)
        shown = (
            f"{signed(difference['mean'])} [{signed(difference['ci_low'])}, "
            f"{signed(difference['ci_high'])}]"
        )
        strain = _strain(references.get(name, {}), references.get("model_driven", {}))
        (better if difference["ci_high"] < 0 else level).append(
            (words[0] + strain[0], words[1] + strain[1], shown)
        )
    for found, said_en, said_zh in (
        (better, "does better (", "表现更好("),
        (
            level,
            "does about as well (the reference ahead on average, within noise; ",
            "表现相当(参照方案平均略高，但在噪声范围内；",
        ),
    ):
        if found:
            en += (
                f" A simpler reference {said_en}the policy under review minus it, CNY): "
                + "; ".join(f"{name} {shown}" for name, _, shown in found)
                + "."
            )
            zh += (
                f"更简单的参照方案{said_zh}拟上线策略减去该方案，元)："
                + "；".join(f"{name}{shown}" for _, name, shown in found)
                + "。"
            )
    return en, zh


def _treatment_counts(scored: pl.DataFrame) -> pl.DataFrame:
    """``treatment``, ``len``: accounts per treatment, the commonest first (ties by name)."""
    return scored.group_by("treatment").len().sort(["len", "treatment"], descending=[True, False])


def _what_the_policy_does(section: Section, scored: pl.DataFrame, policy: Policy) -> None:
    """The policy's decisions in one sentence: the commonest treatment, its ladder in words and
    how many accounts get it, and how many get something else (a "segmented" policy that gives
    nearly everyone the same ladder should say so)."""
    if scored.height == 0 or "treatment" not in scored.columns:
        return
    counts = _treatment_counts(scored)
    top, n = counts.row(0)
    spec = policy.treatments.get(top)
    en_ladder, zh_ladder = ladder_words(spec) if spec else (top, top)
    en_name, zh_name = _words(treatment_names(policy), top)
    others = scored.height - n
    section.text(
        f"What the policy does: {n:,} of the {scored.height:,} accounts ({n / scored.height:.0%}) "
        f"get the same treatment, {en_name} ({en_ladder}); "
        + (
            f"{others:,} get {counts.height - 1} other treatment"
            f"{'' if counts.height == 2 else 's'}."
            if others
            else "no account gets another."
        )
    )
    section.raw(
        '<p class="zh">'
        + escape(
            f"本策略的决策：{scored.height:,}个账户中{n:,}个({n / scored.height:.0%})获得同一处置："
            f"{zh_name}({zh_ladder})；"
            + (
                f"其余{others:,}个账户获得另外{counts.height - 1}种处置。"
                if others
                else "没有账户获得其他处置。"
            )
        )
        + "</p>"
    )


def _costs_even_where_it_gains(section: Section, result: Mapping[str, Any]) -> None:
    """What the policy asks of the team and the borrowers against the baseline, gain or not:
    agent calls planned and dropped for the contact capacity, disputes (the complaint proxy),
    treatment offers refused, fees waived (mean per simulation seed)."""
    arms = result.get("arms") or {}
    policy, baseline = arms.get("model_driven") or {}, arms.get("baseline_tiered") or {}

    def both(name: str) -> tuple[float, float] | None:
        if name not in policy or name not in baseline:
            return None
        return float(policy[name]["mean"]), float(baseline[name]["mean"])

    en, zh = [], []
    calls = both("agent_calls")
    if calls and calls[1] > 0:
        change = calls[0] / calls[1] - 1
        en.append(f"agent calls {calls[0]:,.0f} against {calls[1]:,.0f} ({change:+.0%})")
        zh.append(f"人工外呼{calls[0]:,.0f}次，基准为{calls[1]:,.0f}次({change:+.0%})")
    dropped = both("calls_dropped_for_capacity")
    if dropped and dropped[0] > 0:
        en.append(f"{dropped[0]:,.0f} planned calls not made for want of agents")
        zh.append(f"因坐席人力不足未能拨打的计划外呼{dropped[0]:,.0f}次")
    for name, label_en, label_zh in (
        ("disputes", "disputes (the complaint proxy)", "异议(投诉指标)"),
        ("offers_refused", "treatment offers refused", "被拒绝的纾困方案"),
    ):
        pair = both(name)
        if pair and pair[0] != pair[1]:
            en.append(f"{label_en} {pair[0]:,.0f} against {pair[1]:,.0f}")
            zh.append(f"{label_zh}{pair[0]:,.0f}次，基准为{pair[1]:,.0f}次")
    waived = both("waived_income")
    if waived and waived[0] > waived[1]:
        en.append(f"fees waived {waived[0] - waived[1]:+,.0f} CNY (already in the book value)")
        zh.append(f"减免费用{waived[0] - waived[1]:+,.0f}元(已计入账面价值)")
    if not en:
        return
    section.text(
        "What the policy costs against the baseline, gain or not (mean per simulation seed): "
        + "; ".join(en)
        + "."
    )
    section.raw(
        f'<p class="zh">{escape("与基准相比本策略的代价(无论是否获益，每次模拟的均值)：" + "；".join(zh) + "。")}</p>'
    )


def _strain(reference: Mapping[str, Any], policy: Mapping[str, Any]) -> tuple[str, str]:
    """What a reference asks of the compliance rules and the team beyond the policy under review:
    its compliance blocks and contacts dropped for capacity when it has more of either (a
    reference that scores as well only by planning what the rules or the team cannot do is
    not an equal), as a bracket to its name in English and Chinese; empty otherwise."""

    def mean(figures: Mapping[str, Any], name: str) -> float | None:
        value = figures.get(name, {}).get("mean")
        return None if value is None else float(value)

    en, zh = [], []
    blocks = mean(reference, "compliance_blocks"), mean(policy, "compliance_blocks")
    if None not in blocks and blocks[0] > blocks[1]:
        en.append(f"{blocks[0]:,.0f} compliance blocks against the policy's {blocks[1]:,.0f}")
        zh.append(f"合规拦截{blocks[0]:,.0f}次，拟上线策略{blocks[1]:,.0f}次")
    dropped = [
        sum(
            mean(figures, n) or 0.0
            for n in ("calls_dropped_for_capacity", "visits_dropped_for_capacity")
        )
        for figures in (reference, policy)
    ]
    if dropped[0] > dropped[1]:
        en.append(f"{dropped[0]:,.0f} contacts dropped for capacity against {dropped[1]:,.0f}")
        zh.append(f"因人力上限未执行的联系{dropped[0]:,.0f}次，拟上线策略{dropped[1]:,.0f}次")
    if not en:
        return "", ""
    return f" ({'; '.join(en)})", f"({'；'.join(zh)})"


def _valuation_zh(valuation: Mapping[str, Any]) -> str:
    """How the balance still owed at the end is valued, in Chinese (the English is the
    result's own ``valuation.method``)."""
    months, plans = valuation.get("months"), valuation.get("plan_share")
    if months is None:
        return "期末仍欠余额按模拟器中其逾期阶段的回收曲线估值"
    plan_text = (
        "重组分期按其原逾期阶段估值"
        if plans is None
        else f"重组分期按其金额的{plans:.0%}估值，即本组合自身分期{months}个月的表现"
    )
    return (
        f"期末仍欠余额 × 其逾期阶段的回收比例(本模拟组合中账户首次达到该逾期天数后{months}个月内"
        f"收回的余额比例；M0按面值；{plan_text})"
    )


def _sources(section: Section, result: Mapping[str, Any]) -> None:
    """Where the book-value difference comes from, in words a lead books: cash (net recovery,
    with its interval over accounts and seeds when the simulation has one) and the value of
    what is still owed at the end, with the balances on restructure plans and the share they
    are valued at (and what each 10 points less on that share takes off)."""
    uplift = result.get("uplift") or {}
    if not {"net_recovery", "end_value"} <= set(uplift):
        return
    # the widest interval the result has, named: accounts and seeds, else accounts, else seeds
    cash, kind_en, kind_zh = next(
        (figure, en, zh)
        for figure, en, zh in (
            (
                (result.get("uplift_two_way") or {}).get("net_recovery"),
                "95 % CI resampling accounts and seeds",
                "95%置信区间，重抽账户与种子",
            ),
            (
                (result.get("uplift_account_bootstrap") or {}).get("net_recovery"),
                "95 % CI resampling accounts",
                "95%置信区间，重抽账户",
            ),
            (
                uplift["net_recovery"],
                "95 % CI of the simulation noise only",
                "95%置信区间，仅模拟噪声",
            ),
        )
        if figure
    )
    owed = uplift["end_value"]["mean"]
    en = (
        f"Where the difference comes from: cash collected net of costs (net recovery) "
        f"{cash['mean']:+,.0f} CNY [{cash['ci_low']:+,.0f}, {cash['ci_high']:+,.0f}; {kind_en}]; "
        f"the value of the balances still owed at the end of the {result['months']} months "
        f"{owed:+,.0f} CNY"
    )
    zh = (
        f"差额来源：扣除成本后的现金回收(净回收){cash['mean']:+,.0f}元"
        f"[{cash['ci_low']:+,.0f}, {cash['ci_high']:+,.0f}；{kind_zh}]；{result['months']}个月末仍欠"
        f"余额的价值{owed:+,.0f}元"
    )
    plans = uplift.get("open_plan_balance", {}).get("mean")
    share = (result.get("valuation") or {}).get("plan_share")
    if plans and share is not None and abs(plans) >= 1:
        more = plans > 0  # more balance on plans than the baseline: a lower valuation costs
        en += (
            f", of it {abs(plans):,.0f} CNY {'more' if more else 'less'} of balances on "
            f"restructure plans than under the baseline, valued at {share:.0%} of their amount "
            f"(this portfolio's own plans); each 10 points less on that valuation "
            f"{'takes' if more else 'adds'} {abs(0.1 * plans):,.0f} CNY "
            f"{'off' if more else 'to'} the difference"
        )
        zh += (
            f"，其中重组分期余额比基准{'多' if more else '少'}{abs(plans):,.0f}元，按其金额的"
            f"{share:.0%}估值(本组合自身分期的表现)；该估值每降低10个百分点，差额"
            f"{'减少' if more else '增加'}{abs(0.1 * plans):,.0f}元"
        )
    section.raw(f"<p>{escape(en)}.</p>" + f'<p class="zh">{escape(zh)}。</p>')


def _constraint_cells(figures: Mapping[str, Any]) -> dict[str, str]:
    """The compliance blocks and the contacts dropped for capacity of one arm (mean per seed),
    when the result has them."""
    cells = {}
    if "compliance_blocks" in figures:
        cells["compliance blocks 合规拦截"] = f"{figures['compliance_blocks']['mean']:,.1f}"
    if "calls_dropped_for_capacity" in figures:
        dropped = (
            figures["calls_dropped_for_capacity"]["mean"]
            + figures["visits_dropped_for_capacity"]["mean"]
        )
        cells["calls + visits dropped for capacity 超出人力未执行"] = f"{dropped:,.0f}"
    return cells


def _references(section: Section, result: Mapping[str, Any]) -> None:
    """The reference arms, value captured and value of segmentation (when reported)."""
    references = result.get("references")
    if not references:
        return
    metric = headline_metric(result)
    base = references.get("baseline_tiered", {}).get(metric, {}).get("mean")
    versus = dict(result.get("uplift_vs_references") or {})
    if "headline" in result:  # the baseline's gap is the headline's
        versus.setdefault("baseline_tiered", result["headline"]["uplift"])
    rows = []
    for name, figures in references.items():
        value = figures.get(metric, {}).get("mean")
        if value is None:
            continue
        rows.append(
            {
                "arm": _name(REFERENCE_NAMES, name),
                f"{metric.replace('_', ' ')} (CNY)": f"{value:,.0f}",
                "vs baseline (CNY)": "-"
                if name == "baseline_tiered"
                else _signed(None if base is None else value - base),
                "policy under review minus this arm, 95 % CI over accounts and seeds (CNY)": (
                    _interval_text(versus[name]) if name in versus else "-"
                ),
                **_constraint_cells(figures),
            }
        )
    _say(
        section,
        "The same accounts and the same random draws under every reference:",
        "各参照方案使用相同的账户和相同的随机抽样：",
    )
    _table(section, pd.DataFrame(rows))
    same = {
        name: other
        for name, other in (result.get("same_runs") or {}).items()
        if name in references and other in references
    }
    if same:
        pairs = [(_words(REFERENCE_NAMES, a), _words(REFERENCE_NAMES, b)) for a, b in same.items()]
        en = "; ".join(f"{a[0]} = {b[0]}" for a, b in pairs)
        zh = "；".join(f"{a[1]} = {b[1]}" for a, b in pairs)
        section.text(
            f"Equal rows are not a coincidence: on these accounts these arms treat everyone "
            f"the same way, so they are one and the same simulation ({en}). "
            f"数值相同并非巧合：在这些账户上，这些方案对每个账户的处置完全相同，因此是同一次模拟（{zh}）。"
        )
    constraints = result.get("constraints") or {}
    capacity = constraints.get("capacity")
    if capacity or constraints.get("compliance"):
        section.text(
            "Every arm, the baseline included, obeys the same compliance rules every month"
            + (
                f" and the same contact capacity: {capacity['agent_calls_per_day']:,} agent "
                f"calls a day and {capacity['field_visits_per_month']:,} field visits a month "
                "for these accounts (calls and visits beyond it are not made, highest balance "
                "first)"
                if capacity
                else ""
            )
            + ". 每个方案（含基准）每月都遵守同样的合规规则"
            + ("和同样的催收人力上限（超出部分不执行，余额高者优先）" if capacity else "")
            + "。"
        )
    captured = result.get("value_captured")
    if captured:
        _say(
            section,
            "Value captured = (the policy under review - baseline) / (oracle - baseline): "
            f"{_ratio_text(captured.get('overall'))} "
            f"({_signed(captured.get('policy_minus_baseline'))} of a possible "
            f"{_signed(captured.get('oracle_minus_baseline'))}).",
            "价值捕获率 = （拟上线策略 - 基准）/（理想参照 - 基准）："
            f"{_ratio_text(captured.get('overall'))}"
            f"（可能的{_signed(captured.get('oracle_minus_baseline'), '元')}中捕获了"
            f"{_signed(captured.get('policy_minus_baseline'), '元')}）。",
        )
        by_driver = captured.get("by_true_driver") or {}
        if by_driver:
            _table(
                section,
                pd.DataFrame(
                    [
                        {
                            "true driver (simulator)": _name(DRIVER_NAMES, driver),
                            "accounts": f"{row['accounts']:,}",
                            "policy - baseline": _signed(row.get("policy_minus_baseline")),
                            "oracle - baseline": _signed(row.get("oracle_minus_baseline")),
                            "value captured": _ratio_text(row.get("value_captured")),
                        }
                        for driver, row in sorted(by_driver.items())
                    ]
                ),
            )
            if any(row.get("value_captured") is None for row in by_driver.values()):
                section.text(
                    "n/a: for that type the oracle does not beat the baseline by more than "
                    "sampling noise could (1.96 standard errors over its accounts), so a share "
                    "of that gap would mean nothing. n/a：该类型下理想参照相对基准的增益未超出"
                    "抽样噪声，比例没有意义。"
                )
    segmentation = result.get("value_of_segmentation")
    if segmentation:
        value = segmentation.get("value")
        why = (
            ""
            if value is not None
            else " The true segments fed into the policy under review do not beat the segment-blind "
            "control by more than sampling noise could ("
            f"{_signed(segmentation.get('oracle_segments_minus_segment_blind'))}), so there is "
            "no gap to take a share of: on this book, perfect segments do not measurably help "
            "these ladders. 真实客群代入拟上线策略并不显著优于不分客群对照，因此该比例无意义。"
        )
        section.text(
            "Value of segmentation = (the policy under review - segment-blind) / (true segments - "
            f"segment-blind): {_ratio_text(value)}.{why}"
        )
        section.raw(
            '<p class="zh">'
            + escape(
                "客群分层的价值 = （拟上线策略 - 不分客群对照）/（真实客群 - 不分客群对照）："
                f"{_ratio_text(value)}。"
            )
            + "</p>"
        )


def _worse_off_types(section: Section, by_driver: Mapping[str, Any]) -> None:
    """The true borrower types (simulated portfolios) the policy leaves significantly worse off
    than the baseline in book value, in English and Chinese, and on which of their accounts:
    those it gave a ladder of its own (the segments the model put them in) or those it left in
    the standard queue (whose difference can only be the contact capacity the others used)."""
    if not by_driver:
        return
    worse = _worse_off(by_driver)
    section.raw("<h3>By true borrower type (simulator) 按真实借款人类型(模拟)</h3>")
    if not worse:
        section.text(
            "No true borrower type is significantly worse off than under the baseline "
            "(book value, 95 % interval over accounts and seeds)."
        )
        section.raw(
            '<p class="zh">没有任何真实借款人类型比基准策略显著更差(账面价值,95%区间)。</p>'
        )
        return
    for driver, row in worse:
        en, zh = _words(DRIVER_NAMES, driver)
        loss = _lower_by(row["book_value"])
        text = (
            f"Borrowers whose true type is {en} ({_accounts(row['accounts'])}) end the horizon with "
            f"a book value {loss[0]} than under the baseline."
        )
        zh_text = (
            f"真实类型为「{zh}」的借款人({row['accounts']:,}个账户)期末账面价值比基准{loss[1]}。"
        )
        parts = row.get("by_decision") or {}
        own, queue = parts.get("own_ladder"), parts.get("standard_queue")
        if own and own["accounts"] and own["book_value"]["ci_high"] < 0:
            segments = sorted((own.get("segments") or {}).items(), key=lambda x: -x[1])
            seg_en = "; ".join(f"{_words(SEGMENT_NAMES, k)[0]}: {c:,}" for k, c in segments)
            seg_zh = ";".join(f"{_words(SEGMENT_NAMES, k)[1]}:{c:,}" for k, c in segments)
            own_loss = _lower_by(own["book_value"])
            text += (
                f" On the {own['accounts']:,} of them the policy gave a ladder of its own (or "
                f"steps added to the standard queue) it is "
                f"{own_loss[0]}: the model put them in segments whose ladder costs more than it "
                f"brings for borrowers of this type ({seg_en})."
            )
            zh_text += (
                f"其中本策略为其单独制定方案(或在常规催收之外另加步骤)的 {own['accounts']:,} 个账户"
                f"{own_loss[1]}:模型把他们"
                f"归入的客群({seg_zh}),其方案对这类借款人得不偿失。"
            )
        if queue and queue["accounts"] and queue["book_value"]["ci_high"] < 0:
            queue_loss = _lower_by(queue["book_value"])
            text += (
                f" On the {queue['accounts']:,} it left in the standard queue with nothing "
                f"added it is "
                f"{queue_loss[0]}: the other accounts' ladders used contact capacity (calls, "
                "visits) these accounts had under the baseline."
            )
            zh_text += (
                f"保留在常规催收中的 {queue['accounts']:,} 个账户{queue_loss[1]}:其他账户的方案"
                "占用了他们在基准策略下本可获得的催收人力(电话、拜访)。"
            )
        section.text(text)
        section.raw(f'<p class="zh">{escape(zh_text)}</p>')


def _worse_off_summary(section: Section, by_driver: Mapping[str, Any]) -> None:
    """One sentence (English and Chinese) for the summary when a true borrower type is
    significantly worse off; the detail is in "Where the strategy loses"."""
    worse = [(driver, row["book_value"]["mean"]) for driver, row in _worse_off(by_driver)]
    if not worse:
        return
    en = ", ".join(f"{_words(DRIVER_NAMES, d)[0]} ({-m:,.0f} CNY lower)" for d, m in worse)
    zh = "、".join(f"{_words(DRIVER_NAMES, d)[1]}(低 {-m:,.0f} 元)" for d, m in worse)
    en_text = (
        f"Not every borrower gains: {len(worse)} true borrower type(s) end with a significantly "
        f"lower book value than under the baseline: {en}. Why, and on which accounts: "
        "Where the strategy loses."
    )
    zh_text = (
        f"并非所有借款人都受益:{len(worse)}类真实借款人的期末账面价值显著低于基准:{zh}。"
        "原因及涉及的账户见“策略在哪里失利”。"
    )
    section.raw(f'<div class="box warn">{escape(en_text)}<p class="zh">{escape(zh_text)}</p></div>')


def _worse_off(by_driver: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(true type, its row) of every type whose book-value uplift's interval is below zero,
    the largest loss first."""
    worse = [(d, row) for d, row in by_driver.items() if row["book_value"]["ci_high"] < 0]
    return sorted(worse, key=lambda item: item[1]["book_value"]["mean"])


def _lower_by(stats: Mapping[str, float]) -> tuple[str, str]:
    """A negative book-value difference as (English, Chinese) words: ``X CNY lower (95 %
    interval: A to B lower)``, the amounts positive."""
    low, high = -stats["ci_high"], -stats["ci_low"]
    return (
        f"{-stats['mean']:,.0f} CNY lower (95 % interval: {low:,.0f} to {high:,.0f} lower)",
        f"低 {-stats['mean']:,.0f} 元(95%区间:低 {low:,.0f} 至 {high:,.0f} 元)",
    )


PROMOTION_ZH = {
    "champion": "冠军模型",
    "promoted once, no longer the champion": "曾晋升，现已不是冠军模型",
    "refused by the promotion gates": "未通过晋升门槛",
    "not judged by the gates": "未经晋升门槛审核",
    "unknown": "未知",
}


def promotion_state(promotion: Mapping[str, Any] | None) -> str:
    """The scoring model's promotion status in a few words (a key of :data:`PROMOTION_ZH`),
    from :func:`rollrisk.pipelines.report.promotion_status`'s record (None: unknown)."""
    if promotion is None:
        return "unknown"
    champion = promotion.get("champion_version")
    if champion is not None and str(champion) == str(promotion["version"]):
        return "champion"
    # the latest verdict first: a version refused when promoted again (after a rollback) is
    # refused, whatever it passed before
    if promotion.get("promotion") == "refused":
        return "refused by the promotion gates"
    if promotion.get("promoted_at") or promotion.get("promotion") == "promoted":
        return "promoted once, no longer the champion"
    return "not judged by the gates"


def _promotion(section: Section, promotion: Mapping[str, Any] | None) -> str:
    """The scoring model's promotion status into ``section``; returns it in a few words."""
    if promotion is None:
        _say(
            section,
            "The model registry was not read (--no-mlflow, or the model was not loaded "
            "through the registry), so the model's promotion status is unknown.",
            "未读取模型注册表（使用了 --no-mlflow，或模型不是通过注册表加载的），因此模型的晋升状态未知。",
        )
        return "unknown"
    name, version = promotion["name"], promotion["version"]
    champion = promotion.get("champion_version")
    status = promotion_state(promotion)
    is_champion = status == "champion"
    reasons = [r for r in promotion.get("reasons", []) if r]
    shown = "v" + str(champion) if champion else "none"
    if is_champion:
        text = f"Model {name} v{version} is the champion (the model approved for production)."
        text_zh = f"模型{name} v{version}为冠军模型(已批准用于生产)。"
        if any(r.startswith("no champion yet") for r in reasons):
            text += (
                " When it was promoted there was no earlier champion to compare it with, so the "
                "gate that compares discrimination with the champion did not apply."
            )
            text_zh += "晋升时尚无可比较的前任冠军模型，因此与冠军比较区分度的门槛不适用。"
    elif status == "promoted once, no longer the champion":
        text = (
            f"Model {name} v{version} is no longer the champion (champion: {shown}): it passed "
            "its promotion gates once; production no longer scores with it."
        )
        text_zh = (
            f"模型{name} v{version}已不再是冠军模型(冠军：{shown})：它曾通过晋升门槛；"
            "生产环境已不再用它评分。"
        )
    elif status == "refused by the promotion gates":
        text = (
            f"Model {name} v{version} is NOT the champion: it FAILED its promotion gates "
            f"(champion: {shown}). Decisions from this "
            "model should not be acted on before the failures below are resolved."
        )
        text_zh = (
            f"模型{name} v{version}不是冠军模型：未通过晋升门槛(冠军：{shown})。在下列问题解决之前，"
            "不应依据该模型的决策采取行动。"
        )
    else:
        text = (
            f"Model {name} v{version} is not the champion "
            f"(champion: {shown}) and has not been "
            "through `rollrisk promote`."
        )
        text_zh = (
            f"模型{name} v{version}不是冠军模型(冠军：{shown})，且未经过 rollrisk promote 的审核。"
        )
    warn = "" if is_champion else " warn"
    section.raw(f'<div class="box{warn}">{escape(text)}<p class="zh">{escape(text_zh)}</p></div>')
    if reasons:
        _say(
            section,
            "The gates said (rollrisk promote's own words):",
            "晋升门槛的结论（rollrisk promote 的原文）：",
        )
        section.raw("<ul>" + "".join(f"<li>{escape(r)}</li>" for r in reasons) + "</ul>")
    aliases = promotion.get("aliases") or []
    _say(
        section,
        f"Registry aliases of v{version}: {', '.join(aliases) or 'none'}. Gates: "
        "conf/default.yaml promotion (docs/models.md).",
        f"v{version}在注册表中的别名：{'、'.join(aliases) or '无'}。晋升门槛：conf/default.yaml 的 "
        "promotion（docs/models.md）。",
        note=True,
    )
    return status


# --------------------------------------------------------------------------------------------
# The lender's experiment and the policy learnt from it (`rollrisk learn-policy`, --learned)
# --------------------------------------------------------------------------------------------
LEARNED_SECTION_IDS = ("experiment", "learned-policy")
LEARNED_SECTION_TITLES = (
    "What the lender's experiment showed 我司实验的结果",
    "The policy the data suggests 数据建议的策略",
)
# the learned sections follow this one on the page
LEARNED_SECTIONS_AFTER = "where-it-loses"
# a learned rule's threshold on a whole-number field is written as the whole number it means
WHOLE_NUMBER_FIELDS = ("dpd",)
STANDARD_COLLECTION = ("the lender's standard collection", "我司常规催收")
# below this many accounts an arm's bootstrap interval is rough, and the page says so
FEW_ACCOUNTS = 30
# the summary's sentence on a page made without --learned: the page cannot know why (not run,
# or learn-policy found the experiment too small to learn from: its exit code 3)
NO_LEARNED_POLICY = (
    "No policy learnt from the lender's experiment is shown: the page was made without "
    "learn-policy's output (--learned). learn-policy writes none when the experiment is too "
    "small to learn from (exit code 3; its output says why).",
    "本页未展示从我司实验中学习的策略:生成本页时未提供 learn-policy 的输出(--learned)。"
    "实验规模太小、无法据此学习时,learn-policy 不生成策略(退出码 3,其输出说明原因)。",
)


@dataclass(frozen=True)
class LearnedResult:
    """What ``rollrisk learn-policy`` wrote to its folder, as the page reads it.

    ``evaluation`` is ``policy_learning.json`` (the off-policy estimate under ``evaluation``,
    the experiment's readout under ``experiment_readout``), ``rules`` is ``learned_rules.yaml``
    (``rules``, ``candidates``, ``applies_to``); ``policy_file`` is ``learned_policy.yaml``
    when the job wrote one, and ``folder`` the folder itself.
    """

    evaluation: Mapping[str, Any]
    rules: Mapping[str, Any]
    folder: Path
    policy_file: Path | None = None


def _ladder_from_document(name: str, steps: Any) -> Treatment | None:
    """A candidate's ladder as learned_rules.yaml writes it (a list of ``day``, ``action``,
    ``channel``, ``at``) as a treatment the ladder words can read; None when it is not one
    (the "keep the current decision" candidate is a sentence)."""
    from datetime import time

    from rollrisk.strategies.policy import LadderStep, Treatment

    if not isinstance(steps, list):
        return None
    ladder = []
    for step in steps:
        at = str(step.get("at", "10:00"))
        ladder.append(
            LadderStep(
                action=str(step["action"]),
                day=int(step.get("day", 0)),
                at=time.fromisoformat(at if len(at) == 5 else f"0{at}"),
                channel=step.get("channel"),
                recipient=step.get("recipient", "borrower"),
                line=None,
            )
        )
    return Treatment(name, tuple(ladder), "", None)


def bundle_words(
    bundle: str, learned: LearnedResult, policy: Policy | None = None
) -> tuple[str, str]:
    """What an action bundle does, in English and Chinese: its ladder from the learned rules'
    candidates, else from the scored policy's treatment of that name; the lender's standard
    collection in words."""
    if bundle in (STANDARD_QUEUE, "policy"):
        return _words(LADDER_WORDS, STANDARD_QUEUE)
    treatment = _ladder_from_document(bundle, (learned.rules.get("candidates") or {}).get(bundle))
    if treatment is None and policy is not None:
        treatment = policy.treatments.get(bundle)
    if treatment is None:
        return (
            f"{bundle.replace('_', ' ')} (its ladder is in the experiment file)",
            f"{bundle}(处置阶梯见实验文件)",
        )
    return ladder_words(treatment)


def _keep_bundle(learned: LearnedResult) -> str:
    """The bundle "keep the current decision" stands for (the readout's control)."""
    readout = learned.evaluation.get("experiment_readout") or {}
    return str((readout.get("control") or {}).get("bundle") or STANDARD_QUEUE)


def _current_names(keep: str) -> tuple[str, str]:
    """What the lender does now, named in English and Chinese: its standard collection, or
    the current policy's decision when the logged control was another bundle."""
    if keep == STANDARD_QUEUE:
        return STANDARD_COLLECTION
    return (f"the current policy's decision ({keep.replace('_', ' ')})", f"现行策略的决策({keep})")


def learned_rule_conditions(
    when: Mapping[str, Mapping[str, Any]],
    applies_to: Mapping[str, Sequence[str]],
    feature_set: FeatureSet,
) -> list[tuple[str, str]]:
    """A learned rule's ``when`` (feature -> ``in`` levels, or ``gt``/``le`` thresholds) as
    conditions in English and Chinese. A condition that admits every level the rules apply
    to (``applies_to``) restricts nothing and is left out; a range names its subject once
    ("is more than 13 and at most 40"); amounts are whole CNY."""
    from rollrisk.strategies.segments import Condition

    words = []
    for feature, test in when.items():
        tests: list[tuple[str, Any]] = []
        if "in" in test:
            levels = list(test["in"])
            every = applies_to.get(feature)
            if every and set(levels) >= set(every):
                continue
            others = [v for v in every or () if v not in levels]
            if len(levels) == 1:
                tests.append(("eq", levels[0]))
            elif others and len(others) < len(levels):  # the shorter way to say it
                tests.append(("ne", others[0]) if len(others) == 1 else ("not_in", others))
            else:
                tests.append(("in", levels))
        for op in ("gt", "le"):
            if op in test:
                value = float(test[op])
                if feature in WHOLE_NUMBER_FIELDS:
                    value = float(math.floor(value))  # dpd <= 13.5 is dpd <= 13
                tests.append((op, round(value, 2 if abs(value) < 100 else 0)))
        if not tests:
            continue
        en, zh = condition_words(Condition("field", feature, (tests[0],), None), feature_set)
        for op, operand in tests[1:]:  # the range's upper end, without its subject again
            op_en, op_zh = OPERATOR_WORDS[op]
            en += f" and {op_en} {_number(operand)}"
            zh += f"且{op_zh}{_number(operand)}"
        words.append((en, zh))
    return words


def _matches(scored: pl.DataFrame, when: Mapping[str, Mapping[str, Any]]) -> pl.Series | None:
    """Which scored accounts a learned rule's ``when`` holds for; None when the scores lack a
    column it tests."""
    mask = pl.repeat(True, scored.height, eager=True)
    for feature, test in when.items():
        if feature not in scored.columns:
            return None
        column = scored[feature]
        if "in" in test:
            mask = mask & column.cast(pl.String).is_in([str(v) for v in test["in"]])
        if "gt" in test:
            mask = mask & (column.cast(pl.Float64) > float(test["gt"]))
        if "le" in test:
            mask = mask & (column.cast(pl.Float64) <= float(test["le"]))
    return mask


def _learning_half_versus_held_out(
    section: Section, rows: Sequence[Mapping[str, Any]], held_out: float
) -> None:
    """Say how much the rules' gains on the accounts they were learnt from overstate the
    held-out estimate (a tree picks each leaf's best-looking bundle, so its own half flatters
    it): the gains weighted by the decisions each rule was learnt from, beside the estimate."""
    weights, gains = [], []
    for row in rows:
        gain = row["est. gain per decision (CNY)"]
        gain = 0.0 if isinstance(gain, str) else float(gain)  # a rule that keeps gains nothing
        if not math.isnan(gain):
            weights.append(float(row["decisions learnt from"]))
            gains.append(gain)
    if not weights or sum(weights) <= 0:
        return
    learning = float(np.average(gains, weights=weights))
    if learning <= held_out:
        return
    section.text(
        f"On the accounts the rules were learnt from they gain {learning:+,.0f} CNY per decision "
        f"(weighted by the decisions of each rule); on the held-out accounts {held_out:+,.0f} "
        "CNY. The gap is how much the learning data flatter the rules: trust the held-out figure."
    )
    section.raw(
        f'<p class="zh">在学习样本上,规则每次决策收益为{learning:+,.0f}元(按各规则决策数加权);'
        f"在保留样本上为{held_out:+,.0f}元。两者之差说明学习样本高估了规则的效果:应以保留样本的"
        "估计为准。</p>"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _money_interval(stats: Mapping[str, Any], scale: float = 1.0) -> str:
    return (
        f"{stats['value'] * scale:+,.0f} CNY (95 % CI {stats['ci_low'] * scale:+,.0f} to "
        f"{stats['ci_high'] * scale:+,.0f})"
    )


def _experiment_size(
    section: Section,
    control: Mapping[str, Any],
    arms: Sequence[Mapping[str, Any]],
    sizes_en: str,
    sizes_zh: str,
) -> None:
    """How large a gap the experiment could see, and how many accounts per arm a gap of
    :data:`DESIGN_GAP_SHARE` of the control's book value per decision would need
    (:func:`rollrisk.strategies.experiment_readout.experiment_size`)."""
    size = experiment_size(
        ArmReadout.from_dict(control), [ArmReadout.from_dict(arm) for arm in arms]
    )
    if size is None:
        return
    gaps, middle, target, need = size.detectable, size.middle, size.target, size.accounts_needed
    share = f"{DESIGN_GAP_SHARE:.0%}"
    section.raw(
        f'<p class="note">How large a gap could this experiment see? An arm would show a true '
        f"gap as significant 4 times in 5 only if it were larger than about ±{middle:,.0f} CNY "
        f"per decision (the middle arm; ±{gaps[0]:,.0f} to ±{gaps[-1]:,.0f} across the arms). "
        f"To see a gap of {share} of the control's book value per decision ({target:,.0f} CNY), "
        f"an arm would need about {need:,.0f} accounts; the experiment has {sizes_en}. "
        f'<span class="zh">本实验能看出多大的差异?只有当真实差异大于每次决策约±{middle:,.0f}元'
        f"(中间的实验组;各组±{gaps[0]:,.0f}至±{gaps[-1]:,.0f}元)时,实验组才有五分之四的把握显示其显著。"
        f"若要看出对照组每次决策账面价值{share}的差异({target:,.0f}元),每组约需{need:,.0f}个账户;"
        f"本实验{sizes_zh}。</span></p>"
    )


def _experiment_beside_simulation(
    section: Section,
    learned: LearnedResult,
    scored: pl.DataFrame,
    names: Mapping[str, tuple[str, str]] = TREATMENT_NAMES,
) -> None:
    """The lender's experiment set beside the simulated gain, in the summary: how many arms did
    significantly better or worse than the control, and whether the treatment the policy gives
    most was one of them (a simulated gain that real decisions did not test, or did not bear
    out, must not read as confirmed)."""
    readout = learned.evaluation.get("experiment_readout") or {}
    arms = list(readout.get("arms") or [])
    if not arms or scored.height == 0 or "treatment" not in scored.columns:
        return
    better = [a for a in arms if float(a["ci_low"]) > 0]
    worse = [a for a in arms if float(a["ci_high"]) < 0]
    top = str(_treatment_counts(scored)["treatment"][0])
    top_en, top_zh = _words(names, top)
    tested = next((a for a in arms if str(a["bundle"]) == top), None)
    if tested is None:
        said_en = f"the treatment the policy gives most ({top_en}) was not one of them"
        said_zh = f"本策略最常用的处置({top_zh})不在实验组之中"
    else:
        gap = f"{float(tested['versus_control']):+,.0f} [{float(tested['ci_low']):+,.0f}, {float(tested['ci_high']):+,.0f}]"
        said_en = f"the treatment the policy gives most ({top_en}) was one: {gap} CNY per decision against the control"
        said_zh = f"本策略最常用的处置({top_zh})是实验组之一：相对对照组每次决策{gap}元"
    confirmed = tested is not None and float(tested["ci_low"]) > 0
    section.text(
        f"The lender's own experiment (real decisions, {len(arms)} arms): {len(better)} did "
        f"significantly better than its standard collection, {len(worse)} significantly worse; "
        f"{said_en}. "
        + (
            "It bears out the policy's main treatment."
            if confirmed
            else "The simulated gain above is not confirmed by real decisions."
        )
    )
    section.raw(
        '<p class="zh">'
        + escape(
            f"我司实验(真实决策，{len(arms)}个实验组)：{len(better)}组显著优于常规催收，{len(worse)}组显著更差；"
            f"{said_zh}。"
            + (
                "实验结果支持本策略的主要处置。"
                if confirmed
                else "上述模拟收益未得到真实决策的证实。"
            )
        )
        + "</p>"
    )


def _experiment_section(section: Section, learned: LearnedResult, policy: Policy) -> None:
    """The experiment's plain readout per arm (no model): accounts, book value per decision,
    the gap to the standard collection with its interval, and one sentence on what it shows."""
    section.text(
        "The lender ran an experiment: each month a random share of its delinquent (M1-M3) book "
        "was given "
        "one of several action bundles (the arms), and the rest stayed in its standard "
        "collection (the control). The draw was random, so each arm's accounts are comparable "
        "with the control's: the gap in book value per decision is what the arm did, with no "
        "model involved. A decision is one account in one month."
    )
    section.raw(
        '<p class="zh">我司进行了一项实验:每月从M1-M3逾期账户中随机抽取一部分,分配到不同的处置组合'
        "(实验组),其余账户留在常规催收中(对照组)。由于分配是随机的,各实验组与对照组的账户可以直接"
        "比较:每次决策的账面价值差异就是该处置组合的效果,不涉及任何模型。一次决策指一个账户在一个月内"
        "的处置。</p>"
    )
    readout = learned.evaluation.get("experiment_readout")
    if not readout or not readout.get("arms"):
        section.raw(
            '<div class="box warn">The logged decisions hold no control group (no decision '
            "kept the lender's own), so the experiment cannot be read arm by arm. "
            '<span class="zh">记录中没有对照组,无法逐组解读实验结果。</span></div>'
        )
        return
    control, arms = readout["control"], list(readout["arms"])
    control_en, control_zh = _current_names(str(control.get("bundle") or STANDARD_QUEUE))
    rows = [
        {
            "arm 实验组": f"{control_en} (control) {control_zh}(对照组)",
            "what it does (English)": bundle_words(str(control["bundle"]), learned, policy)[0],
            "what it does (Chinese)": bundle_words(str(control["bundle"]), learned, policy)[1],
            "accounts": int(control["accounts"]),
            "decisions": int(control["decisions"]),
            "book value per decision (CNY)": float(control["mean"]),
            "gap to the control per decision (CNY) [95 % CI]": "-",
            "verdict 结论": "-",
        }
    ]
    better, worse = [], []
    for arm in arms:
        low, high = float(arm["ci_low"]), float(arm["ci_high"])
        if low > 0:
            better.append(arm)
            verdict = "better ✔ 更好"
        elif high < 0:
            worse.append(arm)
            verdict = "worse ✘ 更差"
        else:
            verdict = "cannot tell 无法区分"
        en, zh = bundle_words(str(arm["bundle"]), learned, policy)
        rows.append(
            {
                "arm 实验组": _name(treatment_names(policy), str(arm["bundle"])),
                "what it does (English)": en,
                "what it does (Chinese)": zh,
                "accounts": int(arm["accounts"]),
                "decisions": int(arm["decisions"]),
                "book value per decision (CNY)": float(arm["mean"]),
                "gap to the control per decision (CNY) [95 % CI]": (
                    f"{float(arm['versus_control']):+,.0f} [{low:+,.0f} to {high:+,.0f}]"
                ),
                "verdict 结论": verdict,
            }
        )
    counts = [int(arm["accounts"]) for arm in arms]
    sizes_en = (
        f"{min(counts):,} to {max(counts):,} accounts per arm"
        if min(counts) != max(counts)
        else f"{counts[0]:,} accounts per arm"
    )
    sizes_zh = (
        f"每组{min(counts):,}至{max(counts):,}个账户"
        if min(counts) != max(counts)
        else f"每组{counts[0]:,}个账户"
    )
    if better or worse:
        undecided = len(arms) - len(better) - len(worse)
        en = (
            f"Of {_count(len(arms), 'arm')}, {len(better) or 'none'} did significantly better "
            f"than {control_en} and {len(worse) or 'none'} significantly worse (the "
            "interval excludes zero)"
            + (
                f"; the other {undecided} cannot be told apart from it with {sizes_en}."
                if undecided
                else "."
            )
        )
        zh = (
            f"{len(arms)}个实验组中,{f'{len(better)}个' if better else '无一'}显著优于{control_zh},"
            f"{f'{len(worse)}个' if worse else '无一'}显著差于{control_zh}"
            "(置信区间不含零)"
            + (f";其余{undecided}个在{sizes_zh}的规模下与之无法区分。" if undecided else "。")
        )
    else:
        en = (
            f"None of the {len(arms)} arms is shown to differ from {control_en}: with "
            f"{sizes_en} (the control {int(control['accounts']):,}), the experiment is too small "
            "to tell them apart."
        )
        zh = (
            f"{len(arms)}个实验组均未显示出与{control_zh}的显著差异:{sizes_zh}"
            f"(对照组{int(control['accounts']):,}个),实验规模太小,无法区分。"
        )
    section.raw(
        f'<div class="box{"" if better else " warn"}">{escape(en)}'
        f'<br><span class="zh">{escape(zh)}</span></div>'
    )
    _experiment_size(section, control, arms, sizes_en, sizes_zh)
    _table(
        section,
        pd.DataFrame(rows),
        {"accounts": "{:,.0f}", "decisions": "{:,.0f}", "book value per decision (CNY)": "{:,.0f}"},
    )
    if (better or worse) and len(arms) > 1:
        chance = 0.05 * len(arms)
        section.raw(
            f'<p class="note">{len(arms)} arms are each compared at 95 %: even if no arm made a '
            f"difference, about {chance:.1f} of them would look significant by chance, so one "
            "significant arm among many is weak evidence on its own. "
            f'<span class="zh">{len(arms)}个实验组各自按95%置信水平比较:即使所有实验组都没有效果,'
            f"平均也会有约{chance:.1f}个因偶然而显得显著,因此多组中仅一组显著本身证据较弱。</span></p>"
        )
    if min(counts) < FEW_ACCOUNTS:
        section.raw(
            f'<p class="note">Some arms have fewer than {FEW_ACCOUNTS} accounts: their intervals '
            "resample so few accounts that they are rough, and a verdict there is weak evidence. "
            f'<span class="zh">部分实验组账户少于{FEW_ACCOUNTS}个,其置信区间较粗略,结论证据不足。</span></p>'
        )
    _say(
        section,
        "Book value per decision = cash collected over the following months - action and "
        "treatment costs - agency commission + the value of the balance still owed at the end "
        "(rollrisk logged-decisions; docs/strategies.md, The logged-decisions table). The "
        "interval resamples accounts (an account keeps its arm, so its months count together): "
        "95 % percentile bootstrap. Arms are listed best first. Source: "
        + shown_path(learned.folder / "policy_learning.json")
        + ".",
        "每次决策的账面价值 = 之后数月的现金回收 - 催收动作与处置成本 - 外部催收佣金 + 期末仍欠余额"
        "的估值（rollrisk logged-decisions；见 docs/strategies.md 的 The logged-decisions table 一节）。"
        "区间对账户重抽样（账户保持其实验组，其各月一起计入）：95%百分位自助法。实验组按结果从好到差"
        "排列。来源：" + shown_path(learned.folder / "policy_learning.json") + "。",
        note=True,
    )


def _learned_section(
    section: Section,
    learned: LearnedResult,
    scored: pl.DataFrame,
    policy: Policy,
    feature_set: FeatureSet,
) -> tuple[str, str]:
    """The learned rules beside the current decision, and the off-policy estimate in money;
    returns the one-line verdict for the summary."""
    evaluation = learned.evaluation.get("evaluation") or {}
    uplift = evaluation.get("uplift_vs_current")
    keep = _keep_bundle(learned)
    if uplift is None:
        section.raw(
            '<div class="box warn">policy_learning.json holds no off-policy estimate.</div>'
        )
        return "not estimated", "未估计"
    low, high = float(uplift["ci_low"]), float(uplift["ci_high"])
    if low == high == 0.0:  # every leaf kept the current decision
        verdict_en = "the same as"
        verdict_zh = "等同于"
    elif low > 0:
        verdict_en = "estimated better than"
        verdict_zh = "估计优于"
    elif high < 0:
        verdict_en = "estimated WORSE than"
        verdict_zh = "估计差于"
    else:
        verdict_en = "not shown to be better than"
        verdict_zh = "未被证明优于"
    book = scored.height
    current_en, current_zh = _current_names(keep)
    if low == high == 0.0:  # nothing to estimate: the rules are what is done now
        section.markdown(
            f"**No change proposed: every rule keeps {current_en}.** (Checked off-policy on "
            f"{int(evaluation.get('decisions', 0)):,} decisions of "
            f"{int(evaluation.get('accounts', 0)):,} accounts the rules were not learnt from.)"
        )
        section.raw(
            f'<p class="zh">未建议任何改变：每条规则都保持{escape(current_zh)}。(基于规则学习时未使用的'
            f"{int(evaluation.get('accounts', 0)):,}个账户的{int(evaluation.get('decisions', 0)):,}"
            "次决策离线核对。)</p>"
        )
    else:
        section.markdown(
            f"**The proposed rules are {verdict_en} {current_en}: "
            f"{_money_interval(uplift)} per decision**, estimated off-policy on "
            f"{int(evaluation.get('decisions', 0)):,} decisions of "
            f"{int(evaluation.get('accounts', 0)):,} accounts the rules were not learnt from. "
            f"For a book like the {book:,} accounts scored today, one decision each: "
            f"{_money_interval(uplift, book)} a month."
        )
        section.raw(
            f'<p class="zh">建议规则{verdict_zh}{escape(current_zh)}:每次决策'
            f"{uplift['value']:+,.0f}元(95%置信区间{low:+,.0f}至{high:+,.0f}元),"
            f"基于规则学习时未使用的{int(evaluation.get('accounts', 0)):,}个账户的"
            f"{int(evaluation.get('decisions', 0)):,}次决策的离线估计。按今天评分的{book:,}个账户"
            f"每月各一次决策计算:{uplift['value'] * book:+,.0f}元"
            f"(95%置信区间{low * book:+,.0f}至{high * book:+,.0f}元)。</p>"
        )
    if low == high == 0.0:  # every rule keeps what the lender does: nothing to adopt
        meaning_en = (
            "Every rule keeps what the lender does now: no treatment's gain over it could be "
            "told from noise in this experiment (see the rules' lower bounds below). The "
            "experiment is too small to learn from; a larger one, or fewer arms, is needed."
        )
        meaning_zh = (
            "每条规则都保持我司现行做法:本次实验中没有任何处置相对现行做法的收益能与噪声区分"
            "(见下表各规则的收益下界)。实验规模太小,无法据此学习;需要更大的实验或更少的实验组。"
        )
    elif low <= 0 <= high:
        meaning_en = (
            "The interval covers zero: the data do not show the proposed rules to be worth "
            "more (or less) than what the lender does now. Do not adopt them on this evidence."
        )
        meaning_zh = "置信区间包含零:数据未能证明建议规则比我司现行做法更好(或更差),不应据此采用。"
    elif low > 0:
        meaning_en = (
            "The whole interval is above zero: on the logged data the rules are worth more "
            "than what the lender does now. Confirm it with a controlled rollout before "
            "adopting them."
        )
        meaning_zh = (
            "整个置信区间高于零:在历史记录上建议规则优于现行做法。采用前须通过受控试点验证。"
        )
    else:
        meaning_en = "The whole interval is below zero: the rules are worth less. Do not adopt."
        meaning_zh = "整个置信区间低于零:建议规则更差,不应采用。"
    section.raw(
        f'<div class="box{"" if low > 0 else " warn"}">{escape(meaning_en)}'
        f'<br><span class="zh">{escape(meaning_zh)}</span></div>'
    )
    figures = []
    for key, en, zh in (
        ("proposed_policy", "proposed rules", "建议规则"),
        ("current_policy", current_en, current_zh),
        ("uplift_vs_current", "difference (proposed - current)", "差异(建议 - 现行)"),
    ):
        stats = evaluation.get(key)
        if stats:
            sign = "+" if key == "uplift_vs_current" else ""
            figures.append(
                {
                    "policy 策略": f"{en} {zh}",
                    "book value per decision (CNY)": f"{float(stats['value']):{sign},.0f}",
                    "95 % CI": (
                        f"{float(stats['ci_low']):{sign},.0f} to "
                        f"{float(stats['ci_high']):{sign},.0f}"
                    ),
                }
            )
    _table(section, pd.DataFrame(figures))

    # the rules, each beside what the accounts get now
    rules = list(learned.rules.get("rules") or [])
    applies_to = learned.rules.get("applies_to") or {}
    section.text(
        f"The rules, learnt from the experiment ({_count(len(rules), 'rule')}; an account takes "
        f"the first rule that holds). What the lender does now for all of them: {current_en}. "
        "Beside each rule: the estimated gain per decision over that, on the accounts the rules "
        "were learnt from, and the accounts scored today that the rule covers with the "
        "treatment the policy under review gives them."
    )
    section.raw(
        '<p class="zh">以下规则由实验数据学习得出(账户适用第一条成立的规则)。我司对这些账户的现行'
        f"做法:{escape(current_zh)}。每条规则旁列出:在学习样本上估计的每次决策相对现行做法的收益,"
        "以及今天评分账户中符合该规则的账户数和拟上线策略给予它们的处置。</p>"
    )
    # a pessimistic learner writes each rule's lower bound of the gain over the current decision
    bounded = any("gain_over_current" in rule for rule in rules)
    rows = []
    for rule in rules:
        when = rule.get("when") or {}
        conditions = learned_rule_conditions(when, applies_to, feature_set)
        give = str(rule.get("give", ""))
        keeps = give in (keep, "policy")
        give_en, give_zh = bundle_words(give, learned, policy)
        values = rule.get("estimated_value_per_decision") or {}
        own = values.get("policy" if keeps else give, values.get(give))
        gain = None if own is None or "policy" not in values else own - float(values["policy"])
        bound = ((rule.get("gain_over_current") or {}).get(give) or {}).get("lower_bound")
        mask = _matches(scored, when)
        if mask is None:
            today_en, count = "n/a (the scores lack a field it tests) 不适用", None
        else:
            covered = scored.filter(mask)
            count = covered.height
            mix = (
                covered.group_by("treatment")
                .len()
                .sort(["len", "treatment"], descending=[True, False])
                .head(2)
            )
            today_en = "; ".join(
                f"{_name(treatment_names(policy), t)} ({n / max(count, 1):.0%})"
                for t, n in mix.iter_rows()
            )
        rows.append(
            {
                "rule": str(rule.get("id", "")),
                "when (English)": " and ".join(c[0] for c in conditions) or "every other account",
                "when (Chinese)": "且".join(c[1] for c in conditions) or "其他所有账户",
                "the data suggests (English)": f"keep {current_en}" if keeps else give_en,
                "the data suggests (Chinese)": f"保持{current_zh}" if keeps else give_zh,
                "est. gain per decision (CNY)": (
                    "0 (keeps)" if keeps else math.nan if gain is None else gain
                ),
                **(
                    {"gain's lower bound (CNY)": math.nan if bound is None else float(bound)}
                    if bounded
                    else {}
                ),
                "decisions learnt from": int(rule.get("learning_decisions", 0)),
                "accounts today": math.nan if count is None else count,
                "policy under review gives them today 拟上线策略今日处置": today_en,
            }
        )
    if rows:
        _table(
            section,
            pd.DataFrame(rows),
            {
                "est. gain per decision (CNY)": "{:+,.0f}",
                "gain's lower bound (CNY)": "{:+,.0f}",
                "decisions learnt from": "{:,.0f}",
                "accounts today": "{:,.0f}",
            },
        )
        _learning_half_versus_held_out(section, rows, float(uplift["value"]))
    files = [shown_path(learned.folder / "learned_rules.yaml")]
    if learned.policy_file is not None:
        files.append(shown_path(learned.policy_file) + " (a policy file rollrisk score loads)")
    origin = learned.evaluation.get("provenance")
    learnt_from = ""
    if origin:  # files written before learn-policy recorded where they came from have none
        logged = origin["logged"]
        dates = (
            f", as-of {logged['as_of_first']} to {logged['as_of_last']}"
            if logged.get("as_of_first")
            else ""
        )
        learnt_from = (
            f"Learnt {origin['learned_at'][:10]} from {logged['file']} "
            f"({logged['decisions_used']:,} {logged['decisions']} decisions{dates}). "
        )
    section.note(
        learnt_from
        + "This is an estimate from logged data, not a result. The rules were learnt on one half "
        "of the accounts and estimated on the other; the gain per rule is on the learning half "
        "and is optimistic. Confirm the rules with a controlled rollout (as an experiment arm) "
        "before adopting them. Files: "
        + "; ".join(files)
        + ". Method, for analysts: "
        + str(learned.evaluation.get("method", "n/a"))
        + (f"; rules: {learned.evaluation['labels']}" if learned.evaluation.get("labels") else "")
        + "."
    )
    section.raw(
        '<p class="zh">这是基于历史记录的估计,不是实际结果:采用双重稳健离线策略评估。规则在一半账户上'
        "学习,在另一半上估计;每条规则的收益在学习样本上计算,偏乐观。采用前须通过受控试点(作为实验组)"
        "验证。</p>"
    )
    if low == high == 0.0:  # nothing to estimate: every rule keeps what is done now
        return (
            f"no change proposed: every rule keeps {current_en}",
            f"未建议任何改变：每条规则都保持{current_zh}",
        )
    return (
        f"{verdict_en} {current_en}: {_money_interval(uplift)} per decision",
        f"{verdict_zh}{current_zh}：每次决策{uplift['value']:+,.0f}元（95%置信区间{low:+,.0f}至"
        f"{high:+,.0f}元）",
    )


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------
def report_wording(manifest: Mapping[str, Any], feature_set: FeatureSet) -> FeatureSet:
    """The model's ``feature_set`` worded as the scoring run of ``manifest`` worded its
    reasons: today's texts, and a missing value of a table the run was scored without
    (``tables.scored_without``, ``--allow-missing-table``) saying the table was not given,
    not what it states when the table is there ("no contact reached the borrower" for a book
    whose collection actions were left out)."""
    scored_without = tuple(manifest.get("tables", {}).get("scored_without", ()))
    return current_wording(feature_set, absent_tables=scored_without)


def build_report(
    manifest: Mapping[str, Any],
    scored: pl.DataFrame,
    portfolio: Portfolio,
    model: RollModel,
    *,
    data_dir: Path,
    true_drivers: pl.DataFrame | None,
    policy_simulation: Mapping[str, Any] | None,
    sample_size: int,
    examples: int,
    seed: int,
    segment_rules: SegmentRules,
    policy: Policy,
    promotion: Mapping[str, Any] | None = None,
    account_limit: int = ACCOUNT_LIMIT,
    learned: LearnedResult | None = None,
) -> str:
    """The HTML page (see the module docstring for its sections).

    Needs the manifest and scored accounts of a scoring run (:func:`rollrisk.storage.results.
    read_scores`), the portfolio they were scored from (``data_dir``, named relative to the
    working folder), the scoring model, the segment rules and policy the scores were decided
    with, and optionally the simulator's true driver per account (``account_id``, ``driver``;
    None: not a simulated portfolio), the policy simulation's result and the model's
    promotion status (``name``, ``version``, ``champion_version``, ``aliases``,
    ``promotion``, ``reasons``; None: registry not read). ``sample_size`` accounts per
    segment get their SHAP values recomputed; ``examples`` accounts get a waterfall;
    ``seed`` draws the samples and the bootstrap; at most ``account_limit`` accounts (largest
    expected loss first) go into the account list. ``learned`` (what ``rollrisk learn-policy``
    wrote) adds the sections of :data:`LEARNED_SECTION_IDS` after ``where-it-loses``: the
    lender's experiment arm by arm and the learned rules with their off-policy estimate.
    """
    from rollrisk.features.observations import ObservationSpec, observations

    as_of = date.fromisoformat(manifest["as_of"])
    model_info = manifest.get("model", {})
    feature_set = report_wording(manifest, model.feature_set)  # words only: SHAP uses the model's
    treatment_words = treatment_names(policy)  # the policy file's names of its treatments first
    sections = {sid: Section(sid, title) for sid, title in zip(SECTION_IDS, SECTION_TITLES,
                                                              strict=True)}  # fmt: skip

    # --- promotion status of the scoring model
    promotion_status = _promotion(sections["promotion"], promotion)

    # --- segments: definitions, ladders, value
    segments = segment_table(scored)
    definitions = segment_definitions(segment_rules, feature_set)
    by_segment = (policy_simulation or {}).get("by_segment", {})
    metric = headline_metric(policy_simulation or {})
    guide = sections["segments"]
    _say(
        guide,
        "Each account gets exactly one segment from the rules in conf/segments.yaml; the "
        "policy (conf/policy.yaml) then picks a treatment ladder from its segment, bucket, "
        "risk band and product. Definitions are written from those rules. Value is measured "
        "against the tiered baseline per segment; the oracle is measured per true driver "
        "(Summary, value captured), as the simulation reports it. The small grey code is the "
        "name in those files.",
        "每个账户按 conf/segments.yaml 中的规则归入且仅归入一个客群；策略（conf/policy.yaml）再根据"
        "客群、逾期阶段、风险等级和产品选择处置阶梯。以下定义由这些规则生成。价值按客群相对分层催收"
        "基准衡量；理想参照按真实逾期原因衡量（见摘要中的价值捕获率），与模拟结果一致。灰色小字为"
        "配置文件中的代码。",
    )
    shown = segments.assign(
        segment=[_named_code(SEGMENT_NAMES, s) for s in segments["segment"]]
    ).rename(
        columns={"exposure": "exposure (CNY)", "expected_loss": "expected loss (CNY)",
                 "mean_probability": "mean probability"}
    )  # fmt: skip
    _table(
        guide,
        shown,
        {"accounts": "{:,.0f}", "share": "{:.1%}", "exposure (CNY)": "{:,.0f}",
         "expected loss (CNY)": "{:,.0f}", "mean probability": "{:.1%}"},
    )  # fmt: skip
    for segment in segments["segment"]:
        rows = scored.filter(pl.col("segment") == segment)
        en_name, zh_name = _words(SEGMENT_NAMES, segment)
        guide.raw(
            f'<h3>{escape(en_name)} <span class="zh">{escape(zh_name)}</span> '
            f'<code class="note">{escape(segment)}</code></h3>'
        )
        en, zh = definitions.get(
            segment, ("(not defined in the segment rules)", "（客群规则中未定义）")
        )
        _say(guide, en, zh)
        # the table's sums, so the paragraph and the table show the same figures
        figures = segments.loc[segments["segment"] == segment].iloc[0]
        exposure, loss = float(figures["exposure"]), float(figures["expected_loss"])
        _say(
            guide,
            f"{_accounts(rows.height)}, exposure {exposure:,.0f} CNY, expected loss {loss:,.0f} CNY.",
            f"{rows.height:,}个账户，风险敞口{exposure:,.0f}元，预期损失{loss:,.0f}元。",
        )
        ladder_rows = []
        for treatment, count in (
            rows.group_by("treatment").len().sort("len", descending=True).iter_rows()
        ):
            spec = policy.treatments.get(treatment)
            words = (
                ladder_words(spec)
                if spec
                else ("(not in this policy file)", "（不在此策略文件中）")
            )
            ladder_rows.append(
                {
                    "treatment": _named_code(treatment_words, treatment),
                    "accounts": count,
                    "ladder (English)": words[0],
                    "ladder (Chinese)": words[1],
                }
            )
        _table(guide, pd.DataFrame(ladder_rows), {"accounts": "{:,.0f}"})
        row = by_segment.get(segment)
        if row:
            key = metric if metric in row["uplift"] else "net_recovery"
            u = row["uplift"][key]
            verdict = (
                ("loses", "劣于基准")
                if u["ci_high"] < 0
                else ("gains", "优于基准")
                if u["ci_low"] > 0
                else ("no clear difference", "无明显差异")
            )
            _say(
                guide,
                f"Against the tiered baseline ({key.replace('_', ' ')}): {_interval_text(u)} CNY "
                f"({verdict[0]}; simulation noise only, these accounts held fixed, so the interval "
                "is narrower than the headline's).",
                f"相对分层催收基准（{_words(METRIC_ZH, key)[1]}）：{u['mean']:+,.0f}元（95%置信区间"
                f"{u['ci_low']:+,.0f}至{u['ci_high']:+,.0f}元；{verdict[1]}；仅含模拟噪声，这些账户"
                "固定不变，因此区间比摘要中的窄）。",
            )

    # --- where the strategy loses, and why
    removals = compliance_removals(scored)
    loses = sections["where-it-loses"]
    losing = []
    for segment, row in sorted(by_segment.items()):
        key = metric if metric in row["uplift"] else "net_recovery"
        if row["uplift"][key]["mean"] < 0:
            losing.append((segment, row, key))
    if policy_simulation is None:
        _say(
            loses,
            "No policy simulation was given (--policy-simulation), so no loss is measured.",
            "未提供策略模拟（--policy-simulation），因此无法衡量损失。",
        )
    elif not losing:
        loses.text("No segment does worse than the tiered baseline in the simulation.")
        loses.raw('<p class="zh">模拟中没有任何客群的表现劣于分层催收基准策略。</p>')
    if policy_simulation is not None:
        _costs_even_where_it_gains(loses, policy_simulation)
    for segment, row, key in sorted(losing, key=lambda x: x[1]["uplift"][x[2]]["mean"]):
        # the interval that resamples the segment's accounts as well as the seeds (results
        # before 2026-12-03 have only the seeds', which holds these accounts fixed: said)
        u = (row.get("uplift_two_way") or {}).get(key) or row["uplift"][key]
        kind = (
            ("resampling accounts and seeds", "重抽账户与种子")
            if "resamples" in u
            else ("simulation noise only, these accounts held fixed", "仅含模拟噪声，账户固定")
        )
        en_name, zh_name = _words(SEGMENT_NAMES, segment)
        loses.raw(
            f'<h3>{escape(en_name)} <span class="zh">{escape(zh_name)}</span> '
            f'<code class="note">{escape(segment)}</code></h3>'
        )
        _say(
            loses,
            f"{_accounts(row['accounts'])}; {key.replace('_', ' ')} against the tiered baseline "
            f"{_interval_text(u)} CNY ({kind[0]})"
            + (" (the whole interval is below zero)." if u["ci_high"] < 0 else "."),
            f"{row['accounts']:,}个账户；相对分层催收基准的{_words(METRIC_ZH, key)[1]}"
            f"{u['mean']:+,.0f}元（95%置信区间{u['ci_low']:+,.0f}至{u['ci_high']:+,.0f}元，"
            f"{kind[1]}）" + ("，整个区间低于零。" if u["ci_high"] < 0 else "。"),
        )
        if u["ci_high"] >= 0:
            loses.text(
                "The interval includes zero: the simulation shows a negative mean here, not a "
                "loss it can tell from chance."
            )
            loses.raw(
                '<p class="zh">区间包含零:模拟只显示均值为负,无法与偶然波动区分,不能认定为损失。</p>'
            )
        if _all_standard_queue(scored, segment, policy):
            unchanged = (
                "Every account of this segment stays in the lender's standard collection, as "
                "under the baseline: the policy changes nothing for them. ",
                "该客群的所有账户都保留在常规分层催收中,与基准策略相同:本策略对他们没有任何改变。",
            )
            why = (
                (  # each account its own draws: only the shared capacity links the accounts
                    "The simulation gives each account the same random draws in both; the "
                    "difference comes from the team's contact capacity: the other segments' "
                    "ladders use agent calls and field visits, so some of these accounts' calls "
                    "or visits were not made (the capacity serves the highest balances first).",
                    "模拟为每个账户在两种策略下使用相同的随机抽样;差异来自催收团队的人力上限:其他"
                    "客群的方案占用了坐席电话和上门拜访,这些账户的部分电话或拜访因此未能进行(人力"
                    "优先用于余额最高的账户)。",
                )
                if policy_simulation.get("draws") == OWN_DRAWS
                else (  # a simulation written before every account had its own draws
                    "The difference is simulation noise: this simulation was made before each "
                    "account had its own random draws, so the changed plans of other segments "
                    "shifted these accounts' draws. Re-run simulate-policy for an exact "
                    "comparison.",
                    "差异来自模拟噪声:此模拟早于每个账户使用独立随机抽样的版本,其他客群的计划改变"
                    "影响了这些账户的抽样。请重新运行 simulate-policy 以得到精确比较。",
                )
            )
            loses.text(unchanged[0] + why[0])
            loses.raw(f'<p class="zh">{escape(unchanged[1] + why[1])}</p>')
            continue
        rules = removals[removals["segment"] == segment]
        if rules.empty:
            _say(
                loses,
                "Compliance removed no planned action here: the loss comes from the ladder "
                "itself (see its treatments under Segments).",
                "合规规则在此未移除任何计划动作：损失来自处置阶梯本身（见“客群”中的处置）。",
            )
            continue
        table_rows = []
        for rule in rules.itertuples(index=False):
            rule_en, rule_zh = _words(COMPLIANCE_NAMES, str(rule.rule))
            actions = [_words(LADDER_WORDS, a) for a in str(rule.actions).split(", ")]
            table_rows.append(
                {"compliance rule": _code(str(rule.rule)), "what it requires (English)": rule_en,
                 "what it requires (Chinese)": rule_zh,
                 "actions removed": int(rule.removed), "accounts": int(rule.accounts),
                 "share of segment": rule.accounts / max(row["accounts"], 1),
                 "removed": "; ".join(f"{en} {zh}" for en, zh in actions),
                 "example reason (the rule's own words)": rule.reason}
            )  # fmt: skip
        top = table_rows[0]
        first = rules.iloc[0]
        top_actions = [_words(LADDER_WORDS, a) for a in str(first["actions"]).split(", ")]
        _say(
            loses,
            f'Why: the compliance rule "{top["what it requires (English)"]}" removed '
            f"{top['actions removed']:,} planned actions ("
            + ", ".join(en for en, _ in top_actions)
            + f") from {top['accounts']:,} of these accounts ({top['share of segment']:.0%}), so "
            "the ladder the segment was designed for is not what they receive.",
            f"原因：合规规则“{top['what it requires (Chinese)']}”移除了其中{top['accounts']:,}个账户"
            f"（占{top['share of segment']:.0%}）的{top['actions removed']:,}个计划动作（"
            + "、".join(zh for _, zh in top_actions)
            + "），因此他们得到的并不是为该客群设计的处置阶梯。",
        )
        _table(loses, pd.DataFrame(table_rows), {"share of segment": "{:.1%}"})

    if policy_simulation is not None:
        _worse_off_types(loses, policy_simulation.get("uplift_by_true_driver") or {})

    # --- the lender's experiment and the policy learnt from it
    learned_sections: list[Section] = []
    learned_verdict = None
    if learned is not None:
        learned_sections = [
            Section(sid, title)
            for sid, title in zip(LEARNED_SECTION_IDS, LEARNED_SECTION_TITLES, strict=True)
        ]
        _experiment_section(learned_sections[0], learned, policy)
        learned_verdict = _learned_section(
            learned_sections[1], learned, scored, policy, feature_set
        )

    # --- accounts to review
    rows, total = account_rows(scored, account_limit, feature_set, treatment_words)
    accounts = sections["accounts"]
    _say(
        accounts,
        f"{len(rows):,} of {total:,} scored accounts"
        + (f" (the {account_limit:,} with the largest expected loss)" if total > len(rows) else "")
        + ", largest expected loss first. Click a column to sort; type to filter (any column, "
        "as shown: a name, 84.5%, 12,345); pick a segment.",
        f"共{total:,}个评分账户，列出{len(rows):,}个"
        + (f"（预期损失最大的{account_limit:,}个）" if total > len(rows) else "")
        + "，按预期损失从大到小排列。点击列标题排序；输入文字筛选（任一列，按显示的内容，如名称、"
        "84.5%、12,345）；或选择客群。",
    )
    accounts.raw(
        data_table("account-list", ACCOUNT_COLUMNS, rows, segment_column=1,
                   segments=[_name(SEGMENT_NAMES, s) for s in segments["segment"]])
    )  # fmt: skip

    # --- expected loss and action mix
    by_band = expected_loss_by_band(scored)
    by_band["segment"] = [
        "all segments 全部客群" if s == "all segments" else _name(SEGMENT_NAMES, s)
        for s in by_band["segment"]
    ]
    by_band = by_band.rename(columns={b: f"{b} risk (CNY)" for b in by_band.columns
                                      if b not in ("segment", "total")} | {"total": "total (CNY)"})  # fmt: skip
    _table(
        sections["expected-loss"],
        by_band,
        {c: "{:,.0f}" for c in by_band.columns if c != "segment"},
    )
    counts = scored.group_by("risk_band").len().to_pandas().set_index("risk_band")["len"]
    _say(
        sections["expected-loss"],
        "Accounts per band: "
        + ", ".join(f"{b} {int(counts.get(b, 0)):,}" for b in BAND_ORDER)
        + ". Bands are the policy's (conf/policy.yaml risk_bands); expected loss = exposure "
        "(balance at the as-of) x calibrated probability.",
        "各风险等级账户数："
        + "，".join(f"{_words(BAND_NAMES, b)[1]}{int(counts.get(b, 0)):,}" for b in BAND_ORDER)
        + "。风险等级采用策略的划分（conf/policy.yaml 的 risk_bands）；预期损失 = 风险敞口"
        "（观察日余额）× 校准后的违约概率。",
        note=True,
    )
    treatments, steps = action_mix(scored)
    treatments["treatment"] = [_name(treatment_words, t) for t in treatments["treatment"]]
    treatments = treatments.rename(
        columns={
            c: _name(SEGMENT_NAMES, c) for c in treatments.columns if c not in ("treatment", "all")
        }
    )
    steps["action"] = [_name(LADDER_WORDS, a) for a in steps["action"]]
    _say(
        sections["action-mix"],
        "Treatments chosen by the policy, accounts per segment:",
        "策略选择的处置，按客群的账户数：",
    )
    _table(sections["action-mix"], treatments)
    _say(
        sections["action-mix"],
        "Planned actions of the next decision cycle:",
        "下一个决策周期的计划动作：",
    )
    _table(sections["action-mix"], steps)

    # --- reasons
    facts = top_reason_facts(scored, feature_set)
    facts["segment"] = [_name(SEGMENT_NAMES, s) for s in facts["segment"]]
    facts = facts.rename(columns={"reason": "reason (English)", "原因": "reason (Chinese)"})
    _table(sections["reason-codes"], facts, {"share": "{:.1%}", "accounts": "{:,.0f}",
                                             "as first reason": "{:,.0f}"})  # fmt: skip
    _say(
        sections["reason-codes"],
        "accounts: accounts with the fact among their principal reasons (days past due now "
        "and at worst count as one fact); as first reason: accounts for which it comes first.",
        "账户数：主要原因中包含该事实的账户（当前逾期天数与近期最高逾期天数算作同一事实）；"
        "作为首要原因：该事实排在第一位的账户。",
        note=True,
    )

    # --- SHAP per segment and examples
    sample = sample_per_segment(scored, sample_size, seed)
    contribs, frame = recompute_contributions(sample, portfolio, as_of, model)
    names = list(feature_set.names)
    data = frame[names]
    sizes = dict(zip(segments["segment"], segments["accounts"], strict=True))
    sample_segments = sample["segment"].to_numpy()
    figures = []
    for segment in segments["segment"]:
        mask = sample_segments == segment
        if mask.sum() < 2:
            continue
        shap_sample = SegmentShap(
            segment, contribs[mask, :-1], float(contribs[mask, -1].mean()),
            data.loc[mask].reset_index(drop=True), sample["account_id"].to_numpy()[mask].tolist(),
            int(sizes[segment]),
        )  # fmt: skip
        en_name, zh_name = _words(SEGMENT_NAMES, segment)
        figures.append(
            (shap_summary_png(shap_sample), f"SHAP beeswarm, segment {en_name} 客群：{zh_name}")
        )
    sections["shap-summary"].raw('<div class="grid">')
    for png, caption in figures:
        sections["shap-summary"].image(png, caption)
    sections["shap-summary"].raw("</div>")
    _say(
        sections["shap-summary"],
        f"For analysts: exact TreeSHAP values of model {model_info.get('name')} "
        f"v{model_info.get('version')} recomputed for up to {sample_size} accounts per segment "
        f"(seed {seed}), in log-odds (the model's internal scale; the example accounts above "
        "show the same contributions in probability).",
        f"供分析人员参考：模型{model_info.get('name')} v{model_info.get('version')}的精确TreeSHAP值，"
        f"每个客群最多重新计算{sample_size}个账户（随机种子{seed}），单位为对数几率（模型内部尺度；"
        "上方的账户示例以概率展示同样的贡献）。",
        note=True,
    )
    highest = scored.sort("expected_loss", descending=True)
    sampled = set(sample["account_id"].to_list())
    chosen: list[str] = []
    for segment in segments["segment"]:  # the largest expected loss of each segment first
        ids = highest.filter(pl.col("segment") == segment)["account_id"].to_list()
        pick = next((a for a in ids if a in sampled), None)
        if pick and len(chosen) < examples:
            chosen.append(pick)
    positions = {a: i for i, a in enumerate(sample["account_id"].to_list())}
    by_id = {row["account_id"]: row for row in scored.iter_rows(named=True)}
    families = [spec.family for spec in feature_set.features]
    for account_id in chosen:
        i = positions[account_id]
        row = by_id[account_id]
        per_family: dict[str, float] = {}
        for family, value in zip(families, contribs[i, :-1], strict=True):
            per_family[family] = per_family.get(family, 0.0) + float(value)
        steps_p = probability_steps(float(contribs[i, -1]), per_family, float(row["probability"]))
        product = _words(PRODUCT_NAMES, row["product"])
        segment = _words(SEGMENT_NAMES, row["segment"])
        treatment = _words(treatment_words, row["treatment"])
        title = (
            f"{account_id}: {product[0]}, {row['dpd']} DPD, segment {segment[0]}, treatment "
            f"{treatment[0]}: {row['probability']:.1%} chance of rolling to default"
        )
        caption = (
            f"{title}. {account_id}：{product[1]}，逾期{row['dpd']}天，客群：{segment[1]}，"
            f"处置：{treatment[1]}：滚动至违约的概率为{row['probability']:.1%}。"
        )
        sections["examples"].image(probability_waterfall_png(steps_p, title), caption)
        _table(
            sections["examples"],
            pd.DataFrame(
                [
                    {
                        "step": _name({**FAMILY_NAMES, **STEP_NAMES}, name),
                        "from": before,
                        "to": after,
                        "change (pp)": (after - before) * 100,
                    }
                    for name, before, after in steps_p
                ]
            ),
            {"from": "{:.1%}", "to": "{:.1%}", "change (pp)": "{:+.1f}"},
        )
        reasons = grouped_reasons(json.loads(row["reasons"]), int(row["dpd"]), feature_set)
        _say(
            sections["examples"],
            "Reasons: " + ("; ".join(r[0] for r in reasons) or "none") + f". Expected loss "
            f"{row['expected_loss']:,.0f} CNY.",
            "原因："
            + ("；".join(r[1] for r in reasons) or "无")
            + f"。预期损失{row['expected_loss']:,.0f}元。",
        )
    _say(
        sections["examples"],
        "Each waterfall starts at the base rate (the average account's probability), adds the "
        "driver families in the order of their weight in the model's own scale (log-odds), "
        "largest first, each bar the change in percentage points (pp) where the chain stands "
        "(the same weight moves a probability more near 50 % than near 0 or 100 %, so the bars "
        "need not shrink from left to right), and ends with calibration at the probability the "
        "policy used.",
        "每个瀑布图从基准率（平均账户的概率）开始，按各驱动因素组在模型自身尺度（对数几率）上的权重"
        "从大到小依次加入，每根条表示在当前位置上的变化（百分点）（同样的权重在50%附近比在0或100%"
        "附近移动概率更多，所以条形不一定从左到右变短），最后以校准步骤结束于策略使用的概率。",
        note=True,
    )

    # --- calibration
    spec = ObservationSpec.from_mapping(manifest.get("config", {}).get("observation", {}))
    outcomes = observations(portfolio.statements, [as_of], spec).select(
        "account_id", "rolled_to_default"
    )
    calibration = calibration_by_band(scored, outcomes)
    if calibration is None:
        _say(
            sections["calibration"],
            f"The outcomes of the {as_of} population have not matured in this portfolio (the "
            f"{spec.window_months}-month window after the as-of is not covered by its "
            "statements), so calibration cannot be checked yet. See `rollrisk evaluate` for "
            "the out-of-time calibration of the model.",
            f"{as_of}这批账户的结果在本组合中尚未到期（组合的账单未覆盖观察日之后的"
            f"{spec.window_months}个月），因此暂时无法检验校准。模型的跨时间校准见 rollrisk evaluate。",
        )
    else:
        calibration = calibration.rename(
            columns={"risk_band": "risk band", "realised_ci_low": "realised, 95 % CI low",
                     "realised_ci_high": "realised, 95 % CI high"}
        )  # fmt: skip
        calibration["risk band"] = [
            "all 全部" if b == "all" else _name(BAND_NAMES, b) for b in calibration["risk band"]
        ]
        _table(
            sections["calibration"],
            calibration,
            {"accounts": "{:,.0f}", "predicted": "{:.1%}", "realised": "{:.1%}",
             "realised, 95 % CI low": "{:.1%}", "realised, 95 % CI high": "{:.1%}"},
        )  # fmt: skip
        _say(
            sections["calibration"],
            f"Realised = reached {spec.default_dpd}+ DPD within {spec.window_months} months "
            "after the as-of (matured accounts only); interval: Wilson 95 %.",
            f"实际违约率 = 观察日后{spec.window_months}个月内逾期达到{spec.default_dpd}天及以上的比例"
            "（仅限结果已到期的账户）；区间：Wilson 95%。",
            note=True,
        )

    # --- segment recovery (only a simulated portfolio knows its borrowers' drivers)
    recovery_text = ("not available (not a simulated portfolio)", "不适用（非模拟组合）")
    if true_drivers is not None:
        joined = scored.select("account_id", "segment").join(
            true_drivers.select("account_id", "driver"), on="account_id"
        )
        f1, low, high, matrix = bootstrap_macro_f1(
            joined["segment"].to_list(), joined["driver"].to_list(), BOOTSTRAP_SAMPLES, seed
        )
        recovery_text = (
            f"{f1:.3f} (95 % CI {low:.3f} to {high:.3f})",
            f"{f1:.3f}（95%置信区间{low:.3f}至{high:.3f}）",
        )
        _say(
            sections["segment-recovery"],
            f"Macro-F1 of the segments against the simulator's latent drivers: {recovery_text[0]}, "
            f"over {joined.height:,} scored accounts (percentile bootstrap over accounts, "
            f"{BOOTSTRAP_SAMPLES} resamples; healthy borrowers count as forgetful/self-cure). "
            "A diagnostic: the goal is value, above. Rows: true driver; columns: segment.",
            f"客群相对模拟器隐含逾期原因的宏平均F1：{recovery_text[1]}，基于{joined.height:,}个评分账户"
            f"（按账户的百分位自助法，{BOOTSTRAP_SAMPLES}次重抽样；健康型借款人计为遗忘型/自愈）。"
            "这只是诊断指标，目标是上文的价值。行：真实逾期原因；列：客群。",
        )
        matrix = matrix.rename(
            index=lambda d: _name(DRIVER_NAMES, d),
            columns=lambda c: _name(SEGMENT_NAMES, c),
        )
        matrix.index.name = "true driver"
        _table(sections["segment-recovery"], matrix.reset_index())
    else:
        _say(
            sections["segment-recovery"],
            "Only a simulated portfolio knows its borrowers' true drivers; this one has no "
            "truth/ folder, so segment recovery cannot be measured.",
            "只有模拟组合知道借款人的真实逾期原因；本组合没有 truth/ 文件夹，因此无法衡量客群识别准确度。",
        )

    # --- policy simulation
    summary = sections["summary"]
    tiles: list[tuple[str, str]] = []
    if policy_simulation is None:
        _say(
            sections["policy-simulation"],
            "No policy simulation was given. Run `rollrisk simulate-policy` on these scores "
            "(simulated portfolios only) and pass its folder with --policy-simulation.",
            "未提供策略模拟。请对这些评分运行 rollrisk simulate-policy（仅限模拟组合），并用 "
            "--policy-simulation 传入其输出文件夹。",
        )
        _say(
            summary,
            "Policy simulation: not run (pass --policy-simulation).",
            "策略模拟：未运行（请传入 --policy-simulation）。",
        )
    else:
        tiles = _headline(summary, policy_simulation)
        _references(summary, policy_simulation)
        _worse_off_summary(summary, policy_simulation.get("uplift_by_true_driver") or {})
        _policy_section(sections["policy-simulation"], policy_simulation)

    # --- summary
    total_el = float(scored["expected_loss"].sum())
    summary.kpis(
        [
            *tiles,
            ("accounts scored 评分账户数", f"{scored.height:,}"),
            ("exposure (CNY) 风险敞口(元)", f"{float(scored['exposure'].sum()):,.0f}"),
            ("expected loss (CNY) 预期损失(元)", f"{total_el:,.0f}"),
            (
                "scoring model 评分模型",
                f"{promotion_status} {PROMOTION_ZH.get(promotion_status, '')}",
            ),
        ]
    )
    summary.parts.insert(0, summary.parts.pop())  # the tiles open the summary
    top = segments.iloc[0]
    top_en, top_zh = _words(SEGMENT_NAMES, str(top["segment"]))
    _say(
        summary,
        f"Largest expected loss: the segment {top_en} ({top['expected_loss']:,.0f} CNY, "
        f"{top['expected_loss'] / total_el:.0%} of the total, {_accounts(int(top['accounts']))}).",
        f"预期损失最大的客群：{top_zh}（{top['expected_loss']:,.0f}元，占总额"
        f"{top['expected_loss'] / total_el:.0%}，{int(top['accounts']):,}个账户）。",
    )
    _what_the_policy_does(summary, scored, policy)
    _say(
        summary,
        f"Segment recovery (macro-F1 against the true drivers): {recovery_text[0]}.",
        f"客群识别准确度（相对真实逾期原因的宏平均F1）：{recovery_text[1]}。",
    )
    if learned_verdict is not None:
        _say(
            summary,
            f"Policy learnt from the lender's experiment: {learned_verdict[0]} (an off-policy "
            "estimate; see The policy the data suggests).",
            f"从我司实验中学习的策略：{learned_verdict[1]}（离线估计；见“数据建议的策略”）。",
        )
    if learned is None:
        _no_learned_policy(summary)
    else:
        _experiment_beside_simulation(summary, learned, scored, treatment_words)
    config = manifest.get("config", {})
    subtitle = (
        f"As-of {as_of}; model {model_info.get('name')} v{model_info.get('version')} "
        f"({model_info.get('uri')}, {promotion_status}); policy "
        f"{shown_path(config.get('policy'))}; segments {shown_path(config.get('segments'))}; "
        f"portfolio {shown_path(data_dir)}; code {manifest.get('code', {}).get('git_commit')}."
        # the Chinese summary points here ("见页首"): the same facts in Chinese
        f" 评分日{as_of}；模型{model_info.get('name')} v{model_info.get('version')}；拟上线策略"
        f"(策略文件){shown_path(config.get('policy'))}；客群规则"
        f"{shown_path(config.get('segments'))}；组合{shown_path(data_dir)}。"
    )
    ordered = list(sections.values())
    after = SECTION_IDS.index(LEARNED_SECTIONS_AFTER) + 1
    ordered[after:after] = learned_sections
    return finish_page(render_page("Collections strategy review 催收策略评审", ordered, subtitle))


def _no_learned_policy(section: Section) -> None:
    """Say, in English and Chinese, that the page shows no learned policy, and when that is."""
    en, zh = NO_LEARNED_POLICY
    section.text(en)
    section.raw(f'<p class="zh">{escape(zh)}</p>')


def _policy_section(section: Section, result: Mapping[str, Any]) -> None:
    arms, uplift = result["arms"], result["uplift"]
    labels = dict(LABELS)
    rows = []
    for metric, (label, _) in labels.items():
        if metric not in arms["model_driven"] or metric not in uplift:
            continue
        rows.append(
            {
                "metric": _column(label),
                "policy under review (model-driven)": format_metric(
                    metric, arms["model_driven"][metric]["mean"]
                ),
                "tiered baseline": format_metric(metric, arms["baseline_tiered"][metric]["mean"]),
                "difference [95 % CI, seeds only]": format_uplift(metric, uplift[metric]),
            }
        )
    _say(
        section,
        f"{result['accounts']:,} scored accounts rolled forward {result['months']} months on the "
        f"simulator, once per arm with the same random draws, over {len(result['seeds'])} "
        "seeds; mean per arm and the paired difference with its 95 % t-interval over seeds "
        "(simulation noise only).",
        f"{result['accounts']:,}个评分账户在模拟器上向前推演{result['months']}个月，每个方案使用相同的"
        f"随机抽样各运行一次，共{len(result['seeds'])}个随机种子；表中为各方案均值，以及配对差额及其按"
        "种子的95% t区间（仅含模拟噪声）。",
    )
    _table(section, pd.DataFrame(rows))
    segment_rows = [
        {
            "segment": _name(SEGMENT_NAMES, segment),
            "accounts": row["accounts"],
            **{
                LABELS[m][0] if m in LABELS else m: format_uplift(m, row["uplift"][m])
                for m in ("book_value", "net_recovery", "roll_to_default_rate")
                if m in row["uplift"] and (m in LABELS or m == "book_value")
            },
        }
        for segment, row in sorted(result["by_segment"].items())
    ]
    _say(
        section,
        SEGMENT_UPLIFT_NOTE,
        "按客群：该客群账户上模型驱动策略减去分层催收基准，按种子取均值［按种子的95% t区间：仅含"
        "蒙特卡洛误差，这些账户固定不变］。区间宽度为零表示两种方案在每个种子上对这些账户的处置完全"
        "相同（例如只留在常规催收、未另加任何步骤的客群），并不表示该数字是确定的。",
    )
    _table(section, pd.DataFrame(segment_rows), {"accounts": "{:,.0f}"})
    bootstrap = result.get("uplift_account_bootstrap")
    if bootstrap and "net_recovery" in bootstrap:
        _say(
            section,
            "Resampling the accounts as well (percentile bootstrap over accounts of the "
            "seed-averaged difference): net recovery "
            + _interval_text(bootstrap["net_recovery"])
            + " CNY"
            + (
                "; roll-to-default "
                + _interval_text(bootstrap["roll_to_default_rate"], percent=True)
                if "roll_to_default_rate" in bootstrap
                else ""
            )
            + ".",
            "同时对账户重抽样（对按种子平均的差额做账户百分位自助法）：净回收"
            + _zh_interval(bootstrap["net_recovery"])
            + (
                "；违约滚动率" + _zh_interval(bootstrap["roll_to_default_rate"], percent=True)
                if "roll_to_default_rate" in bootstrap
                else ""
            )
            + "。",
        )
    _say(
        section,
        "Costs: "
        + shown_path(result["costs"]["source"])
        + ". Method and limits: docs/strategies.md, Policy simulation.",
        "成本："
        + shown_path(result["costs"]["source"]).replace("(shipped default)", "（系统自带默认文件）")
        + "。方法与局限见 docs/strategies.md 的 Policy simulation 一节。",
        note=True,
    )
