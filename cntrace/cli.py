"""Command-line entry point: argument parsing and wiring only.

Each sub-command lives in cntrace/commands/<name>.py and exposes ``register(subparsers)`` and
``run(args) -> int``. Command modules import their heavy dependencies inside ``run`` so that
``cntrace ls`` does not pay for textual or bcc.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
from types import ModuleType
from typing import Any

from cntrace import __version__
from cntrace.errors import CntraceError, Exit
from cntrace.render.safe import term

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


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout, sized without shutil: HelpFormatter imports it (and with it the
    compression modules) for the terminal width, ~3 ms of every command, help or not."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        super().__init__(prog, indent_increment, max_help_position, width or _columns() - 2)


def _columns() -> int:
    """shutil.get_terminal_size's width: $COLUMNS, else the terminal's, else 80."""
    with contextlib.suppress(KeyError, ValueError):
        if (n := int(os.environ["COLUMNS"])) > 0:
            return n
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class _Parser(argparse.ArgumentParser):
    """argparse that exits with Exit.BAD_INPUT and a one-line message on bad usage."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"cntrace: error: {_safe(message)} (see `{self.prog} --help`)\n")
        raise SystemExit(Exit.BAD_INPUT)


def _safe(text: str, limit: int = 2000) -> str:
    """One printable line: messages quote names from snapshots and the user's own arguments."""
    text = term(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"cntrace.commands.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"cntrace.commands.{name}":
            return None  # not built yet
        raise


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given ``argv`` naming a command, only that command's module is imported and
    registered (importing all twelve cost ~0.09 s on every run). ``cntrace --help``, no command
    or an unknown one: every command, so help and "invalid choice" list them all."""
    parser = _Parser(
        prog="cntrace",
        description="Where is this container plugged in, and why can't it reach X?",
    )
    parser.add_argument("--version", action="version", version=f"cntrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _wanted(argv):
        module = _load(name)
        if module is not None:
            module.register(sub)
    return parser


def _wanted(argv: list[str] | None) -> tuple[str, ...]:
    """The command ``argv`` starts with (options before it, such as -h: every command)."""
    if argv and argv[0] in COMMANDS:
        return (argv[0],)
    return COMMANDS


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C so every cleanup handler runs."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run one command; every outcome is an exit code of README.md's table, never a traceback."""
    argv = sys.argv[1:] if argv is None else argv
    _tolerant_streams()
    _more_descriptors()
    try:
        parser = build_parser(argv)
        args, extra = parser.parse_known_args(argv)
        code = _run(parser, args, extra)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except CntraceError as exc:
        sys.stderr.write(f"cntrace: error: {_safe(str(exc))}\n")
        return int(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("cntrace: interrupted\n")
        return int(Exit.INTERRUPTED)
    except BrokenPipeError:
        # `cntrace path ... | grep -q delivered`: the reader has its answer.
        _silence_stdout()
        return int(Exit.OK)
    except SystemExit:
        raise
    except Exception as exc:  # the last resort: one line and a code of its own
        if os.environ.get("CNTRACE_DEBUG"):
            raise
        _report_bug(argv, exc)
        return int(Exit.INTERNAL)


def _more_descriptors() -> None:
    """Raise the soft limit on open files to the hard one: reading a host of 1,000 containers
    holds three netlink sockets per namespace, and the usual soft limit is 1,024 (the read
    would otherwise report namespaces as vanished with "Too many open files")."""
    import resource  # noqa: PLC0415

    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = min(hard, 1 << 20) if hard != resource.RLIM_INFINITY else 1 << 20
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> int:
    if extra:
        # `cntrace trace web --count 5 tcp port 80`: a filter's words may follow options.
        if getattr(args, "command", None) == "trace" and not any(e.startswith("-") for e in extra):
            args.filter = [*args.filter, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "command", None):
        parser.print_help()
        return int(Exit.BAD_INPUT)
    module = _load(args.command)
    assert module is not None
    # SIGTERM unwinds for this command only: main() called in-process (tests, embedders) must not
    # leave a handler that turns a later SIGTERM, e.g. to a forked child, into KeyboardInterrupt.
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(module.run(args))
    finally:
        signal.signal(signal.SIGTERM, previous)


def _tolerant_streams() -> None:
    """A lone surrogate that slipped past every check is printed escaped, not a crash."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _report_bug(argv: list[str], exc: BaseException) -> None:
    where = ""
    import traceback  # noqa: PLC0415 (only when a command crashed)

    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "cntrace" in f.filename.replace("\\", "/").split("/")[-3:-1]]
    if ours or frames:
        f = (ours or frames)[-1]
        parts = f.filename.replace("\\", "/").split("/")
        name = "/".join(parts[parts.index("cntrace") :]) if "cntrace" in parts else parts[-1]
        where = f" at {name}:{f.lineno}"
    what = f"{type(exc).__name__}: {str(exc)[:200]}".rstrip(": ")
    ran = " ".join(["cntrace", *argv])
    with contextlib.suppress(BrokenPipeError):
        sys.stderr.write(
            f"cntrace: internal error{where}: {_safe(what, 300)} (running `{_safe(ran, 300)}`); "
            f"this is a bug in cntrace, exit {int(Exit.INTERNAL)}: please report it with that "
            "command and its input (the --snapshot file, or `cntrace snapshot --save FILE`); "
            "CNTRACE_DEBUG=1 shows the traceback\n"
        )
