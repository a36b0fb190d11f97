"""Requirement helpers for the test tiers (import these from test modules and conftests).

In CI (CI=true) a missing requirement fails the test instead of skipping it, so the CI log proves
the root and runtime tiers really ran.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"


def unavailable(reason: str) -> None:
    """Skip outside CI; fail in CI, where every tier must run."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_root() -> None:
    if os.geteuid() != 0:
        unavailable("needs root (network namespaces)")
    if not shutil.which("ip") or not shutil.which("nsenter"):
        unavailable("needs iproute2 and util-linux")


def ctrl_c_as_from_a_terminal() -> None:
    """Give SIGINT back its default action, for this process and every one it starts.

    A shell starts a background job of a script (``.ci/run > log &``, nohup, a CI runner) with
    SIGINT ignored, and exec keeps an ignored signal ignored: Python then never installs its
    KeyboardInterrupt handler. The tests' Ctrl-C (SIGINT to a tracing process) did nothing, so
    the process held its tc filters and ledger until the machine rebooted and every later
    tracing test failed on them. A handled signal reverts to its default across exec, so each
    child starts as from a terminal."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
