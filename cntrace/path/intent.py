"""What the runtimes meant: a raw rule turned into the cause a user recognises (issue 13).

Docker and Podman write rules for reasons they also state (`docker network inspect`, `podman
network ls`, docker-proxy's command line, a container's state): an ``--internal`` network, a
network with ``enable_icc=false``, a port published on one host address, a userland proxy, Docker's
FORWARD policy meeting Podman's narrower chains, a container that exists and does not run. The
walk stops where the kernel would; diagnose asks this module first, and when a runtime's intent
explains the drop, the finding is written here with a fix that runtime accepts.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from cntrace.errors import BadInput
from cntrace.model import (
    Container,
    Endpoint,
    Netns,
    Packet,
    Path,
    PortMapping,
    RuleRef,
    RuntimeNetwork,
    Snapshot,
    Socket,
    Verdict,
)
from cntrace.path.endpoints import parse_dest, resolve_source
from cntrace.path.findings import finding
from cntrace.path.walk import End, Walk
from cntrace.refs import resolve_ref
from cntrace.topology import Topology

WILDCARDS = ("0.0.0.0", "::", "")


def _networks(snap: Snapshot) -> dict[str, RuntimeNetwork]:
    """Runtime networks by their host bridge's name."""
    return {n.bridge: n for n in snap.runtime_networks if n.bridge}


def _tokens(rule: RuleRef) -> list[str]:
    return rule.text.split()


def _names(tokens: list[str], flag: str, value: str) -> bool:
    """Whether the rule matches ``flag value`` (not negated)."""
    for i, t in enumerate(tokens[:-1]):
        if t == flag and tokens[i + 1] == value and (i == 0 or tokens[i - 1] != "!"):
            return True
    return False


def _rule_text(rule: RuleRef) -> str:
    return f"{rule.table}/{rule.chain} rule {rule.position}: {rule.text}"


def _in_ns(ns: Netns, command: str) -> str:
    """A command as run in ``ns`` (the host itself needs no prefix)."""
    return command if ns.is_root or not ns.name else f"ip netns exec {ns.name} {command}"


def _is_policy(rule: RuleRef | None) -> bool:
    """The base chain's policy decided (a policy is a RuleRef with ``policy`` set)."""
    return rule is None or rule.policy


# ---------------------------------------------------------------------- FORWARD drops


def explain_drop(w: Walk, ns: Netns, end: End, iif: str, oif: str | None) -> bool:
    """A FORWARD (or bridged) drop the runtimes' intent explains: the finding, and True."""
    nets = _networks(w.snap)
    rule = end.rule
    if rule is not None and not _is_policy(rule):
        tokens = _tokens(rule)
        for net in nets.values():
            br = net.bridge or ""
            inbound, outbound = _names(tokens, "-o", br), _names(tokens, "-i", br)
            if net.internal and "ISOLATION" in rule.chain.upper() and (inbound or outbound):
                _internal(w, ns, end, rule, net, inbound=inbound)
                return True
            if not net.icc and iif == br == oif and inbound and outbound:
                _icc(w, ns, end, rule, net)
                return True
        return False
    podman = nets.get(oif or "")
    if (
        podman is not None
        and podman.runtime == "podman"
        and _docker_rules(ns)
        and end.packet is not None
        and rule_chain(end) == "FORWARD"
    ):
        _policy_clash(w, ns, end, podman, iif)
        return True
    return False


def rule_chain(end: End) -> str:
    """The chain that decided (its rule's or its policy's); FORWARD when nothing is named."""
    return end.rule.chain if end.rule is not None else "FORWARD"


def _docker_rules(ns: Netns) -> bool:
    """Docker's chains are in this namespace's filter table (DOCKER-USER is its own hook)."""
    texts = (ns.ruleset.iptables_nft or "", ns.ruleset.iptables_legacy or "")
    return any(":DOCKER-USER " in t for t in texts)


def _member(w: Walk, net: RuntimeNetwork) -> Container | None:
    src, _ = w.endpoints
    if src is not None and any(n.name == net.name for n in src.networks):
        return src
    return None


def _other_network(w: Walk, runtime: str, exclude: str) -> str:
    """A network of ``runtime`` that is neither internal nor ``exclude`` (Docker's ``bridge``
    first: it always exists)."""
    names = [
        n.name
        for n in w.snap.runtime_networks
        if n.runtime == runtime and not n.internal and n.name != exclude and n.driver == "bridge"
    ]
    for preferred in ("bridge", "podman"):
        if preferred in names:
            return preferred
    return names[0] if names else "NETWORK"


def _internal(
    w: Walk, ns: Netns, end: End, rule: RuleRef, net: RuntimeNetwork, *, inbound: bool
) -> None:
    src, dst = w.endpoints
    subnet = ", ".join(net.subnets) or "its own subnet"
    rt = net.runtime
    if inbound:
        who = dst.name if dst is not None else "the destination"
        what = f"{who} is on {net.name}, an internal network: it takes only its subnet ({subnet})"
        if src is not None and src.runtime == rt:
            fix = f"`{rt} network connect {net.name} {src.name}` (then {who}'s {net.name} address)"
        elif dst is not None and dst.runtime == rt:
            fix = (
                f"reach {who} from a container on {net.name}, or give it a way in: "
                f"`{rt} network connect {_other_network(w, rt, net.name)} {who}`"
            )
        else:
            connect = f"{rt} network connect {net.name} CONTAINER"
            fix = f"reach it from a container on {net.name}: `{connect}`"
    else:
        who = src.name if src is not None else "the source"
        what = f"{who} is on {net.name}, an internal network: nothing leaves it but to {subnet}"
        fix = (
            f"`{rt} network connect {_other_network(w, rt, net.name)} {who}` "
            f"(a non-internal network; {net.name} itself stays internal)"
            if src is not None and src.runtime == rt
            else f"connect the source to a network of {rt} that is not internal"
        )
    w.add(
        finding(
            "network-internal",
            what,
            evidence=[
                _rule_text(rule),
                f"{rt} network {net.name}: internal=true, bridge {net.bridge}",
            ],
            fix=fix,
            hop=end.hop,
        )
    )


def _icc(w: Walk, ns: Netns, end: End, rule: RuleRef, net: RuntimeNetwork) -> None:
    src, dst = w.endpoints
    p = end.packet
    assert p is not None
    names = f"{src.name} and {dst.name}" if src and dst else "containers"
    accept = (
        f"iptables -I DOCKER-USER -i {net.bridge} -o {net.bridge} -s {p.src} -d {p.dst}"
        + (f" -p {p.proto} --dport {p.dport}" if p.dport is not None else "")
        + " -j ACCEPT"
    )
    w.add(
        finding(
            "icc-disabled",
            f"{net.name} has inter-container communication disabled (enable_icc=false): "
            f"{names} share the network but Docker drops traffic between its containers",
            evidence=[
                _rule_text(rule),
                f"docker network {net.name}: com.docker.network.bridge.enable_icc=false",
            ],
            fix=f"allow just this flow: `{_in_ns(ns, accept)}` (DOCKER-USER is evaluated "
            "first; replies pass Docker's ESTABLISHED rule), or put both on a network with ICC",
            hop=end.hop,
        )
    )


def _policy_clash(w: Walk, ns: Netns, end: End, net: RuntimeNetwork, iif: str) -> None:
    p = end.packet
    assert p is not None
    subnet = net.subnets[0] if net.subnets else f"{p.dst}/32"
    accept = (
        f"iptables -I DOCKER-USER -d {subnet} -o {net.bridge}"
        + (f" -p {p.proto} --dport {p.dport}" if p.dport is not None else "")
        + " -j ACCEPT"
    )
    w.add(
        finding(
            "runtime-policy-clash",
            f"Docker's FORWARD policy DROP drops this packet to Podman's network {net.name}: "
            f"Podman's own FORWARD rules accept only replies to {subnet} and packets from it, "
            "relying on the policy to accept the rest, so its published ports cannot be reached "
            "from outside while Docker runs on this host",
            evidence=[
                _rule_text(end.rule) if end.rule is not None else "filter/FORWARD policy DROP",
                f"in {iif}, out {net.bridge} (podman network {net.name}, {subnet})",
                "filter/DOCKER-USER exists: Docker's FORWARD rules (and policy DROP) are present",
            ],
            fix=f"`{_in_ns(ns, accept)}` (DOCKER-USER runs before the policy; Podman's "
            f"`-s {subnet} -j ACCEPT` passes the replies)",
            hop=end.hop,
        )
    )


def explain_no_route(w: Walk, ns: Netns, hop: int | None) -> bool:
    """No route out of a container whose every network is internal (Podman gives such networks
    no gateway, so the container has no default route): network-internal, and True."""
    src, _ = w.endpoints
    if not w.request or src is None or src.netns != ns.inode or not src.networks:
        return False
    nets = {(n.runtime, n.name): n for n in w.snap.runtime_networks}
    mine = [nets.get((src.runtime, n.name)) for n in src.networks]
    if not all(n is not None and n.internal for n in mine):
        return False
    net = mine[0]
    assert net is not None
    rt = net.runtime
    w.add(
        finding(
            "network-internal",
            f"{src.name} is on {net.name}, an internal network: {rt} gives it no gateway, so "
            f"nothing leaves but to {', '.join(net.subnets) or 'its subnet'}",
            evidence=[
                f"{rt} network {net.name}: internal=true"
                + (f", bridge {net.bridge}" if net.bridge else ""),
                "routes: " + (", ".join(r.dst for r in ns.routes if r.table == 254) or "none"),
            ],
            fix=f"`{rt} network connect {_other_network(w, rt, net.name)} {src.name}` "
            f"(a non-internal network; {net.name} itself stays internal)",
            hop=hop,
        )
    )
    return True


# ---------------------------------------------------------------------- refused at the host


def explain_refused(
    w: Walk, ns: Netns, packet: Packet, listeners: list[Socket], hop: int | None
) -> bool:
    """A host port published on another address than the one asked: the finding, and True."""
    found: list[tuple[Container, PortMapping]] = [
        (c, p)
        for c in w.snap.containers
        for p in c.ports
        if p.host_port == packet.dport
        and p.proto == packet.proto
        and p.host_ip not in WILDCARDS
        and p.host_ip != packet.dst
        and c.host_netns in (None, ns.inode)
    ]
    if not found:
        return False
    c, pm = found[0]
    rt = c.runtime if c.runtime in ("docker", "podman") else "docker"
    bound = f"[{pm.host_ip}]" if ":" in pm.host_ip else pm.host_ip
    asked = f"[{packet.dst}]" if ":" in packet.dst else packet.dst
    where = [
        f"{s.proto} {s.local_ip}:{s.local_port}" + (f" ({s.process})" if s.process else "")
        for s in listeners
    ]
    w.add(
        finding(
            "port-published-elsewhere",
            f"{c.name} publishes {pm.proto}/{pm.host_port} on {bound} only; {asked}:"
            f"{packet.dport} is another address, which no DNAT rule takes",
            evidence=[
                f"{c.name}: {bound}:{pm.host_port}->{pm.container_port}/{pm.proto}",
                *(["listening: " + ", ".join(where)] if where else []),
            ],
            fix=f"use the bound address ({bound}:{pm.host_port}), or republish on {asked}: "
            f"recreate {c.name} with `-p {asked}:{pm.host_port}:{pm.container_port}` "
            f"({rt} cannot change a container's published ports)",
            hop=hop,
        )
    )
    return True


# ---------------------------------------------------------------------- after the walk


def after_walk(w: Walk, end: End) -> None:
    """Notes on a delivered request: a host port answered by docker-proxy (a hairpin)."""
    if end.status != "delivered" or end.packet is None or end.netns is None:
        return
    hop = w.hops[end.hop - 1] if end.hop else None
    if hop is None or hop.kind != "socket" or hop.direction != "request":
        return
    p = end.packet
    for proxy in w.snap.port_proxies:
        if (proxy.proto, proxy.host_port) != (p.proto, p.dport):
            continue
        if proxy.host_ip not in WILDCARDS and proxy.host_ip != p.dst:
            continue
        target = next(
            (
                c.name
                for c in w.snap.containers
                if any(n.ip == proxy.container_ip for n in c.networks)
            ),
            proxy.container_ip,
        )
        src, _ = w.endpoints
        who = src.name if src is not None else "the source"
        w.add(
            finding(
                "docker-proxy-hairpin",
                f"{who} reaches published port {p.dport}/{p.proto} on {p.dst} through the host: "
                f"docker-proxy takes the connection and opens a new one to {target} "
                f"({proxy.container_ip}:{proxy.container_port}); Docker's DNAT skips packets "
                "coming from its own bridges",
                evidence=[
                    f"docker-proxy[{proxy.pid}] -proto {proxy.proto} -host-ip {proxy.host_ip} "
                    f"-host-port {proxy.host_port} -container-ip {proxy.container_ip} "
                    f"-container-port {proxy.container_port}",
                ],
                fix=f"nothing to fix; {target} sees the connection come from the bridge's "
                f"gateway, not from {who} (connect to {proxy.container_ip}:"
                f"{proxy.container_port} directly to keep the source address)",
                hop=end.hop,
            )
        )
        return


# ---------------------------------------------------------------------- not running


def not_running(
    snap: Snapshot, topo: Topology, source: str, destination: str, proto: str | None = None
) -> Path | None:
    """The path for a source or destination that names a container which exists but does not
    run, or None. Only refs no running container answers to are looked up among the stopped."""
    if not snap.stopped:
        return None
    try:
        ref, port = parse_dest(destination)
    except BadInput:
        return None
    proto = proto or ("tcp" if port is not None else "icmp")
    stopped = _stopped(snap, source)
    if stopped is not None:
        other = replace(_as_asked(snap, destination, ref, port), protocol=proto)
        return _not_running_path(stopped, "source", other)
    stopped = _stopped(snap, ref)
    if stopped is None:
        return None
    src = resolve_source(snap, topo, source, None).endpoint
    return _not_running_path(stopped, "destination", src, port, proto)


def _as_asked(snap: Snapshot, text: str, ref: str, port: int | None) -> Endpoint:
    """The destination as far as it resolves without a source (the walk never starts)."""
    try:
        ipaddress.ip_address(ref)
        return Endpoint(asked=text, kind="ip", ip=ref, port=port)
    except ValueError:
        pass
    try:
        target = resolve_ref(snap, ref)
    except BadInput:
        return Endpoint(asked=text, kind="hostname", name=ref, port=port)
    if isinstance(target, Container):
        return Endpoint(
            asked=text, kind="container", name=target.name, runtime=target.runtime, port=port
        )
    return Endpoint(asked=text, kind="netns", name=target.label, netns=target.inode, port=port)


def _stopped(snap: Snapshot, ref: str) -> Container | None:
    if ref == "host":
        return None
    try:
        resolve_ref(snap, ref)
        return None  # a running container or a namespace answers to it
    except BadInput:
        pass
    exact = [c for c in snap.stopped if c.name == ref] or [
        c for c in snap.stopped if len(ref) >= 4 and c.id.startswith(ref)
    ]
    return exact[0] if len(exact) == 1 else None


def _not_running_path(
    c: Container, side: str, other: Endpoint, port: int | None = None, proto: str | None = None
) -> Path:
    rt = c.runtime if c.runtime in ("docker", "podman") else "docker"
    state = c.state + (f" (exit code {c.exit_code})" if c.exit_code is not None else "")
    summary = f"{c.name} exists but is not running: {state}"
    f = finding(
        "container-not-running",
        f"{summary}; the {side} has no network namespace until it runs",
        evidence=[f"{rt} container {c.name} ({c.id[:12]}): state {state}"],
        fix=f"`{rt} start {c.name}`"
        + (f" (and see why it stopped: `{rt} logs {c.name}`)" if c.state == "exited" else ""),
    )
    ep = Endpoint(
        asked=c.name, kind="container", name=c.name, runtime=c.runtime, port=port, protocol=proto
    )
    src, dst = (ep, other) if side == "source" else (other, ep)
    verdict = Verdict("unreachable", None, summary, reason="container-not-running")
    return Path(src, dst, (), verdict, (f,))
