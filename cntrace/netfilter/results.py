"""What a walk is given beyond the packet, and what it returns: the values of the evaluator's API.

All frozen: a Walk is a document the path predictor and the renderers read, never change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cntrace.model import Packet, RuleRef


@dataclass(frozen=True)
class NetnsFacts:
    """What matches need to know about the namespace beyond the packet.

    ``iface_addresses`` maps an interface to its addresses, primary first (MASQUERADE and
    REDIRECT pick from it); ``iface_networks`` holds the same as CIDRs. ``known`` is False when
    nothing is known about the namespace: address-type matches are then uncertain.
    """

    local_addresses: frozenset[str]
    iface_addresses: Mapping[str, tuple[str, ...]]
    iface_networks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    iface_kinds: Mapping[str, str] = field(default_factory=dict)
    bridge_of: Mapping[str, str] = field(default_factory=dict)  # bridge port -> bridge
    broadcast_addresses: frozenset[str] = frozenset()
    known: bool = True
    groups: Mapping[str, int] = field(default_factory=dict)  # device -> group (ip link group)

    @staticmethod
    def unknown() -> NetnsFacts:
        return NetnsFacts(frozenset(), {}, known=False)


@dataclass(frozen=True, slots=True)
class Conntrack:
    """A connection's tuples: its first packet before NAT (``original``) and after (``nated``).

    Later packets of either direction get the same translation from it, as conntrack does.
    """

    original: Packet
    nated: Packet


@dataclass(frozen=True, slots=True)
class Nat:
    """A translation applied at a hook."""

    kind: str  # dnat | snat | masquerade | redirect | conntrack (established/reply)
    before: Packet
    after: Packet
    rule: RuleRef | None
    hook: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class ChainVisit:
    """What one base chain did at a hook."""

    backend: str
    family: str
    table: str
    chain: str
    priority: int
    type: str
    verdict: str | None  # accept | drop | reject | queue; None when skipped
    rule: RuleRef | None = None  # what ended the chain: a rule, or its policy; None: skipped
    skipped: str | None = None
    matched: tuple[RuleRef, ...] = ()  # rules of this chain (and chains it jumped to) that matched


@dataclass(frozen=True, slots=True)
class HookResult:
    """The outcome of one hook for one packet."""

    hook: str
    verdict: str  # accept | drop | reject | queue
    packet: Packet  # after any NAT at this hook
    matched: tuple[RuleRef, ...] = ()
    deciding: RuleRef | None = None  # a rule or a policy (RuleRef.policy); None: no base chain
    policy: str | None = None  # deciding's name when it is a policy (kept for readers of v1)
    nat: Nat | None = None
    uncertain: tuple[tuple[RuleRef, str], ...] = ()
    chains: tuple[ChainVisit, ...] = ()
    iif: str | None = None
    oif: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Walk:
    """A packet's way through the hooks of one namespace."""

    kind: str  # input | forward | output | local-output (after any re-routing)
    hooks: tuple[HookResult, ...]
    verdict: str  # accept | drop | reject | queue
    deciding: RuleRef | None
    packet_before: Packet
    packet_after: Packet
    nats: tuple[Nat, ...]
    uncertain: tuple[tuple[RuleRef, str], ...]
    iif: str | None = None
    oif: str | None = None
    policy: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def certain(self) -> bool:
        return not self.uncertain

    def conntrack(self) -> Conntrack:
        """The connection this (first) packet set up, for walking its later or reply packets."""
        return Conntrack(self.packet_before, self.packet_after)
