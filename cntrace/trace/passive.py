"""`cntrace trace <container>`: follow a container's real traffic through its hops.

No probe is sent and nothing in the kernel changes: one AF_PACKET socket per interface on the
container's way out (its own interfaces, their host-side peers, the bridges they are plugged
into and the host's uplinks), each with a classic BPF filter compiled from a tcpdump expression,
so only matching packets are copied to cntrace. Every packet is printed once per hop it crosses;
the IP ID (which NAT keeps) ties the lines of one packet together, and its addresses show each
NAT rewrite at the hop that made it.
"""

from __future__ import annotations

import select
import shutil
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cntrace.errors import BadInput, EnvironmentProblem
from cntrace.model import Container, Netns, Packet, Snapshot
from cntrace.topology import Topology
from cntrace.trace import capture
from cntrace.trace.events import Direction, TraceTarget
from cntrace.trace.packet import tcp_flag_text

_RET_ALL = struct.pack("HBBI", 0x06, 0, 0, 0x40000)  # ret #262144: keep every packet


@dataclass(frozen=True)
class Seen:
    """One packet at one hop."""

    t_ns: int
    target: TraceTarget
    direction: Direction
    packet: Packet
    tcp_flags: str | None
    ip_id: int
    length: int


def compile_filter(expression: str) -> bytes:
    """A tcpdump expression as a classic BPF program for packets that start at the IP header
    (SOCK_DGRAM packet sockets), compiled by tcpdump itself."""
    if not expression.strip():
        return _RET_ALL
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        raise EnvironmentProblem("a filter needs tcpdump to compile it (apt-get install tcpdump)")
    res = subprocess.run(
        [tcpdump, "-y", "RAW", "-ddd", expression], capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        why = (res.stderr.strip().splitlines() or ["cannot compile it"])[-1]
        raise BadInput(f"bad filter {expression!r}: {why.removeprefix('tcpdump: ')}")
    lines = res.stdout.split("\n")
    count = int(lines[0])
    code = b""
    for line in lines[1 : count + 1]:
        op, jt, jf, k = (int(x) for x in line.split())
        code += struct.pack("HBBI", op, jt, jf, k & 0xFFFFFFFF)
    return code


def _path_of(ns: Netns) -> str | None:
    named = [p for p in ns.paths if p.startswith("/run/netns/")]
    paths = named or list(ns.paths)
    return paths[0] if paths else None


def targets_for(snap: Snapshot, container: Container) -> tuple[TraceTarget, ...]:
    """The interfaces a container's traffic crosses on this host, from the inside out."""
    topo = Topology(snap)
    found: list[TraceTarget] = []
    seen: set[tuple[int, int]] = set()

    def add(ns: Netns, ifname: str) -> None:
        link = ns.link(ifname)
        path = _path_of(ns)
        if link is None or path is None or (ns.inode, link.ifindex) in seen:
            return
        seen.add((ns.inode, link.ifindex))
        owner = topo.owner(ns.inode)
        label = owner.name if owner else ns.label
        found.append(
            TraceTarget(
                path,
                ns.inode,
                ifname,
                link.ifindex,
                f"{label} {ifname}",
                owner.name if owner else None,
            )
        )

    hosts: list[Netns] = []
    for att in topo.attachments(container):
        add(att.interface.netns, att.interface.link.name)
        if att.peer is not None:
            add(att.peer.netns, att.peer.link.name)
            hosts.append(att.peer.netns)
        if att.bridge is not None:
            add(att.bridge.netns, att.bridge.link.name)
    for host in hosts:
        for uplink in topo.uplinks(host):
            add(host, uplink.name)
    if not found:
        raise BadInput(f"{container.name} has no interface cntrace can watch")
    return tuple(found)


def follow(
    targets: tuple[TraceTarget, ...],
    expression: str,
    *,
    count: int | None = None,
    duration: float | None = None,
    ready: Callable[[], None] | None = None,
) -> Iterator[Seen]:
    """Yield packets as they cross the targets until ``count`` lines, ``duration`` seconds, or
    the caller stops iterating (Ctrl-C). Sockets are closed on every way out."""
    code = compile_filter(expression)
    ok, why = capture.can_run()
    if not ok:
        raise EnvironmentProblem(why)
    tracer = capture.CaptureTracer()
    try:
        tracer.open(targets, code)
        if not tracer.sockets():
            raise EnvironmentProblem(
                "no interface could be watched: "
                + "; ".join(f"{u.what}: {u.why}" for u in tracer.unwatched)
            )
        if ready is not None:
            ready()
        t0 = time.monotonic_ns()
        deadline = time.monotonic() + duration if duration else None
        shown = 0
        while count is None or shown < count:
            wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            select.select(tracer.sockets(), [], [], wait)
            for t_ns, target, direction, _data, p in tracer.receive():
                yield Seen(
                    t_ns - t0,
                    target,
                    direction,
                    p.to_packet(),
                    tcp_flag_text(p.tcp_flags) if p.proto == 6 else None,
                    p.ip_id or 0,
                    p.length,
                )
                shown += 1
                if count is not None and shown >= count:
                    return
            if deadline is not None and time.monotonic() >= deadline:
                return
    finally:
        tracer.stop()
