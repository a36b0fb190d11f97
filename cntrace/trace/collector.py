"""The collector contract of live traces, and the rule that ends a trace: no system access.

A collector is one way of watching the probe (eBPF on tc, the skb:kfree_skb tracepoint, nftables
tracing, packet sockets). The engine keeps one of each and runs those a trace needs through the
same six steps; the armed trace owns the event loop. A new collector is one class with these
methods, listed in TraceEngine.__init__.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cntrace.model import Packet
from cntrace.trace.events import (
    Drop,
    NeighEntry,
    NeighFrame,
    RuleEvent,
    Sighting,
    SourceEvent,
    TracePlan,
    TraceTarget,
    Unwatched,
)
from cntrace.trace.packet import Matcher


@dataclass(frozen=True, slots=True)
class Requirement:
    """One collector's verdict on this machine."""

    collector: str
    ok: bool
    why: str


@dataclass(frozen=True, slots=True)
class Seen:
    """What one drain of one collector brought."""

    sightings: tuple[Sighting, ...] = ()
    drops: tuple[Drop, ...] = ()
    rules: tuple[RuleEvent, ...] = ()
    notices: tuple[str, ...] = ()
    neigh: tuple[NeighFrame, ...] = ()  # ARP/NDP frames (trace/neigh.py)
    neigh_entries: tuple[NeighEntry, ...] = ()  # read once the trace is over
    source: tuple[SourceEvent, ...] = ()  # what the sending socket reported (the engine's own)


class Trace(Protocol):
    """What a collector is told about the trace it watches."""

    @property
    def plan(self) -> TracePlan: ...

    @property
    def probe(self) -> Packet: ...  # completed: source address and port filled in

    @property
    def nonce(self) -> int: ...  # the marker

    @property
    def matcher(self) -> Matcher: ...  # user space's copy of the kernel's match

    @property
    def t0_ns(self) -> int: ...  # CLOCK_MONOTONIC of the injection; events count from it


class Collector(Protocol):
    """One way of watching a trace; the engine calls, for each trace that needs it:
    ``attach`` and ``start`` while arming, ``drain`` in the loop, ``stop`` while disarming (with
    signals held), ``drain`` once more for what only the end can tell, and ``close`` with the
    engine."""

    name: str

    def can_run(self) -> tuple[bool, str]:
        """Whether it can run here, and why (not): probed on the running kernel."""
        ...

    def attach(self, trace: Trace) -> list[Unwatched]:
        """Hook into what the trace watches (kept until close() where that pays); returns what
        could not be watched. Raises only for what should fail the trace."""
        ...

    def start(self, trace: Trace) -> list[int]:
        """Begin reporting the trace's marker; returns the fds to poll for its events."""
        ...

    def drain(self, trace: Trace) -> Seen:
        """What arrived since the last drain (without waiting)."""
        ...

    def stop(self, trace: Trace) -> int:
        """Stop reporting and remove what is per trace; returns how many events were lost."""
        ...

    def close(self) -> None:
        """Remove everything it added to the kernel; idempotent."""
        ...


# --------------------------------------------------------------------------- the stop rule


@dataclass(frozen=True, slots=True)
class StopRule:
    """What decides, for one trace, that its outcome is known."""

    source_inode: int
    source_watched: bool  # an interface of the source namespace is a target
    last_target: TraceTarget | None  # the far end of the path
    destination: int | None  # the namespace a UDP probe must reach to count as delivered
    no_reply_ok: bool  # UDP may get no answer: the probe reaching the far end is enough
    settle_ns: int  # how long to keep listening once a reply or drop is seen
    quiet_ns: int  # how long nothing must arrive before a no-reply probe counts as quiet

    @classmethod
    def of(cls, plan: TracePlan, source_inode: int, probe: Packet) -> StopRule:
        return cls(
            source_inode=source_inode,
            source_watched=any(t.netns_inode == source_inode for t in plan.targets),
            last_target=plan.targets[-1] if plan.targets else None,
            destination=plan.destination_netns,
            no_reply_ok=probe_wants_no_reply(probe),
            settle_ns=int(plan.settle_s * 1e9),
            quiet_ns=int(max(0.2, plan.settle_s) * 1e9),
        )


def ending(
    rule: StopRule, new: Seen, sightings: Sequence[Sighting], quiet_for_ns: int
) -> tuple[str, int] | None:
    """Why the trace may end (reply | drop | quiet) and how long to listen on for stragglers, or
    None while the outcome is open. ``new`` is the last drain, ``sightings`` all so far (the
    last drain's included), ``quiet_for_ns`` the time since anything arrived."""
    if any(e.kind == "send-error" for e in new.source):
        return "send-error", rule.settle_ns
    if any(e.kind in ("icmp-error", "reply") for e in new.source):
        return "reply", rule.settle_ns
    if any(
        s.is_reply and (not rule.source_watched or s.target.netns_inode == rule.source_inode)
        for s in new.sightings
    ):
        return "reply", rule.settle_ns
    if any(not d.is_reply and d.reason != "NO_SOCKET" for d in new.drops):
        return "drop", rule.settle_ns
    if (
        rule.no_reply_ok
        and rule.last_target is not None
        and any(_arrived(rule, s) for s in sightings)
        and quiet_for_ns >= rule.quiet_ns
    ):
        return "quiet", 0
    return None


def _arrived(rule: StopRule, s: Sighting) -> bool:
    """The probe (not a reply) seen entering the destination's namespace, or at the last
    target when the plan names no destination."""
    if s.is_reply:
        return False
    if rule.destination is not None:
        return s.target.netns_inode == rule.destination and s.direction == "ingress"
    return s.target == rule.last_target


def probe_wants_no_reply(p: Packet) -> bool:
    """UDP may legitimately get no answer; TCP and ICMP echo always get one if delivered."""
    return p.proto == "udp"


def neigh_deadline(
    frames: Sequence[NeighFrame], deadline_ns: int, t0_ns: int, bound_ns: int, margin_ns: int
) -> tuple[int, NeighFrame | None]:
    """How long to wait for the kernel's verdict on a neighbour it is still soliciting.

    While a solicitation the watched namespaces sent is unanswered, the trace waits until that
    kernel would give up (first solicitation + its ``retry_ns`` + ``margin_ns``: the
    NEIGH_FAILED drop of the queued probe), but never past ``t0_ns + bound_ns``. Returns the
    deadline (absolute, CLOCK_MONOTONIC) and the solicitation waited for (None: no reason to
    wait past ``deadline_ns``)."""
    answered = {f.asked for f in frames if f.op == "reply"}
    pending = [f for f in frames if f.op == "request" and f.retry_ns and f.asked not in answered]
    if not pending:
        return deadline_ns, None
    first = min(pending, key=lambda f: f.t_ns)
    wanted = t0_ns + first.t_ns + first.retry_ns + margin_ns
    return max(deadline_ns, min(wanted, t0_ns + bound_ns)), first
