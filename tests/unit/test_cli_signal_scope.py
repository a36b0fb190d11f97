"""cli.main run in-process leaves the process's SIGTERM disposition as it found it.

A leaked handler turned pyroute2's SIGTERM to its forked netns helper (a copy of the pytest
process) into KeyboardInterrupt inside that child, which then printed a pytest summary of its
own and broke the tests after it.
"""

from __future__ import annotations

import signal

from harness import FIXTURES

from cntrace import cli


def test_main_restores_the_sigterm_handler() -> None:
    before = signal.getsignal(signal.SIGTERM)
    snap = str(FIXTURES / "snapshots" / "lab" / "forward-drop.json")
    assert cli.main(["ls", "--json", "--snapshot", snap]) == 0
    assert signal.getsignal(signal.SIGTERM) is before
    assert cli.main(["path", "--json", "--snapshot", snap, "client", "203.0.113.10:80"]) == 1
    assert signal.getsignal(signal.SIGTERM) is before
