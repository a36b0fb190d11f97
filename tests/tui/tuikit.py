"""Helpers for the console tests: recorded lab snapshots, a scripted tracer, pilot steps.

``ScriptedTracer`` stands in for the kernel in pilot and snapshot tests only: it turns a
prediction into a "live" path by marking every predicted hop up to the deciding one as seen, so
the tests can check how the console shows live results. The product never fakes live data; the
real tracer is exercised by the tmux test on a real lab.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import cache
from pathlib import Path as FsPath

from textual.pilot import Pilot
from textual.widgets import Input

from cntrace.model import Packet, Path, Snapshot
from cntrace.sources import recorded
from cntrace.tui.app import CntraceApp
from cntrace.tui.source import RecordedSource
from cntrace.tui.tracer import DropBatch, KernelDrop

LAB = FsPath(__file__).resolve().parents[2] / "fixtures" / "snapshots" / "lab"
FIXED_CLOCK = 1_790_000_000.0  # drop timestamps in snapshot tests


@cache
def lab_snapshot(state: str) -> Snapshot:
    return recorded.load(str(LAB / f"{state}.json"))


class LiveRecordedSource(RecordedSource):
    """A recorded snapshot presented as live, with a scripted change detector."""

    live = True
    description = "live"

    def __init__(self, *snapshots: Snapshot) -> None:
        super().__init__(snapshots[0])
        self.snapshots = list(snapshots)
        self.reads = 0
        self.change = threading.Event()
        self.watched: list[Snapshot] = []

    def read(self, *, detail: bool) -> Snapshot:
        snap = self.snapshots[min(self.reads, len(self.snapshots) - 1)]
        if detail:
            self.reads += 1
        return snap

    def changed(self) -> bool:
        if self.change.is_set():
            self.change.clear()
            return True
        return False

    def watch(self, snapshot: Snapshot) -> None:
        self.watched.append(snapshot)


class ScriptedTracer:
    """Test double for cntrace.tui.tracer.Tracer (see the module docstring)."""

    def __init__(self, drops: list[KernelDrop] | None = None) -> None:
        self.traces = 0
        self.closed = False
        self.prepared = False
        self._drops = drops or []

    def can_trace(self) -> tuple[bool, str]:
        return True, "ok"

    def prepare(self) -> None:
        self.prepared = True

    def trace(
        self,
        snapshot: Snapshot,
        predicted: Path,
        progress: Callable[[Path], None] | None = None,
    ) -> Path:
        self.traces += 1
        end = predicted.verdict.at_hop or len(predicted.hops)
        hops = tuple(
            replace(
                h,
                observed=h.index <= end,
                t_us=h.index * 10 if h.index <= end else None,
                watched=True,
                reason=predicted.verdict.reason if h.index == predicted.verdict.at_hop else None,
            )
            for h in predicted.hops
            if h.direction == "request"
        )
        return replace(predicted, hops=hops, mode="live", stats={"events": len(hops), "lost": 0})

    def can_watch_drops(self) -> tuple[bool, str]:
        return True, "ok"

    def drop_batches(self, stop: threading.Event) -> Iterator[DropBatch]:
        yield DropBatch(tuple(self._drops), 0)
        while not stop.wait(0.05):
            yield DropBatch((), 0)

    def close(self) -> None:
        self.closed = True


def lab_drops(snap: Snapshot) -> list[KernelDrop]:
    """Two drops in the web container's namespace and one on the host uplink."""
    web = next(c for c in snap.containers if c.name == "web")
    host = web.host_netns
    pkt = Packet("tcp", "10.210.0.3", "10.210.0.2", 40000, 81)
    return [
        KernelDrop(1_000_000, "NO_SOCKET", "tcp_v4_rcv", web.netns, 2, pkt),
        KernelDrop(2_500_000, "NETFILTER_DROP", "nf_hook_slow", host, 5, pkt),
        KernelDrop(3_000_000, "OTHERHOST", "ip_rcv_core", 12345, 1, None),
    ]


# --------------------------------------------------------------------------- pilot steps

BUSY = ("discovery", "path", "export", "warm", "whatif")


async def settle(pilot: Pilot[int], timeout: float = 10.0) -> None:
    """Wait until discovery, path, export and warm-up workers are done, then for a repaint."""
    app = pilot.app
    assert isinstance(app, CntraceApp)
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        await pilot.pause()
        busy = [w for w in app.workers if w.group in BUSY and not w.is_finished]
        started = app.snapshot is not None or app.feed.error is not None
        if started and not busy:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError(f"not settled: workers {busy}, snapshot {app.snapshot is not None}")
    await pilot.pause()


async def type_text(pilot: Pilot[int], text: str) -> None:
    for ch in text:
        await pilot.press(ch)


async def path_to(pilot: Pilot[int], source: str, destination: str) -> None:
    """Select ``source`` in the containers table, `p`, type ``destination``, Enter."""
    app = pilot.app
    assert isinstance(app, CntraceApp)
    await pilot.press("1")
    key = next(r.key for r in app.containers.rows if r.name == source)
    assert app.main.table.select_key(key)
    await pilot.press("p")
    assert app.main.tabs.active == "path"
    assert isinstance(app.focused, Input) and app.focused.id == "destination"
    await type_text(pilot, destination)
    asked = app.path.requests
    await pilot.press("enter")
    await answered(pilot, asked)


async def answered(pilot: Pilot[int], asked: int, timeout: float = 15.0) -> None:
    """Wait until the path asked after ``asked`` earlier questions has its final answer."""
    app = pilot.app
    assert isinstance(app, CntraceApp)
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not (app.path.requests > asked and app.path.answers >= app.path.requests):
        if app.path.pending is not None:
            break  # waiting for discovery: the caller decides what comes next
        if loop.time() > end:
            raise AssertionError("the path panel never answered")
        await pilot.pause(0.02)
    await settle(pilot)


async def to_container_node(pilot: Pilot[int], name: str) -> None:
    """Move the topology tree's cursor down to the node of container ``name``."""
    app = pilot.app
    assert isinstance(app, CntraceApp)
    tree = app.main.topo_tree
    tree.cursor_line = 0
    await pilot.pause()
    for _ in range(60):
        node = tree.cursor_node
        ref = node.data if node is not None else None
        if ref is not None and ref.kind == "container" and str(node.label).startswith(name):
            return
        await pilot.press("down")
    raise AssertionError(f"no {name} node in the topology tree")


async def wait_for(pilot: Pilot[int], cond: Callable[[], object], timeout: float = 15.0) -> None:
    """Pause until ``cond()`` is true (workers answer asynchronously)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition never became true")
        await pilot.pause(0.02)
    await settle(pilot)
