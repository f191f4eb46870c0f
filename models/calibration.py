"""Probability calibration: map a model's raw scores to probabilities that match observed rates.

A strategy that compares expected losses needs ``P(roll to default)``, not a ranking score. The
calibrator is fitted on rows the trees never saw (a calibration slice of the validation months,
disjoint by account from the rows used for early stopping; see ``docs/models.md``).

Two maps, and the choice of leaving the raw score alone, chosen by evidence rather than habit:

* **Platt**: a logistic regression on the logit of the raw score. Two parameters, smooth and
  strictly increasing (keeps every tie-free ranking), but assumes the miscalibration is sigmoid.
* **Isotonic**: the best non-decreasing step function. Fits any monotone distortion, needs more
  rows and creates ties (flat steps) that can cost a little AUC.

* **None**: the raw tree score as it is (LightGBM's log-loss objective is close to calibrated
  on the months it learnt from; a map fitted on other months carries their roll rate).

:func:`select_calibrator` chooses **out of time within the validation window** when the
calibration rows span more than one as-of month (rolling origin, docs/models.md "Choosing the
calibration"): each candidate (none, Platt, isotonic) is fitted on the earlier months and
scored by ECE on the latest month, which none of them saw; a map is kept only when it beats
the raw score there by more than the noise of that difference (a bootstrap over the latest
month's accounts), else the raw score stays. The chosen one is then refitted on every
calibration row. With a single month there is no later month to test on: Platt and isotonic
are cross-fitted on the rows (folds grouped by account) and the lower Brier score is kept
(isotonic only from ``min_isotonic_rows`` rows on: with fewer, its steps follow noise). Every
map is monotone non-decreasing in the raw score, so the trees' monotone constraints survive.

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
from rollrisk.models.stats import group_bootstrap_standard_errors

CalibrationMethod = Literal["none", "isotonic", "platt"]
# the fitted maps (cross-fitted within the window), and every choice the rolling origin weighs
METHODS: tuple[CalibrationMethod, ...] = ("isotonic", "platt")
CANDIDATES: tuple[CalibrationMethod, ...] = ("none", "platt", "isotonic")
# One-sided 95 %: a map must beat the raw score on the later month by this many bootstrap
# standard errors of the ECE difference, or the raw score stays (a map is a choice to justify).
NOISE_Z = 1.645
BOOTSTRAP_DRAWS = 200

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


class IdentityCalibrator:
    """No map: the raw score, kept inside the open unit interval (``method`` ``"none"``)."""

    method: CalibrationMethod = "none"

    def fit(self, raw: np.ndarray, y: np.ndarray | None = None) -> IdentityCalibrator:
        _check(raw)
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        raw, _ = _check(raw)
        return np.clip(raw, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> IdentityCalibrator:
        return cls()


Calibrator = PlattCalibrator | IsotonicCalibrator | IdentityCalibrator
_CALIBRATORS: dict[
    str, type[PlattCalibrator] | type[IsotonicCalibrator] | type[IdentityCalibrator]
] = {
    "none": IdentityCalibrator,
    "platt": PlattCalibrator,
    "isotonic": IsotonicCalibrator,
}


def make_calibrator(method: CalibrationMethod) -> Calibrator:
    if method not in _CALIBRATORS:
        raise ValueError(f"unknown calibration method {method!r}; expected one of {CANDIDATES}")
    return _CALIBRATORS[method]()


def calibrator_from_dict(state: Mapping[str, Any]) -> Calibrator:
    """Rebuild a fitted calibrator from :meth:`to_dict` output (JSON-safe, no pickle)."""
    method = state.get("method")
    if method not in _CALIBRATORS:
        raise ValueError(f"unknown calibration method {method!r}; expected one of {CANDIDATES}")
    return _CALIBRATORS[method].from_dict(state)


@dataclass(frozen=True)
class CalibrationScores:
    brier: float
    log_loss: float
    ece: float


@dataclass(frozen=True)
class RollingOriginEvidence:
    """Each candidate fitted on the earlier months of the window, scored on the latest month(s).

    ``by_candidate`` holds the scores on the later rows (``"none"``: the raw score);
    ``ece_gain_se`` the bootstrap standard error (over the later rows' accounts) of ``ECE(none)
    - ECE(candidate)`` per fitted candidate; ``skipped`` the candidates not tried, with why.
    """

    fit_months: tuple[str, ...]
    scored_months: tuple[str, ...]
    fit_rows: int
    scored_rows: int
    fit_rate: float
    scored_rate: float
    by_candidate: Mapping[str, CalibrationScores]
    ece_gain_se: Mapping[str, float]
    skipped: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe, for ``calibration_evidence.json``."""
        return {
            "fit_months": list(self.fit_months),
            "scored_months": list(self.scored_months),
            "fit_rows": self.fit_rows,
            "scored_rows": self.scored_rows,
            "fit_rate": self.fit_rate,
            "scored_rate": self.scored_rate,
            "scores": {name: vars(scores) for name, scores in self.by_candidate.items()},
            "ece_gain_se": dict(self.ece_gain_se),
            "skipped": dict(self.skipped),
            "noise_z": NOISE_Z,
        }


@dataclass(frozen=True)
class CalibrationEvidence:
    """How the calibration was chosen: the pick, the rule that made it (``rule``), the
    rolling-origin scores when the rows span several months, and the cross-fitted scores of
    each map on all rows (in-period; the rule for a single month)."""

    chosen: CalibrationMethod
    requested: str
    n_rows: int
    n_folds: int
    uncalibrated: CalibrationScores
    by_method: Mapping[str, CalibrationScores] = field(default_factory=dict)
    rolling_origin: RollingOriginEvidence | None = None
    rule: str = ""

    def summary(self) -> str:
        """One line for the report: what was chosen and on what evidence."""
        rolling = self.rolling_origin
        if rolling is None:
            return (
                f"{self.chosen}: {self.rule} (cross-fitted Brier: "
                + ", ".join(f"{m} {s.brier:.5f}" for m, s in self.by_method.items())
                + f"; uncalibrated {self.uncalibrated.brier:.5f})"
            )
        scores = ", ".join(
            f"{name} {score.ece:.4f}"
            + (f" (± {rolling.ece_gain_se[name]:.4f})" if name in rolling.ece_gain_se else "")
            for name, score in rolling.by_candidate.items()
        )
        return (
            f"{self.chosen}: {self.rule}; fitted on {_span(rolling.fit_months)} "
            f"({rolling.fit_rows} rows, roll rate {rolling.fit_rate:.3f}), ECE on "
            f"{_span(rolling.scored_months)} ({rolling.scored_rows} rows, roll rate "
            f"{rolling.scored_rate:.3f}): {scores}"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe, for ``calibration_evidence.json``."""
        return {
            "chosen": self.chosen,
            "requested": self.requested,
            "rule": self.rule,
            "rows": self.n_rows,
            "folds": self.n_folds,
            "uncalibrated": vars(self.uncalibrated),
            **{m: vars(s) for m, s in self.by_method.items()},
            "rolling_origin": None
            if self.rolling_origin is None
            else self.rolling_origin.as_dict(),
        }

    def as_metrics(self, prefix: str = "calibration") -> dict[str, float]:
        """Flat ``{name: value}`` for MLflow, e.g. ``calibration_isotonic_brier`` (cross-fitted)
        and ``calibration_rolling_platt_ece`` (fitted on the earlier months, scored on the
        latest), ``calibration_rolling_platt_ece_gain_se``."""
        metrics = {
            f"{prefix}_uncalibrated_brier": self.uncalibrated.brier,
            f"{prefix}_uncalibrated_ece": self.uncalibrated.ece,
            f"{prefix}_uncalibrated_log_loss": self.uncalibrated.log_loss,
        }
        for method, scores in self.by_method.items():
            metrics[f"{prefix}_{method}_brier"] = scores.brier
            metrics[f"{prefix}_{method}_ece"] = scores.ece
            metrics[f"{prefix}_{method}_log_loss"] = scores.log_loss
        if self.rolling_origin is not None:
            for name, scores in self.rolling_origin.by_candidate.items():
                metrics[f"{prefix}_rolling_{name}_brier"] = scores.brier
                metrics[f"{prefix}_rolling_{name}_ece"] = scores.ece
                metrics[f"{prefix}_rolling_{name}_log_loss"] = scores.log_loss
            for name, se in self.rolling_origin.ece_gain_se.items():
                metrics[f"{prefix}_rolling_{name}_ece_gain_se"] = se
        return metrics


def _span(months: tuple[str, ...]) -> str:
    return months[0] if len(months) == 1 else f"{months[0]}..{months[-1]}"


def _scores(y: np.ndarray, p: np.ndarray) -> CalibrationScores:
    return CalibrationScores(
        brier=float(brier_score(y, p)),
        log_loss=float(log_loss(y, p)),
        ece=float(expected_calibration_error(y, p)),
    )


def _cross_fitted(
    raw: np.ndarray, y: np.ndarray, groups: np.ndarray, n_folds: int
) -> dict[str, CalibrationScores]:
    """Each map's scores on held-out folds of the rows (folds grouped by ``groups``)."""
    held_out = {name: np.empty_like(raw) for name in METHODS}
    for fit_index, test_index in GroupKFold(n_splits=n_folds).split(raw, y, groups):
        for name in METHODS:
            if len(np.unique(y[fit_index])) < 2:
                # A fold with one outcome cannot be calibrated; use the raw score there.
                held_out[name][test_index] = raw[test_index]
                continue
            calibrator = make_calibrator(name).fit(raw[fit_index], y[fit_index])
            held_out[name][test_index] = calibrator.predict(raw[test_index])
    return {name: _scores(y, held_out[name]) for name in METHODS}


def rolling_origin(
    raw: np.ndarray,
    y: np.ndarray,
    months: np.ndarray,
    groups: np.ndarray,
    later_months: int = 1,
    min_isotonic_rows: int = 1000,
    seed: int = 0,
    draws: int = BOOTSTRAP_DRAWS,
) -> RollingOriginEvidence | None:
    """Fit each candidate on the rows of every month but the latest ``later_months``, score
    all of them on those latest months' rows; ``None`` when the rows span too few months or a
    part has a single outcome (nothing to fit or nothing to judge).

    ``months`` gives each row's as-of (anything sortable, e.g. ISO dates); ``groups`` its
    account (the bootstrap of the ECE difference resamples accounts). Isotonic is tried only
    from ``min_isotonic_rows`` earlier rows on.
    """
    labels = np.asarray([str(m) for m in months])
    distinct = np.unique(labels)
    if distinct.size <= later_months:
        return None
    fit_months, scored_months = distinct[:-later_months], distinct[-later_months:]
    fit, scored = np.isin(labels, fit_months), np.isin(labels, scored_months)
    if len(np.unique(y[fit])) < 2 or len(np.unique(y[scored])) < 2:
        return None
    predictions = {"none": np.clip(raw[scored], PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)}
    skipped: dict[str, str] = {}
    for name in METHODS:
        if name == "isotonic" and fit.sum() < min_isotonic_rows:
            skipped[name] = f"{int(fit.sum())} rows to fit on, fewer than {min_isotonic_rows}"
            continue
        predictions[name] = make_calibrator(name).fit(raw[fit], y[fit]).predict(raw[scored])
    y_scored = y[scored]
    by_candidate = {name: _scores(y_scored, p) for name, p in predictions.items()}
    maps = [name for name in predictions if name != "none"]

    def gains(rows: np.ndarray) -> list[float]:
        """ECE(none) - ECE(map) on resampled rows of the scored month, for every map."""
        if len(np.unique(y_scored[rows])) < 2:
            return [np.nan] * len(maps)
        base = expected_calibration_error(y_scored[rows], predictions["none"][rows])
        return [
            base - expected_calibration_error(y_scored[rows], predictions[name][rows])
            for name in maps
        ]

    errors = group_bootstrap_standard_errors(gains, np.asarray(groups)[scored], draws, seed)
    return RollingOriginEvidence(
        fit_months=tuple(str(m) for m in fit_months),
        scored_months=tuple(str(m) for m in scored_months),
        fit_rows=int(fit.sum()),
        scored_rows=int(scored.sum()),
        fit_rate=float(y[fit].mean()),
        scored_rate=float(y_scored.mean()),
        by_candidate=by_candidate,
        ece_gain_se={name: float(se) for name, se in zip(maps, errors, strict=True)},
        skipped=skipped,
    )


def select_calibrator(
    raw: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | None = None,
    method: str = "auto",
    folds: int = 5,
    min_isotonic_rows: int = 1000,
    months: np.ndarray | None = None,
    later_months: int = 1,
    seed: int = 0,
) -> tuple[Calibrator, CalibrationEvidence]:
    """Choose the calibration of the rows (none, Platt or isotonic), then fit it on all of them.

    Args:
        raw: uncalibrated scores of the calibration slice (rows the trees never saw).
        y: 0/1 outcomes of the same rows.
        groups: account ids; folds and bootstrap draws never split one account's rows.
        method: ``"auto"`` chooses by the rule below; ``"cross_fit"`` by the in-period rule
            alone (Platt or isotonic, never none: the rule before the rolling origin);
            ``"none"``, ``"isotonic"`` or ``"platt"`` forces one but still measures every
            candidate.
        folds: number of cross-fitting folds (reduced when there are fewer groups).
        min_isotonic_rows: below this many rows to fit on, ``"auto"`` does not pick isotonic
            (a step function fitted on a few hundred rows follows their noise).
        months: each row's as-of month. When the rows span more than ``later_months``
            months, ``"auto"`` is decided out of time (:func:`rolling_origin`): the candidate
            with the lowest ECE on the latest ``later_months`` months when fitted on the
            earlier ones, and the raw score unless a map beats it there by more than
            ``NOISE_Z`` bootstrap standard errors. Otherwise (``None``, one month, or a part
            with one outcome) the lower cross-fitted Brier score of Platt and isotonic (ties
            go to Platt, the simpler map).
        later_months: months held back at the end of the window to judge the candidates.
        seed: the bootstrap's seed (the choice is reproducible for the same rows and seed).
    """
    raw, y = _check(raw, y)
    if method not in ("auto", "cross_fit", *CANDIDATES):
        raise ValueError(
            f"unknown calibration method {method!r}; expected auto, cross_fit, none, isotonic "
            "or platt"
        )
    groups = np.arange(raw.size) if groups is None else np.asarray(groups)
    n_folds = int(min(folds, len(np.unique(groups))))
    if n_folds < 2:
        raise ValueError("calibration needs at least two accounts to cross-fit")
    by_method = _cross_fitted(raw, y, groups, n_folds)
    rolling = (
        None
        if months is None or method == "cross_fit"
        else rolling_origin(
            raw,
            y,
            np.asarray(months),
            groups,
            later_months=later_months,
            min_isotonic_rows=min_isotonic_rows,
            seed=seed,
        )
    )

    chosen: CalibrationMethod
    if method not in ("auto", "cross_fit"):
        chosen, rule = method, "forced by configuration"  # type: ignore[assignment]
    elif rolling is not None:
        fitted = {n: s for n, s in rolling.by_candidate.items() if n != "none"}
        # lowest ECE on the later month; ties go to Platt, the simpler map (listed first)
        best = min(fitted, key=lambda name: (round(fitted[name].ece, 6), name != "platt"))
        gain = rolling.by_candidate["none"].ece - fitted[best].ece
        margin = NOISE_Z * rolling.ece_gain_se[best]
        if gain > margin:
            chosen = best  # type: ignore[assignment]
            rule = (
                f"rolling origin: {best} fitted on the earlier months beats the raw score on "
                f"the latest by {gain:.4f} ECE, more than its noise ({margin:.4f})"
            )
        else:
            chosen = "none"
            rule = (
                f"rolling origin: no map fitted on the earlier months beats the raw score on "
                f"the latest by more than its noise (best: {best}, gain {gain:+.4f} ECE, "
                f"noise {margin:.4f})"
            )
    else:
        # Prefer Platt unless isotonic is better by more than rounding noise.
        better_isotonic = (
            by_method["isotonic"].brier < by_method["platt"].brier - 1e-6
            and raw.size >= min_isotonic_rows
        )
        chosen = "isotonic" if better_isotonic else "platt"
        rule = (
            "cross_fit: the lower cross-fitted Brier score of Platt and isotonic"
            if method == "cross_fit"
            else "one month (no later month to test on): the lower cross-fitted Brier score"
        )
    evidence = CalibrationEvidence(
        chosen=chosen,
        requested=method,
        n_rows=int(raw.size),
        n_folds=n_folds,
        uncalibrated=_scores(y, np.clip(raw, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)),
        by_method=by_method,
        rolling_origin=rolling,
        rule=rule,
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
