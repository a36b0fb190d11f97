"""Argument types with ranges: a number out of range is one line and exit 2, never a traceback.

argparse's own ``type=int`` accepts -5 ports, and ``type=float`` accepts ``nan`` and ``1e400``
(infinity) as durations; these check the range and say it.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def integer(lo: int, hi: int, what: str = "a number") -> Callable[[str], int]:
    """An argparse type: an integer within lo..hi (decimal; at most 19 digits)."""

    def parse(text: str) -> int:
        t = text.strip()
        digits = t[1:] if t[:1] in "+-" else t
        if not digits.isdigit() or len(digits) > 19:
            raise argparse.ArgumentTypeError(f"{_shown(text)} is not {what}")
        value = int(t)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is outside {lo}-{hi}")
        return value

    parse.__name__ = what  # argparse names the type in its message
    return parse


def seconds(lo: float, hi: float, *, zero: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite duration in seconds within lo..hi (lo itself excluded;
    ``zero``: 0 allowed too, meaning "never")."""

    def parse(text: str) -> float:
        try:
            value = float(text) if len(text) < 32 else math.nan
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{_shown(text)} is not a number of seconds")
        if not (lo < value <= hi or (zero and value == 0)):
            raise argparse.ArgumentTypeError(f"{value:g} s is outside {lo:g}-{hi:g} s")
        return value

    parse.__name__ = "seconds"
    return parse


def _shown(text: str) -> str:
    return repr(text if len(text) <= 24 else text[:21] + "...")


PORT = integer(1, 65535, "a port")
COUNT = integer(1, 10**9, "a count")
WEEK = 7 * 24 * 3600.0
