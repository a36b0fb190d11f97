"""Routed point-to-point veths (no bridge): who answers ARP, and the host route each end needs.

Calico and ptp-style CNIs give a container ``default via 169.254.1.1 dev eth0`` (an address
nobody holds) and the host side of its veth proxy ARP plus a /32 route to the container. Across
a veth the only one that can answer the container's ARP is the peer's namespace: it answers for
its own addresses, or, with ``proxy_arp`` on the peer, for any address it routes out of another
interface. And a namespace that forwards to such a container needs a route out of that veth.
"""

from __future__ import annotations

from cntrace.model import Link, Netns, Packet
from cntrace.path import routing
from cntrace.path.findings import finding
from cntrace.path.walk import End, Walk
from cntrace.topology import LinkRef

STATIC_NEIGH = ("permanent", "noarp")


def proxies(ns: Netns, link: Link, ip: str) -> bool:
    """Whether ``ns`` answers ARP for ``ip`` arriving on ``link`` with proxy ARP."""
    on = any(
        ns.sysctl(f"net.ipv4.conf.{dev}.proxy_arp", "0") not in ("0", "")
        for dev in ("all", link.name)
    )
    if not on:
        return False
    back = routing.lookup(ns, ip)
    return back.ok and back.kind != "local" and back.oif not in (None, link.name)


def unanswered_arp(
    w: Walk, ns: Netns, link: Link, peer: LinkRef, nexthop: str, packet: Packet
) -> End | None:
    """``ns`` sends to ``nexthop`` out of ``link``, whose peer is not bridged: the End when
    nothing answers its ARP (IPv4; a static neighbour entry needs none)."""
    far_ns, far = peer.netns, peer.link
    if packet.family != 4 or far.master is not None:
        return None
    if any(
        n.ip == nexthop and n.ifname == link.name and n.state in STATIC_NEIGH for n in ns.neighbors
    ):
        return None
    if nexthop in routing.local_addresses(far_ns) or proxies(far_ns, far, nexthop):
        return None
    if any(nexthop in {a.address for a in c.link.addresses} for c in w.topo.children(far_ns, far)):
        return None  # a macvlan child of the far end answers for itself
    where = f"{far.name}@{w.label(far_ns)}"
    end = w.fail(
        "interface",
        ns,
        link.name,
        packet,
        f"nothing on {where} answers ARP for {nexthop}",
        why=f"{nexthop} does not answer on {link.name} (ARP fails)",
        reason="NEIGH_FAILED",
        status="unreachable",
    )
    back = routing.lookup(far_ns, nexthop)
    proxy_key = f"net.ipv4.conf.{far.name}.proxy_arp"
    if back.ok and back.kind != "local" and back.oif != far.name:
        w.add(
            finding(
                "proxy-arp-off",
                f"{w.label(ns)} reaches {nexthop} through {link.name}, but {w.label(far_ns)} "
                f"does not hold that address and proxy ARP is off on {far.name}: the ARP "
                "request goes unanswered",
                evidence=[
                    f"{proxy_key} = {far_ns.sysctl(proxy_key, '0') or '0'}",
                    f"{w.label(far_ns)}: {back.describe(nexthop)}",
                ],
                fix=f"sysctl -w {proxy_key}=1 in {w.label(far_ns)} (as Calico does for its "
                f"cali* veths), or give {far.name} the address {nexthop}",
                hop=end.hop,
            )
        )
    else:
        w.add(
            finding(
                "neighbor-failed",
                f"nothing behind {link.name} in {w.label(ns)} holds {nexthop}: "
                f"{w.label(far_ns)} at the other end neither owns nor proxies it",
                evidence=[
                    f"addresses of {w.label(far_ns)}: "
                    + (", ".join(sorted(routing.local_addresses(far_ns))) or "none")
                ],
                fix=f"use a next hop {w.label(far_ns)} holds, or route {nexthop} there",
                hop=end.hop,
            )
        )
    return end


def host_route_missing(
    w: Walk, ns: Netns, route: routing.RouteResult, packet: Packet, hop: int | None
) -> None:
    """``ns`` routes ``packet`` away from the unbridged veth behind which its destination
    lives: the /32 (or /128) route a routed CNI adds for each container is missing."""
    for link in ns.links:
        if link.kind != "veth" or link.master is not None or link.name == route.oif:
            continue
        peer = w.topo.peer(ns, link)
        if peer is None or packet.dst not in {a.address for a in peer.link.addresses}:
            continue
        bits = 32 if packet.family == 4 else 128
        w.add(
            finding(
                "missing-host-route",
                f"{packet.dst} lives behind {link.name} in {w.label(ns)}, but "
                f"{w.label(ns)} has no route to it there: "
                + (f"it goes {route.describe(packet.dst)}" if route.ok else "no route matches"),
                evidence=[
                    f"{packet.dst} is on {peer.link.name}@{w.label(peer.netns)}",
                    f"{w.label(ns)}: {route.describe(packet.dst)}",
                ],
                fix=f"ip route add {packet.dst}/{bits} dev {link.name} (in {w.label(ns)}), "
                "the route a routed CNI adds for each container",
                hop=hop,
            )
        )
        return
