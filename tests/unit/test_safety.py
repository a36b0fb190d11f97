"""The network-safety guard refuses every destination but loopback and the run's namespaces."""

from __future__ import annotations

import socket

import pytest
from safety import GUARD, DestinationRefused


@pytest.mark.parametrize(
    "dest", ["8.8.8.8", "192.168.1.1", "10.0.0.1", "203.0.113.10", "2001:db8::1"]
)
def test_guard_refuses_addresses_outside_the_run(dest: str) -> None:
    with pytest.raises(DestinationRefused):
        GUARD.check(dest)


@pytest.mark.parametrize("dest", ["127.0.0.1", "127.1.2.3", "::1"])
def test_guard_allows_loopback(dest: str) -> None:
    GUARD.check(dest)


def test_sockets_of_the_test_process_are_guarded() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s, pytest.raises(DestinationRefused):
        s.connect(("198.51.100.7", 80))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(DestinationRefused):
        s.sendto(b"x", ("192.0.2.99", 53))


def test_virtual_range_needs_an_owned_namespace() -> None:
    from safety import NetGuard

    g = NetGuard()
    with pytest.raises(DestinationRefused):
        g.own_virtual("/run/netns/not-mine", "10.96.0.0/16")
    g.own("/run/netns/mine")
    g.own_virtual("/run/netns/mine", "10.96.0.0/16")
    g.check("10.96.0.20")  # a Service address the owned node's rules translate
    g.disown("/run/netns/mine")
    with pytest.raises(DestinationRefused):
        g.check("10.96.0.20")
