"""Segments: which driver makes a delinquent account risky, from its explanation and its state.

Every scored account gets exactly one segment. The rules live in ``conf/segments.yaml`` (thresholds
and precedence are strategy decisions, not code): each segment has one or more rules, a rule
holds when all its conditions hold, and the first segment in ``precedence`` with a rule that
holds wins; an account no rule claims gets the ``fallback`` segment.

A condition tests one *subject* with one or more comparisons (``gt ge lt le eq ne in not_in``,
all of which must hold):

* ``family: F`` -- the family's summed SHAP contribution (log-odds) from
  :func:`rollrisk.models.explanations.family_contributions`;
* ``family_share: F`` -- the family's share of the account's risk-increasing family
  contributions (0..1; 0 when no family raises the risk);
* ``top_family: [F, ...]`` -- the family with the largest contribution is one of these;
* ``field: NAME`` -- a column of the account state (:data:`STATE_FIELDS`, or a feature named
  when the rules are parsed), or ``risk_above_base``: the sum of all family contributions, i.e.
  how far the account's log-odds sit above the portfolio's base value.

A missing state value never satisfies a comparison, so a rule cannot fire on absent data.

Operands are checked against what the subject can hold when the rules are parsed, so a condition
that could never be met (or always would be) is a load error, not a silent miss: a label field
(``product``, ``start_bucket``, a categorical feature) takes only its own values and only ``eq ne
in not_in``; a numeric field or a family takes finite numbers (never a boolean or a text); a
family share, ``probability`` and a 0/1 feature lie between 0 and 1; and the comparisons of one
condition must leave some value that meets them all.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rollrisk.features.registry import FAMILIES, FEATURE_SET, is_flag
from rollrisk.features.schemas import PRODUCTS
from rollrisk.strategies.yaml_config import (
    ConfigError,
    line_of,
    parse_yaml_with_lines,
    read_yaml_text,
    require_keys,
)

SEGMENTS: tuple[str, ...] = (
    "capacity_shock",
    "low_willingness",
    "unreachable",
    "forgetful",
    "seasonal",
    "general",
)
"""Every segment a rule or a policy may name (``general``: no dominant driver)."""

STATE_FIELDS: Mapping[str, str] = {
    "product": "product of the account (bnpl, credit_card, cash_loan, merchant_loan, agri_loan)",
    "start_bucket": "delinquency bucket at the as-of date (M1, M2, M3)",
    "probability": "calibrated roll-to-default probability",
    "risk_above_base": "sum of all family contributions (log-odds above the base value)",
}
"""Columns a rule may always test besides the features (``risk_above_base`` is computed here).

The features of the feature set (by default :data:`rollrisk.features.registry.FEATURE_SET`)
may be tested too: the state frame is typically the scored training-set frame, which holds
``product``, ``start_bucket`` and every feature's raw value."""

DERIVED_FIELDS = frozenset({"risk_above_base"})

START_BUCKET_NAMES: tuple[str, ...] = ("M1", "M2", "M3")
"""The buckets an account to score can start in (the keys of
:data:`rollrisk.strategies.policy.START_BUCKETS`, which imports this module)."""

LABEL_FIELDS: Mapping[str, tuple[str, ...]] = {
    "product": PRODUCTS,
    "start_bucket": START_BUCKET_NAMES,
}
"""The values of each label (categorical) field a rule may test; a condition naming another
value is refused when the rules are parsed."""

_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
    "eq": operator.eq,
    "ne": operator.ne,
}
_SUBJECTS = ("family", "family_share", "top_family", "field")
_ORDER = ("gt", "ge", "lt", "le")


@dataclass(frozen=True)
class _Values:
    """What a condition's subject can hold, to check its operands against."""

    what: str  # how messages name the subject, e.g. "numeric field refusals_6m"
    labels: tuple[str, ...] | None = None  # a label field's values; None: a number
    categorical: bool = False  # a label field (labels None: any text, vocabulary unknown)
    unit: str = ""  # non-empty: the values lie in [0, 1], and this sentence says so
    flag: bool = False  # a 0/1 feature: eq, ne, in, not_in take 0 or 1


@dataclass(frozen=True)
class Condition:
    """One test on one subject; every comparison in ``tests`` must hold."""

    subject: str  # one of family, family_share, top_family, field
    name: str | tuple[str, ...]  # family or field name; for top_family a tuple of families
    tests: tuple[tuple[str, Any], ...]  # (operator, operand)
    line: int | None


@dataclass(frozen=True)
class SegmentRule:
    """A rule for one segment: holds when all its conditions hold."""

    rule_id: str
    segment: str
    conditions: tuple[Condition, ...]
    line: int | None


@dataclass(frozen=True)
class SegmentRules:
    """The parsed ``conf/segments.yaml``: rules in precedence order and the fallback."""

    source: str
    precedence: tuple[str, ...]
    rules: tuple[SegmentRule, ...]  # grouped by segment, segments in precedence order
    fallback: str

    @property
    def fields(self) -> frozenset[str]:
        """State columns the rules read (what :func:`assign_segments` needs in ``state``)."""
        return frozenset(
            str(c.name)
            for rule in self.rules
            for c in rule.conditions
            if c.subject == "field" and c.name not in DERIVED_FIELDS
        )


def parse_segment_rules(
    text: str, source: str, extra_fields: Iterable[str] | None = None
) -> SegmentRules:
    """Parse and validate segment rules from YAML text.

    ``extra_fields`` names the further state columns rules may test: by default the features of
    :data:`rollrisk.features.registry.FEATURE_SET`; pass the model's feature names when it uses
    another set. Unknown segments, families, fields, operators or keys, and operands the subject
    cannot hold (a value outside a label field's vocabulary, a text or boolean for a number, a
    share outside [0, 1], comparisons no value meets together) raise :class:`ConfigError` with
    ``source`` and the line.
    """
    document = parse_yaml_with_lines(text, source)
    require_keys(
        document,
        source,
        "the segment rules file",
        ("fallback", "precedence", "segments"),
        ("version",),
    )
    if extra_fields is None:
        extra_fields = FEATURE_SET.names
    allowed_fields = set(STATE_FIELDS) | set(extra_fields)

    fallback = _known_segment(document["fallback"], source, document.line_of("fallback"))
    precedence_node = document["precedence"]
    if not isinstance(precedence_node, list) or not precedence_node:
        raise ConfigError(
            source,
            document.line_of("precedence"),
            "precedence must be a non-empty list of segments",
        )
    precedence: list[str] = []
    for index, name in enumerate(precedence_node):
        line = line_of(precedence_node, index)
        _known_segment(name, source, line)
        if name in precedence:
            raise ConfigError(source, line, f"segment {name!r} appears twice in precedence")
        if name == fallback:
            raise ConfigError(
                source, line, f"the fallback segment {name!r} takes no rules and no precedence"
            )
        precedence.append(name)

    segments_node = document["segments"]
    if not isinstance(segments_node, dict):
        raise ConfigError(
            source, document.line_of("segments"), "segments must map each segment to its rules"
        )
    for name in segments_node:
        _known_segment(name, source, line_of(segments_node, name))
        if name not in precedence:
            raise ConfigError(
                source,
                line_of(segments_node, name),
                f"segment {name!r} has rules but is not in precedence",
            )
    rules: list[SegmentRule] = []
    seen_ids: dict[str, int | None] = {}
    for name in precedence:
        if name not in segments_node:
            raise ConfigError(
                source,
                document.line_of("precedence"),
                f"segment {name!r} is in precedence but has no rules under segments",
            )
        body = require_keys(
            segments_node[name],
            source,
            f"segment {name!r}",
            ("rules",),
            ("description",),
            line_of(segments_node, name),
        )
        rule_nodes = body["rules"]
        if not isinstance(rule_nodes, list) or not rule_nodes:
            raise ConfigError(
                source, body.line_of("rules"), f"segment {name!r} needs a non-empty list of rules"
            )
        for index, rule_node in enumerate(rule_nodes):
            rule_line = line_of(rule_nodes, index)
            rule_node = require_keys(
                rule_node,
                source,
                f"a rule of segment {name!r}",
                ("id", "when"),
                ("description",),
                rule_line,
            )
            rule_id = str(rule_node["id"])
            if rule_id in seen_ids:
                raise ConfigError(
                    source,
                    rule_line,
                    f"rule id {rule_id!r} is already used on line {seen_ids[rule_id]}",
                )
            seen_ids[rule_id] = rule_line
            conditions_node = rule_node["when"]
            if not isinstance(conditions_node, list) or not conditions_node:
                raise ConfigError(
                    source,
                    rule_node.line_of("when"),
                    f"rule {rule_id!r}: when must be a non-empty list of conditions",
                )
            conditions = tuple(
                _parse_condition(
                    node,
                    source,
                    line_of(conditions_node, i),
                    allowed_fields,
                    f"segment {name!r}, rule {rule_id!r}",
                )
                for i, node in enumerate(conditions_node)
            )
            rules.append(SegmentRule(rule_id, name, conditions, rule_line))
    return SegmentRules(source, tuple(precedence), tuple(rules), fallback)


def load_segment_rules(path: Path, extra_fields: Iterable[str] | None = None) -> SegmentRules:
    """Read and parse a segment rules file (see :func:`parse_segment_rules`)."""
    return parse_segment_rules(read_yaml_text(path, "segments file"), str(path), extra_fields)


def _known_segment(name: Any, source: str, line: int | None) -> str:
    if name not in SEGMENTS:
        raise ConfigError(
            source, line, f"unknown segment {name!r}; known segments: {', '.join(SEGMENTS)}"
        )
    return str(name)


def _known_family(name: Any, source: str, line: int | None) -> str:
    if name not in FAMILIES:
        raise ConfigError(
            source, line, f"unknown family {name!r}; known families: {', '.join(FAMILIES)}"
        )
    return str(name)


def _parse_condition(
    node: Any, source: str, line: int | None, allowed_fields: set[str], where: str
) -> Condition:
    """One condition; ``where`` names its segment and rule in messages."""
    if not isinstance(node, dict):
        raise ConfigError(
            source,
            line,
            f"{where}: a condition must be a mapping such as {{family: willingness, gt: 0.2}}",
        )
    subjects = [key for key in node if key in _SUBJECTS]
    if len(subjects) != 1:
        raise ConfigError(
            source,
            line,
            f"{where}: a condition names exactly one of {', '.join(_SUBJECTS)}",
        )
    subject = subjects[0]
    if subject == "top_family":
        families = node["top_family"]
        families = [families] if isinstance(families, str) else families
        if not isinstance(families, list) or not families:
            raise ConfigError(
                source, line, f"{where}: top_family takes a family or a list of families"
            )
        if len(node) != 1:
            raise ConfigError(source, line, f"{where}: top_family takes no comparison")
        names = tuple(_known_family(f, source, line) for f in families)
        return Condition("top_family", names, (), line)

    name = node[subject]
    if subject in ("family", "family_share"):
        _known_family(name, source, line)
    elif name not in allowed_fields:
        raise ConfigError(
            source,
            line,
            f"{where}: unknown field {name!r}; known fields: {', '.join(sorted(allowed_fields))}",
        )
    values = _values_of(subject, str(name))
    tests: list[tuple[str, Any]] = []
    for key, operand in node.items():
        if key == subject:
            continue
        key_line = line_of(node, key)
        if key in _COMPARISONS:
            tests.append((key, _operand(key, operand, values, source, key_line, where)))
        elif key in ("in", "not_in"):
            if not isinstance(operand, list) or not operand:
                raise ConfigError(source, key_line, f"{where}: {key} needs a non-empty list")
            members = (_operand(key, m, values, source, key_line, where) for m in operand)
            tests.append((key, tuple(members)))
        else:
            raise ConfigError(
                source,
                key_line,
                f"{where}: unknown comparison {key!r}; use one of gt, ge, lt, le, eq, ne, in, not_in",
            )
    if not tests:
        raise ConfigError(source, line, f"{where}: the condition on {name!r} has no comparison")
    if not _can_hold(tests, values):
        written = ", ".join(f"{op} {_show(operand)}" for op, operand in tests)
        if all(op in _ORDER for op, _ in tests):
            problem = f"the range {written} holds no value"
        else:
            problem = f"the comparisons {written} hold no value together"
        if values.unit:
            problem += f" ({values.unit})"
        elif values.labels is not None:
            problem += f" ({values.what} takes one of {', '.join(values.labels)})"
        raise ConfigError(source, line, f"{where}: {values.what}: {problem}")
    return Condition(subject, str(name), tuple(tests), line)


def _values_of(subject: str, name: str) -> _Values:
    """What ``name`` holds: a label field's vocabulary, or numbers (maybe within [0, 1])."""
    if subject == "family":
        return _Values(f"family {name}")
    if subject == "family_share":
        return _Values(f"family_share {name}", unit="a family share is between 0 and 1")
    if name in LABEL_FIELDS:
        return _Values(name, labels=LABEL_FIELDS[name], categorical=True)
    if name == "probability":
        return _Values(name, unit="a probability is between 0 and 1")
    spec = next((f for f in FEATURE_SET.features if f.name == name), None)
    if spec is not None and spec.kind == "categorical":
        return _Values(name, categorical=True)
    if spec is not None and is_flag(spec):
        return _Values(f"field {name}", unit="a 0/1 field is 0 or 1", flag=True)
    return _Values(f"numeric field {name}")  # a feature the registry does not describe, too


def _operand(
    op: str, operand: Any, values: _Values, source: str, line: int | None, where: str
) -> Any:
    """``operand`` when ``values`` can hold it, else :class:`ConfigError`."""

    def refuse(expected: str) -> ConfigError:
        got = _describe(operand, values.categorical)
        return ConfigError(source, line, f"{where}: {expected}, got {got}")

    if values.categorical:
        if op in _ORDER:
            raise ConfigError(
                source,
                line,
                f"{where}: {values.what} is a label: compare it with eq, ne, in or not_in, not {op}",
            )
        if values.labels is None:
            if not isinstance(operand, str) or not operand:
                raise refuse(f"{values.what} takes a label (a text)")
        elif operand not in values.labels:
            error = refuse(f"{values.what} takes one of {', '.join(values.labels)}")
            near = [v for v in values.labels if str(operand).strip().lower() == v.lower()]
            if near and isinstance(operand, str):
                raise ConfigError(source, line, f"{error.detail} (did you mean {near[0]!r}?)")
            raise error
        return operand
    if values.flag and isinstance(operand, bool) and op not in _ORDER:
        return int(operand)  # `eq: true` on a 0/1 feature: its 1
    if not _is_number(operand):
        raise refuse(f"{values.what} needs a number")
    if not math.isfinite(operand):
        raise refuse(f"{values.what} needs a finite number")
    if (values.unit and not 0 <= operand <= 1) or (
        values.flag and op not in _ORDER and operand not in (0, 1)
    ):
        raise refuse(f"{values.what}: {values.unit}")
    return operand


def _describe(operand: Any, label: bool = False) -> str:
    """An operand as a strategy team wrote it, for a message (``label``: a label was due)."""
    if operand is None:
        return "nothing (the value is empty)"
    if isinstance(operand, bool):
        return f"the boolean {str(operand).lower()}" + ("" if label else " (write 1 or 0)")
    if isinstance(operand, str):
        return repr(str(operand)) if label else f"the text {str(operand)!r}"
    if _is_number(operand):
        return _show(operand)
    return f"{operand!r}"


def _show(operand: Any) -> str:
    if isinstance(operand, tuple):
        return "[" + ", ".join(_show(v) for v in operand) + "]"
    if isinstance(operand, float) and operand.is_integer():
        return str(int(operand)) if abs(operand) < 1e15 else str(operand)
    return str(operand)


def _can_hold(tests: list[tuple[str, Any]], values: _Values) -> bool:
    """Whether some value ``values`` can hold meets every comparison of ``tests``."""

    def meets(value: Any) -> bool:
        for op, operand in tests:
            if op == "in":
                ok = value in operand
            elif op == "not_in":
                ok = value not in operand
            else:
                ok = bool(_COMPARISONS[op](value, operand))
            if not ok:
                return False
        return True

    if values.labels is not None:  # a finite vocabulary: try each value
        return any(meets(v) for v in values.labels)
    # otherwise the values named by eq and in, if any, are the only ones that can meet them all
    points = [o for op, o in tests if op == "eq"] + [v for op, o in tests if op == "in" for v in o]
    if values.flag and not points:
        points = [0, 1]
    if points or values.categorical:  # labels of unknown vocabulary: any other text passes
        return not points or any(meets(v) for v in points)
    low, low_strict = (0.0, False) if values.unit else (-math.inf, True)
    high, high_strict = (1.0, False) if values.unit else (math.inf, True)
    for op, operand in tests:
        if op in ("gt", "ge") and (operand > low or (operand == low and op == "gt")):
            low, low_strict = operand, op == "gt"
        elif op in ("lt", "le") and (operand < high or (operand == high and op == "lt")):
            high, high_strict = operand, op == "lt"
    if low < high:
        return True  # an interval of many values: finitely many ne/not_in cannot empty it
    return low == high and not low_strict and not high_strict and meets(low)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def assign_segments(
    families: pd.DataFrame, state: pd.DataFrame, rules: SegmentRules
) -> pd.DataFrame:
    """One segment per account.

    Args:
        families: family contributions (log-odds), one column per family, as returned by
            :func:`rollrisk.models.explanations.family_contributions`.
        state: the same accounts in the same order, with every column in ``rules.fields``.
        rules: parsed segment rules.

    Returns:
        A frame on ``families.index`` with ``segment`` and ``segment_rule`` (the id of the rule
        that assigned it; empty for the fallback).
    """
    if len(families) != len(state):
        raise ValueError(
            f"families has {len(families)} rows but state has {len(state)}; they must be the same accounts"
        )
    missing_families = [f for f in FAMILIES if f not in families.columns]
    if missing_families:
        raise ValueError(f"families lacks columns {missing_families}")
    missing_fields = sorted(rules.fields - set(state.columns))
    if missing_fields:
        raise ValueError(
            f"state lacks columns {missing_fields} that the rules in {rules.source} read"
        )

    contributions = families[list(FAMILIES)].to_numpy(dtype=np.float64)
    positive = np.clip(contributions, 0.0, None)
    positive_total = positive.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(positive_total[:, None] > 0, positive / positive_total[:, None], 0.0)
    top = np.asarray(FAMILIES, dtype=object)[np.argmax(contributions, axis=1)]
    derived = {"risk_above_base": contributions.sum(axis=1)}

    fields = {name: state[name].to_numpy() for name in rules.fields}  # each read once
    n = len(families)
    segment = np.full(n, rules.fallback, dtype=object)
    fired = np.full(n, "", dtype=object)
    open_rows = np.ones(n, dtype=bool)
    for rule in rules.rules:  # already in precedence order
        holds = open_rows.copy()
        for condition in rule.conditions:
            if condition.subject == "top_family":
                holds &= np.isin(top, condition.name)
                continue
            if condition.subject == "family":
                values: Any = contributions[:, FAMILIES.index(str(condition.name))]
            elif condition.subject == "family_share":
                values = shares[:, FAMILIES.index(str(condition.name))]
            elif condition.name in derived:
                values = derived[str(condition.name)]
            else:
                values = fields[str(condition.name)]
            holds &= _evaluate(values, condition.tests)
        segment[holds] = rule.segment
        fired[holds] = rule.rule_id
        open_rows &= ~holds
    return pd.DataFrame({"segment": segment, "segment_rule": fired}, index=families.index)


def _evaluate(values: Any, tests: tuple[tuple[str, Any], ...]) -> np.ndarray:
    """Rows where every test holds; a missing value fails every test."""
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":  # labels (product, bucket): pandas' comparisons
        return _evaluate_labels(pd.Series(values), tests)
    array = array.astype(np.float64, copy=False)
    result = ~np.isnan(array)
    with np.errstate(invalid="ignore"):
        for op, operand in tests:
            if op == "in":
                result &= np.isin(array, operand)
            elif op == "not_in":
                result &= ~np.isin(array, operand)
            else:
                result &= _COMPARISONS[op](array, operand)
    return result


def _evaluate_labels(values: Any, tests: tuple[tuple[str, Any], ...]) -> np.ndarray:
    array = np.asarray(values, dtype=object)
    result = ~pd.isna(array)
    series: pd.Series | None = None  # built only for comparisons other than membership
    for op, operand in tests:
        if op in ("in", "not_in"):
            members = set(operand)
            inside = np.fromiter((v in members for v in array), dtype=bool, count=len(array))
            result &= inside if op == "in" else ~inside
        else:
            series = pd.Series(array) if series is None else series
            result &= _COMPARISONS[op](series, operand).fillna(False).to_numpy(dtype=bool)
    return result


def segment_recovery(
    predicted: Iterable[str],
    true_driver: Iterable[str],
    label_map: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, float]:
    """How well segments recover the simulator's latent driver.

    Args:
        predicted: the segment of each account.
        true_driver: the latent driver of the same accounts (from the simulator's ``truth/``;
            only this evaluation may read it).
        label_map: renames true driver labels to segment names when they differ
            (e.g. ``{"capacity": "capacity_shock"}``).

    Returns:
        The confusion matrix (rows: true driver, columns: predicted segment, counts; labels are
        the union of both, true drivers first) and the macro-F1 over the true drivers. A
        prediction of a segment no driver has (the fallback) counts against recall without
        adding a class of its own to the average.
    """
    from sklearn.metrics import confusion_matrix, f1_score

    predicted = pd.Series(list(predicted), dtype=object).astype(str)
    truth = pd.Series(list(true_driver), dtype=object).astype(str)
    if label_map:
        truth = truth.map(lambda label: label_map.get(label, label))
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predicted segments but {len(truth)} true drivers")
    if len(truth) == 0:
        raise ValueError("no accounts to compare")
    true_labels = sorted(truth.unique())
    labels = true_labels + sorted(set(predicted.unique()) - set(true_labels))
    matrix = confusion_matrix(truth, predicted, labels=labels)
    frame = pd.DataFrame(
        matrix,
        index=pd.Index(labels, name="true_driver"),
        columns=pd.Index(labels, name="predicted_segment"),
    ).loc[true_labels]
    macro_f1 = float(
        f1_score(truth, predicted, labels=true_labels, average="macro", zero_division=0)
    )
    return frame, macro_f1
