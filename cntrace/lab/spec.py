"""The built-in lab's blueprint: a Docker-like host made only of network namespaces.

The plan is pure data (names, subnets, the `ip -batch` scripts and the iptables ruleset), so it can
be printed (`cntrace lab up --print`) and unit-tested without root. Every namespace is named
``<lab>.<role>``; lab names may not contain dots, so ``<lab>.*`` belongs to exactly one lab.

    upstream (203.0.113.10, 192.0.2.1)        "the internet", TEST-NET addresses only
        | eth0 <-> eth0 (192.0.2.2)           the host's uplink
      host  ip_forward=1, Docker-style iptables (MASQUERADE, DNAT, isolation)
        |-- lab0 10.210.0.1/16  "bridge" network:  web (publishes 8080->80), client
        `-- lab1 10.211.0.1/16  "backend" network: api, db
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from cntrace.errors import BadInput

DEFAULT_NAME = "cntrace-lab"
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,23}$")

UPLINK_HOST_IP = "192.0.2.2"
UPLINK_UPSTREAM_IP = "192.0.2.1"
UPLINK_PREFIX = 24
INTERNET_IP = "203.0.113.10"  # the upstream server, playing a public address
INTERNET_PREFIX = 24

TCP_PORT = 80
UDP_PORT = 9000


@dataclass(frozen=True)
class NetworkSpec:
    """A bridge network on the lab host."""

    name: str
    bridge: str
    subnet: str

    @property
    def gateway(self) -> str:
        return str(next(ipaddress.ip_network(self.subnet).hosts()))

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen


NETWORKS = (
    NetworkSpec("bridge", "lab0", "10.210.0.0/16"),
    NetworkSpec("backend", "lab1", "10.211.0.0/16"),
)


@dataclass(frozen=True)
class ContainerSpec:
    """One lab container: its own namespace, an eth0 veth into a bridge, a server process."""

    name: str
    network: str
    ip: str
    published: tuple[tuple[str, int, int], ...] = ()  # (proto, host_port, container_port)
    full_server: bool = True  # the Python server (TCP+UDP); scaled containers run busybox httpd

    @property
    def host_veth(self) -> str:
        return f"veth-{self.name}"[:15]

    @property
    def mac(self) -> str:
        """Docker-style MAC derived from the IP, so FDB entries are predictable."""
        octets = [int(x) for x in self.ip.split(".")]
        return "02:42:" + ":".join(f"{o:02x}" for o in octets)


@dataclass(frozen=True)
class LabPlan:
    """Everything `lab up` will create, derived from a name and a container count."""

    name: str
    containers: tuple[ContainerSpec, ...]
    networks: tuple[NetworkSpec, ...] = NETWORKS
    extra: int = 0
    _by_name: dict[str, ContainerSpec] = field(default_factory=dict, compare=False, repr=False)

    def ns(self, role: str) -> str:
        return f"{self.name}.{role}"

    @property
    def host_ns(self) -> str:
        return self.ns("host")

    @property
    def upstream_ns(self) -> str:
        return self.ns("upstream")

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.host_ns, self.upstream_ns, *(self.ns(c.name) for c in self.containers))

    def network(self, name: str) -> NetworkSpec:
        for net in self.networks:
            if net.name == name:
                return net
        raise KeyError(name)

    def container(self, name: str) -> ContainerSpec:
        if not self._by_name:
            self._by_name.update((c.name, c) for c in self.containers)
        try:
            return self._by_name[name]
        except KeyError:
            raise BadInput(
                f"the lab has no container {name!r} "
                f"(it has: {', '.join(c.name for c in self.containers[:8])})"
            ) from None


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise BadInput(
            f"bad lab name {name!r}: use 1-24 lower-case letters, digits and dashes, "
            "starting with a letter"
        )
    return name


MAX_EXTRA = 8000
# Scaled containers per bridge. The kernel allows 1,024 ports, but a broadcast (a container's
# ARP for its gateway) is flooded to every port in one softirq, each copy queued on the CPU's
# backlog (net.core.netdev_max_backlog, 1,000 by default): on a bridge of 1,000 ports the copies
# fill it and the gateway's own reply is dropped, so no container can resolve its gateway.
PER_BRIDGE = 800


def _scale_networks(extra: int) -> tuple[NetworkSpec, ...]:
    """The bridges scaled containers past the first 1,600 go into (800 each: lab2, lab3...)."""
    over = max(0, extra - 2 * PER_BRIDGE)
    count = (over + PER_BRIDGE - 1) // PER_BRIDGE
    return tuple(
        NetworkSpec(f"scale{k}", f"lab{k + 2}", f"10.{212 + k}.0.0/16") for k in range(count)
    )


def plan(name: str = DEFAULT_NAME, extra: int = 0) -> LabPlan:
    """The default four containers plus ``extra`` scaled ones: the first 1,600 alternate between
    the two networks (as they always have), the rest fill extra bridges of 800 ports each."""
    check_name(name)
    if extra < 0 or extra > MAX_EXTRA:
        raise BadInput(f"--containers must be between 0 and {MAX_EXTRA}")
    scale = _scale_networks(extra)
    containers = [
        ContainerSpec("web", "bridge", "10.210.0.2", published=(("tcp", 8080, TCP_PORT),)),
        ContainerSpec("client", "bridge", "10.210.0.3"),
        ContainerSpec("api", "backend", "10.211.0.2"),
        ContainerSpec("db", "backend", "10.211.0.3"),
    ]
    for i in range(extra):
        if i < 2 * PER_BRIDGE:
            net, slot = NETWORKS[i % 2], i // 2
        else:
            net, slot = scale[(i - 2 * PER_BRIDGE) // PER_BRIDGE], (i - 2 * PER_BRIDGE) % PER_BRIDGE
        base = ipaddress.ip_network(net.subnet).network_address
        ip = str(base + 257 + slot)  # 10.21x.1.1 onwards: clear of the named containers
        containers.append(ContainerSpec(f"c{i + 1:04d}", net.name, ip, full_server=False))
    return LabPlan(name, tuple(containers), networks=NETWORKS + scale, extra=extra)


# ----------------------------------------------------------------------------- scripts


def script_namespaces(p: LabPlan) -> str:
    """`ip -batch` lines creating every namespace."""
    return "".join(f"netns add {ns}\n" for ns in p.namespaces)


def script_host(p: LabPlan) -> str:
    """`ip -n <host> -batch`: bridges, uplink, and every container's veth pair."""
    lines = ["link set lo up"]
    for i, net in enumerate(p.networks):
        # A fixed MAC, as Docker gives docker0: a bridge otherwise takes the lowest MAC of its
        # ports and changes it when ports come and go, leaving stale ARP entries behind.
        lines += [
            f"link add {net.bridge} address 02:42:c0:a8:{i:02x}:01 type bridge",
            f"addr add {net.gateway}/{net.prefixlen} dev {net.bridge}",
            f"link set {net.bridge} up",
        ]
    lines += [
        f"link add eth0 type veth peer name eth0 netns {p.upstream_ns}",
        f"addr add {UPLINK_HOST_IP}/{UPLINK_PREFIX} dev eth0",
        "link set eth0 up",
        f"route add default via {UPLINK_UPSTREAM_IP} dev eth0",
    ]
    for c in p.containers:
        bridge = p.network(c.network).bridge
        lines += [
            f"link add {c.host_veth} type veth peer name eth0 netns {p.ns(c.name)}",
            f"link set {c.host_veth} master {bridge} up",
        ]
    return "\n".join(lines) + "\n"


def script_upstream() -> str:
    return (
        "link set lo up\n"
        f"addr add {UPLINK_UPSTREAM_IP}/{UPLINK_PREFIX} dev eth0\n"
        f"addr add {INTERNET_IP}/{INTERNET_PREFIX} dev eth0\n"
        "link set eth0 up\n"
    )


def script_container(p: LabPlan, c: ContainerSpec) -> str:
    """`ip -batch` lines configuring one container. A scaled container gets no IPv6 link-local
    address (Docker's default: IPv6 off in containers): each would send router solicitations
    that the bridge floods to its 1,000 ports, and at 5,000 containers that storm overflows the
    kernel's backlog (netdev_max_backlog) so ARP replies are lost and paths fail."""
    net = p.network(c.network)
    quiet = "" if c.full_server else "link set eth0 addrgenmode none\n"
    return (
        "link set lo up\n"
        f"link set eth0 address {c.mac}\n"
        f"{quiet}"
        f"addr add {c.ip}/{net.prefixlen} dev eth0\n"
        "link set eth0 up\n"
        f"route add default via {net.gateway} dev eth0\n"
    )


def iptables_ruleset(p: LabPlan, *, masquerade: bool = True) -> str:
    """The host's ruleset, laid out the way Docker (iptables back end) writes it."""
    nat = [
        "*nat",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        ":DOCKER - [0:0]",
        "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
        "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
    ]
    if masquerade:
        nat += [f"-A POSTROUTING -s {n.subnet} ! -o {n.bridge} -j MASQUERADE" for n in p.networks]
    for c in p.containers:
        for proto, _host_port, cport in c.published:
            nat.append(
                f"-A POSTROUTING -s {c.ip}/32 -d {c.ip}/32 -p {proto} -m {proto} "
                f"--dport {cport} -j MASQUERADE"
            )
    nat += [f"-A DOCKER -i {n.bridge} -j RETURN" for n in p.networks]
    for c in p.containers:
        bridge = p.network(c.network).bridge
        for proto, host_port, cport in c.published:
            nat.append(
                f"-A DOCKER ! -i {bridge} -p {proto} -m {proto} --dport {host_port} "
                f"-j DNAT --to-destination {c.ip}:{cport}"
            )
    nat.append("COMMIT")

    flt = [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":DOCKER - [0:0]",
        ":DOCKER-ISOLATION-STAGE-1 - [0:0]",
        ":DOCKER-ISOLATION-STAGE-2 - [0:0]",
        ":DOCKER-USER - [0:0]",
        "-A FORWARD -j DOCKER-USER",
        "-A FORWARD -j DOCKER-ISOLATION-STAGE-1",
    ]
    for n in p.networks:
        b = n.bridge
        flt += [
            f"-A FORWARD -o {b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            f"-A FORWARD -o {b} -j DOCKER",
            f"-A FORWARD -i {b} ! -o {b} -j ACCEPT",
            f"-A FORWARD -i {b} -o {b} -j ACCEPT",
        ]
    for c in p.containers:
        bridge = p.network(c.network).bridge
        for proto, _host_port, cport in c.published:
            flt.append(
                f"-A DOCKER -d {c.ip}/32 ! -i {bridge} -o {bridge} -p {proto} -m {proto} "
                f"--dport {cport} -j ACCEPT"
            )
    flt += [
        f"-A DOCKER-ISOLATION-STAGE-1 -i {n.bridge} ! -o {n.bridge} -j DOCKER-ISOLATION-STAGE-2"
        for n in p.networks
    ]
    flt.append("-A DOCKER-ISOLATION-STAGE-1 -j RETURN")
    flt += [f"-A DOCKER-ISOLATION-STAGE-2 -o {n.bridge} -j DROP" for n in p.networks]
    flt += ["-A DOCKER-ISOLATION-STAGE-2 -j RETURN", "-A DOCKER-USER -j RETURN", "COMMIT"]
    return "\n".join(nat + flt) + "\n"


HOST_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
}
