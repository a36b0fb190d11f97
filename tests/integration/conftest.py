"""Integration tier: root, real namespaces. One lab per session, shared by the tests that only
read it; tests that change it restore it (break -> fix) before they end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import require_root
from labkit import Lab, lab_up, unique_name


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    require_root()
    with lab_up(unique_name("it")) as handle:
        yield handle
