"""What a champion/challenger experiment showed, arm by arm, before anything is learnt from it.

A strategy lead's first question of an experiment is the plain A/B readout: per arm, how many
decisions and accounts, the mean outcome per decision, and the gap to the control with an
interval. The assignment is randomised (the hash of experiment and account,
:func:`rollrisk.strategies.experiments.unit_draws`), so the control (the accounts not
randomised, who kept the logging policy's decision) and each arm are comparable groups; no
model is involved.

Input: the logged-decisions table (``rollrisk logged-decisions``: ``account_id``, ``bundle``,
``policy_bundle``, the outcome). An account keeps its arm for the whole experiment, so its
decisions are correlated: the interval resamples **accounts** (all of an account's decisions
together), 95 % percentile bootstrap. An account that appears in two groups (two experiments
over the table's months) counts in each, with its decisions there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np
import polars as pl

from rollrisk.errors import UserError
from rollrisk.models.stats import POWER_80_Z, WILSON_Z, percentile_bootstrap


@dataclass(frozen=True)
class ArmReadout:
    """One arm's observed result against the control (outcome per decision)."""

    bundle: str
    decisions: int
    accounts: int
    mean: float
    versus_control: float  # arm mean - control mean
    ci_low: float
    ci_high: float

    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return self.ci_low > 0 or self.ci_high < 0

    @property
    def detectable_gap(self) -> float:
        """The smallest true gap to the control this arm would show as significant 80 % of the
        time (two-sided 95 %): (z 0.975 + z 0.80) x the gap's standard error, the standard
        error read off the bootstrap interval (its width / (2 x z 0.975))."""
        standard_error = (self.ci_high - self.ci_low) / (2 * WILSON_Z)
        return (WILSON_Z + POWER_80_Z) * standard_error

    def accounts_needed(self, gap: float) -> float:
        """About how many accounts this arm would need to detect ``gap`` (80 % power, 95 %) with
        the control as large as it is: the standard error shrinks as the square root of the
        arm's accounts, the control's share of it taken as small (the control is far larger
        than an arm in an experiment on a tenth of the book)."""
        return self.accounts * (self.detectable_gap / abs(gap)) ** 2

    def to_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "significant": self.significant,
            "detectable_gap": self.detectable_gap,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ArmReadout:
        """The readout :meth:`to_dict` wrote (its derived figures recomputed)."""
        return cls(**{name: values[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ExperimentSize:
    """How large a gap an experiment's arms could see (:attr:`ArmReadout.detectable_gap`,
    sorted) and about how many accounts an arm would need to see ``target``, a gap of
    :data:`DESIGN_GAP_SHARE` of the control's mean (the middle arm's figure)."""

    detectable: tuple[float, ...]
    target: float
    accounts_needed: float

    @property
    def middle(self) -> float:
        return self.detectable[len(self.detectable) // 2]


def experiment_size(control: ArmReadout, arms: Sequence[ArmReadout]) -> ExperimentSize | None:
    """The :class:`ExperimentSize` of a readout; None without an arm, a control mean or a
    finite interval."""
    detectable = tuple(sorted(arm.detectable_gap for arm in arms))
    if not arms or not control.mean or not all(math.isfinite(g) for g in detectable):
        return None
    target = DESIGN_GAP_SHARE * abs(control.mean)
    needed = sorted(arm.accounts_needed(target) for arm in arms)
    return ExperimentSize(detectable, target, needed[len(needed) // 2])


def arm_readout(
    logged: pl.DataFrame,
    outcome: str = "book_value",
    samples: int = 1000,
    seed: int = 0,
) -> tuple[ArmReadout, list[ArmReadout]]:
    """The control's readout and each explored bundle's, best mean first (module docstring).

    The control is the rows whose ``bundle`` is their ``policy_bundle`` (the logging policy's
    own decision); a bundle is every other value of ``bundle``. Raises :class:`UserError` when
    a column is missing or no row is a control.
    """
    missing = [c for c in ("account_id", "bundle", "policy_bundle", outcome) if c not in logged]
    if missing:
        raise UserError(f"the logged decisions lack column(s) {', '.join(missing)}")
    table = logged.select(
        "account_id",
        pl.when(pl.col("bundle") == pl.col("policy_bundle"))
        .then(pl.lit(None, dtype=pl.String))
        .otherwise(pl.col("bundle"))
        .alias("group"),
        pl.col("policy_bundle"),
        pl.col(outcome).cast(pl.Float64).alias("y"),
    )
    if table["group"].null_count() == 0:
        raise UserError("no logged decision kept the logging policy's own decision: no control")
    controls = table["policy_bundle"].filter(table["group"].is_null()).unique().to_list()
    control_name = controls[0] if len(controls) == 1 else "logging policy"
    # one row per (account, group): the sum and count of its decisions there
    cells = (
        table.group_by("account_id", "group")
        .agg(pl.col("y").sum().alias("s"), pl.len().alias("c"))
        .sort("account_id", "group", nulls_last=False)
    )
    control = cells.filter(pl.col("group").is_null())
    control_readout = ArmReadout(
        control_name,
        int(control["c"].sum()),
        control.height,
        float(control["s"].sum() / control["c"].sum()),
        0.0,
        0.0,
        0.0,
    )
    arms: list[ArmReadout] = []
    for bundle in sorted(cells["group"].drop_nulls().unique().to_list()):
        arm = cells.filter(pl.col("group") == bundle)
        s = np.concatenate([arm["s"].to_numpy(), control["s"].to_numpy()])
        c = np.concatenate([arm["c"].to_numpy(), control["c"].to_numpy()]).astype(np.float64)
        in_arm = np.concatenate([np.ones(arm.height, bool), np.zeros(control.height, bool)])

        # the arm's accounts and the control's resampled apart: both keep their sizes
        low, high = percentile_bootstrap(
            partial(_gap, sums=s, counts=c, in_arm=in_arm), len(s), samples, seed, strata=in_arm
        )
        mean = float(arm["s"].sum() / arm["c"].sum())
        arms.append(
            ArmReadout(
                bundle,
                int(arm["c"].sum()),
                arm.height,
                mean,
                mean - control_readout.mean,
                float(low),
                float(high),
            )
        )
    arms.sort(key=lambda a: -a.mean)
    return control_readout, arms


def _gap(pick: np.ndarray, sums: np.ndarray, counts: np.ndarray, in_arm: np.ndarray) -> float:
    """Mean outcome per decision of the picked arm accounts minus the picked control's."""
    chosen = in_arm[pick]
    arm, control = pick[chosen], pick[~chosen]
    return float(sums[arm].sum() / counts[arm].sum() - sums[control].sum() / counts[control].sum())


DESIGN_GAP_SHARE = 0.05  # the gap an experiment's size is judged against: 5 % of the control's


def readout_markdown(control: ArmReadout, arms: list[ArmReadout], outcome: str) -> list[str]:
    """The readout as a Markdown table (lines)."""
    lines = [
        f"Observed `{outcome}` per decision by arm (randomised assignment; 95 % interval resampling "
        "accounts, the arm's and the control's apart):",
        "",
        "| arm | decisions | accounts | mean per decision | arm - control [95 %] | smallest gap "
        "it could detect |",
        "|---|---|---|---|---|---|",
        f"| {control.bundle} (control) | {control.decisions:,} | {control.accounts:,} | "
        f"{control.mean:,.2f} | - | - |",
    ]
    for arm in arms:
        mark = " *" if arm.significant else ""
        lines.append(
            f"| {arm.bundle} | {arm.decisions:,} | {arm.accounts:,} | {arm.mean:,.2f} | "
            f"{arm.versus_control:+,.2f} [{arm.ci_low:+,.2f}, {arm.ci_high:+,.2f}]{mark} | "
            f"±{arm.detectable_gap:,.0f} |"
        )
    lines += [
        "",
        "`*`: the interval excludes zero. Smallest gap it could detect: the true gap this arm "
        "would show as significant 80 % of the time (two-sided 95 %).",
    ]
    size = experiment_size(control, arms)
    if size is not None:
        lines.append(
            f"To detect a gap of {DESIGN_GAP_SHARE:.0%} of the control's mean ({size.target:,.0f} "
            f"per decision) an arm would need about {size.accounts_needed:,.0f} accounts (median "
            f"over the arms; they have {min(a.accounts for a in arms):,} to "
            f"{max(a.accounts for a in arms):,})."
        )
    return lines
