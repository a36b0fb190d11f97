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

    def watched(self, target: TraceTarget) -> bool:
        return not any(u.target == target and not u.partial for u in self.unwatched)

    @property
    def request_drop(self) -> Drop | None:
        """The first drop of the probe itself (not of its reply)."""
        return next((d for d in self.drops if not d.is_reply), None)

    @property
    def replies(self) -> tuple[Sighting, ...]:
        return tuple(s for s in self.sightings if s.is_reply)

    def outcome(self) -> tuple[str, str]:
        """(status, detail) from what was seen: delivered | refused | unreachable | dropped |
        timeout. Prediction-independent; the path merge may say more."""
        for s in reversed(self.sightings):
            if s.is_reply and s.packet.proto == "tcp" and s.tcp_flags and "R" in s.tcp_flags:
                return "refused", f"RST from {s.packet.src} seen at {s.target.name}"
        for s in reversed(self.sightings):
            if s.is_reply and s.match == "icmp-quote":
                return "unreachable", (
                    f"ICMP type {s.packet.icmp_type} code {s.icmp_code} from {s.packet.src} "
                    f"seen at {s.target.name}"
                )
        drop = self.request_drop
        if drop is not None and drop.reason not in _DELIVERY_REASONS:
            where = drop.target.name if drop.target else f"netns:{drop.netns_inode}"
            return "dropped", f"{drop.reason} at {drop.location or '?'} ({where})"
        if self.replies:
            s = self.replies[-1]  # the one nearest the source
            return "delivered", f"reply from {s.packet.src} seen at {s.target.name}"
        if drop is not None:
            return "refused", f"{drop.reason} at {drop.location or '?'}"
        if self.sightings:
            last = max(self.sightings, key=lambda s: s.t_ns)
            return "timeout", f"last seen at {last.target.name} {last.direction}"
        return "timeout", "the probe was not seen anywhere"


# A request "dropped" for these reasons reached the destination's stack, which answered or chose
# not to: the verdict is the reply (RST, ICMP), not a loss on the way.
_DELIVERY_REASONS = frozenset({"NO_SOCKET", "SOCKET_CLOSE", "TCP_CLOSE", "TCP_RESET"})
