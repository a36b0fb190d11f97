"""Errors a user can act on, each with its exit code.

Commands raise these; cli.main prints the message on one line and exits with the code, so bad input
never ends in a traceback. Exit codes are part of the interface (README.md, "Exit codes"): anything
else that escapes a command is a bug, reported in one line with its own code (INTERNAL), so a crash
is never mistaken for a negative answer.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """Process exit codes shared by every command."""

    OK = 0
    FAILED = 1  # the command ran and the answer is negative (e.g. the path fails)
    BAD_INPUT = 2  # unknown container, malformed packet spec, unknown fault ...
    ENVIRONMENT = 3  # missing privilege, dependency or kernel feature
    INTERNAL = 4  # a bug in cntrace: an exception no command expected (one line, never 1)
    INTERRUPTED = 130


class CntraceError(Exception):
    """An error with a one-line message for the user."""

    exit_code: Exit = Exit.FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class BadInput(CntraceError):
    """The user asked for something that does not exist or cannot be parsed."""

    exit_code = Exit.BAD_INPUT


class EnvironmentProblem(CntraceError):
    """The machine lacks a privilege, a program or a kernel feature cntrace needs."""

    exit_code = Exit.ENVIRONMENT


class NeedsPrivilege(EnvironmentProblem):
    """Raised where root or a capability is required; names the capability."""

    def __init__(self, what: str, capability: str = "CAP_SYS_ADMIN") -> None:
        super().__init__(f"{what} needs {capability} (run as root)")
        self.capability = capability
