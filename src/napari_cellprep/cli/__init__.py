"""The ``cellprep`` command: train, predict, evaluate, demo and export without napari, one module per verb
(each with ``HELP``, ``DESCRIPTION``, optional ``EPILOG``, ``add_arguments`` and ``run``).

A problem the user can fix (a ``CellprepError``) ends with one line ``cellprep: error: ...``
and exit status 1 (2 for wrong usage); any other exception is a bug and shows its traceback.
A ``CellprepWarning`` (NaN pixels, labels that look painted) is one line ``cellprep: warning: ...``.
Ctrl-C during training stops after the current step, keeps the best model and exits with 130.
"""

from __future__ import annotations

import argparse
import functools
import sys
import warnings

from .. import __version__
from ..engine.errors import CellprepError, CellprepWarning
from . import demo, evaluate, export, predict, train
from .common import INTERRUPTED

VERBS = (train, predict, evaluate, demo, export)


def build_parser() -> argparse.ArgumentParser:
    """The ``cellprep`` argument parser; each subcommand sets ``run`` to its verb's ``run``."""
    parser = argparse.ArgumentParser(
        prog="cellprep",
        description="Learned preprocessing and ensemble segmentation of low-quality cell images "
        "(Kato & Hotta).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
    for verb in VERBS:
        name = verb.__name__.rsplit(".", 1)[-1]
        epilog = getattr(verb, "EPILOG", None)
        sub = commands.add_parser(name, help=verb.HELP, description=verb.DESCRIPTION, epilog=epilog)
        verb.add_arguments(sub)
        sub.set_defaults(run=verb.run)
    return parser


def _show_warning(others, message, category, *args, **kwargs) -> None:
    """A ``CellprepWarning`` as one line ``cellprep: warning: ...``; others as ``others`` shows them."""
    if issubclass(category, CellprepWarning):
        print(f"cellprep: warning: {' '.join(str(message).split())}", file=sys.stderr)
    else:
        others(message, category, *args, **kwargs)


def main(argv: list[str] | None = None) -> int:
    """Run ``cellprep`` with ``argv`` (default: the command line); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", CellprepWarning)
            warnings.showwarning = functools.partial(_show_warning, warnings.showwarning)
            return args.run(args)
    except KeyboardInterrupt:
        print("cellprep: interrupted", file=sys.stderr)
        return INTERRUPTED
    except CellprepError as exc:  # the user can fix it; anything else is a bug: its traceback shows
        print(f"cellprep: error: {' '.join(str(exc).split()) or type(exc).__name__}", file=sys.stderr)
        return 1
