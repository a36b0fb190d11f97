"""The records of one namespace's network state that discovery reads: links and their addresses,
bridge and VXLAN details, routes, policy rules, neighbours, FDB entries and sockets.

Frozen dataclasses of plain values, like the rest of cntrace.model (which re-exports every name
here: import them from there). Nothing here reads the system.
"""

from __future__ import annotations

from dataclasses import dataclass

# --------------------------------------------------------------------------- links and addresses


@dataclass(frozen=True, slots=True)
class Address:
    """An IP address configured on a link (``ip addr``)."""

    family: int
    address: str
    prefixlen: int
    scope: str = "global"  # global | link | host | site
    broadcast: str | None = None

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True, slots=True)
class BridgePort:
    """Per-port bridge state (IFLA_PROTINFO / IFLA_BRPORT_*): what decides whether frames pass."""

    state: str = "forwarding"  # disabled | listening | learning | forwarding | blocking
    learning: bool = True
    flood: bool = True
    hairpin: bool = False
    isolated: bool = False
    cost: int | None = None
    priority: int | None = None


@dataclass(frozen=True, slots=True)
class BridgeInfo:
    """Bridge-wide settings that change forwarding decisions."""

    stp: bool = False
    vlan_filtering: bool = False
    forward_delay: int | None = None
    ageing_time: int | None = None
    nf_call_iptables: bool | None = None  # per-bridge override of bridge-nf-call-iptables


@dataclass(frozen=True, slots=True)
class Vxlan:
    """A VXLAN device's tunnel settings (IFLA_VXLAN_*): what the outer packet is made of."""

    vni: int
    port: int = 8472  # the UDP destination port (the kernel's default; IANA's is 4789)
    local: str | None = None  # the outer source address
    remote: str | None = None  # a unicast remote or multicast group (the default destination)
    dev: str | None = None  # the underlay device the tunnel is bound to
    learning: bool = True


@dataclass(frozen=True, slots=True)
class Link:
    """A network interface inside one namespace.

    ``peer_ifindex`` / ``peer_netns`` name the other end of a veth (or the lower device of a
    macvlan/vlan); ``peer_netns`` is the peer's namespace inode when it lives elsewhere, or None
    when it is in the same namespace or unknown. ``peer_nsid`` (the kernel's IFLA_LINK_NETNSID, the
    peer's namespace as this namespace numbers it) is kept only when that namespace could not be
    identified: it says the peer is elsewhere, not in this namespace.
    """

    ifindex: int
    name: str
    kind: str = "device"  # device | loopback | veth | bridge | dummy | vxlan | macvlan | vlan | ...
    mac: str | None = None
    mtu: int = 1500
    admin_up: bool = True
    oper_state: str = "up"  # up | down | unknown | lowerlayerdown | dormant
    master: int | None = None  # ifindex of the bridge (or bond/vrf) this link is enslaved to
    peer_ifindex: int | None = None
    peer_netns: int | None = None
    peer_nsid: int | None = None
    addresses: tuple[Address, ...] = ()
    bridge: BridgeInfo | None = None
    bridge_port: BridgePort | None = None
    vxlan_id: int | None = None
    macvlan_mode: str | None = None
    alias: str | None = None
    vxlan: Vxlan | None = None

    @property
    def is_up(self) -> bool:
        """Carrier and admin state together: what lets a packet leave."""
        return self.admin_up and self.oper_state in ("up", "unknown")


# --------------------------------------------------------------------------- routing


@dataclass(frozen=True, slots=True)
class Route:
    """One route (``ip route show table all``); ``dst`` is a CIDR, the default route 0.0.0.0/0."""

    family: int
    dst: str
    table: int = 254
    type: str = "unicast"  # unicast | local | broadcast | blackhole | unreachable | prohibit | ...
    gateway: str | None = None
    oif: str | None = None
    prefsrc: str | None = None
    metric: int = 0
    scope: str = "global"
    protocol: str = "boot"


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """A routing policy rule (``ip rule``)."""

    family: int
    priority: int
    table: int
    action: str = "lookup"  # lookup | blackhole | unreachable | prohibit | goto | nop
    src: str | None = None
    dst: str | None = None
    iif: str | None = None
    oif: str | None = None
    fwmark: int | None = None
    fwmask: int | None = None
    invert: bool = False


# The rules every namespace starts with. A Netns whose ``rules`` is empty has exactly these
# (discovery leaves them out: they say nothing and are a tenth of a large snapshot's objects).
DEFAULT_POLICY_RULES = (
    PolicyRule(family=4, priority=0, table=255),
    PolicyRule(family=4, priority=32766, table=254),
    PolicyRule(family=4, priority=32767, table=253),
    PolicyRule(family=6, priority=0, table=255),
    PolicyRule(family=6, priority=32766, table=254),
)


@dataclass(frozen=True, slots=True)
class Neighbor:
    """A neighbour (ARP/NDP) entry."""

    ip: str
    ifname: str
    state: str  # reachable | stale | delay | probe | failed | incomplete | permanent | noarp
    mac: str | None = None


@dataclass(frozen=True, slots=True)
class FdbEntry:
    """A forwarding database entry: which bridge port a MAC was learnt on, or (``dst`` set) the
    underlay address a VXLAN device sends frames for that MAC to (`bridge fdb ... self`)."""

    mac: str
    port: str  # the bridge port's name
    bridge: str | None = None
    vlan: int | None = None
    local: bool = False  # the bridge's own or the port's own address
    static: bool = False
    dst: str | None = None  # a VXLAN device's entry: the remote VTEP's underlay address


# --------------------------------------------------------------------------- sockets


@dataclass(frozen=True, slots=True)
class Socket:
    """A listening TCP socket or bound UDP socket inside one namespace."""

    proto: str  # tcp | udp
    family: int
    local_ip: str
    local_port: int
    state: str = "listen"
    inode: int | None = None
    pid: int | None = None
    process: str | None = None

    @property
    def loopback_only(self) -> bool:
        return self.local_ip.startswith("127.") or self.local_ip == "::1"

    @property
    def wildcard(self) -> bool:
        return self.local_ip in ("0.0.0.0", "::")
