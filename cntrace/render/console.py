"""One place that decides how cntrace writes to a terminal or a pipe.

Piped output is not wrapped at 80 columns (people paste it into tickets); NO_COLOR is honoured by
rich itself.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console


def console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS", "160"))
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)
