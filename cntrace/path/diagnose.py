"""Why a walk failed, in words: every Finding the predictor writes (its summary, evidence, fix).

The walk (links, stack, hooks) decides what happens to the packet and records the failing hop;
it then calls one function here with that hop's index, which picks the cause and writes it. A new
finding is a function here and its code in cntrace.path.findings (and docs/findings.md).
"""

from __future__ import annotations

import ipaddress

from cntrace.model import Container, Hop, Link, Netns, Packet, RuleRef, Socket
from cntrace.path import intent, kube, nfblame, routing
from cntrace.path.findings import finding
from cntrace.path.walk import End, Walk

# ---------------------------------------------------------------------- evidence in words


def link_state(link: Link) -> str:
    admin = "UP" if link.admin_up else "DOWN"
    return f"{link.name}: admin {admin}, carrier {link.oper_state}, mtu {link.mtu}"


def sock(s: Socket) -> str:
    addr = f"[{s.local_ip}]" if ":" in s.local_ip else s.local_ip
    who = f" ({proc(s)})" if s.process or s.pid else ""
    return f"{s.proto} {addr}:{s.local_port}{who}"


def proc(s: Socket) -> str:
    if s.process and s.pid:
        return f"{s.process}[{s.pid}]"
    return s.process or (f"pid {s.pid}" if s.pid else "the server")


def routes_summary(ns: Netns, family: int) -> str:
    routes = [r for r in ns.routes if r.family == family and r.table == 254]
    if not routes:
        return "routes: none"
    return "routes: " + "; ".join(
        routing.RouteResult(r.type, r).describe(r.dst.split("/")[0]) for r in routes[:6]
    )


def _rule_text(rule: RuleRef) -> str:
    if rule.policy:
        return nfblame.policy_text(rule)
    return f"{rule.table}/{rule.chain} rule {rule.position}: {rule.text}"


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


# ---------------------------------------------------------------------- links


def interface_down(w: Walk, ns: Netns, link: Link, hop: int | None) -> None:
    owner = w.label(ns)
    w.add(
        finding(
            "interface-down",
            f"{link.name} in {owner} is down, so nothing passes through it",
            evidence=[link_state(link)],
            fix=f"ip -n {ns.name} link set {link.name} up"
            if ns.name
            else f"ip link set {link.name} up (in {owner}'s namespace)",
            hop=hop,
        )
    )


def mtu_drop(w: Walk, ns: Netns, link: Link, hop: int | None) -> None:
    w.add(
        finding(
            "mtu-mismatch",
            f"{link.name} in {w.label(ns)} has MTU {link.mtu}, smaller than this {w.size}-byte "
            "packet: it is dropped",
            evidence=[link_state(link)],
            fix=f"give {link.name} the same MTU as the interfaces around it "
            f"(`ip link set {link.name} mtu 1500`), or lower the sender's MTU",
            hop=hop,
            severity="error",
        )
    )


def mtu_warnings(w: Walk, src: Netns) -> None:
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
            evidence=[link_state(out), link_state(link)],
            fix=f"set the same MTU on both (`ip link set {link.name} mtu {out.mtu}`), or lower "
            f"{out.name}'s MTU to {link.mtu}",
            hop=h.index,
            severity="warning",
        )
    )


def nobody_behind(
    w: Walk, ns: Netns, bridge: Link, ports: str, nexthop: str, hop: int | None
) -> None:
    """No port of ``bridge`` leads to ``nexthop``: ARP goes unanswered."""
    notes = [f"neighbour {n.ip} on {n.ifname}: {n.state}" for n in ns.neighbors if n.ip == nexthop]
    w.add(
        finding(
            "neighbor-failed",
            f"no interface behind {bridge.name} in {w.label(ns)} has {nexthop}",
            evidence=[f"ports of {bridge.name}: {ports}", *notes],
            fix=f"check that the container owning {nexthop} is running and attached to "
            f"{bridge.name}",
            hop=hop,
        )
    )


def neighbor_unresolved(w: Walk, ns: Netns, link: Link, nexthop: str) -> None:
    """The neighbour table already says ``nexthop`` did not answer on ``link``."""
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


# ---------------------------------------------------------------------- netfilter


def rule_uncertain(w: Walk, ns: Netns, hook: str, ref: RuleRef, why: str) -> None:
    w.add(
        finding(
            "rule-uncertain",
            f"{hook.upper()} in {w.label(ns)}: cntrace cannot evaluate a rule ({why}); "
            "the prediction assumes it matches",
            evidence=[ref.describe()],
            fix="run the live trace (`--live`) to see what the kernel does",
        )
    )


def rule_drop(w: Walk, ns: Netns, end: End, code: str) -> None:
    """A drop in a hook other than FORWARD: ``code`` is input-drop, output-drop or forward-drop."""
    if kube.explain_drop(w, ns, end):
        return
    rule = end.rule
    hook = {"input-drop": "INPUT", "output-drop": "OUTPUT"}.get(code, "")
    if rule is not None and rule.policy:
        iif, oif = nfblame.devices(w, end)
        w.add(
            finding(
                code,
                f"{(rule.hook or hook).upper()} in {w.label(ns)} drops the packet: "
                f"{nfblame.policy_blame(rule)}",
                evidence=[_rule_text(rule), *nfblame.passed(w, end)],
                fix=nfblame.policy_fix(rule, end.packet, iif, oif, request=w.request),
                hop=end.hop,
            )
        )
        return
    w.add(
        finding(
            code,
            f"{hook} in {w.label(ns)} drops the packet",
            evidence=[_rule_text(rule) if rule else "the chain's policy", *nfblame.passed(w, end)],
            fix=_delete_hint(rule) if rule else f"allow this traffic in {hook}",
            hop=end.hop,
        )
    )


def forward_drop(w: Walk, ns: Netns, end: End, iif: str, oif: str | None) -> None:
    """A FORWARD drop is isolation when Docker's or netavark's isolation chains decided it
    (unless the runtimes' intent says more: cntrace.path.intent)."""
    if kube.explain_drop(w, ns, end) or intent.explain_drop(w, ns, end, iif, oif):
        return
    rule = end.rule
    chain = rule.chain if rule else ""
    text = rule.text if rule else "the FORWARD chain's policy"
    if rule is not None and rule.policy:
        w.add(
            finding(
                "forward-drop",
                f"the packet is dropped while being forwarded in {w.label(ns)} (in {iif}, out "
                f"{oif}): {nfblame.policy_blame(rule)}",
                evidence=[_rule_text(rule), *nfblame.passed(w, end)],
                fix=nfblame.policy_fix(rule, end.packet, iif, oif, request=w.request),
                hop=end.hop,
            )
        )
        return
    if "ISOLATION" not in chain.upper():
        w.add(
            finding(
                "forward-drop",
                f"the packet is dropped while being forwarded in {w.label(ns)}",
                evidence=[
                    _rule_text(rule)
                    if rule
                    else f"FORWARD policy drops, no rule accepts (in {iif}, out {oif})",
                    *nfblame.passed(w, end),
                ],
                fix=_delete_hint(rule)
                if rule
                else "add an ACCEPT rule for this traffic, or change the FORWARD policy",
                hop=end.hop,
            )
        )
        return
    nets = {n.bridge: n.name for c in w.snap.containers for n in c.networks if n.bridge}
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
                _rule_text(rule) if rule else text,
                f"in: {iif} ({src_net}), out: {oif} ({dst_net})",
            ],
            fix=fix,
            hop=end.hop,
        )
    )


def conntrack_full(w: Walk, ns: Netns, count: int, limit: int, hop: int | None) -> None:
    w.add(
        finding(
            "conntrack-full",
            f"{w.label(ns)}'s connection-tracking table is full: new connections are dropped",
            evidence=[f"nf_conntrack_count={count}", f"nf_conntrack_max={limit}"],
            fix="raise net.netfilter.nf_conntrack_max, or find what opens so many connections "
            "(`conntrack -L | sort | uniq -c`)",
            hop=hop,
        )
    )


# ---------------------------------------------------------------------- routing


def no_route(w: Walk, ns: Netns, packet: Packet, hop: int | None) -> None:
    """No route: a down interface, a reply to an un-NATed private source, or a missing route."""
    down = [lk for lk in ns.links if lk.kind != "loopback" and not lk.is_up]
    if intent.explain_no_route(w, ns, hop):
        return
    if down and not any(r.dst in ("0.0.0.0/0", "::/0") for r in ns.routes):
        interface_down(w, ns, down[0], hop)
    elif not w.request and w.unmasqueraded is not None:
        host, uplink, private = w.unmasqueraded
        no_masquerade(w, host, uplink, private, hop, severity="error")
    else:
        w.add(
            finding(
                "no-route",
                f"{w.label(ns)} has no route to {packet.dst}",
                evidence=[routes_summary(ns, packet.family)],
                fix=f"add a route (e.g. `ip route add {packet.dst} via GATEWAY`) or a default "
                "route in that namespace",
                hop=hop,
            )
        )


def forwarding_off(
    w: Walk, ns: Netns, iif: str, route: routing.RouteResult, packet: Packet, hop: int | None
) -> None:
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
            hop=hop,
        )
    )


def rp_filter(
    w: Walk,
    ns: Netns,
    iif: str,
    packet: Packet,
    mode: int,
    back: routing.RouteResult,
    hop: int | None,
) -> None:
    w.add(
        finding(
            "rp-filter",
            f"{w.label(ns)} drops packets from {packet.src} arriving on {iif}: its route back to "
            f"{packet.src} does not use {iif} (rp_filter={mode})",
            evidence=[f"net.ipv4.conf.{{all,{iif}}}.rp_filter = {mode}", back.describe(packet.src)],
            fix=f"add a route to {packet.src} via {iif}, or set rp_filter=2 (loose) on {iif}",
            hop=hop,
        )
    )


def note_egress(
    w: Walk, ns: Netns, route: routing.RouteResult, before: Packet, after: Packet
) -> None:
    """Remember a private container address leaving a host un-NATed, for no-masquerade."""
    if not w.request or before.src != after.src:
        return
    oif = ns.link(route.oif) if route.oif else None
    if oif is None or oif.kind == "bridge":
        return
    subnets = [routing.net(a.cidr) for b in ns.links if b.kind == "bridge" for a in b.addresses]
    src = ipaddress.ip_address(after.src)
    if any(src in s for s in subnets):
        w.unmasqueraded = (ns, oif, after.src)


def no_masquerade(
    w: Walk, ns: Netns, uplink: Link, private: str, hop: int | None, severity: str
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


# ---------------------------------------------------------------------- sockets


def refused(w: Walk, ns: Netns, packet: Packet, listeners: list[Socket], hop: int | None) -> None:
    """Nothing takes the packet: a port published on another address, not published at all, a
    loopback bind, or no listener."""
    if intent.explain_refused(w, ns, packet, listeners, hop):
        return
    who = w.label(ns)
    loop = [s for s in listeners if s.loopback_only]
    is_host = any(lk.kind == "bridge" for lk in ns.links) or ns.is_root
    if is_host and not loop and not any(n.kind == "dnat" for n in w.nats):
        _not_published(w, ns, packet, hop)
    elif loop:
        s = loop[0]
        w.add(
            finding(
                "loopback-bind",
                f"{proc(s)} in {who} listens on {s.local_ip}:{s.local_port} only, so connections "
                f"to {packet.dst}:{packet.dport} are refused",
                evidence=[sock(s)],
                fix=f"make it listen on 0.0.0.0:{s.local_port} (or {packet.dst}); inside a "
                "container, 127.0.0.1 is the container's own loopback",
                hop=hop,
            )
        )
    else:
        bound = sorted({sock(s) for s in ns.sockets if s.state in ("listen", "unconn")})
        w.add(
            finding(
                "no-listener",
                f"nothing in {who} listens on {packet.proto}/{packet.dport}",
                evidence=[f"{who} listens on: " + (", ".join(bound) or "nothing")],
                fix=f"start the service on port {packet.dport}, or use the port it listens on",
                hop=hop,
            )
        )


def _not_published(w: Walk, ns: Netns, packet: Packet, hop: int | None) -> None:
    """A host port that no DNAT rule publishes: say which containers on this host could serve
    it (not the source, which is asking, nor containers whose veths lead to another host)."""
    source = w.hops[0].netns if w.hops else None
    here = [c for c in w.snap.containers if _host_of(w, c) == ns.inode]
    candidates = []
    for c in here:
        cns = w.snap.ns(c.netns)
        if cns is None or c.netns == source:
            continue
        for s in cns.sockets:
            if (
                s.proto == packet.proto
                and s.local_port == packet.dport
                and s.state in ("listen", "unconn")
            ):
                candidates.append(f"{c.name} listens on {sock(s)}")
                break
    published = [  # a container gone since it was listed publishes nothing any more
        f"{c.name}: {p.host_port}->{p.container_port}/{p.proto}"
        for c in here
        if c.state == "running"
        for p in c.ports
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


def _host_of(w: Walk, c: Container) -> int | None:
    """The namespace a container's veths lead to (what the packet would reach), else the one its
    runtime names: in a stitched snapshot every container's runtime may name the first node."""
    return w.topo.host_netns(c) or c.host_netns
