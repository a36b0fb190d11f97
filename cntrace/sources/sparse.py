"""Bridge ports a narrow read leaves out: a big host's per-port facts, decoded only where needed.

A host of 1,000 containers has a bridge port for each, and with it a link, an IPv6 link-local
address, two netconf entries and a permanent FDB entry: most of what `cntrace path` and `cntrace
show` decoded on such a host, where the answer crosses one or two of those ports. A narrow read
(sources.pathread, sources.targeted) already treats the namespaces it did not read as absent; a
port whose far end is one of them is a dangling end no walk can take (topology.peer finds nothing
behind it), so the narrow read leaves such ports out, with their per-port facts:

- a veth or netkit enslaved to a bridge of the same namespace,
- whose peer is in another namespace, not read (a resolved peer keeps the port),
- holding no address beyond link scope (a port with an address is a host interface too).

The links are still dumped and decoded (which ports are plain only the links tell); what is left
undecoded is the ports' addresses (set aside by ifindex and decoded if the port comes back),
netconf entries and permanent FDB entries (the port's own MAC, which no lookup uses:
topology.fdb_entry skips local entries). Learned FDB entries, neighbours and routes are kept
whatever their port. A widening that reads a left-out port's far end brings the port back:
PathRead rebuilds the namespace and decodes its detail again from the dumps it kept. The Snapshot
says how many ports were left out (NOTE).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cntrace.model import Address
from cntrace.sources.netlink import decode

if TYPE_CHECKING:
    from cntrace.sources.namespaces import Space

PAIRS = ("veth", "netkit")
RT_SCOPE_LINK = 253
NOTE = "partial snapshot: {n} bridge ports of {ns} whose far end was not read are left out"


def hold(sp: Space, chunks: list[bytes], loopback: bool) -> None:
    """Decode ``sp``'s address dump, setting aside the messages of its plain bridge ports
    (``sp.ports``: those it may leave out once its peers are known)."""
    bridges = {r.ifindex for r in sp.raw_links if r.kind == "bridge"}
    plain = {
        r.ifindex
        for r in sp.raw_links
        if r.master in bridges and r.kind in PAIRS and r.link_netnsid is not None
    } | set(sp.unread)
    held, wider = split(chunks, plain)
    sp.held_addresses.update(held)
    sp.ports = frozenset(plain - wider)
    sp.addresses = decode.parse_addresses(chunks, loopback, skip=frozenset(sp.held_addresses))


def split(
    chunks: list[bytes], indexes: set[int]
) -> tuple[dict[int, list[decode.Message]], set[int]]:
    """The address messages of ``indexes`` by interface, undecoded, for those holding only
    link-scope addresses; and the interfaces holding a wider one (never plain: a walk may
    start or end at such an address)."""
    held: dict[int, list[decode.Message]] = {}
    wider: set[int] = set()
    for index, found in (decode.address_messages(chunks, indexes) if indexes else {}).items():
        if any(scope != RT_SCOPE_LINK for scope, _m in found):
            wider.add(index)
        else:
            held[index] = [m for _s, m in found]
    return held, wider


def left_out(sp: Space, peers: dict[tuple[int, int], int]) -> frozenset[int]:
    """The plain ports of ``sp`` whose peer is not among the namespaces read."""
    return frozenset(i for i in sp.ports if (sp.inode, i) not in peers)


def addresses(sp: Space, ifindex: int) -> list[Address]:
    """The interface's addresses, decoding those set aside the first time they are asked for."""
    held = sp.held_addresses.pop(ifindex, None)
    if held is not None:
        found = [a for m in held if (a := decode.address_of(*m)) is not None]
        if found:
            sp.addresses[ifindex] = found
    return sp.addresses.get(ifindex, [])


def note(sp: Space) -> str | None:
    return NOTE.format(n=len(sp.omit), ns=sp.name or f"netns {sp.inode}") if sp.omit else None
