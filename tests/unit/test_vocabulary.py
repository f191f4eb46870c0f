"""Each vocabulary is declared once, and every reader holds that very object.

Channels and contact outcomes are declared beside the data contract (``features/schemas.py``),
the action -> channel map with the policy's actions (``strategies/policy.py``), the risk-band
rule in ``models/risk_bands.py``, the headline metric names in ``models/metrics.py``, the
intervals and the calibration backtest in ``models/stats.py``. The feature, model, strategy,
simulation and report code must use those objects (``is``, not ``==``): a copy, even an equal one, is how vocabularies drift apart, so a
re-declaration fails here, under its own name or another one.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import pytest

from rollrisk.features import history, schemas
from rollrisk.models import evaluation, metrics, monitoring, risk_bands, stats, training
from rollrisk.reports import evaluation as evaluation_report
from rollrisk.reports import strategy as strategy_report
from rollrisk.simulator import engine, replay, rules
from rollrisk.strategies import compliance, policy

# declaration -> the modules that must use it, each under the declared name
SHARED: dict[str, tuple[Any, tuple[ModuleType, ...]]] = {
    "CHANNELS": (schemas.CHANNELS, (engine, rules, replay)),
    "OUTCOMES": (schemas.OUTCOMES, (engine, rules, replay)),
    "TREATMENT_KINDS": (schemas.TREATMENT_KINDS, (engine, rules, replay)),
    "CALL_CHANNELS": (schemas.CALL_CHANNELS, (compliance,)),
    "MESSAGE_CHANNELS": (schemas.MESSAGE_CHANNELS, (engine,)),
    "REACHED_OUTCOMES": (schemas.REACHED_OUTCOMES, (history, compliance)),
    "FAILED_OUTCOMES": (schemas.FAILED_OUTCOMES, (history, compliance, engine)),
    "UNANSWERED_OUTCOMES": (schemas.UNANSWERED_OUTCOMES, (compliance,)),
    # the ladder translation moved from the replay to the engine (shared with the exploration)
    "ACTIONS": (policy.ACTIONS, (engine,)),
    "risk_band": (risk_bands.risk_band, (policy, monitoring)),
    "HEADLINE_METRICS": (metrics.HEADLINE_METRICS, (evaluation, training, evaluation_report)),
    "t_interval": (stats.t_interval, (replay,)),
    "percentile_bootstrap": (stats.percentile_bootstrap, (replay, strategy_report)),
    "calibration_backtest": (stats.calibration_backtest, (monitoring, strategy_report)),
}
CASES = [(name, module) for name, (_, users) in SHARED.items() for module in users]
# the rooms whose module-level constants are searched for copies under another name
ROOMS = ("features", "models", "strategies", "simulator", "scoring", "serving", "reports")


@pytest.mark.parametrize(
    ("name", "module"), CASES, ids=[f"{m.__name__.split('.', 1)[1]}.{n}" for n, m in CASES]
)
def test_readers_hold_the_declared_object(name: str, module: ModuleType) -> None:
    declared = SHARED[name][0]
    assert getattr(module, name) is declared, (
        f"{module.__name__}.{name} is not the declared object: import it, do not copy it"
    )


def _room_modules() -> list[ModuleType]:
    modules = []
    for room in ROOMS:
        package = importlib.import_module(f"rollrisk.{room}")
        for info in pkgutil.iter_modules(package.__path__):
            modules.append(importlib.import_module(f"rollrisk.{room}.{info.name}"))
    return modules


def _string_sets(module: ModuleType) -> dict[str, frozenset[str]]:
    """Module-level tuples, lists and sets of strings, by name, as sets."""
    found = {}
    for name, value in vars(module).items():
        if name != "__all__" and (
            isinstance(value, tuple | list | set | frozenset)
            and value
            and all(isinstance(item, str) for item in value)
        ):
            found[name] = frozenset(value)
    return found


def test_no_module_redeclares_a_vocabulary_under_any_name() -> None:
    vocabularies = {name: value for name, (value, _) in SHARED.items() if isinstance(value, tuple)}
    action_names = frozenset(policy.ACTIONS)
    copies = []
    for module in _room_modules():
        for name, values in _string_sets(module).items():
            for vocabulary, declared in vocabularies.items():
                if values == frozenset(declared) and getattr(module, name) is not declared:
                    copies.append(f"{module.__name__}.{name} copies {vocabulary}")
        for name, value in vars(module).items():
            # a second action -> channel map: a mapping keyed by the policy's actions
            if (
                isinstance(value, Mapping)
                and len(value) > 1
                and set(value) <= action_names
                and value is not policy.ACTIONS
            ):
                copies.append(f"{module.__name__}.{name} maps actions outside ACTIONS")
    assert not copies, "; ".join(copies)


def test_outcome_and_channel_kinds_are_drawn_from_the_contract() -> None:
    outcomes, channels = set(schemas.OUTCOMES), set(schemas.CHANNELS)
    assert set(schemas.REACHED_OUTCOMES) <= outcomes
    assert set(schemas.FAILED_OUTCOMES) <= outcomes
    assert set(schemas.UNANSWERED_OUTCOMES) <= set(schemas.FAILED_OUTCOMES)
    assert not set(schemas.REACHED_OUTCOMES) & set(schemas.FAILED_OUTCOMES)
    assert set(schemas.CALL_CHANNELS) <= channels and set(schemas.MESSAGE_CHANNELS) <= channels
    assert not set(schemas.CALL_CHANNELS) & set(schemas.MESSAGE_CHANNELS)
    # the policy's phone-call actions go through the call channels and nothing else
    for spec in policy.ACTIONS.values():
        if spec.is_call:
            assert set(spec.channels_used()) <= set(schemas.CALL_CHANNELS), spec.name
