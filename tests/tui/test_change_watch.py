"""The console's change detector (cntrace.sources.watch) on real namespaces of this test."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest
from harness import require_root

from cntrace.sources.watch import ChangeWatch


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def netns() -> Iterator[str]:
    require_root()
    name = f"cntrace-ui-w{os.getpid() % 100000}"
    _ip("netns", "add", name)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
        subprocess.run(["ip", "netns", "del", f"{name}b"], check=False, capture_output=True)


def _settle(w: ChangeWatch) -> bool:
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if w.poll():
            return True
        time.sleep(0.02)
    return False


def test_link_events_and_namespace_dirs_are_seen(netns: str) -> None:
    with ChangeWatch() as w:
        w.watch_namespaces([f"/run/netns/{netns}"])
        assert w.watched == (f"/run/netns/{netns}",)
        assert not w.poll(), "an idle host reports no change"
        _ip("-n", netns, "link", "add", "uiw0", "type", "veth", "peer", "uiw1")
        assert _settle(w), "a veth appearing (a container starting) is a change"
        assert not w.poll(), "events are drained by the poll that reported them"
        _ip("-n", netns, "link", "del", "uiw0")
        assert _settle(w), "a veth vanishing (a container stopping) is a change"
        _ip("netns", "add", f"{netns}b")
        assert w.poll(), "a new bind-mounted namespace is a change"
        _ip("netns", "del", f"{netns}b")
        assert w.poll()
        assert not w.poll()


def test_unreadable_namespace_is_reported_not_raised() -> None:
    with ChangeWatch(dirs=()) as w:
        w.watch_namespaces(["/run/netns/cntrace-ui-does-not-exist"])
        assert w.watched == ()
        assert "/run/netns/cntrace-ui-does-not-exist" in w.errors
        assert not w.poll()
