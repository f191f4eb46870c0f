"""Exactness and readability of the roll model's explanations."""

from __future__ import annotations

import re
import warnings

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from rollrisk.features.registry import FAMILIES, FeatureSet, FeatureSpec
from rollrisk.models.explanations import (
    _largest_positive,
    assert_no_protected_features,
    contributions,
    family_contributions,
    lightgbm_pred_contrib,
    reason_code,
    reason_codes,
)


def _spec(name: str, family: str, reason_en: str, reason_zh: str, kind: str = "numeric"):
    return FeatureSpec(
        name=name,
        family=family,  # type: ignore[arg-type]
        window_months=3,
        description_en=name.replace("_", " "),
        description_zh=f"{name}（说明）",
        reason_en=reason_en,
        reason_zh=reason_zh,
        kind=kind,  # type: ignore[arg-type]
    )


FEATURES = FeatureSet(
    name="test",
    version="1",
    features=(
        _spec(
            "broken_promises_3m",
            "willingness",
            "{value:.0f} broken promises to pay in the last 3 months",
            "近3个月违约承诺还款{value:.0f}次",
        ),
        _spec(
            "payment_ratio_1m",
            "payment_capacity",
            "paid {value:.0%} of the amount due last month",
            "上月还款占应还金额{value:.0%}",
        ),
        _spec(
            "failed_contacts_1m",
            "contactability",
            "{value:.0f} failed contact attempts last month",
            "上月联系失败{value:.0f}次",
        ),
        _spec(
            "utilisation",
            "exposure",
            "{value:.0%} of the credit limit used",
            "额度使用率{value:.0%}",
        ),
        _spec(
            "product",
            "product_seasonality",
            "product: {value}",
            "产品：{value}",
            kind="categorical",
        ),
        _spec(
            "max_dpd_12m",
            "delinquency_history",
            "{value:.0f} days past due at worst in 12 months",
            "近12个月最长逾期{value:.0f}天",
        ),
    ),
)


def _train(X: pd.DataFrame, y: np.ndarray) -> lgb.Booster:
    params = {"objective": "binary", "num_leaves": 7, "min_data_in_leaf": 5, "verbose": -1}
    return lgb.train(params, lgb.Dataset(X, y), num_boost_round=15)


@pytest.fixture(scope="module")
def numeric_model() -> tuple[lgb.Booster, pd.DataFrame]:
    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.normal(size=(400, 4)), columns=["a", "b", "c", "d"])
    X.loc[X.index % 5 == 0, "b"] = np.nan  # missing values take LightGBM's learned default side
    y = (X["a"] + X["c"].fillna(0) * 0.5 + rng.normal(size=400) > 0).astype(int).to_numpy()
    return _train(X, y), X


def _shap_own_treeshap(booster: lgb.Booster):
    """A shap explainer running shap's own TreeSHAP algorithm on the booster's trees.

    ``shap.TreeExplainer(booster)`` itself delegates to LightGBM's ``pred_contrib`` for
    LightGBM models, so comparing against it would compare LightGBM with itself. Handing shap
    the trees it parsed from the model makes it use its own implementation instead.
    """
    shap = pytest.importorskip("shap")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = shap.TreeExplainer(booster).model
    trees = [
        {
            "children_left": tree.children_left,
            "children_right": tree.children_right,
            "children_default": tree.children_default,
            "features": tree.features,
            "thresholds": tree.thresholds,
            "values": tree.values,
            "node_sample_weight": tree.node_sample_weight,
        }
        for tree in parsed.trees
    ]
    model = {
        "trees": trees,
        "base_offset": parsed.base_offset,
        "input_dtype": np.float64,
        "internal_dtype": np.float64,
    }
    return shap.TreeExplainer(model)


def test_contributions_agree_with_shap_treeexplainer(numeric_model):
    booster, X = numeric_model
    explainer = _shap_own_treeshap(booster)
    assert explainer.model.model_type == "internal"  # really shap's algorithm, not LightGBM's

    ours = contributions(booster, X, chunk_rows=64)
    theirs = explainer.shap_values(X.to_numpy())

    np.testing.assert_allclose(ours[:, :-1], theirs, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours[:, -1], np.ravel(explainer.expected_value)[0], atol=1e-9)


def test_contributions_plus_base_value_equal_the_raw_score(numeric_model):
    booster, X = numeric_model
    values = contributions(booster, X, chunk_rows=37)  # chunks that do not divide 400
    np.testing.assert_allclose(values.sum(axis=1), booster.predict(X, raw_score=True), atol=1e-9)
    assert np.ptp(values[:, -1]) < 1e-12  # the base value is the same for every account


def test_contributions_are_the_same_whatever_the_chunk_size(numeric_model):
    booster, X = numeric_model
    np.testing.assert_allclose(
        contributions(booster, X, chunk_rows=1_000), contributions(booster, X, chunk_rows=3)
    )


def test_contributions_accept_a_categorical_feature_and_a_sklearn_model():
    rng = np.random.default_rng(3)
    X = pd.DataFrame(
        {
            "x": rng.normal(size=300),
            "product": pd.Categorical(rng.choice(["bnpl", "cash_loan", "agri_loan"], 300)),
        }
    )
    y = ((X["product"] == "agri_loan").to_numpy() ^ (rng.random(300) < 0.2)).astype(int)
    model = lgb.LGBMClassifier(n_estimators=10, num_leaves=5, min_child_samples=5, verbose=-1)
    model.fit(X, y)
    values = contributions(model, X)
    assert values.shape == (300, 3)  # one column for the categorical feature itself
    np.testing.assert_allclose(
        values.sum(axis=1), model.booster_.predict(X, raw_score=True), atol=1e-9
    )
    assert np.abs(values[:, 1]).max() > 0.1  # the category carries the signal


def test_the_kernel_is_swappable_and_called_per_chunk(numeric_model):
    booster, X = numeric_model
    calls: list[int] = []

    def counting_kernel(model: lgb.Booster, chunk: pd.DataFrame) -> np.ndarray:
        calls.append(len(chunk))
        return lightgbm_pred_contrib(model, chunk)

    contributions(booster, X, chunk_rows=150, kernel=counting_kernel)
    assert calls == [150, 150, 100]


def test_contributions_reject_columns_out_of_model_order(numeric_model):
    booster, X = numeric_model
    with pytest.raises(ValueError, match="model's features in the model's order"):
        contributions(booster, X[["b", "a", "c", "d"]])


def test_contributions_reject_a_kernel_with_the_wrong_shape(numeric_model):
    booster, X = numeric_model
    with pytest.raises(ValueError, match="kernel returned shape"):
        contributions(booster, X, kernel=lambda model, chunk: np.zeros((len(chunk), 2)))


# --- reason codes on a hand-made contribution matrix -------------------------------------------

X_RAW = pd.DataFrame(
    {
        "broken_promises_3m": [3.0, 0.0, 1.0, np.nan],
        "payment_ratio_1m": [0.25, 1.0, 0.0, 0.5],
        "failed_contacts_1m": [7.0, 0.0, 2.0, 12.0],
        "utilisation": [0.95, 0.1, 0.5, 0.8],
        "product": ["agri_loan", "bnpl", "cash_loan", "merchant_loan"],
        "max_dpd_12m": [45.0, 0.0, 10.0, 70.0],
    },
    index=pd.Index(["acc-1", "acc-2", "acc-3", "acc-4"], name="account_id"),
)
CONTRIBS = np.array(
    [
        # all six raise risk: only the 4 largest are reasons, largest first
        [0.9, 0.2, 0.5, 0.1, 0.05, 0.7, -1.5],
        # none raises risk: no reason at all
        [-0.3, -0.1, 0.0, -0.2, -0.4, -0.05, -1.5],
        # two raise risk: exactly two reasons
        [-0.2, 0.4, -0.1, 0.0, 0.3, -0.6, -1.5],
        # a missing value and a categorical among the reasons
        [0.6, -0.1, 0.2, -0.3, 0.8, -0.2, -1.5],
    ]
)


def test_reasons_are_the_largest_risk_increasing_features_at_most_four():
    reasons = reason_codes(CONTRIBS, X_RAW, FEATURES)
    by_account = {key: frame for key, frame in reasons.groupby("row", sort=False)}

    assert list(by_account["acc-1"]["feature"]) == [
        "broken_promises_3m",
        "max_dpd_12m",
        "failed_contacts_1m",
        "payment_ratio_1m",
    ]
    assert list(by_account["acc-1"]["rank"]) == [1, 2, 3, 4]
    assert "acc-2" not in by_account
    assert list(by_account["acc-3"]["feature"]) == ["payment_ratio_1m", "product"]
    assert (reasons["contribution"] > 0).all()
    np.testing.assert_allclose(by_account["acc-1"]["contribution"], [0.9, 0.7, 0.5, 0.2])


def test_reasons_quote_the_accounts_own_value_in_both_languages():
    reasons = reason_codes(CONTRIBS, X_RAW, FEATURES).set_index(["row", "feature"])
    promises = reasons.loc[("acc-1", "broken_promises_3m")]
    assert promises["text_en"] == "3 broken promises to pay in the last 3 months"
    assert promises["text_zh"] == "近3个月违约承诺还款3次"
    ratio = reasons.loc[("acc-3", "payment_ratio_1m")]
    assert "0%" in ratio["text_en"] and "0%" in ratio["text_zh"]
    contacts = reasons.loc[("acc-4", "failed_contacts_1m")]
    assert "12" in contacts["text_en"] and "12" in contacts["text_zh"]
    for text in reasons["text_zh"]:
        assert re.search(r"[\u4e00-\u9fff]", text)  # really Chinese


def test_reasons_handle_missing_and_categorical_values():
    reasons = reason_codes(CONTRIBS, X_RAW, FEATURES).set_index(["row", "feature"])
    missing = reasons.loc[("acc-4", "broken_promises_3m")]
    assert missing["text_en"] == "broken promises 3m: no data"
    assert missing["text_zh"] == "broken_promises_3m：无数据"  # the label, not its fine print
    assert "nan" not in " ".join(reasons["text_en"]).lower()
    category = reasons.loc[("acc-4", "product")]
    assert category["text_en"] == "product: merchant_loan"
    assert category["text_zh"] == "产品：merchant_loan"


def test_each_reason_quotes_its_own_row_when_rows_share_a_value():
    """Reasons are formatted once per distinct value, yet each row shows its own: a missing
    value of any kind reads "no data", and a zero keeps its sign."""
    one = FeatureSet("one", "1", (FEATURES.spec("payment_ratio_1m"),))
    values = [0.5, np.nan, 0.5, None, -0.0, 0.0, pd.NA, 0.5]
    frame = pd.DataFrame({"payment_ratio_1m": pd.Series(values, dtype=object)})
    reasons = reason_codes(np.full((len(values), 1), 0.3), frame, one)
    assert reasons["value"].tolist() == ["0.5", "", "0.5", "", "-0.0", "0.0", "", "0.5"]
    alone = [reason_codes(np.array([[0.3]]), frame.iloc[[i]], one) for i in range(len(values))]
    assert reasons["text_en"].tolist()[:4] == [r["text_en"].iat[0] for r in alone[:4]]
    assert reasons["text_en"].iat[1] == reasons["text_en"].iat[3] == reasons["text_en"].iat[6]
    assert "no data" in reasons["text_en"].iat[1]


def test_a_template_that_cannot_format_the_value_falls_back_to_the_description():
    odd = FeatureSet(
        "odd",
        "1",
        (_spec("channel_mix", "contactability", "{value:.0f} channels", "{value:.0f}个渠道"),),
    )
    reasons = reason_codes(np.array([[0.5]]), pd.DataFrame({"channel_mix": ["sms"]}), odd)
    assert reasons.loc[0, "text_en"] == "channel mix: sms"
    assert reasons.loc[0, "text_zh"] == "channel_mix：sms"


def test_reason_codes_are_stable_and_distinct():
    reasons = reason_codes(CONTRIBS, X_RAW, FEATURES)
    code_by_feature = reasons.groupby("feature")["code"].unique()
    assert all(len(codes) == 1 for codes in code_by_feature)
    assert reasons.groupby("code")["feature"].nunique().max() == 1
    # derived from the name only: reordering the feature set keeps every code
    reordered = FeatureSet("test", "2", tuple(reversed(FEATURES.features)))
    assert [reason_code(s) for s in reordered.features] == [
        reason_code(s) for s in reversed(FEATURES.features)
    ]
    assert re.fullmatch(r"RR-[0-9A-F]{6}", reason_code(FEATURES.features[0]))


def test_fewer_reasons_can_be_asked_but_never_more_than_four():
    assert reason_codes(CONTRIBS, X_RAW, FEATURES, max_reasons=2)["rank"].max() == 2
    with pytest.raises(ValueError, match="between 1 and 4"):
        reason_codes(CONTRIBS, X_RAW, FEATURES, max_reasons=5)


def test_reason_codes_reject_misaligned_inputs():
    with pytest.raises(ValueError, match="X_raw has 3 rows but contributions have 4"):
        reason_codes(CONTRIBS, X_RAW.iloc[:3], FEATURES)
    with pytest.raises(ValueError, match="must have 6 columns"):
        reason_codes(CONTRIBS[:, :3], X_RAW, FEATURES)


# --- families and protected attributes ----------------------------------------------------------


def test_families_sum_to_the_row_total_minus_the_base_value():
    families = family_contributions(CONTRIBS, FEATURES, index=X_RAW.index)
    assert list(families.columns) == list(FAMILIES)
    np.testing.assert_allclose(families.sum(axis=1), CONTRIBS.sum(axis=1) - CONTRIBS[:, -1])
    assert families.loc["acc-1", "willingness"] == pytest.approx(0.9)
    assert families.loc["acc-1", "treatment_history"] == 0.0  # no feature in that family


@pytest.mark.parametrize(
    "name", ["borrower_age", "gender", "home_city_code", "postcode_risk", "Marital_Status"]
)
def test_protected_attributes_are_refused(name):
    with pytest.raises(ValueError, match=f"name one: {name}"):
        assert_no_protected_features(["dpd", name])
    tainted = FeatureSet(
        "t", "1", (*FEATURES.features, _spec(name, "exposure", "{value}", "{value}"))
    )
    contribs = np.zeros((1, len(tainted.features)))
    with pytest.raises(ValueError, match="protected attributes"):
        family_contributions(contribs, tainted)


def test_words_that_merely_contain_a_protected_word_are_allowed():
    assert_no_protected_features(["average_payment", "usage_ratio", "stage", "months_on_book"])


def test_reasons_read_well_with_the_real_feature_set():
    from rollrisk.features.registry import FEATURE_SET

    names = FEATURE_SET.names
    contribs = np.zeros((2, len(names)))
    contribs[0, names.index("promises_broken_6m")] = 0.8
    contribs[0, names.index("dpd_current")] = 0.5
    contribs[1, names.index("days_since_last_contact")] = 0.4
    X_raw = pd.DataFrame([dict.fromkeys(names, 0.0)] * 2)
    X_raw.loc[0, "promises_broken_6m"] = 3.0
    X_raw.loc[0, "dpd_current"] = 41.0
    X_raw.loc[1, "days_since_last_contact"] = np.nan
    reasons = reason_codes(contribs, X_raw, FEATURE_SET)
    assert list(reasons["feature"]) == [
        "promises_broken_6m",
        "dpd_current",
        "days_since_last_contact",
    ]
    assert "3" in reasons.loc[0, "text_en"] and "3" in reasons.loc[0, "text_zh"]
    assert "41" in reasons.loc[1, "text_en"] and "41" in reasons.loc[1, "text_zh"]
    # a missing value states what it means, not the feature's definition
    assert reasons.loc[2, "text_en"] == "never reached by collections"
    assert reasons.loc[2, "text_zh"] == "催收从未联系上借款人"


def test_reasons_are_the_positive_values_of_a_stable_descending_sort() -> None:
    """The reasons are chosen in one pass per account, not by sorting its contributions: the
    same choice as a stable descending sort, ties and all (values repeated, zero, negative)."""
    rng = np.random.default_rng(11)
    values = rng.choice([-0.3, -0.0, 0.0, 0.1, 0.2, 0.2, 0.5, np.nan], size=(3_000, 9))
    values[:5] = 0.2  # all tied
    for k in (1, 3, 4, 9):
        order = np.argsort(-values, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(values, order, axis=1)

        got, counts = _largest_positive(values, k)

        np.testing.assert_array_equal(counts, (top > 0).sum(axis=1))
        for i in range(len(values)):
            np.testing.assert_array_equal(got[i, : counts[i]], order[i, : counts[i]])
