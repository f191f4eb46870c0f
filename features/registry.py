"""The feature registry: every model input declared once, in a named and versioned feature set.

Each :class:`FeatureSpec` says what a feature means (in English and Chinese, for reason codes),
which driver family it belongs to (the unit SHAP contributions are summed over for segments),
the look-back window it aggregates, and its monotone direction where one is obvious
(+1: a larger value never lowers the risk; -1: never raises it; 0: no constraint).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Family = Literal[
    "delinquency_history",
    "payment_capacity",
    "willingness",
    "contactability",
    "treatment_history",
    "exposure",
    "product_seasonality",
]
FAMILIES: tuple[str, ...] = (
    "delinquency_history",
    "payment_capacity",
    "willingness",
    "contactability",
    "treatment_history",
    "exposure",
    "product_seasonality",
)


@dataclass(frozen=True)
class FeatureSpec:
    """One model input.

    ``reason_en`` / ``reason_zh`` are short templates for a reason code that quote the
    account's own value, e.g. ``"{value:.0f} broken promises to pay in the last 90 days"``.
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
