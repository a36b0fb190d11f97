"""Shared test harness: privilege tiers and the network-safety guard.

Tiers: tests/unit (no privileges), tests/tui, tests/integration (root, lab namespaces),
tests/runtimes (a real Docker engine and Podman). In CI (CI=true) a test whose requirement is
missing fails instead of skipping, so the log proves root and runtime tiers really ran.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import (  # noqa: F401 (re-exported)
    FIXTURES,
    IN_CI,
    REPO,
    ctrl_c_as_from_a_terminal,
    require_root,
    unavailable,
)
from safety import GUARD, install_socket_guard


def pytest_configure(config: pytest.Config) -> None:
    install_socket_guard()
    ctrl_c_as_from_a_terminal()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier from its directory."""
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO / "tests").parts
        if parts and parts[0] in ("unit", "integration", "runtimes", "tui"):
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture(scope="session")
def guard() -> object:
    return GUARD


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
