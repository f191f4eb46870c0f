"""The shipped defaults, installed as package data (``rollrisk.conf``).

Copy a file from here, edit it and pass it with ``--config``, ``--policy``, ``--segments``,
``--compliance``, ``--costs`` or ``--capacity``; the jobs read the shipped copies only when no
file is given.
They are found through :mod:`importlib.resources`, so a wheel installed anywhere carries them.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path


def shipped(name: str) -> Path:
    """The path of the shipped default file ``name`` (e.g. ``"policy.yaml"``)."""
    return Path(str(files(__name__).joinpath(name)))


DEFAULT_CONFIG = shipped("default.yaml")
DEFAULT_POLICY = shipped("policy.yaml")
STANDARD_POLICY = shipped("policy_standard.yaml")  # the baseline as a policy file
# the hand-written policy model-driven-v1, replaced by the tuned policy.yaml on 2026-11-30
HANDWRITTEN_POLICY = shipped("policy_handwritten.yaml")
DEFAULT_SEGMENTS = shipped("segments.yaml")
DEFAULT_COMPLIANCE = shipped("compliance.yaml")
DEFAULT_COSTS = shipped("action_costs.yaml")
DEFAULT_EXPERIMENTS = shipped("experiments.yaml")
DEFAULT_CAPACITY = shipped("capacity.yaml")


def shown_path(path: str | Path | None, base: Path | None = None) -> str:
    """``path`` as a page or a file header shows it: relative to the working folder (``base``,
    default the current one), never a server's absolute path; a shipped default by its name; a
    URI (``models:/...``) as it is."""
    if path is None:
        return "n/a"
    text = str(path)
    if "://" in text or text.startswith(("models:/", "runs:/")):
        return text
    target = Path(text).absolute()
    folder = (base or Path.cwd()).absolute()
    if target.parent == shipped("policy.yaml").parent.absolute() and not target.is_relative_to(
        folder
    ):  # an installed package's default, wherever pip put it
        return f"{target.name} (shipped default)"
    return os.path.relpath(target, folder)
