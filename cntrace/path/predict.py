"""Predict one packet's way hop by hop from a Snapshot, and its reply's way back.

The walk follows the kernel: in each namespace a locally generated packet is routed, passes the
OUTPUT and POSTROUTING hooks and leaves by an interface; a packet arriving on an interface passes
PREROUTING, is delivered locally (INPUT, then a socket) or forwarded (ip_forward, rp_filter,
FORWARD, POSTROUTING). Leaving by a veth lands in the peer's namespace; a veth enslaved to a bridge
hands the frame to the bridge, which either gives it to its own namespace's IP stack (the frame is
for the bridge's address) or forwards it to the port behind which the next hop lives, through
br_netfilter's FORWARD when bridge-nf-call-iptables is on. NAT done on the way out is undone on the
way back, as conntrack would.

Every decision becomes a Hop with its evidence; the first failure becomes the Verdict, and its
cause a Finding with the fix.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

from cntrace import netfilter
from cntrace.model import (
    Container,
    Endpoint,
    Finding,
    Hop,
    Link,
    Netns,
    Packet,
    Path,
    RuleRef,
    Snapshot,
    Socket,
    Verdict,
)
from cntrace.path import routing
from cntrace.path.endpoints import resolve_destination, resolve_source
from cntrace.path.findings import finding
from cntrace.topology import LinkRef, Topology

MAX_HOPS = 64
EPHEMERAL_PORT = 40000
TCP_SYN_SIZE = 60
DEFAULT_SIZES = {"tcp": TCP_SYN_SIZE, "udp": 64, "icmp": 84}


@dataclass(frozen=True)
class _Nat:
    """A NAT the request went through, to be undone on the reply."""

    netns: int
    kind: str  # snat | dnat
    before: Packet
    after: Packet
    rule: RuleRef | None


@dataclass
class _End:
    """How a walk ended."""

    status: str
    summary: str
    reason: str | None = None
    rule: RuleRef | None = None
    netns: Netns | None = None
    packet: Packet | None = None
    hop: int | None = None


@dataclass
class _Arrive:
    """``packet`` enters ``netns`` through ``link``."""

    netns: Netns
    link: Link
    packet: Packet


@dataclass
class _Walk:
    snap: Snapshot
    topo: Topology
    size: int
    hops: list[Hop] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    nats: list[_Nat] = field(default_factory=list)
    direction: str = "request"
    unmasqueraded: tuple[Netns, Link, str] | None = None  # (host ns, uplink, private src)
    owners: dict[str, list[tuple[Netns, Link]]] = field(default_factory=dict)
    entries: dict[tuple[str, int], Packet] = field(default_factory=dict)
    facts: dict[int, netfilter.NetnsFacts] = field(default_factory=dict)
    endpoints: tuple[Container | None, Container | None] = (None, None)

    # ------------------------------------------------------------------ bookkeeping

    def hop(
        self,
        kind: str,
        ns: Netns | None,
        link: str | None,
        packet: Packet,
        summary: str,
        *,
        rule: RuleRef | None = None,
        evidence: tuple[str, ...] | list[str] = (),
        ok: bool = True,
        tap: str | None = None,
    ) -> int:
        index = len(self.hops) + 1
        self.hops.append(
            Hop(
                index=index,
                kind=kind,
                netns=ns.inode if ns else None,
                netns_label=self.label(ns) if ns else "",
                interface=link,
                packet=packet,
                summary=summary,
                direction=self.direction,
                rule=rule,
                evidence=tuple(evidence),
                ok=ok,
                tap=tap,
            )
        )
        return index

    def label(self, ns: Netns) -> str:
        owner = self.topo.owner(ns.inode)
        if owner is not None:
            return owner.name
        if ns.is_root:
            return "host"
        return ns.label

    def add(self, f: Finding) -> None:
        if all(x.code != f.code or x.summary != f.summary for x in self.findings):
            self.findings.append(f)

    def owner_of(self, ip: str) -> list[tuple[Netns, Link]]:
        if not self.owners:
            for ns in self.snap.netns:
                for link in ns.links:
                    for a in link.addresses:
                        self.owners.setdefault(a.address, []).append((ns, link))
        return self.owners.get(ip, [])

    # ------------------------------------------------------------------ netfilter

    def hook(
        self,
        ns: Netns,
        hook: str,
        packet: Packet,
        *,
        iif: str | None,
        oif: str | None,
        physdev_in: str | None = None,
        physdev_out: str | None = None,
    ) -> tuple[str, Packet, _End | None]:
        """Run one netfilter hook; returns (verdict, packet after NAT, end if dropped)."""
        if ns.ruleset.empty:
            return "accept", packet, None
        nf = netfilter.load(ns.ruleset)
        facts = self.facts.get(ns.inode)
        if facts is None:  # a host with 1,000 veths: worth building once per walk
            facts = self.facts[ns.inode] = netfilter.facts_for(ns)
        ctstate = "NEW" if self.direction == "request" else "ESTABLISHED"
        # The packet as it entered this namespace's hooks: NAT done at an earlier hook then shows
        # in conntrack matches (--ctstate DNAT, ct status dnat), as in the kernel.
        original = self.entries.setdefault((self.direction, ns.inode), packet)
        res = netfilter.evaluate_hook(
            nf,
            hook,
            packet,
            facts,
            iif=iif,
            oif=oif,
            ctstate=ctstate,
            physdev_in=physdev_in,
            physdev_out=physdev_out,
            original=original,
        )
        for ref, why in res.uncertain:
            self.add(
                finding(
                    "rule-uncertain",
                    f"{hook.upper()} in {self.label(ns)}: cntrace cannot evaluate a rule ({why}); "
                    "the prediction assumes it matches",
                    evidence=[f"{ref.table}/{ref.chain} #{ref.position}: {ref.text}"],
                    fix="run the live trace (`--live`) to see what the kernel does",
                )
            )
        where = "bridged " if physdev_in else ""
        if res.verdict in ("drop", "reject"):
            rule = res.deciding
            text = rule.text if rule else f"policy of {hook.upper()}"
            idx = self.hop(
                "netfilter",
                ns,
                iif or oif,
                packet,
                f"{where}{hook.upper()}: {res.verdict.upper()} by {_rule_name(rule, hook)}",
                rule=rule,
                evidence=[text],
                ok=False,
            )
            status = "refused" if res.verdict == "reject" else "dropped"
            end = _End(
                status,
                f"dropped by netfilter in {self.label(ns)} ({hook.upper()})",
                "NETFILTER_DROP",
                rule,
                ns,
                packet,
                idx,
            )
            return res.verdict, packet, end
        nat_applies = res.nat is not None and res.packet != packet and self.direction == "request"
        if (res.deciding is not None or res.matched) and not nat_applies:
            decided = res.deciding
            self.hop(
                "netfilter",
                ns,
                iif or oif,
                packet,
                f"{where}{hook.upper()}: ACCEPT"
                + (f" by {_rule_name(decided, hook)}" if decided else " (policy)"),
                rule=decided,
                evidence=[decided.text] if decided else [],
            )
        after = res.packet
        if res.nat is not None and after != packet and self.direction == "request":
            kind = "dnat" if (after.dst, after.dport) != (packet.dst, packet.dport) else "snat"
            nat_rule = res.nat.rule
            what = (
                f"{packet.dst}:{packet.dport} -> {after.dst}:{after.dport}"
                if kind == "dnat"
                else f"{packet.src}:{packet.sport} -> {after.src}:{after.sport}"
            )
            self.hop(
                "nat",
                ns,
                oif or iif,
                after,
                f"{res.nat.kind.upper()} {what} ({hook.upper()})",
                rule=nat_rule,
                evidence=[nat_rule.text] if nat_rule else [],
            )
            self.nats.append(_Nat(ns.inode, kind, packet, after, nat_rule))
        return "accept", after, None


def _rule_name(rule: RuleRef | None, hook: str) -> str:
    if rule is None:
        return f"the {hook.upper()} policy"
    return f"{rule.table}/{rule.chain} rule {rule.position}"


# ---------------------------------------------------------------------- the walk


def _fail(
    w: _Walk,
    kind: str,
    ns: Netns,
    iface: str | None,
    packet: Packet,
    step: str,
    why: str,
    reason: str | None,
    *,
    status: str = "dropped",
    evidence: tuple[str, ...] | list[str] = (),
) -> _End:
    """Record the failing hop and end the walk there."""
    idx = w.hop(kind, ns, iface, packet, step, ok=False, evidence=evidence)
    return _End(status, why, reason, netns=ns, packet=packet, hop=idx)


def _down(w: _Walk, kind: str, ns: Netns, link: Link, packet: Packet, step: str) -> _End:
    """``link`` is down: nothing passes (the kernel's DEV_READY)."""
    end = _fail(
        w,
        kind,
        ns,
        link.name,
        packet,
        step,
        f"{link.name} in {w.label(ns)} is down",
        "DEV_READY",
        evidence=[_link_state(link)],
    )
    _interface_down(w, ns, link, end.hop or 0)
    return end


def _too_big(w: _Walk, kind: str, ns: Netns, iface: str, link: Link, packet: Packet) -> _End:
    """The packet is larger than ``link``'s MTU (IPv4 with DF, as probes are)."""
    end = _fail(
        w,
        kind,
        ns,
        iface,
        packet,
        f"{w.size}-byte packet exceeds {link.name} MTU {link.mtu}",
        f"packet larger than the MTU of {link.name}",
        "PKT_TOO_BIG",
    )
    _mtu_drop(w, ns, link, end.hop or 0)
    return end


def _transmit(w: _Walk, ns: Netns, link: Link, nexthop: str, packet: Packet) -> _Arrive | _End:
    """The packet leaves ``ns`` by ``link`` towards ``nexthop``."""
    if not link.is_up:
        return _down(w, "interface", ns, link, packet, f"{link.name} is down")
    if packet.family == 4 and w.size > link.mtu:
        return _too_big(w, "interface", ns, link.name, link, packet)
    if link.kind == "bridge":
        return _bridge(w, ns, link, None, nexthop, packet)
    if link.kind == "loopback":
        return _Arrive(ns, link, packet)
    w.hop("interface", ns, link.name, packet, f"leaves {w.label(ns)} by {link.name}", tap="egress")
    peer = w.topo.peer(ns, link)
    if link.kind in ("veth", "netkit") and peer is not None:
        return _cross(w, peer, nexthop, packet)
    # Not a pair cntrace can follow: the packet leaves this host (or the snapshot).
    return _End(
        "delivered",
        f"leaves by {link.name} towards {nexthop}; beyond this host cntrace cannot see",
        "left-host",
        netns=ns,
        packet=packet,
        hop=len(w.hops),
    )


def _cross(w: _Walk, peer: LinkRef, nexthop: str, packet: Packet) -> _Arrive | _End:
    ns, link = peer.netns, peer.link
    if not link.admin_up:
        return _down(w, "veth", ns, link, packet, f"peer {link.name} is down")
    if packet.family == 4 and w.size > link.mtu + 18:
        return _too_big(w, "veth", ns, link.name, link, packet)
    w.hop("veth", ns, link.name, packet, f"enters {w.label(ns)} by {link.name}", tap="ingress")
    master = w.topo.master(ns, link)
    if master is not None and master.kind == "bridge":
        return _bridge(w, ns, master, link, nexthop, packet)
    return _Arrive(ns, link, packet)


def _bridge(
    w: _Walk, ns: Netns, bridge: Link, in_port: Link | None, nexthop: str, packet: Packet
) -> _Arrive | _End:
    """A frame on ``bridge`` (from ``in_port``, or from the bridge's own stack) for ``nexthop``."""
    in_state = in_port.bridge_port.state if in_port and in_port.bridge_port else "forwarding"
    if in_port is not None and in_state not in ("forwarding", "learning"):
        end = _fail(
            w,
            "bridge",
            ns,
            bridge.name,
            packet,
            f"port {in_port.name} is {in_state}",
            f"bridge port {in_port.name} is {in_state}",
            "BRIDGE_INGRESS_STP_STATE",
        )
        _interface_down(w, ns, in_port, end.hop or 0)
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
        return _Arrive(ns, bridge, packet)
    target = _port_towards(w, ns, bridge, nexthop)
    if target is None:
        end = _fail(
            w,
            "bridge",
            ns,
            bridge.name,
            packet,
            f"nothing behind {bridge.name} answers ARP for {nexthop}",
            f"{nexthop} does not answer on {bridge.name} (ARP fails)",
            "NEIGH_FAILED",
            status="unreachable",
        )
        ports = ", ".join(p.name for p in w.topo.ports(ns, bridge)) or "none"
        w.add(
            finding(
                "neighbor-failed",
                f"no interface behind {bridge.name} in {w.label(ns)} has {nexthop}",
                evidence=[f"ports of {bridge.name}: {ports}", *_neighbor_note(ns, nexthop)],
                fix=f"check that the container owning {nexthop} is running and attached to "
                f"{bridge.name}",
                hop=end.hop,
            )
        )
        return end
    port, far = target
    bp = port.bridge_port
    if in_port is not None and port.ifindex == in_port.ifindex and not (bp and bp.hairpin):
        return _fail(
            w,
            "bridge",
            ns,
            bridge.name,
            packet,
            f"frame would go back out {port.name}; hairpin is off",
            f"hairpin mode is off on {port.name}",
            None,
        )
    if (
        in_port is not None
        and bp
        and bp.isolated
        and in_port.bridge_port
        and (in_port.bridge_port.isolated)
    ):
        return _fail(
            w,
            "bridge",
            ns,
            bridge.name,
            packet,
            f"{in_port.name} and {port.name} are both isolated ports",
            "isolated bridge ports cannot talk to each other",
            None,
        )
    if not port.is_up or (bp and bp.state in ("disabled", "blocking")):
        state = bp.state if bp and not port.admin_up else _link_state(port)
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
    if in_port is not None and ns.sysctl("net.bridge.bridge-nf-call-iptables", "0") == "1":
        for hook in ("prerouting", "forward", "postrouting"):
            routed = hook != "prerouting"
            _, packet, drop = w.hook(
                ns,
                hook,
                packet,
                iif=bridge.name,
                oif=bridge.name if routed else None,
                physdev_in=in_port.name,
                physdev_out=port.name if routed else None,
            )
            if drop is not None:
                _classify_forward_drop(w, ns, drop, bridge.name, bridge.name)
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
    return _cross(w, far, nexthop, packet)


def _port_towards(w: _Walk, ns: Netns, bridge: Link, ip: str) -> tuple[Link, LinkRef] | None:
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


def _neighbor_note(ns: Netns, ip: str) -> list[str]:
    return [f"neighbour {n.ip} on {n.ifname}: {n.state}" for n in ns.neighbors if n.ip == ip]


def _link_state(link: Link) -> str:
    admin = "UP" if link.admin_up else "DOWN"
    return f"{link.name}: admin {admin}, carrier {link.oper_state}, mtu {link.mtu}"


def _interface_down(w: _Walk, ns: Netns, link: Link, hop: int) -> None:
    owner = w.label(ns)
    w.add(
        finding(
            "interface-down",
            f"{link.name} in {owner} is down, so nothing passes through it",
            evidence=[_link_state(link)],
            fix=f"ip -n {ns.name} link set {link.name} up"
            if ns.name
            else f"ip link set {link.name} up (in {owner}'s namespace)",
            hop=hop,
        )
    )


def _mtu_drop(w: _Walk, ns: Netns, link: Link, hop: int) -> None:
    w.add(
        finding(
            "mtu-mismatch",
            f"{link.name} in {w.label(ns)} has MTU {link.mtu}, smaller than this {w.size}-byte "
            "packet: it is dropped",
            evidence=[_link_state(link)],
            fix=f"give {link.name} the same MTU as the interfaces around it "
            f"(`ip link set {link.name} mtu 1500`), or lower the sender's MTU",
            hop=hop,
            severity="error",
        )
    )


def _classify_forward_drop(w: _Walk, ns: Netns, end: _End, iif: str, oif: str | None) -> None:
    """A FORWARD drop is isolation when Docker's or netavark's isolation chains decided it."""
    rule = end.rule
    chain = rule.chain if rule else ""
    nets = {n.bridge: n.name for c in w.snap.containers for n in c.networks if n.bridge}
    text = rule.text if rule else "the FORWARD chain's policy"
    if "ISOLATION" in chain.upper():
        src_net = nets.get(iif, iif)
        dst_net = nets.get(oif or "", oif or "?")
        src, dst = w.endpoints
        who = (
            f"{src.name} is on {src_net} and {dst.name} on {dst_net}"
            if (src is not None and dst is not None)
            else f"{src_net} and {dst_net} are separate networks"
        )
        runtime = (src.runtime if src is not None else None) or "docker"
        if runtime in ("docker", "podman") and dst is not None:
            fix = (
                f"put them on one network: `{runtime} network connect {src_net} {dst.name}` "
                f"(or connect {src.name if src else 'the source'} to {dst_net})"
            )
        else:
            fix = f"attach both to one network (bridge {iif} or {oif})"
        w.add(
            finding(
                "isolated-networks",
                f"{who}: the runtime isolates its networks from each other",
                evidence=[
                    f"{rule.table}/{chain} rule {rule.position}: {text}" if rule else text,
                    f"in: {iif} ({src_net}), out: {oif} ({dst_net})",
                ],
                fix=fix,
                hop=end.hop,
            )
        )
    else:
        w.add(
            finding(
                "forward-drop",
                f"the packet is dropped while being forwarded in {w.label(ns)}",
                evidence=[
                    f"{rule.table}/{rule.chain} rule {rule.position}: {text}"
                    if rule
                    else f"FORWARD policy drops, no rule accepts (in {iif}, out {oif})"
                ],
                fix=_delete_hint(rule)
                if rule
                else "add an ACCEPT rule for this traffic, or change the FORWARD policy",
                hop=end.hop,
            )
        )


def _delete_hint(rule: RuleRef) -> str:
    if rule.backend.startswith("iptables") and rule.text.startswith("-A "):
        table = "" if rule.table == "filter" else f"-t {rule.table} "
        return f"remove or narrow the rule: iptables {table}-D {rule.text[3:]}"
    if rule.handle is not None:
        return (
            f"remove or narrow the rule: nft delete rule {rule.family} {rule.table} "
            f"{rule.chain} handle {rule.handle}"
        )
    return "remove or narrow the rule"


def _sysctl_on(ns: Netns, name: str, default: str = "1") -> bool:
    return (ns.sysctl(name, default) or default) != "0"


def _conntrack_full(w: _Walk, ns: Netns, packet: Packet) -> _End | None:
    try:
        count = int(ns.sysctl("net.netfilter.nf_conntrack_count", "0") or 0)
        limit = int(ns.sysctl("net.netfilter.nf_conntrack_max", "0") or 0)
    except ValueError:
        return None
    if limit <= 0 or ns.ruleset.empty or count < limit or w.direction != "request":
        return None
    idx = w.hop("netfilter", ns, None, packet, f"conntrack table full ({count}/{limit})", ok=False)
    w.add(
        finding(
            "conntrack-full",
            f"{w.label(ns)}'s connection-tracking table is full: new connections are dropped",
            evidence=[f"nf_conntrack_count={count}", f"nf_conntrack_max={limit}"],
            fix="raise net.netfilter.nf_conntrack_max, or find what opens so many connections "
            "(`conntrack -L | sort | uniq -c`)",
            hop=idx,
        )
    )
    return _End(
        "dropped", "conntrack table full", "NF_CONNTRACK_FULL", netns=ns, packet=packet, hop=idx
    )


def _output(w: _Walk, ns: Netns, packet: Packet) -> _Arrive | _End:
    """A packet generated by a process in ``ns``."""
    route = routing.lookup(ns, packet.dst, mark=packet.mark)
    if not route.ok:
        return _no_route(w, ns, packet, route, origin=True)
    if packet.src in ("", "0.0.0.0"):
        src = routing.source_address(ns, route, packet.dst)
        if src is None:
            idx = w.hop(
                "route", ns, route.oif, packet, f"no source address for {packet.dst}", ok=False
            )
            return _End(
                "no-route",
                f"{w.label(ns)} has no address to send from",
                netns=ns,
                packet=packet,
                hop=idx,
            )
        packet = replace(packet, src=src)
    if route.kind == "local":
        w.hop(
            "route",
            ns,
            "lo",
            packet,
            f"{packet.dst} is local to {w.label(ns)}",
            evidence=[route.describe(packet.dst)],
        )
        return _local(w, ns, packet, None)
    w.hop(
        "route",
        ns,
        route.oif,
        packet,
        route.describe(packet.dst),
        evidence=[route.describe(packet.dst)],
    )
    if (end := _conntrack_full(w, ns, packet)) is not None:
        return end
    _, after, end = w.hook(ns, "output", packet, iif=None, oif=route.oif)
    if end is not None:
        _generic_drop(w, ns, end, "output-drop")
        return end
    if after.dst != packet.dst:  # DNAT in OUTPUT: route again
        route = routing.lookup(ns, after.dst, mark=after.mark)
        if not route.ok:
            return _no_route(w, ns, after, route, origin=True)
        if route.kind == "local":
            return _local(w, ns, after, None)
    packet = after
    _, packet, end = w.hook(ns, "postrouting", packet, iif=None, oif=route.oif)
    if end is not None:
        _generic_drop(w, ns, end, "output-drop")
        return end
    return _leave(w, ns, route, packet)


def _leave(w: _Walk, ns: Netns, route: routing.RouteResult, packet: Packet) -> _Arrive | _End:
    link = ns.link(route.oif) if route.oif else None
    if link is None:
        idx = w.hop(
            "route", ns, route.oif, packet, f"route via unknown interface {route.oif}", ok=False
        )
        return _End(
            "unknown",
            f"the route uses {route.oif}, which cntrace cannot see",
            netns=ns,
            packet=packet,
            hop=idx,
        )
    nexthop = route.gateway or packet.dst
    for n in ns.neighbors:
        if n.ip == nexthop and n.ifname == link.name and n.state in ("failed", "incomplete"):
            w.add(
                finding(
                    "neighbor-failed",
                    f"{w.label(ns)} could not resolve the next hop {nexthop} on {link.name} "
                    f"(neighbour state {n.state})",
                    evidence=[f"neighbour {n.ip} dev {n.ifname} {n.state}"],
                    fix=f"check that {nexthop} exists and answers ARP on {link.name}",
                    severity="warning",
                )
            )
    return _transmit(w, ns, link, nexthop, packet)


def _no_route(
    w: _Walk, ns: Netns, packet: Packet, route: routing.RouteResult, *, origin: bool
) -> _End:
    kind = route.kind if route.kind != "none" else "no route"
    idx = w.hop(
        "route",
        ns,
        None,
        packet,
        f"{kind} to {packet.dst} in {w.label(ns)}",
        ok=False,
        evidence=[_routes_summary(ns, packet.family)],
    )
    down = [lk for lk in ns.links if lk.kind != "loopback" and not lk.is_up]
    if down and not any(r.dst in ("0.0.0.0/0", "::/0") for r in ns.routes):
        _interface_down(w, ns, down[0], idx)
    elif w.direction == "reply" and w.unmasqueraded is not None:
        host, uplink, private = w.unmasqueraded
        _no_masquerade(w, host, uplink, private, idx, severity="error")
    else:
        w.add(
            finding(
                "no-route",
                f"{w.label(ns)} has no route to {packet.dst}",
                evidence=[_routes_summary(ns, packet.family)],
                fix=f"add a route (e.g. `ip route add {packet.dst} via GATEWAY`) or a default "
                "route in that namespace",
                hop=idx,
            )
        )
    status = "no-route" if origin else "unreachable"
    return _End(
        status,
        f"no route to {packet.dst} in {w.label(ns)}",
        "IP_OUTNOROUTES" if origin else "IP_INNOROUTES",
        netns=ns,
        packet=packet,
        hop=idx,
    )


def _routes_summary(ns: Netns, family: int) -> str:
    routes = [r for r in ns.routes if r.family == family and r.table == 254]
    if not routes:
        return "routes: none"
    return "routes: " + "; ".join(
        routing.RouteResult(r.type, r).describe(r.dst.split("/")[0]) for r in routes[:6]
    )


def _generic_drop(w: _Walk, ns: Netns, end: _End, code: str) -> None:
    rule = end.rule
    text = (
        f"{rule.table}/{rule.chain} rule {rule.position}: {rule.text}"
        if rule
        else "the chain's policy"
    )
    hook = {"input-drop": "INPUT", "output-drop": "OUTPUT"}.get(code, "")
    w.add(
        finding(
            code,
            f"{hook} in {w.label(ns)} drops the packet",
            evidence=[text],
            fix=_delete_hint(rule) if rule else f"allow this traffic in {hook}",
            hop=end.hop,
        )
    )


def _arrive(w: _Walk, a: _Arrive) -> _Arrive | _End:
    """A packet entering namespace ``a.netns`` through ``a.link``."""
    ns, iif, packet = a.netns, a.link.name, a.packet
    packet = _undo_snat(w, ns, packet)
    if (end := _conntrack_full(w, ns, packet)) is not None:
        return end
    _, packet, end = w.hook(ns, "prerouting", packet, iif=iif, oif=None)
    if end is not None:
        _generic_drop(w, ns, end, "forward-drop")
        return end
    route = routing.lookup(ns, packet.dst, src=packet.src, iif=iif, mark=packet.mark)
    if route.kind == "local":
        _, packet, end = w.hook(ns, "input", packet, iif=iif, oif=None)
        if end is not None:
            _generic_drop(w, ns, end, "input-drop")
            return end
        return _local(w, ns, packet, a.link)
    if not route.ok:
        return _no_route(w, ns, packet, route, origin=False)
    # Forwarding.
    fwd_key = (
        f"net.ipv4.conf.{iif}.forwarding" if packet.family == 4 else "net.ipv6.conf.all.forwarding"
    )
    fwd = ns.sysctl(fwd_key) or ns.sysctl("net.ipv4.ip_forward", "1")
    if packet.family == 4 and ns.sysctl("net.ipv4.ip_forward") == "0":
        fwd = "0"
    if fwd == "0":
        idx = w.hop(
            "route",
            ns,
            iif,
            packet,
            f"{w.label(ns)} would route to {route.oif}, but forwarding is off",
            ok=False,
            evidence=["net.ipv4.ip_forward = 0"],
        )
        w.add(
            finding(
                "ip-forward-disabled",
                f"{w.label(ns)} must forward this packet from {iif} to {route.oif}, but IP "
                "forwarding is disabled there",
                evidence=[
                    f"net.ipv4.ip_forward = {ns.sysctl('net.ipv4.ip_forward', '?')}",
                    route.describe(packet.dst),
                ],
                fix="sysctl -w net.ipv4.ip_forward=1 (and persist it in /etc/sysctl.d/)"
                + (f" in namespace {ns.name}" if ns.name else ""),
                hop=idx,
            )
        )
        return _End(
            "dropped",
            f"IP forwarding is disabled in {w.label(ns)}",
            "IP_INNOROUTES",
            netns=ns,
            packet=packet,
            hop=idx,
        )
    if (end := _rp_filter(w, ns, iif, packet)) is not None:
        return end
    w.hop(
        "route",
        ns,
        route.oif,
        packet,
        f"forwarded: {route.describe(packet.dst)}",
        evidence=[route.describe(packet.dst), f"{fwd_key} = {fwd}"],
    )
    _, packet, end = w.hook(ns, "forward", packet, iif=iif, oif=route.oif)
    if end is not None:
        _classify_forward_drop(w, ns, end, iif, route.oif)
        return end
    before_post = packet
    _, packet, end = w.hook(ns, "postrouting", packet, iif=None, oif=route.oif)
    if end is not None:
        _generic_drop(w, ns, end, "forward-drop")
        return end
    packet = _undo_dnat(w, ns, packet)
    _note_egress(w, ns, route, before_post, packet)
    return _leave(w, ns, route, packet)


def _rp_filter(w: _Walk, ns: Netns, iif: str, packet: Packet) -> _End | None:
    if packet.family != 4:
        return None
    values = [ns.sysctl("net.ipv4.conf.all.rp_filter"), ns.sysctl(f"net.ipv4.conf.{iif}.rp_filter")]
    mode = max((int(v) for v in values if v and v.isdigit()), default=0)
    if mode == 0:
        return None
    back = routing.lookup(ns, packet.src)
    if mode == 1 and back.ok and back.oif == iif:
        return None
    if mode == 2 and back.ok:
        return None
    idx = w.hop(
        "route",
        ns,
        iif,
        packet,
        f"reverse-path filter: replies to {packet.src} would leave by "
        f"{back.oif or 'nowhere'}, not {iif}",
        ok=False,
    )
    w.add(
        finding(
            "rp-filter",
            f"{w.label(ns)} drops packets from {packet.src} arriving on {iif}: its route back to "
            f"{packet.src} does not use {iif} (rp_filter={mode})",
            evidence=[f"net.ipv4.conf.{{all,{iif}}}.rp_filter = {mode}", back.describe(packet.src)],
            fix=f"add a route to {packet.src} via {iif}, or set rp_filter=2 (loose) on {iif}",
            hop=idx,
        )
    )
    return _End("dropped", "reverse-path filter", "IP_RPFILTER", netns=ns, packet=packet, hop=idx)


def _note_egress(
    w: _Walk, ns: Netns, route: routing.RouteResult, before: Packet, after: Packet
) -> None:
    """Remember a private container address leaving a host un-NATed, for no-masquerade."""
    if w.direction != "request" or before.src != after.src:
        return
    oif = ns.link(route.oif) if route.oif else None
    if oif is None or oif.kind == "bridge":
        return
    subnets = [routing.net(a.cidr) for b in ns.links if b.kind == "bridge" for a in b.addresses]
    src = ipaddress.ip_address(after.src)
    if any(src in s for s in subnets):
        w.unmasqueraded = (ns, oif, after.src)


def _no_masquerade(
    w: _Walk, ns: Netns, uplink: Link, private: str, hop: int | None, severity: str
) -> None:
    bridges = [
        b
        for b in ns.links
        if b.kind == "bridge"
        and any(ipaddress.ip_address(private) in routing.net(a.cidr) for a in b.addresses)
    ]
    subnet = str(routing.net(bridges[0].addresses[0].cidr)) if bridges else private
    bridge = bridges[0].name if bridges else "BRIDGE"
    w.add(
        finding(
            "no-masquerade",
            f"the packet leaves {w.label(ns)} by {uplink.name} with its private source {private}: "
            "no MASQUERADE/SNAT rule matched, so replies cannot find their way back",
            evidence=[f"POSTROUTING in {w.label(ns)}: no NAT for {private} out of {uplink.name}"],
            fix=f"iptables -t nat -A POSTROUTING -s {subnet} ! -o {bridge} -j MASQUERADE"
            + (f" (in namespace {ns.name})" if ns.name else ""),
            hop=hop,
            severity=severity,
        )
    )


def _undo_snat(w: _Walk, ns: Netns, packet: Packet) -> Packet:
    """A reply entering a namespace that source-NATed the request gets its destination back
    (conntrack does it at PREROUTING)."""
    return _undo(w, ns, packet, "snat")


def _undo_dnat(w: _Walk, ns: Netns, packet: Packet) -> Packet:
    """A reply leaving a namespace that destination-NATed the request gets its source back
    (conntrack does it at POSTROUTING)."""
    return _undo(w, ns, packet, "dnat")


def _undo(w: _Walk, ns: Netns, packet: Packet, kind: str) -> Packet:
    if w.direction != "reply":
        return packet
    for nat in w.nats:
        if nat.netns != ns.inode or nat.kind != kind:
            continue
        if kind == "snat" and (packet.dst, packet.dport) == (nat.after.src, nat.after.sport):
            restored = replace(packet, dst=nat.before.src, dport=nat.before.sport)
            was, now = f"{packet.dst}:{packet.dport}", f"{restored.dst}:{restored.dport}"
        elif kind == "dnat" and (packet.src, packet.sport) == (nat.after.dst, nat.after.dport):
            restored = replace(packet, src=nat.before.dst, sport=nat.before.dport)
            was, now = f"{packet.src}:{packet.sport}", f"{restored.src}:{restored.sport}"
        else:
            continue
        w.hop(
            "nat",
            ns,
            None,
            restored,
            f"conntrack reverses the {kind.upper()}: {was} -> {now}",
            rule=nat.rule,
        )
        return restored
    return packet


def _local(w: _Walk, ns: Netns, packet: Packet, iif: Link | None) -> _End:
    """Delivery to a local process (or the kernel, for ICMP echo)."""
    who = w.label(ns)
    if w.direction == "reply":
        idx = w.hop(
            "socket", ns, iif.name if iif else None, packet, f"reply reaches the sender in {who}"
        )
        return _End("delivered", f"reply reaches {who}", netns=ns, packet=packet, hop=idx)
    if packet.proto == "icmp":
        if _sysctl_on(ns, "net.ipv4.icmp_echo_ignore_all", "0"):
            idx = w.hop(
                "socket",
                ns,
                None,
                packet,
                "echo requests are ignored",
                ok=False,
                evidence=["net.ipv4.icmp_echo_ignore_all = 1"],
            )
            return _End("dropped", f"{who} ignores pings", None, netns=ns, packet=packet, hop=idx)
        idx = w.hop(
            "socket",
            ns,
            iif.name if iif else None,
            packet,
            f"{who}'s kernel answers the echo request",
        )
        return _End("delivered", f"delivered to {who}", netns=ns, packet=packet, hop=idx)
    listeners = [
        s
        for s in ns.sockets
        if s.proto == packet.proto
        and s.local_port == packet.dport
        and (s.proto == "udp" or s.state == "listen")
    ]
    match = [s for s in listeners if _binds(s, packet.dst)]
    if match:
        s = match[0]
        idx = w.hop(
            "socket",
            ns,
            iif.name if iif else None,
            packet,
            f"{_sock(s)} accepts it in {who}",
            evidence=[_sock(s)],
        )
        return _End(
            "delivered", f"delivered to {_sock(s)} in {who}", netns=ns, packet=packet, hop=idx
        )
    status = "refused"
    reason = "NO_SOCKET"
    how = "answers with RST" if packet.proto == "tcp" else "answers ICMP port unreachable"
    idx = w.hop(
        "socket",
        ns,
        iif.name if iif else None,
        packet,
        f"nothing listens on {packet.proto}/{packet.dport} for {packet.dst}: {who} {how}",
        ok=False,
        evidence=[_sock(s) for s in listeners]
        or [f"no {packet.proto} socket on port {packet.dport} in {who}"],
    )
    loop = [s for s in listeners if s.loopback_only]
    is_host = any(lk.kind == "bridge" for lk in ns.links) or ns.is_root
    if is_host and not loop and not any(n.kind == "dnat" for n in w.nats):
        _not_published(w, ns, packet, idx)
    elif loop:
        s = loop[0]
        w.add(
            finding(
                "loopback-bind",
                f"{_proc(s)} in {who} listens on {s.local_ip}:{s.local_port} only, so connections "
                f"to {packet.dst}:{packet.dport} are refused",
                evidence=[_sock(s)],
                fix=f"make it listen on 0.0.0.0:{s.local_port} (or {packet.dst}); inside a "
                "container, 127.0.0.1 is the container's own loopback",
                hop=idx,
            )
        )
    else:
        w.add(
            finding(
                "no-listener",
                f"nothing in {who} listens on {packet.proto}/{packet.dport}",
                evidence=[
                    f"{who} listens on: "
                    + (
                        ", ".join(
                            sorted(
                                {_sock(s) for s in ns.sockets if s.state in ("listen", "unconn")}
                            )
                        )
                        or "nothing"
                    )
                ],
                fix=f"start the service on port {packet.dport}, or use the port it listens on",
                hop=idx,
            )
        )
    return _End(
        status,
        f"{who} refuses {packet.proto}/{packet.dport}",
        reason,
        netns=ns,
        packet=packet,
        hop=idx,
    )


def _not_published(w: _Walk, ns: Netns, packet: Packet, hop: int) -> None:
    """A host port that no DNAT rule publishes: say which containers could serve it."""
    candidates = []
    for c in w.snap.containers:
        cns = w.snap.ns(c.netns)
        if cns is None or c.host_netns not in (None, ns.inode):
            continue
        for s in cns.sockets:
            if (
                s.proto == packet.proto
                and s.local_port == packet.dport
                and s.state in ("listen", "unconn")
            ):
                candidates.append(f"{c.name} listens on {_sock(s)}")
                break
    published = [
        f"{c.name}: {p.host_port}->{p.container_port}/{p.proto}"
        for c in w.snap.containers
        for p in c.ports
        if c.host_netns in (None, ns.inode)
    ]
    w.add(
        finding(
            "port-not-published",
            f"port {packet.dport}/{packet.proto} is not published on {w.label(ns)}: no DNAT rule "
            "forwards it to a container, and nothing on the host listens on it",
            evidence=[*candidates[:5], "published ports: " + (", ".join(published[:8]) or "none")],
            fix=f"publish it (`docker run -p {packet.dport}:PORT ...`), or use a published port",
            hop=hop,
        )
    )


def _binds(s: Socket, dst: str) -> bool:
    if s.local_ip == dst:
        return True
    if s.local_ip == "0.0.0.0":
        return ":" not in dst
    return s.local_ip == "::"


def _sock(s: Socket) -> str:
    addr = f"[{s.local_ip}]" if ":" in s.local_ip else s.local_ip
    who = f" ({_proc(s)})" if s.process or s.pid else ""
    return f"{s.proto} {addr}:{s.local_port}{who}"


def _proc(s: Socket) -> str:
    if s.process and s.pid:
        return f"{s.process}[{s.pid}]"
    return s.process or (f"pid {s.pid}" if s.pid else "the server")


def _run(w: _Walk, start: Netns, packet: Packet) -> _End:
    step: _Arrive | _End = _output(w, start, packet)
    seen = 0
    while isinstance(step, _Arrive):
        seen += 1
        if seen > MAX_HOPS:
            return _End("unknown", "the path loops", netns=step.netns, hop=len(w.hops))
        step = _arrive(w, step)
    return step


# ---------------------------------------------------------------------- entry point


def predict(
    snap: Snapshot,
    source: str,
    destination: str,
    *,
    proto: str | None = None,
    port: int | None = None,
    size: int | None = None,
) -> Path:
    """The predicted path of one packet from ``source`` to ``destination``, with its reply."""
    topo = Topology(snap)
    src = resolve_source(snap, topo, source, destination)
    dst = resolve_destination(snap, topo, src, destination, port=port, proto=proto)
    w = _Walk(snap, topo, size or DEFAULT_SIZES[dst.proto])
    w.endpoints = (src.container, dst.container or topo.owner(dst.endpoint.netns))
    for f in dst.findings:
        w.add(f)
    if dst.ip is None:
        verdict = Verdict(
            "unreachable",
            None,
            dst.findings[0].summary if dst.findings else f"cannot resolve {destination}",
            reason="name-resolution",
        )
        return Path(src.endpoint, dst.endpoint, (), verdict, tuple(w.findings))
    family = routing.family_of(dst.ip)
    packet = Packet(
        proto=dst.proto,
        src="",
        dst=dst.ip,
        sport=EPHEMERAL_PORT if dst.proto in ("tcp", "udp") else None,
        dport=dst.port,
        family=family,
        icmp_type=8 if dst.proto == "icmp" else None,
    )
    end = _run(w, src.netns, packet)
    if end.status == "delivered" and end.reason != "left-host" and end.packet is not None:
        reply_end = _reply(w, end)
        if reply_end.status != "delivered":
            end = _End(
                "timeout",
                f"the request arrives, but the reply is lost: {reply_end.summary}",
                reply_end.reason,
                reply_end.rule,
                reply_end.netns,
                reply_end.packet,
                reply_end.hop,
            )
    elif end.reason == "left-host" and w.unmasqueraded is not None:
        host, uplink, private = w.unmasqueraded
        _no_masquerade(w, host, uplink, private, end.hop, severity="warning")
    _mtu_warnings(w, src.netns)
    src_ep = replace(src.endpoint, ip=src.endpoint.ip or (w.hops[0].packet.src if w.hops else None))
    verdict = Verdict(end.status, end.hop, end.summary, end.reason, end.rule)
    findings = sorted(w.findings, key=lambda f: {"error": 0, "warning": 1}.get(f.severity, 2))
    return Path(
        src_ep, _final_destination(dst.endpoint, w), tuple(w.hops), verdict, tuple(findings)
    )


def _final_destination(ep: Endpoint, w: _Walk) -> Endpoint:
    """Where the request really arrived (after DNAT; and for an address, the namespace that holds
    it on the way the packet went), kept next to what was asked."""
    for h in w.hops:
        if (h.kind, h.direction) != ("socket", "request"):
            continue
        ep = replace(ep, netns=h.netns, netns_label=h.netns_label)
        owner = w.topo.owner(h.netns)
        if ep.kind == "ip":
            ep = replace(
                ep, name=owner.name if owner else None, runtime=owner.runtime if owner else None
            )
        return ep
    return ep


def _reply(w: _Walk, end: _End) -> _End:
    """Walk the reply from where the request was delivered back to the sender."""
    assert end.netns is not None and end.packet is not None
    request = end.packet
    reply = request.reply()
    w.direction = "reply"
    step: _Arrive | _End = _output(w, end.netns, reply)
    seen = 0
    while isinstance(step, _Arrive):
        seen += 1
        if seen > MAX_HOPS:
            return _End("unknown", "the reply path loops")
        step = _arrive(w, step)
    return step


def _mtu_warnings(w: _Walk, src: Netns) -> None:
    """Full-size packets fail where a link on the way has a smaller MTU than the sender's."""
    if any(f.code == "mtu-mismatch" for f in w.findings):
        return
    first = next((h for h in w.hops if h.kind == "interface" and h.netns == src.inode), None)
    if first is None or first.interface is None:
        return
    out = src.link(first.interface)
    if out is None:
        return
    smaller: list[tuple[Hop, Link]] = []
    for h in w.hops:
        ns = w.snap.ns(h.netns)
        link = ns.link(h.interface) if ns and h.interface else None
        if link is not None and link.kind != "loopback" and link.mtu < out.mtu:
            smaller.append((h, link))
    if not smaller:
        return
    # A bridge takes the smallest MTU of its ports: name the port, the cause, when there is one.
    h, link = min(smaller, key=lambda hl: (hl[1].kind == "bridge", hl[1].mtu))
    w.add(
        finding(
            "mtu-mismatch",
            f"{link.name} in {h.netns_label} has MTU {link.mtu} while {first.netns_label} "
            f"sends up to {out.mtu} bytes on {out.name}: small packets pass, full-size ones are "
            "dropped (TCP often survives through segmentation offload; UDP and ICMP do not)",
            evidence=[_link_state(out), _link_state(link)],
            fix=f"set the same MTU on both (`ip link set {link.name} mtu {out.mtu}`), or lower "
            f"{out.name}'s MTU to {link.mtu}",
            hop=h.index,
            severity="warning",
        )
    )
