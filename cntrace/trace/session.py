"""The live-trace engine: collectors with a lifecycle, one probe, one result.

Collectors follow retis' habit: ``can_run()`` says whether and why not, probed on the running
kernel; ``init()`` prepares what outlives a trace (compiled probes, attached programs);
``start()`` arms it for one trace; ``stop()`` disarms; ``close()`` removes everything it added.

* tc        eBPF on ingress and egress of every target interface (sightings, NAT as seen there)
* kfree_skb the probe's drop with the kernel's reason and the freeing function
* nftrace   nftables rules the probe went through (covers iptables-nft)
* iptables-legacy TRACE: cannot run, and says why
* capture   AF_PACKET sockets when eBPF cannot run (sightings only)

A TraceEngine keeps programs loaded and attached between traces (the TUI traces again in well
under 300 ms); run_trace() is the one-shot form that leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import importlib.util
import os
import platform
import select
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from cntrace.errors import BadInput, EnvironmentProblem
from cntrace.model import Packet
from cntrace.sources import nsenter
from cntrace.trace import capture as capture_mod
from cntrace.trace import cleanup as cleanup_mod
from cntrace.trace import inject, nftrace
from cntrace.trace.bpfsys import BpfError, prog_run_stats
from cntrace.trace.ebpf import (
    PRINT_ENV,
    Build,
    KernelFacts,
    LoadedProbes,
    ProbeBuildError,
    build,
    is_cached,
    kernel_facts,
    print_source_and_exit,
)
from cntrace.trace.events import (
    Backend,
    Drop,
    Sighting,
    TracePlan,
    TraceResult,
    TraceTarget,
    Unwatched,
)
from cntrace.trace.events_c import (
    CNT_CFG_ALL_DROPS,
    CNT_CFG_MARKER_DROPS,
    CNT_EV_DROP,
    CNT_EV_TC_EGRESS,
    MATCH_NAMES,
    CntEvent,
)
from cntrace.trace.kallsyms import Kallsyms
from cntrace.trace.packet import PROTO_NAMES, Matcher, reverse, tcp_flag_text
from cntrace.trace.tcattach import TcAttacher, signals_deferred
from cntrace.trace.tracefs import TracefsError, ensure_mounted

_EVENT_SIZE = ctypes.sizeof(CntEvent)
_ENGINE_SEQ = [0]


@dataclass(frozen=True, slots=True)
class Requirement:
    """One collector's verdict on this machine."""

    collector: str
    ok: bool
    why: str


# --------------------------------------------------------------------------- shared eBPF module


class ProbeModule:
    """The compiled and loaded probes, shared by the tc and kfree_skb collectors."""

    def __init__(self) -> None:
        self.facts: KernelFacts | None = None
        self.build: Build | None = None
        self.loaded: LoadedProbes | None = None
        self.notices: list[str] = []
        self._why: str | None = None
        self._probed = False

    def can_run(self) -> tuple[bool, str]:
        if self._probed:
            return self._why is None, self._why or "ok"
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
        if not is_cached(self.facts):
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
        self.build = build(self.facts)
        try:
            self.loaded = LoadedProbes.load(self.build, self.facts)
        except ProbeBuildError:
            if not self.build.from_cache:
                raise
            self.build = build(self.facts, use_cache=False)  # a bad cache entry: rebuild
            self.loaded = LoadedProbes.load(self.build, self.facts)
        return self.loaded

    def close(self) -> None:
        if self.loaded is not None:
            self.loaded.close()
            self.loaded = None


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


# --------------------------------------------------------------------------- collectors


class TcCollector:
    name = "tc"

    def __init__(self, module: ProbeModule, seq: int) -> None:
        self.module = module
        self.seq = seq
        self.attacher: TcAttacher | None = None

    def can_run(self) -> tuple[bool, str]:
        ok, why = self.module.can_run()
        if not ok:
            return ok, why
        return True, "eBPF on tc clsact ingress and egress of every watched interface"

    def init(self) -> None:
        if self.attacher is None:
            self.attacher = TcAttacher(self.module.ensure().prog_fds, self.seq)

    def start(self, targets: tuple[TraceTarget, ...]) -> list[Unwatched]:
        assert self.attacher is not None
        out = []
        for t in targets:
            for direction, why in self.attacher.attach(t):
                out.append(Unwatched(f"tc {direction} {t.name}", why, t))
        wanted = set(targets)
        for t, direction, why in self.attacher.warnings:
            if t in wanted:
                out.append(Unwatched(f"tc {direction} {t.name}", why, t, partial=True))
        return out

    def close(self) -> None:
        if self.attacher is not None:
            self.attacher.close()
            self.attacher = None


class KfreeCollector:
    name = "kfree_skb"

    def __init__(self, module: ProbeModule) -> None:
        self.module = module

    def can_run(self) -> tuple[bool, str]:
        ok, why = self.module.can_run()
        if not ok:
            return ok, why
        facts = self.module.facts
        assert facts is not None
        if "reason" not in facts.kfree.fields:
            return True, "skb:kfree_skb without drop reasons (kernel before 5.17): no reason names"
        return True, "tracepoint skb:kfree_skb with the kernel's drop reasons (no kprobes needed)"

    def start(self, flags: int, netns: int = 0) -> None:
        loaded = self.module.ensure()
        assert self.module.facts is not None
        loaded.configure(flags, netns)
        loaded.attach_kfree(self.module.facts.kfree.id)

    def stop(self) -> None:
        if self.module.loaded is not None:
            self.module.loaded.configure(0)

    def close(self) -> None:
        """Nothing of the tracepoint outlives the process; ProbeModule.close() releases it."""
        self.stop()


class NftraceCollector:
    name = "nftrace"

    def can_run(self) -> tuple[bool, str]:
        return nftrace.can_run()


class LegacyTraceCollector:
    """iptables-legacy's TRACE target: listed so the requirements say why it is not used."""

    name = "iptables-legacy TRACE"

    def can_run(self) -> tuple[bool, str]:
        return False, (
            "TRACE logs through nf_log to the kernel log, which for containers' namespaces needs "
            "the root-namespace sysctl net.netfilter.nf_log_all_netns=1; cntrace does not change "
            "host sysctls (legacy rules are still named by the drop's location: ipt_do_table)"
        )


class CaptureCollector:
    name = "capture"

    def can_run(self) -> tuple[bool, str]:
        return capture_mod.can_run()


# --------------------------------------------------------------------------- one armed trace


class ArmedTrace:
    """One trace between arming and disarming (TraceEngine.armed)."""

    def __init__(
        self,
        engine: TraceEngine,
        plan: TracePlan,
        probe: Packet,
        marker: inject.Marker,
        backend: str,
        src_inode: int,
        t_start: float,
    ) -> None:
        self.engine = engine
        self.plan = plan
        self.probe = probe
        self.marker = marker
        self.backend = backend
        self.src_inode = src_inode
        self.t_start = t_start
        self.matcher = Matcher()
        self.tracer = nftrace.NftTracer(0)
        self.cap: capture_mod.CaptureTracer | None = None
        self.loaded: LoadedProbes | None = None
        self.unwatched: list[Unwatched] = []
        self.timings: dict[str, float] = {}
        self.lost = 0
        self.lost_base = 0
        self.sent: inject.Injected | None = None
        self.sightings: list[Sighting] = []
        self.drops: list[Drop] = []
        self.ended = "timeout"

    def inject(self) -> inject.Injected:
        t0 = time.monotonic()
        try:
            self.sent = inject.send(
                self.plan.source_netns_path, self.probe, self.marker, self.plan.size
            )
        except OSError as exc:
            raise EnvironmentProblem(f"could not send the probe: {exc}") from exc
        self.timings["inject"] = time.monotonic() - t0
        return self.sent

    def collect(self) -> None:
        assert self.sent is not None, "inject() first"
        t0 = time.monotonic()
        self.sightings, self.drops, self.ended = self.engine._collect(self)
        self.timings["collect"] = time.monotonic() - t0

    def result(self) -> TraceResult:
        """The result (after the trace is disarmed, so nft rule texts can be looked up)."""
        sent = self.sent
        assert sent is not None
        for s in self.sightings:  # the user-space matcher learns the flows the kernel learnt
            if not s.is_reply and s.packet.proto in ("tcp", "udp"):
                num = 6 if s.packet.proto == "tcp" else 17
                f = (s.packet.src, s.packet.dst, s.packet.sport or 0, s.packet.dport or 0, num)
                self.matcher.flows[f] = (self.marker.nonce, 1)
                self.matcher.flows[reverse(f)] = (self.marker.nonce, 2)
        rules = self.tracer.events(self.matcher, sent.t_ns)
        self.timings["total"] = time.monotonic() - self.t_start
        notices = tuple(self.engine._take_notices())
        return TraceResult(
            sightings=tuple(sorted(self.sightings, key=lambda s: s.t_ns)),
            drops=tuple(self.drops),
            rule_events=tuple(sorted(rules, key=lambda r: r.t_ns)),
            lost_events=self.lost,
            unwatched=tuple(self.unwatched),
            timings=dict(self.timings),
            backend=self.backend,
            probe=sent.packet,
            marker=self.marker.nonce,
            notices=notices + tuple(self.tracer.errors),
            ended=self.ended,
            t0_realtime_ns=sent.t_realtime_ns,
        )


# --------------------------------------------------------------------------- the engine


class TraceEngine:
    """Runs live traces; keeps the eBPF side loaded and attached until close()."""

    def __init__(
        self,
        backend: Backend = "auto",
        *,
        notice: Callable[[str], None] | None = None,
        remove_leftovers: bool = True,
    ) -> None:
        _ENGINE_SEQ[0] += 1
        self.seq = _ENGINE_SEQ[0]
        self.backend_wanted: Backend = backend
        self._notice = notice
        self._module = ProbeModule()
        self.tc = TcCollector(self._module, self.seq)
        self.kfree = KfreeCollector(self._module)
        self.nft = NftraceCollector()
        self.legacy = LegacyTraceCollector()
        self.capture = CaptureCollector()
        self._backend: str | None = None
        self.compile_s = 0.0  # building/fetching and loading the probes, on first use
        self._notices: list[str] = []
        self._traces = 0
        self._kallsyms = Kallsyms()
        self._kallsyms.prewarm()
        inject.preload()
        if remove_leftovers and os.geteuid() == 0:
            report = cleanup_mod.CleanupReport()
            with contextlib.suppress(OSError):
                cleanup_mod.from_ledgers(report)
            if report.removed:
                self._say(f"removed {len(report.removed)} leftover(s) of a killed cntrace run")

    def __enter__(self) -> TraceEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take_notices(self) -> list[str]:
        out, self._notices = self._notices, []
        return out

    def _say(self, text: str) -> None:
        self._notices.append(text)
        if self._notice is not None:
            self._notice(text)

    # ------------------------------------------------------------------ requirements

    def requirements(self) -> list[Requirement]:
        out = []
        for c in (self.tc, self.kfree, self.nft, self.legacy, self.capture):
            ok, why = c.can_run()
            out.append(Requirement(c.name, ok, why))
        return out

    def backend(self) -> str:
        """Decide the back end once: eBPF when it can run, else capture with a notice."""
        if self._backend is not None:
            return self._backend
        wanted = self.backend_wanted
        if wanted == "capture":
            ok, why = self.capture.can_run()
            if not ok:
                raise EnvironmentProblem(f"capture back end: {why}")
            self._backend = "capture"
            return self._backend
        ok, why = self.tc.can_run()
        if ok:
            try:
                t0 = time.monotonic()
                self.tc.init()
                self.compile_s = time.monotonic() - t0
                self._backend = "ebpf"
            except (ProbeBuildError, BpfError, OSError) as exc:
                ok, why = False, str(exc)
        if not ok:
            if wanted == "ebpf":
                raise EnvironmentProblem(f"eBPF back end cannot run: {why}")
            cok, cwhy = self.capture.can_run()
            if not cok:
                raise EnvironmentProblem(f"no back end can run: eBPF: {why}; capture: {cwhy}")
            self._say(f"eBPF unavailable ({why.splitlines()[0]}); using AF_PACKET capture")
            self._backend = "capture"
        for n in self._module.notices:
            self._say(n)
        self._module.notices.clear()
        return self._backend or "capture"

    # ------------------------------------------------------------------ one trace

    @contextlib.contextmanager
    def armed(self, plan: TracePlan) -> Iterator[ArmedTrace]:
        """Everything attached and the marker armed (the ready file is written); on exit,
        disarmed and the per-trace objects (nft tables, capture sockets) removed. tc filters
        stay until close(), for the next trace."""
        t_start = time.monotonic()
        if plan.timeout_s <= 0:
            raise BadInput("the trace timeout must be positive")
        try:
            src_inode = nsenter.inode_of(nsenter.netns_path(plan.source_netns_path))
        except OSError as exc:
            raise BadInput(f"source namespace {plan.source_netns_path}: {exc.strerror}") from exc
        try:
            probe = inject.complete(plan.source_netns_path, plan.packet)
            proto = inject.proto_number(probe)
        except ValueError as exc:
            raise BadInput(str(exc)) from exc
        except OSError as exc:
            raise BadInput(f"no route from the source to {plan.packet.dst}: {exc}") from exc

        backend = self.backend()
        a = ArmedTrace(self, plan, probe, inject.new_marker(), backend, src_inode, t_start)
        a.timings["compile"] = self.compile_s if self._traces == 0 else 0.0
        self._traces += 1
        a.matcher.arm(a.marker.nonce)
        a.tracer = nftrace.NftTracer(self.seq * 1000 + self._traces)
        loaded = self._module.loaded if backend == "ebpf" else None
        a.loaded = loaded
        t_attach = time.monotonic()
        try:
            if loaded is not None:
                a.unwatched += self.tc.start(plan.targets)
                _kok, kwhy = self.kfree.can_run()
                try:
                    self.kfree.start(CNT_CFG_MARKER_DROPS)
                except (BpfError, ProbeBuildError) as exc:
                    a.unwatched.append(Unwatched("kfree_skb", f"{kwhy}: {exc}"))
                loaded.arm(a.marker.nonce, proto)
                a.lost_base = loaded.counters()[0]
            else:
                a.cap = capture_mod.CaptureTracer()
                reply_port = probe.sport if probe.proto == "udp" else None
                a.cap.start(plan.targets, a.marker.nonce, reply_port)
                a.unwatched += a.cap.unwatched
                a.unwatched.append(Unwatched("drops", "the capture back end cannot see drops"))
            if plan.nft_namespaces:
                ok, why = self.nft.can_run()
                if ok:
                    a.tracer.start(plan.nft_namespaces, a.marker.nonce, probe)
                    a.unwatched += a.tracer.unwatched
                else:
                    a.unwatched += [Unwatched(f"nftrace {p}", why) for p in plan.nft_namespaces]
            a.timings["attach"] = time.monotonic() - t_attach
            if plan.ready_file:
                write_ready_file(plan.ready_file)
            yield a
        finally:
            # held signals: a Ctrl-C now would skip the rest of the undoing; it lands after
            with signals_deferred():
                t_detach = time.monotonic()
                if loaded is not None:
                    with contextlib.suppress(BpfError):
                        loaded.disarm(a.marker.nonce)
                    self.kfree.stop()
                    a.lost += loaded.counters()[0] - a.lost_base
                if a.cap is not None:
                    a.cap.stop()
                    a.lost += a.cap.lost
                a.tracer.stop()
                a.lost += a.tracer.lost
                a.timings["detach"] = time.monotonic() - t_detach

    def trace(self, plan: TracePlan) -> TraceResult:
        """Inject one probe and report what was seen of it."""
        with self.armed(plan) as a:
            a.inject()
            a.collect()
        return a.result()

    def _collect(self, a: ArmedTrace) -> tuple[list[Sighting], list[Drop], str]:
        """Gather events until the outcome is known (plus a short settle) or the timeout."""
        plan, sent, src_inode = a.plan, a.sent, a.src_inode
        matcher, loaded, cap, tracer = a.matcher, a.loaded, a.cap, a.tracer
        assert sent is not None
        by_key = {(t.netns_inode, t.ifindex): t for t in plan.targets}
        by_ifindex: dict[int, list[TraceTarget]] = {}
        for t in plan.targets:
            by_ifindex.setdefault(t.ifindex, []).append(t)
        watched_src = any(t.netns_inode == src_inode for t in plan.targets)
        last_target = plan.targets[-1] if plan.targets else None
        poller = select.poll()
        fds: list[int] = []
        if loaded is not None:
            fds.append(loaded.ring.fd)
        if cap is not None:
            fds += [s.fileno() for s in cap.sockets()]
        fds += [s.fileno() for s in tracer.sockets()]
        for fd in fds:
            poller.register(fd, select.POLLIN)

        sightings: list[Sighting] = []
        drops: list[Drop] = []
        deadline = sent.t_ns + int(plan.timeout_s * 1e9)
        settle_at: int | None = None
        ended = "timeout"
        quiet_ns = int(max(0.2, plan.settle_s) * 1e9)
        last_event = time.monotonic_ns()
        while True:
            now = time.monotonic_ns()
            if settle_at is not None and now >= settle_at:
                break
            if now >= deadline:
                if settle_at is None:
                    ended = "timeout"
                break
            wait_ns = min(deadline, settle_at or deadline) - now
            poller.poll(max(1, min(50, wait_ns // 1_000_000)))
            new_s: list[Sighting] = []
            new_d: list[Drop] = []
            if loaded is not None:
                for rec in loaded.ring.records():
                    ev = CntEvent.from_buffer_copy(rec[:_EVENT_SIZE].ljust(_EVENT_SIZE, b"\0"))
                    if ev.nonce != sent.marker.nonce:
                        continue
                    if ev.kind == CNT_EV_DROP:
                        new_d.append(self._drop(ev, sent.t_ns, by_key, by_ifindex))
                    else:
                        s = _sighting(ev, sent.t_ns, by_key, by_ifindex)
                        if s is not None:
                            new_s.append(s)
            if cap is not None:
                new_s += cap.drain(matcher, sent.t_ns)
            tracer.drain()
            if new_s or new_d:
                last_event = time.monotonic_ns()
            sightings += new_s
            drops += new_d
            if settle_at is not None:
                continue
            settle = int(plan.settle_s * 1e9)
            reply_home = [
                s
                for s in new_s
                if s.is_reply and (not watched_src or s.target.netns_inode == src_inode)
            ]
            if reply_home:
                ended, settle_at = "reply", time.monotonic_ns() + settle
            elif any(not d.is_reply and d.reason not in ("NO_SOCKET",) for d in new_d):
                ended, settle_at = "drop", time.monotonic_ns() + settle
            elif (
                probe_wants_no_reply(sent.packet)
                and last_target is not None
                and any(s.target == last_target and not s.is_reply for s in sightings)
                and time.monotonic_ns() - last_event >= quiet_ns
            ):
                ended, settle_at = "quiet", time.monotonic_ns()
        for fd in fds:
            with contextlib.suppress(KeyError, ValueError):
                poller.unregister(fd)
        drops = [
            replace(d, location=self._kallsyms.resolve(int(d.location, 16)) or d.location)
            if d.location and d.location.startswith("0x")
            else d
            for d in drops
        ]
        return sightings, drops, ended

    def _drop(
        self,
        ev: CntEvent,
        t0_ns: int,
        by_key: dict[tuple[int, int], TraceTarget],
        by_ifindex: dict[int, list[TraceTarget]],
    ) -> Drop:
        facts = self._module.facts
        reasons = facts.reasons if facts else {}
        target = _find_target(ev, by_key, by_ifindex)
        pkt = _event_packet(ev) if ev.family else None
        return Drop(
            reason=_reason_name(reasons, ev.reason),
            location=hex(ev.location) if ev.location else None,
            t_ns=ev.t_ns - t0_ns,
            ifindex=ev.ifindex or None,
            netns_inode=ev.netns or None,
            target=target,
            packet=pkt,
            is_reply=bool(ev.is_reply),
            reason_code=ev.reason,
            tcp_flags=tcp_flag_text(ev.tcp_flags) if ev.proto == 6 else None,
            frame_hex=bytes(ev.data[: ev.caplen]).hex(),
        )

    def program_stats(self) -> dict[str, tuple[int, int]]:
        """(run time ns, run count) per loaded program; zeros unless the kernel is accounting
        (bpfsys.enable_run_time_stats), which benchmarks turn on."""
        loaded = self._module.loaded
        if loaded is None:
            return {}
        return {name: prog_run_stats(fd) for name, fd in loaded.prog_fds.items()}

    def close(self) -> None:
        """Detach everything this engine attached; idempotent. Signals wait until it is done."""
        with signals_deferred():
            self.tc.close()
            self.kfree.close()
            self._module.close()
            self._backend = None


def probe_wants_no_reply(p: Packet) -> bool:
    """UDP may legitimately get no answer; TCP and ICMP echo always get one if delivered."""
    return p.proto == "udp"


def write_ready_file(path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(f"{os.getpid()} armed\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- event conversion


def _reason_name(reasons: dict[int, str], code: int) -> str:
    """The kernel's name for a drop reason; kernels before 5.17 give none."""
    if not reasons:
        return "unknown"
    return reasons.get(code, str(code))


def _addr(raw: ctypes.Array[ctypes.c_uint8], family: int) -> str:
    b = bytes(raw)
    if family == 6:
        return socket.inet_ntop(socket.AF_INET6, b[:16])
    return socket.inet_ntop(socket.AF_INET, b[:4])


def _event_packet(ev: CntEvent) -> Packet:
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


def _find_target(
    ev: CntEvent,
    by_key: dict[tuple[int, int], TraceTarget],
    by_ifindex: dict[int, list[TraceTarget]],
) -> TraceTarget | None:
    t = by_key.get((ev.netns, ev.ifindex))
    if t is None and not ev.netns:
        cands = by_ifindex.get(ev.ifindex, [])
        t = cands[0] if len(cands) == 1 else None
    return t


def _sighting(
    ev: CntEvent,
    t0_ns: int,
    by_key: dict[tuple[int, int], TraceTarget],
    by_ifindex: dict[int, list[TraceTarget]],
) -> Sighting | None:
    target = _find_target(ev, by_key, by_ifindex)
    if target is None:
        return None  # an interface of another engine's trace in this process
    return Sighting(
        target=target,
        direction="egress" if ev.kind == CNT_EV_TC_EGRESS else "ingress",
        t_ns=ev.t_ns - t0_ns,
        packet=_event_packet(ev),
        is_reply=bool(ev.is_reply),
        tcp_flags=tcp_flag_text(ev.tcp_flags) if ev.proto == 6 else None,
        mark=ev.mark,
        ip_id=ev.ip_id if ev.family == 4 else None,
        length=ev.len,
        match=MATCH_NAMES.get(ev.match, str(ev.match)),
        icmp_code=ev.icmp_code if ev.proto in (1, 58) and ev.is_reply else None,
        l3_offset=ev.l3off if ev.l3off < 0xFFFF else 0,
        frame_hex=bytes(ev.data[: ev.caplen]).hex(),
    )


# --------------------------------------------------------------------------- entry points


def run_trace(plan: TracePlan, *, notice: Callable[[str], None] | None = None) -> TraceResult:
    """One live trace that leaves the host exactly as it found it."""
    engine = TraceEngine(plan.backend, notice=notice)
    try:
        result = engine.trace(plan)
    finally:
        t0 = time.monotonic()
        engine.close()
        close_s = time.monotonic() - t0
    timings = dict(result.timings)
    timings["detach"] = timings.get("detach", 0.0) + close_s
    timings["total"] = timings.get("total", 0.0) + close_s
    return replace(result, timings=timings)


def targets_in(
    netns_path: str, ifnames: tuple[str, ...] | None = None, label: str | None = None
) -> tuple[TraceTarget, ...]:
    """TraceTargets for a namespace's interfaces (all but loopback, or those named)."""
    from cntrace.trace.tcnl import RouteSocket  # noqa: PLC0415

    path = nsenter.netns_path(netns_path)
    inode = nsenter.inode_of(path)
    with RouteSocket(path) as sock:
        links = sock.links()
    found = []
    names = {link.name: link for link in links}
    wanted = ifnames if ifnames is not None else tuple(k.name for k in links if k.type != 772)
    for name in wanted:
        link = names.get(name)
        if link is None:
            raise BadInput(f"no interface {name} in {netns_path}")
        prefix = label or _netns_label(path)
        found.append(TraceTarget(path, inode, link.name, link.ifindex, f"{prefix} {link.name}"))
    return tuple(found)


def _netns_label(path: str) -> str:
    """`web` for /run/netns/web, `pid:42` for /proc/42/ns/net."""
    parts = path.strip("/").split("/")
    if len(parts) == 4 and parts[0] == "proc" and parts[2:] == ["ns", "net"]:
        return f"pid:{parts[1]}"
    return os.path.basename(path)


# --------------------------------------------------------------------------- drops mode


class DropWatch:
    """Every kernel drop (optionally in one namespace), for `cntrace drops`."""

    def __init__(self, netns_inode: int = 0) -> None:
        self._module = ProbeModule()
        self._kfree = KfreeCollector(self._module)
        self._kallsyms = Kallsyms()
        ok, why = self._kfree.can_run()
        if not ok:
            raise EnvironmentProblem(f"cannot watch drops: {why}")
        try:
            self._kfree.start(CNT_CFG_ALL_DROPS, netns_inode)
        except (ProbeBuildError, BpfError) as exc:
            raise EnvironmentProblem(f"cannot watch drops: {exc}") from exc
        self.notices = list(self._module.notices)
        loaded = self._module.loaded
        assert loaded is not None
        self._loaded = loaded
        self._t0 = time.monotonic_ns()
        self.t0_realtime_ns = time.time_ns()  # wall-clock time at which Drop.t_ns is 0

    def lost(self) -> int:
        return self._loaded.counters()[0]

    def drops(self, timeout_s: float | None = None) -> Iterator[Drop]:
        """Yield drops as they come; stops after ``timeout_s`` (None: until interrupted)."""
        poller = select.poll()
        poller.register(self._loaded.ring.fd, select.POLLIN)
        end = None if timeout_s is None else time.monotonic() + timeout_s
        facts = self._module.facts
        reasons = facts.reasons if facts else {}
        while end is None or time.monotonic() < end:
            poller.poll(100)
            for rec in self._loaded.ring.records():
                ev = CntEvent.from_buffer_copy(rec[:_EVENT_SIZE].ljust(_EVENT_SIZE, b"\0"))
                yield Drop(
                    reason=_reason_name(reasons, ev.reason),
                    location=self._kallsyms.resolve(ev.location),
                    t_ns=ev.t_ns - self._t0,
                    ifindex=ev.ifindex or None,
                    netns_inode=ev.netns or None,
                    packet=_event_packet(ev) if ev.family else None,
                    reason_code=ev.reason,
                    tcp_flags=tcp_flag_text(ev.tcp_flags) if ev.proto == 6 else None,
                    frame_hex=bytes(ev.data[: ev.caplen]).hex(),
                )

    def close(self) -> None:
        self._kfree.stop()
        self._kfree.close()
        self._module.close()

    def __enter__(self) -> DropWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
