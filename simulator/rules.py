"""Every parameter of the portfolio simulator and its driver x action response rules, in one place.

The engine (:mod:`rollrisk.simulator.engine`) holds no numbers of its own: it reads the
frozen :class:`SimulationRules` below. A strategy can therefore be simulated forward from any
state by importing these tables and changing only the policy (which channels and treatments an
account gets), never the borrower behaviour.

Conventions
-----------
* Indices: products follow :data:`rollrisk.features.schemas.PRODUCTS`, channels
  :data:`~rollrisk.features.schemas.CHANNELS`, outcomes :data:`~rollrisk.features.schemas.OUTCOMES`,
  treatment kinds :data:`~rollrisk.features.schemas.TREATMENT_KINDS`, drivers :data:`DRIVERS`.
* Buckets are integers: 0 current (M0), 1 = M1 (1-29 DPD), 2 = M2 (30-59), ..., 6 = M6
  (150-179), 7 and more = charged off (180+ DPD). DPD at a cycle end is
  ``30 * (bucket - 1) + d0`` with ``d0`` in 1..29 drawn when the episode starts.
* Each month a delinquent account cures (back to M0), stays, or rolls one bucket. The three
  outcomes are a multinomial logit with "stay" as reference; a current account rolls to M1 with a
  logistic hazard. All effects below are additive shifts on those logits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rollrisk.features.schemas import CALL_CHANNELS, CHANNELS, OUTCOMES, PRODUCTS, TREATMENT_KINDS

DRIVERS: tuple[str, ...] = (
    "healthy",
    "capacity_shock",
    "low_willingness",
    "unreachable",
    "forgetful",
    "seasonal",
)
REVOLVING_PRODUCTS: tuple[str, ...] = ("bnpl", "credit_card")
CHARGE_OFF_BUCKET = 7  # 180+ DPD

Row = tuple[float, ...]


@dataclass(frozen=True)
class ProductRules:
    """Exposure and base behaviour of one product (money in CNY)."""

    share: float  # share of accounts
    limit_low: float  # credit limits are log-uniform in [limit_low, limit_high]
    limit_high: float
    revolving: bool  # revolving: statement balance due, min_due a share; else fixed instalments
    min_due_share: float  # revolving: min_due = max(min_due_floor, share x balance)
    min_due_floor: float
    instalment_terms: tuple[int, ...]  # instalment products: term in months of each draw
    base_roll_logit: float  # logit of M0 -> M1 for a healthy account in a neutral month
    driver_mix: Row  # share of each driver (DRIVERS order) among this product's borrowers
    # The open book (BookRules, docs/simulator.md "An open book"); exits apply to a current
    # account that stays current, not on a restructure plan:
    prepayment_rate: float = 0.0  # instalment: monthly probability the line is paid off early
    redraw_share: float = 1.0  # instalment: share of paid-down lines drawn again (else closed)
    closure_rate: float = 0.0  # revolving: monthly probability the borrower closes the account

    def exit_rate(self) -> float:
        """Expected monthly share of this product's current accounts that close: the revolving
        closure rate, or an instalment line's prepayment rate plus its pay-down closures (a
        draw is paid down over its term, so about 1 / mean term of the lines a month, of which
        ``1 - redraw_share`` close)."""
        if self.revolving:
            return self.closure_rate
        mean_term = sum(self.instalment_terms) / len(self.instalment_terms)
        return self.prepayment_rate + (1.0 - self.redraw_share) / mean_term


@dataclass(frozen=True)
class DriverRules:
    """How a latent driver moves the monthly transition logits (before any action)."""

    current_roll: float  # added to the M0 -> M1 logit
    cure: float  # added to the cure logit of delinquent accounts
    roll: float  # added to the roll logit of delinquent accounts
    season_weight: float  # multiplies the product's seasonal logit shift
    partial_payment_probability: float  # when rolling: probability of paying part of the due
    recovery_probability: float  # after charge-off: monthly probability of a recovery payment
    limit_factor: float  # multiplies the drawn credit limit (forgetful: small amounts)
    pays_above_due: float  # revolving, current: mean share of the balance above the due paid


@dataclass(frozen=True)
class ActionResponse:
    """Logit shifts on (cure, roll) when a channel (or treatment) touched the account this month."""

    cure: float
    roll: float


def _responses(
    table: dict[str, dict[str, tuple[float, float]]],
) -> dict[str, dict[str, ActionResponse]]:
    return {
        driver: {name: ActionResponse(*shift) for name, shift in row.items()}
        for driver, row in table.items()
    }


# Channel response by driver: (cure shift, roll shift) applied once per month if the channel
# REACHED the account at least once that month: a message delivered, a call, visit or agency
# report with a right-party outcome (REACHED_OUTCOMES), a legal filing (after its delay, see
# TreatmentRules). More contacts in a month raise the chance of reaching the borrower
# (1 - (1 - p)^k), never the effect of a conversation: diminishing returns. Reading guide: a
# reminder nudges the forgetful (single-digit relative effects, as field trials of SMS reminders
# report); pressure does little for a capacity shock; escalation (agency, visit, legal) moves the
# unwilling; only a visit or legal action reaches the unreachable. Calibration and sources:
# docs/simulator.md.
CHANNEL_RESPONSE = _responses(
    {
        "healthy": {
            "sms": (0.1, -0.05), "app_push": (0.05, 0.0), "robo_call": (0.2, -0.1),
            "agent_call": (0.5, -0.3), "agency_assignment": (0.3, -0.2), "field_visit": (0.4, -0.3),
            "notice_letter": (0.1, -0.05), "legal": (0.3, -0.2),
        },
        "capacity_shock": {
            "sms": (0.0, 0.0), "app_push": (0.0, 0.0), "robo_call": (0.0, 0.0),
            "agent_call": (0.1, 0.0), "agency_assignment": (0.0, 0.0), "field_visit": (0.1, 0.0),
            "notice_letter": (0.0, 0.0), "legal": (-0.2, 0.2),
        },
        "low_willingness": {
            "sms": (0.0, 0.0), "app_push": (0.0, 0.0), "robo_call": (0.1, 0.0),
            "agent_call": (0.4, -0.3), "agency_assignment": (0.7, -0.5), "field_visit": (0.8, -0.5),
            "notice_letter": (0.4, -0.3), "legal": (1.0, -0.8),
        },
        "unreachable": {
            "sms": (0.0, 0.0), "app_push": (0.0, 0.0), "robo_call": (0.0, 0.0),
            "agent_call": (0.0, 0.0), "agency_assignment": (0.3, -0.2), "field_visit": (1.0, -0.6),
            "notice_letter": (0.3, -0.2), "legal": (0.6, -0.4),
        },
        "forgetful": {
            "sms": (0.4, -0.2), "app_push": (0.3, -0.15), "robo_call": (0.4, -0.2),
            "agent_call": (0.3, -0.2), "agency_assignment": (0.2, -0.1), "field_visit": (0.2, -0.1),
            "notice_letter": (0.2, -0.1), "legal": (0.0, 0.0),
        },
        "seasonal": {
            "sms": (0.1, 0.0), "app_push": (0.1, 0.0), "robo_call": (0.1, 0.0),
            "agent_call": (0.2, -0.1), "agency_assignment": (0.1, 0.0), "field_visit": (0.2, -0.1),
            "notice_letter": (0.0, 0.0), "legal": (0.0, 0.0),
        },
    }
)  # fmt: skip

# Treatment response by driver while the treatment is active, for the treatments that act
# through the borrower's behaviour. Only the interest waiver does: a lighter monthly burden
# helps a capacity shock or a seasonal borrower cure, not the unwilling or the unreachable. The
# other treatments act through the money (TreatmentRules below): a grace period or a
# first-delinquency extension defers the due and freezes the account's bucket (no push to
# cure), and a restructure replaces the due with a lower plan instalment that the borrower
# honours or breaks (RESTRUCTURE_REDEFAULT).
TREATMENT_RESPONSE = _responses(
    {
        "healthy": {"interest_waiver": (0.3, -0.3)},
        "capacity_shock": {"interest_waiver": (1.0, -1.0)},
        "low_willingness": {"interest_waiver": (0.0, 0.0)},
        "unreachable": {"interest_waiver": (0.0, 0.0)},
        "forgetful": {"interest_waiver": (0.3, -0.3)},
        "seasonal": {"interest_waiver": (0.8, -0.8)},
    }
)  # fmt: skip

# Monthly probability that a restructure plan in force breaks (a missed plan instalment: the
# account re-enters collections at the bucket it was restructured from), by driver; during a
# capacity shock ``TreatmentRules.shock_redefault`` is added. Compounded over 12 months:
# healthy 17 %, capacity shock 23 % (47 % for a year inside the shock), low willingness
# 63 %, unreachable 72 %, forgetful 21 %, seasonal 23 %: the 20-50 % a year that loan
# modification studies report for the mix that gets restructured (docs/simulator.md).
RESTRUCTURE_REDEFAULT: dict[str, float] = {
    "healthy": 0.015,
    "capacity_shock": 0.022,
    "low_willingness": 0.08,
    "unreachable": 0.10,
    "forgetful": 0.02,
    "seasonal": 0.022,
}


# Probability that a borrower takes up a treatment the lender OFFERS unasked (a policy's grace,
# waiver or restructure offer), when the lender reached them that month (a message delivered or
# a right-party contact); an offer that reaches nobody is never taken up. A treatment the
# borrower asked for (after a hardship claim) is always taken up, and the first-delinquency
# extension is applied by the lender. Assumption: no published take-up rates were found.
TREATMENT_TAKE_UP: dict[str, float] = {
    "healthy": 0.6,
    "capacity_shock": 0.85,
    "low_willingness": 0.3,
    "unreachable": 0.3,
    "forgetful": 0.5,
    "seasonal": 0.8,
}


# Partial cures (docs/simulator.md, "Partial cures and promises"): a delinquent account at M2 or
# worse whose month's draw is "stay" (it pays one due) pays, with this probability by driver, one
# more due's worth of its arrears (``arrears / bucket``): at least one due, not all, so it moves
# back one bucket (M3 -> M2, M2 -> M1) and its DPD falls by 30. Assumption (no published rate of
# one-bucket cures by borrower type was found): the borrowers who want to pay but cannot pay it
# all (capacity shock, seasonal) and the forgetful catching up pay part most often; the
# unwilling and the unreachable rarely.
PARTIAL_CURE: dict[str, float] = {
    "healthy": 0.25,
    "capacity_shock": 0.35,
    "low_willingness": 0.10,
    "unreachable": 0.05,
    "forgetful": 0.30,
    "seasonal": 0.35,
}

# Promise keeping: the probability that a borrower who promised to pay in a month (an action
# with outcome ``promise_to_pay``) pays the promised amount by the promised date. Vendor
# write-ups put the share of promises kept at 50-70 % on average (docs/simulator.md); the split
# by driver is an assumption: the healthy and the forgetful keep most, the unwilling least.
# Drawn once per account and month that holds a promise (its largest promise counts).
PROMISE_KEPT: dict[str, float] = {
    "healthy": 0.75,
    "capacity_shock": 0.45,
    "low_willingness": 0.25,
    "unreachable": 0.40,
    "forgetful": 0.75,
    "seasonal": 0.60,
}


@dataclass(frozen=True)
class DynamicsRules:
    """Partial cures and promises kept or broken (docs/simulator.md, "Partial cures and
    promises"). Their draws come from a stream of their own (a child of the chunk's), so
    switching both off gives back the files of earlier versions byte for byte."""

    partial_cures: bool = True  # PARTIAL_CURE applies
    # PROMISE_KEPT applies: a kept promise pays at least the promised amount by the promised
    # date (which is capped at the next cycle end: a collector does not book a promise past the
    # next statement, assumption) and the account cures or moves back one bucket; a broken one
    # pays no arrears that cycle (no cure, no partial cure) and adds broken_promise_roll to the
    # roll logit (assumption: a broken promise signals an account about to roll)
    promises: bool = True
    broken_promise_roll: float = 0.3


STRESS_KINDS: tuple[str, ...] = ("none", "regional", "macro")


@dataclass(frozen=True)
class StressRules:
    """A stress scenario (``rollrisk simulate --stress``; docs/simulator.md, "Stress scenarios").

    * ``regional``: a disaster in one region from window month ``start_month``: a capacity
      shock starts then for ``regional_share`` of the region's accounts (every driver) and
      lasts ``months`` months (the capacity-shock logit shifts of :class:`SimulationRules`);
    * ``macro``: every account's macro logit (the ``macro(t)`` term: roll logits up by
      ``macro_shift``, cure logits down by half of it) rises by ``macro_shift`` for ``months``
      months from ``start_month``.

    Assumptions, sized to be visible but not catastrophic: a macro shift of 0.5 is about the
    peak-to-trough swing of the simulated macro cycle (2 x ``macro_amplitude`` = 0.6 logit).
    The accounts a regional disaster hits are drawn from a stream of their own (a child of the
    chunk's), and the macro shift is added to the drawn cycle, so ``none`` leaves every draw
    and every file as it was.
    """

    kind: str = "none"  # one of STRESS_KINDS
    start_month: int = 12  # window month index (0 = the first output month) the stress begins
    months: int = 6
    regional_share: float = 0.3
    region: int = -1  # the region hit; -1: the most populous region of the drawn world
    macro_shift: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in STRESS_KINDS:
            raise ValueError(f"unknown stress {self.kind!r}; known: {', '.join(STRESS_KINDS)}")


@dataclass(frozen=True)
class TreatmentRules:
    """What the treatments do to the money: deferral, waived income, plan terms, legal delay."""

    # grace period: dues deferred (added to the arrears, still owed), the bucket frozen, no
    # collection; fees on the balance keep accruing unless this says they are waived
    grace_waives_interest: bool = False
    # first-delinquency extension: one due deferred, interest-free (the seed's "one-time
    # interest-free extension")
    extension_waives_interest: bool = True
    # restructure: arrears capitalised; the plan instalment is balance / plan months, at most
    # this share of the due it replaces (a lower instalment, a longer term)
    restructure_instalment_share: float = 0.7
    shock_redefault: float = 0.03  # added to RESTRUCTURE_REDEFAULT while a capacity shock is on
    # legal: the filing's effect on the borrower (CHANNEL_RESPONSE "legal") comes this many
    # months after the filing (court and enforcement delay), once
    legal_delay_months: int = 3


# Against circularity (docs/simulator.md, "Response tables"): the policy's ladders were written
# from the same beliefs as the two tables above, so every strategy result is also reported under
# tables drawn apart from them. Draw k scales each (driver, channel or treatment) effect, cure and
# roll shift alike, by a factor drawn once, uniform in [0.5, 1.5], rounded to 2 decimals:
# ``np.random.default_rng(RESPONSE_DRAW_SEED + k).uniform(0.5, 1.5, (6, 12))`` in DRIVERS x
# (CHANNELS, TREATMENT_KINDS) order. The factors are written out so they can be reviewed; a test
# redraws them from the seed, so nobody can have picked them.
RESPONSE_DRAW_SEED = 20261130
RESPONSE_SCALES: dict[str, dict[str, Row]] = {
    "scaled-1": {
        "healthy": (0.57, 1.18, 1.09, 1.16, 1.19, 0.72, 0.95, 1.44, 0.51, 1.3, 1.42, 1.49),
        "capacity_shock": (0.73, 0.83, 0.6, 1.28, 0.8, 0.94, 1.15, 0.81, 1.15, 1.2, 0.66, 1.33),
        "low_willingness": (1.26, 1.12, 1.49, 1.0, 1.26, 0.9, 1.13, 0.98, 0.82, 0.52, 1.12, 1.23),
        "unreachable": (1.29, 0.65, 0.93, 1.36, 1.5, 1.24, 0.86, 0.86, 0.59, 1.13, 0.79, 0.54),
        "forgetful": (1.47, 0.81, 0.54, 0.84, 1.2, 1.32, 0.65, 0.85, 0.96, 1.03, 1.36, 1.41),
        "seasonal": (1.26, 0.76, 0.55, 1.41, 1.01, 1.24, 1.16, 1.16, 1.41, 0.83, 1.5, 0.68),
    },
    "scaled-2": {
        "healthy": (0.53, 1.39, 0.91, 1.27, 0.81, 1.01, 1.43, 0.59, 0.78, 1.21, 1.03, 0.79),
        "capacity_shock": (0.56, 0.81, 1.24, 1.12, 1.09, 1.47, 1.11, 0.57, 1.23, 0.97, 1.48, 0.52),
        "low_willingness": (1.14, 1.31, 1.08, 0.77, 0.51, 1.05, 0.57, 0.91, 1.29, 1.17, 0.8, 1.43),
        "unreachable": (0.52, 1.16, 1.23, 0.67, 0.89, 1.07, 0.85, 1.4, 1.01, 0.61, 0.71, 0.55),
        "forgetful": (0.82, 1.26, 1.26, 0.89, 1.44, 1.06, 0.81, 0.57, 1.06, 1.44, 1.33, 1.12),
        "seasonal": (0.77, 1.32, 1.22, 1.31, 0.78, 0.72, 0.52, 0.78, 1.41, 0.62, 0.53, 0.76),
    },
    "scaled-3": {
        "healthy": (1.28, 1.29, 1.28, 0.87, 0.87, 0.71, 0.97, 1.05, 1.24, 0.54, 1.1, 0.58),
        "capacity_shock": (1.38, 1.3, 1.37, 1.23, 0.89, 1.14, 0.62, 0.68, 1.4, 0.94, 1.2, 1.34),
        "low_willingness": (0.78, 1.35, 0.9, 1.27, 0.95, 0.9, 1.23, 1.09, 0.58, 0.87, 1.17, 1.11),
        "unreachable": (0.9, 0.89, 0.87, 0.83, 1.16, 1.07, 1.17, 1.46, 0.87, 1.38, 0.88, 1.46),
        "forgetful": (0.74, 0.73, 0.79, 0.59, 0.94, 0.56, 0.82, 1.45, 1.3, 1.32, 0.63, 0.79),
        "seasonal": (1.44, 1.47, 0.95, 1.34, 0.97, 0.78, 1.38, 0.84, 1.14, 0.84, 1.13, 0.66),
    },
}  # fmt: skip
PRIMARY_RESPONSES = "primary"
RESPONSE_TABLES: tuple[str, ...] = (PRIMARY_RESPONSES, *RESPONSE_SCALES)


def response_tables(
    name: str,
) -> tuple[dict[str, dict[str, ActionResponse]], dict[str, dict[str, ActionResponse]]]:
    """The (channel, treatment) response tables called ``name`` (one of RESPONSE_TABLES)."""
    if name == PRIMARY_RESPONSES:
        return CHANNEL_RESPONSE, TREATMENT_RESPONSE
    if name not in RESPONSE_SCALES:
        raise ValueError(f"unknown response table {name!r}; known: {', '.join(RESPONSE_TABLES)}")

    def scaled(table: dict[str, dict[str, ActionResponse]], actions: tuple[str, ...]) -> dict:
        offset = 0 if actions is CHANNELS else len(CHANNELS)  # the factors' column order
        return {
            driver: {
                action: ActionResponse(
                    round(response.cure * RESPONSE_SCALES[name][driver][offset + column], 4),
                    round(response.roll * RESPONSE_SCALES[name][driver][offset + column], 4),
                )
                for action, response in row.items()
                for column in [actions.index(action)]
            }
            for driver, row in table.items()
        }

    return scaled(CHANNEL_RESPONSE, CHANNELS), scaled(TREATMENT_RESPONSE, TREATMENT_KINDS)


# Contact outcome probabilities per driver for conversational channels (robo_call, agent_call,
# agency_assignment = the agency's monthly report, field_visit), in OUTCOMES order:
# delivered, no_answer, contacted, promise_to_pay, refused, dispute, hardship_claimed,
# wrong_number, unreachable. Mixed with COMMON_CALL_OUTCOMES (weight outcome_noise) so that no
# single outcome gives the driver away.
CALL_OUTCOMES: dict[str, Row] = {
    "healthy": (0.0, 0.30, 0.32, 0.30, 0.02, 0.02, 0.03, 0.005, 0.005),
    "capacity_shock": (0.0, 0.18, 0.25, 0.15, 0.04, 0.01, 0.36, 0.005, 0.005),
    "low_willingness": (0.0, 0.30, 0.07, 0.30, 0.22, 0.08, 0.02, 0.005, 0.005),
    "unreachable": (0.0, 0.50, 0.04, 0.02, 0.01, 0.0, 0.01, 0.20, 0.22),
    "forgetful": (0.0, 0.20, 0.40, 0.36, 0.01, 0.01, 0.01, 0.005, 0.005),
    "seasonal": (0.0, 0.25, 0.28, 0.28, 0.02, 0.01, 0.15, 0.005, 0.005),
}
COMMON_CALL_OUTCOMES: Row = (0.0, 0.35, 0.25, 0.22, 0.05, 0.03, 0.05, 0.03, 0.02)
# Dialled channels (CALL_CHANNELS: robo_call, agent_call): most dials reach nobody. A dial is
# answered with probability SimulationRules.dial_answer_rate, and only then draws the driver's
# outcome above; otherwise it is `no_answer`. 0.4 x the driver mix's right-party share (about
# 0.65 for a healthy borrower) puts right-party contact per dial at about 25 %, the 20-30 % the
# industry reports (docs/simulator.md). An agency's monthly report and a field visit are not
# dials.
# The outcomes with which a contact reached the borrower (a channel acts only through them).
REACHED_OUTCOMES: tuple[str, ...] = (
    "delivered", "contacted", "promise_to_pay", "refused", "dispute", "hardship_claimed",
)  # fmt: skip
# Messages (MESSAGE_CHANNELS: sms, app_push, notice_letter): delivered unless the contact data
# are bad.
MESSAGE_OUTCOMES: dict[str, Row] = {
    driver: (
        (0.55, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.20, 0.25)
        if driver == "unreachable"
        else (0.96, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.02, 0.02)
    )
    for driver in DRIVERS
}
# Legal action: filed (delivered), disputed, or settled in contact.
LEGAL_OUTCOMES: Row = (0.75, 0.0, 0.15, 0.0, 0.0, 0.10, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class PolicyRules:
    """The baseline tiered collection policy (by DPD bucket and amount) and its treatments."""

    holdout_share: float = 0.05  # delinquent accounts that get only one SMS a month
    large_balance: float = 20_000.0  # M3: agency assignment above this balance
    legal_balance: float = 50_000.0  # 90+: legal action above this balance ...
    failed_contacts_for_escalation: int = 3  # ... after this many failed contacts
    visit_probability: float = 0.5  # 90+: monthly chance of a field visit when eligible
    legal_probability: float = 0.3  # 90+: monthly chance of filing when eligible
    first_extension_probability: float = 0.35  # first-ever delinquency -> one-time extension
    hardship_grant_probability: float = 0.6  # hardship claimed -> a treatment is granted
    restructure_balance: float = 20_000.0  # hardship at M2+ above this balance -> restructure
    grace_months: tuple[int, ...] = (1, 2, 3)
    waiver_months: int = 3
    restructure_months: tuple[int, ...] = (12, 24, 36, 60)
    # First day (after cycle end) and last day on which each channel is used within a month.
    channel_days: dict[str, tuple[int, int]] = field(
        default_factory=lambda: {
            "sms": (1, 4), "app_push": (1, 4), "robo_call": (3, 12), "agent_call": (5, 22),
            "agency_assignment": (8, 20), "field_visit": (12, 25), "notice_letter": (12, 25),
            "legal": (18, 26),
        }
    )  # fmt: skip


@dataclass(frozen=True)
class BookRules:
    """An open book: accounts booked during the window, closed, paid off and prepaid.

    ``--accounts N`` counts the accounts ever on the book in the window: every one of them has
    at least one statement in it. Each account draws, independently, whether it is on the book
    at the window's first month (opened ``opened_days_before_start`` before it) or is booked in
    one of the later window months (its ``opened_at`` 1-30 days before its first cycle end).
    The booking rate is sized so the active book (open and not charged off) stays about level:
    a product p whose accounts leave at ``b_p`` a month (:meth:`ProductRules.exit_rate` plus
    ``charge_off_allowance``) is booked at ``b_p`` x its book at the start each month, i.e. an
    account of p is on the book at the start with probability ``1 / (1 + b_p x T)`` and booked
    in each of the ``T = months - 1`` later months with probability ``b_p / (1 + b_p x T)``;
    products are drawn with weights ``share_p x (1 + b_p x T)`` so that ``share`` stays each
    product's share of the book at the start.
    """

    open_book: bool = True  # False: the closed cohort of earlier versions (nothing opens/closes)
    # charge-offs leave the active book too: about 0.5 % of the accounts a month reached 180 DPD
    # on the closed-cohort simulator (seed 7, 60,000 x 24, every product between 0.3 % and 0.9 %)
    charge_off_allowance: float = 0.005
    opened_days_before_first_statement: tuple[int, int] = (1, 31)  # booked accounts, uniform


@dataclass(frozen=True)
class WorldRules:
    """Shared, portfolio-wide forces: macro cycle, seasons, regional shocks."""

    regions: int = 31
    macro_amplitude: float = 0.3  # logit amplitude of the macro cycle
    macro_period_months: float = 36.0
    macro_noise: float = 0.08  # AR(1) innovation sd
    macro_persistence: float = 0.7
    # Month-of-year logit shift (Jan..Dec). Agriculture: capacity low before the harvest
    # (spring to early summer), repayment after it (autumn). Merchants: Spring-Festival slump,
    # 618 and Double-11 sales peaks.
    agri_season: Row = (0.2, 0.3, 0.4, 0.6, 0.6, 0.5, 0.2, -0.5, -0.7, -0.7, -0.4, 0.0)
    merchant_season: Row = (0.3, 0.6, 0.3, 0.0, 0.0, -0.4, 0.0, 0.0, 0.0, 0.0, -0.5, -0.3)
    shock_probability: float = 0.02  # per region and month: a flood or a price collapse starts
    shock_severity: tuple[float, float] = (1.0, 2.0)  # logit shift, uniform
    shock_decay: Row = (1.0, 0.6, 0.3)  # share of the severity in the shock's 1st, 2nd, 3rd month
    shock_exposure: Row = (0.0, 0.0, 0.0, 0.5, 1.0)  # per product (PRODUCTS order)


@dataclass(frozen=True)
class SimulationRules:
    """All simulator parameters. Change a copy (``dataclasses.replace``), never the defaults."""

    products: dict[str, ProductRules] = field(
        default_factory=lambda: {
            "bnpl": ProductRules(0.35, 1_000, 10_000, True, 0.10, 50, (), -4.3,
                                 (0.80, 0.05, 0.05, 0.03, 0.07, 0.0), closure_rate=0.010),
            "credit_card": ProductRules(0.25, 5_000, 50_000, True, 0.10, 100, (), -4.4,
                                        (0.80, 0.06, 0.05, 0.03, 0.06, 0.0), closure_rate=0.008),
            "cash_loan": ProductRules(0.20, 10_000, 200_000, False, 0.0, 0, (12, 24, 36), -4.2,
                                      (0.76, 0.08, 0.07, 0.04, 0.05, 0.0),
                                      prepayment_rate=0.020, redraw_share=0.5),
            "merchant_loan": ProductRules(0.10, 50_000, 500_000, False, 0.0, 0, (12, 24, 36), -4.3,
                                          (0.70, 0.07, 0.05, 0.03, 0.03, 0.12),
                                          prepayment_rate=0.015, redraw_share=0.6),
            "agri_loan": ProductRules(0.10, 10_000, 100_000, False, 0.0, 0, (12, 18, 24), -4.4,
                                      (0.62, 0.08, 0.04, 0.04, 0.04, 0.18),
                                      prepayment_rate=0.010, redraw_share=0.5),
        }
    )  # fmt: skip
    drivers: dict[str, DriverRules] = field(
        default_factory=lambda: {
            "healthy": DriverRules(0.0, 0.0, 0.0, 0.5, 0.4, 0.2, 1.0, 0.55),
            "capacity_shock": DriverRules(-0.5, 0.0, 0.0, 0.5, 0.7, 0.18, 1.0, 0.55),
            "low_willingness": DriverRules(2.3, -1.8, 1.5, 0.5, 0.15, 0.07, 1.0, 0.25),
            "unreachable": DriverRules(1.8, -2.0, 1.6, 0.5, 0.1, 0.03, 1.0, 0.35),
            "forgetful": DriverRules(1.6, 0.6, -0.6, 0.5, 0.3, 0.2, 0.6, 0.5),
            "seasonal": DriverRules(0.5, 0.0, 0.0, 2.5, 0.5, 0.18, 1.0, 0.45),
        }
    )  # fmt: skip
    # Capacity shock: clean (current_roll above) until onset, then for shock_months months:
    shock_onset_months: tuple[int, int] = (3, 30)  # onset month index (window months), uniform
    shock_months: tuple[int, int] = (4, 13)  # duration, uniform in [low, high)
    shock_current_roll: float = 3.6  # extra M0 -> M1 logit while the shock lasts
    shock_cure: float = -1.5
    shock_roll: float = 1.2
    shock_utilisation_step: float = 0.08  # revolving utilisation target rises per month
    shock_pays_above_due: float = 0.05  # while current: pays little more than the due
    # Delinquent transitions: base (cure, roll) logits by bucket 1..6, relative to "stay".
    bucket_cure: Row = (0.9, 0.2, -0.6, -1.2, -1.4, -1.6)
    bucket_roll: Row = (-0.4, 0.0, 0.7, 2.0, 2.2, 2.4)
    recent_delinquency_roll: float = 1.0  # M0 -> M1 logit if cured within recency_months
    recency_months: int = 6
    frailty_sd: float = 0.6  # per-account random effect on all roll logits (unobserved risk)
    macro_cure_factor: float = -0.5  # the macro shift moves the cure logit by this multiple
    delinquency_fee_rate: float = 0.015  # monthly fees/interest on delinquent balances
    utilisation_beta: tuple[float, float] = (2.0, 4.0)  # revolving utilisation target
    recovery_payment_share: tuple[float, float] = (0.05, 0.20)  # of the balance, uniform
    known_at_late_probability: float = 0.05  # statement data arrive 4-10 days late
    opened_days_before_start: tuple[int, int] = (60, 1500)
    shared_borrower_share: float = 0.08  # accounts that belong to the previous account's borrower
    outcome_noise: float = 0.3  # weight of COMMON_CALL_OUTCOMES in every driver's outcome mix
    dial_answer_rate: float = 0.4  # robo and agent calls: a dial reaches someone (else no_answer)
    policy: PolicyRules = field(default_factory=PolicyRules)
    book: BookRules = field(default_factory=BookRules)
    treatments: TreatmentRules = field(default_factory=TreatmentRules)
    world: WorldRules = field(default_factory=WorldRules)
    dynamics: DynamicsRules = field(default_factory=DynamicsRules)
    stress: StressRules = field(default_factory=StressRules)
    response_table: str = PRIMARY_RESPONSES  # one of RESPONSE_TABLES (the borrowers' responses)
    burn_in_months: int = 6  # simulated before the window so it does not start all-current
    chunk_accounts: int = 50_000  # fixed: output depends on the seed only, never on memory

    def __post_init__(self) -> None:
        response_tables(self.response_table)  # an unknown name fails here, not mid-simulation

    def responses(
        self,
    ) -> tuple[dict[str, dict[str, ActionResponse]], dict[str, dict[str, ActionResponse]]]:
        """The (channel, treatment) response tables the borrowers follow under these rules."""
        return response_tables(self.response_table)

    def to_dict(self) -> dict[str, Any]:
        """All parameters plus the response tables, JSON-ready (written to truth/params.json)."""
        channel_response, treatment_response = self.responses()
        return {
            **asdict(self),
            "drivers_order": list(DRIVERS),
            "channel_response": {
                d: {c: asdict(r) for c, r in row.items()} for d, row in channel_response.items()
            },
            "treatment_response": {
                d: {k: asdict(r) for k, r in row.items()} for d, row in treatment_response.items()
            },
            "restructure_redefault": dict(RESTRUCTURE_REDEFAULT),
            "treatment_take_up": dict(TREATMENT_TAKE_UP),
            "partial_cure": dict(PARTIAL_CURE),
            "promise_kept": dict(PROMISE_KEPT),
            "call_outcomes": {
                d: dict(zip(OUTCOMES, p, strict=True)) for d, p in CALL_OUTCOMES.items()
            },
            "common_call_outcomes": dict(zip(OUTCOMES, COMMON_CALL_OUTCOMES, strict=True)),
            "message_outcomes": {
                d: dict(zip(OUTCOMES, p, strict=True)) for d, p in MESSAGE_OUTCOMES.items()
            },
            "legal_outcomes": dict(zip(OUTCOMES, LEGAL_OUTCOMES, strict=True)),
            "dialled_channels": list(CALL_CHANNELS),
            "reached_outcomes": list(REACHED_OUTCOMES),
        }


DEFAULT_RULES = SimulationRules()

__all__ = [
    "CHANNELS",
    "CHANNEL_RESPONSE",
    "CHARGE_OFF_BUCKET",
    "DEFAULT_RULES",
    "DRIVERS",
    "OUTCOMES",
    "PARTIAL_CURE",
    "PROMISE_KEPT",
    "STRESS_KINDS",
    "RESTRUCTURE_REDEFAULT",
    "TREATMENT_TAKE_UP",
    "PRODUCTS",
    "RESPONSE_TABLES",
    "TREATMENT_KINDS",
    "TREATMENT_RESPONSE",
    "BookRules",
    "DynamicsRules",
    "StressRules",
    "SimulationRules",
    "TreatmentRules",
]
