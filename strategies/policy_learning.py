"""Learn a collection policy from logged experiments, and estimate its value before any rollout.

Input: one row per logged decision (:data:`LOGGED_COLUMNS` plus the feature columns):

* ``account_id``;
* ``bundle``: the action bundle the account got (a treatment name of the policy, or an
  experiment arm's bundle, :mod:`rollrisk.strategies.experiments`);
* ``policy_bundle``: the bundle the current policy chose for it (the champion's decision);
* ``propensity``: the logged probability of ``bundle`` under the logging policy, in (0, 1];
* the outcome (default ``book_value``: book value per account over the horizon, net of costs);
* features: the inputs of the rules (``rule_features``: e.g. ``start_bucket``, ``segment``, SHAP
  driver-family contributions) and, for the outcome model only, ``model_features``. Text
  columns are one-hot encoded, numbers used as they are.

The candidates each account may get are ``policy`` (keep the current policy's decision) and
every bundle that was explored (taken by some account whose policy chose another). A bundle the
current policy chooses only for other accounts is never a candidate: nothing was learnt of it
for this account.

**Estimation (EconML, doubly robust).** :class:`econml.dr.DRLearner` fits the outcome model
(LightGBM on features and bundle, never the propensity: :class:`WithoutColumn`) with cross-fitting and returns, per decision and
bundle, the doubly robust score ``mu_b(x) + 1[bundle = b] / p * (y - mu_b(x))``. The propensity
is the *logged* one, not estimated: :class:`LoggedPropensity` hands EconML the logged
probability (only the logged bundle's propensity enters the score, so that is all it needs).

**The policy** is a shallow :class:`econml.policy.PolicyTree` fitted on the scores of a
*learning* half of the accounts (a stable hash of the account id); its leaves are the rules.

**Safe leaf labels** (``confidence`` > 0, the default; high-confidence policy improvement,
Thomas, Theocharous and Ghavamzadeh 2015, and pessimism in offline learning, Jin, Yang and Wang
2021). The learning accounts are split again by a stable hash: the tree's splits are fitted on
one part, and each leaf is labelled on the other (``label_share``; honest leaves, Athey and
Imbens 2016), so the split search that made a leaf does not inflate its evidence. A leaf gives
the current policy (``policy``) unless some candidate is *eligible*: at least ``min_explored``
explored accounts of it in the leaf's labelling part, and a lower confidence bound above 0 on its
mean gain over keep (paired doubly robust score differences; one-sided Student-t with the
standard error clustered by account; Bonferroni over every (leaf, candidate) pair with enough
explored accounts, so that all bounds hold together with probability ``confidence``). Among the
eligible, the leaf gives the one of highest lower bound: the highest mean would favour the
candidate whose noise was luckiest, the winner's curse the bound is there to stop. With
doubly robust scores weighted ~1/propensity (~110 at the simulated lender's 10 % exploration
over 11 arms), a handful of explored accounts with large balances otherwise decide a leaf.
``confidence`` 0 is the argmax: the tree fitted with EconML's own honesty on the whole learning
half, each leaf the candidate of highest mean score there (the bounds are reported, not used).

The other half, never seen by the tree, gives the **off-policy estimate**: the mean doubly
robust score of each account's proposed candidate, with a 95 % percentile bootstrap interval
over accounts (an account's decisions resampled together), the same for the current policy
and their difference.

**Contact capacity.** A bundle uses capacity when a step goes through ``capacity_channels``
(agent calls, field visits). With ``max_contact_share`` set, the share of accounts given such a
bundle may not exceed it. Starting from each leaf's label, the greedy repeatedly moves the leaf
whose move frees capacity at the lowest estimated loss per account freed, until the share fits;
a leaf moves only to keep or to a candidate eligible there (so the result stays safe). The
result is compared with the linear-programming relaxation of the same leaf-level problem
(:func:`scipy.optimize.linprog`, leaves may be split fractionally): its value is an upper bound
on every leaf-level policy within capacity giving only keep or eligible candidates, so
``LP - greedy`` bounds the greedy's optimality gap, and it is reported (0 when capacity does not
bind).

The rules apply only to the category values the logged decisions hold (a segment no experiment
reached keeps the current policy): of the others nothing was learnt.

**Output**: the leaves as readable rules (:func:`tree_rules_document`), and, when every rule
feature is a field ``conf/policy.yaml`` can test (``start_bucket``, ``risk_band``, ``segment``,
``product``, ``dpd``, ``amount_overdue``), a complete policy file (:func:`learned_policy_text`):
one rule per leaf over the rules of the policy that logged the decisions, checked by
:func:`~rollrisk.strategies.policy.parse_policy` before it is returned. Keeping the current
policy is a candidate like the others; when the logging policy gave every decision one bundle
(the lender's control arm, ``standard_queue``: its standard tiered collection) the keep
candidate is that treatment by name, and the file writes it, so it stands on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import yaml
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone

from rollrisk.errors import NotEnoughEvidence, UserError
from rollrisk.models.stats import percentile_bootstrap
from rollrisk.strategies.experiments import unit_draws
from rollrisk.strategies.policy import LadderStep, parse_policy

KEEP_POLICY = "policy"
"""The candidate that keeps the current policy's decision for the account."""

LOGGED_COLUMNS: tuple[str, ...] = ("account_id", "bundle", "policy_bundle", "propensity")
"""Columns every logged-decisions table has, besides the outcome and the features."""

POLICY_FIELDS: Mapping[str, str] = {
    "start_bucket": "category",
    "risk_band": "category",
    "segment": "category",
    "product": "category",
    "dpd": "range",
    "amount_overdue": "range",
}
"""What a ``conf/policy.yaml`` rule can test: the rules of a tree on these alone are a policy file."""

SPLIT_SALT = "learn-policy-evaluation-half"
LABEL_SALT = "learn-policy-labelling-part"
BOUND_CONFIDENCE = 0.95
"""The confidence of the lower bounds reported when the labels are the argmax (confidence 0)."""


@dataclass(frozen=True)
class LearningSettings:
    """How a policy is learnt (see the module docstring)."""

    rule_features: tuple[str, ...]
    model_features: tuple[str, ...] = ()  # outcome model only, besides the rule features
    outcome: str = "book_value"
    max_depth: int = 3
    min_leaf_share: float = (
        0.02  # a leaf holds at least this share of the decisions the tree splits on
    )
    evaluation_share: float = 0.5
    folds: int = 3
    outcome_trees: int = 200
    max_contact_share: float | None = None
    capacity_channels: tuple[str, ...] = ("agent_call", "field_visit")
    bootstrap_samples: int = 1000
    seed: int = 0
    threads: int = 1  # LightGBM's; more threads than free cores slow it down many times
    # safe labels (module docstring, "Safe leaf labels"): 0 = the argmax of the mean scores
    confidence: float = 0.95
    min_explored: int = 30  # explored accounts of a candidate in a leaf's labelling part
    label_share: float = 0.5  # of the learning half, held from the tree to label its leaves


class LoggedPropensity(ClassifierMixin, BaseEstimator):
    """A 'propensity model' that returns the logged propensity, the last column of its input.

    EconML's doubly robust score of bundle ``b`` divides by the propensity of the logged bundle
    only (the correction is zero for every other bundle), so the logged probability, repeated
    in every column, gives exactly the score with known propensities.
    """

    def fit(self, X: NDArray[np.float64], y: NDArray[Any]) -> LoggedPropensity:
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.repeat(np.asarray(X)[:, -1:], len(self.classes_), axis=1)

    def predict(self, X: NDArray[np.float64]) -> NDArray[Any]:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class WithoutColumn(RegressorMixin, BaseEstimator):
    """``estimator`` fitted and applied without input column ``column``.

    EconML hands the outcome model the features, the controls and the bundle side by side; the
    logged propensity travels as the one control (for :class:`LoggedPropensity`) and must not
    reach the outcome model: it tells which bundle a row got, so a counterfactual prediction
    would read the logged bundle's outcome back (a bias the doubly robust correction, zero for
    the bundles not taken, cannot remove).
    """

    def __init__(self, estimator: Any = None, column: int = 0) -> None:
        self.estimator = estimator
        self.column = column

    def fit(
        self, X: NDArray[np.float64], y: NDArray[np.float64], **fit_params: Any
    ) -> WithoutColumn:
        self.estimator_ = clone(self.estimator).fit(
            np.delete(np.asarray(X), self.column, axis=1), y, **fit_params
        )
        return self

    def predict(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.estimator_.predict(np.delete(np.asarray(X), self.column, axis=1))


@dataclass(frozen=True)
class Condition:
    """One split on a path: ``column`` (an encoded column) ``<=`` or ``>`` ``threshold``."""

    feature: str  # the input column
    value: str | None  # the category of a one-hot column; None for a number
    above: bool  # False: x <= threshold; True: x > threshold
    threshold: float


@dataclass(frozen=True)
class Leaf:
    node: int
    conditions: tuple[Condition, ...]
    candidate: str  # after the capacity step
    best_candidate: str  # before it
    accounts: int  # decisions in the leaf that labelled it (learning half, labelling part)
    values: Mapping[str, float]  # mean doubly robust score per candidate (the same decisions)
    # per candidate but keep: the lower confidence bound of its mean gain over keep, and its
    # explored accounts among those decisions (``Leaf.eligible``: the ones a safe label may give)
    lower_bounds: Mapping[str, float] = field(default_factory=dict)
    explored_accounts: Mapping[str, int] = field(default_factory=dict)
    eligible: tuple[str, ...] = ()

    def gain(self, candidate: str) -> float:
        """The estimated mean gain of ``candidate`` over keeping the current policy."""
        return self.values[candidate] - self.values[KEEP_POLICY]


def leaf_region(
    leaf: Leaf, categories: Mapping[str, Sequence[str]]
) -> tuple[dict[str, list[str]], dict[str, tuple[float, float]]]:
    """Where a leaf's rule applies: per text feature the categories it reaches (of those the
    logged data holds), per number the range ``low < x <= high`` (the tree's own sides)."""
    allowed = {feature: list(levels) for feature, levels in categories.items()}
    ranges: dict[str, tuple[float, float]] = {}
    for condition in leaf.conditions:
        if condition.value is not None:
            allowed[condition.feature] = [
                v for v in allowed[condition.feature] if (v == condition.value) == condition.above
            ]
        else:
            low, high = ranges.get(condition.feature, (-math.inf, math.inf))
            if condition.above:
                low = max(low, condition.threshold)
            else:
                high = min(high, condition.threshold)
            ranges[condition.feature] = (low, high)
    return allowed, ranges


@dataclass(frozen=True)
class CapacityOutcome:
    max_share: float | None
    share_unconstrained: float  # share of decisions given a capacity bundle by the best leaves
    share: float  # after the greedy
    moves: int
    greedy_value: float  # mean estimated value per decision (learning half)
    lp_bound: float  # the LP relaxation's value (= greedy_value when capacity does not bind)

    @property
    def gap_bound(self) -> float:
        return max(self.lp_bound - self.greedy_value, 0.0)


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float
    ci_high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high}


@dataclass(frozen=True)
class OffPolicyEvaluation:
    """Doubly robust estimates on the evaluation half (accounts the tree never saw)."""

    decisions: int
    accounts: int
    proposed: Estimate
    current: Estimate
    uplift: Estimate  # proposed - current, paired per account
    logged_mean_outcome: float
    each_candidate: Mapping[str, float]  # everyone given one candidate
    contact_share: float  # of the proposed policy, on the evaluation half


@dataclass(frozen=True)
class LearnedPolicy:
    settings: LearningSettings
    candidates: tuple[str, ...]
    leaves: tuple[Leaf, ...]
    capacity: CapacityOutcome
    evaluation: OffPolicyEvaluation
    learning_decisions: int
    categories: Mapping[str, tuple[str, ...]] = field(repr=False)
    tree_: Any = field(repr=False)
    # the bundles the current (logging) policy chose in the logged decisions (``policy_bundle``)
    policy_bundles: tuple[str, ...] = ()
    bound_confidence: float = BOUND_CONFIDENCE  # of the leaves' lower bounds, family-wise
    bound_tests: int = 0  # (leaf, candidate) pairs bounded: the Bonferroni divisor
    structure_decisions: int = 0  # learning decisions the tree's splits were fitted on

    @property
    def keep_bundle(self) -> str | None:
        """The one bundle :data:`KEEP_POLICY` stands for when the logging policy gave every
        logged decision the same one (the lender's control arm: ``standard_queue``), else None
        (keeping means the current policy's own, varying, decision)."""
        return self.policy_bundles[0] if len(self.policy_bundles) == 1 else None

    def give(self, leaf: Leaf) -> str:
        """What a leaf gives, by name: its candidate, with :data:`KEEP_POLICY` written as the
        bundle it stands for when that is one bundle (:attr:`keep_bundle`)."""
        if leaf.candidate == KEEP_POLICY and self.keep_bundle is not None:
            return self.keep_bundle
        return leaf.candidate


# --- input ---------------------------------------------------------------------------------------


def check_logged(
    logged: pl.DataFrame, settings: LearningSettings, ladders: Mapping[str, Sequence[LadderStep]]
) -> None:
    """Refuse a logged-decisions table that cannot be learnt from, naming column, row and rule.

    Raises:
        UserError: a missing column, a null, a propensity outside (0, 1], an outcome that is not
            a finite number, a bundle without a known ladder, or no explored bundle at all.
    """
    needed = (*LOGGED_COLUMNS, settings.outcome, *settings.rule_features, *settings.model_features)
    missing = [c for c in dict.fromkeys(needed) if c not in logged.columns]
    if missing:
        raise UserError(
            f"the logged decisions lack the column(s) {', '.join(missing)} "
            f"(have: {', '.join(logged.columns)})"
        )
    if logged.height == 0:
        raise UserError("the logged decisions hold no row")
    rows = logged.with_row_index("_row", offset=1)
    checks = [
        (
            pl.col("propensity").cast(pl.Float64, strict=False).is_null()
            | ~pl.col("propensity").cast(pl.Float64, strict=False).is_between(0, 1, closed="right"),
            "propensity",
            "a probability in (0, 1]",
        ),
        (
            pl.col(settings.outcome).cast(pl.Float64, strict=False).is_null()
            | ~pl.col(settings.outcome).cast(pl.Float64, strict=False).is_finite(),
            settings.outcome,
            "a finite number",
        ),
    ]
    for bad, column, expected in checks:
        found = rows.filter(bad)
        if found.height:
            first = found.row(0, named=True)
            raise UserError(
                f"{found.height} logged decision(s) have an invalid {column}, e.g. row "
                f"{first['_row']} (account {first['account_id']}): {first[column]!r}; expected {expected}"
            )
    for column in dict.fromkeys(
        ("account_id", "bundle", "policy_bundle", *settings.rule_features, *settings.model_features)
    ):
        nulls = rows.filter(pl.col(column).is_null())
        if nulls.height:
            raise UserError(
                f"{nulls.height} logged decision(s) have no {column}, e.g. row {nulls['_row'][0]}"
            )
    for column in dict.fromkeys((*settings.rule_features, *settings.model_features)):
        if rows[column].dtype.is_float():
            bad = rows.filter(~pl.col(column).is_finite())
            if bad.height:
                raise UserError(
                    f"{bad.height} logged decision(s) have a {column} that is not a finite "
                    f"number, e.g. row {bad['_row'][0]}: {bad[column][0]}"
                )
    for column in ("bundle", "policy_bundle"):
        unknown = rows.filter(~pl.col(column).is_in(list(ladders)))
        if unknown.height:
            first = unknown.row(0, named=True)
            raise UserError(
                f"{column} {first[column]!r} (row {first['_row']}) has no ladder in the policy or "
                f"experiment files given; known bundles: {', '.join(sorted(ladders))}"
            )


def _encode(
    frame: pl.DataFrame,
    columns: Sequence[str],
    categories: Mapping[str, Sequence[str]] | None = None,
) -> tuple[NDArray[np.float64], list[tuple[str, str | None]], dict[str, tuple[str, ...]]]:
    """Numbers as they are, text one-hot (one column per category seen, or given)."""
    parts: list[NDArray[np.float64]] = []
    names: list[tuple[str, str | None]] = []
    seen: dict[str, tuple[str, ...]] = {}
    for column in columns:
        series = frame[column]
        if series.dtype in (pl.String, pl.Categorical, pl.Enum, pl.Boolean):
            values = series.cast(pl.String).to_numpy()
            levels = (
                tuple(categories[column])
                if categories and column in categories
                else tuple(sorted(set(values.tolist())))
            )
            seen[column] = levels
            parts.append(np.stack([values == level for level in levels], axis=1).astype(float))
            names.extend((column, level) for level in levels)
        else:
            parts.append(series.cast(pl.Float64).to_numpy().reshape(-1, 1))
            names.append((column, None))
    return np.hstack(parts), names, seen


def uses_capacity(steps: Sequence[LadderStep], channels: Sequence[str]) -> bool:
    return any(step.channel in channels for step in steps)


# --- learning ------------------------------------------------------------------------------------


def _require_econml() -> None:
    try:
        import econml  # noqa: F401
    except ModuleNotFoundError:
        raise UserError(
            "learning a policy needs EconML, an optional dependency: pip install 'rollrisk[learn]'"
        ) from None


def doubly_robust_scores(
    outcome: NDArray[np.float64],
    bundle: NDArray[Any],
    features: NDArray[np.float64],
    propensity: NDArray[np.float64],
    labels: Sequence[str],
    settings: LearningSettings,
    groups: NDArray[Any] | None = None,
) -> NDArray[np.float64]:
    """(decisions x bundles) cross-fitted doubly robust scores from EconML's DRLearner;
    ``groups`` (the account of each decision) keeps an account's decisions in one fold."""
    _require_econml()
    from econml.dr import DRLearner
    from lightgbm import LGBMRegressor
    from sklearn.linear_model import LinearRegression

    learner = DRLearner(
        model_propensity=LoggedPropensity(),
        model_regression=WithoutColumn(
            LGBMRegressor(
                n_estimators=settings.outcome_trees,
                learning_rate=0.05,
                num_leaves=31,
                min_child_samples=50,
                random_state=settings.seed,
                n_jobs=settings.threads,
                verbose=-1,
            ),
            column=features.shape[1],  # the propensity: EconML stacks [X, W, bundle]
        ),
        model_final=LinearRegression(),
        categories=list(labels),
        cv=settings.folds,
        min_propensity=1e-6,
        random_state=settings.seed,
    )
    _check_bundles_fill_the_folds(bundle, groups, labels, settings.folds)
    # an account's decisions stay in one fold: its outcome never helps predict itself
    try:
        learner.fit(
            outcome,
            bundle,
            X=features,
            W=propensity.reshape(-1, 1),
            groups=groups,
            cache_values=True,
        )
    except AttributeError as error:  # EconML's words for a fold whose training part lacks one
        if "contain all treatments" not in str(error):
            raise
        raise NotEnoughEvidence(
            f"the logged decisions are too few for {settings.folds}-fold cross-fitting: a "
            "fold's training part holds no decision of some bundle "
            f"({_counts_text(_accounts_per_bundle(bundle, groups, labels))}); log more "
            "decisions (a longer or "
            "larger experiment) or lower --folds (at least 2)"
        ) from None
    # the cross-fitted scores EconML's final stage is fitted on (its cache; econml pinned <0.18)
    scores = np.asarray(learner._cached_values.nuisances[0], dtype=np.float64)
    return scores.reshape(len(outcome), len(labels))


def _accounts_per_bundle(
    bundle: NDArray[Any], groups: NDArray[Any] | None, labels: Sequence[str]
) -> dict[str, int]:
    """The accounts (``groups``; each decision its own when None) given each bundle, fewest
    first."""
    keys = np.arange(len(bundle)) if groups is None else groups
    counts = {label: len(set(keys[bundle == label].tolist())) for label in labels}
    return dict(sorted(counts.items(), key=lambda item: item[1]))


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{label}: {n:,}" for label, n in counts.items())


def _check_bundles_fill_the_folds(
    bundle: NDArray[Any], groups: NDArray[Any] | None, labels: Sequence[str], folds: int
) -> None:
    """Refuse a bundle given to one account only: an account's decisions stay in one fold, so
    the fold that holds it is fitted without the bundle (EconML then stops with a traceback;
    a bundle of a few accounts may meet the same, and is caught where EconML says so)."""
    counts = _accounts_per_bundle(bundle, groups, labels)
    single = [label for label, n in counts.items() if n < 2]
    if single:
        raise NotEnoughEvidence(
            f"the logged decisions are too few for {folds}-fold cross-fitting: "
            f"{', '.join(single)} {'was' if len(single) == 1 else 'were'} given to one account "
            f"only (accounts per bundle: {_counts_text(counts)}); every fold must be fitted on "
            "each bundle: log more decisions (a longer or larger experiment)"
        )


def learn_policy(
    logged: pl.DataFrame,
    settings: LearningSettings,
    ladders: Mapping[str, Sequence[LadderStep]],
) -> LearnedPolicy:
    """Learn a policy tree from logged decisions and estimate its value off-policy.

    Args:
        logged: one row per logged decision (module docstring; :func:`check_logged`).
        settings: features, depth, capacity, evaluation split and seeds.
        ladders: the steps of every bundle name (policy treatments and experiment arms): what
            uses capacity, and what the learned rules will give.

    Raises:
        NotEnoughEvidence: the experiment is too small to learn from (no decision explored, a
            bundle given to one account, a cross-fitting fold fitted without some bundle, too
            few decisions to fit, label and evaluate the tree).
        UserError: a table that cannot be learnt from as it is (:func:`check_logged`, a policy
            bundle never taken).
    """
    _require_econml()
    from econml.policy import PolicyTree

    check_logged(logged, settings, ladders)
    labels = sorted(set(logged["bundle"].to_list()))
    explored = sorted(
        set(logged.filter(pl.col("bundle") != pl.col("policy_bundle"))["bundle"].to_list())
    )
    if not explored:  # no experiment, or one too small to have randomised any decision
        raise NotEnoughEvidence(
            "no logged decision took another bundle than the policy's: there is nothing to learn "
            "from (run an experiment first, conf/experiments.yaml)"
        )
    candidates = (KEEP_POLICY, *explored)
    model_columns = tuple(dict.fromkeys((*settings.rule_features, *settings.model_features)))
    model_x, _, _ = _encode(logged, model_columns)
    bundle = logged["bundle"].to_numpy().astype(object)
    scores = doubly_robust_scores(
        logged[settings.outcome].cast(pl.Float64).to_numpy(),
        bundle,
        model_x,
        logged["propensity"].cast(pl.Float64).to_numpy(),
        labels,
        settings,
        groups=logged["account_id"].cast(pl.String).to_numpy(),
    )
    index = {label: k for k, label in enumerate(labels)}
    never = sorted(set(logged["policy_bundle"].unique().to_list()) - set(index))
    if never:
        raise UserError(
            f"the policy's bundle(s) {', '.join(never)} were never taken in the logged decisions, "
            "so keeping the policy cannot be estimated for those accounts"
        )
    # per decision: the column of the policy's own bundle, and whether it uses contact capacity
    policy_column = logged["policy_bundle"].replace_strict(index, return_dtype=pl.Int64).to_numpy()
    uses = {b: uses_capacity(ladders[b], settings.capacity_channels) for b in ladders}
    rewards = np.column_stack(
        [scores[np.arange(len(scores)), policy_column]] + [scores[:, index[b]] for b in explored]
    )
    capacity_use = np.column_stack(
        [
            logged["policy_bundle"].replace_strict(uses, return_dtype=pl.Boolean).to_numpy(),
            *(np.full(len(scores), uses[b]) for b in explored),
        ]
    ).astype(float)

    account_ids = logged["account_id"].cast(pl.String).to_list()
    evaluation = unit_draws(SPLIT_SALT, account_ids)[:, 0] < settings.evaluation_share
    learning = ~evaluation
    safe = settings.confidence > 0
    if safe:
        # honest leaves: the tree chooses its splits on one part of the learning half and the
        # leaves are labelled on the other, so a leaf's bound is not inflated by the split
        # search that made the leaf (with labels on the splitting data it would be). The parts
        # are by account, so an account's decisions stay on one side; PolicyTree's own honesty
        # (by row, and its node values, which the labels do not use) is then switched off, and
        # its splits see as many decisions as they did with it (half the learning half)
        labelling = learning & (unit_draws(LABEL_SALT, account_ids)[:, 0] < settings.label_share)
        structure = learning & ~labelling
    else:
        structure = labelling = learning
    if structure.sum() < 10 or labelling.sum() < 10 or evaluation.sum() < 10:
        raise NotEnoughEvidence(
            f"too few decisions to learn and to evaluate ({structure.sum()} to fit the tree, "
            f"{labelling.sum()} to label its leaves, {evaluation.sum()} to evaluate)"
        )
    rule_x, rule_names, categories = _encode(logged, settings.rule_features)
    tree = PolicyTree(
        max_depth=settings.max_depth,
        min_samples_leaf=max(20, math.ceil(settings.min_leaf_share * structure.sum())),
        random_state=settings.seed,
        honest=not safe,
    ).fit(rule_x[structure], rewards[structure])
    leaf_of = tree.apply(rule_x)
    nodes = np.unique(leaf_of[structure])
    bundles = logged["bundle"].to_numpy().astype(object)
    was_explored = bundles != logged["policy_bundle"].to_numpy().astype(object)
    explored_as = np.column_stack(
        [np.zeros(len(scores), dtype=bool)] + [was_explored & (bundles == b) for b in explored]
    )
    labels = _leaf_labels(
        rewards[labelling],
        leaf_of[labelling],
        np.asarray(account_ids, dtype=object)[labelling],
        explored_as[labelling],
        nodes,
        settings,
    )
    usage = np.array(
        [
            capacity_use[labelling][leaf_of[labelling] == node].mean(axis=0)
            if labels.sizes[k]
            else capacity_use[structure][leaf_of[structure] == node].mean(axis=0)
            for k, node in enumerate(nodes)
        ]
    )
    chosen, capacity = _fit_capacity(
        labels.values, usage, labels.sizes, labels.best, settings.max_contact_share, labels.allowed
    )
    paths = _paths(tree, rule_names)
    leaves = tuple(
        Leaf(
            node=int(node),
            conditions=paths[int(node)],
            candidate=candidates[chosen[k]],
            best_candidate=candidates[labels.best[k]],
            accounts=int(labels.sizes[k]),
            values={c: float(labels.values[k, j]) for j, c in enumerate(candidates)},
            lower_bounds={c: float(labels.lower[k, j]) for j, c in enumerate(candidates) if j > 0},
            explored_accounts={
                c: int(labels.explored[k, j]) for j, c in enumerate(candidates) if j > 0
            },
            eligible=tuple(c for j, c in enumerate(candidates) if j > 0 and labels.allowed[k, j]),
        )
        for k, node in enumerate(nodes)
    )
    proposed_column = np.full(len(scores), -1)
    for k, node in enumerate(nodes):
        proposed_column[leaf_of == node] = chosen[k]
    if (proposed_column[evaluation] < 0).any():  # a node with no learning decision: keep the policy
        proposed_column[proposed_column < 0] = 0
    return LearnedPolicy(
        settings=settings,
        candidates=candidates,
        leaves=leaves,
        capacity=capacity,
        evaluation=_evaluate(
            rewards[evaluation],
            proposed_column[evaluation],
            capacity_use[evaluation],
            np.asarray(account_ids, dtype=object)[evaluation],
            logged[settings.outcome].cast(pl.Float64).to_numpy()[evaluation],
            candidates,
            settings,
        ),
        learning_decisions=int(learning.sum()),
        categories=categories,
        tree_=tree,
        policy_bundles=tuple(sorted(set(logged["policy_bundle"].to_list()))),
        bound_confidence=labels.confidence,
        bound_tests=labels.tests,
        structure_decisions=int(structure.sum()),
    )


@dataclass(frozen=True)
class _Labels:
    """Per leaf (rows) and candidate (columns, keep first) on the labelling decisions."""

    values: NDArray[np.float64]  # mean doubly robust score
    lower: NDArray[np.float64]  # lower bound of the mean gain over keep (keep's column: 0)
    explored: NDArray[np.int64]  # explored accounts of the candidate
    allowed: NDArray[np.bool_]  # what the leaf may give: keep, and the eligible candidates
    best: NDArray[np.int64]  # the label before the capacity step
    sizes: NDArray[np.float64]  # decisions
    confidence: float  # family-wise, of all the bounds together
    tests: int  # bounds that could make a candidate eligible (the Bonferroni divisor)


def _leaf_labels(
    rewards: NDArray[np.float64],
    leaf_of: NDArray[np.int64],
    account_ids: NDArray[Any],
    explored_as: NDArray[np.bool_],
    nodes: NDArray[np.int64],
    settings: LearningSettings,
) -> _Labels:
    """Each leaf's label: the safe rule of the module docstring, or the argmax (confidence 0).

    Needs the labelling decisions' scores per candidate (keep first), leaf, account and which
    candidate each decision explored. The bound of a candidate's gain over keep is a one-sided
    Student-t bound on the mean of the paired differences, with the standard error clustered by
    account (an account's decisions in the leaf summed together: they share the account's
    outcome noise), at level ``1 - (1 - confidence) / tests`` (Bonferroni over every (leaf,
    candidate) pair with enough explored accounts, so that all the bounds hold together with
    probability ``confidence``, and no leaf moves off keep by chance more often than
    ``1 - confidence``).
    """
    from scipy.stats import t as student_t

    leaves, options = len(nodes), rewards.shape[1]
    _, account = np.unique(account_ids, return_inverse=True)
    values = np.zeros((leaves, options))
    explored = np.zeros((leaves, options), dtype=np.int64)
    sizes = np.zeros(leaves)
    # per leaf: per-account sums and counts of the gain over keep, for the clustered error
    clusters: list[tuple[NDArray[np.float64], NDArray[np.float64]]] = []
    for k, node in enumerate(nodes):
        here = leaf_of == node
        sizes[k] = here.sum()
        local = np.unique(account[here], return_inverse=True)[1]
        counts = np.bincount(local).astype(float)
        gains = rewards[here] - rewards[here, :1]
        sums = np.column_stack(
            [np.bincount(local, weights=gains[:, j], minlength=len(counts)) for j in range(options)]
        )
        clusters.append((sums, counts))
        if sizes[k]:
            values[k] = rewards[here].mean(axis=0)
            for j in range(1, options):
                explored[k, j] = len(np.unique(local[explored_as[here, j]]))
    confidence = settings.confidence if settings.confidence > 0 else BOUND_CONFIDENCE
    testable = explored >= settings.min_explored
    testable[:, 0] = False
    tests = int(testable.sum())
    lower = np.full((leaves, options), -np.inf)
    lower[:, 0] = 0.0
    for k, (sums, counts) in enumerate(clusters):
        groups = len(counts)
        if groups < 2:
            continue
        total = counts.sum()
        quantile = float(student_t.ppf(1 - (1 - confidence) / max(tests, 1), groups - 1))
        for j in range(1, options):
            mean = sums[:, j].sum() / total
            residual = sums[:, j] - mean * counts
            error = math.sqrt(groups / (groups - 1) * float((residual**2).sum())) / total
            lower[k, j] = mean - quantile * error
    if settings.confidence > 0:
        allowed = testable & (lower > 0)
        allowed[:, 0] = True
        # the highest lower bound: pessimism, not the highest mean, which among noisy candidates
        # favours the one whose noise was luckiest (the winner's curse the bound is there to stop)
        best = np.where(allowed, lower, -np.inf).argmax(axis=1)
    else:
        allowed = np.ones((leaves, options), dtype=bool)
        best = values.argmax(axis=1)
    return _Labels(values, lower, explored, allowed, best, sizes, confidence, tests)


def _fit_capacity(
    values: NDArray[np.float64],
    usage: NDArray[np.float64],
    sizes: NDArray[np.float64],
    best: NDArray[np.int64],
    max_share: float | None,
    allowed: NDArray[np.bool_] | None = None,
) -> tuple[NDArray[np.int64], CapacityOutcome]:
    """The greedy of the module docstring, and the LP relaxation's bound on its gap; a leaf
    moves only to a candidate ``allowed`` for it (keep and its eligible ones: the safe labels)."""
    from scipy.optimize import linprog

    if allowed is None:
        allowed = np.ones(values.shape, dtype=bool)

    weights = sizes / sizes.sum()
    chosen = best.copy()

    def share(choice: NDArray[np.int64]) -> float:
        return float((weights * usage[np.arange(len(choice)), choice]).sum())

    def value(choice: NDArray[np.int64]) -> float:
        return float((weights * values[np.arange(len(choice)), choice]).sum())

    unconstrained = share(chosen)
    moves = 0
    if max_share is not None:
        while share(chosen) > max_share + 1e-12:
            here = np.arange(len(chosen))
            freed = (usage[here, chosen][:, None] - usage) * weights[:, None]
            lost = (values[here, chosen][:, None] - values) * weights[:, None]
            movable = allowed & (freed > 1e-12)
            ratio = np.where(movable, lost / np.where(movable, freed, 1), np.inf)
            leaf, candidate = np.unravel_index(np.argmin(ratio), ratio.shape)
            if not np.isfinite(ratio[leaf, candidate]):
                break  # nothing frees capacity any more: the policy arm itself uses it
            chosen[leaf] = candidate
            moves += 1
    lp_bound = value(chosen)
    if max_share is not None and moves:
        leaves, options = values.shape
        result = linprog(
            c=-(weights[:, None] * values).ravel(),
            A_ub=(weights[:, None] * usage).ravel()[None, :],
            b_ub=[max_share],
            A_eq=np.kron(np.eye(leaves), np.ones(options)),
            b_eq=np.ones(leaves),
            bounds=[(0, 1 if ok else 0) for ok in allowed.ravel()],
            method="highs",
        )
        if result.status == 0:
            lp_bound = float(-result.fun)
    return chosen, CapacityOutcome(
        max_share=max_share,
        share_unconstrained=unconstrained,
        share=share(chosen),
        moves=moves,
        greedy_value=value(chosen),
        lp_bound=lp_bound,
    )


def _paths(tree: Any, names: Sequence[tuple[str, str | None]]) -> dict[int, tuple[Condition, ...]]:
    """The conditions from the root to every leaf of a fitted EconML tree."""
    inner = tree.tree_
    paths: dict[int, tuple[Condition, ...]] = {}
    stack: list[tuple[int, tuple[Condition, ...]]] = [(0, ())]
    while stack:
        node, conditions = stack.pop()
        left, right = inner.children_left[node], inner.children_right[node]
        if left == -1:
            paths[node] = conditions
            continue
        feature, value = names[inner.feature[node]]
        threshold = float(inner.threshold[node])
        stack.append((left, (*conditions, Condition(feature, value, False, threshold))))
        stack.append((right, (*conditions, Condition(feature, value, True, threshold))))
    return paths


def _evaluate(
    rewards: NDArray[np.float64],
    proposed: NDArray[np.int64],
    capacity_use: NDArray[np.float64],
    account_ids: NDArray[Any],
    outcome: NDArray[np.float64],
    candidates: Sequence[str],
    settings: LearningSettings,
) -> OffPolicyEvaluation:
    rows = np.arange(len(rewards))
    proposed_scores = rewards[rows, proposed]
    current_scores = rewards[:, 0]
    # resample accounts, each with all its decisions: sums and counts per account
    _, account = np.unique(account_ids, return_inverse=True)
    counts = np.bincount(account).astype(float)

    def interval(per_decision: NDArray[np.float64], seed_offset: int) -> Estimate:
        sums = np.bincount(account, weights=per_decision)
        low, high = percentile_bootstrap(
            lambda draw: float(sums[draw].sum() / counts[draw].sum()),
            len(counts),
            settings.bootstrap_samples,
            settings.seed + seed_offset,
        )
        return Estimate(float(per_decision.mean()), low, high)

    return OffPolicyEvaluation(
        decisions=len(rewards),
        accounts=len(counts),
        proposed=interval(proposed_scores, 1),
        current=interval(current_scores, 2),
        uplift=interval(proposed_scores - current_scores, 3),
        logged_mean_outcome=float(outcome.mean()),
        each_candidate={c: float(rewards[:, j].mean()) for j, c in enumerate(candidates)},
        contact_share=float(capacity_use[rows, proposed].mean()),
    )


def first_decisions(logged: pl.DataFrame) -> pl.DataFrame:
    """Each account's first logged decision in each experiment (by ``as_of``; per account when
    the table has no ``experiment_id``), the rows whose bundle is randomised given what is known.

    An experiment that keeps an account in its arm month after month (the simulated lender's,
    and any persistent champion/challenger test) randomises the account once: its later
    decisions come after months of its arm, whose effects shape the state they are taken in
    (a grace arm's accounts are paused, fewer stay eligible, their features differ). Given that
    state the arm is no longer random, so the logged propensity does not hold for those rows
    and a doubly robust estimate on them is biased (measured on the simulator: the grace arms'
    estimates missed the replay by 4,000-5,000 CNY per decision on all decisions, and were
    covered on first decisions; docs/benchmarks.md). The outcome of a first decision still
    follows the arm for the whole horizon, which is what a policy applied every month does.
    """
    keys = ["account_id", "experiment_id"] if "experiment_id" in logged.columns else ["account_id"]
    order = ["as_of"] if "as_of" in logged.columns else []
    if not order:
        return logged.unique(keys, keep="first", maintain_order=True)
    return logged.sort(*keys, *order).unique(keys, keep="first", maintain_order=True)


def predict_candidates(learned: LearnedPolicy, frame: pl.DataFrame) -> list[str]:
    """The candidate the learned rules give each row of ``frame`` (its rule features); a row with
    a category the logged data never had keeps the policy (nothing was learnt of it)."""
    x, _, _ = _encode(frame, learned.settings.rule_features, learned.categories)
    by_node = {leaf.node: leaf.candidate for leaf in learned.leaves}
    seen = np.ones(frame.height, dtype=bool)
    for column, levels in learned.categories.items():
        seen &= frame[column].cast(pl.String).is_in(list(levels)).to_numpy()
    return [
        by_node.get(int(node), KEEP_POLICY) if known else KEEP_POLICY
        for node, known in zip(learned.tree_.apply(x), seen, strict=True)
    ]


# --- output --------------------------------------------------------------------------------------


def _steps_document(steps: Sequence[LadderStep]) -> list[dict[str, Any]]:
    out = []
    for step in steps:
        item: dict[str, Any] = {"day": step.day, "action": step.action}
        if step.channel is not None:
            item["channel"] = step.channel
        item["at"] = step.at.strftime("%H:%M")
        if step.recipient != "borrower":
            item["recipient"] = step.recipient
        out.append(item)
    return out


def tree_rules_document(
    learned: LearnedPolicy, ladders: Mapping[str, Sequence[LadderStep]]
) -> dict[str, Any]:
    """The learned rules as a plain document (YAML): one rule per leaf, its conditions (all
    must hold), the candidate it gives, and the evidence (decisions, estimated value per
    candidate on the learning half)."""
    return {
        "version": 1,
        "kind": "learned policy rules (rollrisk learn-policy)",
        "rule_features": list(learned.settings.rule_features),
        "applies_to": {column: list(levels) for column, levels in learned.categories.items()},
        "otherwise": _keep_words(learned),
        "candidates": {
            c: (_keep_words(learned) if c == KEEP_POLICY else _steps_document(ladders[c]))
            for c in learned.candidates
        },
        "rules": [
            {
                "id": f"LRN-{k + 1:02d}",
                "when": _region_document(leaf, learned.categories),
                "give": learned.give(leaf),
                **(
                    {"best_without_capacity_limit": leaf.best_candidate}
                    if leaf.best_candidate != leaf.candidate
                    else {}
                ),
                "learning_decisions": leaf.accounts,
                "estimated_value_per_decision": {c: round(v, 2) for c, v in leaf.values.items()},
                "gain_over_current": {
                    c: {
                        "estimate": round(leaf.gain(c), 2),
                        "lower_bound": _rounded(leaf.lower_bounds[c]),
                        "explored_accounts": leaf.explored_accounts[c],
                        "eligible": c in leaf.eligible,
                    }
                    for c in learned.candidates
                    if c != KEEP_POLICY
                },
            }
            for k, leaf in enumerate(learned.leaves)
        ],
        "labels": _labels_words(learned),
    }


def _rounded(value: float) -> float | None:
    return round(value, 2) if math.isfinite(value) else None


def _labels_words(learned: LearnedPolicy) -> str:
    """How the leaves were labelled, in a sentence (for the rules, the JSON and the summary)."""
    s = learned.settings
    bounds = (
        f"one-sided Student-t, account-clustered, {learned.bound_confidence:.0%} family-wise "
        f"over {learned.bound_tests} (leaf, candidate) pair(s) (Bonferroni)"
        if learned.bound_tests
        else f"none computed (no leaf had a candidate with {s.min_explored} explored accounts "
        "to bound)"
    )
    if s.confidence <= 0:
        return (
            "argmax: each leaf gives the candidate of highest mean doubly robust score, on the "
            "same decisions the tree split on (confidence 0); lower bounds, shown but not used "
            f"to label: {bounds}"
        )
    return (
        "safe: a leaf leaves the current policy only for a candidate with at least "
        f"{s.min_explored} explored accounts in the leaf whose gain over the current policy has a "
        "lower bound above 0 (of those, the one of highest lower bound); labelled on a "
        f"{s.label_share:.0%} part of the learning accounts the tree's splits never saw; lower "
        f"bounds: {bounds}"
    )


def _leaf_words(leaf: Leaf, learned: LearnedPolicy) -> str:
    """The evidence of one rule: its estimate against the current policy and its lower bound."""
    if leaf.candidate == KEEP_POLICY:
        # the alternative that came nearest: of those with enough explored accounts to be
        # tested, the highest lower bound; a bound without explored accounts is the outcome
        # model's extrapolation alone, so it is not shown as the nearest
        tested = [
            c
            for c, bound in leaf.lower_bounds.items()
            if math.isfinite(bound) and leaf.explored_accounts[c] >= learned.settings.min_explored
        ]
        if not tested:
            most = max(
                leaf.explored_accounts, key=lambda c: leaf.explored_accounts[c], default=None
            )
            return f"{leaf.accounts:,} decisions; no candidate had " + (
                f"{learned.settings.min_explored} explored accounts here (most: {most}, "
                f"{leaf.explored_accounts[most]})"
                if most is not None
                else "explored accounts here"
            )
        top = max(tested, key=lambda c: leaf.lower_bounds[c])
        return (
            f"{leaf.accounts:,} decisions; nearest alternative {top}: estimated "
            f"{leaf.gain(top):+,.2f} per decision, lower bound {leaf.lower_bounds[top]:+,.2f}, "
            f"{leaf.explored_accounts[top]} explored accounts"
        )
    explored = leaf.explored_accounts[leaf.candidate]
    bound = leaf.lower_bounds[leaf.candidate]
    evidence = (
        f"lower bound {bound:+,.2f} ({learned.bound_confidence:.0%} family-wise), "
        f"{explored} explored accounts"
        if explored and math.isfinite(bound)
        else f"no lower bound ({explored} explored accounts here: the estimate is the outcome "
        "model's extrapolation)"
    )
    return (
        f"{leaf.accounts:,} decisions; estimated {leaf.gain(leaf.candidate):+,.2f} per decision "
        f"against the current policy, {evidence}"
    )


def _keep_words(learned: LearnedPolicy) -> str:
    if learned.keep_bundle is None:
        return "keep the current policy's decision"
    return f"keep the current policy's decision: {learned.keep_bundle} (every logged decision's)"


def _region_document(leaf: Leaf, categories: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    allowed, ranges = leaf_region(leaf, categories)
    when: dict[str, Any] = {feature: {"in": values} for feature, values in allowed.items()}
    for feature, (low, high) in ranges.items():
        when[feature] = {
            **({"gt": round(low, 6)} if low > -math.inf else {}),
            **({"le": round(high, 6)} if high < math.inf else {}),
        }
    return when


def policy_fields_only(learned: LearnedPolicy) -> bool:
    """Whether every rule feature is one ``conf/policy.yaml`` can test (see :data:`POLICY_FIELDS`)."""
    return all(feature in POLICY_FIELDS for feature in learned.settings.rule_features)


def rules_reaching(
    rules: Sequence[Mapping[str, Any]], categories: Mapping[str, Sequence[str]]
) -> set[str]:
    """The treatments of the policy ``rules`` (as written in a policy file) that can reach an
    account with the logged values ``categories`` (rule feature -> values seen): a rule
    reaches unless one of its list conditions (``segment``, ``start_bucket``, ``risk_band``,
    ``product``) shares no value with what was logged for that feature. Ranges (``dpd``,
    ``amount_overdue``) and features not logged are taken to reach, and precedence is not
    applied, so the set may hold more than the rules would give; never less."""
    given = set()
    for rule in rules:
        when = rule.get("when") or {}
        if all(
            set(map(str, when[feature])) & set(map(str, seen))
            for feature, seen in categories.items()
            if isinstance(when.get(feature), list)
        ):
            given.add(str(rule["treatment"]))
    return given


def learned_policy_text(
    learned: LearnedPolicy,
    policy_text: str,
    policy_source: str,
    ladders: Mapping[str, Sequence[LadderStep]],
    name: str = "learned",
) -> str:
    """A complete policy file: the learned rules (precedence 1, one per leaf) over the rules of
    the policy that logged the decisions, with ``policy_text``'s treatments and the ladders of
    every bundle the rules give.

    Where a leaf keeps the current policy, the current policy's rules decide, and they also
    decide where no leaf reaches (category values the logged data never held). Which rules
    those are is read from the logged ``policy_bundle``:

    * the logging policy chose one bundle for every logged decision (the lender's control arm:
      ``standard_queue``, its tiered collection) and ``policy_text``'s rules that reach the
      logged accounts' values (:func:`rules_reaching`: the segments, buckets, bands and products
      the logged data holds) give other treatments too: those rules did not decide the logged
      accounts (they would not all have got one bundle). That bundle is written as the one
      rule below the learned ones, ``policy_text``'s rules are left out, and every leaf writes
      its rule, a keeping leaf with that bundle. (An experiment confined to accounts the file's
      rules all give that one bundle, e.g. only forgetful borrowers under the shipped policy,
      is read as the next case: the file's rules stay for the accounts it never saw.)
    * otherwise every bundle the logging policy chose must be the treatment of some rule of
      ``policy_text``: its rules are the current policy's, kept below the learned ones (a leaf
      that keeps adds no rule).

    The leaves are disjoint, so the learned rules cannot conflict; the text is checked by
    :func:`~rollrisk.strategies.policy.parse_policy` before it is returned.

    Raises:
        ValueError: a rule feature is not a policy field (:func:`policy_fields_only`).
        UserError: the logging policy chose several bundles that no rule of ``policy_text``
            gives (the policy file given is not the one that logged the decisions).
    """
    if not policy_fields_only(learned):
        raise ValueError(
            "only rules on " + ", ".join(POLICY_FIELDS) + " can be written as a policy file; "
            f"these use {', '.join(learned.settings.rule_features)}"
        )
    document = yaml.safe_load(policy_text)
    given_by_rules = {str(rule["treatment"]) for rule in document["rules"]}
    given_here = rules_reaching(document["rules"], learned.categories)
    one_for_all = learned.keep_bundle is not None and given_here != {learned.keep_bundle}
    logging_rules = set(learned.policy_bundles) <= given_by_rules and not one_for_all
    if not logging_rules and learned.keep_bundle is None:
        missing = sorted(set(learned.policy_bundles) - given_by_rules)
        raise UserError(
            f"the logged decisions' policy_bundle value(s) {', '.join(missing)} are given by no rule of "
            f"{policy_source}, and the logging policy chose several bundles: pass the policy "
            "that chose them (--policy), so that where the learned rules keep it, it decides"
        )
    space = {
        "start_bucket": list(document["space"]["start_bucket"]),
        "segment": list(document["space"]["segment"]),
        "product": list(document["space"]["product"]),
        "risk_band": list(document["risk_bands"]),
    }
    keep = None if logging_rules else learned.keep_bundle
    given = {learned.give(leaf) for leaf in learned.leaves} | ({keep} if keep else set())
    for bundle in sorted(given - {KEEP_POLICY} - set(document["treatments"])):
        document["treatments"][bundle] = {
            "description": "learned from experiments (rollrisk learn-policy)",
            "ladder": _steps_document(ladders[bundle]),
        }
    rules = []
    for k, leaf in enumerate(learned.leaves):
        if leaf.candidate == KEEP_POLICY and keep is None:
            continue  # the current policy's rules below decide here
        # a rule reaches only the values the experiments logged: of the others nothing was learnt
        allowed, ranges = leaf_region(leaf, learned.categories)
        when: dict[str, Any] = {
            key: [v for v in space[key] if v in allowed[key]] for key in allowed
        }
        if any(not values for values in when.values()):
            continue  # a leaf no account of the policy's space reaches
        # the tree sends x <= t left: [ge, lt) differs only at x = t exactly (thresholds are
        # midpoints between logged values)
        for key, (low, high) in ranges.items():
            when[key] = {
                **({"ge": low} if low > -math.inf else {}),
                **({"lt": high} if high < math.inf else {}),
            }
        rules.append(
            {
                "id": f"LRN-{k + 1:02d}",
                "description": f"learned: {_leaf_words(leaf, learned)}",
                "precedence": 1,
                "when": when,
                "treatment": learned.give(leaf),
            }
        )
    if keep is None:
        below = list(document["rules"])
        current = f"the current policy ({policy_source})"
    else:
        below = [
            {
                "id": "LRN-LOGGED",
                "description": (
                    f"the logging policy: every logged decision's policy_bundle was {keep}; "
                    "where no learned rule reaches, nothing was learnt and it stays"
                ),
                "precedence": 100,
                "when": {},
                "treatment": keep,
            }
        ]
        current = (
            f"the logging policy, {keep} for every account (rule LRN-LOGGED), with the "
            f"treatments of {policy_source}"
        )
    document["description"] = (
        f"{document.get('name', 'the current policy')} with rules learnt from logged experiments "
        "by rollrisk learn-policy; review before committing"
        if keep is None
        else f"{keep} for every account, with rules learnt from logged experiments by rollrisk "
        "learn-policy; review before committing"
    )
    document["name"] = name
    document["rules"] = rules + below
    text = (
        f"# Learned by `rollrisk learn-policy` from logged decisions: {current}\n"
        "# under the LRN-* rules (precedence 1). Review, then commit.\n"
        + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    )
    parse_policy(text, "learned policy")  # a file the product can load, or an error here
    return text


def evaluation_document(learned: LearnedPolicy) -> dict[str, Any]:
    """The off-policy estimate and how it was obtained, for JSON."""
    e, c, s = learned.evaluation, learned.capacity, learned.settings
    return {
        "method": (
            "doubly robust (EconML DRLearner, cross-fitted LightGBM outcome model, logged "
            "propensities); policy: EconML PolicyTree on the learning half, leaves labelled as "
            "'labels' says; estimate on the evaluation half, 95% percentile bootstrap over "
            "accounts"
        ),
        "labels": _labels_words(learned),
        "settings": {
            "rule_features": list(s.rule_features),
            "model_features": list(s.model_features),
            "outcome": s.outcome,
            "max_depth": s.max_depth,
            "evaluation_share": s.evaluation_share,
            "folds": s.folds,
            "max_contact_share": s.max_contact_share,
            "capacity_channels": list(s.capacity_channels),
            "bootstrap_samples": s.bootstrap_samples,
            "seed": s.seed,
            "confidence": s.confidence,
            "min_explored": s.min_explored,
            "label_share": s.label_share if s.confidence > 0 else None,
        },
        "structure_decisions": learned.structure_decisions,
        "bound_tests": learned.bound_tests,
        "candidates": list(learned.candidates),
        "learning_decisions": learned.learning_decisions,
        "evaluation": {
            "decisions": e.decisions,
            "accounts": e.accounts,
            "proposed_policy": e.proposed.as_dict(),
            "current_policy": e.current.as_dict(),
            "uplift_vs_current": e.uplift.as_dict(),
            "logged_mean_outcome": e.logged_mean_outcome,
            "everyone_given": e.each_candidate,
            "contact_share_proposed": e.contact_share,
        },
        "capacity": {
            "max_contact_share": c.max_share,
            "share_without_limit": c.share_unconstrained,
            "share": c.share,
            "greedy_moves": c.moves,
            "greedy_value_per_decision": c.greedy_value,
            "lp_relaxation_value_per_decision": c.lp_bound,
            "optimality_gap_bound_per_decision": c.gap_bound,
        },
    }


def evaluation_markdown(learned: LearnedPolicy) -> str:
    """A short human-readable summary of :func:`evaluation_document`."""
    e, c = learned.evaluation, learned.capacity

    def fmt(estimate: Estimate) -> str:
        return f"{estimate.value:,.2f} (95% CI {estimate.ci_low:,.2f} to {estimate.ci_high:,.2f})"

    lines = [
        "# Learned policy: off-policy estimate",
        "",
        f"Outcome `{learned.settings.outcome}` per decision, doubly robust, on the evaluation half "
        f"({e.decisions:,} decisions, {e.accounts:,} accounts the rules never saw); "
        f"{learned.learning_decisions:,} decisions learnt from.",
        "",
        "| policy | value per decision |",
        "|---|---|",
        f"| proposed (learned rules) | {fmt(e.proposed)} |",
        f"| current policy | {fmt(e.current)} |",
        f"| proposed − current | {fmt(e.uplift)} |",
        f"| logged (what happened) | {e.logged_mean_outcome:,.2f} |",
        "",
        "Everyone given one candidate: "
        + ", ".join(f"{name} {value:,.2f}" for name, value in e.each_candidate.items()),
        "",
        f"Contact capacity: max share {c.max_share if c.max_share is not None else 'none'}; "
        f"best leaves would use {c.share_unconstrained:.1%}, the proposal uses {c.share:.1%} "
        f"({c.moves} greedy move(s)); optimality gap of the greedy at most {c.gap_bound:,.2f} "
        "per decision (LP relaxation bound, estimated values).",
        "",
        "## Rules",
        "",
        f"Labels: {_labels_words(learned)}. The tree's splits: {learned.structure_decisions:,} "
        "decisions.",
        "",
    ]
    for k, leaf in enumerate(learned.leaves):
        when = _region_text(leaf, learned.categories)
        lines.append(
            f"- LRN-{k + 1:02d}: if {when} then **{learned.give(leaf)}** "
            f"({_leaf_words(leaf, learned)})"
        )
    return "\n".join(lines) + "\n"


def _region_text(leaf: Leaf, categories: Mapping[str, Sequence[str]]) -> str:
    allowed, ranges = leaf_region(leaf, categories)
    parts = [f"{feature} in {{{', '.join(values)}}}" for feature, values in allowed.items()]
    for feature, (low, high) in ranges.items():
        lower = f"{low:g} < " if low > -math.inf else ""
        upper = f" ≤ {high:g}" if high < math.inf else ""
        parts.append(f"{lower}{feature}{upper}")
    return " and ".join(parts) or "every account"
