"""Reverse-path filtering on local delivery, on real namespaces: the kernel validates the source of
a packet routed to a local address too (fib_validate_source in the input route), not only of one
it forwards.

    c c1 10.77.1.1/24 ==veth== d1 10.77.1.2/24 d      d listens on :80
    c c2 10.77.2.1/24 ==veth== d2 10.77.2.2/24 d      d: 10.77.1.1/32 via 10.77.2.1 dev d2

The SYN from c enters d by d1, but d's route back to 10.77.1.1 leaves by d2: strict rp_filter
drops it (a real connection times out; cntrace says rp-filter at d), loose and off deliver it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import require_root
from hostkit import World, new_world

from cntrace.path import predict
from cntrace.sources import live

DST = "10.77.1.2"


@pytest.fixture
def world() -> Iterator[World]:
    require_root()
    w = new_world("rp")
    try:
        w.add("c", "d")
        w.veth("c", "c1", "d", "d1")
        w.veth("c", "c2", "d", "d2")
        for n, (ca, da) in enumerate((("10.77.1.1", DST), ("10.77.2.1", "10.77.2.2")), 1):
            w.ip("c", f"addr add {ca}/24 dev c{n}")
            w.ip("d", f"addr add {da}/24 dev d{n}")
        w.ip("d", "route add 10.77.1.1/32 via 10.77.2.1 dev d2")
        for k in ("all", "default", "c1", "c2"):
            w.sysctl("c", f"net.ipv4.conf.{k}.rp_filter", 0)
        w.listen("d", 80)
        yield w
    finally:
        w.down()


@pytest.mark.parametrize(
    ("mode", "status", "real"),
    [(0, "delivered", "delivered"), (1, "dropped", "timeout"), (2, "delivered", "delivered")],
)
def test_rp_filter_applies_to_local_delivery(
    world: World, mode: int, status: str, real: str
) -> None:
    for k in ("all", "d1", "d2"):
        world.sysctl("d", f"net.ipv4.conf.{k}.rp_filter", mode)
    p = predict(live.read_snapshot(), f"netns:{world.ns('c')}", f"{DST}:80")
    assert world.connect("c", DST, 80, timeout=1.5) == real
    assert p.verdict.status == status, p.verdict.summary
    errors = [f for f in p.findings if f.severity == "error"]
    if mode != 1:  # (the asymmetric route may draw other findings; not this one)
        assert not [f for f in errors if f.code == "rp-filter"], errors
        return
    assert p.verdict.reason == "IP_RPFILTER", p.verdict
    (f,) = errors
    assert f.code == "rp-filter" and "10.77.1.1" in f.summary and "d1" in f.summary, f
    at = p.hops[(p.verdict.at_hop or 0) - 1]
    assert at.netns_label == world.ns("d") and at.interface == "d1", at
