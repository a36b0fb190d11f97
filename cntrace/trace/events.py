"""What a live trace is asked to do and what it saw: plain frozen values, no system access.

A trace watches a set of interfaces (TraceTarget) in their namespaces while one marked probe
travels; the result lists each sighting of the probe or its reply (with the packet's addresses
as seen there, so NAT rewrites show at the hop that made them), the kernel's drops of it with
the reason, the netfilter rules it went through, and, just as important, what could not be
watched and how many events were lost: "not seen" only means something next to those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cntrace.model import Packet

Backend = Literal["auto", "ebpf", "capture"]
Direction = Literal["ingress", "egress"]


@dataclass(frozen=True, slots=True)
class TraceTarget:
    """One interface to watch, in one namespace."""

    netns_path: str
    netns_inode: int
    ifname: str
    ifindex: int
    label: str = ""  # how to name this hop to a person, e.g. "web eth0"
    container: str | None = None
    hop: int | None = None  # index of the predicted hop this interface belongs to

    @property
    def name(self) -> str:
        return self.label or f"netns:{self.netns_inode} {self.ifname}"


@dataclass(frozen=True, slots=True)
class TracePlan:
    """A live trace: inject ``packet`` from the source namespace and watch ``targets``.

    ``nft_namespaces`` are the namespace paths where netfilter rules are traced.
    ``packet.src`` may be empty: the source namespace's route decides it. ``packet.sport`` may be
    None: a random ephemeral port is used.
    """

    source_netns_path: str
    packet: Packet
    targets: tuple[TraceTarget, ...]
    nft_namespaces: tuple[str, ...] = ()
    timeout_s: float = 1.0
    backend: Backend = "auto"
    ready_file: str | None = None  # written once everything is armed, before injection
    settle_s: float = 0.03  # after the outcome is known, wait this long for stragglers
    size: int = 0  # pad UDP/ICMP probes to this IP length (MTU checks); 0: as small as possible
    # ARP/NDP: more interfaces to watch for neighbour frames only (a bridge's other ports, to
    # count a flood), and the addresses whose resolution matters (next hops, destinations)
    l2_targets: tuple[TraceTarget, ...] = ()
    neighbours: tuple[str, ...] = ()
    # the longest the trace waits, past its timeout, for the kernel to give up on an
    # unanswered neighbour solicitation (its NEIGH_FAILED drop); then it reads the entry
    neigh_wait_s: float = 5.0
    # where a UDP probe counts as arrived (quiet after it = delivered); None: the last target's
    destination_netns: int | None = None


@dataclass(frozen=True, slots=True)
class Sighting:
    """The probe (or its reply) seen at an interface."""

    target: TraceTarget
    direction: Direction
    t_ns: int  # since injection
    packet: Packet  # addresses and ports as seen here
    is_reply: bool
    tcp_flags: str | None = None  # "S", "SA", "RA" ...
    mark: int = 0
    ip_id: int | None = None
    length: int = 0
    match: str = "marker"  # marker | ack | icmp-quote | flow
    icmp_code: int | None = None
    l3_offset: int = 14  # where the IP header starts in frame (0: no link-layer header)
    frame_hex: str = field(default="", repr=False)  # the first bytes of the frame
    inner: Packet | None = (
        None  # seen wrapped in VXLAN: ``packet`` is the outer one, this the probe
    )
    vni: int | None = None


@dataclass(frozen=True, slots=True)
class Drop:
    """The kernel freed the probe (or its reply, or any packet in drops mode) as a drop."""

    reason: str  # the kernel's name, e.g. NETFILTER_DROP
    location: str | None  # the freeing function (from kallsyms), e.g. nf_hook_slow
    t_ns: int
    ifindex: int | None = None
    netns_inode: int | None = None
    target: TraceTarget | None = None  # when the device is one of the watched ones
    packet: Packet | None = None
    is_reply: bool = False
    reason_code: int = 0
    tcp_flags: str | None = None
    frame_hex: str = field(default="", repr=False)  # from the network header on
    inner: Packet | None = None  # the drop hit a VXLAN packet: ``packet`` is the outer one
    vni: int | None = None


@dataclass(frozen=True, slots=True)
class RuleEvent:
    """A netfilter rule (or chain policy) the probe went through, from nftables tracing."""

    netns_path: str
    netns_inode: int
    family: str  # ip | ip6 | inet | bridge ...
    table: str
    chain: str
    handle: int | None  # None for a chain's policy
    verdict: str | None  # accept | drop | continue | jump <chain> | return ...
    rule_text: str | None
    t_ns: int
    kind: str = "rule"  # rule | policy | return
    position: int | None = None  # 1-based index of the rule in its chain
    is_reply: bool = False
    packet: Packet | None = None  # as netfilter saw it (before this rule's NAT)
    iif: str | None = None
    oif: str | None = None
    mark: int = 0


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """What the source's own kernel said about the probe, through the sending socket: a sending
    error (the probe never left: that is the observation), an ICMP error queued on a connected
    UDP socket (IP_RECVERR: ECONNREFUSED after a port unreachable), or a UDP reply read back."""

    kind: str  # send-error | icmp-error | reply
    t_ns: int
    errno: str | None = None  # EPERM, ENETUNREACH, EHOSTUNREACH, EMSGSIZE, ECONNREFUSED ...
    message: str = ""
    icmp_type: int | None = None
    icmp_code: int | None = None
    offender: str | None = None  # who sent the ICMP error
    mtu: int | None = None  # EMSGSIZE or frag-needed: the path MTU the source's kernel knows


@dataclass(frozen=True, slots=True)
class NeighFrame:
    """An ARP or NDP frame seen on a watched interface while the probe travelled."""

    target: TraceTarget
    direction: Direction
    t_ns: int
    op: str  # request | reply (ARP who-has / is-at; NDP solicitation / advertisement)
    family: int  # 4: ARP, 6: NDP
    sender_ip: str
    sender_mac: str
    target_ip: str  # the address being resolved (request) or announced (reply)
    dst_mac: str = ""  # ff:ff:ff:ff:ff:ff (or 33:33:...) for a broadcast or multicast request
    retry_ns: int = 0  # a request the watched namespace sent: how long its kernel keeps trying

    @property
    def asked(self) -> str:
        """The address this frame is about."""
        return self.target_ip if self.op == "request" else self.sender_ip


@dataclass(frozen=True, slots=True)
class NeighEntry:
    """A neighbour entry read at the end of the trace (when the kernel still retries)."""

    netns_inode: int
    ifname: str
    ip: str
    state: str  # incomplete | failed | reachable | stale | delay | probe | none (no entry)
    mac: str | None = None


@dataclass(frozen=True, slots=True)
class Unwatched:
    """Something the trace meant to watch and could not: a hole in the negative evidence."""

    what: str  # e.g. "tc ingress web eth0", "nftrace /run/netns/r1", "kfree_skb"
    why: str
    target: TraceTarget | None = None
    partial: bool = False  # watched, but something else may hide some packets from cntrace


@dataclass(frozen=True, slots=True)
class TraceResult:
    """Everything one live trace observed."""

    sightings: tuple[Sighting, ...]
    drops: tuple[Drop, ...]
    rule_events: tuple[RuleEvent, ...]
    lost_events: int
    unwatched: tuple[Unwatched, ...]
    timings: dict[str, float]
    backend: str  # ebpf | capture
    probe: Packet | None = None  # what was injected (source address and port filled in)
    marker: int = 0
    notices: tuple[str, ...] = ()
    ended: str = "timeout"  # what ended collection: reply | drop | quiet | timeout
    t0_realtime_ns: int = 0  # wall-clock time of the injection (t_ns values count from it)
    source: tuple[SourceEvent, ...] = ()  # what the sending socket reported
    neigh: tuple[NeighFrame, ...] = ()  # ARP/NDP frames on watched interfaces
    neigh_entries: tuple[NeighEntry, ...] = ()  # read at the end for unanswered solicitations
    waited: str = ""  # how long the trace waited, and why, when it waited past its timeout

    def watched(self, target: TraceTarget) -> bool:
        return not any(u.target == target and not u.partial for u in self.unwatched)

    @property
    def request_drop(self) -> Drop | None:
        """The first drop of the probe itself (not of its reply)."""
        return next((d for d in self.drops if not d.is_reply), None)

    @property
    def replies(self) -> tuple[Sighting, ...]:
        return tuple(s for s in self.sightings if s.is_reply)

    @property
    def send_error(self) -> SourceEvent | None:
        """The error the source's kernel gave instead of sending the probe."""
        return next((e for e in self.source if e.kind == "send-error"), None)

    def unanswered(self) -> list[NeighFrame]:
        """Neighbour solicitations no reply answered, first sighting of each address."""
        answered = {f.asked for f in self.neigh if f.op == "reply"}
        out: dict[str, NeighFrame] = {}
        for f in sorted(self.neigh, key=lambda f: f.t_ns):
            if f.op == "request" and f.asked not in answered and f.target_ip != f.sender_ip:
                out.setdefault(f.asked, f)
        return list(out.values())

    def outcome(self) -> tuple[str, str]:
        """(status, detail) from what was seen: delivered | refused | unreachable | dropped |
        no-route | timeout. Prediction-independent; the path merge may say more. The rules per
        protocol are in docs/path.md ("How a live trace ends")."""
        sent = self.send_error
        if sent is not None:
            return _send_outcome(sent, self.request_drop)
        for s in reversed(self.sightings):
            if s.is_reply and s.packet.proto == "tcp" and s.tcp_flags and "R" in s.tcp_flags:
                return "refused", f"RST from {s.packet.src} seen at {s.target.name}"
        for s in reversed(self.sightings):
            if s.is_reply and s.match == "icmp-quote":
                what = _icmp_text(s.packet.family, s.packet.icmp_type, s.icmp_code)
                status = (
                    "refused"
                    if _port_unreachable(s.packet.family, s.packet.icmp_type, s.icmp_code)
                    else "unreachable"
                )
                return status, f"{what} from {s.packet.src} seen at {s.target.name}"
        for e in self.source:
            if e.kind == "icmp-error":
                family = 6 if e.offender and ":" in e.offender else 4
                what = _icmp_text(family, e.icmp_type, e.icmp_code)
                status = "refused" if e.errno == "ECONNREFUSED" else "unreachable"
                return status, f"{what} from {e.offender} reached the source's socket ({e.errno})"
        drop = self.request_drop
        if drop is not None and drop.reason in NEIGH_REASONS:
            return "unreachable", f"{drop.reason} at {drop.location or '?'}" + _unanswered_text(
                self.unanswered()
            )
        if drop is not None and drop.reason not in _DELIVERY_REASONS:
            where = drop.target.name if drop.target else f"netns:{drop.netns_inode}"
            return "dropped", f"{drop.reason} at {drop.location or '?'} ({where})"
        if self.replies:
            s = self.replies[-1]  # the one nearest the source
            return "delivered", f"reply from {s.packet.src} seen at {s.target.name}"
        if any(e.kind == "reply" for e in self.source):
            return "delivered", "a reply reached the source's socket"
        if drop is not None:
            return "refused", f"{drop.reason} at {drop.location or '?'}"
        arrived = [s for s in self.sightings if not s.is_reply]
        if self.ended == "quiet" and arrived:
            last = max(arrived, key=lambda s: s.t_ns)
            return "delivered", (
                f"seen arriving at {last.target.name}, no drop or ICMP error followed "
                "(UDP needs no reply)"
            )
        unanswered = self.unanswered()
        if unanswered:
            entries = ", ".join(f"{e.ip} {e.state}" for e in self.neigh_entries)
            return "unreachable", _unanswered_text(unanswered).lstrip("; ") + (
                f"; neighbour entry {entries}" if entries else ""
            )
        if self.sightings:
            last = max(self.sightings, key=lambda s: s.t_ns)
            return "timeout", f"last seen at {last.target.name} {last.direction}"
        return "timeout", "the probe was not seen anywhere"


def _unanswered_text(frames: list[NeighFrame]) -> str:
    return "".join(
        f"; {'ARP who-has' if f.family == 4 else 'neighbour solicitation for'} {f.target_ip} "
        f"(from {f.target.name}) unanswered"
        for f in frames
    )


def _send_outcome(e: SourceEvent, drop: Drop | None) -> tuple[str, str]:
    """A sending error read as the observation it is."""
    said = f"the source's kernel refused to send it: {e.errno} ({e.message})"
    if e.errno in ("EPERM",):
        if drop is not None:
            said += f"; {drop.reason} at {drop.location or '?'}"
        return "dropped", said + "; a netfilter rule of the source dropped it"
    if e.errno == "ENETUNREACH":
        return "no-route", said
    if e.errno in ("EHOSTUNREACH", "EACCES"):
        return "unreachable", said
    if e.errno == "EMSGSIZE":
        mtu = f"; the path MTU is {e.mtu}" if e.mtu else ""
        return "dropped", said + mtu
    if e.errno == "ECONNREFUSED":
        return "refused", said + "; an earlier ICMP error refused this flow"
    return "unknown", said


def _port_unreachable(family: int, icmp_type: int | None, code: int | None) -> bool:
    return (family, icmp_type, code) in ((4, 3, 3), (6, 1, 4))


_ICMP_NAMES = {
    (4, 3, 0): "ICMP net unreachable",
    (4, 3, 1): "ICMP host unreachable",
    (4, 3, 3): "ICMP port unreachable",
    (4, 3, 4): "ICMP fragmentation needed",
    (4, 3, 13): "ICMP administratively prohibited",
    (4, 11, 0): "ICMP time exceeded",
    (6, 1, 0): "ICMPv6 no route",
    (6, 1, 1): "ICMPv6 administratively prohibited",
    (6, 1, 3): "ICMPv6 address unreachable",
    (6, 1, 4): "ICMPv6 port unreachable",
    (6, 2, 0): "ICMPv6 packet too big",
    (6, 3, 0): "ICMPv6 time exceeded",
}


def _icmp_text(family: int, icmp_type: int | None, code: int | None) -> str:
    return _ICMP_NAMES.get((family, icmp_type or 0, code or 0)) or (
        f"ICMP type {icmp_type} code {code}"
    )


# The kernel gave up resolving the next hop: the probe never left the namespace it waited in.
NEIGH_REASONS = frozenset({"NEIGH_FAILED", "NEIGH_QUEUEFULL", "NEIGH_DEAD", "NEIGH_CREATEFAIL"})

# A request "dropped" for these reasons reached the destination's stack, which answered or chose
# not to: the verdict is the reply (RST, ICMP), not a loss on the way.
_DELIVERY_REASONS = frozenset({"NO_SOCKET", "SOCKET_CLOSE", "TCP_CLOSE", "TCP_RESET"})
