"""The drops tab: who a kernel drop belongs to, and its row."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.text import Text

from cntrace.model import Packet, Snapshot
from cntrace.topology import Topology
from cntrace.tui.tracer import KernelDrop


@dataclass(frozen=True, slots=True)
class DropAttribution:
    """Who a kernel drop belongs to."""

    container: str | None
    where: str  # namespace label and interface


class DropAttributor:
    """Names the container behind a drop, built once per snapshot.

    In order: the namespace is the container's; the device is its host veth; the packet's source
    or destination is its address, as seen from that host namespace (a routed packet dropped in
    FORWARD sits on the bridge, not on the veth). Addresses are keyed by host namespace because
    separate hosts (two labs, Docker in a namespace) reuse the same subnets.
    """

    def __init__(self, snapshot: Snapshot) -> None:
        topo = Topology(snapshot)
        self._topo = topo
        self._by_ns: dict[int, str] = {}
        self._by_port: dict[tuple[int, int], str] = {}
        self._by_ip: dict[tuple[int, str], str] = {}
        for c in snapshot.containers:
            if c.netns is None or c.network_mode == "host" or c.netns == c.host_netns:
                continue
            self._by_ns.setdefault(c.netns, c.name)
            for att in topo.attachments(c):
                if att.peer is not None:
                    key = (att.peer.netns.inode, att.peer.link.ifindex)
                    self._by_port.setdefault(key, c.name)
                    for a in att.interface.link.addresses:
                        if a.scope == "global":
                            self._by_ip.setdefault((att.peer.netns.inode, a.address), c.name)

    def attribute(
        self, netns: int | None, ifindex: int | None, packet: Packet | None = None
    ) -> DropAttribution:
        label = self._topo.label(netns) if netns is not None else "?"
        ifname = None
        if netns is not None and ifindex is not None:
            link = self._topo.link(netns, ifindex)
            ifname = link.name if link else f"if{ifindex}"
        where = f"{label} {ifname}" if ifname else label
        who = None
        if netns is not None:
            who = self._by_ns.get(netns)
            if who is None and ifindex is not None:
                who = self._by_port.get((netns, ifindex))
            if who is None and packet is not None:
                who = self._by_ip.get((netns, packet.src)) or self._by_ip.get((netns, packet.dst))
        return DropAttribution(who, where)


DROP_COLUMNS = ("TIME", "CONTAINER", "WHERE", "REASON", "LOCATION", "PACKET")


def drop_cells(d: KernelDrop, who: DropAttribution, wall: float) -> tuple[str | Text, ...]:
    """One row of the drops table; ``wall`` is the drop's wall-clock time."""
    stamp = time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int(wall % 1 * 1000):03d}"
    return (
        stamp,
        Text(who.container, "bold") if who.container else Text("-", "dim"),
        who.where,
        Text(d.reason, "bold red"),
        d.location or "?",
        str(d.packet) if d.packet else "",
    )
