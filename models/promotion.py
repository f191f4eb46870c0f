"""The promotion gates: may a challenger model version take the champion alias? (no I/O)

The gates (section ``promotion:`` of the configuration) are checked in this order:

  * calibration: the challenger's out-of-time expected calibration error <= ``max_ece``;
  * stability: the PSI between its training and out-of-time scores <= ``max_psi``;
  * baselines (``require_beats_baselines``): its own run shows it beats the roll-rate chain and
    the WOE scorecard on out-of-time AUC and Brier score;
  * discrimination: its out-of-time AUC beats the champion's by at least ``min_auc_gain``.

With no champion, the discrimination gate does not apply. ``rollrisk promote`` gathers the
figures from MLflow (both AUCs on the challenger's out-of-time rows) and moves the alias.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field

from rollrisk.models.training_config import ConfigSection


class PromotionConfig(ConfigSection):
    """Gates a challenger must pass before the champion alias moves to it."""

    from_alias: str = "challenger"
    to_alias: str = "champion"
    min_auc_gain: float = 0.005
    max_ece: float = Field(0.03, gt=0.0)
    max_psi: float = Field(0.25, gt=0.0)
    # The challenger's own run must show it beats both baselines (out-of-time AUC and Brier).
    require_beats_baselines: bool = True


@dataclass(frozen=True)
class CandidateFigures:
    """What the gates look at for one model version."""

    version: str
    auc: float  # out-of-time AUC on the rows the decision is made on
    ece: float | None = None
    psi: float | None = None
    beats_baselines: bool | None = None  # from the run's `ships` tag


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reasons: tuple[str, ...]


def decide_promotion(
    challenger: CandidateFigures, champion: CandidateFigures | None, gates: PromotionConfig
) -> PromotionDecision:
    """Apply the promotion gates; ``reasons`` explains every gate, passed or failed."""
    reasons: list[str] = []
    passed = True
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
        if challenger.beats_baselines:
            reasons.append(
                "pass baselines: beats the roll-rate chain and the scorecard out of time"
            )
        else:
            passed = False
            missing = " (its run has no `ships` tag)" if challenger.beats_baselines is None else ""
            reasons.append(
                "FAIL baselines: does not beat both the roll-rate chain and the WOE scorecard on "
                f"out-of-time AUC and Brier{missing}; see the run's report"
            )
    if champion is None:
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
