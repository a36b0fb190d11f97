"""Runtimes tier: a real Docker engine and real Podman (see tests/engines.py).

Every Podman test runs once per network back end, netavark and CNI (ids ``[netavark]``/``[cni]``):
both are in the field. In CI (CI=true) a fixture that cannot start its engine fails; elsewhere it
skips with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from engines import (
    PODMAN_BACKENDS,
    DockerEngine,
    EngineUnavailable,
    Podman,
    release_docker,
    start_docker,
)
from engines import start_podman as _start_podman
from harness import require_root, unavailable
from safety import GUARD


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    require_root()
    try:
        engine = start_docker()
    except EngineUnavailable as exc:
        unavailable(f"docker engine: {exc}")
        raise  # unreachable: unavailable() skips or fails
    GUARD.own("/run/netns/cntrace-engine")
    try:
        yield engine
    finally:
        release_docker(engine)


@pytest.fixture(scope="session", params=PODMAN_BACKENDS)
def podman(request: pytest.FixtureRequest) -> Iterator[Podman]:
    """Podman on one back end; pytest runs every test using it once per back end."""
    require_root()
    try:
        pm = _start_podman(request.param)
    except EngineUnavailable as exc:
        unavailable(f"podman [{request.param}]: {exc}")
        raise
    GUARD.own("/run/netns/cntrace-engine")
    try:
        yield pm
    finally:
        pm.cleanup()


_BY_BACKEND: dict[str, list[str]] = {b: [] for b in PODMAN_BACKENDS}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember each Podman test's outcome under its back end (its ``[netavark]``/``[cni]`` id)."""
    for backend, seen in _BY_BACKEND.items():
        failed_setup = report.when == "setup" and not report.passed
        if f"[{backend}]" in report.nodeid and (report.when == "call" or failed_setup):
            seen.append(f"{report.outcome.upper()} {report.nodeid.split('::')[-1]}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Name every Podman test per back end, so a -q log shows both really ran."""
    for backend, seen in _BY_BACKEND.items():
        if seen:
            passed = sum(s.startswith("PASSED") for s in seen)
            terminalreporter.write_line(f"podman [{backend}]: {passed}/{len(seen)} passed")
            for s in seen:
                terminalreporter.write_line(f"  {s}")
