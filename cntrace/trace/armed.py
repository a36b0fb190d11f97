"""One armed trace and its event loop: attach and start every collector, send the probe, gather
until the outcome is known (collector.ending), disarm, and hand back the result.

A refused send is an observation, not a failure (SEND_ERRORS); past its timeout a trace waits
only while the kernel still solicits a neighbour the probe waits for (collector.neigh_deadline).
TraceEngine (session.py) builds an ArmedTrace per trace.
"""

from __future__ import annotations

import errno
import os
import select
import time
from collections.abc import Sequence

from cntrace.errors import EnvironmentProblem
from cntrace.model import Packet
from cntrace.trace import inject
from cntrace.trace.collector import Collector, Seen, StopRule, ending, neigh_deadline
from cntrace.trace.events import (
    Drop,
    NeighEntry,
    NeighFrame,
    RuleEvent,
    Sighting,
    SourceEvent,
    TracePlan,
    TraceResult,
    Unwatched,
)
from cntrace.trace.packet import Matcher, reverse
from cntrace.trace.tcattach import signals_deferred


class ArmedTrace:
    """One trace between arming and disarming (TraceEngine.armed); it owns the event loop."""

    def __init__(
        self,
        collectors: Sequence[Collector],
        plan: TracePlan,
        probe: Packet,
        marker: inject.Marker,
        backend: str,
        src_inode: int,
        t_start: float,
        notices: Sequence[str] = (),
        sender: inject.Sender | None = None,
    ) -> None:
        self.t_start = t_start
        self.collectors = tuple(collectors)
        self.plan = plan
        self.probe = probe
        self.marker = marker
        self.backend = backend
        self.src_inode = src_inode
        self.matcher = Matcher()
        self.matcher.arm(marker.nonce)
        self.unwatched: list[Unwatched] = []
        self.timings: dict[str, float] = {}
        self.lost = 0
        self.sent: inject.Injected | None = None
        self.sightings: list[Sighting] = []
        self.drops: list[Drop] = []
        self.rules: list[RuleEvent] = []
        self.notices = list(notices)
        self.sender = sender
        self.source: list[SourceEvent] = []
        self.neigh: list[NeighFrame] = []
        self.neigh_entries: list[NeighEntry] = []
        self.waited = ""
        self.ended = "timeout"
        self._fds: list[int] = []
        self._stopping: list[Collector] = []

    @property
    def nonce(self) -> int:
        return self.marker.nonce

    @property
    def t0_ns(self) -> int:
        return self.sent.t_ns if self.sent is not None else 0

    def arm(self) -> None:
        """Attach, then start, every collector; each one tried is stopped by disarm()."""
        t0 = time.monotonic()
        for c in self.collectors:
            self._stopping.append(c)
            self.unwatched += c.attach(self)
        for c in self.collectors:
            self._fds += c.start(self)
        self.timings["attach"] = time.monotonic() - t0
        if self.plan.ready_file:
            write_ready_file(self.plan.ready_file)

    def disarm(self) -> None:
        """Stop every collector arm() reached, even when one fails (the first error is raised
        after). Signals are held: a Ctrl-C would skip the rest of the undoing; it lands after."""
        with signals_deferred():
            t0 = time.monotonic()
            first: Exception | None = None
            for c in self._stopping:
                try:
                    self.lost += c.stop(self)
                except Exception as exc:  # raised below, once all are stopped
                    first = first or exc
            self._stopping = []
            self.timings["detach"] = time.monotonic() - t0
        if first is not None:
            raise first

    def inject(self) -> inject.Injected:
        """Send the probe. A refusal by the source's kernel (EPERM from a netfilter drop, no
        route, EMSGSIZE...) is not a failure of the trace: it is what was observed."""
        t0 = time.monotonic()
        sender = self.sender or inject.Sender(self.plan.source_netns_path, self.probe)
        try:
            self.sent = sender.send(self.marker, self.plan.size)
        except OSError as exc:
            if exc.errno not in SEND_ERRORS:
                raise EnvironmentProblem(f"could not send the probe: {exc}") from exc
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            mtu = sender.path_mtu() if exc.errno == errno.EMSGSIZE else None
            self.source.append(
                SourceEvent("send-error", 0, name, os.strerror(exc.errno or 0), mtu=mtu)
            )
            self.sent = inject.Injected(
                sender.packet, self.marker, time.monotonic_ns(), b"", time.time_ns()
            )
        finally:
            if self.sender is None:
                sender.close()
        self.timings["inject"] = time.monotonic() - t0
        return self.sent

    def _source_news(self) -> tuple[SourceEvent, ...]:
        if self.sender is None:
            return ()
        out = []
        for n in self.sender.news():
            name = errno.errorcode.get(n.errno or 0) if n.errno else None
            why = os.strerror(n.errno) if n.errno else ""
            out.append(
                SourceEvent(n.kind, n.t_ns, name, why, n.icmp_type, n.icmp_code, n.offender, n.mtu)
            )
        return tuple(out)

    def _drain(self) -> Seen:
        """Every collector's news, kept; returns the news for the stop rule."""
        got = [c.drain(self) for c in self.collectors]
        new = Seen(
            tuple(s for g in got for s in g.sightings),
            tuple(d for g in got for d in g.drops),
            tuple(r for g in got for r in g.rules),
            tuple(n for g in got for n in g.notices),
            tuple(f for g in got for f in g.neigh),
            tuple(e for g in got for e in g.neigh_entries),
            self._source_news(),
        )
        self.sightings += new.sightings
        self.drops += new.drops
        self.rules += new.rules
        self.notices += new.notices
        self.neigh += new.neigh
        self.neigh_entries += new.neigh_entries
        self.source += new.source
        return new

    def gather_until_outcome(self) -> None:
        """Gather events until the outcome is known (plus a short settle) or the timeout; past
        the timeout only while the kernel still solicits a neighbour the probe waits for
        (within ``plan.neigh_wait_s``; collector.neigh_deadline)."""
        assert self.sent is not None, "inject() first"
        t0 = time.monotonic()
        rule = StopRule.of(self.plan, self.src_inode, self.sent.packet)
        poller = select.poll()
        fds = [*self._fds, *([self.sender.fileno()] if self.sender is not None else [])]
        for fd in dict.fromkeys(f for f in fds if f >= 0):
            poller.register(fd, select.POLLIN | select.POLLERR)
        timeout_at = self.sent.t_ns + int(self.plan.timeout_s * 1e9)
        bound_ns = int(max(self.plan.timeout_s, self.plan.neigh_wait_s) * 1e9)
        settle_at: int | None = None
        last_event = time.monotonic_ns()
        if self.source:  # the kernel refused to send it: the outcome is known already
            self.ended, settle_at = "send-error", time.monotonic_ns() + rule.settle_ns
        waited_for: NeighFrame | None = None
        while True:
            now = time.monotonic_ns()
            deadline, waited_for = neigh_deadline(
                self.neigh, timeout_at, self.sent.t_ns, bound_ns, NEIGH_MARGIN_NS
            )
            if (settle_at is not None and now >= settle_at) or now >= deadline:
                break
            wait_ns = min(deadline, settle_at or deadline) - now
            poller.poll(max(1, min(50, wait_ns // 1_000_000)))
            new = self._drain()
            if new.sightings or new.drops:
                last_event = time.monotonic_ns()
            if settle_at is None:
                end = ending(rule, new, self.sightings, time.monotonic_ns() - last_event)
                if end is not None:
                    self.ended, settle_at = end[0], time.monotonic_ns() + end[1]
        if waited_for is not None and self.ended == "timeout":
            self.ended = "neigh-wait"
        if waited_for is not None:
            self.waited = _waited_text(waited_for, time.monotonic_ns() - self.sent.t_ns, bound_ns)
        self.timings["collect"] = time.monotonic() - t0

    def result(self) -> TraceResult:
        """The result (after the trace is disarmed: collectors finish what only the end can
        tell, e.g. nft rule texts)."""
        sent = self.sent
        assert sent is not None
        for s in self.sightings:  # the user-space matcher learns the flows the kernel learnt
            if not s.is_reply and s.packet.proto in ("tcp", "udp"):
                num = 6 if s.packet.proto == "tcp" else 17
                f = (s.packet.src, s.packet.dst, s.packet.sport or 0, s.packet.dport or 0, num)
                self.matcher.flows[f] = (self.marker.nonce, 1)
                self.matcher.flows[reverse(f)] = (self.marker.nonce, 2)
        self._drain()
        self.timings["total"] = time.monotonic() - self.t_start
        return TraceResult(
            sightings=tuple(sorted(self.sightings, key=lambda s: s.t_ns)),
            drops=tuple(self.drops),
            rule_events=tuple(sorted(self.rules, key=lambda r: r.t_ns)),
            lost_events=self.lost,
            unwatched=tuple(self.unwatched),
            timings=dict(self.timings),
            backend=self.backend,
            probe=sent.packet,
            marker=self.marker.nonce,
            notices=tuple(self.notices),
            ended=self.ended,
            t0_realtime_ns=sent.t_realtime_ns,
            source=tuple(self.source),
            neigh=tuple(sorted(self.neigh, key=lambda f: f.t_ns)),
            neigh_entries=tuple(self.neigh_entries),
            waited=self.waited,
        )


# What the source's kernel may answer a send with: each is an observation, not a failure.
SEND_ERRORS = frozenset(
    {
        errno.EPERM,  # a netfilter rule of the source dropped it (NF_DROP on OUTPUT/POSTROUTING)
        errno.EACCES,  # a prohibit route
        errno.ENETUNREACH,  # no route
        errno.EHOSTUNREACH,  # an unreachable route, or a neighbour the kernel gave up on
        errno.EMSGSIZE,  # larger than the path MTU (the route's, or one learned from ICMP)
        errno.ECONNREFUSED,  # an ICMP error for this flow arrived before (connected UDP)
        errno.EINVAL,  # a blackhole route
    }
)
NEIGH_MARGIN_NS = 500_000_000  # after the kernel's last solicitation, for its NEIGH_FAILED


def _waited_text(f: NeighFrame, waited_ns: int, bound_ns: int) -> str:
    """What the trace waited for past its timeout, in words."""
    what = "ARP" if f.family == 4 else "neighbour discovery"
    gives_up = (f.t_ns + f.retry_ns) / 1e9
    text = (
        f"waited {waited_ns / 1e9:.1f}s for {what} on {f.target.name} to resolve "
        f"{f.target_ip} (the kernel gives up ~{gives_up:.1f}s after the probe"
    )
    if f.t_ns + f.retry_ns + NEIGH_MARGIN_NS > bound_ns:
        bound = bound_ns / 1e9
        return f"{text}; longer than the trace's bound of {bound:.1f}s: the entry was read)"
    return text + ")"


def write_ready_file(path: str) -> None:
    """``PID armed``, atomically (a watcher never reads half of it), through a temporary file of
    an unguessable name, never through a symlink (a ready file often lives in a shared /tmp)."""
    from cntrace.sources.recorded import write_text  # noqa: PLC0415

    write_text(path, f"{os.getpid()} armed\n", follow_symlinks=False)
