"""One place that decides how cntrace writes to a terminal or a pipe.

Piped output is not wrapped at 80 columns (people paste it into tickets); NO_COLOR is honoured by
rich itself.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from rich.console import Console

PIPE_WIDTH = 160


def _columns() -> int | None:
    """COLUMNS when it is a sensible number (20-10,000); None when unset or not (ignored)."""
    raw = os.environ.get("COLUMNS", "").strip()
    if raw.isdigit() and len(raw) <= 5 and 20 <= int(raw) <= 10_000:
        return int(raw)
    return None


def width_for(stream: TextIO) -> int | None:
    """The width to draw at: a terminal's own (None lets rich ask it), COLUMNS, or 160 in a pipe.

    rich would take ``COLUMNS=0`` at its word and print nothing, so a bad value on a terminal is
    replaced by the terminal's real size.
    """
    columns = _columns()
    if not stream.isatty():
        return columns or PIPE_WIDTH
    if columns is not None or "COLUMNS" not in os.environ:
        return columns
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, ValueError):
        return 80


def _environ() -> dict[str, str]:
    """The environment rich sees: COLUMNS and LINES only when they are sensible numbers (rich
    reads them itself, and ``int()`` of 5,000 digits raises)."""
    env = dict(os.environ)
    if _columns() is None:
        env.pop("COLUMNS", None)
    lines = env.get("LINES", "").strip()
    if not (lines.isdigit() and len(lines) <= 5 and int(lines) > 0):
        env.pop("LINES", None)
    return env


def console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(
        file=stream,
        width=width_for(stream),
        highlight=False,
        soft_wrap=False,
        _environ=_environ(),
    )
