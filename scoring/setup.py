"""The scoring setup of a loaded model and the rule files (segments, policy, compliance,
experiments): what :func:`rollrisk.api.scoring_setup` returns and ``rollrisk score``,
``serve`` and ``logged-decisions`` load.

It lives apart from :mod:`rollrisk.api`, which imports the training and evaluation code (and
with it matplotlib, SciPy's statistics and the scorecard's optimiser): a scoring job does not
need them, and importing them cost it about 1.1 s before its first row was read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rollrisk.conf import (
    DEFAULT_COMPLIANCE,
    DEFAULT_EXPERIMENTS,
    DEFAULT_POLICY,
    DEFAULT_SEGMENTS,
)
from rollrisk.errors import UserError
from rollrisk.features.currencies import recorded_currencies
from rollrisk.features.observations import ObservationSpec
from rollrisk.scoring.core import OPTIONAL_TABLES, ScoringSetup, trained_tables
from rollrisk.storage.config import DEFAULT_JURISDICTIONS, load_config
from rollrisk.storage.registry import LoadedModel, observation_of
from rollrisk.strategies.compliance import load_compliance
from rollrisk.strategies.experiments import bundle_ladders, load_experiments
from rollrisk.strategies.policy import check_segments_in_space, load_policy
from rollrisk.strategies.segments import load_segment_rules


def rules_setup(
    loaded: LoadedModel,
    observation: ObservationSpec | None = None,
    policy: Path | str | None = None,
    segments: Path | str | None = None,
    compliance: Path | str | None = None,
    jurisdictions: Sequence[str] | None = None,
    experiments: Path | str | None = None,
    allow_missing_tables: Sequence[str] = (),
) -> ScoringSetup:
    """The scoring setup of ``loaded`` and the rule files (arguments and errors as for
    :func:`rollrisk.api.scoring_setup`)."""
    unknown = sorted(set(allow_missing_tables) - set(OPTIONAL_TABLES))
    if unknown:
        raise UserError(
            f"allow_missing_tables: {', '.join(unknown)} is not an optional table (expected "
            f"some of {', '.join(OPTIONAL_TABLES)})"
        )
    files = {
        "policy": Path(policy or DEFAULT_POLICY),
        "segments": Path(segments or DEFAULT_SEGMENTS),
        "compliance": Path(compliance or DEFAULT_COMPLIANCE),
        "experiments": Path(experiments or DEFAULT_EXPERIMENTS),
    }
    for path in files.values():
        if not path.exists():  # a folder or non-UTF-8 file: the loaders say so
            raise UserError(f"{path}: file not found")
    policy_rules = load_policy(files["policy"])
    segment_rules = load_segment_rules(files["segments"])
    check_segments_in_space(
        policy_rules, (*segment_rules.precedence, segment_rules.fallback), str(files["segments"])
    )
    plan = load_experiments(files["experiments"])
    # an arm named like a treatment with another ladder: refused at load, not mid-run
    bundle_ladders(plan, policy_rules)
    if observation is None:
        observation = load_config(None).observation_spec()
    return ScoringSetup(
        model=loaded.model,
        model_name=loaded.name,
        model_version=loaded.version,
        observation=observation_of(loaded, observation),
        trained_tables=trained_tables(loaded.metadata),
        trained_currencies=recorded_currencies(loaded.metadata),
        segment_rules=segment_rules,
        policy=policy_rules,
        compliance=load_compliance(files["compliance"]).strictest(
            list(jurisdictions or DEFAULT_JURISDICTIONS)
        ),
        experiments=plan,
        allowed_missing_tables=frozenset(allow_missing_tables),
    )
