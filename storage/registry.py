"""Load a registered roll model, and everything a decision needs, from MLflow and conf/.

Used by ``rollrisk score``, ``rollrisk serve`` and ``rollrisk monitor`` so that all of them
resolve a model URI, its version and the strategy configuration the same way.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollrisk.conf import DEFAULT_COMPLIANCE, DEFAULT_POLICY, DEFAULT_SEGMENTS
from rollrisk.errors import UserError
from rollrisk.features.observations import ObservationSpec
from rollrisk.strategies.compliance import load_compliance
from rollrisk.strategies.policy import load_policy
from rollrisk.strategies.segments import load_segment_rules

if TYPE_CHECKING:  # imported when a model is loaded: LightGBM brings OpenMP, which reads its
    # settings once, when loaded; `rollrisk serve` sets them first (see pipelines/serve.py)
    from rollrisk.models.roll_model import RollModel
    from rollrisk.scoring.core import ScoringSetup

DEFAULT_MODEL_URI = "models:/rollrisk-roll-to-default@champion"
DEFAULT_JURISDICTIONS = ("CN",)

_ALIAS = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")
_VERSION = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")


@dataclass(frozen=True)
class LoadedModel:
    uri: str
    name: str
    version: str
    model: RollModel
    metadata: dict[str, Any]
    reference_scores: Any  # training-period scores (numpy array) or None
    reference_features: Any = None  # sample of training features (pandas) or None


def load_roll_model(uri: str) -> LoadedModel:
    """Load the RollModel behind an MLflow URI, with its registered name and version.

    ``models:/NAME@ALIAS`` and ``models:/NAME/VERSION`` resolve through the registry;
    other URIs (``runs:/...``, a path) are loaded as they are, with version ``unregistered``.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    name, version = "unregistered", "unregistered"
    client = mlflow.MlflowClient()
    try:
        if match := _ALIAS.match(uri):
            name = match["name"]
            version = str(client.get_model_version_by_alias(name, match["alias"]).version)
        elif match := _VERSION.match(uri):
            name, version = match["name"], match["version"]
        pyfunc = mlflow.pyfunc.load_model(uri)
    except MlflowException as error:
        hint = ""
        if _ALIAS.match(uri):
            hint = (
                " (is there a registered model with that alias? `rollrisk train` registers a "
                "`challenger`; `rollrisk promote` makes it `champion`)"
            )
        raise UserError(
            f"cannot load model {uri!r} from {mlflow.get_tracking_uri()}: "
            f"{str(error).splitlines()[0]}{hint}"
        ) from error
    python_model = pyfunc.unwrap_python_model()
    model = getattr(python_model, "model_", None)
    from rollrisk.models.roll_model import RollModel

    if not isinstance(model, RollModel):
        raise UserError(f"{uri!r} is not a rollrisk roll model (no RollModel inside)")
    return LoadedModel(
        uri=uri,
        name=name,
        version=version,
        model=model,
        metadata=dict(pyfunc.metadata.metadata or {}),
        reference_scores=getattr(python_model, "reference_scores_", None),
        reference_features=getattr(python_model, "reference_features_", None),
    )


def observation_of(loaded: LoadedModel, base: ObservationSpec) -> ObservationSpec:
    """The observation settings a model was trained with (its label), over ``base``'s range."""
    overrides: dict[str, int] = {}
    for name in ("default_dpd", "window_months"):
        value = loaded.metadata.get(f"observation_{name}")
        if value is not None:
            overrides[name] = int(value)
    return base.with_overrides(**overrides)


def scoring_setup(
    loaded: LoadedModel,
    observation: ObservationSpec,
    policy: Path = DEFAULT_POLICY,
    segments: Path = DEFAULT_SEGMENTS,
    compliance: Path = DEFAULT_COMPLIANCE,
    jurisdictions: Sequence[str] = DEFAULT_JURISDICTIONS,
) -> ScoringSetup:
    """Everything :func:`rollrisk.scoring.core.score_accounts` needs, loaded once."""
    from rollrisk.scoring.core import ScoringSetup

    for path in (policy, segments, compliance):
        if not Path(path).is_file():
            raise UserError(f"{path}: file not found")
    return ScoringSetup(
        model=loaded.model,
        model_name=loaded.name,
        model_version=loaded.version,
        observation=observation_of(loaded, observation),
        segment_rules=load_segment_rules(segments),
        policy=load_policy(policy),
        compliance=load_compliance(compliance).strictest(list(jurisdictions)),
    )


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that choose the model and the rules turning its scores into decisions.

    Shared by ``rollrisk score`` and ``rollrisk serve`` so that batch and service are set up
    from the same flags, with the same defaults; read back with :func:`setup_from_arguments`.
    """
    parser.add_argument("--model", default=DEFAULT_MODEL_URI, help="MLflow model URI")
    parser.add_argument("--config", type=Path, default=None, help="YAML config (observation range)")
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="strategy policy YAML")
    parser.add_argument(
        "--segments", type=Path, default=DEFAULT_SEGMENTS, help="segment rules YAML"
    )
    parser.add_argument(
        "--compliance", type=Path, default=DEFAULT_COMPLIANCE, help="compliance rules YAML"
    )
    parser.add_argument(
        "--jurisdiction",
        action="append",
        default=None,
        help="jurisdiction code(s) whose strictest rules apply; repeatable "
        f"(default: {', '.join(DEFAULT_JURISDICTIONS)})",
    )


def jurisdictions_of(args: argparse.Namespace) -> list[str]:
    """The ``--jurisdiction`` codes given, or the default ones."""
    return list(args.jurisdiction or DEFAULT_JURISDICTIONS)


def setup_from_arguments(args: argparse.Namespace) -> tuple[LoadedModel, ScoringSetup]:
    """Load the model and rules named by the flags of :func:`add_scoring_arguments`."""
    from rollrisk.storage.config import load_config
    from rollrisk.storage.tracking import configure_tracking

    config = load_config(args.config)
    configure_tracking()
    loaded = load_roll_model(args.model)
    base = ObservationSpec.from_mapping(config.observation, source=f"config file {config.source}")
    try:
        setup = scoring_setup(
            loaded, base, args.policy, args.segments, args.compliance, jurisdictions_of(args)
        )
    except ValueError as error:
        raise UserError(str(error)) from error
    return loaded, setup
