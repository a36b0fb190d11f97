"""Command-line entry point: argument parsing and wiring only.

Each sub-command lives in cntrace/commands/<name>.py and exposes ``register(subparsers)`` and
``run(args) -> int``. Command modules import their heavy dependencies inside ``run`` so that
``cntrace ls`` does not pay for textual or bcc.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from types import ModuleType

from cntrace import __version__
from cntrace.errors import CntraceError, Exit

# Order is the order of `cntrace --help`.
COMMANDS = (
    "ls",
    "show",
    "topo",
    "path",
    "rules",
    "trace",
    "drops",
    "snapshot",
    "report",
    "tui",
    "lab",
    "cleanup",
)


class _Parser(argparse.ArgumentParser):
    """argparse that exits with Exit.BAD_INPUT and a one-line message on bad usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"cntrace: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(Exit.BAD_INPUT)


def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"cntrace.commands.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"cntrace.commands.{name}":
            return None  # not built yet
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cntrace",
        description="Where is this container plugged in, and why can't it reach X?",
    )
    parser.add_argument("--version", action="version", version=f"cntrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = _load(name)
        if module is not None:
            module.register(sub)
    return parser


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C so every cleanup handler runs."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # `cntrace trace web --count 5 tcp port 80`: a filter's words may follow options.
        if getattr(args, "command", None) == "trace" and not any(e.startswith("-") for e in extra):
            args.filter = [*args.filter, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "command", None):
        parser.print_help()
        return int(Exit.BAD_INPUT)
    signal.signal(signal.SIGTERM, _terminate)
    module = _load(args.command)
    assert module is not None
    try:
        return int(module.run(args))
    except CntraceError as exc:
        sys.stderr.write(f"cntrace: error: {exc}\n")
        return int(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("cntrace: interrupted\n")
        return int(Exit.INTERRUPTED)
    except BrokenPipeError:
        return int(Exit.OK)
