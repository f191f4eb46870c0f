"""The single ``rollrisk`` command line: one subcommand per job.

Each job lives in a module of :mod:`rollrisk.pipelines` that exposes

* ``add_arguments(parser: argparse.ArgumentParser) -> None`` to declare its flags, and
* ``run(args: argparse.Namespace) -> int`` returning the process exit code.

Modules are imported only when their subcommand runs (or ``--help`` is asked for it), so
``rollrisk --help`` stays fast and a heavy dependency of one job never slows another.

Errors: what the user can fix ends in one line, ``rollrisk COMMAND: error: ...``, and exit
code 2, with no traceback. That is every :class:`~rollrisk.errors.UserError` (exit code: its
``exit_code``, 2 but for learn-policy's :class:`~rollrisk.errors.NotEnoughEvidence`, a logged
experiment too small to learn a policy from, which exits 3) and every fault
of the environment a job runs in: an ``OSError`` (full disk, no permission, a read-only or
missing folder, a refused connection), the same error reported by polars (``... (os error
28)``), and a failure of the MLflow store or its database (``MlflowException``, a database
driver's error). Anything else is a bug in rollrisk and keeps its traceback.
``ROLLRISK_TRACEBACK=1`` shows the traceback of the one-line errors too (for a bug report).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
import sys
import textwrap
import traceback
import warnings
from collections.abc import Callable, Sequence

from rollrisk import __version__
from rollrisk.errors import RollriskWarning, UserError

# (subcommand, module under rollrisk.pipelines, one-line help). Order is the order of the
# end-to-end flow, which is also the order ``rollrisk --help`` lists them in.
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("demo", "demo", "run the whole flow end to end on a simulated portfolio"),
    ("simulate", "simulate", "write a simulated, contract-valid portfolio (plus its hidden truth)"),
    ("validate", "validate", "check a portfolio folder against the data contract; write rejects"),
    (
        "build-training-set",
        "build_training_set",
        "turn borrower history into a point-in-time training set with roll-to-default labels",
    ),
    (
        "train",
        "train",
        "train the roll model and both baselines; log to MLflow; register a challenger",
    ),
    (
        "evaluate",
        "evaluate",
        "evaluate a registered model on a portfolio; write an HTML/Markdown report",
    ),
    ("promote", "promote", "move the champion alias to the challenger if it passes the YAML gates"),
    (
        "score",
        "score",
        "score every delinquent account at an as-of: probability, reasons, segment, treatment",
    ),
    (
        "monitor",
        "monitor",
        "compare today's population with training's (PSI, CSI, backtest); exit 3 on alert",
    ),
    (
        "simulate-policy",
        "simulate_policy",
        "simulate the scored policy against the baseline tiered policy on a simulated portfolio",
    ),
    (
        "report",
        "report",
        "write the strategy review report (one self-contained HTML page) for a scoring run",
    ),
    (
        "logged-decisions",
        "logged_decisions",
        "build learn-policy's table from a portfolio's experiment record: scores and book value",
    ),
    (
        "learn-policy",
        "learn_policy",
        "learn a policy from logged experiments (EconML, doubly robust); estimate its value",
    ),
    (
        "serve",
        "serve",
        "serve scores over HTTP (FastAPI): the same results as `score`, per request",
    ),
)

EXIT_USAGE = 2
TRACEBACK_VARIABLE = "ROLLRISK_TRACEBACK"
# the start of the warning PySpark gives on import under pandas 3 (filtered: see main)
PYSPARK_PANDAS_WARNING = "PySpark does not yet fully support pandas"


def _parser(selected: str | None) -> argparse.ArgumentParser:
    # no abbreviated flags: `simulate-policy --seed 3` was read as --seeds 3 (3 seeds), not as
    # the random seed other commands call --seed; a flag is spelt out or refused
    parser = argparse.ArgumentParser(
        prog="rollrisk",
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent(
            """\
            Roll-to-default risk scoring for the collections of a consumer lender.

            A portfolio is a folder of Parquet or CSV tables (accounts, statements and,
            optionally, collection_actions and treatments); see docs/data-contract.md.
            Every job reads it through one validating loader.
            """
        ),
        epilog=textwrap.dedent(
            """\
            typical flow:
              rollrisk simulate --accounts 60000 --months 24 --out runs/portfolio
              rollrisk validate --data runs/portfolio
              rollrisk train --data runs/portfolio          # registers a challenger
              rollrisk promote                              # champion, if the gates pass
              rollrisk score --data runs/portfolio --out runs/scores
              rollrisk report --scores runs/scores --data runs/portfolio
              rollrisk demo                                 # all of it, end to end

            `rollrisk COMMAND --help` explains each command and its defaults.
            """
        ),
    )
    parser.add_argument("--version", action="version", version=f"rollrisk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in COMMANDS:
        sub_parser = sub.add_parser(
            name,
            allow_abbrev=False,
            help=help_text,
            description=help_text[0].upper() + help_text[1:] + ".",
            formatter_class=_DefaultsFormatter,
        )
        if name == selected:
            module = importlib.import_module(f"rollrisk.pipelines.{module_name}")
            doc = (module.__doc__ or "").strip()
            if doc:
                sub_parser.description = doc
                sub_parser.formatter_class = _DocAndDefaultsFormatter
            module.add_arguments(sub_parser)
            sub_parser.set_defaults(_run=module.run)
    return parser


class _DefaultsFormatter(argparse.HelpFormatter):
    """Show a flag's default when it has a meaningful one the help text does not already say."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is False  # 0 == False: a default of 0 is shown
            or default is argparse.SUPPRESS
            or action.option_strings == []
        ):
            return text
        return f"{text} (default: %(default)s)"


class _DocAndDefaultsFormatter(_DefaultsFormatter, argparse.RawDescriptionHelpFormatter):
    """Keep the module docstring's line breaks and show each flag's default."""


def main(argv: Sequence[str] | None = None) -> int:
    # pandera imports pyspark.pandas when PySpark is installed (the `spark` extra), and PySpark
    # then warns about pandas 3 on every command; rollrisk does not use pyspark.pandas. The
    # processes a command starts (spawned workers import pandera again) inherit the filter
    # through the environment.
    warnings.filterwarnings("ignore", message=PYSPARK_PANDAS_WARNING, category=FutureWarning)
    inherited = f"ignore:{PYSPARK_PANDAS_WARNING}:FutureWarning"
    if inherited not in os.environ.get("PYTHONWARNINGS", ""):
        os.environ["PYTHONWARNINGS"] = ",".join(
            filter(None, (os.environ.get("PYTHONWARNINGS"), inherited))
        )
    # MLflow draws a progress bar for every artifact it reads back, a model's few files from the
    # local store included: noise between a job's own lines (set the variable to true for them)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    argv = list(sys.argv[1:] if argv is None else argv)
    names = {name for name, _, _ in COMMANDS}
    selected = next((a for a in argv if not a.startswith("-")), None)
    parser = _parser(selected if selected in names else None)
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return EXIT_USAGE
    shown = warnings.showwarning
    warnings.showwarning = _show_warning(shown, args.command)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"rollrisk {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        message = user_facing_message(error)
        if message is None:  # a bug: its traceback, and Python's exit code
            raise
        if os.environ.get(TRACEBACK_VARIABLE):  # the traceback too; the exit code stays
            traceback.print_exc()
        print(f"rollrisk {args.command}: error: {message}", file=sys.stderr)
        return error.exit_code if isinstance(error, UserError) else EXIT_USAGE
    finally:
        warnings.showwarning = shown


def _show_warning(shown: Callable[..., None], command: str) -> Callable[..., None]:
    """Python's warning display, but a :class:`RollriskWarning` (raised by the library for the
    Python API, e.g. a model logged with other library versions) as the job's own line,
    without the file and line of the code that raised it."""

    def show(message: Warning | str, category: type[Warning], *args: object, **kw: object) -> None:
        if issubclass(category, RollriskWarning):
            print(f"rollrisk {command}: warning: {message}", file=sys.stderr)
        else:
            shown(message, category, *args, **kw)

    return show


# polars reports the operating system's errors inside its own: "... (os error 28)"
_POLARS_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def user_facing_message(error: Exception) -> str | None:
    """The one line that tells the user what went wrong, for an error that is theirs or their
    environment's to fix (see the module docstring); None for anything else (a bug).

    MLflow's and SQLAlchemy's exception types are looked up only if those libraries were
    imported: an error cannot be of a type no code loaded.
    """
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, OSError):
        return _os_error_message(error)
    mlflow_exceptions = sys.modules.get("mlflow.exceptions")
    if mlflow_exceptions is not None and isinstance(error, mlflow_exceptions.MlflowException):
        return f"MLflow store {_store_uri()}: {_first_line(error)}"
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc is not None and isinstance(error, sqlalchemy_exc.DBAPIError):
        return f"MLflow store {_store_uri()}: database error: {_first_line(error.orig or error)}"
    if isinstance(error, _sqlite3_errors()):
        return f"MLflow store {_store_uri()}: database error: {_first_line(error)}"
    polars_exceptions = sys.modules.get("polars.exceptions")
    if polars_exceptions is not None and isinstance(error, polars_exceptions.PolarsError):
        found = _POLARS_OS_ERROR.search(str(error))
        if found is not None:
            code = int(found.group(1))
            return _os_error_message(OSError(code, os.strerror(code)))
    return None


def _sqlite3_errors() -> tuple[type[Exception], ...]:
    """``sqlite3.Error`` when the sqlite3 module is loaded, else no type."""
    sqlite3 = sys.modules.get("sqlite3")
    return (sqlite3.Error,) if sqlite3 is not None else ()


def _store_uri() -> str:
    """The tracking URI MLflow was pointed at (``unknown`` before MLflow is loaded)."""
    mlflow = sys.modules.get("mlflow")
    return mlflow.get_tracking_uri() if mlflow is not None else "unknown"


def _os_error_message(error: OSError) -> str:
    """``<what the system said>: <file>`` and, for a full disk, what to do."""
    what = error.strerror or _first_line(error)
    files = [str(f) for f in (error.filename, error.filename2) if f is not None]
    text = f"{what}: {' -> '.join(files)}" if files else what
    if error.errno == errno.ENOSPC:
        text += "; free some space and rerun"
    return text


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
