"""Propose a policy file from simulated outcomes on one (tuning) world.

``rollrisk simulate-policy --propose-policy FILE`` runs every treatment of the policy file, given
to every scored account, and the tiered baseline on the oracle's selection seeds (the oracle's
candidate runs: :func:`rollrisk.simulator.replay.candidate_book_values`). This module turns
those per-account book values into a policy: per **scored segment x scored start bucket**, or
segment x bucket x **risk band** (what a policy file can test; never the true driver), the
treatment whose gain over the tiered baseline has the highest lower confidence bound, if that
bound is above zero, else the baseline (the policy file's ``standard_queue``).

The bounds are one-sided Student-t bounds on the mean per-account paired gain (each account's
book value under the candidate minus under the baseline, averaged over the selection seeds),
with the standard error over accounts (which accounts a world holds is the noise that matters
when the policy is used on another world), Bonferroni-corrected over every (cell, candidate)
pair so that all hold together with probability ``confidence`` (approximately: book values are
heavy-tailed, hence also a minimum of ``min_accounts`` accounts before a cell may depart from
the baseline). Choosing the highest bound, not the highest mean, keeps the candidate whose
noise was luckiest from winning a cell (the winner's curse).

What the bounds leave out: the macro path a selection seed draws is shared by every account, so
the spread between seeds is averaged over the selection seeds, not measured; and each cell's
gain is measured with every account given that treatment (all competing for the same contact
capacity), not under the combination the file proposes. Both are why a proposal is judged on
other worlds before it is adopted.

A proposal is tuned on the world it was run on. It says nothing about how the policy does
elsewhere: evaluate it on other portfolio seeds and another response table before adopting it
(``bench/strategy_spread.py --policy``; docs/strategies.md, "How the shipped rules were
chosen").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml
from scipy import stats

from rollrisk.strategies.policy import STANDARD_QUEUE, parse_policy

BASELINE = "baseline_tiered"
TREATMENT_PREFIX = "treatment:"
DEFAULT_CONFIDENCE = 0.95
DEFAULT_MIN_ACCOUNTS = 30  # fewer accounts in a cell: it keeps the baseline


@dataclass(frozen=True)
class CellChoice:
    """One segment x bucket (x risk band) cell: what it gives and the evidence for it."""

    segment: str
    bucket: str
    accounts: int
    chosen: str  # a candidate name (``treatment:<name>`` or ``baseline_tiered``)
    gain: float  # mean per-account gain of the chosen candidate over the baseline (0: baseline)
    lower: float  # its lower confidence bound (0: baseline)
    best_mean: str  # the candidate of highest mean gain (may differ from ``chosen``)
    best_mean_gain: float
    # the candidate of highest lower bound and that bound, whether or not it was chosen (a
    # near miss is visible: a cell that kept the baseline shows how far its best was from 0);
    # None for a cell of one account (no spread, no bound)
    best_bound: str | None
    best_bound_lower: float | None
    band: str | None = None  # the cell's risk band (cells split by band), None: every band
    # the candidate ``gain``, ``lower``, ``best_mean_gain`` and ``best_bound_lower`` are measured
    # against: the baseline, or (``blind_first``) the segment-blind choice of the cell's bucket
    versus: str = BASELINE


EVERY_SEGMENT = "(every segment)"
"""The segment of a bucket's segment-blind choice (``choose_cells(..., blind_first=True)``)."""


def _best(
    values: np.ndarray, reference: int, candidates: Sequence[int], mask: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and lower one-sided Student-t bound (standard error over the accounts of ``mask``)
    of each candidate's per-account gain over ``reference``; -inf bounds for one account."""
    n = int(mask.sum())
    gains = values[list(candidates)][:, mask] - values[reference, mask]
    mean = gains.mean(axis=1)
    if n > 1:
        lower = mean - stats.t.ppf(level, n - 1) * gains.std(axis=1, ddof=1) / math.sqrt(n)
    else:
        lower = np.full(len(candidates), -np.inf)
    return mean, lower


def choose_cells(
    values: np.ndarray,
    names: Sequence[str],
    segments: Sequence[str],
    buckets: Sequence[str],
    confidence: float = DEFAULT_CONFIDENCE,
    min_accounts: int = DEFAULT_MIN_ACCOUNTS,
    bands: Sequence[str] | None = None,
    blind_first: bool = False,
) -> list[CellChoice]:
    """Per segment x bucket (x risk band, with ``bands``: each account's scored band), the
    candidate of highest lower bound on its gain over :data:`BASELINE` if that bound is above
    0 and the cell has at least ``min_accounts`` accounts, else the baseline. The Bonferroni
    correction counts every cell, so finer cells need stronger evidence each.

    ``blind_first``: each bucket (x band) first gets its segment-blind choice, the same rule
    over all its accounts pooled (a cell of segment :data:`EVERY_SEGMENT`, listed first); a
    segment's cell then departs from it only to a candidate, the baseline included, whose gain
    over that choice has a lower bound above 0 (``versus``). The segments must earn each rule
    against the best policy that ignores them, not only against the baseline; the correction
    counts the blind cells too.

    ``values`` is (candidates x accounts), each account's mean book value per candidate on the
    selection seeds, rows in the order of ``names`` (which must hold :data:`BASELINE`; with no
    other candidate every cell keeps it).
    """
    names = list(names)
    if BASELINE not in names:
        raise ValueError(f"the candidates must include {BASELINE}")
    if values.shape != (len(names), len(segments)) or len(buckets) != len(segments):
        raise ValueError("values must be (candidates x accounts), one segment and bucket each")
    if bands is not None and len(bands) != len(segments):
        raise ValueError("bands must hold one risk band per account")
    if not np.isfinite(values).all():
        raise ValueError("values hold NaN or infinite book values")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    base = names.index(BASELINE)
    seg, bucket = np.asarray(segments), np.asarray(buckets)
    band = np.asarray(bands) if bands is not None else np.full(len(seg), "", dtype=object)
    cells = sorted(set(zip(seg.tolist(), bucket.tolist(), band.tolist(), strict=True)))
    blind = sorted(set(zip(bucket.tolist(), band.tolist(), strict=True))) if blind_first else []
    comparisons = (len(cells) + len(blind)) * (len(names) - 1)
    level = 1 - (1 - confidence) / max(comparisons, 1)

    def choose(segment: str, mask: np.ndarray, reference: int, b: str, r: str) -> CellChoice:
        n = int(mask.sum())
        cell_band = r if bands is not None else None
        others = [k for k in range(len(names)) if k != reference]
        if not others:
            return CellChoice(segment, b, n, names[reference], 0.0, 0.0, names[reference], 0.0,
                              names[reference], 0.0, cell_band, names[reference])  # fmt: skip
        mean, lower = _best(values, reference, others, mask, level)
        top, best = int(np.argmax(mean)), int(np.argmax(lower))
        if lower[best] > 0 and n >= min_accounts:
            pick, gain, bound = names[others[best]], float(mean[best]), float(lower[best])
        else:
            pick, gain, bound = names[reference], 0.0, 0.0
        bounded = bool(np.isfinite(lower[best]))
        return CellChoice(
            segment, b, n, pick, gain, bound, names[others[top]], float(mean[top]),
            names[others[best]] if bounded else None,
            float(lower[best]) if bounded else None, cell_band, names[reference],
        )  # fmt: skip

    chosen: list[CellChoice] = []
    default: dict[tuple[str, str], int] = {}
    for b, r in blind:
        cell = choose(EVERY_SEGMENT, (bucket == b) & (band == r), base, b, r)
        default[(b, r)] = names.index(cell.chosen)
        chosen.append(cell)
    for s, b, r in cells:
        mask = (seg == s) & (bucket == b) & (band == r)
        chosen.append(choose(s, mask, default.get((b, r), base), b, r))
    return chosen


def proposed_policy_text(
    cells: Sequence[CellChoice],
    policy_text: str,
    provenance: Mapping[str, Any],
    name: str = "tuned",
) -> str:
    """A complete policy file: one rule per segment, treatment (and risk band, for cells split
    by band) with its buckets listed, where a cell departs from the baseline, then
    ``standard_queue`` for every other account, with ``policy_text``'s treatments. Each rule's
    description carries its evidence (accounts, mean gain and lower bound per account on the
    tuning world); ``provenance`` (world, as-of, seeds, confidence) goes in the header.
    Checked by :func:`parse_policy` before it is returned."""
    document = yaml.safe_load(policy_text)
    treatments = document["treatments"]
    source = parse_policy(policy_text, "the scoring run's policy")
    queue = next((t.name for t in source.treatments.values() if t.is_standard_queue), None)
    if queue is None:
        queue = STANDARD_QUEUE
        while queue in treatments:  # a treatment of that name with another ladder: keep it
            queue += "_"
        treatments[queue] = {
            "description": "the lender's standard tiered collection",
            "ladder": [{"day": 0, "action": STANDARD_QUEUE}],
        }
    # a rule where a cell departs from what it is measured against: a bucket's segment-blind
    # choice from the baseline (precedence 50), a segment's cell from the baseline or from its
    # bucket's blind choice (precedence 10, so it wins over the bucket's rule)
    grouped: dict[tuple[str, str, str], list[CellChoice]] = {}
    for cell in cells:
        if cell.chosen != cell.versus:
            grouped.setdefault((cell.segment, cell.chosen, cell.band or ""), []).append(cell)
    rules = []
    for (segment, chosen, band), group in sorted(
        grouped.items(), key=lambda item: (item[0][0] != EVERY_SEGMENT, item[0])
    ):
        treatment = queue if chosen == BASELINE else chosen.removeprefix(TREATMENT_PREFIX)
        if treatment not in treatments:
            raise ValueError(f"candidate {chosen} is not a treatment of the policy file")
        evidence = "; ".join(
            f"{c.bucket}: {c.accounts:,} accounts, +{c.gain:,.0f} CNY per account "
            f"(lower bound +{c.lower:,.0f})"
            + ("" if c.versus == BASELINE else f" over {c.versus.removeprefix(TREATMENT_PREFIX)}")
            for c in group
        )
        blind = segment == EVERY_SEGMENT
        who = "BUCKET" if blind else segment.upper().replace("_", "-")
        rule_id = f"TUNED-{who}-{treatment.upper().replace('_', '-')}"
        if band:
            rule_id += f"-{band.upper()}"
        while rule_id in {rule["id"] for rule in rules}:  # e.g. skip_trace and skip-trace
            rule_id += "-2"
        when: dict[str, Any] = {} if blind else {"segment": [segment]}
        when["start_bucket"] = [c.bucket for c in group]
        rules.append(
            {
                "id": rule_id,
                "description": f"tuned{' for every segment' if blind else ''}: {evidence}",
                "precedence": 50 if blind else 10,
                "when": when | ({"risk_band": [band]} if band else {}),
                "treatment": treatment,
            }
        )
    rules.append(
        {
            "id": "TUNED-BASELINE",
            "description": (
                "every other cell: no treatment beat the tiered baseline beyond noise on the "
                "tuning world, or the cell had too few scored accounts there to depart (or none)"
            ),
            "precedence": 100,
            "when": {},
            "treatment": queue,
        }
    )
    document["name"] = name
    split = " x risk band" if any(c.band for c in cells) else ""
    document["description"] = (
        (
            f"per start bucket{split}, the segment-blind treatment that beat the tiered "
            f"baseline beyond noise on a tuning world, and per segment x start bucket{split} "
            "the treatment that beat that one beyond noise (rollrisk simulate-policy "
            "--propose-policy --propose-blind-first); else the standard queue"
        )
        if any(c.segment == EVERY_SEGMENT for c in cells)
        else (
            f"per segment x start bucket{split}, the treatment that beat the tiered baseline "
            "beyond noise on a tuning world (rollrisk simulate-policy --propose-policy); else "
            "the standard queue"
        )
    )
    document["rules"] = rules
    header = "".join(f"#   {key}: {value}\n" for key, value in provenance.items())
    text = (
        "# Proposed by `rollrisk simulate-policy --propose-policy` (strategies/tuning.py) from\n"
        "# simulated outcomes on ONE world. Evaluate it on other portfolio seeds and another\n"
        "# response table before adopting it (bench/strategy_spread.py --policy).\n"
        + header
        + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    )
    parse_policy(text, "proposed policy")
    return text
