"""The feature registry: every model input declared once, in a named and versioned feature set.

Each :class:`FeatureSpec` says what a feature means (in English and Chinese, for reason codes),
which driver family it belongs to (the unit SHAP contributions are summed over for segments),
the look-back window it aggregates, and its monotone direction where one is obvious
(+1: a larger value never lowers the risk; -1: never raises it; 0: no constraint).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

Family = Literal[
    "delinquency_history",
    "payment_capacity",
    "willingness",
    "contactability",
    "treatment_history",
    "exposure",
    "product_seasonality",
]
FAMILIES: tuple[str, ...] = get_args(Family)  # in registry order


@dataclass(frozen=True)
class FeatureSpec:
    """One model input.

    ``reason_en`` / ``reason_zh`` are short templates for a reason code that quote the
    account's own value, e.g. ``"{value:.0f} broken promise{s} to pay in the last 6 months"``;
    :func:`format_reason` fills them, with the English plural marks ``{s}``, ``{ies}`` and
    ``{times}`` ("once", "2 times") agreeing with the value. A 0/1 feature's template is one
    ``{flag:...|...}`` mark (written by :func:`flag_reason`): the reason states the fact its
    value states, never the number ("no hardship treatment is running" for 0).

    ``missing_en`` / ``missing_zh`` state what a missing value means, as a reason ("no hardship
    treatment on record"): a feature that is missing by definition (a time since an event that
    never happened, a trend of fewer than 2 statements) can push the risk like any value.
    """

    name: str
    family: Family
    window_months: int | None
    description_en: str
    description_zh: str
    reason_en: str
    reason_zh: str
    direction: Literal[-1, 0, 1] = 0
    kind: Literal["numeric", "categorical"] = "numeric"
    # the portfolio table the feature is computed from: when an optional table
    # (collection_actions, treatments) is absent, its features are left missing
    source: Literal["statements", "accounts", "collection_actions", "treatments", "as_of"] = (
        "statements"
    )
    missing_en: str = ""
    missing_zh: str = ""


@dataclass(frozen=True)
class FeatureSet:
    """A named, versioned, ordered set of features; every trained model records it."""

    name: str
    version: str
    features: tuple[FeatureSpec, ...]

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.features]

    def spec(self, name: str) -> FeatureSpec:
        for spec in self.features:
            if spec.name == name:
                return spec
        raise KeyError(f"feature {name!r} is not in feature set {self.name} v{self.version}")


FLAG_MARK = "{flag:"  # how a 0/1 feature's template starts: see flag_reason


def flag_reason(when_1: str, when_0: str) -> str:
    """The reason template of a 0/1 (flag) feature: ``when_1`` for the value 1, ``when_0`` for 0.

    The template is the single mark ``{flag:when_1|when_0}`` that :func:`format_reason` fills,
    so a reason states the fact the account's value states ("a hardship treatment is
    running" / "no hardship treatment is running"), not "... is running (flag 0)". It is a plain
    string, so a model's recorded feature set keeps it as any other template.
    """
    for text in (when_1, when_0):
        if not text or any(mark in text for mark in "{}|"):
            raise ValueError(f"a flag reason needs a text without braces or '|', got {text!r}")
    return f"{FLAG_MARK}{when_1}|{when_0}}}"


def is_flag(spec: FeatureSpec) -> bool:
    """True for a 0/1 feature, whose reasons are worded by :func:`flag_reason`."""
    return spec.reason_en.startswith(FLAG_MARK)


class _Flag:
    """A 0/1 value under the ``{flag:when_1|when_0}`` mark: formats as the text it selects."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __format__(self, texts: str) -> str:
        when_1, bar, when_0 = texts.partition("|")
        if not bar:
            raise ValueError(f"a flag mark needs two texts, 'when 1|when 0', got {texts!r}")
        number = float(self.value)  # type: ignore[arg-type]  # a label: ValueError / TypeError
        if number == 1:
            return when_1
        if number == 0:
            return when_0
        raise ValueError(f"flag value {self.value!r} is neither 0 nor 1")


def format_reason(template: str, value: object) -> str:
    """A reason template filled with the account's ``value``.

    Besides ``{value}`` (with any format spec), a template may use the plural marks ``{s}``
    ("" for one, "s" otherwise), ``{ies}`` ("y" / "ies") and ``{times}`` ("once" or
    "N times"), decided on the value rounded to a whole number as the text shows it (its sign
    aside: "-1 day"), so a
    reason never reads "refused to pay 1 times". Chinese templates have no plural and ignore
    the marks. A 0/1 feature's ``{flag:when_1|when_0}`` mark (:func:`flag_reason`) becomes the
    text for its value; any other value raises :class:`ValueError`. A difference's
    ``{sign:above|below}`` mark reads by the value's sign, with ``{magnitude}`` its size
    ("12% below the 12-month average"). Raises what
    :meth:`str.format` raises for a value the template cannot format (a category under
    ``{value:.0f}``); :func:`rollrisk.models.explanations.reason_text` falls back to the
    description then (and words a missing value itself).
    """
    try:
        count: float | None = round(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # a label, NaN, an infinity
        count = None
    one = count is not None and abs(count) == 1  # "-1 day" too: a change by one
    times = "once" if one else f"{count:.0f} times" if count is not None else "times"
    try:
        magnitude: object = abs(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        magnitude = value  # a label: a numeric format of it fails, and the caller falls back
    return _without_negative_zero(template).format(
        value=value,
        flag=_Flag(value),
        sign=_Sign(value),
        magnitude=magnitude,
        s="" if one else "s",
        ies="y" if one else "ies",
        times=times,
    )


# a float format of the value or its magnitude, to which the "z" option is added
_FLOAT_SPEC = re.compile(r"\{(value|magnitude):([+\- ]?)(?=[#0]?\d*[,_]?(?:\.\d+)?[eEfFgG%]\})")


@functools.lru_cache(maxsize=1024)
def _without_negative_zero(template: str) -> str:
    """``template`` with each float format of ``{value}`` or ``{magnitude}`` given the "z"
    option, so that a value rounding to zero reads "+0.0", never "-0.0" ("days past due
    changing by -0.0 a month")."""
    return _FLOAT_SPEC.sub(r"{\1:\2z", template)


class _Sign:
    """The ``{sign:above|below}`` mark of a difference's template: the first text for a value
    at or above 0, the second below it, so that a reason reads "12% below the 12-month
    average" / "比近12个月平均低12%" with ``{magnitude}``, never "-12% against" or "多-5天"."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __format__(self, texts: str) -> str:
        at_or_above, bar, below = texts.partition("|")
        if not bar:
            raise ValueError(f"a sign mark needs two texts, 'at or above 0|below 0', got {texts!r}")
        return below if float(self.value) < 0 else at_or_above  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# The concrete feature set. Each entry's polars expression lives in
# :mod:`rollrisk.features.history` under the same name (one declaration per feature; a unit test
# checks the two agree). ``window_months`` is the look-back in months of statements (counted
# back from the latest statement known at the as-of) or of calendar time before the as-of
# (actions, treatments); ``None`` means the whole known history or a point value.
# ---------------------------------------------------------------------------------------------


def _spec(
    name: str,
    family: Family,
    window_months: int | None,
    en: str,
    zh: str,
    reason_en: str,
    reason_zh: str,
    direction: Literal[-1, 0, 1] = 0,
    kind: Literal["numeric", "categorical"] = "numeric",
    source: Literal["statements", "accounts", "collection_actions", "treatments", "as_of"] = (
        "statements"
    ),
) -> FeatureSpec:
    return FeatureSpec(
        name=name,
        family=family,
        window_months=window_months,
        description_en=en,
        description_zh=zh,
        reason_en=reason_en,
        reason_zh=reason_zh,
        direction=direction,
        kind=kind,
        source=source,
    )


def _bucket_months(bucket: str, low: int, high: int, months: int) -> FeatureSpec:
    return _spec(
        f"months_in_{bucket.lower()}_{months}m",
        "delinquency_history",
        months,
        f"Number of the last {months} statement months whose DPD was in bucket {bucket} "
        f"({low}-{high} days past due).",
        f"近{months}个月账单中逾期天数处于{bucket}({low}-{high}天)的月数。",
        f"{{value:.0f}} of the last {months} months in {bucket} ({low}-{high} days past due)",
        f"近{months}个月有{{value:.0f}}个月处于{bucket}逾期",
        1,
    )


_D, _P, _W, _C, _T, _E, _S = FAMILIES  # short names for the table below

_FEATURES: tuple[FeatureSpec, ...] = (
    # -- delinquency history (statements) ----------------------------------------------------
    _spec(
        "dpd_current",
        _D,
        None,
        "Days past due on the latest statement known at the as-of date.",
        "观察日已知的最近一期账单的逾期天数。",
        # the statement's DPD, not the as-of's: an output's `dpd` is aged to the as-of, so
        # "now" would read two numbers for one day (68 here, 79 in the column)
        "{value:.0f} day{s} past due at the latest statement",
        "最近一期账单逾期{value:.0f}天",
        1,
    ),
    _spec(
        "dpd_max_3m",
        _D,
        3,
        "Highest days past due over the last 3 statement months.",
        "近3个月账单的最高逾期天数。",
        "up to {value:.0f} day{s} past due in the last 3 months",
        "近3个月最高逾期{value:.0f}天",
        1,
    ),
    _spec(
        "dpd_max_6m",
        _D,
        6,
        "Highest days past due over the last 6 statement months.",
        "近6个月账单的最高逾期天数。",
        "up to {value:.0f} day{s} past due in the last 6 months",
        "近6个月最高逾期{value:.0f}天",
        1,
    ),
    _spec(
        "dpd_max_12m",
        _D,
        12,
        "Highest days past due over the last 12 statement months.",
        "近12个月账单的最高逾期天数。",
        "up to {value:.0f} day{s} past due in the last 12 months",
        "近12个月最高逾期{value:.0f}天",
        1,
    ),
    *(
        _bucket_months(bucket, low, high, months)
        for months in (3, 6, 12)
        for bucket, low, high in (("M1", 1, 29), ("M2", 30, 59), ("M3", 60, 89))
    ),
    _spec(
        "months_delinquent_12m",
        _D,
        12,
        "Number of the last 12 statement months with any days past due (DPD >= 1).",
        "近12个月账单中有逾期(逾期天数>=1)的月数。",
        "delinquent in {value:.0f} of the last 12 months",
        "近12个月有{value:.0f}个月逾期",
        1,
    ),
    _spec(
        "consecutive_delinquent_months",
        _D,
        None,
        "Length in statement months of the current delinquency spell (consecutive latest "
        "statements with DPD >= 1).",
        "当前连续逾期的账单月数。",
        "delinquent for {value:.0f} consecutive month{s}",
        "已连续逾期{value:.0f}个月",
        1,
    ),
    _spec(
        "roll_count_12m",
        _D,
        12,
        "Number of month-over-month moves to a worse bucket (M0->M1, M1->M2, ...) over the "
        "last 12 statement months.",
        "近12个月账单中逾期阶段逐月恶化(如M0→M1、M1→M2)的次数。",
        "{value:.0f} move{s} to a worse delinquency bucket in the last 12 months",
        "近12个月逾期阶段恶化{value:.0f}次",
        1,
    ),
    _spec(
        "cure_count_12m",
        _D,
        12,
        "Number of returns from a delinquent bucket to current (M0) over the last 12 "
        "statement months.",
        "近12个月从逾期状态回到正常(M0)的次数。",
        "{value:.0f} cure{s} back to current in the last 12 months",
        "近12个月逾期后还清{value:.0f}次",
    ),
    _spec(
        "delinquency_episodes_12m",
        _D,
        12,
        "Number of separate delinquency episodes (current -> delinquent) started over the "
        "last 12 statement months, including the current one.",
        "近12个月新发生的逾期次数(由正常转为逾期,含当前这次)。",
        "{value:.0f} separate delinquenc{ies} in the last 12 months",
        "近12个月发生{value:.0f}次逾期",
        1,
    ),
    _spec(
        "months_since_previous_delinquency",
        _D,
        None,
        "Statement months between the latest statement and the last delinquent statement "
        "before the current spell; missing when the current spell is the first known "
        "delinquency.",
        "当前这次逾期之前的上一次逾期距今的账单月数;若当前为首次逾期则为空。",
        "previous delinquency {value:.0f} month{s} ago",
        "上一次逾期在{value:.0f}个月前",
        -1,
    ),
    _spec(
        "first_delinquency",
        _D,
        None,
        "1 when the current spell is the first delinquency in the known history, else 0.",
        "当前逾期是否为已知历史中的首次逾期(是为1,否为0)。",
        flag_reason("first delinquency on record", "not the first delinquency on record"),
        flag_reason("历史首次逾期", "非历史首次逾期"),
        -1,
    ),
    # -- payment behaviour and capacity (statements, accounts) -------------------------------
    _spec(
        "paid_to_due_ratio_last",
        _P,
        1,
        "Amount paid divided by amount due on the latest statement (missing when nothing was due).",
        "最近一期账单的还款额与应还额之比(无应还额时为空)。",
        "paid {value:.0%} of the amount due last month",
        "上月还款占应还额的{value:.0%}",
        -1,
        source="statements",
    ),
    _spec(
        "paid_to_due_ratio_3m",
        _P,
        3,
        "Total paid divided by total due over the last 3 statement months (missing when nothing "
        "was due).",
        "近3个月还款总额与应还总额之比(均无应还款时为空)。",
        "paid {value:.0%} of the amounts due in the last 3 months",
        "近3个月还款占应还额的{value:.0%}",
        -1,
    ),
    _spec(
        "paid_to_due_ratio_6m",
        _P,
        6,
        "Total paid divided by total due over the last 6 statement months (missing when nothing "
        "was due).",
        "近6个月还款总额与应还总额之比(均无应还款时为空)。",
        "paid {value:.0%} of the amounts due in the last 6 months",
        "近6个月还款占应还额的{value:.0%}",
        -1,
    ),
    _spec(
        "paid_to_min_due_ratio_3m",
        _P,
        3,
        "Total paid divided by total minimum due over the last 3 statement months (missing when "
        "no minimum payment was due).",
        "近3个月还款总额与最低还款额总额之比(均无最低还款额时为空)。",
        "paid {value:.0%} of the minimum due in the last 3 months",
        "近3个月还款为最低还款额的{value:.0%}",
        -1,
    ),
    _spec(
        "min_due_only_streak",
        _P,
        None,
        "Consecutive latest statements on which the borrower paid the minimum due but "
        "clearly less than the full amount due (at least min_due, below 110% of it).",
        "最近连续只还最低还款额(不低于最低还款额且不超过其110%,少于应还全额)的账单月数。",
        "paid only the minimum for {value:.0f} month{s} in a row",
        "连续{value:.0f}个月只还最低还款额",
        1,
    ),
    _spec(
        "min_due_only_months_6m",
        _P,
        6,
        "Number of the last 6 statement months on which only the minimum due was paid.",
        "近6个月只还最低还款额的月数。",
        "paid only the minimum in {value:.0f} of the last 6 months",
        "近6个月有{value:.0f}个月只还最低还款额",
        1,
    ),
    _spec(
        "partial_payments_6m",
        _P,
        6,
        "Number of the last 6 statement months with a payment above zero but below the "
        "minimum due.",
        "近6个月还款大于零但低于最低还款额(部分还款)的月数。",
        "{value:.0f} partial payment{s} below the minimum in the last 6 months",
        "近6个月有{value:.0f}次低于最低还款额的部分还款",
        1,
    ),
    _spec(
        "zero_payments_3m",
        _P,
        3,
        "Number of the last 3 statement months with something due and nothing paid.",
        "近3个月有应还款但未还任何款项的月数。",
        "nothing paid in {value:.0f} of the last 3 months",
        "近3个月有{value:.0f}个月完全未还款",
        1,
    ),
    _spec(
        "utilisation_current",
        _P,
        None,
        "Balance owed on the latest statement divided by the credit limit (a credit balance "
        "owes nothing: 0).",
        "最近一期账单欠款余额与授信额度之比(额度使用率;余额为负即溢缴款时计为0)。",
        "using {value:.0%} of the credit limit",
        "额度使用率{value:.0%}",
        1,
    ),
    _spec(
        "utilisation_mean_6m",
        _P,
        6,
        "Mean of balance owed / credit limit over the last 6 statement months (a credit "
        "balance counts as 0).",
        "近6个月额度使用率的平均值(溢缴款计为0)。",
        "average credit use {value:.0%} over 6 months",
        "近6个月平均额度使用率{value:.0%}",
        1,
    ),
    _spec(
        "utilisation_trend_6m",
        _P,
        6,
        "Least-squares slope of balance owed / credit limit per month over the last 6 "
        "statement months (positive: rising use; a credit balance counts as 0); missing with "
        "fewer than 2 statements.",
        "近6个月额度使用率的每月变化斜率(最小二乘;正值表示使用率上升;溢缴款计为0);少于2期时为空。",
        "credit use rising by {value:.1%} a month",
        "额度使用率每月上升{value:.1%}",
        1,
    ),
    # -- willingness and contact (collection actions) ----------------------------------------
    _spec(
        "promises_made_3m",
        _W,
        3,
        "Promises to pay recorded in the 3 months before the as-of date.",
        "观察日前3个月内的承诺还款次数。",
        "{value:.0f} promise{s} to pay in the last 3 months",
        "近3个月承诺还款{value:.0f}次",
        source="collection_actions",
    ),
    _spec(
        "promises_kept_6m",
        _W,
        6,
        "Promises to pay made in the 6 months before the as-of whose promised date has "
        "passed and whose next known statement shows at least the promised amount paid.",
        "近6个月内承诺还款日已过、且其后首期已知账单还款额不低于承诺金额的承诺次数(守约)。",
        "{value:.0f} promise{s} to pay kept in the last 6 months",
        "近6个月守约还款{value:.0f}次",
        -1,
        source="collection_actions",
    ),
    _spec(
        "promises_broken_6m",
        _W,
        6,
        "Promises to pay made in the 6 months before the as-of whose promised date has "
        "passed and whose next known statement shows less than the promised amount paid.",
        "近6个月内承诺还款日已过、但其后首期已知账单还款额低于承诺金额的承诺次数(违约)。",
        "{value:.0f} broken promise{s} to pay in the last 6 months",
        "近6个月违约承诺{value:.0f}次",
        1,
        source="collection_actions",
    ),
    _spec(
        "promise_keep_rate_6m",
        _W,
        6,
        "Kept promises / (kept + broken) over the last 6 months; missing when no promise "
        "has come due.",
        "近6个月已到期承诺中守约的比例;没有到期承诺时为空。",
        "kept {value:.0%} of promises to pay",
        "守约率{value:.0%}",
        -1,
        source="collection_actions",
    ),
    _spec(
        "refusals_6m",
        _W,
        6,
        "Contacts in the last 6 months where the borrower refused to pay.",
        "近6个月联系中明确拒绝还款的次数。",
        "refused to pay {times} in the last 6 months",
        "近6个月拒绝还款{value:.0f}次",
        1,
        source="collection_actions",
    ),
    _spec(
        "disputes_6m",
        _W,
        6,
        "Contacts in the last 6 months where the borrower disputed the debt.",
        "近6个月对欠款提出异议的次数。",
        "{value:.0f} dispute{s} in the last 6 months",
        "近6个月提出异议{value:.0f}次",
        source="collection_actions",
    ),
    _spec(
        "hardship_claims_6m",
        _W,
        6,
        "Contacts in the last 6 months where the borrower reported hardship (job loss, "
        "illness, disaster).",
        "近6个月报告困难(失业、疾病、灾害等)的次数。",
        "reported hardship {times} in the last 6 months",
        "近6个月报告困难{value:.0f}次",
        source="collection_actions",
    ),
    _spec(
        "contact_rate_3m",
        _W,
        3,
        "Share of collection actions in the last 3 months that reached the borrower "
        "(contacted, promise, refusal, dispute or hardship claim); missing without actions.",
        "近3个月催收动作中联系到借款人(接通、承诺、拒绝、异议、报困难)的比例;无动作时为空。",
        "reached on {value:.0%} of collection attempts",
        "催收联系成功率{value:.0%}",
        -1,
        source="collection_actions",
    ),
    _spec(
        "actions_3m",
        _W,
        3,
        "Collection actions of any channel in the 3 months before the as-of date.",
        "观察日前3个月内各渠道催收动作总数。",
        "{value:.0f} collection action{s} in the last 3 months",
        "近3个月催收{value:.0f}次",
        source="collection_actions",
    ),
    # -- contactability (collection actions) -------------------------------------------------
    _spec(
        "no_answers_3m",
        _C,
        3,
        "Actions in the last 3 months that went unanswered.",
        "近3个月催收无人接听的次数。",
        "{value:.0f} unanswered contact attempt{s} in the last 3 months",
        "近3个月{value:.0f}次联系无人接听",
        1,
        source="collection_actions",
    ),
    _spec(
        "wrong_numbers_6m",
        _C,
        6,
        "Actions in the last 6 months that reached a wrong number.",
        "近6个月拨打到错误号码的次数。",
        "{value:.0f} wrong number{s} in the last 6 months",
        "近6个月{value:.0f}次号码错误",
        1,
        source="collection_actions",
    ),
    _spec(
        "unreachable_6m",
        _C,
        6,
        "Actions in the last 6 months recorded as unreachable (phone off, number void).",
        "近6个月记录为无法联系(关机、空号)的次数。",
        "unreachable {times} in the last 6 months",
        "近6个月{value:.0f}次无法联系",
        1,
        source="collection_actions",
    ),
    _spec(
        "failed_contact_streak",
        _C,
        None,
        "Consecutive latest actions before the as-of that did not reach the borrower.",
        "观察日前最近连续未联系到借款人的催收次数。",
        "last {value:.0f} contact attempt{s} all failed",
        "最近连续{value:.0f}次未联系上",
        1,
        source="collection_actions",
    ),
    _spec(
        "days_since_last_contact",
        _C,
        None,
        "Days from the last action that reached the borrower to the as-of date; missing when "
        "the borrower has never been reached (or there is no action log).",
        "最近一次成功联系到借款人距观察日的天数;从未联系上(或无催收记录)时为空。",
        "last reached {value:.0f} day{s} ago",
        "距上次联系成功{value:.0f}天",
        1,
        source="collection_actions",
    ),
    # -- treatment history (treatments) ------------------------------------------------------
    _spec(
        "grace_periods_12m",
        _T,
        12,
        "Grace periods granted (known) in the 12 months before the as-of date.",
        "近12个月获批的宽限期次数。",
        "{value:.0f} grace period{s} in the last 12 months",
        "近12个月获得宽限期{value:.0f}次",
        source="treatments",
    ),
    _spec(
        "interest_waivers_12m",
        _T,
        12,
        "Interest waivers granted (known) in the 12 months before the as-of date.",
        "近12个月获批的息费减免次数。",
        "{value:.0f} interest waiver{s} in the last 12 months",
        "近12个月获得息费减免{value:.0f}次",
        source="treatments",
    ),
    _spec(
        "restructures_ever",
        _T,
        None,
        "Restructures into instalments known at the as-of date, over the whole history.",
        "截至观察日已知的债务重组(分期)次数。",
        "restructured {times}",
        "债务重组{value:.0f}次",
        source="treatments",
    ),
    _spec(
        "extensions_ever",
        _T,
        None,
        "One-time first-delinquency extensions known at the as-of date, over the whole history.",
        "截至观察日已知的首次逾期免息展期次数。",
        "{value:.0f} first-delinquency extension{s}",
        "首逾展期{value:.0f}次",
        source="treatments",
    ),
    _spec(
        "treatment_active",
        _T,
        None,
        "1 when a treatment known at the as-of has started and not ended by then, else 0.",
        "观察日是否有已生效且未结束的纾困措施(是为1,否为0)。",
        flag_reason("a hardship treatment is running", "no hardship treatment is running"),
        flag_reason("纾困措施执行中", "当前无纾困措施"),
        source="treatments",
    ),
    _spec(
        "months_since_last_treatment",
        _T,
        None,
        "Months from the start of the latest known treatment to the as-of date; missing "
        "without any treatment.",
        "最近一次纾困措施开始距观察日的月数;从未获得时为空。",
        "last treatment {value:.0f} month{s} ago",
        "上次纾困措施在{value:.0f}个月前",
        source="treatments",
    ),
    # -- exposure (statements, accounts) -----------------------------------------------------
    _spec(
        "balance_current",
        _E,
        None,
        "Balance owed on the latest statement (0 for a credit balance, when the lender owes "
        "the borrower).",
        "最近一期账单的欠款余额(余额为负即溢缴款时为0)。",
        "balance of {value:,.0f}",
        "未结余额{value:,.0f}",
    ),
    _spec(
        "credit_limit",
        _E,
        None,
        "Credit limit of the account.",
        "账户授信额度。",
        "credit limit of {value:,.0f}",
        "授信额度{value:,.0f}",
        source="accounts",
    ),
    _spec(
        "amount_overdue",
        _E,
        None,
        "Unpaid part of the latest statement's amount due (amount_due - amount_paid, "
        "floored at 0).",
        "最近一期账单应还未还的金额(应还额减还款额,最低为0)。",
        "{value:,.0f} overdue",
        "逾期金额{value:,.0f}",
    ),
    _spec(
        "overdue_to_limit_ratio",
        _E,
        None,
        "Amount overdue divided by the credit limit.",
        "逾期金额与授信额度之比。",
        "overdue amount is {value:.0%} of the limit",
        "逾期金额占额度的{value:.0%}",
        1,
    ),
    # -- product and seasonality -------------------------------------------------------------
    _spec(
        "product",
        _S,
        None,
        "Product line (bnpl, credit_card, cash_loan, merchant_loan, agri_loan).",
        "产品线(白条、信用卡、金条、商户贷、京农贷)。",
        "product {value}",
        "产品{value}",
        kind="categorical",
        source="accounts",
    ),
    _spec(
        "as_of_month",
        _S,
        None,
        "Calendar month (1-12) of the as-of date; with product it places the observation in "
        "the product's cycle (harvest for agricultural loans, sales season for merchants).",
        "观察日所在月份(1-12);与产品结合反映所处的产品周期(农贷的收获季、商户的销售季)。",
        "the time of year: month {value:.0f} (the product's season)",
        "所处时节：{value:.0f}月(产品的季节性)",
        source="as_of",
    ),
    _spec(
        "months_on_book",
        _S,
        None,
        "Whole months from account opening to the as-of date.",
        "开户至观察日的完整月数(账龄)。",
        "account open for {value:.0f} month{s}",
        "账龄{value:.0f}个月",
        source="accounts",
    ),
    _spec(
        "days_since_statement",
        _S,
        None,
        "Days from the latest known statement's cycle end to the as-of date (where the "
        "as-of falls in the account's billing cycle).",
        "最近一期已知账单的账单日距观察日的天数(观察日在账单周期中的位置)。",
        "last statement {value:.0f} day{s} before the as-of date",
        "观察日距上期账单日{value:.0f}天",
    ),
)


def _stat(
    name: str,
    family: Family,
    window_months: int | None,
    en: str,
    zh: str,
    reason_en: str,
    reason_zh: str,
    direction: Literal[-1, 0, 1] = 0,
    source: Literal["statements", "collection_actions"] = "statements",
) -> FeatureSpec:
    return _spec(
        name, family, window_months, en, zh, reason_en, reason_zh, direction, source=source
    )


def _dpd_dynamics() -> tuple[FeatureSpec, ...]:
    """Differences, trends and volatility of days past due over several windows."""
    last_minus_mean = tuple(
        _stat(
            f"dpd_last_minus_mean_{months}m",
            _D,
            months,
            f"Days past due on the latest statement minus their mean over the last {months} "
            "statement months (positive: later than usual).",
            f"最近一期逾期天数减去近{months}个月平均逾期天数(正值表示比平时更晚)。",
            f"{{magnitude:.0f}} day{{s}} {{sign:more|fewer}} past due than the {months}-month "
            "average",
            f"逾期天数比近{months}个月平均{{sign:多|少}}{{magnitude:.0f}}天",
        )
        for months in (6, 12)
    )
    trends = tuple(
        _stat(
            f"dpd_trend_{months}m",
            _D,
            months,
            f"Least-squares slope of days past due per month over the last {months} statement "
            "months (positive: falling further behind); missing with fewer than 2 statements.",
            f"近{months}个月逾期天数的每月变化斜率(最小二乘;正值表示越欠越久);少于2期时为空。",
            f"days past due changing by {{value:+.1f}} a month over {months} months",
            f"近{months}个月逾期天数每月变化{{value:+.1f}}天",
        )
        for months in (3, 6, 12)
    )
    volatility = tuple(
        _stat(
            f"dpd_volatility_{months}m",
            _D,
            months,
            f"Standard deviation of days past due over the last {months} statement months "
            "(in and out of arrears); missing with fewer than 2 statements.",
            f"近{months}个月逾期天数的标准差(反复逾期与还清);少于2期时为空。",
            f"days past due varying by {{value:.0f}} over {months} months",
            f"近{months}个月逾期天数波动{{value:.0f}}天",
        )
        for months in (6, 12)
    )
    change = _stat(
        "dpd_change_last",
        _D,
        2,
        "Days past due on the latest statement minus those on the statement of the month "
        "before; missing without that statement.",
        "最近一期账单逾期天数减去上月账单逾期天数;上月无账单时为空。",
        "{value:+.0f} day{s} past due since last month",
        "逾期天数较上月变化{value:+.0f}天",
    )
    cure = _stat(
        "months_since_last_cure",
        _D,
        None,
        "Statement months since the account last returned from a delinquent bucket to current "
        "(M0); missing when it never has in the known history.",
        "上一次由逾期回到正常(M0)距今的账单月数;已知历史中从未回到正常时为空。",
        "last back to current {value:.0f} month{s} ago",
        "上次恢复正常在{value:.0f}个月前",
    )
    return (change, *last_minus_mean, *trends, *volatility, cure)


def _payment_dynamics() -> tuple[FeatureSpec, ...]:
    """Recencies, differences, trends and volatility of payments and utilisation; ratios to due."""
    return (
        _stat(
            "months_since_last_payment",
            _P,
            None,
            "Statement months since the last statement with a payment above zero (0: the "
            "latest); missing when nothing has been paid in the known history.",
            "最近一次有还款的账单距今的账单月数(0为最近一期);已知历史中从未还款时为空。",
            "last payment {value:.0f} month{s} ago",
            "上次还款在{value:.0f}个月前",
            1,
        ),
        _stat(
            "months_since_last_full_payment",
            _P,
            None,
            "Statement months since the last statement whose amount due was paid in full; "
            "missing when it never was in the known history.",
            "最近一次全额还清应还款的账单距今的账单月数;已知历史中从未全额还款时为空。",
            "last paid in full {value:.0f} month{s} ago",
            "上次全额还款在{value:.0f}个月前",
        ),
        _stat(
            "paid_to_due_ratio_12m",
            _P,
            12,
            "Total paid divided by total due over the last 12 statement months (missing when "
            "nothing was due).",
            "近12个月还款总额与应还总额之比(均无应还款时为空)。",
            "paid {value:.0%} of what was due over 12 months",
            "近12个月还款为应还额的{value:.0%}",
            -1,
        ),
        _stat(
            "paid_to_due_change_last",
            _P,
            2,
            "Paid-to-due ratio of the latest statement minus that of the month before; missing "
            "when either had nothing due.",
            "最近一期还款额与应还额之比减去上月的该比值;任一期无应还额时为空。",
            "share of the due paid changed by {value:+.0%} since last month",
            "还款比例较上月变化{value:+.0%}",
        ),
        _stat(
            "paid_to_due_last_minus_mean_6m",
            _P,
            6,
            "Paid-to-due ratio of the latest statement minus its mean over the last 6 statement "
            "months (negative: paying less of the due than usual; missing when nothing was due "
            "on the latest statement).",
            "最近一期还款比例减去近6个月平均还款比例(负值表示比平时还得少;最近一期无应还款时为空)。",
            "share of the due paid {magnitude:.0%} {sign:above|below} its 6-month average",
            "还款比例比近6个月平均{sign:高|低}{magnitude:.0%}",
        ),
        _stat(
            "paid_to_due_trend_6m",
            _P,
            6,
            "Least-squares slope per month of the paid-to-due ratio over the last 6 statement "
            "months; missing with fewer than 2 months with something due.",
            "近6个月还款比例的每月变化斜率(最小二乘);有应还额的月份少于2个时为空。",
            "share of the due paid changing by {value:+.0%} a month",
            "还款比例每月变化{value:+.0%}",
        ),
        _stat(
            "paid_to_due_volatility_6m",
            _P,
            6,
            "Standard deviation of the paid-to-due ratio over the last 6 statement months "
            "(irregular payment); missing with fewer than 2 months with something due.",
            "近6个月还款比例的标准差(还款不规律程度);有应还额的月份少于2个时为空。",
            "irregular payments (share paid varies by {value:.0%})",
            "还款不规律(还款比例波动{value:.0%})",
        ),
        _stat(
            "overdue_to_due_ratio",
            _P,
            None,
            "Unpaid part of the latest statement's amount due divided by that amount due "
            "(arrears to due); missing when nothing was due.",
            "最近一期账单应还未还金额与应还额之比;无应还额时为空。",
            "{value:.0%} of the latest amount due left unpaid",
            "最近一期应还款有{value:.0%}未还",
            1,
        ),
        _stat(
            "utilisation_change_last",
            _P,
            2,
            "Utilisation (balance owed / credit limit) on the latest statement minus that of "
            "the month before.",
            "最近一期额度使用率减去上月额度使用率。",
            "utilisation changed by {value:+.0%} since last month",
            "额度使用率较上月变化{value:+.0%}",
        ),
        _stat(
            "utilisation_last_minus_mean_12m",
            _P,
            12,
            "Utilisation on the latest statement minus its mean over the last 12 statement months.",
            "最近一期额度使用率减去近12个月平均使用率。",
            "utilisation {magnitude:.0%} {sign:above|below} the 12-month average",
            "额度使用率比近12个月平均{sign:高|低}{magnitude:.0%}",
        ),
        *(
            _stat(
                f"utilisation_trend_{months}m",
                _P,
                months,
                f"Least-squares slope of utilisation per month over the last {months} "
                "statement months (positive: rising use; a credit balance counts as 0); "
                "missing with fewer than 2 statements.",
                f"近{months}个月额度使用率的每月变化斜率(最小二乘;正值表示使用率上升;溢缴款计为0);"
                "少于2期时为空。",
                f"utilisation changing by {{value:+.1%}} a month over {months} months",
                f"近{months}个月额度使用率每月变化{{value:+.1%}}",
                1,
            )
            for months in (3, 12)
        ),
        *(
            _stat(
                f"utilisation_volatility_{months}m",
                _P,
                months,
                f"Standard deviation of utilisation over the last {months} statement months; "
                "missing with fewer than 2 statements.",
                f"近{months}个月额度使用率的标准差;少于2期时为空。",
                f"utilisation varying by {{value:.0%}} over {months} months",
                f"近{months}个月额度使用率波动{{value:.0%}}",
            )
            for months in (6, 12)
        ),
    )


def _contact_dynamics() -> tuple[FeatureSpec, ...]:
    """Recencies of promises, broken promises and hardship claims; contact-outcome rates."""
    actions: Literal["collection_actions"] = "collection_actions"
    return (
        _stat(
            "days_since_last_promise",
            _W,
            None,
            "Days from the last promise to pay to the as-of date; missing without any.",
            "最近一次承诺还款距观察日的天数;从未承诺时为空。",
            "last promise to pay {value:.0f} day{s} ago",
            "上次承诺还款在{value:.0f}天前",
            source=actions,
        ),
        _stat(
            "days_since_last_broken_promise",
            _W,
            12,
            "Days from the promised date of the last broken promise (made in the 12 months "
            "before the as-of) to the as-of date; missing without one.",
            "近12个月内最近一次违约承诺的承诺还款日距观察日的天数;没有违约承诺时为空。",
            "last broken promise {value:.0f} day{s} ago",
            "上次违约承诺在{value:.0f}天前",
            source=actions,
        ),
        _stat(
            "days_since_last_hardship_claim",
            _W,
            None,
            "Days from the last hardship claim (job loss, illness, disaster) to the as-of date; "
            "missing without any.",
            "最近一次报告困难(失业、疾病、灾害等)距观察日的天数;从未报告时为空。",
            "hardship reported {value:.0f} day{s} ago",
            "上次报告困难在{value:.0f}天前",
            source=actions,
        ),
        _stat(
            "promise_keep_rate_12m",
            _W,
            12,
            "Kept promises / (kept + broken) over the last 12 months; missing when no promise "
            "has come due.",
            "近12个月已到期承诺中守约的比例;没有到期承诺时为空。",
            "kept {value:.0%} of promises in the last 12 months",
            "近12个月守约比例{value:.0%}",
            -1,
            source=actions,
        ),
        _stat(
            "contact_rate_6m",
            _W,
            6,
            "Share of collection actions in the last 6 months that reached the borrower; "
            "missing without actions.",
            "近6个月催收动作中联系到借款人的比例;无动作时为空。",
            "reached on {value:.0%} of attempts in the last 6 months",
            "近6个月联系成功率{value:.0%}",
            -1,
            source=actions,
        ),
        _stat(
            "promise_rate_6m",
            _W,
            6,
            "Share of the contacts in the last 6 months that reached the borrower and ended in "
            "a promise to pay; missing without such contacts.",
            "近6个月成功联系中达成还款承诺的比例;无成功联系时为空。",
            "promised to pay on {value:.0%} of contacts",
            "近6个月联系中承诺还款占{value:.0%}",
            source=actions,
        ),
        _stat(
            "refusal_rate_6m",
            _W,
            6,
            "Share of the contacts in the last 6 months that reached the borrower and ended in "
            "a refusal to pay; missing without such contacts.",
            "近6个月成功联系中明确拒绝还款的比例;无成功联系时为空。",
            "refused to pay on {value:.0%} of contacts in the last 6 months",
            "近6个月联系中拒绝还款占{value:.0%}",
            1,
            source=actions,
        ),
        _stat(
            "no_answer_rate_3m",
            _C,
            3,
            "Share of collection actions in the last 3 months that went unanswered; missing "
            "without actions.",
            "近3个月催收动作中无人接听的比例;无动作时为空。",
            "{value:.0%} of attempts unanswered in the last 3 months",
            "近3个月无人接听占{value:.0%}",
            source=actions,
        ),
    )


DYNAMICS_FEATURES: tuple[FeatureSpec, ...] = (
    *_dpd_dynamics(),
    *_payment_dynamics(),
    *_contact_dynamics(),
)
"""The features added in v1.1.0: differences (last minus previous, last minus mean), trends
and volatility over 3/6/12 months, time since events, ratios to due, promise-keeping and
contact-outcome rates (the usual extensions of monthly statement data)."""


def _short_history(months: int | None) -> tuple[str, str]:
    return (
        f"fewer than 2 statements in the last {months} months (a new or short history)",
        f"近{months}个月账单不足2期(新账户或历史较短)",
    )


_MISSING_WORDING: dict[str, tuple[str, str]] = {
    "months_since_previous_delinquency": ("no earlier delinquency on record", "此前无逾期记录"),
    "first_delinquency": ("not known whether this is the first delinquency", "是否首次逾期未知"),
    "treatment_active": (
        "not known whether a hardship treatment is running (no treatment record)",
        "是否有纾困措施执行中未知(无纾困记录)",
    ),
    "paid_to_due_ratio_last": ("nothing was due on the latest statement", "最近一期账单无应还款"),
    "overdue_to_due_ratio": ("nothing was due on the latest statement", "最近一期账单无应还款"),
    "promise_keep_rate_6m": (
        "no promise to pay came due in the last 6 months",
        "近6个月无到期的还款承诺",
    ),
    "promise_keep_rate_12m": (
        "no promise to pay came due in the last 12 months",
        "近12个月无到期的还款承诺",
    ),
    "contact_rate_3m": ("no collection attempt in the last 3 months", "近3个月无催收动作"),
    "contact_rate_6m": ("no collection attempt in the last 6 months", "近6个月无催收动作"),
    "no_answer_rate_3m": ("no collection attempt in the last 3 months", "近3个月无催收动作"),
    "days_since_last_contact": ("never reached by collections", "催收从未联系上借款人"),
    "months_since_last_treatment": ("no hardship treatment on record", "从未获得纾困措施"),
    "dpd_change_last": ("no statement the month before", "上月无账单"),
    "months_since_last_cure": (
        "never back to current in the known history",
        "已知历史中从未恢复正常",
    ),
    "months_since_last_payment": ("no payment in the known history", "已知历史中从未还款"),
    "months_since_last_full_payment": (
        "never paid in full in the known history",
        "已知历史中从未全额还款",
    ),
    # a ratio of totals is missing when its denominator's total is 0 (found by an attacker:
    # "Total paid divided by total due over the last 3 statement months: no data")
    "paid_to_due_ratio_3m": (
        "nothing was due in the last 3 statement months",
        "近3个月账单均无应还款",
    ),
    "paid_to_due_ratio_6m": (
        "nothing was due in the last 6 statement months",
        "近6个月账单均无应还款",
    ),
    "paid_to_due_ratio_12m": (
        "nothing was due in the last 12 statement months",
        "近12个月账单均无应还款",
    ),
    "paid_to_min_due_ratio_3m": (
        "no minimum payment was due in the last 3 statement months",
        "近3个月账单均无最低还款额",
    ),
    "paid_to_due_last_minus_mean_6m": (
        "nothing was due on the latest statement",
        "最近一期账单无应还款",
    ),
    "paid_to_due_change_last": (
        "nothing was due on one of the last two statements",
        "近两期账单中有一期无应还款",
    ),
    "paid_to_due_trend_6m": (
        "fewer than 2 months with something due in the last 6 months",
        "近6个月有应还款的月份不足2个",
    ),
    "paid_to_due_volatility_6m": (
        "fewer than 2 months with something due in the last 6 months",
        "近6个月有应还款的月份不足2个",
    ),
    "days_since_last_promise": ("no promise to pay on record", "从未承诺还款"),
    "days_since_last_broken_promise": ("no broken promise to pay on record", "无未兑现的还款承诺"),
    "days_since_last_hardship_claim": ("no hardship reported", "从未报告困难"),
    "promise_rate_6m": (
        "no contact reached the borrower in the last 6 months",
        "近6个月未成功联系到借款人",
    ),
    "refusal_rate_6m": (
        "no contact reached the borrower in the last 6 months",
        "近6个月未成功联系到借款人",
    ),
}
"""What a missing value of a feature states, as a reason (English, Chinese); the trends and
volatilities of fewer than 2 statements say so with :func:`_short_history`."""

_SHORT_HISTORY_PREFIXES = ("dpd_trend_", "dpd_volatility_", "utilisation_trend_", "utilisation_volatility_")  # fmt: skip


def _with_missing_wording(spec: FeatureSpec) -> FeatureSpec:
    if spec.name in _MISSING_WORDING:
        en, zh = _MISSING_WORDING[spec.name]
    elif spec.name.startswith(_SHORT_HISTORY_PREFIXES):
        en, zh = _short_history(spec.window_months)
    else:
        return spec
    return dataclasses.replace(spec, missing_en=en, missing_zh=zh)


FEATURE_SET = FeatureSet(
    name="rollrisk-behaviour",
    version="1.1.0",
    features=tuple(_with_missing_wording(spec) for spec in (*_FEATURES, *DYNAMICS_FEATURES)),
)
"""The feature set every model of this project is trained on and records (name + version)."""


def definition_label(description: str) -> str:
    """A registry description as a short label: its first clause, without the definition's
    fine print (what follows a ';' or an opening bracket) or its final full stop. Reasons are
    listed with '; ' between them, so a label never holds one."""
    cut = re.split(r"[;；]|\s?[(（]", description, maxsplit=1)[0]
    return cut.strip().rstrip(".。")


# what a feature of an optional table states when the table was not given at all (scored with
# --allow-missing-table), after the feature's label: nothing is known, which is neither
# "never contacted" nor "no treatment on record"
TABLE_NOT_GIVEN: Mapping[str, tuple[str, str]] = {
    "collection_actions": (
        "not known, the collection actions were not given",
        "未知（未提供催收记录）",
    ),
    "treatments": ("not known, the hardship treatments were not given", "未知（未提供纾困记录）"),
}


@functools.lru_cache(maxsize=8)
def current_wording(feature_set: FeatureSet, absent_tables: tuple[str, ...] = ()) -> FeatureSet:
    """``feature_set`` with the registry's current texts (descriptions, reason templates and
    what a missing value states) for the features it still holds in the same family; everything else is the model's own.

    A trained model carries the feature specs of its training day, reason templates included;
    scoring, the service and the report word reasons with today's registry, so a fixed text
    (a flag's "no hardship treatment is running", a plural) reaches a model trained before the
    fix. Only words change: a feature's computation, family, direction and source are the
    model's.

    ``absent_tables``: optional tables the accounts were scored without. Their features are
    missing for every account, and a missing value then says the table was not given
    (:data:`TABLE_NOT_GIVEN`), not what it states when the table is there ("no contact reached
    the borrower in the last 6 months" for an account the lender never called).
    """
    specs = tuple(
        dataclasses.replace(
            spec,
            description_en=current.description_en,
            description_zh=current.description_zh,
            reason_en=current.reason_en,
            reason_zh=current.reason_zh,
            missing_en=current.missing_en,
            missing_zh=current.missing_zh,
        )
        if spec.name in FEATURE_SET.names
        and (current := FEATURE_SET.spec(spec.name)).family == spec.family
        else spec
        for spec in feature_set.features
    )
    specs = tuple(
        dataclasses.replace(
            spec,
            missing_en=f"{definition_label(spec.description_en)}: {TABLE_NOT_GIVEN[spec.source][0]}",
            missing_zh=f"{definition_label(spec.description_zh)}：{TABLE_NOT_GIVEN[spec.source][1]}",
        )
        if spec.source in absent_tables and spec.source in TABLE_NOT_GIVEN
        else spec
        for spec in specs
    )
    return dataclasses.replace(feature_set, features=specs)
