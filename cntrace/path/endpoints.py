"""What `cntrace path SRC DEST` means: the source namespace and the destination address.

A destination is a container ref, an IP, IP:PORT, a hostname resolved as the source would resolve
it (its /etc/hosts, then Docker's or Podman's embedded DNS on user-defined networks), or
``host:PORT`` for a port published on the source's host. cntrace never sends a DNS query: names
are resolved from what the Snapshot knows, and a name only an external resolver could answer is
reported as such.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from cntrace.errors import BadInput
from cntrace.model import Container, Endpoint, Finding, Netns, Snapshot
from cntrace.path.findings import finding
from cntrace.path.routing import net
from cntrace.topology import Topology, resolve_ref

EMBEDDED_DNS = "127.0.0.11"  # Docker's resolver inside containers on user-defined networks
DNS_RUNTIMES = ("docker", "podman")
_HOSTPORT = re.compile(r"^(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[^:\s]+))(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class Source:
    """Where the packet starts: the endpoint named, its namespace and container."""

    endpoint: Endpoint
    netns: Netns
    container: Container | None


@dataclass(frozen=True)
class Destination:
    """Where the packet goes: the endpoint named, resolved to an address and port."""

    endpoint: Endpoint
    ip: str | None  # None when the name cannot be resolved from the source
    port: int | None
    proto: str
    container: Container | None = None
    host_netns: Netns | None = None  # set for host:PORT
    findings: tuple[Finding, ...] = ()


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _label(topo: Topology, ns: Netns) -> str:
    owner = topo.owner(ns.inode)
    if owner is not None:
        return owner.name
    return ns.label


def _container_endpoint(asked: str, c: Container, ns: Netns | None, **kw: object) -> Endpoint:
    return Endpoint(
        asked=asked,
        kind="container",
        name=c.name,
        runtime=c.runtime,
        netns=c.netns,
        netns_label=c.name if ns is not None else None,
        **kw,  # type: ignore[arg-type]
    )


def resolve_source(snap: Snapshot, topo: Topology, ref: str, dest_hint: str | None) -> Source:
    """``host`` is the namespace playing host for the destination container (the root namespace
    for real runtimes, the lab's host namespace in the lab); anything else is a container ref."""
    if ref == "host":
        ns = _host_for_hint(snap, topo, dest_hint)
        return Source(
            Endpoint(asked=ref, kind="host", name="host", netns=ns.inode, netns_label=ns.label),
            ns,
            None,
        )
    target = resolve_ref(snap, ref)
    if isinstance(target, Netns):
        ep = Endpoint(
            asked=ref, kind="netns", name=target.label, netns=target.inode, netns_label=target.label
        )
        return Source(ep, target, None)
    if target.state == "gone":
        raise BadInput(f"{target.name} is gone (it exited while cntrace looked)")
    own = snap.ns(target.netns)
    if own is None:
        raise BadInput(f"{target.name} has no network namespace cntrace can see")
    return Source(_container_endpoint(ref, target, own, ip=_primary_ip(own)), own, target)


def _host_for_hint(snap: Snapshot, topo: Topology, hint: str | None) -> Netns:
    if hint:
        try:
            target: Container | Netns | None = resolve_ref(snap, parse_dest(hint)[0])
        except BadInput:
            target = None
        if isinstance(target, Container):
            found = snap.ns(target.host_netns or topo.host_netns(target))
            if found is not None:
                return found
    root = snap.root
    if root is None:
        raise BadInput("this snapshot has no host namespace")
    return root


def _primary_ip(ns: Netns) -> str | None:
    for link in ns.links:
        if link.kind == "loopback":
            continue
        for a in link.addresses:
            if a.family == 4 and a.scope == "global":
                return a.address
    return None


def _port(digits: str, text: str) -> int:
    if len(digits) > 5 or not 0 < int(digits) < 65536:
        shown = digits if len(digits) <= 8 else digits[:8] + "..."
        raise BadInput(f"bad port {shown} in {_quoted(text)}: ports are 1-65535")
    return int(digits)


def _quoted(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def parse_dest(text: str) -> tuple[str, int | None]:
    """``(host, port)`` of a destination: an IP (IPv6 bare or bracketed), ``[IPv6]:PORT``,
    ``IP:PORT``, ``NAME[:PORT]``, ``pid:N[:PORT]``, ``netns:NAME[:PORT]`` or ``host:PORT``."""
    text = text.strip()
    if not text:
        raise BadInput("empty destination")
    if len(text) > 1024:
        raise BadInput(f"bad destination {_quoted(text)}: {len(text)} characters")
    if _is_ip(text):  # a bare IPv6 address: the colons are not a port
        return text, None
    for prefix in ("pid:", "netns:"):
        if text.startswith(prefix):
            ref, sep, digits = text[len(prefix) :].rpartition(":")
            if sep and ref and digits.isdigit():
                return prefix + ref, _port(digits, text)
            return text, None
    m = _HOSTPORT.match(text)
    if not m:
        raise BadInput(
            f"bad destination {_quoted(text)}: use NAME, IP, IP:PORT, [IPv6]:PORT, NAME:PORT, "
            "pid:N, netns:NAME or host:PORT"
        )
    if m.group("v6") and not _is_ip(m.group("v6")):
        raise BadInput(f"bad destination {_quoted(text)}: {m.group('v6')!r} is not an IP address")
    host = m.group("v6") or m.group("host")
    port = _port(m.group("port"), text) if m.group("port") else None
    return host, port


def resolve_destination(
    snap: Snapshot,
    topo: Topology,
    src: Source,
    text: str,
    *,
    port: int | None,
    proto: str | None,
) -> Destination:
    host, spec_port = parse_dest(text)
    if port is not None and not 0 < port < 65536:
        raise BadInput(f"bad port {port}: ports are 1-65535")
    if port is not None and spec_port is not None and port != spec_port:
        raise BadInput(f"{_quoted(text)} names port {spec_port} and --port says {port}: give one")
    port = port if port is not None else spec_port
    proto = proto or ("tcp" if port is not None else "icmp")
    if proto not in ("tcp", "udp", "icmp"):
        raise BadInput(f"unknown protocol {_quoted(proto)}: tcp, udp or icmp")
    if proto in ("tcp", "udp") and port is None:
        raise BadInput(f"--proto {proto} needs a port (DEST:PORT or --port)")
    if proto == "icmp" and port is not None:
        raise BadInput(f"--proto icmp has no ports: drop :{port} (or --port) or choose tcp/udp")

    if host == "host":
        return _published(snap, topo, src, text, port, proto)
    if _is_ip(host):
        owner = _owner_of(snap, topo, host)
        ep = Endpoint(
            asked=text,
            kind="ip",
            ip=host,
            port=port,
            protocol=proto,
            netns=owner.inode if owner else None,
            netns_label=_label(topo, owner) if owner else None,
        )
        if owner is not None and (c := topo.owner(owner.inode)) is not None:
            ep = Endpoint(
                asked=text,
                kind="ip",
                name=c.name,
                runtime=c.runtime,
                ip=host,
                port=port,
                protocol=proto,
                netns=owner.inode,
                netns_label=c.name,
            )
        return Destination(ep, host, port, proto)
    explicit_ref = host.startswith(("pid:", "netns:"))  # a ref, never a name to resolve
    if src.container is not None and src.container.runtime in DNS_RUNTIMES and not explicit_ref:
        return _by_dns(snap, topo, src, text, host, port, proto)
    target = resolve_ref(snap, host)
    if isinstance(target, Netns):
        ip = _primary_ip(target)
        ep = Endpoint(
            asked=text,
            kind="netns",
            name=target.label,
            ip=ip,
            port=port,
            protocol=proto,
            netns=target.inode,
            netns_label=target.label,
        )
        return Destination(ep, ip, port, proto)
    ip = reachable_ip(snap, src, target)
    ep = _container_endpoint(text, target, snap.ns(target.netns), ip=ip, port=port, protocol=proto)
    return Destination(ep, ip, port, proto, container=target)


def reachable_ip(snap: Snapshot, src: Source, target: Container) -> str | None:
    """The target's address the source would use: one on a subnet the source shares, else the
    target's first address."""
    src_subnets = [
        net(a.cidr) for link in src.netns.links for a in link.addresses if a.scope == "global"
    ]
    candidates = [n.ip for n in target.networks if n.ip]
    ns = snap.ns(target.netns)
    if ns is not None:
        candidates += [a for a in (_global_ips(ns)) if a not in candidates]
    for ip in candidates:
        if any(ipaddress.ip_address(ip) in s for s in src_subnets):
            return ip
    return candidates[0] if candidates else None


def _global_ips(ns: Netns) -> list[str]:
    return [
        a.address
        for link in ns.links
        if link.kind != "loopback"
        for a in link.addresses
        if a.scope == "global" and a.family == 4
    ]


def _owner_of(snap: Snapshot, topo: Topology, ip: str) -> Netns | None:
    """The namespace holding ``ip``, or None when none or several do (the same private address
    lives in many namespaces; the walk finds which one the packet reaches)."""
    owners = {
        ns.inode: ns
        for ns in snap.netns
        for link in ns.links
        for a in link.addresses
        if a.address == ip and link.kind != "loopback"
    }
    return next(iter(owners.values())) if len(owners) == 1 else None


def _published(
    snap: Snapshot, topo: Topology, src: Source, text: str, port: int | None, proto: str
) -> Destination:
    if port is None:
        raise BadInput("host:PORT needs a port")
    host_inode = None
    if src.container is not None:
        host_inode = src.container.host_netns or topo.host_netns(src.container)
    host_ns = snap.ns(host_inode) if host_inode else None
    if host_ns is None or host_ns.inode == src.netns.inode:
        host_ns = _neighbour_host(snap, src.netns) or snap.root
    if host_ns is None:
        raise BadInput("cannot tell which namespace is the host for this source")
    ip = _address_facing(host_ns, src.netns)
    if ip is None:
        raise BadInput(
            f"{src.endpoint.name or src.netns.label} has no address on a network "
            f"shared with the host ({host_ns.label})"
        )
    ep = Endpoint(
        asked=text,
        kind="published-port",
        name="host",
        ip=ip,
        port=port,
        protocol=proto,
        netns=host_ns.inode,
        netns_label=host_ns.label,
    )
    return Destination(ep, ip, port, proto, host_netns=host_ns)


def _neighbour_host(snap: Snapshot, ns: Netns) -> Netns | None:
    """For a namespace that is not a container (the lab's upstream): the namespace at the other
    end of its links that holds bridges."""
    for link in ns.links:
        if link.peer_netns is not None:
            other = snap.ns(link.peer_netns)
            if other is not None and any(lk.kind == "bridge" for lk in other.links):
                return other
    return None


def _address_facing(host: Netns, src: Netns) -> str | None:
    """An address of ``host`` on a subnet that ``src`` is directly connected to."""
    subnets = [net(a.cidr) for link in src.links for a in link.addresses if a.scope == "global"]
    for link in host.links:
        for a in link.addresses:
            if a.scope == "global" and any(ipaddress.ip_address(a.address) in s for s in subnets):
                return a.address
    return None


def _by_dns(
    snap: Snapshot,
    topo: Topology,
    src: Source,
    text: str,
    name: str,
    port: int | None,
    proto: str,
) -> Destination:
    """Resolve ``name`` as a Docker/Podman container would: /etc/hosts, then the embedded DNS,
    which answers only for containers on user-defined networks the source is attached to."""
    assert src.container is not None
    c = src.container
    resolver = c.resolver
    if resolver and name in resolver.hosts and _is_ip(resolver.hosts[name]):
        # (a line of /etc/hosts whose first word is no address is ignored, as by the resolver)
        ip = resolver.hosts[name]
        owner = _owner_of(snap, topo, ip)
        ep = Endpoint(
            asked=text,
            kind="hostname",
            name=name,
            ip=ip,
            port=port,
            protocol=proto,
            netns=owner.inode if owner else None,
            netns_label=_label(topo, owner) if owner else None,
        )
        return Destination(ep, ip, port, proto)
    nameservers = resolver.nameservers if resolver else ()
    user_nets = {
        n.name for n in c.networks if n.driver == "bridge" and n.name not in ("bridge", "podman")
    }
    embedded = bool(user_nets) and (
        EMBEDDED_DNS in nameservers
        or any(n.gateway in nameservers for n in c.networks if n.gateway)
    )
    matches = [
        (other, n)
        for other in snap.containers
        if other.runtime == c.runtime
        for n in other.networks
        if name in (other.name, *n.aliases) or (len(name) >= 12 and other.id.startswith(name))
    ]
    by_id = {o.id: o for o, n in matches if name not in (o.name, *n.aliases)}
    if len(by_id) > 1:  # an id prefix of several containers: never pick one silently
        raise BadInput(
            f"ambiguous container {_quoted(name)}; candidates: "
            + ", ".join(f"{o.name} ({o.id[: len(name) + 4]})" for o in list(by_id.values())[:8])
        )
    if embedded:
        for other, n in matches:
            if n.name in user_nets and n.ip:
                ep = _container_endpoint(
                    text, other, snap.ns(other.netns), ip=n.ip, port=port, protocol=proto
                )
                return Destination(ep, n.ip, port, proto, container=other)
    ep = Endpoint(asked=text, kind="hostname", name=name, port=port, protocol=proto)
    ns_text = ", ".join(nameservers) or "none"
    if matches:
        other, n = matches[0]
        why = (
            f"{c.name} is only on the default network, where {c.runtime} provides no DNS for "
            f"container names"
            if not user_nets
            else f"{c.name} and {other.name} share no user-defined network ({c.name}: "
            f"{', '.join(sorted(user_nets))}; {other.name}: {n.name})"
        )
        f = finding(
            "dns-no-embedded-resolver",
            f"{c.name} cannot resolve {name!r}: {why}",
            evidence=[
                f"{c.name} resolv.conf nameservers: {ns_text}",
                f"{c.name} networks: {', '.join(x.name for x in c.networks) or 'none'}",
                f"{other.name} is on network {n.name} ({n.ip})",
            ],
            fix=f"put both on one user-defined network (`{c.runtime} network create appnet; "
            f"{c.runtime} network connect appnet {c.name}; {c.runtime} network connect "
            f"appnet {other.name}`), or use the address {n.ip}",
        )
        return Destination(ep, None, port, proto, container=other, findings=(f,))
    f = finding(
        "dns-unresolved",
        f"{name!r} is not a container cntrace can see; {c.name} would ask {ns_text}, "
        "which cntrace does not query",
        evidence=[f"{c.name} resolv.conf nameservers: {ns_text}"],
        fix=f"give the address instead (`cntrace path {c.name} IP`)",
    )
    return Destination(ep, None, port, proto, findings=(f,))
