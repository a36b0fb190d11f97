"""The overlay hops: a packet wrapped by a VXLAN device, carried by the underlay, unwrapped.

Routed out of a ``vxlan`` device (flannel.1), the inner packet needs the next hop's MAC from the
neighbour table (flannel adds a permanent entry per remote node) and, for that MAC, the remote
VTEP's underlay address from the device's own FDB (`bridge fdb ... self`; else the all-zeros
default entry, else the device's ``remote``). The kernel then builds an outer UDP packet (the
device's ``local`` address to that VTEP, port 8472 or 4789, the VNI in the VXLAN header) and
sends it as a locally generated packet: routed, through OUTPUT and POSTROUTING, out of the
underlay. On the far node the outer packet is delivered locally (PREROUTING, INPUT) to the
device bound to its port and VNI, which hands the inner packet to that node's stack as if it had
arrived on the device. While wrapped the walk's size is the outer one (50 bytes more on IPv4),
so every MTU on the underlay is checked against what really crosses it.
"""

from __future__ import annotations

from cntrace.model import Finding, Link, Netns, Packet, Vxlan
from cntrace.path import links, routing, stack
from cntrace.path.findings import finding
from cntrace.path.walk import Arrive, End, Step, Tunnel, Walk

OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 (70 with an IPv6 underlay)
DEFAULT_PORT = 8472  # Linux's default; IANA's 4789 when `dstport 4789`
ZERO_MAC = "00:00:00:00:00:00"  # the FDB's default entry: where unknown MACs go


def settings(link: Link) -> Vxlan:
    return link.vxlan or Vxlan(vni=link.vxlan_id or 0)


def encapsulate(w: Walk, ns: Netns, link: Link, nexthop: str, packet: Packet) -> Step:
    """``link`` is a VXLAN device: wrap the packet for the remote VTEP and send the outer one."""
    links._leaves(w, ns, link, packet)
    vx = settings(link)
    neigh = next(
        (n for n in ns.neighbors if n.ifname == link.name and n.ip == nexthop and n.mac), None
    )
    if neigh is None or neigh.mac is None or neigh.state in ("failed", "incomplete"):
        return _no_neighbor(w, ns, link, nexthop, packet)
    entry = next((e for e in ns.fdb if e.port == link.name and e.mac == neigh.mac and e.dst), None)
    default = next((e for e in ns.fdb if e.port == link.name and e.mac == ZERO_MAC and e.dst), None)
    via = entry or default
    dst = via.dst if via is not None else vx.remote
    neigh_text = f"neighbour {neigh.ip} lladdr {neigh.mac} dev {link.name} {neigh.state}"
    if dst is None:
        return _no_fdb(w, ns, link, neigh.mac, neigh_text, packet)
    fdb_text = (
        f"fdb {via.mac} dev {link.name} dst {via.dst} self"
        + (" permanent" if via.local else "")
        + (" (the default entry)" if via is default and via is not entry else "")
        if via is not None
        else f"{link.name} remote {vx.remote}"
    )
    outer = Packet("udp", vx.local or "", dst, None, vx.port, family=routing.family_of(dst))
    if not outer.src:
        src = routing.source_address(ns, routing.lookup(ns, dst), dst)
        outer = outer.rewritten(src=src or "")
    overhead = OVERHEAD if outer.family == 4 else OVERHEAD + 20
    w.hop(
        "vxlan",
        ns,
        link.name,
        outer,
        f"{link.name} wraps it in VXLAN: VNI {vx.vni}, outer udp {outer.src} -> "
        f"{dst}:{vx.port}, for {neigh.mac}",
        evidence=[
            neigh_text,
            fdb_text,
            f"{w.size}-byte packet + {overhead} bytes of VXLAN = {w.size + overhead} bytes on "
            "the underlay",
        ],
    )
    w.tunnel = Tunnel(ns.inode, link.name, vx.vni, vx.port, packet, w.size)
    w.size += overhead
    # The overlay carries pod addresses between nodes unchanged: no NAT is missing here.
    if w.unmasqueraded is not None and w.unmasqueraded[1].name == link.name:
        w.unmasqueraded = None
    w.entries.pop((w.direction, ns.inode), None)  # the outer packet is a new one to the hooks
    return stack.output(w, ns, outer)


def decapsulate(w: Walk, ns: Netns, packet: Packet, iif: Link | None) -> Step | None:
    """The outer packet is delivered locally: the VXLAN device bound to its port unwraps it.
    None when this is not the tunnel's packet (the socket path goes on)."""
    t = w.tunnel
    if t is None or packet.proto != "udp" or packet.dport != t.port:
        return None
    devices = [lk for lk in ns.links if lk.kind == "vxlan" and settings(lk).port == t.port]
    if not devices:
        return None
    dev = next((d for d in devices if settings(d).vni == t.vni), None)
    if dev is None:
        return _vni_mismatch(w, ns, devices, packet, iif)
    if not dev.is_up:
        return links._down(w, "vxlan", ns, dev, packet, f"{dev.name} is down")
    w.hop(
        "vxlan",
        ns,
        dev.name,
        t.inner,
        f"{dev.name} unwraps it: VNI {t.vni} from {packet.src}",
        evidence=[f"{dev.name}: vxlan id {t.vni} dstport {t.port}", f"outer {packet}"],
        tap="ingress",
    )
    w.size, w.tunnel = t.size, None
    return Arrive(ns, dev, t.inner)


def ended(w: Walk, end: End) -> End:
    """A walk that ends while the packet is wrapped: the drop hit the outer packet, which is
    what the finding must say (its generic twin speaks of the outer packet's size or rule)."""
    t = w.tunnel
    if t is None:
        return end
    outer_size = w.size
    w.size, w.tunnel = t.size, None
    if end.status == "delivered":  # the outer packet left the snapshot
        return end
    where = w.snap.ns(end.netns.inode) if end.netns else None
    label = w.label(where) if where else "the underlay"
    carried = f"the VXLAN packet (VNI {t.vni}, udp/{t.port}) carrying {t.inner}"
    if end.reason == "PKT_TOO_BIG":
        hop = w.hops[end.hop - 1] if end.hop else None
        link = where.link(hop.interface) if where and hop and hop.interface else None
        name, mtu = (link.name, link.mtu) if link else ("the underlay", 0)
        sender = w.snap.ns(t.netns)
        _first(
            w,
            finding(
                "vxlan-mtu",
                f"{carried} is {t.size} + {outer_size - t.size} = {outer_size} bytes on the "
                f"underlay: more than {name} in {label} takes (MTU {mtu})",
                evidence=[
                    f"{t.device} in {w.label(sender) if sender else 'the sender'} sends "
                    f"{t.size}-byte packets; VXLAN adds {outer_size - t.size} bytes",
                    *(hop.evidence if hop else ()),
                ],
                fix=f"give every node's underlay interface the same MTU, at least {outer_size} "
                f"(`ip link set {name} mtu 1500` in {label}), or lower {t.device}'s and the "
                f"pods' MTU to the smallest underlay MTU minus {outer_size - t.size} "
                f"({mtu - (outer_size - t.size)})",
                hop=end.hop,
            ),
        )
    elif end.reason == "NETFILTER_DROP":
        rule = end.rule
        _first(
            w,
            finding(
                "vxlan-dropped",
                f"{carried} is dropped by netfilter in {label}: the tunnel's outer packets "
                "do not pass",
                evidence=[rule.text if rule else "the chain's policy"],
                fix=f"allow udp/{t.port} between the nodes' underlay addresses (e.g. `iptables "
                f"-I INPUT -p udp --dport {t.port} -j ACCEPT` in {label})",
                hop=end.hop,
            ),
        )
    return end


def misrouted(w: Walk, failed: Netns, packet: Packet, hop: int | None) -> None:
    """No route to a pod, far from its node: name the node on the way that should have had a
    route to the pod's node (it sent the packet up its default route instead)."""
    home = _home(w, packet.dst, failed)
    if home is None:
        return
    home_ns, subnet = home
    for h in w.hops:
        if h.kind != "route" or h.direction != w.direction or h.netns in (None, home_ns.inode):
            continue
        ns = w.snap.ns(h.netns)
        if ns is None or ns.inode == failed.inode or not _node(ns):
            continue
        route = routing.lookup(ns, packet.dst)
        if route.route is None or route.route.dst not in ("0.0.0.0/0", "::/0"):
            continue
        fix = _route_to(ns, home_ns, subnet)
        if fix is None:
            continue
        _first(
            w,
            finding(
                "no-node-route",
                f"{w.label(ns)} has no route to {subnet}, the pod subnet of "
                f"{w.label(home_ns)}: {packet.dst} leaves by its default route and is lost "
                f"in {w.label(failed)}",
                evidence=[route.describe(packet.dst), f"{subnet} is on {w.label(home_ns)}"],
                fix=f"`ip route add {fix}` in {w.label(ns)} (what the overlay's agent adds "
                "for every node; restart it if the route is missing)",
                hop=h.index,
            ),
        )
        return


# ---------------------------------------------------------------------- failures


def _first(w: Walk, f: Finding) -> None:
    """The overlay's finding goes before the generic one for the same hop."""
    if all(x.code != f.code for x in w.findings):
        w.findings.insert(0, f)


def _no_neighbor(w: Walk, ns: Netns, link: Link, nexthop: str, packet: Packet) -> End:
    end = w.fail(
        "vxlan",
        ns,
        link.name,
        packet,
        f"no neighbour entry for {nexthop} on {link.name}",
        why=f"{link.name} cannot resolve the next hop {nexthop}",
        reason="NEIGH_FAILED",
        status="unreachable",
    )
    w.add(
        finding(
            "vxlan-no-neighbor",
            f"{w.label(ns)} has no neighbour entry for {nexthop} on {link.name}: without the "
            "remote VTEP's MAC the packet cannot be wrapped",
            evidence=[f"no neighbour {nexthop} dev {link.name}"],
            fix=f"`ip neigh replace {nexthop} lladdr REMOTE_VTEP_MAC dev {link.name} nud "
            "permanent` (flannel adds one per remote node)",
            hop=end.hop,
        )
    )
    return end


def _no_fdb(w: Walk, ns: Netns, link: Link, mac: str, neigh: str, packet: Packet) -> End:
    end = w.fail(
        "vxlan",
        ns,
        link.name,
        packet,
        f"{link.name} has no FDB entry for {mac} and no default destination",
        why=f"{link.name} does not know which node has {mac}",
        reason="NO_TX_TARGET",
    )
    owner = _vtep_owner(w, mac)
    dst = owner[1] if owner else "REMOTE_NODE_IP"
    known = [f"fdb {e.mac} dst {e.dst}" for e in ns.fdb if e.port == link.name and e.dst]
    w.add(
        finding(
            "vxlan-no-fdb",
            f"{link.name} in {w.label(ns)} has no forwarding entry for the VTEP MAC {mac}"
            + (f" ({w.label(owner[0])}'s {owner[2]})" if owner else "")
            + ": the kernel drops the packet instead of wrapping it",
            evidence=[neigh, *(known or [f"no FDB entries on {link.name}"])],
            fix=f"`bridge fdb append {mac} dev {link.name} dst {dst} self permanent` in "
            f"{w.label(ns)} (flannel adds one per remote node)",
            hop=end.hop,
        )
    )
    return end


def _vni_mismatch(w: Walk, ns: Netns, devices: list[Link], packet: Packet, iif: Link | None) -> End:
    t = w.tunnel
    assert t is not None
    have = ", ".join(f"{d.name} VNI {settings(d).vni}" for d in devices)
    end = w.fail(
        "vxlan",
        ns,
        iif.name if iif else devices[0].name,
        packet,
        f"no VXLAN device for VNI {t.vni} on udp/{t.port} ({have})",
        why=f"no VXLAN device for VNI {t.vni} in {w.label(ns)}",
        reason="VXLAN_VNI_NOT_FOUND",
    )
    sender = w.snap.ns(t.netns)
    w.add(
        finding(
            "vxlan-vni-mismatch",
            f"{t.device} in {w.label(sender) if sender else 'the sender'} wraps with VNI "
            f"{t.vni}, but {w.label(ns)} has {have}: the packet is dropped after the tunnel",
            evidence=[f"outer {packet}, VNI {t.vni}", f"{w.label(ns)}: {have}"],
            fix="use one VNI on every node (flannel's Backend.VNI; recreate the device with "
            f"`ip link add {devices[0].name} type vxlan id {t.vni} ...`)",
            hop=end.hop,
        )
    )
    return end


# ---------------------------------------------------------------------- where things are


def _vtep_owner(w: Walk, mac: str) -> tuple[Netns, str, str] | None:
    """The namespace whose VXLAN device has ``mac``, its underlay address and the device."""
    for ns in w.snap.netns:
        for lk in ns.links:
            if lk.kind == "vxlan" and lk.mac == mac:
                local = settings(lk).local
                if local:
                    return ns, local, lk.name
    return None


def _node(ns: Netns) -> bool:
    """A namespace acting as a node: it has a VXLAN device or an addressed (pod) bridge."""
    return any(lk.kind == "vxlan" or (lk.kind == "bridge" and lk.addresses) for lk in ns.links)


def pod_subnet_elsewhere(w: Walk, ns: Netns, ip: str) -> tuple[Netns, str] | None:
    """The other node whose pod bridge holds ``ip``: traffic to it keeps its pod source (no
    masquerade is missing when a node routes it there, by a tunnel or host-gw)."""
    return _home(w, ip, ns)


def _home(w: Walk, ip: str, failed: Netns) -> tuple[Netns, str] | None:
    """The namespace with a bridge whose subnet holds ``ip`` (a node's pod bridge)."""
    target = routing.addr(ip)
    for ns in w.snap.netns:
        if ns.inode == failed.inode:
            continue
        for lk in ns.links:
            if lk.kind != "bridge":
                continue
            for a in lk.addresses:
                subnet = routing.net(a.cidr)
                if a.family == target.version and target in subnet:
                    return ns, str(subnet)
    return None


def _route_to(ns: Netns, home: Netns, subnet: str) -> str | None:
    """The route ``ns`` needs to ``subnet`` on ``home``: over the tunnel when both have one,
    else straight to home's address on a network they share."""
    mine = next((lk for lk in ns.links if lk.kind == "vxlan"), None)
    theirs = next((lk for lk in home.links if lk.kind == "vxlan" and lk.addresses), None)
    if mine is not None and theirs is not None:
        return f"{subnet} via {theirs.addresses[0].address} dev {mine.name} onlink"
    for lk in ns.links:
        if lk.kind == "loopback":
            continue
        for a in lk.addresses:
            net = routing.net(a.cidr)
            for other in home.links:
                for b in other.addresses:
                    if (
                        b.family == a.family
                        and routing.addr(b.address) in net
                        and net.prefixlen < 32
                    ):
                        return f"{subnet} via {b.address} dev {lk.name}"
    return None
