"""Errors that are the user's to fix: the CLI prints them without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input, configuration or environment; the message says what to change."""


class DataContractError(UserError):
    """A portfolio folder breaks the data contract in a way no row-level reject can absorb.

    Examples: a required table or column is missing, a file cannot be read at all.
    """
