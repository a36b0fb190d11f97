"""The eBPF collectors: tc sightings and kfree_skb drops, sharing one loaded probe module.

Both programs report through one ring buffer and match the same armed marker, so the module
arms and disarms once per trace (whichever collector comes first) and sorts the ring's events
to the collector they belong to.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import importlib.util
import os
import platform
import socket
from collections.abc import Iterator

from cntrace.model import Packet
from cntrace.trace import inject
from cntrace.trace.bpfsys import BpfError
from cntrace.trace.collector import Seen, Trace
from cntrace.trace.ebpf import (
    PRINT_ENV,
    KernelFacts,
    LoadedProbes,
    ProbeBuildError,
    build,
    is_cached,
    kernel_facts,
    print_source_and_exit,
)
from cntrace.trace.events import Drop, Sighting, TraceTarget, Unwatched
from cntrace.trace.events_c import (
    CNT_CFG_MARKER_DROPS,
    CNT_EV_DROP,
    CNT_EV_TC_EGRESS,
    MATCH_NAMES,
    CntEvent,
)
from cntrace.trace.kallsyms import Kallsyms
from cntrace.trace.packet import PROTO_NAMES, tcp_flag_text, vxlan_outer
from cntrace.trace.tcattach import TcAttacher
from cntrace.trace.tracefs import TracefsError, ensure_mounted

_EVENT_SIZE = ctypes.sizeof(CntEvent)


class ProbeModule:
    """The compiled and loaded probes, shared by the tc and kfree_skb collectors."""

    def __init__(self) -> None:
        self.facts: KernelFacts | None = None
        self.loaded: LoadedProbes | None = None
        self.notices: list[str] = []
        self._why: str | None = None
        self._probed = False
        self._armed: int | None = None  # the marker of the trace now armed
        self._lost_base = 0
        self._pending: dict[bool, list[CntEvent]] = {True: [], False: []}  # by "is a drop"

    def can_run(self) -> tuple[bool, str]:
        if not self._probed:
            self._probed = True
            self._why = self._probe()
        return self._why is None, self._why or "ok"

    def _probe(self) -> str | None:
        if os.geteuid() != 0:
            return "loading eBPF needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN)"
        if not os.path.exists("/sys/kernel/btf/vmlinux"):
            return "the kernel has no BTF (/sys/kernel/btf/vmlinux): struct offsets unknown"
        try:
            _root, notice = ensure_mounted()
        except TracefsError as exc:
            return str(exc)
        if notice:
            self.notices.append(notice)
        why = _bpf_usable()
        if why:
            return why
        try:
            self.facts = kernel_facts()
        except ProbeBuildError as exc:
            return str(exc)
        if os.environ.get(PRINT_ENV):
            print_source_and_exit(self.facts)
        try:
            cached = is_cached(self.facts)
        except OSError as exc:  # a broken install or CNTRACE_PROBES_DIR
            return f"cannot read the probes' source: {exc.strerror}: {exc.filename}"
        if not cached:
            if not _bcc_installed():
                return "bcc (python3-bpfcc) is not installed and no compiled probes are cached"
            headers = f"/lib/modules/{platform.release()}/build"
            if not os.path.exists(headers):
                return f"kernel headers are missing ({headers}): bcc cannot compile the probes"
        return None

    def ensure(self) -> LoadedProbes:
        """Build (or fetch from cache) and load; raises ProbeBuildError with the why."""
        if self.loaded is not None:
            return self.loaded
        ok, why = self.can_run()
        if not ok or self.facts is None:
            raise ProbeBuildError(why)
        built = build(self.facts)
        try:
            self.loaded = LoadedProbes.load(built, self.facts)
        except ProbeBuildError:
            if not built.from_cache:
                raise
            built = build(self.facts, use_cache=False)  # a bad cache entry: rebuild
            self.loaded = LoadedProbes.load(built, self.facts)
        return self.loaded

    # ------------------------------------------------------------------ one trace

    def arm(self, trace: Trace) -> list[int]:
        """Match the trace's marker in the kernel (once for both collectors); the ring's fd."""
        loaded = self.ensure()
        if self._armed != trace.nonce:
            self._pending = {True: [], False: []}
            loaded.arm(trace.nonce, inject.proto_number(trace.probe))
            self._armed = trace.nonce
            self._lost_base = loaded.counters()[0]
        return [loaded.ring.fd]

    def disarm(self) -> int:
        """Stop matching (once); returns the events the ring lost meanwhile."""
        if self._armed is None or self.loaded is None:
            return 0
        nonce, self._armed = self._armed, None
        with contextlib.suppress(BpfError):
            self.loaded.disarm(nonce)
        return self.loaded.counters()[0] - self._lost_base

    def events(self) -> Iterator[CntEvent]:
        """Every event waiting in the ring, consumed."""
        if self.loaded is not None:
            for rec in self.loaded.ring.records():
                yield CntEvent.from_buffer_copy(rec[:_EVENT_SIZE].ljust(_EVENT_SIZE, b"\0"))

    def take(self, drops: bool) -> list[CntEvent]:
        """The armed trace's drop events (or its tc events) that arrived so far."""
        for ev in self.events():
            if ev.nonce == self._armed:
                self._pending[ev.kind == CNT_EV_DROP].append(ev)
        out, self._pending[drops] = self._pending[drops], []
        return out

    def reason(self, code: int) -> str:
        """The kernel's name for a drop reason; kernels before 5.17 give none."""
        reasons = self.facts.reasons if self.facts else {}
        if not reasons:
            return "unknown"
        return reasons.get(code, str(code))

    def close(self) -> None:
        if self.loaded is not None:
            self.loaded.close()
            self.loaded = None
        self._armed = None


def _bcc_installed() -> bool:
    """Without importing it (0.4 s): only a cache miss needs bcc."""
    try:
        return importlib.util.find_spec("bcc") is not None
    except (ImportError, ValueError):
        return False


def _bpf_usable() -> str | None:
    """Whether this process may create BPF maps, and the ring buffers the probes report through
    (probed with the kernel, not assumed from the version)."""
    from cntrace.trace import bpfsys  # noqa: PLC0415

    for spec, what in (
        (bpfsys.MapSpec("cnt_probe", bpfsys.MAP_ARRAY, 4, 4, 1), "BPF maps"),
        (bpfsys.MapSpec("cnt_probe_rb", bpfsys.MAP_RINGBUF, 0, 0, 4096), "BPF ring buffers"),
    ):
        try:
            os.close(bpfsys.map_create(spec))
        except bpfsys.BpfError as exc:
            if exc.errno == errno.EPERM:
                return f"no privilege for {what} (CAP_BPF; unprivileged BPF is off)"
            if what == "BPF ring buffers":
                return f"the kernel has no {what} (Linux 5.8+): {exc.strerror}"
            return f"cannot create {what}: {exc.strerror}"
    return None


# --------------------------------------------------------------------------- the collectors


class _Targets:
    """The trace's targets by where events name them: (netns, ifindex), or ifindex alone (an
    event from a device whose namespace the probe could not read)."""

    def __init__(self, targets: tuple[TraceTarget, ...]) -> None:
        self.targets = targets
        self.by_key = {(t.netns_inode, t.ifindex): t for t in targets}
        self.by_ifindex: dict[int, list[TraceTarget]] = {}
        for t in targets:
            self.by_ifindex.setdefault(t.ifindex, []).append(t)

    def find(self, ev: CntEvent) -> TraceTarget | None:
        t = self.by_key.get((ev.netns, ev.ifindex))
        if t is None and not ev.netns:
            cands = self.by_ifindex.get(ev.ifindex, [])
            t = cands[0] if len(cands) == 1 else None
        return t


class TcCollector:
    """eBPF on tc clsact ingress and egress of every target; filters stay until close()."""

    name = "tc"

    def __init__(self, module: ProbeModule, seq: int) -> None:
        self.module = module
        self.seq = seq
        self.attacher: TcAttacher | None = None
        self._where = _Targets(())

    def can_run(self) -> tuple[bool, str]:
        ok, why = self.module.can_run()
        if not ok:
            return ok, why
        return True, "eBPF on tc clsact ingress and egress of every watched interface"

    def attach(self, trace: Trace) -> list[Unwatched]:
        if self.attacher is None:
            self.attacher = TcAttacher(self.module.ensure().prog_fds, self.seq)
        out = []
        targets = trace.plan.targets
        self._where = _Targets(targets)
        for t in targets:
            for direction, why in self.attacher.attach(t):
                out.append(Unwatched(f"tc {direction} {t.name}", why, t))
        wanted = set(targets)
        for t, direction, why in self.attacher.warnings:
            if t in wanted:
                out.append(Unwatched(f"tc {direction} {t.name}", why, t, partial=True))
        return out

    def start(self, trace: Trace) -> list[int]:
        return self.module.arm(trace)

    def drain(self, trace: Trace) -> Seen:
        where = self._where
        found = (event_sighting(ev, trace.t0_ns, where.find(ev)) for ev in self.module.take(False))
        return Seen(sightings=tuple(s for s in found if s is not None))

    def stop(self, trace: Trace) -> int:
        return self.module.disarm()

    def close(self) -> None:
        if self.attacher is not None:
            self.attacher.close()
            self.attacher = None


class KfreeCollector:
    """The tracepoint skb:kfree_skb: the probe's drop, the kernel's reason, the freeing function."""

    name = "kfree_skb"

    def __init__(self, module: ProbeModule, kallsyms: Kallsyms) -> None:
        self.module = module
        self.kallsyms = kallsyms
        self._where = _Targets(())

    def can_run(self) -> tuple[bool, str]:
        ok, why = self.module.can_run()
        if not ok:
            return ok, why
        facts = self.module.facts
        assert facts is not None
        if "reason" not in facts.kfree.fields:
            return True, "skb:kfree_skb without drop reasons (kernel before 5.17): no reason names"
        return True, "tracepoint skb:kfree_skb with the kernel's drop reasons (no kprobes needed)"

    def watch(self, flags: int, netns: int = 0) -> None:
        """Report drops (``flags``: the marker's only, or all) in ``netns`` (0: everywhere)."""
        loaded = self.module.ensure()
        assert self.module.facts is not None
        loaded.configure(flags, netns)
        loaded.attach_kfree(self.module.facts.kfree.id)

    def attach(self, trace: Trace) -> list[Unwatched]:
        self._where = _Targets(trace.plan.targets)
        try:
            self.watch(CNT_CFG_MARKER_DROPS)
        except (BpfError, ProbeBuildError) as exc:
            return [Unwatched("kfree_skb", f"{self.can_run()[1]}: {exc}")]
        return []

    def start(self, trace: Trace) -> list[int]:
        return self.module.arm(trace)

    def drain(self, trace: Trace) -> Seen:
        find, t0 = self._where.find, trace.t0_ns
        drops = (
            self.drop(ev, t0, find(ev), bool(ev.is_reply), True) for ev in self.module.take(True)
        )
        return Seen(drops=tuple(drops))

    def drop(
        self,
        ev: CntEvent,
        t0_ns: int,
        target: TraceTarget | None = None,
        is_reply: bool = False,
        keep_address: bool = False,
    ) -> Drop:
        """A drop event as a Drop; where kallsyms cannot name the freeing function, its address
        (``keep_address``) or None."""
        name = self.kallsyms.resolve(ev.location)
        if name is None and ev.location and keep_address:
            name = hex(ev.location)
        frame = bytes(ev.data[: ev.caplen])
        wrapped = vxlan_outer(frame, 0) if ev.family else None
        inner = event_packet(ev) if ev.family else None
        return Drop(
            reason=self.module.reason(ev.reason),
            location=name,
            t_ns=ev.t_ns - t0_ns,
            ifindex=ev.ifindex or None,
            netns_inode=ev.netns or None,
            target=target,
            packet=wrapped[0] if wrapped and wrapped[0] != inner else inner,
            is_reply=is_reply,
            reason_code=ev.reason,
            tcp_flags=tcp_flag_text(ev.tcp_flags) if ev.proto == 6 else None,
            frame_hex=frame.hex(),
            inner=inner if wrapped and wrapped[0] != inner else None,
            vni=wrapped[1] if wrapped and wrapped[0] != inner else None,
        )

    def stop(self, trace: Trace | None = None) -> int:
        lost = self.module.disarm()
        if self.module.loaded is not None:
            self.module.loaded.configure(0)
        return lost

    def close(self) -> None:
        """Nothing of the tracepoint outlives the process; ProbeModule.close() releases it."""
        self.stop()


# --------------------------------------------------------------------------- event conversion


def _addr(raw: ctypes.Array[ctypes.c_uint8], family: int) -> str:
    b = bytes(raw)
    if family == 6:
        return socket.inet_ntop(socket.AF_INET6, b[:16])
    return socket.inet_ntop(socket.AF_INET, b[:4])


def event_packet(ev: CntEvent) -> Packet:
    icmp = ev.proto in (1, 58)
    return Packet(
        proto=PROTO_NAMES.get(ev.proto, str(ev.proto)),
        src=_addr(ev.saddr, ev.family),
        dst=_addr(ev.daddr, ev.family),
        sport=None if icmp else ev.sport,
        dport=None if icmp else ev.dport,
        family=ev.family,
        icmp_type=ev.icmp_type if icmp else None,
        mark=ev.mark,
    )


def event_sighting(ev: CntEvent, t0_ns: int, target: TraceTarget | None) -> Sighting | None:
    if target is None:
        return None  # an interface of another engine's trace in this process
    frame = bytes(ev.data[: ev.caplen])
    l3 = ev.l3off if ev.l3off < 0xFFFF else 0
    packet = event_packet(ev)
    wrapped = vxlan_outer(frame, l3)
    if wrapped is not None and wrapped[0].rewritten(mark=ev.mark) == packet:
        wrapped = None  # the probe itself is a datagram to a VXLAN port
    return Sighting(
        target=target,
        direction="egress" if ev.kind == CNT_EV_TC_EGRESS else "ingress",
        t_ns=ev.t_ns - t0_ns,
        packet=wrapped[0].rewritten(mark=ev.mark) if wrapped else packet,
        inner=packet if wrapped else None,
        vni=wrapped[1] if wrapped else None,
        is_reply=bool(ev.is_reply),
        tcp_flags=tcp_flag_text(ev.tcp_flags) if ev.proto == 6 else None,
        mark=ev.mark,
        ip_id=ev.ip_id if ev.family == 4 else None,
        length=ev.len,
        match=MATCH_NAMES.get(ev.match, str(ev.match)),
        icmp_code=ev.icmp_code if ev.proto in (1, 58) and ev.is_reply else None,
        l3_offset=l3,
        frame_hex=frame.hex(),
    )
