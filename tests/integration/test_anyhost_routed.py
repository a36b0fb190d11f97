"""Routed point-to-point veths, as Calico and ptp CNIs wire them (issue 12), on real namespaces.

    pa eth0 10.82.0.10/32 ==veth== caliA \\                     (proxy_arp, /32 routes)
    pb eth0 10.82.0.11/32 ==veth== caliB -- node -- up0 10.82.9.1/24 ==veth== e0 10.82.9.2/24 ext
       default via 169.254.1.1 dev eth0         default via 10.82.9.2         (no forwarding)

No bridge anywhere: each pod's gateway 169.254.1.1 is held by nobody and answered by the node's
proxy ARP; the node reaches each pod by its /32 route. Predictions from a live snapshot must
agree with real TCP connections both ways, and a fault (proxy ARP off, a /32 route deleted) must
be named by its finding.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import require_root
from hostkit import World, new_world

from cntrace.path import predict
from cntrace.sources import live

PA, PB, GW = "10.82.0.10", "10.82.0.11", "169.254.1.1"
AGREES = {"delivered": {"delivered"}, "dropped": {"timeout"}, "timeout": {"timeout"}}
AGREES["unreachable"] = {"timeout", "unreachable"}


@pytest.fixture
def world() -> Iterator[World]:
    require_root()
    w = new_world("c")
    try:
        w.add("node", "ext", "pa", "pb")
        w.veth("node", "up0", "ext", "e0")
        w.ip("node", "addr add 10.82.9.1/24 dev up0")
        w.ip("ext", "addr add 10.82.9.2/24 dev e0")
        w.ip("node", "route add default via 10.82.9.2")
        w.sysctl("node", "net.ipv4.ip_forward", 1)
        for pod, veth, ip in (("pa", "caliA", PA), ("pb", "caliB", PB)):
            w.veth("node", veth, pod, "eth0")
            w.ip(pod, f"addr add {ip}/32 dev eth0")
            w.ip(pod, f"route add {GW} dev eth0 scope link")
            w.ip(pod, f"route add default via {GW} dev eth0")
            w.ip("node", f"route add {ip}/32 dev {veth}")
            w.sysctl("node", f"net.ipv4.conf.{veth}.proxy_arp", 1)
            w.sysctl("node", f"net.ipv4.neigh.{veth}.proxy_delay", 0)  # as Calico sets it
            w.listen(pod, 80)
        yield w
    finally:
        w.down()


def _check(w: World, src: str, dst_ip: str) -> tuple[str, str, list[str]]:
    for role in ("node", "ext", "pa", "pb"):  # no ARP answer cached from an earlier case
        w.ip(role, "neigh flush all")
    snap = live.read_snapshot()
    path = predict(snap, f"netns:{w.ns(src)}", f"{dst_ip}:80")
    real = w.connect(src, dst_ip, 80, timeout=1.5)
    assert real in AGREES.get(path.verdict.status, set()), (
        f"{src} -> {dst_ip}: predicted {path.verdict.status} ({path.verdict.summary}), "
        f"kernel {real}"
    )
    return path.verdict.status, real, [f.code for f in path.findings]


def test_routed_veths_deliver_both_ways(world: World) -> None:
    assert _check(world, "pa", PB)[0] == "delivered"
    assert _check(world, "pb", PA)[0] == "delivered"
    assert _check(world, "node", PA)[0] == "delivered"


def test_proxy_arp_off_names_its_cause(world: World) -> None:
    world.sysctl("node", "net.ipv4.conf.caliB.proxy_arp", 0)
    status, _, codes = _check(world, "pb", PA)  # pb's ARP for its gateway is unanswered
    assert status == "unreachable" and "proxy-arp-off" in codes
    status, _, codes = _check(world, "pa", PB)  # the request arrives, pb's reply cannot leave
    assert status == "timeout" and "proxy-arp-off" in codes


def test_missing_host_route_names_its_cause(world: World) -> None:
    world.ip("node", f"route del {PB}/32 dev caliB")
    status, _, codes = _check(world, "pa", PB)  # the node sends it out of its default route
    assert status != "delivered" and codes[0] == "missing-host-route", codes
