"""Requirement helpers for the test tiers (import these from test modules and conftests).

In CI (CI=true) a missing requirement fails the test instead of skipping it, so the CI log proves
the root and runtime tiers really ran.
"""

from __future__ import annotations

import os
import shutil
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
