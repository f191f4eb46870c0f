"""rollrisk: roll-to-default risk scoring for collections.

The Python API (:mod:`rollrisk.api`, docs/api.md) is available from here::

    import rollrisk

    portfolio = rollrisk.load_portfolio("runs/demo/portfolio")
    result = rollrisk.train(rollrisk.build_training_set(portfolio), portfolio)

Its names are loaded on first use (PEP 562), so ``import rollrisk`` and ``rollrisk --help``
stay fast: the API brings LightGBM, MLflow and pandas with it.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

# pandera imports pyspark.pandas whenever PySpark is installed (the `spark` extra), and that
# import warns on every command that pandas >= 3 is not fully supported by pandas-on-Spark:
# rollrisk never uses pandas-on-Spark (its Spark engine is pyspark.sql), so the warning only
# misleads
warnings.filterwarnings(
    "ignore",
    message="PySpark does not yet fully support pandas",
    category=FutureWarning,
    module="pyspark.pandas",
)

__version__ = "0.1.0"

# the public surface: rollrisk.api's names, re-exported here
__all__ = [
    "Explanation",
    "LoadedModel",
    "RollriskWarning",
    "__version__",
    "build_training_set",
    "build_training_set_with_summary",
    "evaluate",
    "explain",
    "load_config",
    "load_model",
    "load_portfolio",
    "log_training_run",
    "score",
    "scoring_setup",
    "train",
    "training_as_of_dates",
]
_API = frozenset(__all__) - {"__version__"}

if TYPE_CHECKING:
    from rollrisk.api import (
        Explanation,
        LoadedModel,
        RollriskWarning,
        build_training_set,
        build_training_set_with_summary,
        evaluate,
        explain,
        load_config,
        load_model,
        load_portfolio,
        log_training_run,
        score,
        scoring_setup,
        train,
        training_as_of_dates,
    )


def __getattr__(name: str) -> Any:
    if name in _API:
        from rollrisk import api

        value = getattr(api, name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'rollrisk' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
