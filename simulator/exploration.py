"""The simulated lender's champion/challenger test: a share of its M1-M3 book gets a policy's ladders.

A real lender learns what works from its own randomised tests (issue 13); the simulated one
runs one, so that the history ``rollrisk simulate`` writes holds logged experiments a policy
learner can use (``rollrisk learn-policy``). The test, one experiment over the whole simulated
history (:data:`EXPERIMENT_ID`):

* **Who is randomised.** An account is randomised with probability ``share`` and, if it is,
  given one of the K arms with equal weight. Both draws are the product's own
  (:func:`rollrisk.strategies.experiments.unit_draws`: BLAKE2b of ``"<experiment>:<account>"``),
  never the simulator's random streams, so exploring does not move any other draw and a share
  of 0 writes exactly the files of a simulator that never explores. An account keeps its arm
  every month (persistent, as the product's experiments are).
* **When.** Each month, an account is *eligible* when it is in M1-M3 at the decision (the
  policy's scope, :data:`~rollrisk.simulator.engine.POLICY_MAX_BUCKET`), its collection is not
  paused by an active treatment and it is not in the tiered lender's holdout. An eligible
  randomised account gets its arm's ladder that month instead of the tiered actions; every
  other account, and every account outside M1-M3, gets the tiered lender's.
* **Arms.** Every treatment of a policy file (by default the shipped ``conf/policy.yaml``); the
  control is the tiered lender, logged with the reserved arm name ``policy``.
* **Propensity** (logged per eligible account-month): ``1 - share`` for the control,
  ``share x (arms with the same ladder) / K`` for an arm (``share / K`` when the ladders differ),
  the probability that the logging lender gives that bundle.

How a ladder acts in a month is the policy replay's (one mechanism:
:func:`rollrisk.simulator.engine.ladder_plan`, ``ladder_counts``, ``offer_treatments``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, time
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from rollrisk.errors import UserError
from rollrisk.strategies.experiments import NOT_RANDOMISED, unit_draws
from rollrisk.strategies.policy import LadderStep, Policy

EXPERIMENT_ID = "SIM-EXPLORE"
EXPERIMENT_FILE = "experiments.yaml"
"""The experiment definition, written into the portfolio folder in the product's format."""
ASSIGNMENTS_TABLE = "experiment_assignments"
DEFAULT_SHARE = 0.10


@dataclass(frozen=True)
class Exploration:
    """The simulated lender's experiment: its id, the randomised share and the arms' ladders."""

    experiment_id: str
    share: float  # in (0, 1): the control keeps 1 - share
    arms: tuple[tuple[str, tuple[LadderStep, ...]], ...]  # (name, ladder), in policy order
    policy_source: str  # the policy file the arms come from (recorded, not re-read)

    def __post_init__(self) -> None:
        if not 0 < self.share < 1:
            raise ValueError(f"the exploration share must be in (0, 1), got {self.share}")
        if not self.arms:
            raise ValueError("the exploration needs at least one arm")
        names = [name for name, _ in self.arms]
        if NOT_RANDOMISED in names or len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique and not {NOT_RANDOMISED!r}: {names}")

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.arms)

    def propensities(self) -> NDArray[np.float64]:
        """Per arm, the probability the logging lender gives its bundle: ``share`` times the
        weight of every arm with the same ladder (equal weights 1/K)."""
        keys = [_ladder_key(steps) for _, steps in self.arms]
        k = len(keys)
        return np.array([self.share * keys.count(key) / k for key in keys])

    def arm_of(self, account_ids: Sequence[str]) -> NDArray[np.int64]:
        """Each account's arm index (-1: not randomised), from the product's hash draws."""
        draws = unit_draws(self.experiment_id, account_ids)
        k = len(self.arms)
        cumulative = np.arange(1, k + 1) / k
        chosen = np.minimum(np.searchsorted(cumulative, draws[:, 1], side="right"), k - 1)
        return np.where(draws[:, 0] < self.share, chosen, -1).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        """What ``truth/params.json`` records (the replay rebuilds the experiment from it)."""
        return {
            "experiment_id": self.experiment_id,
            "share": self.share,
            "policy": self.policy_source,
            "experiment_file": EXPERIMENT_FILE,
            "arms": {name: [_step_dict(step) for step in steps] for name, steps in self.arms},
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Exploration:
        arms = tuple(
            (str(name), tuple(_step_from_dict(step) for step in steps))
            for name, steps in raw["arms"].items()
        )
        return cls(str(raw["experiment_id"]), float(raw["share"]), arms, str(raw["policy"]))

    def experiment_file(self, start: date, end: date) -> str:
        """The experiment in the product's experiment-file format (``conf/experiments.yaml``):
        one experiment from ``start`` to ``end`` (as-of dates), eligible in M1-M3, one ladder arm
        per policy treatment with equal weight; not randomised = the tiered lender."""
        arms = [
            {
                "name": name,
                "weight": 1,
                "description": "a treatment of the policy, given instead of the tiered actions",
                "ladder": [_step_dict(step) for step in steps],
            }
            for name, steps in self.arms
        ]
        document = {
            "version": 1,
            "experiments": [
                {
                    "id": self.experiment_id,
                    "description": (
                        "the simulated lender's exploration: a share of the eligible M1-M3 "
                        "accounts (not paused, not in the holdout) gets a treatment of "
                        f"{self.policy_source} instead of the tiered actions; not randomised "
                        "(arm policy) = the tiered lender"
                    ),
                    "start": start.isoformat(),
                    "end": end.isoformat(),
                    "share": self.share,
                    "eligible": {"start_bucket": ["M1", "M2", "M3"]},
                    "arms": arms,
                }
            ],
        }
        header = (
            "# Written by `rollrisk simulate` (docs/simulator.md, 'Exploration'): the experiment\n"
            "# the simulated lender ran; its assignments are experiment_assignments.\n"
        )
        return header + yaml.safe_dump(
            document, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100
        )


def exploration_from_policy(
    policy: Policy,
    share: float,
    experiment_id: str = EXPERIMENT_ID,
    source: str | None = None,
) -> Exploration | None:
    """The exploration with every treatment of ``policy`` as an arm, except those that keep the
    account in the standard queue (the lender's tiered collection is the control, not an arm;
    the simulated lender does not explore steps added on top of it); ``source`` names the
    policy file in the records, default ``policy.source``. None for a share of 0."""
    if share == 0:
        return None
    arms = tuple(
        (name, treatment.steps)
        for name, treatment in policy.treatments.items()
        if not treatment.keeps_standard_queue
    )
    if not arms:
        raise UserError(
            f"{source or policy.source}: every treatment keeps the account in the standard queue "
            f"({', '.join(policy.treatments)}), so the exploration has no arm: the standard "
            "queue is the control; give a policy file with at least one other treatment"
        )
    return Exploration(experiment_id, share, arms, source or policy.source)


def _ladder_key(steps: Sequence[LadderStep]) -> tuple[tuple[Any, ...], ...]:
    return tuple((s.action, s.day, s.at, s.channel, s.recipient) for s in steps)


def _step_dict(step: LadderStep) -> dict[str, Any]:
    """A ladder step as written in a policy file (every field it has, so it reads back equal)."""
    out: dict[str, Any] = {"day": step.day, "action": step.action}
    if step.channel is not None:
        out["channel"] = step.channel
    out["at"] = step.at.strftime("%H:%M")
    if step.recipient != "borrower":
        out["recipient"] = step.recipient
    return out


def _step_from_dict(raw: Mapping[str, Any]) -> LadderStep:
    return LadderStep(
        action=str(raw["action"]),
        day=int(raw["day"]),
        at=time.fromisoformat(str(raw.get("at", "10:00"))),
        channel=raw.get("channel"),
        recipient=raw.get("recipient", "borrower"),
        line=None,
    )
