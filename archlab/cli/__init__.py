"""The ``archlab`` command line.

Each subcommand lives in its own module of this package, which defines ``register(sub)``
(adds its argparse parser and sets ``func``). Heavy imports happen inside the handlers, so
``archlab --help`` stays fast. Bad input prints one line and exits with status 2 (set
``ARCHLAB_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from archlab import __version__
from archlab.core.errors import ArchlabError

# subcommand modules, in the order --help lists them
COMMANDS = ("demo", "space", "train", "extract", "rank", "profile", "predictor", "search", "export", "app")

EXIT_USAGE = 2


class UsageError(ArchlabError):
    """A command-line argument is wrong."""


# Errors that bad input raises deep inside a library (a 100,000-deep JSON file, a number too
# large for a float, a binary file read as text, an absurd size): each is shown as one line
# saying what it means. Other exception types are bugs and keep their traceback.
INPUT_FAULTS: dict[type[BaseException], str] = {
    RecursionError: "input nested too deeply",
    UnicodeError: "input is not UTF-8 text",
    OverflowError: "a number in the input is too large",
    MemoryError: "out of memory (is an input or setting absurdly large?)",
}
# what main() reports in one line (everything else keeps its traceback)
_REPORTED: tuple[type[BaseException], ...] = (ArchlabError, OSError, json.JSONDecodeError, *INPUT_FAULTS)


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line: ``archlab: error: archlab train: ...``."""

    def error(self, message: str) -> NoReturn:
        where = f"{self.prog}: " if self.prog != "archlab" else ""
        self.exit(EXIT_USAGE, f"archlab: error: {where}{message} (see {self.prog} --help)\n")


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    for kind, meaning in INPUT_FAULTS.items():
        if isinstance(exc, kind):
            return f"{meaning}: {type(exc).__name__}" + (f": {msg[:200]}" if msg else "")
    return msg or type(exc).__name__


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="archlab",
        description="Neural architecture search workbench: spaces, supernets, latency, search, dashboard.",
    )
    parser.add_argument("--version", action="version", version=f"archlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"archlab.cli.{name}").register(sub)
    return parser


def _quiet_libraries() -> None:
    """The command line reports through its own lines and progress bars: Optuna's per-trial
    INFO log and its "experimental feature" warnings (heartbeats) are noise there."""
    import warnings

    warnings.filterwarnings("ignore", message=r".*(experimental|is experimental).*")
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) not in (None, "space"):
        _quiet_libraries()
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        print("archlab: interrupted", file=sys.stderr)
        return 130
    except _REPORTED as exc:
        if os.environ.get("ARCHLAB_DEBUG"):
            raise
        print(f"archlab: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
