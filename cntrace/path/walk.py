"""The state of one walk and the few ways a step ends: the bottom of the path predictor.

A step of the walk returns an :class:`Arrive` (the packet enters another namespace, the walk goes
on) or an :class:`End` (delivered, dropped, left the host). Every hop is recorded through
:meth:`Walk.hop`; every failing hop through :meth:`Walk.fail`, so that a failure always has its hop,
its namespace and its packet. Findings are written by cntrace.path.diagnose, never here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cntrace import netfilter
from cntrace.model import Container, Finding, Hop, Link, Netns, Packet, RuleRef, Snapshot
from cntrace.topology import Topology

LEFT_HOST = "left-host"  # the End.reason of a packet that leaves by a link cntrace cannot follow


@dataclass(frozen=True)
class Nat:
    """A NAT the request went through, to be undone on the reply."""

    netns: int
    kind: str  # snat | dnat
    before: Packet
    after: Packet
    rule: RuleRef | None


@dataclass(frozen=True)
class Tunnel:
    """The packet is wrapped: the inner packet and its size, kept for the decapsulation
    (cntrace.path.overlay)."""

    netns: int  # where it was wrapped
    device: str
    vni: int
    port: int
    inner: Packet
    size: int  # the inner packet's size; the walk's size is the outer one meanwhile


@dataclass(frozen=True, kw_only=True)
class End:
    """How a walk ended: the Verdict's fields, and where (namespace, packet) for the reply."""

    status: str
    summary: str
    reason: str | None = None
    rule: RuleRef | None = None
    netns: Netns | None = None
    packet: Packet | None = None
    hop: int | None = None


@dataclass(frozen=True)
class Arrive:
    """``packet`` enters ``netns`` through ``link``."""

    netns: Netns
    link: Link
    packet: Packet


Step = Arrive | End


@dataclass
class Walk:
    """Everything one prediction accumulates: hops, findings, NATs to undo, per-walk caches."""

    snap: Snapshot
    topo: Topology
    size: int
    hops: list[Hop] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    nats: list[Nat] = field(default_factory=list)
    direction: str = "request"
    unmasqueraded: tuple[Netns, Link, str] | None = None  # (host ns, uplink, private src)
    entries: dict[tuple[str, int], Packet] = field(default_factory=dict)
    facts: dict[int, netfilter.NetnsFacts] = field(default_factory=dict)
    endpoints: tuple[Container | None, Container | None] = (None, None)
    tunnel: Tunnel | None = None  # set between a VXLAN device's wrap and unwrap

    @property
    def request(self) -> bool:
        return self.direction == "request"

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
        """Record one hop; returns its index (1-based), which findings point at."""
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

    def fail(
        self,
        kind: str,
        ns: Netns,
        iface: str | None,
        packet: Packet,
        step: str,
        *,
        why: str,
        reason: str | None,
        status: str = "dropped",
        rule: RuleRef | None = None,
        evidence: tuple[str, ...] | list[str] = (),
    ) -> End:
        """Record the failing hop (``step``) and end the walk there (``why``)."""
        idx = self.hop(kind, ns, iface, packet, step, rule=rule, evidence=evidence, ok=False)
        return End(
            status=status, summary=why, reason=reason, rule=rule, netns=ns, packet=packet, hop=idx
        )

    def deliver(
        self,
        ns: Netns,
        iface: str | None,
        packet: Packet,
        step: str,
        *,
        why: str,
        evidence: tuple[str, ...] | list[str] = (),
    ) -> End:
        """Record the socket hop that takes the packet and end the walk there."""
        idx = self.hop("socket", ns, iface, packet, step, evidence=evidence)
        return End(status="delivered", summary=why, netns=ns, packet=packet, hop=idx)

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
