"""The promotion gates: may a challenger model version take the champion alias? (no I/O)

The gates (section ``promotion:`` of the configuration) are checked in this order:

  * data: the evaluation that the other gates read rests on enough rows and defaults: at least
    ``min_train_rows`` / ``min_train_positives`` in its training months and ``min_test_rows``
    / ``min_test_positives`` in its out-of-time months (below about 2,000 test rows the ECE of
    a perfectly calibrated model exceeds ``max_ece`` by noise alone one time in twenty:
    docs/models.md, "Promotion");
  * calibration: the challenger's out-of-time expected calibration error <= ``max_ece``;
  * stability: the PSI between its training and out-of-time scores <= ``max_psi``;
  * baselines (``require_beats_baselines``): its own run shows it beats the roll-rate chain and
    the WOE scorecard on out-of-time AUC and Brier score;
  * discrimination: its out-of-time AUC beats the champion's by at least ``min_auc_gain``.

With no champion, the discrimination gate does not apply. The figures are those of the
evaluation fit of the procedure that made the registered (deployed) model: the deployed model
itself has learnt from the out-of-time months, so it cannot be judged on them. ``rollrisk
promote`` gathers the figures from MLflow and moves the alias; ``rollrisk train`` prints the
same gates (without the champion) so that its report and ``promote`` agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field, model_validator

from rollrisk.models.training_config import ConfigSection

# the registry tag a promotion sets on the version it makes champion, never removed: a later
# refusal of the same version (promoted again after a rollback) leaves it one a rollback may
# return to (`rollrisk promote --rollback-to`), and the strategy page calls it promoted once
PROMOTED_AT_TAG = "promoted_at"


class PromotionConfig(ConfigSection):
    """Gates a challenger must pass before the champion alias moves to it."""

    from_alias: str = Field("challenger", min_length=1)
    to_alias: str = Field("champion", min_length=1)
    min_auc_gain: float = Field(0.005, ge=-1.0, le=1.0)  # an AUC gain lies in [-1, 1]
    # an ECE lies in [0, 1]: a bound of 1 or more is a gate that cannot fail (a typo for 0.03?)
    max_ece: float = Field(0.03, gt=0.0, lt=1.0)
    # a PSI bound of infinity is a gate that cannot fail (as max_ece's of 1)
    max_psi: float = Field(0.25, gt=0.0, allow_inf_nan=False)
    # The challenger's own run must show it beats both baselines (out-of-time AUC and Brier).
    require_beats_baselines: bool = True
    # The least the evaluation may rest on: rows and defaults (label 1) in its training months
    # and in its out-of-time months.
    min_train_rows: int = Field(2000, ge=0)
    min_train_positives: int = Field(200, ge=0)
    min_test_rows: int = Field(2000, ge=0)
    min_test_positives: int = Field(200, ge=0)

    @model_validator(mode="after")
    def _two_aliases(self) -> PromotionConfig:
        if self.from_alias == self.to_alias:
            raise ValueError(
                f"from_alias and to_alias are both '{self.to_alias}': the gates move an alias "
                "from one version to another (e.g. challenger -> champion)"
            )
        return self


@dataclass(frozen=True)
class CandidateFigures:
    """What the gates look at for one model version."""

    version: str
    auc: float  # out-of-time AUC on the rows the decision is made on
    ece: float | None = None
    psi: float | None = None
    beats_baselines: bool | None = None  # from the run's `ships` tag
    # LightGBM minus each baseline out of time: {baseline: (AUC gap, Brier gap)}; a gap the
    # run did not log is None. Shown by the baselines gate (it judges ``beats_baselines``).
    baseline_gaps: dict[str, tuple[float | None, float | None]] | None = None
    # rows and positives of the evaluation's training and out-of-time months (None: not logged)
    train_rows: int | None = None
    train_positives: int | None = None
    test_rows: int | None = None
    test_positives: int | None = None


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reasons: tuple[str, ...]


def decide_promotion(
    challenger: CandidateFigures,
    champion: CandidateFigures | None,
    gates: PromotionConfig,
    champion_not_judged: str | None = None,
) -> PromotionDecision:
    """Apply the promotion gates; ``reasons`` explains every gate, passed or failed.

    ``champion_not_judged``: the version of a champion that exists but is not compared here
    (``rollrisk train`` judges only the gates that need no champion): the discrimination gate
    is then said to be left to ``rollrisk promote``, not to be without a champion."""
    reasons: list[str] = []
    passed = True
    short = data_shortfalls(challenger, gates)
    if short:
        passed = False
        reasons.append(
            "FAIL data: the evaluation rests on too little to judge: " + "; ".join(short)
        )
    else:
        reasons.append(
            f"pass data: {challenger.train_rows} training rows ({challenger.train_positives} "
            f"rolled), {challenger.test_rows} out-of-time rows ({challenger.test_positives} "
            f"rolled) >= {gates.min_train_rows} ({gates.min_train_positives}) and "
            f"{gates.min_test_rows} ({gates.min_test_positives})"
        )
    if challenger.ece is None or not np.isfinite(challenger.ece):
        passed = False
        reasons.append("FAIL calibration: the challenger's run logged no out-of-time ECE (oot_ece)")
    elif challenger.ece > gates.max_ece:
        passed = False
        reasons.append(
            f"FAIL calibration: out-of-time ECE {challenger.ece:.4f} > max_ece {gates.max_ece:.4f}"
        )
    else:
        reasons.append(
            f"pass calibration: out-of-time ECE {challenger.ece:.4f} <= {gates.max_ece:.4f}"
        )
    if challenger.psi is None or not np.isfinite(challenger.psi):
        passed = False
        reasons.append(
            "FAIL stability: the challenger's run logged no train -> out-of-time PSI (oot_psi)"
        )
    elif challenger.psi > gates.max_psi:
        passed = False
        reasons.append(f"FAIL stability: PSI {challenger.psi:.4f} > max_psi {gates.max_psi:.4f}")
    else:
        reasons.append(f"pass stability: PSI {challenger.psi:.4f} <= {gates.max_psi:.4f}")
    if gates.require_beats_baselines:
        figures = _baseline_figures(challenger.baseline_gaps)
        if challenger.beats_baselines:
            reasons.append(
                "pass baselines: beats the roll-rate chain and the scorecard out of time" + figures
            )
        else:
            passed = False
            missing = " (its run has no `ships` tag)" if challenger.beats_baselines is None else ""
            reasons.append(
                "FAIL baselines: does not beat both the roll-rate chain and the WOE scorecard on "
                f"out-of-time AUC and Brier{missing}" + (figures or "; see the run's report")
            )
    else:
        reasons.append("skip baselines: require_beats_baselines is false in the gates")
    if champion is None and champion_not_judged is not None:
        reasons.append(
            f"discrimination: not judged by train: `rollrisk promote` scores champion "
            f"v{champion_not_judged} on this run's out-of-time rows and needs an AUC gain >= "
            f"{gates.min_auc_gain:+.4f}"
        )
    elif champion is None:
        reasons.append("no champion yet: the discrimination gate does not apply")
    else:
        gain = challenger.auc - champion.auc
        verdict = "pass" if gain >= gates.min_auc_gain else "FAIL"
        passed = passed and gain >= gates.min_auc_gain
        reasons.append(
            f"{verdict} discrimination: out-of-time AUC {challenger.auc:.4f} (v{challenger.version}) vs "
            f"{champion.auc:.4f} (champion v{champion.version}), gain {gain:+.4f}, "
            f"needed >= {gates.min_auc_gain:+.4f}"
        )
    return PromotionDecision(promote=passed, reasons=tuple(reasons))


_BASELINE_WORDS = {"roll_rate_chain": "roll-rate chain", "scorecard": "scorecard"}


def _baseline_figures(gaps: dict[str, tuple[float | None, float | None]] | None) -> str:
    """The gaps behind the baselines verdict, each marked where it falls short: "... vs the
    roll-rate chain AUC gap +0.0242, Brier gap +0.0083 (worse); ..." (empty: not logged)."""
    if not gaps:
        return ""
    parts = []
    for baseline, (auc, brier) in gaps.items():
        name = _BASELINE_WORDS.get(baseline, baseline)
        auc_text = "not logged" if auc is None else f"{auc:+.4f}" + ("" if auc > 0 else " (short)")
        brier_text = (
            "not logged" if brier is None else f"{brier:+.4f}" + ("" if brier < 0 else " (worse)")
        )
        parts.append(f"vs the {name} AUC gap {auc_text}, Brier gap {brier_text}")
    return " (needed: AUC gap > 0 and Brier gap < 0): " + "; ".join(parts)


def data_shortfalls(figures: CandidateFigures, gates: PromotionConfig) -> list[str]:
    """What falls short of the data minimums of ``gates``, in words (empty: enough).

    A count the run did not log (``None``, a run logged before the counts were) falls short:
    a gate that cannot see the evidence does not pass it.
    """
    checks = (
        ("training rows", figures.train_rows, gates.min_train_rows),
        ("rolled training rows", figures.train_positives, gates.min_train_positives),
        ("out-of-time rows", figures.test_rows, gates.min_test_rows),
        ("rolled out-of-time rows", figures.test_positives, gates.min_test_positives),
    )
    short = []
    for what, count, minimum in checks:
        if count is None:
            short.append(f"{what} not logged by the run (needed >= {minimum})")
        elif count < minimum:
            short.append(f"{count} {what} < {minimum}")
    return short
