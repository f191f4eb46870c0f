"""The risk-band rule: which band a calibrated roll-to-default probability falls in.

The bands are the policy's (``risk_bands`` in ``conf/policy.yaml``, parsed by
:mod:`rollrisk.strategies.policy`): ``(name, inclusive upper bound)`` pairs, ascending, the
last bound 1.0. The rule that reads them lives here, below strategies/, so that the policy
(which decides by band) and monitoring (which backtests by band) cannot disagree on where a
probability on a boundary goes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

RiskBands = Sequence[tuple[str, float]]


def risk_band(probability: float, bands: RiskBands) -> str:
    """The band of a calibrated probability: the first whose inclusive upper bound is >= it.

    Raises ``ValueError`` for a probability outside [0, 1] (or NaN): no band holds it.
    """
    if not 0.0 <= probability <= 1.0 or math.isnan(probability):
        raise ValueError(f"probability must be within [0, 1], got {probability}")
    for band, upper in bands:
        if probability <= upper:
            return band
    return bands[-1][0]  # unreachable when the last bound is 1.0, as the policy requires
