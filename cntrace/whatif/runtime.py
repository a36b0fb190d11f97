"""Runtime actions that are kernel changes: ``docker network connect NET C`` (a veth into the
network's bridge and an address on its subnet), ``docker run -p H:C --name C ...`` (the DNAT,
ACCEPT and hairpin MASQUERADE rules Docker's iptables back end writes for a published port), and a
server (re)started to listen (``nc -l``, ``socat TCP-LISTEN``, ``python3 -m http.server``).

``docker`` stands for podman and nerdctl too: the change is made on the snapshot's own runtime
networks, whichever runtime (or the lab) created them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace

from cntrace.errors import BadInput
from cntrace.model import (
    Address,
    BridgePort,
    Container,
    ContainerNetwork,
    FdbEntry,
    Link,
    Netns,
    PortMapping,
    Route,
    Snapshot,
    Socket,
)
from cntrace.topology import Topology, resolve_ref
from cntrace.whatif.change import with_netns
from cntrace.whatif.iptables import IptablesOp

ENGINES = ("docker", "podman", "nerdctl")
LISTENERS = ("nc", "ncat", "netcat", "socat", "python3", "python", "listen")


def parse(words: list[str]) -> ConnectOp | PublishOp | ListenOp:
    head = words[0].rsplit("/", 1)[-1]
    if head in LISTENERS:
        return _parse_listen(head, words[1:])
    rest = words[1:]
    if rest[:2] == ["network", "connect"]:
        return _parse_connect(rest[2:])
    if rest[:1] == ["run"] or rest[:2] == ["container", "run"]:
        return _parse_run(rest[1:] if rest[0] == "run" else rest[2:])
    raise BadInput(
        f"what-if: `{' '.join(words[:3])}` is not a runtime change cntrace models "
        "(network connect, run -p)"
    )


def _container(snap: Snapshot, ref: str) -> Container:
    found = resolve_ref(snap, ref)
    if not isinstance(found, Container):
        raise BadInput(f"what-if: {ref} is a namespace, not a container")
    return found


# --------------------------------------------------------------------------- network connect


@dataclass(frozen=True)
class ConnectOp:
    """Connecting a container to a network, as `docker network connect` would."""

    network: str
    container: str
    ip: str | None = None
    aliases: tuple[str, ...] = ()
    kind: str = "network-connect"
    needs_netns: bool = False

    def apply(self, snap: Snapshot, ns: Netns | None) -> Snapshot:
        c = _container(snap, self.container)
        near = _host_sides(snap, c)
        net = _network(snap, self.network, near)
        if any(n.name == net.name for n in c.networks):
            raise BadInput(f"what-if: {c.name} is already connected to network {net.name}")
        if not net.bridge or net.ip is None or net.prefixlen is None:
            raise BadInput(f"what-if: network {net.name} has no bridge and subnet cntrace knows")
        topo = Topology(snap)
        # Two hosts (labs, nested nodes) may each have a bridge of that name: the container's
        # own host side is the one `docker network connect` would use.
        hosts = [
            h
            for h in topo.hosts()
            if any(lk.name == net.bridge and lk.kind == "bridge" for lk in h.links)
        ]
        host = next((h for h in hosts if h.inode in near), hosts[0] if hosts else None)
        own = snap.ns(c.netns)
        if host is None or own is None:
            raise BadInput(f"what-if: cannot find bridge {net.bridge} or {c.name}'s namespace")
        subnet = ipaddress.ip_network(f"{net.ip}/{net.prefixlen}", strict=False)
        ip = self.ip or _free_address(snap, subnet, net.gateway)
        if ipaddress.ip_address(ip) not in subnet:
            raise BadInput(f"what-if: {ip} is not in {net.name}'s subnet {subnet}")
        mac = "02:42:" + ":".join(f"{int(o):02x}" for o in ip.split("."))
        bridge = next(lk for lk in host.links if lk.name == net.bridge)
        h_index = max(lk.ifindex for lk in host.links) + 1
        c_index = max([lk.ifindex for lk in own.links] or [1]) + 1
        n_eth = sum(1 for lk in own.links if lk.name.startswith("eth"))
        c_name = f"eth{n_eth}"
        h_name = f"veth{c.name[:7]}{n_eth}"[:15]
        h_link = Link(
            h_index,
            h_name,
            "veth",
            mac=host_mac(ip),
            mtu=bridge.mtu,
            master=bridge.ifindex,
            peer_ifindex=c_index,
            peer_netns=own.inode,
            bridge_port=BridgePort(),
        )
        c_link = Link(
            c_index,
            c_name,
            "veth",
            mac=mac,
            mtu=bridge.mtu,
            peer_ifindex=h_index,
            peer_netns=host.inode,
            addresses=(Address(4, ip, subnet.prefixlen, broadcast=str(subnet.broadcast_address)),),
        )
        routes = (
            Route(4, str(subnet), 254, oif=c_name, prefsrc=ip, scope="link", protocol="kernel"),
            Route(
                4, f"{ip}/32", 255, "local", oif=c_name, prefsrc=ip, scope="host", protocol="kernel"
            ),
            Route(
                4,
                f"{subnet.broadcast_address}/32",
                255,
                "broadcast",
                oif=c_name,
                prefsrc=ip,
                scope="link",
                protocol="kernel",
            ),
        )
        # The port's own address, and the container's: it sends as soon as its link is up
        # (IPv6 duplicate-address detection), so the bridge learns it.
        fdb = (
            FdbEntry(mac, h_name, net.bridge),
            FdbEntry(h_link.mac or "", h_name, net.bridge, local=True),
        )
        new_host = replace(host, links=(*host.links, h_link), fdb=(*host.fdb, *fdb))
        new_own = replace(own, links=(*own.links, c_link), routes=(*own.routes, *routes))
        attached = replace(net, ip=ip, mac=mac, aliases=self.aliases, ipv6=None)
        new_c = replace(c, networks=(*c.networks, attached))
        snap = with_netns(snap, new_host, new_own)
        return replace(snap, containers=tuple(new_c if x is c else x for x in snap.containers))


def host_mac(ip: str) -> str:
    return "0a:58:" + ":".join(f"{int(o):02x}" for o in ip.split("."))


def _host_sides(snap: Snapshot, c: Container) -> set[int]:
    """The namespaces holding the peers of ``c``'s veths (its hosts)."""
    own = snap.ns(c.netns)
    return {lk.peer_netns for lk in (own.links if own else ()) if lk.peer_netns is not None}


def _network(snap: Snapshot, name: str, near: AbstractSet[int] = frozenset()) -> ContainerNetwork:
    """The network called ``name`` (or with that bridge), as containers on ``near`` hosts see it
    first: another host may have a network of the same name with another subnet."""
    found: list[tuple[bool, ContainerNetwork]] = []
    for c in snap.containers:
        mine = bool(_host_sides(snap, c) & near) if near else False
        found += [(mine, n) for n in c.networks if name in (n.name, n.bridge)]
    if found:
        return next((n for mine, n in found if mine), found[0][1])
    known = sorted({n.name for c in snap.containers for n in c.networks})
    raise BadInput(f"what-if: unknown network {name!r}; known: {', '.join(known) or 'none'}")


def _free_address(
    snap: Snapshot, subnet: ipaddress.IPv4Network | ipaddress.IPv6Network, gateway: str | None
) -> str:
    used = {gateway}
    for ns in snap.netns:
        for lk in ns.links:
            used.update(a.address for a in lk.addresses)
    for c in snap.containers:
        used.update(n.ip for n in c.networks if n.ip)
    for host in subnet.hosts():
        if str(host) not in used:
            return str(host)
    raise BadInput(f"what-if: no free address left in {subnet}")


def _parse_connect(words: list[str]) -> ConnectOp:
    ip = None
    aliases: list[str] = []
    pos: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        key, eq, value = w.partition("=")
        if key in ("--ip", "--alias") and not eq and i + 1 < len(words):
            value = words[i + 1]
            i += 1
        if key == "--ip":
            ip = value
        elif key == "--alias":
            aliases.append(value)
        elif w.startswith("-"):
            raise BadInput(f"what-if: docker network connect {w} is not supported")
        else:
            pos.append(w)
        i += 1
    if len(pos) != 2:
        raise BadInput("what-if: docker network connect [--ip IP] NETWORK CONTAINER")
    return ConnectOp(pos[0], pos[1], ip, tuple(aliases))


# --------------------------------------------------------------------------- publish


@dataclass(frozen=True)
class PublishOp:
    """Publishing a container's ports, as `docker run -p` would."""

    container: str
    ports: tuple[PortMapping, ...]
    kind: str = "publish"
    needs_netns: bool = False

    def apply(self, snap: Snapshot, ns: Netns | None) -> Snapshot:
        c = _container(snap, self.container)
        bridged = [n for n in c.networks if n.bridge and n.ip]
        if not bridged:
            raise BadInput(f"what-if: {c.name} is on no bridge network; a port cannot be published")
        net = bridged[0]
        host = snap.ns(c.host_netns or Topology(snap).host_netns(c))
        if host is None:
            raise BadInput(f"what-if: cannot find {c.name}'s host namespace")
        if host.ruleset.nft_json and not (
            host.ruleset.iptables_nft or host.ruleset.iptables_legacy
        ):
            raise BadInput("what-if: publishing is modelled for Docker's iptables back end only")
        for p in self.ports:
            on = [] if p.host_ip in ("0.0.0.0", "") else ["-d", p.host_ip]
            ip, br, proto = net.ip or "", net.bridge or "", p.proto
            m = ["-p", proto, "-m", proto]
            rules = (
                (
                    "nat",
                    "POSTROUTING",
                    ["-s", ip, "-d", ip, *m, "--dport", str(p.container_port), "-j", "MASQUERADE"],
                ),
                (
                    "nat",
                    "DOCKER",
                    [
                        *on,
                        "!",
                        "-i",
                        br,
                        *m,
                        "--dport",
                        str(p.host_port),
                        "-j",
                        "DNAT",
                        "--to-destination",
                        f"{ip}:{p.container_port}",
                    ],
                ),
                (
                    "filter",
                    "DOCKER",
                    [
                        "-d",
                        ip,
                        "!",
                        "-i",
                        br,
                        "-o",
                        br,
                        *m,
                        "--dport",
                        str(p.container_port),
                        "-j",
                        "ACCEPT",
                    ],
                ),
            )
            for table, chain, spec in rules:
                op = IptablesOp("iptables", False, None, table, "-A", chain, tuple(spec))
                snap = op.apply(snap, snap.ns(host.inode))
        new_c = replace(c, ports=(*c.ports, *self.ports))
        return replace(snap, containers=tuple(new_c if x is c else x for x in snap.containers))


def _port_mapping(text: str) -> PortMapping:
    spec, _, proto = text.partition("/")
    parts = spec.rsplit(":", 2)
    try:
        if len(parts) == 3:
            return PortMapping(proto or "tcp", int(parts[1]), int(parts[2]), parts[0])
        if len(parts) == 2:
            return PortMapping(proto or "tcp", int(parts[0]), int(parts[1]))
    except ValueError:
        pass
    raise BadInput(f"what-if: -p {text}: write [IP:]HOST_PORT:CONTAINER_PORT[/PROTO]")


def _parse_run(words: list[str]) -> PublishOp:
    name = None
    ports: list[PortMapping] = []
    i = 0
    while i < len(words):
        w = words[i]
        key, eq, value = w.partition("=")
        if key in ("-p", "--publish", "--name") and not eq and i + 1 < len(words):
            value = words[i + 1]
            i += 1
        if key in ("-p", "--publish"):
            ports.append(_port_mapping(value))
        elif key == "--name":
            name = value
        i += 1
    if name is None or not ports:
        raise BadInput("what-if: docker run -p HOST:CONTAINER --name NAME ... (re-creates NAME)")
    return PublishOp(name, tuple(ports))


# --------------------------------------------------------------------------- listeners


@dataclass(frozen=True)
class ListenOp:
    """A server (re)started on ADDR:PORT: the namespace's listeners on that port are replaced,
    as restarting the service with a new bind address does."""

    proto: str
    address: str
    port: int
    kind: str = "listen"
    needs_netns: bool = True

    def apply(self, snap: Snapshot, ns: Netns | None) -> Snapshot:
        assert ns is not None
        family = 6 if ":" in self.address else 4
        keep = tuple(s for s in ns.sockets if (s.proto, s.local_port) != (self.proto, self.port))
        state = "listen" if self.proto == "tcp" else "unconn"
        sock = Socket(self.proto, family, self.address, self.port, state=state)
        return with_netns(snap, replace(ns, sockets=(*keep, sock)))


def _parse_listen(head: str, words: list[str]) -> ListenOp:
    if head == "socat":
        return _parse_socat(words)
    if head.startswith("python"):
        return _parse_http_server(words)
    if head == "listen":  # cntrace's own spelling: listen [tcp|udp] [ADDR:]PORT
        proto = words[0] if words and words[0] in ("tcp", "udp") else "tcp"
        rest = words[1:] if words and words[0] in ("tcp", "udp") else words
        if len(rest) != 1:
            raise BadInput("what-if: listen [tcp|udp] [ADDR:]PORT")
        host, _, num = rest[0].rpartition(":")
        return ListenOp(proto, host.strip("[]") or "0.0.0.0", _num(num))
    return _parse_nc(words)


_SOCAT_LISTEN = ("TCP-LISTEN", "TCP4-LISTEN", "UDP-LISTEN", "UDP4-LISTEN", "UDP-RECV")


def _parse_socat(words: list[str]) -> ListenOp:
    for w in words:
        address_type, _, rest = w.partition(":")
        if address_type.upper() in _SOCAT_LISTEN:
            first, *opts = rest.split(",")
            bind = next((o[5:] for o in opts if o.startswith("bind=")), "0.0.0.0")
            proto = "udp" if address_type.upper().startswith("UDP") else "tcp"
            return ListenOp(proto, bind, _num(first))
    raise BadInput("what-if: socat needs TCP-LISTEN:PORT or UDP-LISTEN:PORT")


def _parse_http_server(words: list[str]) -> ListenOp:
    if words[:2] != ["-m", "http.server"]:
        raise BadInput("what-if: python3 -m http.server [PORT] [--bind ADDR]")
    rest = words[2:]
    bind = "0.0.0.0"
    http_port = 8000
    i = 0
    while i < len(rest):
        if rest[i] in ("--bind", "-b") and i + 1 < len(rest):
            bind = rest[i + 1]
            i += 1
        elif rest[i].isdigit():
            http_port = _num(rest[i])
        i += 1
    return ListenOp("tcp", bind, http_port)


def _parse_nc(words: list[str]) -> ListenOp:
    """nc / ncat / netcat: -l, -u, -k, -p PORT, -s ADDR, or `nc -l [ADDR] PORT`."""
    proto, listen, addr = "tcp", False, "0.0.0.0"
    port: int | None = None
    pos: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w.startswith("-") and len(w) > 1:
            flags = w[1:]
            if "p" in flags or "s" in flags:
                if i + 1 >= len(words):
                    raise BadInput(f"what-if: nc {w} needs a value")
                if flags.endswith("p"):
                    port = _num(words[i + 1])
                else:
                    addr = words[i + 1]
                i += 1
            listen |= "l" in flags
            if "u" in flags:
                proto = "udp"
        else:
            pos.append(w)
        i += 1
    if len(pos) == 2:
        addr, port = pos[0], _num(pos[1])
    elif len(pos) == 1:
        port = _num(pos[0])
    if not listen or port is None:
        raise BadInput("what-if: nc -l [-u] [-s ADDR] -p PORT (a listener)")
    return ListenOp(proto, addr, port)


def _num(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise BadInput(f"what-if: bad port {text!r}")
    return int(text)
