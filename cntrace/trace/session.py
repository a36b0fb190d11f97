"""The live-trace engine: it runs the collectors a trace needs, and one armed trace at a time.

Collectors (cntrace/trace/collector.py has the contract) follow retis' habit: ``can_run()`` says
whether and why not, probed on the running kernel; ``attach`` and ``start`` arm one trace;
``drain`` hands over what arrived; ``stop`` disarms; ``close()`` removes everything it added.

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
import os
import select
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from cntrace.errors import BadInput, EnvironmentProblem
from cntrace.sources import nsenter
from cntrace.trace import cleanup as cleanup_mod
from cntrace.trace import inject
from cntrace.trace.armed import SEND_ERRORS, ArmedTrace, write_ready_file
from cntrace.trace.bpfsys import BpfError, prog_run_stats
from cntrace.trace.capture import CaptureCollector
from cntrace.trace.collector import Collector, Requirement
from cntrace.trace.ebpf import ProbeBuildError
from cntrace.trace.events import Backend, Drop, TracePlan, TraceResult, TraceTarget
from cntrace.trace.events_c import CNT_CFG_ALL_DROPS
from cntrace.trace.kallsyms import Kallsyms
from cntrace.trace.neigh import NeighCollector
from cntrace.trace.nftwatch import LegacyTraceCollector, NftraceCollector
from cntrace.trace.probes import KfreeCollector, ProbeModule, TcCollector
from cntrace.trace.tcattach import signals_deferred

__all__ = ["ArmedTrace", "DropWatch", "TraceEngine", "run_trace", "targets_in", "write_ready_file"]

_ENGINE_SEQ = [0]


class _Probed(Protocol):
    """What the requirements list: every collector, and those that can never run here."""

    name: str

    def can_run(self) -> tuple[bool, str]: ...


# --------------------------------------------------------------------------- the engine


class TraceEngine:
    """Runs live traces; keeps the eBPF side loaded and attached until close().

    ``backends`` says which collectors watch a trace on each back end (the default: tc, kfree_skb
    and nftrace on eBPF, capture and nftrace otherwise); the first of each decides whether the
    back end can run."""

    def __init__(
        self,
        backend: Backend = "auto",
        *,
        notice: Callable[[str], None] | None = None,
        remove_leftovers: bool = True,
        backends: Mapping[str, Sequence[Collector]] | None = None,
    ) -> None:
        _ENGINE_SEQ[0] += 1
        self.seq = _ENGINE_SEQ[0]
        self.backend_wanted: Backend = backend
        self._notice = notice
        self._kallsyms = Kallsyms()
        self._kallsyms.prewarm()
        self._module = ProbeModule()
        self.tc = TcCollector(self._module, self.seq)
        self.kfree = KfreeCollector(self._module, self._kallsyms)
        self.nft = NftraceCollector(self.seq)
        self.legacy = LegacyTraceCollector()
        self.capture = CaptureCollector()
        self.neigh = NeighCollector()
        self.backends: dict[str, tuple[Collector, ...]] = {
            "ebpf": (self.tc, self.kfree, self.nft, self.neigh),
            "capture": (self.capture, self.nft, self.neigh),
        }
        if backends is not None:
            self.backends = {k: tuple(v) for k, v in backends.items()}
        self._backend: str | None = None
        self.compile_s = 0.0  # building/fetching and loading the probes, on first use
        self._notices: list[str] = []
        self._traces = 0
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

    def _say(self, text: str) -> None:
        self._notices.append(text)
        if self._notice is not None:
            self._notice(text)

    # ------------------------------------------------------------------ requirements

    def requirements(self) -> list[Requirement]:
        probed: tuple[_Probed, ...] = (
            self.tc,
            self.kfree,
            self.nft,
            self.legacy,
            self.capture,
            self.neigh,
        )
        return [Requirement(c.name, *c.can_run()) for c in probed]

    def backend(self) -> str:
        """Decide the back end once: eBPF when it can run, else capture with a notice."""
        if self._backend is not None:
            return self._backend
        wanted = self.backend_wanted
        if wanted == "capture":
            ok, why = self._lead("capture").can_run()
            if not ok:
                raise EnvironmentProblem(f"capture back end: {why}")
            self._backend = "capture"
            return self._backend
        ok, why = self._lead("ebpf").can_run()
        if ok:
            try:
                t0 = time.monotonic()
                self._module.ensure()
                self.compile_s = time.monotonic() - t0
                self._backend = "ebpf"
            except (ProbeBuildError, BpfError, OSError) as exc:
                ok, why = False, str(exc)
        if not ok:
            if wanted == "ebpf":
                raise EnvironmentProblem(f"eBPF back end cannot run: {why}")
            cok, cwhy = self._lead("capture").can_run()
            if not cok:
                raise EnvironmentProblem(f"no back end can run: eBPF: {why}; capture: {cwhy}")
            self._say(f"eBPF unavailable ({why.splitlines()[0]}); using AF_PACKET capture")
            self._backend = "capture"
        for n in self._module.notices:
            self._say(n)
        self._module.notices.clear()
        return self._backend or "capture"

    def _lead(self, backend: str) -> Collector:
        return self.backends[backend][0]

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
        except ValueError as exc:
            raise BadInput(str(exc)) from exc
        except OSError as exc:
            if exc.errno not in SEND_ERRORS:
                raise BadInput(f"no route from the source to {plan.packet.dst}: {exc}") from exc
            # No source address without a route: the send fails the same way, and says so.
            probe = inject.complete(
                plan.source_netns_path, replace(plan.packet, src=""), route=False
            )
        try:
            sender = inject.Sender(plan.source_netns_path, probe)
        except PermissionError as exc:
            raise EnvironmentProblem(f"cannot open the probe's socket: {exc.strerror}") from exc
        except OSError as exc:
            raise BadInput(f"source namespace {plan.source_netns_path}: {exc.strerror}") from exc
        probe = sender.packet

        try:
            backend = self.backend()
        except BaseException:
            sender.close()
            raise
        notices, self._notices = self._notices, []
        collectors = self.backends[backend]
        marker = inject.new_marker()
        a = ArmedTrace(
            collectors, plan, probe, marker, backend, src_inode, t_start, notices, sender
        )
        a.timings["compile"] = self.compile_s if self._traces == 0 else 0.0
        self._traces += 1
        try:
            a.arm()
            yield a
        finally:
            try:
                a.disarm()
            finally:
                sender.close()

    def trace(self, plan: TracePlan) -> TraceResult:
        """Inject one probe and report what was seen of it."""
        with self.armed(plan) as a:
            a.inject()
            a.gather_until_outcome()
        return a.result()

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
            for c in dict.fromkeys(c for cs in self.backends.values() for c in cs):
                c.close()
            self._module.close()
            self._backend = None


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
        self._kfree = KfreeCollector(self._module, Kallsyms())
        ok, why = self._kfree.can_run()
        if not ok:
            raise EnvironmentProblem(f"cannot watch drops: {why}")
        try:
            self._kfree.watch(CNT_CFG_ALL_DROPS, netns_inode)
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
        while end is None or time.monotonic() < end:
            poller.poll(100)
            for ev in self._module.events():
                yield self._kfree.drop(ev, self._t0)

    def close(self) -> None:
        self._kfree.close()
        self._module.close()

    def __enter__(self) -> DropWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
