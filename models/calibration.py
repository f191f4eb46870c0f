"""Probability calibration: map a model's raw scores to probabilities that match observed rates.

A strategy that compares expected losses needs ``P(roll to default)``, not a ranking score. The
calibrator is fitted on rows the trees never saw (a calibration slice of the validation months,
disjoint by account from the rows used for early stopping; see ``docs/models.md``).

Two methods, chosen by evidence rather than habit:

* **Platt**: a logistic regression on the logit of the raw score. Two parameters, smooth and
  strictly increasing (keeps every tie-free ranking), but assumes the miscalibration is sigmoid.
* **Isotonic**: the best non-decreasing step function. Fits any monotone distortion, needs more
  rows and creates ties (flat steps) that can cost a little AUC.

:func:`select_calibrator` cross-fits both on the calibration slice (folds grouped by account),
scores each on its held-out folds, and keeps the lower Brier score (isotonic only from
``min_isotonic_rows`` rows on: with fewer, its steps follow noise). Both are monotone
non-decreasing in the raw score, so the trees' monotone constraints survive calibration.

:func:`em_prior` and :func:`shift_prior` adjust calibrated probabilities to a new roll rate
(prior shift, Saerens, Latinne and Decaestecker, 2002); compared with recalibration on the
latest labelled months in ``bench/calibration_shift.py`` (docs/models.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from rollrisk.models.metrics import brier_score, expected_calibration_error, log_loss

CalibrationMethod = Literal["isotonic", "platt"]
METHODS: tuple[CalibrationMethod, ...] = ("isotonic", "platt")

# Calibrated probabilities never reach exactly 0 or 1: an isotonic step at 0 would make one
# surprising default cost an infinite log loss, and no collections decision needs that extreme.
PROBABILITY_FLOOR = 1e-6


def _logit(raw: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(raw, dtype=np.float64), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return np.log(clipped / (1 - clipped))


def _check(raw: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    raw = np.asarray(raw, dtype=np.float64).ravel()
    if raw.size == 0:
        raise ValueError("calibration needs at least one score")
    if np.isnan(raw).any():
        raise ValueError("calibration scores contain NaN")
    if y is None:
        return raw, None
    y = np.asarray(y, dtype=np.float64).ravel()
    if y.shape != raw.shape:
        raise ValueError(f"scores ({raw.size}) and labels ({y.size}) differ in length")
    if len(np.unique(y)) < 2:
        raise ValueError("calibration needs both outcomes (0 and 1) among its rows")
    return raw, y


class PlattCalibrator:
    """``p = sigmoid(a * logit(raw) + b)``, fitted by (practically unpenalised) logistic regression."""

    method: CalibrationMethod = "platt"

    def fit(self, raw: np.ndarray, y: np.ndarray) -> PlattCalibrator:
        raw, y = _check(raw, y)
        regression = LogisticRegression(C=1e6, max_iter=1000)
        regression.fit(_logit(raw).reshape(-1, 1), y)
        self.slope_ = float(regression.coef_[0, 0])
        self.intercept_ = float(regression.intercept_[0])
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        if not hasattr(self, "slope_"):
            raise RuntimeError("PlattCalibrator is not fitted: call fit(raw, y) first")
        raw, _ = _check(raw)
        z = self.slope_ * _logit(raw) + self.intercept_
        probability = 1.0 / (1.0 + np.exp(-z))
        return np.clip(probability, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "slope": self.slope_, "intercept": self.intercept_}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> PlattCalibrator:
        calibrator = cls()
        calibrator.slope_ = float(state["slope"])
        calibrator.intercept_ = float(state["intercept"])
        return calibrator


class IsotonicCalibrator:
    """A non-decreasing step function of the raw score, linear between its knots."""

    method: CalibrationMethod = "isotonic"

    def fit(self, raw: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
        raw, y = _check(raw, y)
        regression = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        regression.fit(raw, y)
        self.knots_x_ = np.asarray(regression.X_thresholds_, dtype=np.float64)
        self.knots_y_ = np.asarray(regression.y_thresholds_, dtype=np.float64)
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        if not hasattr(self, "knots_x_"):
            raise RuntimeError("IsotonicCalibrator is not fitted: call fit(raw, y) first")
        raw, _ = _check(raw)
        # np.interp holds the end values outside the knots, as out_of_bounds="clip" does.
        probability = np.interp(raw, self.knots_x_, self.knots_y_)
        return np.clip(probability, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "x": self.knots_x_.tolist(), "y": self.knots_y_.tolist()}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> IsotonicCalibrator:
        calibrator = cls()
        calibrator.knots_x_ = np.asarray(state["x"], dtype=np.float64)
        calibrator.knots_y_ = np.asarray(state["y"], dtype=np.float64)
        return calibrator


Calibrator = PlattCalibrator | IsotonicCalibrator
_CALIBRATORS: dict[str, type[PlattCalibrator] | type[IsotonicCalibrator]] = {
    "platt": PlattCalibrator,
    "isotonic": IsotonicCalibrator,
}


def make_calibrator(method: CalibrationMethod) -> Calibrator:
    if method not in _CALIBRATORS:
        raise ValueError(f"unknown calibration method {method!r}; expected one of {METHODS}")
    return _CALIBRATORS[method]()


def calibrator_from_dict(state: Mapping[str, Any]) -> Calibrator:
    """Rebuild a fitted calibrator from :meth:`to_dict` output (JSON-safe, no pickle)."""
    method = state.get("method")
    if method not in _CALIBRATORS:
        raise ValueError(f"unknown calibration method {method!r}; expected one of {METHODS}")
    return _CALIBRATORS[method].from_dict(state)


@dataclass(frozen=True)
class CalibrationScores:
    brier: float
    log_loss: float
    ece: float


@dataclass(frozen=True)
class CalibrationEvidence:
    """Held-out (cross-fitted) scores of each method on the calibration slice, and the pick."""

    chosen: CalibrationMethod
    requested: str
    n_rows: int
    n_folds: int
    uncalibrated: CalibrationScores
    by_method: Mapping[str, CalibrationScores] = field(default_factory=dict)

    def as_metrics(self, prefix: str = "calibration") -> dict[str, float]:
        """Flat ``{name: value}`` for MLflow, e.g. ``calibration_isotonic_brier``."""
        metrics = {
            f"{prefix}_uncalibrated_brier": self.uncalibrated.brier,
            f"{prefix}_uncalibrated_ece": self.uncalibrated.ece,
            f"{prefix}_uncalibrated_log_loss": self.uncalibrated.log_loss,
        }
        for method, scores in self.by_method.items():
            metrics[f"{prefix}_{method}_brier"] = scores.brier
            metrics[f"{prefix}_{method}_ece"] = scores.ece
            metrics[f"{prefix}_{method}_log_loss"] = scores.log_loss
        return metrics


def _scores(y: np.ndarray, p: np.ndarray) -> CalibrationScores:
    return CalibrationScores(
        brier=float(brier_score(y, p)),
        log_loss=float(log_loss(y, p)),
        ece=float(expected_calibration_error(y, p)),
    )


def select_calibrator(
    raw: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | None = None,
    method: str = "auto",
    folds: int = 5,
    min_isotonic_rows: int = 1000,
) -> tuple[Calibrator, CalibrationEvidence]:
    """Compare isotonic and Platt on held-out folds, then fit the winner on all rows.

    Args:
        raw: uncalibrated scores of the calibration slice (rows the trees never saw).
        y: 0/1 outcomes of the same rows.
        groups: account ids; folds never split one account's rows (its months are correlated).
        method: ``"auto"`` picks the lower cross-fitted Brier score (ties go to Platt, the
            simpler map); ``"isotonic"`` or ``"platt"`` forces one but still measures both.
        folds: number of cross-fitting folds (reduced when there are fewer groups).
        min_isotonic_rows: below this many rows ``"auto"`` does not pick isotonic (a step
            function fitted on a few hundred rows follows their noise; it is still measured).
    """
    raw, y = _check(raw, y)
    if method not in ("auto", *METHODS):
        raise ValueError(f"unknown calibration method {method!r}; expected auto, isotonic or platt")
    groups = np.arange(raw.size) if groups is None else np.asarray(groups)
    n_folds = int(min(folds, len(np.unique(groups))))
    if n_folds < 2:
        raise ValueError("calibration needs at least two accounts to cross-fit")

    held_out = {name: np.empty_like(raw) for name in METHODS}
    for fit_index, test_index in GroupKFold(n_splits=n_folds).split(raw, y, groups):
        for name in METHODS:
            if len(np.unique(y[fit_index])) < 2:
                # A fold with one outcome cannot be calibrated; use the raw score there.
                held_out[name][test_index] = raw[test_index]
                continue
            calibrator = make_calibrator(name).fit(raw[fit_index], y[fit_index])
            held_out[name][test_index] = calibrator.predict(raw[test_index])

    by_method = {name: _scores(y, held_out[name]) for name in METHODS}
    if method == "auto":
        # Prefer Platt unless isotonic is better by more than rounding noise.
        better_isotonic = (
            by_method["isotonic"].brier < by_method["platt"].brier - 1e-6
            and raw.size >= min_isotonic_rows
        )
        chosen: CalibrationMethod = "isotonic" if better_isotonic else "platt"
    else:
        chosen = method  # type: ignore[assignment]
    evidence = CalibrationEvidence(
        chosen=chosen,
        requested=method,
        n_rows=int(raw.size),
        n_folds=n_folds,
        uncalibrated=_scores(y, np.clip(raw, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)),
        by_method=by_method,
    )
    return make_calibrator(chosen).fit(raw, y), evidence


def shift_prior(probability: np.ndarray, prior: float, new_prior: float) -> np.ndarray:
    """Probabilities calibrated where the roll rate was ``prior``, moved to a population whose
    roll rate is ``new_prior`` (Bayes' rule on the odds; the likelihood of the features given
    the outcome is assumed unchanged)."""
    for name, value in (("prior", prior), ("new_prior", new_prior)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name} must be strictly between 0 and 1, got {value}")
    p = np.asarray(probability, dtype=np.float64)
    up, down = new_prior / prior, (1 - new_prior) / (1 - prior)
    return up * p / (up * p + down * (1 - p))


def em_prior(
    probability: np.ndarray, prior: float, tolerance: float = 1e-10, iterations: int = 1000
) -> float:
    """The roll rate of an unlabelled population, estimated by EM (Saerens et al., 2002).

    ``probability`` are the population's probabilities calibrated where the roll rate was
    ``prior``. E step: move them to the current estimate ``q``; M step: ``q`` = their mean.
    Stops when ``q`` moves less than ``tolerance``.
    """
    p = np.asarray(probability, dtype=np.float64).ravel()
    if p.size == 0:
        raise ValueError("EM needs at least one probability")
    q = prior
    for _ in range(iterations):
        moved = float(shift_prior(p, prior, q).mean())
        if abs(moved - q) < tolerance:
            return moved
        q = moved
    return q
