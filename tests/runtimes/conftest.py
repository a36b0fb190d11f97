"""Runtimes tier: a real Docker engine and real Podman (see tests/engines.py).

Every Podman test runs once per network back end, netavark and CNI (ids ``[netavark]``/``[cni]``):
both are in the field. In CI (CI=true) a fixture that cannot start its engine fails; elsewhere it
skips with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator

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
