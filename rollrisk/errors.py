"""Errors that are the user's to fix: the CLI prints them without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input, configuration or environment; the message says what to change.

    The CLI prints the message in one line and exits with :attr:`exit_code`.
    """

    exit_code: int = 2  # rollrisk.cli.EXIT_USAGE


class DataContractError(UserError):
    """A portfolio folder breaks the data contract in a way no row-level reject can absorb.

    Examples: a required table or column is missing, a file cannot be read at all.
    """


class NotEnoughEvidence(UserError):
    """The logged experiment is too small to learn a policy from (no decision explored, a
    bundle given to one account, a cross-fitting fold fitted without some bundle, too few
    decisions to fit, label and evaluate the tree): nothing is wrong with the input, there is
    too little of it.

    ``rollrisk learn-policy`` exits with its own code for it (3), so that a caller (the demo, a
    scheduler) can go on without a learned policy and still stop on a real error (2).
    """

    exit_code = 3


class RollriskWarning(UserWarning):
    """What a job prints as a warning or a note (a partial month scored, later months passed
    over, statements overdue, a history too short for the feature windows), raised by the
    Python API with :func:`warnings.warn` so a notebook shows it as the CLI does; filter it
    with ``warnings.simplefilter("error", RollriskWarning)`` to stop on one."""
