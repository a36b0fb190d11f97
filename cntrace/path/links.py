"""The link-layer hops: a packet leaving by an interface, crossing a pair, passing a bridge.

Which way a packet goes once routed out of a namespace depends on the kind of the output link:
``EGRESS`` maps a link kind to its hop (a new kind, e.g. macvlan or vxlan, is one function and one
entry there); ``ENSLAVED`` does the same for the master a link entering a namespace is enslaved to.
Each returns Arrive (the packet is handed to a namespace's IP stack, cntrace.path.stack) or End.
"""

from __future__ import annotations

from collections.abc import Callable

from cntrace.model import Link, Netns, Packet
from cntrace.path import diagnose, l2hooks, macvlan, overlay, routed, routing
from cntrace.path.walk import LEFT_HOST, Arrive, End, Step, Walk
from cntrace.topology import LinkRef

VETH_OVERHEAD = 18  # a veth peer takes frames up to its MTU plus the Ethernet header and VLAN tag


def transmit(w: Walk, ns: Netns, link: Link, nexthop: str, packet: Packet) -> Step:
    """The packet leaves ``ns`` by ``link`` towards ``nexthop``."""
    if not link.is_up:
        return _down(w, "interface", ns, link, packet, f"{link.name} is down")
    if packet.family == 4 and w.size > link.mtu:
        return _too_big(w, "interface", ns, link.name, link, packet)
    if (end := macvlan.parent_to_child(w, ns, link, nexthop, packet)) is not None:
        return end
    return EGRESS.get(link.kind, wire)(w, ns, link, nexthop, packet)


def _loopback(w: Walk, ns: Netns, link: Link, nexthop: str, packet: Packet) -> Step:
    return Arrive(ns, link, packet)


def _bridge_port_of_stack(w: Walk, ns: Netns, link: Link, nexthop: str, packet: Packet) -> Step:
    """Routed out of a bridge: the frame starts on the bridge from its own namespace's stack."""
    return _bridge(w, ns, link, None, nexthop, packet)


def _pair(w: Walk, ns: Netns, link: Link, nexthop: str, packet: Packet) -> Step:
    """A veth or netkit: the packet enters the peer's namespace (once it answers ARP)."""
    peer = w.topo.peer(ns, link)
    if peer is not None and (end := routed.unanswered_arp(w, ns, link, peer, nexthop, packet)):
        return end
    if peer is not None and (end := _resolve(w, ns, link, peer, nexthop, packet)):
        return end
    frame = l2hooks.Frame(link.mac, peer.link.mac if peer else None)
    if (end := l2hooks.egress(w, ns, link, packet, frame)) is not None:
        return end
    _leaves(w, ns, link, packet)
    peer = peer or _across_nodes(w, ns, link, nexthop)
    if peer is None:
        return beyond(w, ns, link, nexthop, packet)
    return _cross(w, peer, nexthop, packet)


def wire(w: Walk, ns: Netns, link: Link, nexthop: str, packet: Packet) -> Step:
    """Any other link: the packet leaves this host (or the snapshot), unless the snapshot was
    stitched from several nodes and another node holds the next hop on the same network."""
    if (end := l2hooks.egress(w, ns, link, packet)) is not None:
        return end
    _leaves(w, ns, link, packet)
    far = _across_nodes(w, ns, link, nexthop)
    if far is not None:
        return _cross(w, far, nexthop, packet)
    return beyond(w, ns, link, nexthop, packet)


def _across_nodes(w: Walk, ns: Netns, link: Link, nexthop: str) -> LinkRef | None:
    """In a stitched snapshot, the link of another node that holds ``nexthop`` on a network
    ``link`` is on: the far end of the wire between two machines."""
    if not w.snap.nodes or not link.addresses:
        return None
    hop = routing.addr(nexthop)
    if not any(hop in routing.net(a.cidr) for a in link.addresses if a.prefixlen < 32):
        return None
    for other in w.snap.netns:
        if other.inode == ns.inode:
            continue
        for lk in other.links:
            if lk.kind not in ("loopback", "bridge") and any(
                a.address == nexthop for a in lk.addresses
            ):
                return LinkRef(other, lk)
    return None


def _vxlan(w: Walk, ns: Netns, link: Link, nexthop: str, packet: Packet) -> Step:
    """A VXLAN device wraps the packet (cntrace.path.overlay, which imports this module)."""
    return overlay.encapsulate(w, ns, link, nexthop, packet)


EgressHop = Callable[[Walk, Netns, Link, str, Packet], Step]
EGRESS: dict[str, EgressHop] = {
    "loopback": _loopback,
    "bridge": _bridge_port_of_stack,
    "veth": _pair,
    "netkit": _pair,
    "vxlan": _vxlan,
    "macvlan": macvlan.egress,
    "macvtap": macvlan.egress,
}


def _leaves(w: Walk, ns: Netns, link: Link, packet: Packet) -> None:
    w.hop("interface", ns, link.name, packet, f"leaves {w.label(ns)} by {link.name}", tap="egress")


def beyond(w: Walk, ns: Netns, link: Link, nexthop: str, packet: Packet) -> End:
    return End(
        status="delivered",
        summary=f"leaves by {link.name} towards {nexthop}; beyond this host cntrace cannot see",
        reason=LEFT_HOST,
        netns=ns,
        packet=packet,
        hop=len(w.hops),
    )


def _cross(w: Walk, peer: LinkRef, nexthop: str, packet: Packet) -> Step:
    """The packet enters the namespace of ``peer`` (a veth's other end)."""
    ns, link = peer.netns, peer.link
    if not link.admin_up:
        return _down(w, "veth", ns, link, packet, f"peer {link.name} is down")
    if packet.family == 4 and w.size > link.mtu + VETH_OVERHEAD:
        return _too_big(w, "veth", ns, link.name, link, packet)
    w.hop("veth", ns, link.name, packet, f"enters {w.label(ns)} by {link.name}", tap="ingress")
    if (end := l2hooks.ingress(w, ns, link, packet)) is not None:
        return end
    if (child := macvlan.to_child(w, ns, link, nexthop, packet)) is not None:
        return child
    master = w.topo.master(ns, link)
    enslaved = ENSLAVED.get(master.kind) if master is not None else None
    if master is None or enslaved is None:
        return Arrive(ns, link, packet)
    return enslaved(w, ns, master, link, nexthop, packet)


def _down(w: Walk, kind: str, ns: Netns, link: Link, packet: Packet, step: str) -> End:
    """``link`` is down: nothing passes (the kernel's DEV_READY)."""
    end = w.fail(
        kind,
        ns,
        link.name,
        packet,
        step,
        why=f"{link.name} in {w.label(ns)} is down",
        reason="DEV_READY",
        evidence=[diagnose.link_state(link)],
    )
    diagnose.interface_down(w, ns, link, end.hop)
    return end


def _too_big(w: Walk, kind: str, ns: Netns, iface: str, link: Link, packet: Packet) -> End:
    """The packet is larger than ``link``'s MTU (IPv4 with DF, as probes are)."""
    end = w.fail(
        kind,
        ns,
        iface,
        packet,
        f"{w.size}-byte packet exceeds {link.name} MTU {link.mtu}",
        why=f"packet larger than the MTU of {link.name}",
        reason="PKT_TOO_BIG",
    )
    diagnose.mtu_drop(w, ns, link, end.hop)
    return end


# ---------------------------------------------------------------------- bridges


def _bridge(
    w: Walk, ns: Netns, bridge: Link, in_port: Link | None, nexthop: str, packet: Packet
) -> Step:
    """A frame on ``bridge`` (from ``in_port``, or from the bridge's own stack) for ``nexthop``."""
    in_state = in_port.bridge_port.state if in_port and in_port.bridge_port else "forwarding"
    if in_port is not None and in_state not in ("forwarding", "learning"):
        end = w.fail(
            "bridge",
            ns,
            bridge.name,
            packet,
            f"port {in_port.name} is {in_state}",
            why=f"bridge port {in_port.name} is {in_state}",
            reason="BRIDGE_INGRESS_STP_STATE",
        )
        diagnose.interface_down(w, ns, in_port, end.hop)
        return end
    if not bridge.is_up:
        return _down(w, "bridge", ns, bridge, packet, f"bridge {bridge.name} is down")
    local = {a.address for a in bridge.addresses} | routing.local_addresses(ns)
    if in_port is not None and nexthop in local:
        w.hop(
            "bridge",
            ns,
            bridge.name,
            packet,
            f"{bridge.name} takes the frame for its own address {nexthop} (routed by "
            f"{w.label(ns)})",
        )
        frame = l2hooks.Frame(_sender_mac(w, ns, bridge, in_port), bridge.mac)
        dropped = l2hooks.bridge_local_in(w, ns, bridge, in_port, packet, frame)
        return dropped if dropped is not None else Arrive(ns, bridge, packet)
    target = _port_towards(w, ns, bridge, nexthop)
    if target is None:
        end = w.fail(
            "bridge",
            ns,
            bridge.name,
            packet,
            f"nothing behind {bridge.name} answers ARP for {nexthop}",
            why=f"{nexthop} does not answer on {bridge.name} (ARP fails)",
            reason="NEIGH_FAILED",
            status="unreachable",
        )
        ports = ", ".join(p.name for p in w.topo.ports(ns, bridge)) or "none"
        diagnose.nobody_behind(w, ns, bridge, ports, nexthop, end.hop)
        return end
    if in_port is None:  # the bridge's own stack resolves the next hop behind a port
        bridged = l2hooks.Bridged(ns, bridge, None, target[0])
        if unresolved := l2hooks.resolve(w, ns, bridge, target[1], nexthop, packet, bridged):
            return unresolved
    return _forward(w, ns, bridge, in_port, target, nexthop, packet)


def _forward(
    w: Walk,
    ns: Netns,
    bridge: Link,
    in_port: Link | None,
    target: tuple[Link, LinkRef],
    nexthop: str,
    packet: Packet,
) -> Step:
    """The bridge forwards the frame out of ``target``'s port, towards its far end."""
    port, far = target
    bp = port.bridge_port
    if in_port is not None and port.ifindex == in_port.ifindex and not (bp and bp.hairpin):
        step = f"frame would go back out {port.name}; hairpin is off"
        why = f"hairpin mode is off on {port.name}"
        return w.fail("bridge", ns, bridge.name, packet, step, why=why, reason=None)
    isolated = in_port is not None and in_port.bridge_port and in_port.bridge_port.isolated
    if in_port is not None and bp and bp.isolated and isolated:
        step = f"{in_port.name} and {port.name} are both isolated ports"
        why = "isolated bridge ports cannot talk to each other"
        return w.fail("bridge", ns, bridge.name, packet, step, why=why, reason=None)
    if not port.is_up or (bp and bp.state in ("disabled", "blocking")):
        state = bp.state if bp and not port.admin_up else diagnose.link_state(port)
        return _down(
            w, "bridge", ns, port, packet, f"{bridge.name} cannot forward to {port.name}: {state}"
        )
    fdb = w.topo.fdb_entry(ns, bridge.name, far.link.mac)
    if fdb is None:
        how = f"floods (no FDB entry yet for {far.link.mac})"
    elif fdb.port == port.name:
        how = f"FDB: {far.link.mac} on {port.name}"
    else:
        how = f"FDB says {far.link.mac} is on {fdb.port}, not {port.name} (stale entry)"
    frame = l2hooks.Frame(_sender_mac(w, ns, bridge, in_port), far.link.mac)
    if in_port is not None:
        packet, drop = l2hooks.bridge_forward(w, ns, bridge, in_port, port, packet, frame)
    else:
        drop = l2hooks.bridge_local_out(w, ns, bridge, port, packet, frame)
    if drop is not None:
        return drop
    if packet.family == 4 and w.size > port.mtu:
        return _too_big(w, "bridge", ns, bridge.name, port, packet)
    w.hop(
        "bridge",
        ns,
        port.name,
        packet,
        f"{bridge.name} forwards to {port.name} ({how})",
        tap="egress",
    )
    if (end := l2hooks.egress(w, ns, port, packet, frame)) is not None:
        return end
    return _cross(w, far, nexthop, packet)


def _sender_mac(w: Walk, ns: Netns, bridge: Link, in_port: Link | None) -> str | None:
    """The source MAC of a frame on ``bridge``: the far end of its input port, or the bridge."""
    if in_port is None:
        return bridge.mac
    far = w.topo.peer(ns, in_port)
    return far.link.mac if far is not None else None


def _resolve(
    w: Walk, ns: Netns, link: Link, peer: LinkRef, nexthop: str, packet: Packet
) -> End | None:
    """The ARP exchange for ``nexthop`` out of ``link`` (across the peer's bridge, if any)."""
    master = w.topo.master(peer.netns, peer.link)
    if master is None:
        return l2hooks.resolve(w, ns, link, peer, nexthop, packet)
    if master.kind != "bridge":
        return None
    local = {a.address for a in master.addresses} | routing.local_addresses(peer.netns)
    if nexthop in local:
        return l2hooks.resolve(w, ns, link, LinkRef(peer.netns, master), nexthop, packet)
    target = _port_towards(w, peer.netns, master, nexthop)
    if target is None:
        return None
    bridged = l2hooks.Bridged(peer.netns, master, peer.link, target[0])
    return l2hooks.resolve(w, ns, link, target[1], nexthop, packet, bridged)


EnslavedHop = Callable[[Walk, Netns, Link, Link, str, Packet], Step]
ENSLAVED: dict[str, EnslavedHop] = {"bridge": _bridge}


def _port_towards(w: Walk, ns: Netns, bridge: Link, ip: str) -> tuple[Link, LinkRef] | None:
    """The bridge port whose other end holds ``ip``."""
    for port in w.topo.ports(ns, bridge):
        far = w.topo.peer(ns, port)
        if far is None:
            continue
        if any(a.address == ip for a in far.link.addresses):
            return port, far
        # The far end may itself be bridged or route further (a namespace acting as router).
        if any(a.address == ip for lk in far.netns.links for a in lk.addresses) and (
            far.link.kind == "veth"
        ):
            return port, far
    return None
