"""Without privileges the live reader fails at once with a one-line error naming the capability."""

from __future__ import annotations

import pytest

from cntrace.errors import Exit, NeedsPrivilege
from cntrace.sources import live


def test_non_root_gets_needs_privilege(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live.os, "geteuid", lambda: 1000)
    with pytest.raises(NeedsPrivilege) as exc:
        live.read_snapshot()
    assert exc.value.exit_code == Exit.ENVIRONMENT
    assert "CAP_SYS_ADMIN" in str(exc.value) and "\n" not in str(exc.value)
